/**
 * The one generic minifloat encoder/decoder. Every small floating-point format of the reference
 * backend (E4M3, E5M2, E5M6, UE8M0, BF16) is a `MinifloatFormat` built here from its parameters;
 * the format files only choose the parameters. Rounding, saturation, subnormals and the special
 * encodings are therefore decided in exactly one place.
 *
 * Encoding reads the input as the exact value of a JS number (IEEE binary64). A Float32Array
 * element is read as its exact float32 value, so encoding float32 data is exact too: no value is
 * ever rounded to an intermediate precision first (rounding a double to float32 and then to FP8 is
 * a double rounding and can differ from rounding the double once; see the tests).
 *
 * Code layout (sign-magnitude, like IEEE 754): [sign][exponent field][mantissa field], the sign bit
 * absent for unsigned formats. The "magnitude code" (code without the sign bit) is monotonic in the
 * value, which is what makes round-to-nearest-even a rounding of the magnitude code itself.
 */

/** What a conversion does with finite values (and infinities) beyond the largest finite value. */
export type OverflowPolicy =
  /** Clamp to ±max finite; infinities too; NaN stays NaN (PTX `cvt.rn.satfinite`). */
  | "satfinite"
  /** IEEE-style: overflow gives ±infinity where the format has one, else NaN. */
  | "nonsaturating";

/** Rounding of a value that falls between two representable values. */
export type RoundingMode = "nearest-even" | "toward-zero" | "away-from-zero";

/**
 * Which codes are NaN. `ieee`: every code with an all-ones exponent field and a nonzero mantissa
 * (all-ones exponent with a zero mantissa is infinity when `infinities`). `all-ones`: only the
 * all-ones magnitude (E4M3's S.1111.111, UE8M0's 0xFF); the rest of the top binade is finite.
 */
export type NaNEncoding = "ieee" | "all-ones";

export interface MinifloatSpec {
  readonly name: string;
  /** Has a sign bit (the top bit of the code). */
  readonly signed: boolean;
  readonly exponentBits: number;
  readonly mantissaBits: number;
  readonly bias: number;
  /**
   * Exponent field 0 holds zero and the subnormals (IEEE). When false, field 0 is an ordinary
   * binade, the format has no zero (UE8M0), and values below the smallest one clamp to it.
   */
  readonly subnormals: boolean;
  /** All-ones exponent with zero mantissa is ±infinity (only with `nan: "ieee"`). */
  readonly infinities: boolean;
  readonly nan: NaNEncoding;
  /** The code every NaN input (and every NaN result of a conversion) is encoded as. */
  readonly canonicalNaN: number;
  /** The overflow policy of the format's usual conversion. */
  readonly defaultOverflow: OverflowPolicy;
}

export interface MinifloatFormat extends MinifloatSpec {
  /** Total bits of a code. */
  readonly bits: number;
  /** Number of codes, 2^bits. */
  readonly codeCount: number;
  /** The sign bit's mask, or 0 for unsigned formats. */
  readonly signMask: number;
  /** Mask of the magnitude bits (exponent and mantissa fields). */
  readonly magnitudeMask: number;
  /** Unbiased exponent of the lowest binade (of the subnormals' quantum for IEEE formats). */
  readonly minExponent: number;
  /** Unbiased exponent of the highest binade that holds finite values. */
  readonly maxExponent: number;
  /** Largest finite magnitude code. */
  readonly maxFiniteCode: number;
  /** Magnitude code of +infinity, or -1 when the format has none. */
  readonly infinityCode: number;
  readonly maxFinite: number;
  /** Smallest positive normal value (for formats without subnormals: the smallest value). */
  readonly minNormal: number;
  /** Smallest positive value. */
  readonly minSubnormal: number;
  /** Spacing of representable values just below minNormal: the absolute rounding grid there. */
  readonly subnormalSpacing: number;
  /** decodeTable[code] = the code's value (NaN for NaN codes, -0 for the negative zero). */
  readonly decodeTable: Float64Array;
}

/** An array of codes: one byte a code for formats up to 8 bits, two bytes up to 16. */
export type CodeArray = Uint8Array | Uint16Array;
/** A dense array of real values. */
export type RealArray = Float32Array | Float64Array;

// ---------------------------------------------------------------------------------------------
// Exact binary64 helpers (shared with the FP8 GEMM's accumulator model)

const POW2_OFFSET = 1074;
const POW2 = new Float64Array(POW2_OFFSET + 1024);
{
  let v = 1;
  for (let k = 0; k <= 1023; k++, v *= 2) POW2[POW2_OFFSET + k] = v;
  v = 1;
  for (let k = 0; k >= -1074; k--, v /= 2) POW2[POW2_OFFSET + k] = v;
}

/** 2^k exactly, for integer k in [-1074, 1023]. */
export function pow2(k: number): number {
  return POW2[POW2_OFFSET + k]!;
}

const SCRATCH_F64 = new Float64Array(1);
const SCRATCH_U32 = new Uint32Array(SCRATCH_F64.buffer);
/** Index of the high 32-bit word of a float64 in this machine's byte order. */
const HIGH_WORD = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;

/**
 * floor(log2(a)) for a positive finite double, read from its exponent bits (exact, unlike
 * Math.log2 near powers of two). Double subnormals (a < 2^-1022) give -1023: far below every
 * format here, which is all the callers need.
 */
export function exponentOf(a: number): number {
  SCRATCH_F64[0] = a;
  return ((SCRATCH_U32[HIGH_WORD]! >>> 20) & 0x7ff) - 1023;
}

/** Round a double to an integer, ties to even (exact: no intermediate rounding). */
export function roundHalfEven(n: number): number {
  const fl = Math.floor(n);
  const d = n - fl; // exact for |n| < 2^52
  if (d > 0.5 || (d === 0.5 && fl % 2 !== 0)) return fl + 1;
  return fl;
}

// ---------------------------------------------------------------------------------------------
// Format definition

export function defineMinifloat(spec: MinifloatSpec): MinifloatFormat {
  const { exponentBits: E, mantissaBits: m, bias } = spec;
  if (!Number.isInteger(E) || E < 1 || !Number.isInteger(m) || m < 0) {
    throw new RangeError(`${spec.name}: exponent and mantissa bits must be integers (≥ 1, ≥ 0)`);
  }
  if (spec.infinities && spec.nan !== "ieee") {
    throw new RangeError(`${spec.name}: infinities need the IEEE NaN encoding`);
  }
  const bits = (spec.signed ? 1 : 0) + E + m;
  if (bits > 16) throw new RangeError(`${spec.name}: at most 16 bits are supported`);
  const magnitudeMask = 2 ** (E + m) - 1;
  const signMask = spec.signed ? 2 ** (E + m) : 0;
  const topField = 2 ** E - 1;
  const maxField = spec.nan === "ieee" ? topField - 1 : topField;
  const maxFiniteCode = spec.nan === "ieee" ? maxField * 2 ** m + (2 ** m - 1) : magnitudeMask - 1;
  const infinityCode = spec.infinities ? topField * 2 ** m : -1;
  const minExponent = spec.subnormals ? 1 - bias : -bias;
  const maxExponent = maxField - bias;

  const fmt: MinifloatFormat = {
    ...spec,
    bits,
    codeCount: 2 ** bits,
    signMask,
    magnitudeMask,
    minExponent,
    maxExponent,
    maxFiniteCode,
    infinityCode,
    maxFinite: 0,
    minNormal: 0,
    minSubnormal: 0,
    subnormalSpacing: pow2(minExponent - m),
    decodeTable: new Float64Array(2 ** bits),
  };
  const table = fmt.decodeTable;
  for (let code = 0; code < table.length; code++) table[code] = decodeSlow(fmt, code);
  const mutable = fmt as { -readonly [K in keyof MinifloatFormat]: MinifloatFormat[K] };
  mutable.maxFinite = table[maxFiniteCode]!;
  mutable.minNormal = spec.subnormals ? table[2 ** m]! : table[0]!;
  mutable.minSubnormal = spec.subnormals && m > 0 ? table[1]! : mutable.minNormal;
  if ((spec.canonicalNaN & magnitudeMask) !== spec.canonicalNaN || !isNaNCode(fmt, spec.canonicalNaN)) {
    throw new RangeError(`${spec.name}: canonical NaN 0x${spec.canonicalNaN.toString(16)} is not a NaN code`);
  }
  return Object.freeze(fmt);
}

function decodeSlow(f: MinifloatFormat, code: number): number {
  const negative = (code & f.signMask) !== 0;
  const mag = code & f.magnitudeMask;
  let v: number;
  if (mag > f.maxFiniteCode) {
    v = mag === f.infinityCode ? Infinity : NaN;
  } else {
    const m = f.mantissaBits;
    const field = Math.floor(mag / 2 ** m);
    const frac = mag - field * 2 ** m;
    if (f.subnormals && field === 0) v = frac * pow2(f.minExponent - m);
    else v = (2 ** m + frac) * pow2(field - f.bias - m);
  }
  return negative ? -v : v;
}

/** True when the code (either sign) is a NaN of the format. */
export function isNaNCode(f: MinifloatFormat, code: number): boolean {
  const mag = code & f.magnitudeMask;
  return mag > f.maxFiniteCode && mag !== f.infinityCode;
}

// ---------------------------------------------------------------------------------------------
// Conversion

/**
 * Magnitude code of the positive finite double `a`, rounded; a result above f.maxFiniteCode
 * means the rounded value overflows (the caller applies the overflow policy).
 */
function roundMagnitude(f: MinifloatFormat, a: number, rounding: RoundingMode): number {
  let e = exponentOf(a);
  if (e > f.maxExponent) return f.maxFiniteCode + 1;
  if (e < f.minExponent) {
    if (!f.subnormals) return 0; // no zero: the smallest value is the nearest one
    e = f.minExponent; // subnormal range: the quantum stops shrinking
  }
  const m = f.mantissaBits;
  // a = n · 2^(e-m) with n in [2^m, 2^(m+1)) (normal) or [0, 2^m) (subnormal); the scaling is exact.
  const n = a * pow2(m - e);
  // Normal: field (e + bias) and mantissa r - 2^m, i.e. code = base + r; a carry of r into
  // 2^(m+1) moves to the next binade by itself. Subnormal (e = minExponent = 1 - bias): base = 0,
  // the code is r, and r = 2^m lands on the smallest normal.
  const base = (e + f.bias - 1) * pow2(m);
  let r = Math.floor(n);
  const d = n - r;
  if (d !== 0) {
    if (rounding === "nearest-even") {
      // "Even" is the code's last bit (the mantissa's; for mantissa-less UE8M0, the exponent's).
      if (d > 0.5 || (d === 0.5 && (base + r) % 2 !== 0)) r += 1;
    } else if (rounding === "away-from-zero") {
      r += 1;
    }
  }
  return base + r;
}

function overflowCode(f: MinifloatFormat, sign: number, overflow: OverflowPolicy): number {
  if (overflow === "satfinite") return sign | f.maxFiniteCode;
  return f.infinities ? sign | f.infinityCode : f.canonicalNaN;
}

/**
 * Encode a number (its exact binary64 value) into the format.
 *
 * - NaN → the canonical NaN. Zero keeps its sign (−0 → the negative-zero code) in signed formats.
 * - Unsigned formats: negative inputs → NaN; formats without zero (UE8M0): 0 → NaN, positive
 *   values below the smallest one → the smallest one.
 * - ±Infinity and finite values whose rounded magnitude exceeds the largest finite value: per
 *   `overflow` (default: the format's). With "satfinite" → ±max finite. With "nonsaturating" →
 *   ±infinity, or NaN where the format has no infinity. Rounding toward zero never overflows a
 *   finite input (IEEE).
 */
export function encodeMinifloat(
  f: MinifloatFormat,
  x: number,
  overflow: OverflowPolicy = f.defaultOverflow,
  rounding: RoundingMode = "nearest-even",
): number {
  if (x !== x) return f.canonicalNaN;
  let sign = 0;
  if (x < 0 || (x === 0 && 1 / x < 0)) {
    if (f.signed) sign = f.signMask;
    else if (x < 0) return f.canonicalNaN;
    x = -x;
  }
  if (x === 0) return f.subnormals ? sign : f.canonicalNaN;
  if (x === Infinity) return overflowCode(f, sign, overflow);
  const mag = roundMagnitude(f, x, rounding);
  if (mag > f.maxFiniteCode) {
    return rounding === "toward-zero" ? sign | f.maxFiniteCode : overflowCode(f, sign, overflow);
  }
  return sign | mag;
}

/** The value of a code (NaN for NaN codes). */
export function decodeMinifloat(f: MinifloatFormat, code: number): number {
  return f.decodeTable[code & (f.codeCount - 1)]!;
}

/** The value nearest to x in the format (encode then decode). */
export function roundToMinifloat(
  f: MinifloatFormat,
  x: number,
  overflow: OverflowPolicy = f.defaultOverflow,
  rounding: RoundingMode = "nearest-even",
): number {
  return f.decodeTable[encodeMinifloat(f, x, overflow, rounding)]!;
}

/** dst[i] = encode(src[i]) for i < src.length. */
export function encodeMinifloatArray(
  f: MinifloatFormat,
  src: ArrayLike<number>,
  dst: CodeArray,
  overflow: OverflowPolicy = f.defaultOverflow,
  rounding: RoundingMode = "nearest-even",
): CodeArray {
  const n = src.length;
  if (dst.length < n) throw new RangeError(`${f.name}: destination holds ${dst.length} codes, ${n} needed`);
  if (f.bits > 8 && dst instanceof Uint8Array) throw new TypeError(`${f.name} codes need a Uint16Array`);
  for (let i = 0; i < n; i++) dst[i] = encodeMinifloat(f, src[i]!, overflow, rounding);
  return dst;
}

/** dst[i] = decode(src[i]); a Float32Array destination holds every value of formats ≤ 16 bits exactly. */
export function decodeMinifloatArray<D extends RealArray>(f: MinifloatFormat, src: ArrayLike<number>, dst: D): D {
  const n = src.length;
  if (dst.length < n) throw new RangeError(`${f.name}: destination holds ${dst.length} values, ${n} needed`);
  const table = f.decodeTable;
  const mask = f.codeCount - 1;
  for (let i = 0; i < n; i++) dst[i] = table[src[i]! & mask]!;
  return dst;
}

/**
 * Bound on |x − q| for q the round-to-nearest value of a finite x inside the format's finite range:
 * half the relative spacing of the normal binades, plus half the absolute spacing of the subnormal
 * range. Used by the quantisation error bounds.
 */
export function halfUlpBound(f: MinifloatFormat): { relative: number; absolute: number } {
  return { relative: pow2(-f.mantissaBits - 1), absolute: f.subnormalSpacing / 2 };
}
