/**
 * Loading a spec with its imports. An import path is relative to the importing file; imported files
 * come before the importer in the result (so their declarations are seen first), each file once.
 * Missing files and cycles are diagnostics at the import that caused them. File access goes through
 * a `SourceReader`, so tests and tools can load from memory.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Document } from "./ast.js";
import { describeSystemError } from "./system-error.js";
import { DiagnosticSink } from "./diagnostic.js";
import { MAX_SOURCE_BYTES, parseDocument } from "./parser.js";

/** Returns the file's text, or throws an Error whose message says why it cannot be read. */
export type SourceReader = (file: string) => string;

export const readSourceFromDisk: SourceReader = (file) => {
  const buf = readFileSync(file);
  if (buf.length > MAX_SOURCE_BYTES) return buf.subarray(0, MAX_SOURCE_BYTES + 1).toString("utf8");
  return buf.toString("utf8");
};

export interface LoadResult {
  /** Imported files first, the entry file last. */
  documents: Document[];
  /** File (as displayed) → text, for rendering diagnostics. */
  sources: Map<string, string>;
  diagnostics: DiagnosticSink;
}

/** Most files one spec may pull in through imports. */
export const MAX_IMPORTED_FILES = 256;

export function loadSpec(entry: string, read: SourceReader = readSourceFromDisk, entryText?: string): LoadResult {
  const sink = new DiagnosticSink();
  const documents: Document[] = [];
  const sources = new Map<string, string>();
  const done = new Set<string>();

  const visit = (file: string, text: string, stack: string[]): void => {
    sources.set(file, text);
    const parsed = parseDocument(text, file);
    for (const d of parsed.diagnostics.all) sink.add(d);
    for (const item of parsed.document.items) {
      if (item.kind !== "import") continue;
      // Relative to the importing file; an absolute path (not portable, but allowed) as it is.
      const target = path.posix.isAbsolute(item.path) ? path.posix.normalize(item.path) : path.posix.normalize(path.posix.join(path.posix.dirname(file.replace(/\\/g, "/")), item.path));
      if (stack.includes(target) || target === file) {
        sink.report("DSV2010", item.pathSpan, { cycle: [...stack, file, target].slice(stack.indexOf(target) >= 0 ? stack.indexOf(target) : 0).join(" → ") }, "remove one of the imports");
        continue;
      }
      if (done.has(target)) continue;
      if (done.size >= MAX_IMPORTED_FILES) {
        sink.report("DSV2009", item.pathSpan, { path: item.path, reason: `more than ${MAX_IMPORTED_FILES} files imported` });
        continue;
      }
      let imported: string;
      try {
        imported = read(target);
      } catch (e) {
        sink.report("DSV2009", item.pathSpan, { path: item.path, reason: describeSystemError(e) }, `the path is relative to ${path.posix.dirname(file) || "."}/`);
        continue;
      }
      done.add(target);
      visit(target, imported, [...stack, file]);
    }
    documents.push(parsed.document);
  };

  done.add(entry);
  let text = entryText;
  if (text === undefined) {
    try {
      text = read(entry);
    } catch (e) {
      sink.report("DSV9001", null, { path: entry, reason: describeSystemError(e) });
      return { documents, sources, diagnostics: sink };
    }
  }
  visit(entry, text, []);
  return { documents, sources, diagnostics: sink };
}


