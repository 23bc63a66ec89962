/**
 * The CUDA backend's part of a bundle: builds the kernels of a model's KernelSpecs, and turns the
 * result into bundle files (`kernels/cuda/<name>.cu`, `kernels/ptx/<name>.ptx`,
 * `kernels/cubin/<name>.cubin`), the manifest's `kernels` section and coded diagnostics:
 * DSV9301 (no nvcc: sources only), DSV9302 (a tool failed), DSV9303 (spills, shared memory or
 * registers beyond the SM), DSV9304 (the cache cannot be written), DSV9305 (not a Hopper GPU),
 * DSV9306 (kernels the generators cannot tile).
 */
import type { KernelSpec } from "../../compiler/kernel-spec.js";
import type { GpuSpec } from "../../compiler/spec.js";
import { makeDiagnostic } from "../../dsl/diagnostic.js";
import type { Diagnostic } from "../../dsl/diagnostic.js";
import type { ManifestKernel } from "../../runtime/manifest.js";
import { buildKernels, CUDA_BACKEND, progressLine, resourceViolations, type BuildResult } from "./backend.js";
import { gpuTargetOf } from "./gpu-target.js";
import { defaultCacheDir, KernelCache } from "./kernel-cache.js";
import { findToolchain, type Toolchain } from "./nvcc.js";

export interface BundleKernels {
  files: Map<string, string | Uint8Array>;
  manifest: ManifestKernel[];
  diagnostics: Diagnostic[];
  /** For the command's summary line; never written into the bundle. */
  summary: { kernels: number; compiled: boolean; cacheHits: number; stagesRun: number; seconds: number } | null;
}

export interface BundleKernelOptions {
  toolchain?: Toolchain | null;
  cacheDir?: string | null;
  jobs?: number;
  /** Where the progress line goes (a TTY's stderr), or null for none. */
  progress?: ((text: string) => void) | null;
}

export function manifestEntries(result: BuildResult): { files: Map<string, string | Uint8Array>; manifest: ManifestKernel[] } {
  const files = new Map<string, string | Uint8Array>();
  const manifest: ManifestKernel[] = [];
  for (const b of result.kernels) {
    const k = b.kernel;
    const cuda = `kernels/cuda/${k.name}.cu`;
    files.set(cuda, k.source);
    const ptx = b.ptx === null ? null : `kernels/ptx/${k.name}.ptx`;
    const cubin = b.cubin === null ? null : `kernels/cubin/${k.name}.cubin`;
    if (ptx !== null) files.set(ptx, b.ptx!);
    if (cubin !== null) files.set(cubin, b.cubin!);
    manifest.push({
      name: k.name,
      kind: k.kind,
      specs: b.specs,
      files: { cuda, ptx, cubin },
      resources: b.resources,
      choice: k.choice,
      launch: { ...k.launch, entry: k.entry, work: k.work } as unknown as Record<string, unknown>,
    });
  }
  return { files, manifest };
}

export async function bundleKernels(specs: readonly KernelSpec[], gpu: GpuSpec, options: BundleKernelOptions = {}): Promise<BundleKernels> {
  const diagnostics: Diagnostic[] = [];
  if (!CUDA_BACKEND.supportsTarget(gpu)) {
    diagnostics.push(makeDiagnostic("DSV9305", null, { gpu: gpu.name }, "use gpu = H800, H100 or H200 in the cluster block"));
    return { files: new Map(), manifest: [], diagnostics, summary: null };
  }
  const toolchain = options.toolchain === undefined ? findToolchain() : options.toolchain;
  const cacheDir = options.cacheDir === undefined ? defaultCacheDir() : options.cacheDir;
  const cache = cacheDir === null || toolchain === null ? null : new KernelCache(cacheDir);
  const progress = options.progress ? progressLine(options.progress) : null;
  const t0 = performance.now();
  const result = await buildKernels(specs, {
    gpu,
    toolchain,
    cache,
    ...(options.jobs !== undefined ? { jobs: options.jobs } : {}),
    ...(progress ? { onProgress: progress.update } : {}),
  });
  progress?.end();
  const seconds = (performance.now() - t0) / 1000;
  if (result.skipped.length > 0) {
    const first = result.skipped[0]!;
    diagnostics.push(makeDiagnostic("DSV9306", null, { count: result.skipped.length, id: first.spec.id, kind: first.spec.kind, reason: `needs ${first.reason}` }, "the reference backend still runs them; size the model so the dimensions tile"));
  }
  if (toolchain === null) {
    diagnostics.push(makeDiagnostic("DSV9301", null, { count: result.kernels.length }, "install the CUDA toolkit (12.8 or later), or set DSV3_NVCC to nvcc's path"));
  }
  for (const f of result.failures) {
    diagnostics.push(makeDiagnostic("DSV9302", null, { name: f.name, kind: f.kind, output: f.output.split("\n").slice(0, 6).join("\n") }));
  }
  const target = gpuTargetOf(gpu);
  for (const b of result.kernels) {
    const v = resourceViolations(b, target);
    if (v.length > 0) {
      diagnostics.push(makeDiagnostic("DSV9303", null, { name: b.kernel.name, kind: b.kernel.kind, violations: v.map((x) => `${x.what} ${x.value} > ${x.limit}`).join(", ") }));
    }
  }
  if (cache?.writeError) {
    diagnostics.push(makeDiagnostic("DSV9304", null, { path: cache.dir, reason: cache.writeError.message }, "set DSV3_CACHE_DIR to a writable directory"));
  }
  const { files, manifest } = manifestEntries(result);
  return {
    files,
    manifest,
    diagnostics,
    summary: { kernels: result.kernels.length, compiled: result.compiled, cacheHits: result.cacheHits, stagesRun: result.stagesRun, seconds },
  };
}
