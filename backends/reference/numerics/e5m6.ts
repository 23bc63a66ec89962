/**
 * E5M6: the 12-bit format DeepSeek-V3 caches the input of the attention output projection in
 * (TR §3.3, "a customized E5M6 data format", with power-of-two scales). The report names the format
 * and nothing more — no bias, no special values, no storage layout — so this layout is dsv3's
 * choice, made to be E5M2 with four more mantissa bits:
 *
 *   1 sign, 5 exponent, 6 mantissa bits; bias 15; IEEE specials (exponent 11111: mantissa 0 is
 *   ±infinity, nonzero NaN; canonical NaN 0x7FF); subnormals.
 *
 * So its exponent range is exactly E5M2's (and binary16's): smallest normal 2^-14, smallest
 * subnormal 2^-20, largest finite (2 − 2^-6) · 2^15 = 65024. Every E5M2 value is an E5M6 value.
 * Conversion rounds to nearest, ties to even, saturating by default (like the FP8 `satfinite`
 * conversions; "nonsaturating" gives ±infinity). Codes are stored one per Uint16 element in the
 * low 12 bits (a packed 1.5-byte layout is a storage concern of the kernels, not of the values).
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

export const E5M6 = defineMinifloat({
  name: "e5m6",
  signed: true,
  exponentBits: 5,
  mantissaBits: 6,
  bias: 15,
  subnormals: true,
  infinities: true,
  nan: "ieee",
  canonicalNaN: 0x7ff,
  defaultOverflow: "satfinite",
});

/** 65024, the largest finite E5M6 magnitude. */
export const E5M6_MAX = E5M6.maxFinite;

export function encodeE5M6(x: number, overflow: OverflowPolicy = "satfinite"): number {
  return encodeMinifloat(E5M6, x, overflow);
}

export function decodeE5M6(code: number): number {
  return decodeMinifloat(E5M6, code);
}

export function encodeE5M6Array(
  src: ArrayLike<number>,
  dst: Uint16Array,
  overflow: OverflowPolicy = "satfinite",
): Uint16Array {
  encodeMinifloatArray(E5M6, src, dst, overflow);
  return dst;
}

export function decodeE5M6Array<D extends RealArray>(src: Uint16Array, dst: D): D {
  return decodeMinifloatArray(E5M6, src, dst);
}
