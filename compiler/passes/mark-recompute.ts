/**
 * Recompute marking (training only): flags `!recompute` on the ops whose outputs the backward pass
 * recomputes instead of reading from the activation cache (FACTS "Recomputed in backward"):
 *
 *   precision.recompute  rmsnorm      every RMSNorm (layer norms, MLA latent norms, MTP and head norms)
 *                        mla_up_proj  the MLA up-projections q_b and kv_b (model-parts.ts)
 *                        swiglu       every SwiGLU
 *                        rope         every RoPE
 *   cache exceptions with recomputeOutput: the op reading the cache point recomputes its output —
 *                        swiglu_input → SwiGLU (V3: "SwiGLU input cached in FP8, output recomputed"),
 *                        attn_out_proj_input → the output projection, moe_dispatch → moe_permute,
 *                        moe_combine → moe_unpermute.
 *
 * A `quantize` of a recomputed value is recomputed with it (the GEMM's backward needs the FP8 copy
 * again) and so is not cached: its `cache=` stamp (insert-fp8-quantisation's) is dropped. What is
 * cached instead is the recomputed op's input (e.g. the residual stream for an RMSNorm, the FP8
 * SwiGLU input for the SwiGLU). A fused op (if the pass runs after fusion) gets the union of its
 * body's flags.
 */
import type { CachePoint, PrecisionSpec, RecomputePart } from "../spec.js";
import type { LayerGraph, ModelGraph, Op } from "../graph/ir.js";
import { allOps } from "../graph/ir.js";
import { cloneModel } from "../graph/rewrite.js";
import { isAttentionOutProj, isMlaUpProj, producerMap } from "./model-parts.js";
import type { Pass } from "./pass.js";

function recomputed(p: PrecisionSpec, producers: Map<string, Op>, op: Op): boolean {
  const parts = new Set<RecomputePart>(p.recompute);
  const outputRecomputed = (point: CachePoint): boolean =>
    p.activationCache.exceptions.some((x) => x.point === point && x.recomputeOutput);
  switch (op.kind) {
    case "rmsnorm":
      return parts.has("rmsnorm");
    case "rope":
      return parts.has("rope");
    case "swiglu":
      return parts.has("swiglu") || outputRecomputed("swiglu_input");
    case "linear":
      return (
        (parts.has("mla_up_proj") && isMlaUpProj(producers, op)) ||
        (outputRecomputed("attn_out_proj_input") && isAttentionOutProj(producers, op))
      );
    case "moe_permute":
      return outputRecomputed("moe_dispatch");
    case "moe_unpermute":
      return outputRecomputed("moe_combine");
    default:
      return false;
  }
}

function flag(op: Op): void {
  op.flags = [...op.flags, "recompute"].sort() as Op["flags"];
}

function markGraph(g: LayerGraph, p: PrecisionSpec): boolean {
  const producers = producerMap(g);
  let changed = false;
  for (const op of allOps(g.ops)) {
    if (op.kind !== "fused" && !op.flags.includes("recompute") && recomputed(p, producers, op)) {
      flag(op);
      changed = true;
    }
  }
  for (const op of allOps(g.ops)) {
    if (op.kind !== "quantize" || op.flags.includes("recompute")) continue;
    const src = producers.get(op.inputs[0]!);
    if (src === undefined || !src.flags.includes("recompute")) continue;
    flag(op);
    delete op.attrs["cache"];
    delete op.attrs["cache_pow2"];
    changed = true;
  }
  for (const op of g.ops) {
    if (op.kind === "fused" && !op.flags.includes("recompute") && op.body!.some((b) => b.flags.includes("recompute"))) {
      flag(op);
      changed = true;
    }
  }
  return changed;
}

export const markRecompute: Pass = {
  name: "mark-recompute",
  run(model: ModelGraph, ctx): ModelGraph {
    if (model.phase !== "train") return model;
    const out = cloneModel(model);
    let changed = false;
    for (const g of out.graphs) changed = markGraph(g, ctx.precision) || changed;
    return changed ? out : model;
  },
};
