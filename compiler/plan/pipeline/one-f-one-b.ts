/**
 * 1F1B (one forward, one backward): P ranks in a line, one stage each, one direction.
 *
 * Rank r first runs up to P−1−r warm-up forwards, then alternates one forward with one backward
 * (oldest micro-batch first) until every forward is issued, then drains the remaining backwards.
 * Backwards are whole (input and weight gradients together). Valid for any P ≥ 1 and N ≥ 1; with
 * N < P the warm-up is cut to N forwards.
 */

import { checkInteger, numberSteps } from "./schedule.js";
import type { Dir, Hop, PipelineFailure, Schedule, Step } from "./schedule.js";

/** The topology shared by 1F1B and ZB1P: stage r on rank r, data flowing from rank 0 to rank P−1. */
export function linearSchedule(kind: "1f1b" | "zb1p", stages: number, microbatches: number, steps: Step[][]): Schedule {
  return {
    kind,
    stages,
    ranks: stages,
    microbatches,
    dirs: [0],
    microbatchesPerDir: microbatches,
    rankOps: numberSteps(steps),
    stageOf: (rank: number) => rank,
    prevHop: (rank: number): Hop | null => (rank > 0 ? { rank: rank - 1, dir: 0 } : null),
    nextHop: (rank: number): Hop | null => (rank < stages - 1 ? { rank: rank + 1, dir: 0 } : null),
  };
}

/** Checks the shared domain of 1F1B and ZB1P: P ≥ 1, N ≥ 1. */
export function checkLinearDomain(stages: number, microbatches: number): PipelineFailure | null {
  return checkInteger(stages, 1, "pp-stages", "stages") ?? checkInteger(microbatches, 1, "pp-microbatches", "microbatches");
}

export function build1F1B(stages: number, microbatches: number): Schedule | PipelineFailure {
  const bad = checkLinearDomain(stages, microbatches);
  if (bad) return bad;
  const dir: Dir = 0;
  const steps: Step[][] = [];
  for (let rank = 0; rank < stages; rank++) {
    const warmup = Math.min(stages - 1 - rank, microbatches);
    const seq: Step[] = [];
    let f = 0;
    let b = 0;
    while (f < warmup) seq.push({ op: "F", dir, mb: f++ });
    while (f < microbatches) {
      seq.push({ op: "F", dir, mb: f++ });
      seq.push({ op: "B", dir, mb: b++ });
    }
    while (b < microbatches) seq.push({ op: "B", dir, mb: b++ });
    steps.push(seq);
  }
  return linearSchedule("1f1b", stages, microbatches, steps);
}
