/**
 * Distributed execution on virtual ranks (runtime/execute/distributed): every schedule of
 * specs/tiny.dsv3 run rank by rank against the same step on one device, the traffic check, the CLI,
 * the broken lowerings, and every DSV94xx diagnostic (full rendered message snapshotted).
 * The random-model properties are in tests/distributed-properties.test.ts.
 */
import { describe, expect, it } from "vitest";
import { gateSelect } from "../backends/reference/ops/index.js";
import { checkSpecFile } from "../compiler/check/index.js";
import { routeTokens } from "../compiler/plan/node-limited-routing.js";
import type { Plan, TrainingProgram } from "../compiler/plan/plan.js";
import { mulberry32 } from "../compiler/seeded-random.js";
import type { Spec } from "../compiler/spec.js";
import { renderDiagnostic } from "../dsl/diagnostic.js";
import { blockOffsets, DeadlockError, runRanks, VirtualCluster } from "../runtime/execute/distributed/collectives.js";
import { DEFAULT_TOLERANCE, distributedCheckJson, distributedCheckText, runDistributedCheck, type DistributedCheckResult } from "../runtime/execute/distributed/index.js";
import { rankHoldings, slicedWeightSource } from "../runtime/execute/distributed/rank-weights.js";
import type { ScaledRun } from "../runtime/execute/distributed/scaled-schedule.js";
import { initModelWeights, parameterList, type ModelWeights } from "../runtime/execute/model-weights.js";
import { cli } from "./fixtures/in-process-cli.js";

function load(file: string): Spec {
  const checked = checkSpecFile(file);
  if (!checked.spec) throw new Error(`${file} did not check`);
  return checked.spec;
}

const tiny = load("specs/tiny.dsv3");
const TINY_SCHEDULES = ["dualpipe", "dualpipev", "one_f_one_b", "zb1p_tp", "zero1_ep", "prefill", "decode"];

function check(spec: Spec, name: string, options: Parameters<typeof runDistributedCheck>[2] = {}): DistributedCheckResult {
  const out = runDistributedCheck(spec, name, options);
  if (out.result === null) throw new Error(out.diagnostics.map((d) => d.message).join("; "));
  return out.result;
}

/** A plan edit: F of micro-batch 0 on the first pipeline rank sends its activation to the wrong rank. */
function misrouteFirstSend(plan: Plan): Plan {
  const programs = plan.programs.map((p) => {
    if (p.kind !== "training" || p.pipelineRank !== 0) return p;
    let done = false;
    const ops = (p as TrainingProgram).ops.map((o) => {
      if (done || o.op !== "F" || o.send === null) return o;
      done = true;
      return { ...o, send: { ...o.send, peer: 0 } };
    });
    return { ...p, ops };
  });
  return { ...plan, programs };
}

describe("every schedule of specs/tiny.dsv3 on virtual ranks", () => {
  const stagesOf: number[][] = [];
  const recording = (run: ScaledRun, full: ModelWeights<Float32Array>) => {
    const source = slicedWeightSource(run.spec, run.plan, full);
    return (gpu: number) => {
      const rw = source(gpu);
      stagesOf[gpu] = rw.stages.map((s) => s.stage);
      return rw;
    };
  };
  const results = new Map(TINY_SCHEDULES.map((name) => [name, check(tiny, name, name === "dualpipe" ? { weightSource: recording } : {})]));

  it("DualPipe: pipeline rank r holds stage r (direction 0) and stage P−1−r (direction 1)", () => {
    // 8 GPUs: pipeline rank 0 = GPUs 0–3 holds stages 0 and 1, rank 1 = GPUs 4–7 holds stages 1 and 0.
    for (let g = 0; g < 8; g++) expect(stagesOf[g]).toEqual([0, 1]);
  });

  it.each(TINY_SCHEDULES)("%s: maxRelDiff < 1e-4 against one device, and predicted = measured traffic", (name) => {
    const r = results.get(name)!;
    expect(r.passes).toBe(true);
    expect(r.maxRelDiff).toBeLessThan(DEFAULT_TOLERANCE);
    expect(Number.isFinite(r.maxAbsDiff)).toBe(true);
    expect(r.traffic.matches).toBe(true);
    for (const c of r.traffic.categories) expect(c.measured, c.kind).toBe(c.predicted);
    expect(r.traffic.perLink.measuredPlanned).toEqual(r.traffic.perLink.predictedPlanned);
  });

  it("training compares the loss, each MTP depth, the balance loss and every parameter's gradient", () => {
    const r = results.get("dualpipe")!;
    const names = r.quantities.map((q) => q.name);
    expect(names.slice(0, 4)).toEqual(["loss", "loss.main", "loss.mtp1", "loss.balance"]);
    expect(names.filter((n) => n.startsWith("grad.")).length).toBe(parameterList(initModelWeights<Float32Array>(tiny.model, 0, "f32")).length);
    expect(names).toContain("grad.layers.3.moe.down");
    expect(names).toContain("grad.mtp.0.block.router");
  });

  it("the structure of the plan is kept: micro-batches, DP, ZeRO-1 traffic, EP across nodes", () => {
    const dp = results.get("dualpipe")!;
    expect(dp.gpus).toBe(8);
    expect(dp.scaling).toMatch(/pp 2, 4 micro-batches, dp 4, tp 1, ep 4, zero 1, node_limit 1 kept/);
    const zero = results.get("zero1_ep")!;
    const cat = (r: DistributedCheckResult, k: string) => r.traffic.categories.find((c) => c.kind === k)!;
    expect(cat(zero, "dp_reduce_scatter").measured).toBeGreaterThan(0);
    expect(cat(zero, "dp_all_gather").measured).toBeGreaterThan(0);
    expect(cat(zero, "dp_all_reduce").measured).toBe(0);
    // EP8 over two nodes: the all-to-all crosses InfiniBand.
    expect(cat(zero, "dispatch/ib").measured).toBeGreaterThan(0);
    expect(cat(zero, "combine/ib").measured).toBeGreaterThan(0);
    // node_limit 2 on a 2-node EP group does not bind: tokens reach both nodes; dualpipe's EP4 sits on one node.
    expect(zero.traffic.routes.maxNodesPerToken).toBe(2);
    expect(results.get("dualpipe")!.traffic.routes.maxNodesPerToken).toBe(1);
    const tp = results.get("zb1p_tp")!;
    expect(cat(tp, "tp").measured).toBeGreaterThan(0);
    expect(cat(results.get("one_f_one_b")!, "p2p").measured).toBeGreaterThan(0);
  });

  it("serving schedules give the same tokens as one device (greedy, MTP drafts, the decode step's tokens)", () => {
    for (const name of ["prefill", "decode"]) {
      const r = results.get(name)!;
      expect(r.tokens).not.toBeNull();
      expect(r.tokens!.equal).toBe(true);
      expect(r.tokens!.distributed).toEqual(r.tokens!.singleDevice);
    }
    const decode = results.get("decode")!;
    // 4 attention groups × 2 sequences; each: the step's 2 tokens, 2 greedy tokens, 1 draft.
    expect(decode.tokens!.distributed).toHaveLength(8);
    for (const t of decode.tokens!.distributed) expect(t).toHaveLength(5);
    expect(decode.quantities.some((q) => q.name.endsWith(".mtp1.logits"))).toBe(true);
  });

  it("the differences are FP32 re-association, not zero: the ranks really sum in another order", () => {
    // Every tiny schedule has EP, DP or TP, whose sums re-associate: nonzero but ≈ FP32 rounding.
    for (const name of TINY_SCHEDULES) {
      const r = results.get(name)!;
      expect(r.maxRelDiff, name).toBeGreaterThan(0);
      expect(r.maxRelDiff, name).toBeLessThan(1e-6);
    }
    console.info(`maxRelDiff per tiny.dsv3 schedule: ${TINY_SCHEDULES.map((n) => `${n} ${results.get(n)!.maxRelDiff.toExponential(2)}`).join(", ")}`);
  });

  it("is deterministic: the same seed gives byte-identical JSON; another seed other numbers", () => {
    const a = distributedCheckJson(check(tiny, "prefill", { seed: 3 }));
    const b = distributedCheckJson(check(tiny, "prefill", { seed: 3 }));
    const c = distributedCheckJson(check(tiny, "prefill", { seed: 4 }));
    expect(a).toBe(b);
    expect(c).not.toBe(a);
  });
});

describe("node-limited routing", () => {
  it("a binding node limit (EP8 over two nodes, node_limit = 1): the same numbers as one device with the same gate, every token's experts on one node, traffic exact", () => {
    const spec: Spec = { ...tiny, schedules: tiny.schedules.map((s) => (s.name === "zero1_ep" && s.kind === "training" ? { ...s, nodeLimit: 1 } : s)) };
    const r = check(spec, "zero1_ep");
    expect(r.passes).toBe(true);
    expect(r.traffic.matches).toBe(true);
    expect(r.traffic.routes.maxNodesPerToken).toBe(1);
    expect(r.traffic.routes.exchanges).toBeGreaterThan(0);
  });

  it("the gate's node limit is the planner's router (routeTokens) on the same scores", () => {
    const E = 16;
    const K = 4;
    const tokens = 200;
    const u = mulberry32(9);
    const scores = Float32Array.from({ length: tokens * E }, () => u());
    const bias = Float32Array.from({ length: E }, () => (u() - 0.5) * 0.1);
    const expertToNode = Int32Array.from({ length: E }, (_, e) => Math.floor(e / 4));
    const gate = { ...tiny.model.moe!.gate, groups: 4, topGroups: 3, groupScore: "top2_sum" as const };
    for (const limit of [1, 2, 3]) {
      const chosen = gateSelect(scores, bias, { experts: E, topK: K, gate, nodeLimit: { limit, expertToNode } }, tokens);
      const route = routeTokens(scores, bias, { experts: E, groups: 4, topGroups: 3, topK: K, nodeLimit: limit, expertToNode });
      expect(Array.from(chosen)).toEqual(Array.from(route.experts));
      for (let t = 0; t < tokens; t++) expect(new Set(Array.from(chosen.subarray(t * K, (t + 1) * K), (e) => expertToNode[e])).size).toBeLessThanOrEqual(limit);
    }
  });
});

describe("broken lowerings fail for the right reason", () => {
  it("a dropped combine weight: the MoE gradients differ (tolerance exceeded), the bytes still match", () => {
    const out = runDistributedCheck(tiny, "zb1p_tp", { faults: { dropCombineWeight: true } });
    const r = out.result!;
    expect(r.passes).toBe(false);
    expect(r.maxRelDiff).toBeGreaterThan(1e-2);
    // The worst quantity is a routed-expert or router gradient of an MoE layer; the bytes moved are unchanged.
    expect(r.worst).toMatch(/^grad\.(layers\.[123]|mtp\.0\.block)\.(moe\.(gate|up|down)|router)$/);
    expect(r.traffic.matches).toBe(true);
    expect(out.diagnostics.map((d) => d.code)).toEqual(["DSV9405"]);
  });

  it("a dropped combine weight in serving: other logits (and tokens)", () => {
    const r = check(tiny, "prefill", { faults: { dropCombineWeight: true } });
    expect(r.passes).toBe(false);
    expect(r.worst).toMatch(/logits$/);
  });

  it("a micro-batch sent to the wrong rank: a deadlock naming the waiting ranks and their ops, not a hang", () => {
    const out = runDistributedCheck(tiny, "one_f_one_b", { editPlan: misrouteFirstSend });
    expect(out.result).toBeNull();
    expect(out.diagnostics).toHaveLength(1);
    const d = out.diagnostics[0]!;
    expect(d.code).toBe("DSV9401");
    // Pipeline rank 1 (GPUs 2, 3) waits for micro-batch 0's activation, which went to rank 0 instead.
    expect(d.message).toMatch(/GPU 2 in F mb 0 dir 0 stage 1 \(op 1 of \d+ of program pp01\) waits for the activation of micro-batch 0 \(dir 0\) from GPU 0/);
  });
});

describe("the virtual cluster", () => {
  it("counts ring collectives per link like the planner: (n − 1)/n of the tensor per GPU", () => {
    const c = new VirtualCluster(8, 4);
    const members = [0, 1, 4, 5];
    const tasks = members.map((g) =>
      (function* () {
        const out = yield* c.reduceScatter("g", members, g, Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), blockOffsets(8, 4), "dp_reduce_scatter", 4, "rs");
        expect(Array.from(out)).toEqual(Array.from({ length: 2 }, (_, i) => 4 * (members.indexOf(g) * 2 + i + 1)));
      })(),
    );
    runRanks([...tasks, ...[2, 3, 6, 7].map(() => (function* () {})())], () => "test");
    // Ring 0→1 (NVLink), 1→4 (IB), 4→5 (NVLink), 5→0 (IB); each sends 3/4 of 32 bytes.
    expect(c.traffic.get(0, "dp_reduce_scatter", "nvlink")).toBe(24);
    expect(c.traffic.get(1, "dp_reduce_scatter", "ib")).toBe(24);
    expect(c.traffic.total("dp_reduce_scatter")).toBe(96);
  });

  it("a receive with no send is a deadlock report naming the rank, its op and what it waits for, not a hang", () => {
    const c = new VirtualCluster(2, 2);
    const tasks = [
      (function* () {
        yield* c.recv(1, 0, "x", "the value");
      })(),
      (function* () {})(),
    ];
    let error: unknown = null;
    try {
      runRanks(tasks, (g) => `op ${g}`);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DeadlockError);
    expect((error as DeadlockError).blocked).toEqual([{ gpu: 0, op: "op 0", waitingFor: "the value from GPU 1" }]);
    expect((error as DeadlockError).finished).toEqual([1]);
  });

  it("blocks split rows evenly, the first ones one larger", () => {
    expect(blockOffsets(10, 4)).toEqual([0, 3, 6, 8, 10]);
    expect(blockOffsets(16, 2)).toEqual([0, 8, 16]);
  });
});

describe("DSV94xx diagnostics", () => {
  const render = (d: Parameters<typeof renderDiagnostic>[0]) => renderDiagnostic(d, new Map());

  it("DSV9401: a deadlock names the ranks and ops", () => {
    const out = runDistributedCheck(tiny, "one_f_one_b", { editPlan: misrouteFirstSend });
    expect(render(out.diagnostics[0]!)).toMatchSnapshot();
  });

  it("DSV9402: DeepSeek-V3 is too large for the CPU executor", () => {
    const out = runDistributedCheck(load("specs/deepseek-v3.dsv3"), "train");
    expect(out.result).toBeNull();
    expect(out.diagnostics[0]!.code).toBe("DSV9402");
    expect(render(out.diagnostics[0]!)).toMatchSnapshot();
  });

  it("DSV9403: another backend (the CLI)", async () => {
    const r = await cli("run", "specs/tiny.dsv3", "--schedule", "dualpipe", "--backend", "cuda");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/DSV9403/);
    expect(r.stderr).toMatchSnapshot();
  });

  it("DSV9404: a lowering the executor does not run (TP without SP)", () => {
    const spec: Spec = { ...tiny, schedules: tiny.schedules.map((s) => (s.name === "zb1p_tp" && s.kind === "training" ? { ...s, sp: false } : s)) };
    const out = runDistributedCheck(spec, "zb1p_tp");
    expect(out.diagnostics[0]!.code).toBe("DSV9404");
    expect(render(out.diagnostics[0]!)).toMatchSnapshot();
  });

  it("DSV9405: a lowering that computes something else", () => {
    const out = runDistributedCheck(tiny, "prefill", { faults: { dropCombineWeight: true } });
    expect(out.diagnostics[0]!.code).toBe("DSV9405");
    expect(render(out.diagnostics[0]!).replace(/maxRelDiff \S+/, "maxRelDiff <x>")).toMatchSnapshot();
  });

  it("DSV9406: a plan whose traffic figures do not match what its programs move", () => {
    const out = runDistributedCheck(tiny, "prefill", {
      editPlan: (p) => ({ ...p, traffic: { ...p.traffic, perProgram: p.traffic.perProgram.map((f) => ({ ...f, tensorParallelBytes: f.tensorParallelBytes + 2 })) } }),
    });
    expect(out.result).not.toBeNull();
    expect(out.diagnostics.map((d) => d.code)).toEqual(["DSV9406"]);
    expect(render(out.diagnostics[0]!)).toMatchSnapshot();
  });
});

describe("dsv3 run --schedule", () => {
  it("prints maxAbsDiff, maxRelDiff, bitwise, the tolerance and the bytes per link; exit 0", async () => {
    const r = await cli("run", "specs/tiny.dsv3", "--schedule", "zb1p_tp", "--backend", "cpu");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/maxAbsDiff \d\.\d{3}e[-+]\d+ {2}maxRelDiff \d\.\d{3}e[-+]\d+ \(worst: [^)]+\) {2}tolerance 1\.0e-4 {2}PASS/);
    expect(r.stdout).toMatch(/bitwise: \d+ of \d+ quantities bit for bit equal/);
    expect(r.stdout).toMatch(/per link \(p2p \+ dispatch \+ combine\): NVLink [\d,]+ B measured \/ [\d,]+ B predicted, IB/);
    expect(r.stdout).toMatch(/scaled down for the CPU: micro-batches of 1 sequence × 16 tokens \(schedule: 4 × 64\)/);
  });

  it("--json is byte-identical for a seed and carries the documented fields", async () => {
    const a = await cli("run", "specs/tiny.dsv3", "--schedule", "decode", "--backend", "cpu", "--seed", "5", "--json");
    const b = await cli("run", "specs/tiny.dsv3", "--schedule", "decode", "--backend", "cpu", "--seed", "5", "--json");
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    const j = JSON.parse(a.stdout) as Record<string, unknown>;
    for (const k of ["maxAbsDiff", "maxRelDiff", "tolerance", "bitwise", "quantities", "tokens", "traffic", "scaling", "passes"]) expect(j).toHaveProperty(k);
    expect(j.seed).toBe(5);
    expect(j.passes).toBe(true);
  });

  it("a failing check exits 1 with its diagnostic; an unknown schedule is DSV9002; --steps with --schedule is a usage error", async () => {
    const r = await cli("run", "specs/tiny.dsv3", "--schedule", "nope", "--backend", "cpu");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/DSV9002: unknown schedule 'nope'/);
    const u = await cli("run", "specs/tiny.dsv3", "--schedule", "dualpipe", "--steps", "2");
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/--steps trains on one device/);
    const big = await cli("run", "specs/deepseek-v3.dsv3", "--schedule", "decode", "--backend", "cpu");
    expect(big.code).toBe(1);
    expect(big.stderr).toMatch(/DSV9402/);
  });

  it("the text report carries the JSON's figures", () => {
    const r = check(tiny, "prefill");
    const text = distributedCheckText(r);
    expect(text).toContain(r.maxRelDiff.toExponential(3));
    expect(text).toContain(r.scaling);
  });
});

describe("rank weights", () => {
  it("each GPU holds its stages, its heads and vocabulary block, and the plan's expert slots", () => {
    const out = runDistributedCheck(tiny, "prefill", {
      weightSource: (run, full) => {
        const source = slicedWeightSource(run.spec, run.plan, full);
        return (gpu) => {
          const rw = source(gpu);
          const h = rankHoldings(run.spec, run.plan, gpu);
          // prefill: attention TP 2 → 2 of 4 heads, half the vocabulary; EP4 with 4 redundant → 3 slots per GPU.
          expect(rw.tp).toBe(2);
          expect(rw.stages).toHaveLength(1);
          const l1 = rw.stages[0]!.layers[1]!;
          expect(l1.heads).toEqual({ first: 2 * rw.tpIndex, count: 2 });
          expect(rw.stages[0]!.head!.count).toBe(256);
          expect(l1.experts!.logical.length).toBe(h.slotsPerGpu);
          expect(h.slotsPerGpu).toBe(3);
          return rw;
        };
      },
    });
    expect(out.result!.passes).toBe(true);
  });

  it("a source with a wrong weight is caught (the executor reads weights only through the source)", () => {
    const out = runDistributedCheck(tiny, "prefill", {
      weightSource: (run, full) => {
        const source = slicedWeightSource(run.spec, run.plan, full);
        return (gpu) => {
          const rw = source(gpu);
          if (gpu === 2) rw.stages[0]!.layers[0]!.ffnNorm[0] = 2;
          return rw;
        };
      },
    });
    expect(out.result!.passes).toBe(false);
  });
});
