/**
 * Decoupled rotary position embedding with YaRN, as in DeepSeek-V3 (FACTS "Checkpoint and layout
 * conventions").
 *
 * Frequencies: f_i = θ^(−2i/d) for i < d/2 (d = the rope dims, 64 in V3). With YaRN,
 *   low  = floor(d·ln(L₀/(β_fast·2π)) / (2 ln θ)),  high = ceil(d·ln(L₀/(β_slow·2π)) / (2 ln θ)),
 * both clamped to [0, d−1] (high nudged by 0.001 when equal), ramp r_i = clamp((i − low)/(high − low), 0, 1),
 * smooth = 1 − r_i, f_i' = f_i/factor·(1 − smooth) + f_i·smooth: the fast (high-frequency) dims keep
 * their frequency, the slow ones are interpolated by the factor. For V3 (d 64, θ 1e4, L₀ 4096,
 * β 32/1) low = 10, high = 23.
 *
 * Rotation: the pair (x[2i], x[2i+1]) is rotated by the angle p·f_i' at position p, the complex
 * product (x[2i] + i·x[2i+1])·e^{i·p·f_i'} (adjacent pairs, the official inference code's layout).
 * The Hugging Face code multiplies cos and sin by yarn_mscale(factor, mscale) /
 * yarn_mscale(factor, mscale_all_dim) — 1 for V3 and V2 — which this table keeps as `amplitude`.
 *
 * A YaRN spec means YaRN is applied (the checker only keeps a YaRN block that extends the context).
 * The softmax scale is (qk_nope + qk_rope)^−½ · yarn_mscale(factor, mscale_all_dim)², with
 * yarn_mscale(s, m) = 0.1·m·ln s + 1 (1 for s ≤ 1): ≈ 0.13523 for V3.
 */
import type { RopeSpec, YarnSpec } from "../../../compiler/spec.js";
import { yarnMscale } from "../../../compiler/yarn.js";

export { yarnMscale, yarnSoftmaxScale } from "../../../compiler/yarn.js";
import { allocLike, expectCount, expectLength, type RealArray } from "./tensor.js";

/** YaRN's correction range [low, high] of dimension-pair indices (see the module comment). */
export function yarnCorrectionRange(dim: number, theta: number, yarn: YarnSpec): { low: number; high: number } {
  const at = (beta: number): number => (dim * Math.log(yarn.originalContext / (beta * 2 * Math.PI))) / (2 * Math.log(theta));
  const low = Math.max(Math.floor(at(yarn.betaFast)), 0);
  const high = Math.min(Math.ceil(at(yarn.betaSlow)), dim - 1);
  return { low, high };
}

/** The d/2 angular frequencies of the rope dims, YaRN-corrected when the spec has YaRN. */
export function ropeFrequencies(dim: number, rope: RopeSpec): Float64Array {
  expectCount("ropeFrequencies", "dim", dim);
  if (dim % 2 !== 0) throw new RangeError(`ropeFrequencies: the rope dims (${dim}) must be even`);
  const half = dim / 2;
  const f = new Float64Array(half);
  for (let i = 0; i < half; i++) f[i] = 1 / rope.theta ** ((2 * i) / dim);
  const yarn = rope.yarn;
  if (yarn === null) return f;
  const { low, high: rawHigh } = yarnCorrectionRange(dim, rope.theta, yarn);
  const high = rawHigh === low ? rawHigh + 0.001 : rawHigh;
  for (let i = 0; i < half; i++) {
    const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
    const smooth = 1 - ramp;
    f[i] = (f[i]! / yarn.factor) * (1 - smooth) + f[i]! * smooth;
  }
  return f;
}

/** cos and sin of every (position, frequency), times the YaRN amplitude. */
export interface RopeTable {
  /** Rows of the table: one per token. */
  tokens: number;
  /** Pairs per token: dim / 2. */
  half: number;
  /** tokens × half. */
  cos: Float64Array;
  sin: Float64Array;
}

/** The rotation table for rope dims `dim` at the given token positions. */
export function ropeTable(dim: number, rope: RopeSpec, positions: ArrayLike<number>): RopeTable {
  const f = ropeFrequencies(dim, rope);
  const half = dim / 2;
  const amplitude = rope.yarn ? yarnMscale(rope.yarn.factor, rope.yarn.mscale) / yarnMscale(rope.yarn.factor, rope.yarn.mscaleAllDim) : 1;
  const tokens = positions.length;
  const cos = new Float64Array(tokens * half);
  const sin = new Float64Array(tokens * half);
  for (let t = 0; t < tokens; t++) {
    const p = positions[t]!;
    for (let i = 0; i < half; i++) {
      const angle = p * f[i]!;
      cos[t * half + i] = amplitude * Math.cos(angle);
      sin[t * half + i] = amplitude * Math.sin(angle);
    }
  }
  return { tokens, half, cos, sin };
}

/** Positions start, start+1, …, start+count−1. */
export function positionRange(start: number, count: number): Int32Array {
  const p = new Int32Array(count);
  for (let i = 0; i < count; i++) p[i] = start + i;
  return p;
}

function rotate<A extends RealArray>(
  op: string,
  x: A,
  table: RopeTable,
  tokens: number,
  groups: number,
  stride: number,
  offset: number,
  direction: 1 | -1,
): A {
  expectLength(op, "x", x, tokens * groups * stride);
  if (table.tokens !== tokens) throw new RangeError(`${op}: the table has ${table.tokens} positions for ${tokens} tokens`);
  const half = table.half;
  if (offset < 0 || offset + 2 * half > stride) throw new RangeError(`${op}: rope dims [${offset}, ${offset + 2 * half}) outside ${stride}`);
  const y = allocLike(x, x.length);
  y.set(x);
  const { cos, sin } = table;
  for (let t = 0; t < tokens; t++) {
    for (let g = 0; g < groups; g++) {
      const base = (t * groups + g) * stride + offset;
      for (let i = 0; i < half; i++) {
        const c = cos[t * half + i]!;
        const s = direction * sin[t * half + i]!;
        const x0 = x[base + 2 * i]!;
        const x1 = x[base + 2 * i + 1]!;
        y[base + 2 * i] = x0 * c - x1 * s;
        y[base + 2 * i + 1] = x0 * s + x1 * c;
      }
    }
  }
  return y;
}

/**
 * Rotates the rope dims of x, viewed as tokens × groups × stride (groups: heads, or 1 for the shared
 * k_rope), elements [offset, offset + 2·table.half) of each group, token t by table row t. The other
 * elements are copied unchanged. Returns a new array.
 */
export function ropeForward<A extends RealArray>(
  x: A,
  table: RopeTable,
  tokens: number,
  groups: number,
  stride: number,
  offset: number,
): A {
  return rotate("ropeForward", x, table, tokens, groups, stride, offset, 1);
}

/** The gradient of ropeForward: dy rotated back (the transpose of each 2×2 rotation). */
export function ropeBackward<A extends RealArray>(
  dy: A,
  table: RopeTable,
  tokens: number,
  groups: number,
  stride: number,
  offset: number,
): A {
  return rotate("ropeBackward", dy, table, tokens, groups, stride, offset, -1);
}
