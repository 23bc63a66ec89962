/**
 * MTP speculative decoding (DeepSeek-V3 TR §2.2 / §5.4.3) on the CPU reference ops, and the
 * `dsv3 run SPEC --backend cpu --generate N --prompt-tokens … [--speculative]` body.
 *
 * State: the committed sequence s (prompt + accepted output, all in the main model's latent KV
 * cache), the main model's hidden rows h^0 of every committed position, and `next`, the main model's
 * greedy token after s (not yet in the cache). Each step:
 *   1. draft k = min(D, tokens still wanted) tokens with the MTP modules: module j runs (as in
 *      training, causal over its rows) on rows i = 0 … |s|−1 with h^{j−1}_i and Emb(e_{i+j}), where
 *      e = s ++ [next, d_1, …]; its last row's argmax is d_j;
 *   2. verify: one cached forward of the main model over [next, d_1 … d_k] (positions |s| … |s|+k);
 *      row r's argmax g_r is the main model's greedy token after d_r (g_0 after next);
 *   3. accept the longest prefix with d_{r+1} = g_r (m tokens), commit [next, d_1 … d_m], drop the
 *      rejected entries from the cache, and set next = g_m (the correction, or the bonus token).
 * Every committed token is the main model's own greedy choice, so the output equals greedy decoding
 * exactly; drafted / accepted count the MTP tokens proposed and kept.
 */
import type { ModelSpec, Spec } from "../../compiler/spec.js";
import {
  addCols,
  decoderLayerConfigOf,
  decoderLayerForward,
  embeddingForward,
  linearForward,
  outputHeadForward,
  rmsnormForward,
} from "../../backends/reference/ops/index.js";
import {
  argmaxRow,
  checkPrompt,
  forwardCached,
  generateGreedy,
  KvCache,
} from "./decode.js";
import {
  initModelWeights,
  mtpBlockKind,
  type ModelWeights,
} from "./model-weights.js";
import { roundSig, trainWithWeights } from "./train.js";

type F32 = Float32Array;

export interface SpeculativeResult {
  tokens: Int32Array;
  /** MTP tokens proposed. */
  drafted: number;
  /** Of those, accepted by the main model. */
  accepted: number;
}

/** The MTP modules' drafts after committed `seq` (hidden rows `h0`, one per token) and `next`. */
function draftTokens(
  w: ModelWeights<F32>,
  model: ModelSpec,
  seq: Int32Array,
  h0: F32,
  next: number,
  k: number,
): number[] {
  const L = seq.length;
  const d = model.hidden;
  const V = model.vocab;
  const eps = model.normEps;
  const ext = new Int32Array(L + 1 + k);
  ext.set(seq);
  ext[L] = next;
  const blockCfg = decoderLayerConfigOf(model, mtpBlockKind(model), L);
  const drafts: number[] = [];
  let prev = h0;
  for (let j = 1; j <= k; j++) {
    const m = w.mtp[j - 1]!;
    const ids = ext.slice(j, j + L);
    const e = rmsnormForward(
      embeddingForward(ids, w.embed, V, d),
      m.proj.enorm,
      L,
      d,
      eps,
    );
    const hn = rmsnormForward(prev, m.proj.hnorm, L, d, eps);
    const cat = new Float32Array(L * 2 * d);
    addCols(cat, L, 2 * d, 0, e, d);
    addCols(cat, L, 2 * d, d, hn, d);
    const blockIn = linearForward(cat, m.proj.ehProj, L, 2 * d, d);
    const y = decoderLayerForward(blockIn, m.block, blockCfg, L).y;
    const lastRow = y.slice((L - 1) * d, L * d);
    const logits = outputHeadForward(
      lastRow,
      m.proj.headNorm,
      w.head,
      1,
      d,
      V,
      eps,
    ).logits;
    const t = argmaxRow(logits, 0, V);
    drafts.push(t);
    ext[L + j] = t;
    prev = y;
  }
  return drafts;
}

/** Speculative decoding of n tokens with the model's MTP modules as the draft (see the file comment). */
export function generateSpeculative(
  spec: Spec | ModelSpec,
  w: ModelWeights<F32>,
  prompt: Int32Array,
  n: number,
): SpeculativeResult {
  const model = "model" in spec ? spec.model : spec;
  checkPrompt(model, prompt, n);
  const D = w.mtp.length;
  const V = model.vocab;
  const d = model.hidden;
  const out: number[] = [];
  let drafted = 0;
  let accepted = 0;
  if (n === 0) return { tokens: new Int32Array(0), drafted, accepted };
  const cache = new KvCache(model, w.layers.length);
  const pre = forwardCached(w, model, prompt, cache);
  let seq = Int32Array.from(prompt);
  let h0 = pre.hidden;
  let next = argmaxRow(pre.logits, prompt.length - 1, V);
  for (;;) {
    out.push(next);
    if (out.length >= n) break;
    const k = Math.min(D, n - out.length);
    const drafts = k > 0 ? draftTokens(w, model, seq, h0, next, k) : [];
    const block = Int32Array.from([next, ...drafts]);
    const L = seq.length;
    const ver = forwardCached(w, model, block, cache);
    let m = 0;
    while (m < k && drafts[m] === argmaxRow(ver.logits, m, V)) m++;
    drafted += k;
    accepted += m;
    for (let r = 0; r < m; r++) out.push(drafts[r]!);
    cache.truncate(L + 1 + m);
    const grown = new Int32Array(L + 1 + m);
    grown.set(seq);
    grown.set(block.subarray(0, 1 + m), L);
    seq = grown;
    const h = new Float32Array((L + 1 + m) * d);
    h.set(h0);
    h.set(ver.hidden.subarray(0, (1 + m) * d), L * d);
    h0 = h;
    next = argmaxRow(ver.logits, m, V);
    if (out.length >= n) break;
  }
  return { tokens: Int32Array.from(out.slice(0, n)), drafted, accepted };
}

export interface GenerateOptions {
  /** Weight seed (and training data seed). Default 0. */
  seed?: number;
  promptTokens: readonly number[] | Int32Array;
  /** Tokens to generate. */
  n: number;
  /** Draft with the MTP modules and verify with the main model. */
  speculative?: boolean;
  /** Training steps before decoding (train.ts, batch 2); 0 keeps the seeded init. Default 30. */
  trainSteps?: number;
  json?: boolean;
}

export interface GenerateResult {
  spec: string;
  seed: number;
  trainSteps: number;
  prompt: number[];
  tokens: number[];
  speculative: boolean;
  mtpDepth: number;
  drafted: number;
  accepted: number;
  /** accepted / drafted (0 when nothing was drafted). */
  acceptanceRate: number;
}

export const DEFAULT_GENERATE_TRAIN_STEPS = 30;

/** Parses "1,2,3" into token ids (the CLI's --prompt-tokens). */
export function parsePromptTokens(text: string): number[] {
  const parts = text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  return parts.map((p) => {
    if (!/^\d+$/.test(p))
      throw new RangeError(
        `dsv3 run: --prompt-tokens wants comma-separated token ids, got '${p}'`,
      );
    return Number(p);
  });
}

/** Trains (or inits) the spec's model for a seed, then decodes greedily or speculatively. Deterministic. */
export function runGenerate(
  spec: Spec,
  options: GenerateOptions,
): { stdout: string; result: GenerateResult } {
  const seed = options.seed ?? 0;
  const trainSteps = options.trainSteps ?? DEFAULT_GENERATE_TRAIN_STEPS;
  const model = spec.model;
  const prompt = Int32Array.from(options.promptTokens);
  checkPrompt(model, prompt, options.n);
  const speculative = options.speculative ?? false;
  if (speculative && model.mtp.depth < 1)
    throw new RangeError(
      "dsv3 run: --speculative needs a model with MTP (mtp depth ≥ 1)",
    );
  const weights: ModelWeights<F32> =
    trainSteps > 0
      ? trainWithWeights(spec, { steps: trainSteps, seed, batch: 2 }).weights
      : initModelWeights(model, seed, "f32");
  let tokens: Int32Array;
  let drafted = 0;
  let accepted = 0;
  if (speculative) {
    const r = generateSpeculative(spec, weights, prompt, options.n);
    tokens = r.tokens;
    drafted = r.drafted;
    accepted = r.accepted;
  } else
    tokens = generateGreedy(spec, weights, prompt, options.n, {
      cache: true,
    }).tokens;
  const result: GenerateResult = {
    spec: model.name,
    seed,
    trainSteps,
    prompt: Array.from(prompt),
    tokens: Array.from(tokens),
    speculative,
    mtpDepth: model.mtp.depth,
    drafted,
    accepted,
    acceptanceRate: drafted > 0 ? roundSig(accepted / drafted) : 0,
  };
  if (options.json)
    return { stdout: `${JSON.stringify(result, null, 2)}\n`, result };
  const weightsLine =
    trainSteps > 0
      ? `weights trained ${trainSteps} steps (seed ${seed})`
      : `seeded initial weights (seed ${seed}, untrained)`;
  const lines = [
    `${model.name}: ${speculative ? `MTP speculative decoding (depth ${model.mtp.depth})` : "greedy decoding"} of ${options.n} tokens with the latent KV cache, ${weightsLine}`,
    `prompt    ${result.prompt.join(" ")}`,
    `generated ${result.tokens.join(" ")}`,
  ];
  if (speculative)
    lines.push(
      `acceptance ${accepted}/${drafted} drafted tokens accepted (rate ${result.acceptanceRate})`,
    );
  return { stdout: lines.join("\n") + "\n", result };
}
