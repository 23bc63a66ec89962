/**
 * ZB1P (ZB-H1 of the zero-bubble pipeline paper): 1F1B's order with each backward split into the
 * input-gradient `B`, which stays on the critical path, and the weight-gradient `W`, which a rank
 * may postpone to fill the idle slots that 1F1B leaves at the end of the step.
 *
 * Rank r issues the same forwards and `B`s as 1F1B (warm-up of min(P−1−r, N) forwards, then one F
 * and one B, then the remaining Bs) and keeps up to r weight gradients pending: after each `B` it
 * runs the oldest pending `W` while more than r are pending, and runs the rest at the end. Rank r
 * thus holds at most (P−r) + r = P micro-batches' activations, as 1F1B's rank 0 does.
 */

import { checkLinearDomain, linearSchedule } from "./one-f-one-b.js";
import type { Dir, PipelineFailure, Schedule, Step } from "./schedule.js";

export function buildZB1P(stages: number, microbatches: number): Schedule | PipelineFailure {
  const bad = checkLinearDomain(stages, microbatches);
  if (bad) return bad;
  const dir: Dir = 0;
  const steps: Step[][] = [];
  for (let rank = 0; rank < stages; rank++) {
    const warmup = Math.min(stages - 1 - rank, microbatches);
    const defer = rank;
    const seq: Step[] = [];
    let f = 0;
    let b = 0;
    let w = 0;
    const backward = (): void => {
      seq.push({ op: "B", dir, mb: b++ });
      while (b - w > defer) seq.push({ op: "W", dir, mb: w++ });
    };
    while (f < warmup) seq.push({ op: "F", dir, mb: f++ });
    while (f < microbatches) {
      seq.push({ op: "F", dir, mb: f++ });
      backward();
    }
    while (b < microbatches) backward();
    while (w < microbatches) seq.push({ op: "W", dir, mb: w++ });
    steps.push(seq);
  }
  return linearSchedule("zb1p", stages, microbatches, steps);
}
