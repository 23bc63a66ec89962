/**
 * Fused kernels == the composition of their unfused ops, on the CPU (DESIGN.md, KernelSpec): for the
 * KernelSpecs lower() makes of specs/tiny.dsv3 in each phase (and at random token counts), random
 * inputs through runKernel and runUnfused (backends/reference/kernels) must agree —
 *   bitwise for rmsnorm_quantize, swiglu_quantize, gemm without an epilogue, grouped_gemm
 *     (contiguous and masked), gate_topk, moe_permute (both layouts), moe_unpermute, rope (same
 *     operations in the same order);
 *   within rounding for gemm with an epilogue (residual add / SwiGLU on the FP32 accumulators,
 *     the unfused ops round each step to BF16), mla_decode_attention and prefill_attention (online
 *     softmax; prefill's operands read through the split/broadcast/concat views): a real
 *     output element within 2^-6·max|output| + 2^-6·|ref|; a quantised output's dequantised
 *     values within 2^-3·(max|output| + |ref|) (one E4M3 code step).
 * The decode phase's MoE runs in the masked layout (moe_permute with a per-expert capacity, grouped
 * GEMMs with `layout: masked`); its expert output rows equal the contiguous layout's for every
 * (token, k). Deliberately broken kernels (a gemm without its residual add, attention without its
 * causal mask, a masked grouped GEMM read as contiguous) must fail the property.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";

import { readFileSync } from "node:fs";
import { formatOf, KERNEL_KINDS, kernelSpecs, uniqueKernels, type KernelSpec, type KernelTensor } from "../compiler/kernel-spec.js";
import { parseModel } from "../compiler/graph/parse.js";
import { lower } from "../compiler/pipeline.js";
import type { Phase } from "../compiler/graph/ir.js";
import {
  getQuantized,
  kernelExactness,
  quantizeTensor,
  roundTo,
  runKernel,
  runUnfused,
  scaleKey,
  type KernelValues,
} from "../backends/reference/kernels/index.js";
import { dequantize } from "../backends/reference/numerics/index.js";
import { mulberry32 } from "../backends/reference/ops/random-weights.js";
import { loadSpec } from "./fixtures/plan-specs.js";

const PHASES: Phase[] = ["train", "prefill", "decode"];

function kernelsOf(phase: Phase, tokens?: number): KernelSpec[] {
  return uniqueKernels(lower(loadSpec("specs/tiny.dsv3"), { phase, tokens }).kernels);
}

/** The prefill_attention KernelSpec of a hand-written GQA layer (a fuse-kernels golden). */
function gqaAttention(): KernelSpec {
  const model = parseModel(readFileSync("tests/passes/fuse-kernels/hand-gqa-prefill-attention.expected.ir", "utf8"));
  return kernelSpecs(model).find((k) => k.kind === "prefill_attention")!;
}

function elements(shape: readonly number[]): number {
  return shape.reduce((p, q) => p * q, 1);
}

/** Random inputs for a kernel, consistent with its role (indices distinct, counts partitioning rows). */
function randomInputs(spec: KernelSpec, seed: number): KernelValues {
  const rnd = mulberry32(seed);
  const normal = (): number => (rnd() + rnd() + rnd() - 1.5) * 2;
  const values: KernelValues = new Map();
  const c = spec.constants;
  for (const t of spec.inputs) {
    const n = elements(t.shape);
    if (t.dtype === "i32") {
      const a = new Int32Array(n);
      if (spec.kind === "moe_permute") {
        const experts = c["experts"] as number;
        const k = t.shape[1]!;
        for (let r = 0; r < t.shape[0]!; r++) {
          const chosen = new Set<number>();
          while (chosen.size < k) chosen.add(Math.floor(rnd() * experts));
          a.set([...chosen], r * k);
        }
      } else if (spec.kind === "moe_unpermute") {
        const rows = c["rows"] as number;
        const perm = Array.from({ length: rows }, (_, i) => i);
        for (let i = rows - 1; i > 0; i--) {
          const j = Math.floor(rnd() * (i + 1));
          [perm[i], perm[j]] = [perm[j]!, perm[i]!];
        }
        a.set(perm.slice(0, n));
      } else if (spec.kind === "grouped_gemm" && c["layout"] === "masked") {
        // Masked: each group's valid rows, 0..capacity (some groups empty, some full).
        const capacity = (c["m"] as number) / n;
        for (let e = 0; e < n; e++) a[e] = Math.min(capacity, Math.floor(rnd() * (capacity + 1) * 1.25));
      } else if (spec.kind === "grouped_gemm") {
        let left = c["m"] as number;
        for (let e = 0; e < n; e++) {
          const take = Math.floor(rnd() * (left + 1) * (e === n - 1 ? 1 : 0.5));
          a[e] = take;
          left -= take;
        }
      } else for (let i = 0; i < n; i++) a[i] = Math.floor(rnd() * 4096);
      values.set(t.id, a);
      continue;
    }
    const x = new Float64Array(n);
    const magnitude = t.id.endsWith("norm") ? 1 : 1 + 3 * rnd();
    for (let i = 0; i < n; i++) x[i] = normal() * magnitude;
    if (t.quant !== null) {
      const q = quantizeTensor(t, x);
      values.set(t.id, q.codes);
      values.set(scaleKey(t.id), q.scales);
    } else values.set(t.id, roundTo(t.dtype, x));
  }
  return values;
}

/** The first disagreement of two kernels' outputs, or null. */
function disagreement(spec: KernelSpec, fused: KernelValues, unfused: KernelValues): string | null {
  const exact = kernelExactness(spec) === "bitwise";
  for (const t of spec.outputs) {
    const a = fused.get(t.id);
    const b = unfused.get(t.id);
    if (a === undefined || b === undefined) return `${t.id}: missing (fused ${a !== undefined}, unfused ${b !== undefined})`;
    if (a.length !== b.length || a.constructor !== b.constructor) return `${t.id}: ${a.constructor.name}[${a.length}] vs ${b.constructor.name}[${b.length}]`;
    if (exact || t.dtype === "i32") {
      for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `${t.id}[${i}]: ${a[i]} vs ${b[i]} (bitwise)`;
      if (t.quant !== null) {
        const sa = fused.get(scaleKey(t.id))!;
        const sb = unfused.get(scaleKey(t.id))!;
        for (let i = 0; i < sb.length; i++) if (!Object.is(sa[i], sb[i])) return `${t.id} scale[${i}]: ${sa[i]} vs ${sb[i]}`;
      }
      continue;
    }
    const [x, y] = t.quant !== null ? [dequantized(t, fused), dequantized(t, unfused)] : [a as Float32Array, b as Float32Array];
    let max = 0;
    for (let i = 0; i < y.length; i++) max = Math.max(max, Math.abs(y[i]!));
    const rel = t.quant !== null ? 2 ** -3 : 2 ** -6;
    for (let i = 0; i < y.length; i++) {
      const bound = rel * (max + Math.abs(y[i]!)) + 1e-30;
      if (!(Math.abs(x[i]! - y[i]!) <= bound)) return `${t.id}[${i}]: ${x[i]} vs ${y[i]} (bound ${bound}, ${formatOf(t)})`;
    }
  }
  return null;
}

function dequantized(t: KernelTensor, v: KernelValues): Float64Array {
  return dequantize(getQuantized(v, t));
}

function check(spec: KernelSpec, seed: number, run = runKernel): string | null {
  const inputs = randomInputs(spec, seed);
  return disagreement(spec, run(spec, inputs), runUnfused(spec, inputs));
}

describe("reference kernels == their unfused ops (specs/tiny.dsv3)", () => {
  for (const phase of PHASES) {
    const kernels = kernelsOf(phase);
    it(`${phase}: every kind lowered has a kernel, and each agrees on random inputs`, () => {
      expect(kernels.length).toBeGreaterThan(0);
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
          for (const k of kernels) {
            const d = check(k, seed);
            if (d !== null) throw new Error(`${k.id} (${k.kind}, ${kernelExactness(k)}): ${d}`);
          }
        }),
        { numRuns: 2 },
      );
    });
  }

  it("random token counts: every kernel agrees", () => {
    fc.assert(
      fc.property(fc.constantFrom<Phase>(...PHASES), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), (phase, m, seed) => {
        const tokens = phase === "decode" ? 2 * m : 8 * m;
        for (const k of kernelsOf(phase, tokens)) {
          const d = check(k, seed);
          if (d !== null) throw new Error(`${phase} T=${tokens} ${k.id} (${k.kind}): ${d}`);
        }
      }),
      { numRuns: 4 },
    );
  });

  it("the tiny spec's kernels cover every kind", () => {
    const kinds = new Set(PHASES.flatMap((p) => kernelsOf(p).map((k) => k.kind)));
    expect([...kinds].sort()).toEqual([...KERNEL_KINDS].sort());
  });

  it("grouped-query prefill attention (tests/passes/fuse-kernels/hand-gqa-prefill-attention): two query heads per key/value head", () => {
    const spec = gqaAttention();
    expect([spec.constants["heads"], spec.constants["kv_heads"]]).toEqual([4, 2]);
    expect(spec.constants["k_sources"]).toEqual(["0+16/16x2"]);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
        const d = check(spec, seed);
        if (d !== null) throw new Error(d);
      }),
      { numRuns: 3 },
    );
  });

  it("prefill attention at DeepSeek-V3's head dims (bench/gpu-check/check-model.dsv3): QK 192 = 128 nope from kv_b's output + 64 shared rope, V 128", () => {
    const spec = lower(loadSpec("bench/gpu-check/check-model.dsv3"), { phase: "train", schedule: "train" }).kernels.find((k) => k.kind === "prefill_attention")!;
    expect([spec.constants["dk"], spec.constants["dv"]]).toEqual([192, 128]);
    expect(spec.constants["k_sources"]).toEqual(["0+128/256x8", "0+64/64x1"]);
    expect(check(spec, 17)).toBeNull();
  });

  it("catches a broken prefill attention (causal mask dropped) and a masked grouped GEMM read as contiguous", () => {
    const attention = kernelsOf("train").find((k) => k.kind === "prefill_attention")!;
    expect(attention.constants["causal"]).toBe(true);
    const noMask = (s: KernelSpec, inputs: KernelValues): KernelValues => runKernel({ ...s, constants: { ...s.constants, causal: false } }, inputs);
    expect(check(attention, 3)).toBeNull();
    expect(check(attention, 3, noMask)).toMatch(/bound/);
    const masked = kernelsOf("decode").find((k) => k.kind === "grouped_gemm")!;
    expect(masked.constants["layout"]).toBe("masked");
    const contiguous = (s: KernelSpec, inputs: KernelValues): KernelValues => {
      const { layout: _, ...rest } = s.constants;
      return runKernel({ ...s, constants: rest }, inputs);
    };
    expect(check(masked, 3)).toBeNull();
    expect(check(masked, 3, contiguous)).toMatch(/bitwise/);
  });

  it("decode's masked layout computes what the contiguous layout does: the same expert output row for every (token, k)", () => {
    const decode = kernelsOf("decode");
    const permuteM = decode.find((k) => k.kind === "moe_permute")!;
    const tokens = permuteM.constants["tokens"] as number;
    const prefill = kernelsOf("prefill", tokens);
    const permuteC = prefill.find((k) => k.kind === "moe_permute")!;
    const gemmOf = (ks: KernelSpec[], p: KernelSpec): KernelSpec => ks.find((k) => k.kind === "grouped_gemm" && k.main[0]!.inputs[0] === p.main[0]!.outputs[0])!;
    const gemmM = gemmOf(decode, permuteM);
    const gemmC = gemmOf(prefill, permuteC);
    expect([permuteM.constants["layout"], gemmM.constants["layout"]]).toEqual(["masked", "masked"]);
    expect([permuteC.constants["layout"], gemmC.constants["layout"]]).toEqual([undefined, undefined]);
    expect(permuteM.constants["capacity"]).toBe(64 * Math.ceil(tokens / 64));
    expect(permuteM.constants["rows"]).toBe((permuteM.constants["capacity"] as number) * (permuteM.constants["experts"] as number));
    const topk = permuteM.constants["topk"] as number;
    const n = gemmM.constants["n"] as number;
    /** Each permutation's inputs under the other's tensor ids (same positions). */
    const rename = (from: KernelSpec, to: KernelSpec, v: KernelValues): KernelValues => {
      const out: KernelValues = new Map();
      from.inputs.forEach((t, i) => {
        out.set(to.inputs[i]!.id, v.get(t.id)!);
        if (v.has(scaleKey(t.id))) out.set(scaleKey(to.inputs[i]!.id), v.get(scaleKey(t.id))!);
      });
      return out;
    };
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
        const routed = randomInputs(permuteM, seed);
        const weights = randomInputs(gemmM, seed ^ 0x9e37);
        const expertRows = (p: KernelSpec, g: KernelSpec, x: KernelValues): { y: Float32Array; slots: Int32Array } => {
          const po = runKernel(p, x);
          const [rowsId, countsId, slotsId] = p.main[0]!.outputs as [string, string, string];
          const gi: KernelValues = new Map([
            [rowsId, po.get(rowsId)!],
            [scaleKey(rowsId), po.get(scaleKey(rowsId))!],
            [countsId, po.get(countsId)!],
          ]);
          const w = g.main[0]!.inputs[1]!;
          gi.set(w, weights.get(gemmM.main[0]!.inputs[1]!)!).set(scaleKey(w), weights.get(scaleKey(gemmM.main[0]!.inputs[1]!))!);
          return { y: runKernel(g, gi).get(g.outputs[0]!.id) as Float32Array, slots: po.get(slotsId) as Int32Array };
        };
        const m = expertRows(permuteM, gemmM, routed);
        const c = expertRows(permuteC, gemmC, rename(permuteM, permuteC, routed));
        for (let i = 0; i < tokens * topk; i++) {
          const a = m.y.subarray(m.slots[i]! * n, (m.slots[i]! + 1) * n);
          const b = c.y.subarray(c.slots[i]! * n, (c.slots[i]! + 1) * n);
          if (!a.every((v, j) => Object.is(v, b[j]))) throw new Error(`(token ${Math.floor(i / topk)}, k ${i % topk}): rows differ`);
        }
      }),
      { numRuns: 3 },
    );
  });

  it("catches a broken kernel: a gemm that drops its residual add", () => {
    const spec = kernelsOf("prefill").find((k) => k.kind === "gemm" && (k.constants["epilogue"] as string[]).includes("add"))!;
    expect(spec).toBeDefined();
    const broken = (s: KernelSpec, inputs: KernelValues): KernelValues =>
      runKernel({ ...s, constants: { ...s.constants, epilogue: [] }, epilogue: [] }, inputs);
    expect(check(spec, 1)).toBeNull();
    expect(check(spec, 1, broken)).toMatch(/bound/);
  });
});
