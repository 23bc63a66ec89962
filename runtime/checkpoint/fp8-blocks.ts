/**
 * FP8 block-scaled weights as DeepSeek-V3 checkpoints store them: the matrix in F8_E4M3 and
 * `weight_scale_inv`, an FP32 grid of ceil(rows/128) × ceil(cols/128) scales (edge blocks partial),
 * so that W[i][j] = e4m3(W_q[i][j]) × scale_inv[⌊i/128⌋][⌊j/128⌋]. Dequantising computes that
 * product (exact in FP64: a 4-bit by 24-bit significand) and rounds it once to FP32, as the official
 * `weight_dequant` kernel does in FP32. Quantising is the reference numerics' block quantiser
 * (backends/reference/numerics/quantize.ts: scale = amax / 448 rounded to FP32, or the power of two
 * above it with `pow2Scales`), whose scales are the same grid, so a quantised matrix written and read
 * back dequantises to exactly `dequantize(quantize(x))`.
 */
import { E4M3 } from "../../backends/reference/numerics/fp8-e4m3.js";
import { encodeMinifloat, exponentOf, pow2 } from "../../backends/reference/numerics/minifloat.js";
import { DEFAULT_AMAX_FLOOR, tileScale } from "../../backends/reference/numerics/quantize.js";

export interface BlockShape {
  rows: number;
  cols: number;
}

/** DeepSeek-V3's weight block. */
export const CHECKPOINT_BLOCK: BlockShape = { rows: 128, cols: 128 };

/** The scale grid of a rows × cols matrix. */
export function scaleGridShape(rows: number, cols: number, block: BlockShape = CHECKPOINT_BLOCK): [number, number] {
  return [Math.ceil(rows / block.rows), Math.ceil(cols / block.cols)];
}

/** W = e4m3(codes) × scaleInv per block, into `out` (rows × cols FP32). */
export function dequantiseBlocks(codes: Uint8Array, scaleInv: Float32Array, rows: number, cols: number, out: Float32Array = new Float32Array(rows * cols), block: BlockShape = CHECKPOINT_BLOCK): Float32Array {
  const [gr, gc] = scaleGridShape(rows, cols, block);
  if (codes.length !== rows * cols) throw new RangeError(`dequantiseBlocks: ${codes.length} codes for ${rows}×${cols}`);
  if (scaleInv.length !== gr * gc) throw new RangeError(`dequantiseBlocks: ${scaleInv.length} scales for a ${gr}×${gc} grid`);
  if (out.length !== rows * cols) throw new RangeError(`dequantiseBlocks: output of ${out.length} for ${rows}×${cols}`);
  const table = E4M3.decodeTable;
  for (let i = 0; i < rows; i++) {
    const srow = Math.floor(i / block.rows) * gc;
    for (let b = 0; b < gc; b++) {
      const s = scaleInv[srow + b]!;
      const end = i * cols + Math.min(cols, (b + 1) * block.cols);
      for (let k = i * cols + b * block.cols; k < end; k++) out[k] = table[codes[k]!]! * s;
    }
  }
  return out;
}

export interface QuantisedBlocks {
  codes: Uint8Array;
  scaleInv: Float32Array;
  scaleShape: [number, number];
}

/**
 * E4M3 code of a finite double, round to nearest even, saturating at ±448: the numerics' generic
 * encoder (minifloat.ts `encodeMinifloat(E4M3, q, "satfinite")`) specialised to E4M3's constants
 * (bias 7, 3 mantissa bits, binades −6…8), with the same exact steps, ~10× faster in the
 * quantisation loop. A test checks it against the generic encoder code for code.
 */
export function encodeE4M3Finite(q: number): number {
  let a = q;
  let sign = 0;
  if (a < 0 || (a === 0 && 1 / a < 0)) {
    sign = 0x80;
    a = -a;
  }
  if (a === 0) return sign;
  let e = exponentOf(a);
  if (e > 8) return sign | 0x7e;
  if (e < -6) e = -6;
  const n = a * pow2(3 - e);
  const base = (e + 6) * 8;
  let r = Math.floor(n);
  const d = n - r;
  if (d > 0.5 || (d === 0.5 && ((base + r) & 1) === 1)) r += 1;
  const mag = base + r;
  return sign | (mag > 0x7e ? 0x7e : mag);
}

/**
 * Block-quantises a rows × cols matrix to E4M3 exactly as the numerics' `quantize` does with
 * `tile: block` (same amax rule, `tileScale`, quotient in FP64, satfinite encoding; non-finite
 * inputs encoded unscaled, non-saturating), with the encoder specialised (see above). A test
 * checks the two agree bit for bit.
 */
export function quantiseBlocks(x: ArrayLike<number>, rows: number, cols: number, options: { block?: BlockShape; pow2Scales?: boolean } = {}): QuantisedBlocks {
  const block = options.block ?? CHECKPOINT_BLOCK;
  const pow2Scales = options.pow2Scales ?? false;
  if (x.length !== rows * cols) throw new RangeError(`quantiseBlocks: ${x.length} values for ${rows}×${cols}`);
  const [gr, gc] = scaleGridShape(rows, cols, block);
  const codes = new Uint8Array(rows * cols);
  const scaleInv = new Float32Array(gr * gc);
  for (let bi = 0; bi < gr; bi++) {
    const r0 = bi * block.rows;
    const r1 = Math.min(rows, r0 + block.rows);
    for (let bj = 0; bj < gc; bj++) {
      const c0 = bj * block.cols;
      const c1 = Math.min(cols, c0 + block.cols);
      let amax = 0;
      for (let r = r0; r < r1; r++) {
        for (let i = r * cols + c0, end = r * cols + c1; i < end; i++) {
          const v = Math.abs(x[i]!);
          if (v > amax && v !== Infinity) amax = v;
        }
      }
      if (amax > FLOAT32_MAX) throw new RangeError(`quantiseBlocks: |x| = ${amax} is beyond FP32's range`);
      const s = tileScale(amax, E4M3, pow2Scales, DEFAULT_AMAX_FLOOR);
      scaleInv[bi * gc + bj] = s;
      for (let r = r0; r < r1; r++) {
        for (let i = r * cols + c0, end = r * cols + c1; i < end; i++) {
          const v = x[i]!;
          codes[i] = v - v === 0 ? encodeE4M3Finite(v / s) : encodeMinifloat(E4M3, v, "nonsaturating");
        }
      }
    }
  }
  return { codes, scaleInv, scaleShape: [gr, gc] };
}

/** The largest finite float32. */
const FLOAT32_MAX = 3.4028234663852886e38;
