/**
 * prefill_attention: attention with per-head keys and values (training and prefill; MLA in its
 * naive form), FlashAttention style. The operands are read through their sources
 * (compiler/attention-operands.ts): the prologue's concat(k_nope, broadcast(k_rope)) and split of
 * [k_nope | v] are views, never materialised. For each sequence (q_len queries, the last q_len of its
 * kv_len positions), head and query, keys are visited in blocks of `kv_block` up to the causal limit
 * with an online softmax (online-softmax-attention.ts; FP64 here, FP32 on the GPU). Heads share a
 * key/value head in groups of heads / kv_heads (grouped-query attention), as attentionForward.
 *
 * The scores are the unfused ones (same dot products in the same column order); the normalisation
 * at the end and the per-block rescaling differ from attentionForward in the last FP64 bits, which
 * can flip the final BF16 rounding by one ulp: within tolerance, not bitwise.
 */
import { attentionDims, attentionOperandLayout, type AttentionSource } from "../../../compiler/attention-operands.js";
import type { KernelSpec } from "../../../compiler/kernel-spec.js";
import { onlineSoftmaxAttention } from "./online-softmax-attention.js";
import { getReal, num, type KernelValues } from "./tensors.js";

/** Gathers an operand's sources into [tokens, heads, width] (a source with one head is shared). */
function gather(spec: KernelSpec, inputs: KernelValues, sources: readonly AttentionSource[], tokens: number, heads: number): Float64Array {
  const width = sources.reduce((s, x) => s + x.width, 0);
  const out = new Float64Array(tokens * heads * width);
  let col = 0;
  for (const s of sources) {
    const t = spec.tensors[s.tensor];
    if (t === undefined) throw new Error(`${spec.id}: no tensor %${s.tensor}`);
    const x = getReal(inputs, t);
    if (heads % s.heads !== 0) throw new Error(`${spec.id}: %${s.tensor} has ${s.heads} heads for ${heads}`);
    const group = heads / s.heads;
    for (let r = 0; r < tokens; r++) {
      for (let h = 0; h < heads; h++) {
        const src = (r * s.heads + Math.floor(h / group)) * s.row + s.offset;
        const dst = (r * heads + h) * width + col;
        for (let c = 0; c < s.width; c++) out[dst + c] = x[src + c]!;
      }
    }
    col += s.width;
  }
  return out;
}

export function runPrefillAttention(spec: KernelSpec, inputs: KernelValues): KernelValues {
  const d = attentionDims(spec);
  const kvHeads = num(spec, "kv_heads");
  const attn = spec.main[0]!;
  const layout = attentionOperandLayout(spec.replaces, attn, (id) => spec.tensors[id]!.shape);
  const sequences = Math.ceil(d.queries / d.qLen);
  const q = gather(spec, inputs, layout.q, d.queries, d.heads);
  const k = gather(spec, inputs, layout.k, sequences * d.kvLen, kvHeads);
  const v = gather(spec, inputs, layout.v, sequences * d.kvLen, kvHeads);
  const outT = spec.outputs[0]!;
  return new Map([[outT.id, onlineSoftmaxAttention(q, k, v, kvHeads, d, outT.dtype)]]);
}
