/** `dsv3 run FILE --backend cpu …`: CPU training, or decoding with `--generate`. */
import type { Spec } from "../../compiler/spec.js";
import type { Values } from "../options.js";
import { EXIT_OK, usageError, type CliIo } from "../output.js";

export async function runTraining(spec: Spec, values: Values, io: CliIo): Promise<number> {
  const numbers: Record<string, number> = {};
  for (const name of ["steps", "seed", "batch", "generate"] as const) {
    const raw = values[name];
    if (raw === undefined) continue;
    const n = Number(raw);
    const min = name === "seed" || name === "steps" ? 0 : 1;
    if (!Number.isInteger(n) || n < min) return usageError(io, `--${name} must be a whole number ≥ ${min}; found '${raw}'`);
    numbers[name] = n;
  }
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
    const r = runCommand(spec, { ...numbers, ...(values.backend ? { backend: values.backend } : {}), ...(values.schedule ? { schedule: values.schedule } : {}), json: values.json ?? false });
    io.stdout(r.stdout);
    return EXIT_OK;
  } catch (e) {
    if (e instanceof RangeError) return usageError(io, e.message.replace(/^dsv3 run: /, ""));
    throw e;
  }
}
