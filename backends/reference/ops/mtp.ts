/**
 * Multi-token prediction (DeepSeek-V3 TR §2.2; checkpoint layer 61). The k-th module (k = 1…D) at
 * position i combines the previous depth's hidden state h^{k−1}_i (h^0 = the main model's last
 * hidden state, before its final norm) with the embedding of token t_{i+k}:
 *   h'_i = eh_proj([RMSNorm_e(Emb(t_{i+k})) | RMSNorm_h(h^{k−1}_i)])    (eh_proj: hidden × 2·hidden)
 *   h^k  = Block_k(h')                                                    (one transformer block)
 *   logits = OutHead(shared_head.norm(h^k))                               (head shared with the model)
 * and is trained to predict t_{i+k+1} with cross-entropy L^k. The MTP loss is
 *   L_MTP = (λ / D) · Σ_k L^k.
 * Rows: for a sequence of T tokens, module k runs on rows i = 0 … T−k−1 (its input embeddings are
 * t_k … t_{T−1}); the last row has no target (label −1, ignored), so L^k averages T−k−1 predictions.
 * ({@link mtpShift} builds these ids and labels.) The embedding lookup is the caller's (embedding.ts),
 * so the shared embedding's gradient is accumulated where the table lives.
 *
 * The transformer block is passed in as a {@link MtpBlock}: a forward that returns its output and a
 * backward closure, which accumulates the block's own parameter gradients wherever the caller keeps
 * them and returns the gradient of its input.
 */
import { crossEntropyBackward, crossEntropyForward } from "./cross-entropy.js";
import { linearBackward, linearForward } from "./linear.js";
import { outputHeadBackward, outputHeadForward, type OutputHeadOutput } from "./output-head.js";
import { rmsnormBackward, rmsnormForward } from "./rmsnorm.js";
import { addCols, addInto, allocLike, expectCount, expectLength, sliceCols, type RealArray } from "./tensor.js";

export interface MtpConfig {
  hidden: number;
  vocab: number;
  normEps: number;
}

export interface MtpWeights<A extends RealArray> {
  /** enorm [hidden]: RMSNorm of the next token's embedding. */
  enorm: A;
  /** hnorm [hidden]: RMSNorm of the previous hidden state. */
  hnorm: A;
  /** eh_proj [hidden, 2·hidden]. */
  ehProj: A;
  /** shared_head.norm [hidden]. */
  headNorm: A;
}

export interface MtpBlockPass<A extends RealArray> {
  y: A;
  /** Given dy, accumulates the block's parameter gradients and returns dx. */
  backward: (dy: A) => A;
}

/** One transformer block over `tokens` rows of `hidden` (causal attention within those rows). */
export interface MtpBlock<A extends RealArray> {
  forward: (x: A, tokens: number) => MtpBlockPass<A>;
}

/** Module k's inputs for a sequence: the ids whose embeddings enter (t_{i+k}) and the labels (t_{i+k+1}, −1 past the end). */
export function mtpShift(tokens: Int32Array, depth: number): { rows: number; inputIds: Int32Array; labels: Int32Array } {
  expectCount("mtpShift", "depth", depth);
  const rows = tokens.length - depth;
  if (rows < 1) throw new RangeError(`mtpShift: a sequence of ${tokens.length} tokens has no rows at depth ${depth}`);
  const inputIds = tokens.slice(depth, depth + rows);
  const labels = new Int32Array(rows).fill(-1);
  for (let i = 0; i + depth + 1 < tokens.length; i++) labels[i] = tokens[i + depth + 1]!;
  return { rows, inputIds, labels };
}

export interface MtpCache<A extends RealArray> {
  rows: number;
  eNormed: A;
  hNormed: A;
  concat: A;
  blockIn: A;
  block: MtpBlockPass<A>;
  head: OutputHeadOutput<A>;
  labels: Int32Array;
}

export interface MtpOutput<A extends RealArray> {
  /** L^k, the module's mean cross-entropy. */
  loss: number;
  logits: A;
  /** h^k (rows × hidden): the next module's h^{k−1}. */
  hidden: A;
  cache: MtpCache<A>;
}

/**
 * One MTP module on `rows` positions: prevHidden (rows × hidden, h^{k−1}), nextEmb (rows × hidden,
 * Emb(t_{i+k})), labels (rows, t_{i+k+1} or −1); `head` is the shared output projection (vocab × hidden).
 */
export function mtpForward<A extends RealArray>(
  prevHidden: A,
  nextEmb: A,
  labels: Int32Array,
  w: MtpWeights<A>,
  head: ArrayLike<number>,
  block: MtpBlock<A>,
  cfg: MtpConfig,
  rows: number,
): MtpOutput<A> {
  const d = cfg.hidden;
  expectCount("mtpForward", "rows", rows);
  expectLength("mtpForward", "prevHidden", prevHidden, rows * d);
  expectLength("mtpForward", "nextEmb", nextEmb, rows * d);
  expectLength("mtpForward", "labels", labels, rows);
  expectLength("mtpForward", "ehProj", w.ehProj, d * 2 * d);
  const eNormed = rmsnormForward(nextEmb, w.enorm, rows, d, cfg.normEps);
  const hNormed = rmsnormForward(prevHidden, w.hnorm, rows, d, cfg.normEps);
  const concat = allocLike(prevHidden, rows * 2 * d);
  addCols(concat, rows, 2 * d, 0, eNormed, d);
  addCols(concat, rows, 2 * d, d, hNormed, d);
  const blockIn = linearForward(concat, w.ehProj, rows, 2 * d, d);
  const pass = block.forward(blockIn, rows);
  expectLength("mtpForward", "block output", pass.y, rows * d);
  const headOut = outputHeadForward(pass.y, w.headNorm, head, rows, d, cfg.vocab, cfg.normEps);
  const loss = crossEntropyForward(headOut.logits, labels, rows, cfg.vocab);
  return {
    loss,
    logits: headOut.logits,
    hidden: pass.y,
    cache: { rows, eNormed, hNormed, concat, blockIn, block: pass, head: headOut, labels },
  };
}

export interface MtpGrads<A extends RealArray> {
  dPrevHidden: A;
  dNextEmb: A;
  weights: MtpWeights<A>;
  /** Gradient of the shared output head (add it to the main model's). */
  dHead: A;
}

/**
 * Gradients of one module given dLoss (the weight of L^k in the total loss, λ/D for L_MTP) and
 * dHidden, the gradient reaching h^k from the next module (null for the last).
 */
export function mtpBackward<A extends RealArray>(
  dLoss: number,
  dHidden: A | null,
  prevHidden: A,
  nextEmb: A,
  w: MtpWeights<A>,
  head: ArrayLike<number>,
  cfg: MtpConfig,
  cache: MtpCache<A>,
): MtpGrads<A> {
  const d = cfg.hidden;
  const rows = cache.rows;
  const dLogits = crossEntropyBackward(dLoss, cache.head.logits, cache.labels, rows, cfg.vocab);
  const h = outputHeadBackward(dLogits, cache.block.y, w.headNorm, head, cache.head, rows, d, cfg.vocab, cfg.normEps);
  const dy = h.dh;
  if (dHidden !== null) addInto(dy, dHidden);
  const dBlockIn = cache.block.backward(dy);
  const eh = linearBackward(dBlockIn, cache.concat, w.ehProj, rows, 2 * d, d);
  const e = rmsnormBackward(sliceCols(eh.dx, rows, 2 * d, 0, d), nextEmb, w.enorm, rows, d, cfg.normEps);
  const hh = rmsnormBackward(sliceCols(eh.dx, rows, 2 * d, d, d), prevHidden, w.hnorm, rows, d, cfg.normEps);
  return {
    dPrevHidden: hh.dx,
    dNextEmb: e.dx,
    weights: { enorm: e.dw, hnorm: hh.dw, ehProj: eh.dw, headNorm: h.dNorm },
    dHead: h.dHead,
  };
}

/** L_MTP = (λ / D) · Σ_k L^k over the D module losses. */
export function mtpLoss(losses: readonly number[], lambda: number): number {
  if (losses.length === 0) return 0;
  let s = 0;
  for (const l of losses) s += l;
  return (lambda / losses.length) * s;
}

/** ∂L_MTP/∂L^k = λ / D, the dLoss to pass to each module's backward. */
export function mtpLossWeight(depth: number, lambda: number): number {
  expectCount("mtpLossWeight", "depth", depth);
  return lambda / depth;
}
