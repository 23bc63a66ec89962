/**
 * `dsv3 run FILE --backend cpu …`: CPU training, or decoding with `--generate`; with `--schedule NAME`,
 * one step of that schedule's plan on virtual ranks against the same step on one device
 * (runtime/execute/distributed/).
 */
import type { Spec } from "../../compiler/spec.js";
import { makeDiagnostic } from "../../dsl/diagnostic.js";
import type { Values } from "../options.js";
import { EXIT_ERRORS, EXIT_OK, EXIT_USAGE, printDiagnostics, usageError, type CliIo } from "../output.js";

/** `dsv3 run FILE --schedule NAME --backend cpu [--seed S] [--json]`: the distributed check; exit 1 when it fails. */
async function runSchedule(spec: Spec, schedule: string, values: Values, numbers: Record<string, number>, io: CliIo): Promise<number> {
  if (values.backend !== undefined && values.backend !== "cpu") {
    printDiagnostics(io, [makeDiagnostic("DSV9403", null, { backend: values.backend }, "use --backend cpu")], new Map());
    return EXIT_USAGE;
  }
  for (const flag of ["steps", "batch"] as const) {
    if (values[flag] !== undefined) return usageError(io, `--${flag} trains on one device; --schedule runs one step of the schedule's plan`, `drop --schedule to train, or --${flag} to check the schedule`);
  }
  const { distributedCheckJson, distributedCheckText, runDistributedCheck } = await import("../../runtime/execute/distributed/index.js");
  const out = runDistributedCheck(spec, schedule, numbers["seed"] !== undefined ? { seed: numbers["seed"] } : {});
  if (out.result !== null) io.stdout(values.json ? distributedCheckJson(out.result) : distributedCheckText(out.result));
  printDiagnostics(io, out.diagnostics, new Map());
  return out.diagnostics.some((d) => d.severity === "error") ? EXIT_ERRORS : EXIT_OK;
}

export async function runTraining(spec: Spec, values: Values, io: CliIo): Promise<number> {
  // Checkpoints (issue 9): the forward on a checkpoint's weights, or writing the initial weights.
  if (values.weights !== undefined || values.tokens !== undefined || values["save-weights"] !== undefined || values.logits || values.dtype !== undefined) {
    return (await import("./run-weights.js")).runWeights(spec, values, io);
  }
  const numbers: Record<string, number> = {};
  for (const name of ["steps", "seed", "batch", "generate"] as const) {
    const raw = values[name];
    if (raw === undefined) continue;
    const n = Number(raw);
    const min = name === "seed" || name === "steps" ? 0 : 1;
    if (!Number.isInteger(n) || n < min) return usageError(io, `--${name} must be a whole number ≥ ${min}; found '${raw}'`);
    numbers[name] = n;
  }
  const decoding = values.generate !== undefined || values["prompt-tokens"] !== undefined || values.speculative;
  if (values.schedule !== undefined && !decoding) return runSchedule(spec, values.schedule, values, numbers, io);
  if (values.backend !== undefined && values.backend !== "cpu") return usageError(io, `backend '${values.backend}' is not available (only 'cpu')`);
  try {
    if (values.generate !== undefined || values["prompt-tokens"] !== undefined || values.speculative) {
      if (values.generate === undefined || values["prompt-tokens"] === undefined) return usageError(io, "decoding needs both --generate N and --prompt-tokens 1,2,3");
      const { parsePromptTokens, runGenerate } = await import("../../runtime/execute/speculative.js");
      const r = runGenerate(spec, {
        promptTokens: parsePromptTokens(values["prompt-tokens"]),
        n: numbers["generate"]!,
        speculative: values.speculative ?? false,
        json: values.json ?? false,
        ...(numbers["seed"] !== undefined ? { seed: numbers["seed"] } : {}),
        ...(numbers["steps"] !== undefined ? { trainSteps: numbers["steps"] } : {}),
      });
      io.stdout(r.stdout);
      return EXIT_OK;
    }
    const { runCommand } = await import("../../runtime/execute/run-command.js");
    const r = runCommand(spec, { ...numbers, ...(values.backend ? { backend: values.backend } : {}), json: values.json ?? false });
    io.stdout(r.stdout);
    return EXIT_OK;
  } catch (e) {
    if (e instanceof RangeError) return usageError(io, e.message.replace(/^dsv3 run: /, ""));
    throw e;
  }
}
