/**
 * The .dsv3 parser: chevrotain CST parser with error recovery, then a CST → AST builder that keeps a
 * span on every node. Parsing never throws on user input: every problem becomes a DSV1xxx diagnostic
 * and the AST holds whatever could be recovered, so the checker can still report what it sees.
 */
import { CstParser, EOF, type CstNode, type IToken, type IRecognitionException, type TokenType } from "./chevrotain.js";
import type { Attribute, Block, Comment, Document, Entry, Label, ListValue, NumberValue, Preset, Spread, TopItem, Value } from "./ast.js";
import { DiagnosticSink } from "./diagnostic.js";
import {
  ALL_TOKENS, Colon, Comma, DotDot, dsv3Lexer, Ellipsis, Equals, Ident, Import, LBracket, LCurly, NumberLit, Preset as PresetTok,
  RBracket, RCurly, Shape, StringLit, Unit, UnterminatedString,
} from "./lexer.js";
import { joinSpans, type Span } from "./span.js";

/** Deepest `{`/`[` nesting a document may have; deeper input is refused before parsing (no stack risk). */
export const MAX_NESTING = 64;
/** Most unclosed brackets put back by indentation (each costs a pass over the tokens); the rest are only reported. */
const MAX_REPAIRS = 8;
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
      { GATE: () => this.LA(2).tokenType === Equals || this.LA(2).tokenType === Colon, ALT: () => this.SUBRULE(this.attribute) },
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

  /** `[a, b, c]`, a trailing comma allowed. A missing comma parses, and is reported by the AST builder. */
  list = this.RULE("list", () => {
    this.CONSUME(LBracket);
    this.MANY(() => {
      this.SUBRULE(this.value);
      this.OPTION(() => this.CONSUME(Comma));
    });
    this.CONSUME(RBracket);
  });
}

/**
 * Syntax errors the parser reports before it stops reading the file. Each error costs chevrotain's
 * recovery ≈40 µs, so without a cap a large file of garbage would take a minute.
 */
export const MAX_SYNTAX_ERRORS = 200;

/** Thrown through chevrotain (it rethrows what is not a recognition exception) to stop the parse. */
class TooManySyntaxErrors extends Error {}

let parserInstance: Dsv3CstParser | null = null;
let savedErrors = 0;

function parserSingleton(): Dsv3CstParser {
  if (parserInstance === null) {
    const parser = new Dsv3CstParser();
    // chevrotain records every error through SAVE_ERROR (not in its typings): count them there.
    const hook = parser as unknown as { SAVE_ERROR(e: unknown): unknown };
    const save = hook.SAVE_ERROR.bind(parser);
    hook.SAVE_ERROR = (e) => {
      if (++savedErrors > MAX_SYNTAX_ERRORS) throw new TooManySyntaxErrors();
      return save(e);
    };
    parserInstance = parser;
  }
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
      if (type === undefined && /--> EOF <--/.test(e.message)) return "'import', 'preset' or a block";
      if (type === RBracket && rule === "list") return "a value or ']'";
      return (type && TOKEN_WORDS.get(type)) ?? "something else";
    }
    case "NotAllInputParsedException": // left over at the top level, such as a stray '}'
      return "'import', 'preset' or a block";
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
 *
 * When brackets do not balance, indentation says which one was left open: a `}` that stands first on
 * its line, left of the line that opened the `{` it closes, belongs to an outer block. The opener it
 * would have closed is reported, and a closer (marked as inserted in recovery) is put back before the
 * first later line indented no deeper than the opener's, so the rest of the file parses as written.
 */
function checkNesting(file: string, tokens: IToken[], sink: DiagnosticSink): { tokens: IToken[]; tooDeep: boolean; unclosed: boolean } {
  const open: IToken[] = [];
  let crossed = false;
  for (const t of tokens) {
    if (t.tokenType === LCurly || t.tokenType === LBracket) {
      open.push(t);
      if (open.length > MAX_NESTING) {
        sink.report("DSV1007", spanOfToken(file, t), { max: MAX_NESTING });
        return { tokens, tooDeep: true, unclosed: false };
      }
    } else if (t.tokenType === RCurly || t.tokenType === RBracket) {
      const want = t.tokenType === RCurly ? LCurly : LBracket;
      const at = open.findLastIndex((o) => o.tokenType === want);
      if (at >= 0 && at < open.length - 1) crossed = true;
      if (at >= 0) open.splice(at);
    }
  }
  if (open.length === 0 && !crossed) return { tokens, tooDeep: false, unclosed: false }; // balanced

  const indent = new Map<number, number>(); // line → column of its first token
  for (const t of tokens) if (!indent.has(t.startLine ?? 1)) indent.set(t.startLine ?? 1, t.startColumn ?? 1);
  const indentOf = (t: IToken): number => indent.get(t.startLine ?? 1) ?? 1;
  const firstOnLine = (t: IToken): boolean => !t.isInsertedInRecovery && indentOf(t) === t.startColumn;

  const reported = new Set<number>();
  const report = (o: IToken): void => {
    if (reported.has(o.startOffset)) return;
    reported.add(o.startOffset);
    sink.report("DSV1005", spanOfToken(file, o), { open: o.image }, `add a matching '${o.tokenType === LCurly ? "}" : "]"}'`);
  };
  // A closer first on its line, left of the line that opened what it closes.
  const isOutdented = (o: IToken, c: IToken): boolean => firstOnLine(c) && (c.startColumn ?? 1) < indentOf(o);
  const list = [...tokens];
  for (let round = 0; ; round++) {
    const { outdented: pairs, unclosed } = matchBrackets(list, isOutdented);
    const last = unclosed[unclosed.length - 1];
    if (last === undefined) break;
    if (round === MAX_REPAIRS) { // enough repairs: report the rest where they open
      for (const o of unclosed) report(o);
      break;
    }
    const outdented = pairs.find(([o]) => o.tokenType === last.tokenType && o.startOffset > last.startOffset);
    const blamed = outdented?.[0] ?? last;
    report(blamed);
    // Where its closer belongs: before the first later line indented no deeper than the opener's line.
    // An unindented body gives no evidence: only then is a '{' left to the parser to close at the end.
    const from = list.indexOf(blamed);
    const depth = indentOf(blamed);
    let at = list.length;
    let indented = false;
    for (let i = from + 1; i < list.length; i++) {
      const t = list[i]!;
      if (t.startLine === blamed.startLine || !firstOnLine(t)) continue;
      if ((t.startColumn ?? 1) > depth) indented = true;
      else { at = i; break; }
    }
    if (outdented === undefined && blamed.tokenType === LCurly && !indented && at < list.length) {
      for (const o of unclosed) report(o);
      break;
    }
    const next = list[at];
    const closer = blamed.tokenType === LCurly ? RCurly : RBracket;
    const offset = next?.startOffset ?? (list[list.length - 1]!.endOffset ?? 0) + 1;
    const inserted: IToken = {
      image: closer === RCurly ? "}" : "]",
      tokenType: closer,
      tokenTypeIdx: closer.tokenTypeIdx!,
      startOffset: offset,
      endOffset: offset,
      startLine: next?.startLine ?? list[list.length - 1]!.endLine ?? 1,
      startColumn: next?.startColumn ?? (list[list.length - 1]!.endColumn ?? 0) + 1,
      isInsertedInRecovery: true,
    };
    list.splice(at, 0, inserted);
  }
  return { tokens: list, tooDeep: false, unclosed: reported.size > 0 };
}

/**
 * Pair each closer with the nearest opener of its kind; return the pairs `suspect` picks, in the
 * order of their closers. Unclosed: openers of the other kind in between (`[` in `{ [ }`) and openers
 * left at the end, in source order.
 */
function matchBrackets(tokens: readonly IToken[], suspect: (opener: IToken, closer: IToken) => boolean): { outdented: [IToken, IToken][]; unclosed: IToken[] } {
  const open: IToken[] = [];
  const pairs: [IToken, IToken][] = [];
  const crossed: IToken[] = [];
  for (const t of tokens) {
    if (t.tokenType === LCurly || t.tokenType === LBracket) {
      open.push(t);
    } else if (t.tokenType === RCurly || t.tokenType === RBracket) {
      const want = t.tokenType === RCurly ? LCurly : LBracket;
      const at = open.findLastIndex((o) => o.tokenType === want);
      if (at < 0) continue; // a stray closer: the parser reports it
      const [opener, ...inner] = open.splice(at);
      if (suspect(opener!, t)) pairs.push([opener!, t]);
      crossed.push(...inner);
    }
  }
  return { outdented: pairs, unclosed: [...crossed, ...open].sort((a, b) => a.startOffset - b.startOffset) };
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
  const seen = new Set<number>(); // offsets already reported; the parser adds nothing there
  for (const t of lexed.tokens) {
    if (t.tokenType === UnterminatedString) sink.report("DSV1002", { ...spanOfToken(file, t), length: 1 }, {}, "close it with '\"' on the same line");
    if (t.tokenType === Colon) {
      sink.report("DSV1001", spanOfToken(file, t), { char: "':'" }, "write '=' between a key and its value");
      seen.add(t.startOffset);
    }
  }
  const comments: Comment[] = (lexed.groups["comments"] ?? []).map((t) => ({ text: t.image, span: spanOfToken(file, t) }));
  const nesting = checkNesting(file, lexed.tokens, sink);
  if (nesting.tooDeep) return { document: { ...empty, comments }, diagnostics: sink };

  const parser = parserSingleton();
  parser.input = nesting.tokens;
  savedErrors = 0;
  let cst: CstNode | null = null;
  try {
    cst = parser.document();
  } catch (e) {
    if (!(e instanceof TooManySyntaxErrors)) throw e;
  }
  for (const e of parser.errors) {
    const t = e.token;
    // Closers put back by checkNesting sit past the end of the text: they count as the end too.
    const atEnd = t.tokenType === EOF || Number.isNaN(t.startOffset) || t.startOffset >= text.length;
    // Already reported where the bracket opens (DSV1005): nothing to add at the end or at a closer put back.
    if ((atEnd || t.isInsertedInRecovery === true) && nesting.unclosed) continue;
    const span = atEnd ? endSpan(file, text) : spanOfToken(file, t);
    if (seen.has(span.offset)) continue;
    seen.add(span.offset);
    const rule = e.context.ruleStack[e.context.ruleStack.length - 1];
    // In a body, anything that is neither an entry nor its closing '}' fails as "expected '}'".
    const notAnEntry = (e.name === "NoViableAltException" && (rule === "entry" || rule === "document"))
      || (e.name === "MismatchedTokenException" && rule === "body" && expectedToken(e) === RCurly);
    if (notAnEntry && !atEnd) {
      sink.report("DSV1009", span, { found: t.image.length > 24 ? `${t.image.slice(0, 21)}...` : t.image }, t.tokenType === Comma ? "remove it: entries need no separator" : undefined);
    } else {
      sink.report("DSV1004", span, { expected: expectedFor(e), found: describeToken(atEnd ? undefined : t) });
    }
  }
  if (cst === null) {
    // Stopped: what was read is not reliable enough to check; say where reading stopped.
    const last = parser.errors[parser.errors.length - 1];
    const at = last && !Number.isNaN(last.token.startOffset) && last.token.startOffset < text.length ? spanOfToken(file, last.token) : endSpan(file, text);
    sink.report("DSV1010", at, { max: MAX_SYNTAX_ERRORS }, "fix the first errors and check again");
    return { document: { ...empty, comments }, diagnostics: sink };
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
function firstToken(n: CstNode): IToken | undefined {
  let first: IToken | undefined;
  for (const x of Object.values(n.children as Children).flat()) {
    const t = x === undefined ? undefined : "image" in x ? x : firstToken(x);
    if (t && !t.isInsertedInRecovery && (first === undefined || t.startOffset < first.startOffset)) first = t;
  }
  return first;
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
    const commas = tokens(n.children, "Comma").map((t) => t.startOffset);
    let comma = 0; // commas and items are both in source order: one pass, not one scan per item
    for (const v of nodes(n.children, "value")) {
      const item = this.value(v);
      if (!item) continue;
      const prev = items[items.length - 1];
      if (prev) while (comma < commas.length && commas[comma]! < prev.span.offset + prev.span.length) comma++;
      if (prev && !(comma < commas.length && commas[comma]! < item.span.offset)) {
        this.sink.report("DSV1004", item.span, { expected: "',' or ']'", found: describeToken(firstToken(v)) }, "separate list items with ','");
      }
      items.push(item);
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
