/**
 * The shared vocabulary of pipeline schedules: what a per-rank op sequence is, how micro-batches
 * travel between ranks, and the typed errors a schedule builder returns.
 *
 * A schedule is a list of ops per rank, in the order that rank issues them, with no times: times
 * come only from `simulate.ts`, which executes the lists. Each op names a micro-batch `mb` and a
 * direction `dir`:
 * - `F` — the forward of one chunk (the layers one stage holds) for (mb, dir).
 * - `B` — the backward of that chunk. It is the input-gradient half only when the same rank also
 *   lists a `W` for the same (mb, dir); otherwise it is the full backward (input and weight grads).
 * - `W` — the weight-gradient half of a split backward.
 * Two consecutive ops that share an `overlapGroup` (one `F`, one `B`) are an overlapped F&B pair:
 * they run together, as the two halves of one compute slot.
 *
 * Directions. 1F1B and ZB1P use dir 0 only. DualPipe feeds micro-batches from both ends: dir 0
 * enters at rank 0 and leaves at rank P−1, dir 1 enters at rank P−1 and leaves at rank 0 (each rank
 * holds stage r of dir 0 and stage P−1−r of dir 1). DualPipeV folds 2·D stages onto D devices as a
 * V: dir 0 is the down leg (stage r on device r), dir 1 the up leg (stage 2D−1−r on device r); a
 * micro-batch runs dir 0 on devices 0…D−1, turns on device D−1 and runs dir 1 back to device 0.
 */

export type PipelineKind = "1f1b" | "zb1p" | "dualpipe" | "dualpipev";

export const PIPELINE_KINDS: readonly PipelineKind[] = ["1f1b", "zb1p", "dualpipe", "dualpipev"];

export type OpKind = "F" | "B" | "W";

export type Dir = 0 | 1;

/** One op in a rank's sequence (no times). */
export interface ScheduleOp {
  op: OpKind;
  mb: number;
  dir: Dir;
  /** Shared by the two halves of an overlapped F&B pair; null for an op that runs alone. */
  overlapGroup: number | null;
}

/** Where a micro-batch of direction `dir` is on rank `rank`: one hop of its path through the pipeline. */
export interface Hop {
  rank: number;
  dir: Dir;
}

/** A pipeline schedule: its shape and the op sequence of every rank. */
export interface Schedule {
  kind: PipelineKind;
  /** Pipeline stages (model chunks), PP in the DualPipe table. */
  stages: number;
  /** Devices (ranks): PP, or PP/2 for DualPipeV. */
  ranks: number;
  /** Micro-batches in the step, all directions together. */
  microbatches: number;
  /** The directions a micro-batch may take, and how many micro-batches each carries (mb = 0…count−1). */
  dirs: readonly Dir[];
  microbatchesPerDir: number;
  /** Each rank's ops, in issue order. */
  rankOps: ScheduleOp[][];
  /** Stage index held by `rank` for direction `dir` (dirs that rank takes part in). */
  stageOf(rank: number, dir: Dir): number;
  /** The hop that feeds (rank, dir)'s forward, or null at the first stage. */
  prevHop(rank: number, dir: Dir): Hop | null;
  /** The hop that (rank, dir)'s forward output feeds, or null at the last stage (where the loss is). */
  nextHop(rank: number, dir: Dir): Hop | null;
}

/** Codes of the errors the pipeline planner returns (the CLI maps them to coded diagnostics). */
export type PipelineErrorCode =
  | "pp-kind" // unknown schedule kind
  | "pp-stages" // stages not an integer ≥ 1 (≥ 2 for DualPipe and DualPipeV)
  | "pp-odd" // DualPipe/DualPipeV need an even number of stages
  | "pp-microbatches" // micro-batches not a positive integer
  | "pp-few-microbatches" // fewer micro-batches than the schedule needs
  | "pp-odd-microbatches" // DualPipe needs an even number of micro-batches
  | "pp-cost" // a cost not finite, negative, zero (F, B, FB), or W > B; or a malformed --cost
  | "pp-invalid"; // the simulation found the schedule invalid (an internal error: a bug in a builder)

export interface PipelineError {
  code: PipelineErrorCode;
  message: string;
  /** A concrete change that would make the request valid, when there is one. */
  fix?: string;
}

/** What a builder or the command returns when the request is outside the schedule's domain. */
export interface PipelineFailure {
  error: PipelineError;
}

export function fail(code: PipelineErrorCode, message: string, fix?: string): PipelineFailure {
  return { error: fix === undefined ? { code, message } : { code, message, fix } };
}

/** Checks that `value` is an integer ≥ `min`; the error names `what`. */
export function checkInteger(value: number, min: number, code: PipelineErrorCode, what: string): PipelineFailure | null {
  if (!Number.isSafeInteger(value) || value < min) {
    return fail(code, `${what} must be an integer ≥ ${min}; found ${String(value)}`, `use ${what} ≥ ${min}`);
  }
  return null;
}

/** How builders describe a rank: a list of steps, each one op or an overlapped (F, B) pair. */
export type Step =
  | { op: OpKind; dir: Dir; mb: number }
  | { pair: [{ dir: Dir; mb: number }, { dir: Dir; mb: number }] };

/**
 * Turns each rank's steps into ops, numbering the pairs' overlap groups: ids count up from 0 across
 * the whole schedule, rank 0 first, so they are unique and deterministic.
 */
export function numberSteps(perRank: Step[][]): ScheduleOp[][] {
  let group = 0;
  return perRank.map((steps) => {
    const ops: ScheduleOp[] = [];
    for (const s of steps) {
      if ("pair" in s) {
        const [f, b] = s.pair;
        ops.push({ op: "F", mb: f.mb, dir: f.dir, overlapGroup: group });
        ops.push({ op: "B", mb: b.mb, dir: b.dir, overlapGroup: group });
        group++;
      } else {
        ops.push({ op: s.op, mb: s.mb, dir: s.dir, overlapGroup: null });
      }
    }
    return ops;
  });
}
