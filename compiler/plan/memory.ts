/**
 * The memory plan: bytes per GPU by category, for training and for serving.
 *
 * Training, per pipeline rank (every GPU of one pipeline rank holds the same under the model):
 * - weights: the working copies of the stages the rank runs (DualPipe: two stages, r and P−1−r, so
 *   2× the parameters of 1F1B; DualPipeV: its two chunks), per weights.ts (FP8 + block scales for the
 *   recipe's GEMM weights, BF16/FP32 for the parts it keeps high precision). Routed experts: E/ep per
 *   MoE layer. With ZeRO-3 the weights are sharded too, plus a gather buffer of two layers.
 * - gradients: `gradients` dtype (FP32) for every parameter held, unsharded (ZeRO-1 shards only the
 *   optimizer states; ZeRO-2 and -3 shard the gradients as well).
 * - master weights (`master_weights`, FP32) and the AdamW moments (2 × `optimizer_states`, BF16),
 *   sharded under ZeRO ≥ 1 over the GPUs that hold the same parameter: non-expert parameters over
 *   dp (× 2 for DualPipe, whose two pipeline ranks r and P−1−r both hold stage r), routed experts over
 *   the expert-data-parallel group tp·dp/ep (× 2 for DualPipe).
 * - activations: the peak over the step of Σ live chunks × bytes per chunk, where a chunk is one
 *   stage's cache for one micro-batch (activations.ts) and the live chunks come from executing the
 *   schedule (pipeline/simulate.ts: +1 when an F starts, −1 when its backward's W — or unsplit B —
 *   ends), weighted by the stage each chunk belongs to (DualPipe's rank 0 holds many stage-0 chunks
 *   but few of the last stage's).
 * - communication buffers: per link (NVLink, IB) a send and a receive staging buffer of one MoE
 *   layer's combine (the larger, BF16 phase) for one micro-batch, capped at 1 GB each (the all-to-all
 *   streams larger transfers through them, as DeepEP's normal kernels do), doubled when two
 *   micro-batches' all-to-alls overlap (DualPipe's F&B pairs; serving's overlapped micro-batches);
 *   plus a send and a receive buffer of one pipeline activation per direction. The tensors the
 *   all-to-all writes into are activations, counted above.
 * - framework reserve: a fixed 3 GB (CUDA context and kernels, cuBLAS/NCCL/DeepEP workspaces, caching
 *   allocator fragmentation).
 *
 * Serving, per GPU (all GPUs alike): weights (attention split over the attention TP group; dense
 * FFN layers, and the shared experts unless served as routed, whole on every GPU; the expert slots of
 * the placement, redundant ones included; the embedding and head split by vocabulary; the MTP
 * modules used for speculation), the working set of the micro-batches in flight, the KV cache of
 * the declared batch, buffers and the reserve. The KV capacity is what the rest leaves, in tokens.
 */

import type { Dir, Schedule } from "./pipeline/schedule.js";
import type { Simulation, TimedOp } from "./pipeline/simulate.js";
import type { ServingSchedule, Spec, TrainingSchedule } from "../spec.js";
import { computeStats } from "../stats.js";
import { servingWorkingSet, stageChunkBytes } from "./activations.js";
import type { TrainingTokens } from "./activations.js";
import { MEMORY_CATEGORIES } from "./plan.js";
import type { KvCachePlan, LinkBytes, MemoryCategory, MemoryClass, MemoryItem, Partition, StageContents } from "./plan.js";
import { RecipeBytes } from "./recipe-bytes.js";
import { heldWeights } from "./weights.js";
import type { ParamGroup, WeightLayout } from "./weights.js";
import { layerKinds } from "./partition.js";

/** CUDA context, library workspaces and allocator fragmentation. */
export const FRAMEWORK_RESERVE_BYTES = 3e9;
/** Largest staging buffer per link and direction of the all-to-all. */
export const A2A_BUFFER_CAP_BYTES = 1e9;

export const MEMORY_RULES: readonly string[] = [
  "weights: working copies of the stages a GPU runs (DualPipe: stages r and P-1-r); FP8 GEMM weights with one FP32 scale per 128x128 block, BF16/FP32 for the parts the recipe keeps high precision; routed experts E/ep per MoE layer (serving: the placement's slots)",
  "gradients: the recipe's gradient dtype for every parameter held; sharded only with zero >= 2 (ZeRO-1 shards optimizer states only)",
  "master_weights and optimizer_states (AdamW m and v): sharded with zero >= 1 over the GPUs holding the parameter: dp (x2 for DualPipe) for non-expert parameters, tp*dp/ep (x2 for DualPipe) for routed experts",
  "activations: peak over the executed schedule of sum(live chunks x bytes per chunk), a chunk being one stage's cache for one micro-batch (see the activation cache list); serving: the working set of the micro-batches in flight",
  "kv_cache (serving): BF16 MLA latent + RoPE key per token and layer (and per MTP module served), replicated over the attention-TP group; the declared batch's tokens (batch_per_gpu x seq_len); capacity = what the rest leaves",
  "communication_buffers: per link a send and a receive staging buffer of one MoE layer's combine for one micro-batch (capped at 1 GB each), x2 when two micro-batches overlap; plus pipeline send/receive buffers of one activation per direction",
  "framework_reserve: 3 GB (CUDA context, library workspaces, allocator fragmentation)",
];

const GB = 1e9;

export function formatBytes(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / GB).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(2)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(2)} kB`;
  return `${bytes} B`;
}

function finishClass(
  base: Omit<MemoryClass, "byCategory" | "totalBytes"> & { items: MemoryItem[] },
): MemoryClass {
  const byCategory: { category: MemoryCategory; bytes: number }[] = [];
  for (const category of MEMORY_CATEGORIES) {
    const bytes = base.items.filter((i) => i.category === category).reduce((a, i) => a + i.bytes, 0);
    if (base.items.some((i) => i.category === category)) byCategory.push({ category, bytes });
  }
  const totalBytes = byCategory.reduce((a, c) => a + c.bytes, 0);
  return {
    id: base.id,
    gpuCount: base.gpuCount,
    firstGpu: base.firstGpu,
    holds: base.holds,
    byCategory,
    items: base.items,
    totalBytes,
    budgetBytes: base.budgetBytes,
    kvCache: base.kvCache,
    activationChunks: base.activationChunks,
  };
}

function weightItems(groups: readonly ParamGroup[], shard: (g: ParamGroup) => number, zero: number): MemoryItem[] {
  return groups.map((g) => {
    const n = zero >= 3 ? shard(g) : 1;
    return {
      category: "weights" as const,
      name: g.name,
      bytes: Math.ceil(g.bytes / n),
      detail: `${g.params} parameters${n > 1 ? `, sharded over ${n}` : ""}`,
    };
  });
}

/** Peak of Σ live chunks × weight(dir) on one rank, with the live chunks per direction at the peak. */
export function weightedActivationPeak(ops: readonly TimedOp[], weight: (dir: Dir) => number): { bytes: number; live: [number, number] } {
  const split = new Set(ops.filter((o) => o.op === "W").map((o) => `${o.dir}/${o.mb}`));
  const events: { t: number; d: number; dir: Dir }[] = [];
  for (const o of ops) {
    if (o.op === "F") events.push({ t: o.start, d: +1, dir: o.dir });
    else if (o.op === "W" || !split.has(`${o.dir}/${o.mb}`)) events.push({ t: o.end, d: -1, dir: o.dir });
  }
  events.sort((a, b) => a.t - b.t || a.d - b.d || a.dir - b.dir);
  const live: [number, number] = [0, 0];
  let bytes = 0;
  let peak = 0;
  let atPeak: [number, number] = [0, 0];
  for (const e of events) {
    live[e.dir] += e.d;
    bytes += e.d * weight(e.dir);
    if (bytes > peak) {
      peak = bytes;
      atPeak = [live[0], live[1]];
    }
  }
  return { bytes: peak, live: atPeak };
}

export interface TrainingMemoryInput {
  spec: Spec;
  schedule: TrainingSchedule;
  partition: Partition;
  pipeline: Schedule;
  sim: Simulation;
  /** Send-side bytes of one MoE layer's combine for one micro-batch on one GPU. */
  combinePerLayer: LinkBytes;
  /** Bytes of one pipeline activation message. */
  p2pBytes: number;
  tokens: TrainingTokens;
}

export interface TrainingRankMemory {
  memoryClass: MemoryClass;
  /** Parameters held, for the data-parallel traffic. */
  groups: ParamGroup[];
  nonExpertShard: number;
  expertShard: number;
}

function stageList(stages: readonly number[]): string {
  return stages.length === 1 ? `stage ${stages[0]}` : `stages ${stages.slice(0, -1).join(", ")} and ${stages[stages.length - 1]}`;
}

/** The memory budget of every pipeline rank, in rank order. */
export function trainingMemory(input: TrainingMemoryInput): TrainingRankMemory[] {
  const { spec, schedule, partition, pipeline, sim } = input;
  const model = spec.model;
  const recipe = new RecipeBytes(spec.precision);
  const kinds = layerKinds(model);
  const routed = model.moe?.routedExperts ?? 0;
  const layout: WeightLayout = {
    attentionTp: schedule.tp,
    ffnTp: schedule.tp,
    expertSlots: routed === 0 ? 0 : routed / schedule.ep,
    sharedInSlots: false,
    vocabTp: schedule.tp,
  };
  const copies = schedule.pipeline === "dualpipe" ? 2 : 1;
  const zero = schedule.zero;
  const nonExpertShard = zero >= 1 ? schedule.dp * copies : 1;
  const expertShard = zero >= 1 ? ((schedule.tp * schedule.dp) / schedule.ep) * copies : 1;
  const shard = (g: ParamGroup): number => (g.expert ? expertShard : nonExpertShard);
  const chunkBytes = partition.stages.map((s) => stageChunkBytes(model, recipe, s, input.tokens));
  const overlap = schedule.pipeline === "dualpipe" || schedule.pipeline === "dualpipev" ? 2 : 1;
  const budget = spec.cluster.gpu.hbmBytes;
  const perRankGpus = schedule.tp * schedule.dp;

  return sim.ranks.map((timeline, r) => {
    const stageOfDir = (d: Dir): number => pipeline.stageOf(r, d);
    const held = [...new Set(pipeline.dirs.map(stageOfDir))].sort((a, b) => a - b);
    const contents: StageContents[] = held.map((s) => partition.stages[s]!);
    const weights = heldWeights(model, contents, layout, recipe, kinds);
    const params = weights.groups.reduce((a, g) => a + g.params, 0);
    const items: MemoryItem[] = weightItems(weights.groups, shard, zero);
    if (zero >= 3 && weights.layerBytes.length > 0) {
      items.push({ category: "weights", name: "zero3_gather_buffer", bytes: 2 * Math.max(...weights.layerBytes), detail: "two layers gathered at a time" });
    }
    const gradBytes = weights.groups.reduce((a, g) => a + Math.ceil((g.params * recipe.gradientBytes) / (zero >= 2 ? shard(g) : 1)), 0);
    items.push({
      category: "gradients",
      name: "gradients",
      bytes: gradBytes,
      detail: `${spec.precision.gradients} for ${params} parameters${zero >= 2 ? ", sharded" : ", unsharded (ZeRO-1 shards optimizer states only)"}`,
    });
    const sharded = (bytesPer: number): number =>
      weights.groups.reduce((a, g) => a + Math.ceil((g.params * bytesPer) / (zero >= 1 ? shard(g) : 1)), 0);
    const shardText = zero >= 1 ? `, sharded over ${nonExpertShard} (non-expert) / ${expertShard} (experts)` : ", unsharded";
    items.push({ category: "master_weights", name: "master_weights", bytes: sharded(recipe.masterBytes), detail: `${spec.precision.masterWeights}${shardText}` });
    items.push({ category: "optimizer_states", name: "adamw_moments", bytes: sharded(2 * recipe.momentBytes), detail: `AdamW m and v in ${spec.precision.optimizerStates}${shardText}` });

    const weight = (d: Dir): number => chunkBytes[stageOfDir(d)]!;
    const peak = weightedActivationPeak(timeline.ops, weight);
    const chunks = held.map((s) => {
      let n = 0;
      for (const d of pipeline.dirs) if (stageOfDir(d) === s) n += peak.live[d];
      return { stage: s, chunks: n, bytesPerChunk: chunkBytes[s]! };
    });
    for (const c of chunks) {
      items.push({ category: "activations", name: `stage_${c.stage}`, bytes: c.chunks * c.bytesPerChunk, detail: `${c.chunks} live chunks × ${formatBytes(c.bytesPerChunk)} at the peak` });
    }
    const hasMoe = contents.some((s) => s.moeLayers > 0 || (s.mtpModules > 0 && model.moe !== null));
    if (hasMoe) {
      const staging =
        overlap * 2 * (Math.min(A2A_BUFFER_CAP_BYTES, input.combinePerLayer.nvlinkBytes) + Math.min(A2A_BUFFER_CAP_BYTES, input.combinePerLayer.ibBytes));
      items.push({ category: "communication_buffers", name: "all_to_all_staging", bytes: staging, detail: `send + receive per link${overlap > 1 ? ", two micro-batches overlapped" : ""}` });
    }
    if (pipeline.ranks > 1) {
      items.push({ category: "communication_buffers", name: "pipeline_p2p", bytes: 2 * pipeline.dirs.length * input.p2pBytes, detail: "send + receive of one activation per direction" });
    }
    items.push({ category: "framework_reserve", name: "framework_reserve", bytes: FRAMEWORK_RESERVE_BYTES, detail: "CUDA context, workspaces, fragmentation" });

    const memoryClass = finishClass({
      id: `pp${String(r).padStart(2, "0")}`,
      gpuCount: perRankGpus,
      firstGpu: r * perRankGpus,
      holds: `pipeline rank ${r}: ${stageList(held)}`,
      items,
      budgetBytes: budget,
      kvCache: null,
      activationChunks: chunks,
    });
    return { memoryClass, groups: weights.groups, nonExpertShard, expertShard };
  });
}

export interface ServingMemoryInput {
  spec: Spec;
  schedule: ServingSchedule;
  slotsPerGpu: number;
  /** Send-side bytes of one MoE layer's combine for one micro-batch on one GPU. */
  combinePerLayer: LinkBytes;
}

/** Tokens of one serving micro-batch in an attention group (see the module comment of activations.ts). */
export function servingGroupTokens(schedule: ServingSchedule): number {
  const perSequence = schedule.kind === "prefill" ? schedule.seqLen : 1 + schedule.mtpSpeculation;
  return Math.ceil((schedule.batchPerGpu * perSequence) / schedule.microbatches);
}

/** The serving stage: every layer, the embedding, the head and the MTP modules used for speculation. */
export function servingStage(spec: Spec, schedule: ServingSchedule): StageContents {
  const model = spec.model;
  const kinds = layerKinds(model);
  return {
    stage: 0,
    layers: { first: 0, last: model.layers - 1 },
    denseLayers: kinds.filter((k) => k === "dense").length,
    moeLayers: kinds.filter((k) => k === "moe").length,
    embedding: true,
    head: true,
    mtpModules: Math.min(schedule.mtpSpeculation, model.mtp.depth),
    embeddingCopyForMtp: false,
    flopsPerToken: 0,
  };
}

export function servingMemory(input: ServingMemoryInput): { memoryClass: MemoryClass; groups: ParamGroup[] } {
  const { spec, schedule } = input;
  const model = spec.model;
  const recipe = new RecipeBytes(spec.precision);
  const tp = schedule.attention.tp;
  const layout: WeightLayout = {
    attentionTp: tp,
    ffnTp: 1,
    expertSlots: input.slotsPerGpu,
    sharedInSlots: schedule.moe.sharedAsRouted,
    vocabTp: tp,
  };
  const stage = servingStage(spec, schedule);
  const weights = heldWeights(model, [stage], layout, recipe, layerKinds(model));
  const items: MemoryItem[] = weightItems(weights.groups, () => 1, 0);
  const shared = model.moe?.sharedExperts ?? 0;
  const picks = (model.moe?.expertsPerToken ?? 0) + (schedule.moe.sharedAsRouted ? shared : 0);
  const groupTokens = servingGroupTokens(schedule);
  const perMb = servingWorkingSet(model, recipe, {
    groupTokens,
    logitTokens: schedule.kind === "prefill" ? Math.ceil(schedule.batchPerGpu / schedule.microbatches) : groupTokens,
    tp,
    sp: schedule.attention.sp,
    picks,
    sharedBeside: !schedule.moe.sharedAsRouted,
  });
  items.push({ category: "activations", name: "working_set", bytes: perMb * schedule.microbatches, detail: `${schedule.microbatches} micro-batch(es) of ${groupTokens} tokens in flight` });

  const stats = computeStats(spec);
  const kvLayers = model.layers + stage.mtpModules;
  // MLA's latent serves every head, so each attention-TP rank keeps all of it; MHA/GQA split KV heads.
  const a = model.attention;
  const kvSplit = a.kind === "mla" ? 1 : a.kvHeads % tp === 0 ? tp : 1;
  const bytesPerToken = Math.ceil((stats.kvCache.bytesPerTokenPerLayerBf16 * kvLayers) / kvSplit);
  const neededTokens = schedule.batchPerGpu * schedule.seqLen;
  items.push({ category: "kv_cache", name: "kv_cache", bytes: neededTokens * bytesPerToken, detail: `${neededTokens} tokens × ${bytesPerToken} B` });
  if (model.moe !== null) {
    const staging =
      schedule.microbatches * 2 * (Math.min(A2A_BUFFER_CAP_BYTES, input.combinePerLayer.nvlinkBytes) + Math.min(A2A_BUFFER_CAP_BYTES, input.combinePerLayer.ibBytes));
    items.push({ category: "communication_buffers", name: "all_to_all_staging", bytes: staging, detail: `send + receive per link, ${schedule.microbatches} micro-batch(es)` });
  }
  items.push({ category: "framework_reserve", name: "framework_reserve", bytes: FRAMEWORK_RESERVE_BYTES, detail: "CUDA context, workspaces, fragmentation" });

  const budget = spec.cluster.gpu.hbmBytes;
  const others = items.filter((i) => i.category !== "kv_cache").reduce((a, i) => a + i.bytes, 0);
  const capacityTokens = Math.max(0, Math.floor((budget - others) / bytesPerToken));
  const kvCache: KvCachePlan = {
    bytesPerToken,
    format: `BF16 ${stats.kvCache.elementsPerTokenPerLayer} elements per token and layer over ${kvLayers} layers`,
    replicatedOver: a.kind === "mla" ? tp : tp / kvSplit,
    capacityTokens,
    sequencesAtSeqLen: Math.floor(capacityTokens / schedule.seqLen),
    neededTokens,
    unitCapacityTokens: capacityTokens * schedule.attention.dp,
  };
  const memoryClass = finishClass({
    id: "serve",
    gpuCount: schedule.gpus,
    firstGpu: 0,
    holds: `every layer; ${input.slotsPerGpu} expert slot(s) per MoE layer; attention TP${tp}`,
    items,
    budgetBytes: budget,
    kvCache,
    activationChunks: null,
  });
  return { memoryClass, groups: weights.groups };
}
