/** Where something is in a source file. Lines and columns are 1-based; offset is 0-based (UTF-16 units). */
export interface Span {
  file: string;
  line: number;
  col: number;
  offset: number;
  length: number;
}

/** The smallest span covering `a` and `b` (same file; `a` starts first). */
export function joinSpans(a: Span, b: Span): Span {
  const end = Math.max(a.offset + a.length, b.offset + b.length);
  return { file: a.file, line: a.line, col: a.col, offset: a.offset, length: end - a.offset };
}
