/**
 * The cluster simulator on a spec (default specs/deepseek-v3.dsv3): for each schedule, the time to
 * plan it and to simulate one step (medians over runs), the trace's size, and the simulated figures
 * (training: step time, MFU, tokens/s per GPU, GPU-hours per trillion tokens; serving: prefill and
 * decode throughput). Run with `npm run build && node dist/bench/simulate.js [SPEC] [RUNS]`.
 *
 * Not part of the test run's pass/fail.
 */

import { performance } from "node:perf_hooks";
import { checkSpecFile } from "../compiler/check/index.js";
import { buildPlan } from "../compiler/plan/index.js";
import type { Spec } from "../compiler/spec.js";
import { renderDiagnostic } from "../dsl/diagnostic.js";
import { simulatePlan } from "../runtime/simulate/simulate-plan.js";
import { simulationText } from "../runtime/simulate/simulation-text.js";
import { traceJson } from "../runtime/simulate/trace-events.js";

function load(file: string): Spec {
  const checked = checkSpecFile(file);
  if (checked.spec === null) throw new Error(checked.diagnostics.map((d) => renderDiagnostic(d, checked.sources)).join("\n"));
  return checked.spec;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const file = process.argv[2] ?? "specs/deepseek-v3.dsv3";
const runs = Number(process.argv[3] ?? 5);
const spec = load(file);
const rows: string[] = [];
for (const s of spec.schedules) {
  const planMs: number[] = [];
  const simMs: number[] = [];
  let last: ReturnType<typeof simulatePlan> | null = null;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const planned = buildPlan(spec, s.name);
    const t1 = performance.now();
    const plan = planned.plan ?? planned.draft;
    if (plan === null) throw new Error(`no plan for ${s.name}`);
    last = simulatePlan(spec, plan);
    const t2 = performance.now();
    planMs.push(t1 - t0);
    simMs.push(t2 - t1);
  }
  const t3 = performance.now();
  const trace = traceJson(last!);
  const traceMs = performance.now() - t3;
  process.stdout.write(simulationText(last!.result) + "\n");
  const r = last!.result;
  const figure =
    r.kind === "training"
      ? `step ${r.stepSeconds.toFixed(3)} s, MFU ${(100 * r.mfu).toFixed(1)}% (FP8 peak) / ${(100 * r.mfuBf16Peak).toFixed(1)}% (BF16 peak), ${r.tokensPerSecondPerGpu.toFixed(0)} tokens/s/GPU, ${r.gpuHoursPerTrillionTokens.toFixed(0)} GPU-h per 10^12 tokens`
      : r.kind === "prefill"
        ? `step ${(r.stepSeconds * 1e3).toFixed(1)} ms, ${r.prefillTokensPerSecondPerGpu!.toFixed(0)} prefill tokens/s/GPU`
        : `step ${(r.stepSeconds * 1e3).toFixed(2)} ms, ${r.decode!.withoutMtp.tokensPerSecondPerGpu.toFixed(0)} tokens/s/GPU without MTP` +
          (r.decode!.withMtp ? `, ${r.decode!.withMtp.tokensPerSecondPerGpu.toFixed(0)} with MTP (p = ${r.decode!.withMtp.acceptanceRate})` : "");
  rows.push(
    `| ${s.name} | ${r.gpus} | ${median(planMs).toFixed(0)} ms | ${median(simMs).toFixed(0)} ms | ${(Buffer.byteLength(trace) / 1e6).toFixed(1)} MB in ${traceMs.toFixed(0)} ms | ${figure} |`,
  );
}
process.stdout.write(`medians over ${runs} run(s)\n\n| schedule | GPUs | buildPlan | simulate | trace | simulated |\n|---|---|---|---|---|---|\n${rows.join("\n")}\n`);
