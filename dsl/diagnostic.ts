/**
 * Diagnostics: a coded message with a location, a severity and, where one exists, a fix.
 * Everything that reports goes through a `DiagnosticSink` (one `report` callback), so one run can
 * collect every independent problem, as Langium's `accept` does.
 */
import { CATALOG, type DiagnosticCode, type Severity } from "./diagnostic-catalog.js";
import type { Span } from "./span.js";

export interface Diagnostic {
  code: DiagnosticCode;
  severity: Severity;
  message: string;
  /** Null only for problems with no place in a source file (a command-line flag, a bundle file). */
  span: Span | null;
  fix?: string;
}

export type MessageArgs = Readonly<Record<string, string | number>>;

/** Fill the catalog template of `code` with `args`. A missing argument is a programming error. */
export function formatMessage(code: DiagnosticCode, args: MessageArgs): string {
  const template: string = CATALOG[code].template;
  return template.replace(/\{\{|\}\}|\{(\w+)\}/g, (whole: string, name: string | undefined) => {
    if (name === undefined) return whole[0]!; // `{{` and `}}` stand for one brace
    const value = args[name];
    if (value === undefined) throw new Error(`diagnostic ${code}: missing argument '${name}'`);
    return String(value);
  });
}

export function makeDiagnostic(code: DiagnosticCode, span: Span | null, args: MessageArgs = {}, fix?: string): Diagnostic {
  const d: Diagnostic = { code, severity: CATALOG[code].severity, message: formatMessage(code, args), span };
  if (fix !== undefined) d.fix = fix;
  return d;
}

/** Collects diagnostics; stages report into it and never throw for user errors. */
export class DiagnosticSink {
  readonly all: Diagnostic[] = [];

  report(code: DiagnosticCode, span: Span | null, args: MessageArgs = {}, fix?: string): void {
    this.all.push(makeDiagnostic(code, span, args, fix));
  }

  add(d: Diagnostic): void {
    this.all.push(d);
  }

  get errorCount(): number {
    let n = 0;
    for (const d of this.all) if (d.severity === "error") n++;
    return n;
  }

  get hasErrors(): boolean {
    return this.errorCount > 0;
  }
}

/** Sort by file, offset, code: one stable order for every output. */
export function sortDiagnostics(list: readonly Diagnostic[]): Diagnostic[] {
  return [...list].sort((a, b) => {
    const fa = a.span?.file ?? "", fb = b.span?.file ?? "";
    if (fa !== fb) return fa < fb ? -1 : 1;
    const oa = a.span?.offset ?? -1, ob = b.span?.offset ?? -1;
    if (oa !== ob) return oa - ob;
    return a.code < b.code ? -1 : a.code > b.code ? 1 : 0;
  });
}

/**
 * `file:line:col: error DSV1234: message`, then the source line with a caret under the span, then the
 * fix. `sources` maps a span's file to its text (absent: no excerpt).
 */
export function renderDiagnostic(d: Diagnostic, sources: ReadonlyMap<string, string>): string {
  const head = d.span ? `${d.span.file}:${d.span.line}:${d.span.col}: ` : "dsv3: ";
  const out = [`${head}${d.severity} ${d.code}: ${d.message}`];
  const text = d.span ? sources.get(d.span.file) : undefined;
  if (d.span && text !== undefined) {
    const lineText = sourceLine(text, d.span.line);
    if (lineText !== null) {
      const gutter = String(d.span.line);
      const pad = " ".repeat(gutter.length);
      const full = lineText.replace(/[\t\r]/g, " ");
      const col = Math.min(d.span.col - 1, full.length);
      // A very long line (minified input, a fuzzer's output) is shown as a window around the caret.
      const from = full.length > MAX_EXCERPT ? Math.max(0, col - EXCERPT_BEFORE) : 0;
      const to = Math.min(full.length, from + MAX_EXCERPT);
      const lead = from > 0 ? "…" : "";
      const visible = `${lead}${full.slice(from, to)}${to < full.length ? "…" : ""}`;
      const start = lead.length + col - from;
      const width = Math.max(1, Math.min(d.span.length, to - col));
      out.push(` ${gutter} | ${visible}`);
      out.push(` ${pad} | ${" ".repeat(start)}^${"~".repeat(width - 1)}`);
    }
  }
  if (d.fix !== undefined) out.push(`  fix: ${d.fix}`);
  return out.join("\n");
}

/** Longest source excerpt shown under a diagnostic, and how much of it precedes the caret when cut. */
const MAX_EXCERPT = 200;
const EXCERPT_BEFORE = 80;

function sourceLine(text: string, line: number): string | null {
  let start = 0;
  for (let i = 1; i < line; i++) {
    const nl = text.indexOf("\n", start);
    if (nl < 0) return null;
    start = nl + 1;
  }
  const end = text.indexOf("\n", start);
  return text.slice(start, end < 0 ? text.length : end).replace(/\r$/, "");
}
