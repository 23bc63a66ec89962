/**
 * The public API of the `dsv3` package.
 *
 *   - The TypeScript form of a spec: the builders (`spec`, `model`, `mla`, `moe`, `cluster`,
 *     `training`, …), the GPU presets (`H800`, `H100`, `H200`) and their types; `toDocument` turns a
 *     built value into the AST, and `checkSpecValue` checks it.
 *   - The text language: `parseDocument`, `printDocument`, `checkSpecFile`, `checkDocuments`.
 *   - The Spec contract: its types and `SPEC_VERSION`.
 *
 * Importing this module does not load the TypeScript compiler or prettier: `checkTsSpec` (reading
 * a .ts spec statically, dsl/ts/read-ts-spec.ts) and `exportTs` (compiler/export-ts.ts) load them on
 * first use.
 */
import { checkDocuments, type CheckFileResult, type CheckResult } from "./compiler/check/index.js";
import type { ExportTsOptions } from "./compiler/export-ts.js";
import type { Spec } from "./compiler/spec.js";
import type { SpecValue } from "./dsl/ts/builders.js";
import { toDocument } from "./dsl/ts/to-document.js";

export {
  spec, model, mla, mha, gqa, dense, moe, cluster, training, prefill, decode, H800, H100, H200, GPU_PRESETS,
  BYTE_UNITS, BANDWIDTH_UNITS, FLOP_RATE_UNITS, DURATION_UNITS,
} from "./dsl/ts/builders.js";
export type {
  Bytes, Bandwidth, FlopRate, Duration, Shape, LayerRange, Layers,
  Pipeline, Fp8Format, CacheFormat, HighDtype, HighPrecisionPart, RecomputePart, CachePoint, Activation,
  YarnFields, RopeFields, MlaFields, MhaFields, GateFields, DenseFields, MoeFields, LayerPatternFields, MtpFields, ModelFields,
  CacheExceptionFields, ActivationCacheFields, PrecisionFields, GpuFields, ClusterFields, TrainingFields,
  ServingAttentionFields, ServingMoeFields, ServingFields, ModelBlock, Attention, Ffn, ClusterBlock, Schedule, SpecFields, SpecValue,
} from "./dsl/ts/builders.js";
export { toDocument } from "./dsl/ts/to-document.js";

export type { Document } from "./dsl/ast.js";
export type { Diagnostic } from "./dsl/diagnostic.js";
export { renderDiagnostic } from "./dsl/diagnostic.js";
export { parseDocument } from "./dsl/parser.js";
export { printDocument } from "./dsl/print.js";
export { checkDocuments, checkSpecFile } from "./compiler/check/index.js";
export type { CheckResult, CheckFileResult } from "./compiler/check/index.js";
export { SPEC_VERSION } from "./compiler/spec.js";
export type {
  Spec, ModelSpec, AttentionSpec, MlaSpec, MhaSpec, RopeSpec, YarnSpec, DenseFfnSpec, MoeSpec, GateSpec, MtpSpec, LayerRun,
  PrecisionSpec, ClusterSpec, GpuSpec, ScheduleSpec, TrainingSchedule, ServingSchedule,
} from "./compiler/spec.js";

/** `dsv3 export --to ts`: the Spec as a formatted TypeScript spec (loads ts-morph and prettier on first use). */
export async function exportTs(spec: Spec, options?: ExportTsOptions): Promise<string> {
  return (await import("./compiler/export-ts.js")).exportTs(spec, options);
}

/** Read a TypeScript spec statically (never running it) and check it (loads ts-morph on first use). */
export async function checkTsSpec(file: string, text?: string): Promise<CheckFileResult> {
  const { checkTsSpecFile } = await import("./dsl/ts/check-ts-spec.js");
  return checkTsSpecFile(file, undefined, text);
}

/** Check a value built with the builders, as `dsv3 check` checks a file. */
export function checkSpecValue(value: SpecValue, file = "<ts>"): CheckResult {
  return checkDocuments([toDocument(value, file)]);
}
