/**
 * Spec → Hugging Face config (`dsv3 export FILE --to hf`): the DeepSeek-V2/V3 `config.json` that
 * describes the Spec's model, with every field `import-hf` reads, keys sorted as Hugging Face writes
 * them. Importing the result gives back the same `model` (a property test checks it), except for
 * what the format cannot carry, which the importer fills with its stated assumptions:
 *   - the bias update speed of bias balancing (imported as 0.001),
 *   - the MTP loss weight (imported as 0.3 when there is MTP),
 *   - an FFN block that no layer uses (not written; the importer writes none).
 * The architecture is DeepseekV3ForCausalLM when the model has a sigmoid gate, bias balancing or MTP,
 * else DeepseekV2ForCausalLM. Models the format cannot describe are coded errors (DSV7009): attention
 * other than MLA, GELU FFNs, a layer pattern that is not "first_k_dense_replace leading dense layers,
 * then every moe_layer_freq-th layer MoE", and group scores no Hugging Face top-k method computes.
 */
import { makeDiagnostic, type Diagnostic } from "../../dsl/diagnostic.js";
import type { LayerRun, ModelSpec, Spec } from "../spec.js";

export interface ExportHfResult {
  /** The config, or null when the Spec cannot be written as one (see the diagnostics). */
  config: Record<string, unknown> | null;
  diagnostics: Diagnostic[];
}

/** The kind of every layer, expanded from the runs. */
function layerKinds(m: ModelSpec): ("dense" | "moe")[] {
  const kinds = new Array<"dense" | "moe">(m.layers).fill("dense");
  for (const r of m.layerPattern) for (let i = r.first; i <= r.last; i++) kinds[i] = r.kind;
  return kinds;
}

/**
 * (first_k_dense_replace, moe_layer_freq) such that layer i is MoE iff i ≥ k and i mod f = 0, or
 * null when no pair describes the pattern. With no MoE layer: k = layers (an MTP module, at index
 * `layers`, is then MoE, as dsv3 makes it when the model has an MoE FFN).
 */
export function hfLayerRule(m: ModelSpec): { firstKDense: number; freq: number } | null {
  const kinds = layerKinds(m);
  const moe = kinds.flatMap((k, i) => (k === "moe" ? [i] : []));
  if (moe.length === 0) return { firstKDense: m.layers, freq: 1 };
  const first = moe[0]!;
  const fits = (f: number): boolean => kinds.every((k, i) => (k === "moe") === (i >= first && i % f === 0));
  const candidates = moe.length >= 2 ? [moe[1]! - first] : Array.from({ length: m.layers }, (_, i) => i + 1);
  const freq = candidates.find((f) => first % f === 0 && fits(f));
  return freq === undefined ? null : { firstKDense: first, freq };
}

function describeRuns(runs: readonly LayerRun[]): string {
  const shown = runs.slice(0, 6).map((r) => `${r.kind} ${r.first === r.last ? r.first : `${r.first}..${r.last}`}`);
  return shown.join(", ") + (runs.length > 6 ? ", …" : "");
}

/** Keys sorted at every level, as Hugging Face's `to_json_string` writes them. */
function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

export function exportHfConfig(spec: Spec): ExportHfResult {
  const m = spec.model;
  const problems: string[] = [];
  const a = m.attention;
  if (a.kind !== "mla") problems.push(`the attention is '${a.kind}'; a DeepSeek config describes MLA attention`);
  if (m.denseFfn?.activation === "gelu" || m.moe?.activation === "gelu") problems.push("an FFN uses GELU; DeepSeek configs have SwiGLU (hidden_act silu) FFNs only");
  const rule = hfLayerRule(m);
  if (rule === null) problems.push(`the layer pattern (${describeRuns(m.layerPattern)}) is not first_k_dense_replace leading dense layers followed by every moe_layer_freq-th layer MoE`);
  const g = m.moe?.gate;
  if (g && g.groups > 1 && g.biasBalancing !== null && g.groupScore !== "top2_sum") problems.push("with bias balancing (topk_method noaux_tc) groups are scored by their top-2 sum; group_score = max cannot be written");
  if (g && g.groups > 1 && g.biasBalancing === null && g.groupScore !== "max") problems.push("without bias balancing (topk_method group_limited_greedy) groups are scored by their maximum; group_score = top2_sum cannot be written");
  if (problems.length > 0 || a.kind !== "mla" || rule === null) {
    return { config: null, diagnostics: problems.map((reason) => makeDiagnostic("DSV7009", null, { reason })) };
  }

  const v3 = m.mtp.depth > 0 || (g !== undefined && (g.scoring === "sigmoid" || g.biasBalancing !== null));
  const y = a.rope.yarn;
  const config: Record<string, unknown> = {
    _name_or_path: m.name,
    architectures: [v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"],
    model_type: v3 ? "deepseek_v3" : "deepseek_v2",
    attention_bias: false,
    first_k_dense_replace: rule.firstKDense,
    hidden_act: "silu",
    hidden_size: m.hidden,
    kv_lora_rank: a.kvLoraRank,
    max_position_embeddings: m.maxPositions,
    moe_layer_freq: rule.freq,
    num_attention_heads: a.heads,
    num_hidden_layers: m.layers,
    num_key_value_heads: a.heads,
    num_nextn_predict_layers: m.mtp.depth,
    q_lora_rank: a.qLoraRank,
    qk_nope_head_dim: a.qkNopeHeadDim,
    qk_rope_head_dim: a.qkRopeHeadDim,
    rms_norm_eps: m.normEps,
    rope_scaling: y
      ? { beta_fast: y.betaFast, beta_slow: y.betaSlow, factor: y.factor, mscale: y.mscale, mscale_all_dim: y.mscaleAllDim, original_max_position_embeddings: y.originalContext, type: "yarn" }
      : null,
    rope_theta: a.rope.theta,
    tie_word_embeddings: m.tieEmbeddings,
    torch_dtype: "bfloat16",
    v_head_dim: a.vHeadDim,
    vocab_size: m.vocab,
  };
  if (m.denseFfn) config["intermediate_size"] = m.denseFfn.intermediate;
  if (m.moe && g) {
    Object.assign(config, {
      n_routed_experts: m.moe.routedExperts,
      n_shared_experts: m.moe.sharedExperts,
      num_experts_per_tok: m.moe.expertsPerToken,
      moe_intermediate_size: m.moe.expertIntermediate,
      scoring_func: g.scoring,
      topk_method: g.biasBalancing !== null ? "noaux_tc" : g.groups > 1 ? "group_limited_greedy" : "greedy",
      n_group: g.groups,
      topk_group: g.topGroups,
      norm_topk_prob: g.normalizeTopk,
      routed_scaling_factor: g.routedScale,
      aux_loss_alpha: g.seqAuxLossWeight,
      seq_aux: true,
    });
  } else {
    config["n_routed_experts"] = null;
  }
  const p = spec.precision;
  if (p.mode === "fp8") {
    config["quantization_config"] = {
      activation_scheme: "dynamic",
      fmt: p.gemmFormat,
      quant_method: "fp8",
      weight_block_size: [...p.weightBlock],
      ...(p.pow2Scales ? { scale_fmt: "ue8m0" } : {}),
    };
  }
  return { config: sortKeys(config) as Record<string, unknown>, diagnostics: [] };
}

/** The config as Hugging Face writes config.json: two-space indentation, a final newline. */
export function formatHfConfig(config: Record<string, unknown>): string {
  return `${JSON.stringify(config, null, 2)}\n`;
}
