/**
 * The CPU half of the GPU check (bench/gpu-check): golden inputs shaped by role and their reference
 * outputs, the comparison metric and tolerances, the harness's byte encodings and case files, the
 * resized timing shapes and the final table. The GPU half needs a Hopper GPU (`npm run gpu-check`).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { elements, runKernel, scaleKey, type KernelValues } from "../backends/reference/kernels/index.js";
import { generateKernel } from "../backends/cuda/generate.js";
import { H800_TARGET } from "../backends/cuda/gpu-target.js";
import { KERNEL_KINDS, type KernelSpec } from "../compiler/kernel-spec.js";
import { decodeValues, encodeValues, harnessCase, rotationCount } from "../bench/gpu-check/case-file.js";
import { compareOutputs, dequantise, diffMetric, DIFF_TOLERANCE } from "../bench/gpu-check/compare.js";
import { checkKernelSpecs, goldenCase, goldenInputs, integerInputs, intRole, maskedGoldenCase } from "../bench/gpu-check/golden.js";
import { DEEPGEMM_DENSE, DEEPGEMM_GROUPED, DEEPGEMM_MASKED, resizeGemm } from "../bench/gpu-check/main.js";
import { formatTable, median, ratioText, type ResultRow } from "../bench/gpu-check/table.js";

const CHECK_MODEL = "bench/gpu-check/check-model.dsv3";
let specs: KernelSpec[] | null = null;
function checkSpecs(): KernelSpec[] {
  specs ??= checkKernelSpecs(CHECK_MODEL);
  return specs;
}
const small = (kind: string): KernelSpec => {
  const all = checkSpecs().filter((s) => s.kind === kind);
  return all.reduce((a, b) => (elements(a.outputs[0]!.shape) <= elements(b.outputs[0]!.shape) ? a : b));
};

describe("the comparison metric", () => {
  it("diff = 1 − 2Σxy/Σ(x²+y²): 0 for equal tensors, 2 for negated, scale-invariant, symmetric", () => {
    const x = [1, -2, 3, 0.5];
    expect(diffMetric(x, x)).toBe(0);
    expect(diffMetric(x, x.map((v) => -v))).toBe(2);
    expect(diffMetric(x, x.map((v) => 2 * v))).toBeCloseTo(0.2, 12);
    expect(diffMetric([0, 0], [0, 0])).toBe(0);
    expect(() => diffMetric([1], [1, 2])).toThrow(RangeError);
    fc.assert(
      fc.property(fc.array(fc.double({ min: -100, max: 100, noNaN: true }), { minLength: 1, maxLength: 50 }), fc.array(fc.double({ min: -100, max: 100, noNaN: true }), { minLength: 50, maxLength: 50 }), fc.double({ min: 0.01, max: 100, noNaN: true }), (a, b0, s) => {
        const b = b0.slice(0, a.length);
        const d = diffMetric(a, b);
        expect(d).toBeGreaterThanOrEqual(-1e-12);
        expect(d).toBeLessThanOrEqual(2 + 1e-12);
        expect(diffMetric(b, a)).toBeCloseTo(d, 10);
        expect(diffMetric(a.map((v) => v * s), b.map((v) => v * s))).toBeCloseTo(d, 9);
      }),
      { numRuns: 100, seed: 3 },
    );
  });

  it("a GEMM output within DeepGEMM's 1e-3 passes; 10% noise or a wrong row fails; integer outputs must match", () => {
    const spec = resizeGemm(small("gemm"), 64, 128, 256);
    const g = goldenCase(spec, 5);
    const out = spec.outputs[0]!.id;
    expect(compareOutputs(spec, g.outputs, g.outputs).every((c) => c.ok && c.value === 0)).toBe(true);
    const ref = g.outputs.get(out) as Float32Array;
    const slightly = new Map(g.outputs).set(out, ref.map((v, i) => v * (1 + 1e-3 * Math.sin(i))));
    expect(compareOutputs(spec, slightly, g.outputs)[0]!.ok).toBe(true);
    const noisy = new Map(g.outputs).set(out, ref.map((v, i) => v * (1 + 0.3 * Math.sin(i))));
    const noisyCheck = compareOutputs(spec, noisy, g.outputs)[0]!;
    expect(noisyCheck.ok).toBe(false);
    expect(noisyCheck.value).toBeGreaterThan(DIFF_TOLERANCE.gemm);
    const permute = small("moe_permute");
    const p = goldenCase(permute, 6);
    const slots = permute.outputs.find((t) => t.dtype === "i32" && t.shape.length === 2)!.id;
    const wrong = new Map(p.outputs).set(slots, (p.outputs.get(slots) as Int32Array).map((v, i) => (i === 0 ? v + 1 : v)));
    const checks = compareOutputs(permute, wrong, p.outputs);
    expect(checks.find((c) => c.tensor === slots)).toMatchObject({ metric: "mismatch", ok: false, tolerance: 0 });
  });

  it("quantised outputs are compared dequantised (codes × tile scales)", () => {
    const spec = small("swiglu_quantize");
    const g = goldenCase(spec, 9);
    const t = spec.outputs.find((o) => o.quant !== null)!;
    const values = dequantise(t, g.outputs.get(t.id) as Uint8Array, g.outputs.get(scaleKey(t.id)) as Float32Array);
    expect(values.length).toBe(elements(t.shape));
    // Doubling every scale doubles every value: diff 0.2, far beyond the tolerance.
    const doubled = new Map(g.outputs).set(scaleKey(t.id), (g.outputs.get(scaleKey(t.id)) as Float32Array).map((s) => 2 * s));
    const c = compareOutputs(spec, doubled, g.outputs).find((x) => x.tensor === t.id)!;
    expect(c.value).toBeCloseTo(0.2, 6);
    expect(c.ok).toBe(false);
  });
});

describe("golden inputs", () => {
  it("the check model lowers to every kernel kind, each supported by the CUDA generators", () => {
    const kinds = new Set(checkSpecs().map((s) => s.kind));
    expect([...kinds].sort()).toEqual([...KERNEL_KINDS].sort());
    for (const s of checkSpecs()) expect(() => generateKernel(s, H800_TARGET)).not.toThrow();
  });

  it("integer inputs are valid for their role; reals are BF16/FP32; quantised inputs carry their scales; seeded", () => {
    for (const spec of checkSpecs().filter((s) => s.kind !== "gemm" && s.kind !== "grouped_gemm")) {
      const values = goldenInputs(spec, 11);
      const again = goldenInputs(spec, 11);
      expect([...again.keys()]).toEqual([...values.keys()]);
      for (const [id, v] of values) expect(Buffer.compare(Buffer.from(v.buffer, v.byteOffset, v.byteLength), Buffer.from(again.get(id)!.buffer, again.get(id)!.byteOffset, again.get(id)!.byteLength)), id).toBe(0);
      for (const t of spec.inputs) {
        const v = values.get(t.id)!;
        expect(v.length).toBe(elements(t.shape));
        if (t.quant !== null) expect(values.get(scaleKey(t.id))!.length).toBeGreaterThan(0);
        if (t.dtype !== "i32") continue;
        const role = intRole(spec, t);
        if (role === "experts") {
          const topk = t.shape[1]!;
          for (let i = 0; i < v.length; i += topk) expect(new Set(v.subarray(i, i + topk)).size).toBe(topk);
          expect(Math.max(...v)).toBeLessThan(spec.constants["experts"] as number);
        }
        if (role === "slots") {
          expect(new Set(v).size).toBe(v.length);
          expect(Math.max(...v)).toBeLessThan(spec.constants["rows"] as number);
        }
      }
    }
    const grouped = checkSpecs().find((s) => s.kind === "grouped_gemm" && s.constants["layout"] === undefined)!;
    const counts = integerInputs(grouped, 4).get(grouped.main[0]!.inputs[2]!) as Int32Array;
    expect(counts.every((c) => c % 128 === 0)).toBe(true);
    expect(counts.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(grouped.constants["m"] as number);
    expect(counts.some((c) => c > 0)).toBe(true);
    // The decode grouped GEMMs are masked: each group's valid rows, within its capacity, not padded.
    const masked = checkSpecs().filter((s) => s.kind === "grouped_gemm" && s.constants["layout"] === "masked");
    expect(masked.length).toBeGreaterThan(0);
    for (const m of masked) {
      const groups = m.constants["groups"] as number;
      const capacity = (m.constants["m"] as number) / groups;
      const valid = integerInputs(m, 5).get(m.main[0]!.inputs[2]!) as Int32Array;
      expect(valid.length).toBe(groups);
      expect(valid.every((c) => c >= 0 && c <= capacity)).toBe(true);
      expect(valid.some((c) => c % 64 !== 0)).toBe(true);
    }
  });
});

describe("the masked layout's golden case", () => {
  it("counts are each group's valid rows; the expected output is the full-group reference with rows past them zeroed", () => {
    const grouped = checkSpecs().find((s) => s.kind === "grouped_gemm" && s.id.startsWith("decode/"))!;
    expect(grouped.constants["layout"]).toBe("masked");
    const c = maskedGoldenCase(grouped, 4);
    expect(c.spec.constants["layout"]).toBe("masked");
    // The masked reference kernel on the same counts agrees bit for bit with this independent oracle.
    const direct = runKernel(c.spec, c.inputs).get(grouped.outputs[0]!.id) as Float32Array;
    expect(Buffer.from(direct.buffer).equals(Buffer.from((c.outputs.get(grouped.outputs[0]!.id) as Float32Array).buffer))).toBe(true);
    const groups = grouped.constants["groups"] as number;
    const maxM = (grouped.constants["m"] as number) / groups;
    const n = grouped.constants["n"] as number;
    const counts = c.inputs.get(grouped.main[0]!.inputs[2]!) as Int32Array;
    expect(counts.length).toBe(groups);
    expect(counts.every((v) => v >= 0 && v <= maxM)).toBe(true);
    const y = c.outputs.get(grouped.outputs[0]!.id) as Float32Array;
    for (let g = 0; g < groups; g++) {
      const valid = y.subarray(g * maxM * n, (g * maxM + counts[g]!) * n);
      const past = y.subarray((g * maxM + counts[g]!) * n, (g + 1) * maxM * n);
      expect(past.every((v) => v === 0)).toBe(true);
      if (valid.length > 0) expect(valid.some((v) => v !== 0)).toBe(true);
    }
    expect(() => generateKernel(c.spec, H800_TARGET)).not.toThrow();
  });
});

describe("harness case files", () => {
  it("BF16, FP32, I32 and E4M3 bytes round-trip", () => {
    const bf = new Float32Array([1, -2.5, 0.15625, 2 ** 100]);
    expect(decodeValues("bf16", encodeValues("bf16", bf))).toEqual(bf);
    expect(encodeValues("bf16", new Float32Array([1]))).toEqual(new Uint8Array([0x80, 0x3f]));
    const f = new Float32Array([0.1, -7]);
    expect(decodeValues("fp32", encodeValues("fp32", f))).toEqual(f);
    const i = new Int32Array([3, -1, 1 << 30]);
    expect(decodeValues("i32", encodeValues("i32", i))).toEqual(i);
    expect(decodeValues("e4m3", encodeValues("e4m3", new Uint8Array([0x38, 0xb8])))).toEqual(new Uint8Array([0x38, 0xb8]));
  });

  it("a GEMM case: TMA operands as descriptors over their buffers, scales and outputs as pointers, golden files or random bits", () => {
    const spec = checkSpecs().find((s) => s.kind === "gemm" && (s.constants["epilogue"] as string[]).includes("swiglu"))!;
    const kernel = generateKernel(spec, H800_TARGET);
    const g = goldenInputs(spec, 2);
    const c = harnessCase(kernel, g, { warmup: 0, iters: 0, rotate: 1 });
    const text = c.text({ cubin: "/x.cubin", file: (b) => `/in/${b.id}`, out: (b) => `/out/${b.id}` });
    const lines = text.trim().split("\n");
    expect(lines.filter((l) => l.startsWith("arg ")).length).toBe(kernel.launch.params.length);
    expect(lines.filter((l) => l.startsWith("arg tmap")).length).toBe(3);
    expect(text).toContain(`entry ${kernel.entry}`);
    expect(text).toContain(`smem ${kernel.launch.sharedBytes}`);
    for (const b of c.buffers) {
      if (b.output) expect(b.init).toBe("zero");
      else expect(b.init).toBeInstanceOf(Uint8Array);
      if (b.init instanceof Uint8Array) expect(b.init.byteLength).toBe(b.bytes);
    }
    const x = spec.main[0]!.inputs[0]!;
    expect(c.buffers.find((b) => b.tensor === x)!.bytes).toBe(elements(spec.tensors[x]!.shape));
    // Timing cases: random bits for reals and codes; integer inputs must be given.
    const timing = harnessCase(kernel, null, { warmup: 5, iters: 30, rotate: 4 });
    expect(timing.buffers.filter((b) => !b.output).every((b) => b.init === "random")).toBe(true);
    const permute = small("moe_permute");
    expect(() => harnessCase(generateKernel(permute, H800_TARGET), null, { warmup: 0, iters: 1, rotate: 1 })).toThrow(/needs values/);
    expect(() => harnessCase(generateKernel(permute, H800_TARGET), integerInputs(permute, 1), { warmup: 0, iters: 1, rotate: 1 })).not.toThrow();
  });

  it("the MLA case carries an identity page table", () => {
    const spec = checkSpecs().find((s) => s.kind === "mla_decode_attention")!;
    const kernel = generateKernel(spec, H800_TARGET);
    const c = harnessCase(kernel, goldenInputs(spec, 3) as KernelValues, { warmup: 0, iters: 0, rotate: 1 });
    const table = c.buffers.find((b) => b.tensor.endsWith(".pages"))!;
    const pages = new Int32Array((table.init as Uint8Array).slice().buffer);
    expect([...pages]).toEqual([...pages.keys()]);
  });

  it("the prefill attention case: its source tensors (q, kv_b's output, the shared k_rope) as pointers, golden reference outputs", () => {
    const spec = checkSpecs().find((s) => s.kind === "prefill_attention")!;
    expect(spec.constants["k_sources"]).toEqual(["0+128/256x8", "0+64/64x1"]);
    expect(spec.constants["v_sources"]).toEqual(["128+128/256x8"]);
    const kernel = generateKernel(spec, H800_TARGET);
    const golden = goldenCase(spec, 6);
    const c = harnessCase(kernel, golden.inputs, { warmup: 0, iters: 0, rotate: 1 });
    const inputs = c.buffers.filter((b) => !b.output);
    expect(inputs.map((b) => b.tensor).sort()).toEqual(spec.inputs.map((t) => t.id).sort());
    for (const b of inputs) expect(b.bytes).toBe(2 * elements(spec.tensors[b.tensor]!.shape));
    const out = golden.outputs.get(spec.outputs[0]!.id) as Float32Array;
    expect(out.length).toBe(elements(spec.outputs[0]!.shape));
    expect(out.every(Number.isFinite)).toBe(true);
    // Attention is a convex combination of value rows: every output within the values' range.
    const kv = golden.inputs.get(spec.tensors[spec.inputs.find((t) => t.shape[2] === 256)!.id]!.id) as Float32Array;
    let vmax = 0;
    for (let i = 0; i < kv.length; i++) if (i % 256 >= 128) vmax = Math.max(vmax, Math.abs(kv[i]!));
    expect(out.every((v) => Math.abs(v) <= vmax * (1 + 2 ** -7))).toBe(true);
    expect(compareOutputs(spec, golden.outputs, golden.outputs).every((r) => r.ok)).toBe(true);
  });

  it("rotation keeps a launch's inputs out of L2", () => {
    expect(rotationCount(200e6, 50e6)).toBe(2);
    expect(rotationCount(1e6, 50e6)).toBe(64);
    expect(rotationCount(10e6, 50e6)).toBe(11);
    expect(rotationCount(10e9, 50e6, 16e9)).toBe(1);
  });
});

describe("timing shapes and the table", () => {
  it("DeepGEMM's shapes resize a V3-style GEMM consistently", () => {
    expect(DEEPGEMM_DENSE).toHaveLength(18);
    expect(DEEPGEMM_DENSE.find((d) => d.m === 4096 && d.n === 7168 && d.k === 16384)!.tflops).toBe(1426);
    expect(DEEPGEMM_GROUPED.map((g) => g.tflops)).toEqual([1346, 1214]);
    expect(DEEPGEMM_MASKED.map((g) => g.groups * g.rows)).toEqual([1024, 1024, 1024, 1024, 1024, 1024]);
    const spec = resizeGemm(small("gemm"), 128, 2112, 7168);
    const k = generateKernel(spec, H800_TARGET);
    expect(k.source).toContain("constexpr int M = 128, N = 2112, K = 7168");
    expect(k.work.flops).toBe(2 * 128 * 2112 * 7168);
    const x = k.launch.params.find((p) => p.name === "tm_a");
    expect(x).toMatchObject({ dims: [7168, 128] });
    const grouped = resizeGemm(checkSpecs().find((s) => s.kind === "grouped_gemm")!, 4 * 8192, 4096, 7168, 4);
    const kg = generateKernel(grouped, H800_TARGET);
    expect(kg.source).toContain("GROUPS = 4");
    expect(kg.launch.params.find((p) => p.name === "tm_b0")).toMatchObject({ dims: [7168, 4 * 4096] });
  });

  it("formats a fixed-width table with targets and ratios", () => {
    const rows: ResultRow[] = [
      { kernel: "gemm", shape: "4096×7168×16384", check: "-", micros: 1234.5, rate: 1301.2, unit: "TFLOP/s", target: { value: 1426, source: "DeepGEMM H800" } },
      { kernel: "rmsnorm_quantize", shape: "4096×7168", check: "ok (diff 1e-6)", micros: 25.25, rate: 3650, unit: "GB/s", target: { value: 3655, source: "85% of copy" } },
      { kernel: "device copy (ceiling)", shape: "2 GiB D2D", check: "-", micros: null, rate: 4300, unit: "GB/s", target: null },
    ];
    const text = formatTable(rows);
    const lines = text.trimEnd().split("\n");
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatch(/^kernel +shape +check +time µs +achieved +target +vs target$/);
    expect(lines[2]).toContain("1301 TFLOP/s");
    expect(lines[2]).toContain("1426 TFLOP/s (DeepGEMM H800)");
    expect(lines[2]!.endsWith("91%")).toBe(true);
    expect(lines[3]).toContain("25.3");
    expect(ratioText(rows[2]!)).toBe("-");
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
  });
});
