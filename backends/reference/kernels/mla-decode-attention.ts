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
import type { KernelSpec } from "../../../compiler/kernel-spec.js";
import { getReal, num, roundScalar, type KernelValues } from "./tensors.js";

export function runMlaDecodeAttention(spec: KernelSpec, inputs: KernelValues): KernelValues {
  const queries = num(spec, "queries");
  const heads = num(spec, "heads");
  const dk = num(spec, "dk");
  const dv = num(spec, "dv");
  const qLen = num(spec, "q_len");
  const kvLen = num(spec, "kv_len");
  const scale = num(spec, "scale");
  const causal = spec.constants["causal"] === true;
  const block = spec.constants["kv_block"] === undefined ? kvLen : num(spec, "kv_block");
  const attn = spec.main[0]!;
  const concat = spec.prologue.find((op) => op.kind === "concat" && op.outputs[0] === attn.inputs[0]);
  const qParts = (concat === undefined ? [attn.inputs[0]!] : concat.inputs).map((id) => spec.tensors[id]!);
  const qArrays = qParts.map((t) => getReal(inputs, t));
  const qWidths = qParts.map((t) => t.shape[t.shape.length - 1]!);
  if (qWidths.reduce((s, w) => s + w, 0) !== dk) throw new Error(`${spec.id}: q parts do not make dk ${dk}`);
  const kT = spec.tensors[attn.inputs[1]!]!;
  if (kT.shape.length !== 2) throw new Error(`${spec.id}: mla_decode_attention expects one shared latent head`);
  const split = spec.prologue.find((op) => op.kind === "split" && op.outputs.includes(attn.inputs[2]!));
  const vFrom = split === undefined ? null : split.outputs.indexOf(attn.inputs[2]!);
  if (split === undefined || split.inputs[0] !== kT.id || vFrom !== 0) throw new Error(`${spec.id}: V must be the leading columns of the cache`);
  const kv = getReal(inputs, kT);
  const outT = spec.outputs[0]!;
  const out = new Float32Array(queries * heads * dv);
  const acc = new Float64Array(dv);
  const scores = new Float64Array(block);
  for (let b = 0; b * qLen < queries; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < qLen; i++) {
        const qi = b * qLen + i;
        const last = causal ? Math.min(kvLen - 1, i + kvLen - qLen) : kvLen - 1;
        let max = -Infinity;
        let sum = 0;
        acc.fill(0);
        for (let j0 = 0; j0 <= last; j0 += block) {
          const j1 = Math.min(last + 1, j0 + block);
          let blockMax = -Infinity;
          for (let j = j0; j < j1; j++) {
            const krow = (b * kvLen + j) * dk;
            let dot = 0;
            let c = 0;
            for (let p = 0; p < qArrays.length; p++) {
              const w = qWidths[p]!;
              const q = qArrays[p]!;
              const qo = (qi * heads + h) * w;
              for (let e = 0; e < w; e++, c++) dot += q[qo + e]! * kv[krow + c]!;
            }
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
            const vrow = (b * kvLen + j) * dk;
            for (let c = 0; c < dv; c++) acc[c] = acc[c]! + e * kv[vrow + c]!;
          }
          max = newMax;
        }
        const o = (qi * heads + h) * dv;
        for (let c = 0; c < dv; c++) out[o + c] = roundScalar(outT.dtype, Math.fround(acc[c]! / sum));
      }
    }
  }
  return new Map([[outT.id, out]]);
}
