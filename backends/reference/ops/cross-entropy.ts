/**
 * Softmax cross-entropy over the vocabulary, averaged over the counted tokens:
 *   L = (1/N) · Σ_t [logsumexp(z_t) − z_t[y_t]],
 * with a stable logsumexp (the row maximum subtracted). Tokens whose label is negative are ignored
 * (not counted in N); with no counted token the loss is 0.
 *   dz_t = dL · (softmax(z_t) − onehot(y_t)) / N.
 */
import { allocLike, expectCount, expectLength, type RealArray } from "./tensor.js";

function counted(op: string, labels: Int32Array, vocab: number): number {
  let n = 0;
  for (let t = 0; t < labels.length; t++) {
    const y = labels[t]!;
    if (y >= vocab) throw new RangeError(`${op}: label ${y} of token ${t} outside the vocabulary of ${vocab}`);
    if (y >= 0) n++;
  }
  return n;
}

function logSumExp(z: ArrayLike<number>, at: number, vocab: number): number {
  let max = -Infinity;
  for (let v = 0; v < vocab; v++) max = Math.max(max, z[at + v]!);
  let sum = 0;
  for (let v = 0; v < vocab; v++) sum += Math.exp(z[at + v]! - max);
  return max + Math.log(sum);
}

/** Mean cross-entropy of logits (tokens × vocab) against labels (−1 = ignore). */
export function crossEntropyForward(logits: ArrayLike<number>, labels: Int32Array, tokens: number, vocab: number): number {
  expectCount("crossEntropyForward", "vocab", vocab);
  expectLength("crossEntropyForward", "logits", logits, tokens * vocab);
  expectLength("crossEntropyForward", "labels", labels, tokens);
  const n = counted("crossEntropyForward", labels, vocab);
  if (n === 0) return 0;
  let loss = 0;
  for (let t = 0; t < tokens; t++) {
    const y = labels[t]!;
    if (y < 0) continue;
    loss += logSumExp(logits, t * vocab, vocab) - logits[t * vocab + y]!;
  }
  return loss / n;
}

/** dL/dlogits for an upstream gradient dLoss. */
export function crossEntropyBackward<A extends RealArray>(dLoss: number, logits: A, labels: Int32Array, tokens: number, vocab: number): A {
  expectLength("crossEntropyBackward", "logits", logits, tokens * vocab);
  expectLength("crossEntropyBackward", "labels", labels, tokens);
  const n = counted("crossEntropyBackward", labels, vocab);
  const dz = allocLike(logits, tokens * vocab);
  if (n === 0) return dz;
  const c = dLoss / n;
  for (let t = 0; t < tokens; t++) {
    const y = labels[t]!;
    if (y < 0) continue;
    const at = t * vocab;
    const lse = logSumExp(logits, at, vocab);
    for (let v = 0; v < vocab; v++) dz[at + v] = c * Math.exp(logits[at + v]! - lse);
    dz[at + y] = dz[at + y]! - c;
  }
  return dz;
}
