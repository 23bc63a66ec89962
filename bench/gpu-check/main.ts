/**
 * The GPU check (`node dist/bench/gpu-check/main.js`, on a machine with a Hopper GPU and nvcc):
 *
 *  1. builds the host harness (harness.cu; cuBLAS when present) and measures the device ceilings:
 *     a 2 GiB device-to-device copy and an 8192³ BF16 cuBLAS GEMM;
 *  2. correctness: every distinct kernel of the check model (check-model.dsv3: the V3 architecture
 *     at CPU-friendly sizes, train and decode) is generated and compiled like a bundle's, run once
 *     on golden inputs, and compared with the CPU reference's outputs (compare.ts tolerances);
 *  3. timing: DeepGEMM's dense and grouped shapes and the DeepSeek-V3 bundles' memory-bound kernels,
 *     the training attention (TFLOP/s, against half the BF16 GEMM ceiling) and MLA decode, with
 *     random inputs rotated past L2, median of 30 launches (CUDA events);
 *  4. PyTorch's FP8 scaled matmul on the same dense shapes when torch is importable;
 *  5. prints the table with the issue's targets beside each measurement, and the GPU, driver and
 *     date for bench/RESULTS.md. Exit 1 when a correctness check fails.
 *
 * Needs: nvcc (or $DSV3_NVCC) and nvidia-smi; without them it says why and exits 0.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { checkSpecFile } from "../../compiler/check/index.js";
import { uniqueKernels, type KernelSpec } from "../../compiler/kernel-spec.js";
import { lower } from "../../compiler/pipeline.js";
import type { GpuSpec } from "../../compiler/spec.js";
import { buildKernels, type BuiltKernel } from "../../backends/cuda/backend.js";
import { gpuTargetOf } from "../../backends/cuda/gpu-target.js";
import { defaultCacheDir, KernelCache } from "../../backends/cuda/kernel-cache.js";
import { findToolchain, type Toolchain } from "../../backends/cuda/nvcc.js";
import type { KernelValues } from "../../backends/reference/kernels/index.js";
import { harnessCase, decodeValues, rotationCount, type CaseBuffer } from "./case-file.js";
import { compareOutputs } from "./compare.js";
import { checkKernelSpecs, goldenCase, integerInputs, maskedGoldenCase } from "./golden.js";
import { formatTable, type ResultRow } from "./table.js";

const HERE = dirname(fileURLToPath(import.meta.url));
/** The repository root: dist/bench/gpu-check → three levels up; bench/gpu-check (tsx) → two. */
const ROOT = existsSync(join(HERE, "..", "..", "package.json")) ? resolve(HERE, "..", "..") : resolve(HERE, "..", "..", "..");
const SOURCE_DIR = join(ROOT, "bench", "gpu-check");

/** DeepGEMM's dense FP8 GEMM on H800 (shared/reference/FACTS.md): TFLOP/s by M and (N, K). */
export const DEEPGEMM_DENSE: { m: number; n: number; k: number; tflops: number }[] = [
  [64, [206, 289, 219, 336, 287, 295]],
  [128, [352, 535, 358, 645, 533, 510]],
  [4096, [1009, 1125, 751, 1426, 1265, 1168]],
].flatMap(([m, row]) =>
  ([[2112, 7168], [24576, 1536], [32768, 512], [7168, 16384], [4096, 7168], [7168, 2048]] as const).map(([n, k], i) => ({ m: m as number, n, k, tflops: (row as number[])[i]! })),
);
/** DeepGEMM grouped contiguous (4 groups × 8192 rows): N, K, TFLOP/s on H800. */
export const DEEPGEMM_GROUPED: { groups: number; rows: number; n: number; k: number; tflops: number }[] = [
  { groups: 4, rows: 8192, n: 4096, k: 7168, tflops: 1346 },
  { groups: 4, rows: 8192, n: 7168, k: 2048, tflops: 1214 },
];

/** DeepGEMM grouped masked (decode): groups × rows per group, N, K, TFLOP/s on H800. */
export const DEEPGEMM_MASKED: { groups: number; rows: number; n: number; k: number; tflops: number }[] = [
  { groups: 1, rows: 1024, n: 4096, k: 7168, tflops: 1233 },
  { groups: 2, rows: 512, n: 4096, k: 7168, tflops: 1040 },
  { groups: 4, rows: 256, n: 4096, k: 7168, tflops: 932 },
  { groups: 1, rows: 1024, n: 7168, k: 2048, tflops: 925 },
  { groups: 2, rows: 512, n: 7168, k: 2048, tflops: 916 },
  { groups: 4, rows: 256, n: 7168, k: 2048, tflops: 815 },
];

/**
 * The longest one harness run may take: a golden run is one launch on small inputs (seconds); a
 * timing run also fills the rotated input copies and launches a few dozen times.
 */
const GOLDEN_TIMEOUT_MS = 60_000;
const TIMING_TIMEOUT_MS = 300_000;

interface Harness {
  path: string;
  run(args: string[], timeoutMs?: number): string;
}

function buildHarness(toolchain: Toolchain, work: string): Harness {
  const out = join(work, "harness");
  const src = join(SOURCE_DIR, "harness.cu");
  const base = ["-O2", "-std=c++17", "-arch=sm_90a", src, "-o", out, "-lcuda"];
  const withBlas = spawnSync(toolchain.nvcc, [...base, "-lcublas"], { encoding: "utf8" });
  if (withBlas.status !== 0) {
    const without = spawnSync(toolchain.nvcc, [...base, "-DNO_CUBLAS"], { encoding: "utf8" });
    if (without.status !== 0) throw new Error(`cannot build the harness:\n${without.stderr}`);
  }
  return {
    path: out,
    run: (args, timeoutMs = TIMING_TIMEOUT_MS) => {
      // A kernel that deadlocks (an mbarrier phase that never completes) would hang the whole check:
      // every harness run is bounded, and a run past the bound is reported as a failure of that kernel.
      const r = spawnSync(out, args, { encoding: "utf8", maxBuffer: 64 << 20, timeout: timeoutMs, killSignal: "SIGKILL" });
      if (r.error !== undefined && (r.error as NodeJS.ErrnoException).code === "ETIMEDOUT") {
        throw new Error(`harness ${args.join(" ")} did not finish in ${timeoutMs / 1000} s (a kernel that never completes: deadlock?)`);
      }
      if (r.status !== 0) throw new Error(`harness ${args.join(" ")} failed (${r.status ?? r.signal}):\n${r.stderr}`);
      return r.stdout;
    },
  };
}

function queryGpu(): { name: string; driver: string } | null {
  try {
    const text = execFileSync("nvidia-smi", ["--query-gpu=name,driver_version", "--format=csv,noheader"], { encoding: "utf8" });
    const [name, driver] = text.split("\n")[0]!.split(",").map((s) => s.trim());
    return name ? { name, driver: driver ?? "?" } : null;
  } catch {
    return null;
  }
}

/** Runs `kernel` once (and `iters` timed launches) through the harness; outputs by tensor id. */
function runKernelOnGpu(h: Harness, b: BuiltKernel, values: KernelValues | null, dir: string, iters: number, l2: number): { outputs: KernelValues; micros: number | null } {
  const inputBytes = b.kernel.launch.params.reduce((s, p) => s + (p.kind === "tensor" && p.access === "out" ? 0 : p.kind === "tensor-map" ? p.dims[0] * p.dims[1] : p.kind === "tensor" ? p.elements * 4 : 0), 0);
  const c = harnessCase(b.kernel, values, { warmup: iters > 0 ? 5 : 0, iters, rotate: iters > 0 ? rotationCount(inputBytes, l2) : 1 });
  const cubin = join(dir, `${b.kernel.name}.cubin`);
  writeFileSync(cubin, b.cubin!);
  const file = (x: CaseBuffer): string => join(dir, `${b.kernel.name}.${x.id}.in`);
  const out = (x: CaseBuffer): string => join(dir, `${b.kernel.name}.${x.id}.out`);
  for (const x of c.buffers) if (x.init instanceof Uint8Array) writeFileSync(file(x), x.init);
  const caseFile = join(dir, `${b.kernel.name}.case`);
  writeFileSync(caseFile, c.text({ cubin, file, out }));
  const stdout = h.run(["case", caseFile], iters > 0 ? TIMING_TIMEOUT_MS : GOLDEN_TIMEOUT_MS);
  const outputs: KernelValues = new Map();
  for (const x of c.buffers) if (x.output) outputs.set(x.tensor, decodeValues(x.type, new Uint8Array(readFileSync(out(x)))));
  const m = /time_us ([0-9.]+)/.exec(stdout);
  return { outputs, micros: m ? Number(m[1]) : null };
}

/** A copy of a gemm / grouped_gemm KernelSpec resized to (groups ×) m × n × k. */
export function resizeGemm(spec: KernelSpec, m: number, n: number, k: number, groups = 0): KernelSpec {
  const s = structuredClone(spec);
  s.constants = { ...s.constants, m, n, k, ...(groups > 0 ? { groups } : {}) };
  const main = s.main[0]!;
  const shape: Record<string, number[]> = { [main.inputs[0]!]: [m, k], [main.inputs[1]!]: groups > 0 ? [groups, n, k] : [n, k], [s.outputs[0]!.id]: [m, n] };
  if (groups > 0) shape[main.inputs[2]!] = [groups];
  for (const t of [...Object.values(s.tensors), ...s.inputs, ...s.outputs]) if (shape[t.id]) t.shape = shape[t.id]!;
  s.id = `${spec.kind}[${groups > 0 ? `${groups}x` : ""}${m}x${n}x${k}]`;
  s.key = `${s.kind}:${JSON.stringify(s.constants)}`;
  return s;
}

function lowerUnique(file: string, schedules: string[]): KernelSpec[] {
  const checked = checkSpecFile(file);
  if (checked.spec === null) throw new Error(`${file} does not check`);
  const spec = checked.spec;
  const all: KernelSpec[] = [];
  for (const name of schedules) {
    const s = spec.schedules.find((x) => x.name === name)!;
    all.push(...lower(spec, { phase: s.kind === "training" ? "train" : s.kind, schedule: name }).kernels.map((k) => ({ ...k, id: `${name}/${k.id}` })));
  }
  return uniqueKernels(all);
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const toolchain = findToolchain();
  const gpu = queryGpu();
  if (toolchain === null || gpu === null) {
    process.stdout.write(`gpu-check: skipped — ${toolchain === null ? "nvcc not found (set DSV3_NVCC)" : "no GPU (nvidia-smi failed)"}\n`);
    return;
  }
  const date = new Date().toISOString().slice(0, 10);
  process.stdout.write(`gpu-check: ${gpu.name}, driver ${gpu.driver}, nvcc ${toolchain.version}, ${date}\n`);
  const work = mkdtempSync(join(tmpdir(), "dsv3-gpu-check-"));
  const cache = new KernelCache(defaultCacheDir());
  const rows: ResultRow[] = [];
  let failures = 0;
  try {
    const h = buildHarness(toolchain, work);
    const copyGbps = Number(/copy_gbps ([0-9.]+)/.exec(h.run(["copy", String(2 << 30)]))?.[1] ?? NaN);
    const bf16Text = h.run(["gemm-bf16", "8192"]);
    const bf16 = Number(/bf16_tflops ([0-9.]+)/.exec(bf16Text)?.[1] ?? NaN);
    rows.push({ kernel: "device copy (ceiling)", shape: "2 GiB D2D", check: "-", micros: null, rate: copyGbps, unit: "GB/s", target: null });
    rows.push({ kernel: "cuBLAS BF16 GEMM (ceiling)", shape: "8192³", check: "-", micros: null, rate: Number.isFinite(bf16) ? bf16 : null, unit: "TFLOP/s", target: null });

    // ── 2. correctness on the check model ──
    const h200: GpuSpec = { name: "H200", fp8FlopsPerS: 1979e12, bf16FlopsPerS: 989e12, hbmBytes: 141e9, hbmBytesPerS: 4.8e12, sms: 132 };
    const l2 = gpuTargetOf(h200).l2Bytes;
    const checkSpecs = checkKernelSpecs(join(SOURCE_DIR, "check-model.dsv3"));
    const built = await buildKernels(checkSpecs, { gpu: h200, toolchain, cache });
    if (built.failures.length > 0) throw new Error(`kernels failed to compile:\n${built.failures.map((f) => `${f.name}: ${f.output}`).join("\n")}`);
    // The GEMMs once more on an 8-SM grid: many tiles per persistent CTA (pipeline phases wrapping
    // across tiles) and 2-CTA TMA multicast, which the small check shapes would not reach on 132 SMs.
    const gemmSpecs = checkSpecs.filter((s) => s.kind === "gemm" || s.kind === "grouped_gemm");
    const smallGrid = await buildKernels(gemmSpecs, { gpu: { ...h200, sms: 8 }, toolchain, cache });
    if (smallGrid.failures.length > 0) throw new Error(`kernels failed to compile:\n${smallGrid.failures.map((f) => `${f.name}: ${f.output}`).join("\n")}`);
    const bySpec = new Map<string, BuiltKernel>();
    for (const b of built.kernels) for (const id of b.specs) bySpec.set(id, b);
    const bySpecSmall = new Map<string, BuiltKernel>();
    for (const b of smallGrid.kernels) for (const id of b.specs) bySpecSmall.set(id, b);
    const goldens = new Map<string, ReturnType<typeof goldenCase>>();
    // The decode grouped GEMMs are masked (each group `capacity` rows, random valid counts); they run
    // again on golden outputs built from full groups (maskedGoldenCase), an independent oracle.
    const maskedCases = checkSpecs.filter((s) => s.kind === "grouped_gemm" && s.constants["layout"] === "masked").map((s, i) => maskedGoldenCase(s, 100 + i));
    const maskedBuilt = await buildKernels(maskedCases.map((c) => c.spec), { gpu: h200, toolchain, cache });
    const bySpecMasked = new Map<string, BuiltKernel>();
    for (const b of maskedBuilt.kernels) for (const id of b.specs) bySpecMasked.set(id, b);
    for (const c of maskedCases) goldens.set(c.spec.id, c);
    const variants = [...maskedCases.map((c) => ({ spec: c.spec, b: bySpecMasked.get(c.spec.id), label: ", masked layout" })), ...checkSpecs.flatMap((spec) => [
      { spec, b: bySpec.get(spec.id), label: "" },
      ...(bySpecSmall.has(spec.id) ? [{ spec, b: bySpecSmall.get(spec.id), label: ", 8-SM grid" }] : []),
    ])];
    const byKind = new Map<string, { checked: number; failed: number; worst: number; metric: string }>();
    for (const { spec, b, label } of variants) {
      if (b === undefined) continue;
      let golden = goldens.get(spec.id);
      if (golden === undefined) {
        golden = goldenCase(spec, goldens.size + 1);
        goldens.set(spec.id, golden);
      }
      const inputs = new Map(golden.inputs);
      const where = `${spec.id}${label}${b.kernel.choice["multicast"] === 2 ? ", multicast" : ""}`;
      let outputs: KernelValues;
      try {
        outputs = runKernelOnGpu(h, b, inputs, work, 0, l2).outputs;
      } catch (e) {
        // A launch error, a fault or a hang of one kernel fails that kernel; the others still run.
        failures++;
        process.stdout.write(`FAIL ${spec.kind} ${where} (${shapeOf(spec)}): ${(e as Error).message.split("\n").slice(0, 3).join(" | ")}\n`);
        const k = byKind.get(spec.kind) ?? { checked: 0, failed: 0, worst: 0, metric: "diff" };
        k.checked++;
        k.failed++;
        byKind.set(spec.kind, k);
        continue;
      }
      const checks = compareOutputs(spec, outputs, golden.outputs);
      const bad = checks.filter((c) => !c.ok);
      if (bad.length > 0) {
        failures++;
        process.stdout.write(`FAIL ${spec.kind} ${where} (${shapeOf(spec)}): ${bad.map((c) => `%${c.tensor} ${c.metric} ${c.value.toExponential(2)} > ${c.tolerance}`).join("; ")}\n`);
      }
      const k = byKind.get(spec.kind) ?? { checked: 0, failed: 0, worst: 0, metric: "diff" };
      k.checked++;
      if (bad.length > 0) k.failed++;
      for (const c of checks) if (c.metric === "diff" && c.value > k.worst) k.worst = c.value;
      byKind.set(spec.kind, k);
    }
    for (const [kind, k] of byKind) {
      rows.push({
        kernel: `${kind} (check model)`,
        shape: `${k.checked} kernel run(s)`,
        check: k.failed === 0 ? `ok, worst diff ${k.worst.toExponential(1)}` : `FAIL ${k.failed}/${k.checked}`,
        micros: null,
        rate: null,
        unit: "",
        target: null,
      });
    }

    // ── 3. timing on DeepGEMM's shapes and the V3 bundles' kernels ──
    const v3 = lowerUnique(join(ROOT, "specs", "deepseek-v3.dsv3"), ["train", "decode"]);
    const denseTemplate = v3.find((s) => s.kind === "gemm" && String(s.constants["a"]).startsWith("e4m3") && (s.constants["epilogue"] as string[]).length === 0)!;
    const groupedTemplate = v3.find((s) => s.kind === "grouped_gemm")!;
    const timed: { spec: KernelSpec; target: ResultRow["target"]; unit: ResultRow["unit"]; ints: KernelValues }[] = [];
    for (const d of DEEPGEMM_DENSE) {
      const spec = resizeGemm(denseTemplate, d.m, d.n, d.k);
      timed.push({ spec, target: { value: d.tflops, source: "DeepGEMM H800" }, unit: "TFLOP/s", ints: new Map() });
    }
    for (const g of DEEPGEMM_GROUPED) {
      const spec = resizeGemm(groupedTemplate, g.groups * g.rows, g.n, g.k, g.groups);
      const counts = new Int32Array(g.groups).fill(g.rows);
      timed.push({ spec, target: { value: g.tflops, source: "DeepGEMM H800" }, unit: "TFLOP/s", ints: new Map([[spec.main[0]!.inputs[2]!, counts]]) });
    }
    // The train bundle's memory-bound kernels (full-size activations) and the decode bundle's MLA.
    for (const g of DEEPGEMM_MASKED) {
      const spec = resizeGemm(groupedTemplate, g.groups * g.rows, g.n, g.k, g.groups);
      spec.constants = { ...spec.constants, layout: "masked" };
      spec.id = `masked ${spec.id}`;
      spec.key = `${spec.kind}:${JSON.stringify(spec.constants)}`;
      const counts = new Int32Array(g.groups).fill(g.rows);
      timed.push({ spec, target: { value: g.tflops, source: "DeepGEMM H800 masked" }, unit: "TFLOP/s", ints: new Map([[spec.main[0]!.inputs[2]!, counts]]) });
    }
    for (const spec of v3) {
      if (spec.kind === "gemm" || spec.kind === "grouped_gemm") continue;
      if (spec.id.startsWith("decode/") !== (spec.kind === "mla_decode_attention")) continue;
      if (spec.kind === "prefill_attention") {
        // Compute-bound: against half the measured BF16 GEMM ceiling (the same tensor cores, mma.sync).
        timed.push({ spec, target: Number.isFinite(bf16) ? { value: 0.5 * bf16, source: "50% of cuBLAS BF16" } : null, unit: "TFLOP/s", ints: new Map() });
        continue;
      }
      const memoryBound = spec.kind !== "gate_topk";
      timed.push({ spec, target: memoryBound && Number.isFinite(copyGbps) ? { value: 0.85 * copyGbps, source: "85% of copy" } : null, unit: "GB/s", ints: integerInputs(spec, 7) });
    }
    const timedBuilt = await buildKernels(timed.map((t) => t.spec), { gpu: h200, toolchain, cache });
    const timedBy = new Map<string, BuiltKernel>();
    for (const b of timedBuilt.kernels) for (const id of b.specs) timedBy.set(id, b);
    const torchShapes: number[] = [];
    for (const t of timed) {
      const b = timedBy.get(t.spec.id);
      if (b === undefined || b.cubin === null) continue;
      let micros: number | null;
      try {
        micros = runKernelOnGpu(h, b, t.ints, work, 30, l2).micros;
      } catch (e) {
        // A kernel that faults or hangs in a timing run is a row saying so; the other timings still run.
        failures++;
        rows.push({ kernel: t.spec.kind, shape: shapeOf(t.spec), check: `FAIL: ${(e as Error).message.split("\n")[0]!}`.slice(0, 80), micros: null, rate: null, unit: t.unit, target: t.target });
        continue;
      }
      const w = b.kernel.work;
      const rate = micros === null ? null : t.unit === "TFLOP/s" ? w.flops / (micros * 1e-6) / 1e12 : w.bytes / (micros * 1e-6) / 1e9;
      const extra = t.spec.kind === "mla_decode_attention" && micros !== null ? `, ${(w.flops / (micros * 1e-6) / 1e12).toFixed(0)} TFLOP/s` : "";
      rows.push({ kernel: t.spec.kind, shape: shapeOf(t.spec) + extra, check: "-", micros, rate, unit: t.unit, target: t.target });
      if (t.spec.kind === "gemm") torchShapes.push(t.spec.constants["m"] as number, t.spec.constants["n"] as number, t.spec.constants["k"] as number);
    }

    // ── 4. PyTorch on the same dense shapes ──
    const torch = spawnSync("python3", [join(SOURCE_DIR, "torch_fp8.py"), ...torchShapes.map(String)], { encoding: "utf8", timeout: 180_000 });
    if (torch.status === 0) {
      for (const line of torch.stdout.split("\n")) {
        const m = /^torch (\d+) (\d+) (\d+) ([0-9.na]+) (\w+)/.exec(line);
        if (!m) continue;
        rows.push({ kernel: `torch._scaled_mm (${m[5]})`, shape: `${m[1]}×${m[2]}×${m[3]}`, check: "-", micros: null, rate: Number(m[4]), unit: "TFLOP/s", target: null });
      }
    } else {
      rows.push({ kernel: "torch._scaled_mm", shape: "-", check: `not run: ${(torch.stderr || torch.error?.message || "").trim().split("\n").pop() ?? ""}`.slice(0, 80), micros: null, rate: null, unit: "", target: null });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write("\n" + formatTable(rows));
  process.stdout.write(`\n${gpu.name} · driver ${gpu.driver} · nvcc ${toolchain.version} · ${date} · ${((performance.now() - t0) / 1000).toFixed(0)} s · ${failures === 0 ? "all checks passed" : `${failures} kernel(s) FAILED`}\n`);
  if (failures > 0) process.exitCode = 1;
}

function shapeOf(spec: KernelSpec): string {
  const c = spec.constants;
  switch (spec.kind) {
    case "gemm":
      return `${c["m"]}×${c["n"]}×${c["k"]}${(c["epilogue"] as string[]).length > 0 ? ` +${(c["epilogue"] as string[]).join("+")}` : ""}${String(c["a"]) === "bf16" ? " bf16" : ""}`;
    case "grouped_gemm":
      return c["layout"] === "masked"
        ? `masked ${c["groups"]}×${(c["m"] as number) / (c["groups"] as number)} rows, ${c["n"]}×${c["k"]}`
        : `${c["groups"]} groups, ${c["m"]}×${c["n"]}×${c["k"]}`;
    case "mla_decode_attention":
      return `${c["queries"]} q × ${c["heads"]} heads, kv ${c["kv_len"]}`;
    case "prefill_attention":
      return `${c["queries"]} q × ${c["heads"]} heads, kv ${c["kv_len"]}, qk ${c["dk"]} v ${c["dv"]}${c["causal"] === true ? " causal" : ""}`;
    case "gate_topk":
      return `${c["m"]} tokens × ${c["n"]} experts`;
    case "moe_permute":
    case "moe_unpermute":
      return `${c["tokens"]}×${c["topk"]} → ${c["rows"]} rows × ${c["hidden"]}`;
    case "rope":
      return `${c["rows"]}×${c["heads"]}×${c["head_dim"]}`;
    default:
      return `${c["rows"]}×${c["dim"]}`;
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`gpu-check: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 2;
  });
}
