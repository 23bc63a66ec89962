/** `dsv3 eplb --load FILE.json --replicas R --groups G --nodes N --gpus P [--json] [--exact-reference]`. */
import { makeDiagnostic } from "../../dsl/diagnostic.js";
import { countFlag, type Values } from "../options.js";
import { display, EXIT_ERRORS, EXIT_OK, printDiagnostics, readInputFile, usageError, type CliIo } from "../output.js";

export async function runEplb(rest: string[], values: Values, io: CliIo): Promise<number> {
  if (rest.length > 0) return usageError(io, `'dsv3 eplb' takes its load file as --load FILE; found '${rest[0]}'`);
  if (values.load === undefined) return usageError(io, "--load FILE.json is required (a JSON array of per-layer arrays of expert loads)");
  const counts: Record<string, number> = {};
  for (const name of ["replicas", "groups", "nodes", "gpus"] as const) {
    const n = countFlag(name, values[name]);
    if (typeof n === "string") return usageError(io, n);
    counts[name] = n;
  }
  const text = readInputFile(values.load, io);
  if (text === null) return EXIT_ERRORS;
  const { eplbCommand } = await import("../../compiler/plan/eplb.js");
  const result = eplbCommand({ loadJsonText: text, replicas: counts["replicas"]!, groups: counts["groups"]!, nodes: counts["nodes"]!, gpus: counts["gpus"]!, json: values.json ?? false, exactReference: values["exact-reference"] ?? false });
  if ("error" in result) {
    const e = result.error;
    const d = e.code.startsWith("EPLB_LOAD_")
      ? makeDiagnostic("DSV9012", null, { path: display(values.load), message: e.message }, e.fix)
      : makeDiagnostic("DSV9013", null, { message: e.message }, e.fix);
    printDiagnostics(io, [d], new Map());
    return EXIT_ERRORS;
  }
  io.stdout(result.stdout);
  return EXIT_OK;
}
