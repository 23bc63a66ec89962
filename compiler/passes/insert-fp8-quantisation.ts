/**
 * FP8 quantisation points, per the Spec's PrecisionSpec (FACTS "FP8 training recipe"). Nothing
 * happens for `mode = bf16`. For `mode = fp8`, graph by graph:
 *
 * - GEMMs (`linear`, `grouped_linear`) outside the high-precision parts take `gemmFormat` (E4M3)
 *   inputs: the activation through a `quantize` op with `activationTile` (1×128) scales (one per
 *   value and format, shared by every GEMM that reads it), the weight stored in `gemmFormat` with
 *   `weightBlock` (128×128) scales; the GEMM gets `promote` = the promotion interval (FP32
 *   accumulation every N_C elements of K). Scales are power-of-two when `pow2Scales`.
 * - The high-precision parts (`highPrecision`: embedding, output_head, moe_gate, norm,
 *   attention_core) are left in their precision, stamped `keep=<dtype>`: embedding lookups, the
 *   output head's GEMM, every op of the gate, every RMSNorm, the attention core. A part the Spec does
 *   not list gets no stamp; a GEMM of it (head, gate) is then quantised like any other.
 * - MoE dispatch (`moe_dispatch` exception in an FP8 format): the expert input is quantised before
 *   `moe_permute` with the exception's scales (power-of-two in V3), so the permuted (dispatched) rows
 *   travel in FP8 and the grouped GEMM reads them as they are. MoE combine (`moe_combine`): its
 *   format is stamped on `moe_unpermute` (`combine=bf16` in V3); an FP8 combine format inserts the
 *   quantisation of the expert outputs before it.
 * - Training only, the activation cache: every GEMM-input `quantize` is stamped with the format its
 *   output is cached in for the backward pass (`cache=`, `cache_pow2=`): the default format, or the
 *   exception's — E5M6 with power-of-two scales for the attention output projection's input, the
 *   dispatch format for the dispatched rows; SwiGLU ops get `cache_in=` (their inputs' cache format),
 *   `moe_unpermute` the combine's. (mark-recompute flags what is recomputed instead of cached.)
 */
import type { CacheException, CachePoint, PrecisionSpec } from "../spec.js";
import type { Attrs, Block, LayerGraph, ModelGraph, Op, Phase, Quant } from "../graph/ir.js";
import { isQuantisedDtype } from "../graph/ir.js";
import { cloneModel, GraphEdit } from "../graph/rewrite.js";
import { highPrecisionPartOf, isAttentionOutProj, producerMap } from "./model-parts.js";
import type { Pass } from "./pass.js";

function cacheAttrs(format: string, pow2: boolean, key = "cache"): Attrs {
  return pow2 ? { [key]: format, [`${key}_pow2`]: true } : { [key]: format };
}

function quantiseGraph(g: LayerGraph, phase: Phase, p: PrecisionSpec): void {
  const e = new GraphEdit(g);
  const producers = producerMap(g);
  const keep = new Map(p.highPrecision.map((h) => [h.part, h.dtype]));
  const exceptions = new Map<CachePoint, CacheException>(p.activationCache.exceptions.map((x) => [x.point, x]));
  const train = phase === "train";
  const fmt = p.gemmFormat;
  const act = (pow2: boolean): Quant => ({ tile: [p.activationTile[0], p.activationTile[1]], pow2 });
  const done = new Map<string, string>();
  const out: Op[] = [];
  /** The quantised copy of x (made once per format), with the cache stamp for training. */
  const quantise = (x: string, q: Quant, block: Block, cache: Attrs): string => {
    const key = `${x}|${q.tile.join("x")}|${q.pow2}`;
    const hit = done.get(key);
    if (hit !== undefined) return hit;
    const v = e.value(x);
    const op = e.makeOp("quantize", [x], [{ dtype: fmt, shape: v.shape, quant: q }], block, train ? cache : {});
    out.push(op);
    done.set(key, op.outputs[0]!);
    return op.outputs[0]!;
  };
  const defaultCache = cacheAttrs(p.activationCache.default, false);
  for (const op of g.ops) {
    if (op.kind === "fused") {
      out.push(op);
      continue;
    }
    const part = highPrecisionPartOf(op);
    const kept = part === null ? undefined : keep.get(part);
    if (kept !== undefined) {
      op.attrs["keep"] = kept;
      out.push(op);
      continue;
    }
    switch (op.kind) {
      case "linear":
      case "grouped_linear": {
        const x = op.inputs[0]!;
        if (e.value(x).quant === null) {
          const outProj = exceptions.get("attn_out_proj_input");
          const cache = isAttentionOutProj(producers, op) && outProj !== undefined ? cacheAttrs(outProj.format, outProj.pow2Scales) : defaultCache;
          op.inputs[0] = quantise(x, act(p.pow2Scales), op.block, cache);
        }
        const w = e.value(op.inputs[1]!);
        if (w.quant === null) {
          w.dtype = fmt;
          w.quant = { tile: [p.weightBlock[0], p.weightBlock[1]], pow2: p.pow2Scales };
        }
        op.attrs["promote"] = p.promotionInterval;
        break;
      }
      case "moe_permute": {
        const dispatch = exceptions.get("moe_dispatch");
        if (dispatch !== undefined && dispatch.format === fmt) {
          const q = act(dispatch.pow2Scales);
          op.inputs[0] = quantise(op.inputs[0]!, q, op.block, cacheAttrs(dispatch.format, dispatch.pow2Scales));
          const rows = e.value(op.outputs[0]!);
          rows.dtype = fmt;
          rows.quant = q;
        }
        break;
      }
      case "moe_unpermute": {
        const combine = exceptions.get("moe_combine");
        if (combine !== undefined) {
          op.attrs["combine"] = combine.format;
          if (isQuantisedDtype(combine.format) && e.value(op.inputs[0]!).quant === null) {
            const v = e.value(op.inputs[0]!);
            const q = e.makeOp("quantize", [v.id], [{ dtype: combine.format, shape: v.shape, quant: act(combine.pow2Scales) }], op.block);
            out.push(q);
            op.inputs[0] = q.outputs[0]!;
          }
          if (train) Object.assign(op.attrs, cacheAttrs(combine.format, combine.pow2Scales, "cache_in"));
        }
        break;
      }
      case "swiglu": {
        const input = exceptions.get("swiglu_input");
        if (train && input !== undefined) Object.assign(op.attrs, cacheAttrs(input.format, input.pow2Scales, "cache_in"));
        break;
      }
      default:
        break;
    }
    out.push(op);
  }
  g.ops = out;
}

export const insertFp8Quantisation: Pass = {
  name: "insert-fp8-quantisation",
  run(model: ModelGraph, ctx): ModelGraph {
    if (ctx.precision.mode !== "fp8") return model;
    const out = cloneModel(model);
    for (const g of out.graphs) quantiseGraph(g, out.phase, ctx.precision);
    return out;
  },
};
