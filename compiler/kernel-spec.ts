/**
 * The KernelSpec contract: one fused kernel, as the fuse-kernels pass leaves it in the fused Graph
 * IR (a `fused` op whose body is the unfused ops it replaces) and as the backends consume it:
 *
 * - `kind`, from the closed union below;
 * - `constants`: everything a kernel is specialised on at compile time — concrete sizes (M, N, K,
 *   tokens, experts, …), formats and tiles of its operands, epsilon, scales, padding;
 * - `prologue`, `main`, `epilogue`: the body split around the kernel's core ops (the GEMM(s) of a
 *   GEMM kernel, the RMSNorm of rmsnorm+quantise, …) — e.g. a GEMM's epilogue [add] is a fused
 *   residual add, [swiglu, quantize] a fused SwiGLU + requantisation;
 * - `inputs`, `outputs`: the tensors it reads and writes, with concrete and symbolic shapes;
 * - `replaces`: the unfused ops it stands for, in execution order (prologue ++ main ++ epilogue),
 *   with `tensors` typing every value they touch — so "fused kernel == composition of its unfused
 *   ops" can be checked on the CPU with the reference backend's ops (backends/reference/ops).
 *
 * KernelSpecs are derived from a fused ModelGraph (`kernelSpecs`), never stored separately, so the
 * graph text is the single source of truth; `key` identifies kernels that would compile to the
 * same code (kind + constants), for deduplication.
 */
import { evalShape, type Dims } from "./graph/dim-expr.js";
import type { Dtype, LayerGraph, LayerKind, ModelGraph, Op, OpKind, Quant, Value } from "./graph/ir.js";
import { attentionOperandLayout, sourceWord } from "./attention-operands.js";

export type KernelKind =
  | "rmsnorm_quantize"
  | "swiglu_quantize"
  | "gemm"
  | "grouped_gemm"
  | "gate_topk"
  | "moe_permute"
  | "moe_unpermute"
  | "mla_decode_attention"
  | "prefill_attention"
  | "rope";

export const KERNEL_KINDS: readonly KernelKind[] = [
  "rmsnorm_quantize",
  "swiglu_quantize",
  "gemm",
  "grouped_gemm",
  "gate_topk",
  "moe_permute",
  "moe_unpermute",
  "mla_decode_attention",
  "prefill_attention",
  "rope",
];

/** The core op kinds of each kernel; body ops before them are the prologue, after them the epilogue. */
export const KERNEL_MAIN_OPS: Record<KernelKind, readonly OpKind[]> = {
  rmsnorm_quantize: ["rmsnorm"],
  swiglu_quantize: ["swiglu"],
  gemm: ["linear"],
  grouped_gemm: ["grouped_linear"],
  gate_topk: ["linear"],
  moe_permute: ["moe_permute"],
  moe_unpermute: ["moe_unpermute"],
  mla_decode_attention: ["attention"],
  prefill_attention: ["attention"],
  rope: ["rope"],
};

export type ConstantValue = number | string | boolean | (number | string)[];

export interface KernelTensor {
  id: string;
  dtype: Dtype;
  /** Concrete sizes. */
  shape: number[];
  /** The symbolic shape it came from. */
  dims: string[];
  quant: Quant | null;
}

export interface KernelSpec {
  /** `<graph kind>.k<n>`: the n-th fused op of that graph (deterministic). */
  id: string;
  kind: KernelKind;
  /** The layer graph it runs in, and how many times a forward pass runs that graph. */
  graph: LayerKind;
  instances: number;
  constants: Record<string, ConstantValue>;
  prologue: Op[];
  main: Op[];
  epilogue: Op[];
  inputs: KernelTensor[];
  outputs: KernelTensor[];
  /** The unfused ops, in execution order. */
  replaces: Op[];
  /** Every value `replaces` reads or writes. */
  tensors: Record<string, KernelTensor>;
  /** Some replaced op is recomputed in the backward pass (the kernel is re-run there). */
  recompute: boolean;
  /** Kind and constants: equal keys compile to the same kernel. */
  key: string;
}

/** A quantised tensor's format as one word: `e4m3/1x128`, `e4m3/1x128/pow2`; else the dtype. */
export function formatOf(t: { dtype: Dtype; quant: Quant | null }): string {
  if (t.quant === null) return t.dtype;
  return `${t.dtype}/${t.quant.tile[0]}x${t.quant.tile[1]}${t.quant.pow2 ? "/pow2" : ""}`;
}

function tensorOf(v: Value, dims: Dims): KernelTensor {
  return { id: v.id, dtype: v.dtype, shape: evalShape(v.shape, dims), dims: [...v.shape], quant: v.quant };
}

function attrNumber(op: Op, key: string, dims: Dims): number {
  const v = op.attrs[key];
  if (typeof v === "number") return v;
  if (typeof v === "string" && dims[v] !== undefined) return dims[v]!;
  throw new Error(`internal error: ${op.kind} has no numeric attribute '${key}'`);
}

/** Compile-time constants of one kernel from its body (see the file comment). */
function constantsOf(
  kind: KernelKind,
  fused: Op,
  main: Op[],
  epilogue: Op[],
  t: (id: string) => KernelTensor,
  dims: Dims,
): Record<string, ConstantValue> {
  const c: Record<string, ConstantValue> = {};
  const first = main[0]!;
  const find = (k: OpKind): Op | undefined => fused.body!.find((op) => op.kind === k);
  switch (kind) {
    case "gemm":
    case "grouped_gemm":
    case "gate_topk": {
      const x = t(first.inputs[0]!);
      const w = t(first.inputs[1]!);
      const grouped = kind === "grouped_gemm";
      c["m"] = x.shape[0]!;
      c["n"] = main.reduce((s, op) => s + t(op.inputs[1]!).shape[grouped ? 1 : 0]!, 0);
      c["k"] = x.shape[1]!;
      if (grouped) c["groups"] = w.shape[0]!;
      if (grouped && first.attrs["layout"] === "masked") c["layout"] = "masked";
      c["a"] = formatOf(x);
      c["b"] = formatOf(w);
      c["out"] = formatOf(t(first.outputs[0]!));
      if (first.attrs["promote"] !== undefined) c["promote"] = attrNumber(first, "promote", dims);
      if (main.length > 1) c["merged"] = main.length;
      if (kind === "gate_topk") {
        const scores = find("gate_scores");
        const topk = find("group_topk");
        const weights = find("gate_weights");
        if (scores) c["scoring"] = String(scores.attrs["scoring"]);
        c["bias"] = fused.body!.some((op) => op.kind === "add");
        if (topk) {
          c["topk"] = attrNumber(topk, "k", dims);
          c["groups"] = attrNumber(topk, "groups", dims);
          c["top_groups"] = attrNumber(topk, "top_groups", dims);
          c["group_score"] = String(topk.attrs["group_score"]);
        }
        if (weights) {
          c["normalize"] = weights.attrs["normalize"] === true;
          c["routed_scale"] = attrNumber(weights, "scale", dims);
        }
      } else {
        c["epilogue"] = epilogue.map((op) => op.kind);
      }
      break;
    }
    case "rmsnorm_quantize": {
      const x = t(first.inputs[0]!);
      c["rows"] = x.shape.slice(0, -1).reduce((p, q) => p * q, 1);
      c["dim"] = x.shape[x.shape.length - 1]!;
      c["eps"] = attrNumber(first, "eps", dims);
      c["formats"] = epilogue.filter((op) => op.kind === "quantize").map((op) => formatOf(t(op.outputs[0]!)));
      c["unquantised_output"] = fused.outputs.includes(first.outputs[0]!);
      break;
    }
    case "swiglu_quantize": {
      const x = t(first.inputs[0]!);
      c["rows"] = x.shape[0]!;
      c["dim"] = x.shape[1]!;
      c["formats"] = epilogue.filter((op) => op.kind === "quantize").map((op) => formatOf(t(op.outputs[0]!)));
      break;
    }
    case "moe_permute": {
      const x = t(first.inputs[0]!);
      const idx = t(first.inputs[1]!);
      c["tokens"] = x.shape[0]!;
      c["hidden"] = x.shape[1]!;
      c["topk"] = idx.shape[1]!;
      c["experts"] = t(first.outputs[1]!).shape[0]!;
      c["align"] = first.attrs["align"] === undefined ? 1 : attrNumber(first, "align", dims);
      c["rows"] = t(first.outputs[0]!).shape[0]!;
      if (first.attrs["capacity"] !== undefined) {
        c["layout"] = "masked";
        c["capacity"] = attrNumber(first, "capacity", dims);
      }
      c["format"] = formatOf(x);
      break;
    }
    case "moe_unpermute": {
      const y = t(first.inputs[0]!);
      const slots = t(first.inputs[1]!);
      c["tokens"] = slots.shape[0]!;
      c["topk"] = slots.shape[1]!;
      c["rows"] = y.shape[0]!;
      c["hidden"] = y.shape[1]!;
      c["format"] = formatOf(y);
      break;
    }
    case "mla_decode_attention": {
      const q = t(first.inputs[0]!);
      const k = t(first.inputs[1]!);
      const v = t(first.inputs[2]!);
      c["queries"] = q.shape[0]!;
      c["heads"] = q.shape[1]!;
      c["dk"] = k.shape[k.shape.length - 1]!;
      c["dv"] = v.shape[v.shape.length - 1]!;
      c["q_len"] = attrNumber(first, "q_len", dims);
      c["kv_len"] = attrNumber(first, "kv_len", dims);
      c["scale"] = attrNumber(first, "scale", dims);
      c["causal"] = first.attrs["causal"] === true;
      break;
    }
    case "prefill_attention": {
      const q = t(first.inputs[0]!);
      const k = t(first.inputs[1]!);
      const v = t(first.inputs[2]!);
      c["queries"] = q.shape[0]!;
      c["heads"] = q.shape[1]!;
      c["kv_heads"] = k.shape[1]!;
      c["dk"] = k.shape[2]!;
      c["dv"] = v.shape[2]!;
      c["q_len"] = attrNumber(first, "q_len", dims);
      c["kv_len"] = attrNumber(first, "kv_len", dims);
      c["scale"] = attrNumber(first, "scale", dims);
      c["causal"] = first.attrs["causal"] === true;
      // Where each operand's columns are read from (the prologue's split/broadcast/concat are views).
      const layout = attentionOperandLayout(fused.body!, first, (id) => t(id).shape);
      c["q_sources"] = layout.q.map(sourceWord);
      c["k_sources"] = layout.k.map(sourceWord);
      c["v_sources"] = layout.v.map(sourceWord);
      break;
    }
    case "rope": {
      const x = t(first.inputs[0]!);
      c["rows"] = x.shape[0]!;
      c["heads"] = x.shape.length === 3 ? x.shape[1]! : 1;
      c["rope_dim"] = x.shape[x.shape.length - 1]!;
      const concat = epilogue.find((op) => op.kind === "concat");
      const whole = concat === undefined ? null : t(concat.outputs[0]!);
      c["head_dim"] = whole === null ? (c["rope_dim"] as number) : whole.shape[whole.shape.length - 1]!;
      c["offset"] = (c["head_dim"] as number) - (c["rope_dim"] as number);
      c["theta"] = attrNumber(first, "theta", dims);
      const yarn = first.attrs["yarn"];
      if (Array.isArray(yarn)) c["yarn"] = [...yarn];
      break;
    }
  }
  for (const [k, v] of Object.entries(fused.attrs)) c[k] = Array.isArray(v) ? [...v] : v;
  return c;
}

function sortedJson(x: unknown): string {
  if (Array.isArray(x)) return `[${x.map(sortedJson).join(",")}]`;
  if (x !== null && typeof x === "object") {
    const o = x as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${sortedJson(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(x);
}

/** The KernelSpec of one fused op of `g`; `ordinal` numbers the fused ops of the graph. */
export function kernelSpecOf(g: LayerGraph, fused: Op, ordinal: number, dims: Dims): KernelSpec {
  if (fused.kind !== "fused" || fused.kernel === undefined || fused.body === undefined) {
    throw new Error(`internal error: kernelSpecOf needs a fused op, got ${fused.kind}`);
  }
  const kind = fused.kernel;
  const body = fused.body;
  const mainKinds = KERNEL_MAIN_OPS[kind];
  const firstMain = body.findIndex((op) => mainKinds.includes(op.kind));
  if (firstMain < 0) throw new Error(`internal error: ${kind} kernel without a ${mainKinds.join("/")} op`);
  let lastMain = firstMain;
  while (lastMain + 1 < body.length && mainKinds.includes(body[lastMain + 1]!.kind)) lastMain++;
  const prologue = body.slice(0, firstMain);
  const main = body.slice(firstMain, lastMain + 1);
  const epilogue = body.slice(lastMain + 1);
  const tensors: Record<string, KernelTensor> = {};
  const t = (id: string): KernelTensor => {
    let k = tensors[id];
    if (k === undefined) {
      const v = g.values[id];
      if (v === undefined) throw new Error(`internal error: kernel body uses unknown %${id}`);
      k = tensorOf(v, dims);
      tensors[id] = k;
    }
    return k;
  };
  for (const op of body) for (const id of [...op.inputs, ...op.outputs]) t(id);
  const constants = constantsOf(kind, fused, main, epilogue, t, dims);
  return {
    id: `${g.kind}.k${ordinal}`,
    kind,
    graph: g.kind,
    instances: g.count,
    constants,
    prologue: structuredClone(prologue),
    main: structuredClone(main),
    epilogue: structuredClone(epilogue),
    inputs: fused.inputs.map(t),
    outputs: fused.outputs.map(t),
    replaces: structuredClone(body),
    tensors,
    recompute: body.some((op) => op.flags.includes("recompute")),
    key: `${kind}:${sortedJson(constants)}`,
  };
}

/** Every kernel of a fused model, graph by graph in graph order, fused ops in op order. */
export function kernelSpecs(m: ModelGraph): KernelSpec[] {
  const out: KernelSpec[] = [];
  for (const g of m.graphs) {
    let n = 0;
    for (const op of g.ops) if (op.kind === "fused") out.push(kernelSpecOf(g, op, n++, m.dims));
  }
  return out;
}

/** One KernelSpec per distinct `key` (the first of each), in order. */
export function uniqueKernels(kernels: readonly KernelSpec[]): KernelSpec[] {
  const seen = new Set<string>();
  const out: KernelSpec[] = [];
  for (const k of kernels) {
    if (seen.has(k.key)) continue;
    seen.add(k.key);
    out.push(k);
  }
  return out;
}
