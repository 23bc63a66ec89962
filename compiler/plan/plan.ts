/**
 * The Plan contract (DESIGN.md): for every rank its coordinates, its layers/chunks, its pipeline op
 * sequence, its experts, its sends/receives/all-to-alls with byte counts, and its memory budget.
 *
 * A Plan is plain JSON data (numbers, strings, booleans, arrays, objects; no typed arrays, no
 * functions). Every array is in a fixed order (ranks by GPU id, programs by id, stages by index) and
 * `planJson` writes the keys in the order declared here, so the same Spec and schedule give the same
 * bytes. Bytes are whole numbers (expected-value figures are rounded to the byte).
 *
 * Compression. A V3 training plan has 2048 GPUs, but only a few distinct programs and memory
 * budgets: every GPU of one pipeline rank runs the same op sequence and, under the expected-value
 * routing model, holds the same bytes. So `programs` and `memory.classes` hold each distinct one
 * once, and each GPU (`ranks`, `memory.perGpu`) names its program and memory class and carries its
 * own coordinates and total only. A GPU's experts follow from its EP rank (`experts`).
 */

import type { PipelineKind } from "../spec.js";

export const PLAN_VERSION = 1;

export type PlanKind = "training" | "prefill" | "decode";

// ── Stages ──────────────────────────────────────────────────────────────────────────────────────

/** What one pipeline stage (one model chunk) holds. */
export interface StageContents {
  stage: number;
  /** Main-model layers `first..last` (inclusive, 0-based); every stage holds at least one. */
  layers: { first: number; last: number };
  denseLayers: number;
  moeLayers: number;
  /** The embedding table (stage 0). */
  embedding: boolean;
  /** The final norm and output head (the last stage). */
  head: boolean;
  /** MTP modules (all on the last stage, beside the head they share). */
  mtpModules: number;
  /**
   * A copy of the embedding table kept on the last stage for the MTP modules, which look up the
   * next tokens' embeddings (only when the first and last stage are on different ranks: 1F1B and
   * ZB1P with pp > 1; DualPipe and DualPipeV put both ends on the same ranks).
   */
  embeddingCopyForMtp: boolean;
  /** Forward FLOPs per token of everything in the stage (the partition's cost). */
  flopsPerToken: number;
}

export interface Partition {
  /** Stages (model chunks): pp, or 2·pp for DualPipeV. */
  stages: StageContents[];
  maxStageFlops: number;
  meanStageFlops: number;
  /** maxStageFlops / meanStageFlops. */
  imbalance: number;
  /** Layers per stage, in stage order (the split as one list). */
  layersPerStage: number[];
  costModel: string;
}

// ── Ranks and programs ──────────────────────────────────────────────────────────────────────────

/** Where a GPU sits and which parallel groups it belongs to. */
export interface RankCoordinates {
  gpu: number;
  node: number;
  localGpu: number;
  /** Pipeline rank (the device index of the pipeline; 0 when serving). */
  pp: number;
  /** Data-parallel index (training) or attention-DP index (serving). */
  dp: number;
  /** Tensor-parallel index (training) or attention-TP index (serving). */
  tp: number;
  /** Which expert-parallel group, and the GPU's rank in it. */
  epGroup: number;
  ep: number;
}

export interface RankPlan extends RankCoordinates {
  /** The id of the program this GPU runs (`programs[].id`). */
  program: string;
  /** The id of its memory budget (`memory.classes[].id`). */
  memoryClass: string;
}

/** A point-to-point transfer of one pipeline op. The peer GPU has the same dp and tp index. */
export interface P2pTransfer {
  /** Pipeline rank of the peer. */
  peer: number;
  kind: "activation" | "gradient";
  bytes: number;
}

/** One op of a training program (see compiler/plan/pipeline/schedule.ts for F, B, W). */
export interface TrainingOp {
  op: "F" | "B" | "W";
  mb: number;
  dir: 0 | 1;
  /** The stage (model chunk) the op runs. */
  stage: number;
  /** Shared by the two halves of an overlapped F&B pair; null otherwise. */
  overlapGroup: number | null;
  /** What the op receives before it starts (null: nothing, or a local hand-off). */
  recv: P2pTransfer | null;
  /** What the op sends when it ends. */
  send: P2pTransfer | null;
}

export interface TrainingProgram {
  id: string;
  kind: "training";
  pipelineRank: number;
  /** The stage this rank runs for each direction it takes part in (dir order). */
  stages: { dir: 0 | 1; stage: number }[];
  ops: TrainingOp[];
  /** Peak live activation chunks on this rank (the simulation's count). */
  activationPeakChunks: number;
}

/** One step of a serving program: a compute op or an all-to-all of one micro-batch. */
export interface ServingOp {
  /** `experts` runs the GPU's routed slots and, unless served as routed, the shared experts; `mtp` an MTP module's norms and eh_proj. */
  op: "embedding" | "attention" | "dense_ffn" | "dispatch" | "experts" | "combine" | "head" | "mtp";
  /** Main-model layer (MTP module k is layer `layers + k`); null for embedding and head. */
  layer: number | null;
  mb: number;
  stream: "compute" | "communication";
  /** Send-side bytes of a dispatch or combine on this GPU (expected value); 0 for compute. */
  nvlinkBytes: number;
  ibBytes: number;
}

export interface ServingProgram {
  id: string;
  kind: "prefill" | "decode";
  /** The micro-batches' ops in issue order: micro-batch k runs k phases behind micro-batch 0, so one micro-batch's all-to-all overlaps another's compute. */
  ops: ServingOp[];
}

export type Program = TrainingProgram | ServingProgram;

// ── Experts ─────────────────────────────────────────────────────────────────────────────────────

export interface ExpertPlacementPlan {
  /** contiguous: expert e on EP rank floor(e / slotsPerGpu); eplb: from a load profile. */
  policy: "contiguous" | "eplb-hierarchical" | "eplb-global";
  epSize: number;
  /** Expert slots per GPU per MoE layer (routed, redundant and shared-as-routed together). */
  slotsPerGpu: number;
  /** Logical experts placed: the routed ones, plus the shared ones when served as routed (numbered after the routed). */
  logicalExperts: number;
  redundantSlots: number;
  sharedAsRouted: boolean;
  /** The MoE layers placed, in order (MTP module k's block is layer `model.layers + k`). */
  layers: number[];
  /**
   * Per layer, the logical expert of each slot (slot p on EP rank floor(p / slotsPerGpu)); a single
   * row when every layer has the same placement.
   */
  slots: number[][];
  sameForAllLayers: boolean;
  /** The load profile the placement was computed from (null for contiguous placement). */
  loadProfile: { kind: "synthetic-zipf"; exponent: number; seed: number; note: string } | null;
  /** Largest over mean GPU load, averaged over layers, without and with the redundant experts. */
  balance: { before: number; after: number } | null;
}

// ── Memory ──────────────────────────────────────────────────────────────────────────────────────

export type MemoryCategory =
  | "weights"
  | "gradients"
  | "master_weights"
  | "optimizer_states"
  | "activations"
  | "kv_cache"
  | "communication_buffers"
  | "framework_reserve";

export const MEMORY_CATEGORIES: readonly MemoryCategory[] = [
  "weights",
  "gradients",
  "master_weights",
  "optimizer_states",
  "activations",
  "kv_cache",
  "communication_buffers",
  "framework_reserve",
];

export interface MemoryItem {
  category: MemoryCategory;
  name: string;
  bytes: number;
  detail: string;
}

export interface KvCachePlan {
  /** Bytes of one token's cache over all layers (and the MTP modules served). */
  bytesPerToken: number;
  format: string;
  /** GPUs holding the same tokens (MLA's latent is shared by all heads: replicated over the attention-TP group). */
  replicatedOver: number;
  /** Tokens the GPU's free memory holds: floor((budget − everything else) / bytesPerToken). */
  capacityTokens: number;
  /** capacityTokens / seqLen, rounded down. */
  sequencesAtSeqLen: number;
  /** Tokens the schedule's batch needs on the GPU (batchPerGpu · seqLen). */
  neededTokens: number;
  /** Tokens the whole serving unit holds: capacityTokens × attention-DP groups. */
  unitCapacityTokens: number;
}

export interface MemoryClass {
  id: string;
  /** GPUs with this budget. */
  gpuCount: number;
  /** The lowest GPU id with it (the one a diagnostic names). */
  firstGpu: number;
  /** What the GPUs of the class hold, in words (e.g. "pipeline rank 0: stages 0 and 15"). */
  holds: string;
  byCategory: { category: MemoryCategory; bytes: number }[];
  items: MemoryItem[];
  totalBytes: number;
  budgetBytes: number;
  /** Serving only. */
  kvCache: KvCachePlan | null;
  /** Training only: peak live activation chunks and their split by stage. */
  activationChunks: { stage: number; chunks: number; bytesPerChunk: number }[] | null;
}

export interface PlanMemory {
  budgetBytes: number;
  /** The largest total over GPUs. */
  peakBytes: number;
  peakGpu: number;
  fits: boolean;
  classes: MemoryClass[];
  /** Every GPU in order: its class and total (the class holds the breakdown). */
  perGpu: { gpu: number; class: string; totalBytes: number }[];
  /** How each category is sized. */
  rules: string[];
}

// ── Traffic ─────────────────────────────────────────────────────────────────────────────────────

export interface LinkBytes {
  nvlinkBytes: number;
  ibBytes: number;
}

/** Send-side bytes of one GPU per step (received bytes are equal under the symmetric model). */
export interface GpuTraffic {
  /** The program (training: the pipeline rank) these figures hold for. */
  program: string;
  /** Token dispatch: FP8 in forward, and the activation gradients sent to the experts in backward. */
  dispatch: LinkBytes;
  /** Combine: BF16 in forward, and the gradients sent back from the experts in backward. */
  combine: LinkBytes;
  /** Pipeline activations and gradients. */
  p2pBytes: number;
  /** Data-parallel gradient and parameter collectives (ring algorithm figures). */
  dataParallel: { reduceScatterBytes: number; allGatherBytes: number; allReduceBytes: number };
  /** Tensor-parallel (and sequence-parallel) collectives. */
  tensorParallelBytes: number;
}

export interface PlanTraffic {
  /** Expected copies of one token per MoE layer: over IB, over NVLink, kept local. */
  copiesPerToken: { ib: number; nvlink: number; local: number; distinctGpus: number; distinctNodes: number };
  /** Bytes of one dispatched and one combined token copy. */
  dispatchBytesPerCopy: number;
  combineBytesPerCopy: number;
  /** Tokens each GPU dispatches per MoE layer and micro-batch. */
  tokensPerMicrobatch: number;
  perProgram: GpuTraffic[];
  model: string;
}

// ── The plan ────────────────────────────────────────────────────────────────────────────────────

export interface PlanSchedule {
  name: string;
  kind: PlanKind;
  /** Training only. */
  pipeline: PipelineKind | null;
  /** Pipeline stages (model chunks): pp, or 2·pp for DualPipeV; 1 when serving. */
  stages: number;
  /** Pipeline ranks (devices of one pipeline). */
  pipelineRanks: number;
  microbatches: number;
  /** Tokens of one micro-batch on one GPU (training: per data-parallel rank; serving: per attention group). */
  tokensPerMicrobatch: number;
  tp: number;
  dp: number;
  ep: number;
  zero: number;
}

export interface Plan {
  planVersion: typeof PLAN_VERSION;
  model: string;
  schedule: PlanSchedule;
  cluster: { name: string; gpu: string; gpusPerNode: number; nodes: number; hbmBytes: number };
  /** GPUs the schedule uses (the first `gpus` of the cluster). */
  gpus: number;
  partition: Partition | null;
  ranks: RankPlan[];
  programs: Program[];
  experts: ExpertPlacementPlan | null;
  memory: PlanMemory;
  traffic: PlanTraffic;
  /** Modelling statements a reader needs (synthetic load profile, sizing rules in force, …). */
  notes: string[];
}
