/**
 * The MoE gate (router) of DeepSeek-V2/V3 (FACTS "Gate"):
 *   1. logits = x·Wᵀ (W: experts × hidden, FP32), scores s = sigmoid(logits) (V3) or softmax over the
 *      experts (V2);
 *   2. selection scores = s + bias (the aux-loss-free balancing bias; for choosing only);
 *   3. group-limited routing (groups > 1 and topGroups < groups; groups are contiguous blocks of
 *      experts): a group's score is the sum of its two highest selection scores (`top2_sum`, V3
 *      noaux_tc; its only score for one-expert groups) or its highest (`max`, V2); the topGroups best
 *      groups stay candidates;
 *   4. the topK candidates with the highest selection scores, in descending order;
 *   5. weights = the unbiased scores s of the chosen experts, divided by their sum when
 *      normalizeTopk (V3), times routedScale (always; V3 2.5). V2's softmax gate is not renormalised.
 * Every "best" breaks ties by the lower index (group, then expert), so selection is deterministic.
 * With Float32Array inputs the selection scores and group scores are rounded to FP32 before they are
 * compared, like the reference gate's float32 arithmetic (and compiler/plan/node-limited-routing.ts).
 *
 * Backward: selection is piecewise constant (not differentiable) and the bias gets no gradient; the
 * gradient flows through the weights of the chosen experts into s, and from s into the logits, x and
 * W. An extra gradient on all scores (the sequence-wise auxiliary loss's) may be added.
 *   normalised:  ds_{e_k} += scale·(dw_k − Σ_j dw_j·s_{e_j}/Σ) / Σ,   Σ = Σ_j s_{e_j}
 *   sigmoid:     dlogit = ds·s·(1 − s);   softmax: dlogit_e = s_e·(ds_e − Σ_j ds_j·s_j)
 */
import type { GateSpec } from "../../../compiler/spec.js";
import { allocLike, expectCount, expectLength, matmulAB, matmulABt, matmulAtB, sigmoid, type RealArray } from "./tensor.js";

export interface GateConfig {
  /** Routed experts (the width of a score row). */
  experts: number;
  /** Experts per token. */
  topK: number;
  gate: GateSpec;
  /**
   * Node-limited routing (optional; absent = none): after the group limit, a node's score is the sum
   * of the highest ceil(topK / limit) selection scores among its candidates, and when the candidates
   * span more than `limit` nodes only the `limit` best nodes (ties → lower node) keep theirs — the rule
   * of compiler/plan/node-limited-routing.ts. `expertToNode` gives each expert's node.
   */
  nodeLimit?: { limit: number; expertToNode: Int32Array };
}

export interface GateOutput<A extends RealArray> {
  tokens: number;
  /** tokens × experts. */
  logits: A;
  /** The unbiased affinities, tokens × experts. */
  scores: A;
  /** tokens × topK, each token's experts by descending selection score. */
  experts: Int32Array;
  /** tokens × topK, the routing weights of those experts. */
  weights: A;
}

function checkConfig(op: string, cfg: GateConfig): number {
  expectCount(op, "experts", cfg.experts);
  expectCount(op, "topK", cfg.topK);
  const { groups, topGroups } = cfg.gate;
  expectCount(op, "groups", groups);
  expectCount(op, "topGroups", topGroups);
  if (cfg.experts % groups !== 0) throw new RangeError(`${op}: ${cfg.experts} experts do not split into ${groups} groups`);
  if (topGroups > groups) throw new RangeError(`${op}: topGroups ${topGroups} > groups ${groups}`);
  const groupSize = cfg.experts / groups;
  const kept = groups > 1 && topGroups < groups ? topGroups * groupSize : cfg.experts;
  if (cfg.topK > kept) throw new RangeError(`${op}: topK ${cfg.topK} exceeds the ${kept} candidate experts`);
  return groupSize;
}

/** Affinities of logits (tokens × experts): sigmoid, or softmax along each row. */
export function gateScores<A extends RealArray>(logits: A, tokens: number, experts: number, scoring: GateSpec["scoring"]): A {
  const s = allocLike(logits, tokens * experts);
  if (scoring === "sigmoid") {
    for (let i = 0; i < s.length; i++) s[i] = sigmoid(logits[i]!);
    return s;
  }
  for (let t = 0; t < tokens; t++) {
    const o = t * experts;
    let max = -Infinity;
    for (let e = 0; e < experts; e++) max = Math.max(max, logits[o + e]!);
    let sum = 0;
    for (let e = 0; e < experts; e++) sum += Math.exp(logits[o + e]! - max);
    for (let e = 0; e < experts; e++) s[o + e] = Math.exp(logits[o + e]! - max) / sum;
  }
  return s;
}

/**
 * Inserts (v, id) into the descending list vals/ids[0 .. len) of capacity cap; an equal value goes
 * after the ones already there, so with ids inserted in increasing order ties keep the lower id.
 */
function insertTop(vals: Float64Array, ids: Int32Array, len: number, cap: number, v: number, id: number): number {
  if (len === cap) {
    if (!(v > vals[len - 1]!)) return len;
    len--;
  }
  let i = len;
  while (i > 0 && v > vals[i - 1]!) {
    vals[i] = vals[i - 1]!;
    ids[i] = ids[i - 1]!;
    i--;
  }
  vals[i] = v;
  ids[i] = id;
  return len + 1;
}

/** The chosen experts (tokens × topK, descending selection score) for given scores and bias. */
export function gateSelect<A extends RealArray>(scores: A, bias: ArrayLike<number> | null, cfg: GateConfig, tokens: number): Int32Array {
  const groupSize = checkConfig("gateSelect", cfg);
  const { experts, topK } = cfg;
  const { groups, topGroups, groupScore } = cfg.gate;
  expectLength("gateSelect", "scores", scores, tokens * experts);
  if (bias !== null) expectLength("gateSelect", "bias", bias, experts);
  const limit = groups > 1 && topGroups < groups;
  // Scratch in the scores' element type: sums round like the reference's float32 arithmetic.
  const sel = allocLike(scores, experts);
  const gScore = allocLike(scores, groups);
  const candidate = new Uint8Array(experts);
  const gVals = new Float64Array(topGroups);
  const gIds = new Int32Array(topGroups);
  const tVals = new Float64Array(topK);
  const tIds = new Int32Array(topK);
  const chosen = new Int32Array(tokens * topK);
  const nodeScratch = cfg.nodeLimit === undefined ? null : nodeLimitScratch(cfg.nodeLimit, experts, topK);
  for (let t = 0; t < tokens; t++) {
    const row = t * experts;
    for (let e = 0; e < experts; e++) sel[e] = bias === null ? scores[row + e]! : scores[row + e]! + bias[e]!;
    if (limit) {
      for (let g = 0; g < groups; g++) {
        let a = -Infinity;
        let b = -Infinity;
        for (let e = g * groupSize, end = e + groupSize; e < end; e++) {
          const v = sel[e]!;
          if (v > a) {
            b = a;
            a = v;
          } else if (v > b) b = v;
        }
        gScore[g] = groupScore === "max" || groupSize === 1 ? a : a + b;
      }
      let n = 0;
      for (let g = 0; g < groups; g++) n = insertTop(gVals, gIds, n, topGroups, gScore[g]!, g);
      candidate.fill(0);
      for (let i = 0; i < n; i++) candidate.fill(1, gIds[i]! * groupSize, (gIds[i]! + 1) * groupSize);
    } else candidate.fill(1);
    if (nodeScratch !== null) limitNodes(sel, candidate, nodeScratch);
    let n = 0;
    for (let e = 0; e < experts; e++) if (candidate[e] === 1) n = insertTop(tVals, tIds, n, topK, sel[e]!, e);
    if (n < topK) throw new RangeError(`gateSelect: token ${t} has only ${n} candidate experts for top-${topK} (node limit too small)`);
    chosen.set(tIds, t * topK);
  }
  return chosen;
}

/** Scratch of the node limit, allocated once per gateSelect call (per-node top lists as views). */
interface NodeLimitScratch {
  limit: number;
  expertToNode: Int32Array;
  nodes: number;
  vals: Float64Array[];
  ids: Int32Array[];
  fill: Int32Array;
  keptVals: Float64Array;
  keptIds: Int32Array;
  keep: Uint8Array;
}

function nodeLimitScratch(nl: { limit: number; expertToNode: Int32Array }, experts: number, topK: number): NodeLimitScratch {
  expectLength("gateSelect", "nodeLimit.expertToNode", nl.expertToNode, experts);
  expectCount("gateSelect", "nodeLimit.limit", nl.limit);
  let nodes = 0;
  for (let e = 0; e < experts; e++) nodes = Math.max(nodes, nl.expertToNode[e]! + 1);
  const per = Math.ceil(topK / nl.limit);
  const vals = new Float64Array(nodes * per);
  const ids = new Int32Array(nodes * per);
  return {
    limit: nl.limit,
    expertToNode: nl.expertToNode,
    nodes,
    vals: Array.from({ length: nodes }, (_, i) => vals.subarray(i * per, (i + 1) * per)),
    ids: Array.from({ length: nodes }, (_, i) => ids.subarray(i * per, (i + 1) * per)),
    fill: new Int32Array(nodes),
    keptVals: new Float64Array(nl.limit),
    keptIds: new Int32Array(nl.limit),
    keep: new Uint8Array(nodes),
  };
}

/** Clears the candidates outside the `limit` best nodes (see GateConfig.nodeLimit). */
function limitNodes(sel: ArrayLike<number>, candidate: Uint8Array, s: NodeLimitScratch): void {
  const experts = candidate.length;
  const { fill, expertToNode, nodes } = s;
  fill.fill(0);
  for (let e = 0; e < experts; e++) {
    if (candidate[e] === 0) continue;
    const node = expertToNode[e]!;
    fill[node] = insertTop(s.vals[node]!, s.ids[node]!, fill[node]!, s.vals[node]!.length, sel[e]!, e);
  }
  let used = 0;
  for (let node = 0; node < nodes; node++) if (fill[node]! > 0) used++;
  if (used <= s.limit) return;
  let n = 0;
  for (let node = 0; node < nodes; node++) {
    if (fill[node] === 0) continue;
    let sum = 0;
    for (let i = 0; i < fill[node]!; i++) sum = Math.fround(sum + s.vals[node]![i]!);
    n = insertTop(s.keptVals, s.keptIds, n, s.limit, sum, node);
  }
  s.keep.fill(0);
  for (let i = 0; i < n; i++) s.keep[s.keptIds[i]!] = 1;
  for (let e = 0; e < experts; e++) if (s.keep[expertToNode[e]!] === 0) candidate[e] = 0;
}

/** The routing weights of the chosen experts from the unbiased scores (step 5). */
export function gateWeights<A extends RealArray>(scores: A, chosen: Int32Array, cfg: GateConfig, tokens: number): A {
  const { experts, topK } = cfg;
  expectLength("gateWeights", "scores", scores, tokens * experts);
  expectLength("gateWeights", "chosen", chosen, tokens * topK);
  const w = allocLike(scores, tokens * topK);
  const scale = cfg.gate.routedScale;
  for (let t = 0; t < tokens; t++) {
    let sum = 0;
    for (let k = 0; k < topK; k++) sum += scores[t * experts + chosen[t * topK + k]!]!;
    const div = cfg.gate.normalizeTopk ? sum : 1;
    for (let k = 0; k < topK; k++) w[t * topK + k] = (scores[t * experts + chosen[t * topK + k]!]! / div) * scale;
  }
  return w;
}

/**
 * The gate on x (tokens × hidden) with weight W (experts × hidden) and an optional selection bias.
 * `fixedExperts` skips selection and uses the given choice (for gradient checks at a fixed routing).
 */
export function gateForward<A extends RealArray>(
  x: A,
  w: ArrayLike<number>,
  bias: ArrayLike<number> | null,
  cfg: GateConfig,
  tokens: number,
  hidden: number,
  fixedExperts?: Int32Array,
): GateOutput<A> {
  checkConfig("gateForward", cfg);
  expectLength("gateForward", "x", x, tokens * hidden);
  expectLength("gateForward", "w", w, cfg.experts * hidden);
  const logits = matmulABt(x, w, tokens, cfg.experts, hidden);
  const scores = gateScores(logits, tokens, cfg.experts, cfg.gate.scoring);
  const experts = fixedExperts ?? gateSelect(scores, bias, cfg, tokens);
  const weights = gateWeights(scores, experts, cfg, tokens);
  return { tokens, logits, scores, experts, weights };
}

export interface GateGrads<A extends RealArray> {
  dx: A;
  dw: A;
  dLogits: A;
}

/**
 * Gradients of gateForward given dWeights (tokens × topK) and optionally an extra gradient on the
 * scores (tokens × experts, e.g. from the auxiliary loss). The bias has no gradient.
 */
export function gateBackward<A extends RealArray>(
  dWeights: A,
  dScoresExtra: ArrayLike<number> | null,
  x: A,
  w: ArrayLike<number>,
  out: GateOutput<A>,
  cfg: GateConfig,
  hidden: number,
): GateGrads<A> {
  const { experts, topK } = cfg;
  const tokens = out.tokens;
  expectLength("gateBackward", "dWeights", dWeights, tokens * topK);
  const ds = new Float64Array(tokens * experts);
  if (dScoresExtra !== null) {
    expectLength("gateBackward", "dScoresExtra", dScoresExtra, tokens * experts);
    for (let i = 0; i < ds.length; i++) ds[i] = dScoresExtra[i]!;
  }
  const { scores, experts: chosen } = out;
  const scale = cfg.gate.routedScale;
  for (let t = 0; t < tokens; t++) {
    const row = t * experts;
    if (cfg.gate.normalizeTopk) {
      let sum = 0;
      let dot = 0;
      for (let k = 0; k < topK; k++) {
        const s = scores[row + chosen[t * topK + k]!]!;
        sum += s;
        dot += dWeights[t * topK + k]! * s;
      }
      for (let k = 0; k < topK; k++) {
        const e = row + chosen[t * topK + k]!;
        ds[e] = ds[e]! + (scale * (dWeights[t * topK + k]! - dot / sum)) / sum;
      }
    } else {
      for (let k = 0; k < topK; k++) {
        const e = row + chosen[t * topK + k]!;
        ds[e] = ds[e]! + scale * dWeights[t * topK + k]!;
      }
    }
  }
  const dLogits = allocLike(dWeights, tokens * experts);
  if (cfg.gate.scoring === "sigmoid") {
    for (let i = 0; i < dLogits.length; i++) {
      const s = scores[i]!;
      dLogits[i] = ds[i]! * s * (1 - s);
    }
  } else {
    for (let t = 0; t < tokens; t++) {
      const row = t * experts;
      let dot = 0;
      for (let e = 0; e < experts; e++) dot += ds[row + e]! * scores[row + e]!;
      for (let e = 0; e < experts; e++) dLogits[row + e] = scores[row + e]! * (ds[row + e]! - dot);
    }
  }
  const dx = matmulAB(dLogits, w, tokens, experts, hidden);
  const dw = matmulAtB(dLogits, x, tokens, experts, hidden);
  return { dx, dw, dLogits };
}
