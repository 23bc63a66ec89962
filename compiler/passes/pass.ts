/**
 * What a pass is: a named, pure function of a ModelGraph and the context it needs. Passes never
 * edit their input (they clone), never read the AST, and return their input unchanged (the same
 * object) when they have nothing to do, so the pipeline can say "unchanged" cheaply.
 */
import type { ModelGraph } from "../graph/ir.js";
import type { PrecisionSpec } from "../spec.js";

export interface PassContext {
  /** The Spec's precision recipe (FP8 or BF16, tiles, cache exceptions, recomputation). */
  precision: PrecisionSpec;
}

export interface Pass {
  /** The name `--dump-after` takes, and the test folder tests/passes/<name>/. */
  name: string;
  run(model: ModelGraph, ctx: PassContext): ModelGraph;
}
