/**
 * Figures read off a ModelGraph: parameters (its weight values), matmul and attention FLOPs (its
 * ops), and the persistent per-token state (its KV-cache values). They are computed from the graph
 * alone, independently of compiler/stats.ts, so the two cross-check each other (tests/graph.test.ts).
 */
import { evalShape, numel, type Dims } from "./dim-expr.js";
import { allOps, type LayerGraph, type ModelGraph, type Op } from "./ir.js";

/** Elements of one graph's own weights (shared weights, counted where they live, excluded). */
export function graphWeightElements(g: LayerGraph, dims: Dims): number {
  let n = 0;
  for (const id of g.params) {
    const v = g.values[id]!;
    if (v.role === "weight" && !v.shared) n += numel(v.shape, dims);
  }
  return n;
}

/** Weight elements of the main model (every graph but MTP, × count) and of the MTP modules. */
export function modelParams(m: ModelGraph): { main: number; mtp: number } {
  let main = 0;
  let mtp = 0;
  for (const g of m.graphs) {
    const n = g.count * graphWeightElements(g, m.dims);
    if (g.kind === "mtp") mtp += n;
    else main += n;
  }
  return { main, mtp };
}

/** FLOPs of one matmul-like op (2·M·N·K), or 0 for other ops. */
export function matmulFlops(g: LayerGraph, op: Op, dims: Dims): number {
  const shape = (id: string): number[] => evalShape(g.values[id]!.shape, dims);
  switch (op.kind) {
    case "linear":
    case "grouped_linear": {
      const [m, k] = shape(op.inputs[0]!) as [number, number];
      const n = shape(op.outputs[0]!)[1]!;
      return 2 * m * n * k;
    }
    case "mla_absorb_uk": {
      const [t, h, dn] = shape(op.inputs[0]!) as [number, number, number];
      return 2 * t * h * dn * shape(op.outputs[0]!)[2]!;
    }
    case "mla_absorb_uv": {
      const [t, h, c] = shape(op.inputs[0]!) as [number, number, number];
      return 2 * t * h * c * shape(op.outputs[0]!)[2]!;
    }
    default:
      return 0;
  }
}

function attrNumber(op: Op, key: string, dims: Dims): number {
  const v = op.attrs[key];
  if (typeof v === "number") return v;
  if (typeof v === "string" && dims[v] !== undefined) return dims[v]!;
  throw new Error(`internal error: ${op.kind} has no numeric '${key}'`);
}

/**
 * FLOPs of an attention core (QKᵀ and AV): 2·T·heads·(Dk + Dv)·ctx, with ctx the average number of
 * keys a query sees — kv_len − q_len/2 when causal (stats.ts's seqLen/2 for training), else kv_len.
 */
export function attentionFlops(g: LayerGraph, op: Op, dims: Dims): number {
  if (op.kind !== "attention") return 0;
  const q = evalShape(g.values[op.inputs[0]!]!.shape, dims);
  const v = evalShape(g.values[op.inputs[2]!]!.shape, dims);
  const qLen = attrNumber(op, "q_len", dims);
  const kvLen = attrNumber(op, "kv_len", dims);
  const ctx = op.attrs["causal"] === true ? kvLen - qLen / 2 : kvLen;
  return 2 * q[0]! * q[1]! * (q[2]! + v[v.length - 1]!) * ctx;
}

/** Forward FLOPs of one graph instance: matmuls (fused bodies included) and attention cores. */
export function graphFlops(g: LayerGraph, dims: Dims): { matmul: number; attention: number } {
  let matmul = 0;
  let attention = 0;
  for (const op of allOps(g.ops)) {
    matmul += matmulFlops(g, op, dims);
    attention += attentionFlops(g, op, dims);
  }
  return { matmul, attention };
}

/** Forward FLOPs of the main model (× counts, MTP apart), per micro-batch of T tokens. */
export function modelFlops(m: ModelGraph): { matmul: number; attention: number; mtpMatmul: number; mtpAttention: number } {
  const r = { matmul: 0, attention: 0, mtpMatmul: 0, mtpAttention: 0 };
  for (const g of m.graphs) {
    const f = graphFlops(g, m.dims);
    if (g.kind === "mtp") {
      r.mtpMatmul += g.count * f.matmul;
      r.mtpAttention += g.count * f.attention;
    } else {
      r.matmul += g.count * f.matmul;
      r.attention += g.count * f.attention;
    }
  }
  return r;
}

/**
 * Elements of persistent state per cached token of one graph instance: every state param is
 * `[B*S, …]` (one row per cached token), so its per-token size is the product of the other dims.
 */
export function cachedElementsPerToken(g: LayerGraph, dims: Dims): number {
  let n = 0;
  for (const id of g.params) {
    const v = g.values[id]!;
    if (v.role === "state") n += numel(v.shape.slice(1), dims);
  }
  return n;
}

/** The KV cache per token of the main model's decoder layers (Σ count × per-layer elements). */
export function modelCachedElementsPerToken(m: ModelGraph): number {
  return m.graphs.filter((g) => g.kind !== "mtp").reduce((s, g) => s + g.count * cachedElementsPerToken(g, m.dims), 0);
}
