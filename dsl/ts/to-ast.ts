/**
 * A TypeScript spec's value (ts-value.ts) → the AST of the text language, so the one checker reads
 * both forms and its diagnostics point into whichever file was written.
 *
 *   spec({ model, precision, cluster, schedules: [...] })  → top-level blocks, schedules in order
 *   model("V3", { … }) / cluster("c", { … })              → `model "V3" { … }`, `cluster "c" { … }`
 *   mla({ … }), dense({ … }) under `attention:` / `ffn:`   → `attention mla { … }`, `ffn dense { … }`
 *   `ffn: [dense(…), moe(…)]`                              → two `ffn` blocks
 *   `key: { … }`                                           → a nested block `key { … }`
 *   `...batch` (a const object)                            → `...batch` and a top-level `preset batch { … }`
 *   `gpu: H800`                                            → `gpu = H800`
 *   `"160 GB/s"`, `"1x128"`, `"3..60"`                     → a number with a unit, a shape, a range
 *   an enum string, `true`/`false`, `null`                 → a bare word, `true`/`false`, `none`
 *
 * How a string reads is decided by the attribute's type in the checker's vocabulary (one vocabulary
 * for both forms); a key the vocabulary does not know is read by the string's shape, and the checker
 * then reports the unknown key.
 */
import type { Attribute, Block, Document, Entry, Label, NumberValue, Preset, TopItem, Value } from "../ast.js";
import type { DiagnosticSink } from "../diagnostic.js";
import { MAX_NESTING } from "../parser.js";
import type { Span } from "../span.js";
import { suggestionFix } from "../suggest.js";
import { TOP, type AttrType, type BlockDef } from "../../compiler/check/vocabulary.js";
import { BUILDERS, type BuilderName } from "./builders.js";
import type { TsEntry, TsValue } from "./ts-value.js";

/** Most AST nodes one TypeScript spec may expand to (constants can be used many times over). */
export const MAX_TS_NODES = 200_000;

/** How a string value of an attribute reads. */
type StringClass = "string" | "quantity" | "shape" | "layers" | "word" | "number";

function classOf(t: AttrType): StringClass {
  switch (t.t) {
    case "string": return "string";
    case "quantity": return "quantity";
    case "shape": return "shape";
    case "layers": return "layers";
    case "enum": case "enum-list": case "bool": case "int-or-none": return "word";
    case "int": case "real": return "number";
  }
}

/** Attribute name → how its strings read, over the whole vocabulary (null where two blocks disagree). */
function buildKeyClasses(): Map<string, StringClass | null> {
  const out = new Map<string, StringClass | null>();
  const seen = new Set<BlockDef>();
  const walk = (def: BlockDef): void => {
    if (seen.has(def)) return;
    seen.add(def);
    for (const [key, a] of Object.entries(def.attrs)) {
      const c = classOf(a.type);
      const earlier = out.get(key);
      out.set(key, earlier === undefined || earlier === c ? c : null);
    }
    for (const sub of Object.values(def.blocks)) walk(sub);
    for (const sub of Object.values(def.variants ?? {})) walk(sub);
  };
  walk(TOP);
  return out;
}

let keyClasses: Map<string, StringClass | null> | null = null;

/** How strings of attribute `key` read; undefined for a key the vocabulary does not know. */
export function stringClassOf(key: string): StringClass | null | undefined {
  keyClasses ??= buildKeyClasses();
  return keyClasses.get(key);
}

const NUMBER = String.raw`[+-]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?`;
const QUANTITY = new RegExp(String.raw`^\s*(${NUMBER})(?:\s*([A-Za-z][A-Za-z/]*))?\s*$`);
const SHAPE = /^\s*([0-9]+)\s*x\s*([0-9]+)\s*$/;
const RANGE = new RegExp(String.raw`^\s*(${NUMBER})\s*\.\.\s*(${NUMBER})\s*$`);
/** The digits of a number as the text language writes them. */
const DSV3_NUMBER = /^-?[0-9][0-9_]*(?:\.[0-9][0-9_]*)?(?:[eE][+-]?[0-9]+)?$/;

/** The text-language spelling of a number: `raw` when the language reads it, else the shortest form. */
export function numberRaw(value: number, raw?: string): string {
  if (raw !== undefined && DSV3_NUMBER.test(raw) && Number(raw.replace(/_/g, "")) === value) return raw;
  return String(value);
}

function parseNumber(text: string): number {
  const v = Number(text.replace(/_/g, ""));
  return Object.is(v, -0) ? 0 : v;
}

const SPEC_FIELDS = ["model", "precision", "cluster", "schedules"] as const;
const SCHEDULE_BUILDERS: readonly BuilderName[] = ["training", "prefill", "decode"];

/**
 * Convert the value of a spec (`spec({ … })`) to a Document. Structural mistakes (a schedule that
 * is not a schedule, an unknown field of `spec`) are reported to `sink`; a document still comes back
 * unless the value is not a spec at all or exceeds the size limits.
 */
export function tsValueToDocument(root: TsValue, file: string, sink: DiagnosticSink): Document | null {
  return new ToAst(file, sink).document(root);
}

class ToAst {
  private nodes = 0;
  private overBudget = false;
  /** The entry being converted: where running out of budget is reported. */
  private site: Span | null = null;
  private readonly presets = new Map<string, Preset>();
  private readonly converting = new Set<string>();

  constructor(private readonly file: string, private readonly sink: DiagnosticSink) {}

  document(root: TsValue): Document | null {
    if (root.k !== "call" || root.builder !== "spec") {
      this.sink.report("DSV6017", root.span, { found: describe(root) }, "write `export default spec({ model, precision, cluster, schedules })`");
      return null;
    }
    const fields = root.fields;
    if (fields === null) return null;
    const blocks: TopItem[] = [];
    if (fields.k !== "object") {
      this.mismatch("spec", "an object { model, precision, cluster, schedules }", fields);
      return null;
    }
    for (const e of fields.entries) {
      if (e.kind === "spread") {
        this.sink.report("DSV6007", e.span, { what: "a spread in spec({ … })" }, "write the fields model, precision, cluster and schedules");
        continue;
      }
      switch (e.key) {
        case "model":
        case "cluster": {
          const b = this.blockOf(e.key, e.value, e.keySpan, e.span, 0, TOP);
          if (b) blocks.push(b);
          break;
        }
        case "precision": {
          if (e.value.k !== "object") { this.mismatch("precision", "an object { mode, … }", e.value); break; }
          const b = this.blockOf("precision", e.value, e.keySpan, e.span, 0, TOP);
          if (b) blocks.push(b);
          break;
        }
        case "schedules": {
          const v = e.value;
          if (v.k !== "array") { this.mismatch("schedules", "a list of training(…), prefill(…) and decode(…)", v); break; }
          for (const item of v.items) {
            if (item.k !== "call" || !SCHEDULE_BUILDERS.includes(item.builder)) {
              this.mismatch("schedules", "training(…), prefill(…) or decode(…)", item);
              continue;
            }
            const b = this.callBlock(item, 0, TOP);
            if (b) blocks.push(b);
          }
          break;
        }
        default:
          this.sink.report("DSV2002", e.keySpan, { name: e.key, where: "spec({ … })" }, suggestionFix(e.key, SPEC_FIELDS));
      }
    }
    if (this.overBudget) return null;
    // Presets in the order of their declarations, before the blocks, as a text file would have them.
    const presets = [...this.presets.values()].sort((a, b) => a.nameSpan.offset - b.nameSpan.offset);
    return { kind: "document", file: this.file, items: [...presets, ...blocks], comments: [] };
  }

  private count(span: Span): boolean {
    if (this.overBudget) return false;
    if (++this.nodes > MAX_TS_NODES) {
      this.overBudget = true;
      this.sink.report("DSV6018", this.site ?? span, { max: MAX_TS_NODES }, "use each large constant once, or spread it as a preset");
      return false;
    }
    return true;
  }

  private tooDeep(depth: number, span: Span): boolean {
    if (depth <= MAX_NESTING) return false;
    if (!this.overBudget) this.sink.report("DSV1007", span, { max: MAX_NESTING });
    this.overBudget = true;
    return true;
  }

  private mismatch(name: string, expected: string, found: TsValue): void {
    this.sink.report("DSV3001", found.span, { name, expected, found: describe(found) });
  }

  /**
   * `key: value` where a block is expected (`parent` is the enclosing block's definition, when
   * known): a builder call of the right kind, or an object. A block whose kind is its label
   * (`attention mla`, `ffn moe`) needs its builder: an object does not say which kind it is.
   */
  private blockOf(key: string, v: TsValue, keySpan: Span, span: Span, depth: number, parent: BlockDef | undefined): Block | null {
    const def = parent === undefined ? undefined : own(parent.blocks, key);
    if (v.k === "call") {
      if (BUILDERS[v.builder].block !== key) {
        this.mismatch(key, expectedFor(key, def), v);
        return null;
      }
      return this.callBlock(v, depth, parent);
    }
    if (v.k === "object" && def?.variants === undefined) return this.block(key, [], v, keySpan, span, depth, def);
    this.mismatch(key, expectedFor(key, def), v);
    return null;
  }

  private callBlock(call: Extract<TsValue, { k: "call" }>, depth: number, parent: BlockDef | undefined): Block | null {
    if (call.fields === null) return null;
    const def = BUILDERS[call.builder];
    const labels: Label[] = def.block === "attention" || def.block === "ffn"
      ? [{ kind: "ident", value: call.builder, span: call.calleeSpan }]
      : call.labels.map((l) => ({ kind: "string", value: l.value, span: l.span }));
    if (call.fields.k !== "object") {
      this.sink.report("DSV6019", call.fields.span, { builder: call.builder, expected: "an object { … }", which: "fields", found: describe(call.fields) });
      return null;
    }
    const blockDef = parent === undefined ? undefined : own(parent.blocks, def.block);
    const bodyDef = blockDef?.variants ? own(blockDef.variants, call.builder) : blockDef;
    return this.block(def.block, labels, call.fields, call.calleeSpan, call.span, depth, bodyDef);
  }

  private block(type: string, labels: Label[], obj: Extract<TsValue, { k: "object" }>, typeSpan: Span, span: Span, depth: number, def: BlockDef | undefined): Block | null {
    if (this.tooDeep(depth, span) || !this.count(span)) return null;
    return { kind: "block", type, typeSpan, labels, body: this.entries(obj.entries, depth + 1, def), span };
  }

  /** The entries of a block whose definition is `def` (undefined: unknown, or a preset's body). */
  private entries(list: readonly TsEntry[], depth: number, def: BlockDef | undefined): Entry[] {
    const out: Entry[] = [];
    for (const e of list) {
      if (this.overBudget) break;
      this.site = e.span;
      if (e.kind === "spread") {
        if (e.body !== null) this.preset(e.name, e.declSpan ?? e.nameSpan, e.body, depth);
        if (this.count(e.span)) out.push({ kind: "spread", name: e.name, nameSpan: e.nameSpan, span: e.span });
        continue;
      }
      const v = e.value;
      if (v.k === "object" || v.k === "call") {
        const b = this.blockOf(e.key, v, e.keySpan, e.span, depth, def);
        if (b) out.push(b);
      } else if (v.k === "array" && v.items.some((i) => i.k === "call")) {
        for (const item of v.items) {
          const b = this.blockOf(e.key, item, e.keySpan, e.span, depth, def);
          if (b) out.push(b);
        }
      } else {
        const attr = def === undefined ? undefined : own(def.attrs, e.key);
        const value = this.value(e.key, v, attr ? classOf(attr.type) : stringClassOf(e.key) ?? undefined, depth);
        if (value !== null && this.count(e.span)) out.push({ kind: "attribute", key: e.key, keySpan: e.keySpan, value, span: e.span } satisfies Attribute);
      }
    }
    return out;
  }

  /** `const NAME = { … }` spread somewhere: emitted once, as `preset NAME { … }`. */
  private preset(name: string, nameSpan: Span, body: TsValue, depth: number): void {
    if (this.presets.has(name) || this.converting.has(name)) return;
    if (body.k !== "object") return; // the reader only makes spreads of objects
    this.converting.add(name);
    // A preset may be spread into blocks of any kind: its strings read by the vocabulary as a whole.
    const preset: Preset = { kind: "preset", name, nameSpan, body: this.entries(body.entries, depth + 1, undefined), span: body.span };
    this.converting.delete(name);
    this.presets.set(name, preset);
  }

  private value(key: string, v: TsValue, cls: StringClass | undefined, depth: number): Value | null {
    if (this.tooDeep(depth, v.span) || !this.count(v.span)) return null;
    switch (v.k) {
      case "number":
        return { kind: "number", value: v.value, raw: v.raw, unit: null, span: v.span };
      case "bool":
        return { kind: "ident", name: v.value ? "true" : "false", span: v.span };
      case "null":
        return { kind: "ident", name: "none", span: v.span };
      case "gpu":
        return { kind: "ident", name: v.name, span: v.span };
      case "string":
        return stringValue(v.value, v.span, cls);
      case "array": {
        const items: Value[] = [];
        for (const item of v.items) {
          const iv = this.value(key, item, cls, depth + 1);
          if (iv === null) return null;
          items.push(iv);
        }
        return { kind: "list", items, span: v.span };
      }
      case "object":
      case "call":
        this.mismatch(key, "a value", v);
        return null;
    }
  }
}

function stringValue(s: string, span: Span, cls: StringClass | undefined): Value {
  const str: Value = { kind: "string", value: s, span };
  const num = (text: string, unit: string | null): NumberValue => {
    const value = parseNumber(text);
    return { kind: "number", value, raw: numberRaw(value, text.replace(/^\+/, "")), unit, span };
  };
  switch (cls) {
    case "string":
    case "number":
      return str;
    case "word":
      return { kind: "ident", name: s, span };
    case "quantity": {
      const m = QUANTITY.exec(s);
      return m ? num(m[1]!, m[2] ?? null) : str;
    }
    case "shape": {
      const m = SHAPE.exec(s);
      return m ? { kind: "shape", rows: Number(m[1]), cols: Number(m[2]), span } : str;
    }
    case "layers": {
      const m = RANGE.exec(s);
      return m ? { kind: "range", from: num(m[1]!, null), to: num(m[2]!, null), span } : str;
    }
    case undefined: {
      // A key the vocabulary does not know (the checker reports it): read the string by its shape.
      const q = QUANTITY.exec(s);
      if (q && q[2] !== undefined) return num(q[1]!, q[2]);
      const sh = SHAPE.exec(s);
      if (sh) return { kind: "shape", rows: Number(sh[1]), cols: Number(sh[2]), span };
      const r = RANGE.exec(s);
      if (r) return { kind: "range", from: num(r[1]!, null), to: num(r[2]!, null), span };
      return str;
    }
  }
}

function expectedFor(key: string, def: BlockDef | undefined): string {
  const builders = Object.entries(BUILDERS).filter(([, b]) => b.block === key).map(([name]) => `${name}(…)`);
  if (def?.variants) return key === "ffn" ? `${builders.join(" or ")}, or a list of them` : builders.join(", ").replace(/, ([^,]*)$/, " or $1");
  if (builders.length > 0) return `${builders[0]} or an object { … }`;
  return "an object { … }";
}

/** `record[key]` for the record's own keys only (a key such as `toString` is nobody's block). */
function own<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

/** A value in words, for "found …". */
export function describe(v: TsValue): string {
  switch (v.k) {
    case "number": return v.raw;
    case "string": return JSON.stringify(v.value);
    case "bool": return String(v.value);
    case "null": return "null";
    case "array": return "a list";
    case "object": return "an object";
    case "call": return `${v.builder}(…)`;
    case "gpu": return `the GPU preset ${v.name}`;
  }
}
