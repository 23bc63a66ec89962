/**
 * Activation bytes: what training caches for the backward pass under the FP8 recipe, per micro-batch
 * and layer; and the transient working set of a serving forward pass.
 *
 * Training — what one layer caches for one micro-batch of T tokens on one GPU (tp = tensor-parallel
 * degree; "sequence tokens" are T/tp with sequence parallelism, else T; MoE tokens are T/tp, each TP
 * rank dispatching its share):
 * - the layer input and the post-attention residual, BF16 (sequence tokens): the RMSNorms are
 *   recomputed from them (`recompute` has `rmsnorm`); without that recompute the normed outputs are
 *   cached too, as FP8 GEMM inputs with 1×128 scales;
 * - MLA: the q latent and the kv latent with the RoPE key, BF16 (T tokens; inputs of the recomputed
 *   latent norms and up-projections when `recompute` has `mla_up_proj`; otherwise q, k and v after the
 *   up-projections are cached in BF16 for the attention core); MHA/GQA: q, k, v in BF16;
 * - the attention core (BF16/FP32 part): its softmax log-sum-exp, FP32 per head; its output is the
 *   output projection's input, cached once in the `attn_out_proj_input` format (E5M6 in V3) and used
 *   by both the core's backward and the projection's weight gradient;
 * - dense FFN: the SwiGLU input (2·I/tp per token) in the `swiglu_input` format; the SwiGLU output
 *   (the down projection's input) only when it is not recomputed;
 * - MoE: the gate's FP32 sigmoid scores and the top-k ids and weights; each routed expert's input row
 *   as dispatched (`moe_dispatch` format: FP8 with scales), K rows per MoE token under balanced routing;
 *   each row's SwiGLU input (`swiglu_input` format); the shared experts' SwiGLU input; nothing for the
 *   combine: the gate weight is applied to the SwiGLU output before the (linear) down projection,
 *   so its gradient comes from the recomputed SwiGLU output and no expert output is kept (the
 *   `moe_combine` format sizes the combine's traffic and buffers);
 * - the embedding keeps the token ids (int32); the head keeps its input (BF16, for the recomputed
 *   final norm) and the logits (BF16, vocab/tp); each MTP module keeps the next tokens' embeddings
 *   and its shared-head norm input (BF16), its block's cache, and its logits.
 *
 * Serving — the working set of one micro-batch through one layer (nothing is kept for a backward):
 * the residual stream and its normed copy (BF16), the attention's q, k, v and output for the GPU's
 * heads (BF16), the latents, and for a MoE layer each routed row's dispatched input (FP8), SwiGLU
 * input and output and expert output (BF16); the larger of a dense and a MoE layer's set counts,
 * plus the head's logits (FP32) for the tokens that need them (prefill: each sequence's last token).
 */

import type { ModelSpec } from "../spec.js";
import type { RecipeBytes } from "./recipe-bytes.js";
import type { StageContents } from "./plan.js";

export interface CachedTensor {
  name: string;
  bytes: number;
}

/** Token counts of one training micro-batch on one GPU. */
export interface TrainingTokens {
  /** Tokens of the micro-batch (per data-parallel rank). */
  tokens: number;
  tp: number;
  sp: boolean;
}

function seqTokens(t: TrainingTokens): number {
  return t.sp ? Math.ceil(t.tokens / t.tp) : t.tokens;
}

function moeTokens(t: TrainingTokens): number {
  return Math.ceil(t.tokens / t.tp);
}

/** What one attention block caches. */
export function attentionCache(model: ModelSpec, recipe: RecipeBytes, t: TrainingTokens): CachedTensor[] {
  const h = model.hidden;
  const a = model.attention;
  const T = t.tokens;
  const S = seqTokens(t);
  const out: CachedTensor[] = [{ name: "layer input (BF16)", bytes: S * h * 2 }];
  const normsRecomputed = recipe.recomputes("rmsnorm");
  if (!normsRecomputed) out.push({ name: "attention input, normed (GEMM input)", bytes: S * recipe.cachedRow("default", h) });
  const heads = Math.ceil(a.heads / t.tp);
  if (a.kind === "mla") {
    const qk = a.qkNopeHeadDim + a.qkRopeHeadDim;
    if (a.qLoraRank !== null) {
      out.push({ name: "q latent (BF16)", bytes: T * a.qLoraRank * 2 });
      if (!normsRecomputed) out.push({ name: "q latent, normed (GEMM input)", bytes: T * recipe.cachedRow("default", a.qLoraRank) });
    }
    out.push({ name: "kv latent and RoPE key (BF16)", bytes: T * (a.kvLoraRank + a.qkRopeHeadDim) * 2 });
    if (!normsRecomputed) out.push({ name: "kv latent, normed (GEMM input)", bytes: T * recipe.cachedRow("default", a.kvLoraRank) });
    if (!recipe.recomputes("mla_up_proj")) {
      out.push({ name: "q, k, v after the up-projections (BF16)", bytes: T * heads * (2 * qk + a.vHeadDim) * 2 });
    }
    out.push({ name: "attention log-sum-exp (FP32)", bytes: T * heads * 4 });
    out.push({ name: "attention output = o_proj input (attn_out_proj_input)", bytes: T * recipe.cachedRow("attn_out_proj_input", heads * a.vHeadDim) });
  } else {
    const kv = a.kvHeads % t.tp === 0 ? a.kvHeads / t.tp : a.kvHeads;
    out.push({ name: "q, k, v (BF16)", bytes: T * (heads + 2 * kv) * a.headDim * 2 });
    out.push({ name: "attention log-sum-exp (FP32)", bytes: T * heads * 4 });
    out.push({ name: "attention output = o_proj input (attn_out_proj_input)", bytes: T * recipe.cachedRow("attn_out_proj_input", heads * a.headDim) });
  }
  out.push({ name: "post-attention residual (BF16)", bytes: S * h * 2 });
  if (!normsRecomputed) out.push({ name: "FFN input, normed (GEMM input)", bytes: S * recipe.cachedRow("default", h) });
  return out;
}

function swigluWidth(activation: "swiglu" | "gelu", inter: number): number {
  return activation === "swiglu" ? 2 * inter : inter;
}

export function denseFfnCache(model: ModelSpec, recipe: RecipeBytes, t: TrainingTokens): CachedTensor[] {
  const d = model.denseFfn!;
  const i = Math.ceil(d.intermediate / t.tp);
  const out: CachedTensor[] = [{ name: "SwiGLU input (swiglu_input)", bytes: t.tokens * recipe.cachedRow("swiglu_input", swigluWidth(d.activation, i)) }];
  if (!recipe.swigluOutputRecomputed()) out.push({ name: "down-projection input (GEMM input)", bytes: t.tokens * recipe.cachedRow("default", i) });
  return out;
}

export function moeCache(model: ModelSpec, recipe: RecipeBytes, t: TrainingTokens): CachedTensor[] {
  const moe = model.moe!;
  const M = moeTokens(t);
  const K = moe.expertsPerToken;
  const I = moe.expertIntermediate;
  const rows = M * K;
  const out: CachedTensor[] = [
    { name: "gate scores (FP32) and top-k ids/weights", bytes: M * (moe.routedExperts * 4 + K * 8) },
    { name: "dispatched expert inputs (moe_dispatch)", bytes: rows * recipe.dispatchCopy(model.hidden) },
    { name: "expert SwiGLU inputs (swiglu_input)", bytes: rows * recipe.cachedRow("swiglu_input", swigluWidth(moe.activation, I)) },
  ];
  if (!recipe.swigluOutputRecomputed()) out.push({ name: "expert down-projection inputs (GEMM input)", bytes: rows * recipe.cachedRow("default", I) });
  if (moe.sharedExperts > 0) {
    const si = Math.ceil((moe.sharedExperts * I) / t.tp);
    out.push({ name: "shared-expert SwiGLU input (swiglu_input)", bytes: t.tokens * recipe.cachedRow("swiglu_input", swigluWidth(moe.activation, si)) });
    if (!recipe.swigluOutputRecomputed()) out.push({ name: "shared-expert down-projection input (GEMM input)", bytes: t.tokens * recipe.cachedRow("default", si) });
  }
  return out;
}

export function layerCache(model: ModelSpec, recipe: RecipeBytes, kind: "dense" | "moe", t: TrainingTokens): CachedTensor[] {
  return [...attentionCache(model, recipe, t), ...(kind === "dense" ? denseFfnCache(model, recipe, t) : moeCache(model, recipe, t))];
}

function sum(items: readonly CachedTensor[]): number {
  return items.reduce((a, i) => a + i.bytes, 0);
}

/** What one stage caches for one micro-batch (one "chunk" of the pipeline tables). */
export function stageChunkBytes(model: ModelSpec, recipe: RecipeBytes, stage: StageContents, t: TrainingTokens): number {
  const h = model.hidden;
  const S = seqTokens(t);
  const vocab = Math.ceil(model.vocab / t.tp);
  const dense = stage.denseLayers > 0 ? sum(layerCache(model, recipe, "dense", t)) : 0;
  const moe = stage.moeLayers > 0 ? sum(layerCache(model, recipe, "moe", t)) : 0;
  let bytes = stage.denseLayers * dense + stage.moeLayers * moe;
  if (stage.embedding) bytes += t.tokens * 4;
  if (stage.head) bytes += S * h * 2 + t.tokens * vocab * 2;
  if (stage.mtpModules > 0) {
    const block = sum(layerCache(model, recipe, model.moe !== null ? "moe" : "dense", t));
    const extra = 2 * S * h * 2 + (recipe.recomputes("rmsnorm") ? 0 : S * recipe.cachedRow("default", 2 * h));
    bytes += stage.mtpModules * (block + extra + t.tokens * vocab * 2);
  }
  return bytes;
}

/** Serving: the working set of one micro-batch on one GPU. */
export interface ServingTokens {
  /** Tokens of the micro-batch in the attention group (all TP ranks see them). */
  groupTokens: number;
  /** Tokens needing logits (prefill: the sequences' last tokens; decode: all). */
  logitTokens: number;
  tp: number;
  sp: boolean;
  /** Expert picks per token (routed, plus shared when served as routed). */
  picks: number;
  /** Shared experts run beside the routed ones (not served as routed). */
  sharedBeside: boolean;
}

export function servingWorkingSet(model: ModelSpec, recipe: RecipeBytes, t: ServingTokens): number {
  const h = model.hidden;
  const a = model.attention;
  const G = t.groupTokens;
  const S = t.sp ? Math.ceil(G / t.tp) : G;
  const heads = Math.ceil(a.heads / t.tp);
  const residual = 2 * S * h * 2;
  let attention: number;
  if (a.kind === "mla") {
    const qk = a.qkNopeHeadDim + a.qkRopeHeadDim;
    attention = G * heads * (2 * qk + 2 * a.vHeadDim) * 2 + G * ((a.qLoraRank ?? 0) + a.kvLoraRank + a.qkRopeHeadDim) * 2;
  } else {
    attention = G * heads * 4 * a.headDim * 2;
  }
  let ffn = 0;
  if (model.denseFfn !== null) {
    const I = model.denseFfn.intermediate;
    ffn = S * (swigluWidth(model.denseFfn.activation, I) + I) * 2;
  }
  if (model.moe !== null) {
    const moe = model.moe;
    const I = moe.expertIntermediate;
    const rows = Math.ceil(G / t.tp) * t.picks;
    let m = rows * (recipe.dispatchCopy(h) + (swigluWidth(moe.activation, I) + I) * 2 + h * 2);
    if (t.sharedBeside && moe.sharedExperts > 0) m += S * (swigluWidth(moe.activation, moe.sharedExperts * I) + moe.sharedExperts * I) * 2;
    ffn = Math.max(ffn, m);
  }
  const logits = t.logitTokens * Math.ceil(model.vocab / t.tp) * 4;
  return residual + attention + ffn + logits;
}
