/**
 * The CUDA backend, in the shape of a Triton backend: a small object that says which targets it
 * supports, hashes what its output depends on, and lists its compile stages in order —
 *
 *   cuda-source  KernelSpec → CUDA C++ (generate.ts; in process)
 *   ptx          CUDA C++ → PTX (nvcc -ptx, compute_90a)
 *   cubin        PTX → cubin + ptxas's resource report (ptxas -v, sm_90a)
 *
 * `buildKernels` runs the stages for the distinct KernelSpecs of a model (equal keys share a
 * kernel), each tool stage looked up first in the content-addressed cache (kernel-cache.ts), the
 * misses run in parallel (a worker pool of `jobs` tool processes) with a progress line on a TTY.
 * Without a toolchain it stops after cuda-source and says so.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import type { KernelSpec } from "../../compiler/kernel-spec.js";
import type { GpuSpec } from "../../compiler/spec.js";
import { cacheKey, type KernelCache } from "./kernel-cache.js";
import { generateKernel, GENERATOR_VERSION, kernelName, unsupportedReason } from "./generate.js";
import type { GeneratedKernel } from "./generated-kernel.js";
import { gpuTargetOf, isHopper, type GpuTarget } from "./gpu-target.js";
import { CUBIN_FLAGS, parsePtxasReport, PTX_FLAGS, runTool, ToolError, type KernelResources, type Toolchain } from "./nvcc.js";

export type StageName = "cuda-source" | "ptx" | "cubin";

export interface CudaBackend {
  name: "cuda";
  /** The stages, in order. */
  stages: readonly StageName[];
  supportsTarget(gpu: Pick<GpuSpec, "name">): boolean;
  /** A hash of everything besides a kernel's source that affects the output (versions, flags). */
  hash(toolchain: Toolchain | null): string;
}

export const CUDA_BACKEND: CudaBackend = {
  name: "cuda",
  stages: ["cuda-source", "ptx", "cubin"],
  supportsTarget: isHopper,
  hash: (toolchain) => cacheKey([GENERATOR_VERSION, toolchain?.version ?? "no-toolchain", ...PTX_FLAGS, ...CUBIN_FLAGS]),
};

export interface BuiltKernel {
  kernel: GeneratedKernel;
  /** The KernelSpec ids this kernel serves. */
  specs: string[];
  ptx: string | null;
  cubin: Uint8Array | null;
  resources: KernelResources | null;
}

export interface SkippedKernel {
  spec: KernelSpec;
  reason: string;
}

export interface BuildResult {
  kernels: BuiltKernel[];
  skipped: SkippedKernel[];
  /** Tool failures: kernel name and the tool's output. */
  failures: { name: string; kind: string; output: string }[];
  compiled: boolean;
  /** Tool stages served from the cache / run. */
  cacheHits: number;
  stagesRun: number;
}

export interface BuildOptions {
  gpu: GpuSpec;
  toolchain: Toolchain | null;
  cache: KernelCache | null;
  jobs?: number;
  /** Called as tool stages finish (done of total, hits so far). */
  onProgress?: (done: number, total: number, cached: number) => void;
}

/** Runs `work` over `items` with at most `jobs` at a time, results in item order. */
async function pool<T, R>(items: readonly T[], jobs: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const runners = Array.from({ length: Math.max(1, Math.min(jobs, items.length)) }, async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      out[i] = await work(items[i]!);
    }
  });
  await Promise.all(runners);
  return out;
}

export function defaultJobs(env: NodeJS.ProcessEnv = process.env): number {
  const forced = Number(env["DSV3_JOBS"]);
  return Number.isInteger(forced) && forced > 0 ? forced : availableParallelism();
}

/** The distinct kernels of `specs` (by key), each with the ids of the specs it serves. */
export function distinctKernels(specs: readonly KernelSpec[], gpu: GpuTarget): { spec: KernelSpec; ids: string[] }[] {
  const byName = new Map<string, { spec: KernelSpec; ids: string[] }>();
  for (const s of specs) {
    const name = kernelName(s, gpu);
    const e = byName.get(name);
    if (e) e.ids.push(s.id);
    else byName.set(name, { spec: s, ids: [s.id] });
  }
  return [...byName.values()];
}

export async function buildKernels(specs: readonly KernelSpec[], options: BuildOptions): Promise<BuildResult> {
  const gpu = gpuTargetOf(options.gpu);
  const skipped: SkippedKernel[] = [];
  const generated: { kernel: GeneratedKernel; ids: string[] }[] = [];
  for (const { spec, ids } of distinctKernels(specs, gpu)) {
    const reason = unsupportedReason(spec);
    if (reason !== null) skipped.push({ spec, reason });
    else generated.push({ kernel: generateKernel(spec, gpu), ids });
  }
  const result: BuildResult = { kernels: [], skipped, failures: [], compiled: options.toolchain !== null, cacheHits: 0, stagesRun: 0 };
  const toolchain = options.toolchain;
  if (toolchain === null) {
    result.kernels = generated.map(({ kernel, ids }) => ({ kernel, specs: ids, ptx: null, cubin: null, resources: null }));
    return result;
  }
  const cache = options.cache;
  const work = mkdtempSync(join(tmpdir(), "dsv3-cuda-"));
  let done = 0;
  const total = generated.length;
  try {
    const built = await pool(generated, options.jobs ?? defaultJobs(), async ({ kernel, ids }) => {
      const b: BuiltKernel = { kernel, specs: ids, ptx: null, cubin: null, resources: null };
      try {
        // ptx
        const ptxKey = cacheKey(["ptx", toolchain.version, ...PTX_FLAGS, kernel.source]);
        let ptx = cache?.get(ptxKey, ".ptx")?.toString("utf8") ?? null;
        if (ptx === null) {
          const cu = `${kernel.name}.cu`;
          writeFileSync(join(work, cu), kernel.source);
          await runTool(toolchain.nvcc, [...PTX_FLAGS, "-o", `${kernel.name}.ptx`, cu], work);
          ptx = readFileSync(join(work, `${kernel.name}.ptx`), "utf8");
          cache?.put(ptxKey, ".ptx", ptx);
          result.stagesRun++;
        } else result.cacheHits++;
        b.ptx = ptx;
        // cubin (+ the ptxas report)
        const cubinKey = cacheKey(["cubin", toolchain.version, ...CUBIN_FLAGS, ptx]);
        let cubin = cache?.get(cubinKey, ".cubin") ?? null;
        let report = cubin === null ? null : (cache?.get(cubinKey, ".ptxas.txt")?.toString("utf8") ?? null);
        if (cubin === null || report === null) {
          writeFileSync(join(work, `${kernel.name}.ptx`), ptx);
          report = await runTool(toolchain.ptxas, [...CUBIN_FLAGS, "-o", `${kernel.name}.cubin`, `${kernel.name}.ptx`], work);
          cubin = readFileSync(join(work, `${kernel.name}.cubin`));
          cache?.put(cubinKey, ".cubin", cubin);
          cache?.put(cubinKey, ".ptxas.txt", report);
          result.stagesRun++;
        } else result.cacheHits++;
        b.cubin = new Uint8Array(cubin);
        const r = parsePtxasReport(report, kernel.entry);
        if (r === null) throw new ToolError("ptxas", `no resource report for ${kernel.entry}`);
        b.resources = {
          registers: r.registers,
          sharedBytes: r.staticSharedBytes + kernel.launch.sharedBytes,
          spillStoreBytes: r.spillStoreBytes,
          spillLoadBytes: r.spillLoadBytes,
          stackBytes: r.stackBytes,
        };
      } catch (e) {
        if (!(e instanceof ToolError)) throw e;
        result.failures.push({ name: kernel.name, kind: kernel.kind, output: e.output });
      }
      done++;
      options.onProgress?.(done, total, result.cacheHits);
      return b;
    });
    result.kernels = built;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return result;
}

/** What breaks the SM's limits in a kernel's resources (spills, shared memory, registers), in words. */
export function resourceViolations(b: BuiltKernel, gpu: GpuTarget): { what: string; value: number; limit: number }[] {
  const r = b.resources;
  if (r === null) return [];
  const out: { what: string; value: number; limit: number }[] = [];
  if (r.spillStoreBytes > 0) out.push({ what: "spill stores (bytes)", value: r.spillStoreBytes, limit: 0 });
  if (r.spillLoadBytes > 0) out.push({ what: "spill loads (bytes)", value: r.spillLoadBytes, limit: 0 });
  if (r.sharedBytes > gpu.sharedBytesPerBlock) out.push({ what: "shared memory (bytes)", value: r.sharedBytes, limit: gpu.sharedBytesPerBlock });
  const threads = b.kernel.launch.block[0] * b.kernel.launch.block[1] * b.kernel.launch.block[2];
  if (r.registers * threads > gpu.registersPerSm) out.push({ what: "registers per block", value: r.registers * threads, limit: gpu.registersPerSm });
  return out;
}

/** A one-line progress display for a TTY: `cuda kernels 12/23 (5 cached)`, redrawn in place. */
export function progressLine(write: (text: string) => void): { update: (done: number, total: number, cached: number) => void; end: () => void } {
  let shown = false;
  return {
    update(done, total, cached) {
      shown = true;
      write(`\r\x1b[2Kcuda kernels ${done}/${total}${cached > 0 ? ` (${cached} stages cached)` : ""}`);
    },
    end() {
      if (shown) write("\r\x1b[2K");
    },
  };
}
