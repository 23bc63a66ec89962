/**
 * swiglu_quantize: row by row, h = SiLU(g)·u (g·σ(g)·u, as swigluForward) stored in the SwiGLU
 * output's dtype, then quantised to each format of `formats` with the row's 1×128 tiles. Same
 * operations in the same order as swiglu → quantize: bitwise.
 */
import type { KernelSpec } from "../../../compiler/kernel-spec.js";
import { quantize } from "../numerics/index.js";
import { sigmoid } from "../ops/tensor.js";
import { getReal, minifloatOf, num, parseFormat, roundScalar, scaleKey, strings, type KernelValues } from "./tensors.js";

export function runSwigluQuantize(spec: KernelSpec, inputs: KernelValues): KernelValues {
  const rows = num(spec, "rows");
  const dim = num(spec, "dim");
  const formats = strings(spec, "formats").map(parseFormat);
  const g = getReal(inputs, spec.inputs[0]!);
  const u = getReal(inputs, spec.inputs[1]!);
  const hT = spec.tensors[spec.main[0]!.outputs[0]!]!;
  const quantOuts = spec.outputs.filter((t) => t.quant !== null);
  const out: KernelValues = new Map();
  const h = new Float32Array(rows * dim);
  formats.forEach((f, i) => {
    const t = quantOuts[i]!;
    const tiles = Math.ceil(dim / f.quant!.tile[1]);
    const codes = minifloatOf(f.dtype).bits <= 8 ? new Uint8Array(rows * dim) : new Uint16Array(rows * dim);
    const scales = new Float32Array(rows * tiles);
    for (let r = 0; r < rows; r++) {
      const o = r * dim;
      if (i === 0) {
        for (let j = 0; j < dim; j++) {
          const gi = g[o + j]!;
          h[o + j] = roundScalar(hT.dtype, Math.fround(gi * sigmoid(gi) * u[o + j]!));
        }
      }
      const q = quantize(h.subarray(o, o + dim), 1, dim, { tile: { rows: 1, cols: f.quant!.tile[1] }, format: minifloatOf(f.dtype), pow2Scales: f.quant!.pow2 });
      codes.set(q.data, o);
      scales.set(q.scales, r * tiles);
    }
    out.set(t.id, codes);
    out.set(scaleKey(t.id), scales);
  });
  if (spec.outputs.some((t) => t.id === hT.id)) out.set(hT.id, h);
  return out;
}
