/**
 * Per-rank programs: the op sequence each GPU issues, with what it sends and receives.
 *
 * Training: one program per pipeline rank (every GPU of that rank, whatever its dp/tp/ep index, runs
 * it; its peers are the GPUs with the same dp and tp index on the peer pipeline ranks). The ops are
 * the schedule builder's (pipeline/), each tagged with its stage: an F receives its input activation
 * from the previous hop and sends its output to the next; a B receives the output gradient from the
 * next hop and sends the input gradient to the previous; a hop to the same rank (DualPipeV's turn)
 * is a local hand-off with no message; a W moves nothing.
 *
 * Serving: one program for every GPU. Each micro-batch runs embedding, then per layer attention and,
 * for a MoE layer, dispatch → experts → combine (a dense layer: its FFN), then the head, then the MTP
 * modules used for speculation; micro-batch k issues its steps k phases after micro-batch 0, so one
 * micro-batch's all-to-all overlaps the other's compute (the two-micro-batch overlap of §3.4).
 */

import type { Schedule } from "./pipeline/schedule.js";
import type { Simulation } from "./pipeline/simulate.js";
import type { LinkBytes, P2pTransfer, ServingOp, ServingProgram, TrainingOp, TrainingProgram } from "./plan.js";

export function trainingProgramId(rank: number): string {
  return `pp${String(rank).padStart(2, "0")}`;
}

export function trainingPrograms(pipeline: Schedule, sim: Simulation, p2pBytes: number): TrainingProgram[] {
  const programs: TrainingProgram[] = [];
  for (let r = 0; r < pipeline.ranks; r++) {
    const ops: TrainingOp[] = pipeline.rankOps[r]!.map((o) => {
      let recv: P2pTransfer | null = null;
      let send: P2pTransfer | null = null;
      const prev = pipeline.prevHop(r, o.dir);
      const next = pipeline.nextHop(r, o.dir);
      if (o.op === "F") {
        if (prev !== null && prev.rank !== r) recv = { peer: prev.rank, kind: "activation", bytes: p2pBytes };
        if (next !== null && next.rank !== r) send = { peer: next.rank, kind: "activation", bytes: p2pBytes };
      } else if (o.op === "B") {
        if (next !== null && next.rank !== r) recv = { peer: next.rank, kind: "gradient", bytes: p2pBytes };
        if (prev !== null && prev.rank !== r) send = { peer: prev.rank, kind: "gradient", bytes: p2pBytes };
      }
      return { op: o.op, mb: o.mb, dir: o.dir, stage: pipeline.stageOf(r, o.dir), overlapGroup: o.overlapGroup, recv, send };
    });
    programs.push({
      id: trainingProgramId(r),
      kind: "training",
      pipelineRank: r,
      stages: pipeline.dirs.map((dir) => ({ dir, stage: pipeline.stageOf(r, dir) })),
      ops,
      activationPeakChunks: sim.ranks[r]!.activationPeak,
    });
  }
  return programs;
}

export interface ServingProgramInput {
  kind: "prefill" | "decode";
  layerKinds: readonly ("dense" | "moe")[];
  /** MTP modules run for speculation, and whether their blocks are MoE. */
  mtpModules: number;
  mtpIsMoe: boolean;
  microbatches: number;
  /** Send-side bytes of one MoE layer's dispatch and combine for one micro-batch on one GPU. */
  dispatch: LinkBytes;
  combine: LinkBytes;
}

type Step = Omit<ServingOp, "mb">;

export function servingProgram(input: ServingProgramInput): ServingProgram {
  const compute = (op: ServingOp["op"], layer: number | null): Step => ({ op, layer, stream: "compute", nvlinkBytes: 0, ibBytes: 0 });
  const comm = (op: "dispatch" | "combine", layer: number, b: LinkBytes): Step => ({ op, layer, stream: "communication", nvlinkBytes: b.nvlinkBytes, ibBytes: b.ibBytes });
  const block = (steps: Step[], layer: number, kind: "dense" | "moe"): void => {
    steps.push(compute("attention", layer));
    if (kind === "dense") {
      steps.push(compute("dense_ffn", layer));
      return;
    }
    steps.push(comm("dispatch", layer, input.dispatch), compute("experts", layer), comm("combine", layer, input.combine));
  };
  const steps: Step[] = [compute("embedding", null)];
  input.layerKinds.forEach((k, l) => block(steps, l, k));
  steps.push(compute("head", null));
  for (let m = 0; m < input.mtpModules; m++) {
    const layer = input.layerKinds.length + m;
    steps.push(compute("mtp", layer));
    block(steps, layer, input.mtpIsMoe ? "moe" : "dense");
    steps.push(compute("head", null));
  }
  const ops: ServingOp[] = [];
  const n = input.microbatches;
  for (let t = 0; t < steps.length + n - 1; t++) {
    for (let mb = 0; mb < n; mb++) {
      const s = steps[t - mb];
      if (s !== undefined) ops.push({ op: s.op, layer: s.layer, mb, stream: s.stream, nvlinkBytes: s.nvlinkBytes, ibBytes: s.ibBytes });
    }
  }
  return { id: "serve", kind: input.kind, ops };
}
