/**
 * The Graph IR contract: a typed op graph per layer kind, built from a Spec (build.ts), rewritten by
 * the passes of compiler/passes, printed and parsed as text (print.ts, parse.ts).
 *
 * A ModelGraph is one LayerGraph per distinct layer kind plus how many layers each stands for, so a
 * 61-layer model is 5–6 small graphs, not 61 copies:
 *
 *   embedding ×1 · dense_layer ×(dense layers) · moe_layer ×(MoE layers) · head ×1 · loss ×1 (train)
 *   · mtp ×(MTP depth in training, drafted tokens in decode)
 *
 * A decoder layer is one graph (not one per component) because fusion crosses component
 * boundaries: the RMSNorm + quantise kernel feeds MLA's first GEMM, the residual add is the output
 * projection's epilogue. The components DESIGN.md names (embedding, rmsnorm, mla, dense_ffn,
 * moe_gate, moe_experts, shared_experts, mtp, head, loss) are the `block` of every op instead; a
 * block is a view of a graph (`opsInBlock`).
 *
 * Values. Every value has a dtype, a symbolic shape (dim expressions over the ModelGraph's `dims`:
 * `[T,H]`, `[T,Nh,Dn+R]`; see dim-expr.ts) and, for a quantised value, a quantisation descriptor
 * (the tile one scale covers: 1×128 activation tiles, 128×1 backward tiles, 128×128 weight blocks;
 * power-of-two scales or not). A quantised value carries its scales with it (codes + FP32 scales,
 * or UE8M0 scales when pow2). Values are named `%id`: the params of a graph (inputs, weights,
 * persistent states such as a KV cache) by name (`%x`, `%mla.q_a`), temporaries by a number taken
 * from a per-graph counter in construction order, so ids are deterministic.
 *
 * Ops. An op has a kind from the closed union `OpKind`, inputs and outputs by value id, attributes
 * (numbers, strings, booleans, lists; a string attribute may name a dim), flags (`recompute`), and
 * the block it belongs to. Ops are listed in a valid execution order. A `fused` op is one kernel:
 * its `body` holds the unfused ops it replaces, its `kernel` the KernelSpec kind (kernel-spec.ts).
 *
 * Op semantics follow the reference backend (backends/reference/ops), whose names they reuse:
 *   embedding(ids[T], table[V,H]) → [T,H]                        embeddingForward
 *   rmsnorm(x[…,D], w[D]) {eps} → like x (computed in FP32)        rmsnormForward
 *   linear(x[M,K], w[N,K]) → [M,N]   (y = x·Wᵀ, checkpoint [out,in]) linearForward
 *   grouped_linear(x[M,K], w[E,N,K], counts[E]) {layout?} → [M,N]: rows grouped by expert, counts
 *     rows each; `layout=masked`: group e owns rows [e·M/E, (e+1)·M/E), its first counts[e] valid
 *   add(a, b) → like a (b equal to a or to a trailing part of a's shape: broadcast)
 *   scale(x) {factor} → like x
 *   swiglu(g, u) → SiLU(g)⊙u                                       swigluForward
 *   gelu(x)
 *   reshape(x) → same elements, the output's shape; split(x) {axis}; concat(a, b) {axis}
 *   broadcast(x) {axis}: inserts the output's dim at axis (the shared k_rope over heads)
 *   rope(x[T,…,R], pos[T]) {theta, yarn?}: adjacent-pair rotation of the last dim   ropeForward
 *   attention(q[T,Nh,Dk], k, v) {scale, causal, q_len, kv_len} → [T,Nh,Dv]: softmax in FP32,
 *     block-diagonal over sequences of q_len queries / kv_len keys; k [Tk,Hkv,Dk] and v [Tk,Hkv,Dv],
 *     or k [Tk,Dk] and v [Tk,Dv] for one key/value head shared by all heads  attentionForward
 *   gate_scores(logits[T,E]) {scoring} → FP32 affinities              gateScores
 *   group_topk(sel[T,E]) {k, groups, top_groups, group_score} → i32[T,K]  gateSelect
 *   gate_weights(scores[T,E], idx[T,K]) {normalize, scale} → [T,K]   gateWeights
 *   seq_aux_loss(scores[T,E], idx[T,K]) {alpha, seq_len} → fp32[]     seqAuxLossForward
 *   moe_permute(x[T,H], idx[T,K]) {align?} → (rows[M,H], counts i32[E], slots i32[T,K]): the T·K
 *     (token, expert) rows in expert-contiguous order, each expert's segment padded to a multiple of
 *     `align` rows (default 1: M = T·K); slots[t,k] is the row of (t, k). {capacity} instead: the
 *     masked layout (decode), expert e's rows at [e·capacity, …), counts[e] its valid rows, M = E·capacity
 *   moe_unpermute(y[M,H], slots[T,K], weights[T,K]) → [T,H]: Σ_k weights[t,k]·y[slots[t,k]]
 *   quantize(x) → the output's format and tile (scale = amax / max, or its power-of-two ceiling)
 *   cross_entropy(logits[T,V], labels[T]) → fp32[] (mean over labelled tokens)   crossEntropyForward
 *   kv_cache_write(cache[B·S,…], new[T,…]) → the cache with the new tokens' rows written
 *   mla_absorb_uk(q_nope[T,Nh,Dn], kv_b[Nh·(Dn+Dv),C]) → [T,Nh,C]: W_UK_hᵀ·q_nope_h  (mla.ts)
 *   mla_absorb_uv(o[T,Nh,C], kv_b) → [T,Nh,Dv]: W_UV_h·o_h                          (mla.ts)
 *   fused(…) [body]: the composition of its body
 */
import type { KernelKind } from "../kernel-spec.js";
import type { Dims } from "./dim-expr.js";

export type Dtype = "bf16" | "fp32" | "e4m3" | "e5m2" | "e5m6" | "ue8m0" | "i32";
export const DTYPES: readonly Dtype[] = ["bf16", "fp32", "e4m3", "e5m2", "e5m6", "ue8m0", "i32"];
/** Formats a quantised value may have (codes + per-tile scales). */
export const QUANTISED_DTYPES: readonly Dtype[] = ["e4m3", "e5m2", "e5m6"];

export type Phase = "train" | "prefill" | "decode";
export const PHASES: readonly Phase[] = ["train", "prefill", "decode"];

/** A quantisation descriptor: one scale per `tile` [rows, cols]; pow2 scales are UE8M0. */
export interface Quant {
  tile: [number, number];
  pow2: boolean;
}

/** input: activation entering the graph; weight: parameter; state: persistent (KV cache); temp: op output. */
export type ValueRole = "input" | "weight" | "state" | "temp";

export interface Value {
  id: string;
  dtype: Dtype;
  /** Dim expressions (dim-expr.ts); `[]` is a scalar. */
  shape: string[];
  quant: Quant | null;
  role: ValueRole;
  /** A weight owned by another graph (the MTP module's embedding and head); not counted twice. */
  shared: boolean;
}

export type OpKind =
  | "embedding"
  | "rmsnorm"
  | "linear"
  | "grouped_linear"
  | "add"
  | "scale"
  | "swiglu"
  | "gelu"
  | "reshape"
  | "split"
  | "concat"
  | "broadcast"
  | "rope"
  | "attention"
  | "gate_scores"
  | "group_topk"
  | "gate_weights"
  | "seq_aux_loss"
  | "moe_permute"
  | "moe_unpermute"
  | "quantize"
  | "cross_entropy"
  | "kv_cache_write"
  | "mla_absorb_uk"
  | "mla_absorb_uv"
  | "fused";

export const OP_KINDS: readonly OpKind[] = [
  "embedding",
  "rmsnorm",
  "linear",
  "grouped_linear",
  "add",
  "scale",
  "swiglu",
  "gelu",
  "reshape",
  "split",
  "concat",
  "broadcast",
  "rope",
  "attention",
  "gate_scores",
  "group_topk",
  "gate_weights",
  "seq_aux_loss",
  "moe_permute",
  "moe_unpermute",
  "quantize",
  "cross_entropy",
  "kv_cache_write",
  "mla_absorb_uk",
  "mla_absorb_uv",
  "fused",
];

/** The component an op belongs to (DESIGN.md's layer parts; `attention` is MHA/GQA). */
export type Block =
  | "embedding"
  | "rmsnorm"
  | "mla"
  | "attention"
  | "dense_ffn"
  | "moe_gate"
  | "moe_experts"
  | "shared_experts"
  | "residual"
  | "mtp"
  | "head"
  | "loss";

export const BLOCKS: readonly Block[] = [
  "embedding",
  "rmsnorm",
  "mla",
  "attention",
  "dense_ffn",
  "moe_gate",
  "moe_experts",
  "shared_experts",
  "residual",
  "mtp",
  "head",
  "loss",
];

export type AttrValue = number | string | boolean | (number | string)[];
export type Attrs = Record<string, AttrValue>;

export type OpFlag = "recompute";
export const OP_FLAGS: readonly OpFlag[] = ["recompute"];

export interface Op {
  kind: OpKind;
  inputs: string[];
  outputs: string[];
  attrs: Attrs;
  /** Sorted, no duplicates. */
  flags: OpFlag[];
  block: Block;
  /** Only on `fused` ops: the kernel kind and the ops it replaces, in execution order. */
  kernel?: KernelKind;
  body?: Op[];
}

export type LayerKind = "embedding" | "dense_layer" | "moe_layer" | "head" | "loss" | "mtp";
export const LAYER_KINDS: readonly LayerKind[] = ["embedding", "dense_layer", "moe_layer", "head", "loss", "mtp"];

export interface LayerGraph {
  kind: LayerKind;
  /** How many instances one forward pass runs (layers of this kind, MTP modules, 1 otherwise). */
  count: number;
  /** The decoder-layer indices it stands for, as inclusive runs ([] for non-decoder graphs). */
  layers: [number, number][];
  /** Ids of the input, weight and state values, in declaration order. */
  params: string[];
  values: Record<string, Value>;
  ops: Op[];
  outputs: string[];
}

export interface ModelGraph {
  model: string;
  phase: Phase;
  /** The named sizes every shape is written in (T tokens per micro-batch, H hidden, …). */
  dims: Dims;
  graphs: LayerGraph[];
}

/** The value `id` of `g` (an internal error when absent). */
export function valueOf(g: LayerGraph, id: string): Value {
  const v = g.values[id];
  if (v === undefined) throw new Error(`internal error: graph ${g.kind} has no value %${id}`);
  return v;
}

/** The graph of the given kind, or undefined. */
export function graphOf(m: ModelGraph, kind: LayerKind): LayerGraph | undefined {
  return m.graphs.find((g) => g.kind === kind);
}

/** Every op of `ops` and, recursively, of fused bodies, in order (a fused op before its body). */
export function* allOps(ops: readonly Op[]): Generator<Op> {
  for (const op of ops) {
    yield op;
    if (op.body !== undefined) yield* allOps(op.body);
  }
}

/** The top-level ops of one block. */
export function opsInBlock(g: LayerGraph, block: Block): Op[] {
  return g.ops.filter((op) => op.block === block);
}

/** Whether a dtype is a quantised (scaled) format. */
export function isQuantisedDtype(d: Dtype): boolean {
  return QUANTISED_DTYPES.includes(d);
}

export function sameQuant(a: Quant | null, b: Quant | null): boolean {
  if (a === null || b === null) return a === b;
  return a.tile[0] === b.tile[0] && a.tile[1] === b.tile[1] && a.pow2 === b.pow2;
}
