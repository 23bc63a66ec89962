/**
 * Cross-field rules run on the typed draft Spec. Each rule is a small function; it reports through
 * `ctx.report` at the span of the field it is about. A rule skips silently when a value it needs is
 * unknown (NaN: already reported as missing or invalid), so each independent problem is reported once.
 */
import type { DiagnosticCode } from "../../dsl/diagnostic-catalog.js";
import type { DiagnosticSink, MessageArgs } from "../../dsl/diagnostic.js";
import type { Span } from "../../dsl/span.js";
import type { Spec } from "../spec.js";
import type { SpanIndex } from "./build-spec.js";

export interface RuleContext {
  spec: Spec;
  spans: SpanIndex;
  /** Report at the source of Spec path `path`. */
  report(code: DiagnosticCode, path: string, args: MessageArgs, fix?: string): void;
  /** Report at an explicit span (for things that are not one Spec field, such as a layer range). */
  reportAt(code: DiagnosticCode, span: Span, args: MessageArgs, fix?: string): void;
}

export type Rule = (ctx: RuleContext) => void;

export function makeRuleContext(spec: Spec, spans: SpanIndex, sink: DiagnosticSink): RuleContext {
  return {
    spec,
    spans,
    report: (code, path, args, fix) => sink.report(code, spans.at(path), args, fix),
    reportAt: (code, span, args, fix) => sink.report(code, span, args, fix),
  };
}

/** True when every value is a real number (none missing or invalid). */
export function known(...values: number[]): boolean {
  for (const v of values) if (!Number.isFinite(v)) return false;
  return true;
}
