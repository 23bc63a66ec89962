/**
 * Multi-head latent attention (MLA), DeepSeek-V2/V3, in its two equivalent forms.
 *
 * Weights (checkpoint names and [out, in] layouts; H heads, n = qk_nope, r = qk_rope, v = v_head,
 * c = kv_lora_rank, d = hidden):
 *   q_a_proj [q_lora, d] → q_a_layernorm [q_lora] → q_b_proj [H·(n+r), q_lora]   (q_lora_rank set)
 *   q_proj [H·(n+r), d]                                                          (q_lora_rank none)
 *   kv_a_proj_with_mqa [c + r, d] → output [latent (c) | k_rope (r)]; kv_a_layernorm [c] on the latent
 *   kv_b_proj [H·(n+v), c] → per head [k_nope (n) | v (v)]
 *   o_proj [d, H·v]
 * The query of each head is [q_nope (n) | q_rope (r)]; RoPE rotates q_rope and the single k_rope that
 * all heads share (adjacent pairs, rope.ts).
 *
 * Naive form (training, prefill): K_h = [k_nope_h | k_rope], V_h = v_h per head, causal attention
 * with heads = kvHeads = H, scale = the spec's softmax scale, then o_proj.
 *
 * Absorbed form (decode, the latent KV cache): the cache holds, per token, the normalised latent c_kv
 * (c) and the rotated k_rope (r) — 576 elements for V3. With W_UK_h = kv_b rows [h(n+v), h(n+v)+n)
 * and W_UV_h = rows [h(n+v)+n, (h+1)(n+v)), q_nope·k_nope = (W_UK_hᵀ·q_nope)·c_kv, so each head's query
 * becomes [W_UK_hᵀ·q_nope_h | q_rope_h] (c + r dims) against one shared key [c_kv | k_rope] and one
 * shared value c_kv (attention with kvHeads = 1); W_UV_h maps the c-dim result back to v dims before
 * o_proj. Mathematically identical to the naive form; the tests check it to FP64 rounding.
 *
 * Positions: the naive form places its T tokens at startPosition … startPosition+T−1; the absorbed
 * form's T queries are the last T entries of an S-token cache (positions S−T … S−1, causal within).
 */
import type { MlaSpec } from "../../../compiler/spec.js";
import { attentionBackward, attentionForward, type AttentionShape } from "./attention.js";
import { linearBackward, linearForward } from "./linear.js";
import { rmsnormBackward, rmsnormForward } from "./rmsnorm.js";
import { positionRange, ropeBackward, ropeForward, ropeTable, type RopeTable } from "./rope.js";
import { addCols, addInto, allocLike, expectCount, expectLength, sliceCols, type RealArray } from "./tensor.js";

export interface MlaConfig {
  hidden: number;
  normEps: number;
  attention: MlaSpec;
}

export interface MlaWeights<A extends RealArray> {
  /** q_a_proj [q_lora, hidden], or null without q_lora. */
  qA: A | null;
  /** q_a_layernorm [q_lora], or null without q_lora. */
  qANorm: A | null;
  /** q_b_proj [H·(n+r), q_lora], or null without q_lora. */
  qB: A | null;
  /** q_proj [H·(n+r), hidden], or null with q_lora. */
  q: A | null;
  /** kv_a_proj_with_mqa [c + r, hidden]. */
  kvA: A;
  /** kv_a_layernorm [c]. */
  kvANorm: A;
  /** kv_b_proj [H·(n+v), c]. */
  kvB: A;
  /** o_proj [hidden, H·v]. */
  o: A;
}

/** Gradients have the weights' shapes (null where the weight is absent). */
export type MlaGrads<A extends RealArray> = MlaWeights<A>;

export type MlaWeightName = keyof MlaWeights<Float32Array>;

/** Element count of each weight (null where absent). */
export function mlaWeightSizes(cfg: MlaConfig): Record<MlaWeightName, number | null> {
  const a = cfg.attention;
  const d = cfg.hidden;
  const qk = a.qkNopeHeadDim + a.qkRopeHeadDim;
  const ql = a.qLoraRank;
  return {
    qA: ql === null ? null : ql * d,
    qANorm: ql,
    qB: ql === null ? null : a.heads * qk * ql,
    q: ql === null ? a.heads * qk * d : null,
    kvA: (a.kvLoraRank + a.qkRopeHeadDim) * d,
    kvANorm: a.kvLoraRank,
    kvB: a.heads * (a.qkNopeHeadDim + a.vHeadDim) * a.kvLoraRank,
    o: d * a.heads * a.vHeadDim,
  };
}

function checkWeights<A extends RealArray>(op: string, w: MlaWeights<A>, cfg: MlaConfig): void {
  const sizes = mlaWeightSizes(cfg);
  for (const name of Object.keys(sizes) as MlaWeightName[]) {
    const want = sizes[name];
    const got = w[name];
    if (want === null) {
      if (got !== null) throw new RangeError(`${op}: weight ${name} must be null for this config`);
    } else if (got === null) throw new RangeError(`${op}: weight ${name} is missing`);
    else expectLength(op, name, got, want);
  }
}

function zeroGrads<A extends RealArray>(like: A, cfg: MlaConfig): MlaGrads<A> {
  const s = mlaWeightSizes(cfg);
  const z = (n: number | null): A | null => (n === null ? null : allocLike(like, n));
  return {
    qA: z(s.qA),
    qANorm: z(s.qANorm),
    qB: z(s.qB),
    q: z(s.q),
    kvA: allocLike(like, s.kvA!),
    kvANorm: allocLike(like, s.kvANorm!),
    kvB: allocLike(like, s.kvB!),
    o: allocLike(like, s.o!),
  };
}

// ---------------------------------------------------------------------------------------------
// The latent KV path: kv_a → [latent | k_rope], RMSNorm(latent), RoPE(k_rope)

/** The latent KV cache of S tokens: what decode keeps per token and layer. */
export interface MlaLatentCache<A extends RealArray> {
  tokens: number;
  /** The normalised latent c_kv, tokens × kv_lora_rank. */
  latent: A;
  /** The rotated shared RoPE key, tokens × qk_rope. */
  kRope: A;
}

export interface MlaLatentSaved<A extends RealArray> {
  /** kv_a_proj_with_mqa output, tokens × (c + r). */
  kvAOut: A;
  table: RopeTable;
}

/** The latent cache of x (tokens × hidden) at positions startPosition…; `saved` is for the backward. */
export function mlaLatentForward<A extends RealArray>(
  x: A,
  w: Pick<MlaWeights<A>, "kvA" | "kvANorm">,
  cfg: MlaConfig,
  tokens: number,
  startPosition = 0,
): { cache: MlaLatentCache<A>; saved: MlaLatentSaved<A> } {
  const a = cfg.attention;
  const c = a.kvLoraRank;
  const r = a.qkRopeHeadDim;
  const kvAOut = linearForward(x, w.kvA, tokens, cfg.hidden, c + r);
  const latent = rmsnormForward(sliceCols(kvAOut, tokens, c + r, 0, c), w.kvANorm, tokens, c, cfg.normEps);
  const table = ropeTable(r, a.rope, positionRange(startPosition, tokens));
  const kRope = ropeForward(sliceCols(kvAOut, tokens, c + r, c, r), table, tokens, 1, r, 0);
  return { cache: { tokens, latent, kRope }, saved: { kvAOut, table } };
}

/** Gradients of mlaLatentForward given the gradients of the cache's latent and k_rope. */
export function mlaLatentBackward<A extends RealArray>(
  dLatent: A,
  dKRope: A,
  x: A,
  w: Pick<MlaWeights<A>, "kvA" | "kvANorm">,
  cfg: MlaConfig,
  saved: MlaLatentSaved<A>,
): { dx: A; dKvA: A; dKvANorm: A } {
  const a = cfg.attention;
  const c = a.kvLoraRank;
  const r = a.qkRopeHeadDim;
  const tokens = saved.table.tokens;
  const norm = rmsnormBackward(dLatent, sliceCols(saved.kvAOut, tokens, c + r, 0, c), w.kvANorm, tokens, c, cfg.normEps);
  const dKr = ropeBackward(dKRope, saved.table, tokens, 1, r, 0);
  const dKvAOut = allocLike(dLatent, tokens * (c + r));
  addCols(dKvAOut, tokens, c + r, 0, norm.dx, c);
  addCols(dKvAOut, tokens, c + r, c, dKr, r);
  const lin = linearBackward(dKvAOut, x, w.kvA, tokens, cfg.hidden, c + r);
  return { dx: lin.dx, dKvA: lin.dw, dKvANorm: norm.dw };
}

// ---------------------------------------------------------------------------------------------
// The query path: [q_a → RMSNorm → q_b | q_proj] → per head [q_nope | RoPE(q_rope)]

interface QuerySaved<A extends RealArray> {
  /** q_a_proj output (q_lora only). */
  qAOut: A | null;
  /** RMSNorm(q_a output) (q_lora only). */
  qANormed: A | null;
  table: RopeTable;
}

function queryForward<A extends RealArray>(
  x: A,
  w: MlaWeights<A>,
  cfg: MlaConfig,
  tokens: number,
  startPosition: number,
): { q: A; saved: QuerySaved<A> } {
  const a = cfg.attention;
  const qk = a.qkNopeHeadDim + a.qkRopeHeadDim;
  const d = cfg.hidden;
  let qRaw: A;
  let qAOut: A | null = null;
  let qANormed: A | null = null;
  if (a.qLoraRank !== null) {
    qAOut = linearForward(x, w.qA!, tokens, d, a.qLoraRank);
    qANormed = rmsnormForward(qAOut, w.qANorm!, tokens, a.qLoraRank, cfg.normEps);
    qRaw = linearForward(qANormed, w.qB!, tokens, a.qLoraRank, a.heads * qk);
  } else {
    qRaw = linearForward(x, w.q!, tokens, d, a.heads * qk);
  }
  const table = ropeTable(a.qkRopeHeadDim, a.rope, positionRange(startPosition, tokens));
  const q = ropeForward(qRaw, table, tokens, a.heads, qk, a.qkNopeHeadDim);
  return { q, saved: { qAOut, qANormed, table } };
}

/** Backward of the query path from dq (w.r.t. the rotated query); adds weight gradients into g. */
function queryBackward<A extends RealArray>(
  dq: A,
  x: A,
  w: MlaWeights<A>,
  cfg: MlaConfig,
  saved: QuerySaved<A>,
  g: MlaGrads<A>,
): A {
  const a = cfg.attention;
  const qk = a.qkNopeHeadDim + a.qkRopeHeadDim;
  const d = cfg.hidden;
  const tokens = saved.table.tokens;
  const dqRaw = ropeBackward(dq, saved.table, tokens, a.heads, qk, a.qkNopeHeadDim);
  if (a.qLoraRank !== null) {
    const b = linearBackward(dqRaw, saved.qANormed!, w.qB!, tokens, a.qLoraRank, a.heads * qk);
    addInto(g.qB!, b.dw);
    const n = rmsnormBackward(b.dx, saved.qAOut!, w.qANorm!, tokens, a.qLoraRank, cfg.normEps);
    addInto(g.qANorm!, n.dw);
    const aa = linearBackward(n.dx, x, w.qA!, tokens, d, a.qLoraRank);
    addInto(g.qA!, aa.dw);
    return aa.dx;
  }
  const p = linearBackward(dqRaw, x, w.q!, tokens, d, a.heads * qk);
  addInto(g.q!, p.dw);
  return p.dx;
}

// ---------------------------------------------------------------------------------------------
// Naive form

export interface MlaNaiveCache<A extends RealArray> {
  tokens: number;
  query: QuerySaved<A>;
  latentSaved: MlaLatentSaved<A>;
  latent: MlaLatentCache<A>;
  /** kv_b output, tokens × H·(n+v). */
  kvBOut: A;
  /** Attention inputs: q [T,H,n+r], k [T,H,n+r], v [T,H,v]. */
  q: A;
  k: A;
  v: A;
  probs: A;
  /** Attention output, T × H·v (o_proj's input). */
  attnOut: A;
}

function attentionShapeNaive(cfg: MlaConfig, tokens: number): AttentionShape {
  const a = cfg.attention;
  return {
    tq: tokens,
    tk: tokens,
    heads: a.heads,
    kvHeads: a.heads,
    dk: a.qkNopeHeadDim + a.qkRopeHeadDim,
    dv: a.vHeadDim,
    scale: a.softmaxScale,
  };
}

/** MLA over one sequence x (tokens × hidden) at positions startPosition…, naive form. */
export function mlaForward<A extends RealArray>(
  x: A,
  w: MlaWeights<A>,
  cfg: MlaConfig,
  tokens: number,
  startPosition = 0,
): { y: A; cache: MlaNaiveCache<A> } {
  expectCount("mlaForward", "tokens", tokens);
  expectLength("mlaForward", "x", x, tokens * cfg.hidden);
  checkWeights("mlaForward", w, cfg);
  const a = cfg.attention;
  const H = a.heads;
  const n = a.qkNopeHeadDim;
  const r = a.qkRopeHeadDim;
  const vd = a.vHeadDim;
  const c = a.kvLoraRank;
  const qk = n + r;
  const { q, saved: query } = queryForward(x, w, cfg, tokens, startPosition);
  const { cache: latent, saved: latentSaved } = mlaLatentForward(x, w, cfg, tokens, startPosition);
  const kvBOut = linearForward(latent.latent, w.kvB, tokens, c, H * (n + vd));
  const k = allocLike(x, tokens * H * qk);
  const v = allocLike(x, tokens * H * vd);
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < H; h++) {
      const src = (t * H + h) * (n + vd);
      const kd = (t * H + h) * qk;
      for (let j = 0; j < n; j++) k[kd + j] = kvBOut[src + j]!;
      for (let j = 0; j < r; j++) k[kd + n + j] = latent.kRope[t * r + j]!;
      const vdst = (t * H + h) * vd;
      for (let j = 0; j < vd; j++) v[vdst + j] = kvBOut[src + n + j]!;
    }
  }
  const { out: attnOut, probs } = attentionForward(q, k, v, attentionShapeNaive(cfg, tokens));
  const y = linearForward(attnOut, w.o, tokens, H * vd, cfg.hidden);
  return { y, cache: { tokens, query, latentSaved, latent, kvBOut, q, k, v, probs, attnOut } };
}

/** Gradients of mlaForward given dy (tokens × hidden). */
export function mlaBackward<A extends RealArray>(
  dy: A,
  x: A,
  w: MlaWeights<A>,
  cfg: MlaConfig,
  cache: MlaNaiveCache<A>,
): { dx: A; grads: MlaGrads<A> } {
  const a = cfg.attention;
  const H = a.heads;
  const n = a.qkNopeHeadDim;
  const r = a.qkRopeHeadDim;
  const vd = a.vHeadDim;
  const c = a.kvLoraRank;
  const qk = n + r;
  const T = cache.tokens;
  expectLength("mlaBackward", "dy", dy, T * cfg.hidden);
  const g = zeroGrads(dy, cfg);
  const o = linearBackward(dy, cache.attnOut, w.o, T, H * vd, cfg.hidden);
  addInto(g.o, o.dw);
  const att = attentionBackward(o.dx, cache.q, cache.k, cache.v, cache.probs, attentionShapeNaive(cfg, T));
  const dKvBOut = allocLike(dy, T * H * (n + vd));
  const dKRope = allocLike(dy, T * r);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const dst = (t * H + h) * (n + vd);
      const kd = (t * H + h) * qk;
      for (let j = 0; j < n; j++) dKvBOut[dst + j] = att.dk[kd + j]!;
      for (let j = 0; j < r; j++) dKRope[t * r + j] = dKRope[t * r + j]! + att.dk[kd + n + j]!;
      const vs = (t * H + h) * vd;
      for (let j = 0; j < vd; j++) dKvBOut[dst + n + j] = att.dv[vs + j]!;
    }
  }
  const kvb = linearBackward(dKvBOut, cache.latent.latent, w.kvB, T, c, H * (n + vd));
  addInto(g.kvB, kvb.dw);
  const lat = mlaLatentBackward(kvb.dx, dKRope, x, w, cfg, cache.latentSaved);
  addInto(g.kvA, lat.dKvA);
  addInto(g.kvANorm, lat.dKvANorm);
  const dx = queryBackward(att.dq, x, w, cfg, cache.query, g);
  addInto(dx, lat.dx);
  return { dx, grads: g };
}

// ---------------------------------------------------------------------------------------------
// Absorbed form

export interface MlaAbsorbedCache<A extends RealArray> {
  tokens: number;
  query: QuerySaved<A>;
  /** The rotated query [T, H, n+r]. */
  q: A;
  /** Absorbed query [T, H, c+r], shared key [S, 1, c+r], shared value [S, 1, c]. */
  qAbs: A;
  key: A;
  probs: A;
  /** Attention output in latent space [T, H, c]. */
  latentOut: A;
  /** After W_UV, T × H·v (o_proj's input). */
  attnOut: A;
}

function attentionShapeAbsorbed(cfg: MlaConfig, tokens: number, cacheTokens: number): AttentionShape {
  const a = cfg.attention;
  return {
    tq: tokens,
    tk: cacheTokens,
    heads: a.heads,
    kvHeads: 1,
    dk: a.kvLoraRank + a.qkRopeHeadDim,
    dv: a.kvLoraRank,
    scale: a.softmaxScale,
  };
}

/**
 * MLA for the T query tokens xq (T × hidden) that are the last T entries of `latent` (S ≥ T tokens,
 * including these), absorbed form: attention runs over the latent cache directly.
 */
export function mlaAbsorbedForward<A extends RealArray>(
  xq: A,
  latent: MlaLatentCache<A>,
  w: MlaWeights<A>,
  cfg: MlaConfig,
  tokens: number,
): { y: A; cache: MlaAbsorbedCache<A> } {
  expectCount("mlaAbsorbedForward", "tokens", tokens);
  expectLength("mlaAbsorbedForward", "xq", xq, tokens * cfg.hidden);
  checkWeights("mlaAbsorbedForward", w, cfg);
  const a = cfg.attention;
  const H = a.heads;
  const n = a.qkNopeHeadDim;
  const r = a.qkRopeHeadDim;
  const vd = a.vHeadDim;
  const c = a.kvLoraRank;
  const qk = n + r;
  const S = latent.tokens;
  if (S < tokens) throw new RangeError(`mlaAbsorbedForward: ${tokens} queries but only ${S} cached tokens`);
  expectLength("mlaAbsorbedForward", "latent.latent", latent.latent, S * c);
  expectLength("mlaAbsorbedForward", "latent.kRope", latent.kRope, S * r);
  const { q, saved: query } = queryForward(xq, w, cfg, tokens, S - tokens);
  const kvB = w.kvB;
  const ca = c + r;
  // q_abs_h = W_UK_hᵀ · q_nope_h, then [q_abs | q_rope].
  const qAbs = allocLike(xq, tokens * H * ca);
  const acc = new Float64Array(c);
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < H; h++) {
      const qi = (t * H + h) * qk;
      acc.fill(0);
      for (let j = 0; j < n; j++) {
        const qv = q[qi + j]!;
        const wRow = (h * (n + vd) + j) * c;
        for (let l = 0; l < c; l++) acc[l] = acc[l]! + qv * kvB[wRow + l]!;
      }
      const dst = (t * H + h) * ca;
      for (let l = 0; l < c; l++) qAbs[dst + l] = acc[l]!;
      for (let j = 0; j < r; j++) qAbs[dst + c + j] = q[qi + n + j]!;
    }
  }
  const key = allocLike(xq, S * ca);
  addCols(key, S, ca, 0, latent.latent, c);
  addCols(key, S, ca, c, latent.kRope, r);
  const { out: latentOut, probs } = attentionForward(qAbs, key, latent.latent, attentionShapeAbsorbed(cfg, tokens, S));
  // o_h = W_UV_h · latent_out_h.
  const attnOut = allocLike(xq, tokens * H * vd);
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < H; h++) {
      const li = (t * H + h) * c;
      for (let j = 0; j < vd; j++) {
        const wRow = (h * (n + vd) + n + j) * c;
        let s = 0;
        for (let l = 0; l < c; l++) s += latentOut[li + l]! * kvB[wRow + l]!;
        attnOut[(t * H + h) * vd + j] = s;
      }
    }
  }
  const y = linearForward(attnOut, w.o, tokens, H * vd, cfg.hidden);
  return { y, cache: { tokens, query, q, qAbs, key, probs, latentOut, attnOut } };
}

/**
 * Gradients of mlaAbsorbedForward given dy: dx of the queries, the gradients of the latent cache
 * (dLatent, dKRope — pass them to mlaLatentBackward when the cache came from mlaLatentForward) and
 * the weight gradients (kvA and kvANorm zero here: they come from the cache's own backward).
 */
export function mlaAbsorbedBackward<A extends RealArray>(
  dy: A,
  xq: A,
  latent: MlaLatentCache<A>,
  w: MlaWeights<A>,
  cfg: MlaConfig,
  cache: MlaAbsorbedCache<A>,
): { dx: A; dLatent: A; dKRope: A; grads: MlaGrads<A> } {
  const a = cfg.attention;
  const H = a.heads;
  const n = a.qkNopeHeadDim;
  const r = a.qkRopeHeadDim;
  const vd = a.vHeadDim;
  const c = a.kvLoraRank;
  const qk = n + r;
  const ca = c + r;
  const T = cache.tokens;
  const S = latent.tokens;
  expectLength("mlaAbsorbedBackward", "dy", dy, T * cfg.hidden);
  const g = zeroGrads(dy, cfg);
  const kvB = w.kvB;
  const dKvB = new Float64Array(kvB.length);
  const o = linearBackward(dy, cache.attnOut, w.o, T, H * vd, cfg.hidden);
  addInto(g.o, o.dw);
  // Through W_UV: dLatentOut_h = W_UV_hᵀ · dO_h; dW_UV_h += dO_h ⊗ latentOut_h.
  const dLatentOut = allocLike(dy, T * H * c);
  const acc = new Float64Array(c);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const li = (t * H + h) * c;
      acc.fill(0);
      for (let j = 0; j < vd; j++) {
        const dO = o.dx[(t * H + h) * vd + j]!;
        if (dO === 0) continue;
        const wRow = (h * (n + vd) + n + j) * c;
        for (let l = 0; l < c; l++) {
          acc[l] = acc[l]! + dO * kvB[wRow + l]!;
          dKvB[wRow + l] = dKvB[wRow + l]! + dO * cache.latentOut[li + l]!;
        }
      }
      for (let l = 0; l < c; l++) dLatentOut[li + l] = acc[l]!;
    }
  }
  const att = attentionBackward(dLatentOut, cache.qAbs, cache.key, latent.latent, cache.probs, attentionShapeAbsorbed(cfg, T, S));
  const dLatent = sliceCols(att.dk, S, ca, 0, c);
  addInto(dLatent, att.dv);
  const dKRope = sliceCols(att.dk, S, ca, c, r);
  // Through W_UK: dq_nope_h = W_UK_h · dq_abs_h; dW_UK_h += q_nope_h ⊗ dq_abs_h.
  const dq = allocLike(dy, T * H * qk);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const qi = (t * H + h) * qk;
      const ai = (t * H + h) * ca;
      for (let j = 0; j < n; j++) {
        const wRow = (h * (n + vd) + j) * c;
        const qv = cache.q[qi + j]!;
        let s = 0;
        for (let l = 0; l < c; l++) {
          const da = att.dq[ai + l]!;
          s += da * kvB[wRow + l]!;
          dKvB[wRow + l] = dKvB[wRow + l]! + qv * da;
        }
        dq[qi + j] = s;
      }
      for (let j = 0; j < r; j++) dq[qi + n + j] = att.dq[ai + c + j]!;
    }
  }
  addInto(g.kvB, dKvB);
  const dx = queryBackward(dq, xq, w, cfg, cache.query, g);
  return { dx, dLatent, dKRope, grads: g };
}
