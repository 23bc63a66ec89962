/**
 * Storage sizes under a Spec's precision recipe: bytes of a weight matrix (FP8 with its 128×128
 * block scales, or BF16), of one token's cached activation at a cache point (FP8 with its 1×128 tile
 * scales, E5M6, BF16), and of the optimizer's copies.
 *
 * Conventions: E4M3 and E5M2 take 1 byte per element, E5M6 12 bits (1.5 bytes, packed in pairs), BF16
 * 2, FP32 4. Every scale is stored as FP32 (4 bytes), power-of-two ones too. In `mode = bf16` every
 * GEMM weight and every cached GEMM input is BF16 without scales (the FP8 fields are inert).
 */

import type { CacheFormat, CachePoint, HighPrecisionDtype, HighPrecisionPart, PrecisionSpec, RecomputePart } from "../spec.js";

export const FORMAT_BYTES: Readonly<Record<CacheFormat, number>> = { e4m3: 1, e5m2: 1, e5m6: 1.5, bf16: 2, fp32: 4 };
export const DTYPE_BYTES: Readonly<Record<HighPrecisionDtype, number>> = { bf16: 2, fp32: 4 };
export const SCALE_BYTES = 4;

function isScaled(format: CacheFormat): boolean {
  return format === "e4m3" || format === "e5m2" || format === "e5m6";
}

export class RecipeBytes {
  readonly fp8: boolean;
  constructor(readonly precision: PrecisionSpec) {
    this.fp8 = precision.mode === "fp8";
  }

  /** The dtype the recipe keeps `part` in, or null when it does not single it out. */
  highPrecision(part: HighPrecisionPart): HighPrecisionDtype | null {
    return this.precision.highPrecision.find((h) => h.part === part)?.dtype ?? null;
  }

  recomputes(part: RecomputePart): boolean {
    return this.precision.recompute.includes(part);
  }

  /** A GEMM weight [rows × cols]: FP8 with one FP32 scale per weight block, or BF16. */
  gemmWeight(rows: number, cols: number): number {
    if (!this.fp8) return 2 * rows * cols;
    const [br, bc] = this.precision.weightBlock;
    return rows * cols + SCALE_BYTES * Math.ceil(rows / br) * Math.ceil(cols / bc);
  }

  /** A weight of a part the recipe may keep in high precision; otherwise a GEMM weight (`gemm`) or BF16. */
  partWeight(part: HighPrecisionPart, rows: number, cols: number, gemm: boolean): number {
    const hp = this.highPrecision(part);
    if (hp !== null) return DTYPE_BYTES[hp] * rows * cols;
    return gemm ? this.gemmWeight(rows, cols) : 2 * rows * cols;
  }

  /** The cache format at `point` (the default for a GEMM input with no exception). */
  cacheFormat(point: CachePoint | "default"): CacheFormat {
    if (!this.fp8) return "bf16";
    if (point === "default") return this.precision.activationCache.default;
    return this.precision.activationCache.exceptions.find((e) => e.point === point)?.format ?? this.precision.activationCache.default;
  }

  /** Bytes of one row of `elements` cached at `point`, with its tile scales when scaled. */
  cachedRow(point: CachePoint | "default", elements: number): number {
    const format = this.cacheFormat(point);
    const tile = this.precision.activationTile[1];
    const payload = Math.ceil(FORMAT_BYTES[format] * elements);
    return isScaled(format) ? payload + SCALE_BYTES * Math.ceil(elements / tile) : payload;
  }

  /** Whether the SwiGLU output is recomputed in backward from its cached input. */
  swigluOutputRecomputed(): boolean {
    if (this.recomputes("swiglu")) return true;
    return this.precision.activationCache.exceptions.some((e) => e.point === "swiglu_input" && e.recomputeOutput);
  }

  /** Bytes per element of the master weights, the gradients and the AdamW moments. */
  get masterBytes(): number {
    return DTYPE_BYTES[this.precision.masterWeights];
  }
  get gradientBytes(): number {
    return DTYPE_BYTES[this.precision.gradients];
  }
  get momentBytes(): number {
    return DTYPE_BYTES[this.precision.optimizerStates];
  }

  /** One dispatched token copy: FP8 payload and scales (moe_dispatch format), or BF16. */
  dispatchCopy(hidden: number): number {
    return this.cachedRow("moe_dispatch", hidden);
  }

  /** One combined token copy (moe_combine format; BF16 in V3). */
  combineCopy(hidden: number): number {
    return this.cachedRow("moe_combine", hidden);
  }
}
