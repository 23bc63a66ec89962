/**
 * Lowering: Spec → fused Graph IR → KernelSpecs, as one straight list of passes (Halide's
 * Lower.cpp habit). The graph can be dumped after any pass or all of them (a pass that changes
 * nothing says so), and per-pass timings are kept behind a flag — they never enter an artefact, so
 * the same Spec and options give byte-identical graphs, kernels and dumps.
 *
 *   build                    Spec → unfused, unquantised ModelGraph        graph/build.ts
 *   absorb-mla               decode: W_UK/W_UV absorbed, latent KV cache   passes/absorb-mla.ts
 *   insert-fp8-quantisation  the FP8 recipe's quantisation points          passes/insert-fp8-quantisation.ts
 *   mark-recompute           what the backward recomputes (training)       passes/mark-recompute.ts
 *   fuse-kernels             fused ops → KernelSpecs                       passes/fuse-kernels.ts
 *
 * Every pass's output is verified (graph/verify.ts); a failure is an internal error.
 * `dsv3 compile --dump-after=PASS|all` maps onto `lower(spec, { dumpAfter })` and `formatDumps`.
 */
import { buildModelGraph } from "./graph/build.js";
import type { ModelGraph, Phase } from "./graph/ir.js";
import { printModel } from "./graph/print.js";
import { verifyModel } from "./graph/verify.js";
import { kernelSpecs, type KernelSpec } from "./kernel-spec.js";
import { absorbMla } from "./passes/absorb-mla.js";
import { fuseKernels } from "./passes/fuse-kernels.js";
import { insertFp8Quantisation } from "./passes/insert-fp8-quantisation.js";
import { markRecompute } from "./passes/mark-recompute.js";
import type { Pass, PassContext } from "./passes/pass.js";
import type { Spec } from "./spec.js";

/** The passes, in order. */
export const PASSES: readonly Pass[] = [absorbMla, insertFp8Quantisation, markRecompute, fuseKernels];

/** What `dumpAfter` accepts besides "all": the build stage and every pass, in order. */
export const STAGE_NAMES: readonly string[] = ["build", ...PASSES.map((p) => p.name)];

export interface LowerOptions {
  phase: Phase;
  /** The schedule fixing tokens per micro-batch (default: the first of the phase's kind). */
  schedule?: string;
  /** Tokens per micro-batch, overriding the schedule's. */
  tokens?: number;
  /** Dump the graph after this stage (see STAGE_NAMES), or after every stage ("all"). */
  dumpAfter?: string;
  /** Measure each stage's wall time (kept out of every artefact). */
  timings?: boolean;
}

export interface StageDump {
  pass: string;
  /** The printed graph after the stage, or a one-line notice when the stage changed nothing. */
  text: string;
  changed: boolean;
}

export interface StageTiming {
  pass: string;
  ms: number;
}

export interface LowerResult {
  /** The fused Graph IR. */
  graph: ModelGraph;
  kernels: KernelSpec[];
  dumps: StageDump[];
  /** Present only with `timings: true`. */
  timings: StageTiming[] | null;
}

/** Whether `name` is a valid `dumpAfter` (a stage name or "all"). */
export function isDumpTarget(name: string): boolean {
  return name === "all" || STAGE_NAMES.includes(name);
}

/** Lowers `spec` for one phase (see the file comment). Throws on an unknown `dumpAfter` or schedule. */
export function lower(spec: Spec, options: LowerOptions): LowerResult {
  const { dumpAfter } = options;
  if (dumpAfter !== undefined && !isDumpTarget(dumpAfter)) {
    throw new Error(`unknown pass '${dumpAfter}' for --dump-after (expected all, ${STAGE_NAMES.join(", ")})`);
  }
  const ctx: PassContext = { precision: spec.precision };
  const timings: StageTiming[] | null = options.timings === true ? [] : null;
  const dumps: StageDump[] = [];
  const wants = (stage: string): boolean => dumpAfter === "all" || dumpAfter === stage;
  const timed = <T>(stage: string, f: () => T): T => {
    if (timings === null) return f();
    const t0 = performance.now();
    const r = f();
    timings.push({ pass: stage, ms: performance.now() - t0 });
    return r;
  };

  let graph = timed("build", () => buildModelGraph(spec, { phase: options.phase, schedule: options.schedule, tokens: options.tokens }));
  if (wants("build")) dumps.push({ pass: "build", text: printModel(graph), changed: true });
  for (const pass of PASSES) {
    const before = graph;
    graph = timed(pass.name, () => {
      const next = pass.run(before, ctx);
      if (next !== before) verifyModel(next);
      return next;
    });
    if (wants(pass.name)) {
      const text = graph === before ? null : printModel(graph);
      const changed = text !== null && text !== printModel(before);
      dumps.push({ pass: pass.name, text: changed ? text! : `// after ${pass.name}: unchanged\n`, changed });
    }
  }
  const kernels = timed("kernel-specs", () => kernelSpecs(graph));
  return { graph, kernels, dumps, timings };
}

/** The dumps as one text: each stage's graph under a `// after STAGE:` line. */
export function formatDumps(dumps: readonly StageDump[]): string {
  return dumps.map((d) => (d.changed ? `// after ${d.pass}:\n${d.text}` : d.text)).join("\n");
}

/** The timings as aligned lines (`pass   1.234 ms`), for stderr. */
export function formatTimings(timings: readonly StageTiming[]): string {
  const width = Math.max(0, ...timings.map((t) => t.pass.length));
  return timings.map((t) => `${t.pass.padEnd(width)}  ${t.ms.toFixed(3)} ms`).join("\n") + "\n";
}
