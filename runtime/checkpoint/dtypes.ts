/**
 * The element types of a safetensors file and their conversion to and from the executor's FP32.
 *
 * Names are the format's: F64, F32, F16, BF16, F8_E4M3, F8_E5M2 (floating point), I64, I32, I16, I8,
 * U8 and BOOL. Data is little-endian. Decoding to FP32:
 *   - F32 is copied; F64 and the integers are rounded once to FP32 (integers beyond 2^24 lose bits);
 *   - BF16 is the top half of an FP32, so decoding is exact (a shift);
 *   - F16, F8_E4M3 and F8_E5M2 decode through the reference numerics' tables (every value of those
 *     formats is an FP32 value, so this is exact too).
 * Encoding from numbers rounds once, to nearest even, with the numerics' codecs: BF16 and F16
 * overflow to infinity, F8_E4M3 and F8_E5M2 saturate at their largest finite value (the numerics'
 * default `satfinite` conversion). FP32 → BF16 takes a bit-level fast path (`bf16FromFloat32`) that a
 * test pins to the numerics' encoder. Integer dtypes accept only whole numbers in range (a RangeError otherwise: that is a
 * programming error, not user input).
 */
import { endianness } from "node:os";
import { encodeBf16Array } from "../../backends/reference/numerics/bf16.js";
import { E4M3, encodeE4M3Array } from "../../backends/reference/numerics/fp8-e4m3.js";
import { E5M2, encodeE5M2Array } from "../../backends/reference/numerics/fp8-e5m2.js";
import { defineMinifloat, encodeMinifloatArray } from "../../backends/reference/numerics/minifloat.js";

export const DTYPES = ["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I64", "I32", "I16", "I8", "U8", "BOOL"] as const;
export type SafetensorsDtype = (typeof DTYPES)[number];

/** Bytes of one element. */
export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export function isDtype(s: unknown): s is SafetensorsDtype {
  return typeof s === "string" && (DTYPES as readonly string[]).includes(s);
}

/** Floating-point dtypes (the ones a weight may be stored in). */
export function isFloatDtype(d: SafetensorsDtype): boolean {
  return d === "F64" || d === "F32" || d === "F16" || d === "BF16" || d === "F8_E4M3" || d === "F8_E5M2";
}

/** IEEE binary16: 1 sign, 5 exponent, 10 mantissa bits, bias 15. */
export const F16 = defineMinifloat({
  name: "f16",
  signed: true,
  exponentBits: 5,
  mantissaBits: 10,
  bias: 15,
  subnormals: true,
  infinities: true,
  nan: "ieee",
  canonicalNaN: 0x7e00,
  defaultOverflow: "nonsaturating",
});

if (endianness() !== "LE") throw new Error("runtime/checkpoint: safetensors data is little-endian; this host is big-endian");

/** `bytes` as a typed array of `align`-byte elements, copied only when misaligned. */
function view<T>(bytes: Uint8Array, align: number, make: (b: ArrayBufferLike, offset: number, length: number) => T): T {
  const n = bytes.byteLength / align;
  if (bytes.byteOffset % align === 0) return make(bytes.buffer, bytes.byteOffset, n);
  return make(Uint8Array.from(bytes).buffer, 0, n);
}

/**
 * Decodes `bytes` (elements of `dtype`, little-endian) into `out` (FP32), which must hold exactly
 * bytes.length / DTYPE_BYTES[dtype] elements.
 */
export function decodeToFloat32(dtype: SafetensorsDtype, bytes: Uint8Array, out: Float32Array): Float32Array {
  const width = DTYPE_BYTES[dtype];
  if (bytes.byteLength !== out.length * width) throw new RangeError(`decodeToFloat32: ${bytes.byteLength} bytes of ${dtype} for ${out.length} elements`);
  const n = out.length;
  switch (dtype) {
    case "F32":
      out.set(view(bytes, 4, (b, o, l) => new Float32Array(b, o, l)));
      return out;
    case "F64":
      out.set(view(bytes, 8, (b, o, l) => new Float64Array(b, o, l)));
      return out;
    case "BF16": {
      const src = view(bytes, 2, (b, o, l) => new Uint16Array(b, o, l));
      const bits = new Uint32Array(out.buffer, out.byteOffset, n);
      for (let i = 0; i < n; i++) bits[i] = src[i]! << 16;
      return out;
    }
    case "F16": {
      const src = view(bytes, 2, (b, o, l) => new Uint16Array(b, o, l));
      const table = F16.decodeTable;
      for (let i = 0; i < n; i++) out[i] = table[src[i]!]!;
      return out;
    }
    case "F8_E4M3":
    case "F8_E5M2": {
      const table = (dtype === "F8_E4M3" ? E4M3 : E5M2).decodeTable;
      for (let i = 0; i < n; i++) out[i] = table[bytes[i]!]!;
      return out;
    }
    case "I64": {
      const src = view(bytes, 8, (b, o, l) => new BigInt64Array(b, o, l));
      for (let i = 0; i < n; i++) out[i] = Number(src[i]!);
      return out;
    }
    case "I32":
      out.set(view(bytes, 4, (b, o, l) => new Int32Array(b, o, l)));
      return out;
    case "I16":
      out.set(view(bytes, 2, (b, o, l) => new Int16Array(b, o, l)));
      return out;
    case "I8":
      out.set(new Int8Array(bytes.buffer, bytes.byteOffset, n));
      return out;
    case "U8":
      out.set(bytes);
      return out;
    case "BOOL":
      for (let i = 0; i < n; i++) out[i] = bytes[i] !== 0 ? 1 : 0;
      return out;
  }
}

/**
 * BF16 codes of FP32 values, round to nearest even on the bits (the upper 16 bits plus the rounding
 * of the lower 16), NaN → 0x7FC0: the same codes as the numerics' `encodeBf16Array` for FP32 inputs
 * (a test checks), much faster.
 */
export function bf16FromFloat32(src: Float32Array): Uint8Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) {
    const u = bits[i]!;
    if ((u & 0x7fffffff) > 0x7f800000) out[i] = 0x7fc0;
    else out[i] = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
  }
  return new Uint8Array(out.buffer);
}

function checkIntegers(src: ArrayLike<number>, min: number, max: number, dtype: string): void {
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`encodeFromNumbers: ${v} is not a ${dtype} value`);
  }
}

/** Encodes numbers as `dtype` elements (little-endian bytes); see the file comment for rounding. */
export function encodeFromNumbers(dtype: SafetensorsDtype, src: ArrayLike<number>): Uint8Array {
  const n = src.length;
  switch (dtype) {
    case "F32": {
      const a = Float32Array.from(src);
      return new Uint8Array(a.buffer);
    }
    case "F64": {
      const a = Float64Array.from(src);
      return new Uint8Array(a.buffer);
    }
    case "BF16":
      if (src instanceof Float32Array) return bf16FromFloat32(src);
      return new Uint8Array(encodeBf16Array(src, new Uint16Array(n)).buffer);
    case "F16": {
      const codes = new Uint16Array(n);
      encodeMinifloatArray(F16, src, codes, "nonsaturating");
      return new Uint8Array(codes.buffer);
    }
    case "F8_E4M3":
      return encodeE4M3Array(src, new Uint8Array(n));
    case "F8_E5M2":
      return encodeE5M2Array(src, new Uint8Array(n));
    case "I64": {
      checkIntegers(src, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, dtype);
      const a = new BigInt64Array(n);
      for (let i = 0; i < n; i++) a[i] = BigInt(src[i]!);
      return new Uint8Array(a.buffer);
    }
    case "I32":
      checkIntegers(src, -(2 ** 31), 2 ** 31 - 1, dtype);
      return new Uint8Array(Int32Array.from(src).buffer);
    case "I16":
      checkIntegers(src, -(2 ** 15), 2 ** 15 - 1, dtype);
      return new Uint8Array(Int16Array.from(src).buffer);
    case "I8":
      checkIntegers(src, -128, 127, dtype);
      return new Uint8Array(Int8Array.from(src).buffer);
    case "U8":
      checkIntegers(src, 0, 255, dtype);
      return Uint8Array.from(src);
    case "BOOL":
      checkIntegers(src, 0, 1, dtype);
      return Uint8Array.from(src);
  }
}
