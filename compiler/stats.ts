/**
 * Model analytics: parameter counts, KV-cache size and FLOPs per token, computed from a Spec alone.
 *
 * Everything here is closed-form arithmetic over the layer runs of `spec.model.layerPattern`, so the
 * cost is O(number of runs) whatever the number of layers or experts: nothing is allocated per layer
 * or per expert. The result is plain JSON (numbers and strings, keys in a fixed order), so two calls
 * on the same Spec serialise byte-identically.
 *
 * Parameter conventions (the ones FACTS.md's figures use):
 * - `total` counts every weight tensor of the main model once: the embedding table and the output
 *   head each once (once in all when tied), per layer the input and post-attention RMSNorms, the
 *   attention (for MLA including the RMSNorms on the two compressed latents), the FFN (dense or MoE:
 *   routed experts, shared experts, gate weight and, only with bias balancing, the gate's per-expert
 *   bias), and the final norm. FP8 scale tensors and the MTP modules are not counted.
 * - Parameters are JavaScript numbers. Sums and products of non-negative integers stay exact while
 *   the result is at most 2^53 − 1; since every intermediate term is at most the figure it feeds,
 *   `params.approximate` is true exactly when some reported figure exceeds
 *   `Number.MAX_SAFE_INTEGER` (the figures are then correctly rounded doubles, not exact counts).
 */

import type {
  Activation,
  AttentionSpec,
  DenseFfnSpec,
  LayerKind,
  ModelSpec,
  MoeSpec,
  ScheduleSpec,
  Spec,
} from "./spec.js";

/** What the model is; the layer counts are taken from `layerPattern`. */
export interface ModelStats {
  name: string;
  vocab: number;
  hidden: number;
  /** denseLayers + moeLayers (equal to `model.layers` for a valid Spec). */
  layers: number;
  denseLayers: number;
  moeLayers: number;
  attention: AttentionSpec["kind"];
}

/** Names of the breakdown entries, in the order they are reported. */
export type ParamComponent =
  | "embedding"
  | "output_head"
  | "attention"
  | "dense_ffn"
  | "moe_routed_experts"
  | "moe_shared_experts"
  | "moe_gate"
  | "norms"
  | "mtp";

/** One entry of the parameter breakdown. */
export interface ParamBreakdownEntry {
  component: ParamComponent;
  params: number;
  /**
   * True for the main-model components, whose `params` sum to `ParamStats.total`; false for `mtp`,
   * which is reported beside the main model, not in it.
   */
  inTotal: boolean;
}

export interface ParamStats {
  /** Every weight tensor of the main model (see the module comment); MTP excluded. */
  total: number;
  /**
   * Parameters one token activates, excluding the embedding table and including the output head:
   * all of a dense layer; for a MoE layer its attention, norms, gate (and gate bias) and the
   * `expertsPerToken + sharedExperts` experts it runs; the final norm; the head.
   */
  active: number;
  /**
   * `active` plus the embedding table. With tied embeddings the table is the output head, which
   * `active` already counts, so then `activeWithEmbedding === active`.
   */
  activeWithEmbedding: number;
  /**
   * The MTP modules' own parameters: depth × (enorm + hnorm + eh_proj (2·hidden → hidden) + one
   * transformer block (MoE when the model has MoE, else dense) + shared_head norm). The embedding and
   * output head they share with the main model are not counted.
   */
  mtp: number;
  /** True when some figure exceeds Number.MAX_SAFE_INTEGER and so may be rounded. */
  approximate: boolean;
  /**
   * Ordered: embedding, output_head, attention (all layers, MLA latent norms included), dense_ffn,
   * moe_routed_experts, moe_shared_experts, moe_gate (weights and bias), norms (per-layer input and
   * post-attention norms, and the final norm), mtp. Every entry is present (zero when the model has
   * none; `output_head` is zero when tied, the table being counted once under `embedding`).
   */
  breakdown: ParamBreakdownEntry[];
}

/** KV cache per token; "bytes" are storage bytes of the cached keys and values only. */
export interface KvCacheStats {
  /** MLA: kv_lora_rank + qk_rope_head_dim; MHA/GQA: 2 · kvHeads · headDim. */
  elementsPerTokenPerLayer: number;
  elementsPerToken: number;
  bytesPerTokenPerLayerBf16: number;
  bytesPerTokenBf16: number;
  bytesPerTokenPerLayerFp8: number;
  bytesPerTokenFp8: number;
  /** The FP8 cache layout the FP8 figures assume. */
  fp8Layout: string;
}

/** FLOPs per trained (or prefilled) token at a given sequence length. */
export interface FlopStats {
  /** The schedule whose `seqLen` was used, or null when the Spec has none (then seqLen = 4096). */
  schedule: string | null;
  seqLen: number;
  /** forwardMatmul + forwardAttention. */
  forward: number;
  /** 2 × the matmul weights one token touches in the main model (output head included). */
  forwardMatmul: number;
  /** The attention core (QKᵀ and AV) of every main-model layer at average causal context seqLen/2. */
  forwardAttention: number;
  /** The forward pass of all MTP modules (eh_proj, its block, the shared head run again). */
  mtpForward: number;
  /** 3 × (forward + mtpForward): the backward pass costs twice the forward. */
  training: number;
  convention: string;
}

export interface Stats {
  model: ModelStats;
  params: ParamStats;
  kvCache: KvCacheStats;
  flopsPerToken: FlopStats;
}

export interface StatsOptions {
  /** Name of the schedule whose `seqLen` the FLOP figures use (default: see `computeStats`). */
  schedule?: string;
}

/** The sequence length used when the Spec has no schedule at all. */
const DEFAULT_SEQ_LEN = 4096;

/** Elements sharing one FP32 scale in the FP8 KV-cache layouts. */
const FP8_CACHE_SCALE_GROUP = 128;

const BF16_BYTES = 2;
const FP8_BYTES = 1;
const FP32_BYTES = 4;

const MLA_FP8_LAYOUT =
  "MLA: the kv_lora_rank latent in E4M3 (1 B/element) with one FP32 scale per 128 latent elements " +
  "(rounded up), the qk_rope key kept in BF16 (2 B/element), as FlashMLA's FP8 cache; " +
  "bytes per layer-token = kvLoraRank + 4·ceil(kvLoraRank/128) + 2·qkRopeHeadDim";

const MHA_FP8_LAYOUT =
  "MHA/GQA: every cached K and V element in E4M3 (1 B/element) with one FP32 scale per 128 " +
  "elements of each head (rounded up per head); " +
  "bytes per layer-token = 2·kvHeads·(headDim + 4·ceil(headDim/128))";

const FLOP_CONVENTION =
  "A matmul of m×k by k×n costs 2·m·k·n FLOPs. forwardMatmul = 2 × the matmul weights one token " +
  "touches (the activated parameters minus RMSNorm weights and the gate bias; output head " +
  "included, embedding lookup free). forwardAttention = per layer 2·heads·d_qk·ctx (QKᵀ) + " +
  "2·heads·d_v·ctx (AV) with average causal context ctx = seqLen/2 (MLA in training form: " +
  "d_qk = qk_nope + qk_rope, d_v = v_head; MHA/GQA: d_qk = d_v = headDim). mtpForward = the same " +
  "for every MTP module (eh_proj, its transformer block, the shared output head run again). " +
  "training = 3 × (forward + mtpForward).";

/** Weight matrices of one FFN of the given activation: SwiGLU gate/up/down, GELU up/down. */
function ffnMatrices(activation: Activation): number {
  return activation === "swiglu" ? 3 : 2;
}

/** Attention parameters of one layer, split into matmul weights and (MLA latent) norm weights. */
interface AttentionParams {
  matmul: number;
  norms: number;
}

/**
 * One layer's attention parameters. MLA: q_a_proj, q_a_layernorm and q_b_proj (or a full-rank q_proj
 * when qLoraRank is null), kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj. MHA/GQA: q, k, v
 * and o projections without biases.
 */
function attentionParams(attention: AttentionSpec, hidden: number): AttentionParams {
  if (attention.kind === "mla") {
    const { heads, qLoraRank, kvLoraRank, qkNopeHeadDim, qkRopeHeadDim, vHeadDim } = attention;
    const qHeadDim = qkNopeHeadDim + qkRopeHeadDim;
    const query =
      qLoraRank === null
        ? hidden * heads * qHeadDim
        : hidden * qLoraRank + qLoraRank * heads * qHeadDim;
    const keyValue = hidden * (kvLoraRank + qkRopeHeadDim) + kvLoraRank * heads * (qkNopeHeadDim + vHeadDim);
    const output = heads * vHeadDim * hidden;
    return { matmul: query + keyValue + output, norms: kvLoraRank + (qLoraRank ?? 0) };
  }
  const { heads, kvHeads, headDim } = attention;
  const matmul = 2 * hidden * heads * headDim + 2 * hidden * kvHeads * headDim;
  return { matmul, norms: 0 };
}

/** The attention core's FLOPs for one token in one layer at average causal context `ctx`. */
function attentionCoreFlops(attention: AttentionSpec, ctx: number): number {
  const [qkDim, vDim] =
    attention.kind === "mla"
      ? [attention.qkNopeHeadDim + attention.qkRopeHeadDim, attention.vHeadDim]
      : [attention.headDim, attention.headDim];
  return 2 * attention.heads * (qkDim + vDim) * ctx;
}

/** Parameters of the FFN of one dense layer. */
function denseFfnParams(ffn: DenseFfnSpec, hidden: number): number {
  return ffnMatrices(ffn.activation) * hidden * ffn.intermediate;
}

/** Parameters of the FFN part of one MoE layer, by part. */
interface MoeParams {
  routed: number;
  shared: number;
  activeExperts: number;
  gateWeight: number;
  gateBias: number;
}

function moeParams(moe: MoeSpec, hidden: number): MoeParams {
  const expert = ffnMatrices(moe.activation) * hidden * moe.expertIntermediate;
  return {
    routed: moe.routedExperts * expert,
    shared: moe.sharedExperts * expert,
    activeExperts: (moe.expertsPerToken + moe.sharedExperts) * expert,
    gateWeight: moe.routedExperts * hidden,
    gateBias: moe.gate.biasBalancing === null ? 0 : moe.routedExperts,
  };
}

/** Layers of each kind, counted over the runs of the layer pattern. */
function countLayers(model: ModelSpec): Record<LayerKind, number> {
  let dense = 0;
  let moe = 0;
  for (const run of model.layerPattern) {
    const length = run.last - run.first + 1;
    if (run.kind === "dense") dense += length;
    else moe += length;
  }
  return { dense, moe };
}

function requireDenseFfn(model: ModelSpec): DenseFfnSpec {
  if (model.denseFfn === null) {
    throw new Error(`stats: model '${model.name}' has dense layers but no denseFfn`);
  }
  return model.denseFfn;
}

function requireMoe(model: ModelSpec): MoeSpec {
  if (model.moe === null) {
    throw new Error(`stats: model '${model.name}' has MoE layers but no moe`);
  }
  return model.moe;
}

/** Picks the schedule that fixes the sequence length (see `computeStats`). */
function pickSchedule(schedules: ScheduleSpec[], name: string | undefined): ScheduleSpec | null {
  if (name !== undefined) {
    const named = schedules.find((schedule) => schedule.name === name);
    if (named === undefined) {
      const known = schedules.map((schedule) => `'${schedule.name}'`).join(", ") || "none";
      throw new Error(`stats: no schedule named '${name}' (schedules: ${known})`);
    }
    return named;
  }
  return schedules.find((schedule) => schedule.kind === "training") ?? schedules[0] ?? null;
}

/** The KV cache per token (see `KvCacheStats`); the FP8 layout is stated in `fp8Layout`. */
function kvCacheStats(attention: AttentionSpec, layers: number): KvCacheStats {
  let elementsPerTokenPerLayer: number;
  let bytesPerTokenPerLayerFp8: number;
  let fp8Layout: string;
  if (attention.kind === "mla") {
    const latentScales = Math.ceil(attention.kvLoraRank / FP8_CACHE_SCALE_GROUP);
    elementsPerTokenPerLayer = attention.kvLoraRank + attention.qkRopeHeadDim;
    bytesPerTokenPerLayerFp8 =
      attention.kvLoraRank * FP8_BYTES + latentScales * FP32_BYTES + attention.qkRopeHeadDim * BF16_BYTES;
    fp8Layout = MLA_FP8_LAYOUT;
  } else {
    const headScales = Math.ceil(attention.headDim / FP8_CACHE_SCALE_GROUP);
    elementsPerTokenPerLayer = 2 * attention.kvHeads * attention.headDim;
    bytesPerTokenPerLayerFp8 = 2 * attention.kvHeads * (attention.headDim * FP8_BYTES + headScales * FP32_BYTES);
    fp8Layout = MHA_FP8_LAYOUT;
  }
  const bytesPerTokenPerLayerBf16 = elementsPerTokenPerLayer * BF16_BYTES;
  return {
    elementsPerTokenPerLayer,
    elementsPerToken: elementsPerTokenPerLayer * layers,
    bytesPerTokenPerLayerBf16,
    bytesPerTokenBf16: bytesPerTokenPerLayerBf16 * layers,
    bytesPerTokenPerLayerFp8,
    bytesPerTokenFp8: bytesPerTokenPerLayerFp8 * layers,
    fp8Layout,
  };
}

/**
 * Parameter counts, KV-cache size and FLOPs per token of `spec`'s model.
 *
 * The FLOP figures use the `seqLen` of `options.schedule` (an Error if no schedule has that name);
 * by default the first training schedule's, else the first schedule's, else 4096.
 */
export function computeStats(spec: Spec, options: StatsOptions = {}): Stats {
  const model = spec.model;
  const { hidden, vocab, attention } = model;
  const layerCounts = countLayers(model);
  const layers = layerCounts.dense + layerCounts.moe;

  const attn = attentionParams(attention, hidden);
  const attnPerLayer = attn.matmul + attn.norms;
  const layerNorms = 2 * hidden;
  const denseFfn =
    layerCounts.dense === 0 ? 0 : layerCounts.dense * denseFfnParams(requireDenseFfn(model), hidden);
  const moe = layerCounts.moe === 0 ? null : moeParams(requireMoe(model), hidden);
  const moeLayers = layerCounts.moe;

  const table = vocab * hidden;
  const embedding = table;
  const outputHead = model.tieEmbeddings ? 0 : table;
  const attentionAll = layers * attnPerLayer;
  const routed = moe === null ? 0 : moeLayers * moe.routed;
  const shared = moe === null ? 0 : moeLayers * moe.shared;
  const gate = moe === null ? 0 : moeLayers * (moe.gateWeight + moe.gateBias);
  const gateBias = moe === null ? 0 : moeLayers * moe.gateBias;
  const norms = layers * layerNorms + hidden;
  const activeExperts = moe === null ? 0 : moeLayers * moe.activeExperts;

  const total = embedding + outputHead + attentionAll + denseFfn + routed + shared + gate + norms;
  // The head is active for every token; when tied it is the embedding table itself.
  const active = table + attentionAll + denseFfn + activeExperts + gate + norms;
  const activeWithEmbedding = model.tieEmbeddings ? active : active + table;

  // MTP: each module's own weights and the matmul weights it touches per token.
  const mtpDepth = model.mtp.depth;
  let mtpPerModule = 0;
  let mtpMatmulPerModule = 0;
  if (mtpDepth > 0) {
    const ehProj = 2 * hidden * hidden;
    const moduleNorms = 3 * hidden; // enorm, hnorm, shared_head.norm
    let ffnAll: number;
    let ffnMatmul: number;
    if (model.moe !== null) {
      const block = moe ?? moeParams(model.moe, hidden);
      ffnAll = block.routed + block.shared + block.gateWeight + block.gateBias;
      ffnMatmul = block.activeExperts + block.gateWeight;
    } else {
      ffnAll = denseFfnParams(requireDenseFfn(model), hidden);
      ffnMatmul = ffnAll;
    }
    mtpPerModule = moduleNorms + ehProj + attnPerLayer + layerNorms + ffnAll;
    mtpMatmulPerModule = ehProj + attn.matmul + ffnMatmul + table;
  }
  const mtp = mtpDepth * mtpPerModule;

  const breakdown: ParamBreakdownEntry[] = [
    { component: "embedding", params: embedding, inTotal: true },
    { component: "output_head", params: outputHead, inTotal: true },
    { component: "attention", params: attentionAll, inTotal: true },
    { component: "dense_ffn", params: denseFfn, inTotal: true },
    { component: "moe_routed_experts", params: routed, inTotal: true },
    { component: "moe_shared_experts", params: shared, inTotal: true },
    { component: "moe_gate", params: gate, inTotal: true },
    { component: "norms", params: norms, inTotal: true },
    { component: "mtp", params: mtp, inTotal: false },
  ];
  const approximate =
    total > Number.MAX_SAFE_INTEGER ||
    activeWithEmbedding > Number.MAX_SAFE_INTEGER ||
    mtp > Number.MAX_SAFE_INTEGER;

  const schedule = pickSchedule(spec.schedules, options.schedule);
  const seqLen = schedule?.seqLen ?? DEFAULT_SEQ_LEN;
  const ctx = seqLen / 2;
  const attentionCore = attentionCoreFlops(attention, ctx);
  const matmulWeights = active - norms - layers * attn.norms - gateBias;
  const forwardMatmul = 2 * matmulWeights;
  const forwardAttention = layers * attentionCore;
  const forward = forwardMatmul + forwardAttention;
  const mtpForward = mtpDepth * (2 * mtpMatmulPerModule + attentionCore);

  return {
    model: {
      name: model.name,
      vocab,
      hidden,
      layers,
      denseLayers: layerCounts.dense,
      moeLayers,
      attention: attention.kind,
    },
    params: { total, active, activeWithEmbedding, mtp, approximate, breakdown },
    kvCache: kvCacheStats(attention, layers),
    flopsPerToken: {
      schedule: schedule?.name ?? null,
      seqLen,
      forward,
      forwardMatmul,
      forwardAttention,
      mtpForward,
      training: 3 * (forward + mtpForward),
      convention: FLOP_CONVENTION,
    },
  };
}

// ── Per-layer figures for the planner (compiler/plan) ──────────────────────────────────────────
// The same formulas `computeStats` sums, one layer or one module at a time. Adding these changes
// none of `computeStats`'s outputs.

/** Parameters of one layer, one expert, one MTP module, …, of a model. */
export interface LayerParamFigures {
  /** One layer's attention matmul weights (MLA: q_a, q_b or q, kv_a, kv_b, o). */
  attentionMatmul: number;
  /** One layer's MLA latent RMSNorm weights (0 for MHA/GQA). */
  attentionNorms: number;
  /** One layer's input and post-attention RMSNorm weights (2·hidden). */
  layerNorms: number;
  /** The FFN of one dense layer (0 when the model has no dense FFN). */
  denseFfn: number;
  /** One routed (or shared) expert (0 when the model has no MoE). */
  expert: number;
  routedExperts: number;
  sharedExperts: number;
  /** The gate's weight (routedExperts·hidden) and, with bias balancing, its bias (routedExperts). */
  gateWeight: number;
  gateBias: number;
  /** vocab·hidden: the embedding table, and the output head when untied. */
  table: number;
  finalNorm: number;
  /** One MTP module's own parameters (ParamStats.mtp / depth): norms, eh_proj, its block. */
  mtpModule: number;
  /** One MTP module's eh_proj (2·hidden → hidden). */
  mtpEhProj: number;
  /** One MTP module's enorm, hnorm and shared_head norm (3·hidden). */
  mtpNorms: number;
  /** Whether the MTP module's block is a MoE block (else dense). */
  mtpBlockIsMoe: boolean;
}

/** Per-layer parameter figures of `model` (see {@link LayerParamFigures}). */
export function layerParamFigures(model: ModelSpec): LayerParamFigures {
  const { hidden, vocab, attention } = model;
  const attn = attentionParams(attention, hidden);
  const moe = model.moe === null ? null : moeParams(model.moe, hidden);
  const denseFfn = model.denseFfn === null ? 0 : denseFfnParams(model.denseFfn, hidden);
  const expert = model.moe === null ? 0 : ffnMatrices(model.moe.activation) * hidden * model.moe.expertIntermediate;
  const mtpEhProj = 2 * hidden * hidden;
  const mtpNorms = 3 * hidden;
  const block = moe === null ? denseFfn : moe.routed + moe.shared + moe.gateWeight + moe.gateBias;
  return {
    attentionMatmul: attn.matmul,
    attentionNorms: attn.norms,
    layerNorms: 2 * hidden,
    denseFfn,
    expert,
    routedExperts: model.moe?.routedExperts ?? 0,
    sharedExperts: model.moe?.sharedExperts ?? 0,
    gateWeight: moe?.gateWeight ?? 0,
    gateBias: moe?.gateBias ?? 0,
    table: vocab * hidden,
    finalNorm: hidden,
    mtpModule: mtpNorms + mtpEhProj + attn.matmul + attn.norms + 2 * hidden + block,
    mtpEhProj,
    mtpNorms,
    mtpBlockIsMoe: moe !== null,
  };
}

/** The attention core's FLOPs for one token in one layer at average causal context `ctx`. */
export function attentionCoreFlopsPerToken(attention: AttentionSpec, ctx: number): number {
  return attentionCoreFlops(attention, ctx);
}
