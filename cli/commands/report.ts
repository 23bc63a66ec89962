/**
 * `dsv3 report BUNDLE [-o FILE.html]`: one self-contained HTML report of a bundle written by `dsv3
 * compile` — the stats table and SVG charts of the simulated step (runtime/report/). Printed to
 * stdout, or written atomically to FILE.
 */
import { statSync } from "node:fs";
import { makeDiagnostic } from "../../dsl/diagnostic.js";
import type { Values } from "../options.js";
import { display, emit, EXIT_ERRORS, printDiagnostics, usageError, type CliIo } from "../output.js";

export async function runReport(rest: readonly string[], values: Values, io: CliIo): Promise<number> {
  if (rest.length !== 1) return usageError(io, "'dsv3 report' takes exactly one bundle directory");
  const dir = rest[0]!;
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) {
    const fix = dir.endsWith(".dsv3") || dir.endsWith(".ts") ? `compile it first: dsv3 compile ${display(dir)} --schedule NAME -o DIR, then dsv3 report DIR` : "give the directory dsv3 compile -o wrote";
    printDiagnostics(io, [makeDiagnostic("DSV9204", null, { path: display(dir) }, fix)], new Map());
    return EXIT_ERRORS;
  }
  const { readBundle } = await import("../../runtime/simulate/bundle-input.js");
  const read = readBundle(dir);
  if (!read.ok) {
    printDiagnostics(io, [makeDiagnostic("DSV9201", null, { path: display(dir), reason: read.reason }, "recompile it with dsv3 compile")], new Map());
    return EXIT_ERRORS;
  }
  const [{ simulatePlan }, { htmlReport }] = await Promise.all([import("../../runtime/simulate/simulate-plan.js"), import("../../runtime/report/html-report.js")]);
  const { spec, plan, stats } = read.input;
  const run = simulatePlan(spec, plan);
  return emit(htmlReport({ spec, plan, stats, run }), values.out, io);
}
