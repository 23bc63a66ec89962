/**
 * The virtual-rank executor's weights from a shard bundle: a `RankWeightSource`
 * (runtime/execute/distributed/rank-weights.ts) that reads GPU g's shard file (rank-shard.ts) and
 * arranges its slices into the executor's `RankWeights` — stages, vocabulary rows, heads, FFN
 * intermediate blocks, and experts packed slot by slot (a redundant replica or an expert in two slots
 * of one GPU is copied into each slot; a shared expert served as routed fills its slot from its
 * block of the shared MLP). Values are the shard's FP32 values (FP8 slices dequantised).
 *
 * Opening checks the bundle's shard index against the plan (same model, schedule and GPUs); a GPU's
 * file that cannot be read later throws a ShardSourceError carrying the coded diagnostics.
 */
import type { Plan } from "../../compiler/plan/plan.js";
import type { Spec } from "../../compiler/spec.js";
import { makeDiagnostic, type Diagnostic } from "../../dsl/diagnostic.js";
import { packExpertSlots, rankHoldings, type RankLayerWeights, type RankStageWeights, type RankWeightSource, type VocabShard } from "../execute/distributed/rank-weights.js";
import { layerKinds } from "../execute/model-weights.js";
import { readRankShard, readShardIndex, type RankShardTensor } from "./rank-shard.js";
import type { Checked } from "./safetensors.js";

type F32 = Float32Array;

export class ShardSourceError extends Error {
  override readonly name = "ShardSourceError";
  constructor(readonly diagnostics: Diagnostic[]) {
    super(diagnostics.map((d) => d.message).join("; "));
  }
}

/** A RankWeightSource reading the bundle's shards (see the file comment). */
export function shardWeightSource(bundleDir: string, spec: Spec, plan: Plan): Checked<RankWeightSource> {
  const read = readShardIndex(bundleDir);
  if (!read.ok) return read;
  const index = read.value;
  if (index.model !== spec.model.name || index.schedule !== plan.schedule.name || index.gpus.length !== plan.ranks.length) {
    const reason = `its shards are for '${index.model}', schedule '${index.schedule}', ${index.gpus.length} GPUs; the plan is '${spec.model.name}', '${plan.schedule.name}', ${plan.ranks.length} GPUs`;
    return { ok: false, diagnostics: [makeDiagnostic("DSV9130", null, { path: bundleDir, reason })] };
  }
  const model = spec.model;
  const a = model.attention;
  if (a.kind !== "mla") return { ok: false, diagnostics: [makeDiagnostic("DSV9130", null, { path: bundleDir, reason: "the executor runs MLA models only" })] };
  const kinds = layerKinds(model);
  const d = model.hidden;
  return {
    ok: true,
    value: (gpu) => {
      const shard = readRankShard(bundleDir, gpu, index);
      if (!shard.ok) throw new ShardSourceError(shard.diagnostics);
      const byKey = new Map<string, RankShardTensor>(shard.value.tensors.map((t) => [t.slice.key, t]));
      const need = (key: string): RankShardTensor => {
        const t = byKey.get(key);
        if (t === undefined) throw new ShardSourceError([makeDiagnostic("DSV9130", null, { path: bundleDir, reason: `GPU ${gpu}'s shard lacks '${key}', which the plan places there` })]);
        return t;
      };
      const values = (key: string): F32 => need(key).values;
      const maybe = (key: string): F32 | null => byKey.get(key)?.values ?? null;
      const h = rankHoldings(spec, plan, gpu);
      const vocab = (key: string): VocabShard => {
        const t = need(key);
        return { first: t.slice.rows[0], count: t.slice.rows[1] - t.slice.rows[0], table: t.values };
      };
      const layer = (L: number, kind: "dense" | "moe"): RankLayerWeights => {
        const p = `model.layers.${L}`;
        const qb = need(`${p}.self_attn.${a.qLoraRank !== null ? "q_b_proj" : "q_proj"}.weight`).slice;
        const qk = a.qkNopeHeadDim + a.qkRopeHeadDim;
        const heads = { first: qb.rows[0] / qk, count: (qb.rows[1] - qb.rows[0]) / qk };
        const mla = {
          qA: maybe(`${p}.self_attn.q_a_proj.weight`),
          qANorm: maybe(`${p}.self_attn.q_a_layernorm.weight`),
          qB: maybe(`${p}.self_attn.q_b_proj.weight`),
          q: maybe(`${p}.self_attn.q_proj.weight`),
          kvA: values(`${p}.self_attn.kv_a_proj_with_mqa.weight`),
          kvANorm: values(`${p}.self_attn.kv_a_layernorm.weight`),
          kvB: values(`${p}.self_attn.kv_b_proj.weight`),
          o: values(`${p}.self_attn.o_proj.weight`),
        };
        const mlp = (prefix: string) => {
          const g = need(`${prefix}.gate_proj.weight`);
          return {
            slice: { first: g.slice.rows[0], count: g.slice.rows[1] - g.slice.rows[0] },
            weights: { gate: g.values, up: values(`${prefix}.up_proj.weight`), down: values(`${prefix}.down_proj.weight`) },
          };
        };
        const base = { layer: L, kind, attnNorm: values(`${p}.input_layernorm.weight`), heads, mla, ffnNorm: values(`${p}.post_attention_layernorm.weight`) };
        if (kind === "dense") {
          const m = mlp(`${p}.mlp`);
          return { ...base, ffnSlice: m.slice, dense: m.weights, router: null, gateBias: null, shared: null, experts: null };
        }
        const moe = model.moe!;
        const sharedAsRouted = plan.experts?.sharedAsRouted ?? false;
        const shared = moe.sharedExperts > 0 && !sharedAsRouted ? mlp(`${p}.mlp.shared_experts`) : null;
        const expertNames = (e: number): string[] =>
          e < moe.routedExperts
            ? ["gate_proj", "up_proj", "down_proj"].map((m) => `${p}.mlp.experts.${e}.${m}.weight`)
            : ["gate_proj", "up_proj", "down_proj"].map((m) => `${p}.mlp.shared_experts.${m}.weight[shared ${e - moe.routedExperts}]`);
        const experts = packExpertSlots(h.slotsOf(L), h.ep, h.slotsPerGpu, moe.expertIntermediate * d, (e) => {
          const [g, u, dn] = expertNames(e).map(values);
          return { gate: g!, up: u!, down: dn! };
        });
        return {
          ...base,
          ffnSlice: shared?.slice ?? { first: 0, count: 0 },
          dense: null,
          router: values(`${p}.mlp.gate.weight`),
          gateBias: maybe(`${p}.mlp.gate.e_score_correction_bias`),
          shared: shared?.weights ?? null,
          experts,
        };
      };
      let embed: VocabShard | null = null;
      const stages: RankStageWeights[] = h.stages.map((s) => {
        const layers: RankLayerWeights[] = [];
        for (let l = s.layers.first; l <= s.layers.last; l++) layers.push(layer(l, kinds[l]!));
        const mtp = Array.from({ length: s.mtpModules }, (_, k) => {
          const L = model.layers + k;
          const p = `model.layers.${L}`;
          return {
            module: k,
            proj: { enorm: values(`${p}.enorm.weight`), hnorm: values(`${p}.hnorm.weight`), ehProj: values(`${p}.eh_proj.weight`), headNorm: values(`${p}.shared_head.norm.weight`) },
            block: layer(L, model.moe !== null ? "moe" : "dense"),
          };
        });
        return {
          stage: s.stage,
          embed: s.embedding || s.mtpModules > 0 ? (embed ??= vocab("model.embed_tokens.weight")) : null,
          layers,
          finalNorm: s.head ? values("model.norm.weight") : null,
          head: s.head ? vocab(model.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight") : null,
          mtp,
        };
      });
      return { gpu, tpIndex: h.tpIndex, tp: h.tp, ffnTp: h.ffnTp, stages };
    },
  };
}
