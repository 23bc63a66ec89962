/**
 * The `dsv3` command. `runCli` is a function of its arguments and an IO object, so tests run it
 * in-process; bin/dsv3.js only wires it to the process. Exit codes: 0 success, 1 the input has errors
 * (diagnostics printed), 2 the command line is wrong.
 *
 * Heavy dependencies (ts-morph for .ts specs, prettier for fmt and export) are imported only by the
 * commands that need them, so `dsv3 check x.dsv3` stays fast.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { checkSpecFile, type CheckFileResult } from "../compiler/check/index.js";
import { computeStats } from "../compiler/stats.js";
import type { Spec } from "../compiler/spec.js";
import { COMPILER_VERSION } from "../compiler/version.js";
import { makeDiagnostic, renderDiagnostic, type Diagnostic } from "../dsl/diagnostic.js";
import { suggestionFix } from "../dsl/suggest.js";
import { describeSystemError } from "../dsl/system-error.js";
import { writeFileAtomic } from "../runtime/atomic-file.js";
import { BundleError, writeBundle } from "../runtime/bundle-writer.js";
import { verifyBundle } from "../runtime/bundle-verify.js";
import { formatStatsText } from "./stats-text.js";

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

export const USAGE = `dsv3 ${COMPILER_VERSION} — a compiler for DeepSeek-V3-class models

usage:
  dsv3 check FILE [--json]                        check a spec (.dsv3 or .ts); list its schedules
  dsv3 stats FILE [--schedule NAME] [--json]      parameters, KV cache, FLOPs per token
  dsv3 compile FILE --schedule NAME -o DIR [--dump-after=PASS|all] [--timings]
                                                  write a bundle (atomically) to DIR; dump the Graph IR
                                                  after a lowering pass, time the passes (stderr)
  dsv3 plan FILE --schedule NAME [--json]         the per-GPU plan: stages, experts, memory, traffic
  dsv3 run FILE --backend cpu [--steps N] [--seed S] [--batch B] [--schedule NAME] [--json]
                                                  train the model on synthetic tokens on the CPU (reference ops)
  dsv3 run FILE --backend cpu --generate N --prompt-tokens 1,2,3 [--speculative] [--steps N] [--seed S] [--json]
                                                  greedy decoding with a KV cache (MTP drafts with --speculative)
  dsv3 verify DIR                                 re-hash a bundle; non-zero if tampered
  dsv3 fmt [--check] FILE|DIR...                  format .dsv3 files in place (canonical form)
  dsv3 export FILE --to dsv3|ts|hf [-o OUT]       the Spec as canonical .dsv3, a TypeScript spec, or a HF config
  dsv3 import-hf CONFIG.json [-o OUT.dsv3] [--with-schedules]
                                                  a .dsv3 spec from a DeepSeek V2/V3 Hugging Face config
  dsv3 pipeline --kind dualpipe|dualpipev|1f1b|zb1p --stages P --microbatches N
                [--cost F=1,B=2,W=1,FB=3] [--json] [--svg FILE]
                                                  a pipeline schedule, executed and measured
  dsv3 eplb --load FILE.json --replicas R --groups G --nodes N --gpus P [--json] [--exact-reference]
                                                  expert placement with redundant experts (EPLB)
  dsv3 --version | --help
`;

const EXIT_OK = 0;
const EXIT_ERRORS = 1;
const EXIT_USAGE = 2;

const COMMANDS = ["check", "stats", "plan", "compile", "run", "verify", "fmt", "export", "import-hf", "pipeline", "eplb"] as const;
type Command = (typeof COMMANDS)[number];

function usageError(io: CliIo, message: string, fix?: string): number {
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

function printDiagnostics(io: CliIo, diagnostics: readonly Diagnostic[], sources: ReadonlyMap<string, string>): void {
  if (diagnostics.length === 0) return;
  io.stderr(diagnostics.map((d) => renderDiagnostic(d, sources)).join("\n\n") + "\n");
  const errors = diagnostics.filter((d) => d.severity === "error").length;
  const warnings = diagnostics.length - errors;
  io.stderr(`\n${errors} error(s), ${warnings} warning(s)\n`);
}

function toJson(value: unknown): string {
  return JSON.stringify(value, null, 2) + "\n";
}

/** Paths as shown in diagnostics: forward slashes on every platform. */
function display(file: string): string {
  return file.split(path.sep).join("/");
}

/** Load and check a spec file of either form; a diagnostic for anything else. */
async function checkInput(file: string): Promise<CheckFileResult | Diagnostic> {
  const shown = display(file);
  if (file.endsWith(".dsv3")) return checkSpecFile(shown);
  const ts = await import("../dsl/ts/check-ts-spec.js");
  if (ts.isTsSpecFile(file)) return ts.checkTsSpecFile(shown);
  return makeDiagnostic("DSV9011", null, { path: file }, "write the spec in the .dsv3 language or as a TypeScript spec (.ts)");
}

/** Resolve --schedule: by name, else the only schedule; a diagnostic otherwise. */
function pickSchedule(spec: Spec, name: string | undefined, required: boolean): string | null | Diagnostic {
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

const OPTIONS = {
  json: { type: "boolean", default: false },
  schedule: { type: "string" },
  out: { type: "string", short: "o" },
  to: { type: "string" },
  check: { type: "boolean", default: false },
  "with-schedules": { type: "boolean", default: false },
  kind: { type: "string" },
  stages: { type: "string" },
  microbatches: { type: "string" },
  cost: { type: "string" },
  svg: { type: "string" },
  load: { type: "string" },
  replicas: { type: "string" },
  groups: { type: "string" },
  nodes: { type: "string" },
  gpus: { type: "string" },
  "exact-reference": { type: "boolean", default: false },
  "dump-after": { type: "string" },
  backend: { type: "string" },
  steps: { type: "string" },
  seed: { type: "string" },
  batch: { type: "string" },
  generate: { type: "string" },
  "prompt-tokens": { type: "string" },
  speculative: { type: "boolean", default: false },
  timings: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
  version: { type: "boolean", default: false },
} as const;

/** Options each command accepts (besides --help); anything else is a usage error. */
const ACCEPTS: Readonly<Record<Command, readonly string[]>> = {
  check: ["json"],
  stats: ["json", "schedule"],
  plan: ["json", "schedule"],
  run: ["backend", "steps", "seed", "batch", "schedule", "json", "generate", "prompt-tokens", "speculative"],
  compile: ["schedule", "out", "dump-after", "timings"],
  verify: ["json"],
  fmt: ["check"],
  export: ["to", "out", "schedule"],
  "import-hf": ["out", "with-schedules"],
  pipeline: ["kind", "stages", "microbatches", "cost", "json", "svg"],
  eplb: ["load", "replicas", "groups", "nodes", "gpus", "json", "exact-reference"],
};

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; tokens: true }>>["values"];

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

  const checked = await checkInput(target);
  if (!("diagnostics" in checked)) {
    printDiagnostics(io, [checked], new Map());
    return EXIT_USAGE;
  }
  if (cmd === "check") {
    if (values.json) {
      io.stdout(toJson({
        ok: checked.spec !== null,
        diagnostics: checked.diagnostics.map(diagnosticJson),
        schedules: checked.spec?.schedules.map((s) => s.name) ?? [],
      }));
    } else {
      printDiagnostics(io, checked.diagnostics, checked.sources);
      if (checked.spec) io.stdout(`${display(target)}: ok — model '${checked.spec.model.name}', schedules: ${checked.spec.schedules.map((s) => s.name).join(", ") || "none"}\n`);
    }
    return checked.spec ? EXIT_OK : EXIT_ERRORS;
  }

  printDiagnostics(io, checked.diagnostics, checked.sources);
  const spec = checked.spec;
  if (!spec) return EXIT_ERRORS;
  if (cmd === "export") return runExport(spec, target, values, io);
  if (cmd === "run") return runTraining(spec, values, io);

  const schedule = pickSchedule(spec, values.schedule, cmd === "compile" || cmd === "plan");
  if (schedule !== null && typeof schedule !== "string") {
    printDiagnostics(io, [schedule], new Map());
    return schedule.code === "DSV9009" ? EXIT_USAGE : EXIT_ERRORS;
  }
  const stats = computeStats(spec, schedule === null ? {} : { schedule });
  if (cmd === "stats") {
    io.stdout(values.json ? toJson(stats) : formatStatsText(stats));
    return EXIT_OK;
  }
  if (cmd === "compile" && values.out === undefined) return usageError(io, "'dsv3 compile' needs -o DIR");
  const lowering = cmd === "compile" ? await import("../compiler/pipeline.js") : null;
  const dumpAfter = values["dump-after"];
  if (lowering && dumpAfter !== undefined && !lowering.isDumpTarget(dumpAfter)) {
    return usageError(io, `unknown pass '${dumpAfter}' for --dump-after`, suggestionFix(dumpAfter, ["all", ...lowering.STAGE_NAMES]) ?? `one of all, ${lowering.STAGE_NAMES.join(", ")}`);
  }
  const { buildPlan, planBundleFiles, planJson, planSummaryText } = await import("../compiler/plan/index.js");
  const planned = buildPlan(spec, schedule!);
  // The planner sees only the Spec: its diagnostics about a schedule point at that schedule's block.
  const located = planned.diagnostics.map((d) => (d.span === null && checked.locate ? { ...d, span: checked.locate(`schedules.${schedule}`) } : d));
  if (cmd === "plan") {
    if (values.json) {
      io.stdout(planned.plan ? planJson(planned.plan) : toJson({ ok: false, diagnostics: located.map(diagnosticJson) }));
    } else {
      if (planned.draft) io.stdout(planSummaryText(planned.draft));
    }
    if (!values.json) printDiagnostics(io, located, checked.sources);
    return planned.plan ? EXIT_OK : EXIT_ERRORS;
  }
  printDiagnostics(io, located, checked.sources);
  if (!planned.plan) return EXIT_ERRORS;
  // Lower the model for the schedule's phase: the fused Graph IR and its KernelSpecs go into the bundle.
  const kind = spec.schedules.find((s) => s.name === schedule)!.kind;
  const lowered = lowering!.lower(spec, { phase: kind === "training" ? "train" : kind, schedule: schedule!, ...(dumpAfter ? { dumpAfter } : {}), timings: values.timings ?? false });
  if (lowered.dumps.length > 0) io.stderr(lowering!.formatDumps(lowered.dumps));
  if (lowered.timings) io.stderr(lowering!.formatTimings(lowered.timings));
  const { printModel } = await import("../compiler/graph/print.js");
  const files = new Map<string, string>([
    ...planBundleFiles(planned.plan),
    ["graph/model.ir", printModel(lowered.graph)],
    ["kernels/kernel-specs.json", toJson(lowered.kernels)],
  ]);
  return runCompile(spec, schedule!, toJson(stats), files, values.out!, io);
}

function runCompile(spec: Spec, schedule: string, statsJson: string, lowered: ReadonlyMap<string, string>, out: string, io: CliIo): number {
  const files = new Map<string, string>([
    ["spec.json", toJson(spec)],
    ["stats.json", statsJson],
    ...lowered,
  ]);
  try {
    writeBundle(out, files, { compilerVersion: COMPILER_VERSION, schedule });
  } catch (e) {
    if (e instanceof BundleError) {
      const d = e.code === "not-a-bundle"
        ? makeDiagnostic("DSV9003", null, { path: out }, "choose another -o directory, or remove it first")
        : makeDiagnostic("DSV9008", null, { path: e.path || out, reason: ioReason(e) });
      printDiagnostics(io, [d], new Map());
      return EXIT_ERRORS;
    }
    throw e;
  }
  io.stdout(`wrote ${display(out)} (schedule '${schedule}', ${files.size + 1} files)\n`);
  return EXIT_OK;
}

/** Print `text`, or write it atomically to `out`. */
async function emit(text: string, out: string | undefined, io: CliIo): Promise<number> {
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

async function runExport(spec: Spec, source: string, values: Values, io: CliIo): Promise<number> {
  const to = values.to;
  const targets = ["dsv3", "ts", "hf"];
  if (to === undefined || !targets.includes(to)) {
    return usageError(io, to === undefined ? "'dsv3 export' needs --to dsv3|ts|hf" : `unknown export target '${to}'`, to === undefined ? undefined : suggestionFix(to, targets));
  }
  if (to === "dsv3") {
    const [{ specToDocument }, { printDocument }] = await Promise.all([import("../compiler/spec-to-ast.js"), import("../dsl/print.js")]);
    return emit(`// The canonical form of ${display(source)}: every default written out (dsv3 export --to dsv3).\n\n${printDocument(specToDocument(spec))}`, values.out, io);
  }
  if (to === "ts") {
    const { exportTs } = await import("../compiler/export-ts.js");
    return emit(await exportTs(spec, { source: display(source) }), values.out, io);
  }
  const { exportHfConfig, formatHfConfig } = await import("../compiler/hf/export-hf.js");
  const result = exportHfConfig(spec);
  printDiagnostics(io, result.diagnostics, new Map());
  if (result.config === null) return EXIT_ERRORS;
  return emit(formatHfConfig(result.config), values.out, io);
}

function readInputFile(file: string, io: CliIo): string | null {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    printDiagnostics(io, [makeDiagnostic("DSV9001", null, { path: display(file), reason: describeSystemError(e) })], new Map());
    return null;
  }
}

async function runImportHf(config: string, values: Values, io: CliIo): Promise<number> {
  const text = readInputFile(config, io);
  if (text === null) return EXIT_ERRORS;
  const { importHfConfig } = await import("../compiler/hf/import-hf.js");
  const name = display(config);
  const result = importHfConfig(text, { sourceName: name, withSchedules: values["with-schedules"] ?? false });
  printDiagnostics(io, result.diagnostics, new Map([[name, text]]));
  if (result.text === null) return EXIT_ERRORS;
  return emit(result.text, values.out, io);
}

async function runTraining(spec: Spec, values: Values, io: CliIo): Promise<number> {
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
      const { parsePromptTokens, runGenerate } = await import("../runtime/execute/speculative.js");
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
    const { runCommand } = await import("../runtime/execute/run-command.js");
    const r = runCommand(spec, { ...numbers, ...(values.backend ? { backend: values.backend } : {}), ...(values.schedule ? { schedule: values.schedule } : {}), json: values.json ?? false });
    io.stdout(r.stdout);
    return EXIT_OK;
  } catch (e) {
    if (e instanceof RangeError) return usageError(io, e.message.replace(/^dsv3 run: /, ""));
    throw e;
  }
}

/** A whole number ≥ 1 from a flag, or a usage message. */
function countFlag(name: string, raw: string | undefined): number | string {
  if (raw === undefined) return `--${name} is required`;
  const n = Number(raw);
  return Number.isInteger(n) && n >= 1 ? n : `--${name} must be a whole number ≥ 1; found '${raw}'`;
}

async function runPipeline(rest: string[], values: Values, io: CliIo): Promise<number> {
  if (rest.length > 0) return usageError(io, `'dsv3 pipeline' takes no file; found '${rest[0]}'`);
  const { pipelineCommand, parseCostOption } = await import("../compiler/plan/pipeline/index.js");
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

async function runEplb(rest: string[], values: Values, io: CliIo): Promise<number> {
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
  const { eplbCommand } = await import("../compiler/plan/eplb.js");
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


/** Why a bundle write failed, in words. */
function ioReason(e: BundleError): string {
  return (e.cause as { code?: unknown } | undefined)?.code !== undefined ? describeSystemError(e.cause) : e.message;
}

function runVerify(dir: string, json: boolean, io: CliIo): number {
  const result = verifyBundle(dir);
  const diagnostics = result.problems.map((p) => {
    switch (p.kind) {
      case "missing": return makeDiagnostic("DSV9004", null, { path: p.path });
      case "modified": return makeDiagnostic("DSV9005", null, { path: p.path, detail: p.detail });
      case "unlisted": return makeDiagnostic("DSV9006", null, { path: p.path }, "remove it, or recompile the bundle");
      case "no-manifest":
      case "manifest-invalid": return makeDiagnostic("DSV9007", null, { path: p.path, detail: p.detail });
    }
  });
  if (json) io.stdout(toJson({ ok: result.ok, diagnostics: diagnostics.map(diagnosticJson) }));
  else {
    printDiagnostics(io, diagnostics, new Map());
    if (result.ok) io.stdout(`${display(dir)}: ok\n`);
  }
  return result.ok ? EXIT_OK : EXIT_ERRORS;
}
