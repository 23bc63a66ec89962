/**
 * The .dsv3 parser: chevrotain CST parser with error recovery, then a CST → AST builder that keeps a
 * span on every node. Parsing never throws on user input: every problem becomes a DSV1xxx diagnostic
 * and the AST holds whatever could be recovered, so the checker can still report what it sees.
 */
import { CstParser, EOF, type CstNode, type IToken, type IRecognitionException, type TokenType } from "./chevrotain.js";
import type { Attribute, Block, Comment, Document, Entry, Label, ListValue, NumberValue, Preset, Spread, TopItem, Value } from "./ast.js";
import { DiagnosticSink } from "./diagnostic.js";
import {
  ALL_TOKENS, Comma, DotDot, dsv3Lexer, Ellipsis, Equals, Ident, Import, LBracket, LCurly, NumberLit, Preset as PresetTok,
  RBracket, RCurly, Shape, StringLit, Unit, UnterminatedString,
} from "./lexer.js";
import { joinSpans, type Span } from "./span.js";

/** Deepest `{`/`[` nesting a document may have; deeper input is refused before parsing (no stack risk). */
export const MAX_NESTING = 64;
/** Largest source file read, in bytes. */
export const MAX_SOURCE_BYTES = 4 * 1024 * 1024;

class Dsv3CstParser extends CstParser {
  constructor() {
    super(ALL_TOKENS, { recoveryEnabled: true, maxLookahead: 3 });
    this.performSelfAnalysis();
  }

  document = this.RULE("document", () => {
    this.MANY(() => {
      this.OR([
        { ALT: () => this.SUBRULE(this.importDecl) },
        { ALT: () => this.SUBRULE(this.presetDecl) },
        { ALT: () => this.SUBRULE(this.block) },
      ]);
    });
  });

  importDecl = this.RULE("importDecl", () => {
    this.CONSUME(Import);
    this.CONSUME(StringLit);
  });

  presetDecl = this.RULE("presetDecl", () => {
    this.CONSUME(PresetTok);
    this.CONSUME(Ident);
    this.SUBRULE(this.body);
  });

  block = this.RULE("block", () => {
    this.CONSUME(Ident);
    this.MANY(() => this.SUBRULE(this.label));
    this.SUBRULE(this.body);
  });

  label = this.RULE("label", () => {
    this.OR([{ ALT: () => this.CONSUME(Ident) }, { ALT: () => this.CONSUME(StringLit) }]);
  });

  body = this.RULE("body", () => {
    this.CONSUME(LCurly);
    this.MANY(() => this.SUBRULE(this.entry));
    this.CONSUME(RCurly);
  });

  entry = this.RULE("entry", () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.spread) },
      { GATE: () => this.LA(2).tokenType === Equals, ALT: () => this.SUBRULE(this.attribute) },
      { ALT: () => this.SUBRULE(this.block) },
    ]);
  });

  spread = this.RULE("spread", () => {
    this.CONSUME(Ellipsis);
    this.CONSUME(Ident);
  });

  attribute = this.RULE("attribute", () => {
    this.CONSUME(Ident);
    this.CONSUME(Equals);
    this.SUBRULE(this.value);
  });

  value = this.RULE("value", () => {
    this.OR([
      {
        ALT: () => {
          this.CONSUME(NumberLit);
          this.OPTION(() => {
            this.OR2([
              { ALT: () => this.CONSUME(Unit) },
              {
                ALT: () => {
                  this.CONSUME(DotDot);
                  this.CONSUME2(NumberLit);
                },
              },
            ]);
          });
        },
      },
      { ALT: () => this.CONSUME(StringLit) },
      { ALT: () => this.CONSUME(Shape) },
      { ALT: () => this.CONSUME(Ident) },
      { ALT: () => this.SUBRULE(this.list) },
    ]);
  });

  list = this.RULE("list", () => {
    this.CONSUME(LBracket);
    this.OPTION(() => {
      this.SUBRULE(this.value);
      this.MANY({
        GATE: () => this.LA(2).tokenType !== RBracket,
        DEF: () => {
          this.CONSUME(Comma);
          this.SUBRULE2(this.value);
        },
      });
      this.OPTION2(() => this.CONSUME2(Comma));
    });
    this.CONSUME(RBracket);
  });
}

let parserInstance: Dsv3CstParser | null = null;
function parserSingleton(): Dsv3CstParser {
  parserInstance ??= new Dsv3CstParser();
  return parserInstance;
}

export interface ParseResult {
  document: Document;
  diagnostics: DiagnosticSink;
}

/** Describe a token for "found …" in a message. */
function describeToken(t: IToken | undefined): string {
  if (t === undefined || t.tokenType === EOF) return "the end of the file";
  const image = t.image.length > 24 ? `${t.image.slice(0, 21)}...` : t.image;
  return `'${image}'`;
}

const TOKEN_WORDS = new Map<TokenType, string>([
  [Ident, "a name"], [StringLit, "a string"], [NumberLit, "a number"], [Shape, "a shape"], [LCurly, "'{'"],
  [RCurly, "'}'"], [LBracket, "'['"], [RBracket, "']'"], [Equals, "'='"], [Comma, "','"], [Ellipsis, "'...'"],
  [DotDot, "'..'"], [Unit, "a unit"], [Import, "'import'"], [PresetTok, "'preset'"],
]);

/** The token a MismatchedTokenException wanted. */
function expectedToken(e: IRecognitionException): TokenType | undefined {
  const m = /Expecting token of type --> (\w+) <--/.exec(e.message);
  return ALL_TOKENS.find((t) => t.name === m?.[1]);
}

/** What a rule would have accepted at the point of failure, in words. */
function expectedFor(e: IRecognitionException): string {
  const rule = e.context.ruleStack[e.context.ruleStack.length - 1];
  switch (e.name) {
    case "MismatchedTokenException": {
      const type = expectedToken(e);
      return (type && TOKEN_WORDS.get(type)) ?? "something else";
    }
    default:
      switch (rule) {
        case "value": return "a value (number, string, name, shape, range or list)";
        case "entry": return "an attribute (key = value), a block, or '...preset'";
        case "document": return "'import', 'preset' or a block";
        case "label": return "a label or '{'";
        default: return "something else";
      }
  }
}

function spanOfToken(file: string, t: IToken): Span {
  return {
    file,
    line: t.startLine ?? 1,
    col: t.startColumn ?? 1,
    offset: t.startOffset,
    length: Math.max(1, (t.endOffset ?? t.startOffset) - t.startOffset + 1),
  };
}

/** The position just past the last character, for problems at the end of the file. */
function endSpan(file: string, text: string): Span {
  let line = 1, col = 1;
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) === 10) { line++; col = 1; } else col++;
  }
  return { file, line, col, offset: text.length, length: 0 };
}

/**
 * Balance check before parsing: unclosed `{`/`[` are reported where they open (better than "found
 * the end of the file"), and nesting beyond MAX_NESTING is refused so the recursive parser can never
 * exhaust the stack.
 */
function checkNesting(file: string, tokens: IToken[], sink: DiagnosticSink): { tooDeep: boolean; unclosed: boolean } {
  const open: IToken[] = [];
  for (const t of tokens) {
    if (t.tokenType === LCurly || t.tokenType === LBracket) {
      open.push(t);
      if (open.length > MAX_NESTING) {
        sink.report("DSV1007", spanOfToken(file, t), { max: MAX_NESTING });
        return { tooDeep: true, unclosed: false };
      }
    } else if (t.tokenType === RCurly || t.tokenType === RBracket) {
      const want = t.tokenType === RCurly ? LCurly : LBracket;
      const at = open.findLastIndex((o) => o.tokenType === want);
      if (at < 0) continue; // a stray closer: the parser reports it
      for (const o of open.splice(at)) {
        if (o.tokenType !== want) sink.report("DSV1005", spanOfToken(file, o), { open: o.image }, `add a matching '${o.tokenType === LCurly ? "}" : "]"}'`);
      }
    }
  }
  for (const t of open) sink.report("DSV1005", spanOfToken(file, t), { open: t.image }, `add a matching '${t.tokenType === LCurly ? "}" : "]"}'`);
  return { tooDeep: false, unclosed: open.length > 0 };
}

export function parseDocument(text: string, file: string): ParseResult {
  const sink = new DiagnosticSink();
  const empty: Document = { kind: "document", file, items: [], comments: [] };
  if (text.length > MAX_SOURCE_BYTES) {
    sink.report("DSV1008", { file, line: 1, col: 1, offset: 0, length: 0 }, { bytes: text.length, max: MAX_SOURCE_BYTES });
    return { document: empty, diagnostics: sink };
  }
  const lexed = dsv3Lexer.tokenize(text);
  for (const e of lexed.errors) {
    const ch = text.slice(e.offset, e.offset + e.length);
    const shown = ch.length === 1 && ch.charCodeAt(0) < 32 ? `U+${ch.charCodeAt(0).toString(16).padStart(4, "0").toUpperCase()}` : `'${ch}'`;
    sink.report("DSV1001", { file, line: e.line ?? 1, col: e.column ?? 1, offset: e.offset, length: e.length }, { char: shown });
  }
  for (const t of lexed.groups["errors"] ?? []) sink.report("DSV1003", spanOfToken(file, t), {}, "close it with '*/'");
  for (const t of lexed.tokens) {
    if (t.tokenType === UnterminatedString) sink.report("DSV1002", { ...spanOfToken(file, t), length: 1 }, {}, "close it with '\"' on the same line");
  }
  const comments: Comment[] = (lexed.groups["comments"] ?? []).map((t) => ({ text: t.image, span: spanOfToken(file, t) }));
  const nesting = checkNesting(file, lexed.tokens, sink);
  if (nesting.tooDeep) return { document: { ...empty, comments }, diagnostics: sink };

  const parser = parserSingleton();
  parser.input = lexed.tokens;
  const cst = parser.document();
  const seen = new Set<number>();
  for (const e of parser.errors) {
    const t = e.token;
    const atEnd = t.tokenType === EOF || Number.isNaN(t.startOffset);
    if (atEnd && nesting.unclosed) continue; // already reported where the bracket opens
    const span = atEnd ? endSpan(file, text) : spanOfToken(file, t);
    if (seen.has(span.offset)) continue;
    seen.add(span.offset);
    const rule = e.context.ruleStack[e.context.ruleStack.length - 1];
    // In a body, anything that is neither an entry nor its closing '}' fails as "expected '}'".
    const notAnEntry = (e.name === "NoViableAltException" && (rule === "entry" || rule === "document"))
      || (e.name === "MismatchedTokenException" && rule === "body" && expectedToken(e) === RCurly);
    if (notAnEntry && !atEnd) {
      sink.report("DSV1009", span, { found: t.image.length > 24 ? `${t.image.slice(0, 21)}...` : t.image });
    } else {
      sink.report("DSV1004", span, { expected: expectedFor(e), found: describeToken(atEnd ? undefined : t) });
    }
  }
  const builder = new AstBuilder(file, sink);
  const items = builder.document(cst);
  return { document: { kind: "document", file, items, comments }, diagnostics: sink };
}

// ── CST → AST ────────────────────────────────────────────────────────────────────────────────

type Children = Record<string, (CstNode | IToken)[] | undefined>;

function tokens(c: Children, name: string): IToken[] {
  return (c[name] ?? []).filter((x): x is IToken => "image" in x && !x.isInsertedInRecovery);
}
function nodes(c: Children, name: string): CstNode[] {
  return (c[name] ?? []).filter((x): x is CstNode => "children" in x);
}

class AstBuilder {
  constructor(private readonly file: string, private readonly sink: DiagnosticSink) {}

  private span(t: IToken): Span {
    return spanOfToken(this.file, t);
  }

  document(node: CstNode): TopItem[] {
    const items: { offset: number; item: TopItem }[] = [];
    for (const n of nodes(node.children, "importDecl")) {
      const item = this.importDecl(n);
      if (item) items.push({ offset: item.span.offset, item });
    }
    for (const n of nodes(node.children, "presetDecl")) {
      const item = this.presetDecl(n);
      if (item) items.push({ offset: item.span.offset, item });
    }
    for (const n of nodes(node.children, "block")) {
      const item = this.block(n);
      if (item) items.push({ offset: item.span.offset, item });
    }
    items.sort((a, b) => a.offset - b.offset);
    return items.map((x) => x.item);
  }

  private importDecl(n: CstNode): TopItem | null {
    const kw = tokens(n.children, "Import")[0];
    const path = tokens(n.children, "StringLit")[0];
    if (!kw || !path) return null;
    const pathSpan = this.span(path);
    return { kind: "import", path: unquote(path), pathSpan, span: joinSpans(this.span(kw), pathSpan) };
  }

  private presetDecl(n: CstNode): Preset | null {
    const kw = tokens(n.children, "Preset")[0];
    const name = tokens(n.children, "Ident")[0];
    const body = nodes(n.children, "body")[0];
    if (!kw || !name || !body) return null;
    const { entries, close } = this.body(body);
    const start = this.span(kw);
    return { kind: "preset", name: name.image, nameSpan: this.span(name), body: entries, span: close ? joinSpans(start, this.span(close)) : start };
  }

  private block(n: CstNode): Block | null {
    const type = tokens(n.children, "Ident")[0];
    const bodyNode = nodes(n.children, "body")[0];
    if (!type || !bodyNode) return null;
    const labels: Label[] = [];
    for (const l of nodes(n.children, "label")) {
      const id = tokens(l.children, "Ident")[0];
      const str = tokens(l.children, "StringLit")[0];
      if (id) labels.push({ kind: "ident", value: id.image, span: this.span(id) });
      else if (str) labels.push({ kind: "string", value: unquote(str), span: this.span(str) });
    }
    const { entries, close } = this.body(bodyNode);
    const typeSpan = this.span(type);
    return { kind: "block", type: type.image, typeSpan, labels, body: entries, span: close ? joinSpans(typeSpan, this.span(close)) : typeSpan };
  }

  private body(n: CstNode): { entries: Entry[]; close: IToken | undefined } {
    const entries: Entry[] = [];
    for (const e of nodes(n.children, "entry")) {
      const s = nodes(e.children, "spread")[0];
      const a = nodes(e.children, "attribute")[0];
      const b = nodes(e.children, "block")[0];
      const entry = s ? this.spread(s) : a ? this.attribute(a) : b ? this.block(b) : null;
      if (entry) entries.push(entry);
    }
    return { entries, close: tokens(n.children, "RCurly")[0] };
  }

  private spread(n: CstNode): Spread | null {
    const dots = tokens(n.children, "Ellipsis")[0];
    const name = tokens(n.children, "Ident")[0];
    if (!dots || !name) return null;
    const nameSpan = this.span(name);
    return { kind: "spread", name: name.image, nameSpan, span: joinSpans(this.span(dots), nameSpan) };
  }

  private attribute(n: CstNode): Attribute | null {
    const key = tokens(n.children, "Ident")[0];
    const v = nodes(n.children, "value")[0];
    if (!key || !v) return null;
    const value = this.value(v);
    if (!value) return null;
    const keySpan = this.span(key);
    return { kind: "attribute", key: key.image, keySpan, value, span: joinSpans(keySpan, value.span) };
  }

  private number(t: IToken): NumberValue | null {
    const raw = t.image;
    const span = this.span(t);
    if (/__|_\.|\._|_$|_e|_E/.test(raw)) {
      // Reported, then read without the underscores, so the attribute is not also reported missing.
      this.sink.report("DSV1006", span, { raw, reason: "underscores go only between digits" }, `write ${raw.replace(/_/g, "")}`);
    }
    const value = Number(raw.replace(/_/g, ""));
    if (!Number.isFinite(value)) {
      this.sink.report("DSV1006", span, { raw, reason: "too large to represent" });
      return null;
    }
    return { kind: "number", value: Object.is(value, -0) ? 0 : value, raw, unit: null, span };
  }

  private value(n: CstNode): Value | null {
    const c = n.children;
    const nums = tokens(c, "NumberLit");
    if (nums.length > 0) {
      const first = this.number(nums[0]!);
      if (!first) return null;
      const unit = tokens(c, "Unit")[0];
      if (unit) return { ...first, unit: unit.image, span: joinSpans(first.span, this.span(unit)) };
      if (tokens(c, "DotDot").length > 0) {
        const second = nums[1] ? this.number(nums[1]) : null;
        if (!second) return null;
        return { kind: "range", from: first, to: second, span: joinSpans(first.span, second.span) };
      }
      return first;
    }
    const str = tokens(c, "StringLit")[0];
    if (str) return { kind: "string", value: unquote(str), span: this.span(str) };
    const shape = tokens(c, "Shape")[0];
    if (shape) {
      const [rows, cols] = shape.image.split("x").map(Number) as [number, number];
      return { kind: "shape", rows, cols, span: this.span(shape) };
    }
    const id = tokens(c, "Ident")[0];
    if (id) return { kind: "ident", name: id.image, span: this.span(id) };
    const list = nodes(c, "list")[0];
    if (list) return this.list(list);
    return null;
  }

  private list(n: CstNode): ListValue | null {
    const open = tokens(n.children, "LBracket")[0];
    const close = tokens(n.children, "RBracket")[0];
    if (!open) return null;
    const items: Value[] = [];
    for (const v of nodes(n.children, "value")) {
      const item = this.value(v);
      if (item) items.push(item);
    }
    const start = this.span(open);
    return { kind: "list", items, span: close ? joinSpans(start, this.span(close)) : start };
  }
}

/**
 * The string a quoted literal denotes: `\n`, `\r`, `\t` are escapes; any other `\x` is `x`. An
 * unterminated string (reported as DSV1002) runs to the end of its line.
 */
function unquote(t: IToken): string {
  const body = t.tokenType === UnterminatedString ? t.image.slice(1) : t.image.slice(1, -1);
  return body.replace(/\\(.)/g, (_, ch: string) => (ch === "n" ? "\n" : ch === "r" ? "\r" : ch === "t" ? "\t" : ch));
}
