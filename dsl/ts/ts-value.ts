/**
 * The value of a TypeScript spec, as the static reader (read-ts-spec.ts) evaluates it or as
 * `toDocument` (to-document.ts) finds it at run time: JSON-like data plus builder calls, GPU preset
 * references and preset spreads, every node with the span it came from. to-ast.ts turns it into the
 * AST of the text language.
 */
import type { Span } from "../span.js";
import type { BuilderName } from "./builders.js";

export type TsValue =
  | { k: "number"; value: number; /** digits for the AST's `raw` */ raw: string; span: Span }
  | { k: "string"; value: string; span: Span }
  | { k: "bool"; value: boolean; span: Span }
  | { k: "null"; span: Span }
  | { k: "array"; items: TsValue[]; span: Span }
  | { k: "object"; entries: TsEntry[]; span: Span }
  /** A builder call: `mla({ … })`, `training("t", { … })`. `fields` is null when it could not be read (already reported). */
  | { k: "call"; builder: BuilderName; calleeSpan: Span; labels: { value: string; span: Span }[]; fields: TsValue | null; span: Span }
  /** A built-in GPU preset used as a value: `gpu: H800`. */
  | { k: "gpu"; name: string; span: Span };

export type TsEntry =
  | { kind: "prop"; key: string; keySpan: Span; value: TsValue; span: Span }
  /** `...NAME`: a user preset (its object, to be emitted once as `preset NAME { … }`) or a built-in GPU preset (body null). */
  | { kind: "spread"; name: string; nameSpan: Span; body: TsValue | null; /** the preset's declared name */ declSpan?: Span; span: Span };
