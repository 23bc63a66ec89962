/**
 * Benchmark: pipeline schedules for PP ∈ {4, 8, 16}. For each kind and a few cost regimes it prints
 * the bubble and peak activations measured by executing the schedule (compiler/plan/pipeline) next
 * to the DualPipe table's formulas (shared/reference/FACTS.md), then how long building and
 * simulating one schedule takes. Reports numbers; never fails.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/pipeline.js
 */
import { performance } from "node:perf_hooks";

import { buildSchedule, simulate, tableFormulas } from "../compiler/plan/pipeline/index.js";
import type { Costs, PipelineKind, Schedule, Simulation } from "../compiler/plan/pipeline/index.js";

const KINDS: PipelineKind[] = ["1f1b", "zb1p", "dualpipe", "dualpipev"];
const STAGES = [4, 8, 16];

const REGIMES: { name: string; costs: Costs }[] = [
  { name: "figures: F=1 B=2 W=1 F&B=3 (default)", costs: { F: 1, B: 2, W: 1, FB: 3 } },
  { name: "overlap gain: F=1 B=2 W=1 F&B=2.5", costs: { F: 1, B: 2, W: 1, FB: 2.5 } },
  { name: "short W: F=1 B=2 W=0.5 F&B=2.5", costs: { F: 1, B: 2, W: 0.5, FB: 2.5 } },
  { name: "long W: F=1 B=3 W=1.5 F&B=3.5", costs: { F: 1, B: 3, W: 1.5, FB: 3.5 } },
];

/** Micro-batches per step: 4·PP for every kind (DualPipe: 2·PP each way), inside every kind's domain. */
const microbatches = (P: number): number => 4 * P;

function build(kind: PipelineKind, P: number, N: number): Schedule {
  const s = buildSchedule(kind, P, N);
  if ("error" in s) throw new Error(s.error.message);
  return s;
}

function run(s: Schedule, c: Costs): Simulation {
  const r = simulate(s, c);
  if (!r.ok) throw new Error(r.failure.problems.join("; "));
  return r.sim;
}

const num = (x: number): string => String(Math.round(x * 1000) / 1000);

console.log(`pipeline schedules, N = 4·PP micro-batches (node ${process.version})`);
console.log("bubble = idle time per device inside the step (makespan − busy), the largest over devices;");
console.log("activations = peak live chunk activations on one device (+1 at F start, −1 at the end of its B, or of its W when split).\n");
for (const { name, costs } of REGIMES) {
  console.log(`### ${name}`);
  console.log("| method | PP | devices | N | bubble (measured) | bubble (table) | formula | idle per device (min–max) | activations (measured / table) | makespan |");
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const kind of KINDS) {
    for (const P of STAGES) {
      const N = microbatches(P);
      const sim = run(build(kind, P, N), costs);
      const t = tableFormulas(kind, P, costs, N);
      const idles = sim.ranks.map((r) => r.idle);
      const mark = num(sim.bubble) === num(t.bubble) ? "" : " ≠";
      console.log(
        `| ${kind} | ${P} | ${sim.ranks.length} | ${N} | ${num(sim.bubble)}${mark} | ${num(t.bubble)} | ${t.bubbleFormula} | ` +
          `${num(Math.min(...idles))}–${num(Math.max(...idles))} | ${sim.activationPeak} / ${t.activation} (${t.activationFormula}) | ${num(sim.makespan)} |`,
      );
    }
  }
  const why = [...new Set(KINDS.map((k) => tableFormulas(k, 8, costs, 32)).filter((t) => !t.assumptionsHold).map((t) => t.why!))];
  if (why.length > 0) console.log(`\nwhere ≠: ${why.join("; ")}`);
  console.log("");
}

console.log("### time to build and simulate one schedule (PP = 16, N = 64, default costs)");
for (const kind of KINDS) {
  const samples: number[] = [];
  for (let i = 0; i < 40; i++) {
    const t0 = performance.now();
    run(build(kind, 16, 64), REGIMES[0]!.costs);
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  const ops = build(kind, 16, 64).rankOps.flat().length;
  console.log(`${kind.padEnd(10)} ${String(ops).padStart(5)} ops   median ${samples[20]!.toFixed(2)} ms   min ${samples[0]!.toFixed(2)} ms`);
}
