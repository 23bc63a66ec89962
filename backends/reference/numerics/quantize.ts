/**
 * Fine-grained quantisation of row-major matrices, DeepSeek-V3 style (TR §3.3): every tile of a
 * matrix gets its own scale, computed online from the tile's largest magnitude.
 *
 *   activations (forward)   1×128 tiles   one scale per row per 128 columns (along K)
 *   activations (backward)  128×1 tiles   one scale per column per 128 rows (the transposed use)
 *   weights                 128×128 blocks
 *
 * Edge tiles are partial (a 300-column row has tiles of 128, 128 and 44 columns) and get their own
 * scale like any other. Scales are FP32, in a row-major [ceil(rows/tileRows)][ceil(cols/tileCols)]
 * grid — the layout of DeepGEMM's per-token scales and of the checkpoints' `weight_scale_inv`.
 *
 * Scale of a tile: s = max(amax, floor) / maxFinite(format)  (448 for E4M3), rounded to FP32.
 * - The floor (default 1e-4, the clamp DeepGEMM's reference casts apply to amax) keeps an all-zero
 *   tile from dividing by zero; such a tile stores zeros and dequantises exactly.
 * - With `pow2Scales`, s is instead the smallest power of two with amax / s ≤ maxFinite (rounded
 *   up, so no element saturates), as the E5M6 cache and the FP8 MoE dispatch use; those scales are
 *   also returned as UE8M0 bytes.
 * Element: code = encode(x / s), the quotient taken in FP64 (exact for power-of-two scales; one
 * binary64 rounding otherwise, which the error bound below allows for), round to nearest even,
 * saturating at ±maxFinite.
 *
 * Non-finite inputs: NaN and ±infinity are left out of amax (as `fmaxf` leaves NaN out), so they
 * never disturb the other elements of their tile; a NaN encodes as NaN, ±infinity as ±infinity in
 * formats that have one (E5M2, E5M6) and as NaN in E4M3. Neither ever becomes a finite number.
 *
 * Error bound (every finite x, format with m mantissa bits, scale s of its tile):
 *   |x − dequantize(quantize(x))| ≤ 2^-(m+1) · |x| + (subnormalSpacing / 2) · s
 * — half an ulp relative to |x| where x/s is a normal number of the format, half the subnormal
 * spacing (2^-10 for E4M3, 2^-17 for E5M2, 2^-21 for E5M6) in units of s below that. Saturation
 * never adds to it: |x / s| exceeds maxFinite by at most the FP32 rounding of s (2^-24 relative).
 */
import { E4M3 } from "./fp8-e4m3.js";
import {
  encodeMinifloat,
  exponentOf,
  halfUlpBound,
  pow2,
  type CodeArray,
  type MinifloatFormat,
  type RealArray,
} from "./minifloat.js";
import { encodeUE8M0Array } from "./ue8m0.js";

export interface TileShape {
  readonly rows: number;
  readonly cols: number;
}

/** Forward activations: 1×128 along K. */
export const ACTIVATION_TILE: TileShape = Object.freeze({ rows: 1, cols: 128 });
/** Activations in the backward pass (used transposed): 128×1. */
export const BACKWARD_ACTIVATION_TILE: TileShape = Object.freeze({ rows: 128, cols: 1 });
/** Weights: 128×128 blocks. */
export const WEIGHT_BLOCK: TileShape = Object.freeze({ rows: 128, cols: 128 });

/** Default floor on a tile's amax before dividing by the format's maximum. */
export const DEFAULT_AMAX_FLOOR = 1e-4;

/** The largest finite float32; larger inputs cannot come from FP32 tensors. */
const FLOAT32_MAX = 3.4028234663852886e38;

export interface QuantizeOptions {
  readonly tile: TileShape;
  /** Default E4M3. */
  readonly format?: MinifloatFormat;
  /** Round every scale up to a power of two (stored as UE8M0 too). Default false. */
  readonly pow2Scales?: boolean;
  /** Floor on amax (> 0). Default 1e-4. */
  readonly amaxFloor?: number;
}

export interface QuantizedMatrix {
  readonly format: MinifloatFormat;
  /** [rows, cols] of the matrix. */
  readonly shape: readonly [number, number];
  readonly tile: TileShape;
  /** [ceil(rows / tile.rows), ceil(cols / tile.cols)]. */
  readonly scaleShape: readonly [number, number];
  /** Codes, row-major; Uint8Array for formats of up to 8 bits, Uint16Array above. */
  readonly data: CodeArray;
  /** One FP32 scale per tile, row-major over the tile grid. */
  readonly scales: Float32Array;
  /** The same scales as UE8M0 bytes when `pow2Scales`, else undefined. */
  readonly scalesUE8M0: Uint8Array | undefined;
}

/** The scale of a tile whose largest finite magnitude is `amax` (see the file comment). */
export function tileScale(
  amax: number,
  format: MinifloatFormat,
  pow2Scales = false,
  amaxFloor = DEFAULT_AMAX_FLOOR,
): number {
  const a = amax > amaxFloor ? amax : amaxFloor;
  const max = format.maxFinite;
  if (!pow2Scales) return Math.fround(a / max);
  // a/max rounds to a double whose exponent is k or k+1 (the smallest sufficient power of two);
  // a / 2^k is exact, so one comparison settles it.
  let s = pow2(exponentOf(a / max));
  if (a / s > max) s *= 2;
  return s;
}

function checkShape(length: number, rows: number, cols: number, tile: TileShape): void {
  for (const [name, v] of [
    ["rows", rows],
    ["cols", cols],
  ] as const) {
    if (!Number.isInteger(v) || v < 0)
      throw new RangeError(`quantize: ${name} must be a non-negative integer, got ${v}`);
  }
  if (!Number.isInteger(tile.rows) || !Number.isInteger(tile.cols) || tile.rows < 1 || tile.cols < 1) {
    throw new RangeError(`quantize: tile must be positive integers, got ${tile.rows}×${tile.cols}`);
  }
  if (length !== rows * cols) throw new RangeError(`quantize: ${length} values for a ${rows}×${cols} matrix`);
}

/** Quantise a row-major rows×cols matrix tile by tile. */
export function quantize(x: ArrayLike<number>, rows: number, cols: number, options: QuantizeOptions): QuantizedMatrix {
  const { tile } = options;
  checkShape(x.length, rows, cols, tile);
  const format = options.format ?? E4M3;
  const pow2Scales = options.pow2Scales ?? false;
  const floor = options.amaxFloor ?? DEFAULT_AMAX_FLOOR;
  if (!(floor > 0) || !(floor / format.maxFinite >= 2 ** -126) || !(floor <= FLOAT32_MAX)) {
    throw new RangeError(`quantize: amaxFloor must give a normal FP32 scale, got ${floor}`);
  }
  const tileRows = Math.ceil(rows / tile.rows);
  const tileCols = Math.ceil(cols / tile.cols);
  const data: CodeArray = format.bits <= 8 ? new Uint8Array(rows * cols) : new Uint16Array(rows * cols);
  const scales = new Float32Array(tileRows * tileCols);
  for (let ti = 0; ti < tileRows; ti++) {
    const r0 = ti * tile.rows;
    const r1 = Math.min(rows, r0 + tile.rows);
    for (let tj = 0; tj < tileCols; tj++) {
      const c0 = tj * tile.cols;
      const c1 = Math.min(cols, c0 + tile.cols);
      let amax = 0;
      for (let r = r0; r < r1; r++) {
        for (let i = r * cols + c0, end = r * cols + c1; i < end; i++) {
          const a = Math.abs(x[i]!);
          if (a > amax && a !== Infinity) amax = a; // NaN fails the comparison
        }
      }
      if (amax > FLOAT32_MAX) throw new RangeError(`quantize: |x| = ${amax} is beyond FP32's range`);
      const s = tileScale(amax, format, pow2Scales, floor);
      scales[ti * tileCols + tj] = s;
      for (let r = r0; r < r1; r++) {
        for (let i = r * cols + c0, end = r * cols + c1; i < end; i++) {
          const v = x[i]!;
          data[i] =
            v - v === 0 ? encodeMinifloat(format, v / s, "satfinite") : encodeMinifloat(format, v, "nonsaturating");
        }
      }
    }
  }
  const scalesUE8M0 = pow2Scales ? encodeUE8M0Array(scales, new Uint8Array(scales.length)) : undefined;
  return {
    format,
    shape: [rows, cols],
    tile: { rows: tile.rows, cols: tile.cols },
    scaleShape: [tileRows, tileCols],
    data,
    scales,
    scalesUE8M0,
  };
}

/** The scale that applies to element (r, c). */
export function scaleAt(q: QuantizedMatrix, r: number, c: number): number {
  return q.scales[Math.floor(r / q.tile.rows) * q.scaleShape[1] + Math.floor(c / q.tile.cols)]!;
}

/**
 * value(code) · scale for every element. The product is exact in FP64 (≤ 7 + 24 significant bits),
 * so the default Float64Array output is exact; a Float32Array output rounds it once to FP32.
 */
export function dequantize<D extends RealArray = Float64Array>(q: QuantizedMatrix, out?: D): D {
  const [rows, cols] = q.shape;
  const dst = (out ?? new Float64Array(rows * cols)) as D;
  if (dst.length < rows * cols)
    throw new RangeError(`dequantize: output holds ${dst.length} values, ${rows * cols} needed`);
  const table = q.format.decodeTable;
  const { data, scales } = q;
  const tr = q.tile.rows;
  const tc = q.tile.cols;
  const tileCols = q.scaleShape[1];
  for (let r = 0; r < rows; r++) {
    const scaleRow = Math.floor(r / tr) * tileCols;
    for (let c0 = 0; c0 < cols; c0 += tc) {
      const s = scales[scaleRow + c0 / tc]!;
      for (let i = r * cols + c0, end = r * cols + Math.min(cols, c0 + tc); i < end; i++) dst[i] = table[data[i]!]! * s;
    }
  }
  return dst;
}

/**
 * The bound on |x − dequantize(quantize(x))| for a finite x quantised with scale `scale` in
 * `format` (file comment). The relative term carries a 2^-40 margin for the FP64 quotient x / s.
 */
export function quantizationErrorBound(format: MinifloatFormat, x: number, scale: number): number {
  const { relative, absolute } = halfUlpBound(format);
  return relative * (1 + 2 ** -40) * Math.abs(x) + absolute * scale;
}
