/**
 * The printer: print∘parse is the identity on generated documents and on generated valid specs;
 * printing is idempotent; the specs in specs/ are already in printed (canonical) form.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Block, Document, Entry, Label, NumberValue, TopItem, Value } from "../dsl/ast.js";
import { parseDocument } from "../dsl/parser.js";
import { printDocument } from "../dsl/print.js";
import { checkSpecFile } from "../compiler/check/index.js";
import { UNITS } from "../dsl/units.js";

const NO_SPAN = { file: "gen.dsv3", line: 1, col: 1, offset: 0, length: 0 };

/** The AST without positions (spans and file names), for structural comparison. */
function strip(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(strip);
  if (x !== null && typeof x === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(x)) {
      if (k === "span" || k.endsWith("Span") || k === "file" || k === "comments") continue;
      out[k] = strip(v);
    }
    return out;
  }
  return x;
}

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

// A generator of valid tiny model specs: every divisibility rule holds by construction.
const validSpecText = fc
  .record({
    hiddenMul: fc.integer({ min: 1, max: 8 }),
    heads: fc.constantFrom(1, 2, 4, 8),
    layers: fc.integer({ min: 1, max: 8 }),
    denseLayers: fc.integer({ min: 0, max: 8 }),
    groups: fc.constantFrom(1, 2, 4),
    perGroup: fc.integer({ min: 2, max: 4 }),
    topK: fc.integer({ min: 1, max: 4 }),
    shared: fc.integer({ min: 0, max: 2 }),
    mtp: fc.integer({ min: 0, max: 2 }),
    qLora: fc.option(fc.integer({ min: 4, max: 64 }), { nil: null }),
    pp: fc.constantFrom(1, 2),
    dualpipe: fc.boolean(),
    epPow: fc.integer({ min: 0, max: 3 }),
    comment: fc.boolean(),
  })
  .map((r) => {
    const hidden = 16 * r.hiddenMul;
    const dense = Math.min(r.denseLayers, r.layers - 1);
    const experts = r.groups * r.perGroup;
    const topGroups = Math.max(1, Math.ceil(r.groups / 2));
    const topK = Math.min(r.topK, topGroups * r.perGroup);
    const pp = Math.min(r.pp, r.layers);
    const pipeline = r.dualpipe && pp % 2 === 0 ? "dualpipe" : "1f1b";
    const mb = 2 * pp * 2;
    const dp = 8 / pp;
    let ep = 2 ** r.epPow;
    while (experts % ep !== 0 || dp % ep !== 0) ep /= 2;
    return [
      r.comment ? "// generated spec\n" : "",
      `model "gen" {`,
      `  vocab = 1_000`,
      `  hidden = ${hidden}`,
      `  layers = ${r.layers}`,
      `  dense_layers = ${dense}${r.comment ? " // leading dense layers" : ""}`,
      `  attention mla {`,
      `    heads = ${r.heads}`,
      `    q_lora_rank = ${r.qLora ?? "none"}`,
      `    kv_lora_rank = 16`,
      `    qk_nope_dim = 8`,
      `    qk_rope_dim = 4`,
      `    v_head_dim = 8`,
      `  }`,
      dense > 0 ? `  ffn dense {\n    intermediate = ${hidden * 4}\n  }` : "",
      `  ffn moe {`,
      `    routed_experts = ${experts}`,
      `    shared_experts = ${r.shared}`,
      `    experts_per_token = ${topK}`,
      `    intermediate = 32`,
      `    gate {`,
      `      groups = ${r.groups}`,
      `      top_groups = ${topGroups}`,
      `      bias_balancing {`,
      `        update_speed = 0.001`,
      `      }`,
      `    }`,
      `  }`,
      r.mtp > 0 ? `  mtp {\n    depth = ${r.mtp}\n  }` : "",
      `}`,
      ``,
      `precision {`,
      `  mode = fp8`,
      `  recompute = [rmsnorm]`,
      `}`,
      ``,
      `cluster {`,
      `  nodes = 2`,
      `  gpus_per_node = 4`,
      `  gpu = H200`,
      `  nvlink = 160 GB/s`,
      `  infiniband = 50 GB/s`,
      `}`,
      ``,
      `training t {`,
      `  pipeline = ${pipeline}`,
      `  pp = ${pp}`,
      `  microbatches = ${mb}`,
      `  dp = ${dp}`,
      `  ep = ${ep}`,
      `  seq_len = 128`,
      `  global_batch = ${dp * mb}`,
      `}`,
    ]
      .filter((l) => l !== "")
      .join("\n") + "\n";
  });

function specFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir).sort()) {
    const p = path.join(dir, e);
    if (statSync(p).isDirectory()) out.push(...specFiles(p));
    else if (e.endsWith(".dsv3")) out.push(p);
  }
  return out;
}

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
