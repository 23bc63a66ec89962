/**
 * The causal softmax attention core (scores, mask, softmax, AV) and its backward, computed in FP32
 * or wider (DeepSeek-V3 keeps the attention core out of FP8).
 *
 * Layouts (row-major): q [tq, heads, dk], k [tk, kvHeads, dk], v [tk, kvHeads, dv], out [tq, heads, dv];
 * query head h reads kv head floor(h / (heads / kvHeads)) — kvHeads = heads for naive MLA (per-head
 * K/V), 1 for absorbed MLA (the shared latent cache). Query i sees key j iff j ≤ i + causalOffset
 * (default tk − tq: the queries are the last tq positions of the keys).
 *
 *   S = scale·q·kᵀ (masked to −∞), P = softmax(S), out = P·v.
 * Backward, with dP = dout·vᵀ and D_i = Σ_j P_ij·dP_ij:
 *   dS = P ⊙ (dP − D),  dq = scale·dS·k,  dk = scale·dSᵀ·q,  dv = Pᵀ·dout.
 */
import { allocLike, expectCount, expectLength, type RealArray } from "./tensor.js";

export interface AttentionShape {
  tq: number;
  tk: number;
  heads: number;
  kvHeads: number;
  dk: number;
  dv: number;
  scale: number;
  /** Query i sees keys j ≤ i + causalOffset; default tk − tq. Must be ≥ 0 (every query sees a key). */
  causalOffset?: number;
}

export interface AttentionOutput<A extends RealArray> {
  out: A;
  /** The softmax probabilities, heads × tq × tk (0 where masked): the backward's cache. */
  probs: A;
}

function checkShape(op: string, s: AttentionShape): number {
  expectCount(op, "tq", s.tq);
  expectCount(op, "tk", s.tk);
  expectCount(op, "heads", s.heads);
  expectCount(op, "kvHeads", s.kvHeads);
  expectCount(op, "dk", s.dk);
  expectCount(op, "dv", s.dv);
  if (s.heads % s.kvHeads !== 0) throw new RangeError(`${op}: ${s.heads} heads do not share ${s.kvHeads} kv heads evenly`);
  const offset = s.causalOffset ?? s.tk - s.tq;
  if (!Number.isInteger(offset) || offset < 0) throw new RangeError(`${op}: causal offset ${offset} leaves a query without keys`);
  return offset;
}

/** Causal attention forward. */
export function attentionForward<A extends RealArray>(q: A, k: A, v: A, s: AttentionShape): AttentionOutput<A> {
  const offset = checkShape("attentionForward", s);
  const { tq, tk, heads, kvHeads, dk, dv, scale } = s;
  expectLength("attentionForward", "q", q, tq * heads * dk);
  expectLength("attentionForward", "k", k, tk * kvHeads * dk);
  expectLength("attentionForward", "v", v, tk * kvHeads * dv);
  const group = heads / kvHeads;
  const out = allocLike(q, tq * heads * dv);
  const probs = allocLike(q, heads * tq * tk);
  const row = new Float64Array(tk);
  const acc = new Float64Array(dv);
  for (let h = 0; h < heads; h++) {
    const kh = Math.floor(h / group);
    for (let i = 0; i < tq; i++) {
      const last = Math.min(tk - 1, i + offset);
      const qi = (i * heads + h) * dk;
      let max = -Infinity;
      for (let j = 0; j <= last; j++) {
        const kj = (j * kvHeads + kh) * dk;
        let dot = 0;
        for (let c = 0; c < dk; c++) dot += q[qi + c]! * k[kj + c]!;
        const sc = dot * scale;
        row[j] = sc;
        if (sc > max) max = sc;
      }
      let sum = 0;
      for (let j = 0; j <= last; j++) {
        const e = Math.exp(row[j]! - max);
        row[j] = e;
        sum += e;
      }
      acc.fill(0);
      const pRow = (h * tq + i) * tk;
      for (let j = 0; j <= last; j++) {
        const p = row[j]! / sum;
        probs[pRow + j] = p;
        const vj = (j * kvHeads + kh) * dv;
        for (let c = 0; c < dv; c++) acc[c] = acc[c]! + p * v[vj + c]!;
      }
      const oi = (i * heads + h) * dv;
      for (let c = 0; c < dv; c++) out[oi + c] = acc[c]!;
    }
  }
  return { out, probs };
}

export interface AttentionGrads<A extends RealArray> {
  dq: A;
  dk: A;
  dv: A;
}

/** Causal attention backward given dout [tq, heads, dv] and the forward's probabilities. */
export function attentionBackward<A extends RealArray>(
  dout: A,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  probs: ArrayLike<number>,
  s: AttentionShape,
): AttentionGrads<A> {
  const offset = checkShape("attentionBackward", s);
  const { tq, tk, heads, kvHeads, dk, dv, scale } = s;
  expectLength("attentionBackward", "dout", dout, tq * heads * dv);
  expectLength("attentionBackward", "q", q, tq * heads * dk);
  expectLength("attentionBackward", "k", k, tk * kvHeads * dk);
  expectLength("attentionBackward", "v", v, tk * kvHeads * dv);
  expectLength("attentionBackward", "probs", probs, heads * tq * tk);
  const group = heads / kvHeads;
  const dqAcc = new Float64Array(tq * heads * dk);
  const dkAcc = new Float64Array(tk * kvHeads * dk);
  const dvAcc = new Float64Array(tk * kvHeads * dv);
  const dS = new Float64Array(tk);
  for (let h = 0; h < heads; h++) {
    const kh = Math.floor(h / group);
    for (let i = 0; i < tq; i++) {
      const last = Math.min(tk - 1, i + offset);
      const oi = (i * heads + h) * dv;
      const qi = (i * heads + h) * dk;
      const pRow = (h * tq + i) * tk;
      let D = 0;
      for (let j = 0; j <= last; j++) {
        const vj = (j * kvHeads + kh) * dv;
        let dp = 0;
        for (let c = 0; c < dv; c++) dp += dout[oi + c]! * v[vj + c]!;
        const p = probs[pRow + j]!;
        dS[j] = dp;
        D += p * dp;
        for (let c = 0; c < dv; c++) dvAcc[vj + c] = dvAcc[vj + c]! + p * dout[oi + c]!;
      }
      for (let j = 0; j <= last; j++) {
        const ds = probs[pRow + j]! * (dS[j]! - D) * scale;
        if (ds === 0) continue;
        const kj = (j * kvHeads + kh) * dk;
        for (let c = 0; c < dk; c++) {
          dqAcc[qi + c] = dqAcc[qi + c]! + ds * k[kj + c]!;
          dkAcc[kj + c] = dkAcc[kj + c]! + ds * q[qi + c]!;
        }
      }
    }
  }
  const dq = allocLike(dout, dqAcc.length);
  const dkOut = allocLike(dout, dkAcc.length);
  const dvOut = allocLike(dout, dvAcc.length);
  dq.set(dqAcc);
  dkOut.set(dkAcc);
  dvOut.set(dvAcc);
  return { dq, dk: dkOut, dv: dvOut };
}
