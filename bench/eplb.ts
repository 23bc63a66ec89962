/**
 * Benchmark and reference figures for expert placement and node-limited routing. Reports numbers;
 * never fails.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/eplb.js
 *
 * 1. DeepSeek-V3 training's MoE all-to-all (TR §3.2): EP64 over 8 nodes of 8 GPUs, 256 routed
 *    experts in 8 groups (group g on node g), top-8, at most 4 nodes per token, hidden 7168, 4096
 *    tokens per GPU per micro-batch, gate scores uniform on [0, 1) with zero bias. Mean bytes per GPU
 *    over IB and NVLink for one dispatch (FP8 + FP32 scales per 128 channels) and one combine (BF16)
 *    of one MoE layer.
 * 2. EPLB on a V3 prefill-like shape: 58 MoE layers × 256 experts with log-normal loads, 288
 *    replicas on 32 GPUs in 4 nodes, 8 groups: time and imbalance before/after.
 */
import { performance } from "node:perf_hooks";
import { planRedundantExperts, rebalanceExperts, type ExpertLoads } from "../compiler/plan/eplb.js";
import {
  concatRoutes,
  dispatchTraffic,
  placeExpertGroups,
  routeTokens,
  type Route,
} from "../compiler/plan/node-limited-routing.js";
import { mulberry32 as rng } from "../compiler/seeded-random.js";


const MB = 1024 * 1024;

function v3Traffic(nodeLimit: number | null, seed: number, topGroups = 4): void {
  const experts = 256;
  const ranks = 64;
  const tokensPerGpu = 4096;
  const placement = placeExpertGroups(experts, 8, ranks, 8);
  const random = rng(seed);
  const routes: Route[] = [];
  const scores = new Float32Array(tokensPerGpu * experts);
  const t0 = performance.now();
  for (let r = 0; r < ranks; r++) {
    for (let i = 0; i < scores.length; i++) scores[i] = random();
    routes.push(
      routeTokens(scores, null, {
        experts,
        groups: 8,
        topGroups,
        topK: 8,
        nodeLimit,
        expertToNode: placement.expertToNode,
        routedScale: 2.5,
      }),
    );
  }
  const route = concatRoutes(routes);
  const t1 = performance.now();
  const traffic = dispatchTraffic(route, placement, { hidden: 7168, tokensPerGpu });
  const t2 = performance.now();
  const m = traffic.mean;
  const f = (b: number): string => `${(b / MB).toFixed(2)} MiB (${Math.round(b)} B)`;
  console.log(`V3 train EP64/8 nodes, top-8, top-${topGroups} of 8 groups, node limit ${nodeLimit ?? "none"}, seed ${seed}:`);
  console.log(
    `  per token: ${traffic.perToken.meanNodes.toFixed(4)} target nodes (max ${traffic.perToken.maxNodes}), ` +
      `${traffic.perToken.meanGpus.toFixed(4)} target GPUs; copy ${traffic.dispatchBytesPerCopy} B dispatch, ${traffic.combineBytesPerCopy} B combine`,
  );
  console.log(`  dispatch per GPU: IB ${f(m.dispatchIb)}, NVLink ${f(m.dispatchNvlink)}`);
  console.log(`  combine  per GPU: IB ${f(m.combineIb)}, NVLink ${f(m.combineNvlink)}`);
  console.log(`  route ${(t1 - t0).toFixed(0)} ms for ${route.tokens} tokens, traffic ${(t2 - t1).toFixed(0)} ms`);
}

function eplbTiming(): void {
  const layers = 58;
  const experts = 256;
  const random = rng(7);
  const load = new Float64Array(layers * experts);
  for (let i = 0; i < load.length; i++) {
    const g = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    load[i] = Math.round(1000 * Math.exp(0.5 * g));
  }
  const loads: ExpertLoads = { layers, experts, load };
  const opts = { replicas: 288, groups: 8, nodes: 4, gpus: 32 };
  const t0 = performance.now();
  for (let i = 0; i < 10; i++) rebalanceExperts(loads, opts);
  const t1 = performance.now();
  const planned = planRedundantExperts(loads, opts);
  const t2 = performance.now();
  let before = 0;
  let after = 0;
  for (let l = 0; l < layers; l++) {
    before += planned.before.max[l]! / planned.after.mean[l]!;
    after += planned.after.max[l]! / planned.after.mean[l]!;
  }
  console.log(`EPLB ${layers} layers × ${experts} experts → 288 replicas / 32 GPUs / 4 nodes (hierarchical):`);
  console.log(`  reference placement ${((t1 - t0) / 10).toFixed(1)} ms; guarded (with baseline) ${(t2 - t1).toFixed(1)} ms`);
  console.log(
    `  mean imbalance (max/mean GPU load) ${(before / layers).toFixed(4)} without redundancy → ${(after / layers).toFixed(4)} with; ` +
      `${planned.fallbackLayers.length} layer(s) fell back`,
  );
}

v3Traffic(4, 1);
v3Traffic(4, 2);
v3Traffic(null, 1);
// Without the group limit: what the node limit alone saves.
v3Traffic(4, 1, 8);
v3Traffic(null, 1, 8);
eplbTiming();
