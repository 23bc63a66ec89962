/**
 * The `dsv3` command. `runCli` is a function of its arguments and an IO object, so tests run it
 * in-process; bin/dsv3.js only wires it to the process. This file parses the command line and
 * dispatches; each command lives in cli/commands/ (fmt in cli/fmt.ts). Exit codes: 0 success,
 * 1 the input has errors (diagnostics printed), 2 the command line is wrong.
 *
 * Heavy dependencies (ts-morph for .ts specs, prettier for fmt and export, the planner and the
 * lowering pipeline) are imported only by the commands that need them, so `dsv3 check` stays fast.
 */
import { parseArgs } from "node:util";
import { computeStats } from "../compiler/stats.js";
import { COMPILER_VERSION } from "../compiler/version.js";
import { suggestionFix } from "../dsl/suggest.js";
import { runCheck } from "./commands/check.js";
import { runCompile } from "./commands/compile.js";
import { runEplb } from "./commands/eplb.js";
import { runExport } from "./commands/export.js";
import { runImportHf } from "./commands/import-hf.js";
import { runPipeline } from "./commands/pipeline.js";
import { runPlan } from "./commands/plan.js";
import { runTraining } from "./commands/run.js";
import { checkInput, pickSchedule } from "./commands/spec-input.js";
import { runVerify } from "./commands/verify.js";
import { ACCEPTS, COMMANDS, OPTIONS, type Command } from "./options.js";
import { EXIT_ERRORS, EXIT_OK, EXIT_USAGE, printDiagnostics, toJson, usageError, type CliIo } from "./output.js";
import { formatStatsText } from "./stats-text.js";
import { USAGE } from "./usage.js";

export { diagnosticJson, type CliIo } from "./output.js";
export { USAGE } from "./usage.js";

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], allowPositionals: true, options: OPTIONS, tokens: true });
  } catch (e) {
    return usageError(io, (e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.version) {
    io.stdout(`${COMPILER_VERSION}\n`);
    return EXIT_OK;
  }
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === "help") {
    io.stdout(USAGE);
    return EXIT_OK;
  }
  if (!(COMMANDS as readonly string[]).includes(command)) {
    return usageError(io, `unknown command '${command}'${suggestionFix(command, COMMANDS)?.replace(/^/, "; ") ?? ""}`);
  }
  const cmd = command as Command;
  const given = parsed.tokens.flatMap((t) => (t.kind === "option" ? [t.name] : []));
  const stray = given.find((k) => k !== "help" && k !== "version" && !ACCEPTS[cmd].includes(k));
  if (stray !== undefined) return usageError(io, `'dsv3 ${cmd}' does not take --${stray}`);

  // Commands that take no spec file.
  switch (cmd) {
    case "fmt": {
      if (rest.length === 0) return usageError(io, "'dsv3 fmt' needs at least one file or directory");
      const { runFmt } = await import("./fmt.js");
      return runFmt(rest, { check: values.check ?? false }, io);
    }
    case "pipeline":
      return runPipeline(rest, values, io);
    case "eplb":
      return runEplb(rest, values, io);
    case "simulate": {
      const { runSimulate } = await import("./commands/simulate.js");
      return runSimulate(rest, values, io);
    }
    case "report": {
      const { runReport } = await import("./commands/report.js");
      return runReport(rest, values, io);
    }
    default:
      break;
  }
  if (rest.length !== 1) {
    const what = cmd === "verify" ? "bundle directory" : cmd === "import-hf" ? "Hugging Face config.json" : "spec file";
    return usageError(io, `'dsv3 ${cmd}' takes exactly one ${what}`);
  }
  const target = rest[0]!;
  if (cmd === "verify") return runVerify(target, values.json ?? false, io);
  if (cmd === "import-hf") return runImportHf(target, values, io);

  // Commands on a checked spec.
  const checked = await checkInput(target);
  if (!("diagnostics" in checked)) {
    printDiagnostics(io, [checked], new Map());
    return EXIT_USAGE;
  }
  if (cmd === "check") return runCheck(checked, target, values.json ?? false, io);
  printDiagnostics(io, checked.diagnostics, checked.sources);
  const spec = checked.spec;
  if (!spec) return EXIT_ERRORS;
  if (cmd === "export") return runExport(spec, target, values, io);
  if (cmd === "run") return runTraining(spec, values, io);
  if (cmd === "shard") return (await import("./commands/shard.js")).runShard(spec, values, io);

  const schedule = pickSchedule(spec, values.schedule, cmd === "compile" || cmd === "plan");
  if (schedule !== null && typeof schedule !== "string") {
    printDiagnostics(io, [schedule], new Map());
    return schedule.code === "DSV9009" ? EXIT_USAGE : EXIT_ERRORS;
  }
  if (cmd === "plan") return runPlan(spec, checked, schedule!, values.json ?? false, io);
  const stats = computeStats(spec, schedule === null ? {} : { schedule });
  if (cmd === "stats") {
    io.stdout(values.json ? toJson(stats) : formatStatsText(stats));
    return EXIT_OK;
  }
  return runCompile(spec, checked, schedule!, stats, values, io);
}
