/**
 * The Hugging Face tensor names of a DeepSeek-V2/V3-family model and their link to the CPU
 * executor's weights (runtime/execute/model-weights.ts).
 *
 *   model.embed_tokens.weight                       [vocab, hidden]      embed
 *   model.layers.L.input_layernorm.weight           [hidden]             layers[L].attnNorm
 *   model.layers.L.self_attn.q_a_proj.weight        [q_lora, hidden]     mla.qA        (q_lora_rank set)
 *   model.layers.L.self_attn.q_a_layernorm.weight   [q_lora]             mla.qANorm
 *   model.layers.L.self_attn.q_b_proj.weight        [H·(n+r), q_lora]    mla.qB
 *   model.layers.L.self_attn.q_proj.weight          [H·(n+r), hidden]    mla.q         (no q_lora_rank)
 *   model.layers.L.self_attn.kv_a_proj_with_mqa.weight [c+r, hidden]     mla.kvA
 *   model.layers.L.self_attn.kv_a_layernorm.weight  [c]                  mla.kvANorm
 *   model.layers.L.self_attn.kv_b_proj.weight       [H·(n+v), c]         mla.kvB
 *   model.layers.L.self_attn.o_proj.weight          [hidden, H·v]        mla.o
 *   model.layers.L.post_attention_layernorm.weight  [hidden]             ffnNorm
 *   model.layers.L.mlp.{gate,up}_proj.weight        [I, hidden]          dense.{gate,up}  (dense layers)
 *   model.layers.L.mlp.down_proj.weight             [hidden, I]          dense.down
 *   model.layers.L.mlp.gate.weight                  [E, hidden]          gate             (MoE layers)
 *   model.layers.L.mlp.gate.e_score_correction_bias [E]  FP32            gateBias         (bias balancing)
 *   model.layers.L.mlp.experts.e.{gate,up,down}_proj.weight              moe.{gate,up,down}, expert e's block
 *   model.layers.L.mlp.shared_experts.{gate,up,down}_proj.weight         moe.shared (width n_shared·I)
 *   model.norm.weight [hidden] · lm_head.weight [vocab, hidden]          finalNorm · head (absent when tied)
 *   MTP module k is layer L = layers + k: enorm, hnorm [hidden], eh_proj [hidden, 2·hidden],
 *   shared_head.norm [hidden], and its block under the same names as a decoder layer. The official V3
 *   checkpoint also stores the shared embedding and head there (`model.layers.L.embed_tokens.weight`,
 *   `model.layers.L.shared_head.head.weight`): accepted, checked for shape, not loaded (the executor
 *   shares the main model's), and written on save so the layout matches the official one.
 *
 * Layout conventions: the executor's reference ops use the checkpoint's own layouts (mla.ts, rope.ts:
 * [out, in] row-major; each head's query [q_nope | q_rope]; kv_a output [latent | k_rope]; kv_b per
 * head [k_nope | v]; RoPE on adjacent pairs, as the official inference code), so loading copies
 * tensors without permutation; tests pin the convention with hand-computed cases. (The Hugging Face
 * modelling code permutes the rope dims to a half-split at run time; its checkpoint is the same.)
 *
 * FP8: the projection matrices (attention, dense FFN, experts, shared experts, eh_proj) may be stored
 * as F8_E4M3 with `<name>_scale_inv`, one FP32 per 128×128 block (fp8-blocks.ts). The embedding,
 * head, norms and gate stay BF16/FP32 (the gate bias FP32).
 *
 * Each tensor also says how a plan splits it over ranks (`split`), which shard.ts follows.
 */
import type { ModelSpec } from "../../compiler/spec.js";
import type { DecoderLayerWeights, RealArray } from "../../backends/reference/ops/index.js";
import { layerKinds, mtpBlockKind, type ModelWeights } from "../execute/model-weights.js";

export type TensorRole = "embedding" | "head" | "norm" | "projection" | "gate" | "gate_bias" | "mtp_duplicate";

/** How ranks divide a tensor (rows are axis 0 of the [out, in] layout). */
export type SplitRule =
  | { kind: "replicated" }
  /** Rows by vocabulary (embedding, head). */
  | { kind: "vocab" }
  /** Rows (axis 0) or columns (axis 1) by attention head, `perHead` each. */
  | { kind: "heads"; axis: 0 | 1; perHead: number }
  /** The FFN intermediate: rows of gate/up (axis 0) or columns of down (axis 1). */
  | { kind: "ffn"; axis: 0 | 1; group: "dense" | "shared" }
  /** A routed expert's matrix: whole, on the ranks whose slots hold expert `expert`. */
  | { kind: "expert"; expert: number };

export interface HfTensorSpec {
  name: string;
  shape: number[];
  role: TensorRole;
  /** May be stored as F8_E4M3 with block scales. */
  fp8: boolean;
  /** Main layer (0…layers−1) or MTP module k as layers + k; null for embedding, final norm, head. */
  layer: number | null;
  split: SplitRule;
  /** For `mtp_duplicate`: the tensor it copies. */
  duplicateOf?: string;
}

/** The scale tensor's name of an FP8 weight. */
export function scaleName(weight: string): string {
  return `${weight}_scale_inv`;
}

const REPLICATED: SplitRule = { kind: "replicated" };

function blockTensors(model: ModelSpec, L: number, kind: "dense" | "moe"): HfTensorSpec[] {
  const a = model.attention;
  if (a.kind !== "mla") throw new RangeError(`checkpoint: attention ${a.kind} is not MLA`);
  const d = model.hidden;
  const H = a.heads;
  const n = a.qkNopeHeadDim;
  const r = a.qkRopeHeadDim;
  const v = a.vHeadDim;
  const c = a.kvLoraRank;
  const p = `model.layers.${L}`;
  const out: HfTensorSpec[] = [];
  const t = (name: string, shape: number[], role: TensorRole, split: SplitRule = REPLICATED): void => {
    out.push({ name: `${p}.${name}`, shape, role, fp8: role === "projection", layer: L, split });
  };
  t("input_layernorm.weight", [d], "norm");
  if (a.qLoraRank !== null) {
    t("self_attn.q_a_proj.weight", [a.qLoraRank, d], "projection");
    t("self_attn.q_a_layernorm.weight", [a.qLoraRank], "norm");
    t("self_attn.q_b_proj.weight", [H * (n + r), a.qLoraRank], "projection", { kind: "heads", axis: 0, perHead: n + r });
  } else {
    t("self_attn.q_proj.weight", [H * (n + r), d], "projection", { kind: "heads", axis: 0, perHead: n + r });
  }
  t("self_attn.kv_a_proj_with_mqa.weight", [c + r, d], "projection");
  t("self_attn.kv_a_layernorm.weight", [c], "norm");
  t("self_attn.kv_b_proj.weight", [H * (n + v), c], "projection", { kind: "heads", axis: 0, perHead: n + v });
  t("self_attn.o_proj.weight", [d, H * v], "projection", { kind: "heads", axis: 1, perHead: v });
  t("post_attention_layernorm.weight", [d], "norm");
  if (kind === "dense") {
    const I = model.denseFfn!.intermediate;
    t("mlp.gate_proj.weight", [I, d], "projection", { kind: "ffn", axis: 0, group: "dense" });
    t("mlp.up_proj.weight", [I, d], "projection", { kind: "ffn", axis: 0, group: "dense" });
    t("mlp.down_proj.weight", [d, I], "projection", { kind: "ffn", axis: 1, group: "dense" });
    return out;
  }
  const moe = model.moe!;
  const E = moe.routedExperts;
  const I = moe.expertIntermediate;
  t("mlp.gate.weight", [E, d], "gate");
  if (moe.gate.biasBalancing !== null) t("mlp.gate.e_score_correction_bias", [E], "gate_bias");
  for (let e = 0; e < E; e++) {
    const split: SplitRule = { kind: "expert", expert: e };
    t(`mlp.experts.${e}.gate_proj.weight`, [I, d], "projection", split);
    t(`mlp.experts.${e}.up_proj.weight`, [I, d], "projection", split);
    t(`mlp.experts.${e}.down_proj.weight`, [d, I], "projection", split);
  }
  if (moe.sharedExperts > 0) {
    const S = moe.sharedExperts * I;
    t("mlp.shared_experts.gate_proj.weight", [S, d], "projection", { kind: "ffn", axis: 0, group: "shared" });
    t("mlp.shared_experts.up_proj.weight", [S, d], "projection", { kind: "ffn", axis: 0, group: "shared" });
    t("mlp.shared_experts.down_proj.weight", [d, S], "projection", { kind: "ffn", axis: 1, group: "shared" });
  }
  return out;
}

/** Every tensor of the model's Hugging Face checkpoint, in a fixed order (MTP duplicates included). */
export function hfTensorSpecs(model: ModelSpec): HfTensorSpec[] {
  const d = model.hidden;
  const V = model.vocab;
  const out: HfTensorSpec[] = [{ name: "model.embed_tokens.weight", shape: [V, d], role: "embedding", fp8: false, layer: null, split: { kind: "vocab" } }];
  layerKinds(model).forEach((k, L) => out.push(...blockTensors(model, L, k)));
  out.push({ name: "model.norm.weight", shape: [d], role: "norm", fp8: false, layer: null, split: REPLICATED });
  if (!model.tieEmbeddings) out.push({ name: "lm_head.weight", shape: [V, d], role: "head", fp8: false, layer: null, split: { kind: "vocab" } });
  for (let k = 0; k < model.mtp.depth; k++) {
    const L = model.layers + k;
    const p = `model.layers.${L}`;
    out.push({ name: `${p}.enorm.weight`, shape: [d], role: "norm", fp8: false, layer: L, split: REPLICATED });
    out.push({ name: `${p}.hnorm.weight`, shape: [d], role: "norm", fp8: false, layer: L, split: REPLICATED });
    out.push({ name: `${p}.eh_proj.weight`, shape: [d, 2 * d], role: "projection", fp8: true, layer: L, split: REPLICATED });
    out.push({ name: `${p}.shared_head.norm.weight`, shape: [d], role: "norm", fp8: false, layer: L, split: REPLICATED });
    out.push(...blockTensors(model, L, mtpBlockKind(model)));
    out.push({ name: `${p}.embed_tokens.weight`, shape: [V, d], role: "mtp_duplicate", fp8: false, layer: L, split: { kind: "vocab" }, duplicateOf: "model.embed_tokens.weight" });
    out.push({ name: `${p}.shared_head.head.weight`, shape: [V, d], role: "mtp_duplicate", fp8: false, layer: L, split: { kind: "vocab" }, duplicateOf: model.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight" });
  }
  return out;
}

function bindBlock<A extends RealArray>(out: Map<string, A>, model: ModelSpec, L: number, w: DecoderLayerWeights<A>): void {
  const p = `model.layers.${L}`;
  const put = (name: string, v: A | null): void => {
    if (v !== null) out.set(`${p}.${name}`, v);
  };
  put("input_layernorm.weight", w.attnNorm);
  put("self_attn.q_a_proj.weight", w.mla.qA);
  put("self_attn.q_a_layernorm.weight", w.mla.qANorm);
  put("self_attn.q_b_proj.weight", w.mla.qB);
  put("self_attn.q_proj.weight", w.mla.q);
  put("self_attn.kv_a_proj_with_mqa.weight", w.mla.kvA);
  put("self_attn.kv_a_layernorm.weight", w.mla.kvANorm);
  put("self_attn.kv_b_proj.weight", w.mla.kvB);
  put("self_attn.o_proj.weight", w.mla.o);
  put("post_attention_layernorm.weight", w.ffnNorm);
  if (w.dense) {
    put("mlp.gate_proj.weight", w.dense.gate);
    put("mlp.up_proj.weight", w.dense.up);
    put("mlp.down_proj.weight", w.dense.down);
  }
  if (w.moe) {
    const moe = model.moe!;
    const block = moe.expertIntermediate * model.hidden;
    for (let e = 0; e < moe.routedExperts; e++) {
      put(`mlp.experts.${e}.gate_proj.weight`, w.moe.gate.subarray(e * block, (e + 1) * block) as A);
      put(`mlp.experts.${e}.up_proj.weight`, w.moe.up.subarray(e * block, (e + 1) * block) as A);
      put(`mlp.experts.${e}.down_proj.weight`, w.moe.down.subarray(e * block, (e + 1) * block) as A);
    }
    if (w.moe.shared) {
      put("mlp.shared_experts.gate_proj.weight", w.moe.shared.gate);
      put("mlp.shared_experts.up_proj.weight", w.moe.shared.up);
      put("mlp.shared_experts.down_proj.weight", w.moe.shared.down);
    }
    put("mlp.gate.weight", w.gate);
    put("mlp.gate.e_score_correction_bias", w.gateBias);
  }
}

/**
 * Each checkpoint tensor (MTP duplicates excepted) as a view into `w`: filling the view loads it,
 * reading it saves it. Element order is the checkpoint's (see the file comment).
 */
export function bindModelWeights<A extends RealArray>(model: ModelSpec, w: ModelWeights<A>): Map<string, A> {
  const out = new Map<string, A>();
  out.set("model.embed_tokens.weight", w.embed);
  w.layers.forEach((l, L) => bindBlock(out, model, L, l));
  out.set("model.norm.weight", w.finalNorm);
  if (!model.tieEmbeddings) out.set("lm_head.weight", w.head);
  w.mtp.forEach((m, k) => {
    const L = model.layers + k;
    const p = `model.layers.${L}`;
    out.set(`${p}.enorm.weight`, m.proj.enorm);
    out.set(`${p}.hnorm.weight`, m.proj.hnorm);
    out.set(`${p}.eh_proj.weight`, m.proj.ehProj);
    out.set(`${p}.shared_head.norm.weight`, m.proj.headNorm);
    bindBlock(out, model, L, m.block);
  });
  return out;
}
