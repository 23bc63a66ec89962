/**
 * Pipeline schedules as explicit per-rank op sequences (1F1B, ZB1P, DualPipe, DualPipeV), validated
 * by execution: build a kind's op lists, simulate them with given durations, render them.
 */

export * from "./schedule.js";
export { buildSchedule } from "./build.js";
export { build1F1B } from "./one-f-one-b.js";
export { buildZB1P } from "./zb1p.js";
export { buildDualPipe, eightPhaseSteps } from "./dualpipe.js";
export { buildDualPipeV } from "./dualpipev.js";
export { simulate, checkOpLists, activationPeakOf, describeOp } from "./simulate.js";
export type { TimedOp, RankTimeline, Simulation, SimulationResult, SimulationFailure, BlockedRank } from "./simulate.js";
export { tableFormulas } from "./table-formulas.js";
export type { TableFigures } from "./table-formulas.js";
export { DEFAULT_COSTS, resolveCosts, parseCostOption } from "./costs.js";
export type { Costs } from "./costs.js";
export { pipelineCommand, pipelineJson, pipelineText, DEFINITIONS, DIRECTIONS } from "./command.js";
export type { PipelineArgs, PipelineCommandResult } from "./command.js";
export { timelineSvg, opColour, opLabel } from "./timeline-svg.js";
