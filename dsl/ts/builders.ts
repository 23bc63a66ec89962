/**
 * The TypeScript form of a spec: typed builders whose values describe the same blocks as the .dsv3
 * language. Keys are the language's attribute names (snake_case, one vocabulary for both forms);
 * nested blocks are nested object literals; quantities are strings such as `"160 GB/s"`, typed so
 * that an editor flags a wrong unit; enums are literal unions; `none` is `null`.
 *
 *   import { spec, model, mla, dense, moe, cluster, training, H800 } from "dsv3";
 *   export default spec({
 *     model: model("tiny", { vocab: 512, hidden: 64, layers: 4, attention: mla({ … }), ffn: [dense({ … }), moe({ … })] }),
 *     precision: { mode: "fp8" },
 *     cluster: cluster("one-node", { nodes: 1, gpus_per_node: 8, gpu: H800, nvlink: "160 GB/s", infiniband: "50 GB/s" }),
 *     schedules: [training("train", { pp: 1, microbatches: 4, seq_len: 4096, global_batch: 32 })],
 *   });
 *
 * `dsv3 check model.ts` never runs such a file: dsl/ts/read-ts-spec.ts reads it statically. A program
 * that does run the builders gets plain tagged data, which `toDocument` (to-document.ts) turns into
 * the AST the checker reads. This module has no runtime dependencies, so importing it is cheap.
 */
import type {
  CACHE_FORMATS, CACHE_POINTS, HIGH_DTYPES, HIGH_PRECISION_PARTS, INT8_FORMATS, PIPELINE_KINDS, RECOMPUTE_PARTS,
} from "../../compiler/check/vocabulary.js";

// ── Quantities, shapes, layer ranges ────────────────────────────────────────────────────────────
/** Units of the language by dimension (dsl/units.ts; a test keeps the two in step). */
export const BYTE_UNITS = ["B", "KB", "MB", "GB", "TB", "PB", "KiB", "MiB", "GiB", "TiB", "PiB"] as const;
export const BANDWIDTH_UNITS = ["B/s", "KB/s", "MB/s", "GB/s", "TB/s", "PB/s", "KiB/s", "MiB/s", "GiB/s", "TiB/s", "PiB/s"] as const;
export const FLOP_RATE_UNITS = ["FLOP/s", "KFLOP/s", "MFLOP/s", "GFLOP/s", "TFLOP/s", "PFLOP/s"] as const;
export const DURATION_UNITS = ["s", "ms", "us", "ns"] as const;

/** A size: `"80 GB"`, `"141 GB"`, `"64 GiB"`. */
export type Bytes = `${number} ${(typeof BYTE_UNITS)[number]}`;
/** A rate in bytes per second: `"160 GB/s"`, `"3.35 TB/s"`. */
export type Bandwidth = `${number} ${(typeof BANDWIDTH_UNITS)[number]}`;
/** A compute rate: `"1979 TFLOP/s"`. */
export type FlopRate = `${number} ${(typeof FLOP_RATE_UNITS)[number]}`;
/** A time: `"20 us"`. */
export type Duration = `${number} ${(typeof DURATION_UNITS)[number]}`;
/** A tile or block shape, rows x cols: `"1x128"`. */
export type Shape = `${number}x${number}`;
/** An inclusive range of layers: `"3..60"`. */
export type LayerRange = `${number}..${number}`;
/** A set of layers: an index, a range, or a list of those. */
export type Layers = number | LayerRange | readonly (number | LayerRange)[];

// ── Enumerations (from the checker's vocabulary) ────────────────────────────────────────────────
export type Pipeline = (typeof PIPELINE_KINDS)[number];
export type Fp8Format = (typeof INT8_FORMATS)[number];
export type CacheFormat = (typeof CACHE_FORMATS)[number];
export type HighDtype = (typeof HIGH_DTYPES)[number];
export type HighPrecisionPart = (typeof HIGH_PRECISION_PARTS)[number];
export type RecomputePart = (typeof RECOMPUTE_PARTS)[number];
export type CachePoint = (typeof CACHE_POINTS)[number];
export type Activation = "swiglu" | "gelu";

// ── Fields of each block ────────────────────────────────────────────────────────────────────────
export interface YarnFields {
  factor: number;
  original_context: number;
  beta_fast?: number;
  beta_slow?: number;
  mscale?: number;
  mscale_all_dim?: number;
}

export interface RopeFields {
  theta?: number;
  yarn?: YarnFields;
}

export interface MlaFields {
  heads: number;
  /** `null`: a full-rank q_proj (no query compression). */
  q_lora_rank: number | null;
  kv_lora_rank: number;
  qk_nope_dim: number;
  qk_rope_dim: number;
  v_head_dim: number;
  rope?: RopeFields;
}

export interface MhaFields {
  heads: number;
  kv_heads?: number;
  head_dim: number;
  rope?: RopeFields;
}

export interface GateFields {
  scoring?: "sigmoid" | "softmax";
  groups?: number;
  top_groups?: number;
  group_score?: "top2_sum" | "max";
  normalize_topk?: boolean;
  routed_scale?: number;
  seq_aux_loss_weight?: number;
  bias_balancing?: { update_speed: number };
}

export interface DenseFields {
  intermediate: number;
  activation?: Activation;
}

export interface MoeFields {
  routed_experts: number;
  shared_experts?: number;
  experts_per_token: number;
  intermediate: number;
  activation?: Activation;
  gate?: GateFields;
}

export interface LayerPatternFields {
  dense?: Layers;
  moe?: Layers;
}

export interface MtpFields {
  depth: number;
  loss_weight?: number;
}

export interface ModelFields {
  vocab: number;
  hidden: number;
  layers: number;
  dense_layers?: number;
  norm_eps?: number;
  tie_embeddings?: boolean;
  max_positions?: number;
  layer_pattern?: LayerPatternFields;
  attention: Attention;
  /** One FFN block or several: `[dense({ … }), moe({ … })]`. */
  ffn?: Ffn | readonly Ffn[];
  mtp?: MtpFields;
}

export interface CacheExceptionFields {
  format: CacheFormat;
  pow2_scales?: boolean;
  recompute_output?: boolean;
}

export interface ActivationCacheFields {
  default?: CacheFormat;
  attn_out_proj_input?: CacheExceptionFields;
  swiglu_input?: CacheExceptionFields;
  moe_dispatch?: CacheExceptionFields;
  moe_combine?: CacheExceptionFields;
}

export interface PrecisionFields {
  mode: "fp8" | "bf16";
  format?: Fp8Format;
  activation_tile?: Shape;
  backward_activation_tile?: Shape;
  weight_block?: Shape;
  promotion_interval?: number;
  scale_max?: number;
  pow2_scales?: boolean;
  keep_bf16?: readonly HighPrecisionPart[];
  keep_fp32?: readonly HighPrecisionPart[];
  master_weights?: HighDtype;
  gradients?: HighDtype;
  optimizer_states?: HighDtype;
  activation_cache?: ActivationCacheFields;
  recompute?: readonly RecomputePart[];
}

export interface GpuFields {
  name: string;
  fp8_peak: FlopRate;
  bf16_peak: FlopRate;
  hbm: Bytes;
  hbm_bandwidth: Bandwidth;
  sms: number;
}

export interface ClusterFields {
  nodes: number;
  gpus_per_node: number;
  /** A GPU preset (`H800`, `H100`, `H200`) or its figures (`{ ...H800, hbm: "96 GB" }`). */
  gpu: GpuFields;
  nvlink: Bandwidth;
  infiniband: Bandwidth;
}

export interface TrainingFields {
  pipeline?: Pipeline;
  pp?: number;
  microbatches: number;
  tp?: number;
  sp?: boolean;
  dp?: number;
  ep?: number;
  zero?: 0 | 1 | 2 | 3;
  /** `null`: no node limit. */
  node_limit?: number | null;
  comm_sms?: number;
  seq_len: number;
  global_batch: number;
}

export interface ServingAttentionFields {
  tp?: number;
  sp?: boolean;
  dp?: number;
}

export interface ServingMoeFields {
  ep?: number;
  redundant_experts?: number;
  shared_as_routed?: boolean;
}

export interface ServingFields {
  gpus: number;
  microbatches?: number;
  batch_per_gpu: number;
  seq_len: number;
  mtp_speculation?: number;
  node_limit?: number | null;
  comm_sms?: number;
  attention?: ServingAttentionFields;
  moe?: ServingMoeFields;
}

// ── What the builders return: plain tagged data ─────────────────────────────────────────────────
/** The property that tags a builder's value. */
export const TAG = "$dsv3";

export interface ModelBlock {
  readonly $dsv3: "model";
  readonly name: string | null;
  readonly fields: ModelFields;
}

export type Attention =
  | { readonly $dsv3: "attention"; readonly kind: "mla"; readonly fields: MlaFields }
  | { readonly $dsv3: "attention"; readonly kind: "mha" | "gqa"; readonly fields: MhaFields };

export type Ffn =
  | { readonly $dsv3: "ffn"; readonly kind: "dense"; readonly fields: DenseFields }
  | { readonly $dsv3: "ffn"; readonly kind: "moe"; readonly fields: MoeFields };

export interface ClusterBlock {
  readonly $dsv3: "cluster";
  readonly name: string | null;
  readonly fields: ClusterFields;
}

export type Schedule =
  | { readonly $dsv3: "training"; readonly name: string; readonly fields: TrainingFields }
  | { readonly $dsv3: "prefill" | "decode"; readonly name: string; readonly fields: ServingFields };

export interface SpecFields {
  model: ModelBlock;
  precision: PrecisionFields;
  cluster: ClusterBlock;
  /** Training, prefill and decode schedules, in order. */
  schedules?: readonly Schedule[];
}

export interface SpecValue {
  readonly $dsv3: "spec";
  readonly fields: SpecFields;
}

// ── The builders ────────────────────────────────────────────────────────────────────────────────
/** The whole spec: `export default spec({ model, precision, cluster, schedules })`. */
export function spec(fields: SpecFields): SpecValue {
  return { $dsv3: "spec", fields };
}

/** `model "NAME" { … }`; the name is optional. */
export function model(name: string, fields: ModelFields): ModelBlock;
export function model(fields: ModelFields): ModelBlock;
export function model(a: string | ModelFields, b?: ModelFields): ModelBlock {
  return typeof a === "string" ? { $dsv3: "model", name: a, fields: b! } : { $dsv3: "model", name: null, fields: a };
}

/** `attention mla { … }`: multi-head latent attention. */
export function mla(fields: MlaFields): Attention {
  return { $dsv3: "attention", kind: "mla", fields };
}

/** `attention mha { … }`: multi-head attention (kv_heads = heads). */
export function mha(fields: MhaFields): Attention {
  return { $dsv3: "attention", kind: "mha", fields };
}

/** `attention gqa { … }`: grouped-query attention. */
export function gqa(fields: MhaFields): Attention {
  return { $dsv3: "attention", kind: "gqa", fields };
}

/** `ffn dense { … }`. */
export function dense(fields: DenseFields): Ffn {
  return { $dsv3: "ffn", kind: "dense", fields };
}

/** `ffn moe { … }`: DeepSeekMoE. */
export function moe(fields: MoeFields): Ffn {
  return { $dsv3: "ffn", kind: "moe", fields };
}

/** `cluster "NAME" { … }`; the name is optional. */
export function cluster(name: string, fields: ClusterFields): ClusterBlock;
export function cluster(fields: ClusterFields): ClusterBlock;
export function cluster(a: string | ClusterFields, b?: ClusterFields): ClusterBlock {
  return typeof a === "string" ? { $dsv3: "cluster", name: a, fields: b! } : { $dsv3: "cluster", name: null, fields: a };
}

/** `training NAME { … }`. */
export function training(name: string, fields: TrainingFields): Schedule {
  return { $dsv3: "training", name, fields };
}

/** `prefill NAME { … }`. */
export function prefill(name: string, fields: ServingFields): Schedule {
  return { $dsv3: "prefill", name, fields };
}

/** `decode NAME { … }`. */
export function decode(name: string, fields: ServingFields): Schedule {
  return { $dsv3: "decode", name, fields };
}

// ── GPU presets (the same figures as the checker's prelude; a test keeps them equal) ────────────
function gpuPreset(fields: GpuFields): GpuFields {
  return Object.freeze({ ...fields });
}

/** Hopper H800 SXM: dense peaks, 80 GB HBM3. */
export const H800: GpuFields = gpuPreset({ name: "H800", fp8_peak: "1979 TFLOP/s", bf16_peak: "989 TFLOP/s", hbm: "80 GB", hbm_bandwidth: "3.35 TB/s", sms: 132 });
/** Hopper H100 SXM. */
export const H100: GpuFields = gpuPreset({ name: "H100", fp8_peak: "1979 TFLOP/s", bf16_peak: "989 TFLOP/s", hbm: "80 GB", hbm_bandwidth: "3.35 TB/s", sms: 132 });
/** Hopper H200 SXM: 141 GB HBM3e. */
export const H200: GpuFields = gpuPreset({ name: "H200", fp8_peak: "1979 TFLOP/s", bf16_peak: "989 TFLOP/s", hbm: "141 GB", hbm_bandwidth: "4.8 TB/s", sms: 132 });

/** GPU presets by name: `gpu: H800` stands for `gpu = H800` in the text language. */
export const GPU_PRESETS: Readonly<Record<"H800" | "H100" | "H200", GpuFields>> = { H800, H100, H200 };

// ── The names a TypeScript spec may import (the static reader accepts exactly these) ────────────
/** Builder functions, with the arguments each takes (labels first, then the fields object). */
export const BUILDERS = {
  spec: { labels: [0, 0], block: "spec" },
  model: { labels: [0, 1], block: "model" },
  mla: { labels: [0, 0], block: "attention" },
  mha: { labels: [0, 0], block: "attention" },
  gqa: { labels: [0, 0], block: "attention" },
  dense: { labels: [0, 0], block: "ffn" },
  moe: { labels: [0, 0], block: "ffn" },
  cluster: { labels: [0, 1], block: "cluster" },
  training: { labels: [1, 1], block: "training" },
  prefill: { labels: [1, 1], block: "prefill" },
  decode: { labels: [1, 1], block: "decode" },
} as const satisfies Record<string, { labels: readonly [number, number]; block: string }>;

export type BuilderName = keyof typeof BUILDERS;

/** Types a spec may import (for `satisfies` and annotations). */
export const DSL_TYPE_NAMES = [
  "Bytes", "Bandwidth", "FlopRate", "Duration", "Shape", "LayerRange", "Layers",
  "Pipeline", "Fp8Format", "CacheFormat", "HighDtype", "HighPrecisionPart", "RecomputePart", "CachePoint", "Activation",
  "YarnFields", "RopeFields", "MlaFields", "MhaFields", "GateFields", "DenseFields", "MoeFields", "LayerPatternFields", "MtpFields",
  "ModelFields", "CacheExceptionFields", "ActivationCacheFields", "PrecisionFields", "GpuFields", "ClusterFields", "TrainingFields",
  "ServingAttentionFields", "ServingMoeFields", "ServingFields", "ModelBlock", "Attention", "Ffn", "ClusterBlock", "Schedule",
  "SpecFields", "SpecValue",
] as const;
