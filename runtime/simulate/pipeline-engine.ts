/**
 * Executes the Plan's training programs (one per pipeline rank) as a discrete-event simulation.
 *
 * The execution model is the planner's (compiler/plan/pipeline/simulate.ts), so the two agree
 * exactly when durations are fixed and transfers are free (tests/simulate.test.ts checks it):
 * - each rank issues its program's ops strictly in order, one compute slot at a time; the two halves
 *   of an overlapped F&B pair (same `overlapGroup`) form one slot;
 * - F of (mb, dir) at stage s needs the F of the same micro-batch at stage s − 1 (DualPipeV's turn
 *   continues a micro-batch in the other direction); B needs its own F and the B at stage s + 1; W
 *   needs its own B;
 * - an output crossing ranks arrives `delay` seconds after the producing slot ends (0 reproduces the
 *   planner); a hop on the same rank is a local hand-off.
 * What differs from the planner is only where durations come from: a callback per slot (the kernel
 * and link models, in training.ts), and the message delays.
 *
 * The dependency structure is read from the programs (stage numbers and micro-batches), not from
 * the schedule builders: the Plan is the one source of truth.
 */

import type { TrainingOp, TrainingProgram } from "../../compiler/plan/plan.js";
import { EventQueue } from "./event-queue.js";

/** One compute slot of a rank: one op, or the two ops of an overlapped pair. */
export interface Slot {
  rank: number;
  /** Indices into the rank's program ops. */
  ops: number[];
  /** Whether each op's backward is split (a W follows for the same (mb, dir) on this rank). */
  split: boolean[];
}

export interface TimedSlot extends Slot {
  start: number;
  end: number;
}

export interface PipelineRun {
  slots: TimedSlot[][];
  makespan: number;
  /** Per rank: the sum of slot durations, and makespan − that. */
  busy: number[];
  idle: number[];
}

export type PipelineRunResult = { ok: true; run: PipelineRun } | { ok: false; problem: string };

/** The slots of one program, in issue order. */
export function programSlots(program: TrainingProgram, rank: number): Slot[] {
  const split = new Set(program.ops.filter((o) => o.op === "W").map((o) => `${o.dir}/${o.mb}`));
  const isSplit = (o: TrainingOp): boolean => o.op === "B" && split.has(`${o.dir}/${o.mb}`);
  const slots: Slot[] = [];
  for (let i = 0; i < program.ops.length; i++) {
    const op = program.ops[i]!;
    const next = program.ops[i + 1];
    if (op.overlapGroup !== null && next !== undefined && next.overlapGroup === op.overlapGroup) {
      slots.push({ rank, ops: [i, i + 1], split: [false, isSplit(next)] });
      i++;
    } else {
      slots.push({ rank, ops: [i], split: [isSplit(op)] });
    }
  }
  return slots;
}

export interface PipelineEngineInput {
  programs: readonly TrainingProgram[];
  /** Seconds (or any unit) of a slot. */
  duration: (slot: Slot) => number;
  /** Delay of the message an op sends to another rank (its `send`); 0 when free. */
  delay: (op: TrainingOp, fromRank: number) => number;
}

export function runPipeline(input: PipelineEngineInput): PipelineRunResult {
  const { programs } = input;
  const P = programs.length;
  const slots = programs.map((p, r) => programSlots(p, r));
  // Global op numbering and lookup by (kind, stage, mb, dir).
  const base: number[] = [];
  let total = 0;
  for (const p of programs) {
    base.push(total);
    total += p.ops.length;
  }
  const index = new Map<string, number>();
  const rankOf = new Int32Array(total);
  programs.forEach((p, r) => {
    p.ops.forEach((o, i) => {
      index.set(`${o.op}/${o.stage}/${o.mb}/${o.dir}`, base[r]! + i);
      rankOf[base[r]! + i] = r;
    });
  });
  const find = (kind: string, stage: number, mb: number, dir: number): number | undefined =>
    index.get(`${kind}/${stage}/${mb}/${dir}`) ?? index.get(`${kind}/${stage}/${mb}/${1 - dir}`);
  // needs[gid]: producers whose output gid waits for.
  const needs: number[][] = new Array(total);
  programs.forEach((p, r) => {
    p.ops.forEach((o, i) => {
      const list: number[] = [];
      if (o.op === "F") {
        if (o.stage > 0) {
          const prev = find("F", o.stage - 1, o.mb, o.dir);
          if (prev !== undefined) list.push(prev);
        }
      } else if (o.op === "B") {
        const own = index.get(`F/${o.stage}/${o.mb}/${o.dir}`);
        if (own !== undefined) list.push(own);
        const next = find("B", o.stage + 1, o.mb, o.dir);
        if (next !== undefined) list.push(next);
      } else {
        const own = index.get(`B/${o.stage}/${o.mb}/${o.dir}`);
        if (own !== undefined) list.push(own);
      }
      needs[base[r]! + i] = list;
    });
  });

  // availableAt[producer] on rank r: when its output is usable there (NaN: not yet known).
  const doneAt = new Float64Array(total).fill(Number.NaN);
  const arriveAt = new Float64Array(total).fill(Number.NaN);
  const next = new Int32Array(P);
  const running = new Uint8Array(P);
  const timed: TimedSlot[][] = programs.map(() => []);
  const queue = new EventQueue();
  // Payload: r ≥ 0 a slot of rank r ends; −(gid + 1) the message of op gid arrives.
  const readyAt = (gid: number, consumerRank: number): number => {
    const t = rankOf[gid] === consumerRank ? doneAt[gid]! : arriveAt[gid]!;
    return t;
  };
  const tryStart = (r: number, now: number): void => {
    if (running[r] === 1) return;
    const slot = slots[r]![next[r]!];
    if (slot === undefined) return;
    for (const i of slot.ops) {
      for (const n of needs[base[r]! + i]!) {
        const t = readyAt(n, r);
        if (Number.isNaN(t) || t > now) return;
      }
    }
    const d = input.duration(slot);
    running[r] = 1;
    timed[r]!.push({ ...slot, start: now, end: now + d });
    queue.push(now + d, r);
  };

  let now = 0;
  for (let r = 0; r < P; r++) tryStart(r, 0);
  while (queue.length > 0) {
    now = queue.peekTime();
    const touched = new Set<number>();
    while (queue.length > 0 && queue.peekTime() === now) {
      const ev = queue.pop();
      if (ev >= 0) {
        const r = ev;
        const slot = slots[r]![next[r]!]!;
        for (const i of slot.ops) {
          const gid = base[r]! + i;
          doneAt[gid] = now;
          const op = programs[r]!.ops[i]!;
          if (op.send !== null) {
            const d = input.delay(op, r);
            arriveAt[gid] = now + d;
            if (d > 0) queue.push(now + d, -(gid + 1));
            else touched.add(op.send.peer);
          }
        }
        next[r]!++;
        running[r] = 0;
        touched.add(r);
      } else {
        const gid = -ev - 1;
        const op = programs[rankOf[gid]!]!.ops[gid - base[rankOf[gid]!]!]!;
        touched.add(op.send!.peer);
      }
    }
    // A zero-length slot can enable another at the same instant: repeat until nothing starts.
    for (const r of [...touched].sort((a, b) => a - b)) tryStart(r, now);
    // Ranks idle at `now` that were not touched cannot have become ready (nothing they need changed).
  }
  for (let r = 0; r < P; r++) {
    if (next[r]! < slots[r]!.length) {
      const slot = slots[r]![next[r]!]!;
      const op = programs[r]!.ops[slot.ops[0]!]!;
      return { ok: false, problem: `pipeline rank ${r} blocked at ${op.op} mb ${op.mb} dir ${op.dir} (stage ${op.stage})` };
    }
  }
  let makespan = 0;
  for (const rank of timed) for (const s of rank) if (s.end > makespan) makespan = s.end;
  const busy = timed.map((rank) => rank.reduce((a, s) => a + (s.end - s.start), 0));
  return { ok: true, run: { slots: timed, makespan, busy, idle: busy.map((b) => makespan - b) } };
}
