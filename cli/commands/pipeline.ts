/** `dsv3 pipeline --kind K --stages P --microbatches N [--cost …] [--json] [--svg FILE]`. */
import { makeDiagnostic } from "../../dsl/diagnostic.js";
import { describeSystemError } from "../../dsl/system-error.js";
import { writeFileAtomic } from "../../runtime/atomic-file.js";
import { countFlag, type Values } from "../options.js";
import { display, EXIT_ERRORS, EXIT_OK, printDiagnostics, usageError, type CliIo } from "../output.js";

export async function runPipeline(rest: string[], values: Values, io: CliIo): Promise<number> {
  if (rest.length > 0) return usageError(io, `'dsv3 pipeline' takes no file; found '${rest[0]}'`);
  const { pipelineCommand, parseCostOption } = await import("../../compiler/plan/pipeline/index.js");
  if (values.kind === undefined) return usageError(io, "--kind is required", "one of dualpipe, dualpipev, 1f1b, zb1p");
  const stages = countFlag("stages", values.stages);
  const microbatches = countFlag("microbatches", values.microbatches);
  if (typeof stages === "string") return usageError(io, stages);
  if (typeof microbatches === "string") return usageError(io, microbatches);
  let cost;
  if (values.cost !== undefined) {
    const c = parseCostOption(values.cost);
    if ("error" in c) return usageError(io, c.error.message, c.error.fix);
    cost = c;
  }
  const result = pipelineCommand({ kind: values.kind, stages, microbatches, ...(cost ? { cost } : {}), json: values.json ?? false, ...(values.svg ? { svgFile: values.svg } : {}) });
  if ("error" in result) {
    const e = result.error;
    switch (e.code) {
      case "pp-odd":
        printDiagnostics(io, [makeDiagnostic("DSV5005", null, { pipeline: values.kind, pp: stages }, e.fix)], new Map());
        return EXIT_ERRORS;
      case "pp-few-microbatches":
      case "pp-odd-microbatches":
        // --stages counts PP stages for every kind (DualPipeV runs them on stages/2 devices).
        const requirement = values.kind === "dualpipe" ? `an even number of micro-batches, at least 2·stages = ${2 * stages}` : `at least stages = ${stages} micro-batches`;
        printDiagnostics(io, [makeDiagnostic("DSV5006", null, { pipeline: values.kind, requirement, mb: microbatches }, e.fix)], new Map());
        return EXIT_ERRORS;
      case "pp-invalid":
        throw new Error(e.message);
      default:
        return usageError(io, e.message, e.fix);
    }
  }
  io.stdout(result.stdout);
  if (values.svg !== undefined && result.svg !== undefined) {
    try {
      await writeFileAtomic(values.svg, result.svg);
    } catch (err) {
      printDiagnostics(io, [makeDiagnostic("DSV9008", null, { path: display(values.svg), reason: describeSystemError(err) })], new Map());
      return EXIT_ERRORS;
    }
  }
  return EXIT_OK;
}
