/**
 * The spec corpora. Invalid: every `tests/corpus/invalid/*.dsv3` is a realistic mistake; its first
 * line says what the checker must report, `// expect: DSV5002 @ 12:8, DSV5006 @ 14:18` (a position in
 * another file is written `lib/x.dsv3:2:8`, relative to the case). Each case must report at least
 * those, yield no Spec, and not throw. Files under `invalid/lib/` are helpers that cases import.
 * Valid: every spec under `specs/` checks without errors.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { checkSpecFile } from "../compiler/check/index.js";
import { CATALOG, type DiagnosticCode } from "../dsl/diagnostic-catalog.js";
import type { Diagnostic } from "../dsl/diagnostic.js";

const INVALID = "tests/corpus/invalid";
const SPECS = "specs";

interface Expected {
  code: string;
  file: string;
  line: number;
  col: number;
}

/** The expectations in a case's first line. */
function expectations(file: string): Expected[] {
  const first = readFileSync(file, "utf8").split("\n", 1)[0]!;
  const m = /^\/\/ expect: (.+)$/.exec(first);
  if (m === null) throw new Error(`${file}: the first line must be '// expect: DSVnnnn @ line:col, …'`);
  return m[1]!.split(",").map((part) => {
    const e = /^\s*(DSV\d{4}) @ (?:(\S+):)?(\d+):(\d+)\s*$/.exec(part);
    if (e === null) throw new Error(`${file}: cannot read the expectation '${part.trim()}'`);
    const where = e[2] === undefined ? file : path.posix.join(path.posix.dirname(file), e[2]);
    return { code: e[1]!, file: where, line: Number(e[3]), col: Number(e[4]) };
  });
}

function at(d: Diagnostic): string {
  return `${d.code} @ ${d.span ? `${d.span.file}:${d.span.line}:${d.span.col}` : "-"}`;
}

function dsv3Files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".dsv3"))
    .map((f) => path.posix.join(dir, f.split(path.sep).join("/")))
    .sort();
}

const cases = readdirSync(INVALID).filter((f) => f.endsWith(".dsv3")).sort();

/**
 * Errors a case reports beyond its expectations. Anything else unexpected fails: one mistake should
 * read as one error, not a cascade. Known leftovers are listed here, each with why.
 */
const KNOWN_EXTRA: Readonly<Record<string, readonly DiagnosticCode[]>> = {
  // `depth =` with no value: the parser drops the attribute, so the block also misses 'depth'.
  "missing-value.dsv3": ["DSV2005"],
};

describe("invalid corpus", () => {
  it("has at least 45 cases", () => {
    expect(cases.length).toBeGreaterThanOrEqual(45);
  });

  for (const name of cases) {
    const file = `${INVALID}/${name}`;
    it(name, () => {
      const wanted = expectations(file);
      for (const e of wanted) expect(Object.keys(CATALOG)).toContain(e.code);
      let result: ReturnType<typeof checkSpecFile> | undefined;
      expect(() => {
        result = checkSpecFile(file);
      }).not.toThrow();
      const got = result!.diagnostics.map(at);
      for (const e of wanted) expect(got).toContain(`${e.code} @ ${e.file}:${e.line}:${e.col}`);
      expect(result!.spec).toBeNull();
      const extra = result!.diagnostics.filter((d) => d.severity === "error" && !wanted.some((e) => at(d) === `${e.code} @ ${e.file}:${e.line}:${e.col}`));
      expect(extra.map((d) => d.code).sort()).toEqual([...(KNOWN_EXTRA[name] ?? [])].sort());
      // Every diagnostic points into a file that was read, inside it.
      for (const d of result!.diagnostics) {
        if (d.span === null) continue;
        const text = result!.sources.get(d.span.file);
        expect(text, at(d)).toBeDefined();
        expect(d.span.offset + d.span.length).toBeLessThanOrEqual(text!.length);
      }
    });
  }

  it("reports several independent errors in one file, each once", () => {
    const text = readFileSync(`${INVALID}/several-independent-errors.dsv3`, "utf8");
    const result = checkSpecFile("several.dsv3", () => { throw new Error("no imports here"); }, text);
    const codes = result.diagnostics.map((d) => d.code);
    const independent: DiagnosticCode[] = ["DSV2002", "DSV3003", "DSV5005", "DSV5011"];
    expect(codes.filter((c) => independent.includes(c)).sort()).toEqual([...independent].sort());
    expect(result.diagnostics.filter((d) => d.severity === "error")).toHaveLength(independent.length);
    expect(result.spec).toBeNull();
  });
});

describe("valid corpus", () => {
  const files = dsv3Files(SPECS);
  const loaded = new Map(files.map((f) => [f, checkSpecFile(f)]));
  /** Files another spec imports: fragments (a cluster, say), checked whole as part of their importers. */
  const fragments = new Set(files.filter((f) => [...loaded].some(([g, r]) => g !== f && r.sources.has(f))));

  it("has specs, and not only fragments", () => {
    expect(files.length).toBeGreaterThan(fragments.size);
  });

  for (const file of files) {
    if (fragments.has(file)) {
      it(`${file} (imported by another spec) has no errors of its own`, () => {
        // On its own a fragment lacks the blocks its importers supply; nothing else may be wrong.
        const result = loaded.get(file)!;
        expect(result.diagnostics.filter((d) => d.severity === "error" && d.code !== "DSV2006").map(at)).toEqual([]);
      });
    } else {
      it(`${file} checks with no errors`, () => {
        const result = loaded.get(file)!;
        expect(result.diagnostics.filter((d) => d.severity === "error").map(at)).toEqual([]);
        expect(result.spec).not.toBeNull();
      });
    }
  }
});
