/**
 * The Graph IR's text form: deterministic, one op per line, used by `--dump-after`, by the
 * Before/Expected pass tests and for reading. parse.ts reads it back (print ∘ parse ∘ print = print).
 *
 *   model tiny-v3 phase=train
 *   dims T=128 B=2 L=64 H=64 …
 *
 *   graph moe_layer count=3 layers=1..3 {
 *     input %x:bf16[T,H]
 *     weight %attn_norm:bf16[H]
 *     weight %embed:bf16[V,H] shared
 *     state %mla.kv_cache:bf16[B*S,C+R]
 *     block rmsnorm
 *     block rmsnorm
 *     %0:bf16[T,H] = rmsnorm(%x, %attn_norm) {eps=0.000001} !recompute
 *     block moe_experts
 *     %3:e4m3[T,H]/1x128/pow2 = quantize(%0) {cache=e4m3, cache_pow2=true}
 *     %4:e4m3[T*K,H]/1x128/pow2, %5:i32[E], %6:i32[T,K] = moe_permute(%3, %2)
 *     %9:e4m3[T,H]/1x128 = fused rmsnorm_quantize(%x, %attn_norm) [
 *       %8:bf16[T,H] = rmsnorm(%x, %attn_norm) {eps=0.000001}
 *       %9:e4m3[T,H]/1x128 = quantize(%8)
 *     ]
 *     output %40, %41
 *   }
 *
 * Types are `dtype[dims]`, then `/RxC` for a quantised value's scale tile and `/pow2` for
 * power-of-two (UE8M0) scales. A value's id is its name for params, a number for temporaries.
 * Attributes are printed sorted by key; strings bare when they are word-like, else JSON-quoted;
 * numbers as JavaScript prints them (exact round trip). `block NAME` lines set the block of the ops
 * that follow (printed when it changes). A fused op's outputs are typed on its line and defined by
 * its body. Lines starting with `//` are comments.
 */
import type { Dims } from "./dim-expr.js";
import type { AttrValue, Attrs, Block, LayerGraph, ModelGraph, Op, Value } from "./ir.js";

const BARE = /^[A-Za-z_][A-Za-z0-9_.\-\/]*$/;

export function printAttrScalar(v: number | string | boolean): string {
  if (typeof v === "number") return Object.is(v, -0) ? "-0" : String(v);
  if (typeof v === "boolean") return String(v);
  return BARE.test(v) && v !== "true" && v !== "false" ? v : JSON.stringify(v);
}

export function printAttrValue(v: AttrValue): string {
  return Array.isArray(v) ? `[${v.map(printAttrScalar).join(", ")}]` : printAttrScalar(v);
}

export function printAttrs(attrs: Attrs): string {
  const keys = Object.keys(attrs).sort();
  if (keys.length === 0) return "";
  return ` {${keys.map((k) => `${k}=${printAttrValue(attrs[k]!)}`).join(", ")}}`;
}

/** `%id:dtype[dims]/tile/pow2`. */
export function printType(v: Value): string {
  const q = v.quant === null ? "" : `/${v.quant.tile[0]}x${v.quant.tile[1]}${v.quant.pow2 ? "/pow2" : ""}`;
  return `%${v.id}:${v.dtype}[${v.shape.join(",")}]${q}`;
}

function printOp(g: LayerGraph, op: Op, indent: string, lines: string[], blockRef: { block: Block | null }): void {
  if (op.block !== blockRef.block) {
    lines.push(`${indent}block ${op.block}`);
    blockRef.block = op.block;
  }
  const outs = op.outputs.map((id) => {
    const v = g.values[id];
    if (v === undefined) throw new Error(`internal error: print: no value %${id}`);
    return printType(v);
  });
  const head = op.kind === "fused" ? `fused ${op.kernel ?? "?"}` : op.kind;
  const ins = op.inputs.map((id) => `%${id}`).join(", ");
  const flags = op.flags.map((f) => ` !${f}`).join("");
  const line = `${indent}${outs.join(", ")} = ${head}(${ins})${printAttrs(op.attrs)}${flags}`;
  if (op.body === undefined) {
    lines.push(line);
    return;
  }
  lines.push(`${line} [`);
  const inner = { block: op.block as Block | null };
  for (const b of op.body) printOp(g, b, `${indent}  `, lines, inner);
  lines.push(`${indent}]`);
}

function printLayers(layers: [number, number][]): string {
  return layers.map(([a, z]) => `${a}..${z}`).join(",");
}

/** One graph, `graph KIND count=N [layers=A..B,…] { … }`. */
export function printGraph(g: LayerGraph): string {
  const lines: string[] = [];
  const layers = g.layers.length > 0 ? ` layers=${printLayers(g.layers)}` : "";
  lines.push(`graph ${g.kind} count=${g.count}${layers} {`);
  for (const id of g.params) {
    const v = g.values[id];
    if (v === undefined) throw new Error(`internal error: print: no param %${id}`);
    lines.push(`  ${v.role} ${printType(v)}${v.shared ? " shared" : ""}`);
  }
  const ref = { block: null as Block | null };
  for (const op of g.ops) printOp(g, op, "  ", lines, ref);
  if (g.outputs.length > 0) lines.push(`  output ${g.outputs.map((id) => `%${id}`).join(", ")}`);
  lines.push("}");
  return lines.join("\n");
}

export function printDims(dims: Dims): string {
  return `dims ${Object.entries(dims)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ")}`;
}

/** The whole model: header, dims, then each graph, separated by blank lines; ends with a newline. */
export function printModel(m: ModelGraph): string {
  const parts = [`model ${printAttrScalar(m.model)} phase=${m.phase}\n${printDims(m.dims)}`];
  for (const g of m.graphs) parts.push(printGraph(g));
  return `${parts.join("\n\n")}\n`;
}
