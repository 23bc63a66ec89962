/**
 * SwiGLU: the activation h = SiLU(g) ⊙ u (SiLU(g) = g·σ(g)) and the MLP built on it,
 *   y = down( SiLU(gate(x)) ⊙ up(x) ),
 * with the checkpoint's three matrices gate_proj [I, d], up_proj [I, d], down_proj [d, I]. Dense FFN
 * layers, every routed expert and the shared experts (one MLP of width n_shared·I) are this MLP.
 *   d SiLU(g)/dg = σ(g)·(1 + g·(1 − σ(g))).
 */
import { linearBackward, linearForward } from "./linear.js";
import { allocLike, expectLength, sigmoid, type RealArray } from "./tensor.js";

/** h = SiLU(g) ⊙ u, element by element. */
export function swigluForward<A extends RealArray>(g: A, u: ArrayLike<number>): A {
  expectLength("swigluForward", "u", u, g.length);
  const h = allocLike(g, g.length);
  for (let i = 0; i < g.length; i++) {
    const gi = g[i]!;
    h[i] = gi * sigmoid(gi) * u[i]!;
  }
  return h;
}

export interface SwigluGrads<A extends RealArray> {
  dg: A;
  du: A;
}

/** Gradients of swigluForward given dh. */
export function swigluBackward<A extends RealArray>(dh: A, g: ArrayLike<number>, u: ArrayLike<number>): SwigluGrads<A> {
  expectLength("swigluBackward", "g", g, dh.length);
  expectLength("swigluBackward", "u", u, dh.length);
  const dg = allocLike(dh, dh.length);
  const du = allocLike(dh, dh.length);
  for (let i = 0; i < dh.length; i++) {
    const gi = g[i]!;
    const s = sigmoid(gi);
    du[i] = dh[i]! * gi * s;
    dg[i] = dh[i]! * u[i]! * s * (1 + gi * (1 - s));
  }
  return { dg, du };
}

/** The three matrices of one SwiGLU MLP (any of them may be a subarray view of a packed tensor). */
export interface SwigluMlpWeights<A extends RealArray> {
  /** gate_proj, inter × hidden. */
  gate: A;
  /** up_proj, inter × hidden. */
  up: A;
  /** down_proj, hidden × inter. */
  down: A;
}

/** What the backward needs from the forward (the FP8 recipe recomputes h; here it is kept). */
export interface SwigluMlpCache<A extends RealArray> {
  g: A;
  u: A;
  h: A;
}

export interface SwigluMlpOutput<A extends RealArray> {
  y: A;
  cache: SwigluMlpCache<A>;
}

/** y (rows × hidden) = SwiGLU MLP of x (rows × hidden) with intermediate width `inter`. */
export function swigluMlpForward<A extends RealArray>(
  x: A,
  w: SwigluMlpWeights<A>,
  rows: number,
  hidden: number,
  inter: number,
): SwigluMlpOutput<A> {
  const g = linearForward(x, w.gate, rows, hidden, inter);
  const u = linearForward(x, w.up, rows, hidden, inter);
  const h = swigluForward(g, u);
  const y = linearForward(h, w.down, rows, inter, hidden);
  return { y, cache: { g, u, h } };
}

export interface SwigluMlpGrads<A extends RealArray> {
  dx: A;
  dGate: A;
  dUp: A;
  dDown: A;
}

/** Gradients of swigluMlpForward given dy (rows × hidden). */
export function swigluMlpBackward<A extends RealArray>(
  dy: A,
  x: A,
  w: SwigluMlpWeights<A>,
  cache: SwigluMlpCache<A>,
  rows: number,
  hidden: number,
  inter: number,
): SwigluMlpGrads<A> {
  expectLength("swigluMlpBackward", "dy", dy, rows * hidden);
  const down = linearBackward(dy, cache.h, w.down, rows, inter, hidden);
  const { dg, du } = swigluBackward(down.dx, cache.g, cache.u);
  const gate = linearBackward(dg, x, w.gate, rows, hidden, inter);
  const up = linearBackward(du, x, w.up, rows, hidden, inter);
  const dx = gate.dx;
  for (let i = 0; i < dx.length; i++) dx[i] = dx[i]! + up.dx[i]!;
  return { dx, dGate: gate.dw, dUp: up.dw, dDown: down.dw };
}
