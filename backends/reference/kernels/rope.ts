/**
 * rope: rotates, in place, the rope dims [offset, offset + rope_dim) of each of the `heads` groups
 * of a row (head_dim wide: for q, the nope part passes through — the split/concat of the unfused
 * ops disappear), pair (2i, 2i+1) by position·f_i (YaRN-corrected when `yarn`), with the table of
 * ropeTable. Each output element is the same expression as ropeForward's: bitwise.
 */
import type { KernelSpec } from "../../../compiler/kernel-spec.js";
import { ropeTable } from "../ops/rope.js";
import { getInt, getReal, num, roundScalar, type KernelValues } from "./tensors.js";
import { ropeSpecOf } from "./unfused.js";

export function runRope(spec: KernelSpec, inputs: KernelValues): KernelValues {
  const rows = num(spec, "rows");
  const heads = num(spec, "heads");
  const ropeDim = num(spec, "rope_dim");
  const headDim = num(spec, "head_dim");
  const offset = num(spec, "offset");
  const x = getReal(inputs, spec.inputs[0]!);
  const pos = getInt(inputs, spec.inputs[1]!);
  const outT = spec.outputs[0]!;
  const table = ropeTable(ropeDim, ropeSpecOf(spec.constants["theta"], spec.constants["yarn"]), pos);
  const half = ropeDim / 2;
  const y = x.slice();
  for (let t = 0; t < rows; t++) {
    for (let h = 0; h < heads; h++) {
      const base = (t * heads + h) * headDim + offset;
      for (let i = 0; i < half; i++) {
        const c = table.cos[t * half + i]!;
        const s = table.sin[t * half + i]!;
        const x0 = x[base + 2 * i]!;
        const x1 = x[base + 2 * i + 1]!;
        y[base + 2 * i] = roundScalar(outT.dtype, Math.fround(x0 * c - x1 * s));
        y[base + 2 * i + 1] = roundScalar(outT.dtype, Math.fround(x0 * s + x1 * c));
      }
    }
  }
  return new Map([[outT.id, y]]);
}
