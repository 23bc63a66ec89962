/**
 * compiler/check: documents in, a validated Spec (or diagnostics) out.
 *
 *   read-blocks (vocabulary: names, types, units, ranges) → build-spec (defaults, units, derived
 *   figures) → rules (cross-field) → JSON Schema validation.
 *
 * Every user error is reported as a coded diagnostic; one run reports every independent problem.
 */
import type { Document } from "../../dsl/ast.js";
import type { Span } from "../../dsl/span.js";
import { loadSpec, type SourceReader } from "../../dsl/load.js";
import { DiagnosticSink, sortDiagnostics, type Diagnostic } from "../../dsl/diagnostic.js";
import { validateSpec } from "../spec-schema.js";
import type { Spec } from "../spec.js";
import { buildSpec, SpanIndex } from "./build-spec.js";
import { preludePresets } from "./prelude.js";
import { BlockReader } from "./read-blocks.js";
import { makeRuleContext } from "./rule.js";
import { MODEL_RULES } from "./rules-model.js";
import { SCHEDULE_RULES } from "./rules-schedule.js";
import { TOP } from "./vocabulary.js";

export interface CheckResult {
  /** Present only when there are no errors (warnings allowed). */
  spec: Spec | null;
  diagnostics: Diagnostic[];
  /**
   * Where a Spec path (`schedules.train.pp`, `model.attention`) was written, for later stages'
   * diagnostics about the Spec (they never see the AST); absent when the documents did not check.
   */
  locate?: (specPath: string) => Span;
}

const REQUIRED_TOP_BLOCKS = ["model", "precision", "cluster"] as const;

/** Check documents (imports first, entry last) that have already been parsed. */
export function checkDocuments(documents: readonly Document[], earlier: readonly Diagnostic[] = []): CheckResult {
  const sink = new DiagnosticSink();
  for (const d of earlier) sink.add(d);
  const reader = new BlockReader(sink, preludePresets(), documents);
  const top = reader.readTop(TOP, documents);
  // An import that could not be read (already reported) may hold any block: none is reported missing.
  const importFailed = earlier.some((d) => d.code === "DSV2009");
  for (const name of REQUIRED_TOP_BLOCKS) {
    if (!top.blocks.has(name) && !top.bad.has(name) && !importFailed && documents.length > 0) {
      const entry = documents[documents.length - 1]!;
      sink.report("DSV2006", { file: entry.file, line: 1, col: 1, offset: 0, length: 0 }, { name }, `add '${name} { … }'`);
    }
  }
  const model = top.blocks.get("model")?.[0];
  if (model && !model.blocks.has("attention") && !model.bad.has("attention")) sink.report("DSV2014", model.typeSpan, { where: "model", name: "attention" }, "add 'attention mla { … }'");
  const cluster = top.blocks.get("cluster")?.[0];
  if (cluster && !cluster.blocks.has("gpu") && !cluster.bad.has("gpu")) sink.report("DSV2014", cluster.typeSpan, { where: "cluster", name: "gpu" }, "add 'gpu = H800' (or H100, H200)");

  const spans = new SpanIndex();
  const spec = buildSpec(top, spans, documents.map((d) => d.file));
  const ctx = makeRuleContext(spec, spans, sink);
  for (const rule of MODEL_RULES) rule(ctx);
  for (const rule of SCHEDULE_RULES) rule(ctx);

  const diagnostics = sortDiagnostics(sink.all);
  if (sink.hasErrors) return { spec: null, diagnostics };
  const schemaErrors = validateSpec(spec);
  if (schemaErrors.length > 0) {
    throw new Error(`internal error: the checked Spec does not match its schema:\n${schemaErrors.join("\n")}`);
  }
  return { spec, diagnostics, locate: (specPath) => spans.at(specPath) };
}

export interface CheckFileResult extends CheckResult {
  /** File → text of every file read, for rendering diagnostics. */
  sources: Map<string, string>;
}

/** Load `entry` with its imports and check it. Never throws on user input. */
export function checkSpecFile(entry: string, read?: SourceReader, entryText?: string): CheckFileResult {
  const loaded = loadSpec(entry, read, entryText);
  // A file refused unparsed (too large, nested too deep, too many syntax errors) hides what it
  // declares: checking the rest would only add "missing" errors for what may well be in it.
  const refused = loaded.diagnostics.all.some((d) => d.code === "DSV1007" || d.code === "DSV1008" || d.code === "DSV1010");
  if (loaded.documents.length === 0 || refused) return { spec: null, diagnostics: sortDiagnostics(loaded.diagnostics.all), sources: loaded.sources };
  return { ...checkDocuments(loaded.documents, loaded.diagnostics.all), sources: loaded.sources };
}
