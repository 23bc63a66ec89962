/**
 * The planner (compiler/plan): stage partition, per-rank programs, expert placement, expected
 * traffic, the plan's JSON and bundle files, its diagnostics (DSV5501–DSV5503, each with a rendered
 * snapshot), and the DeepSeek-V3 figures (FACTS.md §Training parallelism, §Inference deployment).
 *
 * Memory is tested in tests/memory.test.ts.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";

import { buildPlan, planBundleFiles, planJson, planSummaryText } from "../compiler/plan/index.js";
import type { Plan, TrainingProgram } from "../compiler/plan/index.js";
import { modelCosts, partitionCosts, partitionStages, stageCount } from "../compiler/plan/partition.js";
import type { ModelCosts } from "../compiler/plan/partition.js";
import { expectedCopies, missProbability } from "../compiler/plan/expected-traffic.js";
import { attentionWeights, heldWeights } from "../compiler/plan/weights.js";
import { RecipeBytes } from "../compiler/plan/recipe-bytes.js";
import { layerKinds } from "../compiler/plan/partition.js";
import { servingStage } from "../compiler/plan/memory.js";
import { buildSchedule } from "../compiler/plan/pipeline/build.js";
import { simulate } from "../compiler/plan/pipeline/simulate.js";
import { DEFAULT_COSTS } from "../compiler/plan/pipeline/costs.js";
import { dispatchTraffic, placeExpertGroups, routeTokens } from "../compiler/plan/node-limited-routing.js";
import { validateSpec } from "../compiler/spec-schema.js";
import { computeStats, layerParamFigures } from "../compiler/stats.js";
import type { ServingSchedule, Spec } from "../compiler/spec.js";
import { renderDiagnostic } from "../dsl/diagnostic.js";
import type { Diagnostic } from "../dsl/diagnostic.js";
import {
  scheduleOf,
  tiny,
  training,
  trainingCaseArb,
  v3,
  v3TrainWithMicrobatchSize,
  withServing,
  withTraining,
} from "./fixtures/plan-specs.js";
import { mulberry32 } from "../compiler/seeded-random.js";

function planOf(spec: Spec, name: string): Plan {
  const r = buildPlan(spec, name);
  if (r.plan === null) throw new Error(`${name}: ${r.diagnostics.map((d) => d.message).join("; ")}`);
  return r.plan;
}

function draftOf(spec: Spec, name: string): Plan {
  const r = buildPlan(spec, name);
  if (r.draft === null) throw new Error(`${name}: ${r.diagnostics.map((d) => d.message).join("; ")}`);
  return r.draft;
}

function rendered(diagnostics: readonly Diagnostic[]): string {
  return diagnostics.map((d) => renderDiagnostic(d, new Map())).join("\n\n");
}

const RUNS = { numRuns: 60, seed: 20250101 };

describe("stage partition", () => {
  it("the cost model sums to computeStats' forward and MTP FLOPs", () => {
    for (const spec of [v3(), tiny()]) {
      const t = spec.schedules.find((s) => s.kind === "training")!;
      const costs = modelCosts(spec.model, t.seqLen);
      const stats = computeStats(spec, { schedule: t.name });
      expect(costs.layers.reduce((a, b) => a + b, 0) + costs.head).toBe(stats.flopsPerToken.forward);
      expect(costs.mtpDepth * costs.mtpModule).toBe(stats.flopsPerToken.mtpForward);
    }
  });

  it("covers every layer once, contiguously, embedding first, head and MTP last (random specs)", () => {
    fc.assert(
      fc.property(trainingCaseArb, (c) => {
        expect(validateSpec(c.spec)).toEqual([]);
        const s = scheduleOf(c);
        const p = partitionStages(c.spec, s);
        expect(p.stages).toHaveLength(stageCount(s));
        let next = 0;
        for (const st of p.stages) {
          expect(st.layers.first).toBe(next);
          expect(st.layers.last).toBeGreaterThanOrEqual(st.layers.first);
          expect(st.denseLayers + st.moeLayers).toBe(st.layers.last - st.layers.first + 1);
          next = st.layers.last + 1;
          const last = st.stage === p.stages.length - 1;
          expect(st.embedding).toBe(st.stage === 0);
          expect(st.head).toBe(last);
          expect(st.mtpModules).toBe(last ? c.spec.model.mtp.depth : 0);
        }
        expect(next).toBe(c.spec.model.layers);
        expect(p.layersPerStage.reduce((a, b) => a + b, 0)).toBe(c.spec.model.layers);
      }),
      RUNS,
    );
  });

  it("minimises the largest stage cost (against brute force)", () => {
    const arb = fc.record({
      layers: fc.array(fc.integer({ min: 1, max: 20 }), { minLength: 1, maxLength: 8 }),
      head: fc.integer({ min: 0, max: 40 }),
      stagesIndex: fc.nat(),
    });
    fc.assert(
      fc.property(arb, ({ layers, head, stagesIndex }) => {
        const stages = 1 + (stagesIndex % layers.length);
        const costs: ModelCosts = { layers, kinds: layers.map(() => "moe"), embedding: 0, head, mtpModule: 0, mtpDepth: 0 };
        const runs = partitionCosts(costs, stages);
        const cost = (rs: { first: number; last: number }[]): number =>
          Math.max(...rs.map((r, k) => layers.slice(r.first, r.last + 1).reduce((a, b) => a + b, 0) + (k === rs.length - 1 ? head : 0)));
        // Every way to cut L layers into `stages` non-empty runs.
        let best = Number.POSITIVE_INFINITY;
        const cut = (from: number, k: number, acc: { first: number; last: number }[]): void => {
          if (k === stages - 1) {
            best = Math.min(best, cost([...acc, { first: from, last: layers.length - 1 }]));
            return;
          }
          for (let end = from; end <= layers.length - (stages - k); end++) cut(end + 1, k + 1, [...acc, { first: from, last: end }]);
        };
        cut(0, 0, []);
        expect(cost(runs)).toBe(best);
      }),
      { numRuns: 200, seed: 7 },
    );
  });

  it("DeepSeek-V3 PP16: 4 layers on stages 0–14, layer 60 with the head and MTP on stage 15", () => {
    const spec = v3();
    const p = partitionStages(spec, training(spec, "train"));
    expect(p.layersPerStage).toEqual([...Array(15).fill(4), 1]);
    expect(p.stages[0]).toMatchObject({ denseLayers: 3, moeLayers: 1, embedding: true });
    expect(p.stages[15]).toMatchObject({ layers: { first: 60, last: 60 }, head: true, mtpModules: 1 });
  });

  it("DualPipeV folds 2·pp stages onto pp devices as a V (device d: stages d and 2pp−1−d)", () => {
    const spec = tiny();
    const plan = planOf(spec, "dualpipev");
    expect(plan.partition!.stages).toHaveLength(4);
    const programs = plan.programs as TrainingProgram[];
    expect(programs.map((p) => p.stages.map((s) => s.stage))).toEqual([
      [0, 3],
      [1, 2],
    ]);
    // Both ends of the model on device 0: no embedding copy is needed for MTP.
    expect(plan.partition!.stages.some((s) => s.embeddingCopyForMtp)).toBe(false);
  });

  it("1F1B with MTP keeps an embedding copy on the last stage", () => {
    const plan = planOf(tiny(), "one_f_one_b");
    expect(plan.partition!.stages.map((s) => s.embeddingCopyForMtp)).toEqual([false, false, false, true]);
  });
});

describe("weights agree with compiler/stats.ts", () => {
  it("attention shapes sum to the per-layer count; the whole model to total + mtp", () => {
    for (const spec of [v3(), tiny()]) {
      const recipe = new RecipeBytes(spec.precision);
      expect(attentionWeights(spec.model, 1, recipe).params).toBe(layerParamFigures(spec.model).attentionMatmul);
      const serve = spec.schedules.find((s): s is ServingSchedule => s.kind !== "training")!;
      const stage = { ...servingStage(spec, { ...serve, mtpSpeculation: spec.model.mtp.depth }) };
      const held = heldWeights(
        spec.model,
        [stage],
        { attentionTp: 1, ffnTp: 1, expertSlots: spec.model.moe!.routedExperts, sharedInSlots: false, vocabTp: 1 },
        recipe,
        layerKinds(spec.model),
      );
      const stats = computeStats(spec);
      expect(held.groups.reduce((a, g) => a + g.params, 0)).toBe(stats.params.total + stats.params.mtp);
    }
  });
});

describe("per-rank programs", () => {
  /** Every send has the matching receive on its peer, and the other way round. */
  function checkTransfers(plan: Plan): void {
    const programs = plan.programs as TrainingProgram[];
    const sends: string[] = [];
    const recvs: string[] = [];
    for (const p of programs) {
      for (const o of p.ops) {
        if (o.send) sends.push(`${p.pipelineRank}->${o.send.peer} ${o.send.kind} dir${o.dir} mb${o.mb} ${o.send.bytes}`);
        if (o.recv) recvs.push(`${o.recv.peer}->${p.pipelineRank} ${o.recv.kind} dir${o.dir} mb${o.mb} ${o.recv.bytes}`);
        if (o.send) expect(o.send.peer).not.toBe(p.pipelineRank);
        if (o.recv) expect(o.recv.peer).not.toBe(p.pipelineRank);
        if (o.op === "W") expect([o.send, o.recv]).toEqual([null, null]);
      }
    }
    expect([...sends].sort()).toEqual([...recvs].sort());
  }

  it("sends match receives and count the simulation's messages (random specs)", () => {
    fc.assert(
      fc.property(trainingCaseArb, (c) => {
        const plan = draftOf(c.spec, c.schedule);
        checkTransfers(plan);
        const s = scheduleOf(c);
        const pipeline = buildSchedule(s.pipeline, stageCount(s), s.microbatches);
        if ("error" in pipeline) throw new Error(pipeline.error.message);
        const run = simulate(pipeline, DEFAULT_COSTS);
        if (!run.ok) throw new Error("simulation failed");
        const sends = (plan.programs as TrainingProgram[]).reduce((a, p) => a + p.ops.filter((o) => o.send !== null).length, 0);
        expect(sends).toBe(run.sim.messages);
        // Every GPU names a program and a memory class that exist, in GPU order.
        expect(plan.ranks.map((r) => r.gpu)).toEqual(plan.ranks.map((_, i) => i));
        const ids = new Set(plan.programs.map((p) => p.id));
        for (const r of plan.ranks) expect(ids.has(r.program)).toBe(true);
      }),
      RUNS,
    );
  });

  it("every tiny schedule plans, with transfers that match", () => {
    const spec = tiny();
    for (const s of spec.schedules) {
      const plan = planOf(spec, s.name);
      if (s.kind === "training") checkTransfers(plan);
      else expect(plan.programs).toHaveLength(1);
    }
  });

  it("DualPipe ranks hold stage r for one direction and P−1−r for the other", () => {
    const plan = planOf(v3TrainWithMicrobatchSize(1), "train");
    const programs = plan.programs as TrainingProgram[];
    expect(programs).toHaveLength(16);
    programs.forEach((p, r) => expect(p.stages).toEqual([{ dir: 0, stage: r }, { dir: 1, stage: 15 - r }]));
    // Pipeline activations are BF16 hidden states of one micro-batch: 4096 tokens × 7168 × 2 B.
    const f = programs[3]!.ops.find((o) => o.op === "F" && o.send !== null)!;
    expect(f.send!.bytes).toBe(4096 * 7168 * 2);
  });

  it("serving programs overlap one micro-batch's all-to-all with the other's compute", () => {
    const plan = planOf(v3(), "prefill");
    const ops = plan.programs[0]!.ops as { op: string; mb: number; stream: string }[];
    expect(ops[0]).toMatchObject({ op: "embedding", mb: 0 });
    const firstDispatch = ops.findIndex((o) => o.op === "dispatch" && o.mb === 0);
    expect(ops[firstDispatch + 1]).toMatchObject({ op: "attention", mb: 1, stream: "compute" });
    const perMb = (mb: number): number => ops.filter((o) => o.mb === mb).length;
    expect(perMb(0)).toBe(perMb(1));
  });
});

describe("experts per GPU", () => {
  function checkSlots(plan: Plan): void {
    const e = plan.experts!;
    for (const row of e.slots) {
      expect(row).toHaveLength(e.epSize * e.slotsPerGpu);
      // Every logical expert has at least one slot; every GPU the same number of slots.
      expect(new Set(row).size).toBe(e.logicalExperts);
      for (const x of row) expect(x >= 0 && x < e.logicalExperts).toBe(true);
    }
    expect(e.slots).toHaveLength(e.sameForAllLayers ? 1 : e.layers.length);
  }

  it("training: E/ep contiguous experts per GPU in every MoE layer (random specs)", () => {
    fc.assert(
      fc.property(trainingCaseArb, (c) => {
        const plan = draftOf(c.spec, c.schedule);
        const e = plan.experts!;
        const moe = c.spec.model.moe!;
        expect(e.slotsPerGpu * e.epSize).toBe(moe.routedExperts);
        expect(Number.isInteger(e.slotsPerGpu)).toBe(true);
        checkSlots(plan);
        expect(e.layers).toHaveLength(c.spec.model.layerPattern.filter((r) => r.kind === "moe").reduce((a, r) => a + r.last - r.first + 1, 0) + c.spec.model.mtp.depth);
      }),
      RUNS,
    );
  });

  it("DeepSeek-V3 prefill: 9 experts per GPU (8 routed + 1 redundant), EP32", () => {
    const plan = planOf(v3(), "prefill");
    const e = plan.experts!;
    expect(e).toMatchObject({ epSize: 32, slotsPerGpu: 9, redundantSlots: 32, logicalExperts: 256, policy: "eplb-hierarchical" });
    checkSlots(plan);
    expect(e.loadProfile?.kind).toBe("synthetic-zipf");
    expect(plan.notes.some((n) => n.includes("synthetic"))).toBe(true);
    expect(e.balance!.after).toBeLessThan(e.balance!.before);
  });

  it("DeepSeek-V3 decode: 1 expert per GPU, the shared expert served as routed, KV capacity reported", () => {
    const plan = planOf(v3(), "decode");
    const e = plan.experts!;
    expect(e).toMatchObject({ epSize: 320, slotsPerGpu: 1, logicalExperts: 257, sharedAsRouted: true });
    checkSlots(plan);
    // The shared expert, picked by every token, gets many of the 64 extra slots.
    const sharedSlots = e.slots[0]!.filter((x) => x === 256).length;
    expect(sharedSlots).toBeGreaterThan(16);
    const kv = plan.memory.classes[0]!.kvCache!;
    expect(kv.bytesPerToken).toBe(576 * 2 * 62); // 61 layers + the MTP module used for speculation
    expect(kv.capacityTokens).toBeGreaterThanOrEqual(kv.neededTokens);
    expect(kv.replicatedOver).toBe(4);
  });

  it("serving on tiny: every schedule places its experts", () => {
    for (const name of ["prefill", "decode"]) checkSlots(planOf(tiny(), name));
  });
});

describe("expected all-to-all traffic", () => {
  it("hypergeometric miss probability", () => {
    expect(missProbability(10, 0, 3)).toBe(1);
    expect(missProbability(10, 8, 3)).toBe(0);
    expect(missProbability(4, 1, 1)).toBeCloseTo(0.75, 12);
    expect(missProbability(4, 2, 2)).toBeCloseTo(1 / 6, 12);
  });

  it("copies sum to the distinct target GPUs; one node means NVLink only", () => {
    const c = expectedCopies({ slotsPerGpu: 4, ep: 64, gpusPerNode: 8, picks: 8, candidateNodes: 4 });
    // Each target GPU gets its copy over NVLink unless it has the sender's in-node index (the sender
    // itself, or the relay an IB copy lands on): one such GPU per candidate node, 1/8 of the targets.
    expect(c.nvlink + c.distinctGpus / 8).toBeCloseTo(c.distinctGpus, 9);
    expect(c.ib).toBeCloseTo(c.distinctNodes * (1 - 1 / 8), 9);
    expect(c.distinctNodes).toBeLessThanOrEqual(4);
    const one = expectedCopies({ slotsPerGpu: 2, ep: 4, gpusPerNode: 8, picks: 2, candidateNodes: 1 });
    expect(one.ib).toBe(0);
    expect(one.nvlink + one.local).toBeCloseTo(one.distinctGpus, 12);
  });

  /** A seeded uniform generator for scores. */
  function scores(n: number, seed: number): Float32Array {
    const next = mulberry32(seed);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = next();
    return out;
  }

  for (const nodeLimit of [null, 2] as const) {
    it(`agrees with routing real tokens through dispatchTraffic (node limit ${String(nodeLimit)})`, () => {
      const experts = 64;
      const ep = 16;
      const gpusPerNode = 4;
      const tokensPerGpu = 512;
      const placement = placeExpertGroups(experts, 4, ep, gpusPerNode);
      const route = routeTokens(scores(ep * tokensPerGpu * experts, 11), null, {
        experts,
        groups: 1,
        topGroups: 1,
        topK: 6,
        nodeLimit,
        expertToNode: placement.expertToNode,
      });
      const report = dispatchTraffic(route, placement, { hidden: 128, tokensPerGpu });
      const tokens = route.tokens;
      const expected = expectedCopies({ slotsPerGpu: experts / ep, ep, gpusPerNode, picks: 6, candidateNodes: nodeLimit ?? 4 });
      // The gate's node-limited top-k is not exactly a uniform K-subset of the candidates (a node is
      // chosen for its high scores); the closed form stays within 5% of the routed figures.
      const within = (measured: number, model: number): void => expect(Math.abs(measured / model - 1)).toBeLessThan(0.05);
      within(report.copies.ib / tokens, expected.ib);
      within(report.copies.nvlink / tokens, expected.nvlink);
      within(report.copies.local / tokens, expected.local);
      within(report.perToken.meanGpus, expected.distinctGpus);
      within(report.perToken.meanNodes, expected.distinctNodes);
    });
  }
});

describe("plan JSON and bundle files", () => {
  it("same input, same bytes (random specs)", () => {
    fc.assert(
      fc.property(trainingCaseArb, (c) => {
        const a = draftOf(structuredClone(c.spec), c.schedule);
        const b = draftOf(structuredClone(c.spec), c.schedule);
        expect(planJson(a)).toBe(planJson(b));
        expect([...planBundleFiles(a)]).toEqual([...planBundleFiles(b)]);
      }),
      { numRuns: 20, seed: 3 },
    );
  });

  it("JSON has memory.peakBytes and memory.perGpu for every GPU", () => {
    for (const name of ["train", "prefill", "decode"]) {
      const spec = name === "train" ? v3TrainWithMicrobatchSize(1) : v3();
      const plan = planOf(spec, name);
      const doc = JSON.parse(planJson(plan)) as { memory: { peakBytes: number; perGpu: { gpu: number; totalBytes: number }[] } };
      expect(doc.memory.perGpu).toHaveLength(plan.gpus);
      expect(doc.memory.peakBytes).toBe(Math.max(...doc.memory.perGpu.map((g) => g.totalBytes)));
    }
  });

  it("bundle files: under plan/, valid JSON, one file per program, V3 well under 10 MB", () => {
    const plan = planOf(v3TrainWithMicrobatchSize(1), "train");
    const files = planBundleFiles(plan);
    expect([...files.keys()].sort()).toEqual(["plan/experts.json", "plan/plan.json", ...plan.programs.map((p) => `plan/programs/${p.id}.json`)].sort());
    let bytes = 0;
    for (const [path, text] of files) {
      expect(path.startsWith("plan/")).toBe(true);
      expect(text.endsWith("\n")).toBe(true);
      JSON.parse(text);
      bytes += Buffer.byteLength(text);
    }
    expect(bytes).toBeLessThan(10e6);
  });

  it("summary text (tiny dualpipe)", () => {
    expect(planSummaryText(planOf(tiny(), "dualpipe"))).toMatchSnapshot();
  });
});

describe("DeepSeek-V3 plans", () => {
  it("train with one sequence per micro-batch fits 80 GB on every GPU", () => {
    const spec = v3TrainWithMicrobatchSize(1);
    const plan = planOf(spec, "train");
    expect(plan.memory.budgetBytes).toBe(80e9);
    expect(plan.memory.peakBytes).toBeLessThan(80e9);
    for (const g of plan.memory.perGpu) expect(g.totalBytes).toBeLessThan(80e9);
    expect(plan.gpus).toBe(2048);
    expect(plan.memory.classes).toHaveLength(16);
  });

  it("train with three sequences per micro-batch (microbatches = 40) does not fit: DSV5501", () => {
    const r = buildPlan(v3TrainWithMicrobatchSize(3), "train");
    expect(r.plan).toBeNull();
    expect(r.draft).not.toBeNull();
    expect(r.diagnostics.map((d) => d.code)).toEqual(["DSV5501"]);
    expect(rendered(r.diagnostics)).toMatchSnapshot();
  });

  it("DSV5501: V3 with pp = 1 on 64 GPUs", () => {
    const base = v3();
    const spec: Spec = {
      ...withTraining(base, "train", { pipeline: "1f1b", pp: 1, dp: 64, ep: 64, microbatches: 240 }),
      cluster: { ...base.cluster, nodes: 8, gpus: 64 },
    };
    const r = buildPlan(spec, "train");
    expect(r.plan).toBeNull();
    expect(r.diagnostics.map((d) => d.code)).toEqual(["DSV5501"]);
    expect(rendered(r.diagnostics)).toMatchSnapshot();
  });

  it("DSV5502: a decode batch whose KV cache does not fit", () => {
    const r = buildPlan(withServing(v3(), "decode", { batchPerGpu: 512 }), "decode");
    expect(r.plan).toBeNull();
    expect(r.diagnostics.map((d) => d.code)).toEqual(["DSV5502"]);
    expect(rendered(r.diagnostics)).toMatchSnapshot();
  });

  it("DSV5503: shared experts served as routed with no slot left for them", () => {
    const r = buildPlan(withServing(tiny(), "decode", { moe: { ep: 8, redundantExperts: 0, sharedAsRouted: true } }), "decode");
    expect(r.plan).toBeNull();
    expect(r.draft).toBeNull();
    expect(r.diagnostics.map((d) => d.code)).toEqual(["DSV5503"]);
    expect(rendered(r.diagnostics)).toMatchSnapshot();
  });

  it("an unknown schedule is DSV9002", () => {
    const r = buildPlan(tiny(), "dualpipe_");
    expect(r.diagnostics.map((d) => d.code)).toEqual(["DSV9002"]);
  });
});
