/**
 * Dense row-major tensors of the reference ops: allocation, shape checks, column slices and the
 * three matrix-product kernels every op builds on.
 *
 * Element type. Every op is generic over `RealArray` (Float32Array | Float64Array): its outputs have
 * the type of its first input, allocated with {@link allocLike}. Float32Array is the reference
 * executor's working precision (storage rounded to FP32 after every op, sums inside one op carried
 * in the JavaScript double); Float64Array runs the very same code in FP64, which the
 * finite-difference gradient tests need. Scalars (losses) are returned as JavaScript numbers.
 *
 * Shapes are explicit integer arguments, never inferred; a mismatched length throws a RangeError
 * naming the op and the tensor. Matrices are row-major; a linear layer's weight is [out, in], as in
 * the checkpoint, so y = x·Wᵀ.
 */
import type { RealArray } from "../numerics/minifloat.js";

export type { RealArray };

/** A zero-filled array of `n` elements of the same element type as `like`. */
export function allocLike<A extends RealArray>(like: A, n: number): A {
  return (like instanceof Float64Array ? new Float64Array(n) : new Float32Array(n)) as A;
}

/** A copy of `x` (same element type). */
export function copyOf<A extends RealArray>(x: A): A {
  return x.slice() as A;
}

/** Throws unless `x` holds exactly `n` elements. */
export function expectLength(op: string, name: string, x: ArrayLike<number>, n: number): void {
  if (x.length !== n) throw new RangeError(`${op}: ${name} has ${x.length} elements, want ${n}`);
}

/** Throws unless `n` is a positive integer (or zero when `allowZero`). */
export function expectCount(op: string, name: string, n: number, allowZero = false): void {
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) {
    throw new RangeError(`${op}: ${name} must be a ${allowZero ? "non-negative" : "positive"} integer, got ${n}`);
  }
}

/** dst += src, element by element; returns dst. */
export function addInto<A extends RealArray>(dst: A, src: ArrayLike<number>): A {
  if (dst.length !== src.length) throw new RangeError(`addInto: ${dst.length} vs ${src.length} elements`);
  for (let i = 0; i < dst.length; i++) dst[i] = dst[i]! + src[i]!;
  return dst;
}

/** A new array a + b. */
export function add<A extends RealArray>(a: A, b: ArrayLike<number>): A {
  return addInto(copyOf(a), b);
}

/** x[:, from : from + width] of a rows × cols matrix, as a new rows × width matrix. */
export function sliceCols<A extends RealArray>(x: A, rows: number, cols: number, from: number, width: number): A {
  expectLength("sliceCols", "x", x, rows * cols);
  if (from < 0 || from + width > cols) throw new RangeError(`sliceCols: [${from}, ${from + width}) outside ${cols} columns`);
  const out = allocLike(x, rows * width);
  for (let r = 0; r < rows; r++) {
    const src = r * cols + from;
    const dst = r * width;
    for (let c = 0; c < width; c++) out[dst + c] = x[src + c]!;
  }
  return out;
}

/** dst[:, from : from + width] += src (src rows × width, dst rows × cols); returns dst. */
export function addCols<A extends RealArray>(
  dst: A,
  rows: number,
  cols: number,
  from: number,
  src: ArrayLike<number>,
  width: number,
): A {
  expectLength("addCols", "dst", dst, rows * cols);
  expectLength("addCols", "src", src, rows * width);
  if (from < 0 || from + width > cols) throw new RangeError(`addCols: [${from}, ${from + width}) outside ${cols} columns`);
  for (let r = 0; r < rows; r++) {
    const d = r * cols + from;
    const s = r * width;
    for (let c = 0; c < width; c++) dst[d + c] = dst[d + c]! + src[s + c]!;
  }
  return dst;
}

/** Rows `index[i]` of a rows × cols matrix, as a new index.length × cols matrix. */
export function gatherRows<A extends RealArray>(x: A, cols: number, index: ArrayLike<number>): A {
  const out = allocLike(x, index.length * cols);
  for (let i = 0; i < index.length; i++) {
    const src = index[i]! * cols;
    out.set(x.subarray(src, src + cols), i * cols);
  }
  return out;
}

/**
 * C[M×N] = A[M×K] · B[N×K]ᵀ (the linear layer's forward: x · Wᵀ). With `accumulate` the product is
 * added into `out`. Each dot product is summed in the JavaScript double, k ascending, then stored once.
 */
export function matmulABt<A extends RealArray>(
  a: A,
  b: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
  out?: A,
  accumulate = false,
): A {
  expectLength("matmulABt", "A", a, M * K);
  expectLength("matmulABt", "B", b, N * K);
  const c = out ?? allocLike(a, M * N);
  expectLength("matmulABt", "C", c, M * N);
  for (let i = 0; i < M; i++) {
    const ai = i * K;
    for (let j = 0; j < N; j++) {
      const bj = j * K;
      let s = 0;
      for (let k = 0; k < K; k++) s += a[ai + k]! * b[bj + k]!;
      const at = i * N + j;
      c[at] = accumulate ? c[at]! + s : s;
    }
  }
  return c;
}

/** C[M×N] = A[M×K] · B[K×N] (the linear layer's input gradient: dY · W). */
export function matmulAB<A extends RealArray>(
  a: A,
  b: ArrayLike<number>,
  M: number,
  K: number,
  N: number,
  out?: A,
  accumulate = false,
): A {
  expectLength("matmulAB", "A", a, M * K);
  expectLength("matmulAB", "B", b, K * N);
  const c = out ?? allocLike(a, M * N);
  expectLength("matmulAB", "C", c, M * N);
  // Accumulate each output row in a double scratch row, then store (one rounding per element).
  const row = new Float64Array(N);
  for (let i = 0; i < M; i++) {
    row.fill(0);
    for (let k = 0; k < K; k++) {
      const aik = a[i * K + k]!;
      if (aik === 0) continue;
      const bk = k * N;
      for (let j = 0; j < N; j++) row[j] = row[j]! + aik * b[bk + j]!;
    }
    const ci = i * N;
    if (accumulate) for (let j = 0; j < N; j++) c[ci + j] = c[ci + j]! + row[j]!;
    else for (let j = 0; j < N; j++) c[ci + j] = row[j]!;
  }
  return c;
}

/** C[M×N] = A[K×M]ᵀ · B[K×N] (the linear layer's weight gradient: dYᵀ · X). */
export function matmulAtB<A extends RealArray>(
  a: A,
  b: ArrayLike<number>,
  K: number,
  M: number,
  N: number,
  out?: A,
  accumulate = false,
): A {
  expectLength("matmulAtB", "A", a, K * M);
  expectLength("matmulAtB", "B", b, K * N);
  const c = out ?? allocLike(a, M * N);
  expectLength("matmulAtB", "C", c, M * N);
  const acc = new Float64Array(M * N);
  for (let k = 0; k < K; k++) {
    const ak = k * M;
    const bk = k * N;
    for (let i = 0; i < M; i++) {
      const aki = a[ak + i]!;
      if (aki === 0) continue;
      const ci = i * N;
      for (let j = 0; j < N; j++) acc[ci + j] = acc[ci + j]! + aki * b[bk + j]!;
    }
  }
  if (accumulate) for (let i = 0; i < M * N; i++) c[i] = c[i]! + acc[i]!;
  else c.set(acc);
  return c;
}

/** The logistic function 1 / (1 + e^−x), stable for large |x|. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}
