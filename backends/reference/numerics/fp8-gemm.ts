/**
 * FP8 GEMM semantics with two-level accumulation: C = A · Bᵀ for A (M×K) and B (N×K) quantised to
 * FP8 (A per 1×KB tile, B per R×KB block; DeepSeek-V3 uses KB = R = 128), output FP32 and BF16.
 *
 * What Hopper does, and what is modelled here
 * -------------------------------------------
 * A WGMMA with FP8 inputs multiplies along K in steps of 32 (the instruction's K for FP8). Each
 * product of two E4M3 (or E5M2) values is exact (at most 4 × 4 significant bits). The sum is not
 * done in FP32: DeepSeek-V3's report (TR §3.3 "Increasing Accumulation Precision" and §3.5.2)
 * found that the tensor core aligns the 32 mantissa products by right-shifting them to the largest
 * exponent, keeps only the highest 14 bits of each, truncating the rest, and that adding the result
 * into the accumulator registers is done with 14-bit precision too — "about 14 bits" in all.
 * SageAttention 2 reports the same from the other side: the f32 accumulator of mma.f32.f8.f8.f32
 * on Ada and Hopper behaves like FP22 (1 sign, 8 exponent, 13 mantissa bits), lower bits truncated
 * (public discussion: github.com/thu-ml/SageAttention/issues/287, deepseek-ai/DeepGEMM#37).
 *
 * The model, per MMA step of `mmaK` = 32 products and a tensor-core accumulator `acc`:
 *   1. e = the largest exponent (floor log2 |p|) among the step's products; every product is
 *      rounded to a multiple of 2^(e − 13) — 14 significant bits relative to the largest — and the
 *      rounded products are summed exactly: S.
 *   2. acc ← round14(acc ⊕ S): both aligned to the larger exponent of the two and rounded to
 *      14 bits there, summed exactly, and the sum rounded to 14 significant bits (FP22, e8m13).
 * "Rounded" is `rounding`: "toward-zero" by default (truncating a sign-magnitude mantissa, the
 * reading of "truncates bits exceeding this range" that also matches the FP22 observation);
 * "floor" is the two's-complement reading of "sign-fill right shifting" (negative addends round
 * toward −∞, a systematic bias); "nearest-even" is an idealised round-to-nearest accumulator.
 * `alignWithAccumulator: true` folds step 2 into step 1 (the accumulator joins the products'
 * alignment, one rounding per step) — a more pessimistic variant, offered for comparison.
 * Which reading matches the silicon is not public, and the choice matters: at K = 4096 on
 * all-positive inputs without promotion (bench/fp8-accumulation.ts, seed 1, 64×64 outputs) the
 * default model loses up to 0.35 % per element, with 16- or 8-product steps 0.65 % or 1.25 %, and
 * aligned with the accumulator 7.5 % — the report's "nearly 2 %" (inputs and metric unstated) lies
 * inside that spread. With N_C = 128 every variant stays below 0.08 %.
 *
 * Promotion (TR §3.3): every N_C elements along K (`promotionInterval`, a multiple of 32; 128 =
 * 4 WGMMAs in DeepSeek-V3) the tensor-core accumulator is multiplied by a_scale · b_scale and added
 * into an FP32 accumulator on the CUDA cores, then restarts from zero:
 *   acc32 ← fl32(acc32 + fl32(acc · fl32(a_scale · b_scale)))
 * (DeepGEMM multiplies the two scales first; each FP32 operation rounds to nearest even). Because
 * the tensor core cannot apply scales, a promotion interval may not straddle a scale boundary:
 * N_C must divide KB (the scales' extent along K). N_C = KB = K is "no promotion": the whole dot
 * product stays in the 14-bit accumulator; quantise with 1×K tiles to model it.
 *
 * References: `fp8GemmReferenceF64` (the exact result of the quantised inputs, up to one FP64
 * rounding per scale block), `gemmF64` and `gemmF32` (plain dense GEMMs, the latter accumulating
 * in FP32 element by element).
 */
import { BF16 } from "./bf16.js";
import { E4M3 } from "./fp8-e4m3.js";
import { E5M2 } from "./fp8-e5m2.js";
import { encodeMinifloat, exponentOf, pow2, roundHalfEven } from "./minifloat.js";
import type { QuantizedMatrix } from "./quantize.js";

export type AccumulatorRounding = "toward-zero" | "floor" | "nearest-even";

export interface TensorCoreModel {
  /** Significant bits the tensor-core accumulator keeps (14: DeepSeek-V3's measurement). */
  readonly accumulatorBits: number;
  readonly rounding: AccumulatorRounding;
  /** Products per MMA step: 32, the K of an FP8 WGMMA. */
  readonly mmaK: number;
  /** Align the accumulator together with the step's products (one rounding per step). */
  readonly alignWithAccumulator: boolean;
}

export const HOPPER_FP8_TENSOR_CORE: TensorCoreModel = Object.freeze({
  accumulatorBits: 14,
  rounding: "toward-zero",
  mmaK: 32,
  alignWithAccumulator: false,
});

export interface Fp8GemmOptions {
  /** N_C: elements along K between promotions; a multiple of mmaK dividing the scales' K extent. */
  readonly promotionInterval: number;
  readonly model?: Partial<TensorCoreModel>;
}

export interface Fp8GemmResult {
  readonly m: number;
  readonly n: number;
  /** C (M×N, row-major) as accumulated in FP32. */
  readonly f32: Float32Array;
  /** C rounded to BF16 (round to nearest even), as codes. */
  readonly bf16: Uint16Array;
}

const ROUND_TOWARD_ZERO = 0;
const ROUND_FLOOR = 1;
const ROUND_NEAREST_EVEN = 2;

function roundingCode(r: AccumulatorRounding): number {
  switch (r) {
    case "toward-zero":
      return ROUND_TOWARD_ZERO;
    case "floor":
      return ROUND_FLOOR;
    case "nearest-even":
      return ROUND_NEAREST_EVEN;
  }
}

function roundToInteger(v: number, mode: number): number {
  if (mode === ROUND_TOWARD_ZERO) return Math.trunc(v);
  if (mode === ROUND_FLOOR) return Math.floor(v);
  return roundHalfEven(v);
}

/** v rounded to `bits` significant bits. */
function roundSignificant(v: number, bits: number, mode: number): number {
  if (v === 0 || v !== v) return v;
  const e = exponentOf(v < 0 ? -v : v);
  return roundToInteger(v * pow2(bits - 1 - e), mode) * pow2(e - bits + 1);
}

/**
 * One MMA step of the tensor-core accumulator: `acc` plus `count` products from `products`
 * (with `maxAbs` = the largest |product|), per the file comment's model. Returns the new acc.
 */
export function tensorCoreStep(
  acc: number,
  products: ArrayLike<number>,
  count: number,
  maxAbs: number,
  model: TensorCoreModel = HOPPER_FP8_TENSOR_CORE,
): number {
  return step(
    acc,
    products,
    count,
    maxAbs,
    model.accumulatorBits,
    roundingCode(model.rounding),
    model.alignWithAccumulator,
  );
}

function step(
  acc: number,
  products: ArrayLike<number>,
  count: number,
  maxAbs: number,
  bits: number,
  mode: number,
  alignWithAccumulator: boolean,
): number {
  if (maxAbs !== maxAbs || acc !== acc) return NaN;
  if (alignWithAccumulator) {
    const aa = acc < 0 ? -acc : acc;
    const ref = aa > maxAbs ? aa : maxAbs;
    if (ref === 0) return 0;
    const e = exponentOf(ref);
    const up = pow2(bits - 1 - e);
    let s = roundToInteger(acc * up, mode);
    for (let j = 0; j < count; j++) s += roundToInteger(products[j]! * up, mode);
    return roundSignificant(s * pow2(e - bits + 1), bits, mode);
  }
  // 1. the step's products, aligned to the largest and rounded to `bits` bits there.
  let sum = 0;
  if (maxAbs !== 0) {
    const e = exponentOf(maxAbs);
    const up = pow2(bits - 1 - e);
    let s = 0;
    for (let j = 0; j < count; j++) s += roundToInteger(products[j]! * up, mode);
    sum = s * pow2(e - bits + 1);
  }
  // 2. into the accumulator with `bits`-bit precision.
  if (sum === 0) return acc;
  if (acc === 0) return roundSignificant(sum, bits, mode);
  const aa = acc < 0 ? -acc : acc;
  const as = sum < 0 ? -sum : sum;
  const e = exponentOf(aa > as ? aa : as);
  const up = pow2(bits - 1 - e);
  const s = roundToInteger(acc * up, mode) + roundToInteger(sum * up, mode);
  return roundSignificant(s * pow2(e - bits + 1), bits, mode);
}

interface GemmOperands {
  readonly M: number;
  readonly N: number;
  readonly K: number;
  /** Extent of one scale along K. */
  readonly KB: number;
  /** Rows of B sharing a scale. */
  readonly BR: number;
  readonly kBlocks: number;
}

function checkOperands(a: QuantizedMatrix, b: QuantizedMatrix): GemmOperands {
  for (const [name, q] of [
    ["A", a],
    ["B", b],
  ] as const) {
    if (q.format !== E4M3 && q.format !== E5M2)
      throw new TypeError(`fp8Gemm: ${name} must be E4M3 or E5M2, is ${q.format.name}`);
  }
  const [M, K] = a.shape;
  const [N, KbRows] = b.shape;
  if (K !== KbRows) throw new RangeError(`fp8Gemm: A is ${M}×${K} but B is ${N}×${KbRows} (C = A·Bᵀ needs equal K)`);
  if (a.tile.rows !== 1)
    throw new RangeError(`fp8Gemm: A needs 1×KB tiles (one scale per row), got ${a.tile.rows}×${a.tile.cols}`);
  if (a.tile.cols !== b.tile.cols) {
    throw new RangeError(`fp8Gemm: A's and B's scales must cover the same K extent (${a.tile.cols} vs ${b.tile.cols})`);
  }
  const KB = a.tile.cols;
  return { M, N, K, KB, BR: b.tile.rows, kBlocks: a.scaleShape[1] };
}

/** The tensor-core model with defaults filled in and checked. */
function resolveModel(model: Partial<TensorCoreModel> | undefined): TensorCoreModel {
  const m = { ...HOPPER_FP8_TENSOR_CORE, ...model };
  if (!Number.isInteger(m.accumulatorBits) || m.accumulatorBits < 2 || m.accumulatorBits > 53) {
    throw new RangeError(`fp8Gemm: accumulatorBits must be an integer in [2, 53], got ${m.accumulatorBits}`);
  }
  if (!Number.isInteger(m.mmaK) || m.mmaK < 1)
    throw new RangeError(`fp8Gemm: mmaK must be a positive integer, got ${m.mmaK}`);
  return m;
}

/**
 * C = A · Bᵀ with FP8 inputs, emulating the tensor core's limited accumulator and promotion every
 * `promotionInterval` elements into FP32 (file comment).
 */
export function fp8Gemm(a: QuantizedMatrix, b: QuantizedMatrix, options: Fp8GemmOptions): Fp8GemmResult {
  const { M, N, K, KB, BR, kBlocks } = checkOperands(a, b);
  const model = resolveModel(options.model);
  const NC = options.promotionInterval;
  const mmaK = model.mmaK;
  if (!Number.isInteger(NC) || NC < mmaK || NC % mmaK !== 0) {
    throw new RangeError(`fp8Gemm: the promotion interval must be a positive multiple of ${mmaK}, got ${NC}`);
  }
  if (KB % NC !== 0 && !(KB >= K && NC >= K)) {
    throw new RangeError(
      `fp8Gemm: a promotion interval of ${NC} straddles the scale blocks of ${KB} along K; it must divide ${KB}`,
    );
  }
  const bits = model.accumulatorBits;
  const mode = roundingCode(model.rounding);
  const alignWithAccumulator = model.alignWithAccumulator;
  const va = a.format.decodeTable;
  const vb = b.format.decodeTable;
  const ad = a.data;
  const bd = b.data;
  const sa = a.scales;
  const sb = b.scales;
  const products = new Float64Array(mmaK);
  const f32 = new Float32Array(M * N);
  const bf16 = new Uint16Array(M * N);

  for (let i = 0; i < M; i++) {
    const aRow = i * K;
    for (let j = 0; j < N; j++) {
      const bRow = j * K;
      const bScaleRow = Math.floor(j / BR) * kBlocks;
      let acc32 = 0;
      for (let kb = 0; kb < kBlocks; kb++) {
        const scale = Math.fround(sa[i * kBlocks + kb]! * sb[bScaleRow + kb]!);
        const blockEnd = Math.min(K, (kb + 1) * KB);
        for (let p0 = kb * KB; p0 < blockEnd; p0 += NC) {
          const promoteEnd = Math.min(blockEnd, p0 + NC);
          let acc = 0;
          for (let c0 = p0; c0 < promoteEnd; c0 += mmaK) {
            const cEnd = Math.min(promoteEnd, c0 + mmaK);
            let maxAbs = 0;
            let count = 0;
            for (let k = c0; k < cEnd; k++) {
              const p = va[ad[aRow + k]!]! * vb[bd[bRow + k]!]!;
              products[count++] = p;
              const ap = p < 0 ? -p : p;
              if (!(ap <= maxAbs)) maxAbs = ap; // NaN sticks
            }
            acc = step(acc, products, count, maxAbs, bits, mode, alignWithAccumulator);
          }
          acc32 = Math.fround(acc32 + Math.fround(acc * scale));
        }
      }
      f32[i * N + j] = acc32;
      bf16[i * N + j] = encodeMinifloat(BF16, acc32, "nonsaturating");
    }
  }
  return { m: M, n: N, f32, bf16 };
}

/**
 * The exact C = A · Bᵀ of the quantised operands in FP64: per scale block, Σ value(a)·value(b) is
 * exact (products are multiples of 2^-18 below 2^18, and fewer than 2^14 of them are summed, so
 * the sum fits 53 bits); it is then multiplied by a_scale · b_scale (exact) with one rounding, and
 * the blocks are added in FP64.
 */
export function fp8GemmReferenceF64(a: QuantizedMatrix, b: QuantizedMatrix): Float64Array {
  const { M, N, K, KB, BR, kBlocks } = checkOperands(a, b);
  const va = a.format.decodeTable;
  const vb = b.format.decodeTable;
  const ad = a.data;
  const bd = b.data;
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      const bScaleRow = Math.floor(j / BR) * kBlocks;
      let total = 0;
      for (let kb = 0; kb < kBlocks; kb++) {
        let s = 0;
        for (let k = kb * KB, end = Math.min(K, (kb + 1) * KB); k < end; k++)
          s += va[ad[i * K + k]!]! * vb[bd[j * K + k]!]!;
        total += s * (a.scales[i * kBlocks + kb]! * b.scales[bScaleRow + kb]!);
      }
      c[i * N + j] = total;
    }
  }
  return c;
}

function checkDense(name: string, a: ArrayLike<number>, b: ArrayLike<number>, M: number, N: number, K: number): void {
  if (a.length !== M * K || b.length !== N * K) {
    throw new RangeError(`${name}: A has ${a.length} values (want ${M}×${K}), B has ${b.length} (want ${N}×${K})`);
  }
}

/** C = A · Bᵀ (A M×K, B N×K, row-major) accumulated in FP64, k ascending. */
export function gemmF64(a: ArrayLike<number>, b: ArrayLike<number>, M: number, N: number, K: number): Float64Array {
  checkDense("gemmF64", a, b, M, N, K);
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[i * K + k]! * b[j * K + k]!;
      c[i * N + j] = s;
    }
  }
  return c;
}

/** C = A · Bᵀ in plain FP32: each product and each addition rounded to FP32, k ascending. */
export function gemmF32(a: ArrayLike<number>, b: ArrayLike<number>, M: number, N: number, K: number): Float32Array {
  checkDense("gemmF32", a, b, M, N, K);
  const c = new Float32Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++)
        s = Math.fround(s + Math.fround(Math.fround(a[i * K + k]!) * Math.fround(b[j * K + k]!)));
      c[i * N + j] = s;
    }
  }
  return c;
}

export interface RelativeError {
  /** Mean over elements of |C − R| / |R| (elements with R = 0 left out). */
  readonly meanRelative: number;
  /** Max over elements of |C − R| / |R| (elements with R = 0 left out). */
  readonly maxRelative: number;
  /** ‖C − R‖_F / ‖R‖_F. */
  readonly frobenius: number;
}

/** Relative error of `c` against the reference `ref`: per element (mean, max) and in the Frobenius norm. */
export function relativeError(c: ArrayLike<number>, ref: ArrayLike<number>): RelativeError {
  if (c.length !== ref.length) throw new RangeError(`relativeError: ${c.length} vs ${ref.length} values`);
  let sum = 0;
  let max = 0;
  let count = 0;
  let num = 0;
  let den = 0;
  for (let i = 0; i < c.length; i++) {
    const r = ref[i]!;
    const d = c[i]! - r;
    num += d * d;
    den += r * r;
    if (r !== 0) {
      const rel = Math.abs(d / r);
      sum += rel;
      if (rel > max) max = rel;
      count++;
    }
  }
  return {
    meanRelative: count ? sum / count : 0,
    maxRelative: max,
    frobenius: den ? Math.sqrt(num / den) : Math.sqrt(num),
  };
}
