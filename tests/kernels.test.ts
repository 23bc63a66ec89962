/**
 * Fused kernels == the composition of their unfused ops, on the CPU (DESIGN.md, KernelSpec): for the
 * KernelSpecs lower() makes of specs/tiny.dsv3 in each phase (and at random token counts), random
 * inputs through runKernel and runUnfused (backends/reference/kernels) must agree —
 *   bitwise for rmsnorm_quantize, swiglu_quantize, gemm without an epilogue, grouped_gemm,
 *     gate_topk, moe_permute, moe_unpermute, rope (same operations in the same order);
 *   within rounding for gemm with an epilogue (residual add / SwiGLU on the FP32 accumulators,
 *     the unfused ops round each step to BF16) and mla_decode_attention (online softmax): a real
 *     output element within 2^-6·max|output| + 2^-6·|ref|; a quantised output's dequantised
 *     values within 2^-3·(max|output| + |ref|) (one E4M3 code step).
 * A deliberately broken gemm (residual add dropped) must fail the property.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";

import { formatOf, KERNEL_KINDS, uniqueKernels, type KernelSpec, type KernelTensor } from "../compiler/kernel-spec.js";
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

  it("catches a broken kernel: a gemm that drops its residual add", () => {
    const spec = kernelsOf("prefill").find((k) => k.kind === "gemm" && (k.constants["epilogue"] as string[]).includes("add"))!;
    expect(spec).toBeDefined();
    const broken = (s: KernelSpec, inputs: KernelValues): KernelValues =>
      runKernel({ ...s, constants: { ...s.constants, epilogue: [] }, epilogue: [] }, inputs);
    expect(check(spec, 1)).toBeNull();
    expect(check(spec, 1, broken)).toMatch(/bound/);
  });
});
