import { describe, expect, it } from "vitest";
import fc from "fast-check";

import { computeStats } from "../compiler/stats.js";
import type { Stats } from "../compiler/stats.js";
import type {
  Activation,
  AttentionSpec,
  LayerRun,
  MhaSpec,
  MoeSpec,
  ServingSchedule,
  Spec,
  TrainingSchedule,
} from "../compiler/spec.js";
import { deepseekV2LiteSpec, deepseekV3Spec } from "./fixtures/spec-fixtures.js";

/** Sum of the main-model breakdown entries (those that `total` covers). */
function breakdownTotal(stats: Stats): number {
  return stats.params.breakdown.filter((entry) => entry.inTotal).reduce((sum, entry) => sum + entry.params, 0);
}

function breakdownEntry(stats: Stats, component: string): number {
  const entry = stats.params.breakdown.find((candidate) => candidate.component === component);
  if (entry === undefined) throw new Error(`no breakdown entry '${component}'`);
  return entry.params;
}

function trainingSchedule(name: string, seqLen: number): TrainingSchedule {
  const base = deepseekV3Spec().schedules[0] as TrainingSchedule;
  return { ...base, name, seqLen };
}

function decodeSchedule(name: string, seqLen: number): ServingSchedule {
  return {
    name,
    kind: "decode",
    gpus: 320,
    attention: { tp: 4, sp: true, dp: 80 },
    moe: { ep: 320, redundantExperts: 64, sharedAsRouted: true },
    microbatches: 2,
    batchPerGpu: 1,
    seqLen,
    mtpSpeculation: 1,
    nodeLimit: null,
    commSms: 0,
  };
}

/**
 * A Llama-3-8B-shaped dense GQA model (vocab 128256, hidden 4096, 32 layers, 32 query / 8 KV heads
 * of 128, SwiGLU 14336, untied): its published checkpoint holds 8,030,261,248 weights.
 */
function gqaSpec(): Spec {
  const base = deepseekV2LiteSpec();
  return {
    ...base,
    model: {
      ...base.model,
      name: "gqa-8b",
      vocab: 128256,
      hidden: 4096,
      layers: 32,
      layerPattern: [{ kind: "dense", first: 0, last: 31 }],
      attention: {
        kind: "gqa",
        heads: 32,
        kvHeads: 8,
        headDim: 128,
        rope: { theta: 500000, yarn: null },
        softmaxScale: 128 ** -0.5,
      },
      denseFfn: { intermediate: 14336, activation: "swiglu" },
      moe: null,
      mtp: { depth: 0, lossWeight: 0 },
    },
  };
}

describe("computeStats on DeepSeek-V3", () => {
  const stats = computeStats(deepseekV3Spec());

  it("reports the model shape", () => {
    expect(stats.model).toEqual({
      name: "DeepSeek-V3",
      vocab: 129280,
      hidden: 7168,
      layers: 61,
      denseLayers: 3,
      moeLayers: 58,
      attention: "mla",
    });
  });

  it("matches FACTS.md's parameter counts exactly", () => {
    expect(stats.params.total).toBe(671_026_419_200);
    expect(stats.params.active).toBe(36_625_618_432);
    expect(stats.params.activeWithEmbedding).toBe(37_552_297_472);
    expect(stats.params.mtp).toBe(11_610_068_224);
    expect(stats.params.approximate).toBe(false);
    expect(breakdownEntry(stats, "attention") / 61).toBe(187_107_328);
    expect(breakdownEntry(stats, "embedding")).toBe(926_679_040);
    expect(breakdownEntry(stats, "output_head")).toBe(926_679_040);
  });

  it("derives the same totals from the breakdown in FACTS.md", () => {
    // Entries of FACTS.md's parameter table, and the architecture table's hyperparameters.
    const mlaPerLayer = 187_107_328;
    const oneExpert = 44_040_192;
    const embedding = 926_679_040;
    const hidden = 7168;
    const [layers, denseLayers] = [61, 3];
    const moeLayers = layers - denseLayers;
    const [routed, shared, perToken] = [256, 1, 8];
    const denseFfn = 3 * 7168 * 18432;
    const gate = 256 * 7168 + 256; // weight + the selection bias
    const layerNorms = 2 * hidden;
    const finalNorm = hidden;

    const total =
      2 * embedding +
      layers * (mlaPerLayer + layerNorms) +
      denseLayers * denseFfn +
      moeLayers * ((routed + shared) * oneExpert + gate) +
      finalNorm;
    const active =
      embedding + // the output head
      layers * (mlaPerLayer + layerNorms) +
      denseLayers * denseFfn +
      moeLayers * ((perToken + shared) * oneExpert + gate) +
      finalNorm;
    const mtp =
      2 * hidden + // enorm, hnorm
      2 * hidden * hidden + // eh_proj
      mlaPerLayer + layerNorms + (routed + shared) * oneExpert + gate + // one MoE block
      hidden; // shared_head.norm

    expect(stats.params.total).toBe(total);
    expect(stats.params.active).toBe(active);
    expect(stats.params.activeWithEmbedding).toBe(active + embedding);
    expect(stats.params.mtp).toBe(mtp);
    expect(breakdownEntry(stats, "moe_routed_experts")).toBe(moeLayers * routed * oneExpert);
    expect(breakdownEntry(stats, "moe_shared_experts")).toBe(moeLayers * shared * oneExpert);
    expect(breakdownEntry(stats, "moe_gate")).toBe(moeLayers * gate);
    expect(breakdownEntry(stats, "dense_ffn")).toBe(denseLayers * denseFfn);
    expect(breakdownEntry(stats, "norms")).toBe(layers * layerNorms + finalNorm);
  });

  it("has a breakdown in a fixed order that sums to total, MTP beside it", () => {
    expect(stats.params.breakdown.map((entry) => entry.component)).toEqual([
      "embedding",
      "output_head",
      "attention",
      "dense_ffn",
      "moe_routed_experts",
      "moe_shared_experts",
      "moe_gate",
      "norms",
      "mtp",
    ]);
    expect(breakdownTotal(stats)).toBe(stats.params.total);
    expect(stats.params.breakdown.filter((entry) => !entry.inTotal)).toEqual([
      { component: "mtp", params: stats.params.mtp, inTotal: false },
    ]);
  });

  it("sizes the MLA KV cache (576 elements per layer-token; FP8 as FlashMLA)", () => {
    expect(stats.kvCache.elementsPerTokenPerLayer).toBe(576);
    expect(stats.kvCache.elementsPerToken).toBe(35_136);
    expect(stats.kvCache.bytesPerTokenPerLayerBf16).toBe(1152);
    expect(stats.kvCache.bytesPerTokenBf16).toBe(70_272);
    expect(stats.kvCache.bytesPerTokenPerLayerFp8).toBe(512 + 4 * 4 + 64 * 2);
    expect(stats.kvCache.bytesPerTokenFp8).toBe(656 * 61);
    expect(stats.kvCache.fp8Layout).toMatch(/E4M3/);
    expect(stats.kvCache.fp8Layout).toMatch(/BF16/);
  });

  it("counts FLOPs per token by the stated convention", () => {
    const flops = stats.flopsPerToken;
    expect(flops.schedule).toBe("train");
    expect(flops.seqLen).toBe(4096);
    // Matmul weights: active minus every RMSNorm weight (2 per layer, the final one, MLA's two
    // latent norms per layer) and the 58 gate biases.
    const norms = 61 * 2 * 7168 + 7168 + 61 * (1536 + 512);
    const matmulWeights = 36_625_618_432 - norms - 58 * 256;
    expect(flops.forwardMatmul).toBe(2 * matmulWeights);
    // QKᵀ with d_qk 192 and AV with d_v 128 over 128 heads at average context 2048.
    const attentionPerLayer = 2 * 128 * 192 * 2048 + 2 * 128 * 128 * 2048;
    expect(flops.forwardAttention).toBe(61 * attentionPerLayer);
    expect(flops.forward).toBe(flops.forwardMatmul + flops.forwardAttention);
    // MTP: eh_proj, one MoE block's touched weights, the output head again, one attention core.
    const mtpMatmul =
      2 * 7168 * 7168 + (187_107_328 - 1536 - 512) + 256 * 7168 + 9 * 44_040_192 + 926_679_040;
    expect(flops.mtpForward).toBe(2 * mtpMatmul + attentionPerLayer);
    expect(flops.training).toBe(3 * (flops.forward + flops.mtpForward));
    expect(flops.convention).toMatch(/2·m·k·n/);
  });

  it("is JSON-serialisable and deterministic", () => {
    const again = computeStats(deepseekV3Spec());
    expect(JSON.stringify(again)).toBe(JSON.stringify(stats));
    expect(JSON.parse(JSON.stringify(stats))).toEqual(stats);
    expect(Object.keys(stats)).toEqual(["model", "params", "kvCache", "flopsPerToken"]);
    expect(Object.keys(stats.params)).toEqual([
      "total",
      "active",
      "activeWithEmbedding",
      "mtp",
      "approximate",
      "breakdown",
    ]);
  });
});

describe("computeStats on DeepSeek-V2-Lite", () => {
  const stats = computeStats(deepseekV2LiteSpec());

  it("matches the checkpoint's weight count (full-rank q_proj, no gate bias)", () => {
    expect(stats.params.total).toBe(15_706_484_224);
    expect(breakdownEntry(stats, "moe_gate")).toBe(26 * 64 * 2048);
    expect(breakdownEntry(stats, "attention")).toBe(
      27 * (2048 * 16 * 192 + 2048 * 576 + 512 + 512 * 16 * 256 + 16 * 128 * 2048),
    );
    expect(breakdownTotal(stats)).toBe(stats.params.total);
  });

  it("has no MTP and falls back to seqLen 4096 without schedules", () => {
    expect(stats.params.mtp).toBe(0);
    expect(stats.flopsPerToken.mtpForward).toBe(0);
    expect(stats.flopsPerToken.schedule).toBeNull();
    expect(stats.flopsPerToken.seqLen).toBe(4096);
  });

  it("activates 6 routed + 2 shared experts per MoE layer", () => {
    const expert = 3 * 2048 * 1408;
    expect(stats.params.total - stats.params.active).toBe(102400 * 2048 + 26 * (64 - 6) * expert);
  });
});

describe("computeStats conventions", () => {
  it("counts a tied embedding once", () => {
    const untied = deepseekV3Spec();
    const tied = deepseekV3Spec();
    tied.model.tieEmbeddings = true;
    const [a, b] = [computeStats(untied), computeStats(tied)];
    expect(a.params.total - b.params.total).toBe(129280 * 7168);
    expect(breakdownEntry(b, "output_head")).toBe(0);
    expect(breakdownTotal(b)).toBe(b.params.total);
    // The head is the table: already in `active`, and still run for every token.
    expect(b.params.active).toBe(a.params.active);
    expect(b.params.activeWithEmbedding).toBe(b.params.active);
    expect(b.flopsPerToken.forward).toBe(a.flopsPerToken.forward);
  });

  it("sizes a GQA model and its KV cache", () => {
    const stats = computeStats(gqaSpec());
    expect(stats.params.total).toBe(8_030_261_248);
    expect(stats.model.attention).toBe("gqa");
    expect(stats.kvCache.elementsPerTokenPerLayer).toBe(2 * 8 * 128);
    expect(stats.kvCache.bytesPerTokenPerLayerBf16).toBe(4096);
    expect(stats.kvCache.bytesPerTokenBf16).toBe(4096 * 32);
    // E4M3 elements plus one FP32 scale per 128 elements of each K and V head.
    expect(stats.kvCache.bytesPerTokenPerLayerFp8).toBe(2 * 8 * (128 + 4));
    expect(stats.kvCache.bytesPerTokenFp8).toBe(2 * 8 * 132 * 32);
    // A dense model activates everything but the embedding table.
    expect(stats.params.active).toBe(stats.params.total - 128256 * 4096);
    // Attention core uses the query heads: 2·32·(128+128)·ctx per layer.
    expect(stats.flopsPerToken.forwardAttention).toBe(32 * 2 * 32 * 256 * 2048);
  });

  it("rounds FP8 scale groups up per head", () => {
    const spec = gqaSpec();
    spec.model.attention = { ...(spec.model.attention as MhaSpec), headDim: 192 };
    expect(computeStats(spec).kvCache.bytesPerTokenPerLayerFp8).toBe(2 * 8 * (192 + 2 * 4));
  });

  it("picks the schedule for seqLen: named, else first training, else first", () => {
    const spec = deepseekV3Spec();
    spec.schedules = [decodeSchedule("decode", 32768), trainingSchedule("long", 8192), trainingSchedule("short", 1024)];
    expect(computeStats(spec).flopsPerToken).toMatchObject({ schedule: "long", seqLen: 8192 });
    expect(computeStats(spec, { schedule: "short" }).flopsPerToken).toMatchObject({ schedule: "short", seqLen: 1024 });
    expect(computeStats(spec, { schedule: "decode" }).flopsPerToken).toMatchObject({ seqLen: 32768 });
    spec.schedules = [decodeSchedule("decode", 32768)];
    expect(computeStats(spec).flopsPerToken.seqLen).toBe(32768);
    expect(() => computeStats(spec, { schedule: "nope" })).toThrow(/no schedule named 'nope'.*'decode'/);
  });

  it("flags figures beyond 2^53 instead of failing", () => {
    const spec = deepseekV3Spec();
    spec.model.vocab = 2 ** 40;
    const stats = computeStats(spec);
    expect(stats.params.approximate).toBe(true);
    expect(Number.isFinite(stats.params.total)).toBe(true);
    expect(stats.params.total).toBeGreaterThan(Number.MAX_SAFE_INTEGER);
  });

  it("counts a GELU dense model with 2 matrices per FFN", () => {
    const spec = gqaSpec();
    spec.model.denseFfn = { intermediate: 14336, activation: "gelu" };
    expect(computeStats(gqaSpec()).params.total - computeStats(spec).params.total).toBe(32 * 4096 * 14336);
  });
});

/** Parameters of the random small specs the properties run on. */
interface SmallModel {
  vocab: number;
  hidden: number;
  layers: number;
  denseLayers: number;
  attention: AttentionSpec;
  denseIntermediate: number;
  denseActivation: Activation;
  moe: MoeSpec;
  mtpDepth: number;
  tied: boolean;
  seqLen: number;
}

const rope = { theta: 10000, yarn: null };

const mlaArb: fc.Arbitrary<AttentionSpec> = fc
  .record({
    heads: fc.integer({ min: 1, max: 16 }),
    qLoraRank: fc.option(fc.integer({ min: 1, max: 256 }), { nil: null }),
    kvLoraRank: fc.integer({ min: 1, max: 512 }),
    qkNopeHeadDim: fc.integer({ min: 1, max: 128 }),
    ropeHalf: fc.integer({ min: 1, max: 32 }),
    vHeadDim: fc.integer({ min: 1, max: 128 }),
  })
  .map(({ ropeHalf, ...dims }) => ({
    kind: "mla" as const,
    ...dims,
    qkRopeHeadDim: 2 * ropeHalf,
    rope,
    softmaxScale: (dims.qkNopeHeadDim + 2 * ropeHalf) ** -0.5,
  }));

const mhaArb: fc.Arbitrary<AttentionSpec> = fc
  .record({
    grouped: fc.boolean(),
    kvHeads: fc.integer({ min: 1, max: 8 }),
    group: fc.integer({ min: 1, max: 4 }),
    headDim: fc.integer({ min: 1, max: 64 }).map((half) => 2 * half),
  })
  .map(({ grouped, kvHeads, group, headDim }) => ({
    kind: grouped ? ("gqa" as const) : ("mha" as const),
    heads: grouped ? kvHeads * group : kvHeads,
    kvHeads,
    headDim,
    rope,
    softmaxScale: headDim ** -0.5,
  }));

const moeArb: fc.Arbitrary<MoeSpec> = fc
  .record({
    routedExperts: fc.integer({ min: 1, max: 64 }),
    sharedExperts: fc.integer({ min: 0, max: 2 }),
    perTokenFraction: fc.double({ min: 0, max: 1, noNaN: true }),
    expertIntermediate: fc.integer({ min: 1, max: 512 }),
    activation: fc.constantFrom<Activation>("swiglu", "gelu"),
    bias: fc.boolean(),
  })
  .map(({ routedExperts, perTokenFraction, bias, ...rest }) => ({
    routedExperts,
    expertsPerToken: 1 + Math.floor(perTokenFraction * (routedExperts - 1)),
    ...rest,
    gate: {
      scoring: bias ? ("sigmoid" as const) : ("softmax" as const),
      biasBalancing: bias ? { updateSpeed: 0.001 } : null,
      groups: 1,
      topGroups: 1,
      groupScore: "max" as const,
      normalizeTopk: bias,
      routedScale: 1,
      seqAuxLossWeight: 0,
    },
  }));

const smallModelArb: fc.Arbitrary<SmallModel> = fc
  .record({
    vocab: fc.integer({ min: 1, max: 5000 }),
    hidden: fc.integer({ min: 1, max: 1024 }),
    layers: fc.integer({ min: 1, max: 8 }),
    denseFraction: fc.double({ min: 0, max: 1, noNaN: true }),
    attention: fc.oneof(mlaArb, mhaArb),
    denseIntermediate: fc.integer({ min: 1, max: 4096 }),
    denseActivation: fc.constantFrom<Activation>("swiglu", "gelu"),
    moe: moeArb,
    mtpDepth: fc.integer({ min: 0, max: 2 }),
    tied: fc.boolean(),
    seqLen: fc.integer({ min: 1, max: 65536 }),
  })
  .map(({ denseFraction, ...rest }) => ({ ...rest, denseLayers: Math.round(denseFraction * rest.layers) }));

/** A valid Spec: `denseLayers` dense layers first, then MoE; denseFfn / moe present iff used. */
function smallSpec(small: SmallModel): Spec {
  const base = deepseekV3Spec();
  const layerPattern: LayerRun[] = [];
  if (small.denseLayers > 0) layerPattern.push({ kind: "dense", first: 0, last: small.denseLayers - 1 });
  if (small.denseLayers < small.layers) {
    layerPattern.push({ kind: "moe", first: small.denseLayers, last: small.layers - 1 });
  }
  return {
    ...base,
    model: {
      ...base.model,
      name: "small",
      vocab: small.vocab,
      hidden: small.hidden,
      layers: small.layers,
      layerPattern,
      tieEmbeddings: small.tied,
      attention: small.attention,
      denseFfn:
        small.denseLayers > 0 ? { intermediate: small.denseIntermediate, activation: small.denseActivation } : null,
      moe: small.denseLayers < small.layers ? small.moe : null,
      mtp: { depth: small.mtpDepth, lossWeight: small.mtpDepth > 0 ? 0.3 : 0 },
    },
    schedules: [trainingSchedule("train", small.seqLen)],
  };
}

describe("computeStats properties", () => {
  it("breakdown sums to total; total ≥ activeWithEmbedding ≥ active > 0 (untied)", () => {
    fc.assert(
      fc.property(smallModelArb, (small) => {
        const stats = computeStats(smallSpec(small));
        expect(breakdownTotal(stats)).toBe(stats.params.total);
        expect(stats.params.total).toBeGreaterThanOrEqual(stats.params.active);
        expect(stats.params.activeWithEmbedding).toBeGreaterThanOrEqual(stats.params.active);
        if (!small.tied) expect(stats.params.total).toBeGreaterThanOrEqual(stats.params.activeWithEmbedding);
        expect(stats.params.approximate).toBe(false);
      }),
    );
  });

  it("tying the embeddings removes exactly vocab·hidden from total", () => {
    fc.assert(
      fc.property(smallModelArb, (small) => {
        const untied = computeStats(smallSpec({ ...small, tied: false }));
        const tied = computeStats(smallSpec({ ...small, tied: true }));
        expect(untied.params.total - tied.params.total).toBe(small.vocab * small.hidden);
        expect(tied.params.active).toBe(untied.params.active);
        expect(tied.params.activeWithEmbedding).toBe(tied.params.active);
      }),
    );
  });

  it("active grows by one expert per MoE layer for each extra expert per token; total does not move", () => {
    fc.assert(
      fc.property(
        smallModelArb.filter((small) => small.denseLayers < small.layers && small.moe.routedExperts > 1),
        (small) => {
          const k = Math.min(small.moe.expertsPerToken, small.moe.routedExperts - 1);
          const fewer = computeStats(smallSpec({ ...small, moe: { ...small.moe, expertsPerToken: k } }));
          const more = computeStats(smallSpec({ ...small, moe: { ...small.moe, expertsPerToken: k + 1 } }));
          const matrices = small.moe.activation === "swiglu" ? 3 : 2;
          const expert = matrices * small.hidden * small.moe.expertIntermediate;
          expect(more.params.active - fewer.params.active).toBe((small.layers - small.denseLayers) * expert);
          expect(more.params.active).toBeGreaterThan(fewer.params.active);
          expect(more.params.total).toBe(fewer.params.total);
        },
      ),
    );
  });

  it("total grows linearly in the number of layers of a pure-dense model", () => {
    fc.assert(
      fc.property(smallModelArb, fc.integer({ min: 1, max: 200 }), (small, layers) => {
        const dense = (count: number): number =>
          computeStats(smallSpec({ ...small, layers: count, denseLayers: count })).params.total;
        const perLayer = dense(2) - dense(1);
        expect(perLayer).toBeGreaterThan(0);
        expect(dense(layers)).toBe(dense(1) + (layers - 1) * perLayer);
      }),
    );
  });

  it("training = 3 × (forward + mtpForward), forward = matmul + attention", () => {
    fc.assert(
      fc.property(smallModelArb, (small) => {
        const flops = computeStats(smallSpec(small)).flopsPerToken;
        expect(flops.seqLen).toBe(small.seqLen);
        expect(flops.forward).toBe(flops.forwardMatmul + flops.forwardAttention);
        expect(flops.training).toBe(3 * (flops.forward + flops.mtpForward));
        if (small.mtpDepth === 0) expect(flops.mtpForward).toBe(0);
        else expect(flops.mtpForward).toBeGreaterThan(0);
      }),
    );
  });

  it("the attention part scales linearly in seqLen; the matmul part does not depend on it", () => {
    fc.assert(
      fc.property(smallModelArb, fc.integer({ min: 2, max: 64 }), (small, factor) => {
        const one = computeStats(smallSpec(small)).flopsPerToken;
        const scaled = computeStats(smallSpec({ ...small, seqLen: small.seqLen * factor })).flopsPerToken;
        expect(scaled.forwardAttention).toBe(factor * one.forwardAttention);
        expect(scaled.forwardMatmul).toBe(one.forwardMatmul);
        expect(one.forwardAttention).toBeGreaterThan(0);
      }),
    );
  });
});

describe("computeStats cost", () => {
  it("runs 10,000 times on DeepSeek-V3 in under 2 s", () => {
    const spec = deepseekV3Spec();
    let sink = 0;
    const start = performance.now();
    for (let i = 0; i < 10_000; i++) sink += computeStats(spec).params.total;
    const elapsedMs = performance.now() - start;
    expect(sink).toBe(10_000 * 671_026_419_200);
    expect(elapsedMs).toBeLessThan(2000);
  });

  it("does not depend on the number of layers or experts (O(layer runs))", () => {
    const huge = deepseekV3Spec();
    huge.model.layers = 1_000_000_000;
    huge.model.layerPattern = [
      { kind: "dense", first: 0, last: 2 },
      { kind: "moe", first: 3, last: 999_999_999 },
    ];
    huge.model.moe = { ...(huge.model.moe as MoeSpec), routedExperts: 1_000_000_000 };
    const start = performance.now();
    for (let i = 0; i < 1000; i++) computeStats(huge);
    expect(performance.now() - start).toBeLessThan(1000);
    expect(computeStats(huge).model.moeLayers).toBe(999_999_997);
  });
});
