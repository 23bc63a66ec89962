/**
 * DualPipe (DeepSeek-V3 report §3.2.1): P ranks, micro-batches fed from both ends at once. Rank r
 * holds stage r of direction 0 and stage P−1−r of direction 1 (two copies of the parameters), N/2
 * micro-batches go each way, and in the steady state every compute slot overlaps the forward of one
 * direction with the backward of the other.
 *
 * Per rank the order has eight phases. Name `near` the direction whose input enters on this rank's
 * side of the pipeline (dir 0 for r < P/2, dir 1 otherwise) and `far` the other; let h = P/2 and
 * q = min(r, P−1−r), the rank's distance from the nearer end (q = h−1 on the two middle ranks).
 *   1. 2(h−q−1) forwards of `near`                       — fill from the near end
 *   2. q+1 × (F near, F far)                              — the far direction arrives
 *   3. h−q−1 × (B far [split], W, F far)                  — first backwards; W right after its B
 *   4. N/2−P+q+1 × (F near & B far, F far & B near)       — the overlapped steady state
 *   5. h−q−1 × (B far, F far & B near)                    — near-direction forwards are done
 *   6. q+1 × (B far, B near)                              — drain; from the middle on, split
 *   7. h−q−1 × (W, B near [split])                        — deferred weight gradients fill gaps
 *   8. q+1 × W                                            — the remaining weight gradients
 * "X & Y" is an overlapped pair. Each direction's forwards and backwards run in micro-batch order;
 * the weight gradients of split backwards run first-in first-out. In phase 6, of the 2(q+1)
 * backwards the last q+1 are split.
 *
 * As in the reference implementation, the two middle ranks run phase 4's first F near and B far one
 * after the other instead of overlapped, so the forward's output, which the other middle rank's
 * next slot consumes, leaves when the forward ends rather than with the pair. Under the free communication modelled in
 * simulate.ts this matters only off the table's proportions: with F = B − W, overlapping that slot
 * too would give the same bubble (and a makespan shorter by F + B − F&B); with F < B − W the split
 * order can have the smaller bubble. The reference's order is kept so the op lists are DualPipe's.
 *
 * Domain (as the reference implementation requires): P even and ≥ 2, N even and ≥ 2P.
 */

import { checkInteger, fail, numberSteps } from "./schedule.js";
import type { Dir, Hop, PipelineFailure, Schedule, Step } from "./schedule.js";

/** The eight phases for one rank; shared with DualPipeV, which is the same order on a folded pipeline. */
export interface EightPhaseShape {
  /** Ranks per half of the pipeline (P/2 for DualPipe, the device count for DualPipeV). */
  half: number;
  /** This rank's distance q from its end of the pipeline, 0 … half−1. */
  q: number;
  near: Dir;
  far: Dir;
  /** Whether phase 4's first slot runs unoverlapped (the ranks at the pipeline's turning point). */
  middle: boolean;
  /** Phase-4 iterations: (micro-batches per direction) − 2·half + q + 1. */
  steady: number;
}

export function eightPhaseSteps(shape: EightPhaseShape): Step[] {
  const { half, q, near, far, middle, steady } = shape;
  const seq: Step[] = [];
  const fNext: [number, number] = [0, 0];
  const bNext: [number, number] = [0, 0];
  const pendingW: { dir: Dir; mb: number }[] = [];
  const F = (dir: Dir): Step => ({ op: "F", dir, mb: fNext[dir]++ });
  const B = (dir: Dir, split: boolean): Step => {
    const mb = bNext[dir]++;
    if (split) pendingW.push({ dir, mb });
    return { op: "B", dir, mb };
  };
  const W = (): Step => {
    const w = pendingW.shift();
    if (w === undefined) throw new Error("eight-phase schedule: W with no split backward pending");
    return { op: "W", ...w };
  };
  const pair = (fDir: Dir, bDir: Dir): Step => {
    const f = fNext[fDir]++;
    const b = bNext[bDir]++;
    return { pair: [{ dir: fDir, mb: f }, { dir: bDir, mb: b }] };
  };
  const edge = half - q - 1;

  for (let i = 0; i < 2 * edge; i++) seq.push(F(near)); // 1
  for (let i = 0; i <= q; i++) seq.push(F(near), F(far)); // 2
  for (let i = 0; i < edge; i++) {
    seq.push(B(far, true)); // 3: B, then its W, then a forward
    seq.push(W(), F(far));
  }
  for (let i = 0; i < steady; i++) {
    if (i === 0 && middle) seq.push(F(near), B(far, false)); // 4
    else seq.push(pair(near, far));
    seq.push(pair(far, near));
  }
  for (let i = 0; i < edge; i++) seq.push(B(far, false), pair(far, near)); // 5
  // 6: 2(q+1) backwards alternating far, near; the second half of them are split.
  for (let i = 0; i < 2 * (q + 1); i++) seq.push(B(i % 2 === 0 ? far : near, i >= q + 1));
  for (let i = 0; i < edge; i++) {
    seq.push(W()); // 7
    seq.push(B(near, true));
  }
  for (let i = 0; i <= q; i++) seq.push(W()); // 8
  return seq;
}

export function checkDualPipeDomain(kind: "dualpipe" | "dualpipev", stages: number, microbatches: number): PipelineFailure | null {
  const name = kind === "dualpipe" ? "DualPipe" : "DualPipeV";
  const bad = checkInteger(stages, 2, "pp-stages", "stages") ?? checkInteger(microbatches, 1, "pp-microbatches", "microbatches");
  if (bad) return bad;
  if (stages % 2 !== 0) {
    const alt = kind === "dualpipe" ? "; DualPipe places one stage per direction on each rank and pairs ranks r and P−1−r" : "; DualPipeV folds 2·D stages onto D devices";
    return fail("pp-odd", `${name} needs an even number of pipeline stages; stages = ${stages}${alt}`, `use stages = ${stages + 1}`);
  }
  const min = kind === "dualpipe" ? 2 * stages : stages;
  if (kind === "dualpipe" && microbatches % 2 !== 0) {
    return fail(
      "pp-odd-microbatches",
      `DualPipe splits the micro-batches evenly between its two directions; microbatches = ${microbatches} is odd`,
      `use microbatches = ${Math.max(min, microbatches + 1)}`,
    );
  }
  if (microbatches < min) {
    const why = kind === "dualpipe" ? `at least 2·stages = ${min}` : `at least 2·devices = stages = ${min}`;
    return fail("pp-few-microbatches", `${name} needs ${why} micro-batches; found ${microbatches}`, `use microbatches = ${min}`);
  }
  return null;
}

export function buildDualPipe(stages: number, microbatches: number): Schedule | PipelineFailure {
  const bad = checkDualPipeDomain("dualpipe", stages, microbatches);
  if (bad) return bad;
  const P = stages;
  const half = P / 2;
  const perDir = microbatches / 2;
  const steps: Step[][] = [];
  for (let rank = 0; rank < P; rank++) {
    const q = Math.min(rank, P - 1 - rank);
    const near: Dir = rank < half ? 0 : 1;
    const far: Dir = near === 0 ? 1 : 0;
    steps.push(eightPhaseSteps({ half, q, near, far, middle: q === half - 1, steady: perDir - P + q + 1 }));
  }
  return {
    kind: "dualpipe",
    stages: P,
    ranks: P,
    microbatches,
    dirs: [0, 1],
    microbatchesPerDir: perDir,
    rankOps: numberSteps(steps),
    stageOf: (rank: number, dir: Dir) => (dir === 0 ? rank : P - 1 - rank),
    prevHop: (rank: number, dir: Dir): Hop | null =>
      dir === 0 ? (rank > 0 ? { rank: rank - 1, dir } : null) : rank < P - 1 ? { rank: rank + 1, dir } : null,
    nextHop: (rank: number, dir: Dir): Hop | null =>
      dir === 0 ? (rank < P - 1 ? { rank: rank + 1, dir } : null) : rank > 0 ? { rank: rank - 1, dir } : null,
  };
}
