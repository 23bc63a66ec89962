/**
 * FP8 GEMM semantics (backends/reference/numerics/fp8-gemm.ts): the tensor-core accumulator model
 * step by step, exactness where nothing can round, promotion beating no promotion on the worst-case
 * (all-positive) inputs at large K, and scale handling with partial edge blocks (M, N, K not
 * multiples of 128).
 */
import { describe, expect, it } from "vitest";
import {
  ACTIVATION_TILE,
  BF16,
  E4M3,
  E5M2,
  E5M6,
  HOPPER_FP8_TENSOR_CORE,
  WEIGHT_BLOCK,
  decodeBf16,
  dequantize,
  encodeMinifloat,
  fp8Gemm,
  fp8GemmReferenceF64,
  gemmF32,
  gemmF64,
  quantize,
  relativeError,
  tensorCoreStep,
  type QuantizedMatrix,
} from "../backends/reference/numerics/index.js";
import { mulberry32 as rng } from "../compiler/seeded-random.js";


function normals(n: number, sigma: number, next: () => number, positive = false): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const z = Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next()) * sigma;
    out[i] = positive ? Math.abs(z) : z;
  }
  return out;
}

describe("the tensor-core accumulator, one MMA step at a time", () => {
  const model = HOPPER_FP8_TENSOR_CORE;

  it("keeps 14 bits relative to the step's largest product, truncating the rest toward zero", () => {
    // 256 + 3·2^-6: the grid at 2^8 is 2^-5; 3·2^-6 = 1.5 grid units
    expect(tensorCoreStep(0, [256, 3 * 2 ** -6], 2, 256, model)).toBe(256 + 2 ** -5);
    expect(tensorCoreStep(0, [256, 3 * 2 ** -6], 2, 256, { ...model, rounding: "nearest-even" })).toBe(256 + 2 ** -4);
    expect(tensorCoreStep(0, [256, -3 * 2 ** -6], 2, 256, model)).toBe(256 - 2 ** -5);
    expect(tensorCoreStep(0, [256, -3 * 2 ** -6], 2, 256, { ...model, rounding: "floor" })).toBe(256 - 2 ** -4);
    // below the grid entirely: lost
    expect(tensorCoreStep(0, [256, 2 ** -6], 2, 256, model)).toBe(256);
    // products of similar size are summed exactly
    expect(tensorCoreStep(0, [1.5, 1.75, -0.875, 3], 4, 3, model)).toBe(5.375);
  });

  it("adds the step's sum into the accumulator with 14-bit precision", () => {
    // acc = 2^14: grid 2^(14-13) = 2; a step sum of 3 = 1.5 grid units
    expect(tensorCoreStep(2 ** 14, [3], 1, 3, model)).toBe(2 ** 14 + 2);
    expect(tensorCoreStep(2 ** 14, [3], 1, 3, { ...model, rounding: "nearest-even" })).toBe(2 ** 14 + 4);
    // the result is rounded to 14 significant bits: 2^14 − 2 + 3 = 16385 needs 15 → 16384
    expect(tensorCoreStep(2 ** 14 - 2, [3], 1, 3, model)).toBe(2 ** 14);
    // every product alone would survive; aligned with the accumulator (the pessimistic variant) they don't
    const products = new Array(32).fill(1.5);
    expect(tensorCoreStep(2 ** 14, products, 32, 1.5, model)).toBe(2 ** 14 + 48);
    expect(tensorCoreStep(2 ** 14, products, 32, 1.5, { ...model, alignWithAccumulator: true })).toBe(2 ** 14);
    expect(tensorCoreStep(NaN, [1], 1, 1, model)).toBeNaN();
    expect(tensorCoreStep(1, [NaN], 1, NaN, model)).toBeNaN();
  });
});

/** A quantised matrix of small integers/halves with power-of-two scales: nothing ever rounds. */
function smallValues(
  rows: number,
  cols: number,
  next: () => number,
  tile = ACTIVATION_TILE,
): { x: Float32Array; q: QuantizedMatrix } {
  const x = new Float32Array(rows * cols);
  for (let i = 0; i < x.length; i++) x[i] = (Math.floor(next() * 17) - 8) / 2; // −4 … 4 in steps of ½
  return { x, q: quantize(x, rows, cols, { tile, pow2Scales: true }) };
}

describe("exactness", () => {
  it("with N_C = 32 and exactly representable small inputs, C equals the FP64 result exactly (partial blocks too)", () => {
    const next = rng(11);
    const M = 5;
    const N = 131;
    const K = 300;
    const a = smallValues(M, K, next);
    const b = smallValues(N, K, next, WEIGHT_BLOCK);
    expect(Array.from(dequantize(a.q))).toEqual(Array.from(a.x)); // the inputs are exact in E4M3
    const exact = gemmF64(a.x, b.x, M, N, K);
    for (const nc of [32, 64, 128]) {
      const c = fp8Gemm(a.q, b.q, { promotionInterval: nc });
      expect(Array.from(c.f32)).toEqual(Array.from(exact));
      for (let i = 0; i < c.bf16.length; i++) expect(c.bf16[i]).toBe(encodeMinifloat(BF16, c.f32[i]!));
    }
    expect(Array.from(fp8GemmReferenceF64(a.q, b.q))).toEqual(Array.from(exact));
    expect(Array.from(gemmF32(a.x, b.x, M, N, K))).toEqual(Array.from(exact));
  });

  it("the BF16 output is the FP32 result rounded to nearest even", () => {
    const next = rng(5);
    const A = normals(3 * 256, 1, next);
    const B = normals(4 * 256, 0.02, next);
    const c = fp8Gemm(quantize(A, 3, 256, { tile: ACTIVATION_TILE }), quantize(B, 4, 256, { tile: WEIGHT_BLOCK }), {
      promotionInterval: 128,
    });
    for (let i = 0; i < 12; i++) {
      const v = decodeBf16(c.bf16[i]!);
      expect(Math.abs(v - c.f32[i]!)).toBeLessThanOrEqual(Math.abs(c.f32[i]!) * 2 ** -8);
    }
  });

  it("E5M2 operands are accepted; NaN inputs give NaN outputs", () => {
    const a = quantize(Float32Array.of(1, 2, NaN, 4), 2, 2, { tile: ACTIVATION_TILE, format: E5M2, pow2Scales: true });
    const b = quantize(Float32Array.of(1, 1), 1, 2, { tile: WEIGHT_BLOCK, pow2Scales: true });
    const c = fp8Gemm(a, b, { promotionInterval: 32 });
    expect(c.f32[0]).toBe(3);
    expect(c.f32[1]).toBeNaN();
  });
});

describe("two-level accumulation", () => {
  // all-positive inputs are the worst case: every truncation loses in the same direction
  const M = 4;
  const N = 4;
  const K = 4096;
  const next = rng(2024);
  const A = normals(M * K, 1, next, true);
  const B = normals(N * K, 0.02, next, true);
  // one scale per row along the whole K, so that "no promotion" is expressible
  const aRow = quantize(A, M, K, { tile: { rows: 1, cols: K } });
  const bRow = quantize(B, N, K, { tile: { rows: 128, cols: K } });
  const ref = fp8GemmReferenceF64(aRow, bRow);

  /** Stated bound on the N_C = 128 error (per element, relative): 4 steps × 2 truncations × 2^-13 ≈ 0.1%. */
  const PROMOTED_BOUND = 8 * 2 ** -13;

  it("K = 4096, all-positive: promotion every 128 beats no promotion, and stays below 0.1%", () => {
    const none = relativeError(fp8Gemm(aRow, bRow, { promotionInterval: K }).f32, ref);
    const promoted = relativeError(fp8Gemm(aRow, bRow, { promotionInterval: 128 }).f32, ref);
    expect(none.maxRelative).toBeGreaterThan(promoted.maxRelative);
    expect(none.maxRelative).toBeGreaterThan(10 * promoted.maxRelative);
    expect(promoted.maxRelative).toBeLessThan(PROMOTED_BOUND);
    expect(none.maxRelative).toBeGreaterThan(1e-3); // the 14-bit accumulator loses ≫ FP32 rounding
    // truncation only ever loses magnitude on positive sums
    const c = fp8Gemm(aRow, bRow, { promotionInterval: K }).f32;
    for (let i = 0; i < c.length; i++) expect(c[i]!).toBeLessThan(ref[i]!);
    // and plain FP32 accumulation is far better than either
    const f32 = relativeError(
      gemmF32(dequantize(aRow, new Float32Array(M * K)), dequantize(bRow, new Float32Array(N * K)), M, N, K),
      ref,
    );
    expect(f32.maxRelative).toBeLessThan(promoted.maxRelative);
  });

  it("the error of no promotion grows with K; with promotion it does not", () => {
    const errs = [512, 2048].map((k) => {
      const nextK = rng(k);
      const a = quantize(normals(M * k, 1, nextK, true), M, k, { tile: { rows: 1, cols: k } });
      const b = quantize(normals(N * k, 0.02, nextK, true), N, k, { tile: { rows: 128, cols: k } });
      const r = fp8GemmReferenceF64(a, b);
      return {
        none: relativeError(fp8Gemm(a, b, { promotionInterval: k }).f32, r).frobenius,
        promoted: relativeError(fp8Gemm(a, b, { promotionInterval: 128 }).f32, r).frobenius,
      };
    });
    expect(errs[1]!.none).toBeGreaterThan(2 * errs[0]!.none);
    expect(errs[1]!.promoted).toBeLessThan(2 * errs[0]!.promoted);
  });
});

describe("scales and partial edge blocks", () => {
  it("M, N, K not multiples of 128, scales varying by 2^±12 between tiles: C matches the FP64 product of the dequantised operands", () => {
    const next = rng(99);
    const M = 130;
    const N = 200;
    const K = 300;
    const A = normals(M * K, 1, next);
    const B = normals(N * K, 0.02, next);
    // make every tile's magnitude different, so that a wrong scale index shows
    for (let i = 0; i < M; i++)
      for (let k = 0; k < K; k++) A[i * K + k]! *= 2 ** (((i * 7 + Math.floor(k / 128) * 5) % 25) - 12);
    for (let j = 0; j < N; j++)
      for (let k = 0; k < K; k++)
        B[j * K + k]! *= 2 ** (((Math.floor(j / 128) * 3 + Math.floor(k / 128) * 11) % 25) - 12);
    const a = quantize(A, M, K, { tile: ACTIVATION_TILE });
    const b = quantize(B, N, K, { tile: WEIGHT_BLOCK });
    expect(a.scaleShape).toEqual([130, 3]);
    expect(b.scaleShape).toEqual([2, 3]);
    const dense = gemmF64(dequantize(a), dequantize(b), M, N, K);
    const ref = fp8GemmReferenceF64(a, b);
    expect(relativeError(ref, dense).frobenius).toBeLessThan(1e-12);
    const c = fp8Gemm(a, b, { promotionInterval: 128 });
    expect(relativeError(c.f32, ref).frobenius).toBeLessThan(1e-3);
    // against the unquantised inputs: E4M3's quantisation error, a few per cent
    expect(relativeError(c.f32, gemmF64(A, B, M, N, K)).frobenius).toBeLessThan(0.06);
  });

  it("rejects operands and intervals the hardware could not run", () => {
    const a = quantize(new Float32Array(4 * 256), 4, 256, { tile: ACTIVATION_TILE });
    const b = quantize(new Float32Array(2 * 256), 2, 256, { tile: WEIGHT_BLOCK });
    expect(() => fp8Gemm(a, b, { promotionInterval: 48 })).toThrow(/multiple of 32/);
    expect(() => fp8Gemm(a, b, { promotionInterval: 256 })).toThrow(/straddles/);
    expect(() => fp8Gemm(b, b, { promotionInterval: 128 })).toThrow(/1×KB/);
    expect(() =>
      fp8Gemm(a, quantize(new Float32Array(2 * 128), 2, 128, { tile: WEIGHT_BLOCK }), { promotionInterval: 128 }),
    ).toThrow(/equal K/);
    expect(() =>
      fp8Gemm(a, quantize(new Float32Array(2 * 256), 2, 256, { tile: { rows: 128, cols: 64 } }), {
        promotionInterval: 64,
      }),
    ).toThrow(/same K extent/);
    expect(() =>
      fp8Gemm(quantize(new Float32Array(4), 1, 4, { tile: ACTIVATION_TILE, format: E5M6 }), b, {
        promotionInterval: 32,
      }),
    ).toThrow(TypeError);
    expect(() => fp8Gemm(a, b, { promotionInterval: 128, model: { accumulatorBits: 60 } })).toThrow(RangeError);
    expect(E4M3.name).toBe("e4m3");
  });
});
