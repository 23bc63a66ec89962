/** `dsv3 export FILE --to dsv3|ts|hf [-o OUT]`. */
import type { Spec } from "../../compiler/spec.js";
import { suggestionFix } from "../../dsl/suggest.js";
import type { Values } from "../options.js";
import { display, emit, EXIT_ERRORS, printDiagnostics, usageError, type CliIo } from "../output.js";

export async function runExport(spec: Spec, source: string, values: Values, io: CliIo): Promise<number> {
  const to = values.to;
  const targets = ["dsv3", "ts", "hf"];
  if (to === undefined || !targets.includes(to)) {
    return usageError(io, to === undefined ? "'dsv3 export' needs --to dsv3|ts|hf" : `unknown export target '${to}'`, to === undefined ? undefined : suggestionFix(to, targets));
  }
  if (to === "dsv3") {
    const [{ specToDocument }, { printDocument }] = await Promise.all([import("../../compiler/spec-to-ast.js"), import("../../dsl/print.js")]);
    return emit(`// The canonical form of ${display(source)}: every default written out (dsv3 export --to dsv3).\n\n${printDocument(specToDocument(spec))}`, values.out, io);
  }
  if (to === "ts") {
    const { exportTs } = await import("../../compiler/export-ts.js");
    return emit(await exportTs(spec, { source: display(source) }), values.out, io);
  }
  const { exportHfConfig, formatHfConfig } = await import("../../compiler/hf/export-hf.js");
  const result = exportHfConfig(spec);
  printDiagnostics(io, result.diagnostics, new Map());
  if (result.config === null) return EXIT_ERRORS;
  return emit(formatHfConfig(result.config), values.out, io);
}
