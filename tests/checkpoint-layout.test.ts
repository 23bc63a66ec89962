/**
 * The checkpoint's layout conventions, pinned by hand-computed cases (FACTS "Checkpoint and layout
 * conventions"): a checkpoint whose projections are set so that only one part of a head is non-zero
 * must put exactly that part where the official code puts it in the attention inputs.
 *   - q_b_proj rows per head are [q_nope (n) | q_rope (r)];
 *   - kv_a_proj_with_mqa rows are [latent (c) | k_rope (r)], k_rope shared by every head;
 *   - kv_b_proj rows per head are [k_nope (n) | v (v)];
 *   - RoPE rotates adjacent pairs (2i, 2i+1) by position · f_i.
 * The weights go through a safetensors file and the loader, and the attention inputs are read from
 * the executor's MLA forward (mla.ts), so a permutation anywhere between the file and the op fails.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { linearForward, mlaForward, rmsnormForward, ropeFrequencies } from "../backends/reference/ops/index.js";
import { checkSpecFile } from "../compiler/check/index.js";
import type { Spec } from "../compiler/spec.js";
import { encodeFromNumbers } from "../runtime/checkpoint/dtypes.js";
import { hfTensorSpecs } from "../runtime/checkpoint/hf-tensor-names.js";
import { loadModelWeights } from "../runtime/checkpoint/load-weights.js";
import { writeSafetensors, type TensorData } from "../runtime/checkpoint/safetensors.js";
import { initModelWeights } from "../runtime/execute/model-weights.js";
import { bindModelWeights } from "../runtime/checkpoint/hf-tensor-names.js";

let dir: string;
let tiny: Spec;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "dsv3-checkpoint-layout-"));
  tiny = checkSpecFile("specs/tiny.dsv3").spec!;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A checkpoint of the tiny model with seeded weights, but `overrides` for some tensors (row-major). */
function checkpointWith(name: string, overrides: Record<string, Float32Array>): string {
  const w = initModelWeights<Float32Array>(tiny.model, 3, "f32");
  const views = bindModelWeights(tiny.model, w);
  const tensors: TensorData[] = hfTensorSpecs(tiny.model).map((s) => {
    const v = overrides[s.name] ?? views.get(s.duplicateOf ?? s.name)!;
    return { name: s.name, dtype: "F32", shape: s.shape, data: encodeFromNumbers("F32", v) };
  });
  const file = path.join(dir, `${name}.safetensors`);
  writeSafetensors(file, tensors);
  return file;
}

/** Row-major rows × cols with row i = the unit vector e_{col(i)} (or zero when col(i) is null). */
function unitRows(rows: number, cols: number, col: (i: number) => number | null): Float32Array {
  const m = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const c = col(i);
    if (c !== null) m[i * cols + c] = 1;
  }
  return m;
}

/** The rotation of the adjacent pair (a, b) by angle θ. */
function rotate(a: number, b: number, theta: number): [number, number] {
  return [a * Math.cos(theta) - b * Math.sin(theta), a * Math.sin(theta) + b * Math.cos(theta)];
}

describe("checkpoint layout conventions (hand-computed)", () => {
  const T = 3;
  const x = () => {
    const d = tiny.model.hidden;
    return Float32Array.from({ length: T * d }, (_, i) => Math.cos(i * 0.7) + 0.1 * (i % 5));
  };

  it("q_b_proj rows per head are [q_nope | q_rope]; RoPE rotates adjacent pairs", () => {
    const a = tiny.model.attention;
    if (a.kind !== "mla" || a.qLoraRank === null) throw new Error("tiny has MLA with q_lora");
    const H = a.heads;
    const n = a.qkNopeHeadDim;
    const r = a.qkRopeHeadDim;
    const ql = a.qLoraRank;
    const qk = n + r;
    // Only the rope rows are non-zero: rope dim j of head h reads latent coordinate (h·r + j) mod ql.
    const qB = unitRows(H * qk, ql, (i) => (i % qk >= n ? (Math.floor(i / qk) * r + (i % qk) - n) % ql : null));
    const w = loadModelWeights(checkpointWith("q-rope", { "model.layers.0.self_attn.q_b_proj.weight": qB }), tiny).weights!;
    const mla = w.layers[0]!.mla;
    const input = x();
    const cfg = { hidden: tiny.model.hidden, normEps: tiny.model.normEps, attention: a };
    const { cache } = mlaForward(input, mla, cfg, T);
    // The normalised q latent, computed here from the loaded q_a weights.
    const normed = rmsnormForward(linearForward(input, mla.qA!, T, tiny.model.hidden, ql), mla.qANorm!, T, ql, tiny.model.normEps);
    const f = ropeFrequencies(r, a.rope);
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        const q = cache.q.subarray((t * H + h) * qk, (t * H + h + 1) * qk);
        for (let j = 0; j < n; j++) expect(q[j]).toBe(0);
        for (let i = 0; i < r / 2; i++) {
          const raw0 = normed[t * ql + ((h * r + 2 * i) % ql)]!;
          const raw1 = normed[t * ql + ((h * r + 2 * i + 1) % ql)]!;
          const [e0, e1] = rotate(raw0, raw1, t * f[i]!);
          expect(q[n + 2 * i]).toBeCloseTo(e0, 5);
          expect(q[n + 2 * i + 1]).toBeCloseTo(e1, 5);
        }
      }
    }
    // Position 0 is unrotated: q_rope is exactly the selected latent coordinates.
    expect(cache.q[n]).toBeCloseTo(normed[0]!, 6);
  });

  it("kv_a_proj_with_mqa rows are [latent | k_rope] (k_rope shared by all heads); kv_b_proj rows per head are [k_nope | v]", () => {
    const a = tiny.model.attention;
    if (a.kind !== "mla") throw new Error("tiny has MLA");
    const H = a.heads;
    const n = a.qkNopeHeadDim;
    const r = a.qkRopeHeadDim;
    const v = a.vHeadDim;
    const c = a.kvLoraRank;
    const d = tiny.model.hidden;
    // kv_a: latent row l reads hidden coordinate l; k_rope row j reads hidden coordinate 40 + j.
    const kvA = unitRows(c + r, d, (i) => (i < c ? i : 40 + i - c));
    // kv_b: head h's k_nope rows are zero, its v rows read latent coordinate (h + j) mod c.
    const kvB = unitRows(H * (n + v), c, (i) => (i % (n + v) >= n ? (Math.floor(i / (n + v)) + (i % (n + v)) - n) % c : null));
    const file = checkpointWith("kv", {
      "model.layers.0.self_attn.kv_a_proj_with_mqa.weight": kvA,
      "model.layers.0.self_attn.kv_b_proj.weight": kvB,
      "model.layers.0.self_attn.kv_a_layernorm.weight": new Float32Array(c).fill(1),
    });
    const w = loadModelWeights(file, tiny).weights!;
    const input = x();
    const cfg = { hidden: d, normEps: tiny.model.normEps, attention: a };
    const { cache } = mlaForward(input, w.layers[0]!.mla, cfg, T);
    const f = ropeFrequencies(r, a.rope);
    for (let t = 0; t < T; t++) {
      // The latent: RMSNorm of hidden coordinates 0..c−1 (gain 1).
      let ms = 0;
      for (let l = 0; l < c; l++) ms += input[t * d + l]! ** 2;
      const scale = 1 / Math.sqrt(ms / c + tiny.model.normEps);
      for (let h = 0; h < H; h++) {
        const k = cache.k.subarray((t * H + h) * (n + r), (t * H + h + 1) * (n + r));
        for (let j = 0; j < n; j++) expect(k[j]).toBe(0);
        for (let i = 0; i < r / 2; i++) {
          const [e0, e1] = rotate(input[t * d + 40 + 2 * i]!, input[t * d + 41 + 2 * i]!, t * f[i]!);
          expect(k[n + 2 * i]).toBeCloseTo(e0, 5);
          expect(k[n + 2 * i + 1]).toBeCloseTo(e1, 5);
        }
        const vv = cache.v.subarray((t * H + h) * v, (t * H + h + 1) * v);
        for (let j = 0; j < v; j++) expect(vv[j]).toBeCloseTo(input[t * d + ((h + j) % c)]! * scale, 5);
      }
    }
  });
});
