/**
 * The DeepSeek-V3 plans: the `train` per-GPU memory table by category, dispatch/combine bytes per
 * step per GPU over NVLink and IB, the `prefill`/`decode` experts per GPU and KV-cache capacity, and
 * the time `buildPlan` takes. Run with `npm run build && node dist/bench/plan.js [SPEC]`.
 *
 * Not part of the test run's pass/fail.
 */

import { performance } from "node:perf_hooks";
import { checkSpecFile } from "../compiler/check/index.js";
import { buildPlan, formatBytes, planBundleFiles, planJson, planSummaryText } from "../compiler/plan/index.js";
import type { Plan } from "../compiler/plan/index.js";
import type { Spec, TrainingSchedule } from "../compiler/spec.js";
import { renderDiagnostic } from "../dsl/diagnostic.js";

function load(file: string): Spec {
  const checked = checkSpecFile(file);
  if (checked.spec === null) {
    throw new Error(checked.diagnostics.map((d) => renderDiagnostic(d, checked.sources)).join("\n"));
  }
  return checked.spec;
}

function timed(spec: Spec, name: string): { plan: Plan; ms: number; errors: string[] } {
  const t0 = performance.now();
  const result = buildPlan(spec, name);
  const ms = performance.now() - t0;
  const plan = result.plan ?? result.draft;
  if (plan === null) throw new Error(result.diagnostics.map((d) => d.message).join("\n"));
  return { plan, ms, errors: result.diagnostics.map((d) => renderDiagnostic(d, new Map())) };
}

function bundleSize(plan: Plan): number {
  let n = 0;
  for (const text of planBundleFiles(plan).values()) n += Buffer.byteLength(text);
  return n;
}

function report(spec: Spec, name: string): void {
  const { plan, ms, errors } = timed(spec, name);
  process.stdout.write(planSummaryText(plan));
  for (const e of errors) process.stdout.write(`${e}\n`);
  process.stdout.write(
    `buildPlan: ${ms.toFixed(0)} ms; plan JSON ${formatBytes(Buffer.byteLength(planJson(plan)))}; bundle plan/ ${formatBytes(bundleSize(plan))}\n\n`,
  );
}

const file = process.argv[2] ?? "specs/deepseek-v3.dsv3";
const spec = load(file);
for (const s of spec.schedules) report(spec, s.name);

// The training schedule with one sequence per micro-batch, for comparison with the spec as written.
const train = spec.schedules.find((s): s is TrainingSchedule => s.kind === "training");
if (train !== undefined && train.microbatchSize > 1) {
  const microbatches = train.globalBatch / train.dp;
  const variant: Spec = {
    ...spec,
    schedules: [{ ...train, name: `${train.name}_mb1`, microbatches, microbatchSize: 1 }],
  };
  process.stdout.write(`── '${train.name}' with one sequence per micro-batch (microbatches = ${microbatches}) ──\n`);
  report(variant, `${train.name}_mb1`);
}
