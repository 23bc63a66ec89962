/**
 * Kernel durations on one Hopper GPU, per kernel kind: FP8 (and BF16) GEMMs as a function of M, N,
 * K; grouped GEMMs (contiguous and masked layouts); memory-bound kernels at a fraction of HBM
 * bandwidth; attention (compute- or memory-bound).
 *
 * Calibration. Every constant below is fitted to, or read from, kernel-level figures only (the
 * source keys are those of shared/reference/FACTS.md: DG = DeepGEMM README, H800 SXM5; FM = FlashMLA
 * README). End-to-end training figures (the technical report's GPU-hours) never enter the model;
 * the simulator quotes them for validation only. tests/simulate.test.ts checks that the model
 * reproduces DG's dense table (18 shapes), its grouped contiguous and masked figures within 15%.
 *
 * GEMM model (a tile-and-wave roofline, in the way DeepGEMM chooses its launch):
 * - the output is cut into BM×BN tiles, BM = 64 when M ≤ 64 else 64 or 128, BN a multiple of 16 up
 *   to 256; the blocks (tiles × groups) run in waves over the SMs the kernel may use (the SMs left
 *   after the communication SMs), and the launch that is fastest under this model is taken (what a
 *   heuristic like DeepGEMM's aims for);
 * - one tile costs 2·BM·BN·K FLOPs at the SM's share of the dense peak times an efficiency that
 *   grows with BN (BN / (BN + GEMM_BN_HALF)), is lower for 64-row tiles (a single warpgroup) and
 *   lower for short K (the pipeline's fill, K / (K + GEMM_K_FILL));
 * - the kernel streams A, B (FP8, 1 B) and writes C (BF16, 2 B) at GEMM_HBM_EFFICIENCY of the HBM
 *   bandwidth; time = max(compute, memory) + GEMM_LAUNCH_S.
 * BF16 GEMMs (the output head, the gate) use the same model at the BF16 peak with 2-byte inputs and
 * GEMM_BF16_RELATIVE_EFFICIENCY (calibrated on the H200 measurement of FACTS.md).
 */

import type { GpuSpec } from "../../compiler/spec.js";

// ── Calibration constants ───────────────────────────────────────────────────────────────────────

/** Tensor-core efficiency of a large (128-row, wide) tile. Fitted to DG's dense FP8 table (M = 4096 row) and grouped contiguous figures (1346, 1214 TFLOP/s). */
export const GEMM_TILE_EFFICIENCY = 0.8;
/** BN at which a tile reaches half of GEMM_TILE_EFFICIENCY's width term. Fitted to DG's dense FP8 table (all 18 shapes). */
export const GEMM_BN_HALF = 48;
/** Efficiency of a 64-row tile relative to a 128-row one. Fitted to DG's dense FP8 table (M = 64 row: 206–336 TFLOP/s). */
export const GEMM_M64_EFFICIENCY = 0.55;
/** K at which the pipeline fill halves the main loop's efficiency. Fitted to DG's dense FP8 table (K = 512 column: 219, 358, 751 TFLOP/s). */
export const GEMM_K_FILL = 384;
/** Fraction of HBM bandwidth a bandwidth-bound GEMM streams at. Fitted to DG's dense FP8 table (M = 64 row, memory-bound). */
export const GEMM_HBM_EFFICIENCY = 0.7;
/** Fixed cost of one GEMM launch (prologue, epilogue, tail), seconds. Fitted to DG's dense FP8 table. */
export const GEMM_LAUNCH_S = 0.5e-6;
/** Masked grouped layout (decode, CUDA-graph friendly) relative to contiguous. Fitted to DG's grouped masked figures (1×1024 … 4×256: 815–1233 TFLOP/s). */
export const GEMM_MASKED_EFFICIENCY = 0.9;
/**
 * BF16 tiles relative to FP8 ones (no CUDA-core promotion of the partial sums every 128 K elements,
 * which the FP8 recipe needs). Fitted to the BF16 8192³ GEMM measured on the test pool's H200 (FACTS.md:
 * 770–790 TFLOP/s; the model without it gives 617 at the midpoint 780).
 */
export const GEMM_BF16_RELATIVE_EFFICIENCY = 780 / 617;
/** Fraction of HBM bandwidth a memory-bound kernel reaches: FM's 3000 GB/s of the H800's 3.35 TB/s. */
export const MEMORY_BOUND_EFFICIENCY = 3000 / 3350;
/** Attention core throughput as a fraction of the dense BF16 peak: FM's compute-bound 580–660 TFLOP/s (midpoint 620) of 989. */
export const ATTENTION_BF16_EFFICIENCY = 620 / 989;
/** Fixed cost of one memory-bound kernel launch, seconds (the same launch floor as GEMM_LAUNCH_S). */
export const MEMORY_KERNEL_LAUNCH_S = GEMM_LAUNCH_S;

/** The tile shapes the model chooses among (DeepGEMM's block sizes). */
const BLOCK_NS: readonly number[] = Array.from({ length: 16 }, (_, i) => 16 * (i + 1));

export type GemmDtype = "fp8" | "bf16";
export type GroupedLayout = "contiguous" | "masked";

export interface GemmShape {
  m: number;
  n: number;
  k: number;
  dtype: GemmDtype;
  /** Groups (experts) of a grouped GEMM, each m × n × k; 1 for a plain GEMM. */
  groups?: number;
  layout?: GroupedLayout;
}

/** A chosen launch and its modelled time. */
export interface GemmEstimate {
  seconds: number;
  blockM: number;
  blockN: number;
  waves: number;
  bound: "compute" | "memory";
  flops: number;
}

export class KernelModel {
  readonly gpu: GpuSpec;
  /** SMs the compute kernels may use (the GPU's SMs less those running communication). */
  readonly computeSms: number;

  constructor(gpu: GpuSpec, commSms = 0) {
    this.gpu = gpu;
    this.computeSms = Math.max(1, gpu.sms - commSms);
  }

  /** Modelled time of a (grouped) GEMM; see the module comment. */
  gemm(shape: GemmShape): GemmEstimate {
    const { m, n, k } = shape;
    const groups = shape.groups ?? 1;
    const flops = 2 * groups * m * n * k;
    if (m <= 0 || n <= 0 || k <= 0 || groups <= 0) return { seconds: 0, blockM: 0, blockN: 0, waves: 0, bound: "compute", flops: 0 };
    const peak = shape.dtype === "fp8" ? this.gpu.fp8FlopsPerS : this.gpu.bf16FlopsPerS;
    const inBytes = shape.dtype === "fp8" ? 1 : 2;
    const perSm = peak / this.gpu.sms;
    const masked = shape.layout === "masked" ? GEMM_MASKED_EFFICIENCY : 1;
    const kEff = k / (k + GEMM_K_FILL);
    const dtypeEff = shape.dtype === "bf16" ? GEMM_BF16_RELATIVE_EFFICIENCY : 1;
    const bytes = groups * (m * k * inBytes + n * k * inBytes + 2 * m * n);
    const memory = bytes / (this.gpu.hbmBytesPerS * GEMM_HBM_EFFICIENCY);
    let best: GemmEstimate | null = null;
    for (const bm of m <= 64 ? [64] : [64, 128]) {
      for (const bn of BLOCK_NS) {
        const blocks = groups * Math.ceil(m / bm) * Math.ceil(n / bn);
        const waves = Math.ceil(blocks / this.computeSms);
        const eff = Math.min(1, GEMM_TILE_EFFICIENCY * (bn / (bn + GEMM_BN_HALF)) * (bm === 64 ? GEMM_M64_EFFICIENCY : 1) * masked * kEff * dtypeEff);
        const compute = (waves * 2 * bm * bn * k) / (perSm * eff);
        const seconds = Math.max(compute, memory) + GEMM_LAUNCH_S;
        if (best === null || seconds < best.seconds) best = { seconds, blockM: bm, blockN: bn, waves, bound: compute >= memory ? "compute" : "memory", flops };
      }
    }
    return best!;
  }

  /** Seconds of a GEMM (shorthand). */
  gemmSeconds(m: number, n: number, k: number, dtype: GemmDtype = "fp8"): number {
    return this.gemm({ m, n, k, dtype }).seconds;
  }

  /** A memory-bound kernel moving `bytes` (read + written). */
  memoryBound(bytes: number): number {
    if (bytes <= 0) return 0;
    return bytes / (this.gpu.hbmBytesPerS * MEMORY_BOUND_EFFICIENCY) + MEMORY_KERNEL_LAUNCH_S;
  }

  /** The attention core: `flops` at the calibrated BF16 rate (scaled to the compute SMs), or `bytes` of KV read, whichever is slower. */
  attention(flops: number, bytes: number): number {
    if (flops <= 0 && bytes <= 0) return 0;
    const rate = this.gpu.bf16FlopsPerS * ATTENTION_BF16_EFFICIENCY * (this.computeSms / this.gpu.sms);
    return Math.max(flops / rate, bytes / (this.gpu.hbmBytesPerS * MEMORY_BOUND_EFFICIENCY)) + MEMORY_KERNEL_LAUNCH_S;
  }
}

/** What the model's calibration rests on, for the outputs. */
export const KERNEL_MODEL_SOURCES =
  "kernel model calibrated only on kernel-level figures (shared/reference/FACTS.md): DeepGEMM's dense FP8 table and grouped " +
  "contiguous/masked figures (tile-and-wave roofline), the H200 BF16 GEMM measurement (BF16 tiles), FlashMLA's 3000 GB/s and " +
  "580–660 TFLOP/s (memory-bound kernels, attention)";
