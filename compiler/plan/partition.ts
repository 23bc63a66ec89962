/**
 * Stage partition: the main model's layers onto pipeline stages, contiguous and balanced by
 * estimated cost, with the embedding on the first stage and the output head and MTP modules on the
 * last (DualPipe's two directions and DualPipeV's V put both ends on the same ranks).
 *
 * Cost model: forward FLOPs per token, from the per-layer parameter figures of compiler/stats.ts
 * (`layerParamFigures`) and its FLOP convention — a matmul weight costs 2 FLOPs per token, the
 * attention core 2·heads·(d_qk + d_v)·ctx at the average causal context ctx = seqLen/2:
 * - dense layer: 2·(attention matmul + dense FFN) + core;
 * - MoE layer: 2·(attention matmul + (experts per token + shared)·expert + gate weight) + core;
 * - embedding: 0 (a lookup); head: 2·vocab·hidden;
 * - one MTP module: 2·(eh_proj + attention matmul + its FFN's active weights + vocab·hidden) + core.
 * Summed over the main model these are `computeStats`'s `forward` and `mtpForward` (a test checks).
 * The backward costs twice the forward everywhere, so balancing the forward balances the step.
 *
 * Partition: stage k holds layers [a_k, b_k] (at least one each), stage 0 also the embedding, the
 * last stage also the final norm, the head and every MTP module. Among the partitions that minimise
 * the largest stage cost, the one with the least sum of squared stage costs is taken (ties: the
 * earliest cut), by two exact dynamic programmes over (stage, layers so far): O(stages · layers²).
 */

import type { ModelSpec, Spec, TrainingSchedule } from "../spec.js";
import { attentionCoreFlopsPerToken, layerParamFigures } from "../stats.js";
import type { Partition, StageContents } from "./plan.js";

/** Forward FLOPs per token of each part of the model. */
export interface ModelCosts {
  /** Per main-model layer, in order. */
  layers: number[];
  kinds: ("dense" | "moe")[];
  embedding: number;
  /** Final norm and output head. */
  head: number;
  /** One MTP module. */
  mtpModule: number;
  mtpDepth: number;
}

export const COST_MODEL =
  "forward FLOPs per token: 2 per matmul weight (dense layer: attention + dense FFN; MoE layer: attention + " +
  "(experts per token + shared)·expert + gate; head: vocab·hidden; MTP module: eh_proj + attention + its FFN's " +
  "active weights + the shared head), plus the attention core 2·heads·(d_qk + d_v)·seqLen/2; embedding 0";

/** The kind of each main-model layer, from the layer pattern. */
export function layerKinds(model: ModelSpec): ("dense" | "moe")[] {
  const kinds: ("dense" | "moe")[] = new Array(model.layers);
  for (const run of model.layerPattern) for (let l = run.first; l <= run.last; l++) kinds[l] = run.kind;
  return kinds;
}

export function modelCosts(model: ModelSpec, seqLen: number): ModelCosts {
  const f = layerParamFigures(model);
  const core = attentionCoreFlopsPerToken(model.attention, seqLen / 2);
  const active = model.moe === null ? 0 : (model.moe.expertsPerToken + model.moe.sharedExperts) * f.expert;
  const dense = 2 * (f.attentionMatmul + f.denseFfn) + core;
  const moe = 2 * (f.attentionMatmul + active + f.gateWeight) + core;
  const kinds = layerKinds(model);
  const mtpFfn = f.mtpBlockIsMoe ? active + f.gateWeight : f.denseFfn;
  return {
    layers: kinds.map((k) => (k === "dense" ? dense : moe)),
    kinds,
    embedding: 0,
    head: 2 * f.table,
    mtpModule: 2 * (f.mtpEhProj + f.attentionMatmul + mtpFfn + f.table) + core,
    mtpDepth: model.mtp.depth,
  };
}

/**
 * Splits `costs.layers` into `stages` contiguous non-empty runs (see the module comment). Throws when
 * there are fewer layers than stages (the checker reports that as DSV5007 before a plan is built).
 */
export function partitionCosts(costs: ModelCosts, stages: number): { first: number; last: number }[] {
  const L = costs.layers.length;
  if (!Number.isInteger(stages) || stages < 1 || L < stages) {
    throw new Error(`partition: ${L} layers cannot fill ${stages} stages with at least one layer each`);
  }
  const prefix = new Float64Array(L + 1);
  for (let i = 0; i < L; i++) prefix[i + 1] = prefix[i]! + costs.layers[i]!;
  const tail = costs.head + costs.mtpDepth * costs.mtpModule;
  const stageCost = (k: number, j: number, i: number): number =>
    prefix[i]! - prefix[j]! + (k === 0 ? costs.embedding : 0) + (k === stages - 1 ? tail : 0);

  // Pass 1: the least achievable largest stage cost. best[k][i]: stages 0..k cover layers 0..i-1.
  const INF = Number.POSITIVE_INFINITY;
  let prev = new Float64Array(L + 1).fill(INF);
  for (let i = 1; i <= L; i++) prev[i] = stageCost(0, 0, i);
  for (let k = 1; k < stages; k++) {
    const cur = new Float64Array(L + 1).fill(INF);
    for (let i = k + 1; i <= L; i++) {
      let m = INF;
      for (let j = k; j < i; j++) {
        const v = Math.max(prev[j]!, stageCost(k, j, i));
        if (v < m) m = v;
      }
      cur[i] = m;
    }
    prev = cur;
  }
  const bound = prev[L]!;

  // Pass 2: under that bound, the least sum of squared stage costs; remember the cuts.
  const sq = new Float64Array((stages + 1) * (L + 1)).fill(INF);
  const cut = new Int32Array((stages + 1) * (L + 1)).fill(-1);
  const at = (k: number, i: number): number => k * (L + 1) + i;
  for (let i = 1; i <= L; i++) {
    const c = stageCost(0, 0, i);
    if (c <= bound) sq[at(0, i)] = c * c;
  }
  for (let k = 1; k < stages; k++) {
    for (let i = k + 1; i <= L; i++) {
      let m = INF;
      let arg = -1;
      for (let j = k; j < i; j++) {
        const before = sq[at(k - 1, j)]!;
        if (before === INF) continue;
        const c = stageCost(k, j, i);
        if (c > bound) continue;
        const v = before + c * c;
        if (v < m) {
          m = v;
          arg = j;
        }
      }
      sq[at(k, i)] = m;
      cut[at(k, i)] = arg;
    }
  }
  const runs: { first: number; last: number }[] = new Array(stages);
  let i = L;
  for (let k = stages - 1; k >= 0; k--) {
    const j = k === 0 ? 0 : cut[at(k, i)]!;
    if (j < 0) throw new Error("partition: internal error (no cut under the bound)");
    runs[k] = { first: j, last: i - 1 };
    i = j;
  }
  return runs;
}

/** The number of model chunks a training schedule's pipeline has: pp, or 2·pp for DualPipeV. */
export function stageCount(schedule: TrainingSchedule): number {
  return schedule.pipeline === "dualpipev" ? 2 * schedule.pp : schedule.pp;
}

/** Whether the first and the last stage run on the same ranks (so the MTP modules can use the embedding there). */
export function endsShareRanks(schedule: TrainingSchedule): boolean {
  return schedule.pipeline === "dualpipe" || schedule.pipeline === "dualpipev" || schedule.pp === 1;
}

/** Runs of layers from a list of layers per stage; throws unless it covers the model with non-empty stages. */
function runsOfSplit(layers: number, stages: number, layersPerStage: readonly number[]): { first: number; last: number }[] {
  const total = layersPerStage.reduce((a, b) => a + b, 0);
  if (layersPerStage.length !== stages || total !== layers || layersPerStage.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`partition: layers per stage [${layersPerStage.join(", ")}] must be ${stages} whole numbers ≥ 1 summing to ${layers}`);
  }
  let first = 0;
  return layersPerStage.map((n) => {
    const run = { first, last: first + n - 1 };
    first += n;
    return run;
  });
}

/**
 * The balanced partition of `spec`'s model for a training schedule, or the given split
 * (`layersPerStage`, one count per stage) with the same embedding/head/MTP placement.
 *
 * The balance depends on the sequence length (the attention core's cost grows with it while the
 * head's does not), so a longer sequence may move a layer between stages.
 */
export function partitionStages(spec: Spec, schedule: TrainingSchedule, layersPerStage?: readonly number[]): Partition {
  const stages = stageCount(schedule);
  const costs = modelCosts(spec.model, schedule.seqLen);
  const runs = layersPerStage === undefined ? partitionCosts(costs, stages) : runsOfSplit(spec.model.layers, stages, layersPerStage);
  const contents: StageContents[] = runs.map((run, k) => {
    let dense = 0;
    let moe = 0;
    let flops = 0;
    for (let l = run.first; l <= run.last; l++) {
      if (costs.kinds[l] === "dense") dense++;
      else moe++;
      flops += costs.layers[l]!;
    }
    const last = k === stages - 1;
    if (k === 0) flops += costs.embedding;
    if (last) flops += costs.head + costs.mtpDepth * costs.mtpModule;
    return {
      stage: k,
      layers: { first: run.first, last: run.last },
      denseLayers: dense,
      moeLayers: moe,
      embedding: k === 0,
      head: last,
      mtpModules: last ? costs.mtpDepth : 0,
      embeddingCopyForMtp: last && costs.mtpDepth > 0 && k !== 0 && !endsShareRanks(schedule),
      flopsPerToken: flops,
    };
  });
  const max = Math.max(...contents.map((s) => s.flopsPerToken));
  const mean = contents.reduce((a, s) => a + s.flopsPerToken, 0) / stages;
  return {
    stages: contents,
    maxStageFlops: max,
    meanStageFlops: Math.round(mean),
    imbalance: Math.round((max / mean) * 1e6) / 1e6,
    layersPerStage: contents.map((s) => s.layers.last - s.layers.first + 1),
    costModel: COST_MODEL,
  };
}
