/**
 * grouped_gemm: the expert-contiguous GEMM of the MoE. Expert e owns the `counts[e]` rows after the
 * previous experts' (each segment padded by moe_permute, so with align 128 a 128-row M tile never
 * straddles two experts); the kernel walks M tiles of at most 128 rows, each tile times its expert's
 * weight through fp8Gemm (promotion every `promote`), rows past Σ counts are 0. Rows are
 * independent in fp8Gemm, so tiling is bitwise the unfused grouped_linear.
 *
 * Masked layout (decode, `layout: masked`, DeepGEMM's masked grouped GEMM): group e owns the fixed
 * rows [e·m/G, (e+1)·m/G) of which the first counts[e] are valid; only those are computed, every
 * other output row is 0 (never stored by the CUDA kernel).
 */
import type { KernelSpec } from "../../../compiler/kernel-spec.js";
import { fp8Gemm, type QuantizedMatrix } from "../numerics/index.js";
import { getInt, getQuantized, num, roundTo, type KernelValues } from "./tensors.js";

export const GROUPED_GEMM_TILE_M = 128;

export function runGroupedGemm(spec: KernelSpec, inputs: KernelValues): KernelValues {
  const m = num(spec, "m");
  const n = num(spec, "n");
  const k = num(spec, "k");
  const groups = num(spec, "groups");
  const promote = num(spec, "promote");
  const op = spec.main[0]!;
  const xT = spec.tensors[op.inputs[0]!]!;
  const wT = spec.tensors[op.inputs[1]!]!;
  const counts = getInt(inputs, spec.tensors[op.inputs[2]!]!);
  if (counts.length !== groups) throw new Error(`${spec.id}: ${counts.length} counts for ${groups} groups`);
  const qx = getQuantized(inputs, xT);
  const tilesPerRow = qx.scaleShape[1];
  const y = new Float32Array(m * n);
  const masked = spec.constants["layout"] === "masked";
  const capacity = m / groups;
  let start = 0;
  for (let e = 0; e < groups; e++) {
    if (masked) start = e * capacity;
    const end = start + counts[e]!;
    if (end > (masked ? start + capacity : m)) throw new Error(`${spec.id}: expert segments exceed ${masked ? `the ${capacity} rows of group ${e}` : `${m} rows`}`);
    const we = getQuantized(inputs, wT, e);
    for (let r0 = start; r0 < end; r0 += GROUPED_GEMM_TILE_M) {
      const r1 = Math.min(end, r0 + GROUPED_GEMM_TILE_M);
      const tile: QuantizedMatrix = {
        ...qx,
        shape: [r1 - r0, k],
        scaleShape: [r1 - r0, tilesPerRow],
        data: qx.data.subarray(r0 * k, r1 * k),
        scales: qx.scales.subarray(r0 * tilesPerRow, r1 * tilesPerRow),
      };
      y.set(fp8Gemm(tile, we, { promotionInterval: promote }).f32, r0 * n);
    }
    start = end;
  }
  return new Map([[spec.outputs[0]!.id, roundTo(spec.outputs[0]!.dtype, y)]]);
}
