/**
 * RMSNorm over the last dimension: y = x / sqrt(mean(x²) + eps) ⊙ w (computed in at least FP32;
 * DeepSeek-V3 eps = 1e-6). The backward recomputes the per-row reciprocal RMS from x, as the FP8
 * recipe recomputes every RMSNorm in the backward pass.
 *
 * With r = (mean(x²) + eps)^−½ and n = dim:
 *   dx_k = r·(w_k·dy_k − x_k·r²·(Σ_j w_j·dy_j·x_j)/n),   dw_j = Σ_rows dy_j·x_j·r.
 */
import { allocLike, expectLength, type RealArray } from "./tensor.js";

/** The reciprocal RMS of each row: (mean(x²) + eps)^−½, in FP64. */
export function rmsnormRstd(x: ArrayLike<number>, rows: number, dim: number, eps: number): Float64Array {
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0, o = r * dim; j < dim; j++) ss += x[o + j]! * x[o + j]!;
    rstd[r] = 1 / Math.sqrt(ss / dim + eps);
  }
  return rstd;
}

/** y = RMSNorm(x) ⊙ w for x: rows × dim, w: dim. */
export function rmsnormForward<A extends RealArray>(x: A, w: ArrayLike<number>, rows: number, dim: number, eps: number): A {
  expectLength("rmsnormForward", "x", x, rows * dim);
  expectLength("rmsnormForward", "w", w, dim);
  const rstd = rmsnormRstd(x, rows, dim, eps);
  const y = allocLike(x, rows * dim);
  for (let r = 0; r < rows; r++) {
    const s = rstd[r]!;
    for (let j = 0, o = r * dim; j < dim; j++) y[o + j] = x[o + j]! * s * w[j]!;
  }
  return y;
}

export interface RmsNormGrads<A extends RealArray> {
  dx: A;
  dw: A;
}

/** Gradients of rmsnormForward given dy (rows × dim). */
export function rmsnormBackward<A extends RealArray>(
  dy: A,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  rows: number,
  dim: number,
  eps: number,
): RmsNormGrads<A> {
  expectLength("rmsnormBackward", "dy", dy, rows * dim);
  expectLength("rmsnormBackward", "x", x, rows * dim);
  expectLength("rmsnormBackward", "w", w, dim);
  const rstd = rmsnormRstd(x, rows, dim, eps);
  const dx = allocLike(dy, rows * dim);
  const dwAcc = new Float64Array(dim);
  for (let r = 0; r < rows; r++) {
    const s = rstd[r]!;
    const o = r * dim;
    let dot = 0;
    for (let j = 0; j < dim; j++) {
      dot += w[j]! * dy[o + j]! * x[o + j]!;
      dwAcc[j] = dwAcc[j]! + dy[o + j]! * x[o + j]! * s;
    }
    const c = (s * s * dot) / dim;
    for (let j = 0; j < dim; j++) dx[o + j] = s * (w[j]! * dy[o + j]! - x[o + j]! * c);
  }
  const dw = allocLike(dy, dim);
  dw.set(dwAcc);
  return { dx, dw };
}
