/**
 * `toDocument`: the value of a `spec(…)` built at run time → the AST of the text language, with
 * synthetic spans (every node at line 1 of `file`). A program that runs the builders can then check
 * or print what it built; `dsv3 check model.ts` does not come here (it never runs a spec; see
 * read-ts-spec.ts).
 */
import type { Document } from "../ast.js";
import { DiagnosticSink } from "../diagnostic.js";
import type { Span } from "../span.js";
import { BUILDERS, GPU_PRESETS, TAG, type BuilderName, type SpecValue } from "./builders.js";
import { numberRaw, tsValueToDocument } from "./to-ast.js";
import type { TsEntry, TsValue } from "./ts-value.js";

/**
 * Convert a `spec(…)` value to a Document. Throws a TypeError for data no spec can hold (a function,
 * a non-finite number, a cycle) or that does not fit the spec's structure (a schedule that is not
 * one); what the checker judges (unknown attributes, ranges, divisibility) is left to the checker.
 */
export function toDocument(value: SpecValue, file = "<ts>"): Document {
  const span: Span = { file, line: 1, col: 1, offset: 0, length: 0 };
  const root = fromRuntime(value, span, [], "spec");
  const sink = new DiagnosticSink();
  const doc = tsValueToDocument(root, file, sink);
  if (doc === null || sink.hasErrors) {
    throw new TypeError(`not a valid spec value:\n${sink.all.map((d) => `  ${d.code}: ${d.message}`).join("\n")}`);
  }
  return doc;
}

const GPU_BY_VALUE = new Map<unknown, string>(Object.entries(GPU_PRESETS).map(([name, v]) => [v, name]));

const TAGGED_BUILDERS: Readonly<Record<string, (v: Record<string, unknown>) => { builder: BuilderName; labels: unknown[] } | null>> = {
  spec: () => ({ builder: "spec", labels: [] }),
  model: (v) => ({ builder: "model", labels: v.name === null || v.name === undefined ? [] : [v.name] }),
  cluster: (v) => ({ builder: "cluster", labels: v.name === null || v.name === undefined ? [] : [v.name] }),
  attention: (v) => (v.kind === "mla" || v.kind === "mha" || v.kind === "gqa" ? { builder: v.kind, labels: [] } : null),
  ffn: (v) => (v.kind === "dense" || v.kind === "moe" ? { builder: v.kind, labels: [] } : null),
  training: (v) => ({ builder: "training", labels: [v.name] }),
  prefill: (v) => ({ builder: "prefill", labels: [v.name] }),
  decode: (v) => ({ builder: "decode", labels: [v.name] }),
};

function fromRuntime(v: unknown, span: Span, stack: unknown[], path: string): TsValue {
  const fail = (what: string): never => {
    throw new TypeError(`not a valid spec value: ${path} is ${what}`);
  };
  switch (typeof v) {
    case "number":
      if (!Number.isFinite(v)) fail(String(v));
      return { k: "number", value: Object.is(v, -0) ? 0 : v, raw: numberRaw(Object.is(v, -0) ? 0 : v), span };
    case "string":
      return { k: "string", value: v, span };
    case "boolean":
      return { k: "bool", value: v, span };
    case "object":
      break;
    default:
      return fail(`a ${typeof v}`);
  }
  if (v === null) return { k: "null", span };
  if (stack.includes(v)) fail("part of a cycle");
  const inner = [...stack, v];
  const gpu = GPU_BY_VALUE.get(v);
  if (gpu !== undefined) return { k: "gpu", name: gpu, span };
  if (Array.isArray(v)) {
    return { k: "array", items: v.map((item, i) => fromRuntime(item, span, inner, `${path}[${i}]`)), span };
  }
  const record = v as Record<string, unknown>;
  if (Object.hasOwn(record, TAG)) {
    const tag = record[TAG];
    const make = typeof tag === "string" && Object.hasOwn(TAGGED_BUILDERS, tag) ? TAGGED_BUILDERS[tag]!(record) : null;
    if (make === null) return fail(`tagged with an unknown ${TAG} '${String(tag)}'`);
    const labels = make.labels.map((l) => {
      if (typeof l !== "string") fail(`named with ${typeof l}, not a string`);
      return { value: l as string, span };
    });
    const [min, max] = BUILDERS[make.builder].labels;
    if (labels.length < min || labels.length > max) fail(`a ${make.builder}(…) with ${labels.length} name(s)`);
    return { k: "call", builder: make.builder, calleeSpan: span, labels, fields: fromRuntime(record.fields, span, inner, `${path}.fields`), span };
  }
  const entries: TsEntry[] = [];
  for (const [key, value] of Object.entries(record)) {
    if (value === undefined) continue; // an absent optional field
    entries.push({ kind: "prop", key, keySpan: span, value: fromRuntime(value, span, inner, `${path}.${key}`), span });
  }
  return { k: "object", entries, span };
}
