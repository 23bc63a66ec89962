/**
 * The canonical printer: AST → .dsv3 text. Two-space indentation, one entry per line, one blank line
 * between top-level items, lists on one line unless too long. Comments come back where they were:
 * a comment on the line of an entry's end stays after it; other comments stay before the entry that
 * follows them. Blank lines between entries are kept (at most one). Printing never changes what a
 * document means: parse(print(doc)) has the same AST (a property test checks it), and printing is
 * idempotent. The formatter (`dsv3 fmt`, the prettier plugin) is built on this.
 */
import type { Block, Comment, Document, Entry, Label, TopItem, Value } from "./ast.js";
import { LineIndex } from "./line-index.js";

const INDENT = "  ";
const MAX_LIST_WIDTH = 100;

export interface PrintOptions {
  /** The text the document was parsed from: used to keep blank lines between entries. */
  source?: string;
}

/** Quote a string literal; `\` and `"` are escaped, as are line breaks and tabs. */
export function quote(s: string): string {
  return `"${s.replace(/[\\"\n\r\t]/g, (c) => STRING_ESCAPES[c]!)}"`;
}

const STRING_ESCAPES: Record<string, string> = { "\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t" };

const BARE_WORD = /^[A-Za-z_][A-Za-z0-9_]*$/;

function label(l: Label): string {
  return l.kind === "ident" && BARE_WORD.test(l.value) ? l.value : quote(l.value);
}

export function printValue(v: Value): string {
  switch (v.kind) {
    case "number": return v.unit ? `${v.raw} ${v.unit}` : v.raw;
    case "string": return quote(v.value);
    case "ident": return v.name;
    case "range": return `${v.from.raw}..${v.to.raw}`;
    case "shape": return `${v.rows}x${v.cols}`;
    case "list": {
      const items = v.items.map(printValue);
      const flat = `[${items.join(", ")}]`;
      if (flat.length <= MAX_LIST_WIDTH && !flat.includes("\n")) return flat;
      return `[\n${items.map((i) => `${INDENT}${i.replace(/\n/g, `\n${INDENT}`)},`).join("\n")}\n]`;
    }
  }
}

class Printer {
  private readonly out: string[] = [];
  private next = 0; // index of the first comment not yet printed
  private readonly lines: LineIndex | undefined;

  constructor(private readonly comments: readonly Comment[], private readonly source: string | undefined) {
    this.lines = source === undefined ? undefined : new LineIndex("", source);
  }

  /** The line (1-based) on which a node ends; without the source, where it starts. */
  private endLine(node: { span: { line: number; offset: number; length: number } }): number {
    if (this.lines === undefined) return node.span.line;
    return this.lines.lineOf(node.span.offset + Math.max(0, node.span.length - 1));
  }

  private line(depth: number, text: string): void {
    this.out.push(text === "" ? "" : INDENT.repeat(depth) + text.replace(/\n/g, `\n${INDENT.repeat(depth)}`));
  }

  /** Comments that start before `offset`, each on its own line. */
  private leading(offset: number, depth: number): void {
    while (this.next < this.comments.length && this.comments[this.next]!.span.offset < offset) {
      const c = this.comments[this.next]!;
      // Verbatim: the lines of a block comment after its first are not re-indented (doing so would
      // indent them further on every run, and change the comment).
      this.out.push(INDENT.repeat(depth) + c.text);
      this.next++;
      const following = this.comments[this.next];
      const stop = following && following.span.offset < offset ? following.span.offset : offset;
      if (Number.isFinite(stop) && this.newlinesBetween(c.span.offset + c.span.length, stop) >= 2) this.line(0, "");
    }
  }

  /**
   * A comment starting on `line` after `offset` (the end of the entry) is kept at the end of the line,
   * unless it comes after `limit` (where the next entry or the closing '}' starts): in
   * `a = 1 b = 2 // on b`, the comment belongs to `b`, not to `a`.
   */
  private trailing(endOffset: number, line: number, limit = Number.POSITIVE_INFINITY): string {
    const c = this.comments[this.next];
    if (c && c.span.offset >= endOffset && c.span.offset < limit && c.span.line === line && !c.text.includes("\n")) {
      this.next++;
      return ` ${c.text}`;
    }
    return "";
  }

  /** Whether the source has a blank line just before `offset` (skipping comments that precede it). */
  private blankBefore(offset: number, prevEnd: number): boolean {
    if (this.source === undefined || prevEnd < 0) return false;
    const firstComment = this.comments.find((c) => c.span.offset >= prevEnd && c.span.offset < offset);
    return this.newlinesBetween(prevEnd, firstComment ? firstComment.span.offset : offset) >= 2;
  }

  private newlinesBetween(from: number, to: number): number {
    if (this.source === undefined) return 0;
    let n = 0;
    for (let i = from; i < to; i++) if (this.source.charCodeAt(i) === 10) n++;
    return n;
  }

  /** `limit`: where the closing '}' of the body starts. */
  entries(list: readonly Entry[], depth: number, limit = Number.POSITIVE_INFINITY): void {
    let prevEnd = -1;
    for (const [i, e] of list.entries()) {
      if (this.blankBefore(e.span.offset, prevEnd)) this.line(0, "");
      this.leading(e.span.offset, depth);
      this.entry(e, depth, list[i + 1]?.span.offset ?? limit);
      prevEnd = e.span.offset + e.span.length;
    }
  }

  private entry(e: Entry, depth: number, limit: number): void {
    const end = e.span.offset + e.span.length;
    const endLine = this.endLine(e);
    switch (e.kind) {
      case "attribute":
        this.line(depth, `${e.key} = ${printValue(e.value)}${this.trailing(end, endLine, limit)}`);
        return;
      case "spread":
        this.line(depth, `...${e.name}${this.trailing(end, endLine, limit)}`);
        return;
      case "block":
        this.block(e, depth, limit);
    }
  }

  private header(type: string, labels: readonly Label[]): string {
    return [type, ...labels.map(label)].join(" ");
  }

  block(b: Block | { kind: "preset"; name: string; body: Entry[]; span: Block["span"] }, depth: number, limit = Number.POSITIVE_INFINITY): void {
    const head = b.kind === "preset" ? `preset ${b.name}` : this.header(b.type, b.labels);
    const end = b.span.offset + b.span.length;
    const inner = this.comments.some((c, i) => i >= this.next && c.span.offset < end);
    if (b.body.length === 0 && !inner) {
      this.line(depth, `${head} {}${this.trailing(end, this.endLine(b), limit)}`);
      return;
    }
    const firstLine = b.body[0]?.span.line ?? b.span.line;
    this.line(depth, `${head} {${this.trailing(b.body[0]?.span.offset ?? b.span.offset, b.span.line === firstLine ? -1 : b.span.line)}`);
    this.entries(b.body, depth + 1, end - 1);
    this.leading(end - 1, depth + 1);
    this.line(depth, `}${this.trailing(end, this.endLine(b), limit)}`);
  }

  top(items: readonly TopItem[]): void {
    let first = true;
    for (const [i, item] of items.entries()) {
      if (!first) this.line(0, "");
      first = false;
      this.leading(item.span.offset, 0);
      const limit = items[i + 1]?.span.offset;
      if (item.kind === "import") this.line(0, `import ${quote(item.path)}${this.trailing(item.span.offset + item.span.length, item.span.line, limit)}`);
      else this.block(item, 0, limit);
    }
    if (this.next < this.comments.length) {
      if (!first) this.line(0, "");
      this.leading(Number.POSITIVE_INFINITY, 0);
    }
  }

  text(): string {
    return this.out.length === 0 ? "" : this.out.join("\n") + "\n";
  }
}

export function printDocument(doc: Document, options: PrintOptions = {}): string {
  const p = new Printer(doc.comments, options.source);
  p.top(doc.items);
  return p.text();
}
