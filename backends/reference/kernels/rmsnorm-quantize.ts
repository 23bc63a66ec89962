/**
 * rmsnorm_quantize: one pass per row — the row's sum of squares (FP64, columns ascending), its
 * reciprocal RMS, the normalised row in the RMSNorm output's dtype (BF16), then one 1×128-tile
 * quantisation per format of `formats` (each row's tiles are its own, so row by row equals the
 * whole matrix). Same operations in the same order as rmsnorm → quantize…: bitwise.
 */
import type { KernelSpec } from "../../../compiler/kernel-spec.js";
import { formatOf } from "../../../compiler/kernel-spec.js";
import { quantize } from "../numerics/index.js";
import { getReal, minifloatOf, num, parseFormat, roundScalar, scaleKey, strings, type KernelValues } from "./tensors.js";

export function runRmsnormQuantize(spec: KernelSpec, inputs: KernelValues): KernelValues {
  const rows = num(spec, "rows");
  const dim = num(spec, "dim");
  const eps = num(spec, "eps");
  const formats = strings(spec, "formats").map(parseFormat);
  const x = getReal(inputs, spec.inputs[0]!);
  const w = getReal(inputs, spec.inputs[1]!);
  const normed = spec.tensors[spec.main[0]!.outputs[0]!]!;
  const quantOuts = spec.outputs.filter((t) => t.quant !== null);
  if (quantOuts.length !== formats.length) throw new Error(`${spec.id}: ${formats.length} formats, ${quantOuts.length} quantised outputs`);
  quantOuts.forEach((t, i) => {
    if (formatOf(t) !== strings(spec, "formats")[i]) throw new Error(`${spec.id}: output ${t.id} is ${formatOf(t)}`);
  });
  const y = new Float32Array(rows * dim);
  const codes = formats.map((f) => (minifloatOf(f.dtype).bits <= 8 ? new Uint8Array(rows * dim) : new Uint16Array(rows * dim)));
  const tiles = formats.map((f) => Math.ceil(dim / f.quant!.tile[1]));
  const scales = formats.map((_, i) => new Float32Array(rows * tiles[i]!));
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let j = 0; j < dim; j++) ss += x[o + j]! * x[o + j]!;
    const s = 1 / Math.sqrt(ss / dim + eps);
    for (let j = 0; j < dim; j++) y[o + j] = roundScalar(normed.dtype, Math.fround(x[o + j]! * s * w[j]!));
    const row = y.subarray(o, o + dim);
    formats.forEach((f, i) => {
      if (f.quant!.tile[0] !== 1) throw new Error(`${spec.id}: rmsnorm_quantize needs 1-row tiles`);
      const q = quantize(row, 1, dim, { tile: { rows: 1, cols: f.quant!.tile[1] }, format: minifloatOf(f.dtype), pow2Scales: f.quant!.pow2 });
      codes[i]!.set(q.data, o);
      scales[i]!.set(q.scales, r * tiles[i]!);
    });
  }
  const out: KernelValues = new Map();
  if (spec.constants["unquantised_output"] === true) out.set(normed.id, y);
  quantOuts.forEach((t, i) => {
    out.set(t.id, codes[i]!);
    out.set(scaleKey(t.id), scales[i]!);
  });
  return out;
}
