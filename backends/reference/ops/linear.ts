/**
 * A linear layer without bias, y = x·Wᵀ, with the checkpoint's [out, in] weight layout. DeepSeek-V3
 * has no biases in its projections.
 *   dX = dY·W,   dW = dYᵀ·X.
 */
import { expectLength, matmulAB, matmulABt, matmulAtB, type RealArray } from "./tensor.js";

/** y (rows × outF) = x (rows × inF) · Wᵀ, W: outF × inF. */
export function linearForward<A extends RealArray>(x: A, w: ArrayLike<number>, rows: number, inF: number, outF: number): A {
  expectLength("linearForward", "x", x, rows * inF);
  expectLength("linearForward", "w", w, outF * inF);
  return matmulABt(x, w, rows, outF, inF);
}

export interface LinearGrads<A extends RealArray> {
  dx: A;
  dw: A;
}

/** Gradients of linearForward given dy (rows × outF). */
export function linearBackward<A extends RealArray>(
  dy: A,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  rows: number,
  inF: number,
  outF: number,
): LinearGrads<A> {
  expectLength("linearBackward", "dy", dy, rows * outF);
  expectLength("linearBackward", "x", x, rows * inF);
  expectLength("linearBackward", "w", w, outF * inF);
  return { dx: matmulAB(dy, w, rows, outF, inF), dw: matmulAtB(dy, x, rows, outF, inF) };
}
