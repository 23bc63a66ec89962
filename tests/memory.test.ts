/**
 * The memory plan (compiler/plan/memory.ts and its byte models): monotone in micro-batches and in
 * sequence length (property tests over generated specs), consistent totals, ZeRO sharding,
 * DualPipe's two stages per rank, the FP8 activation cache list, and the DeepSeek-V3 tables.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";

import { buildPlan } from "../compiler/plan/index.js";
import type { MemoryClass, Plan } from "../compiler/plan/index.js";
import { layerCache } from "../compiler/plan/activations.js";
import { RecipeBytes } from "../compiler/plan/recipe-bytes.js";
import type { Spec } from "../compiler/spec.js";
import { scheduleOf, tiny, training, trainingCaseArb, v3, v3TrainWithMicrobatchSize, withServing, withTraining } from "./fixtures/plan-specs.js";

function draftOf(spec: Spec, name: string): Plan {
  const r = buildPlan(spec, name);
  if (r.draft === null) throw new Error(`${name}: ${r.diagnostics.map((d) => d.message).join("; ")}`);
  return r.draft;
}

function category(c: MemoryClass, name: string): number {
  return c.byCategory.find((b) => b.category === name)?.bytes ?? 0;
}

const RUNS = { numRuns: 60, seed: 424242 };

describe("memory is monotone", () => {
  it("in micro-batches, at a fixed micro-batch size and schedule kind (random specs)", () => {
    fc.assert(
      fc.property(trainingCaseArb, fc.integer({ min: 1, max: 3 }), (c, more) => {
        const s = scheduleOf(c);
        const step = s.pipeline === "dualpipe" ? 2 * more : more;
        const bigger = s.microbatches + step;
        const spec2 = withTraining(c.spec, c.schedule, { microbatches: bigger, globalBatch: s.dp * bigger * s.microbatchSize });
        expect(training(spec2, c.schedule).microbatchSize).toBe(s.microbatchSize);
        const a = draftOf(c.spec, c.schedule).memory;
        const b = draftOf(spec2, c.schedule).memory;
        expect(b.peakBytes).toBeGreaterThanOrEqual(a.peakBytes);
        a.perGpu.forEach((g, i) => expect(b.perGpu[i]!.totalBytes).toBeGreaterThanOrEqual(g.totalBytes));
      }),
      RUNS,
    );
  });

  // The balanced partition depends on seq_len (the attention core's cost grows with it, the head's
  // does not), so a longer sequence can move a layer off a GPU. With the stages' layers held fixed,
  // every GPU's bytes are monotone in seq_len; with the balanced partition, whenever it is unchanged.
  it("in sequence length, with the stages' layers held fixed (random specs)", () => {
    fc.assert(
      fc.property(trainingCaseArb, (c) => {
        const s = scheduleOf(c);
        const spec2 = withTraining(c.spec, c.schedule, { seqLen: 2 * s.seqLen });
        const planA = draftOf(c.spec, c.schedule);
        const split = planA.partition!.layersPerStage;
        const r = buildPlan(spec2, c.schedule, { layersPerStage: split });
        const a = planA.memory;
        const b = r.draft!.memory;
        expect(r.draft!.partition!.layersPerStage).toEqual(split);
        expect(b.peakBytes).toBeGreaterThanOrEqual(a.peakBytes);
        a.perGpu.forEach((g, i) => expect(b.perGpu[i]!.totalBytes).toBeGreaterThanOrEqual(g.totalBytes));
      }),
      RUNS,
    );
  });

  it("in sequence length, with the balanced partition whenever it does not move (random specs)", () => {
    fc.assert(
      fc.property(trainingCaseArb, (c) => {
        const s = scheduleOf(c);
        const planA = draftOf(c.spec, c.schedule);
        const planB = draftOf(withTraining(c.spec, c.schedule, { seqLen: 2 * s.seqLen }), c.schedule);
        fc.pre(JSON.stringify(planA.partition!.layersPerStage) === JSON.stringify(planB.partition!.layersPerStage));
        expect(planB.memory.peakBytes).toBeGreaterThanOrEqual(planA.memory.peakBytes);
        planA.memory.perGpu.forEach((g, i) => expect(planB.memory.perGpu[i]!.totalBytes).toBeGreaterThanOrEqual(g.totalBytes));
      }),
      RUNS,
    );
  });

  it("a given split is used as given", () => {
    const plan = draftOf(tiny(), "one_f_one_b");
    const r = buildPlan(tiny(), "one_f_one_b", { layersPerStage: [1, 1, 1, 1] });
    expect(r.draft!.partition!.layersPerStage).toEqual([1, 1, 1, 1]);
    expect(plan.partition!.layersPerStage).toHaveLength(4);
    expect(() => buildPlan(tiny(), "one_f_one_b", { layersPerStage: [2, 2] })).toThrow(/layers per stage/);
  });

  it("serving: the KV need grows and the capacity shrinks with the batch; both with seq_len", () => {
    const spec = v3();
    let last: { need: number; cap: number; total: number } | null = null;
    for (const batchPerGpu of [1, 16, 64, 128, 192]) {
      const kv = draftOf(withServing(spec, "decode", { batchPerGpu }), "decode").memory;
      const c = kv.classes[0]!;
      const cur = { need: c.kvCache!.neededTokens, cap: c.kvCache!.capacityTokens, total: c.totalBytes };
      if (last !== null) {
        expect(cur.need).toBeGreaterThan(last.need);
        expect(cur.cap).toBeLessThanOrEqual(last.cap);
        expect(cur.total).toBeGreaterThan(last.total);
      }
      last = cur;
    }
    const short = draftOf(withServing(spec, "prefill", { seqLen: 2048 }), "prefill").memory.peakBytes;
    const long = draftOf(spec, "prefill").memory.peakBytes;
    expect(long).toBeGreaterThan(short);
  });
});

describe("memory totals are consistent", () => {
  it("items sum to categories, categories to totals; perGpu names its class; peak is the max (random specs)", () => {
    fc.assert(
      fc.property(trainingCaseArb, (c) => {
        const m = draftOf(c.spec, c.schedule).memory;
        for (const cls of m.classes) {
          expect(cls.byCategory.reduce((a, b) => a + b.bytes, 0)).toBe(cls.totalBytes);
          expect(cls.items.reduce((a, b) => a + b.bytes, 0)).toBe(cls.totalBytes);
          for (const i of cls.items) expect(Number.isInteger(i.bytes) && i.bytes >= 0).toBe(true);
        }
        const byId = new Map(m.classes.map((cl) => [cl.id, cl]));
        for (const g of m.perGpu) expect(byId.get(g.class)!.totalBytes).toBe(g.totalBytes);
        expect(m.classes.reduce((a, cl) => a + cl.gpuCount, 0)).toBe(m.perGpu.length);
        expect(m.peakBytes).toBe(Math.max(...m.perGpu.map((g) => g.totalBytes)));
        expect(m.perGpu[m.peakGpu]!.totalBytes).toBe(m.peakBytes);
        expect(m.fits).toBe(m.peakBytes <= m.budgetBytes);
      }),
      RUNS,
    );
  });

  it("live chunks at the activation peak never exceed the schedule's chunk peak", () => {
    fc.assert(
      fc.property(trainingCaseArb, (c) => {
        const plan = draftOf(c.spec, c.schedule);
        plan.memory.classes.forEach((cls, r) => {
          const chunks = cls.activationChunks!.reduce((a, x) => a + x.chunks, 0);
          const program = plan.programs[r]!;
          if (program.kind !== "training") throw new Error("expected a training program");
          expect(chunks).toBeLessThanOrEqual(program.activationPeakChunks);
        });
      }),
      RUNS,
    );
  });
});

describe("optimizer states, gradients and DualPipe's parameter copies", () => {
  it("ZeRO-1 shards master weights and moments, not gradients; ZeRO-2 also shards gradients", () => {
    const spec = tiny();
    const at = (zero: 0 | 1 | 2): MemoryClass => draftOf(withTraining(spec, "dualpipe", { zero }), "dualpipe").memory.classes[0]!;
    const [z0, z1, z2] = [at(0), at(1), at(2)];
    expect(category(z1, "gradients")).toBe(category(z0, "gradients"));
    expect(category(z1, "master_weights")).toBeLessThan(category(z0, "master_weights"));
    expect(category(z1, "optimizer_states")).toBeLessThan(category(z0, "optimizer_states"));
    expect(category(z2, "gradients")).toBeLessThan(category(z1, "gradients"));
    expect(category(z1, "weights")).toBe(category(z0, "weights"));
    // FP32 master = 4 B and BF16 m + v = 4 B per parameter: equal, sharded or not.
    expect(category(z0, "master_weights")).toBe(category(z0, "optimizer_states"));
  });

  it("a DualPipe rank holds the parameters of two stages (2× of 1F1B)", () => {
    const spec = tiny();
    const dual = draftOf(spec, "dualpipe").memory.classes;
    const oneF = draftOf(withTraining(spec, "dualpipe", { pipeline: "1f1b" }), "dualpipe").memory.classes;
    const embeddingCopy = oneF[1]!.items.filter((i) => i.category === "weights" && i.name === "embedding").reduce((a, i) => a + i.bytes, 0);
    expect(embeddingCopy).toBeGreaterThan(0); // 1F1B's last stage keeps an embedding copy for MTP
    const w = (c: MemoryClass): number => category(c, "weights");
    expect(w(dual[0]!)).toBe(w(oneF[0]!) + w(oneF[1]!) - embeddingCopy);
    expect(w(dual[1]!)).toBe(w(dual[0]!));
    expect(category(dual[0]!, "gradients")).toBeGreaterThan(category(oneF[0]!, "gradients"));
  });
});

describe("byte models", () => {
  it("an FP8 weight carries one FP32 scale per 128×128 block", () => {
    const r = new RecipeBytes(v3().precision);
    expect(r.gemmWeight(7168, 2048)).toBe(7168 * 2048 + 4 * 56 * 16);
    expect(r.gemmWeight(130, 1)).toBe(130 + 4 * 2);
    expect(new RecipeBytes({ ...v3().precision, mode: "bf16" }).gemmWeight(7168, 2048)).toBe(2 * 7168 * 2048);
  });

  it("cached rows: E4M3 + 1×128 scales, E5M6 at 12 bits, BF16 without scales", () => {
    const r = new RecipeBytes(v3().precision);
    expect(r.dispatchCopy(7168)).toBe(7168 + 4 * 56);
    expect(r.combineCopy(7168)).toBe(2 * 7168);
    expect(r.cachedRow("attn_out_proj_input", 16384)).toBe(16384 * 1.5 + 4 * 128);
    expect(r.swigluOutputRecomputed()).toBe(true);
  });

  it("the DeepSeek-V3 FP8 activation cache per token: MoE layer 156,736 B, dense layer 96,512 B", () => {
    const spec = v3();
    const r = new RecipeBytes(spec.precision);
    const t = { tokens: 1, tp: 1, sp: false };
    const moe = layerCache(spec.model, r, "moe", t);
    const dense = layerCache(spec.model, r, "dense", t);
    // layer input 14336 + q latent 3072 + kv latent & RoPE key 1152 + LSE 512 + o_proj input (E5M6) 24576 + 512
    // + residual 14336 = 58,496; MoE: gate 1024 + 64, dispatched rows 8 × 7392, expert SwiGLU inputs 8 × 4224,
    // shared SwiGLU input 4224; dense: SwiGLU input 36864 + 1152.
    expect(moe.reduce((a, c) => a + c.bytes, 0)).toBe(58496 + 1088 + 8 * 7392 + 8 * 4224 + 4224);
    expect(moe.reduce((a, c) => a + c.bytes, 0)).toBe(156736);
    expect(dense.reduce((a, c) => a + c.bytes, 0)).toBe(58496 + 36864 + 1152);
    // Without the recompute list, the normed GEMM inputs and the up-projected q, k, v are cached too.
    const none = new RecipeBytes({ ...spec.precision, recompute: [] });
    expect(layerCache(spec.model, none, "moe", t).reduce((a, c) => a + c.bytes, 0)).toBeGreaterThan(156736);
  });

  it("BF16 mode needs more memory than the FP8 recipe", () => {
    const spec = v3TrainWithMicrobatchSize(1);
    const fp8 = draftOf(spec, "train").memory.classes[1]!;
    const bf16 = draftOf({ ...spec, precision: { ...spec.precision, mode: "bf16" } }, "train").memory.classes[1]!;
    expect(category(bf16, "weights")).toBeGreaterThan(category(fp8, "weights"));
    expect(category(bf16, "activations")).toBeGreaterThan(category(fp8, "activations"));
  });
});

describe("DeepSeek-V3 memory tables", () => {
  const table = (plan: Plan): Record<string, Record<string, number>> =>
    Object.fromEntries(plan.memory.classes.map((c) => [c.id, Object.fromEntries([...c.byCategory.map((b) => [b.category, b.bytes]), ["total", c.totalBytes]])]));

  it("train (one sequence per micro-batch): 17 = PP+1 live chunks on the middle ranks, under 80 GB", () => {
    const plan = draftOf(v3TrainWithMicrobatchSize(1), "train");
    const mid = plan.memory.classes[7]!;
    expect(mid.activationChunks!.reduce((a, c) => a + c.chunks, 0)).toBe(17);
    expect(plan.memory.peakBytes).toBeLessThan(80e9);
    // Ranks 0 and 15 (embedding, head and MTP) are alike, and so are ranks 1–14.
    const t = table(plan);
    for (let r = 2; r < 15; r++) expect(t[`pp${String(r).padStart(2, "0")}`]).toEqual(t["pp01"]);
    expect(t["pp15"]).toEqual(t["pp00"]);
    expect({ pp00: t["pp00"], pp01: t["pp01"] }).toMatchSnapshot();
  });

  it("prefill and decode", () => {
    for (const name of ["prefill", "decode"]) {
      const plan = draftOf(v3(), name);
      expect({ table: table(plan), kv: plan.memory.classes[0]!.kvCache }).toMatchSnapshot(name);
    }
  });
});
