/**
 * The CPU cannot run a schedule's whole batch (tiny.dsv3: 32 sequences of 64 tokens through 8 GPUs'
 * programs, twice), so the distributed check runs a scaled-down copy of the schedule and says so:
 * - training: each micro-batch is one sequence of at most `seqCap` tokens (a multiple of tp, so the
 *   SP blocks are equal); global batch = dp × microbatches sequences;
 * - prefill: prompts of at most `seqCap` tokens, at most `batchCap` sequences per attention group;
 * - decode: a context of at most `seqCap` tokens, at most `batchCap` sequences per attention group.
 * Everything that shapes the plan stays: pipeline kind, pp, microbatches, dp, tp, sp, ep, zero,
 * node_limit, redundant experts, shared-as-routed, MTP speculation, and the stage split (the
 * original plan's layers per stage are passed to the planner, since a shorter sequence can move the
 * FLOP-balanced split). The plan the executor runs is `buildPlan` of the scaled copy.
 */
import { buildPlan } from "../../../compiler/plan/index.js";
import type { Plan } from "../../../compiler/plan/plan.js";
import type { ScheduleSpec, Spec } from "../../../compiler/spec.js";

export const DEFAULT_SEQ_CAP = 16;
export const DEFAULT_BATCH_CAP = 2;

export interface ScaledRun {
  spec: Spec;
  schedule: ScheduleSpec;
  plan: Plan;
  /** What changed, in words, for the output. */
  scaling: string;
}

export interface ScaleOptions {
  seqCap?: number;
  batchCap?: number;
}

function replaceSchedule(spec: Spec, s: ScheduleSpec): Spec {
  return { ...spec, schedules: spec.schedules.map((x) => (x.name === s.name ? s : x)) };
}

/** The scaled schedule and its plan; null plan when the planner refuses it (its diagnostics are the original's). */
export function scaleSchedule(spec: Spec, name: string, options: ScaleOptions = {}): ScaledRun | { error: "plan"; diagnostics: ReturnType<typeof buildPlan>["diagnostics"] } {
  const seqCap = options.seqCap ?? DEFAULT_SEQ_CAP;
  const batchCap = options.batchCap ?? DEFAULT_BATCH_CAP;
  const s = spec.schedules.find((x) => x.name === name);
  const original = buildPlan(spec, name);
  if (s === undefined || original.draft === null) return { error: "plan", diagnostics: original.diagnostics };
  const depth = spec.model.mtp.depth;
  if (s.kind === "training") {
    let seqLen = Math.min(s.seqLen, seqCap, spec.model.maxPositions);
    seqLen = Math.max(s.tp, seqLen - (seqLen % s.tp));
    while (seqLen < depth + 2) seqLen += s.tp;
    const scaled: ScheduleSpec = { ...s, seqLen, microbatchSize: 1, globalBatch: s.dp * s.microbatches };
    const scaledSpec = replaceSchedule(spec, scaled);
    const built = buildPlan(scaledSpec, name, { layersPerStage: original.draft.partition!.layersPerStage });
    const plan = built.plan ?? built.draft;
    if (plan === null) return { error: "plan", diagnostics: built.diagnostics };
    return {
      spec: scaledSpec,
      schedule: scaled,
      plan,
      scaling:
        `scaled down for the CPU: micro-batches of 1 sequence × ${seqLen} tokens (schedule: ${s.microbatchSize} × ${s.seqLen}), ` +
        `global batch ${scaled.globalBatch} sequences (schedule: ${s.globalBatch}); pp ${s.pp}, ${s.microbatches} micro-batches, dp ${s.dp}, tp ${s.tp}${s.sp ? "+sp" : ""}, ep ${s.ep}, zero ${s.zero}${s.nodeLimit !== null ? `, node_limit ${s.nodeLimit}` : ""} kept; layers per stage ${plan.partition!.layersPerStage.join(", ")}`,
    };
  }
  const tp = s.attention.tp;
  const perSeq = s.kind === "prefill" ? Math.min(s.seqLen, seqCap) : 1 + s.mtpSpeculation;
  const batch = Math.max(1, Math.min(s.batchPerGpu, batchCap));
  // Rows of a micro-batch must split evenly over the TP ranks (SP): round the batch up if needed.
  let b = batch;
  while (((b * perSeq) / s.microbatches) % tp !== 0 || (b * perSeq) % s.microbatches !== 0 || b % s.microbatches !== 0) b++;
  const seqLen = s.kind === "prefill" ? perSeq : Math.min(s.seqLen, seqCap);
  const scaled: ScheduleSpec = { ...s, batchPerGpu: b, seqLen };
  const scaledSpec = replaceSchedule(spec, scaled);
  const built = buildPlan(scaledSpec, name);
  const plan = built.plan ?? built.draft;
  if (plan === null) return { error: "plan", diagnostics: built.diagnostics };
  return {
    spec: scaledSpec,
    schedule: scaled,
    plan,
    scaling:
      s.kind === "prefill"
        ? `scaled down for the CPU: ${b} prompt(s) of ${seqLen} tokens per attention group (schedule: ${s.batchPerGpu} × ${s.seqLen}); ` +
          `attention tp ${tp}${s.attention.sp ? "+sp" : ""} × dp ${s.attention.dp}, ep ${s.moe.ep}, ${s.moe.redundantExperts} redundant experts, ${s.microbatches} micro-batch(es) kept`
        : `scaled down for the CPU: ${b} sequence(s) per attention group with a ${seqLen - (1 + s.mtpSpeculation)}-token context (schedule: ${s.batchPerGpu} × ${s.seqLen}); ` +
          `one decode step of ${1 + s.mtpSpeculation} token(s) per sequence; attention tp ${tp}${s.attention.sp ? "+sp" : ""} × dp ${s.attention.dp}, ep ${s.moe.ep}, ` +
          `${s.moe.redundantExperts} redundant experts${s.moe.sharedAsRouted ? ", shared experts served as routed" : ""} kept`,
  };
}
