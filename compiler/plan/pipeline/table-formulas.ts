/**
 * The closed forms of the DualPipe table (DualPipe README; DeepSeek-V3 report Table 2) in the
 * simulation's units — bubble in the unit of the costs, activations in chunks per device — and the
 * cost regime in which each bubble formula is exact for the schedules built here.
 *
 * Where the simulation and a formula agree (established by the tests in tests/pipeline.test.ts):
 * - 1F1B: always, for any costs and any N ≥ 1.
 * - ZB1P: when W ≤ F and W ≤ B − W (each postponed weight gradient fits the gap left by one forward
 *   or one input-gradient backward) and N ≥ PP. Otherwise the postponed Ws cannot fill the gaps and
 *   the measured bubble is (PP−1)(F + B − W − min(W, F, B − W)).
 * - DualPipe, DualPipeV: when F = B − W (a forward as long as an input-gradient backward, the
 *   proportions of the report's figure), W ≤ F, and B ≤ F&B ≤ F + B. With W ≤ min(F, B − W) and
 *   max(F, B) ≤ F&B ≤ F + B but F ≠ B − W, the warm-up and drain phases no longer tile the way the
 *   formula counts them and the measured bubble is the formula + (PP/2−1)·max(0, F − (B − W))
 *   − min(F, (PP/2−1)·max(0, (B − W) − F)).
 * - Activations: the peak is PP (1F1B, ZB1P) and PP+1 (DualPipe, DualPipeV) for every cost, when
 *   N ≥ PP; with N < PP (1F1B, ZB1P only) it is N, which `note` says.
 */

import type { Costs } from "./costs.js";
import type { PipelineKind } from "./schedule.js";

export interface TableFigures {
  /** The formula as printed in the table. */
  bubbleFormula: string;
  bubble: number;
  activationFormula: string;
  activation: number;
  devices: number;
  parameterCopies: number;
  /**
   * Whether the costs and micro-batches lie in the regime where the bubble formula is exact (see the
   * module comment); when not, `why` says which assumption fails (the figures may still coincide).
   */
  assumptionsHold: boolean;
  why?: string;
  /** With fewer micro-batches than stages (1F1B, ZB1P) at most N activations are ever live. */
  note?: string;
}

export function tableFormulas(kind: PipelineKind, stages: number, c: Costs, microbatches?: number): TableFigures {
  const PP = stages;
  const Bi = c.B - c.W;
  const fewer = microbatches !== undefined && microbatches < PP;
  const note = fewer ? { note: `N = ${microbatches} < PP: at most ${microbatches} chunks of activations are ever live` } : {};
  switch (kind) {
    case "1f1b":
      return {
        bubbleFormula: "(PP-1)(F+B)",
        bubble: (PP - 1) * (c.F + c.B),
        activationFormula: "PP",
        activation: PP,
        devices: PP,
        parameterCopies: 1,
        assumptionsHold: true,
        ...note,
      };
    case "zb1p": {
      const why = fewer
        ? `fewer micro-batches (${microbatches}) than stages (${PP})`
        : c.W > c.F || c.W > Bi
          ? "W exceeds F or B−W, so a postponed weight gradient does not fit the gap it is meant to fill"
          : undefined;
      return {
        bubbleFormula: "(PP-1)(F+B-2W)",
        bubble: (PP - 1) * (c.F + c.B - 2 * c.W),
        activationFormula: "PP",
        activation: PP,
        devices: PP,
        parameterCopies: 1,
        ...(why === undefined ? { assumptionsHold: true } : { assumptionsHold: false, why }),
        ...note,
      };
    }
    case "dualpipe":
    case "dualpipev": {
      const why =
        c.F !== Bi
          ? "F ≠ B−W: the formula counts warm-up and drain as if a forward were as long as an input-gradient backward"
          : c.W > c.F
            ? "W > F: a weight gradient does not fit the gap it is meant to fill"
            : c.FB < c.B || c.FB > c.F + c.B
              ? "F&B outside [B, F+B]"
              : undefined;
      return {
        bubbleFormula: "(PP/2-1)(F&B+B-3W)",
        bubble: (PP / 2 - 1) * (c.FB + c.B - 3 * c.W),
        activationFormula: "PP+1",
        activation: PP + 1,
        devices: kind === "dualpipe" ? PP : PP / 2,
        parameterCopies: 2,
        ...(why === undefined ? { assumptionsHold: true } : { assumptionsHold: false, why }),
      };
    }
  }
}
