/**
 * The `dsv3` command. `runCli` is a pure function of its arguments and an IO object, so tests run it
 * in-process; bin/dsv3.js only wires it to the process. Exit codes: 0 success, 1 the input has errors
 * (diagnostics printed), 2 the command line is wrong.
 */
import path from "node:path";
import { parseArgs } from "node:util";
import { checkSpecFile, type CheckFileResult } from "../compiler/check/index.js";
import { computeStats } from "../compiler/stats.js";
import type { Spec } from "../compiler/spec.js";
import { COMPILER_VERSION } from "../compiler/version.js";
import { makeDiagnostic, renderDiagnostic, type Diagnostic } from "../dsl/diagnostic.js";
import { suggestionFix } from "../dsl/suggest.js";
import { BundleError, writeBundle } from "../runtime/bundle-writer.js";
import { verifyBundle } from "../runtime/bundle-verify.js";
import { formatStatsText } from "./stats-text.js";

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

export const USAGE = `dsv3 ${COMPILER_VERSION} — a compiler for DeepSeek-V3-class models

usage:
  dsv3 check FILE [--json]                       check a spec; list its schedules
  dsv3 stats FILE [--schedule NAME] [--json]     parameters, KV cache, FLOPs per token
  dsv3 compile FILE --schedule NAME -o DIR       write a bundle (atomically) to DIR
  dsv3 verify DIR                                re-hash a bundle; non-zero if tampered
  dsv3 --version | --help
`;

const EXIT_OK = 0;
const EXIT_ERRORS = 1;
const EXIT_USAGE = 2;

function usageError(io: CliIo, message: string): number {
  io.stderr(`${renderDiagnostic(makeDiagnostic("DSV9009", null, { message }), new Map())}\n\n${USAGE}`);
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

function checkInput(file: string): CheckFileResult | Diagnostic {
  if (!file.endsWith(".dsv3")) return makeDiagnostic("DSV9011", null, { path: file }, "write the spec in the .dsv3 language");
  return checkSpecFile(file.split(path.sep).join("/"));
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

export function runCli(argv: readonly string[], io: CliIo): number {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        json: { type: "boolean", default: false },
        schedule: { type: "string" },
        out: { type: "string", short: "o" },
        help: { type: "boolean", short: "h", default: false },
        version: { type: "boolean", default: false },
      },
    });
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
  const commands = ["check", "stats", "compile", "verify"];
  if (!commands.includes(command)) {
    return usageError(io, `unknown command '${command}'${suggestionFix(command, commands)?.replace(/^/, "; ") ?? ""}`);
  }
  if (rest.length !== 1) return usageError(io, `'dsv3 ${command}' takes exactly one ${command === "verify" ? "bundle directory" : "spec file"}`);
  const target = rest[0]!;

  if (command === "verify") return runVerify(target, values.json, io);

  const checked = checkInput(target);
  if (!("diagnostics" in checked)) {
    printDiagnostics(io, [checked], new Map());
    return EXIT_USAGE;
  }
  if (command === "check") {
    if (values.json) {
      io.stdout(toJson({
        ok: checked.spec !== null,
        diagnostics: checked.diagnostics.map(diagnosticJson),
        schedules: checked.spec?.schedules.map((s) => s.name) ?? [],
      }));
    } else {
      printDiagnostics(io, checked.diagnostics, checked.sources);
      if (checked.spec) io.stdout(`${target}: ok — model '${checked.spec.model.name}', schedules: ${checked.spec.schedules.map((s) => s.name).join(", ") || "none"}\n`);
    }
    return checked.spec ? EXIT_OK : EXIT_ERRORS;
  }

  printDiagnostics(io, checked.diagnostics, checked.sources);
  const spec = checked.spec;
  if (!spec) return EXIT_ERRORS;
  const schedule = pickSchedule(spec, values.schedule, command === "compile");
  if (schedule !== null && typeof schedule !== "string") {
    printDiagnostics(io, [schedule], new Map());
    return schedule.code === "DSV9009" ? EXIT_USAGE : EXIT_ERRORS;
  }
  const stats = computeStats(spec, schedule === null ? {} : { schedule });

  if (command === "stats") {
    io.stdout(values.json ? toJson(stats) : formatStatsText(stats));
    return EXIT_OK;
  }

  // compile
  const out = values.out;
  if (out === undefined) return usageError(io, "'dsv3 compile' needs -o DIR");
  const files = new Map<string, string>([
    ["spec.json", toJson(spec)],
    ["stats.json", toJson(stats)],
  ]);
  try {
    writeBundle(out, files, { compilerVersion: COMPILER_VERSION, schedule: schedule! });
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
  io.stdout(`wrote ${out} (schedule '${schedule}', ${files.size + 1} files)\n`);
  return EXIT_OK;
}

/** Why a write failed, in words: the system error's meaning when there is one (its text repeats the path). */
function ioReason(e: BundleError): string {
  const code = (e.cause as { code?: unknown } | undefined)?.code;
  switch (code) {
    case "ENOTDIR": return "part of the path is a file, not a directory";
    case "EACCES":
    case "EPERM": return "permission denied";
    case "ENOSPC": return "no space left on the device";
    case "EROFS": return "the file system is read-only";
    default: return e.message;
  }
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
    if (result.ok) io.stdout(`${dir}: ok\n`);
  }
  return result.ok ? EXIT_OK : EXIT_ERRORS;
}
