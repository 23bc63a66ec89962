/**
 * The printer: print∘parse is the identity on generated documents and on generated valid specs;
 * printing is idempotent; the specs in specs/ are already in printed (canonical) form.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Block, Document, Entry, Label, NumberValue, TopItem, Value } from "../dsl/ast.js";
import { parseDocument } from "../dsl/parser.js";
import { printDocument } from "../dsl/print.js";
import { checkSpecFile } from "../compiler/check/index.js";
import { UNITS } from "../dsl/units.js";
import { withoutPositions as strip } from "./fixtures/ast-shape.js";
import { specFiles, validSpecText } from "./fixtures/generated-specs.js";

const NO_SPAN = { file: "gen.dsv3", line: 1, col: 1, offset: 0, length: 0 };


// ── Generators ────────────────────────────────────────────────────────────────────────────────
const KEYWORDS = new Set(["import", "preset"]);
const name = fc
  .oneof(
    fc.stringMatching(/^[a-z_][a-z0-9_]{0,9}$/),
    fc.constantFrom("1f1b", "zb1p", "H800", "dualpipe", "true", "none", "GB", "s", "ms"),
  )
  .filter((s) => !KEYWORDS.has(s));

const numberRaw = fc.oneof(
  fc.nat({ max: 1_000_000 }).map(String),
  fc.integer({ min: -1000, max: 1000 }).map(String),
  fc.tuple(fc.nat({ max: 999 }), fc.nat({ max: 999 })).map(([a, b]) => `${a}.${b}`),
  fc.tuple(fc.integer({ min: 1, max: 9 }), fc.integer({ min: -12, max: 12 })).map(([a, e]) => `${a}e${e}`),
  fc.tuple(fc.integer({ min: 1, max: 999 }), fc.integer({ min: 100, max: 999 })).map(([a, b]) => `${a}_${b}`),
);

function numberValue(raw: string, unit: string | null): NumberValue {
  const v = Number(raw.replace(/_/g, ""));
  return { kind: "number", value: Object.is(v, -0) ? 0 : v, raw, unit, span: NO_SPAN };
}

const unit = fc.constantFrom(...UNITS.keys());

const leafValue: fc.Arbitrary<Value> = fc.oneof(
  numberRaw.map((r) => numberValue(r, null)),
  fc.tuple(numberRaw, unit).map(([r, u]) => numberValue(r, u)),
  fc.string({ unit: "binary", maxLength: 12 }).map((value): Value => ({ kind: "string", value, span: NO_SPAN })),
  name.map((n): Value => ({ kind: "ident", name: n, span: NO_SPAN })),
  fc.tuple(fc.nat({ max: 500 }), fc.nat({ max: 500 })).map(([a, b]): Value => ({ kind: "range", from: numberValue(String(a), null), to: numberValue(String(b), null), span: NO_SPAN })),
  fc.tuple(fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 1, max: 4096 })).map(([rows, cols]): Value => ({ kind: "shape", rows, cols, span: NO_SPAN })),
);
const value: fc.Arbitrary<Value> = fc.oneof(
  { weight: 4, arbitrary: leafValue },
  { weight: 1, arbitrary: fc.array(fc.oneof(leafValue, fc.array(leafValue, { maxLength: 3 }).map((items): Value => ({ kind: "list", items, span: NO_SPAN }))), { maxLength: 30 }).map((items): Value => ({ kind: "list", items, span: NO_SPAN })) },
);

const label: fc.Arbitrary<Label> = fc.oneof(
  fc.stringMatching(/^[a-z_][a-z0-9_]{0,6}$/).filter((s) => !KEYWORDS.has(s)).map((v): Label => ({ kind: "ident", value: v, span: NO_SPAN })),
  fc.string({ maxLength: 8 }).map((v): Label => ({ kind: "string", value: v, span: NO_SPAN })),
);

const { entry } = fc.letrec<{ entry: Entry; block: Block }>((tie) => ({
  entry: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.tuple(name, value).map(([key, v]): Entry => ({ kind: "attribute", key, keySpan: NO_SPAN, value: v, span: NO_SPAN })),
    name.map((n): Entry => ({ kind: "spread", name: n, nameSpan: NO_SPAN, span: NO_SPAN })),
    tie("block"),
  ),
  block: fc.tuple(name, fc.array(label, { maxLength: 2 }), fc.array(tie("entry"), { maxLength: 5 })).map(([type, labels, body]): Block => ({ kind: "block", type, typeSpan: NO_SPAN, labels, body, span: NO_SPAN })),
}));

const topItem: fc.Arbitrary<TopItem> = fc.oneof(
  fc.string({ maxLength: 16 }).map((p): TopItem => ({ kind: "import", path: p, pathSpan: NO_SPAN, span: NO_SPAN })),
  fc.tuple(name, fc.array(entry, { maxLength: 4 })).map(([n, body]): TopItem => ({ kind: "preset", name: n, nameSpan: NO_SPAN, body, span: NO_SPAN })),
  fc.tuple(name, fc.array(label, { maxLength: 2 }), fc.array(entry, { maxLength: 6 })).map(([type, labels, body]): TopItem => ({ kind: "block", type, typeSpan: NO_SPAN, labels, body, span: NO_SPAN })),
);

const documentArb = fc.array(topItem, { maxLength: 6 }).map((items): Document => ({ kind: "document", file: "gen.dsv3", items, comments: [] }));

describe("print∘parse", () => {
  it("is the identity on generated documents (structure, not positions)", () => {
    fc.assert(
      fc.property(documentArb, (doc) => {
        const text = printDocument(doc);
        const parsed = parseDocument(text, "gen.dsv3");
        expect(parsed.diagnostics.all).toEqual([]);
        expect(strip(parsed.document.items)).toEqual(strip(doc.items));
        // Printing what was parsed gives the same text again.
        expect(printDocument(parsed.document, { source: text })).toBe(text);
      }),
      { numRuns: 400 },
    );
  });

  it("is the identity on generated valid specs, and the Spec is unchanged", () => {
    fc.assert(
      fc.property(validSpecText, (text) => {
        const first = checkSpecFile("gen.dsv3", () => { throw new Error("no imports"); }, text);
        expect(first.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
        const doc = parseDocument(text, "gen.dsv3").document;
        const printed = printDocument(doc, { source: text });
        const reparsed = parseDocument(printed, "gen.dsv3");
        expect(strip(reparsed.document.items)).toEqual(strip(doc.items));
        expect(reparsed.document.comments.map((c) => c.text)).toEqual(doc.comments.map((c) => c.text));
        const second = checkSpecFile("gen.dsv3", () => { throw new Error("no imports"); }, printed);
        expect(second.spec).toEqual(first.spec);
      }),
      { numRuns: 200 },
    );
  });
});


describe("the specs in specs/", () => {
  const files = specFiles("specs");
  it("exist", () => {
    expect(files).toContain(path.join("specs", "deepseek-v3.dsv3"));
    expect(files).toContain(path.join("specs", "tiny.dsv3"));
    expect(files).toContain(path.join("specs", "deepseek-v2-lite.dsv3"));
  });
  for (const file of files) {
    it(`${file} is in canonical printed form (fmt-clean), comments kept`, () => {
      const text = readFileSync(file, "utf8");
      const parsed = parseDocument(text, file);
      expect(parsed.diagnostics.all).toEqual([]);
      expect(printDocument(parsed.document, { source: text })).toBe(text);
    });
  }
});

describe("comments and blank lines", () => {
  it("keeps leading, trailing and closing comments and normalises layout", () => {
    const messy = `// head\nmodel   "x" {   vocab=10 // trailing\n  hidden = 8 layers=2\n\n\n  /* block c */ attention mla { heads = 2\n  q_lora_rank = none }\n  l = [ a,b,\n  c ] // after list\n  // before close\n}\n// end\n`;
    const doc = parseDocument(messy, "m.dsv3");
    const out = printDocument(doc.document, { source: messy });
    expect(out).toBe(`// head\nmodel "x" {\n  vocab = 10 // trailing\n  hidden = 8\n  layers = 2\n\n  /* block c */\n  attention mla {\n    heads = 2\n    q_lora_rank = none\n  }\n  l = [a, b, c] // after list\n  // before close\n}\n\n// end\n`);
    expect(printDocument(parseDocument(out, "m.dsv3").document, { source: out })).toBe(out);
  });
});
