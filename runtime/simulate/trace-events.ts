/**
 * The simulated step as Chrome trace-event JSON (the "JSON Object Format" that chrome://tracing and
 * the Perfetto UI load): complete events (`ph: "X"`, times in µs) and metadata events naming the
 * processes and threads.
 *
 * Layout. Training: one process per pipeline rank — the simulation's unit under the symmetry
 * compression; its name gives the GPUs it stands for — with threads for the pipeline ops (F, B, W,
 * F&B slots), the compute stream (attention, experts, … pieces), the communication stream
 * (dispatch, combine), the pipeline p2p link, and the step's tail (reduce-scatter, optimizer,
 * all-gather). Serving: one process for the one simulated GPU, a thread per stream.
 *
 * Deterministic: events in a fixed order, times rounded to the nanosecond, no clock or path.
 */

import type { TrainingOp } from "../../compiler/plan/plan.js";
import type { SimulationRun } from "./simulate-plan.js";

interface TraceEvent {
  name: string;
  cat?: string;
  ph: "X" | "M";
  pid: number;
  tid: number;
  ts?: number;
  dur?: number;
  args?: Record<string, string | number>;
}

const us = (s: number): number => Math.round(s * 1e9) / 1e3;

const THREADS = ["pipeline ops", "compute stream", "communication stream (all-to-all)", "p2p link", "step tail (DP, optimizer)"] as const;

function opName(op: TrainingOp): string {
  return `${op.op}${op.mb}${op.dir === 1 ? "'" : ""}`;
}

export function traceEvents(run: SimulationRun): { traceEvents: TraceEvent[]; displayTimeUnit: "ms"; otherData: Record<string, string> } {
  const events: TraceEvent[] = [];
  const meta = (pid: number, tid: number | null, name: string, sort: number): void => {
    if (tid === null) {
      events.push({ name: "process_name", ph: "M", pid, tid: 0, args: { name } });
      events.push({ name: "process_sort_index", ph: "M", pid, tid: 0, args: { sort_index: sort } });
    } else {
      events.push({ name: "thread_name", ph: "M", pid, tid, args: { name } });
      events.push({ name: "thread_sort_index", ph: "M", pid, tid, args: { sort_index: sort } });
    }
  };
  const x = (pid: number, tid: number, name: string, cat: string, start: number, end: number, args?: Record<string, string | number>): void => {
    events.push({ name, cat, ph: "X", pid, tid, ts: us(start), dur: us(end - start), ...(args ? { args } : {}) });
  };
  if (run.kind === "training") {
    const { result, timeline } = run;
    const perRank = result.gpus / result.pipelineRanks;
    timeline.run.slots.forEach((slots, r) => {
      const pid = r + 1;
      meta(pid, null, `pipeline rank ${r}: GPUs ${r * perRank}–${(r + 1) * perRank - 1} (${perRank} GPUs, one simulated program)`, r);
      THREADS.forEach((t, i) => meta(pid, i + 1, t, i));
      const program = timeline.programs[r]!;
      slots.forEach((slot, k) => {
        const ops = slot.ops.map((i) => program.ops[i]!);
        const name = ops.length > 1 ? `${opName(ops[0]!)}&${opName(ops[1]!)}` : opName(ops[0]!);
        x(pid, 1, name, ops.length > 1 ? "F&B" : ops[0]!.op, slot.start, slot.end, { stages: ops.map((o) => o.stage).join(","), microbatches: ops.map((o) => `${o.mb}/${o.dir}`).join(",") });
        const inner = timeline.inner[r]![k]!;
        const chains = timeline.chains[r]![k]!;
        for (const p of inner.placed) {
          const piece = chains[p.chain]![p.piece]!;
          if (p.end <= p.start) continue;
          x(pid, piece.stream === 0 ? 2 : 3, `${opName(ops[p.chain]!)} ${piece.name}`, piece.stream === 0 ? "compute" : "all-to-all", slot.start + p.start, slot.start + p.end);
        }
      });
      for (const m of timeline.p2p) if (m.rank === r && m.end > m.start) x(pid, 4, `${m.kind} → rank ${m.peer}`, "p2p", m.start, m.end);
      const tail = timeline.tails[r]!;
      let t = tail.start;
      if (tail.reduceScatter > 0) x(pid, 5, "gradient reduce-scatter", "data-parallel", t, (t += tail.reduceScatter));
      const optimizerStart = result.stepSeconds - timeline.tails.reduce((a, b) => Math.max(a, b.optimizer + b.allGather), 0);
      t = Math.max(t, optimizerStart);
      if (tail.optimizer > 0) x(pid, 5, "optimizer step", "optimizer", t, (t += tail.optimizer));
      if (tail.allGather > 0) x(pid, 5, "parameter all-gather", "data-parallel", t, t + tail.allGather);
    });
  } else {
    const { result, step } = run;
    meta(1, null, `serving GPU (one simulated program for all ${result.gpus} GPUs of '${result.schedule}')`, 0);
    meta(1, 1, "compute stream", 0);
    meta(1, 2, "communication stream (all-to-all)", 1);
    for (const o of step.ops) {
      if (o.end <= o.start) continue;
      const name = `${o.op.op}${o.op.layer === null ? "" : ` ${o.op.layer}`} mb${o.op.mb}`;
      x(1, o.op.stream === "compute" ? 1 : 2, name, o.op.op, o.start, o.end);
    }
  }
  return {
    traceEvents: events,
    displayTimeUnit: "ms",
    otherData: { producer: "dsv3 simulate", schedule: run.result.schedule, compression: run.result.compression },
  };
}

/** The trace as text: one event per line inside the object, so large traces stay diffable. */
export function traceJson(run: SimulationRun): string {
  const t = traceEvents(run);
  const body = t.traceEvents.map((e) => JSON.stringify(e)).join(",\n");
  return `{"displayTimeUnit":"ms","otherData":${JSON.stringify(t.otherData)},"traceEvents":[\n${body}\n]}\n`;
}
