/**
 * `dsv3 check|stats|compile model.ts`: read a TypeScript spec statically (read-ts-spec.ts; the file
 * is never run) and check it with the same checker as a .dsv3 file. Diagnostics of both steps point
 * into the .ts source.
 */
import { checkDocuments, type CheckFileResult } from "../../compiler/check/index.js";
import { makeDiagnostic, sortDiagnostics } from "../diagnostic.js";
import { readSourceFromDisk, type SourceReader } from "../load.js";
import { describeSystemError } from "../system-error.js";
import { readTsSpec } from "./read-ts-spec.js";

/** Whether `file` is a TypeScript spec by its name (`.ts`, `.mts`, `.cts`; not `.d.ts`). */
export function isTsSpecFile(file: string): boolean {
  return /\.[cm]?ts$/.test(file) && !/\.d\.[cm]?ts$/.test(file);
}

/** Read and check a TypeScript spec. Never throws on user input; never runs the file. */
export function checkTsSpecFile(file: string, read: SourceReader = readSourceFromDisk, text?: string): CheckFileResult {
  let source = text;
  if (source === undefined) {
    try {
      source = read(file);
    } catch (e) {
      return { spec: null, diagnostics: [makeDiagnostic("DSV9001", null, { path: file, reason: describeSystemError(e) })], sources: new Map() };
    }
  }
  const sources = new Map([[file, source]]);
  const read1 = readTsSpec(file, source);
  if (read1.document === null) return { spec: null, diagnostics: sortDiagnostics(read1.diagnostics), sources };
  return { ...checkDocuments([read1.document], read1.diagnostics), sources };
}
