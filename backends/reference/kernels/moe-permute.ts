/**
 * moe_permute: a counting sort of the tokens·topk (token, expert) pairs by expert — one pass counts
 * each expert's rows and pads them to `align`, a prefix sum gives each segment's first row, a
 * second pass (tokens ascending, k ascending) writes each row's codes and its 1×128-tile scales to
 * its slot. Padding rows are zero codes with the scale of an all-zero tile. Pure data movement in
 * the interpreter's order (unfused.ts): bitwise.
 *
 * Masked layout (decode, `capacity` constant): expert e's rows start at e·capacity and counts[e] is
 * its number of valid rows; the rest of each segment is left unwritten (zeros here).
 */
import type { KernelSpec } from "../../../compiler/kernel-spec.js";
import { tileScale } from "../numerics/index.js";
import { getInt, minifloatOf, num, parseFormat, scaleKey, type KernelValues } from "./tensors.js";

export function runMoePermute(spec: KernelSpec, inputs: KernelValues): KernelValues {
  const tokens = num(spec, "tokens");
  const hidden = num(spec, "hidden");
  const topk = num(spec, "topk");
  const experts = num(spec, "experts");
  const align = num(spec, "align");
  const rows = num(spec, "rows");
  const capacity = spec.constants["layout"] === "masked" ? num(spec, "capacity") : 0;
  const format = parseFormat(spec.constants["format"]);
  const [xT, idxT] = [spec.inputs[0]!, spec.inputs[1]!];
  const [rowsId, countsId, slotsId] = spec.main[0]!.outputs as [string, string, string];
  const idx = getInt(inputs, idxT);
  const src = inputs.get(xT.id)!;
  const quantised = format.quant !== null;
  const tilesPerRow = quantised ? Math.ceil(hidden / format.quant!.tile[1]) : 0;
  const srcScales = quantised ? (inputs.get(scaleKey(xT.id)) as Float32Array) : null;
  const counts = new Int32Array(experts);
  for (let i = 0; i < tokens * topk; i++) counts[idx[i]!]!++;
  const next = new Int32Array(experts);
  let total = 0;
  for (let e = 0; e < experts; e++) {
    if (capacity > 0) {
      // Masked: fixed segments; counts stay the valid rows.
      if (counts[e]! > capacity) throw new Error(`${spec.id}: expert ${e} receives ${counts[e]} rows, over its capacity ${capacity}`);
      next[e] = e * capacity;
      total = (e + 1) * capacity;
      continue;
    }
    next[e] = total;
    counts[e] = Math.ceil(counts[e]! / align) * align;
    total += counts[e]!;
  }
  if (total > rows) throw new Error(`${spec.id}: ${total} padded rows exceed ${rows}`);
  const dst = src instanceof Float32Array ? new Float32Array(rows * hidden) : src instanceof Uint16Array ? new Uint16Array(rows * hidden) : new Uint8Array(rows * hidden);
  const zeroScale = quantised && capacity === 0 ? tileScale(0, minifloatOf(format.dtype), format.quant!.pow2) : 0;
  const dstScales = new Float32Array(rows * tilesPerRow).fill(zeroScale);
  const slots = new Int32Array(tokens * topk);
  for (let t = 0; t < tokens; t++) {
    for (let k = 0; k < topk; k++) {
      const row = next[idx[t * topk + k]!]!++;
      slots[t * topk + k] = row;
      dst.set(src.subarray(t * hidden, (t + 1) * hidden) as never, row * hidden);
      if (srcScales !== null) dstScales.set(srcScales.subarray(t * tilesPerRow, (t + 1) * tilesPerRow), row * tilesPerRow);
    }
  }
  const out: KernelValues = new Map();
  out.set(rowsId, dst);
  if (quantised) out.set(scaleKey(rowsId), dstScales);
  out.set(countsId, counts);
  out.set(slotsId, slots);
  return out;
}
