/**
 * prefill_attention: attention with per-head keys and values (training and prefill; MLA in its
 * naive form), FlashAttention style. The operands are read through their sources
 * (compiler/attention-operands.ts): the prologue's concat(k_nope, broadcast(k_rope)) and split of
 * [k_nope | v] are views, never materialised. For each sequence (q_len queries, the last q_len of its
 * kv_len positions), head and query, keys are visited in blocks of `kv_block` up to the causal limit
 * with an online softmax (running max, rescaled sum and accumulator, FP64 here, FP32 on the GPU),
 * and the output acc / sum is stored once in the output dtype. Heads share a key/value head in
 * groups of heads / kv_heads (grouped-query attention), as attentionForward.
 *
 * The scores are the unfused ones (same dot products in the same column order); the normalisation
 * at the end and the per-block rescaling differ from attentionForward in the last FP64 bits, which
 * can flip the final BF16 rounding by one ulp: within tolerance, not bitwise.
 */
import { attentionOperandLayout, type AttentionSource } from "../../../compiler/attention-operands.js";
import type { KernelSpec } from "../../../compiler/kernel-spec.js";
import { getReal, num, roundScalar, type KernelValues } from "./tensors.js";

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
  const queries = num(spec, "queries");
  const heads = num(spec, "heads");
  const kvHeads = num(spec, "kv_heads");
  const dk = num(spec, "dk");
  const dv = num(spec, "dv");
  const qLen = num(spec, "q_len");
  const kvLen = num(spec, "kv_len");
  const scale = num(spec, "scale");
  const causal = spec.constants["causal"] === true;
  const block = spec.constants["kv_block"] === undefined ? kvLen : num(spec, "kv_block");
  const attn = spec.main[0]!;
  const layout = attentionOperandLayout(spec.replaces, attn, (id) => spec.tensors[id]!.shape);
  const sequences = Math.ceil(queries / qLen);
  const q = gather(spec, inputs, layout.q, queries, heads);
  const k = gather(spec, inputs, layout.k, sequences * kvLen, kvHeads);
  const v = gather(spec, inputs, layout.v, sequences * kvLen, kvHeads);
  const group = heads / kvHeads;
  const outT = spec.outputs[0]!;
  const out = new Float32Array(queries * heads * dv);
  const acc = new Float64Array(dv);
  const scores = new Float64Array(block);
  for (let b = 0; b < sequences; b++) {
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor(h / group);
      for (let i = 0; i < qLen && b * qLen + i < queries; i++) {
        const qo = ((b * qLen + i) * heads + h) * dk;
        const last = causal ? Math.min(kvLen - 1, i + kvLen - qLen) : kvLen - 1;
        let max = -Infinity;
        let sum = 0;
        acc.fill(0);
        for (let j0 = 0; j0 <= last; j0 += block) {
          const j1 = Math.min(last + 1, j0 + block);
          let blockMax = -Infinity;
          for (let j = j0; j < j1; j++) {
            const ko = ((b * kvLen + j) * kvHeads + kh) * dk;
            let dot = 0;
            for (let c = 0; c < dk; c++) dot += q[qo + c]! * k[ko + c]!;
            const s = dot * scale;
            scores[j - j0] = s;
            if (s > blockMax) blockMax = s;
          }
          const newMax = Math.max(max, blockMax);
          const rescale = Math.exp(max - newMax);
          sum *= rescale;
          for (let c = 0; c < dv; c++) acc[c] = acc[c]! * rescale;
          for (let j = j0; j < j1; j++) {
            const e = Math.exp(scores[j - j0]! - newMax);
            sum += e;
            const vo = ((b * kvLen + j) * kvHeads + kh) * dv;
            for (let c = 0; c < dv; c++) acc[c] = acc[c]! + e * v[vo + c]!;
          }
          max = newMax;
        }
        const o = ((b * qLen + i) * heads + h) * dv;
        for (let c = 0; c < dv; c++) out[o + c] = roundScalar(outT.dtype, Math.fround(acc[c]! / sum));
      }
    }
  }
  return new Map([[outT.id, out]]);
}
