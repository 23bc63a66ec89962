/**
 * The output head: the final RMSNorm then the vocabulary projection, logits = RMSNorm(h)·W_outᵀ
 * (W_out vocab × hidden, kept out of FP8; not tied to the embedding in V3). The MTP modules share W_out
 * with the main model but bring their own norm (shared_head.norm).
 */
import { linearBackward, linearForward } from "./linear.js";
import { rmsnormBackward, rmsnormForward } from "./rmsnorm.js";
import type { RealArray } from "./tensor.js";

export interface OutputHeadOutput<A extends RealArray> {
  logits: A;
  /** RMSNorm(h), the projection's input. */
  normed: A;
}

/** logits (tokens × vocab) of h (tokens × hidden). */
export function outputHeadForward<A extends RealArray>(
  h: A,
  norm: ArrayLike<number>,
  head: ArrayLike<number>,
  tokens: number,
  hidden: number,
  vocab: number,
  eps: number,
): OutputHeadOutput<A> {
  const normed = rmsnormForward(h, norm, tokens, hidden, eps);
  return { logits: linearForward(normed, head, tokens, hidden, vocab), normed };
}

export interface OutputHeadGrads<A extends RealArray> {
  dh: A;
  dNorm: A;
  dHead: A;
}

/** Gradients of outputHeadForward given dLogits. */
export function outputHeadBackward<A extends RealArray>(
  dLogits: A,
  h: A,
  norm: ArrayLike<number>,
  head: ArrayLike<number>,
  out: OutputHeadOutput<A>,
  tokens: number,
  hidden: number,
  vocab: number,
  eps: number,
): OutputHeadGrads<A> {
  const lin = linearBackward(dLogits, out.normed, head, tokens, hidden, vocab);
  const n = rmsnormBackward(lin.dx, h, norm, tokens, hidden, eps);
  return { dh: n.dx, dNorm: n.dw, dHead: lin.dw };
}
