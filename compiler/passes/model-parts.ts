/**
 * Recognisers of the model's parts in a Graph IR graph, by structure (op kinds, blocks, producers),
 * not by value names, so the passes work on hand-written graphs as on built ones:
 *
 * - the high-precision part an op belongs to (PrecisionSpec `highPrecision` parts);
 * - the attention output projection (its input comes from the attention core, through reshapes);
 * - the MLA up-projections (q_b, kv_b: a linear of the mla block whose input is the output of a
 *   latent RMSNorm — an RMSNorm of the mla block — possibly through its quantisation).
 */
import type { HighPrecisionPart } from "../spec.js";
import { allOps, type LayerGraph, type Op, type OpKind } from "../graph/ir.js";

/** The producing op of every value, fused bodies included. */
export function producerMap(g: LayerGraph): Map<string, Op> {
  const m = new Map<string, Op>();
  for (const op of allOps(g.ops)) if (op.kind !== "fused") for (const id of op.outputs) m.set(id, op);
  return m;
}

/** The op producing `id`, looking through producers of the given kinds (e.g. reshape, quantize). */
export function producerThrough(producers: Map<string, Op>, id: string, through: readonly OpKind[]): Op | undefined {
  let op = producers.get(id);
  while (op !== undefined && through.includes(op.kind) && op.inputs[0] !== undefined) op = producers.get(op.inputs[0]);
  return op;
}

/** The PrecisionSpec part `op` belongs to, or null when it has none. */
export function highPrecisionPartOf(op: Op): HighPrecisionPart | null {
  if (op.kind === "embedding") return "embedding";
  if (op.kind === "rmsnorm") return "norm";
  if (op.kind === "attention") return "attention_core";
  if (op.block === "moe_gate") return "moe_gate";
  if (op.kind === "linear" && op.block === "head") return "output_head";
  return null;
}

/** Whether `op` is the attention output projection (its input is the attention core's output). */
export function isAttentionOutProj(producers: Map<string, Op>, op: Op): boolean {
  if (op.kind !== "linear") return false;
  const src = producerThrough(producers, op.inputs[0]!, ["reshape", "quantize"]);
  return src !== undefined && (src.kind === "attention" || src.kind === "mla_absorb_uv");
}

/** Whether `op` is an MLA up-projection (q_b_proj or kv_b_proj). */
export function isMlaUpProj(producers: Map<string, Op>, op: Op): boolean {
  if (op.kind !== "linear" || op.block !== "mla") return false;
  const src = producerThrough(producers, op.inputs[0]!, ["quantize"]);
  // The latent norms are in the mla block; the layer's input norm (block rmsnorm) feeds q_a and kv_a.
  return src !== undefined && src.kind === "rmsnorm" && src.block === "mla";
}
