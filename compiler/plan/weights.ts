/**
 * Parameters one GPU holds, by group, with their working bytes under the precision recipe.
 *
 * Matrix shapes (the per-GPU shard of each; summed over a full layer they are the counts of
 * compiler/stats.ts, which a test checks):
 * - MLA: q_a [hidden × q_lora] and kv_a [hidden × (kv_lora + rope)] are whole on every TP rank (they
 *   are not split by head); q_b [q_lora × heads/tp·(nope + rope)] (or a full-rank q), kv_b
 *   [kv_lora × heads/tp·(nope + v)] and o [heads/tp·v × hidden] are split by head. MHA/GQA: q and o
 *   by head, k and v by KV head (whole when tp does not divide the KV heads).
 * - FFN (dense or expert): SwiGLU gate and up [hidden × I] and down [I × hidden] (GELU: up and down),
 *   I split over `ffnTp`. A routed expert is never split: EP places whole experts.
 * - The gate [experts × hidden] and its bias (FP32); the embedding [vocab/tp × hidden] (vocab-parallel);
 *   the output head [hidden × vocab/tp]; norms (per layer two, plus MLA's two latent norms).
 * Working dtypes: FP8 GEMM weights with FP32 block scales (weightBlock) unless the recipe keeps the
 * part in BF16/FP32 (embedding, output_head, moe_gate, norm); BF16 everywhere in `mode = bf16`.
 */

import type { Activation, ModelSpec } from "../spec.js";
import { layerParamFigures } from "../stats.js";
import type { StageContents } from "./plan.js";
import type { RecipeBytes } from "./recipe-bytes.js";

export type WeightGroupName =
  | "attention"
  | "norms"
  | "dense_ffn"
  | "routed_experts"
  | "shared_experts"
  | "gate"
  | "embedding"
  | "output_head"
  | "mtp"
  | "mtp_routed_experts";

export const WEIGHT_GROUPS: readonly WeightGroupName[] = [
  "attention",
  "norms",
  "dense_ffn",
  "routed_experts",
  "shared_experts",
  "gate",
  "embedding",
  "output_head",
  "mtp",
  "mtp_routed_experts",
];

export interface ParamGroup {
  name: WeightGroupName;
  /** Parameters on this GPU. */
  params: number;
  /** Their working bytes. */
  bytes: number;
  /** Routed-expert parameters (replicated over the expert-data-parallel group, not the data-parallel one). */
  expert: boolean;
}

export interface WeightLayout {
  /** Attention heads split over this many GPUs. */
  attentionTp: number;
  /** Dense FFN and shared experts split over this many GPUs. */
  ffnTp: number;
  /** Routed-expert slots per GPU per MoE layer (serving: with redundant and shared-as-routed slots). */
  expertSlots: number;
  /** Whether the shared experts sit in the slots (served as routed) rather than beside them. */
  sharedInSlots: boolean;
  /** The embedding and head split by vocabulary over this many GPUs. */
  vocabTp: number;
}

export interface HeldWeights {
  groups: ParamGroup[];
  /** Working bytes of each layer held (main-model layers, then MTP modules), for ZeRO-3 gather buffers. */
  layerBytes: number[];
}

interface Sized {
  params: number;
  bytes: number;
}

function ffnMatrices(activation: Activation): number {
  return activation === "swiglu" ? 3 : 2;
}

/** One FFN (dense or expert) of intermediate width `inter` split over `tp`. */
function ffnWeights(hidden: number, inter: number, activation: Activation, tp: number, recipe: RecipeBytes): Sized {
  const i = Math.ceil(inter / tp);
  const m = ffnMatrices(activation);
  // gate and up [hidden × i] (up only for GELU), down [i × hidden]
  return { params: m * hidden * i, bytes: (m - 1) * recipe.gemmWeight(hidden, i) + recipe.gemmWeight(i, hidden) };
}

/** One layer's attention matrices on one GPU of a TP group of `tp`. */
export function attentionWeights(model: ModelSpec, tp: number, recipe: RecipeBytes): Sized {
  const a = model.attention;
  const h = model.hidden;
  const mats: [number, number][] = [];
  if (a.kind === "mla") {
    const heads = Math.ceil(a.heads / tp);
    const qk = a.qkNopeHeadDim + a.qkRopeHeadDim;
    if (a.qLoraRank === null) mats.push([h, heads * qk]);
    else mats.push([h, a.qLoraRank], [a.qLoraRank, heads * qk]);
    mats.push([h, a.kvLoraRank + a.qkRopeHeadDim], [a.kvLoraRank, heads * (a.qkNopeHeadDim + a.vHeadDim)], [heads * a.vHeadDim, h]);
  } else {
    const heads = Math.ceil(a.heads / tp);
    const kv = a.kvHeads % tp === 0 ? a.kvHeads / tp : a.kvHeads;
    mats.push([h, heads * a.headDim], [h, kv * a.headDim], [h, kv * a.headDim], [heads * a.headDim, h]);
  }
  let params = 0;
  let bytes = 0;
  for (const [r, c] of mats) {
    params += r * c;
    bytes += recipe.gemmWeight(r, c);
  }
  return { params, bytes };
}

function normBytes(elements: number, recipe: RecipeBytes): number {
  return recipe.partWeight("norm", 1, elements, false);
}

class Accumulator {
  private readonly map = new Map<WeightGroupName, ParamGroup>();
  readonly layerBytes: number[] = [];
  private current = 0;

  add(name: WeightGroupName, s: Sized, expert = false): void {
    if (s.params === 0 && s.bytes === 0) return;
    const g = this.map.get(name) ?? { name, params: 0, bytes: 0, expert };
    g.params += s.params;
    g.bytes += s.bytes;
    this.map.set(name, g);
    this.current += s.bytes;
  }

  endLayer(): void {
    this.layerBytes.push(this.current);
    this.current = 0;
  }

  result(): HeldWeights {
    return { groups: WEIGHT_GROUPS.flatMap((n) => (this.map.has(n) ? [this.map.get(n)!] : [])), layerBytes: this.layerBytes };
  }
}

/** Adds one transformer block (attention, norms, FFN) to `acc` under the given group names. */
function addBlock(
  acc: Accumulator,
  model: ModelSpec,
  kind: "dense" | "moe",
  layout: WeightLayout,
  recipe: RecipeBytes,
  names: { attention: WeightGroupName; norms: WeightGroupName; ffn: WeightGroupName; routed: WeightGroupName; shared: WeightGroupName; gate: WeightGroupName },
): void {
  const f = layerParamFigures(model);
  const h = model.hidden;
  acc.add(names.attention, attentionWeights(model, layout.attentionTp, recipe));
  const norms = f.layerNorms + f.attentionNorms;
  acc.add(names.norms, { params: norms, bytes: normBytes(norms, recipe) });
  if (kind === "dense") {
    const d = model.denseFfn!;
    acc.add(names.ffn, ffnWeights(h, d.intermediate, d.activation, layout.ffnTp, recipe));
    return;
  }
  const moe = model.moe!;
  const expert = ffnWeights(h, moe.expertIntermediate, moe.activation, 1, recipe);
  acc.add(names.routed, { params: layout.expertSlots * expert.params, bytes: layout.expertSlots * expert.bytes }, true);
  if (!layout.sharedInSlots && moe.sharedExperts > 0) {
    acc.add(names.shared, ffnWeights(h, moe.sharedExperts * moe.expertIntermediate, moe.activation, layout.ffnTp, recipe));
  }
  const gateBytes = recipe.partWeight("moe_gate", moe.routedExperts, h, true);
  acc.add(names.gate, { params: f.gateWeight + f.gateBias, bytes: gateBytes + 4 * f.gateBias });
}

const MAIN = { attention: "attention", norms: "norms", ffn: "dense_ffn", routed: "routed_experts", shared: "shared_experts", gate: "gate" } as const;
const MTP = { attention: "mtp", norms: "mtp", ffn: "mtp", routed: "mtp_routed_experts", shared: "mtp", gate: "mtp" } as const;

/** What a GPU holds of the given stages' contents (training), or of the whole model (serving: one stage with everything). */
export function heldWeights(model: ModelSpec, stages: readonly StageContents[], layout: WeightLayout, recipe: RecipeBytes, kinds: readonly ("dense" | "moe")[]): HeldWeights {
  const acc = new Accumulator();
  const h = model.hidden;
  const f = layerParamFigures(model);
  const vocab = Math.ceil(model.vocab / layout.vocabTp);
  const embedding: Sized = { params: vocab * h, bytes: recipe.partWeight("embedding", vocab, h, false) };
  for (const s of stages) {
    if (s.embedding) acc.add("embedding", embedding);
    for (let l = s.layers.first; l <= s.layers.last; l++) {
      addBlock(acc, model, kinds[l]!, layout, recipe, MAIN);
      acc.endLayer();
    }
    if (s.head) {
      acc.add("norms", { params: f.finalNorm, bytes: normBytes(f.finalNorm, recipe) });
      // A tied head is the embedding table: held once where the embedding is, a copy elsewhere.
      if (!model.tieEmbeddings) acc.add("output_head", { params: vocab * h, bytes: recipe.partWeight("output_head", h, vocab, true) });
      else if (!s.embedding) acc.add("output_head", embedding);
    }
    if (s.embeddingCopyForMtp) acc.add("embedding", embedding);
    for (let m = 0; m < s.mtpModules; m++) {
      acc.add("mtp", { params: f.mtpNorms, bytes: normBytes(f.mtpNorms, recipe) });
      acc.add("mtp", { params: f.mtpEhProj, bytes: recipe.gemmWeight(2 * h, h) });
      addBlock(acc, model, f.mtpBlockIsMoe ? "moe" : "dense", layout, recipe, MTP);
      acc.endLayer();
    }
  }
  return acc.result();
}
