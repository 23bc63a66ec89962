/**
 * How the reference kernels hold tensors: one typed array per KernelTensor id, in its dtype —
 *
 *   fp32, bf16      Float32Array of the values (a bf16 tensor holds values already rounded to BF16);
 *   i32             Int32Array;
 *   e4m3/e5m2/e5m6  codes (Uint8Array, Uint16Array for E5M6) under the id, and one FP32 scale per
 *                   tile under `${id}.scale` (row-major over the tile grid of the tensor viewed as
 *                   [prod(leading dims), last dim]; for a rank-3 weight [E, N, K] with a 128×128 quant,
 *                   each expert's [N, K] matrix has its own grid, experts one after another).
 *                   A pow2 tensor's scales are powers of two (their UE8M0 bytes are not carried).
 *
 * Shared by runKernel (one file per kind) and runUnfused (unfused.ts).
 */
import type { ConstantValue, KernelSpec, KernelTensor } from "../../../compiler/kernel-spec.js";
import type { Dtype, Quant } from "../../../compiler/graph/ir.js";
import {
  E4M3,
  E5M2,
  E5M6,
  quantize,
  roundToBf16,
  type MinifloatFormat,
  type QuantizedMatrix,
} from "../numerics/index.js";

export type KernelArray = Float32Array | Int32Array | Uint8Array | Uint16Array;
export type KernelValues = Map<string, KernelArray>;

export function scaleKey(id: string): string {
  return `${id}.scale`;
}

export function minifloatOf(dtype: Dtype): MinifloatFormat {
  switch (dtype) {
    case "e4m3":
      return E4M3;
    case "e5m2":
      return E5M2;
    case "e5m6":
      return E5M6;
    default:
      throw new Error(`reference kernels: ${dtype} is not a quantised format`);
  }
}

/** A format word of the KernelSpec's constants (`e4m3/1x128/pow2`, `bf16`) parsed. */
export interface ParsedFormat {
  dtype: Dtype;
  quant: Quant | null;
}

export function parseFormat(word: ConstantValue | undefined): ParsedFormat {
  if (typeof word !== "string") throw new Error(`reference kernels: bad format constant ${JSON.stringify(word)}`);
  const [dtype, tile, pow2] = word.split("/");
  if (tile === undefined) return { dtype: dtype as Dtype, quant: null };
  const [r, c] = tile.split("x").map(Number);
  return { dtype: dtype as Dtype, quant: { tile: [r!, c!], pow2: pow2 === "pow2" } };
}

export function num(spec: KernelSpec, key: string): number {
  const v = spec.constants[key];
  if (typeof v !== "number") throw new Error(`${spec.id} (${spec.kind}): constant '${key}' is not a number`);
  return v;
}

export function strings(spec: KernelSpec, key: string): string[] {
  const v = spec.constants[key];
  if (!Array.isArray(v)) throw new Error(`${spec.id} (${spec.kind}): constant '${key}' is not a list`);
  return v.map(String);
}

export function elements(shape: readonly number[]): number {
  return shape.reduce((p, q) => p * q, 1);
}

/** [rows, cols] of a tensor viewed as a matrix over its last dim. */
export function matrixShape(shape: readonly number[]): [number, number] {
  if (shape.length === 0) return [1, 1];
  const cols = shape[shape.length - 1]!;
  return [elements(shape) / cols, cols];
}

/** `x` rounded to `dtype` (bf16: round to nearest even; fp32: to FP32). */
export function roundTo(dtype: Dtype, x: ArrayLike<number>): Float32Array {
  const y = new Float32Array(x.length);
  if (dtype === "bf16") for (let i = 0; i < x.length; i++) y[i] = roundToBf16(x[i]!);
  else if (dtype === "fp32") for (let i = 0; i < x.length; i++) y[i] = x[i]!;
  else throw new Error(`reference kernels: cannot store real values as ${dtype}`);
  return y;
}

export function roundScalar(dtype: Dtype, x: number): number {
  if (dtype === "bf16") return roundToBf16(x);
  if (dtype === "fp32") return Math.fround(x);
  throw new Error(`reference kernels: cannot store real values as ${dtype}`);
}

function take(values: KernelValues, id: string): KernelArray {
  const v = values.get(id);
  if (v === undefined) throw new Error(`reference kernels: no value for %${id}`);
  return v;
}

export function getReal(values: KernelValues, t: KernelTensor): Float32Array {
  const v = take(values, t.id);
  if (!(v instanceof Float32Array)) throw new Error(`reference kernels: %${t.id} (${t.dtype}) is not real`);
  if (v.length !== elements(t.shape)) throw new Error(`reference kernels: %${t.id} has ${v.length} values, ${elements(t.shape)} expected`);
  return v;
}

export function getInt(values: KernelValues, t: KernelTensor): Int32Array {
  const v = take(values, t.id);
  if (!(v instanceof Int32Array)) throw new Error(`reference kernels: %${t.id} is not i32`);
  return v;
}

/** The quantised matrix `index` of a tensor (a rank-3 weight has one per leading index). */
export function getQuantized(values: KernelValues, t: KernelTensor, index = 0): QuantizedMatrix {
  if (t.quant === null) throw new Error(`reference kernels: %${t.id} is not quantised`);
  const codes = take(values, t.id);
  const scales = take(values, scaleKey(t.id));
  if (!(codes instanceof Uint8Array || codes instanceof Uint16Array) || !(scales instanceof Float32Array)) {
    throw new Error(`reference kernels: %${t.id} needs codes and FP32 scales`);
  }
  const [rows, cols] = t.shape.length === 3 ? [t.shape[1]!, t.shape[2]!] : matrixShape(t.shape);
  const tile = { rows: t.quant.tile[0], cols: t.quant.tile[1] };
  const scaleShape: [number, number] = [Math.ceil(rows / tile.rows), Math.ceil(cols / tile.cols)];
  const nScales = scaleShape[0] * scaleShape[1];
  return {
    format: minifloatOf(t.dtype),
    shape: [rows, cols],
    tile,
    scaleShape,
    data: codes.subarray(index * rows * cols, (index + 1) * rows * cols),
    scales: scales.subarray(index * nScales, (index + 1) * nScales),
    scalesUE8M0: undefined,
  };
}

/** Quantises real values to tensor `t`'s format and tile (rank 3: each leading index on its own). */
export function quantizeTensor(t: KernelTensor, x: ArrayLike<number>): { codes: Uint8Array | Uint16Array; scales: Float32Array } {
  if (t.quant === null) throw new Error(`reference kernels: %${t.id} is not quantised`);
  const format = minifloatOf(t.dtype);
  const options = { tile: { rows: t.quant.tile[0], cols: t.quant.tile[1] }, format, pow2Scales: t.quant.pow2 };
  const [groups, rows, cols] = t.shape.length === 3 ? [t.shape[0]!, t.shape[1]!, t.shape[2]!] : [1, ...matrixShape(t.shape)];
  const codes = format.bits <= 8 ? new Uint8Array(groups * rows * cols) : new Uint16Array(groups * rows * cols);
  const parts: Float32Array[] = [];
  for (let g = 0; g < groups; g++) {
    const xs = Array.prototype.slice.call(x, g * rows * cols, (g + 1) * rows * cols) as number[];
    const q = quantize(xs, rows, cols, options);
    codes.set(q.data, g * rows * cols);
    parts.push(q.scales);
  }
  const scales = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    scales.set(p, o);
    o += p.length;
  }
  return { codes, scales };
}

export function setQuantized(values: KernelValues, id: string, q: { codes: Uint8Array | Uint16Array; scales: Float32Array }): void {
  values.set(id, q.codes);
  values.set(scaleKey(id), q.scales);
}

/** The outputs of `spec` (and their scales) picked out of `values`. */
export function pickOutputs(spec: KernelSpec, values: KernelValues): KernelValues {
  const out: KernelValues = new Map();
  for (const t of spec.outputs) {
    out.set(t.id, take(values, t.id));
    if (t.quant !== null) out.set(scaleKey(t.id), take(values, scaleKey(t.id)));
  }
  return out;
}
