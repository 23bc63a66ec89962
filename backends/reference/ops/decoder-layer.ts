/**
 * One DeepSeek-V3 decoder layer, composed of the ops above (pre-norm, residual):
 *   h = x + MLA(RMSNorm_attn(x))
 *   y = h + FFN(RMSNorm_ffn(h)),   FFN = a dense SwiGLU MLP, or the MoE (gate → routed + shared experts)
 * With an MoE FFN and α > 0 the layer also returns its sequence-wise auxiliary loss (already × α);
 * its gradient is added to the gate's scores in the backward. This is the block the MTP module takes
 * and the unit the reference benchmark times.
 */
import type { ModelSpec } from "../../../compiler/spec.js";
import { seqAuxLossBackward, seqAuxLossForward } from "./aux-loss.js";
import { gateBackward, gateForward, type GateConfig, type GateOutput } from "./gate.js";
import { mlaBackward, mlaForward, type MlaConfig, type MlaGrads, type MlaNaiveCache, type MlaWeights } from "./mla.js";
import { moeBackward, moeConfigOf, moeForward, type MoeCache, type MoeConfig, type MoeGrads, type MoeWeights } from "./moe.js";
import { rmsnormBackward, rmsnormForward } from "./rmsnorm.js";
import { swigluMlpBackward, swigluMlpForward, type SwigluMlpCache, type SwigluMlpWeights } from "./swiglu.js";
import { add, addInto, type RealArray } from "./tensor.js";

export type DecoderFfnConfig =
  | { kind: "dense"; inter: number }
  | { kind: "moe"; moe: MoeConfig; gate: GateConfig; auxLoss: { alpha: number; seqLen: number } | null };

export interface DecoderLayerConfig {
  mla: MlaConfig;
  ffn: DecoderFfnConfig;
}

/** The layer config of a model spec for a layer of the given kind (MLA and SwiGLU only). */
export function decoderLayerConfigOf(model: ModelSpec, kind: "dense" | "moe", seqLen: number): DecoderLayerConfig {
  if (model.attention.kind !== "mla") throw new RangeError(`decoder layer: attention ${model.attention.kind} is not MLA`);
  const mla: MlaConfig = { hidden: model.hidden, normEps: model.normEps, attention: model.attention };
  if (kind === "dense") {
    const ffn = model.denseFfn;
    if (!ffn || ffn.activation !== "swiglu") throw new RangeError("decoder layer: a dense layer needs a SwiGLU dense FFN");
    return { mla, ffn: { kind: "dense", inter: ffn.intermediate } };
  }
  const moe = model.moe;
  if (!moe || moe.activation !== "swiglu") throw new RangeError("decoder layer: an MoE layer needs a SwiGLU MoE block");
  const alpha = moe.gate.seqAuxLossWeight;
  return {
    mla,
    ffn: {
      kind: "moe",
      moe: moeConfigOf(model.hidden, moe),
      gate: { experts: moe.routedExperts, topK: moe.expertsPerToken, gate: moe.gate },
      auxLoss: alpha > 0 ? { alpha, seqLen } : null,
    },
  };
}

export interface DecoderLayerWeights<A extends RealArray> {
  attnNorm: A;
  mla: MlaWeights<A>;
  ffnNorm: A;
  /** Dense layers. */
  dense: SwigluMlpWeights<A> | null;
  /** MoE layers: experts, gate weight (experts × hidden) and selection bias (or null). */
  moe: MoeWeights<A> | null;
  gate: A | null;
  gateBias: A | null;
}

export interface DecoderLayerGrads<A extends RealArray> {
  attnNorm: A;
  mla: MlaGrads<A>;
  ffnNorm: A;
  dense: SwigluMlpWeights<A> | null;
  moe: MoeGrads<A> | null;
  gate: A | null;
}

export interface DecoderLayerCache<A extends RealArray> {
  tokens: number;
  attnIn: A;
  mla: MlaNaiveCache<A>;
  h: A;
  ffnIn: A;
  dense: SwigluMlpCache<A> | null;
  gate: GateOutput<A> | null;
  moe: MoeCache<A> | null;
}

export interface DecoderLayerOutput<A extends RealArray> {
  y: A;
  /** α·L_Bal of this layer (0 without it). */
  auxLoss: number;
  cache: DecoderLayerCache<A>;
}

/** The layer on one sequence x (tokens × hidden); `fixedExperts` pins the routing (gradient checks). */
export function decoderLayerForward<A extends RealArray>(
  x: A,
  w: DecoderLayerWeights<A>,
  cfg: DecoderLayerConfig,
  tokens: number,
  opts: { startPosition?: number; fixedExperts?: Int32Array } = {},
): DecoderLayerOutput<A> {
  const d = cfg.mla.hidden;
  const eps = cfg.mla.normEps;
  const attnIn = rmsnormForward(x, w.attnNorm, tokens, d, eps);
  const m = mlaForward(attnIn, w.mla, cfg.mla, tokens, opts.startPosition ?? 0);
  const h = add(x, m.y);
  const ffnIn = rmsnormForward(h, w.ffnNorm, tokens, d, eps);
  const ffn = cfg.ffn;
  let dense: SwigluMlpCache<A> | null = null;
  let gate: GateOutput<A> | null = null;
  let moe: MoeCache<A> | null = null;
  let auxLoss = 0;
  let f: A;
  if (ffn.kind === "dense") {
    const r = swigluMlpForward(ffnIn, w.dense!, tokens, d, ffn.inter);
    dense = r.cache;
    f = r.y;
  } else {
    gate = gateForward(ffnIn, w.gate!, w.gateBias, ffn.gate, tokens, d, opts.fixedExperts);
    const r = moeForward(ffnIn, w.moe!, { experts: gate.experts, weights: gate.weights }, ffn.moe, tokens);
    moe = r.cache;
    f = r.y;
    if (ffn.auxLoss !== null) {
      const aux = { experts: ffn.gate.experts, topK: ffn.gate.topK, ...ffn.auxLoss };
      auxLoss = seqAuxLossForward(gate.scores, gate.experts, aux, tokens).loss;
    }
  }
  const y = add(h, f);
  return { y, auxLoss, cache: { tokens, attnIn, mla: m.cache, h, ffnIn, dense, gate, moe } };
}

/** Gradients of decoderLayerForward given dy and the gradient dAux of its auxiliary loss (1 in training). */
export function decoderLayerBackward<A extends RealArray>(
  dy: A,
  dAux: number,
  x: A,
  w: DecoderLayerWeights<A>,
  cfg: DecoderLayerConfig,
  cache: DecoderLayerCache<A>,
): { dx: A; grads: DecoderLayerGrads<A> } {
  const d = cfg.mla.hidden;
  const eps = cfg.mla.normEps;
  const tokens = cache.tokens;
  const ffn = cfg.ffn;
  let dFfnIn: A;
  let dense: SwigluMlpWeights<A> | null = null;
  let moe: MoeGrads<A> | null = null;
  let gateGrad: A | null = null;
  if (ffn.kind === "dense") {
    const g = swigluMlpBackward(dy, cache.ffnIn, w.dense!, cache.dense!, tokens, d, ffn.inter);
    dense = { gate: g.dGate, up: g.dUp, down: g.dDown };
    dFfnIn = g.dx;
  } else {
    const gate = cache.gate!;
    const routing = { experts: gate.experts, weights: gate.weights };
    const m = moeBackward(dy, cache.ffnIn, w.moe!, routing, ffn.moe, cache.moe!);
    moe = m.grads;
    const aux = ffn.auxLoss === null ? null : { experts: ffn.gate.experts, topK: ffn.gate.topK, ...ffn.auxLoss };
    const dScores = aux === null ? null : seqAuxLossBackward(dAux, gate.scores, gate.experts, aux, tokens);
    const g = gateBackward(m.dWeights, dScores, cache.ffnIn, w.gate!, gate, ffn.gate, d);
    gateGrad = g.dw;
    dFfnIn = addInto(m.dx, g.dx);
  }
  const fn = rmsnormBackward(dFfnIn, cache.h, w.ffnNorm, tokens, d, eps);
  const dh = add(dy, fn.dx);
  const m = mlaBackward(dh, cache.attnIn, w.mla, cfg.mla, cache.mla);
  const an = rmsnormBackward(m.dx, x, w.attnNorm, tokens, d, eps);
  const dx = addInto(dh, an.dx);
  return { dx, grads: { attnNorm: an.dw, mla: m.grads, ffnNorm: fn.dw, dense, moe, gate: gateGrad } };
}
