/**
 * Robustness of the front end (dsl/ + compiler/check) against hostile input. Whatever text comes in —
 * random bytes, arbitrary unicode, token soup, mutations of the real specs, absurd sizes, deep
 * nesting — `checkSpecFile` must not throw and must not hang: it ends in a valid Spec with no errors,
 * or in at least one error diagnostic, each with a DSVxxxx code and a span inside its file.
 *
 * Every case is timed (performance.now(), after a warm-up); the slowest case must take < 100 ms. A
 * case over the limit is re-run (up to four times) and its fastest run counts, so a GC pause or a busy
 * CI core is not mistaken for a slow input. The max and p99 are printed at the end.
 *
 * Set FUZZ_SEED to replay a run; fast-check prints the seed and the shrunk input of any failure.
 * FUZZ_SLOW_LOG=FILE collects the inputs of slow cases.
 */
import { appendFileSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkSpecFile, type CheckFileResult } from "../compiler/check/index.js";
import { PRELUDE_FILE, PRELUDE_SOURCE } from "../compiler/check/prelude.js";
import { validateSpec } from "../compiler/spec-schema.js";
import type { Diagnostic } from "../dsl/diagnostic.js";
import type { SourceReader } from "../dsl/load.js";
import { LineIndex } from "../dsl/line-index.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CASE_LIMIT_MS = 100;
const HEAP_LIMIT_BYTES = 50 * 1024 * 1024;
const SEED = process.env["FUZZ_SEED"] === undefined ? undefined : Number(process.env["FUZZ_SEED"]);
/** FUZZ_SLOW_LOG=FILE: append every case slower than 20 ms there (JSON lines), to study slow inputs. */
const SLOW_LOG = process.env["FUZZ_SLOW_LOG"];

// ── The real specs, served from memory ──────────────────────────────────────────────────────────

/** Every .dsv3 file under specs/, by repository-relative posix path (as the CLI names them). */
function loadSpecs(): Map<string, string> {
  const files = new Map<string, string>();
  const visit = (rel: string): void => {
    for (const name of readdirSync(path.join(REPO, rel)).sort()) {
      const child = `${rel}/${name}`;
      const st = statSync(path.join(REPO, child));
      if (st.isDirectory()) visit(child);
      else if (name.endsWith(".dsv3")) files.set(child, readFileSync(path.join(REPO, child), "utf8"));
    }
  };
  visit("specs");
  return files;
}

const SPECS = loadSpecs();
const V3 = "specs/deepseek-v3.dsv3";
const CLUSTER = "specs/clusters/h800-2048.dsv3";
/** Directories a reader must refuse as such (an `import "clusters"`). */
const DIRECTORIES = new Set(["specs", "specs/clusters", "."]);

function ioError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** A SourceReader over `files`, failing like the disk does for directories and missing files. */
function memoryReader(files: ReadonlyMap<string, string>): SourceReader {
  return (file) => {
    const text = files.get(file);
    if (text !== undefined) return text;
    if (DIRECTORIES.has(file) || [...files.keys()].some((f) => f.startsWith(`${file}/`))) throw ioError("EISDIR", "it is a directory");
    throw ioError("ENOENT", "no such file");
  };
}
const READ_SPECS = memoryReader(SPECS);

// ── Invariants of one check ─────────────────────────────────────────────────────────────────────


const stats = { cases: 0, byGroup: new Map<string, number>(), times: [] as number[], slowest: { ms: 0, what: "" } };

const lineIndexCache = new Map<string, LineIndex>();
function lineIndexOf(file: string, text: string): LineIndex {
  const key = `${file}\u0000${text}`;
  let index = lineIndexCache.get(key);
  if (index === undefined) {
    if (lineIndexCache.size > 64) lineIndexCache.clear();
    index = new LineIndex(file, text);
    lineIndexCache.set(key, index);
  }
  return index;
}

function describeDiagnostic(d: Diagnostic): string {
  const at = d.span ? `${d.span.file}:${d.span.line}:${d.span.col}+${d.span.offset}/${d.span.length}` : "(no span)";
  return `${at} ${d.severity} ${d.code}: ${d.message}`;
}

/**
 * What every check must satisfy, whatever its input; returns the problems found (plain checks, so
 * that 20,000 cases do not cost a million `expect` calls).
 */
function problemsOf(result: CheckFileResult, texts: ReadonlyMap<string, string>): string[] {
  const problems: string[] = [];
  const errors = result.diagnostics.filter((d) => d.severity === "error");
  if (result.spec !== null) {
    for (const d of errors) problems.push(`a Spec came back with an error: ${describeDiagnostic(d)}`);
    for (const e of validateSpec(result.spec)) problems.push(`the Spec breaks its schema: ${e}`);
  } else if (errors.length === 0) {
    problems.push(`no Spec, yet no error diagnostic (${result.diagnostics.map(describeDiagnostic).join("; ") || "no diagnostics"})`);
  }
  for (const d of result.diagnostics) {
    const bad = (why: string): void => void problems.push(`${why}: ${describeDiagnostic(d)}`);
    if (!/^DSV\d{4}$/.test(d.code)) bad("code is not DSVdddd");
    if (d.severity !== "error" && d.severity !== "warning") bad("unknown severity");
    if (typeof d.message !== "string" || d.message.length === 0) bad("empty message");
    if (d.span === null) continue;
    const { file, line, col, offset, length } = d.span;
    const text = file === PRELUDE_FILE ? PRELUDE_SOURCE : (result.sources.get(file) ?? texts.get(file));
    if (text === undefined) {
      bad("the span's file was never read");
      continue;
    }
    if (![line, col, offset, length].every(Number.isInteger)) bad("span fields are not integers");
    else if (offset < 0 || length < 0) bad("negative offset or length");
    // Inside the text, or a caret just past its last character (a problem at the end of the file).
    else if (!(offset + length <= text.length || (offset === text.length && length <= 1))) bad(`span past the end of the file (${text.length} chars)`);
    else {
      // line:col is where the offset is, counting lines by "\n" as the lexer, the renderer and LineIndex do.
      const at = lineIndexOf(file, text).span(offset, length);
      if (at.line !== line || at.col !== col) bad(`line:col ${line}:${col} is not where offset ${offset} is (${at.line}:${at.col})`);
    }
  }
  return problems;
}

function assertWellFormed(result: CheckFileResult, texts: ReadonlyMap<string, string>, context: string): void {
  const problems = problemsOf(result, texts);
  if (problems.length > 0) expect(problems, context).toEqual([]);
}

function timeCheck(entry: string, read: SourceReader, text: string): { result: CheckFileResult; ms: number } {
  const t0 = performance.now();
  const result = checkSpecFile(entry, read, text);
  return { result, ms: performance.now() - t0 };
}

/**
 * One fuzz case: check `text` as `entry` (imports through `files`), assert the invariants and the
 * time limit, and record the time. Returns the result for case-specific assertions.
 */
function runCase(group: string, entry: string, text: string, files: ReadonlyMap<string, string> = SPECS): CheckFileResult {
  const read = files === SPECS ? READ_SPECS : memoryReader(files);
  let run: { result: CheckFileResult; ms: number };
  try {
    run = timeCheck(entry, read, text);
  } catch (e) {
    throw new Error(`[${group}] checkSpecFile threw on ${JSON.stringify(text.length > 400 ? `${text.slice(0, 400)}…` : text)}: ${(e as Error)?.stack ?? String(e)}`);
  }
  let ms = run.ms;
  // Over the limit: re-run to tell a slow input from a GC pause or a busy machine (the fastest run counts).
  for (let retry = 0; retry < 4 && ms >= CASE_LIMIT_MS; retry++) ms = Math.min(ms, timeCheck(entry, read, text).ms);
  stats.cases++;
  stats.byGroup.set(group, (stats.byGroup.get(group) ?? 0) + 1);
  stats.times.push(ms);
  if (ms > stats.slowest.ms) stats.slowest = { ms, what: `[${group}] ${text.length} chars` };
  if (SLOW_LOG !== undefined && ms > 20) appendFileSync(SLOW_LOG, `${JSON.stringify({ group, entry, ms, text })}\n`);
  const texts = new Map(files);
  texts.set(entry, text);
  assertWellFormed(run.result, texts, `[${group}]`);
  if (ms >= CASE_LIMIT_MS) expect(ms, `[${group}] took ${ms.toFixed(1)} ms on ${JSON.stringify(text.slice(0, 200))}`).toBeLessThan(CASE_LIMIT_MS);
  return run.result;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const SUITE_START = performance.now();

beforeAll(() => {
  expect(SPECS.has(V3), "specs/deepseek-v3.dsv3 is missing").toBe(true);
  expect(SPECS.has(CLUSTER), "specs/clusters/h800-2048.dsv3 is missing").toBe(true);
  // Warm-up: parser self-analysis, ajv schema compilation, JIT. Not timed, not counted.
  for (let i = 0; i < 30; i++) for (const [file, text] of SPECS) checkSpecFile(file, READ_SPECS, text);
  for (let i = 0; i < 30; i++) checkSpecFile("specs/warm.dsv3", READ_SPECS, `model { x = [1, 2 }\n"oops\n/*`);
});

afterAll(() => {
  const sorted = [...stats.times].sort((a, b) => a - b);
  const groups = [...stats.byGroup].map(([g, n]) => `${g}=${n}`).join(" ");
  console.log(
    `fuzz: ${stats.cases} cases, max ${percentile(sorted, 100).toFixed(2)} ms (${stats.slowest.what}), ` +
      `p99 ${percentile(sorted, 99).toFixed(2)} ms, median ${percentile(sorted, 50).toFixed(2)} ms, ` +
      `total ${((performance.now() - SUITE_START) / 1000).toFixed(1)} s; ${groups}`,
  );
});

// ── (a) Random bytes, arbitrary unicode, token soup ─────────────────────────────────────────────

const FUZZ_ENTRY = "specs/fuzz.dsv3";

/** Pieces of the language and of its near misses, for inputs that get past the lexer. */
const SOUP = [
  "model", "precision", "cluster", "training", "prefill", "decode", "preset", "import", "attention", "mla", "mha",
  "gqa", "ffn", "dense", "moe", "gate", "rope", "yarn", "mtp", "layer_pattern", "gpu", "H800", "H200", "none",
  "true", "false", "layers", "hidden", "vocab", "heads", "routed_experts", "nodes", "gpus", "pp", "tp", "dp", "ep",
  "microbatches", "global_batch", "seq_len", "x", "_", "a1", "1a", "{", "}", "[", "]", "=", ",", "..", "...", ".",
  '"', '"a"', '"\\"', '""', "0", "1", "-1", "3", "61", "1.5", "1e308", "1e309", "-0", "1_000", "1__0", "1_", "1x128",
  "0x0", "GB", "GB/s", "TFLOP/s", "us", "s", "XB", "//c", "/*", "*/", "/* c */", "\n", "\r", "\r\n", "\t", " ",
  "\u00a0", "\ufeff", "\u2028", "\u0000", "\u{1F600}", "é", "import \"clusters/h800-2048.dsv3\"", "import \"fuzz.dsv3\"",
  "import \"nope.dsv3\"", "import \"clusters\"", "import \"../specs/deepseek-v3.dsv3\"", "import \"/etc/passwd\"",
  "import \"\"", "...H800", "...nope", "preset p { ...p }", "toString", "constructor", "__proto__", "hasOwnProperty",
  "valueOf", "toString {", "constructor =",
];

const soup = fc
  .array(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...SOUP) }, { weight: 1, arbitrary: fc.string({ maxLength: 4 }) }), { maxLength: 120 })
  .map((parts) => parts.join(" "));

describe("(a) random input", () => {
  it("random bytes, decoded as latin1 and as utf8", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), (bytes) => {
        const buf = Buffer.from(bytes);
        runCase("bytes-latin1", FUZZ_ENTRY, buf.toString("latin1"));
        runCase("bytes-utf8", FUZZ_ENTRY, buf.toString("utf8"));
      }),
      { numRuns: 1500, seed: SEED },
    );
  });

  it("arbitrary unicode (astral planes, lone surrogates, control characters)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: "binary", maxLength: 600 }), fc.string({ unit: "grapheme", maxLength: 200 }), fc.string({ maxLength: 600 })), (s) => {
        runCase("unicode", FUZZ_ENTRY, s);
      }),
      { numRuns: 1500, seed: SEED },
    );
  });

  it("token soup (language pieces, near misses, imports of real, missing and cyclic files)", () => {
    fc.assert(
      fc.property(soup, (s) => {
        runCase("soup", FUZZ_ENTRY, s);
      }),
      { numRuns: 1500, seed: SEED },
    );
  });
});

// ── (b) Token-level mutations of the real specs ─────────────────────────────────────────────────

/** A rough tokenizer, independent of the real lexer: comments, strings, numbers, words, punctuation. */
const TOKEN = /\/\/[^\n]*|\/\*[\s\S]*?\*\/|"(?:[^"\\\n]|\\.)*"|-?\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?(?:x\d+)?|[A-Za-z_][A-Za-z0-9_]*(?:\/s)?|\.\.\.|\.\.|\S/g;

interface Tok {
  start: number;
  end: number;
  text: string;
}

function tokenize(text: string): Tok[] {
  const out: Tok[] = [];
  for (const m of text.matchAll(TOKEN)) out.push({ start: m.index, end: m.index + m[0].length, text: m[0] });
  return out;
}

function lineRanges(text: string): { start: number; end: number }[] {
  const out: { start: number; end: number }[] = [];
  let start = 0;
  for (;;) {
    const nl = text.indexOf("\n", start);
    if (nl < 0) {
      out.push({ start, end: text.length });
      return out;
    }
    out.push({ start, end: nl + 1 });
    start = nl + 1;
  }
}

const PUNCT = ["{", "}", "[", "]", "=", "..", "...", ",", '"', "/*", "//", "\n", "{ }", "[ ]", "= =", "}}}", "[[["];
const WEIRD_NUMBERS = [
  "1000000000000", "1_000_000_000_000", "1_000_000_000", "1e12", "1e15", "10e14", "-1", "-0", "0", "0.5", "2.5", "1.5e3",
  "1e308", "1e309", "-1e309", "1e-400", "4.9e-324", "NaN", "nan", "Infinity", "-Infinity", "inf", "0x10", "9".repeat(400),
  "1__0", "1_", "1_e3", "1._5", "4294967296", "2147483648", "9007199254740993", "1e-7", "1.0", "00", "007", "1.", ".5",
  "1e", "1e+", "--1", "1..2", "3..1", "0..999999999999", "1x128", "0x0", "99999x1", "1 GB", "-7 GB/s",
];
const UNITS = [
  "B", "KB", "MB", "GB", "TB", "PB", "EB", "KiB", "MiB", "GiB", "TiB", "B/s", "KB/s", "GB/s", "TB/s", "GiB/s", "FLOP/s", "GFLOP/s",
  "TFLOP/s", "PFLOP/s", "EFLOP/s", "s", "ms", "us", "ns", "min", "h", "GFLOPS", "gb", "Gb/s", "XB", "GB/h", "GB/s/s", "TFLOP",
  "", "%", "x",
];
const WORDS = [
  ...new Set([
    ...SOUP.filter((s) => /^[A-Za-z_]/.test(s)),
    "e4m3", "e5m2", "e5m6", "bf16", "fp32", "fp8", "dualpipe", "dualpipev", "1f1b", "zb1p", "sigmoid", "softmax", "top2_sum",
    "max", "swiglu", "gelu", "embedding", "norm", "moe_gate", "rmsnorm", "H100", "shared_as_routed", "node_limit",
  ]),
];

type Mutation =
  | { op: "deleteToken" | "duplicateToken" | "deleteLine" | "duplicateLine" | "truncate" | "number" | "unit"; at: number; pick: number }
  | { op: "swapTokens" | "swapLines"; at: number; other: number }
  | { op: "replaceToken" | "replaceLine" | "insert"; at: number; text: string };

const index = fc.nat({ max: 1_000_000 });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constantFrom<"deleteToken" | "duplicateToken" | "deleteLine" | "duplicateLine" | "truncate" | "number" | "unit">("deleteToken", "duplicateToken", "deleteLine", "duplicateLine", "truncate", "number", "unit"), at: index, pick: index }),
  fc.record({ op: fc.constantFrom<"swapTokens" | "swapLines">("swapTokens", "swapLines"), at: index, other: index }),
  fc.record({
    op: fc.constant("replaceToken" as const),
    at: index,
    text: fc.oneof(fc.constantFrom(...WORDS, ...PUNCT, ...WEIRD_NUMBERS), fc.string({ maxLength: 6 })),
  }),
  fc.record({ op: fc.constant("replaceLine" as const), at: index, text: fc.oneof(fc.constantFrom(...PUNCT, ""), soup) }),
  fc.record({ op: fc.constant("insert" as const), at: index, text: fc.constantFrom(...PUNCT, ...WEIRD_NUMBERS.slice(0, 12)) }),
);

function splice(text: string, start: number, end: number, insert: string): string {
  return text.slice(0, start) + insert + text.slice(end);
}

function applyMutation(text: string, m: Mutation): string {
  const toks = tokenize(text);
  const lines = lineRanges(text);
  const tok = (i: number): Tok | undefined => (toks.length === 0 ? undefined : toks[i % toks.length]);
  const line = (i: number): { start: number; end: number } => lines[i % lines.length]!;
  switch (m.op) {
    case "deleteToken": {
      const t = tok(m.at);
      return t ? splice(text, t.start, t.end, "") : text;
    }
    case "duplicateToken": {
      const t = tok(m.at);
      return t ? splice(text, t.end, t.end, ` ${t.text}`) : text;
    }
    case "replaceToken": {
      const t = tok(m.at);
      return t ? splice(text, t.start, t.end, m.text) : m.text;
    }
    case "swapTokens": {
      const a = tok(m.at), b = tok(m.other);
      if (!a || !b || a === b) return text;
      const [x, y] = a.start < b.start ? [a, b] : [b, a];
      return text.slice(0, x.start) + y.text + text.slice(x.end, y.start) + x.text + text.slice(y.end);
    }
    case "deleteLine": {
      const l = line(m.at);
      return splice(text, l.start, l.end, "");
    }
    case "duplicateLine": {
      const l = line(m.at);
      const body = text.slice(l.start, l.end);
      return splice(text, l.end, l.end, body.endsWith("\n") ? body : `\n${body}`);
    }
    case "replaceLine": {
      const l = line(m.at);
      return splice(text, l.start, l.end, `${m.text}\n`);
    }
    case "swapLines": {
      const a = line(m.at), b = line(m.other);
      if (a.start === b.start) return text;
      const [x, y] = a.start < b.start ? [a, b] : [b, a];
      const xs = text.slice(x.start, x.end).replace(/\n$/, ""), ys = text.slice(y.start, y.end).replace(/\n$/, "");
      return `${text.slice(0, x.start)}${ys}\n${text.slice(x.end, y.start)}${xs}${y.end < text.length || text.endsWith("\n") ? "\n" : ""}${text.slice(y.end)}`;
    }
    case "insert": {
      const at = text.length === 0 ? 0 : m.at % (text.length + 1);
      return splice(text, at, at, m.text);
    }
    case "truncate":
      return text.slice(0, text.length === 0 ? 0 : m.at % (text.length + 1));
    case "number": {
      const numbers = toks.filter((t) => /^-?\d/.test(t.text));
      const t = numbers.length > 0 ? numbers[m.at % numbers.length]! : tok(m.at);
      // Half absurd, half small whole numbers: those reach the cross-field rules (divisibility, products).
      const replacement = m.pick % 2 === 0 ? WEIRD_NUMBERS[(m.pick >> 1) % WEIRD_NUMBERS.length]! : String((m.pick >> 1) % 300);
      return t ? splice(text, t.start, t.end, replacement) : text;
    }
    case "unit": {
      const unitLike = /^(?:[KMGTPE]i?)?(?:B|FLOP)\/s$|^(?:[KMGTPE]i?)?B$|^(?:s|ms|us|ns)$/;
      const units = toks.filter((t, i) => unitLike.test(t.text) && i > 0 && /^-?\d/.test(toks[i - 1]!.text));
      const unit = UNITS[m.pick % UNITS.length]!;
      if (units.length > 0) {
        const t = units[m.at % units.length]!;
        return splice(text, t.start, t.end, unit);
      }
      const numbers = toks.filter((t) => /^-?\d/.test(t.text));
      if (numbers.length === 0) return text;
      const t = numbers[m.at % numbers.length]!;
      return splice(text, t.end, t.end, ` ${unit}`);
    }
  }
}

/** Spec files with their imports: mutating an imported file exercises the loader's paths too. */
const ENTRIES = [...SPECS.keys()];
const IMPORTED = ENTRIES.filter((f) => ENTRIES.some((e) => new RegExp(`import\\s+"[^"]*${path.posix.basename(f).replace(/\./g, "\\.")}"`).test(SPECS.get(e)!)));

describe("(b) mutations of the real specs", () => {
  it("has real specs to mutate", () => {
    expect(ENTRIES.length).toBeGreaterThanOrEqual(2);
    expect(IMPORTED).toContain(CLUSTER);
    // The unmutated specs pass through the same invariants (and the V3 spec is valid).
    for (const [file, text] of SPECS) runCase("unmutated", file, text);
    expect(checkSpecFile(V3, READ_SPECS, SPECS.get(V3)).spec).not.toBeNull();
  });

  it("1–4 token/line mutations of an entry spec", () => {
    fc.assert(
      fc.property(fc.constantFrom(...ENTRIES), fc.array(mutation, { minLength: 1, maxLength: 4 }), (entry, ms) => {
        const text = ms.reduce(applyMutation, SPECS.get(entry)!);
        runCase("mutate-entry", entry, text);
      }),
      { numRuns: 12_000, seed: SEED },
    );
  });

  it("mutations of an imported file, served by the in-memory reader", () => {
    fc.assert(
      fc.property(fc.constantFrom(...IMPORTED), fc.array(mutation, { minLength: 1, maxLength: 3 }), (imported, ms) => {
        const files = new Map(SPECS);
        files.set(imported, ms.reduce(applyMutation, SPECS.get(imported)!));
        const entry = ENTRIES.find((e) => e !== imported && SPECS.get(e)!.includes(path.posix.basename(imported)))!;
        runCase("mutate-import", entry, files.get(entry)!, files);
      }),
      { numRuns: 3_000, seed: SEED },
    );
  });
});

// ── (c) Absurd sizes and deep nesting ───────────────────────────────────────────────────────────

function v3With(from: string | RegExp, to: string): string {
  const text = SPECS.get(V3)!;
  const out = text.replace(from, to);
  expect(out, `the V3 spec no longer contains ${String(from)}`).not.toBe(text);
  return out;
}

/** Runs one case and asserts an error with `code` (if given), fast, with bounded heap growth. */
function expectRefused(name: string, text: string, code: string | null, files: ReadonlyMap<string, string> = SPECS): Diagnostic[] {
  const before = process.memoryUsage().heapUsed;
  const result = runCase(`absurd`, V3, text, files);
  const grown = process.memoryUsage().heapUsed - before;
  expect(result.spec, name).toBeNull();
  const errors = result.diagnostics.filter((d) => d.severity === "error");
  expect(errors.length, name).toBeGreaterThan(0);
  if (code !== null) expect(errors.map((d) => d.code), name).toContain(code);
  expect(grown, `${name}: heap grew by ${(grown / 1e6).toFixed(1)} MB`).toBeLessThan(HEAP_LIMIT_BYTES);
  return errors;
}

describe("(c) absurd sizes", () => {
  const cases: [string, () => string, string][] = [
    ["layers = 10^12", () => v3With("layers = 61", "layers = 1_000_000_000_000"), "DSV3005"],
    ["routed_experts = 10^9", () => v3With("routed_experts = 256", "routed_experts = 1_000_000_000"), "DSV3005"],
    ["hidden = 1e12", () => v3With("hidden = 7168", "hidden = 1e12"), "DSV3005"],
    ["layer_pattern dense = 0..999999999999", () => v3With(/dense_layers = 3[^\n]*/, "layer_pattern { dense = 0..999999999999 }"), "DSV3005"],
    ["layer_pattern moe = 3..10^12 with dense = 0..2", () => v3With(/dense_layers = 3[^\n]*/, "layer_pattern {\n dense = 0..2\n moe = 3..1_000_000_000_000\n }"), "DSV3005"],
    ["microbatches = 10^15", () => v3With("microbatches = 120", "microbatches = 1_000_000_000_000_000"), "DSV3005"],
    ["gpus = 10^12 (decode)", () => v3With("gpus = 320", "gpus = 1_000_000_000_000"), "DSV3005"],
    ["global_batch = 1e308", () => v3With("global_batch = 15360", "global_batch = 1e308"), "DSV3005"],
    ["vocab = 1e309 (not representable)", () => v3With("vocab = 129_280", "vocab = 1e309"), "DSV1006"],
  ];
  for (const [name, make, code] of cases) {
    it(`${name} → ${code}, fast, no huge allocation`, () => {
      expectRefused(name, make(), code);
    });
  }

  it("nodes = 10^12 in the imported cluster file → DSV3005", () => {
    const files = new Map(SPECS);
    files.set(CLUSTER, SPECS.get(CLUSTER)!.replace("nodes = 256", "nodes = 1_000_000_000_000"));
    const errors = expectRefused("nodes = 10^12", SPECS.get(V3)!, "DSV3005", files);
    expect(errors.find((d) => d.code === "DSV3005")!.span!.file).toBe(CLUSTER);
  });

  it("every absurd value at once → one DSV3005 each, fast", () => {
    let text = SPECS.get(V3)!;
    for (const [from, to] of [
      ["layers = 61", "layers = 1_000_000_000_000"],
      ["routed_experts = 256", "routed_experts = 1_000_000_000"],
      ["hidden = 7168", "hidden = 1e12"],
      ["microbatches = 120", "microbatches = 1_000_000_000_000_000"],
    ] as const) text = text.replace(from, to);
    const files = new Map(SPECS);
    files.set(CLUSTER, SPECS.get(CLUSTER)!.replace("nodes = 256", "nodes = 1_000_000_000_000").replace("gpus_per_node = 8", "gpus_per_node = 1e9"));
    const errors = expectRefused("all at once", text, "DSV3005", files);
    expect(errors.filter((d) => d.code === "DSV3005").length).toBeGreaterThanOrEqual(6);
  });

  it("a serving tp that does not divide gpus, dp left to its default (was: internal error, Spec failed its schema)", () => {
    const text = v3With(/gpus = 32\n  attention \{\n    tp = 4\n    sp = true\n    dp = 8\n  \}\n  moe \{\n    ep = 32\n/, "gpus = 3\n  attention {\n    tp = 2\n  }\n  moe {\n    ep = 1\n");
    const result = runCase("absurd", V3, text);
    expect(result.spec).toBeNull();
    expect(result.diagnostics.filter((d) => d.severity === "error").length).toBeGreaterThan(0);
  });

  it("small whole numbers in every numeric slot of the serving and training schedules", () => {
    const slots = ["gpus", "tp", "dp", "ep", "redundant_experts", "pp", "microbatches", "global_batch", "node_limit", "batch_per_gpu", "mtp_speculation"];
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...slots), fc.nat({ max: 3 }), fc.integer({ min: 1, max: 70 })), { minLength: 1, maxLength: 8 }), (edits) => {
        let text = SPECS.get(V3)!;
        for (const [slot, nth, value] of edits) {
          let seen = 0;
          text = text.replace(new RegExp(`(\\b${slot} = )\\d+`, "g"), (whole, head: string) => (seen++ === nth ? `${head}${value}` : whole));
        }
        runCase("schedule-numbers", V3, text);
      }),
      { numRuns: 1_500, seed: SEED },
    );
  });

  it("huge products of in-range values (cluster of 2^20 nodes × 1024 GPUs, ep and dp at their maxima)", () => {
    const files = new Map(SPECS);
    files.set(CLUSTER, SPECS.get(CLUSTER)!.replace("nodes = 256", "nodes = 1048576").replace("gpus_per_node = 8", "gpus_per_node = 1024"));
    const text = SPECS.get(V3)!
      .replace("dp = 128", "dp = 1048576")
      .replace("ep = 64", "ep = 1048575")
      .replace("tp = 1\n", "tp = 1048576\n")
      .replace("global_batch = 15360", "global_batch = 1073741823");
    const result = runCase("absurd", V3, text, files);
    expect(result.spec).toBeNull();
  });
});

describe("deep nesting and expansion never exhaust the stack", () => {
  const N = 100_000;
  const cases: [string, string][] = [
    ["100k '['", `model { x = ${"[".repeat(N)} }`],
    ["100k '{'", "{".repeat(N)],
    ["100k 'a {'", "a {".repeat(N)],
    ["100k '[' then 100k ']'", `model { x = ${"[".repeat(N)}${"]".repeat(N)} }`],
    ["100k '{' then 100k '}'", `${"m {".repeat(N)}${"}".repeat(N)}`],
    ["100k alternating '[{'", `model { x = ${"[{".repeat(N / 2)} }`],
    ["100k ']'", "]".repeat(N)],
    ["100k '}'", "}".repeat(N)],
    ["100k '='", `model { x ${"=".repeat(N)} 1 }`],
    ["100k '\"'", '"'.repeat(N)],
    ["100k '/*'", "/*".repeat(N)],
    ["100k newlines then '{'", `${"\n".repeat(N)}{`],
    ["nesting 63 deep (inside the limit)", `model { x = ${"[".repeat(63)}${"]".repeat(63)} }`],
    ["nesting 64 deep (at the limit)", `${"a {".repeat(64)}${"}".repeat(64)}`],
    ["nesting 65 deep (over the limit)", `${"a {".repeat(65)}${"}".repeat(65)}`],
    ["a list of 20,000 layer indices", `model { layer_pattern { dense = [${Array.from({ length: 20_000 }, (_, i) => i).join(",")}] } }`],
  ];
  for (const [name, text] of cases) {
    it(name, () => {
      // Up to 300 KB of text: lexing alone takes tens of ms, so these are timed apart from the fuzz cases.
      bigCase(name, text, null, 5_000);
    });
  }

  /**
   * Bigger inputs than the fuzzer makes (up to 500 KB): lexing alone takes tens of ms, so these are timed
   * apart, with bounds that only an exponential or quadratic blow-up would break (their times are printed).
   */
  function bigCase(name: string, text: string, code: string | null, limitMs: number): void {
    const before = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    let result: CheckFileResult;
    try {
      result = checkSpecFile(FUZZ_ENTRY, READ_SPECS, text);
    } catch (e) {
      throw new Error(`${name}: checkSpecFile threw: ${(e as Error)?.stack ?? String(e)}`);
    }
    const ms = performance.now() - t0;
    const grown = process.memoryUsage().heapUsed - before;
    console.log(`fuzz big case: ${name}: ${(text.length / 1024).toFixed(0)} KiB, ${ms.toFixed(1)} ms, heap +${(grown / 1e6).toFixed(1)} MB`);
    const texts = new Map(SPECS);
    texts.set(FUZZ_ENTRY, text);
    assertWellFormed(result, texts, name);
    expect(result.spec, name).toBeNull();
    if (code !== null) expect(result.diagnostics.map((d) => d.code), name).toContain(code);
    expect(ms, name).toBeLessThan(limitMs);
    expect(grown, name).toBeLessThan(HEAP_LIMIT_BYTES * 4);
  }

  it("a chain of 20,000 presets, each spreading the next (was: RangeError, stack overflow)", () => {
    let text = "model { ...p0 }\n";
    for (let i = 0; i < 20_000; i++) text += `preset p${i} { ...p${i + 1} }\n`;
    text += "preset p20000 { vocab = 1 }\n";
    bigCase("preset chain", text, "DSV2015", 10_000);
  });

  it("presets that each spread the next twice, 60 deep (was: 2^60 entries, a hang)", () => {
    let text = "model { ...p0 }\n";
    for (let i = 0; i < 60; i++) text += `preset p${i} { ...p${i + 1} ...p${i + 1} }\n`;
    text += "preset p60 { vocab = 1 }\n";
    bigCase("doubling presets", text, "DSV2015", 5_000);
  });

  it("one preset spread 100,000 times (wide, not deep)", () => {
    const text = `preset p { vocab = 1 hidden = 2 }\nmodel { ${"...p ".repeat(100_000)} }\n`;
    bigCase("wide spread", text, "DSV2015", 10_000);
  });

  it("10,000 unknown presets with 10,000 presets defined (was: quadratic 'did you mean', 14 s)", () => {
    let text = "model {\n";
    for (let i = 0; i < 10_000; i++) text += `...z${i}\n`;
    text += "}\n";
    for (let i = 0; i < 10_000; i++) text += `preset p${i} {}\n`;
    bigCase("unknown presets", text, "DSV2007", 10_000);
  });

  it("30k chars of '...' and of '..': one syntax error per token, linear time (~50 µs each)", () => {
    bigCase("10k '...'", `model { ${"...".repeat(10_000)} }`, "DSV1004", 20_000);
    bigCase("15k '..'", `model { layer_pattern { dense = 0${"..".repeat(15_000)}3 } }`, "DSV1004", 20_000);
  });

  it("a file just over the size limit is refused before lexing", () => {
    bigCase("4 MiB + 1", `model {}\n${" ".repeat(4 * 1024 * 1024)}`, "DSV1008", 2_000);
  });
});

describe("names that are also Object.prototype properties", () => {
  // Was: TypeError in BlockReader.checkLabels — `def.blocks["toString"]` found Object.prototype.toString.
  for (const name of ["toString", "constructor", "__proto__", "hasOwnProperty", "valueOf", "isPrototypeOf"]) {
    it(`'${name}' as a block, an attribute, a nested block and a label`, () => {
      const asBlock = runCase("prototype", FUZZ_ENTRY, `${name} {}\n${name} x { }`);
      expect(asBlock.diagnostics.map((d) => d.code)).toContain("DSV2001");
      const nested = v3With("tie_embeddings = false", `tie_embeddings = false\n  ${name} = 1\n  ${name} { }\n  ffn ${name} { }`);
      const result = runCase("prototype", V3, nested);
      expect(result.diagnostics.map((d) => d.code)).toEqual(expect.arrayContaining(["DSV2002", "DSV2001", "DSV2011"]));
      const gpu = runCase("prototype", V3, v3With("norm_eps = 1e-6", `norm_eps = 1e-6\n  attention ${name} { }`));
      expect(gpu.spec).toBeNull();
    });
  }
});

describe("case counts", () => {
  it("ran at least 20,000 cases: ≥ 5,000 random, ≥ 15,000 mutations", () => {
    const n = (g: string): number => stats.byGroup.get(g) ?? 0;
    const random = n("bytes-latin1") + n("bytes-utf8") + n("unicode") + n("soup");
    const mutations = n("mutate-entry") + n("mutate-import");
    expect(random).toBeGreaterThanOrEqual(5_000);
    expect(mutations).toBeGreaterThanOrEqual(15_000);
    expect(stats.cases).toBeGreaterThanOrEqual(20_000);
  });
});
