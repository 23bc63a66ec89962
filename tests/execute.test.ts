/**
 * The CPU training executor (runtime/execute): `dsv3 run specs/tiny.dsv3 --backend cpu`.
 * - the first loss is within 0.25 of ln(vocab) (std-0.006 init), every loss finite;
 * - the same seed gives byte-identical JSON, another seed different losses;
 * - the loss falls over 30 steps on the repeated synthetic pattern;
 * - the whole step's backward (embedding, every layer, head, MTP, aux loss) agrees with central
 *   differences of the whole step's objective in FP64 at a few parameters (routing unchanged by the
 *   perturbation, checked);
 * - AdamW keeps BF16 moments when the recipe says bf16; the bias update moves the gate biases.
 */
import { describe, expect, it } from "vitest";
import { checkSpecFile } from "../compiler/check/index.js";
import type { Spec } from "../compiler/spec.js";
import { roundToBf16 } from "../backends/reference/numerics/bf16.js";
import { AdamW, DEFAULT_ADAMW } from "../runtime/execute/adamw.js";
import { initModelWeights, parameterList, type ModelWeights } from "../runtime/execute/model-weights.js";
import { runCommand } from "../runtime/execute/run-command.js";
import { SyntheticTokens } from "../runtime/execute/synthetic-tokens.js";
import { CPU_SEQ_CAP, roundSig, train } from "../runtime/execute/train.js";
import { stepConfigOf, trainingStep } from "../runtime/execute/training-step.js";

function tinySpec(): Spec {
  const checked = checkSpecFile("specs/tiny.dsv3");
  if (!checked.spec) throw new Error("specs/tiny.dsv3 did not check");
  return checked.spec;
}

describe("dsv3 run --backend cpu on specs/tiny.dsv3", () => {
  const spec = tinySpec();
  const thirty = train(spec, { steps: 30, seed: 7, batch: 2 });

  it("starts near ln(vocab), stays finite and reports the documented JSON fields", () => {
    expect(thirty.losses).toHaveLength(30);
    expect(Math.abs(thirty.losses[0]! - Math.log(spec.model.vocab))).toBeLessThan(0.25);
    for (const l of [...thirty.losses, ...thirty.mtpLosses, ...thirty.auxLosses, ...thirty.maxOverMeanLoad])
      expect(Number.isFinite(l)).toBe(true);
    expect(thirty.mtpLosses).toHaveLength(30);
    expect(thirty.auxLosses).toHaveLength(30);
    expect(thirty.maxOverMeanLoad).toHaveLength(30);
    expect(thirty.seqLen).toBe(Math.min(64, CPU_SEQ_CAP));
    expect(thirty.tokensPerStep).toBe(128);
    // Layers 1..3 are MoE, plus the MTP block; each routes tokens·topK slots over the step.
    expect(thirty.expertLoadLayers).toEqual(["layer 1", "layer 2", "layer 3", "mtp 1"]);
    const sums = thirty.expertLoad.map((l) => l.reduce((s, x) => s + x, 0));
    expect(sums).toEqual([256, 256, 256, 2 * 63 * 2]);
    // Σ over 4 MoE gates of α·L_Bal, α = 1e-4: L_Bal = Σ f_i·P_i lies in (0, N_r/K_r] = (0, 4].
    expect(thirty.auxLosses[0]!).toBeGreaterThan(0);
    expect(thirty.auxLosses[0]!).toBeLessThanOrEqual(4 * 1e-4 * 4);
  });

  it("learns the repeated pattern: the loss falls over 30 steps", () => {
    const first = thirty.losses[0]!;
    const last = thirty.losses[29]!;
    expect(last).toBeLessThan(first - 2);
    expect(thirty.mtpLosses[29]!).toBeLessThan(thirty.mtpLosses[0]! - 2);
    const early = thirty.losses.slice(0, 5).reduce((s, x) => s + x, 0);
    const late = thirty.losses.slice(25).reduce((s, x) => s + x, 0);
    expect(late).toBeLessThan(early);
  });

  it("is deterministic: the same seed gives byte-identical JSON, another seed another run", () => {
    const a = runCommand(spec, { steps: 3, seed: 11, json: true }).stdout;
    const b = runCommand(spec, { steps: 3, seed: 11, json: true }).stdout;
    const c = runCommand(spec, { steps: 3, seed: 12, json: true }).stdout;
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    const parsed = JSON.parse(a) as Record<string, unknown>;
    for (const key of ["spec", "seed", "steps", "tokensPerStep", "losses", "mtpLosses", "auxLosses", "expertLoad", "maxOverMeanLoad"]) {
      expect(parsed).toHaveProperty(key);
    }
    expect(parsed.spec).toBe("tiny-v3");
    expect((parsed.losses as number[]).length).toBe(3);
  });

  it("prints one line per step and the expert loads in text mode; refuses other backends", () => {
    const out = runCommand(spec, { steps: 2, seed: 1 }).stdout;
    expect(out.match(/^step +\d+ +loss /gm)).toHaveLength(2);
    expect(out).toMatch(/expert load/);
    expect(() => runCommand(spec, { backend: "cuda", steps: 1 })).toThrow(/only 'cpu'/);
    expect(() => runCommand(spec, { steps: -1 })).toThrow(/--steps/);
  });
});

describe("the training step's backward", () => {
  const spec = tinySpec();
  const model = spec.model;

  it("matches central differences of the whole step's objective (FP64, routing fixed)", () => {
    const T = 8;
    const cfg = stepConfigOf(model, T);
    const w = initModelWeights<Float64Array>(model, 3, "f64", 0.1);
    // std 0.1 (not 0.006) so the gate scores are far from ties and every gradient is well above round-off.
    const batch = new SyntheticTokens({
      vocab: model.vocab,
      seqLen: T,
      batch: 2,
      seed: 5,
      period: 5,
    }).next();
    const base = trainingStep(w, cfg, batch);
    const grads = parameterList(base.grads);
    const params = parameterList(w);
    const probes = [
      "embed",
      "layers.0.mla.kvA",
      "layers.2.moe.up",
      "layers.3.router",
      "layers.1.attnNorm",
      "head",
      "mtp.0.ehProj",
      "mtp.0.block.mla.o",
      "mtp.0.enorm",
    ];
    const loadsKey = (r: ModelWeights<Float64Array>) => JSON.stringify(trainingStep(r, cfg, batch).loads.map((l) => Array.from(l)));
    const baseLoads = JSON.stringify(base.loads.map((l) => Array.from(l)));
    for (const name of probes) {
      const i = params.findIndex((p) => p.name === name);
      expect(i, name).toBeGreaterThanOrEqual(0);
      const p = params[i]!.value;
      const g = grads[i]!.value;
      // The coordinate with the largest gradient (a meaningful signal), checked by central differences.
      let j = 0;
      for (let k = 1; k < g.length; k++) if (Math.abs(g[k]!) > Math.abs(g[j]!)) j = k;
      const h = 1e-5 * Math.max(1, Math.abs(p[j]!));
      const x = p[j]!;
      p[j] = x + h;
      const up = trainingStep(w, cfg, batch).losses.total;
      expect(loadsKey(w), `${name}: routing changed`).toBe(baseLoads);
      p[j] = x - h;
      const down = trainingStep(w, cfg, batch).losses.total;
      p[j] = x;
      const fd = (up - down) / (2 * h);
      expect(Math.abs(fd - g[j]!), `${name}[${j}]: fd ${fd} vs backward ${g[j]}`).toBeLessThan(1e-5 * Math.abs(g[j]!) + 1e-8);
      expect(Math.abs(g[j]!)).toBeGreaterThan(0);
    }
  });
});

describe("optimizer and balancing", () => {
  it("AdamW stores BF16 moments when the recipe says bf16 and decays only matrices", () => {
    const p = [
      { name: "w", value: new Float32Array([0.5, -0.25, 0.125]), decay: true },
      { name: "norm", value: new Float32Array([1, 1, 1]), decay: false },
    ];
    const g = [
      {
        name: "w",
        value: new Float32Array([0.1234567, -0.0031, 0]),
        decay: true,
      },
      { name: "norm", value: new Float32Array([0, 0, 0]), decay: false },
    ];
    const opt = new AdamW(p, { ...DEFAULT_ADAMW, lr: 0.01 });
    opt.step(p, g);
    const m = (opt as unknown as { m: Float32Array[] }).m[0]!;
    for (const x of m) expect(roundToBf16(x)).toBe(x);
    expect(m[0]).toBe(roundToBf16(0.1 * Math.fround(0.1234567)));
    // No gradient, no decay: the norm stays; the zero-gradient matrix entry only decays.
    expect(Array.from(p[1]!.value)).toEqual([1, 1, 1]);
    expect(p[0]!.value[2]).toBeCloseTo(0.125 * (1 - 0.01 * 0.1), 7);
  });

  it("gate biases start at zero and a one-sequence step reports max/mean load ≥ 1", () => {
    const spec = tinySpec();
    const w = initModelWeights<Float32Array>(spec.model, 1, "f32");
    expect(Array.from(w.layers[1]!.gateBias!)).toEqual(new Array(8).fill(0));
    const r = train(spec, { steps: 1, seed: 1, batch: 1 });
    expect(r.maxOverMeanLoad[0]!).toBeGreaterThanOrEqual(1);
  });

  it("rounds to six significant digits", () => {
    expect(roundSig(Math.PI)).toBe(3.14159);
    expect(roundSig(-0)).toBe(0);
    expect(roundSig(1234567.89)).toBe(1234570);
  });
});
