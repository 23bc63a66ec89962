/**
 * The TextMate grammar (editors/dsv3.tmLanguage.json), run by the engine VS Code uses
 * (vscode-textmate with the Oniguruma regular expressions of vscode-oniguruma): the DeepSeek-V3 spec
 * and the other specs tokenise with the expected scopes, and every character but whitespace gets a
 * scope of its own (nothing left as bare `source.dsv3`, nothing `invalid`).
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { UNITS } from "../dsl/units.js";
import { TOP } from "../compiler/check/vocabulary.js";

const require = createRequire(import.meta.url);
const vsctm = require("vscode-textmate") as typeof import("vscode-textmate");
const oniguruma = require("vscode-oniguruma") as typeof import("vscode-oniguruma");

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const GRAMMAR = path.join(REPO, "editors", "dsv3.tmLanguage.json");
const SPECS = ["specs/deepseek-v3.dsv3", "specs/clusters/h800-2048.dsv3", "specs/tiny.dsv3", "specs/deepseek-v2-lite.dsv3"];

interface Token {
  line: number; // 1-based
  text: string;
  scopes: string[];
}

let grammar: import("vscode-textmate").IGrammar;

beforeAll(async () => {
  const wasm = readFileSync(path.join(REPO, "node_modules", "vscode-oniguruma", "release", "onig.wasm"));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns: string[]) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s: string) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName: string) => (scopeName === "source.dsv3" ? vsctm.parseRawGrammar(readFileSync(GRAMMAR, "utf8"), GRAMMAR) : null),
  });
  const loaded = await registry.loadGrammar("source.dsv3");
  if (loaded === null) throw new Error("the grammar source.dsv3 did not load");
  grammar = loaded;
});

/** Tokenise `text` line by line, carrying the rule stack (block comments span lines). */
function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let stack = vsctm.INITIAL;
  text.split(/\r?\n/).forEach((line, i) => {
    const r = grammar.tokenizeLine(line, stack);
    for (const t of r.tokens) out.push({ line: i + 1, text: line.slice(t.startIndex, Math.min(t.endIndex, line.length)), scopes: t.scopes });
    stack = r.ruleStack;
  });
  return out;
}

/** The scopes of the token that is exactly `text`, the `nth` such on `line` (or anywhere). */
function scopesOf(tokens: readonly Token[], text: string, where: { line?: number; nth?: number } = {}): string[] {
  const found = tokens.filter((t) => t.text === text && (where.line === undefined || t.line === where.line));
  const t = found[where.nth ?? 0];
  if (t === undefined) throw new Error(`no token '${text}'${where.line ? ` on line ${where.line}` : ""}; tokens: ${JSON.stringify(tokens.filter((x) => where.line === undefined || x.line === where.line).map((x) => x.text))}`);
  return t.scopes;
}

/** The first line (1-based) that holds `needle` outside a comment. */
function lineOf(text: string, needle: string): number {
  const i = text.split("\n").findIndex((l) => l.includes(needle) && !l.trimStart().startsWith("//"));
  if (i < 0) throw new Error(`'${needle}' is not in the text`);
  return i + 1;
}

/** Whether some scope in `scopes` starts with `prefix` (`constant.numeric` matches `constant.numeric.dsv3`). */
function has(scopes: readonly string[], prefix: string): boolean {
  return scopes.some((s) => s === prefix || s.startsWith(`${prefix}.`));
}

function expectScope(tokens: readonly Token[], text: string, prefix: string, where: { line?: number; nth?: number } = {}): void {
  const scopes = scopesOf(tokens, text, where);
  expect(has(scopes, prefix), `'${text}' has scopes ${scopes.join(" ")}, wanted ${prefix}`).toBe(true);
}

/** Tokens that are not whitespace and have no scope beyond the grammar's, or an `invalid` one. */
function unscoped(tokens: readonly Token[]): Token[] {
  return tokens.filter((t) => t.text.trim() !== "" && (t.scopes.length < 2 || t.scopes.some((s) => s.startsWith("invalid"))));
}

describe("the TextMate grammar", () => {
  it("is source.dsv3 for .dsv3 files", () => {
    const raw = JSON.parse(readFileSync(GRAMMAR, "utf8")) as { scopeName: string; fileTypes: string[] };
    expect(raw.scopeName).toBe("source.dsv3");
    expect(raw.fileTypes).toEqual(["dsv3"]);
  });

  it("comes with a VS Code language configuration (comments and brackets)", () => {
    const config = JSON.parse(readFileSync(path.join(REPO, "editors", "language-configuration.json"), "utf8")) as { comments: unknown; brackets: unknown };
    expect(config.comments).toEqual({ lineComment: "//", blockComment: ["/*", "*/"] });
    expect(config.brackets).toEqual([["{", "}"], ["[", "]"]]);
  });

  describe("specs/deepseek-v3.dsv3", () => {
    const text = readFileSync("specs/deepseek-v3.dsv3", "utf8");
    let tokens: Token[] = [];
    beforeAll(() => {
      tokens = tokenize(text);
    });

    it("comments", () => {
      const first = text.split("\n")[0]!;
      expectScope(tokens, "//", "punctuation.definition.comment", { line: 1 });
      expect(has(scopesOf(tokens, first.slice(2), { line: 1 }), "comment.line.double-slash")).toBe(true);
      const line = lineOf(text, "dense_layers = 3");
      expectScope(tokens, " layers 0..2 dense, 3..60 MoE", "comment.line", { line }); // a range in a comment is comment
    });

    it("strings, imports and block keywords with their labels", () => {
      expectScope(tokens, "import", "keyword.control.import");
      expectScope(tokens, "clusters/h800-2048.dsv3", "string.quoted.double");
      expectScope(tokens, "DeepSeek-V3", "string.quoted.double");
      expectScope(tokens, '"', "punctuation.definition.string.begin", { line: lineOf(text, 'model "DeepSeek-V3"') });
      for (const kw of ["model", "precision", "training", "prefill", "decode"]) expectScope(tokens, kw, "keyword.other.block", { line: lineOf(text, `${kw} `) });
      expectScope(tokens, "train", "entity.name.label", { line: lineOf(text, "training train {") });
      expectScope(tokens, "decode", "entity.name.label", { line: lineOf(text, "decode decode {"), nth: 1 });
      expectScope(tokens, "attention", "entity.name.type.block", { line: lineOf(text, "attention mla {") });
      expectScope(tokens, "mla", "entity.name.label");
      expectScope(tokens, "rope", "entity.name.type.block");
      expectScope(tokens, "{", "punctuation.section.block.begin");
      expectScope(tokens, "}", "punctuation.section.block.end");
    });

    it("attribute keys, numbers, shapes and constants", () => {
      expectScope(tokens, "vocab", "variable.other.property");
      expectScope(tokens, "=", "keyword.operator.assignment");
      expectScope(tokens, "129_280", "constant.numeric");
      expectScope(tokens, "1e-6", "constant.numeric");
      expectScope(tokens, "0.001", "constant.numeric");
      expectScope(tokens, "1x128", "constant.numeric.shape");
      expectScope(tokens, "128x128", "constant.numeric.shape");
      expectScope(tokens, "true", "constant.language");
      expectScope(tokens, "false", "constant.language");
      expectScope(tokens, "swiglu", "variable.other.value");
      expectScope(tokens, "[", "punctuation.section.brackets.begin");
      expectScope(tokens, ",", "punctuation.separator.comma");
      expectScope(tokens, "embedding", "variable.other.value");
    });

    it("leaves no character without a scope of its own, and marks nothing invalid", () => {
      expect(tokens.length).toBeGreaterThan(500);
      expect(unscoped(tokens)).toEqual([]);
    });
  });

  it("units after numbers: 160 GB/s", () => {
    const text = readFileSync("specs/clusters/h800-2048.dsv3", "utf8");
    const tokens = tokenize(text);
    const line = lineOf(text, "nvlink = 160 GB/s");
    expectScope(tokens, "160", "constant.numeric", { line });
    expectScope(tokens, "GB/s", "keyword.other.unit", { line });
    expectScope(tokens, "h800-2048", "string.quoted.double");
    expectScope(tokens, "H800", "variable.other.value");
  });

  it("ranges, spreads, presets and names that start with digits", () => {
    const text = readFileSync("specs/tiny.dsv3", "utf8");
    const tokens = tokenize(text);
    const line = lineOf(text, "moe = 1..3");
    expectScope(tokens, "1", "constant.numeric", { line });
    expectScope(tokens, "..", "keyword.operator.range", { line });
    expectScope(tokens, "3", "constant.numeric", { line });
    expectScope(tokens, "preset", "keyword.other.preset");
    expectScope(tokens, "tiny_batch", "entity.name.type.preset", { line: lineOf(text, "preset tiny_batch") });
    expectScope(tokens, "...", "keyword.operator.spread");
    expectScope(tokens, "tiny_batch", "variable.other.preset", { line: lineOf(text, "...tiny_batch") });
    expectScope(tokens, "1f1b", "variable.other.value");
  });

  for (const file of SPECS) {
    it(`${file}: every character but whitespace has a scope`, () => {
      expect(unscoped(tokenize(readFileSync(file, "utf8")))).toEqual([]);
    });
  }

  it("every unit the language knows, with SI and IEC prefixes, rates and times", () => {
    for (const unit of UNITS.keys()) {
      const tokens = tokenize(`x = 12.5 ${unit}`);
      expectScope(tokens, "12.5", "constant.numeric");
      expectScope(tokens, unit, "keyword.other.unit");
    }
    const tokens = tokenize("a = 80 GiB\nb = 989 TFLOP/s\nc = 10 us\nd = 1_000 PB/s");
    expectScope(tokens, "GiB", "keyword.other.unit");
    expectScope(tokens, "TFLOP/s", "keyword.other.unit");
    expectScope(tokens, "us", "keyword.other.unit");
    expectScope(tokens, "PB/s", "keyword.other.unit");
  });

  it("a word after a number that starts the next entry is not a unit (as the lexer reads it)", () => {
    const tokens = tokenize("tp = 4 s = true");
    expectScope(tokens, "s", "variable.other.property");
    expectScope(tokens, "4", "constant.numeric");
  });

  it("every top-level block of the language is a block keyword", () => {
    const names = Object.keys(TOP.blocks);
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) expectScope(tokenize(`${name} x {`), name, "keyword.other.block");
    for (const name of names) expectScope(tokenize(`${name}\n{`), name, "keyword.other.block");
  });

  it("strings with escapes, block comments over lines, none, and invalid characters", () => {
    const tokens = tokenize('name = "a \\"quoted\\" \\\\ word"\n/* one\n   two */ q_lora_rank = none\nx = 1 @');
    expectScope(tokens, '\\"', "constant.character.escape");
    expectScope(tokens, "\\\\", "constant.character.escape");
    expectScope(tokens, "/*", "comment.block");
    expectScope(tokens, "   two ", "comment.block");
    expectScope(tokens, "*/", "punctuation.definition.comment.end");
    expectScope(tokens, "q_lora_rank", "variable.other.property");
    expectScope(tokens, "none", "constant.language");
    expectScope(tokens, "@", "invalid.illegal");
  });

  it("block headers anywhere on a line; a header whose '{' is on the next line", () => {
    const tokens = tokenize('prefill p {\n  decode decode { moe { ep = 4 } }\n  activation = swiglu gate {\n  }\n}\ncluster "c" // the cluster\n{\n}');
    expectScope(tokens, "decode", "keyword.other.block", { line: 2, nth: 0 });
    expectScope(tokens, "decode", "entity.name.label", { line: 2, nth: 1 });
    expectScope(tokens, "moe", "entity.name.type.block", { line: 2 });
    expectScope(tokens, "swiglu", "variable.other.value", { line: 3 });
    expectScope(tokens, "gate", "entity.name.type.block", { line: 3 });
    expectScope(tokens, "cluster", "keyword.other.block", { line: 6 });
    expectScope(tokens, "c", "string.quoted.double", { line: 6 });
    expect(unscoped(tokens)).toEqual([]);
  });

  it("an unterminated string stops at the end of its line", () => {
    const tokens = tokenize('name = "H800\nx = 1');
    expectScope(tokens, "H800", "string.quoted.double");
    expectScope(tokens, "x", "variable.other.property", { line: 2 });
  });
});
