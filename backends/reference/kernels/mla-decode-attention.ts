/**
 * mla_decode_attention: absorbed-MLA decode attention over the latent cache, FlashDecoding style.
 * For each sequence (q_len queries, kv_len cached rows), head and query: q is read as its two parts
 * (the absorbed q_nope [C] then q_rope [R]: the prologue's concat is never materialised), K is the
 * cache row [C+R], V its first dv = C columns (the prologue's split is a view); keys are visited in
 * blocks of `kv_block` with an online softmax (running max, rescaled running sum and accumulator),
 * and the output is acc / sum stored once in the output dtype.
 *
 * The scores are bitwise the unfused ones (same dot product, same order); the online softmax
 * normalises at the end instead of per probability and rescales per block, so the result differs
 * from attentionForward in the last FP64 bits, which can flip the final BF16 rounding by one ulp:
 * within tolerance, not bitwise.
 */
import { attentionDims } from "../../../compiler/attention-operands.js";
import type { KernelSpec } from "../../../compiler/kernel-spec.js";
import { onlineSoftmaxAttention } from "./online-softmax-attention.js";
import { getReal, type KernelValues } from "./tensors.js";

export function runMlaDecodeAttention(spec: KernelSpec, inputs: KernelValues): KernelValues {
  const d = attentionDims(spec);
  const { queries, heads, dk, dv } = d;
  const attn = spec.main[0]!;
  const concat = spec.prologue.find((op) => op.kind === "concat" && op.outputs[0] === attn.inputs[0]);
  const qParts = (concat === undefined ? [attn.inputs[0]!] : concat.inputs).map((id) => spec.tensors[id]!);
  const qWidths = qParts.map((t) => t.shape[t.shape.length - 1]!);
  if (qWidths.reduce((s, w) => s + w, 0) !== dk) throw new Error(`${spec.id}: q parts do not make dk ${dk}`);
  const kT = spec.tensors[attn.inputs[1]!]!;
  if (kT.shape.length !== 2) throw new Error(`${spec.id}: mla_decode_attention expects one shared latent head`);
  const split = spec.prologue.find((op) => op.kind === "split" && op.outputs.includes(attn.inputs[2]!));
  const vFrom = split === undefined ? null : split.outputs.indexOf(attn.inputs[2]!);
  if (split === undefined || split.inputs[0] !== kT.id || vFrom !== 0) throw new Error(`${spec.id}: V must be the leading columns of the cache`);
  // q: the parts side by side per (query, head); K: the cache rows; V: their leading dv columns.
  const q = new Float64Array(queries * heads * dk);
  let col = 0;
  qParts.forEach((t, p) => {
    const x = getReal(inputs, t);
    const w = qWidths[p]!;
    for (let r = 0; r < queries * heads; r++) for (let e = 0; e < w; e++) q[r * dk + col + e] = x[r * w + e]!;
    col += w;
  });
  const cache = getReal(inputs, kT);
  const rows = cache.length / dk;
  const k = Float64Array.from(cache);
  const v = new Float64Array(rows * dv);
  for (let r = 0; r < rows; r++) for (let c = 0; c < dv; c++) v[r * dv + c] = cache[r * dk + c]!;
  const outT = spec.outputs[0]!;
  return new Map([[outT.id, onlineSoftmaxAttention(q, k, v, 1, d, outT.dtype)]]);
}
