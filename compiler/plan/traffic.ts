/**
 * Bytes each GPU sends per step, by kind of traffic (received bytes are equal under the symmetric
 * models used here).
 *
 * - All-to-all (MoE): per MoE layer and micro-batch, the expected copies of expected-traffic.ts times
 *   the tokens the GPU dispatches and the bytes of a copy. Training counts four transfers per layer
 *   and micro-batch: the forward dispatch (FP8 with scales) and combine (BF16), and in backward the
 *   output gradients sent to the experts (FP8, as the recipe quantises the activation gradient before
 *   the down projection) and the input gradients sent back (BF16).
 * - Pipeline: the sends of the rank's program (one activation or gradient per F or B that crosses
 *   ranks; BF16 hidden states of one micro-batch).
 * - Data parallel, ring figures per GPU over the n GPUs holding a parameter (dp, × 2 for DualPipe; the
 *   expert-data-parallel group tp·dp/ep for routed experts): ZeRO ≥ 1 reduce-scatters the gradients
 *   ((n−1)/n of their bytes) and all-gathers the updated working weights ((n−1)/n of theirs); ZeRO-0
 *   all-reduces the gradients (2(n−1)/n); ZeRO-3 also gathers the weights for every forward and
 *   backward of a micro-batch.
 * - Tensor parallel (tp > 1): per layer and micro-batch, an all-gather and a reduce-scatter around
 *   each of the attention and FFN blocks in forward and again in backward ((tp−1)/tp of the block's
 *   BF16 hidden states each; without sequence parallelism the all-reduces move the same bytes).
 */

import type { Dir, Schedule } from "./pipeline/schedule.js";
import type { TrainingSchedule } from "../spec.js";
import type { GpuTraffic, LinkBytes, Partition, TrainingProgram } from "./plan.js";
import type { ParamGroup } from "./weights.js";

function scale(b: LinkBytes, k: number): LinkBytes {
  return { nvlinkBytes: Math.round(b.nvlinkBytes * k), ibBytes: Math.round(b.ibBytes * k) };
}

export interface TrainingTrafficInput {
  schedule: TrainingSchedule;
  pipeline: Schedule;
  partition: Partition;
  program: TrainingProgram;
  groups: readonly ParamGroup[];
  gradientBytesPerParam: number;
  mtpIsMoe: boolean;
  /** One MoE layer, one micro-batch, this GPU, send side. */
  dispatch: LinkBytes;
  combine: LinkBytes;
  hidden: number;
  /** Tokens of one micro-batch on this GPU. */
  tokens: number;
}

export function trainingTraffic(input: TrainingTrafficInput): GpuTraffic {
  const { schedule, pipeline, partition, program } = input;
  const r = program.pipelineRank;
  let moeThrough = 0;
  let layersThrough = 0;
  for (const d of pipeline.dirs as readonly Dir[]) {
    const s = partition.stages[pipeline.stageOf(r, d)]!;
    moeThrough += pipeline.microbatchesPerDir * (s.moeLayers + (input.mtpIsMoe ? s.mtpModules : 0));
    layersThrough += pipeline.microbatchesPerDir * (s.denseLayers + s.moeLayers + s.mtpModules);
  }
  const p2pBytes = program.ops.reduce((a, o) => a + (o.send?.bytes ?? 0), 0);

  const copies = schedule.pipeline === "dualpipe" ? 2 : 1;
  const nNonExpert = schedule.dp * copies;
  const nExpert = ((schedule.tp * schedule.dp) / schedule.ep) * copies;
  let reduceScatter = 0;
  let allGather = 0;
  let allReduce = 0;
  const microbatchesThrough = pipeline.microbatchesPerDir * pipeline.dirs.length;
  for (const g of input.groups) {
    const n = g.expert ? nExpert : nNonExpert;
    if (n <= 1) continue;
    const f = (n - 1) / n;
    const grads = g.params * input.gradientBytesPerParam;
    if (schedule.zero >= 1) {
      reduceScatter += f * grads;
      allGather += f * g.bytes * (schedule.zero >= 3 ? 1 + 2 * microbatchesThrough : 1);
    } else {
      allReduce += 2 * f * grads;
    }
  }
  const tp = schedule.tp;
  const tensorParallelBytes = tp > 1 ? layersThrough * 8 * ((tp - 1) / tp) * input.tokens * input.hidden * 2 : 0;
  return {
    program: program.id,
    dispatch: scale(input.dispatch, 2 * moeThrough),
    combine: scale(input.combine, 2 * moeThrough),
    p2pBytes,
    dataParallel: { reduceScatterBytes: Math.round(reduceScatter), allGatherBytes: Math.round(allGather), allReduceBytes: Math.round(allReduce) },
    tensorParallelBytes: Math.round(tensorParallelBytes),
  };
}

export interface ServingTrafficInput {
  moeLayers: number;
  layers: number;
  microbatches: number;
  dispatch: LinkBytes;
  combine: LinkBytes;
  tp: number;
  /** Tokens of one micro-batch in the attention group. */
  groupTokens: number;
  hidden: number;
}

/** One forward step of the serving batch (every micro-batch once through every layer). */
export function servingTraffic(input: ServingTrafficInput): GpuTraffic {
  const n = input.moeLayers * input.microbatches;
  const tp = input.tp;
  const tpBytes = tp > 1 ? input.layers * input.microbatches * 2 * ((tp - 1) / tp) * input.groupTokens * input.hidden * 2 : 0;
  return {
    program: "serve",
    dispatch: scale(input.dispatch, n),
    combine: scale(input.combine, n),
    p2pBytes: 0,
    dataParallel: { reduceScatterBytes: 0, allGatherBytes: 0, allReduceBytes: 0 },
    tensorParallelBytes: Math.round(tpBytes),
  };
}
