/**
 * One serving step (prefill or decode) of a Plan: the plan's serving program — every micro-batch
 * once through embedding, each layer's attention and, for a MoE layer, dispatch → experts →
 * combine, the head and the MTP modules — on two streams of one GPU (compute SMs; communication SMs
 * and links), each op waiting for the previous op of its micro-batch and for its stream, in the
 * program's issue order. With two micro-batches one's all-to-all overlaps the other's compute
 * (§3.4's two-micro-batch overlap), exactly as the program interleaves them.
 *
 * Symmetry: every GPU of a serving unit runs the one program on the same expected bytes, so one
 * GPU is simulated.
 *
 * Figures: prefill tokens per second per GPU; decode tokens per second per GPU and per user and the
 * time per output token, with MTP speculation (the step emits 1 + p + p² + … tokens per sequence for
 * a draft acceptance rate p, depth = the drafted tokens) and without (the plan rebuilt with
 * mtp_speculation = 0 by the caller).
 */

import type { Plan, ServingOp, ServingProgram } from "../../compiler/plan/plan.js";
import type { ServingSchedule, Spec } from "../../compiler/spec.js";
import { KernelModel, KERNEL_MODEL_SOURCES } from "./kernel-model.js";
import { LayerCostModel } from "./layer-costs.js";
import type { LayerShape } from "./layer-costs.js";
import { LinkModel, LINK_MODEL_SOURCES } from "./link-model.js";

export interface TimedServingOp {
  index: number;
  op: ServingOp;
  start: number;
  end: number;
}

export interface ServingStep {
  stepSeconds: number;
  computeBusySeconds: number;
  communicationBusySeconds: number;
  exposedCommunicationSeconds: number;
  ops: TimedServingOp[];
}

export interface DecodeFigures {
  draftTokens: number;
  acceptanceRate: number;
  tokensPerSequencePerStep: number;
  stepSeconds: number;
  tokensPerSecondPerGpu: number;
  tokensPerSecondPerUser: number;
  timePerOutputTokenSeconds: number;
}

export interface ServingSimulation {
  kind: "prefill" | "decode";
  schedule: string;
  gpus: number;
  compression: string;
  stepSeconds: number;
  computeBusySeconds: number;
  exposedCommunicationSeconds: number;
  exposedCommunicationShare: number;
  peakMemoryBytes: number;
  memoryFits: boolean;
  /** Prefill: prompt tokens per second per GPU (null for decode). */
  prefillTokensPerSecondPerGpu: number | null;
  /** Decode: with the schedule's MTP speculation (when it drafts) and without. */
  decode: { withMtp: DecodeFigures | null; withoutMtp: DecodeFigures } | null;
  model: string[];
}

export interface ServingRun {
  result: ServingSimulation;
  step: ServingStep;
}

function servingShape(spec: Spec, plan: Plan, schedule: ServingSchedule): LayerShape {
  const tp = schedule.attention.tp;
  const T = plan.schedule.tokensPerMicrobatch;
  const moe = spec.model.moe;
  return {
    tokens: T,
    localTokens: schedule.attention.sp ? Math.ceil(T / tp) : T,
    moeTokens: plan.traffic.tokensPerMicrobatch,
    tp,
    slotsPerGpu: plan.experts?.slotsPerGpu ?? 0,
    picks: moe === null ? 0 : moe.expertsPerToken + (schedule.moe.sharedAsRouted ? moe.sharedExperts : 0),
    sharedBeside: !schedule.moe.sharedAsRouted,
    context: schedule.seqLen / 2,
    decode: schedule.kind === "decode" ? { sequences: Math.ceil(schedule.batchPerGpu / schedule.microbatches), context: schedule.seqLen } : null,
    layout: schedule.kind === "decode" ? "masked" : "contiguous",
    ffnSplit: false,
  };
}

/** Runs the plan's serving program on one GPU's two streams. */
export function simulateServingStep(spec: Spec, plan: Plan): ServingStep {
  const schedule = servingSchedule(spec, plan);
  const program = plan.programs[0] as ServingProgram;
  const kernels = new KernelModel(spec.cluster.gpu, schedule.commSms);
  const links = new LinkModel(spec.cluster);
  const costs = new LayerCostModel(spec.model, spec.precision, kernels);
  const shape = servingShape(spec, plan, schedule);
  const kinds: ("dense" | "moe")[] = new Array(spec.model.layers);
  for (const run of spec.model.layerPattern) for (let l = run.first; l <= run.last; l++) kinds[l] = run.kind;
  const isMoe = (layer: number | null): boolean => (layer !== null && layer >= spec.model.layers ? spec.model.moe !== null : layer !== null && kinds[layer] === "moe");
  const tp = schedule.attention.tp;
  const tpSeconds = tp > 1 ? 2 * links.p2p(2 * ((tp - 1) / tp) * shape.tokens * spec.model.hidden * 2, tp > spec.cluster.gpusPerNode) : 0;
  const mode = schedule.kind === "decode" ? "low-latency" : "normal";
  const logitTokens = schedule.kind === "prefill" ? Math.ceil(schedule.batchPerGpu / schedule.microbatches) : shape.tokens;
  const duration = (o: ServingOp): number => {
    switch (o.op) {
      case "embedding":
        return costs.embedding(shape.localTokens).f;
      case "attention":
        return costs.layer(isMoe(o.layer), shape).attention.f + tpSeconds;
      case "dense_ffn":
        return costs.layer(false, shape).ffn.f;
      case "experts": {
        const l = costs.layer(true, shape);
        return l.ffn.f + l.shared.f;
      }
      case "dispatch":
      case "combine":
        return links.allToAll(o.nvlinkBytes, o.ibBytes, mode);
      case "head":
        return costs.head(logitTokens, false).f;
      case "mtp":
        return costs.mtpFront(shape.tokens).f;
    }
  };
  const streamFree = [0, 0];
  const mbFree = new Float64Array(Math.max(1, plan.schedule.microbatches));
  const busy = [0, 0];
  const ops: TimedServingOp[] = [];
  program.ops.forEach((o, index) => {
    const s = o.stream === "compute" ? 0 : 1;
    const start = Math.max(streamFree[s]!, mbFree[o.mb] ?? 0);
    const d = duration(o);
    const end = start + d;
    streamFree[s] = end;
    mbFree[o.mb] = end;
    busy[s]! += d;
    ops.push({ index, op: o, start, end });
  });
  const stepSeconds = Math.max(streamFree[0]!, streamFree[1]!);
  return { stepSeconds, computeBusySeconds: busy[0]!, communicationBusySeconds: busy[1]!, exposedCommunicationSeconds: Math.max(0, stepSeconds - busy[0]!), ops };
}

function servingSchedule(spec: Spec, plan: Plan): ServingSchedule {
  const s = spec.schedules.find((x) => x.name === plan.schedule.name);
  if (s === undefined || s.kind === "training") throw new Error(`simulate: the plan's schedule '${plan.schedule.name}' is not a serving schedule of the spec`);
  return s;
}

function decodeFigures(schedule: ServingSchedule, gpus: number, stepSeconds: number, draftTokens: number, acceptanceRate: number): DecodeFigures {
  let perSeq = 1;
  let p = 1;
  for (let i = 0; i < draftTokens; i++) {
    p *= acceptanceRate;
    perSeq += p;
  }
  const sequences = schedule.attention.dp * schedule.batchPerGpu;
  return {
    draftTokens,
    acceptanceRate: draftTokens > 0 ? acceptanceRate : 0,
    tokensPerSequencePerStep: perSeq,
    stepSeconds,
    tokensPerSecondPerGpu: (sequences * perSeq) / stepSeconds / gpus,
    tokensPerSecondPerUser: perSeq / stepSeconds,
    timePerOutputTokenSeconds: stepSeconds / perSeq,
  };
}

/**
 * Simulates a serving plan. For decode, `withoutMtp` is the plan of the same schedule with
 * mtp_speculation = 0 (the caller builds it; when the schedule drafts nothing it is `plan` itself),
 * and `acceptanceRate` the chance a drafted token is accepted.
 */
export function simulateServing(spec: Spec, plan: Plan, withoutMtp: { spec: Spec; plan: Plan } | null, acceptanceRate: number): ServingRun {
  const schedule = servingSchedule(spec, plan);
  const step = simulateServingStep(spec, plan);
  const gpus = plan.gpus;
  let decode: ServingSimulation["decode"] = null;
  if (schedule.kind === "decode") {
    const drafts = Math.min(schedule.mtpSpeculation, spec.model.mtp.depth);
    const plain = drafts > 0 && withoutMtp !== null ? simulateServingStep(withoutMtp.spec, withoutMtp.plan).stepSeconds : step.stepSeconds;
    decode = {
      withMtp: drafts > 0 ? decodeFigures(schedule, gpus, step.stepSeconds, drafts, acceptanceRate) : null,
      withoutMtp: decodeFigures(schedule, gpus, plain, 0, acceptanceRate),
    };
  }
  const tp = schedule.attention.tp;
  return {
    result: {
      kind: schedule.kind,
      schedule: schedule.name,
      gpus,
      compression: `simulated 1 distinct program; it stands for all ${gpus} GPUs of the unit (same ops and bytes under the plan's expected-value routing)`,
      stepSeconds: step.stepSeconds,
      computeBusySeconds: step.computeBusySeconds,
      exposedCommunicationSeconds: step.exposedCommunicationSeconds,
      exposedCommunicationShare: step.stepSeconds > 0 ? step.exposedCommunicationSeconds / step.stepSeconds : 0,
      peakMemoryBytes: plan.memory.peakBytes,
      memoryFits: plan.memory.fits,
      prefillTokensPerSecondPerGpu: schedule.kind === "prefill" ? (schedule.batchPerGpu * schedule.seqLen) / tp / step.stepSeconds : null,
      decode,
      model: [
        KERNEL_MODEL_SOURCES,
        LINK_MODEL_SOURCES,
        `compute kernels use ${spec.cluster.gpu.sms - schedule.commSms} of ${spec.cluster.gpu.sms} SMs (comm_sms = ${schedule.commSms})`,
        schedule.kind === "decode"
          ? "decode: all-to-all at DeepEP's low-latency efficiency; experts as masked grouped GEMMs; MLA attention reads the latent KV cache (FlashMLA rate)"
          : "prefill: all-to-all at DeepEP's normal efficiency; experts as contiguous grouped GEMMs; causal attention at average context seqLen/2",
        `batch_per_gpu counts sequences per attention group of ${tp} GPU(s); throughput per GPU divides by the group`,
      ],
    },
    step,
  };
}
