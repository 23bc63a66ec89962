/**
 * RankWeights: what one GPU of a plan holds, and the one function every rank's weights come through.
 *
 * The executor never reads the full model's weights: each virtual rank gets its `RankWeights` from a
 * {@link RankWeightSource}, `(gpu) => RankWeights`. The default source ({@link slicedWeightSource})
 * cuts the single-device weights (model-weights.ts) per the plan; a per-rank checkpoint shard
 * (`dsv3 shard`, issue 9) can be connected instead by writing a source that reads GPU g's shard and
 * returns the same structure. The layout a shard must fill:
 *
 * - `stages`: the pipeline stages (model chunks) the GPU runs, ascending (training: the program's
 *   stages — two for DualPipe and DualPipeV; serving: one stage 0 holding everything). A stage holds
 *   `layers` (main-model layers in order), and per its StageContents the embedding (`embed`, stage 0,
 *   and on the last stage when it runs MTP modules), the final norm and head (`finalNorm`, `head`,
 *   last stage) and the MTP modules (`mtp`). The same tensor object may appear in two stages of one
 *   GPU (DualPipe's rank 0 holds stage 0's embedding and uses it for the last stage's MTP module);
 *   the executor keeps one gradient per tensor object.
 * - Vocabulary parallelism: `embed` and `head` are the rows [first, first + count) of the
 *   vocab × hidden tables, block `tpIndex` of `vocabTp` equal blocks.
 * - Attention TP: `mla` holds heads [heads.first, heads.first + heads.count): q_b_proj (or q_proj)
 *   and kv_b_proj rows of those heads, o_proj's columns of those heads; q_a_proj, q_a_layernorm,
 *   kv_a_proj_with_mqa and kv_a_layernorm whole (every TP rank computes the shared latent).
 * - FFN TP (`ffnTp`: training's tp; 1 when serving): the dense MLP's and the shared experts' gate and
 *   up rows and down columns of intermediate block `tpIndex`.
 * - Experts: `experts.logical[s]` is the logical expert in local slot s (EP rank `ep` holds the
 *   plan's slots [ep·slotsPerGpu, (ep+1)·slotsPerGpu)); packed `gate`/`up` (slots × inter × hidden)
 *   and `down` (slots × hidden × inter). A redundant replica is a second copy of an expert's weights.
 *   Shared experts served as routed are logical experts numbered after the routed ones.
 * - The router (`router`, experts × hidden) and its selection bias (`gateBias`) are whole.
 * All tensors are FP32 (the executor's working precision; the FP8 recipe is not applied on the CPU).
 */
import type { Plan, StageContents } from "../../../compiler/plan/plan.js";
import type { Spec } from "../../../compiler/spec.js";
import type { MlaWeights, MtpWeights, SwigluMlpWeights } from "../../../backends/reference/ops/index.js";
import { layerKinds, type ModelWeights } from "../model-weights.js";

type F32 = Float32Array;

export interface VocabShard {
  first: number;
  count: number;
  /** count × hidden. */
  table: F32;
}

export interface RankExpertWeights {
  /** Logical expert of each local slot. */
  logical: Int32Array;
  gate: F32;
  up: F32;
  down: F32;
}

export interface RankLayerWeights {
  /** Main-model layer, or `layers + k` for MTP module k's block. */
  layer: number;
  kind: "dense" | "moe";
  attnNorm: F32;
  heads: { first: number; count: number };
  mla: MlaWeights<F32>;
  ffnNorm: F32;
  /** Intermediate block of the dense MLP / shared experts on this GPU. */
  ffnSlice: { first: number; count: number };
  dense: SwigluMlpWeights<F32> | null;
  router: F32 | null;
  gateBias: F32 | null;
  /** The shared experts as one MLP (sliced like the dense one); null when none or served as routed. */
  shared: SwigluMlpWeights<F32> | null;
  experts: RankExpertWeights | null;
}

export interface RankMtpWeights {
  /** 0-based module index. */
  module: number;
  proj: MtpWeights<F32>;
  block: RankLayerWeights;
}

export interface RankStageWeights {
  stage: number;
  embed: VocabShard | null;
  layers: RankLayerWeights[];
  finalNorm: F32 | null;
  head: VocabShard | null;
  mtp: RankMtpWeights[];
}

export interface RankWeights {
  gpu: number;
  /** TP index, TP size of attention and vocab, TP size of the FFN (dense MLP and shared experts). */
  tpIndex: number;
  tp: number;
  ffnTp: number;
  stages: RankStageWeights[];
}

/** Where each rank's weights come from. */
export type RankWeightSource = (gpu: number) => RankWeights;

/** What a GPU holds under the plan (shared by the slicer and the executors). */
export interface RankHoldings {
  stages: StageContents[];
  tpIndex: number;
  tp: number;
  ffnTp: number;
  /** EP rank and slots per GPU; the logical expert of every slot of MoE layer `layer`. */
  ep: number;
  slotsPerGpu: number;
  slotsOf: (layer: number) => readonly number[];
}

/** The serving stage: every layer, embedding, head and the MTP modules used for speculation. */
function servingStageOf(spec: Spec, mtpModules: number): StageContents {
  const kinds = layerKinds(spec.model);
  return {
    stage: 0,
    layers: { first: 0, last: spec.model.layers - 1 },
    denseLayers: kinds.filter((k) => k === "dense").length,
    moeLayers: kinds.filter((k) => k === "moe").length,
    embedding: true,
    head: true,
    mtpModules,
    embeddingCopyForMtp: false,
    flopsPerToken: 0,
  };
}

export function rankHoldings(spec: Spec, plan: Plan, gpu: number): RankHoldings {
  const rank = plan.ranks[gpu];
  if (rank === undefined) throw new RangeError(`rank weights: the plan has no GPU ${gpu}`);
  const experts = plan.experts;
  const slotsOf = (layer: number): readonly number[] => {
    if (experts === null) return [];
    const i = experts.sameForAllLayers ? 0 : experts.layers.indexOf(layer);
    const row = experts.slots[i];
    if (row === undefined) throw new RangeError(`rank weights: no expert placement for layer ${layer}`);
    return row;
  };
  const serving = plan.schedule.kind !== "training";
  let stages: StageContents[];
  if (serving) {
    const mtp = plan.experts ? plan.experts.layers.filter((l) => l >= spec.model.layers).length : 0;
    const servingSchedule = spec.schedules.find((s) => s.name === plan.schedule.name);
    const speculation = servingSchedule && servingSchedule.kind !== "training" ? Math.min(servingSchedule.mtpSpeculation, spec.model.mtp.depth) : mtp;
    stages = [servingStageOf(spec, speculation)];
  } else {
    const program = plan.programs.find((p) => p.id === rank.program);
    if (program === undefined || program.kind !== "training") throw new RangeError(`rank weights: GPU ${gpu} has no training program`);
    const ids = [...new Set(program.stages.map((s) => s.stage))].sort((a, b) => a - b);
    stages = ids.map((s) => plan.partition!.stages[s]!);
  }
  return {
    stages,
    tpIndex: rank.tp,
    tp: plan.schedule.tp,
    ffnTp: serving ? 1 : plan.schedule.tp,
    ep: rank.ep,
    slotsPerGpu: experts?.slotsPerGpu ?? 0,
    slotsOf,
  };
}

function rowSlice(x: F32, rowLen: number, first: number, count: number): F32 {
  return x.slice(first * rowLen, (first + count) * rowLen);
}

function colSlice(x: F32, rows: number, cols: number, first: number, count: number): F32 {
  const out = new Float32Array(rows * count);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * cols + first, r * cols + first + count), r * count);
  return out;
}

function sliceMlp(w: SwigluMlpWeights<F32>, hidden: number, inter: number, first: number, count: number): SwigluMlpWeights<F32> {
  return { gate: rowSlice(w.gate, hidden, first, count), up: rowSlice(w.up, hidden, first, count), down: colSlice(w.down, hidden, inter, first, count) };
}

/**
 * The default source: slices the single-device weights per the plan (see the file comment). The
 * result of each call is fresh (the executor may keep gradients beside it).
 */
/**
 * A GPU's expert slots of one MoE layer packed slot by slot: slot s holds logical expert
 * `slots[ep·slotsPerGpu + s]`, whose SwiGLU matrices (`n` elements each) `expert(e)` gives.
 */
export function packExpertSlots(slots: ArrayLike<number>, ep: number, slotsPerGpu: number, n: number, expert: (e: number) => SwigluMlpWeights<F32>): RankExpertWeights {
  const logical = new Int32Array(slotsPerGpu);
  const gate = new Float32Array(slotsPerGpu * n);
  const up = new Float32Array(slotsPerGpu * n);
  const down = new Float32Array(slotsPerGpu * n);
  for (let s = 0; s < slotsPerGpu; s++) {
    const e = slots[ep * slotsPerGpu + s]!;
    logical[s] = e;
    const w = expert(e);
    gate.set(w.gate, s * n);
    up.set(w.up, s * n);
    down.set(w.down, s * n);
  }
  return { logical, gate, up, down };
}

export function slicedWeightSource(spec: Spec, plan: Plan, full: ModelWeights<F32>): RankWeightSource {
  const model = spec.model;
  const d = model.hidden;
  const a = model.attention;
  if (a.kind !== "mla") throw new RangeError("rank weights: MLA attention only");
  const kinds = layerKinds(model);
  const qk = a.qkNopeHeadDim + a.qkRopeHeadDim;
  const nv = a.qkNopeHeadDim + a.vHeadDim;
  const moe = model.moe;
  return (gpu) => {
    const h = rankHoldings(spec, plan, gpu);
    const headCount = a.heads / h.tp;
    const heads = { first: h.tpIndex * headCount, count: headCount };
    const vocabCount = model.vocab / h.tp;
    const vocab = (table: F32): VocabShard => ({ first: h.tpIndex * vocabCount, count: vocabCount, table: rowSlice(table, d, h.tpIndex * vocabCount, vocabCount) });
    const layer = (src: ModelWeights<F32>["layers"][number], id: number, kind: "dense" | "moe"): RankLayerWeights => {
      const m = src.mla;
      const mla: MlaWeights<F32> = {
        qA: m.qA === null ? null : m.qA.slice(),
        qANorm: m.qANorm === null ? null : m.qANorm.slice(),
        qB: m.qB === null ? null : rowSlice(m.qB, a.qLoraRank!, heads.first * qk, heads.count * qk),
        q: m.q === null ? null : rowSlice(m.q, d, heads.first * qk, heads.count * qk),
        kvA: m.kvA.slice(),
        kvANorm: m.kvANorm.slice(),
        kvB: rowSlice(m.kvB, a.kvLoraRank, heads.first * nv, heads.count * nv),
        o: colSlice(m.o, d, a.heads * a.vHeadDim, heads.first * a.vHeadDim, heads.count * a.vHeadDim),
      };
      let ffnSlice = { first: 0, count: 0 };
      let dense: SwigluMlpWeights<F32> | null = null;
      let shared: SwigluMlpWeights<F32> | null = null;
      let experts: RankExpertWeights | null = null;
      if (kind === "dense") {
        const inter = model.denseFfn!.intermediate;
        ffnSlice = { first: (h.tpIndex % h.ffnTp) * (inter / h.ffnTp), count: inter / h.ffnTp };
        if (h.ffnTp === 1) ffnSlice.first = 0;
        dense = sliceMlp(src.dense!, d, inter, ffnSlice.first, ffnSlice.count);
      } else {
        const mo = moe!;
        const sharedInter = mo.sharedExperts * mo.expertIntermediate;
        const slots = h.slotsOf(id);
        const sharedAsRouted = plan.experts?.sharedAsRouted ?? false;
        if (sharedInter > 0 && !sharedAsRouted) {
          const count = sharedInter / h.ffnTp;
          ffnSlice = { first: h.ffnTp === 1 ? 0 : h.tpIndex * count, count };
          shared = sliceMlp(src.moe!.shared!, d, sharedInter, ffnSlice.first, count);
        }
        const n = mo.expertIntermediate * d;
        const moeSrc = src.moe!;
        // A slot past the routed experts holds a shared expert served as routed: block j of the shared MLP.
        experts = packExpertSlots(slots, h.ep, h.slotsPerGpu, n, (e) =>
          e < mo.routedExperts
            ? { gate: moeSrc.gate.subarray(e * n, (e + 1) * n), up: moeSrc.up.subarray(e * n, (e + 1) * n), down: moeSrc.down.subarray(e * n, (e + 1) * n) }
            : sliceMlp(moeSrc.shared!, d, sharedInter, (e - mo.routedExperts) * mo.expertIntermediate, mo.expertIntermediate),
        );
      }
      return {
        layer: id,
        kind,
        attnNorm: src.attnNorm.slice(),
        heads,
        mla,
        ffnNorm: src.ffnNorm.slice(),
        ffnSlice,
        dense,
        router: src.gate === null ? null : src.gate.slice(),
        gateBias: src.gateBias === null ? null : src.gateBias.slice(),
        shared,
        experts,
      };
    };
    let embedShard: VocabShard | null = null;
    const embed = (): VocabShard => (embedShard ??= vocab(full.embed));
    const stages: RankStageWeights[] = h.stages.map((s) => {
      const layers: RankLayerWeights[] = [];
      for (let l = s.layers.first; l <= s.layers.last; l++) layers.push(layer(full.layers[l]!, l, kinds[l]!));
      const mtp: RankMtpWeights[] = [];
      for (let k = 0; k < s.mtpModules; k++) {
        const m = full.mtp[k]!;
        mtp.push({
          module: k,
          proj: { enorm: m.proj.enorm.slice(), hnorm: m.proj.hnorm.slice(), ehProj: m.proj.ehProj.slice(), headNorm: m.proj.headNorm.slice() },
          block: layer(m.block, model.layers + k, moe !== null ? "moe" : "dense"),
        });
      }
      return {
        stage: s.stage,
        embed: s.embedding || s.mtpModules > 0 ? embed() : null,
        layers,
        finalNorm: s.head ? full.finalNorm.slice() : null,
        head: s.head ? vocab(full.head) : null,
        mtp,
      };
    });
    return { gpu, tpIndex: h.tpIndex, tp: h.tp, ffnTp: h.ffnTp, stages };
  };
}
