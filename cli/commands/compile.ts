/**
 * `dsv3 compile FILE --schedule NAME -o DIR [--dump-after=PASS|all] [--timings]`: plan the schedule,
 * lower the model for its phase, and write the bundle atomically.
 */
import type { CheckFileResult } from "../../compiler/check/index.js";
import type { Spec } from "../../compiler/spec.js";
import type { Stats } from "../../compiler/stats.js";
import { COMPILER_VERSION } from "../../compiler/version.js";
import { makeDiagnostic } from "../../dsl/diagnostic.js";
import { describeSystemError } from "../../dsl/system-error.js";
import { suggestionFix } from "../../dsl/suggest.js";
import { BundleError, writeBundle } from "../../runtime/bundle-writer.js";
import type { Values } from "../options.js";
import { display, EXIT_ERRORS, EXIT_OK, printDiagnostics, toJson, usageError, type CliIo } from "../output.js";
import { planSchedule } from "./plan.js";

export async function runCompile(spec: Spec, checked: CheckFileResult, schedule: string, stats: Stats, values: Values, io: CliIo): Promise<number> {
  const out = values.out;
  if (out === undefined) return usageError(io, "'dsv3 compile' needs -o DIR");
  const lowering = await import("../../compiler/pipeline.js");
  const dumpAfter = values["dump-after"];
  if (dumpAfter !== undefined && !lowering.isDumpTarget(dumpAfter)) {
    return usageError(io, `unknown pass '${dumpAfter}' for --dump-after`, suggestionFix(dumpAfter, ["all", ...lowering.STAGE_NAMES]) ?? `one of all, ${lowering.STAGE_NAMES.join(", ")}`);
  }
  const { planned, diagnostics } = await planSchedule(spec, checked, schedule);
  printDiagnostics(io, diagnostics, checked.sources);
  if (!planned.plan) return EXIT_ERRORS;
  // Lower the model for the schedule's phase: the fused Graph IR and its KernelSpecs go into the bundle.
  const kind = spec.schedules.find((s) => s.name === schedule)!.kind;
  const lowered = lowering.lower(spec, { phase: kind === "training" ? "train" : kind, schedule, ...(dumpAfter ? { dumpAfter } : {}), timings: values.timings ?? false });
  if (lowered.dumps.length > 0) io.stderr(lowering.formatDumps(lowered.dumps));
  if (lowered.timings) io.stderr(lowering.formatTimings(lowered.timings));
  const [{ printModel }, { planBundleFiles }] = await Promise.all([import("../../compiler/graph/print.js"), import("../../compiler/plan/index.js")]);
  const files = new Map<string, string | Uint8Array>([
    ["spec.json", toJson(spec)],
    ["stats.json", toJson(stats)],
    ...planBundleFiles(planned.plan),
    ["graph/model.ir", printModel(lowered.graph)],
    ["kernels/kernel-specs.json", toJson(lowered.kernels)],
  ]);
  // The CUDA backend: every distinct kernel generated, compiled by nvcc (cached, in parallel) and resource-checked.
  const { bundleKernels } = await import("../../backends/cuda/bundle-kernels.js");
  const cuda = await bundleKernels(lowered.kernels, spec.cluster.gpu, { progress: process.stderr.isTTY ? io.stderr : null });
  printDiagnostics(io, cuda.diagnostics, new Map());
  if (cuda.diagnostics.some((d) => d.severity === "error")) return EXIT_ERRORS;
  for (const [path, bytes] of cuda.files) files.set(path, bytes);
  if (cuda.summary?.compiled && (process.stderr.isTTY || values.timings === true)) {
    const s = cuda.summary;
    io.stderr(`cuda: ${s.kernels} kernels for sm_90a in ${s.seconds.toFixed(1)} s (${s.stagesRun} nvcc/ptxas runs, ${s.cacheHits} cached)\n`);
  }
  try {
    writeBundle(out, files, { compilerVersion: COMPILER_VERSION, schedule, ...(cuda.manifest.length > 0 ? { kernels: cuda.manifest } : {}) });
  } catch (e) {
    if (e instanceof BundleError) {
      const d = e.code === "not-a-bundle"
        ? makeDiagnostic("DSV9003", null, { path: out }, "choose another -o directory, or remove it first")
        : makeDiagnostic("DSV9008", null, { path: e.path || out, reason: ioReason(e) });
      printDiagnostics(io, [d], new Map());
      return EXIT_ERRORS;
    }
    throw e;
  }
  io.stdout(`wrote ${display(out)} (schedule '${schedule}', ${files.size + 1} files)\n`);
  return EXIT_OK;
}

/** Why a bundle write failed, in words. */
function ioReason(e: BundleError): string {
  return (e.cause as { code?: unknown } | undefined)?.code !== undefined ? describeSystemError(e.cause) : e.message;
}
