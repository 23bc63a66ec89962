/**
 * Semantics of the reference ops (backends/reference/ops), other than gradients (ops-grad.test.ts):
 * absorbed MLA equals naive MLA; RoPE's relative-position property, its adjacent-pair layout and
 * YaRN; the gate's selection rules; the bias update balancing a skewed router; cross-entropy, MoE,
 * auxiliary loss, embedding, MTP bookkeeping; FP32 against FP64.
 *
 * Tolerances (stated where used): FP64 identities 1e-12 of the output's largest magnitude (absorbed
 * vs naive MLA, RoPE relative position 1e-9 of |q||k| at positions up to 10⁵); FP32 against FP64
 * 1e-4 of the output's largest magnitude.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkSpecFile } from "../compiler/check/index.js";
import { routeTokens } from "../compiler/plan/node-limited-routing.js";
import type { GateSpec, MlaSpec, RopeSpec, Spec } from "../compiler/spec.js";
import { gemmF64 } from "../backends/reference/numerics/index.js";
import {
  TensorRandom,
  attentionForward,
  biasUpdate,
  crossEntropyBackward,
  crossEntropyForward,
  decoderLayerConfigOf,
  decoderLayerForward,
  embeddingBackward,
  embeddingForward,
  expertLoad,
  gateForward,
  gateScores,
  gateSelect,
  linearForward,
  loadImbalance,
  matmulABt,
  mlaAbsorbedBackward,
  mlaAbsorbedForward,
  mlaBackward,
  mlaForward,
  mlaLatentBackward,
  mlaLatentForward,
  moeForward,
  mtpLoss,
  mtpShift,
  randomDecoderLayerWeights,
  randomMlaWeights,
  randomMoeWeights,
  randomSwigluMlpWeights,
  rmsnormForward,
  ropeForward,
  ropeFrequencies,
  ropeTable,
  seqAuxLossForward,
  swigluMlpForward,
  yarnCorrectionRange,
  yarnSoftmaxScale,
  type DecoderLayerWeights,
  type GateConfig,
  type MlaConfig,
  type MlaWeightName,
  type MlaWeights,
  type RealArray,
} from "../backends/reference/ops/index.js";

type R64 = TensorRandom<Float64Array>;
const rnd = (seed: number): R64 => new TensorRandom<Float64Array>(seed, "f64");
const seed = fc.integer({ min: 0, max: 0x7fffffff });
/** Cases per property; OPS_RUNS_SCALE=10 runs ten times as many (a slow, deeper search). */
const runs = (n: number): number => Math.max(1, Math.round(n * Number(process.env.OPS_RUNS_SCALE ?? 1)));

function specOf(file: string): Spec {
  const r = checkSpecFile(file);
  expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
  return r.spec!;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Expects max|a − b| ≤ tol · max(1e-30, max|b|). */
function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  const d = maxDiff(a, b);
  const scale = Math.max(maxAbs(b), 1e-30);
  expect(d / scale, `${what}: max |Δ| ${d.toExponential(2)} of scale ${scale.toExponential(2)}`).toBeLessThanOrEqual(tol);
}

function toF32<A extends RealArray | null>(a: A): A extends null ? null : Float32Array {
  return (a === null ? null : Float32Array.from(a)) as A extends null ? null : Float32Array;
}

// ---------------------------------------------------------------------------------------------
// MLA

const V3_YARN: RopeSpec = {
  theta: 10000,
  yarn: { factor: 40, originalContext: 4096, betaFast: 32, betaSlow: 1, mscale: 1, mscaleAllDim: 1 },
};

const mlaArb = fc.record({
  hidden: fc.integer({ min: 2, max: 12 }),
  heads: fc.integer({ min: 1, max: 4 }),
  qLoraRank: fc.option(fc.integer({ min: 2, max: 8 }), { nil: null }),
  kvLoraRank: fc.integer({ min: 2, max: 8 }),
  nope: fc.integer({ min: 1, max: 6 }),
  ropeHalf: fc.integer({ min: 1, max: 4 }),
  v: fc.integer({ min: 1, max: 6 }),
  yarn: fc.boolean(),
  tokens: fc.integer({ min: 1, max: 7 }),
  start: fc.integer({ min: 0, max: 5000 }),
  seed,
});
type MlaCase = typeof mlaArb extends fc.Arbitrary<infer T> ? T : never;

function mlaConfigOf(c: MlaCase): MlaConfig {
  const rope: RopeSpec = c.yarn
    ? { theta: 10000, yarn: { factor: 8, originalContext: 64, betaFast: 32, betaSlow: 1, mscale: 0.9, mscaleAllDim: 0.8 } }
    : { theta: 10000, yarn: null };
  const qkRopeHeadDim = 2 * c.ropeHalf;
  const attention: MlaSpec = {
    kind: "mla",
    heads: c.heads,
    qLoraRank: c.qLoraRank,
    kvLoraRank: c.kvLoraRank,
    qkNopeHeadDim: c.nope,
    qkRopeHeadDim,
    vHeadDim: c.v,
    rope,
    softmaxScale: yarnSoftmaxScale(c.nope + qkRopeHeadDim, rope),
  };
  return { hidden: c.hidden, normEps: 1e-6, attention };
}

function mlaWeightsF32(w: MlaWeights<Float64Array>): MlaWeights<Float32Array> {
  return {
    qA: toF32(w.qA),
    qANorm: toF32(w.qANorm),
    qB: toF32(w.qB),
    q: toF32(w.q),
    kvA: toF32(w.kvA),
    kvANorm: toF32(w.kvANorm),
    kvB: toF32(w.kvB),
    o: toF32(w.o),
  };
}

const MLA_WEIGHTS: MlaWeightName[] = ["qA", "qANorm", "qB", "q", "kvA", "kvANorm", "kvB", "o"];

describe("MLA: absorbed equals naive", () => {
  it("the latent cache of DeepSeek-V3 holds 576 elements per token and layer", () => {
    const a = specOf("specs/deepseek-v3.dsv3").model.attention;
    expect(a.kind).toBe("mla");
    const mla = a as MlaSpec;
    expect(mla.kvLoraRank + mla.qkRopeHeadDim).toBe(576);
  });

  it("prefill over the latent cache (FP64 1e-12, FP32 1e-4), q_lora on/off, YaRN on/off", () => {
    fc.assert(
      fc.property(mlaArb, (c) => {
        const r = rnd(c.seed);
        const cfg = mlaConfigOf(c);
        const w = randomMlaWeights(r, cfg);
        const x = r.normals(c.tokens * cfg.hidden);
        const naive = mlaForward(x, w, cfg, c.tokens, c.start);
        // The whole sequence as the cache, and the last m tokens as queries over it.
        const { cache } = mlaLatentForward(x, w, cfg, c.tokens, c.start);
        expect(cache.latent.length + cache.kRope.length).toBe(c.tokens * (cfg.attention.kvLoraRank + cfg.attention.qkRopeHeadDim));
        if (c.start === 0) {
          const abs = mlaAbsorbedForward(x, cache, w, cfg, c.tokens);
          expectClose(abs.y, naive.y, 1e-12, "absorbed vs naive (FP64)");
          const x32 = Float32Array.from(x);
          const w32 = mlaWeightsF32(w);
          const n32 = mlaForward(x32, w32, cfg, c.tokens);
          const a32 = mlaAbsorbedForward(x32, mlaLatentForward(x32, w32, cfg, c.tokens).cache, w32, cfg, c.tokens);
          expectClose(n32.y, naive.y, 1e-4, "naive FP32 vs FP64");
          expectClose(a32.y, naive.y, 1e-4, "absorbed FP32 vs FP64");
        }
      }),
      { numRuns: runs(150) },
    );
  });

  it("token-by-token decode over a growing cache reproduces each naive row (FP64 1e-12)", () => {
    fc.assert(
      fc.property(mlaArb, (c) => {
        const r = rnd(c.seed);
        const cfg = mlaConfigOf(c);
        const d = cfg.hidden;
        const w = randomMlaWeights(r, cfg);
        const x = r.normals(c.tokens * d);
        const naive = mlaForward(x, w, cfg, c.tokens);
        for (let t = 0; t < c.tokens; t++) {
          const { cache } = mlaLatentForward(x.subarray(0, (t + 1) * d), w, cfg, t + 1);
          const step = mlaAbsorbedForward(x.slice(t * d, (t + 1) * d), cache, w, cfg, 1);
          expectClose(step.y, naive.y.subarray(t * d, (t + 1) * d), 1e-12, `decode step ${t}`);
        }
      }),
      { numRuns: runs(60) },
    );
  });

  it("absorbed backward (through the latent cache) equals naive backward (FP64 1e-10)", () => {
    fc.assert(
      fc.property(mlaArb, (c) => {
        const r = rnd(c.seed);
        const cfg = mlaConfigOf(c);
        const w = randomMlaWeights(r, cfg);
        const x = r.normals(c.tokens * cfg.hidden);
        const dy = r.normals(c.tokens * cfg.hidden);
        const nf = mlaForward(x, w, cfg, c.tokens);
        const nb = mlaBackward(dy, x, w, cfg, nf.cache);
        const lat = mlaLatentForward(x, w, cfg, c.tokens);
        const af = mlaAbsorbedForward(x, lat.cache, w, cfg, c.tokens);
        const ab = mlaAbsorbedBackward(dy, x, lat.cache, w, cfg, af.cache);
        const lb = mlaLatentBackward(ab.dLatent, ab.dKRope, x, w, cfg, lat.saved);
        const dx = ab.dx.slice();
        for (let i = 0; i < dx.length; i++) dx[i]! += lb.dx[i]!;
        expectClose(dx, nb.dx, 1e-10, "dx");
        expectClose(lb.dKvA, nb.grads.kvA, 1e-10, "dkvA");
        expectClose(lb.dKvANorm, nb.grads.kvANorm, 1e-10, "dkvANorm");
        for (const name of MLA_WEIGHTS) {
          if (name === "kvA" || name === "kvANorm" || nb.grads[name] === null) continue;
          expectClose(ab.grads[name]!, nb.grads[name]!, 1e-10, `d${name}`);
        }
      }),
      { numRuns: runs(60) },
    );
  });

  it("the tiny spec's MLA (q_lora, YaRN): both forms agree, and FP32 tracks FP64", () => {
    const model = specOf("specs/tiny.dsv3").model;
    const attention = model.attention as MlaSpec;
    const cfg: MlaConfig = { hidden: model.hidden, normEps: model.normEps, attention };
    const r = rnd(5);
    const w = randomMlaWeights(r, cfg);
    const T = 24;
    const x = r.normals(T * cfg.hidden);
    const naive = mlaForward(x, w, cfg, T);
    const abs = mlaAbsorbedForward(x, mlaLatentForward(x, w, cfg, T).cache, w, cfg, T);
    expectClose(abs.y, naive.y, 1e-12, "tiny absorbed vs naive");
    expectClose(mlaForward(Float32Array.from(x), mlaWeightsF32(w), cfg, T).y, naive.y, 1e-4, "tiny FP32 vs FP64");
  });

  it("DeepSeek-V2-Lite's MLA at full size (q_proj without q_lora, 16 heads, 512 + 64 cache): both forms agree", () => {
    const model = specOf("specs/deepseek-v2-lite.dsv3").model;
    const attention = model.attention as MlaSpec;
    expect(attention.qLoraRank).toBeNull();
    const cfg: MlaConfig = { hidden: model.hidden, normEps: model.normEps, attention };
    const r = new TensorRandom<Float32Array>(2, "f32");
    const w = randomMlaWeights(r, cfg);
    const T = 3;
    const x = r.normals(T * cfg.hidden);
    const naive = mlaForward(x, w, cfg, T);
    const abs = mlaAbsorbedForward(x, mlaLatentForward(x, w, cfg, T).cache, w, cfg, T);
    expectClose(abs.y, naive.y, 1e-4, "V2-Lite absorbed vs naive (FP32)");
  });
});

// ---------------------------------------------------------------------------------------------
// Attention core

describe("causal attention", () => {
  it("rows of P sum to 1, masked entries are 0, and future keys do not change the output", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 5 }), seed, (tq, extra, dk, s) => {
        const r = rnd(s);
        const tk = tq + extra;
        const shape = { tq, tk, heads: 2, kvHeads: 1, dk, dv: 3, scale: 0.5 };
        const q = r.normals(tq * 2 * dk);
        const k = r.normals(tk * dk);
        const v = r.normals(tk * 3);
        const f = attentionForward(q, k, v, shape);
        for (let h = 0; h < 2; h++) {
          for (let i = 0; i < tq; i++) {
            let sum = 0;
            for (let j = 0; j < tk; j++) {
              const p = f.probs[(h * tq + i) * tk + j]!;
              if (j > i + extra) expect(p).toBe(0);
              sum += p;
            }
            expect(sum).toBeCloseTo(1, 12);
          }
        }
        // Perturb the last key and value: every query but those that see it is unchanged.
        const k2 = k.slice();
        const v2 = v.slice();
        for (let c = 0; c < dk; c++) k2[(tk - 1) * dk + c]! += 3;
        for (let c = 0; c < 3; c++) v2[(tk - 1) * 3 + c]! -= 2;
        const g = attentionForward(q, k2, v2, shape);
        const seeing = tq - 1; // only the last query sees key tk − 1
        for (let i = 0; i < seeing; i++) {
          for (let c = 0; c < 2 * 3; c++) expect(g.out[i * 6 + c]).toBe(f.out[i * 6 + c]);
        }
      }),
      { numRuns: runs(100) },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// RoPE and YaRN

/** The Hugging Face convention: permute to [even dims | odd dims], rotate halves, permute back. */
function halfSplitRope(x: Float64Array, cos: Float64Array, sin: Float64Array, half: number): Float64Array {
  const d = 2 * half;
  const p = new Float64Array(d);
  for (let i = 0; i < half; i++) {
    p[i] = x[2 * i]!;
    p[i + half] = x[2 * i + 1]!;
  }
  const y = new Float64Array(d);
  for (let i = 0; i < half; i++) {
    const a = p[i]! * cos[i]! - p[i + half]! * sin[i]!;
    const b = p[i + half]! * cos[i]! + p[i]! * sin[i]!;
    y[2 * i] = a;
    y[2 * i + 1] = b;
  }
  return y;
}

const ropeArb = fc.record({ half: fc.integer({ min: 1, max: 32 }), yarn: fc.boolean(), seed });
function ropeOf(yarn: boolean): RopeSpec {
  return yarn ? V3_YARN : { theta: 10000, yarn: null };
}

describe("RoPE and YaRN", () => {
  it("q·k after rotation depends only on the relative position (FP64, 1e-9·|q||k|)", () => {
    fc.assert(
      fc.property(ropeArb, fc.integer({ min: 0, max: 50000 }), fc.integer({ min: 0, max: 50000 }), fc.integer({ min: 0, max: 50000 }), (c, p, m, shift) => {
        const r = rnd(c.seed);
        const d = 2 * c.half;
        const q = r.normals(d);
        const k = r.normals(d);
        const rope = ropeOf(c.yarn);
        const dotAt = (pq: number, pk: number): number => {
          const a = ropeForward(q, ropeTable(d, rope, [pq]), 1, 1, d, 0);
          const b = ropeForward(k, ropeTable(d, rope, [pk]), 1, 1, d, 0);
          let s = 0;
          for (let i = 0; i < d; i++) s += a[i]! * b[i]!;
          return s;
        };
        const norm = Math.sqrt(q.reduce((s, v) => s + v * v, 0) * k.reduce((s, v) => s + v * v, 0));
        expect(Math.abs(dotAt(p, m) - dotAt(p + shift, m + shift))).toBeLessThanOrEqual(1e-9 * norm);
      }),
      { numRuns: runs(200) },
    );
  });

  it("rotates adjacent pairs (2i, 2i+1) by p·f_i, the same as the half-split convention after its permutation", () => {
    fc.assert(
      fc.property(ropeArb, fc.integer({ min: 0, max: 100000 }), (c, p) => {
        const r = rnd(c.seed);
        const d = 2 * c.half;
        const rope = ropeOf(c.yarn);
        const table = ropeTable(d, rope, [p]);
        const f = ropeFrequencies(d, rope);
        const i = r.int(c.half);
        const e = new Float64Array(d);
        e[2 * i] = 1;
        const y = ropeForward(e, table, 1, 1, d, 0);
        for (let j = 0; j < d; j++) {
          const want = j === 2 * i ? Math.cos(p * f[i]!) : j === 2 * i + 1 ? Math.sin(p * f[i]!) : 0;
          expect(y[j]).toBeCloseTo(want, 12);
        }
        const x = r.normals(d);
        expectClose(ropeForward(x, table, 1, 1, d, 0), halfSplitRope(x, table.cos, table.sin, c.half), 1e-15, "half-split");
      }),
      { numRuns: runs(100) },
    );
  });

  it("YaRN with factor 1 equals plain RoPE", () => {
    for (const d of [2, 8, 64, 128]) {
      const plain: RopeSpec = { theta: 10000, yarn: null };
      const one: RopeSpec = { theta: 10000, yarn: { ...V3_YARN.yarn!, factor: 1 } };
      expectClose(ropeFrequencies(d, one), ropeFrequencies(d, plain), 1e-15, `frequencies d=${d}`);
      const positions = [0, 1, 7, 4095, 163839];
      const a = ropeTable(d, one, positions);
      const b = ropeTable(d, plain, positions);
      expectClose(a.cos, b.cos, 1e-12, "cos");
      expectClose(a.sin, b.sin, 1e-12, "sin");
      expect(yarnSoftmaxScale(192, one)).toBe(yarnSoftmaxScale(192, plain));
    }
  });

  it("DeepSeek-V3: correction range [10, 23], fast dims kept, slow dims divided by 40, softmax scale ≈ 0.13523", () => {
    expect(yarnCorrectionRange(64, 10000, V3_YARN.yarn!)).toEqual({ low: 10, high: 23 });
    const plain = ropeFrequencies(64, { theta: 10000, yarn: null });
    const yarn = ropeFrequencies(64, V3_YARN);
    for (let i = 0; i < 32; i++) {
      if (i <= 10) expect(yarn[i]).toBe(plain[i]);
      else if (i >= 23) expect(yarn[i]! / (plain[i]! / 40)).toBeCloseTo(1, 14);
      else {
        expect(yarn[i]!).toBeLessThan(plain[i]!);
        expect(yarn[i]!).toBeGreaterThan(plain[i]! / 40);
      }
    }
    const scale = yarnSoftmaxScale(128 + 64, V3_YARN);
    expect(scale).toBeCloseTo(0.13523, 5);
    expect(scale).toBeCloseTo(192 ** -0.5 * (0.1 * Math.log(40) + 1) ** 2, 15);
    // One fact in one place: the checker's softmax scale is the same number.
    for (const file of ["specs/deepseek-v3.dsv3", "specs/tiny.dsv3"]) {
      const a = specOf(file).model.attention as MlaSpec;
      expect(yarnSoftmaxScale(a.qkNopeHeadDim + a.qkRopeHeadDim, a.rope)).toBeCloseTo(a.softmaxScale, 15);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Gate

const gateArb = fc
  .record({
    groups: fc.integer({ min: 1, max: 6 }),
    groupSize: fc.integer({ min: 1, max: 6 }),
    topGroupsFrac: fc.double({ min: 0, max: 1, noNaN: true }),
    topKFrac: fc.double({ min: 0, max: 1, noNaN: true }),
    scoring: fc.constantFrom<GateSpec["scoring"]>("sigmoid", "softmax"),
    groupScore: fc.constantFrom<GateSpec["groupScore"]>("top2_sum", "max"),
    normalizeTopk: fc.boolean(),
    routedScale: fc.constantFrom(1, 2.5, 16),
  })
  .map((g): GateConfig => {
    const topGroups = 1 + Math.floor(g.topGroupsFrac * (g.groups - 0.001));
    const topK = 1 + Math.floor(g.topKFrac * (topGroups * g.groupSize - 0.001));
    return {
      experts: g.groups * g.groupSize,
      topK,
      gate: {
        scoring: g.scoring,
        biasBalancing: { updateSpeed: 0.001 },
        groups: g.groups,
        topGroups,
        groupScore: g.groupScore,
        normalizeTopk: g.normalizeTopk,
        routedScale: g.routedScale,
        seqAuxLossWeight: 0,
      },
    };
  });

/** The selection rule written the slow, obvious way: sort groups, then sort candidates. */
function referenceSelect(sel: number[], cfg: GateConfig): { experts: number[]; groups: Set<number> } {
  const { groups, topGroups, groupScore } = cfg.gate;
  const size = cfg.experts / groups;
  const gs = Array.from({ length: groups }, (_, g) => {
    const v = sel.slice(g * size, (g + 1) * size).sort((a, b) => b - a);
    return { g, s: groupScore === "max" || size === 1 ? v[0]! : v[0]! + v[1]! };
  });
  const limited = groups > 1 && topGroups < groups;
  const kept = new Set(limited ? [...gs].sort((a, b) => b.s - a.s || a.g - b.g).slice(0, topGroups).map((e) => e.g) : gs.map((e) => e.g));
  const cands = sel.map((s, e) => ({ e, s })).filter((c) => kept.has(Math.floor(c.e / size)));
  cands.sort((a, b) => b.s - a.s || a.e - b.e);
  return { experts: cands.slice(0, cfg.topK).map((c) => c.e), groups: kept };
}

describe("gate", () => {
  it("selects the top-k of the top groups by biased score; weights from the unbiased scores", () => {
    fc.assert(
      fc.property(gateArb, fc.integer({ min: 1, max: 6 }), fc.boolean(), seed, (cfg, tokens, withBias, s) => {
        const r = rnd(s);
        const E = cfg.experts;
        const hidden = 4;
        const x = r.normals(tokens * hidden);
        const W = r.linear(E, hidden);
        const bias = withBias ? r.normals(E, 0.3) : null;
        const out = gateForward(x, W, bias, cfg, tokens, hidden);
        const size = E / cfg.gate.groups;
        for (let t = 0; t < tokens; t++) {
          const sc = Array.from(out.scores.subarray(t * E, (t + 1) * E));
          const sel = sc.map((v, e) => v + (bias ? bias[e]! : 0));
          const ref = referenceSelect(sel, cfg);
          const chosen = Array.from(out.experts.subarray(t * cfg.topK, (t + 1) * cfg.topK));
          expect(chosen).toEqual(ref.experts);
          expect(new Set(chosen).size).toBe(cfg.topK);
          for (const e of chosen) expect(ref.groups.has(Math.floor(e / size))).toBe(true);
          // Weights: unbiased scores of the chosen, normalised (sigmoid/V3) or not, times the scale.
          const picked = chosen.map((e) => sc[e]!);
          const sum = picked.reduce((a, b) => a + b, 0);
          const want = picked.map((v) => (cfg.gate.normalizeTopk ? v / sum : v) * cfg.gate.routedScale);
          const got = Array.from(out.weights.subarray(t * cfg.topK, (t + 1) * cfg.topK));
          expectClose(got, want, 1e-14, "weights");
          if (cfg.gate.normalizeTopk) expect(got.reduce((a, b) => a + b, 0)).toBeCloseTo(cfg.gate.routedScale, 12);
        }
      }),
      { numRuns: runs(300) },
    );
  });

  it("the bias changes which experts are chosen but not how they are weighted", () => {
    const cfg: GateConfig = {
      experts: 8,
      topK: 2,
      gate: { scoring: "sigmoid", biasBalancing: { updateSpeed: 0.001 }, groups: 4, topGroups: 2, groupScore: "top2_sum", normalizeTopk: true, routedScale: 2.5, seqAuxLossWeight: 0 },
    };
    const logits = Float64Array.from([2, 1.5, 0.1, 0, -1, -1.5, 0.5, 0.4]);
    const scores = gateScores(logits, 1, 8, "sigmoid");
    const plain = gateSelect(scores, null, cfg, 1);
    expect(Array.from(plain)).toEqual([0, 1]);
    const bias = Float64Array.from([0, 0, 0, 0, 0, 3, 0, 0]);
    const biased = gateSelect(scores, bias, cfg, 1);
    expect(Array.from(biased)).toEqual([5, 0]); // group 2 (experts 4, 5) now wins; expert 5 leads
    const x = Float64Array.from([1]);
    const out = gateForward(x, logits, bias, cfg, 1, 1);
    const s5 = scores[5]!;
    const s0 = scores[0]!;
    expect(out.weights[0]).toBeCloseTo((2.5 * s5) / (s5 + s0), 14);
    expect(out.weights[1]).toBeCloseTo((2.5 * s0) / (s5 + s0), 14);
  });

  it("V2: softmax scores without renormalisation, group max", () => {
    const cfg: GateConfig = {
      experts: 6,
      topK: 2,
      gate: { scoring: "softmax", biasBalancing: null, groups: 3, topGroups: 1, groupScore: "max", normalizeTopk: false, routedScale: 1, seqAuxLossWeight: 0 },
    };
    const logits = Float64Array.from([0.1, 0.2, 3, -2, 2.9, 2.8]);
    const out = gateForward(Float64Array.from([1]), logits, null, cfg, 1, 1);
    // Group maxima: 0.2, 3, 2.9 → group 1 alone (experts 2, 3); a top-2 sum would have picked group 2.
    expect(Array.from(out.experts)).toEqual([2, 3]);
    const z = Array.from(logits).reduce((a, l) => a + Math.exp(l), 0);
    expect(out.weights[0]).toBeCloseTo(Math.exp(3) / z, 14);
    expect(out.weights[1]).toBeCloseTo(Math.exp(-2) / z, 14);
    expect(out.weights[0]! + out.weights[1]!).toBeLessThan(1);
  });

  it("ties go to the lower index, groups and experts alike, deterministically", () => {
    const cfg: GateConfig = {
      experts: 12,
      topK: 4,
      gate: { scoring: "sigmoid", biasBalancing: null, groups: 4, topGroups: 2, groupScore: "top2_sum", normalizeTopk: true, routedScale: 2.5, seqAuxLossWeight: 0 },
    };
    const scores = new Float64Array(12).fill(0.5);
    expect(Array.from(gateSelect(scores, null, cfg, 1))).toEqual([0, 1, 2, 3]);
    // Equal group scores in groups 1 and 3, both above group 0: the lower (1) goes first.
    scores.set([0.9, 0.9, 0.1], 3);
    scores.set([0.9, 0.1, 0.9], 9);
    expect(Array.from(gateSelect(scores, null, cfg, 1))).toEqual([3, 4, 9, 11]);
    expect(Array.from(gateSelect(scores, null, cfg, 1))).toEqual([3, 4, 9, 11]);
  });

  it("FP32 selection matches the planner's router (compiler/plan/node-limited-routing.ts)", () => {
    fc.assert(
      fc.property(fc.constantFrom([8, 4, 2, 2], [16, 4, 2, 4], [32, 8, 4, 8], [12, 1, 1, 3]), fc.integer({ min: 1, max: 16 }), seed, (shape, tokens, s) => {
        const [E, groups, topGroups, topK] = shape as [number, number, number, number];
        const r = new TensorRandom<Float32Array>(s, "f32");
        const cfg: GateConfig = {
          experts: E,
          topK,
          gate: { scoring: "sigmoid", biasBalancing: { updateSpeed: 0.001 }, groups, topGroups, groupScore: "top2_sum", normalizeTopk: true, routedScale: 2.5, seqAuxLossWeight: 0 },
        };
        const x = r.normals(tokens * 8);
        const W = r.linear(E, 8);
        const bias = r.normals(E, 0.05);
        const ours = gateForward(x, W, bias, cfg, tokens, 8);
        const theirs = routeTokens(ours.scores, bias, { experts: E, groups, topGroups, topK, nodeLimit: null, routedScale: 2.5 });
        expect(Array.from(ours.experts)).toEqual(Array.from(theirs.experts));
        expectClose(ours.weights, theirs.weights, 1e-6, "weights");
      }),
      { numRuns: runs(100) },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Aux-loss-free balancing

describe("bias update", () => {
  it("drives a deliberately skewed router toward balance (max/mean load > 2 before, < 1.3 after 200 steps)", () => {
    const E = 16;
    const K = 2;
    const d = 8;
    const N = 4096;
    const gamma = 0.005;
    const r = new TensorRandom<Float32Array>(7, "f32");
    // A fixed synthetic token distribution with a constant feature, and gate weights whose column on
    // that feature ramps from −2 to +2: high-index experts are preferred by every token.
    const x = r.normals(N * d);
    for (let t = 0; t < N; t++) x[t * d] = 1;
    const W = r.normals(E * d, 0.5);
    for (let e = 0; e < E; e++) W[e * d] = -2 + (4 * e) / (E - 1);
    const cfg: GateConfig = {
      experts: E,
      topK: K,
      gate: { scoring: "sigmoid", biasBalancing: { updateSpeed: gamma }, groups: 4, topGroups: 2, groupScore: "top2_sum", normalizeTopk: true, routedScale: 2.5, seqAuxLossWeight: 0 },
    };
    const scores = gateScores(matmulABt(x, W, N, E, d), N, E, "sigmoid");
    const bias = new Float32Array(E);
    const history: number[] = [];
    for (let step = 0; step <= 200; step++) {
      const load = expertLoad(gateSelect(scores, bias, cfg, N), E);
      expect(load.reduce((a, b) => a + b, 0)).toBe(N * K);
      history.push(loadImbalance(load));
      if (step < 200) biasUpdate(bias, load, gamma);
    }
    const before = history[0]!;
    const after = history[200]!;
    const lastTwenty = Math.max(...history.slice(181));
    console.log(
      `bias update (E=${E}, top-${K}, ${N} tokens, γ=${gamma}): max/mean load ${before.toFixed(3)} before → ${after.toFixed(3)} after 200 steps (worst of the last 20: ${lastTwenty.toFixed(3)})`,
    );
    expect(before).toBeGreaterThan(2);
    expect(after).toBeLessThan(1.3);
    expect(lastTwenty).toBeLessThan(1.3);
    // The bias moved against the skew: the favoured experts' bias went down, the others' up.
    expect(bias[E - 1]!).toBeLessThan(0);
    expect(bias[0]!).toBeGreaterThan(0);
  });

  it("moves each bias by exactly γ toward the mean (0 at the mean)", () => {
    const bias = new Float64Array([0, 0, 0, 0]);
    biasUpdate(bias, [1, 5, 3, 3], 0.01);
    expect(Array.from(bias)).toEqual([0.01, -0.01, 0, 0]);
  });
});

// ---------------------------------------------------------------------------------------------
// Losses, MoE, embedding, MTP, small ops

describe("losses", () => {
  it("cross-entropy at uniform logits is ln(vocab), stably for huge logits, in FP64 and FP32", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 300 }), fc.constantFrom(0, 1, -7.5, 1e4, -3e4), (tokens, vocab, level) => {
        const labels = Int32Array.from({ length: tokens }, (_, t) => (t * 7) % vocab);
        for (const logits of [new Float64Array(tokens * vocab).fill(level), new Float32Array(tokens * vocab).fill(level)]) {
          const loss = crossEntropyForward(logits, labels, tokens, vocab);
          expect(loss).toBeCloseTo(Math.log(vocab), 10);
          const dz = crossEntropyBackward(1, logits, labels, tokens, vocab);
          let sum = 0;
          for (const v of dz) sum += v;
          expect(Math.abs(sum)).toBeLessThan(1e-6);
        }
      }),
      { numRuns: runs(100) },
    );
    const confident = Float64Array.from([0, 0, 50, 0]);
    expect(crossEntropyForward(confident, Int32Array.from([2]), 1, 4)).toBeLessThan(1e-20);
    expect(crossEntropyForward(Float64Array.from([1, 2, 3, 4]), Int32Array.from([-1, -1]), 2, 2)).toBe(0);
  });

  it("sequence-wise auxiliary loss: α at balance (f_i = 1, P_i = 1/N_r), α·N_r/K_r when every token agrees", () => {
    const E = 8;
    const K = 2;
    const T = 8;
    const alpha = 0.003;
    const cfg = { experts: E, topK: K, alpha, seqLen: T };
    const uniform = new Float64Array(T * E).fill(0.7);
    const roundRobin = Int32Array.from({ length: T * K }, (_, i) => i % E);
    const balanced = seqAuxLossForward(uniform, roundRobin, cfg, T);
    expect(balanced.loss).toBeCloseTo(alpha, 15);
    for (const f of balanced.f) expect(f).toBeCloseTo(1, 15);
    const peaked = new Float64Array(T * E);
    const same = new Int32Array(T * K);
    for (let t = 0; t < T; t++) {
      peaked[t * E + 3] = 0.9;
      peaked[t * E + 5] = 0.9;
      same[t * K] = 3;
      same[t * K + 1] = 5;
    }
    expect(seqAuxLossForward(peaked, same, cfg, T).loss).toBeCloseTo((alpha * E) / K, 15);
    // Two sequences: the mean of the two per-sequence losses.
    const two = seqAuxLossForward(Float64Array.from([...uniform, ...peaked]), Int32Array.from([...roundRobin, ...same]), cfg, 2 * T);
    expect(two.loss).toBeCloseTo((alpha + (alpha * E) / K) / 2, 15);
  });

  it("MTP: ids and labels per depth, and L_MTP = λ/D·ΣL^k", () => {
    const ids = Int32Array.from([10, 11, 12, 13, 14]);
    const one = mtpShift(ids, 1);
    expect(one.rows).toBe(4);
    expect(Array.from(one.inputIds)).toEqual([11, 12, 13, 14]);
    expect(Array.from(one.labels)).toEqual([12, 13, 14, -1]);
    const two = mtpShift(ids, 2);
    expect(Array.from(two.inputIds)).toEqual([12, 13, 14]);
    expect(Array.from(two.labels)).toEqual([13, 14, -1]);
    expect(mtpLoss([2, 4], 0.3)).toBeCloseTo(0.9, 15);
    expect(mtpLoss([1.5], 0.1)).toBeCloseTo(0.15, 15);
  });
});

describe("MoE", () => {
  it("one expert with weight 1 is a plain SwiGLU MLP; shared experts add their own MLP", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 2 }), seed, (tokens, hidden, inter, shared, s) => {
        const r = rnd(s);
        const x = r.normals(tokens * hidden);
        const one = { hidden, experts: 1, topK: 1, inter, shared: 0 };
        const w = randomMoeWeights(r, one);
        const routing = { experts: new Int32Array(tokens), weights: new Float64Array(tokens).fill(1) };
        const moe = moeForward(x, w, routing, one, tokens).y;
        const mlp = swigluMlpForward(x, { gate: w.gate, up: w.up, down: w.down }, tokens, hidden, inter).y;
        expect(Array.from(moe)).toEqual(Array.from(mlp));

        const withShared = { ...one, shared };
        const sw = randomSwigluMlpWeights(r, hidden, shared * inter);
        const both = moeForward(x, { ...w, shared: sw }, routing, withShared, tokens).y;
        const sharedOut = swigluMlpForward(x, sw, tokens, hidden, shared * inter).y;
        for (let i = 0; i < both.length; i++) expect(both[i]!).toBeCloseTo(mlp[i]! + sharedOut[i]!, 13);
      }),
      { numRuns: runs(100) },
    );
  });

  it("equals the per-token weighted sum of its chosen experts", () => {
    const r = rnd(3);
    const cfg = { hidden: 5, experts: 6, topK: 3, inter: 4, shared: 1 };
    const tokens = 7;
    const w = randomMoeWeights(r, cfg);
    const x = r.normals(tokens * cfg.hidden);
    const experts = Int32Array.from({ length: tokens * cfg.topK }, (_, i) => (i * 5 + Math.floor(i / 3)) % cfg.experts);
    const routing = { experts, weights: r.normals(tokens * cfg.topK, 0.3, 1) };
    const y = moeForward(x, w, routing, cfg, tokens).y;
    const n = cfg.inter * cfg.hidden;
    for (let t = 0; t < tokens; t++) {
      const xt = x.slice(t * cfg.hidden, (t + 1) * cfg.hidden);
      const want = swigluMlpForward(xt, w.shared!, 1, cfg.hidden, cfg.inter).y;
      for (let k = 0; k < cfg.topK; k++) {
        const e = experts[t * cfg.topK + k]!;
        const ew = { gate: w.gate.subarray(e * n, (e + 1) * n), up: w.up.subarray(e * n, (e + 1) * n), down: w.down.subarray(e * n, (e + 1) * n) };
        const ye = swigluMlpForward(xt, ew, 1, cfg.hidden, cfg.inter).y;
        for (let j = 0; j < cfg.hidden; j++) want[j]! += routing.weights[t * cfg.topK + k]! * ye[j]!;
      }
      expectClose(y.subarray(t * cfg.hidden, (t + 1) * cfg.hidden), want, 1e-14, `token ${t}`);
    }
  });
});

describe("small ops", () => {
  it("linear equals the numerics' FP64 GEMM; RMSNorm with unit weight has unit RMS", () => {
    const r = rnd(11);
    const x = r.normals(5 * 7);
    const w = r.normals(3 * 7);
    expect(Array.from(linearForward(x, w, 5, 7, 3))).toEqual(Array.from(gemmF64(x, w, 5, 3, 7)));
    const y = rmsnormForward(x, new Float64Array(7).fill(1), 5, 7, 0);
    for (let row = 0; row < 5; row++) {
      let ss = 0;
      for (let j = 0; j < 7; j++) ss += y[row * 7 + j]! ** 2;
      expect(Math.sqrt(ss / 7)).toBeCloseTo(1, 14);
    }
  });

  it("embedding looks rows up and scatter-adds repeated ids", () => {
    const table = Float64Array.from([1, 2, 3, 4, 5, 6]);
    const ids = Int32Array.from([2, 0, 2]);
    expect(Array.from(embeddingForward(ids, table, 3, 2))).toEqual([5, 6, 1, 2, 5, 6]);
    const d = embeddingBackward(Float64Array.from([1, 1, 10, 10, 100, 100]), ids, 3, 2);
    expect(Array.from(d)).toEqual([10, 10, 0, 0, 101, 101]);
  });

  it("rejects mismatched shapes with the op and tensor named", () => {
    expect(() => linearForward(new Float64Array(6), new Float64Array(5), 2, 3, 2)).toThrow(/linearForward: w has 5 elements, want 6/);
    expect(() => ropeTable(3, { theta: 10000, yarn: null }, [0])).toThrow(/must be even/);
    expect(() => attentionForward(new Float64Array(4), new Float64Array(2), new Float64Array(2), { tq: 2, tk: 1, heads: 1, kvHeads: 1, dk: 2, dv: 2, scale: 1 })).toThrow(
      /without keys/,
    );
  });
});

describe("decoder layer on the tiny spec", () => {
  it("FP32 tracks FP64 (1e-4 of the output scale), with the spec's MoE gate and auxiliary loss", () => {
    const model = specOf("specs/tiny.dsv3").model;
    const T = 16;
    const cfg = decoderLayerConfigOf(model, "moe", T);
    expect(cfg.ffn.kind).toBe("moe");
    const r = rnd(9);
    const w = randomDecoderLayerWeights(r, cfg);
    for (let e = 0; e < w.gateBias!.length; e++) w.gateBias![e] = 0.01 * (e - 3);
    const x = r.normals(T * model.hidden);
    const f64 = decoderLayerForward(x, w, cfg, T);
    const w32: DecoderLayerWeights<Float32Array> = {
      attnNorm: toF32(w.attnNorm),
      mla: mlaWeightsF32(w.mla),
      ffnNorm: toF32(w.ffnNorm),
      dense: null,
      moe: {
        gate: toF32(w.moe!.gate),
        up: toF32(w.moe!.up),
        down: toF32(w.moe!.down),
        shared: { gate: toF32(w.moe!.shared!.gate), up: toF32(w.moe!.shared!.up), down: toF32(w.moe!.shared!.down) },
      },
      gate: toF32(w.gate),
      gateBias: toF32(w.gateBias),
    };
    // Same routing in both precisions (a near-tie could flip in FP32), then compare.
    const f32 = decoderLayerForward(Float32Array.from(x), w32, cfg, T, { fixedExperts: f64.cache.gate!.experts });
    expectClose(f32.y, f64.y, 1e-4, "decoder layer FP32 vs FP64");
    expect(f64.auxLoss).toBeGreaterThan(0);
    expect(f32.auxLoss).toBeCloseTo(f64.auxLoss, 6);
  });
});
