/**
 * Comparing a GPU kernel's outputs with the reference's. Real tensors (and quantised ones, after
 * dequantising codes × scales) by the normalised difference DeepGEMM's tests use,
 *   diff(x, y) = 1 − 2·Σxy / Σ(x² + y²)      (0 for identical tensors, 1 for uncorrelated ones),
 * against a tolerance per kernel kind; integer tensors by the fraction of mismatching elements
 * (router indices may differ on near-ties between FP32 and FP64 logits; counts and slots may not).
 */
import type { KernelKind, KernelSpec, KernelTensor } from "../../compiler/kernel-spec.js";
import { decodeMinifloat, E4M3 } from "../../backends/reference/numerics/index.js";
import { elements, scaleKey, type KernelArray, type KernelValues } from "../../backends/reference/kernels/index.js";

export function diffMetric(x: ArrayLike<number>, y: ArrayLike<number>): number {
  if (x.length !== y.length) throw new RangeError(`diffMetric: ${x.length} vs ${y.length} elements`);
  let xy = 0;
  let sq = 0;
  for (let i = 0; i < x.length; i++) {
    const a = x[i]!;
    const b = y[i]!;
    xy += a * b;
    sq += a * a + b * b;
  }
  if (sq === 0) return 0;
  return 1 - (2 * xy) / sq;
}

/** The largest diff a real output of each kernel kind may have (GEMMs: DeepGEMM's 1e-3). */
export const DIFF_TOLERANCE: Record<KernelKind, number> = {
  gemm: 1e-3,
  grouped_gemm: 1e-3,
  rmsnorm_quantize: 1e-4,
  swiglu_quantize: 1e-4,
  gate_topk: 1e-4,
  moe_permute: 0,
  moe_unpermute: 1e-5,
  mla_decode_attention: 1e-4,
  prefill_attention: 1e-4,
  rope: 1e-5,
};

/** The largest fraction of mismatching integer elements: router indices 1%, everything else none. */
export function intTolerance(spec: KernelSpec, t: KernelTensor): number {
  if (spec.kind !== "gate_topk") return 0;
  const producer = spec.replaces.find((op) => op.outputs.includes(t.id));
  return producer?.kind === "group_topk" ? 0.01 : 0;
}

/** A quantised tensor's values: codes × the scale of each code's tile (E4M3, 1×c or r×c tiles). */
export function dequantise(t: KernelTensor, codes: Uint8Array, scales: Float32Array): Float64Array {
  if (t.quant === null || t.dtype !== "e4m3") throw new Error(`dequantise: %${t.id} is not E4M3`);
  const cols = t.shape[t.shape.length - 1]!;
  const rows = elements(t.shape) / cols;
  const [tr, tc] = t.quant.tile;
  const tileCols = Math.ceil(cols / tc);
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      out[r * cols + c] = decodeMinifloat(E4M3, codes[r * cols + c]!) * scales[Math.floor(r / tr) * tileCols + Math.floor(c / tc)]!;
    }
  }
  return out;
}

export interface OutputCheck {
  tensor: string;
  metric: "diff" | "mismatch";
  value: number;
  tolerance: number;
  ok: boolean;
}

function asNumbers(a: KernelArray): ArrayLike<number> {
  return a;
}

/** Every output of `spec`: GPU values `got` against the reference's `want`. */
export function compareOutputs(spec: KernelSpec, got: KernelValues, want: KernelValues): OutputCheck[] {
  const checks: OutputCheck[] = [];
  for (const t of spec.outputs) {
    const g = got.get(t.id);
    const w = want.get(t.id);
    if (g === undefined || w === undefined) {
      checks.push({ tensor: t.id, metric: "diff", value: 1, tolerance: 0, ok: false });
      continue;
    }
    if (t.dtype === "i32") {
      let bad = 0;
      for (let i = 0; i < w.length; i++) if (g[i] !== w[i]) bad++;
      const value = w.length === 0 ? 0 : bad / w.length;
      const tolerance = intTolerance(spec, t);
      checks.push({ tensor: t.id, metric: "mismatch", value, tolerance, ok: value <= tolerance });
      continue;
    }
    let x: ArrayLike<number>;
    let y: ArrayLike<number>;
    if (t.quant !== null) {
      x = dequantise(t, g as Uint8Array, got.get(scaleKey(t.id)) as Float32Array);
      y = dequantise(t, w as Uint8Array, want.get(scaleKey(t.id)) as Float32Array);
    } else {
      x = asNumbers(g);
      y = asNumbers(w);
    }
    const value = diffMetric(x, y);
    const tolerance = spec.kind === "gemm" || spec.kind === "grouped_gemm" ? DIFF_TOLERANCE[spec.kind] : t.quant !== null ? Math.max(DIFF_TOLERANCE[spec.kind], 1e-4) : DIFF_TOLERANCE[spec.kind];
    checks.push({ tensor: t.id, metric: "diff", value, tolerance, ok: Number.isFinite(value) && value <= tolerance });
  }
  return checks;
}
