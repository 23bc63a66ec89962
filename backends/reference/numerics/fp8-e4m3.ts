/**
 * FP8 E4M3 ("e4m3fn", OCP FP8 / NVIDIA `__nv_fp8_e4m3`): 1 sign, 4 exponent, 3 mantissa bits,
 * bias 7. No infinities; the only NaNs are S.1111.111 (0x7F, 0xFF), so the top binade keeps seven
 * finite values and the largest is 1.75 · 2^8 = 448. Smallest normal 2^-6, smallest subnormal 2^-9.
 *
 * Conversion: round to nearest, ties to even, saturating — what `cvt.rn.satfinite.e4m3x2.f32`
 * does on sm_90: finite values and infinities beyond ±448 become ±448, NaN becomes NaN (0x7F).
 * The non-saturating alternative (`"nonsaturating"`, like `__nv_cvt_float_to_fp8(…, __NV_NOSAT,
 * __NV_E4M3)`) turns a value whose rounded magnitude exceeds 448 (|x| > 464) and ±infinity into NaN,
 * since E4M3 has no infinity. DeepSeek-V3 uses E4M3 for every GEMM input (TR §3.3).
 */
import {
  decodeMinifloat,
  decodeMinifloatArray,
  defineMinifloat,
  encodeMinifloat,
  encodeMinifloatArray,
  type OverflowPolicy,
  type RealArray,
} from "./minifloat.js";

export const E4M3 = defineMinifloat({
  name: "e4m3",
  signed: true,
  exponentBits: 4,
  mantissaBits: 3,
  bias: 7,
  subnormals: true,
  infinities: false,
  nan: "all-ones",
  canonicalNaN: 0x7f,
  defaultOverflow: "satfinite",
});

/** 448, the largest finite E4M3 magnitude: the denominator of every E4M3 scale (amax / 448). */
export const E4M3_MAX = E4M3.maxFinite;

export function encodeE4M3(x: number, overflow: OverflowPolicy = "satfinite"): number {
  return encodeMinifloat(E4M3, x, overflow);
}

export function decodeE4M3(code: number): number {
  return decodeMinifloat(E4M3, code);
}

export function encodeE4M3Array(
  src: ArrayLike<number>,
  dst: Uint8Array,
  overflow: OverflowPolicy = "satfinite",
): Uint8Array {
  encodeMinifloatArray(E4M3, src, dst, overflow);
  return dst;
}

export function decodeE4M3Array<D extends RealArray>(src: Uint8Array, dst: D): D {
  return decodeMinifloatArray(E4M3, src, dst);
}
