/**
 * The Spec: the normalised, validated description of a model, its precision recipe, its cluster and
 * its schedules. It is the only thing later stages see (never the AST). Every Spec that leaves
 * `compiler/check` validates against `spec-schema.ts` (ajv), and every field here has a twin there.
 *
 * Units are normalised: bytes, bytes per second, FLOP per second. Every default is filled in.
 * Derived figures that more than one stage needs (softmax scale, world sizes, micro-batch size) are
 * computed once by the checker and stored here, so no later stage recomputes them differently.
 */

export const SPEC_VERSION = 1;

export type LayerKind = "dense" | "moe";

/** A run of consecutive layers of one kind, `first..last` inclusive (0-based). */
export interface LayerRun {
  kind: LayerKind;
  first: number;
  last: number;
}

export interface YarnSpec {
  factor: number;
  originalContext: number;
  betaFast: number;
  betaSlow: number;
  mscale: number;
  mscaleAllDim: number;
}

export interface RopeSpec {
  theta: number;
  /** YaRN context extension, or null for plain RoPE. */
  yarn: YarnSpec | null;
}

export interface MlaSpec {
  kind: "mla";
  heads: number;
  /** Low-rank query compression, or null for a full-rank `q_proj`. */
  qLoraRank: number | null;
  kvLoraRank: number;
  qkNopeHeadDim: number;
  qkRopeHeadDim: number;
  vHeadDim: number;
  rope: RopeSpec;
  /** (qk_nope + qk_rope)^-0.5, times (0.1·mscale_all_dim·ln(factor) + 1)² with YaRN. */
  softmaxScale: number;
}

/** Standard multi-head (kvHeads = heads) or grouped-query attention. */
export interface MhaSpec {
  kind: "mha" | "gqa";
  heads: number;
  kvHeads: number;
  headDim: number;
  rope: RopeSpec;
  /** headDim^-0.5 (times the YaRN factor when YaRN is on). */
  softmaxScale: number;
}

export type AttentionSpec = MlaSpec | MhaSpec;

export type Activation = "swiglu" | "gelu";

export interface DenseFfnSpec {
  intermediate: number;
  activation: Activation;
}

export type GateScoring = "sigmoid" | "softmax";
/** How a group of experts is scored for group-limited routing. */
export type GroupScore = "top2_sum" | "max";

export interface GateSpec {
  scoring: GateScoring;
  /** Auxiliary-loss-free load balancing: a per-expert bias added for selection only. */
  biasBalancing: { updateSpeed: number } | null;
  groups: number;
  topGroups: number;
  groupScore: GroupScore;
  normalizeTopk: boolean;
  routedScale: number;
  /** Weight of the complementary sequence-wise auxiliary loss (0 = off). */
  seqAuxLossWeight: number;
}

export interface MoeSpec {
  routedExperts: number;
  sharedExperts: number;
  expertsPerToken: number;
  expertIntermediate: number;
  activation: Activation;
  gate: GateSpec;
}

export interface MtpSpec {
  /** Number of sequential MTP modules (0 = none). */
  depth: number;
  lossWeight: number;
}

export interface ModelSpec {
  name: string;
  vocab: number;
  hidden: number;
  layers: number;
  /** Covers 0..layers-1 exactly once, sorted, adjacent runs of one kind merged. */
  layerPattern: LayerRun[];
  normEps: number;
  tieEmbeddings: boolean;
  maxPositions: number;
  attention: AttentionSpec;
  /** Present when any layer is dense. */
  denseFfn: DenseFfnSpec | null;
  /** Present when any layer (or the MTP block) is MoE. */
  moe: MoeSpec | null;
  mtp: MtpSpec;
}

export type Fp8Format = "e4m3" | "e5m2";
export type CacheFormat = "e4m3" | "e5m2" | "e5m6" | "bf16" | "fp32";
export type HighPrecisionDtype = "bf16" | "fp32";
/** Parts of the model that the FP8 recipe keeps out of FP8. */
export type HighPrecisionPart = "embedding" | "output_head" | "moe_gate" | "norm" | "attention_core";
/** Points where an activation is cached for the backward pass with a non-default format. */
export type CachePoint = "attn_out_proj_input" | "swiglu_input" | "moe_dispatch" | "moe_combine";
export type RecomputePart = "rmsnorm" | "mla_up_proj" | "swiglu" | "rope";

export interface CacheException {
  point: CachePoint;
  format: CacheFormat;
  pow2Scales: boolean;
  /** The op's output is recomputed in backward from the cached input. */
  recomputeOutput: boolean;
}

export interface PrecisionSpec {
  /** "fp8": the FP8 mixed-precision recipe; "bf16": every GEMM in BF16 (then the FP8 fields are inert). */
  mode: "fp8" | "bf16";
  gemmFormat: Fp8Format;
  /** Forward activation tile [rows, cols], e.g. [1, 128]. */
  activationTile: [number, number];
  /** Backward (transposed) activation tile, e.g. [128, 1]. */
  backwardActivationTile: [number, number];
  weightBlock: [number, number];
  /** Elements along K between promotions of the tensor-core partial sum into FP32. */
  promotionInterval: number;
  /** The divisor in scale = amax / scaleMax (448 for E4M3). */
  scaleMax: number;
  /** Scales rounded up to a power of two by default. */
  pow2Scales: boolean;
  highPrecision: { part: HighPrecisionPart; dtype: HighPrecisionDtype }[];
  masterWeights: HighPrecisionDtype;
  gradients: HighPrecisionDtype;
  optimizerStates: HighPrecisionDtype;
  activationCache: { default: CacheFormat; exceptions: CacheException[] };
  recompute: RecomputePart[];
}

export interface GpuSpec {
  name: string;
  /** Dense (no sparsity) peaks. */
  fp8FlopsPerS: number;
  bf16FlopsPerS: number;
  hbmBytes: number;
  hbmBytesPerS: number;
  sms: number;
}

export interface ClusterSpec {
  name: string;
  nodes: number;
  gpusPerNode: number;
  gpus: number;
  gpu: GpuSpec;
  /** Per-GPU, one direction. */
  nvlinkBytesPerS: number;
  infinibandBytesPerS: number;
}

export type PipelineKind = "dualpipe" | "dualpipev" | "1f1b" | "zb1p";

export interface TrainingSchedule {
  name: string;
  kind: "training";
  pipeline: PipelineKind;
  /** Pipeline-parallel degree (stages; for DualPipeV the stages are 2·pp chunks on pp devices). */
  pp: number;
  microbatches: number;
  tp: number;
  sp: boolean;
  dp: number;
  /** Expert-parallel degree, carved out of the tp·dp ranks of one pipeline stage. */
  ep: number;
  zero: 0 | 1 | 2 | 3;
  /** Max nodes a token's routed experts may lie on (null: no node limit). */
  nodeLimit: number | null;
  commSms: number;
  seqLen: number;
  /** Sequences per optimizer step, over all data-parallel ranks. */
  globalBatch: number;
  /** Derived: sequences in one micro-batch = globalBatch / (dp · microbatches). */
  microbatchSize: number;
  /** Derived: pp · tp · dp. */
  worldSize: number;
}

export interface ServingSchedule {
  name: string;
  kind: "prefill" | "decode";
  gpus: number;
  attention: { tp: number; sp: boolean; dp: number };
  moe: { ep: number; redundantExperts: number; sharedAsRouted: boolean };
  /** Micro-batches overlapped to hide all-to-all (two in the V3 deployment). */
  microbatches: number;
  /** Sequences per GPU in flight. */
  batchPerGpu: number;
  /** Prompt length (prefill) or context length (decode). */
  seqLen: number;
  /** Tokens drafted per step by the MTP modules (0 = off); at most the model's MTP depth. */
  mtpSpeculation: number;
  nodeLimit: number | null;
  commSms: number;
}

export type ScheduleSpec = TrainingSchedule | ServingSchedule;

export interface Spec {
  specVersion: typeof SPEC_VERSION;
  model: ModelSpec;
  precision: PrecisionSpec;
  cluster: ClusterSpec;
  /** In declaration order; names unique. */
  schedules: ScheduleSpec[];
}
