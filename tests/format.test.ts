/**
 * The formatter: the prettier plugin (dsl/prettier-plugin.ts) and `dsv3 fmt` (cli/fmt.ts).
 *
 * - Properties over generated inputs: the real specs with their whitespace and layout perturbed
 *   (lines joined or split, spaces, tabs, blank lines, indentation, several entries on one line) and
 *   comments inserted at entry boundaries and between tokens. For each: fmt is idempotent, keeps
 *   every comment (same multiset of texts), keeps the AST, and the checker gives the same Spec.
 * - The specs in specs/ are fmt-clean (the plugin gives back exactly the file); so is every
 *   parseable file of the invalid corpus after one fmt, and fmt does not change what it reports.
 * - `runFmt`: --check on a messy file (exit 1, untouched, snapshot of the message), a rewrite, a
 *   syntax error (exit 1, untouched, DSV1xxx), directories, permissions and symbolic links.
 * - The real prettier CLI with the compiled plugin (dist/, built by the test command before vitest).
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import * as prettier from "prettier";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runFmt } from "../cli/fmt.js";
import { checkSpecFile } from "../compiler/check/index.js";
import type { Document, Entry } from "../dsl/ast.js";
import type { Diagnostic } from "../dsl/diagnostic.js";
import { readSourceFromDisk, type SourceReader } from "../dsl/load.js";
import { dsv3Lexer, LineComment, NumberLit, RCurly, Unit } from "../dsl/lexer.js";
import { parseDocument } from "../dsl/parser.js";
import plugin, * as pluginModule from "../dsl/prettier-plugin.js";
import { withoutPositions as strip } from "./fixtures/ast-shape.js";
import { mulberry32 as prng } from "../compiler/seeded-random.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const PLUGIN_JS = path.join(REPO, "dist", "dsl", "prettier-plugin.js");
const PRETTIER_BIN = path.join(REPO, "node_modules", "prettier", "bin", "prettier.cjs");
const MESSY = path.join(REPO, "tests", "fixtures", "fmt-messy.dsv3");
const MESSY_FORMATTED = path.join(REPO, "tests", "fixtures", "fmt-messy.formatted.dsv3");
const SYNTAX = path.join(REPO, "tests", "fixtures", "fmt-syntax-error.dsv3");

/** The formatter, as `dsv3 fmt` runs it. */
function fmt(text: string): Promise<string> {
  return prettier.format(text, { parser: "dsv3", plugins: [plugin] });
}

function dsv3Files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".dsv3"))
    .map((f) => path.posix.join(dir, f.split(path.sep).join("/")))
    .sort();
}


function commentTexts(doc: Document): string[] {
  return doc.comments.map((c) => c.text).sort();
}

/** A reader that serves `file` from memory and every other file (imports) from disk, cached. */
function readerWith(file: string, text: string): SourceReader {
  return (f) => (f === file ? text : cachedDisk(f));
}
const diskCache = new Map<string, string>();
function cachedDisk(f: string): string {
  let t = diskCache.get(f);
  if (t === undefined) {
    t = readSourceFromDisk(f);
    diskCache.set(f, t);
  }
  return t;
}

/** What the checker says, without positions: the Spec, or the diagnostics' codes and messages. */
function checkOutcome(file: string, text: string): unknown {
  const r = checkSpecFile(file, readerWith(file, text), text);
  return { spec: r.spec, diagnostics: r.diagnostics.map((d: Diagnostic) => `${d.code} ${d.severity}: ${d.message}${d.fix ? ` (fix: ${d.fix})` : ""}`) };
}

// ── Perturbation: whitespace, layout and comments only ──────────────────────────────────────

interface Piece {
  start: number;
  end: number;
  isLineComment: boolean;
  isNumber: boolean;
  isUnit: boolean;
}

interface Layout {
  text: string;
  pieces: Piece[];
  /** Gap i lies before piece i (gap pieces.length: after the last). */
  boundary: boolean[];
}

/** The tokens and comments of `text` and which gaps between them are entry boundaries. */
function layoutOf(text: string): Layout {
  const lexed = dsv3Lexer.tokenize(text);
  const all = [...lexed.tokens, ...(lexed.groups["comments"] ?? [])].sort((a, b) => a.startOffset - b.startOffset);
  const pieces = all.map((t) => ({
    start: t.startOffset,
    end: (t.endOffset ?? t.startOffset) + 1,
    isLineComment: t.tokenType === LineComment,
    isNumber: t.tokenType === NumberLit,
    isUnit: t.tokenType === Unit,
  }));
  // Entry boundaries: where an entry or top-level item starts or ends, and before a closing '}'.
  const edges = new Set<number>();
  const visit = (entries: readonly Entry[]): void => {
    for (const e of entries) {
      edges.add(e.span.offset);
      edges.add(e.span.offset + e.span.length);
      if (e.kind === "block") visit(e.body);
    }
  };
  const doc = parseDocument(text, "x.dsv3").document;
  for (const item of doc.items) {
    edges.add(item.span.offset);
    edges.add(item.span.offset + item.span.length);
    if (item.kind !== "import") visit(item.body);
  }
  for (const t of lexed.tokens) if (t.tokenType === RCurly) edges.add(t.startOffset);
  const boundary: boolean[] = [];
  for (let i = 0; i <= pieces.length; i++) {
    const prevEnd = i === 0 ? 0 : pieces[i - 1]!.end;
    const nextStart = i === pieces.length ? text.length : pieces[i]!.start;
    boundary.push(i === 0 || i === pieces.length || edges.has(prevEnd) || edges.has(nextStart));
  }
  return { text, pieces, boundary };
}

type Edit =
  | { kind: "join" | "spaces" | "newline" | "blank" | "indent"; gap: number; n: number }
  | { kind: "comment"; gap: number; n: number; style: "line" | "block" | "multiline"; anywhere: boolean };

const editArb: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ kind: fc.constantFrom("join" as const, "spaces" as const, "newline" as const, "blank" as const, "indent" as const), gap: fc.nat(), n: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant("comment" as const), gap: fc.nat(), n: fc.nat({ max: 7 }), style: fc.constantFrom("line" as const, "block" as const, "multiline" as const), anywhere: fc.boolean() }),
);


const SEEDED_KINDS = ["join", "join", "join", "spaces", "newline", "newline", "blank", "indent", "indent", "comment"] as const;

/** An edit for about `rate` percent of the gaps, drawn from `seed`: dense perturbations (whole regions joined, re-indented). */
function seededEdits(gaps: number, seed: number, rate: number): Edit[] {
  const next = prng(seed);
  const edits: Edit[] = [];
  for (let gap = 0; gap < gaps; gap++) {
    if (next() * 100 >= rate) continue;
    const kind = SEEDED_KINDS[Math.floor(next() * SEEDED_KINDS.length)]!;
    const n = Math.floor(next() * 8);
    if (kind === "comment") edits.push({ kind, gap, n, style: (["line", "block", "multiline"] as const)[n % 3]!, anywhere: next() < 0.3 });
    else edits.push({ kind, gap, n });
  }
  return edits;
}

/** Edits for a perturbation: a seeded share of all gaps, then a few chosen ones (these shrink well). */
const perturbationArb = fc.record({
  seed: fc.integer(),
  rate: fc.integer({ min: 0, max: 100 }),
  edits: fc.array(editArb, { maxLength: 30 }),
});

/**
 * Apply `edits` to the gaps of `layout`. Each gap keeps the constraints that preserve the token
 * stream: a line comment is followed by a line break; a number and its unit stay on one line,
 * separated by spaces or tabs; gaps never become empty. Comments are inserted at entry boundaries
 * (and, for `anywhere` edits, between any two tokens but a number and its unit).
 */
function perturb(layout: Layout, edits: readonly Edit[]): string {
  const { text, pieces } = layout;
  const gaps: string[] = [];
  for (let i = 0; i <= pieces.length; i++) {
    gaps.push(text.slice(i === 0 ? 0 : pieces[i - 1]!.end, i === pieces.length ? text.length : pieces[i]!.start));
  }
  const hspace = (n: number): string => [" ", "  ", "\t", " \t ", "    "][n % 5]!;
  let commentNo = 0;
  for (const e of edits) {
    const i = e.gap % gaps.length;
    const afterLineComment = i > 0 && pieces[i - 1]!.isLineComment;
    const unitGap = i > 0 && i < pieces.length && pieces[i - 1]!.isNumber && pieces[i]!.isUnit;
    const edge = i === 0 || i === pieces.length; // file start and end: any whitespace is fine
    const old = gaps[i]!;
    switch (e.kind) {
      case "join":
        if (!afterLineComment) gaps[i] = edge ? "" : " ";
        break;
      case "spaces":
        if (!afterLineComment) gaps[i] = hspace(e.n);
        break;
      case "newline":
        if (!unitGap) gaps[i] = `\n${hspace(e.n).repeat(e.n % 3)}`;
        break;
      case "blank":
        if (!unitGap) gaps[i] = `${old}\n${"\n".repeat(e.n % 2)}${hspace(e.n)}`;
        break;
      case "indent":
        if (old.includes("\n")) gaps[i] = old.slice(0, old.lastIndexOf("\n") + 1) + hspace(e.n).repeat(e.n % 4);
        break;
      case "comment": {
        if (unitGap || !(layout.boundary[i] || e.anywhere)) break;
        const id = `c${commentNo++}`;
        const lead = afterLineComment ? "\n" : [" ", "\n", "\n\n  "][e.n % 3]!;
        if (e.style === "line") gaps[i] = `${old}${lead}// ${id} note\n${hspace(e.n)}`;
        else if (e.style === "block") gaps[i] = `${old}${lead}/* ${id} */${afterLineComment || e.n % 2 === 0 ? "\n" : " "}`;
        else gaps[i] = `${old}${lead}/* ${id} first line\n${hspace(e.n)}   second line */\n`;
        break;
      }
    }
  }
  let out = gaps[0]!;
  for (let i = 0; i < pieces.length; i++) out += text.slice(pieces[i]!.start, pieces[i]!.end) + gaps[i + 1]!;
  return out;
}

/** A gap with at most one line break and no comment on either side: joining across it moves no comment and drops no blank line. */
function plainGap(layout: Layout, gap: number): boolean {
  const { text, pieces } = layout;
  const i = gap % (pieces.length + 1);
  const prev = pieces[i - 1];
  const next = pieces[i];
  const isComment = (p: Piece | undefined): boolean => p !== undefined && text.startsWith("/", p.start);
  const between = text.slice(prev?.end ?? 0, next?.start ?? text.length);
  return !isComment(prev) && !isComment(next) && between.split("\n").length <= 2;
}

const SPECS = dsv3Files("specs");
const CORPUS = existsSync("tests/corpus/invalid") ? dsv3Files("tests/corpus/invalid") : [];

describe("the prettier plugin", () => {
  it("exports languages, parsers and printers, by name and as the default export", () => {
    expect(pluginModule.languages).toBe(plugin.languages);
    expect(pluginModule.parsers).toBe(plugin.parsers);
    expect(pluginModule.printers).toBe(plugin.printers);
    expect(plugin.languages?.[0]).toMatchObject({ name: "dsv3", parsers: ["dsv3"], extensions: [".dsv3"] });
    expect(plugin.parsers?.["dsv3"]?.astFormat).toBe("dsv3-ast");
    expect(Object.keys(plugin.printers ?? {})).toEqual(["dsv3-ast"]);
  });

  it("is picked for .dsv3 files by their extension", async () => {
    const info = await prettier.getFileInfo("specs/deepseek-v3.dsv3", { plugins: [plugin] });
    expect(info.inferredParser).toBe("dsv3");
  });

  it("parses to a root without `comments` (prettier must not attach them)", async () => {
    const root: unknown = await plugin.parsers!["dsv3"]!.parse("// c\nmodel {}\n", {} as never);
    expect(root).toMatchObject({ type: "dsv3-root", source: "// c\nmodel {}\n" });
    expect(root).not.toHaveProperty("comments");
  });

  for (const file of SPECS) {
    it(`${file} is fmt-clean: formatting gives exactly the file`, async () => {
      const text = readFileSync(file, "utf8");
      expect(await fmt(text)).toBe(text);
    });
  }

  it("ends the output with exactly one newline, and formats empty input to nothing", async () => {
    expect(await fmt("model{a=1}")).toBe("model {\n  a = 1\n}\n");
    expect(await fmt("model {a=1}\n\n\n")).toBe("model {\n  a = 1\n}\n");
    expect(await fmt("// only a comment")).toBe("// only a comment\n");
    expect(await fmt("")).toBe("");
    expect(await fmt(" \n\n\t\n")).toBe("");
  });

  it("normalises CRLF and keeps a byte-order mark; honours prettier's endOfLine", async () => {
    expect(await fmt("model {\r\n  a = 1 // x\r\n}\r\n")).toBe("model {\n  a = 1 // x\n}\n");
    expect(await fmt("\ufeffmodel {a=1}")).toBe("\ufeffmodel {\n  a = 1\n}\n");
    expect(await prettier.format("model {a=1}", { parser: "dsv3", plugins: [plugin], endOfLine: "crlf" })).toBe("model {\r\n  a = 1\r\n}\r\n");
  });

  it("ignores prettier's layout options (the canonical printer fixes the layout)", async () => {
    const text = readFileSync("specs/deepseek-v3.dsv3", "utf8");
    expect(await prettier.format(text, { parser: "dsv3", plugins: [plugin], printWidth: 20, tabWidth: 8, useTabs: true })).toBe(text);
  });

  it("keeps a multi-line block comment verbatim inside a block (no re-indentation on each run)", async () => {
    const text = "model {\n  /* first\n     second */\n  a = 1\n}\n";
    expect(await fmt(text)).toBe(text);
    const deeper = "model {\nrope {\n/* first\n   second */\ntheta = 1\n}\n}\n";
    const once = await fmt(deeper);
    expect(once).toBe("model {\n  rope {\n    /* first\n   second */\n    theta = 1\n  }\n}\n");
    expect(await fmt(once)).toBe(once);
  });

  it("keeps a trailing comment on the entry it follows when several entries share a line", async () => {
    expect(await fmt("model { a = 1 b = 2 // on b\n}\n")).toBe("model {\n  a = 1\n  b = 2 // on b\n}\n");
    expect(await fmt("model { a = 1 } // on model\n")).toBe("model {\n  a = 1\n} // on model\n");
    expect(await fmt("model { x {} y {} // on y\n}\n")).toBe("model {\n  x {}\n  y {} // on y\n}\n");
    expect(await fmt("model {} cluster {} // on cluster\n")).toBe("model {}\n\ncluster {} // on cluster\n");
    expect(await fmt("model {\n  x {\n  } // on x\n}\n")).toBe("model {\n  x {} // on x\n}\n");
  });

  it("throws a prettier SyntaxError with a location on a syntax error", async () => {
    const text = readFileSync(SYNTAX, "utf8");
    const error = await fmt(text).then(
      () => null,
      (e: unknown) => e as SyntaxError & { loc?: unknown; diagnostics?: Diagnostic[] },
    );
    expect(error).toBeInstanceOf(SyntaxError);
    const first = error!.diagnostics![0]!;
    expect(first.code).toMatch(/^DSV1\d{3}$/);
    expect(error!.loc).toEqual({ start: { line: first.span!.line, column: first.span!.col } });
    expect(error!.message.split("\n")[0]).toMatchSnapshot();
  });
});

describe("fmt properties over perturbed specs", () => {
  for (const file of SPECS) {
    const original = readFileSync(file, "utf8");
    const layout = layoutOf(original);
    const ast = strip(parseDocument(original, file).document.items);
    const expected = checkOutcome(file, original);

    it(`${file}: idempotent, keeps comments, the AST and the Spec`, async () => {
      await fc.assert(
        fc.asyncProperty(perturbationArb, async ({ seed, rate, edits: chosen }) => {
          const edits = [...seededEdits(layout.pieces.length + 1, seed, rate), ...chosen];
          const messy = perturb(layout, edits);
          // The perturbation changed layout only: the same AST (the generator's own check).
          const before = parseDocument(messy, file);
          expect(before.diagnostics.all).toEqual([]);
          expect(strip(before.document.items)).toEqual(ast);

          const once = await fmt(messy);
          const after = parseDocument(once, file);
          expect(after.diagnostics.all).toEqual([]);
          expect(await fmt(once)).toBe(once); // fmt∘fmt = fmt
          expect(commentTexts(after.document)).toEqual(commentTexts(before.document));
          expect(strip(after.document.items)).toEqual(ast);
          expect(once.endsWith("\n") && !once.endsWith("\n\n")).toBe(true);
          expect(checkOutcome(file, once)).toEqual(expected);
          // Lines joined or re-indented, but no blank line or comment moved: fmt restores the original.
          if (edits.every((e) => e.kind === "indent" || ((e.kind === "join" || e.kind === "spaces") && plainGap(layout, e.gap)))) expect(once).toBe(original);
        }),
        { numRuns: 150 },
      );
    });
  }
});

describe("fmt over the invalid corpus (files that parse)", () => {
  const parseable = CORPUS.filter((f) => parseDocument(readFileSync(f, "utf8"), f).diagnostics.all.length === 0);
  it("has parseable cases", () => {
    if (CORPUS.length > 0) expect(parseable.length).toBeGreaterThan(0);
  });
  for (const file of parseable) {
    it(`${file}: idempotent, comments kept, same diagnostics`, async () => {
      const text = readFileSync(file, "utf8");
      const once = await fmt(text);
      expect(await fmt(once)).toBe(once);
      expect(commentTexts(parseDocument(once, file).document)).toEqual(commentTexts(parseDocument(text, file).document));
      expect(strip(parseDocument(once, file).document.items)).toEqual(strip(parseDocument(text, file).document.items));
      expect(checkOutcome(file, once)).toEqual(checkOutcome(file, text));
    });
  }
});

// ── dsv3 fmt ─────────────────────────────────────────────────────────────────────────────────

interface FmtRun {
  code: number;
  stdout: string;
  stderr: string;
}

let tmp = "";
beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), "dsv3-fmt-"));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

async function dsv3Fmt(files: string[], check = false): Promise<FmtRun> {
  let stdout = "";
  let stderr = "";
  const code = await runFmt(files, { check }, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) });
  // Temporary directories differ run to run (and case to case): messages show them as <dir>.
  const clean = (s: string): string => s.split(tmp).join("<tmp>").replace(/<tmp>\/case\d+/g, "<dir>");
  return { code, stdout: clean(stdout), stderr: clean(stderr) };
}

/** A fresh directory under the test's temporary directory holding `files`. */
let dirNo = 0;
function dirWith(files: Readonly<Record<string, string>>): string {
  const dir = path.join(tmp, `case${dirNo++}`);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

describe("dsv3 fmt", () => {
  const messy = readFileSync(MESSY, "utf8");
  const formatted = readFileSync(MESSY_FORMATTED, "utf8");

  it("the messy fixture formats to its golden file, which is fmt-clean", async () => {
    expect(await fmt(messy)).toBe(formatted);
    expect(await fmt(formatted)).toBe(formatted);
    expect(checkOutcome("x.dsv3", formatted)).toEqual(checkOutcome("x.dsv3", messy));
  });

  it("--check reports an unformatted file (DSV8001), exits 1 and writes nothing", async () => {
    const dir = dirWith({ "messy.dsv3": messy });
    const file = path.join(dir, "messy.dsv3");
    const mtime = statSync(file).mtimeMs;
    const r = await dsv3Fmt([file], true);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatchSnapshot();
    expect(r.stderr).toMatch(/^<dir>\/messy\.dsv3:1:1: error DSV8001: /);
    expect(readFileSync(file, "utf8")).toBe(messy);
    expect(statSync(file).mtimeMs).toBe(mtime);
    expect(readdirSync(dir)).toEqual(["messy.dsv3"]);
  });

  it("--check passes on formatted files", async () => {
    const r = await dsv3Fmt(["specs", MESSY_FORMATTED], true);
    expect(r).toEqual({ code: 0, stdout: "", stderr: "" });
  });

  it("rewrites an unformatted file in place (atomically, mode kept) and says so", async () => {
    const dir = dirWith({ "messy.dsv3": messy, "clean.dsv3": formatted });
    const file = path.join(dir, "messy.dsv3");
    chmodSync(file, 0o640);
    const r = await dsv3Fmt([file, path.join(dir, "clean.dsv3")]);
    expect(r).toEqual({ code: 0, stdout: "formatted <dir>/messy.dsv3\n", stderr: "" });
    expect(readFileSync(file, "utf8")).toBe(formatted);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir).sort()).toEqual(["clean.dsv3", "messy.dsv3"]); // no temporary left behind
    expect(await dsv3Fmt([file], true)).toEqual({ code: 0, stdout: "", stderr: "" });
    expect(await dsv3Fmt([file])).toEqual({ code: 0, stdout: "", stderr: "" }); // nothing to change
  });

  it("leaves a file with a syntax error untouched and reports DSV1xxx", async () => {
    const text = readFileSync(SYNTAX, "utf8");
    const dir = dirWith({ "bad.dsv3": text, "messy.dsv3": messy });
    const r = await dsv3Fmt([path.join(dir, "bad.dsv3"), path.join(dir, "messy.dsv3")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad\.dsv3:\d+:\d+: error DSV1\d{3}: /);
    expect(r.stderr).toMatchSnapshot();
    expect(readFileSync(path.join(dir, "bad.dsv3"), "utf8")).toBe(text);
    // The other file is still formatted.
    expect(r.stdout).toMatch(/formatted .*messy\.dsv3\n$/);
    expect(readFileSync(path.join(dir, "messy.dsv3"), "utf8")).toBe(formatted);
    const checked = await dsv3Fmt([path.join(dir, "bad.dsv3")], true);
    expect(checked.code).toBe(1);
    expect(checked.stderr).not.toContain("DSV8001");
  });

  it("walks directories for *.dsv3 in sorted order, skipping node_modules and dot-directories", async () => {
    const dir = dirWith({
      "b.dsv3": "model{a=1}",
      "a.dsv3": "model{a=1}",
      "sub/c.dsv3": "model{a=1}",
      "A.dsv3": "model {\n  a = 1\n}\n",
      "notes.txt": "model{a=1}",
      "node_modules/x.dsv3": "model{a=1}",
      ".hidden/y.dsv3": "model{a=1}",
    });
    const r = await dsv3Fmt([dir], true);
    expect(r.code).toBe(1);
    const named = [...r.stderr.matchAll(/^(\S+):1:1: error DSV8001/gm)].map((m) => path.basename(m[1]!));
    expect(named).toEqual(["a.dsv3", "b.dsv3", "c.dsv3"]);
    const w = await dsv3Fmt([dir]);
    expect(w.code).toBe(0);
    expect(w.stdout.trim().split("\n").map((l) => l.replace(/^formatted <dir>\//, ""))).toEqual(["a.dsv3", "b.dsv3", "sub/c.dsv3"]);
    expect(readFileSync(path.join(dir, "node_modules/x.dsv3"), "utf8")).toBe("model{a=1}");
    expect(readFileSync(path.join(dir, "notes.txt"), "utf8")).toBe("model{a=1}");
  });

  it("formats through a symbolic link without replacing the link", async () => {
    const dir = dirWith({ "real.dsv3": "model{a=1}" });
    symlinkSync("real.dsv3", path.join(dir, "link.dsv3"));
    const r = await dsv3Fmt([path.join(dir, "link.dsv3")]);
    expect(r.code).toBe(0);
    expect(lstatSync(path.join(dir, "link.dsv3")).isSymbolicLink()).toBe(true);
    expect(readlinkSync(path.join(dir, "link.dsv3"))).toBe("real.dsv3");
    expect(readFileSync(path.join(dir, "real.dsv3"), "utf8")).toBe("model {\n  a = 1\n}\n");
  });

  it("reports missing files, non-.dsv3 files and an empty argument list", async () => {
    const dir = dirWith({ "spec.txt": "model {}\n" });
    const r = await dsv3Fmt([path.join(dir, "missing.dsv3"), path.join(dir, "spec.txt")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("error DSV9001: cannot read '<dir>/missing.dsv3': no such file");
    expect(r.stderr).toContain("error DSV9011: ");
    const none = await dsv3Fmt([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("DSV9009");
  });
});

describe("the prettier CLI with the compiled plugin", () => {
  function prettierCli(...args: string[]): { code: number; stdout: string; stderr: string } {
    if (!existsSync(PLUGIN_JS)) {
      throw new Error(
        `${path.relative(REPO, PLUGIN_JS)} is missing: the prettier CLI loads the compiled plugin. ` +
          "Build it with `npx tsc -p tsconfig.json` (`npm test` does this before vitest starts).",
      );
    }
    const r = spawnSync(process.execPath, [PRETTIER_BIN, "--no-config", "--plugin", "./dist/dsl/prettier-plugin.js", ...args], { cwd: REPO, encoding: "utf8", timeout: 60_000 });
    if (r.error) throw r.error;
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }

  it("--check passes on the DeepSeek-V3 spec", () => {
    const r = prettierCli("--check", "specs/deepseek-v3.dsv3");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });

  it("reports a syntax error as file: SyntaxError: DSV1xxx … (line:col)", () => {
    // The repository's .prettierignore keeps `prettier --write "**/*.dsv3"` away from the fixtures; read none here.
    const r = prettierCli("--ignore-path", "", "--check", path.relative(REPO, SYNTAX));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/fmt-syntax-error\.dsv3: SyntaxError: DSV1\d{3}: .* \(\d+:\d+\)/);
  });
});
