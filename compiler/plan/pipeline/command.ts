/**
 * `dsv3 pipeline --kind K --stages P --microbatches N [--cost F=…,B=…,W=…,FB=…] [--json] [--svg FILE]`
 * as a pure function: build the schedule, execute it (simulate.ts), and render the result as JSON or
 * a text summary, plus an SVG timeline when asked. The caller prints `stdout`, writes `svg` to the
 * file, and maps an `error` to a coded diagnostic.
 */

import { resolveCosts } from "./costs.js";
import type { Costs } from "./costs.js";
import { buildSchedule } from "./build.js";
import type { PipelineError, PipelineKind, Schedule } from "./schedule.js";
import { simulate } from "./simulate.js";
import type { Simulation } from "./simulate.js";
import { tableFormulas } from "./table-formulas.js";
import type { TableFigures } from "./table-formulas.js";
import { opLabel, timelineSvg } from "./timeline-svg.js";

export interface PipelineArgs {
  kind: string;
  stages: number;
  microbatches: number;
  /** Missing entries are derived (see costs.ts); `parseCostOption` reads the CLI's `--cost`. */
  cost?: Partial<Costs>;
  json: boolean;
  /** When set, the SVG timeline is returned in `svg` (the caller writes it to this file). */
  svgFile?: string;
}

export type PipelineCommandResult = { stdout: string; svg?: string } | { error: PipelineError };

export const DEFINITIONS = {
  time: "ops start as soon as their rank is free and their inputs have arrived; communication is free and never blocks",
  B: "full backward chunk (input and weight gradients) unless a W op of the same (mb, dir) follows on that rank; then the input-gradient part, taking cost B - W",
  FB: "an overlapped pair is one F and one B sharing an overlapGroup; both run from start to end, taking cost FB (FB - W if the B is split)",
  bubble: "idle time per device inside the step (makespan - busy time of the device), the largest over devices; idle per device is listed under ranks",
  activationPeak: "live activations in chunks (one stage, one micro-batch): +1 when an F starts, -1 when the backward of that (mb, dir) ends (its W when split, else its B); the largest over devices and time",
  mb: "micro-batches are numbered per direction, 0 .. microbatchesPerDirection-1",
} as const;

/** What `dir` means for each kind. */
export const DIRECTIONS: Readonly<Record<PipelineKind, string>> = {
  "1f1b": "one direction (0): rank 0 holds the first stage",
  zb1p: "one direction (0): rank 0 holds the first stage",
  dualpipe: "0: enters at rank 0 (rank r holds its stage r); 1: enters at rank P-1 (rank r holds its stage P-1-r)",
  dualpipev: "the two legs of the V on P/2 devices: 0 = stages 0..P/2-1 (device r holds stage r), 1 = stages P/2..P-1 (device r holds stage P-1-r); every micro-batch runs both",
};

/** Rounds away floating-point noise (1e-9 of the unit) so outputs read cleanly and stay deterministic. */
function num(x: number): number {
  const r = Math.round(x * 1e9) / 1e9;
  return r === 0 ? 0 : r;
}

export function pipelineCommand(args: PipelineArgs): PipelineCommandResult {
  const costs = resolveCosts(args.cost);
  if ("error" in costs) return costs;
  const schedule = buildSchedule(args.kind, args.stages, args.microbatches);
  if ("error" in schedule) return schedule;
  const result = simulate(schedule, costs);
  if (!result.ok) {
    return {
      error: {
        code: "pp-invalid",
        message: `internal error: the ${schedule.kind} schedule failed its execution check: ${result.failure.problems.slice(0, 8).join("; ")}`,
      },
    };
  }
  const table = tableFormulas(schedule.kind, schedule.stages, costs, schedule.microbatches);
  const stdout = args.json ? pipelineJson(schedule, result.sim, costs, table) : pipelineText(schedule, result.sim, costs, table);
  return args.svgFile === undefined ? { stdout } : { stdout, svg: timelineSvg(schedule, result.sim, costs, table) };
}

/** The JSON document (keys in a fixed order, numbers rounded to 1e-9), newline-terminated. */
export function pipelineJson(schedule: Schedule, sim: Simulation, costs: Costs, table: TableFigures): string {
  const doc = {
    kind: schedule.kind,
    stages: schedule.stages,
    devices: schedule.ranks,
    microbatches: schedule.microbatches,
    microbatchesPerDirection: schedule.microbatchesPerDir,
    directions: schedule.dirs.length,
    cost: { F: num(costs.F), B: num(costs.B), W: num(costs.W), FB: num(costs.FB) },
    ranks: sim.ranks.map((r) => ({
      rank: r.rank,
      stages: schedule.dirs.map((d) => schedule.stageOf(r.rank, d)),
      busy: num(r.busy),
      idle: num(r.idle),
      activationPeak: r.activationPeak,
      ops: r.ops.map((o) => ({ op: o.op, mb: o.mb, dir: o.dir, start: num(o.start), end: num(o.end), overlapGroup: o.overlapGroup })),
    })),
    bubble: num(sim.bubble),
    makespan: num(sim.makespan),
    activationPeak: sim.activationPeak,
    messages: sim.messages,
    table: {
      bubbleFormula: table.bubbleFormula,
      bubble: num(table.bubble),
      activationFormula: table.activationFormula,
      activation: table.activation,
      parameterCopies: table.parameterCopies,
      assumptionsHold: table.assumptionsHold,
      ...(table.why === undefined ? {} : { why: table.why }),
      ...(table.note === undefined ? {} : { note: table.note }),
    },
    definitions: { ...DEFINITIONS, dir: DIRECTIONS[schedule.kind] },
  };
  return JSON.stringify(doc) + "\n";
}

function fmt(x: number): string {
  return String(num(x));
}

/** The text summary: shape, figures against the table, then one line per rank with its op order. */
export function pipelineText(schedule: Schedule, sim: Simulation, costs: Costs, table: TableFigures): string {
  const twoDirs = schedule.dirs.length > 1;
  const lines: string[] = [];
  const perDir = twoDirs && schedule.kind === "dualpipe" ? ` (${schedule.microbatchesPerDir} per direction)` : "";
  lines.push(
    `${schedule.kind}: ${schedule.stages} stages on ${schedule.ranks} devices, ${schedule.microbatches} micro-batches${perDir}; ` +
      `costs F=${fmt(costs.F)} B=${fmt(costs.B)} W=${fmt(costs.W)} F&B=${fmt(costs.FB)}`,
  );
  const agree = num(sim.bubble) === num(table.bubble) ? "equal" : table.why !== undefined ? `differs: ${table.why}` : "differs";
  lines.push(`bubble      ${fmt(sim.bubble)}   table ${table.bubbleFormula} = ${fmt(table.bubble)}   (${agree})`);
  lines.push(
    `activations ${sim.activationPeak}   table ${table.activationFormula} = ${table.activation} chunks per device${table.note === undefined ? "" : ` (${table.note})`}`,
  );
  lines.push(`makespan    ${fmt(sim.makespan)}   messages ${sim.messages}`);
  lines.push(`bubble = ${DEFINITIONS.bubble}.`);
  lines.push(`activations = ${DEFINITIONS.activationPeak}.`);
  lines.push(
    `ops: F forward, B backward (input part when a W of it follows), W weight gradient, (F B) an overlapped pair${twoDirs ? ", ' direction 1" : ""}.`,
  );
  const row = (rank: string, stages: string, busy: string, idle: string, peak: string, ops: string): string =>
    `${rank.padStart(4)}  ${stages.padEnd(6)}${busy.padStart(6)}${idle.padStart(6)}${peak.padStart(6)}  ${ops}`;
  lines.push(row("rank", "stages", "busy", "idle", "peak", "ops"));
  for (const r of sim.ranks) {
    const seq: string[] = [];
    for (let i = 0; i < r.ops.length; i++) {
      const o = r.ops[i]!;
      const next = r.ops[i + 1];
      if (o.overlapGroup !== null && next !== undefined && next.overlapGroup === o.overlapGroup) {
        seq.push(`(${opLabel(o, twoDirs)} ${opLabel(next, twoDirs)})`);
        i++;
      } else {
        seq.push(opLabel(o, twoDirs));
      }
    }
    const stages = schedule.dirs.map((d) => schedule.stageOf(r.rank, d)).join(",");
    lines.push(row(String(r.rank), stages, fmt(r.busy), fmt(r.idle), String(r.activationPeak), seq.join(" ")));
  }
  return lines.join("\n") + "\n";
}
