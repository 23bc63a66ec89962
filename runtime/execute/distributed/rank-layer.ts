/**
 * One decoder layer on one virtual rank, split into the parts the parallel lowering runs apart:
 * attention (TP by heads, SP by rows), the dense MLP or the shared experts (TP by intermediate
 * block), the router (whole, on the rank's rows) and the routed experts (EP, through the all-to-all).
 *
 * Rows. A rank holds the rows [offsets[tp], offsets[tp+1]) of the sequence (SP); with tp = 1 it holds
 * them all. Around each TP block the rows are all-gathered before and reduce-scattered after (the
 * partial sums of the heads or intermediate blocks), in forward and again in backward: the planner's
 * eight TP collectives per layer. With `ffnTp = 1` (serving) the FFN runs on the rank's rows with
 * whole weights and only attention is gathered and scattered.
 *
 * Every part is a reference op (rmsnorm, MLA, SwiGLU, gate, balance loss) on sliced weights; the
 * composition equals the single-device layer (decoder-layer.ts) up to the order of the sums that the
 * collectives re-associate (head and block partial sums, the combine's node-by-node sum).
 */
import type { ModelSpec } from "../../../compiler/spec.js";
import {
  add,
  addInto,
  gateBackward,
  gateForward,
  mlaBackward,
  mlaForward,
  rmsnormBackward,
  rmsnormForward,
  seqAuxLossBackward,
  seqAuxLossForward,
  swigluMlpBackward,
  swigluMlpForward,
  type GateConfig,
  type GateOutput,
  type MlaConfig,
  type MlaGrads,
  type MlaNaiveCache,
  type SwigluMlpCache,
  type SwigluMlpWeights,
} from "../../../backends/reference/ops/index.js";
import type { VirtualCluster, Wait } from "./collectives.js";
import type { ExpertExchange, ExpertGroup, ExpertRoute, ReceivedTokens } from "./expert-all-to-all.js";
import type { RankLayerWeights } from "./rank-weights.js";

type F32 = Float32Array;
type Gen<T> = Generator<Wait, T, void>;

/** Deliberate faults, for the tests that show the property catches a broken lowering. */
export interface LoweringFaults {
  /** The experts return unweighted outputs for each token's first pick (a dropped combine weight). */
  dropCombineWeight?: boolean;
}

/** What a rank needs to run its layers. */
export interface RankEnv {
  gpu: number;
  model: ModelSpec;
  cluster: VirtualCluster;
  experts: ExpertExchange;
  /** TP group (GPU order) and this rank's index in it. */
  tpMembers: readonly number[];
  tpIndex: number;
  ffnTp: number;
  epGroup: ExpertGroup | null;
  /** Node-limited routing for the gate (training's node_limit), or null. */
  nodeLimit: { limit: number; expertToNode: Int32Array } | null;
  faults: LoweringFaults;
}

/** Rows of one pass: the full row count, the SP block offsets, and a tag unique to the pass. */
export interface Rows {
  total: number;
  offsets: readonly number[];
  /** Unique within the TP group (its rendezvous key). */
  tag: string;
  /** Unique within the EP group, whose members run other data-parallel ranks' micro-batches: the op's, not the sequence's. */
  epTag: string;
}

export function myRows(env: RankEnv, rows: Rows): { first: number; count: number } {
  const first = rows.offsets[env.tpIndex]!;
  return { first, count: rows.offsets[env.tpIndex + 1]! - first };
}

const BF16 = 2;

export function* gatherRows(env: RankEnv, x: F32, rows: Rows, what: string, kind: "tp" | "tp_vocab" = "tp"): Gen<F32> {
  if (env.tpMembers.length === 1) return x;
  return yield* env.cluster.allGather(`tp:${env.tpMembers[0]}:${rows.tag}:${what}`, env.tpMembers, env.gpu, x, kind, BF16, what);
}

export function* scatterRows(env: RankEnv, full: F32, rows: Rows, width: number, what: string, kind: "tp" | "tp_vocab" = "tp"): Gen<F32> {
  if (env.tpMembers.length === 1) return full;
  const offsets = rows.offsets.map((o) => o * width);
  return yield* env.cluster.reduceScatter(`tp:${env.tpMembers[0]}:${rows.tag}:${what}`, env.tpMembers, env.gpu, full, offsets, kind, BF16, what);
}

function mlaConfigOf(env: RankEnv, heads: number): MlaConfig {
  const a = env.model.attention;
  if (a.kind !== "mla") throw new RangeError("distributed executor: MLA attention only");
  return { hidden: env.model.hidden, normEps: env.model.normEps, attention: { ...a, heads } };
}

function gateConfigOf(env: RankEnv): GateConfig {
  const moe = env.model.moe!;
  const cfg: GateConfig = { experts: moe.routedExperts, topK: moe.expertsPerToken, gate: moe.gate };
  if (env.nodeLimit !== null) cfg.nodeLimit = env.nodeLimit;
  return cfg;
}

/**
 * Training's node limit as the gate applies it: expert e lives on EP rank e / (experts / ep), and EP
 * rank r on node r / gpusPerNode of its group (group-local: every EP group has the same shape).
 */
export function trainingNodeLimit(model: ModelSpec, ep: number, gpusPerNode: number, nodeLimit: number | null): { limit: number; expertToNode: Int32Array } | null {
  const moe = model.moe;
  if (moe === null || nodeLimit === null) return null;
  const perRank = moe.routedExperts / ep;
  const perNode = Math.min(ep, gpusPerNode);
  return { limit: nodeLimit, expertToNode: Int32Array.from({ length: moe.routedExperts }, (_, e) => Math.floor(Math.floor(e / perRank) / perNode)) };
}

// ── routed experts on the rank that holds them ─────────────────────────────────────────────────

interface SlotBatch {
  /** Pick indices (into the received picks) and their copies, in copy order. */
  picks: Int32Array;
  x: F32;
  y: F32;
  mlp: SwigluMlpCache<F32>;
}

export interface ExpertWork {
  received: ReceivedTokens;
  batches: (SlotBatch | null)[];
}

function expertMlp(w: RankLayerWeights, s: number, n: number): SwigluMlpWeights<F32> {
  const e = w.experts!;
  return { gate: e.gate.subarray(s * n, (s + 1) * n), up: e.up.subarray(s * n, (s + 1) * n), down: e.down.subarray(s * n, (s + 1) * n) };
}

/** Runs this GPU's expert slots on the copies it received; returns the weighted partial sums. */
export function runExperts(env: RankEnv, w: RankLayerWeights, r: ReceivedTokens): { partial: Float64Array; work: ExpertWork } {
  const d = env.model.hidden;
  const inter = env.model.moe!.expertIntermediate;
  const slots = w.experts!.logical.length;
  const partial = new Float64Array(r.copies * d);
  const batches: (SlotBatch | null)[] = [];
  const byPick = new Int32Array(r.pickSlot.length);
  const copyOfPick = new Int32Array(r.pickSlot.length);
  for (let c = 0; c < r.copies; c++) for (let i = r.pickStart[c]!; i < r.pickStart[c + 1]!; i++) copyOfPick[i] = c;
  for (let s = 0; s < slots; s++) {
    let n = 0;
    for (let i = 0; i < r.pickSlot.length; i++) if (r.pickSlot[i] === s) byPick[n++] = i;
    if (n === 0) {
      batches.push(null);
      continue;
    }
    const picks = byPick.slice(0, n);
    const x = new Float32Array(n * d);
    for (let j = 0; j < n; j++) x.set(r.x.subarray(copyOfPick[picks[j]!]! * d, (copyOfPick[picks[j]!]! + 1) * d), j * d);
    const { y, cache } = swigluMlpForward(x, expertMlp(w, s, inter * d), n, d, inter);
    for (let j = 0; j < n; j++) {
      const p = picks[j]!;
      const wt = env.faults.dropCombineWeight && r.pickK[p] === 0 ? 1 : r.pickWeight[p]!;
      const dst = copyOfPick[p]! * d;
      for (let k = 0; k < d; k++) partial[dst + k] = partial[dst + k]! + wt * y[j * d + k]!;
    }
    batches.push({ picks, x, y, mlp: cache });
  }
  return { partial, work: { received: r, batches } };
}

/** Backward of {@link runExperts} for the output-gradient copies dy; expert grads added into `grads`. */
export function runExpertsBackward(
  env: RankEnv,
  w: RankLayerWeights,
  work: ExpertWork,
  dy: F32,
  grads: { gate: F32; up: F32; down: F32 },
): { partialDx: Float64Array; dWeights: F32 } {
  const d = env.model.hidden;
  const inter = env.model.moe!.expertIntermediate;
  const n = inter * d;
  const r = work.received;
  const partialDx = new Float64Array(r.copies * d);
  const dWeights = new Float32Array(r.pickSlot.length);
  const copyOfPick = new Int32Array(r.pickSlot.length);
  for (let c = 0; c < r.copies; c++) for (let i = r.pickStart[c]!; i < r.pickStart[c + 1]!; i++) copyOfPick[i] = c;
  work.batches.forEach((b, s) => {
    if (b === null) return;
    const rows = b.picks.length;
    const dye = new Float32Array(rows * d);
    for (let j = 0; j < rows; j++) {
      const p = b.picks[j]!;
      const src = copyOfPick[p]! * d;
      const wt = env.faults.dropCombineWeight && r.pickK[p] === 0 ? 1 : r.pickWeight[p]!;
      let dot = 0;
      for (let k = 0; k < d; k++) {
        dot += dy[src + k]! * b.y[j * d + k]!;
        dye[j * d + k] = wt * dy[src + k]!;
      }
      dWeights[p] = dot;
    }
    const g = swigluMlpBackward(dye, b.x, expertMlp(w, s, n), b.mlp, rows, d, inter);
    addInto(grads.gate.subarray(s * n, (s + 1) * n), g.dGate);
    addInto(grads.up.subarray(s * n, (s + 1) * n), g.dUp);
    addInto(grads.down.subarray(s * n, (s + 1) * n), g.dDown);
    for (let j = 0; j < rows; j++) {
      const dst = copyOfPick[b.picks[j]!]! * d;
      for (let k = 0; k < d; k++) partialDx[dst + k] = partialDx[dst + k]! + g.dx[j * d + k]!;
    }
  });
  return { partialDx, dWeights };
}

// ── the layer (training: forward and backward) ─────────────────────────────────────────────────

/** Layer gradients on this rank, shaped like its weights. */
export interface RankLayerGrads {
  attnNorm: F32;
  mla: MlaGrads<F32>;
  ffnNorm: F32;
  dense: SwigluMlpWeights<F32> | null;
  router: F32 | null;
  shared: SwigluMlpWeights<F32> | null;
  experts: { gate: F32; up: F32; down: F32 } | null;
}

export interface RankLayerCache {
  x: F32;
  attnIn: F32;
  attnFull: F32;
  mla: MlaNaiveCache<F32>;
  h: F32;
  ffnIn: F32;
  ffnFull: F32 | null;
  dense: SwigluMlpCache<F32> | null;
  shared: SwigluMlpCache<F32> | null;
  gate: GateOutput<F32> | null;
  route: ExpertRoute | null;
  work: ExpertWork | null;
  /** Gathered scores and choices of the sequence's rows (for the balance loss), or null. */
  auxScores: F32 | null;
  auxChosen: Int32Array | null;
}

export interface LayerPass {
  /** Rows of the sequence that count for the balance loss (MTP blocks: the unpadded ones). */
  auxRows: number;
}

/** The layer's forward on this rank's rows x (count × hidden); returns y, α·L_Bal (on TP rank 0), and the cache. */
export function* rankLayerForward(env: RankEnv, w: RankLayerWeights, x: F32, rows: Rows, pass: LayerPass): Gen<{ y: F32; aux: number; cache: RankLayerCache }> {
  const model = env.model;
  const d = model.hidden;
  const eps = model.normEps;
  const mine = myRows(env, rows);
  const T = rows.total;
  const attnIn = rmsnormForward(x, w.attnNorm, mine.count, d, eps);
  const attnFull = yield* gatherRows(env, attnIn, rows, `L${w.layer}.attn.ag`);
  const m = mlaForward(attnFull, w.mla, mlaConfigOf(env, w.heads.count), T);
  const attnOut = yield* scatterRows(env, m.y, rows, d, `L${w.layer}.attn.rs`);
  const h = add(x, attnOut);
  const ffnIn = rmsnormForward(h, w.ffnNorm, mine.count, d, eps);
  const cache: RankLayerCache = { x, attnIn, attnFull, mla: m.cache, h, ffnIn, ffnFull: null, dense: null, shared: null, gate: null, route: null, work: null, auxScores: null, auxChosen: null };
  const tpFfn = env.ffnTp > 1;
  const ffnRows = tpFfn ? T : mine.count;
  const ffnFull = tpFfn ? yield* gatherRows(env, ffnIn, rows, `L${w.layer}.ffn.ag`) : ffnIn;
  cache.ffnFull = ffnFull;
  let partial: F32;
  let aux = 0;
  if (w.kind === "dense") {
    const r = swigluMlpForward(ffnFull, w.dense!, ffnRows, d, w.ffnSlice.count);
    cache.dense = r.cache;
    partial = r.y;
  } else {
    partial = new Float32Array(ffnRows * d);
    if (w.shared !== null) {
      const s = swigluMlpForward(ffnFull, w.shared, ffnRows, d, w.ffnSlice.count);
      cache.shared = s.cache;
      partial.set(s.y);
    }
    const gcfg = gateConfigOf(env);
    const gate = gateForward(ffnIn, w.router!, w.gateBias, gcfg, mine.count, d);
    cache.gate = gate;
    const K = gcfg.topK;
    // Training places experts contiguously: logical expert e sits in slot e (EP rank e / slotsPerGpu).
    const slots = gate.experts;
    const { received, route } = yield* env.experts.dispatch(env.epGroup!, env.gpu, ffnIn, mine.count, slots, gate.weights, K, `${rows.epTag}:L${w.layer}:fwd`);
    cache.route = route;
    const { partial: ep, work } = runExperts(env, w, received);
    cache.work = work;
    const combined = yield* env.experts.combine(route, env.gpu, ep, received, null, `${rows.epTag}:L${w.layer}:fwd`);
    const at = tpFfn ? mine.first * d : 0;
    for (let i = 0; i < combined.y.length; i++) partial[at + i] = partial[at + i]! + combined.y[i]!;
    const alpha = model.moe!.gate.seqAuxLossWeight;
    if (alpha > 0) {
      const E = gcfg.experts;
      const scoresFull = yield* gatherAux(env, gate.scores, rows, `L${w.layer}.aux.scores`);
      const chosenFull = yield* gatherAux(env, Float32Array.from(gate.experts), rows, `L${w.layer}.aux.chosen`);
      const chosen = Int32Array.from(chosenFull.subarray(0, pass.auxRows * K));
      cache.auxScores = scoresFull.subarray(0, pass.auxRows * E);
      cache.auxChosen = chosen;
      if (env.tpIndex === 0) aux = seqAuxLossForward(cache.auxScores, chosen, { experts: E, topK: K, alpha, seqLen: pass.auxRows }, pass.auxRows).loss;
    }
  }
  const f = tpFfn ? yield* scatterRows(env, partial, rows, d, `L${w.layer}.ffn.rs`) : partial;
  return { y: add(h, f), aux, cache };
}

/** Gate scores gathered over TP for the balance loss (FP32 on the wire; counted apart from the planner's TP traffic). */
function* gatherAux(env: RankEnv, x: F32, rows: Rows, what: string): Gen<F32> {
  if (env.tpMembers.length === 1) return x;
  return yield* env.cluster.allGather(`tp:${env.tpMembers[0]}:${rows.tag}:${what}`, env.tpMembers, env.gpu, x, "tp_aux_scores", 4, what);
}

/** Backward of {@link rankLayerForward}: dx for this rank's rows; gradients added into `g`. */
export function* rankLayerBackward(
  env: RankEnv,
  w: RankLayerWeights,
  dy: F32,
  dAux: number,
  rows: Rows,
  pass: LayerPass,
  cache: RankLayerCache,
  g: RankLayerGrads,
): Gen<F32> {
  const model = env.model;
  const d = model.hidden;
  const eps = model.normEps;
  const mine = myRows(env, rows);
  const T = rows.total;
  const tpFfn = env.ffnTp > 1;
  const ffnRows = tpFfn ? T : mine.count;
  const dyFull = tpFfn ? yield* gatherRows(env, dy, rows, `L${w.layer}.ffn.bwd.ag`) : dy;
  let dFfnFull: F32 | null = null;
  let dFfnMine: F32 = new Float32Array(mine.count * d);
  if (w.kind === "dense") {
    const r = swigluMlpBackward(dyFull, cache.ffnFull!, w.dense!, cache.dense!, ffnRows, d, w.ffnSlice.count);
    addInto(g.dense!.gate, r.dGate);
    addInto(g.dense!.up, r.dUp);
    addInto(g.dense!.down, r.dDown);
    dFfnFull = r.dx;
  } else {
    if (w.shared !== null) {
      const r = swigluMlpBackward(dyFull, cache.ffnFull!, w.shared, cache.shared!, ffnRows, d, w.ffnSlice.count);
      addInto(g.shared!.gate, r.dGate);
      addInto(g.shared!.up, r.dUp);
      addInto(g.shared!.down, r.dDown);
      dFfnFull = r.dx;
    }
    const route = cache.route!;
    const tag = `${rows.epTag}:L${w.layer}:bwd`;
    const dyCopies = yield* env.experts.dispatchAgain(route, env.gpu, dy, tag);
    const eb = runExpertsBackward(env, w, cache.work!, dyCopies, g.experts!);
    const back = yield* env.experts.combine(route, env.gpu, eb.partialDx, cache.work!.received, eb.dWeights, tag);
    const gcfg = gateConfigOf(env);
    let dScores: F32 | null = null;
    if (cache.auxScores !== null) {
      const E = gcfg.experts;
      const all = seqAuxLossBackward(dAux, cache.auxScores, cache.auxChosen!, { experts: E, topK: gcfg.topK, alpha: model.moe!.gate.seqAuxLossWeight, seqLen: pass.auxRows }, pass.auxRows);
      dScores = new Float32Array(mine.count * E);
      const from = mine.first * E;
      const to = Math.min((mine.first + mine.count) * E, all.length);
      if (to > from) dScores.set(all.subarray(from, to));
    }
    const gb = gateBackward(back.pickValues!, dScores, cache.ffnIn, w.router!, cache.gate!, gcfg, d);
    addInto(g.router!, gb.dw);
    dFfnMine = addInto(back.y, gb.dx);
  }
  if (dFfnFull !== null) {
    const part = tpFfn ? yield* scatterRows(env, dFfnFull, rows, d, `L${w.layer}.ffn.bwd.rs`) : dFfnFull;
    dFfnMine = addInto(dFfnMine, part);
  } else if (tpFfn) {
    // Keep the TP collectives uniform (the planner counts them for every layer).
    const zero = new Float32Array(T * d);
    addInto(dFfnMine, yield* scatterRows(env, zero, rows, d, `L${w.layer}.ffn.bwd.rs`));
  }
  const fn = rmsnormBackward(dFfnMine, cache.h, w.ffnNorm, mine.count, d, eps);
  addInto(g.ffnNorm, fn.dw);
  const dh = add(dy, fn.dx);
  const dhFull = yield* gatherRows(env, dh, rows, `L${w.layer}.attn.bwd.ag`);
  const m = mlaBackward(dhFull, cache.attnFull, w.mla, mlaConfigOf(env, w.heads.count), cache.mla);
  const gm = g.mla;
  for (const k of ["qA", "qANorm", "qB", "q", "kvA", "kvANorm", "kvB", "o"] as const) {
    const dst = gm[k];
    const src = m.grads[k];
    if (dst !== null && src !== null) addInto(dst, src);
  }
  const dAttnIn = yield* scatterRows(env, m.dx, rows, d, `L${w.layer}.attn.bwd.rs`);
  const an = rmsnormBackward(dAttnIn, cache.x, w.attnNorm, mine.count, d, eps);
  addInto(g.attnNorm, an.dw);
  return addInto(dh, an.dx);
}
