/**
 * One training step of a Plan on its cluster: the pipeline (the plan's per-rank programs, executed by
 * pipeline-engine.ts), each compute slot's two streams (two-stream.ts: compute SMs and communication
 * SMs, DualPipe's F&B pairs hiding one micro-batch's all-to-all behind the other's computation), the
 * pipeline p2p transfers, and the step's tail (the ZeRO/DP gradient reduce-scatter, the optimizer,
 * the parameter all-gather).
 *
 * Symmetry. Under the plan's expected-value routing every GPU of a pipeline rank runs the same
 * program on the same bytes, so the simulation runs one GPU per pipeline rank (its program), not
 * every GPU; the result holds for each of the rank's GPUs (`compression` says so).
 *
 * Tail (stated in the output): each rank reduce-scatters its gradients after its last backward op
 * (not overlapped with the pipeline), then every rank steps its optimizer (memory-bound over its
 * master weights, gradients, moments and working weights) and all-gathers its working weights.
 */

import type { Plan, StageContents, TrainingOp, TrainingProgram } from "../../compiler/plan/plan.js";
import type { Spec, TrainingSchedule } from "../../compiler/spec.js";
import { computeStats } from "../../compiler/stats.js";
import { KernelModel, KERNEL_MODEL_SOURCES } from "./kernel-model.js";
import { LayerCostModel } from "./layer-costs.js";
import type { LayerShape, PassSeconds } from "./layer-costs.js";
import { LinkModel, LINK_MODEL_SOURCES } from "./link-model.js";
import { runPipeline } from "./pipeline-engine.js";
import type { PipelineRun, Slot } from "./pipeline-engine.js";
import { COMMUNICATION, COMPUTE, runTwoStreams } from "./two-stream.js";
import type { Piece, TwoStreamRun } from "./two-stream.js";

/** The technical report's end-to-end figure, quoted for validation only (never used by the model). */
export const REPORTED_GPU_HOURS_PER_TRILLION_TOKENS = 180_000;
/** DeepSeek-V3's parameter count (FACTS.md): the validation figure applies to this model only. */
const DEEPSEEK_V3_PARAMETERS = 671_026_419_200;

export const MFU_CONVENTION =
  "MFU = training FLOPs per token (dsv3 stats: 3 × (forward + MTP forward), 2 FLOPs per matmul weight plus the attention core at " +
  "average causal context seqLen/2) × tokens per step / (step time × GPUs × the GPU's dense FP8 peak); mfuBf16Peak uses the dense BF16 peak";

export interface RankFigures {
  rank: number;
  gpus: number;
  /** Seconds the rank's compute slots take, the idle time inside the pipeline, and its share. */
  busySeconds: number;
  idleSeconds: number;
  computeSeconds: number;
  /** Communication inside slots not hidden behind computation. */
  exposedCommunicationSeconds: number;
  tailSeconds: number;
  peakMemoryBytes: number;
}

export interface StageFigures {
  stage: number;
  /** Seconds of one micro-batch's forward, full backward, and the weight-gradient part, alone on the GPU (communication exposed). */
  forwardSeconds: number;
  backwardSeconds: number;
  weightGradientSeconds: number;
  /** All-to-all seconds of one micro-batch through the stage (forward + backward). */
  allToAllSeconds: number;
}

export interface TrainingSimulation {
  kind: "training";
  schedule: string;
  pipeline: string;
  gpus: number;
  pipelineRanks: number;
  compression: string;
  stepSeconds: number;
  pipelineSeconds: number;
  tailSeconds: number;
  tokensPerStep: number;
  tokensPerSecondPerGpu: number;
  mfu: number;
  mfuBf16Peak: number;
  mfuConvention: string;
  flopsPerToken: number;
  bubbleShare: number;
  exposedCommunicationSeconds: number;
  exposedCommunicationShare: number;
  peakMemoryBytes: number;
  memoryFits: boolean;
  gpuHoursPerTrillionTokens: number;
  /** DeepSeek-V3 (its 671B parameters) on H800s only: the report's end-to-end figure beside the simulated one. */
  validation: { reportedGpuHoursPerTrillionTokens: number; ratio: number; note: string } | null;
  ranks: RankFigures[];
  stages: StageFigures[];
  model: string[];
}

/** What the trace and the report draw, beside the figures. */
export interface TrainingTimeline {
  run: PipelineRun;
  /** The two-stream schedule of each timed slot (parallel to run.slots). */
  inner: TwoStreamRun[][];
  chains: (readonly Piece[])[][][];
  programs: readonly TrainingProgram[];
  tails: { rank: number; start: number; reduceScatter: number; optimizer: number; allGather: number }[];
  p2p: { rank: number; peer: number; start: number; end: number; kind: string }[];
}

export interface TrainingRun {
  result: TrainingSimulation;
  timeline: TrainingTimeline;
}

interface Context {
  spec: Spec;
  plan: Plan;
  schedule: TrainingSchedule;
  costs: LayerCostModel;
  links: LinkModel;
  kernels: KernelModel;
  shape: LayerShape;
  dispatchSeconds: number;
  combineSeconds: number;
  tpSecondsPerLayer: number;
}

function stageChain(ctx: Context, stage: StageContents, kind: "F" | "B" | "W", split: boolean): Piece[] {
  const { spec, costs, shape } = ctx;
  const model = spec.model;
  const kinds = layerKindsOf(spec);
  const T = ctx.plan.schedule.tokensPerMicrobatch;
  type Part = { layer: number | null; moe: boolean | null; name: string; secs: PassSeconds };
  // The stage's work in forward order: embedding, layers, head, MTP modules (front, block, head).
  const parts: Part[] = [];
  if (stage.embedding) parts.push({ layer: null, moe: null, name: "embedding", secs: costs.embedding(shape.localTokens) });
  for (let l = stage.layers.first; l <= stage.layers.last; l++) parts.push({ layer: l, moe: kinds[l] === "moe", name: `layer ${l}`, secs: { f: 0, b: 0, w: 0 } });
  if (stage.head) parts.push({ layer: null, moe: null, name: "head", secs: costs.head(T, true) });
  for (let m = 0; m < stage.mtpModules; m++) {
    const layer = model.layers + m;
    parts.push({ layer, moe: null, name: `mtp ${m} front`, secs: costs.mtpFront(T) });
    parts.push({ layer, moe: model.moe !== null, name: `mtp ${m} block`, secs: { f: 0, b: 0, w: 0 } });
    parts.push({ layer, moe: null, name: `mtp ${m} head`, secs: costs.head(T, true) });
  }
  const pieces: Piece[] = [];
  const wOf = (s: PassSeconds): number => s.w;
  if (kind === "W") {
    let w = 0;
    for (const p of parts) {
      if (p.moe === null) w += wOf(p.secs);
      else {
        const ls = costs.layer(p.moe, shape);
        w += ls.attention.w + ls.ffn.w + ls.shared.w;
      }
    }
    pieces.push({ name: `W stage ${stage.stage}`, stream: COMPUTE, seconds: w, after: [], layer: null });
    return pieces;
  }
  const bOf = (s: PassSeconds): number => s.b + (split ? 0 : s.w);
  let tails: number[] = [];
  const push = (p: Omit<Piece, "after">, after: number[]): number => {
    pieces.push({ ...p, after });
    return pieces.length - 1;
  };
  const ordered = kind === "F" ? parts : [...parts].reverse();
  for (const p of ordered) {
    if (p.moe === null) {
      const i = push({ name: `${p.name}`, stream: COMPUTE, seconds: kind === "F" ? p.secs.f : bOf(p.secs), layer: p.layer }, tails);
      tails = [i];
      continue;
    }
    const ls = costs.layer(p.moe, shape);
    const tpComm = ctx.tpSecondsPerLayer;
    if (!p.moe) {
      if (kind === "F") {
        const a = push({ name: `attention ${p.layer}`, stream: COMPUTE, seconds: ls.attention.f + tpComm, layer: p.layer }, tails);
        tails = [push({ name: `ffn ${p.layer}`, stream: COMPUTE, seconds: ls.ffn.f, layer: p.layer }, [a])];
      } else {
        const f = push({ name: `ffn ${p.layer} backward`, stream: COMPUTE, seconds: bOf(ls.ffn), layer: p.layer }, tails);
        tails = [push({ name: `attention ${p.layer} backward`, stream: COMPUTE, seconds: bOf(ls.attention) + tpComm, layer: p.layer }, [f])];
      }
      continue;
    }
    if (kind === "F") {
      const a = push({ name: `attention ${p.layer}`, stream: COMPUTE, seconds: ls.attention.f + tpComm, layer: p.layer }, tails);
      const d = push({ name: `dispatch ${p.layer}`, stream: COMMUNICATION, seconds: ctx.dispatchSeconds, layer: p.layer }, [a]);
      const s = push({ name: `shared experts ${p.layer}`, stream: COMPUTE, seconds: ls.shared.f, layer: p.layer }, [a]);
      const e = push({ name: `experts ${p.layer}`, stream: COMPUTE, seconds: ls.ffn.f, layer: p.layer }, [d]);
      const c = push({ name: `combine ${p.layer}`, stream: COMMUNICATION, seconds: ctx.combineSeconds, layer: p.layer }, [e]);
      tails = ls.shared.f > 0 ? [c, s] : [c];
    } else {
      // Backward: output gradients go to the experts (dispatch-sized, FP8), input gradients come back (combine-sized, BF16).
      const c = push({ name: `combine ${p.layer} backward`, stream: COMMUNICATION, seconds: ctx.dispatchSeconds, layer: p.layer }, tails);
      const e = push({ name: `experts ${p.layer} backward`, stream: COMPUTE, seconds: bOf(ls.ffn), layer: p.layer }, [c]);
      const s = push({ name: `shared experts ${p.layer} backward`, stream: COMPUTE, seconds: bOf(ls.shared), layer: p.layer }, tails);
      const d = push({ name: `dispatch ${p.layer} backward`, stream: COMMUNICATION, seconds: ctx.combineSeconds, layer: p.layer }, [e]);
      tails = [push({ name: `attention ${p.layer} backward`, stream: COMPUTE, seconds: bOf(ls.attention) + tpComm, layer: p.layer }, [d, s])];
    }
  }
  return pieces;
}

function layerKindsOf(spec: Spec): ("dense" | "moe")[] {
  const kinds: ("dense" | "moe")[] = new Array(spec.model.layers);
  for (const run of spec.model.layerPattern) for (let l = run.first; l <= run.last; l++) kinds[l] = run.kind;
  return kinds;
}

/** The layer shape of a training plan's micro-batch on one GPU. */
function trainingShape(spec: Spec, plan: Plan, schedule: TrainingSchedule): LayerShape {
  const T = plan.schedule.tokensPerMicrobatch;
  const tp = plan.schedule.tp;
  const moe = spec.model.moe;
  return {
    tokens: T,
    localTokens: schedule.sp ? Math.ceil(T / tp) : T,
    moeTokens: plan.traffic.tokensPerMicrobatch,
    tp,
    slotsPerGpu: plan.experts?.slotsPerGpu ?? (moe === null ? 0 : moe.routedExperts / plan.schedule.ep),
    picks: moe?.expertsPerToken ?? 0,
    sharedBeside: true,
    context: schedule.seqLen / 2,
    decode: null,
    layout: "contiguous",
    ffnSplit: true,
  };
}

export function simulateTraining(spec: Spec, plan: Plan): TrainingRun {
  const schedule = spec.schedules.find((s) => s.name === plan.schedule.name);
  if (schedule === undefined || schedule.kind !== "training") throw new Error(`simulate: the plan's schedule '${plan.schedule.name}' is not a training schedule of the spec`);
  const kernels = new KernelModel(spec.cluster.gpu, schedule.commSms);
  const links = new LinkModel(spec.cluster);
  const costs = new LayerCostModel(spec.model, spec.precision, kernels);
  const tr = plan.traffic;
  const tokens = tr.tokensPerMicrobatch;
  const perCopy = (copies: number, bytes: number): number => copies * tokens * bytes;
  const dispatchSeconds = links.allToAll(perCopy(tr.copiesPerToken.nvlink, tr.dispatchBytesPerCopy), perCopy(tr.copiesPerToken.ib, tr.dispatchBytesPerCopy), "normal");
  const combineSeconds = links.allToAll(perCopy(tr.copiesPerToken.nvlink, tr.combineBytesPerCopy), perCopy(tr.copiesPerToken.ib, tr.combineBytesPerCopy), "normal");
  const tp = plan.schedule.tp;
  // Tensor parallelism: an all-gather and a reduce-scatter of the block's BF16 hidden states per block (two blocks a layer), on NVLink.
  const tpBytes = tp > 1 ? 2 * ((tp - 1) / tp) * plan.schedule.tokensPerMicrobatch * spec.model.hidden * 2 : 0;
  const tpSecondsPerLayer = tp > 1 ? 2 * links.p2p(tpBytes, tp > spec.cluster.gpusPerNode) : 0;
  const ctx: Context = { spec, plan, schedule, costs, links, kernels, shape: trainingShape(spec, plan, schedule), dispatchSeconds, combineSeconds, tpSecondsPerLayer };
  const programs = plan.programs.filter((p): p is TrainingProgram => p.kind === "training");
  const stages = plan.partition!.stages;

  const chainCache = new Map<string, Piece[]>();
  const chainOf = (op: TrainingOp, split: boolean): Piece[] => {
    const key = `${op.op}/${op.stage}/${split}`;
    let c = chainCache.get(key);
    if (c === undefined) {
      c = stageChain(ctx, stages[op.stage]!, op.op, split);
      chainCache.set(key, c);
    }
    return c;
  };
  const slotCache = new Map<string, { chains: Piece[][]; run: TwoStreamRun }>();
  const slotRun = (slot: Slot): { chains: Piece[][]; run: TwoStreamRun } => {
    const program = programs[slot.rank]!;
    const ops = slot.ops.map((i) => program.ops[i]!);
    const key = ops.map((o, i) => `${o.op}/${o.stage}/${slot.split[i]}`).join("+");
    let hit = slotCache.get(key);
    if (hit === undefined) {
      const chains = ops.map((o, i) => chainOf(o, slot.split[i]!));
      hit = { chains, run: runTwoStreams(chains) };
      slotCache.set(key, hit);
    }
    return hit;
  };
  const perRank = plan.schedule.tp * plan.schedule.dp;
  const nodeOfRank = (r: number): number => Math.floor((r * perRank) / spec.cluster.gpusPerNode);
  const p2pSeconds = (op: TrainingOp, from: number): number => (op.send === null ? 0 : links.p2p(op.send.bytes, nodeOfRank(from) !== nodeOfRank(op.send.peer)));
  const result = runPipeline({ programs, duration: (slot) => slotRun(slot).run.seconds, delay: p2pSeconds });
  if (!result.ok) throw new Error(`simulate: ${result.problem}`);
  const run = result.run;

  const inner = run.slots.map((rank) => rank.map((s) => slotRun(s).run));
  const chains = run.slots.map((rank) => rank.map((s) => slotRun(s).chains));
  const p2p: TrainingTimeline["p2p"] = [];
  run.slots.forEach((rank, r) => {
    for (const s of rank) {
      for (const i of s.ops) {
        const op = programs[r]!.ops[i]!;
        if (op.send !== null) p2p.push({ rank: r, peer: op.send.peer, start: s.end, end: s.end + p2pSeconds(op, r), kind: op.send.kind });
      }
    }
  });

  // The tail: gradient reduce-scatter after each rank's last op, optimizer, all-gather.
  const crossNodeDp = perRank > spec.cluster.gpusPerNode;
  const memoryClass = (r: number): Plan["memory"]["classes"][number] => {
    const gpu = r * perRank;
    const id = plan.memory.perGpu[gpu]?.class;
    return plan.memory.classes.find((c) => c.id === id) ?? plan.memory.classes[0]!;
  };
  const tails: TrainingTimeline["tails"] = [];
  let stepEnd = 0;
  const rsEnds: number[] = [];
  programs.forEach((program, r) => {
    const traffic = plan.traffic.perProgram.find((t) => t.program === program.id);
    const rsBytes = (traffic?.dataParallel.reduceScatterBytes ?? 0) + (traffic?.dataParallel.allReduceBytes ?? 0);
    const end = run.slots[r]!.reduce((a, s) => Math.max(a, s.end), 0);
    rsEnds.push(end + (rsBytes > 0 ? links.collective(rsBytes, crossNodeDp) : 0));
  });
  const optimizerStart = Math.max(0, ...rsEnds);
  programs.forEach((program, r) => {
    const traffic = plan.traffic.perProgram.find((t) => t.program === program.id);
    const bytesOf = (cat: string): number => memoryClass(r).byCategory.find((c) => c.category === cat)?.bytes ?? 0;
    const touched = 2 * bytesOf("master_weights") + bytesOf("gradients") + 2 * bytesOf("optimizer_states") + bytesOf("weights");
    const optimizer = kernels.memoryBound(touched);
    const agBytes = traffic?.dataParallel.allGatherBytes ?? 0;
    const allGather = agBytes > 0 ? links.collective(agBytes, crossNodeDp) : 0;
    const end = run.slots[r]!.reduce((a, s) => Math.max(a, s.end), 0);
    tails.push({ rank: r, start: end, reduceScatter: rsEnds[r]! - end, optimizer, allGather });
    stepEnd = Math.max(stepEnd, optimizerStart + optimizer + allGather);
  });
  const stepSeconds = stepEnd;

  const stats = computeStats(spec, { schedule: schedule.name });
  const tokensPerStep = schedule.globalBatch * schedule.seqLen;
  const gpus = plan.gpus;
  const tokensPerSecondPerGpu = tokensPerStep / stepSeconds / gpus;
  const flopsPerToken = stats.flopsPerToken.training;
  const achieved = (flopsPerToken * tokensPerStep) / stepSeconds / gpus;
  const gpuHours = 1e12 / tokensPerSecondPerGpu / 3600;

  const ranks: RankFigures[] = programs.map((_, r) => {
    const computeSeconds = inner[r]!.reduce((a, x) => a + x.computeBusy, 0);
    const exposed = inner[r]!.reduce((a, x) => a + x.exposedCommunication, 0);
    const t = tails[r]!;
    return {
      rank: r,
      gpus: perRank,
      busySeconds: run.busy[r]!,
      idleSeconds: run.idle[r]!,
      computeSeconds,
      exposedCommunicationSeconds: exposed,
      tailSeconds: stepSeconds - t.start,
      peakMemoryBytes: memoryClass(r).totalBytes,
    };
  });
  const worst = ranks.reduce((a, b) => (b.exposedCommunicationSeconds > a.exposedCommunicationSeconds ? b : a), ranks[0]!);
  const stageFigures: StageFigures[] = stages.map((st) => {
    const f = runTwoStreams([stageChain(ctx, st, "F", false)]);
    const b = runTwoStreams([stageChain(ctx, st, "B", false)]);
    const w = stageChain(ctx, st, "W", true)[0]!.seconds;
    const moeLayers = st.moeLayers + (spec.model.moe !== null ? st.mtpModules : 0);
    return { stage: st.stage, forwardSeconds: f.seconds, backwardSeconds: b.seconds, weightGradientSeconds: w, allToAllSeconds: moeLayers * 2 * (dispatchSeconds + combineSeconds) };
  });
  const maxIdle = Math.max(...run.idle);
  const result2: TrainingSimulation = {
    kind: "training",
    schedule: schedule.name,
    pipeline: schedule.pipeline,
    gpus,
    pipelineRanks: programs.length,
    compression:
      `simulated ${programs.length} distinct program(s), one per pipeline rank; each stands for the ${perRank} GPU(s) of its rank ` +
      `(same ops and bytes under the plan's expected-value routing), ${gpus} GPUs in all`,
    stepSeconds,
    pipelineSeconds: run.makespan,
    tailSeconds: stepSeconds - run.makespan,
    tokensPerStep,
    tokensPerSecondPerGpu,
    mfu: achieved / spec.cluster.gpu.fp8FlopsPerS,
    mfuBf16Peak: achieved / spec.cluster.gpu.bf16FlopsPerS,
    mfuConvention: MFU_CONVENTION,
    flopsPerToken,
    bubbleShare: run.makespan > 0 ? maxIdle / run.makespan : 0,
    exposedCommunicationSeconds: worst.exposedCommunicationSeconds,
    exposedCommunicationShare: stepSeconds > 0 ? worst.exposedCommunicationSeconds / stepSeconds : 0,
    peakMemoryBytes: plan.memory.peakBytes,
    memoryFits: plan.memory.fits,
    gpuHoursPerTrillionTokens: gpuHours,
    validation:
      stats.params.total === DEEPSEEK_V3_PARAMETERS && spec.cluster.gpu.name === "H800"
        ? {
            reportedGpuHoursPerTrillionTokens: REPORTED_GPU_HOURS_PER_TRILLION_TOKENS,
            ratio: gpuHours / REPORTED_GPU_HOURS_PER_TRILLION_TOKENS,
            note: "the technical report's 180K H800 GPU-hours per trillion tokens (2.664M GPU-hours for 14.8T tokens of pre-training), for validation only: no end-to-end figure calibrates the model",
          }
        : null,
    ranks,
    stages: stageFigures,
    model: [
      KERNEL_MODEL_SOURCES,
      LINK_MODEL_SOURCES,
      `compute kernels use ${kernels.computeSms} of ${spec.cluster.gpu.sms} SMs (comm_sms = ${schedule.commSms} run the all-to-all)`,
      "an F&B pair of the schedule runs its two chunks' pieces on two streams (compute, communication), each piece waiting for its inputs; a lone F or B exposes its all-to-all",
      "backward = input gradient + weight gradient GEMMs (split when the schedule has a W), attention core 2× forward, memory-bound kernels 2× forward; the recompute list is added to the backward",
      "pipeline p2p: BF16 hidden states on IB between nodes (NVLink inside one), delivered after the producing slot ends",
      "tail: gradient reduce-scatter after each rank's last op, then the optimizer (memory-bound) and the parameter all-gather, not overlapped",
    ],
  };
  return { result: result2, timeline: { run, inner, chains, programs, tails, p2p } };
}
