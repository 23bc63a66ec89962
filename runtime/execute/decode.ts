/**
 * Greedy decoding on the CPU reference ops (FP32), with or without the MLA latent KV cache.
 *
 * With the cache: per main layer, the latent cache [kv_lora_rank normalised latent | qk_rope rotated
 * k_rope] of every token so far (mla.ts mlaLatentForward at the tokens' positions); new tokens attend
 * over it in the absorbed form (mlaAbsorbedForward, causal within the new tokens). The FFN (dense
 * SwiGLU, or the MoE gate with its selection biases → routed + shared experts) is per token.
 * Without the cache: the whole sequence is re-run through the training forward (naive MLA) for every
 * new token. Both take the argmax of the last position's logits (ties → the lowest id).
 */
import type { ModelSpec, Spec } from "../../compiler/spec.js";
import {
  add,
  decoderLayerForward,
  embeddingForward,
  gateForward,
  mlaAbsorbedForward,
  mlaLatentForward,
  moeForward,
  outputHeadForward,
  rmsnormForward,
  swigluMlpForward,
  type DecoderLayerConfig,
  type DecoderLayerWeights,
} from "../../backends/reference/ops/index.js";
import { mainLayerConfigs, type ModelWeights } from "./model-weights.js";

type F32 = Float32Array;

/** Index of the largest of row `row` of a rows × V matrix (ties → lowest index). */
export function argmaxRow(
  logits: ArrayLike<number>,
  row: number,
  V: number,
): number {
  let best = 0;
  let bv = -Infinity;
  for (let j = 0; j < V; j++) {
    const v = logits[row * V + j]!;
    if (v > bv) {
      bv = v;
      best = j;
    }
  }
  return best;
}

/** One layer's latent cache, growable and truncatable. */
interface LayerCache {
  tokens: number;
  latent: F32;
  kRope: F32;
}

/** The main model's decode state: a latent cache per layer. */
export class KvCache {
  readonly layers: LayerCache[];
  constructor(
    readonly model: ModelSpec,
    layers: number,
  ) {
    this.layers = Array.from({ length: layers }, () => ({
      tokens: 0,
      latent: new Float32Array(0),
      kRope: new Float32Array(0),
    }));
  }
  get tokens(): number {
    return this.layers[0]?.tokens ?? 0;
  }
  /** Drops every entry past the first `tokens` (rejected speculative tokens). */
  truncate(tokens: number): void {
    const a = this.model.attention;
    if (a.kind !== "mla") throw new RangeError("decode: MLA only");
    for (const l of this.layers) {
      if (tokens > l.tokens)
        throw new RangeError(
          `decode: cannot truncate ${l.tokens} cached tokens to ${tokens}`,
        );
      l.tokens = tokens;
      l.latent = l.latent.slice(0, tokens * a.kvLoraRank);
      l.kRope = l.kRope.slice(0, tokens * a.qkRopeHeadDim);
    }
  }
}

function concat(a: F32, b: F32): F32 {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** One decoder layer over T new tokens that extend `cache` (absorbed MLA over the latent cache). */
function cachedLayerForward(
  x: F32,
  w: DecoderLayerWeights<F32>,
  cfg: DecoderLayerConfig,
  T: number,
  cache: LayerCache,
): F32 {
  const d = cfg.mla.hidden;
  const eps = cfg.mla.normEps;
  const attnIn = rmsnormForward(x, w.attnNorm, T, d, eps);
  const lat = mlaLatentForward(attnIn, w.mla, cfg.mla, T, cache.tokens).cache;
  cache.latent = concat(cache.latent, lat.latent);
  cache.kRope = concat(cache.kRope, lat.kRope);
  cache.tokens += T;
  const m = mlaAbsorbedForward(
    attnIn,
    { tokens: cache.tokens, latent: cache.latent, kRope: cache.kRope },
    w.mla,
    cfg.mla,
    T,
  );
  const h = add(x, m.y);
  const ffnIn = rmsnormForward(h, w.ffnNorm, T, d, eps);
  const ffn = cfg.ffn;
  let f: F32;
  if (ffn.kind === "dense")
    f = swigluMlpForward(ffnIn, w.dense!, T, d, ffn.inter).y;
  else {
    const gate = gateForward(ffnIn, w.gate!, w.gateBias, ffn.gate, T, d);
    f = moeForward(
      ffnIn,
      w.moe!,
      { experts: gate.experts, weights: gate.weights },
      ffn.moe,
      T,
    ).y;
  }
  return add(h, f);
}

/** The main model's output over a block of tokens. */
export interface MainForward {
  /** The last layer's output (before the final norm), T × hidden — the MTP modules' h^0. */
  hidden: F32;
  /** T × vocab. */
  logits: F32;
}

/** Runs `ids` (which follow the cache's tokens) through the main model, extending the cache. */
export function forwardCached(
  w: ModelWeights<F32>,
  model: ModelSpec,
  ids: Int32Array,
  cache: KvCache,
): MainForward {
  const T = ids.length;
  const d = model.hidden;
  const cfgs = mainLayerConfigs(model, T);
  let x = embeddingForward(ids, w.embed, model.vocab, d);
  for (let l = 0; l < w.layers.length; l++)
    x = cachedLayerForward(x, w.layers[l]!, cfgs[l]!, T, cache.layers[l]!);
  const logits = outputHeadForward(
    x,
    w.finalNorm,
    w.head,
    T,
    d,
    model.vocab,
    model.normEps,
  ).logits;
  return { hidden: x, logits };
}

/** The full (training) forward of a whole sequence, no cache. */
export function forwardFull(
  w: ModelWeights<F32>,
  model: ModelSpec,
  ids: Int32Array,
): MainForward {
  const T = ids.length;
  const d = model.hidden;
  const cfgs = mainLayerConfigs(model, T);
  let x = embeddingForward(ids, w.embed, model.vocab, d);
  for (let l = 0; l < w.layers.length; l++)
    x = decoderLayerForward(x, w.layers[l]!, cfgs[l]!, T).y;
  const logits = outputHeadForward(
    x,
    w.finalNorm,
    w.head,
    T,
    d,
    model.vocab,
    model.normEps,
  ).logits;
  return { hidden: x, logits };
}

export function checkPrompt(
  model: ModelSpec,
  prompt: Int32Array,
  n: number,
): void {
  if (model.attention.kind !== "mla")
    throw new RangeError(
      `dsv3 run: decoding needs MLA attention, not ${model.attention.kind}`,
    );
  if (prompt.length < 1)
    throw new RangeError("dsv3 run: --prompt-tokens needs at least one token");
  for (const t of prompt)
    if (!(Number.isInteger(t) && t >= 0 && t < model.vocab))
      throw new RangeError(
        `dsv3 run: prompt token ${t} outside [0, ${model.vocab})`,
      );
  if (!Number.isInteger(n) || n < 0)
    throw new RangeError(
      `dsv3 run: --generate must be a non-negative integer, got ${n}`,
    );
  if (prompt.length + n > model.maxPositions)
    throw new RangeError(
      `dsv3 run: ${prompt.length} prompt + ${n} generated tokens exceed max_positions ${model.maxPositions}`,
    );
}

export interface GreedyResult {
  /** The n generated tokens. */
  tokens: Int32Array;
  /** The logits (vocab) of the last position each token was chosen from, one per generated token. */
  lastLogits: Float32Array[];
}

/** Greedy decoding of n tokens after the prompt; `cache` picks the latent KV cache or full re-runs. */
export function generateGreedy(
  spec: Spec | ModelSpec,
  w: ModelWeights<F32>,
  prompt: Int32Array,
  n: number,
  opts: { cache: boolean } = { cache: true },
): GreedyResult {
  const model = "model" in spec ? spec.model : spec;
  checkPrompt(model, prompt, n);
  const V = model.vocab;
  const tokens = new Int32Array(n);
  const lastLogits: Float32Array[] = [];
  if (n === 0) return { tokens, lastLogits };
  if (opts.cache) {
    const cache = new KvCache(model, w.layers.length);
    let out = forwardCached(w, model, prompt, cache);
    for (let i = 0; i < n; i++) {
      const rows = out.logits.length / V;
      const last = out.logits.slice((rows - 1) * V, rows * V);
      lastLogits.push(last);
      tokens[i] = argmaxRow(last, 0, V);
      if (i + 1 < n)
        out = forwardCached(w, model, tokens.subarray(i, i + 1), cache);
    }
  } else {
    let seq = Int32Array.from(prompt);
    for (let i = 0; i < n; i++) {
      const out = forwardFull(w, model, seq);
      const T = seq.length;
      const last = out.logits.slice((T - 1) * V, T * V);
      lastLogits.push(last);
      tokens[i] = argmaxRow(last, 0, V);
      const next = new Int32Array(T + 1);
      next.set(seq);
      next[T] = tokens[i]!;
      seq = next;
    }
  }
  return { tokens, lastLogits };
}
