/** `dsv3 import-hf CONFIG.json [-o OUT.dsv3] [--with-schedules]`. */
import type { Values } from "../options.js";
import { display, emit, EXIT_ERRORS, printDiagnostics, readInputFile, type CliIo } from "../output.js";

export async function runImportHf(config: string, values: Values, io: CliIo): Promise<number> {
  const text = readInputFile(config, io);
  if (text === null) return EXIT_ERRORS;
  const { importHfConfig } = await import("../../compiler/hf/import-hf.js");
  const name = display(config);
  const result = importHfConfig(text, { sourceName: name, withSchedules: values["with-schedules"] ?? false });
  printDiagnostics(io, result.diagnostics, new Map([[name, text]]));
  if (result.text === null) return EXIT_ERRORS;
  return emit(result.text, values.out, io);
}
