/**
 * The AST of a .dsv3 document: what the user wrote, with a span on every node.
 *
 * The language is a small block language. A document holds imports, presets and blocks; a block has a
 * type, optional labels and a body of attributes (`key = value`), nested blocks and preset spreads
 * (`...name`). What each block and attribute means is the checker's business (compiler/check), so the
 * parser, the printer and the formatter stay generic.
 */
import type { Span } from "./span.js";

export interface NumberValue {
  kind: "number";
  value: number;
  /** The digits as written (underscores and exponent kept), for faithful printing. */
  raw: string;
  /** A unit such as `GB`, `GB/s`, `TFLOP/s`, `us`, or null. */
  unit: string | null;
  span: Span;
}

export interface StringValue {
  kind: "string";
  value: string;
  span: Span;
}

/** A bare word: an enum member, `true`/`false`, `none`, or the name of a preset. */
export interface IdentValue {
  kind: "ident";
  name: string;
  span: Span;
}

/** `first..last`, inclusive. */
export interface RangeValue {
  kind: "range";
  from: NumberValue;
  to: NumberValue;
  span: Span;
}

/** `1x128`: a tile or block shape. */
export interface ShapeValue {
  kind: "shape";
  rows: number;
  cols: number;
  span: Span;
}

export interface ListValue {
  kind: "list";
  items: Value[];
  span: Span;
}

export type Value = NumberValue | StringValue | IdentValue | RangeValue | ShapeValue | ListValue;

export interface Attribute {
  kind: "attribute";
  key: string;
  keySpan: Span;
  value: Value;
  span: Span;
}

export interface Spread {
  kind: "spread";
  name: string;
  nameSpan: Span;
  span: Span;
}

export interface Label {
  /** Labels are bare words (`mla`) or strings (`"DeepSeek-V3"`). */
  kind: "ident" | "string";
  value: string;
  span: Span;
}

export interface Block {
  kind: "block";
  type: string;
  typeSpan: Span;
  labels: Label[];
  body: Entry[];
  span: Span;
}

export type Entry = Attribute | Block | Spread;

export interface Import {
  kind: "import";
  path: string;
  pathSpan: Span;
  span: Span;
}

/** `preset NAME { … }`: a named bag of entries that a block can spread with `...NAME`. */
export interface Preset {
  kind: "preset";
  name: string;
  nameSpan: Span;
  body: Entry[];
  span: Span;
}

export type TopItem = Import | Preset | Block;

export interface Comment {
  text: string;
  span: Span;
}

export interface Document {
  kind: "document";
  file: string;
  items: TopItem[];
  /** Every comment in source order (the printer re-attaches them). */
  comments: Comment[];
}
