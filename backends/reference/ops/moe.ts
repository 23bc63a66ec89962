/**
 * DeepSeekMoE's expert layer: routed experts and shared experts, each a SwiGLU MLP (swiglu.ts),
 *   y_t = shared(x_t) + Σ_k w_{t,k} · expert_{e_{t,k}}(x_t),
 * with the routing (experts e, weights w) from the gate (gate.ts). The shared experts act as one MLP
 * of width n_shared·I (FACTS). Tokens are dispatched per expert (gathered, run as one batch, and
 * combined back weighted), as an expert-parallel kernel would.
 *
 * Backward: dw_{t,k} = dy_t · expert_{e_{t,k}}(x_t) (the gradient of the routing weights, for the
 * gate's backward); each expert receives w_{t,k}·dy_t; dx sums the shared and every expert's part.
 */
import type { MoeSpec } from "../../../compiler/spec.js";
import { swigluMlpBackward, swigluMlpForward, type SwigluMlpCache, type SwigluMlpWeights } from "./swiglu.js";
import { addInto, allocLike, expectCount, expectLength, gatherRows, type RealArray } from "./tensor.js";

export interface MoeConfig {
  hidden: number;
  /** Routed experts. */
  experts: number;
  /** Experts per token. */
  topK: number;
  /** Intermediate width of one expert. */
  inter: number;
  /** Shared experts (0 = none). */
  shared: number;
}

/** The MoE layer shape of a model spec's MoE block. */
export function moeConfigOf(hidden: number, moe: MoeSpec): MoeConfig {
  return {
    hidden,
    experts: moe.routedExperts,
    topK: moe.expertsPerToken,
    inter: moe.expertIntermediate,
    shared: moe.sharedExperts,
  };
}

export interface MoeWeights<A extends RealArray> {
  /** Routed experts' gate_proj, packed experts × inter × hidden. */
  gate: A;
  /** Routed experts' up_proj, experts × inter × hidden. */
  up: A;
  /** Routed experts' down_proj, experts × hidden × inter. */
  down: A;
  /** The shared experts as one MLP of width shared·inter, or null without shared experts. */
  shared: SwigluMlpWeights<A> | null;
}

/** Gradients have the weights' shapes. */
export type MoeGrads<A extends RealArray> = MoeWeights<A>;

/** The routing of each token: tokens × topK experts and weights (a gate's output). */
export interface MoeRouting<A extends RealArray> {
  experts: Int32Array;
  weights: A;
}

/** Expert e's three matrices as views into the packed tensors. */
export function expertWeights<A extends RealArray>(w: MoeWeights<A>, cfg: MoeConfig, e: number): SwigluMlpWeights<A> {
  const n = cfg.inter * cfg.hidden;
  return {
    gate: w.gate.subarray(e * n, (e + 1) * n) as A,
    up: w.up.subarray(e * n, (e + 1) * n) as A,
    down: w.down.subarray(e * n, (e + 1) * n) as A,
  };
}

interface ExpertBatch<A extends RealArray> {
  /** The tokens routed to this expert, in token order. */
  tokens: Int32Array;
  /** Their slots t·topK + k in the routing arrays. */
  slots: Int32Array;
  x: A;
  /** The expert's unweighted output, rows × hidden. */
  y: A;
  mlp: SwigluMlpCache<A>;
}

export interface MoeCache<A extends RealArray> {
  tokens: number;
  batches: (ExpertBatch<A> | null)[];
  shared: SwigluMlpCache<A> | null;
}

function checkWeights<A extends RealArray>(op: string, w: MoeWeights<A>, cfg: MoeConfig): void {
  const n = cfg.experts * cfg.inter * cfg.hidden;
  expectLength(op, "gate", w.gate, n);
  expectLength(op, "up", w.up, n);
  expectLength(op, "down", w.down, n);
  if ((cfg.shared > 0) !== (w.shared !== null)) throw new RangeError(`${op}: shared weights must be given iff shared > 0`);
  if (w.shared !== null) {
    const s = cfg.shared * cfg.inter * cfg.hidden;
    expectLength(op, "shared.gate", w.shared.gate, s);
    expectLength(op, "shared.up", w.shared.up, s);
    expectLength(op, "shared.down", w.shared.down, s);
  }
}

/** Token lists per expert from a routing (counting sort: token order kept). */
function dispatch(experts: Int32Array, cfg: MoeConfig, tokens: number): { tokens: Int32Array; slots: Int32Array }[] {
  const count = new Int32Array(cfg.experts);
  for (let i = 0; i < experts.length; i++) {
    const e = experts[i]!;
    if (!(e >= 0 && e < cfg.experts)) throw new RangeError(`moe: expert ${e} out of range [0, ${cfg.experts})`);
    count[e]!++;
  }
  const lists = Array.from({ length: cfg.experts }, (_, e) => ({ tokens: new Int32Array(count[e]!), slots: new Int32Array(count[e]!) }));
  const fill = new Int32Array(cfg.experts);
  for (let t = 0; t < tokens; t++) {
    for (let k = 0; k < cfg.topK; k++) {
      const slot = t * cfg.topK + k;
      const e = experts[slot]!;
      const at = fill[e]!++;
      lists[e]!.tokens[at] = t;
      lists[e]!.slots[at] = slot;
    }
  }
  return lists;
}

/** The MoE layer on x (tokens × hidden) with the given routing. */
export function moeForward<A extends RealArray>(
  x: A,
  w: MoeWeights<A>,
  routing: MoeRouting<A>,
  cfg: MoeConfig,
  tokens: number,
): { y: A; cache: MoeCache<A> } {
  expectCount("moeForward", "tokens", tokens);
  expectLength("moeForward", "x", x, tokens * cfg.hidden);
  expectLength("moeForward", "routing.experts", routing.experts, tokens * cfg.topK);
  expectLength("moeForward", "routing.weights", routing.weights, tokens * cfg.topK);
  checkWeights("moeForward", w, cfg);
  const d = cfg.hidden;
  const acc = new Float64Array(tokens * d);
  let sharedCache: SwigluMlpCache<A> | null = null;
  if (w.shared !== null) {
    const s = swigluMlpForward(x, w.shared, tokens, d, cfg.shared * cfg.inter);
    sharedCache = s.cache;
    for (let i = 0; i < acc.length; i++) acc[i] = s.y[i]!;
  }
  const batches: (ExpertBatch<A> | null)[] = [];
  const lists = dispatch(routing.experts, cfg, tokens);
  for (let e = 0; e < cfg.experts; e++) {
    const list = lists[e]!;
    const rows = list.tokens.length;
    if (rows === 0) {
      batches.push(null);
      continue;
    }
    const xe = gatherRows(x, d, list.tokens);
    const { y, cache } = swigluMlpForward(xe, expertWeights(w, cfg, e), rows, d, cfg.inter);
    for (let i = 0; i < rows; i++) {
      const wt = routing.weights[list.slots[i]!]!;
      const dst = list.tokens[i]! * d;
      for (let j = 0; j < d; j++) acc[dst + j] = acc[dst + j]! + wt * y[i * d + j]!;
    }
    batches.push({ tokens: list.tokens, slots: list.slots, x: xe, y, mlp: cache });
  }
  const out = allocLike(x, tokens * d);
  out.set(acc);
  return { y: out, cache: { tokens, batches, shared: sharedCache } };
}

export interface MoeBackwardResult<A extends RealArray> {
  dx: A;
  /** Gradient of the routing weights, tokens × topK (feed to gateBackward). */
  dWeights: A;
  grads: MoeGrads<A>;
}

/** Gradients of moeForward given dy (tokens × hidden). */
export function moeBackward<A extends RealArray>(
  dy: A,
  x: A,
  w: MoeWeights<A>,
  routing: MoeRouting<A>,
  cfg: MoeConfig,
  cache: MoeCache<A>,
): MoeBackwardResult<A> {
  const tokens = cache.tokens;
  const d = cfg.hidden;
  expectLength("moeBackward", "dy", dy, tokens * d);
  const dxAcc = new Float64Array(tokens * d);
  const dWeights = allocLike(dy, tokens * cfg.topK);
  const grads: MoeGrads<A> = {
    gate: allocLike(dy, w.gate.length),
    up: allocLike(dy, w.up.length),
    down: allocLike(dy, w.down.length),
    shared: null,
  };
  if (w.shared !== null && cache.shared !== null) {
    const s = swigluMlpBackward(dy, x, w.shared, cache.shared, tokens, d, cfg.shared * cfg.inter);
    for (let i = 0; i < dxAcc.length; i++) dxAcc[i] = s.dx[i]!;
    grads.shared = { gate: s.dGate, up: s.dUp, down: s.dDown };
  }
  const n = cfg.inter * d;
  for (let e = 0; e < cfg.experts; e++) {
    const b = cache.batches[e];
    if (!b) continue;
    const rows = b.tokens.length;
    const dye = allocLike(dy, rows * d);
    for (let i = 0; i < rows; i++) {
      const slot = b.slots[i]!;
      const src = b.tokens[i]! * d;
      const wt = routing.weights[slot]!;
      let dot = 0;
      for (let j = 0; j < d; j++) {
        dot += dy[src + j]! * b.y[i * d + j]!;
        dye[i * d + j] = wt * dy[src + j]!;
      }
      dWeights[slot] = dot;
    }
    const g = swigluMlpBackward(dye, b.x, expertWeights(w, cfg, e), b.mlp, rows, d, cfg.inter);
    addInto(grads.gate.subarray(e * n, (e + 1) * n), g.dGate);
    addInto(grads.up.subarray(e * n, (e + 1) * n), g.dUp);
    addInto(grads.down.subarray(e * n, (e + 1) * n), g.dDown);
    for (let i = 0; i < rows; i++) {
      const dst = b.tokens[i]! * d;
      for (let j = 0; j < d; j++) dxAcc[dst + j] = dxAcc[dst + j]! + g.dx[i * d + j]!;
    }
  }
  const dx = allocLike(dy, tokens * d);
  dx.set(dxAcc);
  return { dx, dWeights, grads };
}
