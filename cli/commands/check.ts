/** `dsv3 check FILE [--json]`. */
import type { CheckFileResult } from "../../compiler/check/index.js";
import { diagnosticJson, display, EXIT_ERRORS, EXIT_OK, printDiagnostics, toJson, type CliIo } from "../output.js";

export function runCheck(checked: CheckFileResult, target: string, json: boolean, io: CliIo): number {
  if (json) {
    io.stdout(toJson({
      ok: checked.spec !== null,
      diagnostics: checked.diagnostics.map(diagnosticJson),
      schedules: checked.spec?.schedules.map((s) => s.name) ?? [],
    }));
  } else {
    printDiagnostics(io, checked.diagnostics, checked.sources);
    if (checked.spec) io.stdout(`${display(target)}: ok — model '${checked.spec.model.name}', schedules: ${checked.spec.schedules.map((s) => s.name).join(", ") || "none"}\n`);
  }
  return checked.spec ? EXIT_OK : EXIT_ERRORS;
}
