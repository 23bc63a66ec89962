/**
 * The simulated step as Chrome trace-event JSON (the "JSON Object Format" that chrome://tracing and
 * the Perfetto UI load): complete events (`ph: "X"`, times in µs) and metadata events naming the
 * processes and threads.
 *
 * Layout. A process per GPU when the plan is given and has at most {@link TRACE_GPUS_EXPANDED} GPUs:
 * each GPU shows its pipeline rank's simulated program (the symmetry compression makes them equal),
 * named with its coordinates. Larger plans: one process per pipeline rank — the simulation's unit —
 * whose name gives the GPUs it stands for (a 2048-GPU trace would otherwise be ~1 GB). Training
 * threads: the pipeline ops (F, B, W, F&B slots), the compute stream (attention, experts, … pieces),
 * the communication stream (dispatch, combine), the pipeline p2p link, and the step's tail
 * (reduce-scatter, optimizer, all-gather). Serving: a thread per stream.
 *
 * Deterministic: events in a fixed order, times rounded to the nanosecond, no clock or path.
 */

import type { Plan, RankPlan, TrainingOp } from "../../compiler/plan/plan.js";
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

/** Plans with at most this many GPUs get a trace process per GPU; larger ones one per pipeline rank. */
export const TRACE_GPUS_EXPANDED = 64;

const us = (s: number): number => Math.round(s * 1e9) / 1e3;

const THREADS = ["pipeline ops", "compute stream", "communication stream (all-to-all)", "p2p link", "step tail (DP, optimizer)"] as const;

function opName(op: TrainingOp): string {
  return `${op.op}${op.mb}${op.dir === 1 ? "'" : ""}`;
}

function gpuName(g: RankPlan, training: boolean): string {
  return `GPU ${g.gpu} (node ${g.node}${training ? `, pipeline rank ${g.pp}` : ""}, dp ${g.dp}, tp ${g.tp}, ep ${g.ep})`;
}

/** The trace of a simulated step; with `plan` (the plan simulated) small plans get a process per GPU. */
export function traceEvents(run: SimulationRun, plan?: Plan): { traceEvents: TraceEvent[]; displayTimeUnit: "ms"; otherData: Record<string, string> } {
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
  const expanded = plan !== undefined && plan.ranks.length <= TRACE_GPUS_EXPANDED;
  if (run.kind === "training") {
    const { result, timeline } = run;
    const perRank = result.gpus / result.pipelineRanks;
    const emitRank = (r: number, pid: number, name: string, sort: number): void => {
      const slots = timeline.run.slots[r]!;
      meta(pid, null, name, sort);
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
    };
    if (expanded) for (const g of plan!.ranks) emitRank(g.pp, g.gpu + 1, gpuName(g, true), g.gpu);
    else timeline.run.slots.forEach((_, r) => emitRank(r, r + 1, `pipeline rank ${r}: GPUs ${r * perRank}–${(r + 1) * perRank - 1} (${perRank} GPUs, one simulated program)`, r));
  } else {
    const { result, step } = run;
    const emitGpu = (pid: number, name: string, sort: number): void => {
      meta(pid, null, name, sort);
      meta(pid, 1, "compute stream", 0);
      meta(pid, 2, "communication stream (all-to-all)", 1);
      for (const o of step.ops) {
        if (o.end <= o.start) continue;
        const opName = `${o.op.op}${o.op.layer === null ? "" : ` ${o.op.layer}`} mb${o.op.mb}`;
        x(pid, o.op.stream === "compute" ? 1 : 2, opName, o.op.op, o.start, o.end);
      }
    };
    if (expanded) for (const g of plan!.ranks) emitGpu(g.gpu + 1, gpuName(g, false), g.gpu);
    else emitGpu(1, `serving GPU (one simulated program for all ${result.gpus} GPUs of '${result.schedule}')`, 0);
  }
  return {
    traceEvents: events,
    displayTimeUnit: "ms",
    otherData: {
      producer: "dsv3 simulate",
      schedule: run.result.schedule,
      processes: expanded ? "one per GPU (each shows its pipeline rank's simulated program)" : run.kind === "training" ? "one per pipeline rank" : "one simulated GPU",
      compression: run.result.compression,
    },
  };
}

/** The trace as text: one event per line inside the object, so large traces stay diffable. */
export function traceJson(run: SimulationRun, plan?: Plan): string {
  const t = traceEvents(run, plan);
  const body = t.traceEvents.map((e) => JSON.stringify(e)).join(",\n");
  return `{"displayTimeUnit":"ms","otherData":${JSON.stringify(t.otherData)},"traceEvents":[\n${body}\n]}\n`;
}
