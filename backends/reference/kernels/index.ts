/**
 * CPU semantics of every KernelSpec kind (one file a kind), and the interpreter of the unfused ops
 * they replace (unfused.ts). Tensors are typed arrays keyed by KernelTensor id (tensors.ts).
 *
 * KERNEL_EXACTNESS says, per kernel, whether the fused kernel performs the same operations in the
 * same order as its unfused ops (bitwise) or not (a tolerance; tests/kernels.test.ts).
 */
import type { KernelKind, KernelSpec } from "../../../compiler/kernel-spec.js";
import { runGateTopk } from "./gate-topk.js";
import { runGemm } from "./gemm.js";
import { runGroupedGemm } from "./grouped-gemm.js";
import { runMlaDecodeAttention } from "./mla-decode-attention.js";
import { runMoePermute } from "./moe-permute.js";
import { runMoeUnpermute } from "./moe-unpermute.js";
import { runPrefillAttention } from "./prefill-attention.js";
import { runRmsnormQuantize } from "./rmsnorm-quantize.js";
import { runRope } from "./rope.js";
import { runSwigluQuantize } from "./swiglu-quantize.js";
import type { KernelValues } from "./tensors.js";

export * from "./tensors.js";
export { OP_SEMANTICS, runUnfused, DIM_ATTRS } from "./unfused.js";

export type KernelFunction = (spec: KernelSpec, inputs: KernelValues) => KernelValues;

export const KERNELS: Record<KernelKind, KernelFunction> = {
  rmsnorm_quantize: runRmsnormQuantize,
  swiglu_quantize: runSwigluQuantize,
  gemm: runGemm,
  grouped_gemm: runGroupedGemm,
  gate_topk: runGateTopk,
  moe_permute: runMoePermute,
  moe_unpermute: runMoeUnpermute,
  mla_decode_attention: runMlaDecodeAttention,
  prefill_attention: runPrefillAttention,
  rope: runRope,
};

/** Runs one fused kernel: its outputs (and `.scale` arrays of quantised ones) by tensor id. */
export function runKernel(spec: KernelSpec, inputs: KernelValues): KernelValues {
  return KERNELS[spec.kind](spec, inputs);
}

/**
 * How a kernel compares with its unfused ops:
 *   bitwise — same operations, same order, same stored dtypes;
 *   rounding — the epilogue works on FP32 accumulators that the unfused ops round to BF16 in
 *     between (gemm with an epilogue), or the reduction order differs (online softmax): each real
 *     output element within a few BF16 ulps, and a quantised output within one code step.
 */
export function kernelExactness(spec: KernelSpec): "bitwise" | "rounding" {
  switch (spec.kind) {
    case "gemm":
      return Array.isArray(spec.constants["epilogue"]) && spec.constants["epilogue"].length > 0 ? "rounding" : "bitwise";
    case "mla_decode_attention":
    case "prefill_attention":
      return "rounding";
    default:
      return "bitwise";
  }
}
