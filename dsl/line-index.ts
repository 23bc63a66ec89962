/**
 * Offsets → line:col for one source text: the line starts are found once, each lookup is a binary
 * search. Every reader that makes spans from offsets (the TypeScript spec reader, the Hugging Face
 * config reader, the printer) uses this one.
 */
import type { Span } from "./span.js";

export class LineIndex {
  private readonly starts: number[] = [0];

  constructor(private readonly file: string, text: string) {
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) this.starts.push(i + 1);
  }

  /** The 1-based line holding `offset`. */
  lineOf(offset: number): number {
    let lo = 0, hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  }

  span(offset: number, length: number): Span {
    const line = this.lineOf(offset);
    return { file: this.file, line, col: offset - this.starts[line - 1]! + 1, offset, length };
  }
}
