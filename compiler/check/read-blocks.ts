/**
 * The generic half of the checker: reads documents against the vocabulary (vocabulary.ts). It
 * expands preset spreads, and reports unknown or duplicate blocks and attributes, missing required
 * attributes, wrong labels, wrong types, wrong units and out-of-range values — each with its fix.
 * What it returns holds only well-typed values; an attribute that failed is recorded in `bad` so
 * later rules neither trust it nor report it missing.
 */
import type { Attribute, Block, Document, Entry, Label, Preset, Value } from "../../dsl/ast.js";
import type { DiagnosticSink } from "../../dsl/diagnostic.js";
import type { Span } from "../../dsl/span.js";
import { closestName, suggestionFix } from "../../dsl/suggest.js";
import { exampleUnit, UNITS } from "../../dsl/units.js";
import type { AttrDef, AttrType, AttrValue, BlockDef, LayerSet } from "./vocabulary.js";

export interface ReadAttr {
  value: AttrValue;
  /** The value as written (for carets under values). */
  span: Span;
  keySpan: Span;
}

export interface ReadBlock {
  def: BlockDef;
  /** The block's type keyword (or the attribute key for preset sugar), where "missing …" is reported. */
  typeSpan: Span;
  labels: Label[];
  attrs: Map<string, ReadAttr>;
  /** Sub-blocks by type, in source order. */
  blocks: Map<string, ReadBlock[]>;
  /** Attributes present but invalid: neither trusted nor reported missing. */
  bad: Set<string>;
}

type Weighted = { entry: Entry; fromSpread: boolean };

/**
 * Limits on preset spreads, so a hostile spec can neither exhaust the stack (a chain of thousands of
 * presets, each spreading the next) nor expand exponentially (each preset spreading the next twice).
 */
export const MAX_SPREAD_DEPTH = 64;
export const MAX_SPREAD_ENTRIES = 16_384;

export class BlockReader {
  private readonly presets = new Map<string, Preset>();
  /** Entries spreads may still produce, over the whole read (see MAX_SPREAD_ENTRIES). */
  private spreadBudget = MAX_SPREAD_ENTRIES;
  /** Name comparisons "did you mean" may still spend on unknown presets (each costs one per preset). */
  private presetSuggestionBudget = 200_000;
  private presetNames: string[] | null = null;
  /** Spreads left unexpanded so far (unknown, or over a limit): a block with one is not reported missing anything. */
  private unresolvedSpreads = 0;

  constructor(private readonly sink: DiagnosticSink, builtinPresets: readonly Preset[], documents: readonly Document[]) {
    for (const p of builtinPresets) this.presets.set(p.name, p);
    const builtin = new Set(this.presets.keys());
    for (const doc of documents) {
      for (const item of doc.items) {
        if (item.kind !== "preset") continue;
        const earlier = this.presets.get(item.name);
        if (earlier && !builtin.has(item.name)) {
          sink.report("DSV2008", item.nameSpan, { what: "preset", name: item.name }, `rename it; the first is at ${where(earlier.nameSpan)}`);
          continue;
        }
        this.presets.set(item.name, item); // a user preset may shadow a built-in one
      }
    }
  }

  /** Read the top level: the blocks of every document, imports first. */
  readTop(def: BlockDef, documents: readonly Document[]): ReadBlock {
    const entries: Entry[] = [];
    for (const doc of documents) for (const item of doc.items) if (item.kind === "block") entries.push(item);
    const first = documents[documents.length - 1];
    const span: Span = { file: first?.file ?? "<input>", line: 1, col: 1, offset: 0, length: 0 };
    return this.readBody(def, entries, span, []);
  }

  private readBody(def: BlockDef, body: readonly Entry[], typeSpan: Span, labels: Label[]): ReadBlock {
    const out: ReadBlock = { def, typeSpan, labels, attrs: new Map(), blocks: new Map(), bad: new Set() };
    const directAttr = new Map<string, Attribute>();
    const directBlock = new Map<string, Block>();
    const attrKeySpans = new Map<string, Span>();
    const unresolvedBefore = this.unresolvedSpreads;
    const entries = this.expand(body, []);
    // A spread left unexpanded (already reported) may have held any attribute: none is reported missing.
    const incomplete = this.unresolvedSpreads > unresolvedBefore;
    for (const { entry, fromSpread } of entries) {
      if (entry.kind === "attribute") {
        const key = entry.key;
        const attrDef = own(def.attrs, key);
        const sub = own(def.blocks, key);
        if (attrDef === undefined && sub?.presetAttribute) {
          this.readPresetAttribute(out, entry, sub, directBlock);
          continue;
        }
        if (attrDef === undefined) {
          const known = [...Object.keys(def.attrs), ...Object.keys(def.blocks)];
          if (sub !== undefined) this.sink.report("DSV3001", entry.value.span, { name: key, expected: "a block", found: describeValue(entry.value) }, `write '${key} { … }'`);
          else {
            this.sink.report("DSV2002", entry.keySpan, { name: key, where: def.what }, suggestionFix(key, known));
            this.markMisspelt(out, key, known);
          }
          continue;
        }
        if (!fromSpread) {
          const earlier = directAttr.get(key);
          if (earlier) {
            this.sink.report("DSV2003", entry.keySpan, { name: key, where: def.what }, `remove one; the first is at ${where(earlier.keySpan)}`);
            continue;
          }
          directAttr.set(key, entry);
        } else if (directAttr.has(key)) {
          continue; // written in the block itself: overrides the preset
        }
        attrKeySpans.set(key, entry.keySpan);
        const value = this.readValue(key, attrDef.type, entry.value);
        if (value === undefined) {
          out.bad.add(key);
          out.attrs.delete(key);
        } else {
          out.bad.delete(key);
          out.attrs.set(key, { value, span: entry.value.span, keySpan: entry.keySpan });
        }
      } else if (entry.kind === "block") {
        this.readSubBlock(out, entry, directBlock);
      }
    }
    for (const [key, a] of Object.entries(def.attrs)) {
      if (out.attrs.has(key) || out.bad.has(key)) continue;
      if (a.required) {
        if (!incomplete) this.sink.report("DSV2005", typeSpan, { where: def.what, name: key }, `add '${key} = ${exampleValue(a)}' (${a.doc})`);
        out.bad.add(key);
      } else if (a.default !== undefined) {
        out.attrs.set(key, { value: a.default, span: typeSpan, keySpan: typeSpan });
      }
    }
    return out;
  }

  /** `gpu = H800` stands for `gpu { ...H800 }`. */
  private readPresetAttribute(out: ReadBlock, entry: Attribute, sub: BlockDef, directBlock: Map<string, Block>): void {
    if (entry.value.kind !== "ident") {
      const v = entry.value;
      const fix = v.kind === "string" && /^[A-Za-z_][A-Za-z0-9_]*$/.test(v.value) ? `write '${entry.key} = ${v.value}' (a preset name is not quoted)` : undefined;
      this.sink.report("DSV3001", v.span, { name: entry.key, expected: "a preset name or a block", found: describeValue(v) }, fix);
      out.bad.add(entry.key); // given, though wrongly: not also "missing"
      return;
    }
    const spread: Entry = { kind: "spread", name: entry.value.name, nameSpan: entry.value.span, span: entry.value.span };
    const block: Block = { kind: "block", type: entry.key, typeSpan: entry.keySpan, labels: [], body: [spread], span: entry.span };
    this.readSubBlock(out, block, directBlock, sub);
  }

  private readSubBlock(out: ReadBlock, block: Block, directBlock: Map<string, Block>, knownDef?: BlockDef): void {
    const def = out.def;
    let sub = knownDef ?? own(def.blocks, block.type);
    if (sub === undefined) {
      if (own(def.attrs, block.type) !== undefined) {
        this.sink.report("DSV3001", block.typeSpan, { name: block.type, expected: "a value", found: "a block" }, `write '${block.type} = …'`);
      } else {
        const known = [...Object.keys(def.blocks), ...Object.keys(def.attrs)];
        this.sink.report("DSV2001", block.typeSpan, { name: block.type, where: def.what }, suggestionFix(block.type, known));
        this.markMisspelt(out, block.type, known);
      }
      return;
    }
    if (!this.checkLabels(sub, block)) {
      out.bad.add(block.type); // given, with a wrong label: not also "missing"
      return;
    }
    const identity = sub.repeatable ? `${block.type} ${block.labels[0]?.value ?? ""}` : block.type;
    const earlier = directBlock.get(identity);
    if (earlier) {
      if (sub.repeatable) this.sink.report("DSV2008", block.labels[0]?.span ?? block.typeSpan, { what: sub.what, name: block.labels[0]?.value ?? block.type }, `rename one; the first is at ${where(earlier.labels[0]?.span ?? earlier.typeSpan)}`);
      else this.sink.report("DSV2004", block.typeSpan, { name: block.type, where: def.what === "the spec" ? "" : ` in ${def.what}` }, `merge it into the one at ${where(earlier.typeSpan)}`);
      return;
    }
    directBlock.set(identity, block);
    if (sub.variants) {
      const variant = sub.variants[block.labels[0]!.value]!;
      sub = { ...variant, what: `${block.type} ${block.labels[0]!.value}` };
    }
    const read = this.readBody(sub, block.body, block.typeSpan, block.labels);
    const list = out.blocks.get(block.type);
    if (list) list.push(read);
    else out.blocks.set(block.type, [read]);
  }

  /** A misspelt name (already reported) stands for the known name it is closest to: that is not also reported missing. */
  private markMisspelt(out: ReadBlock, name: string, known: readonly string[]): void {
    const meant = closestName(name, known);
    if (meant !== null && !out.attrs.has(meant)) out.bad.add(meant);
  }

  private checkLabels(def: BlockDef, block: Block): boolean {
    const labels = block.labels;
    const max = def.labels.length;
    const min = def.labels.filter((l) => l.required).length;
    if (labels.length < min || labels.length > max) {
      const expected = max === 0 ? "no label" : min === max ? `${max} label(s): ${def.labels.map((l) => l.what).join(", ")}` : `at most ${max} label(s): ${def.labels.map((l) => l.what).join(", ")}`;
      const at = labels.length > max ? labels[max]!.span : block.typeSpan;
      const fix = def.labels[0]?.values
        ? `write '${block.type} ${def.labels[0].values[0]} { … }' (one of ${def.labels[0].values.join(", ")})`
        : labels.length < min ? `name it: '${block.type} NAME { … }'` : undefined;
      this.sink.report("DSV2012", at, { name: block.type, expected, found: labels.length === 0 ? "none" : labels.map((l) => `'${l.value}'`).join(" ") }, fix);
      return false;
    }
    for (let i = 0; i < labels.length; i++) {
      const ld = def.labels[i]!;
      const l = labels[i]!;
      if (ld.values && !ld.values.includes(l.value)) {
        this.sink.report("DSV2011", l.span, { what: ld.what, name: l.value }, suggestionFix(l.value, ld.values));
        return false;
      }
    }
    return true;
  }

  /** Entries with presets spread in place (preset entries first, so the block's own entries win). */
  private expand(body: readonly Entry[], stack: string[], out: Weighted[] = []): Weighted[] {
    for (const entry of body) {
      if (entry.kind !== "spread") {
        out.push({ entry, fromSpread: stack.length > 0 });
        continue;
      }
      const preset = this.presets.get(entry.name);
      if (preset === undefined) {
        this.unresolvedSpreads++;
        const names = (this.presetNames ??= [...this.presets.keys()]);
        this.presetSuggestionBudget -= names.length;
        this.sink.report("DSV2007", entry.nameSpan, { name: entry.name }, this.presetSuggestionBudget >= 0 ? suggestionFix(entry.name, names) : undefined);
        continue;
      }
      if (stack.includes(entry.name)) {
        this.sink.report("DSV2013", entry.nameSpan, { name: entry.name, cycle: [...stack, entry.name].join(" → ") }, `remove '...${entry.name}'`);
        continue;
      }
      if (stack.length >= MAX_SPREAD_DEPTH) {
        this.unresolvedSpreads++;
        this.sink.report("DSV2015", entry.nameSpan, { name: entry.name, reason: `spreads nest more than ${MAX_SPREAD_DEPTH} levels deep` });
        continue;
      }
      if (this.spreadBudget < preset.body.length) {
        this.unresolvedSpreads++;
        if (this.spreadBudget >= 0) this.sink.report("DSV2015", entry.nameSpan, { name: entry.name, reason: `spreads would expand to more than ${MAX_SPREAD_ENTRIES} entries` });
        this.spreadBudget = -1; // reported once; every later spread is skipped
        continue;
      }
      this.spreadBudget -= preset.body.length;
      this.expand(preset.body, [...stack, entry.name], out); // nested entries all have fromSpread: true
    }
    return out;
  }

  /** Check one value against its type; undefined (after reporting) when it does not fit. */
  private readValue(name: string, type: AttrType, v: Value): AttrValue | undefined {
    const sink = this.sink;
    const mismatch = (expected: string, fix?: string): undefined => {
      sink.report("DSV3001", v.span, { name, expected, found: describeValue(v) }, fix);
      return undefined;
    };
    switch (type.t) {
      case "int":
      case "real": {
        if (v.kind !== "number") return mismatch(type.t === "int" ? "a whole number" : "a number");
        if (v.unit !== null) {
          sink.report("DSV3004", v.span, { name, dimension: "a plain number", unit: v.unit, unitDimension: UNITS.get(v.unit)?.dimension ?? "unknown" }, `write ${v.raw}`);
          return undefined;
        }
        return this.checkNumber(name, type, v.value, v.raw, v.span);
      }
      case "int-or-none": {
        if (v.kind === "ident" && v.name === "none") return null;
        if (v.kind !== "number" || v.unit !== null) return mismatch("a whole number or none", v.kind === "ident" && /^(null|nil|none)$/i.test(v.name) ? "write none" : undefined);
        return this.checkNumber(name, { t: "int", min: type.min, max: type.max }, v.value, v.raw, v.span);
      }
      case "quantity": {
        if (v.kind !== "number") return mismatch(`a quantity in ${type.dimension}`);
        if (v.unit === null) {
          sink.report("DSV3008", v.span, { name, dimension: `a quantity in ${type.dimension}` }, `write ${v.raw} ${exampleUnit(type.dimension)}`);
          return undefined;
        }
        const unit = UNITS.get(v.unit);
        if (unit === undefined) {
          const sameDimension = [...UNITS].filter(([, u]) => u.dimension === type.dimension).map(([k]) => k);
          sink.report("DSV3003", v.span, { unit: v.unit }, suggestionFix(v.unit, sameDimension) ?? `use a unit of ${type.dimension}`);
          return undefined;
        }
        if (unit.dimension !== type.dimension) {
          sink.report("DSV3004", v.span, { name, dimension: `a quantity in ${type.dimension}`, unit: v.unit, unitDimension: unit.dimension }, `write ${v.raw} ${exampleUnit(type.dimension)}`);
          return undefined;
        }
        const base = v.value * unit.factor;
        if (!(base >= type.min && base <= type.max)) {
          sink.report("DSV3005", v.span, { name, value: `${v.raw} ${v.unit}`, range: `[${type.min} .. ${type.max}] ${baseUnit(type.dimension)}` });
          return undefined;
        }
        return base;
      }
      case "bool":
        if (v.kind === "ident" && (v.name === "true" || v.name === "false")) return v.name === "true";
        return mismatch("true or false", v.kind === "ident" && /^(yes|on|True|TRUE)$/.test(v.name) ? "write true" : v.kind === "ident" && /^(no|off|False|FALSE)$/.test(v.name) ? "write false" : undefined);
      case "enum": {
        if (v.kind !== "ident" && v.kind !== "string") return mismatch(`one of ${type.values.join(", ")}`);
        const word = v.kind === "ident" ? v.name : v.value;
        if (!type.values.includes(word)) {
          sink.report("DSV3006", v.span, { name, allowed: type.values.join(", "), value: word }, suggestionFix(word, type.values));
          return undefined;
        }
        return word;
      }
      case "enum-list": {
        const items = v.kind === "list" ? v.items : [v];
        const out: string[] = [];
        let ok = true;
        for (const item of items) {
          const word = this.readValue(name, { t: "enum", values: type.values }, item);
          if (typeof word !== "string") { ok = false; continue; }
          if (out.includes(word)) {
            sink.report("DSV3009", item.span, { name, value: word }, "remove the repeat");
            ok = false;
            continue;
          }
          out.push(word);
        }
        return ok ? out : undefined;
      }
      case "string":
        if (v.kind === "string") return v.value;
        return mismatch("a string", v.kind === "ident" ? `write "${v.name}"` : undefined);
      case "shape": {
        if (v.kind !== "shape") return mismatch("a shape such as 1x128");
        for (const d of [v.rows, v.cols]) {
          if (!(d >= 1 && d <= type.max)) {
            sink.report("DSV3005", v.span, { name, value: `${v.rows}x${v.cols}`, range: `[1 .. ${type.max}] per dimension` });
            return undefined;
          }
        }
        return [v.rows, v.cols] as const;
      }
      case "layers":
        return this.readLayers(name, v);
    }
  }

  private checkNumber(name: string, type: { t: "int" | "real"; min: number; max: number; minExclusive?: boolean }, value: number, raw: string, span: Span): number | undefined {
    if (type.t === "int" && !Number.isInteger(value)) {
      this.sink.report("DSV3002", span, { name, value: raw }, `write ${Math.round(value)}`);
      return undefined;
    }
    const low = type.minExclusive ? value > type.min : value >= type.min;
    if (!low || value > type.max) {
      const range = `${type.minExclusive ? "(" : "["}${type.min} .. ${type.max}]`;
      const clamp = value > type.max ? type.max : type.min;
      this.sink.report("DSV3005", span, { name, value: raw, range }, type.minExclusive && value <= type.min ? `use a value above ${type.min}` : `the nearest valid value is ${clamp}`);
      return undefined;
    }
    return value;
  }

  private readLayers(name: string, v: Value): LayerSet | undefined {
    const items = v.kind === "list" ? v.items : [v];
    const runs: LayerSet["runs"] = [];
    let ok = true;
    const index = (n: Value): number | undefined => {
      if (n.kind !== "number" || n.unit !== null) {
        this.sink.report("DSV3001", n.span, { name, expected: "layer indices or ranges such as 3..60", found: describeValue(n) });
        return undefined;
      }
      return this.checkNumber(name, { t: "int", min: 0, max: 1 << 30 }, n.value, n.raw, n.span);
    };
    for (const item of items) {
      if (item.kind === "range") {
        const a = index(item.from), b = index(item.to);
        if (a === undefined || b === undefined) { ok = false; continue; }
        if (a > b) {
          this.sink.report("DSV3007", item.span, { from: item.from.raw, to: item.to.raw }, `write ${item.to.raw}..${item.from.raw}`);
          ok = false;
          continue;
        }
        runs.push({ first: a, last: b, span: item.span });
      } else if (item.kind === "number") {
        const a = index(item);
        if (a === undefined) {
          ok = false;
          continue;
        }
        runs.push({ first: a, last: a, span: item.span });
      } else {
        this.sink.report("DSV3001", item.span, { name, expected: "layer indices or ranges such as 3..60", found: describeValue(item) });
        ok = false;
      }
    }
    return ok ? { kind: "layers", runs } : undefined;
  }
}

/** `record[key]` for the record's own keys only: a user's `toString` or `__proto__` is no block. */
function own<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

function where(span: Span): string {
  return `${span.file}:${span.line}:${span.col}`;
}

function baseUnit(d: string): string {
  return d === "bytes" ? "B" : d === "bytes/s" ? "B/s" : d === "seconds" ? "s" : d;
}

/** A value in words, for "found …". */
export function describeValue(v: Value): string {
  switch (v.kind) {
    case "number": return v.unit ? `${v.raw} ${v.unit}` : v.raw;
    case "string": return `"${v.value}"`;
    case "ident": return `'${v.name}'`;
    case "range": return `the range ${v.from.raw}..${v.to.raw}`;
    case "shape": return `the shape ${v.rows}x${v.cols}`;
    case "list": return "a list";
  }
}

function exampleValue(a: AttrDef): string {
  const t = a.type;
  switch (t.t) {
    case "int": case "real": case "int-or-none": return String(Math.max(t.min, 1));
    case "quantity": return `1 ${exampleUnit(t.dimension)}`;
    case "bool": return "true";
    case "enum": return t.values[0] ?? "…";
    case "enum-list": return `[${t.values[0] ?? ""}]`;
    case "string": return '"…"';
    case "shape": return "1x128";
    case "layers": return "0..1";
  }
}
