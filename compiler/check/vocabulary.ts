/**
 * The vocabulary of the .dsv3 language: every block, its labels, its attributes with their types,
 * units, ranges and defaults. The generic reader (read-blocks.ts) checks a document against it, so
 * "unknown attribute", "wrong unit", "out of range" and their fixes come from this one table.
 *
 * Ranges are generous but finite: they are what keeps absurd inputs (10^12 layers, 10^9 experts)
 * from reaching any stage that allocates.
 */
import type { Span } from "../../dsl/span.js";
import type { Dimension } from "../../dsl/units.js";

export type AttrType =
  | { t: "int"; min: number; max: number }
  | { t: "real"; min: number; max: number; minExclusive?: boolean }
  | { t: "quantity"; dimension: Dimension; min: number; max: number }
  | { t: "bool" }
  | { t: "enum"; values: readonly string[] }
  | { t: "enum-list"; values: readonly string[] }
  | { t: "string" }
  | { t: "shape"; max: number }
  | { t: "int-or-none"; min: number; max: number }
  /** A layer set: an index, a range `a..b`, or a list of those. */
  | { t: "layers" };

export type AttrValue = number | string | boolean | null | readonly [number, number] | readonly string[] | LayerSet;

/** A set of layers as written: single indices and inclusive ranges. */
export interface LayerSet {
  kind: "layers";
  runs: { first: number; last: number; span: Span }[];
}

export interface AttrDef {
  type: AttrType;
  required?: boolean;
  /** The value when the attribute is absent; defaults that depend on other fields live in build-spec.ts. */
  default?: AttrValue;
  doc: string;
}

export interface LabelDef {
  /** What the label names, for messages ("attention kind", "schedule name"). */
  what: string;
  kind: "ident" | "string" | "either";
  /** Allowed values; absent: any name. */
  values?: readonly string[];
  required: boolean;
}

export interface BlockDef {
  /** Human name for messages, e.g. "model", "attention mla". */
  what: string;
  labels: readonly LabelDef[];
  attrs: Readonly<Record<string, AttrDef>>;
  blocks: Readonly<Record<string, BlockDef>>;
  /** More than one block of this type may appear (distinguished by its first label). */
  repeatable?: boolean;
  /** Blocks whose first label picks the definition of their body (`attention mla`, `ffn moe`). */
  variants?: Readonly<Record<string, BlockDef>>;
  /**
   * Attribute sugar: `gpu = H800` means `gpu { ...H800 }` — an attribute of this name whose value is
   * a preset name, standing for this block.
   */
  presetAttribute?: boolean;
}

// ── Shared limits ──────────────────────────────────────────────────────────────────────────────
const DIM = { t: "int", min: 1, max: 1 << 20 } as const; // widths and ranks: up to 1,048,576
const COUNT_SMALL = { t: "int", min: 1, max: 65_536 } as const;
const FRACTION = { t: "real", min: 0, max: 1 } as const;

export const INT8_FORMATS = ["e4m3", "e5m2"] as const;
export const CACHE_FORMATS = ["e4m3", "e5m2", "e5m6", "bf16", "fp32"] as const;
export const HIGH_DTYPES = ["bf16", "fp32"] as const;
export const HIGH_PRECISION_PARTS = ["embedding", "output_head", "moe_gate", "norm", "attention_core"] as const;
export const RECOMPUTE_PARTS = ["rmsnorm", "mla_up_proj", "swiglu", "rope"] as const;
export const CACHE_POINTS = ["attn_out_proj_input", "swiglu_input", "moe_dispatch", "moe_combine"] as const;
export const PIPELINE_KINDS = ["dualpipe", "dualpipev", "1f1b", "zb1p"] as const;

const ROPE: BlockDef = {
  what: "rope",
  labels: [],
  attrs: {
    theta: { type: { t: "real", min: 1, max: 1e12 }, default: 10000, doc: "RoPE base θ" },
  },
  blocks: {
    yarn: {
      what: "yarn",
      labels: [],
      attrs: {
        factor: { type: { t: "real", min: 1, max: 1e6 }, required: true, doc: "context extension factor" },
        original_context: { type: { t: "int", min: 1, max: 1 << 24 }, required: true, doc: "pre-training context length" },
        beta_fast: { type: { t: "real", min: 0, max: 1e6 }, default: 32, doc: "high-frequency boundary of the ramp" },
        beta_slow: { type: { t: "real", min: 0, max: 1e6 }, default: 1, doc: "low-frequency boundary of the ramp" },
        mscale: { type: { t: "real", min: 0, max: 100 }, default: 1, doc: "attention temperature coefficient" },
        mscale_all_dim: { type: { t: "real", min: 0, max: 100 }, default: 0, doc: "temperature coefficient applied to the softmax scale" },
      },
      blocks: {},
    },
  },
};

const ATTENTION_MLA: BlockDef = {
  what: "attention mla",
  labels: [],
  attrs: {
    heads: { type: COUNT_SMALL, required: true, doc: "attention heads" },
    q_lora_rank: { type: { t: "int-or-none", min: 1, max: 1 << 20 }, required: true, doc: "query compression rank, or none for a full-rank q_proj" },
    kv_lora_rank: { type: DIM, required: true, doc: "latent (compressed KV) width" },
    qk_nope_dim: { type: DIM, required: true, doc: "per-head query/key width without RoPE" },
    qk_rope_dim: { type: DIM, required: true, doc: "per-head query / shared key width with RoPE" },
    v_head_dim: { type: DIM, required: true, doc: "per-head value width" },
  },
  blocks: { rope: ROPE },
};

const ATTENTION_MHA: BlockDef = {
  what: "attention",
  labels: [],
  attrs: {
    heads: { type: COUNT_SMALL, required: true, doc: "query heads" },
    kv_heads: { type: COUNT_SMALL, doc: "key/value heads (default: heads)" },
    head_dim: { type: DIM, required: true, doc: "per-head width" },
  },
  blocks: { rope: ROPE },
};

const GATE: BlockDef = {
  what: "gate",
  labels: [],
  attrs: {
    scoring: { type: { t: "enum", values: ["sigmoid", "softmax"] }, default: "sigmoid", doc: "affinity function" },
    groups: { type: COUNT_SMALL, default: 1, doc: "expert groups for group-limited routing" },
    top_groups: { type: COUNT_SMALL, doc: "groups a token may use (default: groups)" },
    group_score: { type: { t: "enum", values: ["top2_sum", "max"] }, doc: "group score: sum of its top-2 scores, or its max (default top2_sum with a bias, else max)" },
    normalize_topk: { type: { t: "bool" }, doc: "renormalise the chosen weights to sum 1 (default true for sigmoid)" },
    routed_scale: { type: { t: "real", min: 0, max: 1e4 }, default: 1, doc: "routed scaling factor" },
    seq_aux_loss_weight: { type: { t: "real", min: 0, max: 1 }, default: 0, doc: "sequence-wise balance loss weight" },
  },
  blocks: {
    bias_balancing: {
      what: "bias_balancing",
      labels: [],
      attrs: { update_speed: { type: FRACTION, required: true, doc: "bias update speed γ" } },
      blocks: {},
    },
  },
};

const FFN_DENSE: BlockDef = {
  what: "ffn dense",
  labels: [],
  attrs: {
    intermediate: { type: DIM, required: true, doc: "FFN intermediate width" },
    activation: { type: { t: "enum", values: ["swiglu", "gelu"] }, default: "swiglu", doc: "activation" },
  },
  blocks: {},
};

const FFN_MOE: BlockDef = {
  what: "ffn moe",
  labels: [],
  attrs: {
    routed_experts: { type: COUNT_SMALL, required: true, doc: "routed experts per MoE layer" },
    shared_experts: { type: { t: "int", min: 0, max: 65_536 }, default: 0, doc: "shared experts" },
    experts_per_token: { type: COUNT_SMALL, required: true, doc: "routed experts chosen per token (top-k)" },
    intermediate: { type: DIM, required: true, doc: "expert intermediate width" },
    activation: { type: { t: "enum", values: ["swiglu", "gelu"] }, default: "swiglu", doc: "expert activation" },
  },
  blocks: { gate: GATE },
};

export const FFN_VARIANTS: Readonly<Record<string, BlockDef>> = { dense: FFN_DENSE, moe: FFN_MOE };
export const ATTENTION_VARIANTS: Readonly<Record<string, BlockDef>> = { mla: ATTENTION_MLA, mha: ATTENTION_MHA, gqa: ATTENTION_MHA };

/** `ffn` and `attention` choose the definition of their body by their label. */
function variantBlock(what: string, variants: Readonly<Record<string, BlockDef>>, repeatable: boolean): BlockDef {
  return {
    what,
    labels: [{ what: `${what} kind`, kind: "ident", values: Object.keys(variants), required: true }],
    attrs: {},
    blocks: {},
    variants,
    repeatable,
  };
}

export const MODEL: BlockDef = {
  what: "model",
  labels: [{ what: "model name", kind: "either", required: false }],
  attrs: {
    vocab: { type: { t: "int", min: 1, max: 1 << 24 }, required: true, doc: "vocabulary size" },
    hidden: { type: DIM, required: true, doc: "hidden size" },
    layers: { type: { t: "int", min: 1, max: 4096 }, required: true, doc: "transformer layers (MTP modules excluded)" },
    dense_layers: { type: { t: "int", min: 0, max: 4096 }, doc: "leading dense layers; the rest are MoE" },
    norm_eps: { type: { t: "real", min: 0, max: 1, minExclusive: true }, default: 1e-6, doc: "RMSNorm epsilon" },
    tie_embeddings: { type: { t: "bool" }, default: false, doc: "output head shares the embedding table" },
    max_positions: { type: { t: "int", min: 1, max: 1 << 24 }, default: 4096, doc: "longest supported context" },
  },
  blocks: {
    layer_pattern: {
      what: "layer_pattern",
      labels: [],
      attrs: {
        dense: { type: { t: "layers" }, doc: "layers with a dense FFN" },
        moe: { type: { t: "layers" }, doc: "layers with an MoE FFN" },
      },
      blocks: {},
    },
    attention: variantBlock("attention", ATTENTION_VARIANTS, false),
    ffn: variantBlock("ffn", FFN_VARIANTS, true),
    mtp: {
      what: "mtp",
      labels: [],
      attrs: {
        depth: { type: { t: "int", min: 0, max: 64 }, required: true, doc: "sequential MTP modules" },
        loss_weight: { type: { t: "real", min: 0, max: 100 }, default: 0.3, doc: "MTP loss weight λ" },
      },
      blocks: {},
    },
  },
};

function cacheExceptionDef(what: string): BlockDef {
  return {
    what,
    labels: [],
    attrs: {
      format: { type: { t: "enum", values: CACHE_FORMATS }, required: true, doc: "cached format" },
      pow2_scales: { type: { t: "bool" }, default: false, doc: "scales rounded up to a power of two" },
      recompute_output: { type: { t: "bool" }, default: false, doc: "output recomputed in backward" },
    },
    blocks: {},
  };
}

export const PRECISION: BlockDef = {
  what: "precision",
  labels: [],
  attrs: {
    mode: { type: { t: "enum", values: ["fp8", "bf16"] }, required: true, doc: "fp8 mixed precision or plain bf16" },
    format: { type: { t: "enum", values: INT8_FORMATS }, default: "e4m3", doc: "FP8 format of GEMM inputs" },
    activation_tile: { type: { t: "shape", max: 4096 }, default: [1, 128], doc: "forward activation scaling tile" },
    backward_activation_tile: { type: { t: "shape", max: 4096 }, doc: "backward activation tile (default: the transpose)" },
    weight_block: { type: { t: "shape", max: 4096 }, default: [128, 128], doc: "weight scaling block" },
    promotion_interval: { type: { t: "int", min: 1, max: 1 << 16 }, default: 128, doc: "K elements between FP32 promotions" },
    scale_max: { type: { t: "real", min: 1, max: 1e6 }, doc: "scale = amax / scale_max (default 448 for e4m3, 57344 for e5m2)" },
    pow2_scales: { type: { t: "bool" }, default: false, doc: "round scales up to powers of two" },
    keep_bf16: { type: { t: "enum-list", values: HIGH_PRECISION_PARTS }, doc: "parts kept in BF16" },
    keep_fp32: { type: { t: "enum-list", values: HIGH_PRECISION_PARTS }, doc: "parts kept in FP32" },
    master_weights: { type: { t: "enum", values: HIGH_DTYPES }, default: "fp32", doc: "master weight dtype" },
    gradients: { type: { t: "enum", values: HIGH_DTYPES }, default: "fp32", doc: "gradient dtype" },
    optimizer_states: { type: { t: "enum", values: HIGH_DTYPES }, default: "fp32", doc: "AdamW moment dtype" },
    recompute: { type: { t: "enum-list", values: RECOMPUTE_PARTS }, doc: "recomputed in backward" },
  },
  blocks: {
    activation_cache: {
      what: "activation_cache",
      labels: [],
      attrs: { default: { type: { t: "enum", values: CACHE_FORMATS }, doc: "format of cached activations (default: the GEMM format)" } },
      blocks: Object.fromEntries(CACHE_POINTS.map((p) => [p, cacheExceptionDef(p)])),
    },
  },
};

export const GPU: BlockDef = {
  what: "gpu",
  labels: [],
  presetAttribute: true,
  attrs: {
    name: { type: { t: "string" }, required: true, doc: "GPU model" },
    fp8_peak: { type: { t: "quantity", dimension: "FLOP/s", min: 1e9, max: 1e18 }, required: true, doc: "dense FP8 peak" },
    bf16_peak: { type: { t: "quantity", dimension: "FLOP/s", min: 1e9, max: 1e18 }, required: true, doc: "dense BF16 peak" },
    hbm: { type: { t: "quantity", dimension: "bytes", min: 1e6, max: 1e15 }, required: true, doc: "HBM capacity" },
    hbm_bandwidth: { type: { t: "quantity", dimension: "bytes/s", min: 1e6, max: 1e15 }, required: true, doc: "HBM bandwidth" },
    sms: { type: { t: "int", min: 1, max: 4096 }, required: true, doc: "streaming multiprocessors" },
  },
  blocks: {},
};

export const CLUSTER: BlockDef = {
  what: "cluster",
  labels: [{ what: "cluster name", kind: "either", required: false }],
  attrs: {
    nodes: { type: { t: "int", min: 1, max: 1 << 20 }, required: true, doc: "nodes" },
    gpus_per_node: { type: { t: "int", min: 1, max: 1024 }, required: true, doc: "GPUs per node" },
    nvlink: { type: { t: "quantity", dimension: "bytes/s", min: 1e6, max: 1e15 }, required: true, doc: "NVLink bandwidth per GPU" },
    infiniband: { type: { t: "quantity", dimension: "bytes/s", min: 1e6, max: 1e15 }, required: true, doc: "InfiniBand bandwidth per GPU" },
  },
  blocks: { gpu: GPU },
};

const NODE_LIMIT: AttrDef = { type: { t: "int-or-none", min: 1, max: 1 << 20 }, default: null, doc: "max nodes a token's routed experts may lie on" };
const COMM_SMS: AttrDef = { type: { t: "int", min: 0, max: 4096 }, default: 0, doc: "SMs reserved for communication" };
const SEQ_LEN: AttrDef = { type: { t: "int", min: 1, max: 1 << 24 }, required: true, doc: "sequence length in tokens" };
const PARALLEL = { t: "int", min: 1, max: 1 << 20 } as const;

export const TRAINING: BlockDef = {
  what: "training schedule",
  labels: [{ what: "schedule name", kind: "either", required: true }],
  repeatable: true,
  attrs: {
    pipeline: { type: { t: "enum", values: PIPELINE_KINDS }, default: "1f1b", doc: "pipeline schedule" },
    pp: { type: PARALLEL, default: 1, doc: "pipeline-parallel degree" },
    microbatches: { type: { t: "int", min: 1, max: 1 << 20 }, required: true, doc: "micro-batches per step" },
    tp: { type: PARALLEL, default: 1, doc: "tensor-parallel degree" },
    sp: { type: { t: "bool" }, default: false, doc: "sequence parallelism with TP" },
    dp: { type: PARALLEL, doc: "data-parallel degree (default: cluster GPUs / (pp·tp))" },
    ep: { type: PARALLEL, default: 1, doc: "expert-parallel degree" },
    zero: { type: { t: "int", min: 0, max: 3 }, default: 0, doc: "ZeRO stage" },
    node_limit: NODE_LIMIT,
    comm_sms: COMM_SMS,
    seq_len: SEQ_LEN,
    global_batch: { type: { t: "int", min: 1, max: 1 << 30 }, required: true, doc: "sequences per optimizer step" },
  },
  blocks: {},
};

function servingDef(what: string): BlockDef {
  return {
    what,
    labels: [{ what: "schedule name", kind: "either", required: true }],
    repeatable: true,
    attrs: {
      gpus: { type: PARALLEL, required: true, doc: "GPUs of one deployment unit" },
      microbatches: { type: { t: "int", min: 1, max: 64 }, default: 1, doc: "micro-batches overlapped" },
      batch_per_gpu: { type: { t: "int", min: 1, max: 1 << 20 }, required: true, doc: "sequences in flight per GPU" },
      seq_len: SEQ_LEN,
      mtp_speculation: { type: { t: "int", min: 0, max: 64 }, default: 0, doc: "draft tokens from MTP per step" },
      node_limit: NODE_LIMIT,
      comm_sms: COMM_SMS,
    },
    blocks: {
      attention: {
        what: "attention",
        labels: [],
        attrs: {
          tp: { type: PARALLEL, default: 1, doc: "attention tensor parallelism" },
          sp: { type: { t: "bool" }, default: false, doc: "sequence parallelism" },
          dp: { type: PARALLEL, doc: "attention data parallelism (default gpus / tp)" },
        },
        blocks: {},
      },
      moe: {
        what: "moe",
        labels: [],
        attrs: {
          ep: { type: PARALLEL, doc: "expert parallelism (default: gpus)" },
          redundant_experts: { type: { t: "int", min: 0, max: 1 << 20 }, default: 0, doc: "extra replicas of hot experts" },
          shared_as_routed: { type: { t: "bool" }, default: false, doc: "serve the shared expert as a routed one" },
        },
        blocks: {},
      },
    },
  };
}

export const PREFILL = servingDef("prefill schedule");
export const DECODE = servingDef("decode schedule");

/** The top level of a document. */
export const TOP: BlockDef = {
  what: "the spec",
  labels: [],
  attrs: {},
  blocks: { model: MODEL, precision: PRECISION, cluster: CLUSTER, training: TRAINING, prefill: PREFILL, decode: DECODE },
};
