/**
 * moe_unpermute: each token gathers its topk expert rows through `slots` and sums them weighted, in
 * FP32, k ascending (fround(w·y) added to an FP32 accumulator), storing the output dtype once.
 * Same operations in the same order as the unfused moe_unpermute: bitwise.
 */
import type { KernelSpec } from "../../../compiler/kernel-spec.js";
import { getInt, getReal, num, roundScalar, type KernelValues } from "./tensors.js";

export function runMoeUnpermute(spec: KernelSpec, inputs: KernelValues): KernelValues {
  const tokens = num(spec, "tokens");
  const topk = num(spec, "topk");
  const hidden = num(spec, "hidden");
  const op = spec.main[0]!;
  const y = getReal(inputs, spec.tensors[op.inputs[0]!]!);
  const slots = getInt(inputs, spec.tensors[op.inputs[1]!]!);
  const w = getReal(inputs, spec.tensors[op.inputs[2]!]!);
  const outT = spec.outputs[0]!;
  const out = new Float32Array(tokens * hidden);
  const acc = new Float32Array(hidden);
  for (let t = 0; t < tokens; t++) {
    acc.fill(0);
    for (let k = 0; k < topk; k++) {
      const wk = w[t * topk + k]!;
      const row = slots[t * topk + k]! * hidden;
      for (let h = 0; h < hidden; h++) acc[h] = acc[h]! + Math.fround(wk * y[row + h]!);
    }
    for (let h = 0; h < hidden; h++) out[t * hidden + h] = roundScalar(outT.dtype, acc[h]!);
  }
  return new Map([[outT.id, out]]);
}
