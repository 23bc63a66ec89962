/** Builds a kind's per-rank op lists from (stages, micro-batches), or says why it cannot. */

import { buildDualPipe } from "./dualpipe.js";
import { buildDualPipeV } from "./dualpipev.js";
import { build1F1B } from "./one-f-one-b.js";
import { fail, PIPELINE_KINDS } from "./schedule.js";
import type { PipelineFailure, PipelineKind, Schedule } from "./schedule.js";
import { buildZB1P } from "./zb1p.js";

/**
 * Builds the op lists of `kind` for `stages` pipeline stages (PP of the DualPipe table; DualPipeV
 * runs them on stages/2 devices) and `microbatches` micro-batches in the step.
 */
export function buildSchedule(kind: string, stages: number, microbatches: number): Schedule | PipelineFailure {
  switch (kind as PipelineKind) {
    case "1f1b":
      return build1F1B(stages, microbatches);
    case "zb1p":
      return buildZB1P(stages, microbatches);
    case "dualpipe":
      return buildDualPipe(stages, microbatches);
    case "dualpipev":
      return buildDualPipeV(stages, microbatches);
    default:
      return fail("pp-kind", `unknown pipeline schedule '${kind}'; expected one of ${PIPELINE_KINDS.join(", ")}`, `use --kind ${PIPELINE_KINDS.join("|")}`);
  }
}
