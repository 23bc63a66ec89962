/**
 * compiler/plan: Spec + schedule name → Plan (stage partition, pipeline schedule, expert placement,
 * memory, traffic, per-rank programs), or coded diagnostics.
 *
 *   partition.ts (layers → stages) → pipeline/ (op lists, executed by simulate) → expert-assignment.ts
 *   (contiguous EP, or EPLB from a load profile) → expected-traffic.ts (all-to-all copies) →
 *   memory.ts (bytes per GPU) → programs.ts (per-rank op sequences with their transfers) → traffic.ts
 *
 * API for the CLI and the bundle:
 * - `buildPlan(spec, scheduleName)` → `{ plan, draft, diagnostics }`. `plan` is null whenever there
 *   is an error; `draft` is the computed plan even when it does not fit (null only when none could
 *   be computed), so `dsv3 plan` can still show where the memory goes.
 * - `planSummaryText(plan)` — the readable summary; `planJson(plan)` — the whole plan as JSON (one
 *   line, keys in a fixed order, newline-terminated); `planBundleFiles(plan)` — the `plan/` files of
 *   a bundle (path → contents).
 */

import { makeDiagnostic } from "../../dsl/diagnostic.js";
import type { Diagnostic } from "../../dsl/diagnostic.js";
import type { ServingSchedule, Spec, TrainingSchedule } from "../spec.js";
import { suggestionFix } from "../../dsl/suggest.js";
import { buildSchedule } from "./pipeline/build.js";
import { DEFAULT_COSTS } from "./pipeline/costs.js";
import { simulate } from "./pipeline/simulate.js";
import { placeExpertGroups, maxNodesUnderGroupLimit } from "./node-limited-routing.js";
import { partitionStages, layerKinds, stageCount } from "./partition.js";
import { epGroupShape, expectedCopies } from "./expected-traffic.js";
import type { ExpectedCopies } from "./expected-traffic.js";
import { servingExperts, trainingExperts } from "./expert-assignment.js";
import { MEMORY_RULES, formatBytes, servingGroupTokens, servingMemory, servingStage, trainingMemory } from "./memory.js";
import { RecipeBytes } from "./recipe-bytes.js";
import { servingProgram, trainingProgramId, trainingPrograms } from "./programs.js";
import { servingTraffic, trainingTraffic } from "./traffic.js";
import { PLAN_VERSION } from "./plan.js";
import type { LinkBytes, MemoryClass, Plan, PlanMemory, PlanTraffic, RankPlan } from "./plan.js";

export * from "./plan.js";
export { formatBytes } from "./memory.js";
export { planSummaryText } from "./summary-text.js";

export interface BuildPlanResult {
  /** The plan, or null when there is an error. */
  plan: Plan | null;
  /** The computed plan even when it does not fit in memory; null when none could be computed. */
  draft: Plan | null;
  diagnostics: Diagnostic[];
}

const TRAFFIC_MODEL =
  "expected value under uniform routing (expected-traffic.ts): a token's K picks are a uniform K-subset of the " +
  "expert slots on M uniformly chosen candidate nodes of its EP group; one copy per distinct target GPU, one IB " +
  "copy per remote node to the relay GPU with the sender's in-node index, NVLink from there (and on the sender's " +
  "node); dispatch FP8 with FP32 scales per 128 channels, combine BF16";

function link(copies: ExpectedCopies, tokens: number, bytesPerCopy: number): LinkBytes {
  return { nvlinkBytes: Math.round(copies.nvlink * tokens * bytesPerCopy), ibBytes: Math.round(copies.ib * tokens * bytesPerCopy) };
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

function planTraffic(copies: ExpectedCopies, dispatchCopy: number, combineCopy: number, tokens: number, perProgram: PlanTraffic["perProgram"]): PlanTraffic {
  return {
    copiesPerToken: {
      ib: round6(copies.ib),
      nvlink: round6(copies.nvlink),
      local: round6(copies.local),
      distinctGpus: round6(copies.distinctGpus),
      distinctNodes: round6(copies.distinctNodes),
    },
    dispatchBytesPerCopy: dispatchCopy,
    combineBytesPerCopy: combineCopy,
    tokensPerMicrobatch: tokens,
    perProgram,
    model: TRAFFIC_MODEL,
  };
}

/** Assembles the memory section from the classes and each GPU's class. */
function planMemory(classes: MemoryClass[], classOfGpu: (gpu: number) => number, gpus: number, budget: number): PlanMemory {
  const perGpu: PlanMemory["perGpu"] = [];
  let peakBytes = 0;
  let peakGpu = 0;
  for (let g = 0; g < gpus; g++) {
    const c = classes[classOfGpu(g)]!;
    perGpu.push({ gpu: g, class: c.id, totalBytes: c.totalBytes });
    if (c.totalBytes > peakBytes) {
      peakBytes = c.totalBytes;
      peakGpu = g;
    }
  }
  return { budgetBytes: budget, peakBytes, peakGpu, fits: peakBytes <= budget, classes, perGpu, rules: [...MEMORY_RULES] };
}

/** The DSV5501 diagnostic for the GPU with the largest total, when it exceeds its budget. */
function memoryDiagnostic(schedule: string, memory: PlanMemory, fix: (largest: string) => string): Diagnostic | null {
  if (memory.fits) return null;
  const cls = memory.classes.find((c) => c.id === memory.perGpu[memory.peakGpu]!.class)!;
  const top = [...cls.byCategory].sort((a, b) => b.bytes - a.bytes || a.category.localeCompare(b.category)).slice(0, 3);
  return makeDiagnostic(
    "DSV5501",
    null,
    {
      schedule,
      gpu: memory.peakGpu,
      where: cls.holds,
      need: formatBytes(cls.totalBytes),
      budget: formatBytes(memory.budgetBytes),
      items: top.map((c) => `${c.category.replace(/_/g, " ")} ${formatBytes(c.bytes)}`).join(", "),
    },
    fix(top[0]!.category),
  );
}

export interface BuildPlanOptions {
  /**
   * Training only: the layers of each pipeline stage (model chunk), in stage order, instead of the
   * cost-balanced partition. Must hold one whole number ≥ 1 per stage, summing to the model's
   * layers (an Error otherwise: this is an API option, not user input).
   */
  layersPerStage?: readonly number[];
}

export function buildPlan(spec: Spec, scheduleName: string, options: BuildPlanOptions = {}): BuildPlanResult {
  const schedule = spec.schedules.find((s) => s.name === scheduleName);
  if (schedule === undefined) {
    const names = spec.schedules.map((s) => s.name);
    const d = makeDiagnostic("DSV9002", null, { name: scheduleName, available: names.length ? names.join(", ") : "none" }, suggestionFix(scheduleName, names));
    return { plan: null, draft: null, diagnostics: [d] };
  }
  return schedule.kind === "training" ? buildTrainingPlan(spec, schedule, options) : buildServingPlan(spec, schedule);
}

function cluster(spec: Spec): Plan["cluster"] {
  const c = spec.cluster;
  return { name: c.name, gpu: c.gpu.name, gpusPerNode: c.gpusPerNode, nodes: c.nodes, hbmBytes: c.gpu.hbmBytes };
}

function trainingFix(schedule: TrainingSchedule, largest: string): string {
  if (largest === "activations") {
    const oneSequence = schedule.globalBatch / schedule.dp;
    const smaller =
      schedule.microbatchSize > 1
        ? `use smaller micro-batches (microbatches = ${oneSequence} gives one sequence of ${schedule.seqLen} tokens each), `
        : "";
    return `${smaller}use more pipeline stages (pp), a shorter seq_len, or recompute more (recompute = [rmsnorm, mla_up_proj, swiglu])`;
  }
  if (largest === "gradients" || largest === "master_weights" || largest === "optimizer_states") {
    return `shard more (zero = ${Math.min(3, Math.max(schedule.zero + 1, largest === "gradients" ? 2 : 1))}), or use more pipeline stages (pp) or a larger ep`;
  }
  return "use more pipeline stages (pp), a larger ep (fewer experts per GPU) or a larger tp";
}

function buildTrainingPlan(spec: Spec, schedule: TrainingSchedule, options: BuildPlanOptions): BuildPlanResult {
  const model = spec.model;
  const recipe = new RecipeBytes(spec.precision);
  const stages = stageCount(schedule);
  const pipeline = buildSchedule(schedule.pipeline, stages, schedule.microbatches);
  if ("error" in pipeline) throw new Error(`plan: the checked schedule '${schedule.name}' has no pipeline: ${pipeline.error.message}`);
  const run = simulate(pipeline, DEFAULT_COSTS);
  if (!run.ok) throw new Error(`plan: the ${pipeline.kind} schedule failed its execution check: ${run.failure.problems.slice(0, 4).join("; ")}`);
  const sim = run.sim;
  const partition = partitionStages(spec, schedule, options.layersPerStage);

  const tokens = schedule.microbatchSize * schedule.seqLen;
  const tp = schedule.tp;
  const seqTokens = schedule.sp ? Math.ceil(tokens / tp) : tokens;
  const moeTokens = Math.ceil(tokens / tp);
  const p2pBytes = seqTokens * model.hidden * 2;

  // All-to-all: expected copies of one token per MoE layer.
  const moe = model.moe;
  let copies: ExpectedCopies = { ib: 0, nvlink: 0, local: 0, distinctGpus: 0, distinctNodes: 0 };
  if (moe !== null) {
    const shape = epGroupShape(schedule.ep, spec.cluster.gpusPerNode);
    let reachable = shape.nodes;
    if (moe.gate.groups > 1 && schedule.ep % spec.cluster.gpusPerNode === 0 && moe.routedExperts % moe.gate.groups === 0) {
      reachable = maxNodesUnderGroupLimit(placeExpertGroups(moe.routedExperts, moe.gate.groups, schedule.ep, spec.cluster.gpusPerNode), moe.gate.topGroups);
    }
    copies = expectedCopies({
      slotsPerGpu: moe.routedExperts / schedule.ep,
      ep: schedule.ep,
      gpusPerNode: spec.cluster.gpusPerNode,
      picks: moe.expertsPerToken,
      candidateNodes: Math.min(schedule.nodeLimit ?? reachable, reachable),
    });
  }
  const dispatchCopy = recipe.dispatchCopy(model.hidden);
  const combineCopy = recipe.combineCopy(model.hidden);
  const dispatch = link(copies, moeTokens, dispatchCopy);
  const combine = link(copies, moeTokens, combineCopy);

  const ranksMemory = trainingMemory({ spec, schedule, partition, pipeline, sim, combinePerLayer: combine, p2pBytes, tokens: { tokens, tp, sp: schedule.sp } });
  const programs = trainingPrograms(pipeline, sim, p2pBytes);
  const perRank = tp * schedule.dp;
  const gpus = schedule.worldSize;
  const ranks: RankPlan[] = [];
  for (let g = 0; g < gpus; g++) {
    const pp = Math.floor(g / perRank);
    const i = g - pp * perRank;
    ranks.push({
      gpu: g,
      node: Math.floor(g / spec.cluster.gpusPerNode),
      localGpu: g % spec.cluster.gpusPerNode,
      pp,
      dp: Math.floor(i / tp),
      tp: i % tp,
      epGroup: Math.floor(i / schedule.ep),
      ep: i % schedule.ep,
      program: trainingProgramId(pp),
      memoryClass: ranksMemory[pp]!.memoryClass.id,
    });
  }
  const memory = planMemory(
    ranksMemory.map((r) => r.memoryClass),
    (g) => Math.floor(g / perRank),
    gpus,
    spec.cluster.gpu.hbmBytes,
  );
  const perProgram = programs.map((program, r) =>
    trainingTraffic({
      schedule,
      pipeline,
      partition,
      program,
      groups: ranksMemory[r]!.groups,
      gradientBytesPerParam: recipe.gradientBytes,
      mtpIsMoe: moe !== null,
      dispatch,
      combine,
      hidden: model.hidden,
      tokens,
    }),
  );
  const notes = [
    `${schedule.pipeline}: ${stages} stages on ${pipeline.ranks} pipeline ranks; layers per stage ${partition.layersPerStage.join(", ")} ` +
      `(embedding on stage 0; head${model.mtp.depth > 0 ? ` and ${model.mtp.depth} MTP module(s)` : ""} on stage ${stages - 1})`,
    `activation peaks from executing the schedule with costs F=${DEFAULT_COSTS.F}, B=${DEFAULT_COSTS.B}, W=${DEFAULT_COSTS.W}, F&B=${DEFAULT_COSTS.FB} (stages balanced by FLOPs)`,
    `micro-batch: ${schedule.microbatchSize} sequence(s) × ${schedule.seqLen} tokens = ${tokens} tokens per data-parallel rank`,
    `rank layout: gpu = pp·${perRank} + dp·${tp} + tp; EP groups of ${schedule.ep} consecutive GPUs inside a pipeline rank`,
  ];
  if (partition.stages.some((s) => s.embeddingCopyForMtp)) notes.push("the last stage keeps a copy of the embedding for the MTP modules (its gradient is summed with stage 0's)");
  const plan: Plan = {
    planVersion: PLAN_VERSION,
    model: model.name,
    schedule: {
      name: schedule.name,
      kind: "training",
      pipeline: schedule.pipeline,
      stages,
      pipelineRanks: pipeline.ranks,
      microbatches: schedule.microbatches,
      tokensPerMicrobatch: tokens,
      tp,
      dp: schedule.dp,
      ep: schedule.ep,
      zero: schedule.zero,
    },
    cluster: cluster(spec),
    gpus,
    partition,
    ranks,
    programs,
    experts: trainingExperts(spec, schedule),
    memory,
    traffic: planTraffic(copies, dispatchCopy, combineCopy, moeTokens, perProgram),
    notes,
  };
  const d = memoryDiagnostic(schedule.name, memory, (largest) => trainingFix(schedule, largest));
  return d === null ? { plan, draft: plan, diagnostics: [] } : { plan: null, draft: plan, diagnostics: [d] };
}

function buildServingPlan(spec: Spec, schedule: ServingSchedule): BuildPlanResult {
  const model = spec.model;
  const recipe = new RecipeBytes(spec.precision);
  const moe = model.moe;
  const placed = servingExperts(spec, schedule);
  if (placed !== null && "error" in placed) {
    return { plan: null, draft: null, diagnostics: [makeDiagnostic("DSV5503", null, { schedule: schedule.name, message: placed.error }, placed.fix)] };
  }
  const tp = schedule.attention.tp;
  const groupTokens = servingGroupTokens(schedule);
  const moeTokens = Math.ceil(groupTokens / tp);
  let copies: ExpectedCopies = { ib: 0, nvlink: 0, local: 0, distinctGpus: 0, distinctNodes: 0 };
  if (moe !== null && placed !== null) {
    copies = expectedCopies({
      slotsPerGpu: placed.plan.slotsPerGpu,
      ep: schedule.moe.ep,
      gpusPerNode: spec.cluster.gpusPerNode,
      picks: moe.expertsPerToken + (schedule.moe.sharedAsRouted ? moe.sharedExperts : 0),
      candidateNodes: placed.candidateNodes,
    });
  }
  const dispatchCopy = recipe.dispatchCopy(model.hidden);
  const combineCopy = recipe.combineCopy(model.hidden);
  const dispatch = link(copies, moeTokens, dispatchCopy);
  const combine = link(copies, moeTokens, combineCopy);
  const slots = placed?.plan.slotsPerGpu ?? 0;
  const { memoryClass } = servingMemory({ spec, schedule, slotsPerGpu: slots, combinePerLayer: combine });
  const stage = servingStage(spec, schedule);
  const kinds = layerKinds(model);
  const program = servingProgram({
    kind: schedule.kind,
    layerKinds: kinds,
    mtpModules: stage.mtpModules,
    mtpIsMoe: moe !== null,
    microbatches: schedule.microbatches,
    dispatch,
    combine,
  });
  const gpus = schedule.gpus;
  const ep = schedule.moe.ep;
  const ranks: RankPlan[] = [];
  for (let g = 0; g < gpus; g++) {
    ranks.push({
      gpu: g,
      node: Math.floor(g / spec.cluster.gpusPerNode),
      localGpu: g % spec.cluster.gpusPerNode,
      pp: 0,
      dp: Math.floor(g / tp),
      tp: g % tp,
      epGroup: Math.floor(g / ep),
      ep: g % ep,
      program: program.id,
      memoryClass: memoryClass.id,
    });
  }
  const memory = planMemory([memoryClass], () => 0, gpus, spec.cluster.gpu.hbmBytes);
  const moeLayers = placed?.plan.layers.length ?? 0;
  const traffic = planTraffic(copies, dispatchCopy, combineCopy, moeTokens, [
    servingTraffic({ moeLayers, layers: model.layers + stage.mtpModules, microbatches: schedule.microbatches, dispatch, combine, tp, groupTokens, hidden: model.hidden }),
  ]);
  const notes = [
    `${schedule.kind}: attention TP${tp}${schedule.attention.sp ? "+SP" : ""} × DP${schedule.attention.dp}, MoE EP${ep}; ` +
      `batch_per_gpu = ${schedule.batchPerGpu} sequences per attention group (its TP ranks split the heads and, with SP, the tokens)`,
    `${schedule.microbatches} micro-batch(es) of ${groupTokens} tokens per attention group; dense FFN layers${schedule.moe.sharedAsRouted ? "" : " and shared experts"} whole on every GPU`,
  ];
  if (placed?.plan.loadProfile) notes.push(placed.plan.loadProfile.note);
  const plan: Plan = {
    planVersion: PLAN_VERSION,
    model: model.name,
    schedule: {
      name: schedule.name,
      kind: schedule.kind,
      pipeline: null,
      stages: 1,
      pipelineRanks: 1,
      microbatches: schedule.microbatches,
      tokensPerMicrobatch: groupTokens,
      tp,
      dp: schedule.attention.dp,
      ep,
      zero: 0,
    },
    cluster: cluster(spec),
    gpus,
    partition: null,
    ranks,
    programs: [program],
    experts: placed?.plan ?? null,
    memory,
    traffic,
    notes,
  };
  const kv = memoryClass.kvCache!;
  const nonKv = memoryClass.totalBytes - kv.neededTokens * kv.bytesPerToken;
  if (nonKv > memory.budgetBytes) {
    const d = memoryDiagnostic(schedule.name, { ...memory, fits: false }, () =>
      "use a larger ep (fewer expert slots per GPU), fewer redundant experts, a larger attention tp, or fewer sequences per GPU",
    )!;
    return { plan: null, draft: plan, diagnostics: [d] };
  }
  if (!memory.fits) {
    const fitBatch = Math.floor(kv.capacityTokens / schedule.seqLen);
    const d = makeDiagnostic(
      "DSV5502",
      null,
      {
        schedule: schedule.name,
        need: kv.neededTokens,
        detail: `batch_per_gpu ${schedule.batchPerGpu} × seq_len ${schedule.seqLen}, ${kv.bytesPerToken} B per token`,
        gpu: 0,
        capacity: kv.capacityTokens,
      },
      fitBatch >= 1
        ? `use batch_per_gpu ≤ ${fitBatch}, a shorter seq_len, or free memory (a larger ep, fewer redundant experts)`
        : "free memory (a larger ep, fewer redundant experts, a larger attention tp) or use a shorter seq_len",
    );
    return { plan: null, draft: plan, diagnostics: [d] };
  }
  return { plan, draft: plan, diagnostics: [] };
}

/** The whole plan as JSON: one line, keys in the contract's order, newline-terminated. */
export function planJson(plan: Plan): string {
  return JSON.stringify(plan) + "\n";
}

/**
 * The `plan/` files of a bundle: `plan/plan.json` (everything but the programs' op lists and the
 * expert slot tables, with each program listed by id and file), `plan/programs/<id>.json` (one per
 * distinct program) and `plan/experts.json` (when the model has experts).
 */
export function planBundleFiles(plan: Plan): Map<string, string> {
  const files = new Map<string, string>();
  const programs = plan.programs.map((p) => ({ id: p.id, kind: p.kind, file: `plan/programs/${p.id}.json`, ops: p.ops.length }));
  const { experts, ...rest } = plan;
  const summary = {
    ...rest,
    programs,
    experts: experts === null ? null : { file: "plan/experts.json", policy: experts.policy, epSize: experts.epSize, slotsPerGpu: experts.slotsPerGpu, layers: experts.layers.length },
  };
  files.set("plan/plan.json", JSON.stringify(summary) + "\n");
  for (const p of plan.programs) files.set(`plan/programs/${p.id}.json`, JSON.stringify(p) + "\n");
  if (experts !== null) files.set("plan/experts.json", JSON.stringify(experts) + "\n");
  return files;
}
