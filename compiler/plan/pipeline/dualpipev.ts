/**
 * DualPipeV (DualPipe "cut in half"): the P = 2D stages of one pipeline folded onto D devices as a
 * V. Device r holds stage r (the down leg, dir 0) and stage 2D−1−r (the up leg, dir 1); a
 * micro-batch runs the down leg on devices 0…D−1, turns on device D−1 (a local hand-off, no
 * message) and runs the up leg back to device 0, where the loss is. Every micro-batch thus takes
 * both directions, and each device runs DualPipe's eight-phase order with the down leg as `near`,
 * the up leg as `far`, q = r, and the unoverlapped first steady slot on the turning device D−1.
 * Phase 4 runs N − 2D + r + 1 times.
 *
 * Domain (as the reference implementation requires): P even and ≥ 2 (so D ≥ 1), N ≥ 2D = P.
 */

import { checkDualPipeDomain, eightPhaseSteps } from "./dualpipe.js";
import { numberSteps } from "./schedule.js";
import type { Dir, Hop, PipelineFailure, Schedule, Step } from "./schedule.js";

export function buildDualPipeV(stages: number, microbatches: number): Schedule | PipelineFailure {
  const bad = checkDualPipeDomain("dualpipev", stages, microbatches);
  if (bad) return bad;
  const D = stages / 2;
  const steps: Step[][] = [];
  for (let rank = 0; rank < D; rank++) {
    steps.push(
      eightPhaseSteps({ half: D, q: rank, near: 0, far: 1, middle: rank === D - 1, steady: microbatches - 2 * D + rank + 1 }),
    );
  }
  return {
    kind: "dualpipev",
    stages,
    ranks: D,
    microbatches,
    dirs: [0, 1],
    microbatchesPerDir: microbatches,
    rankOps: numberSteps(steps),
    stageOf: (rank: number, dir: Dir) => (dir === 0 ? rank : 2 * D - 1 - rank),
    prevHop: (rank: number, dir: Dir): Hop | null =>
      dir === 0 ? (rank > 0 ? { rank: rank - 1, dir: 0 } : null) : rank < D - 1 ? { rank: rank + 1, dir: 1 } : { rank, dir: 0 },
    nextHop: (rank: number, dir: Dir): Hop | null =>
      dir === 0 ? (rank < D - 1 ? { rank: rank + 1, dir: 0 } : { rank, dir: 1 }) : rank > 0 ? { rank: rank - 1, dir: 1 } : null,
  };
}
