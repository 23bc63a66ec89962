/**
 * `dsv3 fmt [--check] FILES`: format specs in place through the prettier plugin (dsl/prettier-plugin.ts),
 * so `dsv3 fmt` and `prettier --plugin …` give the same text.
 *
 * - A directory argument is walked for `*.dsv3` files (sorted; `node_modules` and dot-directories
 *   are skipped). A file argument must end in `.dsv3`.
 * - A file with syntax errors is reported with the regular coded diagnostics (DSV1xxx) and left
 *   untouched: formatting a recovered AST would drop what did not parse.
 * - A changed file is written atomically: a temporary file in the same directory, renamed over it
 *   (through a symbolic link to its target), keeping its permission bits. One line on stdout a file.
 * - `--check` writes nothing; each file that is not formatted is reported as DSV8001.
 *
 * Exit status: 0 when every file is (now) formatted, 1 when a file could not be read, parsed, written
 * or (with --check) is not formatted, 2 when no file was given.
 */
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { makeDiagnostic, renderDiagnostic, sortDiagnostics, type Diagnostic } from "../dsl/diagnostic.js";
import { readSourceFromDisk } from "../dsl/load.js";
import { parseDocument } from "../dsl/parser.js";
import plugin from "../dsl/prettier-plugin.js";
import { describeSystemError } from "../dsl/system-error.js";
import { writeFileAtomic } from "../runtime/atomic-file.js";
import { display, EXIT_ERRORS, EXIT_OK, EXIT_USAGE, type CliIo } from "./output.js";

export interface FmtOptions {
  /** Report unformatted files (DSV8001) instead of rewriting them. */
  check: boolean;
}

export type FmtIo = CliIo;


/** `*.dsv3` under `dir`, depth first, each directory's entries in sorted order. */
async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name === "node_modules" || e.name.startsWith(".")) continue;
      out.push(...(await walk(p)));
    } else if (e.name.endsWith(".dsv3") && (e.isFile() || e.isSymbolicLink())) {
      out.push(p);
    }
  }
  return out;
}

/** The files the arguments name, in order, each once; problems with the arguments as diagnostics. */
async function expand(args: readonly string[]): Promise<{ files: string[]; problems: Diagnostic[] }> {
  const files: string[] = [];
  const problems: Diagnostic[] = [];
  const seen = new Set<string>();
  const add = (f: string): void => {
    const key = path.resolve(f);
    if (seen.has(key)) return;
    seen.add(key);
    files.push(f);
  };
  for (const arg of args) {
    let isDir: boolean;
    try {
      isDir = (await stat(arg)).isDirectory();
    } catch (e) {
      problems.push(makeDiagnostic("DSV9001", null, { path: display(arg), reason: describeSystemError(e) }));
      continue;
    }
    if (isDir) {
      try {
        for (const f of await walk(arg)) add(f);
      } catch (e) {
        problems.push(makeDiagnostic("DSV9001", null, { path: display(arg), reason: describeSystemError(e) }));
      }
    } else if (!arg.endsWith(".dsv3")) {
      problems.push(makeDiagnostic("DSV9011", null, { path: display(arg) }, "dsv3 fmt formats .dsv3 files only"));
    } else {
      add(arg);
    }
  }
  return { files, problems };
}


export async function runFmt(files: string[], options: FmtOptions, io: FmtIo): Promise<number> {
  const report = (list: readonly Diagnostic[], sources: ReadonlyMap<string, string> = new Map()): void => {
    if (list.length > 0) io.stderr(list.map((d) => renderDiagnostic(d, sources)).join("\n\n") + "\n");
  };
  if (files.length === 0) {
    report([makeDiagnostic("DSV9009", null, { message: "'dsv3 fmt' needs at least one .dsv3 file or directory" })]);
    return EXIT_USAGE;
  }
  // Loaded on first use, so the other commands do not pay for prettier.
  const prettier = await import("prettier");
  const { files: targets, problems } = await expand(files);
  report(problems);
  let failed = problems.length > 0;
  const unformatted: string[] = [];

  for (const file of targets) {
    const name = display(file);
    let text: string;
    try {
      text = readSourceFromDisk(file);
    } catch (e) {
      report([makeDiagnostic("DSV9001", null, { path: name, reason: describeSystemError(e) })]);
      failed = true;
      continue;
    }
    const parsed = parseDocument(text, name);
    if (parsed.diagnostics.all.length > 0) {
      report(sortDiagnostics(parsed.diagnostics.all), new Map([[name, text]]));
      failed = true;
      continue;
    }
    let formatted: string;
    try {
      formatted = await prettier.format(text, { parser: "dsv3", plugins: [plugin], filepath: file });
    } catch (e) {
      report([makeDiagnostic("DSV9009", null, { message: `cannot format '${name}': ${e instanceof Error ? e.message : String(e)}` })]);
      failed = true;
      continue;
    }
    if (formatted === text) continue;
    if (options.check) {
      unformatted.push(name);
      report([makeDiagnostic("DSV8001", { file: name, line: 1, col: 1, offset: 0, length: 0 }, { path: name })]);
      continue;
    }
    try {
      await writeFileAtomic(file, formatted);
    } catch (e) {
      report([makeDiagnostic("DSV9008", null, { path: name, reason: describeSystemError(e) })]);
      failed = true;
      continue;
    }
    io.stdout(`formatted ${name}\n`);
  }
  if (unformatted.length > 0) io.stderr(`\n${unformatted.length} file(s) not formatted\n`);
  return failed || unformatted.length > 0 ? EXIT_ERRORS : EXIT_OK;
}
