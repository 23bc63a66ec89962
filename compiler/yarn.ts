/**
 * YaRN's attention-temperature arithmetic, shared by the checker (which stores each attention's
 * softmax scale in the Spec) and the reference RoPE (which scales the rotary amplitude).
 */
import type { RopeSpec } from "./spec.js";

/** YaRN's attention temperature 0.1·m·ln(factor) + 1 (1 when the factor does not extend). */
export function yarnMscale(factor: number, m: number): number {
  return factor <= 1 ? 1 : 0.1 * m * Math.log(factor) + 1;
}

/** The softmax scale of an attention with query-key head dim `qkHeadDim` (qk_nope + qk_rope for MLA). */
export function yarnSoftmaxScale(qkHeadDim: number, rope: RopeSpec): number {
  const t = rope.yarn ? yarnMscale(rope.yarn.factor, rope.yarn.mscaleAllDim) : 1;
  return qkHeadDim ** -0.5 * t * t;
}
