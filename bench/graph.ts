/**
 * Benchmark: lowering DeepSeek-V3 (and tiny) to fused Graph IR and KernelSpecs, per phase — the
 * time of each pipeline stage, the size of the result (ops, fused kernels, distinct kernels) and the
 * cross-checks against compiler/stats (parameters, FLOPs per token, KV cache per token). Reports
 * numbers; never fails.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/graph.js [--runs=20]
 */
import { checkSpecFile } from "../compiler/check/index.js";
import { buildModelGraph } from "../compiler/graph/build.js";
import { allOps } from "../compiler/graph/ir.js";
import { modelCachedElementsPerToken, modelFlops, modelParams } from "../compiler/graph/analysis.js";
import { uniqueKernels } from "../compiler/kernel-spec.js";
import { lower, STAGE_NAMES } from "../compiler/pipeline.js";
import { computeStats } from "../compiler/stats.js";
import type { Phase } from "../compiler/graph/ir.js";

function option(name: string, fallback: number): number {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.slice(name.length + 3)) : fallback;
}

const RUNS = option("runs", 20);
const PHASES: Phase[] = ["train", "prefill", "decode"];

for (const file of ["specs/deepseek-v3.dsv3", "specs/tiny.dsv3"]) {
  const checked = checkSpecFile(file);
  if (!checked.spec) throw new Error(`${file} did not check`);
  const spec = checked.spec;
  const stats = computeStats(spec);
  console.log(`\n${file} (${spec.model.name})`);
  console.log(`stage medians over ${RUNS} runs, ms: ${[...STAGE_NAMES, "kernel-specs"].join(" · ")}`);
  for (const phase of PHASES) {
    const samples = new Map<string, number[]>();
    let last = lower(spec, { phase, timings: true });
    for (let i = 0; i < RUNS; i++) {
      last = lower(spec, { phase, timings: true });
      for (const t of last.timings!) samples.set(t.pass, [...(samples.get(t.pass) ?? []), t.ms]);
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const stages = [...samples.entries()].map(([, xs]) => median(xs).toFixed(2)).join(" · ");
    const total = [...samples.values()].reduce((s, xs) => s + median(xs), 0);
    const ops = last.graph.graphs.reduce((s, g) => s + [...allOps(g.ops)].filter((op) => op.kind !== "fused").length, 0);
    const fused = last.kernels.length;
    const distinct = uniqueKernels(last.kernels).length;
    console.log(`  ${phase.padEnd(7)} ${total.toFixed(2)} ms total (${stages}); ${ops} ops, ${fused} kernels (${distinct} distinct)`);
    if (phase === "train") {
      // From the unfused graph: the fused one's grouped GEMMs run over the worst-case padded rows.
      const built = buildModelGraph(spec, { phase });
      const p = modelParams(built);
      const f = modelFlops(built);
      const T = built.dims["T"]!;
      console.log(`          params ${p.main} (stats ${stats.params.total}), MTP ${p.mtp} (stats ${stats.params.mtp})`);
      console.log(`          forward matmul FLOPs/token ${f.matmul / T} (stats ${stats.flopsPerToken.forwardMatmul})`);
    }
    if (phase === "decode") {
      console.log(`          KV cache elements/token ${modelCachedElementsPerToken(last.graph)} (stats ${stats.kvCache.elementsPerToken})`);
    }
  }
}
