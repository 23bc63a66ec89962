// A prettier plugin for `.dsv3`, so the usual tooling formats specs:
//
//   npx prettier --plugin ./dist/dsl/prettier-plugin.js --write "specs/**/*.dsv3"
//
/**
 * It is a thin shell over the canonical printer (dsl/print.ts): the parser wraps `parseDocument`, the
 * printer returns `printDocument(document, { source })` as one string. Prettier's own machinery
 * (comment attachment, docs and line fitting) is not used: comments and blank lines are placed by the
 * canonical printer, which is idempotent and keeps every comment.
 *
 * Options: none of prettier's layout options (printWidth, tabWidth, useTabs, …) apply; the layout is
 * fixed by the canonical printer (two-space indentation, one entry a line, lists up to 100
 * characters on one line), so `dsv3 fmt` and prettier always agree. Only `endOfLine` has an effect,
 * as prettier applies it to whatever a printer returns.
 */
import type { AstPath, Parser, Plugin, Printer, SupportLanguage } from "prettier";
import type { Document } from "./ast.js";
import type { Diagnostic } from "./diagnostic.js";
import { sortDiagnostics } from "./diagnostic.js";
import { parseDocument } from "./parser.js";
import { printDocument } from "./print.js";

/**
 * The AST prettier sees. It has no `comments` property on purpose: prettier would try to attach
 * comments itself; the document's comments travel inside `document` and the printer places them.
 */
export interface Dsv3Root {
  type: "dsv3-root";
  document: Document;
  /** The text parsed (prettier has already normalised line endings and removed a BOM). */
  source: string;
}

/** A parse failure, in the shape prettier reports as `file: SyntaxError: message (line:col)` with a code frame. */
export interface Dsv3SyntaxError extends SyntaxError {
  loc: { start: { line: number; column: number } };
  /** Every syntax diagnostic of the file, sorted; the message names the first. */
  diagnostics: Diagnostic[];
}

export const languages: SupportLanguage[] = [
  {
    name: "dsv3",
    parsers: ["dsv3"],
    extensions: [".dsv3"],
    tmScope: "source.dsv3",
    vscodeLanguageIds: ["dsv3"],
  },
];

function syntaxError(diagnostics: Diagnostic[]): Dsv3SyntaxError {
  const first = diagnostics[0]!;
  const line = first.span?.line ?? 1;
  const column = first.span?.col ?? 1;
  const more = diagnostics.length > 1 ? ` (and ${diagnostics.length - 1} more syntax error${diagnostics.length > 2 ? "s" : ""})` : "";
  const error = new SyntaxError(`${first.code}: ${first.message}${more} (${line}:${column})`) as Dsv3SyntaxError;
  error.loc = { start: { line, column } };
  error.diagnostics = diagnostics;
  return error;
}

const dsv3Parser: Parser<Dsv3Root> = {
  astFormat: "dsv3-ast",
  parse(text, options) {
    const file = (options as { filepath?: string } | undefined)?.filepath ?? "<input>.dsv3";
    const { document, diagnostics } = parseDocument(text, file);
    // Any syntax diagnostic refuses the file: printing a recovered AST would drop what did not parse.
    if (diagnostics.all.length > 0) throw syntaxError(sortDiagnostics(diagnostics.all));
    return { type: "dsv3-root", document, source: text };
  },
  locStart: () => 0,
  locEnd: (node) => node.source.length,
};

const dsv3Printer: Printer<Dsv3Root> = {
  print(path: AstPath<Dsv3Root>) {
    const root = path.node;
    // The canonical text ends with exactly one newline (or is empty); prettier appends nothing.
    return printDocument(root.document, { source: root.source });
  },
};

export const parsers: Record<string, Parser<Dsv3Root>> = { dsv3: dsv3Parser };
export const printers: Record<string, Printer<Dsv3Root>> = { "dsv3-ast": dsv3Printer };

const plugin: Plugin<Dsv3Root> = { languages, parsers, printers };
export default plugin;
