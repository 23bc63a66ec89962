/**
 * Tokens of the .dsv3 language (chevrotain 11). Comments are kept in their own group so the printer
 * and formatter can put them back. A unit is only a unit right after a number on the same line
 * (`80 GB`, `160 GB/s`), so words like `s` stay free as names elsewhere.
 */
import { createToken, Lexer, type IToken, type CustomPatternMatcherReturn } from "./chevrotain.js";
import { UNIT_WORD } from "./units.js";

export const WhiteSpace = createToken({ name: "WhiteSpace", pattern: /[ \t\r\n\f\v\u00a0\ufeff]+/, group: Lexer.SKIPPED, line_breaks: true });
export const LineComment = createToken({ name: "LineComment", pattern: /\/\/[^\n\r]*/, group: "comments" });
export const BlockComment = createToken({ name: "BlockComment", pattern: /\/\*(?:[^*]|\*(?!\/))*\*\//, group: "comments", line_breaks: true });
/** Matched only when a block comment runs to the end of the file; reported as DSV1003. */
export const UnterminatedBlockComment = createToken({ name: "UnterminatedBlockComment", pattern: /\/\*[\s\S]*/, group: "errors", line_breaks: true });
export const StringLit = createToken({ name: "StringLit", pattern: /"(?:[^"\\\n\r]|\\[^\n\r])*"/ });
/**
 * A string that reaches the end of its line; reported as DSV1002. It still parses as a string (its
 * category is StringLit), so `name = "H800` does not derail the rest of the file; a `{` that ends the
 * line is left out of it, so `model "tiny {` still opens its block.
 */
export const UnterminatedString = createToken({
  name: "UnterminatedString",
  pattern: { exec: matchUnterminatedString },
  line_breaks: false,
  start_chars_hint: ['"'],
  categories: [StringLit],
});

/** Tried after StringLit: a `"` whose string the line ends first. One pass, so no input makes it slow. */
function matchUnterminatedString(text: string, offset: number): CustomPatternMatcherReturn | null {
  if (text.charCodeAt(offset) !== 34) return null; // '"'
  let end = offset + 1;
  while (end < text.length) {
    const c = text[end];
    if (c === "\n" || c === "\r") break;
    end += c === "\\" && end + 1 < text.length && text[end + 1] !== "\n" && text[end + 1] !== "\r" ? 2 : 1;
  }
  const blank = (i: number): boolean => text[i] === " " || text[i] === "\t";
  while (end > offset + 1 && blank(end - 1)) end--;
  if (end > offset + 1 && text[end - 1] === "{") {
    end--;
    while (end > offset + 1 && blank(end - 1)) end--;
  }
  return [text.slice(offset, end)] as unknown as CustomPatternMatcherReturn;
}

export const Ident = createToken({ name: "Ident", pattern: /[A-Za-z_][A-Za-z0-9_]*|[0-9]+[a-z_][A-Za-z0-9_]*/ });
export const Import = createToken({ name: "Import", pattern: /import/, longer_alt: Ident });
export const Preset = createToken({ name: "Preset", pattern: /preset/, longer_alt: Ident });
/** `1x128`: a shape, lexed before numbers. */
export const Shape = createToken({ name: "Shape", pattern: /[0-9]+x[0-9]+(?![A-Za-z0-9_])/ });
export const NumberLit = createToken({
  name: "NumberLit",
  pattern: /-?[0-9][0-9_]*(?:\.[0-9][0-9_]*)?(?:[eE][+-]?[0-9]+)?/,
  longer_alt: Ident,
});

function matchUnit(text: string, offset: number, matched: IToken[]): CustomPatternMatcherReturn | null {
  const prev = matched[matched.length - 1];
  if (prev === undefined || prev.tokenType !== NumberLit) return null;
  // Only spaces or tabs between the number and the unit.
  for (let i = (prev.endOffset ?? prev.startOffset) + 1; i < offset; i++) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 9) return null;
  }
  UNIT_WORD.lastIndex = offset;
  const m = UNIT_WORD.exec(text);
  if (m === null) return null;
  // `4 sp = true` or `2048 gate {`: the word starts the next entry, it is not a unit.
  let j = offset + m[0].length;
  while (j < text.length && (text[j] === " " || text[j] === "\t")) j++;
  if (text[j] === "=" || text[j] === "{") return null;
  return [m[0]] as unknown as CustomPatternMatcherReturn;
}

export const Unit = createToken({ name: "Unit", pattern: { exec: matchUnit }, line_breaks: false, start_chars_hint: [..."abcdefghijklmnopqrstuvwxyz", ..."ABCDEFGHIJKLMNOPQRSTUVWXYZ"] });

export const LCurly = createToken({ name: "LCurly", pattern: /\{/ });
export const RCurly = createToken({ name: "RCurly", pattern: /\}/ });
export const LBracket = createToken({ name: "LBracket", pattern: /\[/ });
export const RBracket = createToken({ name: "RBracket", pattern: /\]/ });
export const Equals = createToken({ name: "Equals", pattern: /=/ });
/** `key: value` (a YAML habit): reported as DSV1001, then parsed as `=` so the rest of the file still reads. */
export const Colon = createToken({ name: "Colon", pattern: /:/, categories: [Equals] });
export const Comma = createToken({ name: "Comma", pattern: /,/ });
export const Ellipsis = createToken({ name: "Ellipsis", pattern: /\.\.\./ });
export const DotDot = createToken({ name: "DotDot", pattern: /\.\./ });

export const ALL_TOKENS = [
  WhiteSpace,
  LineComment,
  BlockComment,
  UnterminatedBlockComment,
  StringLit,
  UnterminatedString,
  Unit,
  Shape,
  NumberLit,
  Import,
  Preset,
  Ident,
  LCurly,
  RCurly,
  LBracket,
  RBracket,
  Equals,
  Colon,
  Comma,
  Ellipsis,
  DotDot,
];

// Only "\n" ends a line (a lone "\r" is white space), as in diagnostics, the printer and LineIndex.
export const dsv3Lexer = new Lexer(ALL_TOKENS, { ensureOptimizations: false, positionTracking: "full", lineTerminatorsPattern: /\n/g, lineTerminatorCharacters: ["\n"] });
