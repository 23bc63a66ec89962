/**
 * Bit-exactness of the minifloat formats (backends/reference/numerics): E4M3, E5M2, E5M6, UE8M0,
 * BF16. Every code is decoded against an oracle written here from the formats' published bit
 * layouts and round-tripped; every midpoint between adjacent representable values is checked to
 * round to the even code (and its neighbouring doubles to the nearer value); the range ends,
 * subnormals, overflow policies and NaN/infinity handling are pinned; float32 inputs are compared
 * with an integer-only encoder that works on float32 bit patterns; BF16 against the usual
 * bit-manipulation rounding.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  BF16,
  E4M3,
  E4M3_MAX,
  E5M2,
  E5M2_MAX,
  E5M6,
  E5M6_MAX,
  UE8M0,
  decodeBf16Array,
  decodeE4M3,
  decodeE4M3Array,
  decodeE5M2,
  decodeE5M6,
  decodeMinifloat,
  decodeUE8M0,
  encodeBf16,
  encodeBf16Array,
  encodeE4M3,
  encodeE4M3Array,
  encodeE5M2,
  encodeE5M2Array,
  encodeE5M6,
  encodeE5M6Array,
  encodeMinifloat,
  encodeUE8M0,
  isNaNCode,
  roundToBf16,
  type MinifloatFormat,
} from "../backends/reference/numerics/index.js";

// ── helpers ──────────────────────────────────────────────────────────────────────────────────────

const F64 = new Float64Array(1);
const U64 = new BigUint64Array(F64.buffer);
/** The next double above x (x finite). */
function nextUp(x: number): number {
  if (x === 0) return Number.MIN_VALUE;
  F64[0] = x;
  U64[0] = x > 0 ? U64[0]! + 1n : U64[0]! - 1n;
  return F64[0]!;
}
/** The next double below x (x finite). */
function nextDown(x: number): number {
  return -nextUp(-x);
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);
function f32FromBits(bits: number): number {
  U32[0] = bits >>> 0;
  return F32[0]!;
}

/**
 * Oracle decoder from the published layouts (OCP FP8 for E4M3/E5M2; dsv3's E5M6 = E5M2 with six
 * mantissa bits; OCP MX E8M0; BF16 = the top half of binary32). Independent of minifloat.ts.
 */
function oracleDecode(f: MinifloatFormat, code: number): number {
  switch (f) {
    case E4M3: {
      const s = code >> 7 ? -1 : 1;
      const e = (code >> 3) & 15;
      const m = code & 7;
      if (e === 15 && m === 7) return NaN;
      return e === 0 ? s * m * 2 ** -9 : s * (1 + m / 8) * 2 ** (e - 7);
    }
    case E5M2: {
      const s = code >> 7 ? -1 : 1;
      const e = (code >> 2) & 31;
      const m = code & 3;
      if (e === 31) return m === 0 ? s * Infinity : NaN;
      return e === 0 ? s * m * 2 ** -16 : s * (1 + m / 4) * 2 ** (e - 15);
    }
    case E5M6: {
      const s = code >> 11 ? -1 : 1;
      const e = (code >> 6) & 31;
      const m = code & 63;
      if (e === 31) return m === 0 ? s * Infinity : NaN;
      return e === 0 ? s * m * 2 ** -20 : s * (1 + m / 64) * 2 ** (e - 15);
    }
    case UE8M0:
      return code === 0xff ? NaN : 2 ** (code - 127);
    case BF16:
      return f32FromBits(code << 16);
    default:
      throw new Error(`no oracle for ${f.name}`);
  }
}

const FORMATS = [E4M3, E5M2, E5M6, UE8M0, BF16] as const;

/** Positive finite codes in increasing value order (0 … maxFiniteCode). */
function positiveCodes(f: MinifloatFormat): number[] {
  const out: number[] = [];
  for (let c = 0; c <= f.maxFiniteCode; c++) out.push(c);
  return out;
}

// ── every code ───────────────────────────────────────────────────────────────────────────────────

describe("every code decodes as the published layout says and round-trips", () => {
  for (const f of FORMATS) {
    it(`${f.name}: all ${f.codeCount} codes`, () => {
      expect(f.codeCount).toBe(2 ** f.bits);
      const bad: string[] = [];
      const check = (ok: boolean, what: string): void => {
        if (!ok && bad.length < 20) bad.push(what);
      };
      let nans = 0;
      let infs = 0;
      for (let code = 0; code < f.codeCount; code++) {
        const v = decodeMinifloat(f, code);
        const at = `${f.name} 0x${code.toString(16)} (${v})`;
        check(Object.is(v, oracleDecode(f, code)), `${at}: decodes to ${v}, oracle ${oracleDecode(f, code)}`);
        if (Number.isNaN(v)) {
          nans++;
          check(isNaNCode(f, code), `${at}: isNaNCode`);
          check(encodeMinifloat(f, v) === f.canonicalNaN, `${at}: NaN → canonical`);
          check(encodeMinifloat(f, v, "nonsaturating") === f.canonicalNaN, `${at}: NaN → canonical (nonsaturating)`);
        } else if (!Number.isFinite(v)) {
          infs++;
          check(encodeMinifloat(f, v, "nonsaturating") === code, `${at}: infinity round trip`);
          check(
            encodeMinifloat(f, v, "satfinite") === ((code & f.signMask) | f.maxFiniteCode),
            `${at}: satfinite clamps infinity`,
          );
        } else {
          check(!isNaNCode(f, code), `${at}: not NaN`);
          check(encodeMinifloat(f, v, "satfinite") === code, `${at}: round trip (satfinite)`);
          check(encodeMinifloat(f, v, "nonsaturating") === code, `${at}: round trip (nonsaturating)`);
          check(encodeMinifloat(f, v, "satfinite", "toward-zero") === code, `${at}: round trip (toward zero)`);
          check(encodeMinifloat(f, v, "satfinite", "away-from-zero") === code, `${at}: round trip (away from zero)`);
        }
      }
      expect(bad).toEqual([]);
      const expected = {
        e4m3: { nans: 2, infs: 0 },
        e5m2: { nans: 6, infs: 2 },
        e5m6: { nans: 126, infs: 2 },
        ue8m0: { nans: 1, infs: 0 },
        bf16: { nans: 254, infs: 2 },
      }[f.name];
      expect({ nans, infs }).toEqual(expected);
    });
  }

  it("positive finite codes are ordered by value (the magnitude code is monotonic)", () => {
    for (const f of FORMATS) {
      const vals = positiveCodes(f).map((c) => decodeMinifloat(f, c));
      const unordered = vals.filter((v, i) => i > 0 && !(v > vals[i - 1]!));
      expect(unordered).toEqual([]);
    }
  });

  it("E4M3 landmarks: ±448, no infinity, NaN = S.1111.111, ±0, min normal 2^-6, min subnormal 2^-9", () => {
    expect(E4M3_MAX).toBe(448);
    expect(decodeE4M3(0x7e)).toBe(448);
    expect(decodeE4M3(0xfe)).toBe(-448);
    expect(decodeE4M3(0x7f)).toBeNaN();
    expect(decodeE4M3(0xff)).toBeNaN();
    expect(decodeE4M3(0x78)).toBe(256); // S.1111.000 is finite
    expect(Object.is(decodeE4M3(0x80), -0)).toBe(true);
    expect(decodeE4M3(0x08)).toBe(2 ** -6);
    expect(decodeE4M3(0x01)).toBe(2 ** -9);
    expect(decodeE4M3(0x07)).toBe(7 * 2 ** -9);
    expect(decodeE4M3(0x38)).toBe(1);
    expect(E4M3.infinityCode).toBe(-1);
    expect([E4M3.minNormal, E4M3.minSubnormal]).toEqual([2 ** -6, 2 ** -9]);
  });

  it("E5M2 landmarks: 57344, ±infinity 0x7C/0xFC, NaN 0x7D–0x7F, min normal 2^-14, min subnormal 2^-16", () => {
    expect(E5M2_MAX).toBe(57344);
    expect(decodeE5M2(0x7b)).toBe(57344);
    expect(decodeE5M2(0x7c)).toBe(Infinity);
    expect(decodeE5M2(0xfc)).toBe(-Infinity);
    for (const c of [0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff]) expect(decodeE5M2(c)).toBeNaN();
    expect(decodeE5M2(0x04)).toBe(2 ** -14);
    expect(decodeE5M2(0x01)).toBe(2 ** -16);
    expect(decodeE5M2(0x3c)).toBe(1);
  });

  it("E5M6 (bias 15, IEEE specials): 65024, ±infinity, min normal 2^-14 = E5M2's, min subnormal 2^-20; E5M2 ⊂ E5M6", () => {
    expect(E5M6.bits).toBe(12);
    expect(E5M6_MAX).toBe(65024);
    expect(decodeE5M6(0x7bf)).toBe(65024);
    expect(decodeE5M6(0x7c0)).toBe(Infinity);
    expect(decodeE5M6(0xfc0)).toBe(-Infinity);
    expect(decodeE5M6(0x7ff)).toBeNaN();
    expect(decodeE5M6(0x040)).toBe(2 ** -14);
    expect(decodeE5M6(0x001)).toBe(2 ** -20);
    expect(decodeE5M6(0x3c0)).toBe(1);
    expect(E5M6.minNormal).toBe(E5M2.minNormal);
    expect(E5M6.maxExponent).toBe(E5M2.maxExponent);
    for (let c = 0; c < 256; c++) {
      const v = decodeE5M2(c);
      if (Number.isNaN(v)) continue;
      expect(decodeE5M6(encodeE5M6(v, "nonsaturating"))).toBe(v);
    }
  });

  it("UE8M0 landmarks: 2^(e−127), 0xFF NaN, no zero, no sign", () => {
    expect(decodeUE8M0(127)).toBe(1);
    expect(decodeUE8M0(0)).toBe(2 ** -127);
    expect(decodeUE8M0(0xfe)).toBe(2 ** 127);
    expect(decodeUE8M0(0xff)).toBeNaN();
    expect(encodeUE8M0(0)).toBe(0xff);
    expect(encodeUE8M0(-0)).toBe(0xff);
    expect(encodeUE8M0(-1)).toBe(0xff);
    expect(encodeUE8M0(NaN)).toBe(0xff);
    expect(encodeUE8M0(2 ** -130)).toBe(0); // below the smallest → the smallest
    expect(encodeUE8M0(2 ** 200)).toBe(0xfe); // satfinite
    expect(encodeUE8M0(Infinity)).toBe(0xfe);
    expect(encodeUE8M0(2 ** 200, "nearest-even", "nonsaturating")).toBe(0xff);
    expect(encodeUE8M0(3)).toBe(128); // tie between 2 (128, even) and 4 (129)
    expect(encodeUE8M0(3, "away-from-zero")).toBe(129);
    expect(encodeUE8M0(3, "toward-zero")).toBe(128);
    expect(encodeUE8M0(nextUp(3))).toBe(129);
    expect(encodeUE8M0(1.5 * 2 ** 127)).toBe(0xfe); // tie with the (absent) 2^128: even code 0xFE
    expect(encodeUE8M0(nextUp(1.5 * 2 ** 127), "nearest-even", "nonsaturating")).toBe(0xff);
  });
});

// ── ties and boundaries ──────────────────────────────────────────────────────────────────────────

describe("round to nearest, ties to even, at every midpoint", () => {
  for (const f of FORMATS) {
    it(`${f.name}: every pair of adjacent representable values, both signs`, () => {
      const codes = positiveCodes(f);
      const bad: string[] = [];
      const check = (x: number, got: number, want: number, what: string): void => {
        if (got !== want && bad.length < 20)
          bad.push(`${f.name} ${what} ${x}: 0x${got.toString(16)}, want 0x${want.toString(16)}`);
      };
      let checked = 0;
      for (let i = 0; i + 1 < codes.length; i++) {
        const lo = codes[i]!;
        const hi = codes[i + 1]!;
        const vlo = decodeMinifloat(f, lo);
        const vhi = decodeMinifloat(f, hi);
        const mid = (vlo + vhi) / 2; // exact: both have few significant bits
        if (!(mid > vlo && mid < vhi)) bad.push(`${f.name}: midpoint of ${vlo} and ${vhi} not exact`);
        const even = lo % 2 === 0 ? lo : hi;
        for (const sign of f.signed ? [1, -1] : [1]) {
          const sbit = sign < 0 ? f.signMask : 0;
          const x = sign * mid;
          check(x, encodeMinifloat(f, x), sbit | even, "tie");
          check(x, encodeMinifloat(f, sign * nextDown(mid)), sbit | lo, "just below the tie");
          check(x, encodeMinifloat(f, sign * nextUp(mid)), sbit | hi, "just above the tie");
          // directed roundings: anything strictly inside goes to an end
          check(x, encodeMinifloat(f, x, "satfinite", "toward-zero"), sbit | lo, "toward zero");
          check(x, encodeMinifloat(f, x, "satfinite", "away-from-zero"), sbit | hi, "away from zero");
        }
        checked++;
      }
      expect(bad).toEqual([]);
      expect(checked).toBe(f.maxFiniteCode);
    });
  }

  it("above the largest finite value: satfinite clamps; nonsaturating ties to even like IEEE", () => {
    // The midpoint between max and the next value the exponent range would allow.
    const cases: [MinifloatFormat, number, number, number][] = [
      // format, midpoint above max, nonsaturating result at the tie, nonsaturating just above the tie
      [E4M3, 464, 0x7e, 0x7f], // 448 = S.1111.110 is even: the tie stays finite; above → NaN (no inf)
      [E5M2, 61440, 0x7c, 0x7c], // 57344 = 0x7B is odd: the tie goes to the even infinity
      [E5M6, 65280, 0x7c0, 0x7c0],
      [BF16, f32FromBits(0x7f7f8000), 0x7f80, 0x7f80],
    ];
    for (const [f, mid, atTie, above] of cases) {
      expect(encodeMinifloat(f, mid, "satfinite")).toBe(f.maxFiniteCode);
      expect(encodeMinifloat(f, nextUp(mid), "satfinite")).toBe(f.maxFiniteCode);
      expect(encodeMinifloat(f, 1e300, "satfinite")).toBe(f.maxFiniteCode);
      expect(encodeMinifloat(f, -1e300, "satfinite")).toBe(f.signMask | f.maxFiniteCode);
      expect(encodeMinifloat(f, nextDown(mid), "nonsaturating")).toBe(f.maxFiniteCode);
      expect(encodeMinifloat(f, mid, "nonsaturating")).toBe(atTie);
      expect(encodeMinifloat(f, nextUp(mid), "nonsaturating")).toBe(above);
      expect(encodeMinifloat(f, -nextUp(mid), "nonsaturating")).toBe(
        f.infinities ? f.signMask | above : f.canonicalNaN,
      );
      // rounding toward zero never overflows a finite input
      expect(encodeMinifloat(f, 1e300, "nonsaturating", "toward-zero")).toBe(f.maxFiniteCode);
    }
  });

  it("E4M3 satfinite (cvt.rn.satfinite.e4m3x2.f32): ±448 beyond the range and for ±infinity, NaN → 0x7F", () => {
    expect(encodeE4M3(448)).toBe(0x7e);
    expect(encodeE4M3(500)).toBe(0x7e);
    expect(encodeE4M3(1e38)).toBe(0x7e);
    expect(encodeE4M3(-1e38)).toBe(0xfe);
    expect(encodeE4M3(Infinity)).toBe(0x7e);
    expect(encodeE4M3(-Infinity)).toBe(0xfe);
    expect(encodeE4M3(NaN)).toBe(0x7f);
    expect(encodeE4M3(Infinity, "nonsaturating")).toBe(0x7f);
    expect(encodeE4M3(-500, "nonsaturating")).toBe(0x7f);
    expect(encodeE5M2(Infinity)).toBe(0x7b);
    expect(encodeE5M2(-Infinity, "nonsaturating")).toBe(0xfc);
    expect(encodeE5M2(NaN)).toBe(0x7f);
  });

  for (const f of [E4M3, E5M2, E5M6, BF16]) {
    it(`${f.name}: the subnormal end — ±0, half the smallest subnormal ties to 0, 1.5× ties to 2×`, () => {
      const d = f.minSubnormal;
      expect(encodeMinifloat(f, 0)).toBe(0);
      expect(encodeMinifloat(f, -0)).toBe(f.signMask);
      expect(encodeMinifloat(f, d)).toBe(1);
      expect(encodeMinifloat(f, d / 2)).toBe(0); // tie: 0 is even
      expect(encodeMinifloat(f, -d / 2)).toBe(f.signMask); // keeps the sign: −0
      expect(encodeMinifloat(f, nextUp(d / 2))).toBe(1);
      expect(encodeMinifloat(f, nextDown(d / 2))).toBe(0);
      expect(encodeMinifloat(f, 1.5 * d)).toBe(2); // tie between 1 (odd) and 2 (even)
      expect(encodeMinifloat(f, 2.5 * d)).toBe(2);
      expect(encodeMinifloat(f, Number.MIN_VALUE)).toBe(0);
      expect(encodeMinifloat(f, d / 4, "satfinite", "away-from-zero")).toBe(1);
      // the largest subnormal and the smallest normal are adjacent codes
      const lastSub = 2 ** f.mantissaBits - 1;
      expect(decodeMinifloat(f, lastSub)).toBe(f.minNormal - d);
      expect(encodeMinifloat(f, f.minNormal)).toBe(lastSub + 1);
      expect(encodeMinifloat(f, f.minNormal - d / 2)).toBe(lastSub + 1); // tie: 2^m is even
    });
  }
});

// ── float32 inputs ───────────────────────────────────────────────────────────────────────────────

/**
 * Integer-only encoder of a float32 bit pattern: the value is sig · 2^q with integers sig, q; the
 * target quantum is 2^(max(floor(log2 v), emin) − m); the dropped bits decide the rounding.
 */
function oracleEncodeF32Bits(f: MinifloatFormat, bits: number, satfinite: boolean): number {
  const m = f.mantissaBits;
  const sign = bits >>> 31 ? f.signMask : 0;
  const exp = (bits >>> 23) & 0xff;
  const man = bits & 0x7fffff;
  const overflow = (): number =>
    satfinite ? sign | f.maxFiniteCode : f.infinities ? sign | f.infinityCode : f.canonicalNaN;
  if (exp === 255) return man !== 0 ? f.canonicalNaN : overflow();
  const sig = exp === 0 ? man : man + 2 ** 23;
  const q = exp === 0 ? -149 : exp - 150;
  if (sig === 0) return sign;
  const log2v = q + Math.floor(Math.log2(sig)); // sig < 2^24: log2 of an integer is exact enough here
  const emin = 1 - f.bias;
  const e = Math.max(log2v, emin);
  const shift = e - m - q; // bits of sig below the target quantum
  let r: number;
  if (shift <= 0) r = sig * 2 ** -shift;
  else {
    const unit = 2 ** shift;
    r = Math.floor(sig / unit);
    const rem = sig - r * unit;
    const half = unit / 2;
    if (rem > half || (rem === half && r % 2 === 1)) r++;
  }
  let field: number;
  let frac: number;
  if (e === emin && r < 2 ** m) {
    field = 0;
    frac = r;
  } else if (r === 2 ** (m + 1)) {
    field = e + 1 + f.bias;
    frac = 0;
  } else {
    field = e + f.bias;
    frac = r - 2 ** m;
  }
  const mag = field * 2 ** m + frac;
  if (mag > f.maxFiniteCode) return overflow();
  return sign | mag;
}

/** Float32 bit patterns: anything, and a dense band around each format's range. */
const f32Bits = fc.oneof(
  fc.integer({ min: 0, max: 0xffffffff }),
  fc
    .tuple(fc.boolean(), fc.integer({ min: 90, max: 150 }), fc.integer({ min: 0, max: 0x7fffff }))
    .map(([s, e, m]) => ((s ? 0x80000000 : 0) | (e << 23) | m) >>> 0),
  // near a tie of a 2- to 7-bit mantissa: low bits 1000…0 ± 1
  fc
    .tuple(
      fc.boolean(),
      fc.integer({ min: 90, max: 150 }),
      fc.integer({ min: 0, max: 127 }),
      fc.integer({ min: 15, max: 20 }),
      fc.integer({ min: -1, max: 1 }),
    )
    .map(([s, e, top, sh, d]) => ((s ? 0x80000000 : 0) | (e << 23) | ((top << sh) + 2 ** (sh - 1) + d)) >>> 0),
);

describe("float32 inputs", () => {
  it("encoding a float32 equals the integer-only encoder of its bit pattern (E4M3, E5M2, E5M6, BF16)", () => {
    fc.assert(
      fc.property(f32Bits, (bits) => {
        const x = f32FromBits(bits);
        for (const f of [E4M3, E5M2, E5M6])
          expect(encodeMinifloat(f, x, "satfinite")).toBe(oracleEncodeF32Bits(f, bits, true));
        expect(encodeMinifloat(E5M2, x, "nonsaturating")).toBe(oracleEncodeF32Bits(E5M2, bits, false));
        expect(encodeBf16(x)).toBe(oracleEncodeF32Bits(BF16, bits, false));
      }),
      { numRuns: 4000 },
    );
  });

  it("array APIs read float32 data as its exact values: same codes as the scalar encoder and as float64 input", () => {
    fc.assert(
      fc.property(fc.array(f32Bits, { maxLength: 64 }), (bitsList) => {
        const src32 = new Float32Array(Uint32Array.from(bitsList).buffer);
        const src64 = Float64Array.from(src32);
        const encoders: [MinifloatFormat, (src: ArrayLike<number>) => number[]][] = [
          [E4M3, (src) => Array.from(encodeE4M3Array(src, new Uint8Array(src.length)))],
          [E5M2, (src) => Array.from(encodeE5M2Array(src, new Uint8Array(src.length)))],
          [E5M6, (src) => Array.from(encodeE5M6Array(src, new Uint16Array(src.length)))],
          [BF16, (src) => Array.from(encodeBf16Array(src, new Uint16Array(src.length)))],
        ];
        for (const [f, encode] of encoders) {
          const from32 = encode(src32);
          expect(from32).toEqual(encode(src64));
          expect(from32).toEqual(Array.from(src32, (x) => encodeMinifloat(f, x)));
        }
      }),
      { numRuns: 300 },
    );
  });

  it("a double is rounded once, from its exact value — not through float32 (double rounding differs)", () => {
    // 1.0625 is the E4M3 midpoint between 1 and 1.125; the double just above it rounds up, but its
    // float32 rounding is the midpoint itself, which then ties to even (1).
    const x = nextUp(1.0625);
    expect(Math.fround(x)).toBe(1.0625);
    expect(decodeE4M3(encodeE4M3(x))).toBe(1.125);
    expect(decodeE4M3(encodeE4M3(Math.fround(x)))).toBe(1);
    // BF16: the same hazard one level up
    const y = 1 + 2 ** -8 + 2 ** -40; // above the BF16 midpoint 1 + 2^-8; float32 rounds it onto the midpoint
    expect(Math.fround(y)).toBe(1 + 2 ** -8);
    expect(roundToBf16(y)).toBe(1 + 2 ** -7);
    expect(roundToBf16(Math.fround(y))).toBe(1);
  });
});

// ── BF16 ─────────────────────────────────────────────────────────────────────────────────────────

/** The usual float32 → bf16 rounding by bit manipulation (round to nearest even; NaN handled apart). */
function bitTrickBf16(bits: number): number {
  if ((bits & 0x7fffffff) >>> 0 > 0x7f800000) return 0x7fc0;
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff;
}

describe("BF16", () => {
  it("matches the bit-manipulation rounding at every BF16 value and its neighbourhood, both sides of every tie", () => {
    const lows = [0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xffff];
    for (let hi = 0; hi < 0x10000; hi++) {
      for (const lo of lows) {
        const bits = ((hi << 16) | lo) >>> 0;
        const x = f32FromBits(bits);
        const got = encodeBf16(x);
        if (Number.isNaN(x)) expect(got).toBe(0x7fc0);
        else if (got !== bitTrickBf16(bits))
          expect.fail(
            `bf16(0x${bits.toString(16)}) = 0x${got.toString(16)}, want 0x${bitTrickBf16(bits).toString(16)}`,
          );
      }
    }
  });

  it("matches the bit-manipulation rounding on random float32 patterns; decode is exact", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (bits) => {
        const x = f32FromBits(bits);
        const code = encodeBf16(x);
        if (Number.isNaN(x)) expect(code).toBe(0x7fc0);
        else expect(code).toBe(bitTrickBf16(bits));
        const back = new Float32Array(1);
        decodeBf16Array(Uint16Array.of(code), back);
        expect(Object.is(back[0], oracleDecode(BF16, code)) || Number.isNaN(x)).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });
});

describe("typed-array batch APIs", () => {
  it("decode into Float32Array is exact and equals the scalar decoder for every E4M3/E5M2 code", () => {
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const out = decodeE4M3Array(codes, new Float32Array(256));
    for (let c = 0; c < 256; c++) expect(Object.is(out[c], decodeE4M3(c))).toBe(true);
    const fromE5M2 = new Float64Array(256);
    for (let c = 0; c < 256; c++) fromE5M2[c] = decodeE5M2(c);
    const back = encodeE5M2Array(fromE5M2, new Uint8Array(256), "nonsaturating");
    for (let c = 0; c < 256; c++) expect(back[c]).toBe(Number.isNaN(fromE5M2[c]!) ? 0x7f : c);
  });

  it("reject a destination that is too short or too narrow", () => {
    expect(() => encodeE4M3Array(new Float32Array(4), new Uint8Array(3))).toThrow(RangeError);
    expect(() => encodeE5M6Array(new Float32Array(2), new Uint8Array(2) as unknown as Uint16Array)).toThrow(TypeError);
  });

  it("encode a million float32 values in well under two seconds", () => {
    const n = 1 << 20;
    const src = new Float32Array(n);
    for (let i = 0; i < n; i++) src[i] = Math.sin(i) * 500;
    const dst = new Uint8Array(n);
    const t = performance.now();
    encodeE4M3Array(src, dst);
    expect(performance.now() - t).toBeLessThan(2000);
    expect(dst[0]).toBe(0);
  });
});
