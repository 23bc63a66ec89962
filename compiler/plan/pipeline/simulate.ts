/**
 * Validation by execution: runs every rank's op list as a discrete-event simulation with given
 * durations, and measures the makespan, each rank's idle time and the peak of live activations.
 *
 * Execution model
 * - Each rank issues its ops strictly in list order, one compute slot at a time; the two halves of
 *   an overlapped F&B pair occupy one slot together (both start when both are ready, both end
 *   together). A rank starts its next slot at the first moment it is free and every input of the
 *   slot has arrived.
 * - Inputs. `F` of (mb, dir) needs the forward output of the previous hop of (mb, dir) (none at the
 *   first stage). `B` needs this rank's own `F` of (mb, dir) and the input gradient from the next hop
 *   (none at the last stage, where the loss is). `W` needs this rank's `B` of (mb, dir).
 * - Communication costs nothing and never blocks the sender: an output crossing ranks is a message
 *   posted when its op ends and received when the consumer starts (unbounded buffering, zero
 *   latency). A hop to the same rank (DualPipeV's turn at the bottom of the V) is a local hand-off.
 *   At the end every message must have been received exactly once.
 * - Durations (`Costs`): `F` one forward chunk; `B` one full backward chunk (input + weight
 *   gradients); `W` its weight-gradient part; `FB` an overlapped forward-and-backward pair. A `B`
 *   whose (mb, dir) has a separate `W` on that rank is the input-gradient part alone and takes
 *   B − W; an overlapped pair whose `B` is split that way takes FB − W.
 * - Deadlock: when no slot is running and some rank still has ops, every such rank is reported with
 *   the op it is blocked on and what that op is waiting for.
 *
 * Figures
 * - `makespan`: the end of the last op (every rank starts the step at time 0).
 * - Per rank `busy` (the sum of its slot durations, a pair counted once) and `idle` = makespan − busy:
 *   the time the device computes nothing inside the step.
 * - `bubble` = the largest idle time over ranks. The DualPipe table's "bubble" is this idle time per
 *   device; where ranks differ (DualPipe's middle ranks, small N), the worst device is what bounds
 *   the step, so that is the figure reported (each rank's idle time is reported too).
 * - Activations are counted in chunks (one stage's activations of one micro-batch, the unit of the
 *   table's "PP" and "PP+1"): +1 when an `F` starts, −1 when the backward of that (mb, dir) on that
 *   rank ends — its `W` when the backward is split (the weight gradient still reads the stored
 *   inputs), else its `B`. At equal times releases come before allocations. `activationPeak` is the
 *   maximum over ranks and time.
 */

import type { Costs } from "./costs.js";
import type { Dir, OpKind, Schedule, ScheduleOp } from "./schedule.js";

export interface TimedOp extends ScheduleOp {
  start: number;
  end: number;
}

export interface RankTimeline {
  rank: number;
  ops: TimedOp[];
  busy: number;
  idle: number;
  activationPeak: number;
}

export interface Simulation {
  ranks: RankTimeline[];
  makespan: number;
  bubble: number;
  activationPeak: number;
  /** Messages sent between ranks (each received exactly once). */
  messages: number;
}

export interface BlockedRank {
  rank: number;
  op: ScheduleOp;
  waitingFor: string;
}

export interface SimulationFailure {
  problems: string[];
  /** Present when the schedule deadlocked. */
  blocked?: BlockedRank[];
}

export type SimulationResult = { ok: true; sim: Simulation } | { ok: false; failure: SimulationFailure };

const key = (op: OpKind, dir: Dir, mb: number): string => `${op}/${dir}/${mb}`;

export function describeOp(op: { op: OpKind; dir: Dir; mb: number }): string {
  return `${op.op} mb ${op.mb} dir ${op.dir}`;
}

/**
 * Static checks that need no times: each rank lists each F and B of every (mb, dir) it takes part in
 * exactly once, at most one W per (mb, dir), nothing else, and every overlap group is one F followed
 * by one B, adjacent, used once.
 */
export function checkOpLists(s: Schedule): string[] {
  const problems: string[] = [];
  if (s.rankOps.length !== s.ranks) problems.push(`${s.rankOps.length} op lists for ${s.ranks} ranks`);
  const groupsSeen = new Set<number>();
  s.rankOps.forEach((ops, rank) => {
    const count = new Map<string, number>();
    for (const op of ops) count.set(key(op.op, op.dir, op.mb), (count.get(key(op.op, op.dir, op.mb)) ?? 0) + 1);
    for (const dir of s.dirs) {
      for (let mb = 0; mb < s.microbatchesPerDir; mb++) {
        for (const kind of ["F", "B"] as const) {
          const n = count.get(key(kind, dir, mb)) ?? 0;
          if (n !== 1) problems.push(`rank ${rank}: ${describeOp({ op: kind, dir, mb })} listed ${n} times`);
          count.delete(key(kind, dir, mb));
        }
        const w = count.get(key("W", dir, mb)) ?? 0;
        if (w > 1) problems.push(`rank ${rank}: ${describeOp({ op: "W", dir, mb })} listed ${w} times`);
        count.delete(key("W", dir, mb));
      }
    }
    for (const k of count.keys()) problems.push(`rank ${rank}: unexpected op ${k}`);
    for (let i = 0; i < ops.length; i++) {
      const g = ops[i]!.overlapGroup;
      if (g === null) continue;
      const next = ops[i + 1];
      if (groupsSeen.has(g) || ops[i]!.op !== "F" || next === undefined || next.overlapGroup !== g || next.op !== "B") {
        problems.push(`rank ${rank}: overlap group ${g} is not one F followed by one B`);
      }
      groupsSeen.add(g);
      i++;
    }
  });
  return problems;
}

/** One compute slot: an op alone or an overlapped F&B pair. */
interface Slot {
  ops: ScheduleOp[];
  /** The ops' global numbers (filled in by `simulate`). */
  gids: number[];
  duration: number;
}

function slotsOf(ops: ScheduleOp[], costs: Costs): Slot[] {
  const split = new Set(ops.filter((o) => o.op === "W").map((o) => `${o.dir}/${o.mb}`));
  const isSplit = (o: ScheduleOp): boolean => split.has(`${o.dir}/${o.mb}`);
  const slots: Slot[] = [];
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    const next = ops[i + 1];
    if (op.overlapGroup !== null && next !== undefined && next.overlapGroup === op.overlapGroup) {
      slots.push({ ops: [op, next], gids: [], duration: costs.FB - (isSplit(next) ? costs.W : 0) });
      i++;
      continue;
    }
    const d = op.op === "F" ? costs.F : op.op === "W" ? costs.W : costs.B - (isSplit(op) ? costs.W : 0);
    slots.push({ ops: [op], gids: [], duration: d });
  }
  return slots;
}

/** An input an op waits for: the end of another op, on this rank (local) or sent by another rank. */
interface Need {
  producer: number;
  message: boolean;
}

/** Runs the schedule; see the module comment for the model. */
export function simulate(s: Schedule, costs: Costs): SimulationResult {
  const problems = checkOpLists(s);
  if (problems.length > 0) return { ok: false, failure: { problems } };

  const P = s.ranks;
  const slots = s.rankOps.map((ops) => slotsOf(ops, costs));

  // Number every op, and resolve each op's inputs to the op that produces them.
  const all: { rank: number; op: ScheduleOp }[] = [];
  const index = new Map<string, number>();
  slots.forEach((rankSlots, rank) => {
    for (const slot of rankSlots) {
      for (const op of slot.ops) {
        slot.gids.push(all.length);
        index.set(`${rank}/${key(op.op, op.dir, op.mb)}`, all.length);
        all.push({ rank, op });
      }
    }
  });
  const needs: Need[][] = [];
  const sends = new Uint8Array(all.length);
  for (const { rank, op } of all) {
    const list: Need[] = [];
    const need = (at: number, kind: OpKind, dir: Dir): void => {
      const producer = index.get(`${at}/${key(kind, dir, op.mb)}`);
      if (producer === undefined) problems.push(`rank ${rank}: ${describeOp(op)} needs ${describeOp({ op: kind, dir, mb: op.mb })} on rank ${at}, which no rank lists`);
      else list.push({ producer, message: at !== rank });
    };
    if (op.op === "F") {
      const p = s.prevHop(rank, op.dir);
      if (p !== null) need(p.rank, "F", p.dir);
      const n = s.nextHop(rank, op.dir);
      if (n !== null && n.rank !== rank) sends[needs.length] = 1;
    } else if (op.op === "B") {
      need(rank, "F", op.dir);
      const n = s.nextHop(rank, op.dir);
      if (n !== null) need(n.rank, "B", n.dir);
      const p = s.prevHop(rank, op.dir);
      if (p !== null && p.rank !== rank) sends[needs.length] = 1;
    } else {
      need(rank, "B", op.dir);
    }
    needs.push(list);
  }
  if (problems.length > 0) return { ok: false, failure: { problems } };

  const doneAt = new Float64Array(all.length).fill(Number.NaN);
  const sent = new Uint8Array(all.length);
  const received = new Uint8Array(all.length);
  const next = new Array<number>(P).fill(0);
  const runningUntil = new Array<number>(P).fill(Number.NaN);
  const timed: TimedOp[][] = s.rankOps.map(() => []);
  let messages = 0;

  /** The first input op `gid` still waits for, or null when it is ready. */
  const missing = (gid: number): Need | null => {
    for (const n of needs[gid]!) {
      const ready = n.message ? sent[n.producer] === 1 && received[n.producer] === 0 : !Number.isNaN(doneAt[n.producer]!);
      if (!ready) return n;
    }
    return null;
  };
  const describeNeed = (n: Need): string => {
    const { rank, op } = all[n.producer]!;
    if (!n.message) return `its own ${describeOp(op)}`;
    return `${op.op === "F" ? "activation" : "gradient"} of mb ${op.mb} dir ${op.dir} from rank ${rank}`;
  };

  const finish = (rank: number): void => {
    const slot = slots[rank]![next[rank]!]!;
    const end = runningUntil[rank]!;
    for (const gid of slot.gids) {
      doneAt[gid] = end;
      if (sends[gid] === 1) {
        sent[gid] = 1;
        messages++;
      }
    }
    next[rank]!++;
    runningUntil[rank] = Number.NaN;
  };

  let now = 0;
  for (;;) {
    // Start every slot that can start now. Only a zero-length slot can enable another at the same
    // instant, so the scan repeats only after one.
    let again = true;
    while (again) {
      again = false;
      for (let rank = 0; rank < P; rank++) {
        if (!Number.isNaN(runningUntil[rank]!)) continue;
        const slot = slots[rank]![next[rank]!];
        if (slot === undefined || missing(slot.gids[0]!) !== null || (slot.gids.length > 1 && missing(slot.gids[1]!) !== null)) continue;
        for (let i = 0; i < slot.ops.length; i++) {
          for (const n of needs[slot.gids[i]!]!) if (n.message) received[n.producer] = 1;
          timed[rank]!.push({ ...slot.ops[i]!, start: now, end: now + slot.duration });
        }
        runningUntil[rank] = now + slot.duration;
        if (slot.duration === 0) {
          finish(rank);
          again = true;
        }
      }
    }
    let soonest = Number.POSITIVE_INFINITY;
    for (const t of runningUntil) if (t < soonest) soonest = t;
    if (soonest === Number.POSITIVE_INFINITY) break;
    now = soonest;
    for (let rank = 0; rank < P; rank++) if (runningUntil[rank] === now) finish(rank);
  }

  const blocked: BlockedRank[] = [];
  for (let rank = 0; rank < P; rank++) {
    const slot = slots[rank]![next[rank]!];
    if (slot === undefined) continue;
    slot.ops.forEach((op, i) => {
      const n = missing(slot.gids[i]!);
      if (n !== null) blocked.push({ rank, op, waitingFor: describeNeed(n) });
    });
  }
  if (blocked.length > 0) {
    const lines = blocked.map((b) => `rank ${b.rank} blocked at ${describeOp(b.op)}, waiting for ${b.waitingFor}`);
    return { ok: false, failure: { problems: ["deadlock", ...lines], blocked } };
  }
  const unmatched: string[] = [];
  for (let gid = 0; gid < all.length; gid++) {
    if (sent[gid] !== received[gid]) unmatched.push(`rank ${all[gid]!.rank}: the output of ${describeOp(all[gid]!.op)} was sent but never received`);
  }
  if (unmatched.length > 0) return { ok: false, failure: { problems: unmatched } };

  const makespan = Math.max(0, ...timed.flat().map((o) => o.end));
  const ranks: RankTimeline[] = timed.map((ops, rank) => {
    const busy = slots[rank]!.reduce((sum, slot) => sum + slot.duration, 0);
    return { rank, ops, busy, idle: makespan - busy, activationPeak: activationPeakOf(ops) };
  });
  return {
    ok: true,
    sim: {
      ranks,
      makespan,
      bubble: Math.max(...ranks.map((r) => r.idle)),
      activationPeak: Math.max(...ranks.map((r) => r.activationPeak)),
      messages,
    },
  };
}

/** Peak live activations on one rank, in chunks (see the module comment). */
export function activationPeakOf(ops: TimedOp[]): number {
  const split = new Set(ops.filter((o) => o.op === "W").map((o) => `${o.dir}/${o.mb}`));
  const events: [number, number][] = [];
  for (const o of ops) {
    if (o.op === "F") events.push([o.start, +1]);
    else if (o.op === "W" || !split.has(`${o.dir}/${o.mb}`)) events.push([o.end, -1]);
  }
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let live = 0;
  let peak = 0;
  for (const [, d] of events) {
    live += d;
    peak = Math.max(peak, live);
  }
  return peak;
}
