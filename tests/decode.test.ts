/**
 * Decoding on the CPU reference ops (runtime/execute/decode.ts, speculative.ts):
 * - greedy decoding with the MLA latent KV cache (absorbed attention) gives the same tokens as
 *   re-running the full forward for every token, and the same last-position logits within 1e-5 (FP32),
 *   for random seeds and prompts, on specs/tiny.dsv3 and a smaller 2-layer model with MTP depth 2;
 * - MTP speculative decoding outputs exactly the greedy tokens (seeded init and trained weights);
 * - `runGenerate` is deterministic, reports an acceptance rate in [0, 1], and trained weights accept drafts.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkSpecFile } from "../compiler/check/index.js";
import type { ModelSpec, Spec } from "../compiler/spec.js";
import { generateGreedy } from "../runtime/execute/decode.js";
import { initModelWeights } from "../runtime/execute/model-weights.js";
import {
  generateSpeculative,
  parsePromptTokens,
  runGenerate,
} from "../runtime/execute/speculative.js";
import { trainWithWeights } from "../runtime/execute/train.js";

function tinySpec(): Spec {
  const checked = checkSpecFile("specs/tiny.dsv3");
  if (!checked.spec) throw new Error("specs/tiny.dsv3 did not check");
  return checked.spec;
}

/** tiny shrunk to a dense layer and an MoE layer, with two MTP modules. */
function smallSpec(): Spec {
  const spec = tinySpec();
  const model: ModelSpec = {
    ...spec.model,
    name: "small-v3",
    layers: 2,
    layerPattern: [
      { kind: "dense", first: 0, last: 0 },
      { kind: "moe", first: 1, last: 1 },
    ],
    mtp: { ...spec.model.mtp, depth: 2 },
  };
  return { ...spec, model };
}

/** Init std large enough that the logits are not near-uniform (clear argmax margins). */
const STD = 0.05;

const promptArb = (vocab: number) =>
  fc
    .array(fc.integer({ min: 0, max: vocab - 1 }), {
      minLength: 1,
      maxLength: 8,
    })
    .map((a) => Int32Array.from(a));

describe("greedy decoding with the latent KV cache", () => {
  for (const spec of [tinySpec(), smallSpec()]) {
    it(`equals re-running the full forward (${spec.model.name})`, () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: 1 << 20 }),
          promptArb(spec.model.vocab),
          fc.integer({ min: 1, max: 6 }),
          (seed, prompt, n) => {
            const w = initModelWeights<Float32Array>(
              spec.model,
              seed,
              "f32",
              STD,
            );
            const cached = generateGreedy(spec, w, prompt, n, { cache: true });
            const full = generateGreedy(spec, w, prompt, n, { cache: false });
            expect(Array.from(cached.tokens)).toEqual(Array.from(full.tokens));
            expect(cached.lastLogits).toHaveLength(n);
            for (let i = 0; i < n; i++) {
              const a = cached.lastLogits[i]!;
              const b = full.lastLogits[i]!;
              let max = 0;
              for (let j = 0; j < a.length; j++)
                max = Math.max(max, Math.abs(a[j]! - b[j]!));
              expect(max).toBeLessThan(1e-5);
            }
          },
        ),
        { numRuns: 12, seed: 42 },
      );
    });
  }
});

describe("MTP speculative decoding", () => {
  for (const spec of [tinySpec(), smallSpec()]) {
    it(`outputs exactly the greedy tokens (${spec.model.name}, seeded init)`, () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: 1 << 20 }),
          promptArb(spec.model.vocab),
          fc.integer({ min: 0, max: 12 }),
          (seed, prompt, n) => {
            const w = initModelWeights<Float32Array>(
              spec.model,
              seed,
              "f32",
              STD,
            );
            const greedy = generateGreedy(spec, w, prompt, n, { cache: true });
            const sp = generateSpeculative(spec, w, prompt, n);
            expect(Array.from(sp.tokens)).toEqual(Array.from(greedy.tokens));
            expect(sp.accepted).toBeGreaterThanOrEqual(0);
            expect(sp.accepted).toBeLessThanOrEqual(sp.drafted);
          },
        ),
        { numRuns: 12, seed: 7 },
      );
    });
  }

  it("outputs the greedy tokens and accepts drafts with trained weights (small, depth 2)", () => {
    const spec = smallSpec();
    const { weights } = trainWithWeights(spec, {
      steps: 30,
      seed: 3,
      batch: 2,
    });
    let drafted = 0;
    let accepted = 0;
    fc.assert(
      fc.property(
        promptArb(spec.model.vocab),
        fc.integer({ min: 1, max: 20 }),
        (prompt, n) => {
          const greedy = generateGreedy(spec, weights, prompt, n, {
            cache: true,
          });
          const full = generateGreedy(spec, weights, prompt, n, {
            cache: false,
          });
          const sp = generateSpeculative(spec, weights, prompt, n);
          expect(Array.from(greedy.tokens)).toEqual(Array.from(full.tokens));
          expect(Array.from(sp.tokens)).toEqual(Array.from(greedy.tokens));
          drafted += sp.drafted;
          accepted += sp.accepted;
        },
      ),
      { numRuns: 8, seed: 11 },
    );
    expect(drafted).toBeGreaterThan(0);
    expect(accepted).toBeGreaterThan(0);
  });
});

describe("runGenerate (dsv3 run --generate)", () => {
  const spec = tinySpec();
  const prompt = [1, 2, 3, 4, 5, 6, 7, 8];

  it("is deterministic and reports an acceptance rate in [0, 1]", () => {
    const a = runGenerate(spec, {
      seed: 5,
      promptTokens: prompt,
      n: 10,
      speculative: true,
      trainSteps: 4,
      json: true,
    });
    const b = runGenerate(spec, {
      seed: 5,
      promptTokens: prompt,
      n: 10,
      speculative: true,
      trainSteps: 4,
      json: true,
    });
    expect(a.stdout).toBe(b.stdout);
    const r = JSON.parse(a.stdout) as {
      tokens: number[];
      acceptanceRate: number;
      drafted: number;
      accepted: number;
    };
    expect(r.tokens).toHaveLength(10);
    expect(r.acceptanceRate).toBeGreaterThanOrEqual(0);
    expect(r.acceptanceRate).toBeLessThanOrEqual(1);
    expect(r.drafted).toBeGreaterThan(0);
    const greedy = runGenerate(spec, {
      seed: 5,
      promptTokens: prompt,
      n: 10,
      trainSteps: 4,
    });
    expect(greedy.result.tokens).toEqual(r.tokens);
    expect(greedy.result.drafted).toBe(0);
    expect(greedy.stdout).toContain("generated");
  });

  it("untrained weights (trainSteps 0) decode too; bad options throw RangeErrors", () => {
    const r = runGenerate(spec, {
      seed: 1,
      promptTokens: [0],
      n: 3,
      speculative: true,
      trainSteps: 0,
    });
    expect(r.result.tokens).toHaveLength(3);
    expect(r.stdout).toContain("untrained");
    expect(() => runGenerate(spec, { promptTokens: [], n: 3 })).toThrow(
      RangeError,
    );
    expect(() =>
      runGenerate(spec, { promptTokens: [spec.model.vocab], n: 3 }),
    ).toThrow(RangeError);
    expect(() => runGenerate(spec, { promptTokens: [1], n: -1 })).toThrow(
      RangeError,
    );
    expect(parsePromptTokens("1, 2,3")).toEqual([1, 2, 3]);
    expect(() => parsePromptTokens("1,x")).toThrow(RangeError);
  });
});
