/**
 * UE8M0: an unsigned, exponent-only 8-bit scale (OCP MX "E8M0"; PTX `.ue8m0`). Code e is 2^(e−127)
 * for e in 0..254 (2^-127 … 2^127); 0xFF is NaN. No sign, no zero, no infinity, no subnormals.
 * DeepSeek-V3's power-of-two scales (MoE dispatch, the E5M6 cache) are exactly these values, so a
 * power-of-two FP32 scale is stored losslessly in one byte.
 *
 * Conversion: negative numbers, zero and NaN → NaN (a scale must be positive); positive values
 * below 2^-127 → 2^-127; beyond 2^127 → 2^127 (satfinite) or NaN (nonsaturating). Rounding is to
 * nearest-even in the code (a tie between 2^k and 2^(k+1) at 1.5·2^k goes to the even code)
 * unless asked otherwise; scales want "away-from-zero" (round up, like `cvt.rp.satfinite.ue8m0x2`)
 * so that nothing scaled by them overflows.
 */
import {
  decodeMinifloat,
  decodeMinifloatArray,
  defineMinifloat,
  encodeMinifloat,
  encodeMinifloatArray,
  type OverflowPolicy,
  type RealArray,
  type RoundingMode,
} from "./minifloat.js";

export const UE8M0 = defineMinifloat({
  name: "ue8m0",
  signed: false,
  exponentBits: 8,
  mantissaBits: 0,
  bias: 127,
  subnormals: false,
  infinities: false,
  nan: "all-ones",
  canonicalNaN: 0xff,
  defaultOverflow: "satfinite",
});

export function encodeUE8M0(
  x: number,
  rounding: RoundingMode = "nearest-even",
  overflow: OverflowPolicy = "satfinite",
): number {
  return encodeMinifloat(UE8M0, x, overflow, rounding);
}

export function decodeUE8M0(code: number): number {
  return decodeMinifloat(UE8M0, code);
}

export function encodeUE8M0Array(
  src: ArrayLike<number>,
  dst: Uint8Array,
  rounding: RoundingMode = "nearest-even",
  overflow: OverflowPolicy = "satfinite",
): Uint8Array {
  encodeMinifloatArray(UE8M0, src, dst, overflow, rounding);
  return dst;
}

export function decodeUE8M0Array<D extends RealArray>(src: Uint8Array, dst: D): D {
  return decodeMinifloatArray(UE8M0, src, dst);
}
