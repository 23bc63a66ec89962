/**
 * `dsv3 run SPEC --backend cpu`: train the spec's model for N steps on the CPU reference ops.
 *
 * Per step: one micro-batch of `batch` synthetic sequences (synthetic-tokens.ts) of the training
 * schedule's seq_len, capped at {@link CPU_SEQ_CAP} tokens on the CPU (and at max_positions); the
 * forward and backward of training-step.ts; AdamW (adamw.ts) on the FP32 master weights with moments
 * in the recipe's optimizer_states dtype; then the auxiliary-loss-free bias update of every MoE gate
 * (main layers and MTP blocks) from the step's actual expert loads, with γ = the spec's update_speed.
 * Working precision FP32 (FP8 quantisation of the GEMMs is not simulated here).
 *
 * The result is byte-stable: the same spec, seed and options give identical JSON (every number
 * rounded to {@link SIGNIFICANT_DIGITS} significant digits).
 */
import type { Spec, TrainingSchedule } from "../../compiler/spec.js";
import { biasUpdate, loadImbalance } from "../../backends/reference/ops/index.js";
import { AdamW, DEFAULT_ADAMW, type AdamWOptions } from "./adamw.js";
import { initModelWeights, parameterCount, parameterList, DEFAULT_INIT_STD, type ModelWeights } from "./model-weights.js";
import { SyntheticTokens } from "./synthetic-tokens.js";
import { stepConfigOf, trainingStep } from "./training-step.js";

/** The CPU executor's cap on tokens per sequence. */
export const CPU_SEQ_CAP = 64;
/** Significant digits of every number in the JSON result. */
export const SIGNIFICANT_DIGITS = 6;

export interface TrainOptions {
  steps: number;
  seed: number;
  /** Sequences per step (default 2). */
  batch: number;
  /** A training schedule's name (default: the spec's first training schedule). */
  schedule?: string;
  /** Override the sequence length (still capped). */
  seqLen?: number;
  lr?: number;
  initStd?: number;
  /** Period of the synthetic pattern (default 16). */
  period?: number;
  /** Called after each step (progress output). */
  onStep?: (s: StepRecord) => void;
}

export interface StepRecord {
  step: number;
  loss: number;
  mtpLoss: number;
  auxLoss: number;
  maxOverMeanLoad: number;
}

export interface TrainResult {
  spec: string;
  seed: number;
  steps: number;
  batch: number;
  seqLen: number;
  tokensPerStep: number;
  parameters: number;
  optimizer: {
    lr: number;
    beta1: number;
    beta2: number;
    weightDecay: number;
    eps: number;
    states: string;
  };
  /** Main next-token cross-entropy per step (before that step's update). */
  losses: number[];
  /** Mean over MTP depths of the unweighted L^k, per step (empty without MTP). */
  mtpLosses: number[];
  /** Σ over MoE layers of α·L_Bal, per step. */
  auxLosses: number[];
  /** Names of the MoE layers expertLoad lists: "layer N" and "mtp K". */
  expertLoadLayers: string[];
  /** Per MoE layer: tokens routed to each expert in the last step. */
  expertLoad: number[][];
  /** Per step: the mean over MoE layers of max load / mean load. */
  maxOverMeanLoad: number[];
}

/** x rounded to SIGNIFICANT_DIGITS significant digits (−0 → 0). */
export function roundSig(x: number): number {
  if (!Number.isFinite(x)) return x;
  const r = Number(x.toPrecision(SIGNIFICANT_DIGITS));
  return r === 0 ? 0 : r;
}

function trainingScheduleOf(spec: Spec, name: string | undefined): TrainingSchedule | null {
  const training = spec.schedules.filter((s): s is TrainingSchedule => s.kind === "training");
  if (name === undefined) return training[0] ?? null;
  const s = training.find((t) => t.name === name);
  if (!s) throw new RangeError(`dsv3 run: no training schedule '${name}' (have: ${training.map((t) => t.name).join(", ") || "none"})`);
  return s;
}

/** The sequence length a CPU run uses: the schedule's seq_len (64 without one), capped. */
export function cpuSeqLen(spec: Spec, options: Pick<TrainOptions, "schedule" | "seqLen">): number {
  const base = options.seqLen ?? trainingScheduleOf(spec, options.schedule)?.seqLen ?? CPU_SEQ_CAP;
  return Math.max(2, Math.min(base, CPU_SEQ_CAP, spec.model.maxPositions));
}

export function train(spec: Spec, options: TrainOptions): TrainResult {
  return trainWithWeights(spec, options).result;
}

/** {@link train}, also returning the trained FP32 weights (decoding, runtime/execute/decode.ts). */
export function trainWithWeights(spec: Spec, options: TrainOptions): { result: TrainResult; weights: ModelWeights<Float32Array> } {
  const { steps, seed, batch } = options;
  if (!Number.isInteger(steps) || steps < 0) throw new RangeError(`dsv3 run: --steps must be a non-negative integer, got ${steps}`);
  if (!Number.isInteger(seed)) throw new RangeError(`dsv3 run: --seed must be an integer, got ${seed}`);
  if (!Number.isInteger(batch) || batch < 1) throw new RangeError(`dsv3 run: --batch must be a positive integer, got ${batch}`);
  const model = spec.model;
  const seqLen = cpuSeqLen(spec, options);
  const cfg = stepConfigOf(model, seqLen);
  const weights: ModelWeights<Float32Array> = initModelWeights(model, seed, "f32", options.initStd ?? DEFAULT_INIT_STD);
  const adamOptions: AdamWOptions = {
    ...DEFAULT_ADAMW,
    lr: options.lr ?? DEFAULT_ADAMW.lr,
    stateDtype: spec.precision.optimizerStates,
  };
  const params = parameterList(weights);
  const opt = new AdamW(params, adamOptions);
  const data = new SyntheticTokens({
    vocab: model.vocab,
    seqLen,
    batch,
    seed,
    period: options.period ?? 16,
  });
  const gamma = model.moe?.gate.biasBalancing?.updateSpeed ?? 0;
  const biases: (Float32Array | null)[] = [
    ...weights.layers.filter((l) => l.moe !== null),
    ...weights.mtp.map((m) => m.block).filter((l) => l.moe !== null),
  ].map((l) => l.gateBias);
  const loadNames = [
    ...weights.layers.flatMap((l, i) => (l.moe !== null ? [`layer ${i}`] : [])),
    ...weights.mtp.flatMap((m, k) => (m.block.moe !== null ? [`mtp ${k + 1}`] : [])),
  ];

  const losses: number[] = [];
  const mtpLosses: number[] = [];
  const auxLosses: number[] = [];
  const imbalance: number[] = [];
  let lastLoads: Float64Array[] = [];
  for (let step = 0; step < steps; step++) {
    const r = trainingStep(weights, cfg, data.next());
    opt.step(params, parameterList(r.grads));
    r.loads.forEach((load, i) => {
      const bias = biases[i];
      if (bias && gamma > 0) biasUpdate(bias, load, gamma);
    });
    lastLoads = r.loads;
    const mtp = r.losses.mtp.length > 0 ? r.losses.mtp.reduce((s, l) => s + l, 0) / r.losses.mtp.length : 0;
    const imb = r.loads.length > 0 ? r.loads.reduce((s, l) => s + loadImbalance(l), 0) / r.loads.length : 0;
    losses.push(r.losses.main);
    if (r.losses.mtp.length > 0) mtpLosses.push(mtp);
    auxLosses.push(r.losses.aux);
    imbalance.push(imb);
    options.onStep?.({
      step: step + 1,
      loss: r.losses.main,
      mtpLoss: mtp,
      auxLoss: r.losses.aux,
      maxOverMeanLoad: imb,
    });
  }
  const result: TrainResult = {
    spec: model.name,
    seed,
    steps,
    batch,
    seqLen,
    tokensPerStep: batch * seqLen,
    parameters: parameterCount(weights),
    optimizer: {
      lr: adamOptions.lr,
      beta1: adamOptions.beta1,
      beta2: adamOptions.beta2,
      weightDecay: adamOptions.weightDecay,
      eps: adamOptions.eps,
      states: adamOptions.stateDtype,
    },
    losses: losses.map(roundSig),
    mtpLosses: mtpLosses.map(roundSig),
    auxLosses: auxLosses.map(roundSig),
    expertLoadLayers: loadNames,
    expertLoad: lastLoads.map((l) => Array.from(l, roundSig)),
    maxOverMeanLoad: imbalance.map(roundSig),
  };
  return { result, weights };
}
