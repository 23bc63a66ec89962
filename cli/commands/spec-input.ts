/** Reading the spec a command works on (either form) and choosing its schedule. */
import { checkSpecFile, type CheckFileResult } from "../../compiler/check/index.js";
import type { Spec } from "../../compiler/spec.js";
import { makeDiagnostic, type Diagnostic } from "../../dsl/diagnostic.js";
import { suggestionFix } from "../../dsl/suggest.js";
import { display } from "../output.js";

/** Load and check a spec file of either form; a diagnostic for anything else. */
export async function checkInput(file: string): Promise<CheckFileResult | Diagnostic> {
  const shown = display(file);
  if (file.endsWith(".dsv3")) return checkSpecFile(shown);
  const ts = await import("../../dsl/ts/check-ts-spec.js");
  if (ts.isTsSpecFile(file)) return ts.checkTsSpecFile(shown);
  return makeDiagnostic("DSV9011", null, { path: file }, "write the spec in the .dsv3 language or as a TypeScript spec (.ts)");
}

/** Resolve --schedule: by name, else the only schedule; a diagnostic otherwise. */
export function pickSchedule(spec: Spec, name: string | undefined, required: boolean): string | null | Diagnostic {
  const names = spec.schedules.map((s) => s.name);
  if (name === undefined) {
    if (!required) return null;
    if (names.length === 0) return makeDiagnostic("DSV9010", null);
    if (names.length === 1) return names[0]!;
    return makeDiagnostic("DSV9009", null, { message: `--schedule is required: the spec has ${names.join(", ")}` });
  }
  if (names.includes(name)) return name;
  return makeDiagnostic("DSV9002", null, { name, available: names.length ? names.join(", ") : "none" }, suggestionFix(name, names));
}
