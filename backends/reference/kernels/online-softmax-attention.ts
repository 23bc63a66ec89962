/**
 * The loop both reference attention kernels share (mla_decode_attention, prefill_attention):
 * FlashAttention-style attention over gathered operands. For each sequence (q_len queries, the last
 * q_len of its kv_len positions), head and query, keys are visited in blocks of `block` up to the
 * causal limit with an online softmax — running max, rescaled running sum and accumulator, in FP64 —
 * and the output acc / sum is rounded once to the output dtype. Heads share a key/value head in groups
 * of heads / kvHeads.
 *
 * Layouts (all row-major): q [queries, heads, dk]; k [sequences·kvLen, kvHeads, dk]; v
 * [sequences·kvLen, kvHeads, dv]; out [queries, heads, dv].
 */
import type { AttentionDims } from "../../../compiler/attention-operands.js";
import type { Dtype } from "../../../compiler/graph/ir.js";
import { roundScalar } from "./tensors.js";

export function onlineSoftmaxAttention(q: Float64Array, k: Float64Array, v: Float64Array, kvHeads: number, d: AttentionDims, outDtype: Dtype): Float32Array {
  const { queries, heads, dk, dv, qLen, kvLen, scale, causal, block } = d;
  const sequences = Math.ceil(queries / qLen);
  const group = heads / kvHeads;
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
        for (let c = 0; c < dv; c++) out[o + c] = roundScalar(outDtype, Math.fround(acc[c]! / sum));
      }
    }
  }
  return out;
}
