/**
 * Benchmark: the error of FP8 GEMM accumulation, with and without promotion (DeepSeek-V3 TR §3.3:
 * "K = 4096 … a maximum relative error of nearly 2%" without promotion; the fix promotes every
 * N_C = 128 elements into FP32). Reports numbers; never fails.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/fp8-accumulation.js [--size=64] [--seed=1]
 *
 * C = A · Bᵀ, A: M×K activations, B: N×K weights, M = N = `--size`. Inputs:
 *   normal    A ~ N(0, 1), B ~ N(0, 0.02²)
 *   positive  A ~ |N(0, 1)|, B ~ |N(0, 0.02²)|  (all products positive: the worst case, every
 *             truncation loses in the same direction and the partial sum only grows)
 * The error is that of the accumulation alone: each result is compared with the exact product of
 * the same quantised operands (`fp8GemmReferenceF64`), never with the unquantised inputs.
 * Columns (per element, R = reference): mean and max of |C − R| / |R|, and ‖C − R‖_F / ‖R‖_F.
 *   no promotion   operands quantised with one scale per row along the whole K (1×K tiles for A,
 *                  128×K for B), the whole dot product kept in the 14-bit tensor-core accumulator
 *   N_C = 128      the same operands, promoted to FP32 every 128 elements
 *   N_C = 128, DS  DeepSeek-V3's layout: 1×128 activation tiles, 128×128 weight blocks, promoted
 *                  every 128 (the scales change every 128 along K)
 *   FP32           the same operands as "no promotion" dequantised to FP32 and summed in FP32
 */
import { performance } from "node:perf_hooks";
import {
  ACTIVATION_TILE,
  HOPPER_FP8_TENSOR_CORE,
  WEIGHT_BLOCK,
  dequantize,
  fp8Gemm,
  fp8GemmReferenceF64,
  gemmF32,
  quantize,
  relativeError,
  type QuantizedMatrix,
  type RelativeError,
  type TensorCoreModel,
} from "../backends/reference/numerics/index.js";
import { mulberry32 as rng } from "../compiler/seeded-random.js";

function option(name: string, fallback: number): number {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.slice(name.length + 3)) : fallback;
}

const SIZE = option("size", 64);
const SEED = option("seed", 1);
const KS = [512, 1024, 2048, 4096, 8192];


function normals(n: number, sigma: number, positive: boolean, next: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = 1 - next();
    const v = next();
    const r = Math.sqrt(-2 * Math.log(u));
    const z0 = r * Math.cos(2 * Math.PI * v) * sigma;
    const z1 = r * Math.sin(2 * Math.PI * v) * sigma;
    out[i] = positive ? Math.abs(z0) : z0;
    if (i + 1 < n) out[i + 1] = positive ? Math.abs(z1) : z1;
  }
  return out;
}

function pct(x: number): string {
  return `${(x * 100).toPrecision(3)}%`;
}

function cell(e: RelativeError): string {
  return `${pct(e.meanRelative)} / ${pct(e.maxRelative)} / ${pct(e.frobenius)}`;
}

function measure(a: QuantizedMatrix, b: QuantizedMatrix, nc: number, model?: Partial<TensorCoreModel>): RelativeError {
  const c = fp8Gemm(a, b, { promotionInterval: nc, ...(model ? { model } : {}) });
  return relativeError(c.f32, fp8GemmReferenceF64(a, b));
}

const t0 = performance.now();
const M = SIZE;
const N = SIZE;
console.log(`FP8 (E4M3) GEMM accumulation error vs the exact result of the quantised operands`);
console.log(
  `M = N = ${SIZE}, seed ${SEED}; tensor core: ${HOPPER_FP8_TENSOR_CORE.accumulatorBits}-bit accumulator, ` +
    `${HOPPER_FP8_TENSOR_CORE.rounding}, MMA K = ${HOPPER_FP8_TENSOR_CORE.mmaK}`,
);
console.log(`each cell: mean / max per-element relative error / Frobenius relative error\n`);
console.log(`| inputs | K | no promotion | N_C = 128 | N_C = 128, DS tiles | FP32 |`);
console.log(`|---|---|---|---|---|---|`);
const at4096: { dist: string; a: QuantizedMatrix; b: QuantizedMatrix }[] = [];
for (const dist of ["normal", "positive"] as const) {
  for (const K of KS) {
    const next = rng(SEED * 1000 + K + (dist === "positive" ? 7 : 0));
    const A = normals(M * K, 1, dist === "positive", next);
    const B = normals(N * K, 0.02, dist === "positive", next);
    const aRow = quantize(A, M, K, { tile: { rows: 1, cols: K } });
    const bRow = quantize(B, N, K, { tile: { rows: 128, cols: K } });
    const aDs = quantize(A, M, K, { tile: ACTIVATION_TILE });
    const bDs = quantize(B, N, K, { tile: WEIGHT_BLOCK });
    const none = measure(aRow, bRow, K);
    const nc128 = measure(aRow, bRow, 128);
    const ds = measure(aDs, bDs, 128);
    const f32 = relativeError(
      gemmF32(dequantize(aRow, new Float32Array(M * K)), dequantize(bRow, new Float32Array(N * K)), M, N, K),
      fp8GemmReferenceF64(aRow, bRow),
    );
    console.log(`| ${dist} | ${K} | ${cell(none)} | ${cell(nc128)} | ${cell(ds)} | ${cell(f32)} |`);
    if (K === 4096) at4096.push({ dist, a: aRow, b: bRow });
  }
}

console.log(`\nK = 4096, other accumulator models (the same operands as the rows above)\n`);
console.log(`| inputs | model | no promotion | N_C = 128 |`);
console.log(`|---|---|---|---|`);
const variants: [string, Partial<TensorCoreModel>][] = [
  ["14 bits, toward zero (default)", {}],
  ["14 bits, floor (two's complement)", { rounding: "floor" }],
  ["14 bits, nearest even", { rounding: "nearest-even" }],
  ["14 bits, toward zero, accumulator aligned with products", { alignWithAccumulator: true }],
  ["13 bits, toward zero", { accumulatorBits: 13 }],
  ["14 bits, toward zero, 16-product MMA steps", { mmaK: 16 }],
  ["14 bits, toward zero, 8-product MMA steps", { mmaK: 8 }],
];
for (const { dist, a, b } of at4096) {
  for (const [label, model] of variants) {
    console.log(`| ${dist} | ${label} | ${cell(measure(a, b, 4096, model))} | ${cell(measure(a, b, 128, model))} |`);
  }
}
console.log(`\n(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
