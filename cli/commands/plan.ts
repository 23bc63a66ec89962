/** `dsv3 plan FILE --schedule NAME [--json]`, and the planning step `dsv3 compile` shares. */
import type { CheckFileResult } from "../../compiler/check/index.js";
import type { BuildPlanResult } from "../../compiler/plan/index.js";
import type { Spec } from "../../compiler/spec.js";
import type { Diagnostic } from "../../dsl/diagnostic.js";
import { diagnosticJson, EXIT_ERRORS, EXIT_OK, printDiagnostics, toJson, type CliIo } from "../output.js";

/** Plan `schedule`; the planner sees only the Spec, so its diagnostics are placed at the schedule's block. */
export async function planSchedule(spec: Spec, checked: CheckFileResult, schedule: string): Promise<{ planned: BuildPlanResult; diagnostics: Diagnostic[] }> {
  const { buildPlan } = await import("../../compiler/plan/index.js");
  const planned = buildPlan(spec, schedule);
  const diagnostics = planned.diagnostics.map((d) => (d.span === null && checked.locate ? { ...d, span: checked.locate(`schedules.${schedule}`) } : d));
  return { planned, diagnostics };
}

export async function runPlan(spec: Spec, checked: CheckFileResult, schedule: string, json: boolean, io: CliIo): Promise<number> {
  const { planJson, planSummaryText } = await import("../../compiler/plan/index.js");
  const { planned, diagnostics } = await planSchedule(spec, checked, schedule);
  if (json) {
    io.stdout(planned.plan ? planJson(planned.plan) : toJson({ ok: false, diagnostics: diagnostics.map(diagnosticJson) }));
  } else {
    if (planned.draft) io.stdout(planSummaryText(planned.draft));
    printDiagnostics(io, diagnostics, checked.sources);
  }
  return planned.plan ? EXIT_OK : EXIT_ERRORS;
}
