/** `dsv3 verify DIR`: re-hash a bundle. */
import { makeDiagnostic } from "../../dsl/diagnostic.js";
import { verifyBundle } from "../../runtime/bundle-verify.js";
import { diagnosticJson, display, EXIT_ERRORS, EXIT_OK, printDiagnostics, toJson, type CliIo } from "../output.js";

export function runVerify(dir: string, json: boolean, io: CliIo): number {
  const result = verifyBundle(dir);
  const diagnostics = result.problems.map((p) => {
    switch (p.kind) {
      case "missing": return makeDiagnostic("DSV9004", null, { path: p.path });
      case "modified": return makeDiagnostic("DSV9005", null, { path: p.path, detail: p.detail });
      case "unlisted": return makeDiagnostic("DSV9006", null, { path: p.path }, "remove it, or recompile the bundle");
      case "no-manifest":
      case "manifest-invalid": return makeDiagnostic("DSV9007", null, { path: p.path, detail: p.detail });
    }
  });
  if (json) io.stdout(toJson({ ok: result.ok, diagnostics: diagnostics.map(diagnosticJson) }));
  else {
    printDiagnostics(io, diagnostics, new Map());
    if (result.ok) io.stdout(`${display(dir)}: ok\n`);
  }
  return result.ok ? EXIT_OK : EXIT_ERRORS;
}
