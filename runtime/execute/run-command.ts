/**
 * The `dsv3 run SPEC --backend cpu [--steps N] [--seed S] [--batch B] [--json]` command body: train
 * on the CPU (train.ts) and format the result — one line per step (loss, MTP loss, aux loss, max/mean
 * expert load) and the last step's expert loads, or the JSON result (byte-stable for a seed).
 * The CLI checks the spec file and passes the Spec; this never reads files.
 */
import type { Spec } from "../../compiler/spec.js";
import { train, type StepRecord, type TrainResult } from "./train.js";

export interface RunCommandOptions {
  /** Only "cpu" is implemented. */
  backend?: string;
  /** Default 10. */
  steps?: number;
  /** Default 0. */
  seed?: number;
  /** Sequences per step, default 2. */
  batch?: number;
  /** A training schedule's name (default: the first). */
  schedule?: string;
  lr?: number;
  json?: boolean;
}

export const DEFAULT_RUN_STEPS = 10;

/** Runs the command; throws a RangeError with a user-facing message on bad options. */
export function runCommand(spec: Spec, options: RunCommandOptions = {}): { stdout: string; result: TrainResult } {
  const backend = options.backend ?? "cpu";
  if (backend !== "cpu") throw new RangeError(`dsv3 run: backend '${backend}' is not available (only 'cpu')`);
  const lines: string[] = [];
  const onStep = options.json
    ? undefined
    : (s: StepRecord) =>
        lines.push(
          `step ${String(s.step).padStart(4)}  loss ${s.loss.toFixed(4)}  mtp ${s.mtpLoss.toFixed(4)}  aux ${s.auxLoss.toExponential(3)}  max/mean load ${s.maxOverMeanLoad.toFixed(3)}`,
        );
  const result = train(spec, {
    steps: options.steps ?? DEFAULT_RUN_STEPS,
    seed: options.seed ?? 0,
    batch: options.batch ?? 2,
    ...(options.schedule !== undefined ? { schedule: options.schedule } : {}),
    ...(options.lr !== undefined ? { lr: options.lr } : {}),
    ...(onStep ? { onStep } : {}),
  });
  if (options.json) return { stdout: `${JSON.stringify(result, null, 2)}\n`, result };
  const head = `${result.spec}: ${result.parameters.toLocaleString("en-US")} parameters, ${result.steps} steps of ${result.batch} × ${result.seqLen} tokens on the CPU (seed ${result.seed}, AdamW lr ${result.optimizer.lr}, ${result.optimizer.states} moments)`;
  const loads = result.expertLoadLayers.map((name, i) => `  ${name.padEnd(8)} ${result.expertLoad[i]!.join(" ")}`);
  const tail = loads.length > 0 ? ["expert load (tokens per expert, last step):", ...loads] : [];
  return { stdout: [head, ...lines, ...tail].join("\n") + "\n", result };
}
