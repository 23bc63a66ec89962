/**
 * What every command shares for talking to the user: the IO object, exit codes, coded diagnostics
 * on stderr (and their JSON form), JSON on stdout, and output files written atomically.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { makeDiagnostic, renderDiagnostic, type Diagnostic } from "../dsl/diagnostic.js";
import { describeSystemError } from "../dsl/system-error.js";
import { writeFileAtomic } from "../runtime/atomic-file.js";
import { USAGE } from "./usage.js";

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

export const EXIT_OK = 0;
/** The input has errors (diagnostics printed). */
export const EXIT_ERRORS = 1;
/** The command line is wrong. */
export const EXIT_USAGE = 2;

export function usageError(io: CliIo, message: string, fix?: string): number {
  io.stderr(`${renderDiagnostic(makeDiagnostic("DSV9009", null, { message }, fix), new Map())}\n\n${USAGE}`);
  return EXIT_USAGE;
}

/** One JSON form of a diagnostic, shared by every --json output. */
export function diagnosticJson(d: Diagnostic): Record<string, unknown> {
  return {
    code: d.code,
    severity: d.severity,
    message: d.message,
    file: d.span?.file ?? null,
    line: d.span?.line ?? null,
    col: d.span?.col ?? null,
    fix: d.fix ?? null,
  };
}

export function printDiagnostics(io: CliIo, diagnostics: readonly Diagnostic[], sources: ReadonlyMap<string, string>): void {
  if (diagnostics.length === 0) return;
  io.stderr(diagnostics.map((d) => renderDiagnostic(d, sources)).join("\n\n") + "\n");
  const errors = diagnostics.filter((d) => d.severity === "error").length;
  const warnings = diagnostics.length - errors;
  io.stderr(`\n${errors} error(s), ${warnings} warning(s)\n`);
}

export function toJson(value: unknown): string {
  return JSON.stringify(value, null, 2) + "\n";
}

/** Paths as shown in diagnostics: forward slashes on every platform. */
export function display(file: string): string {
  return file.split(path.sep).join("/");
}

/** Print `text`, or write it atomically to `out`. */
export async function emit(text: string, out: string | undefined, io: CliIo): Promise<number> {
  if (out === undefined) {
    io.stdout(text);
    return EXIT_OK;
  }
  try {
    await writeFileAtomic(out, text);
  } catch (e) {
    printDiagnostics(io, [makeDiagnostic("DSV9008", null, { path: display(out), reason: describeSystemError(e) })], new Map());
    return EXIT_ERRORS;
  }
  io.stdout(`wrote ${display(out)}\n`);
  return EXIT_OK;
}

export function readInputFile(file: string, io: CliIo): string | null {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    printDiagnostics(io, [makeDiagnostic("DSV9001", null, { path: display(file), reason: describeSystemError(e) })], new Map());
    return null;
  }
}
