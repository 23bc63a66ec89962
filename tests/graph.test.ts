/**
 * The Graph IR (compiler/graph) and the lowering pipeline (compiler/pipeline.ts):
 * - the builder against compiler/stats.ts, computed independently: parameters from the graph's
 *   weight values = params.total (and params.mtp), FLOPs from its matmuls = forwardMatmul per token,
 *   from its attention cores = forwardAttention, MTP = mtpForward — for DeepSeek-V3, tiny, V2-Lite
 *   and generated specs (MLA with/without q_lora, MHA/GQA, tied, MTP depths, BF16/FP8);
 * - the text form: print/parse round trip on random graphs (property) and on every lowered stage;
 * - determinism, the BF16 recipe (no quantisation at all), decode absorption (the cached per-token
 *   state is kv_lora_rank + qk_rope per layer: FACTS' 576 / 35,136), the KernelSpecs' contract,
 *   dumps ("unchanged"), timings kept out of artefacts, and errors (verifier, parser).
 * Pass-by-pass Before/Expected tests are in tests/passes.test.ts.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";

import { checkSpecFile } from "../compiler/check/index.js";
import { computeStats } from "../compiler/stats.js";
import type { Spec } from "../compiler/spec.js";
import {
  allOps,
  BLOCKS,
  buildModelGraph,
  cachedElementsPerToken,
  canonicalize,
  DTYPES,
  graphOf,
  LAYER_KINDS,
  modelCachedElementsPerToken,
  modelFlops,
  modelParams,
  numel,
  OP_FLAGS,
  OP_KINDS,
  parseModel,
  PHASES,
  printModel,
  verifyModel,
  type AttrValue,
  type LayerGraph,
  type ModelGraph,
  type Op,
  type Phase,
  type Value,
} from "../compiler/graph/index.js";
import { KERNEL_KINDS, uniqueKernels } from "../compiler/kernel-spec.js";
import { formatDumps, formatTimings, isDumpTarget, lower, PASSES, STAGE_NAMES } from "../compiler/pipeline.js";
import { insertFp8Quantisation } from "../compiler/passes/insert-fp8-quantisation.js";
import { validSpecText } from "./fixtures/generated-specs.js";
import { loadSpec, tiny, training, v3 } from "./fixtures/plan-specs.js";

function v2Lite(): Spec {
  return loadSpec("specs/deepseek-v2-lite.dsv3");
}

function bf16(spec: Spec): Spec {
  return { ...spec, precision: { ...spec.precision, mode: "bf16" } };
}

/** Checks the builder's figures against compiler/stats.ts for one spec. */
function expectMatchesStats(spec: Spec): void {
  const stats = computeStats(spec);
  const train = buildModelGraph(spec, { phase: "train" });
  const params = modelParams(train);
  expect(params.main).toBe(stats.params.total);
  expect(params.mtp).toBe(stats.params.mtp);
  // Serving graphs hold the same weights (MTP only when drafting).
  for (const phase of ["prefill", "decode"] as const) expect(modelParams(buildModelGraph(spec, { phase })).main).toBe(stats.params.total);
  if (spec.schedules.some((s) => s.kind === "training")) {
    const T = train.dims["T"]!;
    const f = modelFlops(train);
    expect(f.matmul / T).toBe(stats.flopsPerToken.forwardMatmul);
    expect(f.attention / T).toBeCloseTo(stats.flopsPerToken.forwardAttention, 6);
    expect((f.mtpMatmul + f.mtpAttention) / T).toBeCloseTo(stats.flopsPerToken.mtpForward, 6);
  }
}

describe("building graphs from a Spec", () => {
  it("DeepSeek-V3: one graph per layer kind, with counts, not 61 copies", () => {
    const spec = v3();
    const m = buildModelGraph(spec, { phase: "train" });
    expect(m.graphs.map((g) => [g.kind, g.count, g.layers])).toEqual([
      ["embedding", 1, []],
      ["dense_layer", 3, [[0, 2]]],
      ["moe_layer", 58, [[3, 60]]],
      ["head", 1, []],
      ["loss", 1, []],
      ["mtp", 1, []],
    ]);
    // A micro-batch of the `train` schedule's micro-batch size in sequences of 4096 tokens.
    const B = training(spec, "train").microbatchSize;
    expect(m.dims).toMatchObject({ T: B * 4096, B, L: 4096, H: 7168, V: 129280, Nh: 128, Q: 1536, C: 512, Dn: 128, R: 64, Dv: 128 });
    expect(m.dims).toMatchObject({ F: 18432, E: 256, K: 8, G: 8, Fe: 2048, Fs: 2048 });
    const moe = graphOf(m, "moe_layer")!;
    const blocks = new Set(moe.ops.map((op) => op.block));
    expect([...blocks].sort()).toEqual(["mla", "moe_experts", "moe_gate", "residual", "rmsnorm", "shared_experts"]);
    // The gate in FP32, the routed experts as grouped ops over E experts.
    expect(moe.values["gate.weight"]).toMatchObject({ dtype: "fp32", shape: ["E", "H"] });
    expect(moe.values["experts.gate"]).toMatchObject({ dtype: "bf16", shape: ["E", "Fe", "H"] });
    expect(moe.ops.filter((op) => op.kind === "grouped_linear")).toHaveLength(3);
    expect(moe.outputs).toHaveLength(2); // the layer output and its sequence-wise aux loss
  });

  it("DeepSeek-V3 parameters from the graph's weights: 671,026,419,200 and the MTP module's 11,610,068,224", () => {
    const m = buildModelGraph(v3(), { phase: "train" });
    expect(modelParams(m)).toEqual({ main: 671_026_419_200, mtp: 11_610_068_224 });
    const moe = graphOf(m, "moe_layer")!;
    const mla = moe.params.filter((id) => id.startsWith("mla.")).reduce((s, id) => s + numel(moe.values[id]!.shape, m.dims), 0);
    expect(mla).toBe(187_107_328); // FACTS: MLA per layer incl. the two latent norms
  });

  it("params, FLOPs per token and MTP FLOPs agree with compiler/stats for V3, tiny, V2-Lite and BF16 variants", () => {
    for (const spec of [v3(), tiny(), v2Lite(), bf16(v3()), { ...tiny(), model: { ...tiny().model, tieEmbeddings: true } }]) {
      expectMatchesStats(spec);
    }
  });

  it("agrees with compiler/stats on generated specs (MLA ± q_lora, MHA/GQA, tied, MTP 0–2, FP8/BF16), and every stage verifies", () => {
    fc.assert(
      fc.property(validSpecText, (text) => {
        const r = checkSpecFile("gen.dsv3", () => {
          throw new Error("no imports");
        }, text);
        if (r.spec === null) throw new Error(r.diagnostics.map((d) => d.message).join("; "));
        expectMatchesStats(r.spec);
        for (const phase of PHASES) lower(r.spec, { phase });
      }),
      { numRuns: 25 },
    );
  });

  it("the phases: prefill writes the cache of L tokens, decode reads S; MTP only when drafting", () => {
    const spec = v3();
    const pre = buildModelGraph(spec, { phase: "prefill" });
    expect(pre.dims).toMatchObject({ T: 2 * 4096, B: 2, L: 4096, S: 4096 });
    expect(pre.graphs.map((g) => g.kind)).toEqual(["embedding", "dense_layer", "moe_layer", "head"]);
    const dec = buildModelGraph(spec, { phase: "decode" });
    // 128 sequences per GPU in 2 micro-batches, each verifying 1 + 1 drafted token.
    expect(dec.dims).toMatchObject({ T: 128, B: 64, Tq: 2, S: 4096 });
    expect(graphOf(dec, "mtp")?.count).toBe(1);
    expect(buildModelGraph(spec, { phase: "train", tokens: 4096 }).dims).toMatchObject({ T: 4096, B: 1, L: 4096 });
    expect(buildModelGraph(spec, { phase: "train", tokens: 100 }).dims).toMatchObject({ T: 100, B: 1, L: 100 });
    expect(() => buildModelGraph(spec, { phase: "decode", schedule: "train" })).toThrow(/'train' is a training schedule, not decode/);
    expect(() => buildModelGraph(spec, { phase: "train", schedule: "nope" })).toThrow(/no schedule named 'nope'/);
  });

  it("is deterministic: same Spec and options, byte-identical graphs, dumps and kernels", () => {
    for (const phase of PHASES) {
      const a = lower(v3(), { phase, dumpAfter: "all" });
      const b = lower(v3(), { phase, dumpAfter: "all" });
      expect(printModel(a.graph)).toBe(printModel(b.graph));
      expect(JSON.stringify(a.kernels)).toBe(JSON.stringify(b.kernels));
      expect(formatDumps(a.dumps)).toBe(formatDumps(b.dumps));
      // Ids are stable: the printed graph is already in canonical numbering order after build.
      const built = buildModelGraph(v3(), { phase });
      expect(printModel(canonicalize(built))).toBe(printModel(built));
    }
  });

  it("uses every op kind somewhere (V3 in each phase, plus GELU and MHA variants)", () => {
    const seen = new Set<string>();
    const gelu = tiny();
    gelu.model.denseFfn = { intermediate: 128, activation: "gelu" };
    gelu.model.moe = { ...gelu.model.moe!, activation: "gelu" };
    for (const spec of [v3(), gelu]) {
      for (const phase of PHASES) {
        const r = lower(spec, { phase, dumpAfter: "all" });
        for (const d of r.dumps) if (d.changed) for (const g of parseModel(d.text).graphs) for (const op of allOps(g.ops)) seen.add(op.kind);
      }
    }
    expect([...seen].sort()).toEqual([...OP_KINDS].sort());
  });
});

describe("the FP8 recipe and the BF16 mode", () => {
  it("a BF16 spec gets no quantisation ops and no FP8/E5M6 values anywhere", () => {
    for (const phase of PHASES) {
      const spec = bf16(v3());
      const r = lower(spec, { phase });
      for (const g of r.graph.graphs) {
        for (const op of allOps(g.ops)) expect(op.kind).not.toBe("quantize");
        for (const v of Object.values(g.values)) {
          expect(["e4m3", "e5m2", "e5m6", "ue8m0"]).not.toContain(v.dtype);
          expect(v.quant).toBeNull();
        }
      }
      for (const k of r.kernels) expect(k.kind).not.toMatch(/quantize/);
      const built = buildModelGraph(spec, { phase });
      expect(insertFp8Quantisation.run(built, { precision: spec.precision })).toBe(built);
    }
  });

  it("FP8: every GEMM outside the high-precision parts reads E4M3 1×128 activations and 128×128 weights", () => {
    const r = lower(v3(), { phase: "train" });
    let gemms = 0;
    for (const g of r.graph.graphs) {
      for (const op of allOps(g.ops)) {
        if (op.kind !== "linear" && op.kind !== "grouped_linear") continue;
        const x = g.values[op.inputs[0]!]!;
        const w = g.values[op.inputs[1]!]!;
        if (op.block === "head" || op.block === "moe_gate") {
          expect(op.attrs["keep"]).toBe(op.block === "head" ? "bf16" : "fp32");
          expect(x.quant).toBeNull();
          continue;
        }
        gemms++;
        expect(x.dtype).toBe("e4m3");
        expect(x.quant!.tile).toEqual([1, 128]);
        expect(w).toMatchObject({ dtype: "e4m3", quant: { tile: [128, 128], pow2: false } });
        expect(op.attrs["promote"]).toBe(128);
      }
    }
    expect(gemms).toBeGreaterThan(20);
    const moe = graphOf(r.graph, "moe_layer")!;
    const body = [...allOps(moe.ops)];
    // The dispatch is FP8 with power-of-two scales; the combine BF16.
    const permute = body.find((op) => op.kind === "moe_permute")!;
    expect(moe.values[permute.inputs[0]!]).toMatchObject({ dtype: "e4m3", quant: { tile: [1, 128], pow2: true } });
    expect(body.find((op) => op.kind === "moe_unpermute")!.attrs["combine"]).toBe("bf16");
    // The attention output projection's input is cached as E5M6 with power-of-two scales.
    expect(body.some((op) => op.kind === "quantize" && op.attrs["cache"] === "e5m6" && op.attrs["cache_pow2"] === true)).toBe(true);
    // SwiGLU: input cached in FP8, output recomputed; RMSNorms and MLA up-projections recomputed.
    for (const op of body.filter((op) => op.kind === "swiglu")) {
      expect(op.attrs["cache_in"]).toBe("e4m3");
      expect(op.flags).toContain("recompute");
    }
    expect(body.filter((op) => op.kind === "rmsnorm").every((op) => op.flags.includes("recompute"))).toBe(true);
    const upProjWeights = body.filter((op) => op.kind === "linear" && op.flags.includes("recompute")).map((op) => op.inputs[1]);
    expect(upProjWeights.sort()).toEqual(["mla.kv_b", "mla.q_b"]);
    // A quantised copy of a recomputed value is recomputed too, never cached.
    for (const op of body.filter((op) => op.kind === "quantize" && op.flags.includes("recompute"))) expect(op.attrs["cache"]).toBeUndefined();
  });
});

describe("MLA absorption in decode", () => {
  it("reduces the cached state per token to kv_lora_rank + qk_rope per layer (576; 35,136 for 61 layers)", () => {
    const spec = v3();
    const stats = computeStats(spec);
    const naive = buildModelGraph(spec, { phase: "decode" });
    const naiveLayer = graphOf(naive, "moe_layer")!;
    expect(cachedElementsPerToken(naiveLayer, naive.dims)).toBe(128 * (192 + 128));
    const { graph } = lower(spec, { phase: "decode" });
    for (const kind of ["dense_layer", "moe_layer"] as const) {
      const g = graphOf(graph, kind)!;
      expect(cachedElementsPerToken(g, graph.dims)).toBe(576);
      expect(g.params.filter((id) => g.values[id]!.role === "state")).toEqual(["mla.kv_cache"]);
      // kv_b never runs over the context: it is only absorbed.
      const kvbUsers = [...allOps(g.ops)].filter((op) => op.inputs.includes("mla.kv_b")).map((op) => op.kind);
      expect(kvbUsers.sort()).toEqual(["mla_absorb_uk", "mla_absorb_uv"]);
    }
    expect(modelCachedElementsPerToken(graph)).toBe(stats.kvCache.elementsPerToken);
    expect(stats.kvCache.elementsPerToken).toBe(35_136);
    expect(graph.graphs.filter((g) => g.kind !== "mtp").reduce((s, g) => s + g.count, 0) - 2).toBe(61);
    // Prefill writes the same latent cache (its attention stays naive).
    const pre = lower(spec, { phase: "prefill" }).graph;
    expect(cachedElementsPerToken(graphOf(pre, "moe_layer")!, pre.dims)).toBe(576);
  });

  it("the absorbed decode attention is one mla_decode_attention kernel over [B·S, C+R]", () => {
    const r = lower(v3(), { phase: "decode" });
    const k = r.kernels.find((x) => x.kind === "mla_decode_attention" && x.graph === "moe_layer")!;
    expect(k.constants).toMatchObject({ queries: 128, heads: 128, dk: 576, dv: 512, q_len: 2, kv_len: 4096, kv_block: 64, causal: true });
    expect(k.inputs.map((t) => t.dims)).toEqual([["T", "Nh", "C"], ["T", "Nh", "R"], ["B*S", "C+R"]]);
  });
});

describe("KernelSpecs", () => {
  it("V3 training: each required kernel kind, with the constants a backend specialises on", () => {
    const r = lower(v3(), { phase: "train" });
    const T = r.graph.dims["T"]!;
    const kinds = new Set(r.kernels.map((k) => k.kind));
    for (const kind of ["rmsnorm_quantize", "swiglu_quantize", "gemm", "grouped_gemm", "gate_topk", "moe_permute", "moe_unpermute", "rope"]) {
      expect(kinds.has(kind as never)).toBe(true);
    }
    const moe = r.kernels.filter((k) => k.graph === "moe_layer");
    const qa = moe.find((k) => k.kind === "gemm" && k.main[0]!.inputs[1] === "mla.q_a")!;
    expect(qa.constants).toMatchObject({ m: T, n: 1536, k: 7168, a: "e4m3/1x128", b: "e4m3/128x128", out: "bf16", promote: 128, epilogue: [] });
    const oProj = moe.find((k) => k.kind === "gemm" && k.main[0]!.inputs[1] === "mla.o")!;
    expect(oProj.constants["epilogue"]).toEqual(["add"]);
    const shared = moe.find((k) => k.kind === "gemm" && k.constants["merged"] === 2)!;
    expect(shared.constants).toMatchObject({ n: 2 * 2048, epilogue: ["swiglu", "quantize"] });
    const dense = r.kernels.find((k) => k.graph === "dense_layer" && k.constants["merged"] === 2)!;
    expect(dense.constants).toMatchObject({ n: 2 * 18432, k: 7168 });
    const permute = moe.find((k) => k.kind === "moe_permute")!;
    const padded = 128 * Math.floor((T * 8 + 127 * 256) / 128);
    expect(permute.constants).toMatchObject({ tokens: T, topk: 8, experts: 256, align: 128, rows: padded, format: "e4m3/1x128/pow2" });
    expect(r.graph.dims["Mp"]).toBe(padded);
    expect(moe.find((k) => k.kind === "grouped_gemm")!.constants).toMatchObject({ m: padded, groups: 256 });
    const gate = moe.find((k) => k.kind === "gate_topk")!;
    expect(gate.constants).toMatchObject({ n: 256, k: 7168, topk: 8, groups: 8, top_groups: 4, scoring: "sigmoid", bias: true, normalize: true, routed_scale: 2.5 });
    const norm = moe.find((k) => k.kind === "rmsnorm_quantize" && (k.constants["formats"] as string[]).length === 2)!;
    expect(norm.constants).toMatchObject({ formats: ["e4m3/1x128/pow2", "e4m3/1x128"], unquantised_output: true, eps: 1e-6 });
    expect(norm.recompute).toBe(true);
    const rope = moe.find((k) => k.kind === "rope" && k.prologue.length === 1)!;
    expect(rope.constants).toMatchObject({ heads: 128, rope_dim: 64, head_dim: 192, offset: 128, theta: 10000, yarn: [40, 4096, 32, 1, 1, 1] });
  });

  it("replaces = prologue ++ main ++ epilogue; every tensor typed; keys deduplicate", () => {
    for (const phase of PHASES) {
      const r = lower(v3(), { phase });
      for (const k of r.kernels) {
        expect(KERNEL_KINDS).toContain(k.kind);
        expect([...k.prologue, ...k.main, ...k.epilogue]).toEqual(k.replaces);
        for (const op of k.replaces) for (const id of [...op.inputs, ...op.outputs]) expect(k.tensors[id]).toBeDefined();
        for (const t of [...k.inputs, ...k.outputs]) expect(t.shape.every((n) => Number.isInteger(n) && n > 0)).toBe(true);
      }
      expect(uniqueKernels(r.kernels).length).toBeLessThan(r.kernels.length);
    }
  });
});

describe("the pipeline", () => {
  it("lists its passes in order and dumps after one or all, saying 'unchanged'", () => {
    expect(STAGE_NAMES).toEqual(["build", "absorb-mla", "insert-fp8-quantisation", "mark-recompute", "fuse-kernels"]);
    expect(PASSES.map((p) => p.name)).toEqual(STAGE_NAMES.slice(1));
    const all = lower(tiny(), { phase: "train", dumpAfter: "all" });
    expect(all.dumps.map((d) => [d.pass, d.changed])).toEqual([
      ["build", true],
      ["absorb-mla", false],
      ["insert-fp8-quantisation", true],
      ["mark-recompute", true],
      ["fuse-kernels", true],
    ]);
    expect(all.dumps[1]!.text).toBe("// after absorb-mla: unchanged\n");
    const text = formatDumps(all.dumps);
    expect(text).toContain("// after build:\nmodel tiny-v3 phase=train\n");
    const one = lower(tiny(), { phase: "decode", dumpAfter: "absorb-mla" });
    expect(one.dumps).toHaveLength(1);
    expect(one.dumps[0]!.pass).toBe("absorb-mla");
    expect(graphOf(parseModel(one.dumps[0]!.text), "moe_layer")!.params).toContain("mla.kv_cache");
    expect(lower(tiny(), { phase: "decode", dumpAfter: "mark-recompute" }).dumps[0]).toEqual({
      pass: "mark-recompute",
      text: "// after mark-recompute: unchanged\n",
      changed: false,
    });
    expect(lower(tiny(), { phase: "train" }).dumps).toEqual([]);
  });

  it("rejects an unknown --dump-after target with the valid names", () => {
    expect(isDumpTarget("all")).toBe(true);
    expect(isDumpTarget("fuse-kernels")).toBe(true);
    expect(isDumpTarget("fuse")).toBe(false);
    expect(() => lower(tiny(), { phase: "train", dumpAfter: "fuse" })).toThrow(/unknown pass 'fuse'.*build, absorb-mla/);
  });

  it("timings only behind the flag, and never in the graph or kernels", () => {
    const plain = lower(tiny(), { phase: "train" });
    expect(plain.timings).toBeNull();
    const timed = lower(tiny(), { phase: "train", timings: true });
    expect(timed.timings!.map((t) => t.pass)).toEqual([...STAGE_NAMES, "kernel-specs"]);
    expect(formatTimings(timed.timings!)).toMatch(/^build +\d+\.\d{3} ms\n/);
    expect(printModel(timed.graph)).toBe(printModel(plain.graph));
    expect(JSON.stringify(timed.kernels)).toBe(JSON.stringify(plain.kernels));
  });
});

// ── Text form ────────────────────────────────────────────────────────────────────────────────

const identArb = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,5}$/);
const paramNameArb = fc.stringMatching(/^[a-z][a-z0-9_.]{0,8}$/);
const dimExprArb: fc.Arbitrary<string> = fc.letrec<{ e: string }>((tie) => ({
  e: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    identArb,
    fc.nat(5000).map(String),
    fc.tuple(tie("e"), tie("e")).map(([a, b]) => `${a}*${b}`),
    fc.tuple(tie("e"), tie("e")).map(([a, b]) => `${a}+${b}`),
    fc.tuple(tie("e"), tie("e")).map(([a, b]) => `(${a}+${b})*${b}`),
  ),
})).e;
const scalarArb = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
  fc.string({ unit: "binary" }),
  identArb,
);
const attrValueArb: fc.Arbitrary<AttrValue> = fc.oneof(
  scalarArb,
  fc.boolean(),
  fc.array(fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string(), identArb), { maxLength: 4 }),
);
const attrsArb = fc.dictionary(fc.stringMatching(/^[a-z_][a-z0-9_]{0,6}$/), attrValueArb, { maxKeys: 4 });
const typeArb = fc.record({
  dtype: fc.constantFrom(...DTYPES),
  shape: fc.array(dimExprArb, { maxLength: 4 }),
  quant: fc.option(fc.record({ tile: fc.tuple(fc.integer({ min: 1, max: 256 }), fc.integer({ min: 1, max: 256 })), pow2: fc.boolean() }), { nil: null }),
});
const opShapeArb = fc.record({
  kind: fc.constantFrom(...OP_KINDS.filter((k) => k !== "fused")),
  fused: fc.option(fc.constantFrom(...KERNEL_KINDS), { freq: 3, nil: null }),
  bodyLength: fc.integer({ min: 1, max: 3 }),
  outTypes: fc.array(typeArb, { minLength: 1, maxLength: 3 }),
  inputPicks: fc.array(fc.nat(), { maxLength: 3 }),
  attrs: attrsArb,
  flags: fc.subarray([...OP_FLAGS]),
  block: fc.constantFrom(...BLOCKS),
});
const graphArb = fc.record({
  kind: fc.constantFrom(...LAYER_KINDS),
  count: fc.nat(100),
  layers: fc.array(fc.tuple(fc.nat(99), fc.nat(99)), { maxLength: 3 }),
  params: fc.uniqueArray(fc.tuple(paramNameArb, fc.constantFrom("input", "weight", "state") as fc.Arbitrary<Value["role"]>, typeArb, fc.boolean()), {
    selector: (p) => p[0],
    maxLength: 5,
  }),
  ops: fc.array(opShapeArb, { maxLength: 8 }),
  outputPicks: fc.array(fc.nat(), { maxLength: 3 }),
});

type GraphShape = typeof graphArb extends fc.Arbitrary<infer G> ? G : never;

/** A syntactically valid (not shape-checked) graph from a generated shape. */
function graphFrom(s: GraphShape, kind: LayerGraph["kind"]): LayerGraph {
  const g: LayerGraph = { kind, count: s.count, layers: s.layers, params: [], values: {}, ops: [], outputs: [] };
  let next = 0;
  const defined: string[] = [];
  for (const [name, role, t, shared] of s.params) {
    g.values[name] = { id: name, ...t, role, shared };
    g.params.push(name);
    defined.push(name);
  }
  const makeOp = (o: (typeof s.ops)[number], scope: string[]): Op => {
    const inputs = scope.length === 0 ? [] : o.inputPicks.map((p) => scope[p % scope.length]!);
    const outputs = o.outTypes.map((t) => {
      const id = String(next++);
      g.values[id] = { id, ...t, role: "temp", shared: false };
      return id;
    });
    return { kind: o.kind, inputs, outputs, attrs: o.attrs, flags: [...o.flags].sort(), block: o.block };
  };
  for (const o of s.ops) {
    if (o.fused === null) {
      const op = makeOp(o, defined);
      g.ops.push(op);
      defined.push(...op.outputs);
      continue;
    }
    const scope = [...defined];
    const body: Op[] = [];
    for (let i = 0; i < o.bodyLength; i++) {
      const b = makeOp(o, scope);
      body.push(b);
      scope.push(...b.outputs);
    }
    const produced = body.flatMap((b) => b.outputs);
    const outputs = produced.filter((_, i) => i % 2 === 0);
    const inputs = defined.length === 0 ? [] : o.inputPicks.map((p) => defined[p % defined.length]!);
    g.ops.push({ kind: "fused", kernel: o.fused, body, inputs, outputs, attrs: o.attrs, flags: [...o.flags].sort(), block: o.block });
    defined.push(...produced);
  }
  if (defined.length > 0) g.outputs = s.outputPicks.map((p) => defined[p % defined.length]!);
  return g;
}

const modelArb = fc
  .record({
    name: fc.string({ unit: "binary" }),
    phase: fc.constantFrom(...PHASES),
    dims: fc.dictionary(identArb, fc.nat(), { maxKeys: 6 }),
    graphs: fc.uniqueArray(fc.tuple(fc.constantFrom(...LAYER_KINDS), graphArb), { selector: (g) => g[0], maxLength: 3 }),
  })
  .map(({ name, phase, dims, graphs }): ModelGraph => ({ model: name, phase: phase as Phase, dims, graphs: graphs.map(([k, s]) => graphFrom(s, k)) }));

describe("the text form", () => {
  it("round-trips random graphs: parse(print(g)) = g, and print is a fixed point", () => {
    fc.assert(
      fc.property(modelArb, (m) => {
        const text = printModel(m);
        const back = parseModel(text);
        expect(back).toEqual(m);
        expect(printModel(back)).toBe(text);
      }),
      { numRuns: 300 },
    );
  });

  it("round-trips every stage of lowering V3 and tiny in every phase", () => {
    for (const spec of [v3(), tiny()]) {
      for (const phase of PHASES) {
        for (const d of lower(spec, { phase, dumpAfter: "all" }).dumps) {
          if (!d.changed) continue;
          const back = parseModel(d.text);
          verifyModel(back);
          expect(printModel(back)).toBe(d.text);
        }
      }
    }
  });

  it("prints the op-per-line form", () => {
    const text = printModel(buildModelGraph(tiny(), { phase: "train" }));
    expect(text).toContain("  %0:bf16[T,H] = rmsnorm(%x, %attn_norm) {eps=0.000001}\n");
    expect(text).toContain("%3:bf16[T,Nh*(Dn+R)] = linear(%2, %mla.q_b)");
    expect(text).toContain("%31:bf16[T*K,H], %32:i32[E], %33:i32[T,K] = moe_permute(%24, %28)");
  });

  it("reports parse errors with a line number", () => {
    const base = "model m phase=train\ndims T=2 H=4\ngraph head count=1 {\n  input %h:bf16[T,H]\n";
    expect(() => parseModel(`${base}  block head\n  %0:bf16[T,H] = rmsnorm(%h, %w)\n}\n`)).toThrow(/^ir:6: %w is not defined/);
    expect(() => parseModel(`${base}  %0:bf16[T,H] = rmsnorm(%h, %h)\n}\n`)).toThrow(/^ir:5: an op before any 'block' line/);
    expect(() => parseModel(`${base}  block head\n  %0:bf17[T,H] = reshape(%h)\n}\n`)).toThrow(/^ir:6: unknown dtype 'bf17'/);
    expect(() => parseModel(`${base}  block head\n  %0:bf16[T,H] = frobnicate(%h)\n}\n`)).toThrow(/^ir:6: unknown op kind 'frobnicate'/);
    expect(() => parseModel(`${base}  block head\n  %0:bf16[T,H*] = reshape(%h)\n}\n`)).toThrow(/^ir:6: dim expression/);
    expect(() => parseModel(base)).toThrow(/not closed/);
  });

  it("the verifier rejects a wrong shape as an internal error naming the op", () => {
    const m = parseModel(
      "model m phase=train\ndims T=2 H=4 N=3\ngraph head count=1 {\n  input %h:bf16[T,H]\n  weight %w:bf16[N,N]\n  block head\n  %0:bf16[T,N] = linear(%h, %w)\n  output %0\n}\n",
    );
    expect(() => verifyModel(m)).toThrow(/internal error: graph head: op 0 \(linear\): x \[2,4\] and w \[3,3\] disagree on K/);
  });

  it("the masked MoE layout: E·capacity permuted rows, a capacity below the tokens (an overflowing expert) rejected", () => {
    const graph = (capacity: number, rows: string): string =>
      `model m phase=decode\ndims T=4 H=128 E=8 K=2 F=128 Mm=${rows}\ngraph moe_layer count=1 {\n  input %x:e4m3[T,H]/1x128\n  input %idx:i32[T,K]\n` +
      `  weight %w:e4m3[E,F,H]/128x128\n  block moe_experts\n` +
      `  %0:e4m3[Mm,H]/1x128, %1:i32[E], %2:i32[T,K] = moe_permute(%x, %idx) {capacity=${capacity}}\n` +
      `  %3:bf16[Mm,F] = grouped_linear(%0, %w, %1) {layout=masked, promote=128}\n  output %3, %2\n}\n`;
    expect(() => verifyModel(parseModel(graph(64, "512")))).not.toThrow();
    expect(() => verifyModel(parseModel(graph(64, "448")))).toThrow(/the rows has shape \[448,128\], expected \[512,128\]/);
    expect(() => verifyModel(parseModel(graph(2, "16")))).toThrow(/capacity 2 is below the 4 rows one expert may receive/);
  });
});
