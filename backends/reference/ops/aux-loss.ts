/**
 * The complementary sequence-wise balance loss of DeepSeek-V3 (TR §2.1.2, eq. 17–20), per sequence
 * of T tokens:
 *   L_Bal = α · Σ_i f_i · P_i,
 *   f_i = N_r / (K_r · T) · Σ_t 1[expert i is among token t's top-K_r],
 *   s'_{i,t} = s_{i,t} / Σ_j s_{j,t}   (the affinities normalised over all N_r experts),
 *   P_i = (1/T) · Σ_t s'_{i,t}.
 * A batch of B sequences (tokens = B·T, sequence-major) averages the B per-sequence losses. f is a
 * count (not differentiable); the gradient flows into the scores through P:
 *   ∂L/∂s'_{i,t} = α·f_i/(B·T),   ∂L/∂s_{j,t} = (∂L/∂s'_{j,t} − Σ_i ∂L/∂s'_{i,t}·s'_{i,t}) / Σ_i s_{i,t}.
 * Perfect balance (every f_i = 1, P_i = 1/N_r) gives L = α.
 */
import { allocLike, expectCount, expectLength, type RealArray } from "./tensor.js";

export interface SeqAuxLossConfig {
  experts: number;
  topK: number;
  /** α, the spec's seqAuxLossWeight. */
  alpha: number;
  /** T: tokens per sequence (tokens must be a multiple). */
  seqLen: number;
}

export interface SeqAuxLossOutput {
  loss: number;
  /** sequences × experts. */
  f: Float64Array;
  /** sequences × experts. */
  p: Float64Array;
}

function sequences(op: string, cfg: SeqAuxLossConfig, tokens: number): number {
  expectCount(op, "experts", cfg.experts);
  expectCount(op, "topK", cfg.topK);
  expectCount(op, "seqLen", cfg.seqLen);
  if (tokens % cfg.seqLen !== 0) throw new RangeError(`${op}: ${tokens} tokens are not whole sequences of ${cfg.seqLen}`);
  return tokens / cfg.seqLen;
}

/** f_i per sequence (sequences × experts) from the chosen experts. */
export function expertFractions(chosen: Int32Array, cfg: SeqAuxLossConfig, tokens: number): Float64Array {
  const B = sequences("expertFractions", cfg, tokens);
  expectLength("expertFractions", "chosen", chosen, tokens * cfg.topK);
  const { experts, topK, seqLen } = cfg;
  const f = new Float64Array(B * experts);
  const unit = experts / (topK * seqLen);
  for (let t = 0; t < tokens; t++) {
    const b = Math.floor(t / seqLen);
    for (let k = 0; k < topK; k++) f[b * experts + chosen[t * topK + k]!]! += unit;
  }
  return f;
}

/** The loss (mean over sequences) with its f and P. */
export function seqAuxLossForward(scores: ArrayLike<number>, chosen: Int32Array, cfg: SeqAuxLossConfig, tokens: number): SeqAuxLossOutput {
  const B = sequences("seqAuxLossForward", cfg, tokens);
  const { experts, seqLen } = cfg;
  expectLength("seqAuxLossForward", "scores", scores, tokens * experts);
  const f = expertFractions(chosen, cfg, tokens);
  const p = new Float64Array(B * experts);
  for (let t = 0; t < tokens; t++) {
    const b = Math.floor(t / seqLen);
    let sum = 0;
    for (let e = 0; e < experts; e++) sum += scores[t * experts + e]!;
    for (let e = 0; e < experts; e++) p[b * experts + e]! += scores[t * experts + e]! / sum / seqLen;
  }
  let loss = 0;
  for (let i = 0; i < f.length; i++) loss += f[i]! * p[i]!;
  return { loss: (cfg.alpha * loss) / B, f, p };
}

/** dL/dscores (tokens × experts) for an upstream gradient dLoss of the loss. */
export function seqAuxLossBackward<A extends RealArray>(
  dLoss: number,
  scores: A,
  chosen: Int32Array,
  cfg: SeqAuxLossConfig,
  tokens: number,
): A {
  const B = sequences("seqAuxLossBackward", cfg, tokens);
  const { experts, seqLen } = cfg;
  expectLength("seqAuxLossBackward", "scores", scores, tokens * experts);
  const f = expertFractions(chosen, cfg, tokens);
  const ds = allocLike(scores, tokens * experts);
  const c = (dLoss * cfg.alpha) / (B * seqLen);
  for (let t = 0; t < tokens; t++) {
    const b = Math.floor(t / seqLen);
    const row = t * experts;
    let sum = 0;
    for (let e = 0; e < experts; e++) sum += scores[row + e]!;
    let dot = 0;
    for (let e = 0; e < experts; e++) dot += c * f[b * experts + e]! * (scores[row + e]! / sum);
    for (let e = 0; e < experts; e++) ds[row + e] = (c * f[b * experts + e]! - dot) / sum;
  }
  return ds;
}
