/**
 * BF16 (bfloat16): 1 sign, 8 exponent, 7 mantissa bits, bias 127 — the top half of an IEEE binary32
 * with IEEE subnormals, infinities and NaNs (canonical NaN 0x7FC0). Used for the GEMM outputs and
 * everything DeepSeek-V3 keeps in BF16 (TR §3.3).
 *
 * Conversion: round to nearest, ties to even, IEEE overflow to ±infinity (like `cvt.rn.bf16.f32`
 * without `.satfinite`), from the exact value of the input — a double is rounded once, straight to
 * BF16, not through float32 first. Decoding is exact (every BF16 value is a float32).
 */
import {
  decodeMinifloat,
  decodeMinifloatArray,
  defineMinifloat,
  encodeMinifloat,
  encodeMinifloatArray,
  roundToMinifloat,
  type OverflowPolicy,
  type RealArray,
} from "./minifloat.js";

export const BF16 = defineMinifloat({
  name: "bf16",
  signed: true,
  exponentBits: 8,
  mantissaBits: 7,
  bias: 127,
  subnormals: true,
  infinities: true,
  nan: "ieee",
  canonicalNaN: 0x7fc0,
  defaultOverflow: "nonsaturating",
});

export function encodeBf16(x: number, overflow: OverflowPolicy = "nonsaturating"): number {
  return encodeMinifloat(BF16, x, overflow);
}

export function decodeBf16(code: number): number {
  return decodeMinifloat(BF16, code);
}

/** The BF16 value nearest to x (round to nearest even), as a number. */
export function roundToBf16(x: number): number {
  return roundToMinifloat(BF16, x);
}

export function encodeBf16Array(
  src: ArrayLike<number>,
  dst: Uint16Array,
  overflow: OverflowPolicy = "nonsaturating",
): Uint16Array {
  encodeMinifloatArray(BF16, src, dst, overflow);
  return dst;
}

export function decodeBf16Array<D extends RealArray>(src: Uint16Array, dst: D): D {
  return decodeMinifloatArray(BF16, src, dst);
}
