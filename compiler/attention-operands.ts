/**
 * Where an attention kernel reads its query, key and value columns from. The prefill / training
 * attention of MLA in its naive form gets
 *
 *   k = concat(k_nope, broadcast(k_rope))   with [k_nope | v] = split(kv)    (kv: [T,Nh,Dn+Dv])
 *
 * and the fused kernel takes that prologue as views, never materialising the per-head keys: key
 * columns [0, Dn) are columns [0, Dn) of kv's head, columns [Dn, Dn+R) the one shared k_rope row,
 * values columns [Dn, Dn+Dv) of kv. Each operand resolves to a list of sources, one per run of
 * columns: the tensor, the columns taken (`offset`, `width`) of its rows of `row` elements, and its
 * head count (1: one row shared by every head; fewer than the query's heads: grouped-query).
 *
 * Shared by kernel-spec.ts (the layout is part of a kernel's constants, without tensor ids, so equal
 * layouts share one kernel), the reference kernel and the CUDA generator.
 */
import type { Op } from "./graph/ir.js";
import type { KernelSpec } from "./kernel-spec.js";

/** An attention kernel's sizes and softmax constants (both attention kinds carry the same ones). */
export interface AttentionDims {
  queries: number;
  heads: number;
  dk: number;
  dv: number;
  qLen: number;
  kvLen: number;
  scale: number;
  causal: boolean;
  /** Keys per online-softmax block (kv_block; the whole kv_len when absent). */
  block: number;
}

/** The attention constants of an attention KernelSpec (mla_decode_attention, prefill_attention). */
export function attentionDims(spec: KernelSpec): AttentionDims {
  const n = (key: string): number => {
    const v = spec.constants[key];
    if (typeof v !== "number") throw new Error(`${spec.id} (${spec.kind}): constant '${key}' is not a number`);
    return v;
  };
  const kvLen = n("kv_len");
  return {
    queries: n("queries"),
    heads: n("heads"),
    dk: n("dk"),
    dv: n("dv"),
    qLen: n("q_len"),
    kvLen,
    scale: n("scale"),
    causal: spec.constants["causal"] === true,
    block: spec.constants["kv_block"] === undefined ? kvLen : n("kv_block"),
  };
}

export interface AttentionSource {
  tensor: string;
  offset: number;
  width: number;
  row: number;
  heads: number;
}

export interface AttentionOperandLayout {
  q: AttentionSource[];
  k: AttentionSource[];
  v: AttentionSource[];
}

/** The columns [from, from + width) of a run of sources. */
function columns(sources: AttentionSource[], from: number, width: number): AttentionSource[] {
  const out: AttentionSource[] = [];
  let at = 0;
  for (const s of sources) {
    const lo = Math.max(from, at);
    const hi = Math.min(from + width, at + s.width);
    if (lo < hi) out.push({ ...s, offset: s.offset + lo - at, width: hi - lo });
    at += s.width;
  }
  return out;
}

/**
 * The sources of the attention op `attn`'s operands through the split / broadcast / concat ops of
 * `body` (along the last axis; broadcast over heads); any other value is read whole.
 */
export function attentionOperandLayout(body: readonly Op[], attn: Op, shapeOf: (id: string) => readonly number[]): AttentionOperandLayout {
  const producer = new Map<string, Op>();
  for (const op of body) for (const id of op.outputs) producer.set(id, op);
  const last = (id: string): number => shapeOf(id)[shapeOf(id).length - 1]!;
  const lastAxis = (op: Op, id: string): boolean => op.attrs["axis"] === shapeOf(id).length - 1;
  const resolve = (id: string): AttentionSource[] => {
    const op = producer.get(id);
    if (op !== undefined && op.kind === "concat" && lastAxis(op, id)) return op.inputs.flatMap(resolve);
    if (op !== undefined && op.kind === "broadcast" && shapeOf(op.inputs[0]!).length === 2) return resolve(op.inputs[0]!);
    if (op !== undefined && op.kind === "split" && lastAxis(op, op.inputs[0]!)) {
      const index = op.outputs.indexOf(id);
      const from = op.outputs.slice(0, index).reduce((s, o) => s + last(o), 0);
      return columns(resolve(op.inputs[0]!), from, last(id));
    }
    if (op !== undefined) throw new Error(`internal error: attention operand %${id} comes from a fused ${op.kind} the kernel cannot view`);
    const shape = shapeOf(id);
    return [{ tensor: id, offset: 0, width: last(id), row: last(id), heads: shape.length === 3 ? shape[1]! : 1 }];
  };
  return { q: resolve(attn.inputs[0]!), k: resolve(attn.inputs[1]!), v: resolve(attn.inputs[2]!) };
}

/** A source as a constant, without its tensor id: `offset+width/row×heads`. */
export function sourceWord(s: AttentionSource): string {
  return `${s.offset}+${s.width}/${s.row}x${s.heads}`;
}
