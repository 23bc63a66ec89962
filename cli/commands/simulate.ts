/**
 * `dsv3 simulate SPEC|BUNDLE --schedule NAME [--json] [--trace FILE] [--sweep NAME=V,… …]`: simulate
 * one step of the schedule's plan on the modelled cluster (runtime/simulate/), print its figures,
 * write a Chrome/Perfetto trace, or rank a sweep of configurations by simulated throughput.
 *
 * A bundle is read as `dsv3 compile` wrote it (verified first); a spec is checked and planned here.
 * The sweep's items may follow `--sweep` as further arguments (`--sweep pp=8,16 ep=32,64`).
 */
import { statSync } from "node:fs";
import type { Plan } from "../../compiler/plan/plan.js";
import type { Spec } from "../../compiler/spec.js";
import { makeDiagnostic } from "../../dsl/diagnostic.js";
import { describeSystemError } from "../../dsl/system-error.js";
import { writeFileAtomic } from "../../runtime/atomic-file.js";
import type { Values } from "../options.js";
import { display, EXIT_ERRORS, EXIT_OK, EXIT_USAGE, printDiagnostics, toJson, usageError, type CliIo } from "../output.js";
import { planSchedule } from "./plan.js";
import { checkInput, pickSchedule } from "./spec-input.js";

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The Spec and Plan to simulate, from a bundle or a spec file; or an exit code after printing why not. */
export async function loadSpecAndPlan(target: string, scheduleName: string | undefined, io: CliIo, needPlan: boolean): Promise<{ spec: Spec; plan: Plan | null; schedule: string } | number> {
  if (isDirectory(target)) {
    const { readBundle } = await import("../../runtime/simulate/bundle-input.js");
    const read = readBundle(target);
    if (!read.ok) {
      printDiagnostics(io, [makeDiagnostic("DSV9201", null, { path: display(target), reason: read.reason }, "recompile it with dsv3 compile")], new Map());
      return EXIT_ERRORS;
    }
    const bundled = read.input.plan.schedule.name;
    if (scheduleName !== undefined && scheduleName !== bundled) {
      printDiagnostics(io, [makeDiagnostic("DSV9203", null, { path: display(target), bundle: bundled, name: scheduleName }, `drop --schedule, or compile the spec with --schedule ${scheduleName}`)], new Map());
      return EXIT_ERRORS;
    }
    return { spec: read.input.spec, plan: read.input.plan, schedule: bundled };
  }
  const checked = await checkInput(target);
  if (!("diagnostics" in checked)) {
    printDiagnostics(io, [checked], new Map());
    return EXIT_USAGE;
  }
  printDiagnostics(io, checked.diagnostics, checked.sources);
  const spec = checked.spec;
  if (!spec) return EXIT_ERRORS;
  const schedule = pickSchedule(spec, scheduleName, true);
  if (schedule === null || typeof schedule !== "string") {
    if (schedule !== null) printDiagnostics(io, [schedule], new Map());
    return schedule !== null && schedule.code === "DSV9009" ? EXIT_USAGE : EXIT_ERRORS;
  }
  if (!needPlan) return { spec, plan: null, schedule };
  const { planned, diagnostics } = await planSchedule(spec, checked, schedule);
  printDiagnostics(io, diagnostics, checked.sources);
  if (!planned.plan) return EXIT_ERRORS;
  return { spec, plan: planned.plan, schedule };
}

export async function runSimulate(rest: readonly string[], values: Values, io: CliIo): Promise<number> {
  if (rest.length === 0) return usageError(io, "'dsv3 simulate' takes a spec file or a bundle directory");
  const [target, ...extra] = rest as [string, ...string[]];
  const sweepItems = [...(values.sweep ?? []), ...extra];
  if (extra.length > 0 && values.sweep === undefined) return usageError(io, `'dsv3 simulate' takes one spec file or bundle directory; found also ${extra.map((e) => `'${e}'`).join(", ")}`);
  if (values.sweep !== undefined && values.trace !== undefined) return usageError(io, "--trace draws one simulation; it cannot be combined with --sweep");
  let acceptanceRate: number | undefined;
  if (values.acceptance !== undefined) {
    acceptanceRate = Number(values.acceptance);
    if (values.acceptance.trim() === "" || !Number.isFinite(acceptanceRate) || acceptanceRate < 0 || acceptanceRate > 1) {
      return usageError(io, `--acceptance is the chance an MTP draft token is accepted, a number in [0, 1]; found '${values.acceptance}'`);
    }
  }

  const loaded = await loadSpecAndPlan(target, values.schedule, io, values.sweep === undefined);
  if (typeof loaded === "number") return loaded;
  const { spec, plan, schedule } = loaded;

  if (values.sweep !== undefined) {
    const { parseSweep, runSweep, sweepText } = await import("../../runtime/simulate/sweep.js");
    const kind = spec.schedules.find((s) => s.name === schedule)!.kind;
    const parsed = parseSweep(sweepItems, kind);
    if (!parsed.ok) {
      printDiagnostics(io, [makeDiagnostic("DSV9202", null, { message: parsed.message }, parsed.fix)], new Map());
      return EXIT_ERRORS;
    }
    const result = runSweep(spec, schedule, parsed.axes);
    io.stdout(values.json ? toJson(result) : sweepText(result, parsed.axes));
    return EXIT_OK;
  }

  const [{ simulatePlan }, { simulationText }] = await Promise.all([import("../../runtime/simulate/simulate-plan.js"), import("../../runtime/simulate/simulation-text.js")]);
  const run = simulatePlan(spec, plan!, acceptanceRate === undefined ? {} : { acceptanceRate });
  if (values.trace !== undefined) {
    const { traceJson } = await import("../../runtime/simulate/trace-events.js");
    try {
      await writeFileAtomic(values.trace, traceJson(run, plan!));
    } catch (e) {
      printDiagnostics(io, [makeDiagnostic("DSV9008", null, { path: display(values.trace), reason: describeSystemError(e) })], new Map());
      return EXIT_ERRORS;
    }
    io.stderr(`wrote trace ${display(values.trace)} (open it in https://ui.perfetto.dev or chrome://tracing)\n`);
  }
  io.stdout(values.json ? toJson(run.result) : simulationText(run.result));
  return EXIT_OK;
}
