/**
 * Deterministic synthetic training tokens: a random pattern of `period` distinct token ids drawn
 * from the seed, repeated. Each sequence of a step starts at a seeded offset into the pattern, so
 * every next token is a function of the current one — a bigram the model learns within tens of steps
 * and the loss visibly falls from ln(vocab) toward 0.
 */
import { mulberry32 } from "../../backends/reference/ops/index.js";

export interface SyntheticTokenOptions {
  vocab: number;
  seqLen: number;
  batch: number;
  seed: number;
  /** Length of the repeated pattern (capped at the vocabulary). Default 16. */
  period?: number;
}

/** The repeated pattern: `period` distinct ids in [0, vocab), a seeded partial shuffle. */
export function tokenPattern(vocab: number, period: number, seed: number): Int32Array {
  const n = Math.min(period, vocab);
  const u = mulberry32((seed ^ 0x5eed1234) >>> 0);
  const ids = Int32Array.from({ length: vocab }, (_, i) => i);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(u() * (vocab - i));
    const t = ids[i]!;
    ids[i] = ids[j]!;
    ids[j] = t;
  }
  return ids.slice(0, n);
}

/** A stream of batches: `next()` returns the step's `batch` sequences of `seqLen` tokens. */
export class SyntheticTokens {
  readonly pattern: Int32Array;
  private readonly u: () => number;
  constructor(readonly options: SyntheticTokenOptions) {
    this.pattern = tokenPattern(options.vocab, options.period ?? 16, options.seed);
    this.u = mulberry32((options.seed ^ 0x70c3e5) >>> 0);
  }
  next(): Int32Array[] {
    const { seqLen, batch } = this.options;
    const P = this.pattern.length;
    const out: Int32Array[] = [];
    for (let b = 0; b < batch; b++) {
      const start = Math.floor(this.u() * P);
      const seq = new Int32Array(seqLen);
      for (let i = 0; i < seqLen; i++) seq[i] = this.pattern[(start + i) % P]!;
      out.push(seq);
    }
    return out;
  }
}
