/**
 * Benchmark: the virtual-rank executor on every schedule of specs/tiny.dsv3 — one step of the
 * scaled-down plan on all its GPUs (one process, one thread), the same step on one device, and the
 * whole `dsv3 run --schedule` check (both plus the comparison and the traffic check). Median of
 * `--repeat` runs. Reports numbers; never fails.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/distributed.js [--repeat=3] [--seed=0]
 */
import { performance } from "node:perf_hooks";
import { checkSpecFile } from "../compiler/check/index.js";
import { mulberry32 } from "../compiler/seeded-random.js";
import type { ServingSchedule } from "../compiler/spec.js";
import { runDistributedCheck } from "../runtime/execute/distributed/index.js";
import { slicedWeightSource } from "../runtime/execute/distributed/rank-weights.js";
import { scaleSchedule } from "../runtime/execute/distributed/scaled-schedule.js";
import { referenceServe } from "../runtime/execute/distributed/serving-reference.js";
import { runDistributedServing } from "../runtime/execute/distributed/serving-executor.js";
import { runDistributedTraining } from "../runtime/execute/distributed/training-executor.js";
import { initModelWeights } from "../runtime/execute/model-weights.js";
import { stepConfigOf, trainingStep } from "../runtime/execute/training-step.js";

function option(name: string, fallback: number): number {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.slice(name.length + 3)) : fallback;
}

const REPEAT = option("repeat", 3);
const SEED = option("seed", 0);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function time(f: () => void): number {
  const out: number[] = [];
  for (let i = 0; i < REPEAT; i++) {
    const t = performance.now();
    f();
    out.push(performance.now() - t);
  }
  return median(out);
}

const checked = checkSpecFile("specs/tiny.dsv3");
if (!checked.spec) throw new Error("specs/tiny.dsv3 did not check");
const spec = checked.spec;
const full = initModelWeights<Float32Array>(spec.model, SEED, "f32");
console.log(`tiny-v3 on virtual ranks, median of ${REPEAT} (seed ${SEED}); times in ms`);
console.log(`  ${"schedule".padEnd(12)} ${"GPUs".padStart(4)} ${"tokens".padStart(7)} ${"ranks".padStart(8)} ${"1 device".padStart(9)} ${"ratio".padStart(6)} ${"check".padStart(8)} ${"tok/s".padStart(7)}  maxRelDiff`);
for (const s of spec.schedules) {
  const scaled = scaleSchedule(spec, s.name);
  if ("error" in scaled) {
    console.log(`  ${s.name}: no plan`);
    continue;
  }
  const u = mulberry32(SEED + 1);
  const token = (): number => Math.floor(u() * spec.model.vocab);
  let distributed: number;
  let single: number;
  let tokens: number;
  if (scaled.schedule.kind === "training") {
    const sc = scaled.schedule;
    const batch = Array.from({ length: sc.dp * sc.microbatches }, () => Int32Array.from({ length: sc.seqLen }, token));
    tokens = batch.length * sc.seqLen;
    distributed = time(() => void runDistributedTraining({ spec: scaled.spec, plan: scaled.plan, weights: slicedWeightSource(scaled.spec, scaled.plan, full), batch }));
    single = time(() => void trainingStep(full, stepConfigOf(spec.model, sc.seqLen), batch));
  } else {
    const sv = scaled.schedule as ServingSchedule;
    const ctx = sv.kind === "prefill" ? sv.seqLen : sv.seqLen - (1 + sv.mtpSpeculation);
    const sequences = Array.from({ length: sv.attention.dp }, () => Array.from({ length: sv.batchPerGpu }, () => Int32Array.from({ length: ctx }, token)));
    const D = Math.min(sv.mtpSpeculation, spec.model.mtp.depth);
    tokens = sequences.flat().length * (sv.kind === "prefill" ? ctx : 1 + sv.mtpSpeculation);
    distributed = time(() => void runDistributedServing({ spec: scaled.spec, plan: scaled.plan, schedule: sv, weights: slicedWeightSource(scaled.spec, scaled.plan, full), sequences }));
    single = time(() => {
      for (const seq of sequences.flat()) referenceServe(spec.model, full, seq, 0, D);
    });
  }
  let rel = 0;
  const check = time(() => {
    const out = runDistributedCheck(spec, s.name, { seed: SEED });
    rel = out.result?.maxRelDiff ?? NaN;
  });
  console.log(
    `  ${s.name.padEnd(12)} ${String(scaled.plan.gpus).padStart(4)} ${String(tokens).padStart(7)} ${distributed.toFixed(0).padStart(8)} ${single.toFixed(0).padStart(9)} ${(distributed / single).toFixed(2).padStart(6)} ${check.toFixed(0).padStart(8)} ${((tokens / distributed) * 1000).toFixed(0).padStart(7)}  ${rel.toExponential(2)}`,
  );
}
console.log("  ranks: the executor (every GPU's program, collectives, gradient reduction); 1 device: the reference step (decode: the context forward, not the warm-up + step); check: dsv3 run --schedule");
