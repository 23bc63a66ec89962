/**
 * Gradient checks of every reference op (backends/reference/ops): the analytic backward against
 * central finite differences in FP64, on random shapes and inputs (fast-check picks the shapes and a
 * seed; the seed draws the values).
 *
 * Each check takes a scalar loss L = Σ out ⊙ R (R random, fixed per case; the op's own scalar where it
 * has one) and compares the backward's g_i with a five-point central difference
 *   fd_i = [8·(L(x_i + h) − L(x_i − h)) − (L(x_i + 2h) − L(x_i − 2h))] / (12h),   h = s·max(1, |x_i|),
 * (truncation error O(h⁴)). A coordinate passes when
 *   |fd_i − g_i| ≤ RTOL·(|g_i| + 1e-3·max_j |g_j|) + 1e-14·(1 + |L|)/s,   RTOL = 1e-6,
 * the last term being the difference's own round-off (≈ ε·|L|/h) with a 100× margin. The relative
 * step s is 1e-4, retried at 1e-5 and 1e-6 where the function curves sharply (RMSNorm of a rank-1
 * latent, say); even at 1e-6 the round-off term is only 1e-8·(1 + |L|). Tensors with more than MAX_COORDS elements
 * are checked at MAX_COORDS random coordinates. The worst |fd − g| per gradient, as a fraction of
 * its tolerance, is printed at the end. OPS_RUNS_SCALE=10 runs ten times as many cases.
 *
 * The gate and the MoE are checked at a fixed selection (the chosen experts are pinned; selection is
 * piecewise constant and not differentiable, and the bias gets no gradient); attention always has the
 * causal mask, with random query/key counts and offsets.
 */
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import type { GateSpec, MlaSpec, RopeSpec } from "../compiler/spec.js";
import {
  TensorRandom,
  attentionBackward,
  attentionForward,
  crossEntropyBackward,
  crossEntropyForward,
  decoderLayerBackward,
  decoderLayerForward,
  embeddingBackward,
  embeddingForward,
  gateBackward,
  gateForward,
  linearBackward,
  linearForward,
  mlaAbsorbedBackward,
  mlaAbsorbedForward,
  mlaBackward,
  mlaForward,
  moeBackward,
  moeForward,
  mtpBackward,
  mtpForward,
  mtpLoss,
  mtpLossWeight,
  mtpShift,
  outputHeadBackward,
  outputHeadForward,
  randomDecoderLayerWeights,
  randomMlaWeights,
  randomMoeWeights,
  rmsnormBackward,
  rmsnormForward,
  ropeBackward,
  ropeForward,
  ropeTable,
  seqAuxLossBackward,
  seqAuxLossForward,
  swigluBackward,
  swigluForward,
  swigluMlpBackward,
  swigluMlpForward,
  yarnSoftmaxScale,
  type DecoderLayerConfig,
  type DecoderLayerGrads,
  type DecoderLayerWeights,
  type GateConfig,
  type MlaConfig,
  type MlaWeightName,
  type MoeConfig,
  type MtpBlock,
  type MtpWeights,
} from "../backends/reference/ops/index.js";

type R64 = TensorRandom<Float64Array>;
const rnd = (seed: number): R64 => new TensorRandom<Float64Array>(seed, "f64");

const RTOL = Number(process.env.OPS_GRAD_RTOL ?? 1e-6);
const MAX_COORDS = 16;
/** Relative FD steps, tried in order until one agrees (smaller steps for sharply curved points). */
const STEPS = [1e-4, 1e-5, 1e-6];
const worst = new Map<string, number>();

afterAll(() => {
  const rows = [...worst.entries()].map(([k, v]) => `${k.padEnd(34)} ${v.toFixed(4)}`);
  console.log(`worst |fd − g| per gradient as a fraction of its tolerance (RTOL ${RTOL}; ≤ 1 passes):\n${rows.join("\n")}`);
});

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** Central-difference check of `analytic` = dL/dx, x mutated in place and restored. */
function checkGrad(name: string, loss: () => number, x: Float64Array, analytic: ArrayLike<number>, r: R64): void {
  expect(analytic.length, `${name}: gradient length`).toBe(x.length);
  let maxAbs = 0;
  for (let i = 0; i < analytic.length; i++) maxAbs = Math.max(maxAbs, Math.abs(analytic[i]!));
  const coords: number[] = [];
  if (x.length <= MAX_COORDS) for (let i = 0; i < x.length; i++) coords.push(i);
  else for (let i = 0; i < MAX_COORDS; i++) coords.push(r.int(x.length));
  const lossScale = 1 + Math.abs(loss());
  let worstHere = 0;
  for (const i of coords) {
    const x0 = x[i]!;
    const g = analytic[i]!;
    let best = Infinity;
    let bestFd = NaN;
    for (const rel of STEPS) {
      const h = rel * Math.max(1, Math.abs(x0));
      const at = (step: number): number => {
        x[i] = x0 + step * h;
        return loss();
      };
      const fd = (8 * (at(1) - at(-1)) - (at(2) - at(-2))) / (12 * h);
      x[i] = x0;
      const tol = RTOL * (Math.abs(g) + 1e-3 * maxAbs) + (1e-14 * lossScale) / rel;
      const err = Math.abs(fd - g) / tol;
      if (err < best) {
        best = err;
        bestFd = fd;
      }
      if (err <= 1) break;
    }
    if (best > worstHere) worstHere = best;
    if (!(best <= 1)) {
      expect.fail(`${name}[${i}]: finite difference ${bestFd} vs backward ${g} (${best.toFixed(2)}× the tolerance)`);
    }
  }
  worst.set(name, Math.max(worst.get(name) ?? 0, worstHere));
}

const seed = fc.integer({ min: 0, max: 0x7fffffff });
/** Cases per property; OPS_RUNS_SCALE=10 runs ten times as many (a slow, deeper search). */
const runs = (n: number): number => Math.max(1, Math.round(n * Number(process.env.OPS_RUNS_SCALE ?? 1)));

function ropeSpec(r: R64, yarn: boolean): RopeSpec {
  return {
    theta: [10000, 500, 50][r.int(3)]!,
    yarn: yarn
      ? {
          factor: 2 + 30 * r.uniform(),
          originalContext: [16, 64, 4096][r.int(3)]!,
          betaFast: 32,
          betaSlow: 1,
          mscale: 0.5 + r.uniform(),
          mscaleAllDim: 0.5 + r.uniform(),
        }
      : null,
  };
}

describe("elementwise and dense ops", () => {
  it("RMSNorm: dx, dw", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 12 }), fc.constantFrom(1e-6, 0.1), seed, (rows, dim, eps, s) => {
        const r = rnd(s);
        const x = r.normals(rows * dim);
        const w = r.norm(dim);
        const R = r.normals(rows * dim);
        const loss = () => dot(rmsnormForward(x, w, rows, dim, eps), R);
        const g = rmsnormBackward(R, x, w, rows, dim, eps);
        checkGrad("rmsnorm dx", loss, x, g.dx, r);
        checkGrad("rmsnorm dw", loss, w, g.dw, r);
      }),
      { numRuns: runs(150) },
    );
  });

  it("linear: dx, dW", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 8 }), seed, (rows, inF, outF, s) => {
        const r = rnd(s);
        const x = r.normals(rows * inF);
        const w = r.linear(outF, inF);
        const R = r.normals(rows * outF);
        const loss = () => dot(linearForward(x, w, rows, inF, outF), R);
        const g = linearBackward(R, x, w, rows, inF, outF);
        checkGrad("linear dx", loss, x, g.dx, r);
        checkGrad("linear dW", loss, w, g.dw, r);
      }),
      { numRuns: runs(150) },
    );
  });

  it("SwiGLU activation and MLP", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 8 }), seed, (rows, hidden, inter, s) => {
        const r = rnd(s);
        const gIn = r.normals(rows * inter, 2);
        const uIn = r.normals(rows * inter);
        const Rh = r.normals(rows * inter);
        const lossAct = () => dot(swigluForward(gIn, uIn), Rh);
        const ga = swigluBackward(Rh, gIn, uIn);
        checkGrad("swiglu dg", lossAct, gIn, ga.dg, r);
        checkGrad("swiglu du", lossAct, uIn, ga.du, r);

        const x = r.normals(rows * hidden);
        const w = { gate: r.linear(inter, hidden), up: r.linear(inter, hidden), down: r.linear(hidden, inter) };
        const R = r.normals(rows * hidden);
        const loss = () => dot(swigluMlpForward(x, w, rows, hidden, inter).y, R);
        const f = swigluMlpForward(x, w, rows, hidden, inter);
        const g = swigluMlpBackward(R, x, w, f.cache, rows, hidden, inter);
        checkGrad("swiglu mlp dx", loss, x, g.dx, r);
        checkGrad("swiglu mlp dGate", loss, w.gate, g.dGate, r);
        checkGrad("swiglu mlp dUp", loss, w.up, g.dUp, r);
        checkGrad("swiglu mlp dDown", loss, w.down, g.dDown, r);
      }),
      { numRuns: runs(100) },
    );
  });

  it("RoPE (plain and YaRN) on a strided sub-range", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 2 }),
        fc.boolean(),
        seed,
        (tokens, groups, half, before, after, yarn, s) => {
          const r = rnd(s);
          const dim = 2 * half;
          const stride = before + dim + after;
          const positions = Int32Array.from({ length: tokens }, () => r.int(5000));
          const table = ropeTable(dim, ropeSpec(r, yarn), positions);
          const x = r.normals(tokens * groups * stride);
          const R = r.normals(x.length);
          const loss = () => dot(ropeForward(x, table, tokens, groups, stride, before), R);
          checkGrad("rope dx", loss, x, ropeBackward(R, table, tokens, groups, stride, before), r);
        },
      ),
      { numRuns: runs(150) },
    );
  });

  it("causal attention: dq, dk, dv (GQA/MQA heads, tq ≤ tk, random offsets)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 3 }),
        fc.constantFrom([1, 1], [2, 1], [2, 2], [3, 1], [4, 2]),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 5 }),
        fc.boolean(),
        seed,
        (tq, extra, [heads, kvHeads], dk, dv, defaultOffset, s) => {
          const r = rnd(s);
          const tk = tq + extra;
          const shape = {
            tq,
            tk,
            heads: heads!,
            kvHeads: kvHeads!,
            dk,
            dv,
            scale: 0.2 + r.uniform(),
            ...(defaultOffset ? {} : { causalOffset: r.int(tk) }),
          };
          const q = r.normals(tq * heads! * dk);
          const k = r.normals(tk * kvHeads! * dk);
          const v = r.normals(tk * kvHeads! * dv);
          const R = r.normals(tq * heads! * dv);
          const loss = () => dot(attentionForward(q, k, v, shape).out, R);
          const f = attentionForward(q, k, v, shape);
          const g = attentionBackward(R, q, k, v, f.probs, shape);
          checkGrad("attention dq", loss, q, g.dq, r);
          checkGrad("attention dk", loss, k, g.dk, r);
          checkGrad("attention dv", loss, v, g.dv, r);
        },
      ),
      { numRuns: runs(150) },
    );
  });

  it("cross-entropy (with ignored labels)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 12 }), seed, (tokens, vocab, s) => {
        const r = rnd(s);
        const logits = r.normals(tokens * vocab, 3);
        const labels = Int32Array.from({ length: tokens }, (_, t) => (t > 0 && r.uniform() < 0.25 ? -1 : r.int(vocab)));
        const dL = 0.5 + r.uniform();
        const loss = () => dL * crossEntropyForward(logits, labels, tokens, vocab);
        checkGrad("cross-entropy dlogits", loss, logits, crossEntropyBackward(dL, logits, labels, tokens, vocab), r);
      }),
      { numRuns: runs(150) },
    );
  });

  it("embedding: scatter-add backward (repeated ids)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), seed, (tokens, vocab, hidden, s) => {
        const r = rnd(s);
        const table = r.normals(vocab * hidden);
        const ids = Int32Array.from({ length: tokens }, () => r.int(vocab));
        const R = r.normals(tokens * hidden);
        const loss = () => dot(embeddingForward(ids, table, vocab, hidden), R);
        checkGrad("embedding dTable", loss, table, embeddingBackward(R, ids, vocab, hidden), r);
      }),
      { numRuns: runs(100) },
    );
  });

  it("output head: final RMSNorm + projection", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 9 }), seed, (tokens, hidden, vocab, s) => {
        const r = rnd(s);
        const h = r.normals(tokens * hidden);
        const norm = r.norm(hidden);
        const head = r.linear(vocab, hidden);
        const R = r.normals(tokens * vocab);
        const eps = 1e-6;
        const loss = () => dot(outputHeadForward(h, norm, head, tokens, hidden, vocab, eps).logits, R);
        const f = outputHeadForward(h, norm, head, tokens, hidden, vocab, eps);
        const g = outputHeadBackward(R, h, norm, head, f, tokens, hidden, vocab, eps);
        checkGrad("output head dh", loss, h, g.dh, r);
        checkGrad("output head dNorm", loss, norm, g.dNorm, r);
        checkGrad("output head dHead", loss, head, g.dHead, r);
      }),
      { numRuns: runs(100) },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// MLA

const mlaArb = fc.record({
  hidden: fc.integer({ min: 2, max: 8 }),
  heads: fc.integer({ min: 1, max: 3 }),
  qLoraRank: fc.option(fc.integer({ min: 1, max: 5 }), { nil: null }),
  kvLoraRank: fc.integer({ min: 1, max: 5 }),
  nope: fc.integer({ min: 1, max: 4 }),
  ropeHalf: fc.integer({ min: 1, max: 3 }),
  v: fc.integer({ min: 1, max: 4 }),
  yarn: fc.boolean(),
  tokens: fc.integer({ min: 1, max: 5 }),
  seed,
});
type MlaCase = typeof mlaArb extends fc.Arbitrary<infer T> ? T : never;

function mlaConfigOf(c: MlaCase, r: R64): MlaConfig {
  const rope = ropeSpec(r, c.yarn);
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

const MLA_WEIGHTS: MlaWeightName[] = ["qA", "qANorm", "qB", "q", "kvA", "kvANorm", "kvB", "o"];

describe("MLA", () => {
  it("naive form: dx and every weight (q_lora on/off, YaRN on/off)", () => {
    fc.assert(
      fc.property(mlaArb, fc.integer({ min: 0, max: 3000 }), (c, start) => {
        const r = rnd(c.seed);
        const cfg = mlaConfigOf(c, r);
        const w = randomMlaWeights(r, cfg);
        const x = r.normals(c.tokens * cfg.hidden);
        const R = r.normals(c.tokens * cfg.hidden);
        const loss = () => dot(mlaForward(x, w, cfg, c.tokens, start).y, R);
        const f = mlaForward(x, w, cfg, c.tokens, start);
        const b = mlaBackward(R, x, w, cfg, f.cache);
        checkGrad("mla naive dx", loss, x, b.dx, r);
        for (const name of MLA_WEIGHTS) {
          const p = w[name];
          if (p === null) continue;
          checkGrad(`mla naive d${name}`, loss, p, b.grads[name]!, r);
        }
      }),
      { numRuns: runs(60) },
    );
  });

  it("absorbed form: dx, the latent cache and every weight", () => {
    fc.assert(
      fc.property(mlaArb, fc.integer({ min: 0, max: 3 }), (c, extra) => {
        const r = rnd(c.seed);
        const cfg = mlaConfigOf(c, r);
        const a = cfg.attention;
        const w = randomMlaWeights(r, cfg);
        const S = c.tokens + extra;
        const latent = { tokens: S, latent: r.normals(S * a.kvLoraRank), kRope: r.normals(S * a.qkRopeHeadDim) };
        const xq = r.normals(c.tokens * cfg.hidden);
        const R = r.normals(c.tokens * cfg.hidden);
        const loss = () => dot(mlaAbsorbedForward(xq, latent, w, cfg, c.tokens).y, R);
        const f = mlaAbsorbedForward(xq, latent, w, cfg, c.tokens);
        const b = mlaAbsorbedBackward(R, xq, latent, w, cfg, f.cache);
        checkGrad("mla absorbed dx", loss, xq, b.dx, r);
        checkGrad("mla absorbed dLatent", loss, latent.latent, b.dLatent, r);
        checkGrad("mla absorbed dKRope", loss, latent.kRope, b.dKRope, r);
        for (const name of MLA_WEIGHTS) {
          const p = w[name];
          if (p === null || name === "kvA" || name === "kvANorm") continue;
          checkGrad(`mla absorbed d${name}`, loss, p, b.grads[name]!, r);
        }
      }),
      { numRuns: runs(60) },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Gate, MoE, auxiliary loss

const gateArb = fc
  .record({
    groups: fc.integer({ min: 1, max: 4 }),
    groupSize: fc.integer({ min: 1, max: 4 }),
    topGroupsFrac: fc.double({ min: 0, max: 1, noNaN: true }),
    topKFrac: fc.double({ min: 0, max: 1, noNaN: true }),
    scoring: fc.constantFrom<GateSpec["scoring"]>("sigmoid", "softmax"),
    groupScore: fc.constantFrom<GateSpec["groupScore"]>("top2_sum", "max"),
    normalizeTopk: fc.boolean(),
    bias: fc.boolean(),
    routedScale: fc.constantFrom(1, 2.5, 16),
  })
  .map((g) => {
    const topGroups = 1 + Math.floor(g.topGroupsFrac * (g.groups - 0.001));
    const topK = 1 + Math.floor(g.topKFrac * (topGroups * g.groupSize - 0.001));
    const gate: GateSpec = {
      scoring: g.scoring,
      biasBalancing: g.bias ? { updateSpeed: 0.001 } : null,
      groups: g.groups,
      topGroups,
      groupScore: g.groupScore,
      normalizeTopk: g.normalizeTopk,
      routedScale: g.routedScale,
      seqAuxLossWeight: 0,
    };
    const cfg: GateConfig = { experts: g.groups * g.groupSize, topK, gate };
    return cfg;
  });

describe("gate, MoE, auxiliary loss", () => {
  it("gate at a fixed selection: dx, dW (through the weights and an extra score gradient)", () => {
    fc.assert(
      fc.property(gateArb, fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 6 }), seed, (cfg, tokens, hidden, s) => {
        const r = rnd(s);
        const x = r.normals(tokens * hidden);
        const W = r.linear(cfg.experts, hidden);
        const bias = cfg.gate.biasBalancing ? r.normals(cfg.experts, 0.3) : null;
        const base = gateForward(x, W, bias, cfg, tokens, hidden);
        const Rw = r.normals(tokens * cfg.topK);
        const Rs = r.normals(tokens * cfg.experts);
        const loss = () => {
          const f = gateForward(x, W, bias, cfg, tokens, hidden, base.experts);
          return dot(f.weights, Rw) + dot(f.scores, Rs);
        };
        const g = gateBackward(Rw, Rs, x, W, base, cfg, hidden);
        checkGrad("gate dx", loss, x, g.dx, r);
        checkGrad("gate dW", loss, W, g.dw, r);
      }),
      { numRuns: runs(150) },
    );
  });

  it("MoE at a fixed routing: dx, routed and shared expert weights, routing weights", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 2 }),
        fc.integer({ min: 1, max: 5 }),
        seed,
        (experts, topKWant, hidden, inter, shared, tokens, s) => {
          const r = rnd(s);
          const topK = Math.min(topKWant, experts);
          const cfg: MoeConfig = { hidden, experts, topK, inter, shared };
          const w = randomMoeWeights(r, cfg);
          const chosen = new Int32Array(tokens * topK);
          for (let t = 0; t < tokens; t++) {
            const perm = Array.from({ length: experts }, (_, e) => e);
            for (let i = experts - 1; i > 0; i--) {
              const j = r.int(i + 1);
              [perm[i], perm[j]] = [perm[j]!, perm[i]!];
            }
            for (let k = 0; k < topK; k++) chosen[t * topK + k] = perm[k]!;
          }
          const routing = { experts: chosen, weights: r.normals(tokens * topK, 0.5, 0.5) };
          const x = r.normals(tokens * hidden);
          const R = r.normals(tokens * hidden);
          const loss = () => dot(moeForward(x, w, routing, cfg, tokens).y, R);
          const f = moeForward(x, w, routing, cfg, tokens);
          const b = moeBackward(R, x, w, routing, cfg, f.cache);
          checkGrad("moe dx", loss, x, b.dx, r);
          checkGrad("moe dWeights (routing)", loss, routing.weights, b.dWeights, r);
          checkGrad("moe routed dGate", loss, w.gate, b.grads.gate, r);
          checkGrad("moe routed dUp", loss, w.up, b.grads.up, r);
          checkGrad("moe routed dDown", loss, w.down, b.grads.down, r);
          if (w.shared) {
            checkGrad("moe shared dGate", loss, w.shared.gate, b.grads.shared!.gate, r);
            checkGrad("moe shared dDown", loss, w.shared.down, b.grads.shared!.down, r);
          }
        },
      ),
      { numRuns: runs(100) },
    );
  });

  it("sequence-wise auxiliary loss: dscores", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 3 }),
        seed,
        (experts, topKWant, seqLen, seqs, s) => {
          const r = rnd(s);
          const topK = Math.min(topKWant, experts);
          const tokens = seqLen * seqs;
          const scores = r.zeros(tokens * experts);
          for (let i = 0; i < scores.length; i++) scores[i] = 0.05 + r.uniform();
          const chosen = Int32Array.from({ length: tokens * topK }, (_, i) => (i % topK) + (r.int(experts - topK + 1)));
          const cfg = { experts, topK, alpha: 0.001 + r.uniform(), seqLen };
          const loss = () => seqAuxLossForward(scores, chosen, cfg, tokens).loss;
          checkGrad("aux loss dscores", loss, scores, seqAuxLossBackward(1, scores, chosen, cfg, tokens), r);
        },
      ),
      { numRuns: runs(150) },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Composite: decoder layer (MoE + aux loss), MTP modules with the weighted MTP loss

function tinyMla(r: R64, hidden: number, yarn: boolean): MlaConfig {
  return mlaConfigOf({ hidden, heads: 2, qLoraRank: 3, kvLoraRank: 4, nope: 2, ropeHalf: 1, v: 3, yarn, tokens: 1, seed: 0 }, r);
}

function moeLayerConfig(r: R64, hidden: number, seqLen: number): DecoderLayerConfig {
  const gate: GateSpec = {
    scoring: "sigmoid",
    biasBalancing: { updateSpeed: 0.001 },
    groups: 2,
    topGroups: 1,
    groupScore: "top2_sum",
    normalizeTopk: true,
    routedScale: 2.5,
    seqAuxLossWeight: 0.01,
  };
  return {
    mla: tinyMla(r, hidden, true),
    ffn: {
      kind: "moe",
      moe: { hidden, experts: 4, topK: 2, inter: 3, shared: 1 },
      gate: { experts: 4, topK: 2, gate },
      auxLoss: { alpha: 0.5, seqLen },
    },
  };
}

describe("composite", () => {
  it("MoE decoder layer with the auxiliary loss, at a fixed routing", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 2, max: 6 }), seed, (tokens, hidden, s) => {
        const r = rnd(s);
        const cfg = moeLayerConfig(r, hidden, tokens);
        const w = randomDecoderLayerWeights(r, cfg);
        for (let i = 0; i < w.gateBias!.length; i++) w.gateBias![i] = 0.2 * r.normal();
        const x = r.normals(tokens * hidden);
        const R = r.normals(tokens * hidden);
        const base = decoderLayerForward(x, w, cfg, tokens);
        const fixedExperts = base.cache.gate!.experts;
        const loss = () => {
          const f = decoderLayerForward(x, w, cfg, tokens, { fixedExperts });
          return dot(f.y, R) + f.auxLoss;
        };
        const b = decoderLayerBackward(R, 1, x, w, cfg, base.cache);
        checkGrad("decoder layer dx", loss, x, b.dx, r);
        checkGrad("decoder layer dAttnNorm", loss, w.attnNorm, b.grads.attnNorm, r);
        checkGrad("decoder layer dFfnNorm", loss, w.ffnNorm, b.grads.ffnNorm, r);
        checkGrad("decoder layer dGate", loss, w.gate!, b.grads.gate!, r);
        checkGrad("decoder layer d(mla kvA)", loss, w.mla.kvA, b.grads.mla.kvA, r);
        checkGrad("decoder layer d(experts up)", loss, w.moe!.up, b.grads.moe!.up, r);
        checkGrad("decoder layer d(shared down)", loss, w.moe!.shared!.down, b.grads.moe!.shared!.down, r);
      }),
      { numRuns: runs(40) },
    );
  });

  it("two chained MTP modules with L_MTP = λ/D·ΣL^k: hidden, shared embedding and head, module and block weights", () => {
    fc.assert(
      fc.property(fc.integer({ min: 4, max: 6 }), fc.integer({ min: 2, max: 5 }), fc.integer({ min: 2, max: 7 }), seed, (T, hidden, vocab, s) => {
        const r = rnd(s);
        const eps = 1e-6;
        const lambda = 0.3;
        const D = 2;
        const mtpCfg = { hidden, vocab, normEps: eps };
        const blockCfg: DecoderLayerConfig = { mla: tinyMla(r, hidden, false), ffn: { kind: "dense", inter: 3 } };
        const blockWeights = [randomDecoderLayerWeights(r, blockCfg), randomDecoderLayerWeights(r, blockCfg)];
        const blockGrads: (DecoderLayerGrads<Float64Array> | null)[] = [null, null];
        const blocks: MtpBlock<Float64Array>[] = [0, 1].map((k) => ({
          forward: (x, rows) => {
            const wk: DecoderLayerWeights<Float64Array> = blockWeights[k]!;
            const f = decoderLayerForward(x, wk, blockCfg, rows);
            return {
              y: f.y,
              backward: (dy) => {
                const b = decoderLayerBackward(dy, 1, x, wk, blockCfg, f.cache);
                blockGrads[k] = b.grads;
                return b.dx;
              },
            };
          },
        }));
        const mods: MtpWeights<Float64Array>[] = [0, 1].map(() => ({
          enorm: r.norm(hidden),
          hnorm: r.norm(hidden),
          ehProj: r.linear(hidden, 2 * hidden),
          headNorm: r.norm(hidden),
        }));
        const table = r.normals(vocab * hidden);
        const head = r.linear(vocab, hidden);
        const h0 = r.normals(T * hidden);
        const ids = Int32Array.from({ length: T }, () => r.int(vocab));
        const shifts = [mtpShift(ids, 1), mtpShift(ids, 2)];

        const run = () => {
          const outs = [];
          let prev = h0;
          for (let k = 0; k < D; k++) {
            const sh = shifts[k]!;
            const prevRows = prev.subarray(0, sh.rows * hidden);
            const emb = embeddingForward(sh.inputIds, table, vocab, hidden);
            const o = mtpForward(prevRows, emb, sh.labels, mods[k]!, head, blocks[k]!, mtpCfg, sh.rows);
            outs.push({ o, prevRows, emb });
            prev = o.hidden;
          }
          return outs;
        };
        const loss = () => mtpLoss(run().map((e) => e.o.loss), lambda);

        const outs = run();
        const dL = mtpLossWeight(D, lambda);
        expect(dL).toBeCloseTo(lambda / D, 15);
        const dTable = new Float64Array(table.length);
        const dHead = new Float64Array(head.length);
        let dNext: Float64Array | null = null;
        const modGrads: MtpWeights<Float64Array>[] = [];
        for (let k = D - 1; k >= 0; k--) {
          const { o, prevRows, emb } = outs[k]!;
          const g = mtpBackward(dL, dNext, prevRows, emb, mods[k]!, head, mtpCfg, o.cache);
          modGrads[k] = g.weights;
          const e = embeddingBackward(g.dNextEmb, shifts[k]!.inputIds, vocab, hidden);
          for (let i = 0; i < dTable.length; i++) dTable[i]! += e[i]!;
          for (let i = 0; i < dHead.length; i++) dHead[i]! += g.dHead[i]!;
          // h^{k−1} has one row more than module k uses; its last row gets no gradient from module k.
          const prevTotalRows = k === 0 ? T : shifts[k - 1]!.rows;
          const padded: Float64Array = new Float64Array(prevTotalRows * hidden);
          padded.set(g.dPrevHidden);
          dNext = padded;
        }
        checkGrad("mtp dh0 (main hidden)", loss, h0, dNext!, r);
        checkGrad("mtp dEmbedding (shared)", loss, table, dTable, r);
        checkGrad("mtp dHead (shared)", loss, head, dHead, r);
        checkGrad("mtp module1 dEhProj", loss, mods[0]!.ehProj, modGrads[0]!.ehProj, r);
        checkGrad("mtp module1 dHnorm", loss, mods[0]!.hnorm, modGrads[0]!.hnorm, r);
        checkGrad("mtp module2 dEnorm", loss, mods[1]!.enorm, modGrads[1]!.enorm, r);
        checkGrad("mtp module2 dHeadNorm", loss, mods[1]!.headNorm, modGrads[1]!.headNorm, r);
        checkGrad("mtp block1 d(mla kvB)", loss, blockWeights[0]!.mla.kvB, blockGrads[0]!.mla.kvB, r);
        checkGrad("mtp block2 d(dense down)", loss, blockWeights[1]!.dense!.down, blockGrads[1]!.dense!.down, r);
      }),
      { numRuns: runs(30) },
    );
  });
});
