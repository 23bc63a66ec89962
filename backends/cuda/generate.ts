/**
 * The `cuda-source` stage: one generator per KernelSpec kind, each producing CUDA C++ specialised on
 * the spec's constants and the kernel choices for the GPU target. A kernel's name is its kind and a
 * hash of what determines its code (the spec's key, the target, the generator version), so equal
 * KernelSpecs share one kernel and a changed generator never collides with an old cache entry.
 */
import { createHash } from "node:crypto";
import type { KernelKind, KernelSpec } from "../../compiler/kernel-spec.js";
import type { GpuTarget } from "./gpu-target.js";
import type { GeneratedKernel } from "./generated-kernel.js";
import { generateGemm } from "./kernels/gemm.js";
import { gateUnsupported, generateGateTopk } from "./kernels/gate-topk.js";
import { generateMlaDecodeAttention } from "./kernels/mla-decode-attention.js";
import { generateMoePermute } from "./kernels/moe-permute.js";
import { generateMoeUnpermute } from "./kernels/moe-unpermute.js";
import { generatePrefillAttention, prefillAttentionUnsupported } from "./kernels/prefill-attention.js";
import { generateRope } from "./kernels/rope.js";
import { generateRowwiseQuantize } from "./kernels/rowwise-quantize.js";

/** Bumped whenever a generator's output changes for the same KernelSpec. */
export const GENERATOR_VERSION = "1";

type Generator = (spec: KernelSpec, gpu: GpuTarget, name: string) => GeneratedKernel;

export const GENERATORS: Record<KernelKind, Generator> = {
  rmsnorm_quantize: generateRowwiseQuantize,
  swiglu_quantize: generateRowwiseQuantize,
  gemm: generateGemm,
  grouped_gemm: generateGemm,
  gate_topk: generateGateTopk,
  moe_permute: generateMoePermute,
  moe_unpermute: generateMoeUnpermute,
  mla_decode_attention: generateMlaDecodeAttention,
  prefill_attention: generatePrefillAttention,
  rope: generateRope,
};

function n(spec: KernelSpec, key: string): number {
  const v = spec.constants[key];
  return typeof v === "number" ? v : NaN;
}

/**
 * Why the CUDA backend cannot generate `spec` (sizes its kernels do not tile), or null. Checked
 * before generation, so a spec the generators cannot handle is a diagnostic, never a crash.
 */
export function unsupportedReason(spec: KernelSpec): string | null {
  const fmt = (k: string): string => String(spec.constants[k]);
  switch (spec.kind) {
    case "gemm":
    case "grouped_gemm": {
      const fp8 = fmt("a").startsWith("e4m3") && fmt("b").startsWith("e4m3");
      const bf16 = fmt("a") === "bf16" && fmt("b") === "bf16";
      if (!fp8 && !bf16) return `operands ${fmt("a")} × ${fmt("b")} (E4M3 × E4M3 or BF16 × BF16)`;
      if ((n(spec, "k") * (fp8 ? 1 : 2)) % 16 !== 0) return `K = ${n(spec, "k")} (rows of a multiple of 16 bytes, for TMA)`;
      const epilogue = spec.constants["epilogue"];
      const swiglu = Array.isArray(epilogue) && epilogue.includes("swiglu");
      if (n(spec, "n") % (swiglu ? 16 : 2) !== 0) return `N = ${n(spec, "n")} (a multiple of ${swiglu ? 16 : 2})`;
      if (fp8 && n(spec, "promote") !== 128) return `promotion every ${n(spec, "promote")} (128)`;
      // The epilogues the generator fuses: residual adds before a BF16/FP32 store, or SwiGLU (then
      // optionally the 1×128 quantisation) on a dense GEMM. Anything else would be dropped or
      // mis-stored by the generated code, so it is refused here rather than miscompiled.
      const steps = Array.isArray(epilogue) ? epilogue.map(String) : [];
      const fused = steps.every((e) => e === "add") || (steps[0] === "swiglu" && (steps.length === 1 || (steps.length === 2 && steps[1] === "quantize")));
      if (!fused) return `epilogue ${steps.join(" → ")} (residual adds, or swiglu then quantize)`;
      if (swiglu && spec.kind === "grouped_gemm") return "a SwiGLU epilogue on a grouped GEMM (dense GEMMs only)";
      if (spec.kind === "grouped_gemm") {
        if (spec.constants["layout"] === "masked") {
          const per = n(spec, "m") / n(spec, "groups");
          if (!Number.isInteger(per) || per % 64 !== 0) return `masked groups of ${per} rows (a multiple of 64)`;
        } else if (n(spec, "m") % 128 !== 0) return `M = ${n(spec, "m")} rows (a multiple of 128)`;
      }
      return null;
    }
    case "rmsnorm_quantize":
    case "swiglu_quantize":
      return n(spec, "dim") % 8 === 0 ? null : `dim = ${n(spec, "dim")} (a multiple of 8)`;
    case "gate_topk":
      return gateUnsupported(spec);
    case "moe_permute":
      return (n(spec, "hidden") * (fmt("format").startsWith("e4m3") ? 1 : 2)) % 16 === 0 && n(spec, "experts") <= 256
        ? null
        : `hidden ${n(spec, "hidden")} / ${n(spec, "experts")} experts (rows of 16-byte multiples / at most 256 experts)`;
    case "moe_unpermute":
      return n(spec, "hidden") % 8 === 0 ? null : `hidden = ${n(spec, "hidden")} (a multiple of 8)`;
    case "rope":
      return n(spec, "rope_dim") % 2 === 0 && n(spec, "offset") % 2 === 0 && n(spec, "head_dim") % 2 === 0 ? null : `rope dims ${n(spec, "rope_dim")}/${n(spec, "head_dim")} (even)`;
    case "mla_decode_attention":
      return n(spec, "dk") % 64 === 0 && n(spec, "dv") % 64 === 0 && n(spec, "dv") <= n(spec, "dk") && n(spec, "dv") <= 512 && n(spec, "kv_len") % 64 === 0 && 32 % n(spec, "q_len") === 0
        ? null
        : `dk ${n(spec, "dk")} / dv ${n(spec, "dv")} / kv_len ${n(spec, "kv_len")} / q_len ${n(spec, "q_len")} (multiples of 64, dv ≤ 512; q_len dividing 32)`;
    case "prefill_attention":
      return prefillAttentionUnsupported(spec);
  }
}

export function kernelName(spec: KernelSpec, gpu: GpuTarget): string {
  const h = createHash("sha256").update(`${GENERATOR_VERSION}\n${gpu.name}/${gpu.sms}\n${spec.key}`).digest("hex");
  return `${spec.kind}_${h.slice(0, 10)}`;
}

export function generateKernel(spec: KernelSpec, gpu: GpuTarget): GeneratedKernel {
  return GENERATORS[spec.kind](spec, gpu, kernelName(spec, gpu));
}
