/**
 * FP8 E5M2 (OCP FP8 / NVIDIA `__nv_fp8_e5m2`): 1 sign, 5 exponent, 2 mantissa bits, bias 15, IEEE
 * specials: exponent 11111 with mantissa 00 is ±infinity, with a nonzero mantissa NaN. Largest
 * finite 1.75 · 2^15 = 57344, smallest normal 2^-14, smallest subnormal 2^-16 — the exponent range
 * of IEEE binary16 with its mantissa cut to 2 bits.
 *
 * Conversion: round to nearest, ties to even, saturating like `cvt.rn.satfinite.e5m2x2.f32`
 * (beyond ±57344 and ±infinity → ±57344; NaN → 0x7F). The non-saturating alternative is IEEE
 * overflow: a value whose rounding exceeds 57344 (|x| ≥ 61440, the tie rounding to the even
 * infinity) and ±infinity give ±infinity. DeepSeek-V3 does not use E5M2 (TR §3.3); it is here
 * because Hopper's FP8 tensor cores take it and for the E5M6 comparison.
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

export const E5M2 = defineMinifloat({
  name: "e5m2",
  signed: true,
  exponentBits: 5,
  mantissaBits: 2,
  bias: 15,
  subnormals: true,
  infinities: true,
  nan: "ieee",
  canonicalNaN: 0x7f,
  defaultOverflow: "satfinite",
});

/** 57344, the largest finite E5M2 magnitude. */
export const E5M2_MAX = E5M2.maxFinite;

export function encodeE5M2(x: number, overflow: OverflowPolicy = "satfinite"): number {
  return encodeMinifloat(E5M2, x, overflow);
}

export function decodeE5M2(code: number): number {
  return decodeMinifloat(E5M2, code);
}

export function encodeE5M2Array(
  src: ArrayLike<number>,
  dst: Uint8Array,
  overflow: OverflowPolicy = "satfinite",
): Uint8Array {
  encodeMinifloatArray(E5M2, src, dst, overflow);
  return dst;
}

export function decodeE5M2Array<D extends RealArray>(src: Uint8Array, dst: D): D {
  return decodeMinifloatArray(E5M2, src, dst);
}
