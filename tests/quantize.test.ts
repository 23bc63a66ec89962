/**
 * Fine-grained quantisation (backends/reference/numerics/quantize.ts): tile grids with partial
 * edge tiles, the scale rule (amax / max with a floor, or the smallest sufficient power of two,
 * stored as UE8M0 too), the documented NaN/infinity policy, and — as fast-check properties over
 * random shapes, tiles, formats and values (zeros, tiny, huge, all-equal tiles) — the error bound
 *   |x − dq(q(x))| ≤ 2^-(m+1)·|x| + (subnormal spacing / 2)·scale.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ACTIVATION_TILE,
  BACKWARD_ACTIVATION_TILE,
  DEFAULT_AMAX_FLOOR,
  E4M3,
  E5M2,
  E5M6,
  WEIGHT_BLOCK,
  decodeMinifloat,
  decodeUE8M0,
  dequantize,
  isNaNCode,
  quantizationErrorBound,
  quantize,
  scaleAt,
  tileScale,
  type MinifloatFormat,
  type QuantizedMatrix,
  type TileShape,
} from "../backends/reference/numerics/index.js";

function ramp(rows: number, cols: number, f: (r: number, c: number) => number): Float32Array {
  const x = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) x[r * cols + c] = f(r, c);
  return x;
}

/** amax of the finite values of tile (ti, tj). */
function tileAmax(x: ArrayLike<number>, cols: number, rows: number, tile: TileShape, ti: number, tj: number): number {
  let amax = 0;
  for (let r = ti * tile.rows; r < Math.min(rows, (ti + 1) * tile.rows); r++) {
    for (let c = tj * tile.cols; c < Math.min(cols, (tj + 1) * tile.cols); c++) {
      const a = Math.abs(x[r * cols + c]!);
      if (Number.isFinite(a) && a > amax) amax = a;
    }
  }
  return amax;
}

/** Every violation of the bound (and of the scale rule), as strings; empty when all hold. */
function violations(
  x: ArrayLike<number>,
  rows: number,
  cols: number,
  q: QuantizedMatrix,
  floor = DEFAULT_AMAX_FLOOR,
): string[] {
  const bad: string[] = [];
  const f = q.format;
  const pow2 = q.scalesUE8M0 !== undefined;
  const dq = dequantize(q);
  const [tr, tc] = q.scaleShape;
  if (tr !== Math.ceil(rows / q.tile.rows) || tc !== Math.ceil(cols / q.tile.cols)) bad.push(`scale grid ${tr}×${tc}`);
  for (let ti = 0; ti < tr; ti++) {
    for (let tj = 0; tj < tc; tj++) {
      const s = q.scales[ti * tc + tj]!;
      const a = Math.max(tileAmax(x, cols, rows, q.tile, ti, tj), floor);
      if (pow2) {
        const k = Math.log2(s);
        if (!Number.isInteger(k)) bad.push(`tile ${ti},${tj}: pow2 scale ${s}`);
        if (a / s > f.maxFinite || !(a / (s / 2) > f.maxFinite))
          bad.push(`tile ${ti},${tj}: ${s} is not the smallest power of two for amax ${a}`);
        if (decodeUE8M0(q.scalesUE8M0![ti * tc + tj]!) !== s) bad.push(`tile ${ti},${tj}: UE8M0 byte ≠ scale`);
      } else if (s !== Math.fround(a / f.maxFinite)) {
        bad.push(`tile ${ti},${tj}: scale ${s} ≠ fround(${a} / ${f.maxFinite})`);
      }
    }
  }
  for (let r = 0; r < rows && bad.length < 10; r++) {
    for (let c = 0; c < cols && bad.length < 10; c++) {
      const i = r * cols + c;
      const v = x[i]!;
      const code = q.data[i]!;
      if (!Number.isFinite(v)) continue;
      if (isNaNCode(f, code)) {
        bad.push(`(${r},${c}) = ${v} encoded as NaN`);
        continue;
      }
      const s = scaleAt(q, r, c);
      const err = Math.abs(v - dq[i]!);
      const bound = quantizationErrorBound(f, v, s);
      if (!(err <= bound))
        bad.push(`(${r},${c}) = ${v}: |error| ${err} > bound ${bound} (scale ${s}, code 0x${code.toString(16)})`);
    }
  }
  return bad;
}

describe("tile grids", () => {
  const rows = 300;
  const cols = 260;
  const x = ramp(rows, cols, (r, c) => Math.sin(r * 7 + c) * (1 + r) * (1 + (c % 128)));

  it("1×128 activation tiles: one scale per row per 128 columns, the last tile partial", () => {
    const q = quantize(x, rows, cols, { tile: ACTIVATION_TILE });
    expect(q.scaleShape).toEqual([300, 3]);
    expect(q.data).toBeInstanceOf(Uint8Array);
    expect(q.data.length).toBe(rows * cols);
    expect(q.scales[5 * 3 + 2]).toBe(Math.fround(tileAmax(x, cols, rows, ACTIVATION_TILE, 5, 2) / 448));
    expect(scaleAt(q, 5, 259)).toBe(q.scales[5 * 3 + 2]);
    expect(scaleAt(q, 5, 255)).toBe(q.scales[5 * 3 + 1]);
    expect(violations(x, rows, cols, q)).toEqual([]);
  });

  it("128×1 backward tiles: one scale per column per 128 rows", () => {
    const q = quantize(x, rows, cols, { tile: BACKWARD_ACTIVATION_TILE });
    expect(q.scaleShape).toEqual([3, 260]);
    expect(scaleAt(q, 299, 7)).toBe(q.scales[2 * 260 + 7]);
    expect(q.scales[2 * 260 + 7]).toBe(Math.fround(tileAmax(x, cols, rows, BACKWARD_ACTIVATION_TILE, 2, 7) / 448));
    expect(violations(x, rows, cols, q)).toEqual([]);
  });

  it("128×128 weight blocks, partial at the right and bottom edges", () => {
    const q = quantize(x, rows, cols, { tile: WEIGHT_BLOCK });
    expect(q.scaleShape).toEqual([3, 3]);
    expect(scaleAt(q, 299, 259)).toBe(q.scales[8]);
    expect(q.scales[8]).toBe(Math.fround(tileAmax(x, cols, rows, WEIGHT_BLOCK, 2, 2) / 448));
    expect(violations(x, rows, cols, q)).toEqual([]);
  });

  it("the largest element of each tile maps to ±448 (non-power-of-two scales)", () => {
    const q = quantize(x, rows, cols, { tile: ACTIVATION_TILE });
    for (let r = 0; r < rows; r += 37) {
      for (let tj = 0; tj < 3; tj++) {
        let best = -1;
        for (let c = tj * 128; c < Math.min(cols, tj * 128 + 128); c++) {
          if (best < 0 || Math.abs(x[r * cols + c]!) > Math.abs(x[r * cols + best]!)) best = c;
        }
        expect(Math.abs(decodeMinifloat(E4M3, q.data[r * cols + best]!))).toBe(448);
      }
    }
  });

  it("rejects mismatched shapes, bad tiles and bad floors", () => {
    expect(() => quantize(new Float32Array(10), 3, 4, { tile: ACTIVATION_TILE })).toThrow(RangeError);
    expect(() => quantize(new Float32Array(12), 3, 4, { tile: { rows: 0, cols: 128 } })).toThrow(RangeError);
    expect(() => quantize(new Float32Array(12), 3, 4, { tile: ACTIVATION_TILE, amaxFloor: 0 })).toThrow(RangeError);
    expect(() => quantize(Float64Array.of(1e39), 1, 1, { tile: ACTIVATION_TILE })).toThrow(RangeError);
    expect(quantize(new Float32Array(0), 0, 5, { tile: ACTIVATION_TILE }).scaleShape).toEqual([0, 1]);
  });
});

describe("scales", () => {
  it("amax / 448 in FP32, with amax floored at 1e-4", () => {
    expect(tileScale(448, E4M3)).toBe(1);
    expect(tileScale(1, E4M3)).toBe(Math.fround(1 / 448));
    expect(tileScale(0, E4M3)).toBe(Math.fround(1e-4 / 448));
    expect(tileScale(1e-9, E4M3)).toBe(Math.fround(1e-4 / 448));
    expect(tileScale(1, E5M2)).toBe(Math.fround(1 / 57344));
    expect(tileScale(0, E4M3, false, 1e-2)).toBe(Math.fround(1e-2 / 448));
  });

  it("power-of-two scales: the smallest 2^k with amax / 2^k ≤ max (nothing saturates)", () => {
    expect(tileScale(448, E4M3, true)).toBe(1);
    expect(tileScale(449, E4M3, true)).toBe(2);
    expect(tileScale(447, E4M3, true)).toBe(1);
    expect(tileScale(224, E4M3, true)).toBe(0.5);
    expect(tileScale(224.0001, E4M3, true)).toBe(1);
    expect(tileScale(448 * 2 ** -20, E4M3, true)).toBe(2 ** -20);
    expect(tileScale(0, E4M3, true)).toBe(2 ** Math.ceil(Math.log2(1e-4 / 448)));
    expect(tileScale(65024, E5M6, true)).toBe(1);
    expect(tileScale(65025, E5M6, true)).toBe(2);
    const q = quantize(Float32Array.of(3, -1, 0.5, 449), 1, 4, { tile: ACTIVATION_TILE, pow2Scales: true });
    expect(q.scales[0]).toBe(2);
    expect(q.scalesUE8M0![0]).toBe(128);
    expect(Array.from(dequantize(q))).toEqual([3, -1, 0.5, 448]); // 449 / 2 = 224.5 rounds to 224 (spacing 16 in [128, 256))
  });

  it("an all-zero tile stores zeros under the floor scale and dequantises exactly; −0 keeps its sign", () => {
    const q = quantize(Float32Array.of(0, -0, 0, 0), 2, 2, { tile: WEIGHT_BLOCK });
    expect(q.scales[0]).toBe(Math.fround(DEFAULT_AMAX_FLOOR / 448));
    expect(Array.from(q.data)).toEqual([0, 0x80, 0, 0]);
    const dq = dequantize(q);
    expect(Object.is(dq[1], -0)).toBe(true);
    expect(Array.from(dq)).toEqual([0, -0, 0, 0]);
  });

  it("a tile of equal values stores ±max and dequantises within the bound", () => {
    for (const v of [1, -3.7, 1e-3, 12345.678, 1e30]) {
      const x = new Float32Array(256).fill(v);
      const q = quantize(x, 2, 128, { tile: ACTIVATION_TILE });
      for (const code of q.data) expect(Math.abs(decodeMinifloat(E4M3, code))).toBe(448);
      expect(violations(x, 2, 128, q)).toEqual([]);
    }
  });

  it("dequantising into a Float32Array rounds the exact FP64 product once", () => {
    const x = ramp(3, 200, (r, c) => Math.cos(r + c * 0.37) * 10 ** ((c % 7) - 3));
    const q = quantize(x, 3, 200, { tile: ACTIVATION_TILE });
    const d64 = dequantize(q);
    const d32 = dequantize(q, new Float32Array(600));
    for (let i = 0; i < 600; i++) expect(d32[i]).toBe(Math.fround(d64[i]!));
  });
});

describe("NaN and infinity policy", () => {
  it("NaN is left out of amax and stays NaN; the rest of its tile is quantised as if it were absent", () => {
    const clean = ramp(1, 200, (_, c) => Math.sin(c) * 3);
    const dirty = Float32Array.from(clean);
    dirty[5] = NaN;
    const withNaN = quantize(dirty, 1, 200, { tile: ACTIVATION_TILE });
    clean[5] = 0; // an element that does not set amax
    const without = quantize(clean, 1, 200, { tile: ACTIVATION_TILE });
    expect(withNaN.data[5]).toBe(0x7f);
    expect(Array.from(withNaN.scales)).toEqual(Array.from(without.scales));
    for (let i = 0; i < 200; i++) if (i !== 5) expect(withNaN.data[i]).toBe(without.data[i]);
    expect(dequantize(withNaN)[5]).toBeNaN();
  });

  it("±infinity is left out of amax: NaN in E4M3 (no infinity), ±infinity in E5M2 and E5M6", () => {
    const x = Float32Array.of(1, Infinity, -2, -Infinity);
    const e4 = quantize(x, 1, 4, { tile: ACTIVATION_TILE });
    expect(e4.scales[0]).toBe(Math.fround(2 / 448));
    expect(isNaNCode(E4M3, e4.data[1]!) && isNaNCode(E4M3, e4.data[3]!)).toBe(true);
    expect(decodeMinifloat(E4M3, e4.data[2]!)).toBe(-448);
    const e5 = quantize(x, 1, 4, { tile: ACTIVATION_TILE, format: E5M2 });
    expect([e5.data[1], e5.data[3]]).toEqual([0x7c, 0xfc]);
    const e56 = quantize(x, 1, 4, { tile: ACTIVATION_TILE, format: E5M6, pow2Scales: true });
    expect(e56.data).toBeInstanceOf(Uint16Array);
    expect(Array.from(dequantize(e56))).toEqual([1, Infinity, -2, -Infinity]);
  });
});

// ── properties ───────────────────────────────────────────────────────────────────────────────────

const FORMATS: MinifloatFormat[] = [E4M3, E5M2, E5M6];
const TILES: TileShape[] = [
  ACTIVATION_TILE,
  BACKWARD_ACTIVATION_TILE,
  WEIGHT_BLOCK,
  { rows: 3, cols: 5 },
  { rows: 1, cols: 1 },
];

/** One value: zero, tiny, moderate, huge, or a float32 from anywhere in the range. */
const value = fc.oneof(
  fc.constantFrom(0, -0, 1, -1, 448, 449, 1e-4, 2 ** -30),
  fc.double({ min: -1e-6, max: 1e-6, noNaN: true }),
  fc.double({ min: -1e3, max: 1e3, noNaN: true }),
  fc.double({ min: -3e38, max: 3e38, noNaN: true }),
  fc.float({ noNaN: true, noDefaultInfinity: true }),
);

const matrixCase = fc
  .record({
    rows: fc.integer({ min: 1, max: 140 }),
    cols: fc.integer({ min: 1, max: 140 }),
    tile: fc.constantFrom(...TILES),
    format: fc.constantFrom(...FORMATS),
    pow2Scales: fc.boolean(),
    magnitude: fc.integer({ min: -30, max: 30 }),
    fill: fc.constantFrom("random", "constant", "sparse"),
    float32: fc.boolean(),
    seedValues: fc.array(value, { minLength: 1, maxLength: 64 }),
  })
  .map((c) => {
    const n = c.rows * c.cols;
    const x = c.float32 ? new Float32Array(n) : new Float64Array(n);
    const vs = c.seedValues;
    for (let i = 0; i < n; i++) {
      const v =
        c.fill === "constant"
          ? vs[0]!
          : c.fill === "sparse" && i % 7 !== 0
            ? 0
            : vs[(i * 2654435761) % vs.length]! * 2 ** (((i * 40503) % 61) - 30);
      x[i] = Math.max(-3e38, Math.min(3e38, v * 2 ** c.magnitude));
    }
    return { ...c, x };
  });

describe("quantise → dequantise stays within each format's bound", () => {
  it("random shapes, tiles, formats, magnitudes; FP32 and FP64 inputs", () => {
    fc.assert(
      fc.property(matrixCase, ({ x, rows, cols, tile, format, pow2Scales }) => {
        const q = quantize(x, rows, cols, { tile, format, pow2Scales });
        expect(violations(x, rows, cols, q)).toEqual([]);
      }),
      { numRuns: 150 },
    );
  });

  it("the bound is tight: some element of a dense random matrix comes within 20% of it", () => {
    for (const format of FORMATS) {
      let seed = 7;
      const next = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
      const x = ramp(64, 256, () => next() * 10);
      const q = quantize(x, 64, 256, { tile: ACTIVATION_TILE, format });
      const dq = dequantize(q);
      let worst = 0;
      for (let i = 0; i < x.length; i++) {
        worst = Math.max(
          worst,
          Math.abs(x[i]! - dq[i]!) / quantizationErrorBound(format, x[i]!, scaleAt(q, Math.floor(i / 256), i % 256)),
        );
      }
      expect(worst).toBeLessThanOrEqual(1);
      expect(worst).toBeGreaterThan(0.8);
    }
  });
});
