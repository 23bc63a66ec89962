/**
 * What one layer costs on one GPU for one micro-batch, composed from the kernel model: the GEMMs of
 * each block (forward, input gradient, weight gradient), the attention core, the memory-bound
 * kernels (norms, RoPE, SwiGLU, quantisation, residuals), and the all-to-all of a MoE layer.
 *
 * Shapes (T = the micro-batch's tokens the GEMMs see, tp = tensor-parallel degree):
 * - MLA: fused q_a+kv_a (N = q_lora + kv_lora + rope, K = hidden), q_b (N = heads·(nope+rope)/tp,
 *   K = q_lora), kv_b (N = heads·(nope+v)/tp, K = kv_lora), o (N = hidden, K = heads·v/tp); without
 *   q_lora a full q projection. MHA/GQA: fused qkv and o. These are DeepGEMM's own table shapes for V3.
 * - Attention core: `attentionCoreFlopsPerToken` of compiler/stats.ts at the average causal context,
 *   BF16; backward twice the forward (the FLOP convention of `dsv3 stats`). Decode reads the latent
 *   KV cache (memory-bound, as FlashMLA).
 * - Dense FFN: gate+up (N = 2I/tp) and down. MoE: the gate (BF16, N = experts), the shared experts
 *   as one dense SwiGLU of width shared·I, the routed experts as one grouped GEMM over the GPU's
 *   expert slots with rows = tokens · picks (every GPU receives what it sends under the symmetric
 *   expected-value routing of the plan), contiguous layout (training, prefill) or masked (decode).
 * - Backward of a GEMM Y = X·Wᵀ (M×N, K): input gradient M×K from N (dgrad), weight gradient N×K from
 *   M (wgrad, per group for experts). Memory-bound kernels move twice their forward bytes.
 * - The recipe's recompute list adds, to the backward: rmsnorm → the norms' forward, mla_up_proj →
 *   the q_b and kv_b forward GEMMs, swiglu → the SwiGLU's forward, rope → RoPE's forward.
 * GEMMs run in FP8 under the FP8 recipe (BF16 when precision mode is bf16); the gate and the output
 * head in BF16 (the recipe keeps them out of FP8).
 */

import type { ModelSpec, PrecisionSpec } from "../../compiler/spec.js";
import { attentionCoreFlopsPerToken } from "../../compiler/stats.js";
import type { GemmDtype, GroupedLayout, KernelModel } from "./kernel-model.js";

/** Forward, input-gradient and weight-gradient seconds of one part of a layer. */
export interface PassSeconds {
  f: number;
  /** Input gradient, with the recomputation the recipe asks for. */
  b: number;
  w: number;
}

export interface LayerSeconds {
  /** Attention block (norms, projections, core, output projection, residual); the MoE gate rides here. */
  attention: PassSeconds;
  /** Dense FFN, or the routed experts of a MoE layer (SwiGLU included). */
  ffn: PassSeconds;
  /** Shared experts (MoE only; zero otherwise). */
  shared: PassSeconds;
  moe: boolean;
}

export interface LayerShape {
  /** Tokens the GEMMs of the attention and dense blocks see (the micro-batch's, per attention group). */
  tokens: number;
  /** Tokens this GPU holds between blocks (tokens / tp with sequence parallelism). */
  localTokens: number;
  /** Tokens this GPU dispatches to the experts (and runs the shared experts on). */
  moeTokens: number;
  tp: number;
  /** Expert slots on the GPU per MoE layer, and the picks per token that land on slots (routed + shared-as-routed). */
  slotsPerGpu: number;
  picks: number;
  /** Whether the shared experts run as a dense block beside the routed ones. */
  sharedBeside: boolean;
  /** Average causal context of a token's attention (training, prefill: seqLen / 2). */
  context: number;
  /** Decode: sequences in the micro-batch and the context each reads from the KV cache; null otherwise. */
  decode: { sequences: number; context: number } | null;
  layout: GroupedLayout;
  /** Whether the dense FFN is split over the tp ranks (training) or whole on each GPU (serving). */
  ffnSplit: boolean;
}

interface Gemm {
  m: number;
  n: number;
  k: number;
  dtype: GemmDtype;
  groups?: number;
}

const ZERO: PassSeconds = { f: 0, b: 0, w: 0 };

function add(a: PassSeconds, b: PassSeconds): PassSeconds {
  return { f: a.f + b.f, b: a.b + b.b, w: a.w + b.w };
}

export class LayerCostModel {
  private readonly cache = new Map<string, LayerSeconds>();
  private readonly gemmCache = new Map<string, number>();

  constructor(
    readonly model: ModelSpec,
    readonly precision: PrecisionSpec,
    readonly kernels: KernelModel,
  ) {}

  private get dtype(): GemmDtype {
    return this.precision.mode === "fp8" ? "fp8" : "bf16";
  }

  private recomputes(part: "rmsnorm" | "mla_up_proj" | "swiglu" | "rope"): boolean {
    return this.precision.recompute.includes(part);
  }

  private seconds(g: Gemm, layout: GroupedLayout): number {
    const key = `${g.m}/${g.n}/${g.k}/${g.dtype}/${g.groups ?? 1}/${layout}`;
    let s = this.gemmCache.get(key);
    if (s === undefined) {
      s = this.kernels.gemm({ m: g.m, n: g.n, k: g.k, dtype: g.dtype, groups: g.groups ?? 1, layout }).seconds;
      this.gemmCache.set(key, s);
    }
    return s;
  }

  /** Forward, dgrad and wgrad of one GEMM. */
  private gemm(g: Gemm, layout: GroupedLayout = "contiguous"): PassSeconds {
    if (g.m <= 0 || g.n <= 0 || g.k <= 0) return ZERO;
    return {
      f: this.seconds(g, layout),
      b: this.seconds({ ...g, n: g.k, k: g.n }, layout),
      w: this.seconds({ ...g, m: g.n, n: g.k, k: g.m }, "contiguous"),
    };
  }

  private memory(bytes: number, recomputed: boolean): PassSeconds {
    const f = this.kernels.memoryBound(bytes);
    return { f, b: 2 * f + (recomputed ? f : 0), w: 0 };
  }

  /** One layer's seconds for `shape`; `moe` picks the FFN kind. Cached per shape. */
  layer(moe: boolean, shape: LayerShape): LayerSeconds {
    const key = `${moe ? "moe" : "dense"}:${JSON.stringify(shape)}`;
    let hit = this.cache.get(key);
    if (hit === undefined) {
      hit = { attention: this.attention(shape), ffn: moe ? this.routed(shape) : this.denseFfn(shape), shared: moe ? this.sharedExperts(shape) : ZERO, moe };
      if (moe) hit.attention = add(hit.attention, this.gate(shape));
      this.cache.set(key, hit);
    }
    return hit;
  }

  private attention(s: LayerShape): PassSeconds {
    const m = this.model;
    const a = m.attention;
    const h = m.hidden;
    const T = s.tokens;
    const tp = s.tp;
    const dt = this.dtype;
    let total: PassSeconds = ZERO;
    let up: PassSeconds = ZERO;
    let latentWidth = 0;
    let ropeWidth = 0;
    let outWidth = 0;
    if (a.kind === "mla") {
      const qk = a.qkNopeHeadDim + a.qkRopeHeadDim;
      const kvA = a.kvLoraRank + a.qkRopeHeadDim;
      if (a.qLoraRank !== null) {
        total = add(total, this.gemm({ m: T, n: a.qLoraRank + kvA, k: h, dtype: dt }));
        up = add(up, this.gemm({ m: T, n: (a.heads * qk) / tp, k: a.qLoraRank, dtype: dt }));
      } else {
        total = add(total, this.gemm({ m: T, n: (a.heads * qk) / tp + kvA, k: h, dtype: dt }));
      }
      up = add(up, this.gemm({ m: T, n: (a.heads * (a.qkNopeHeadDim + a.vHeadDim)) / tp, k: a.kvLoraRank, dtype: dt }));
      total = add(total, this.gemm({ m: T, n: h, k: (a.heads * a.vHeadDim) / tp, dtype: dt }));
      latentWidth = (a.qLoraRank ?? 0) + a.kvLoraRank;
      ropeWidth = ((a.heads / tp) * a.qkRopeHeadDim + a.qkRopeHeadDim) * 2;
      outWidth = (a.heads * a.vHeadDim) / tp;
    } else {
      total = add(total, this.gemm({ m: T, n: ((a.heads + 2 * a.kvHeads) * a.headDim) / tp, k: h, dtype: dt }));
      total = add(total, this.gemm({ m: T, n: h, k: (a.heads * a.headDim) / tp, dtype: dt }));
      ropeWidth = (((a.heads + a.kvHeads) * a.headDim) / tp) * 2;
      outWidth = (a.heads * a.headDim) / tp;
    }
    if (this.recomputes("mla_up_proj")) up = { ...up, b: up.b + up.f };
    total = add(total, up);
    // The attention core.
    if (s.decode !== null && a.kind === "mla") {
      // Absorbed MLA decode (FlashMLA): every query token reads the latent cache of its sequence.
      const cacheBytes = s.decode.sequences * s.decode.context * (a.kvLoraRank + a.qkRopeHeadDim) * 2;
      const flops = 2 * (a.heads / tp) * s.decode.context * (2 * a.kvLoraRank + a.qkRopeHeadDim) * T;
      const f = this.kernels.attention(flops, cacheBytes);
      total = add(total, { f, b: 2 * f, w: 0 });
    } else {
      const ctx = s.decode !== null ? s.decode.context : s.context;
      const flops = (attentionCoreFlopsPerToken(a, ctx) * T) / tp;
      const f = this.kernels.attention(flops, 0);
      total = add(total, { f, b: 2 * f, w: 0 });
    }
    // Memory-bound kernels: input norm (BF16 in, FP8 out), latent norms, RoPE, output quantisation, residual.
    const L = s.localTokens;
    total = add(total, this.memory(L * h * 3 + T * latentWidth * 3, this.recomputes("rmsnorm")));
    total = add(total, this.memory(T * ropeWidth, this.recomputes("rope")));
    total = add(total, this.memory(T * outWidth * 3 + L * h * 6, false));
    return total;
  }

  private denseFfn(s: LayerShape): PassSeconds {
    const f = this.model.denseFfn;
    if (f === null) return ZERO;
    const h = this.model.hidden;
    const split = s.ffnSplit ? s.tp : 1;
    const T = s.ffnSplit ? s.tokens : s.localTokens;
    const I = f.intermediate / split;
    let t = add(this.gemm({ m: T, n: 2 * I, k: h, dtype: this.dtype }), this.gemm({ m: T, n: h, k: I, dtype: this.dtype }));
    t = add(t, this.memory(T * I * 5, this.recomputes("swiglu")));
    t = add(t, this.memory(s.localTokens * h * 9, this.recomputes("rmsnorm")));
    return t;
  }

  private gate(s: LayerShape): PassSeconds {
    const moe = this.model.moe!;
    const h = this.model.hidden;
    const T = s.moeTokens;
    return add(this.gemm({ m: T, n: moe.routedExperts, k: h, dtype: "bf16" }), this.memory(T * moe.routedExperts * 8 + T * h * 9, this.recomputes("rmsnorm")));
  }

  private routed(s: LayerShape): PassSeconds {
    const moe = this.model.moe!;
    const h = this.model.hidden;
    const I = moe.expertIntermediate;
    const rows = s.moeTokens * s.picks;
    if (s.slotsPerGpu <= 0 || rows <= 0) return ZERO;
    const m = Math.max(1, Math.ceil(rows / s.slotsPerGpu));
    const groups = s.slotsPerGpu;
    let t = add(this.gemm({ m, n: 2 * I, k: h, dtype: this.dtype, groups }, s.layout), this.gemm({ m, n: h, k: I, dtype: this.dtype, groups }, s.layout));
    // SwiGLU of the received rows, and the weighted combine of the returned ones.
    t = add(t, this.memory(rows * I * 5, this.recomputes("swiglu")));
    t = add(t, this.memory(rows * h * 2, false));
    return t;
  }

  private sharedExperts(s: LayerShape): PassSeconds {
    const moe = this.model.moe!;
    if (!s.sharedBeside || moe.sharedExperts === 0) return ZERO;
    const h = this.model.hidden;
    const I = moe.expertIntermediate * moe.sharedExperts;
    const T = s.moeTokens;
    let t = add(this.gemm({ m: T, n: 2 * I, k: h, dtype: this.dtype }), this.gemm({ m: T, n: h, k: I, dtype: this.dtype }));
    t = add(t, this.memory(T * I * 5, this.recomputes("swiglu")));
    return t;
  }

  /** The embedding lookup of `tokens` tokens. */
  embedding(tokens: number): PassSeconds {
    return this.memory(tokens * this.model.hidden * 4, false);
  }

  /** The final norm, the output head (BF16) and the loss (softmax over the vocabulary) for `tokens` tokens. */
  head(tokens: number, loss: boolean): PassSeconds {
    const h = this.model.hidden;
    const v = this.model.vocab;
    return add(add(this.gemm({ m: tokens, n: v, k: h, dtype: "bf16" }), this.memory(tokens * h * 3, this.recomputes("rmsnorm"))), loss ? this.memory(tokens * v * 8, false) : ZERO);
  }

  /** An MTP module's own front: two norms, the concatenation and eh_proj (2·hidden → hidden). */
  mtpFront(tokens: number): PassSeconds {
    const h = this.model.hidden;
    return add(this.gemm({ m: tokens, n: h, k: 2 * h, dtype: this.dtype }), this.memory(tokens * h * 10, this.recomputes("rmsnorm")));
  }
}
