/**
 * Reading one GPU's weights from a shard bundle (shard.ts): `readRankShard(bundleDir, gpu)` returns the
 * GPU's coordinates and every tensor of its shard file with the slice it is (rank-slices.ts) and its
 * values in FP32 — FP8 slices dequantised with their block scales, which come along too for kernels
 * that take FP8. Problems are coded diagnostics: a directory without a readable shard index
 * (DSV9130), a GPU the bundle has no shard for (DSV9131), and a shard file's own (safetensors.ts).
 *
 * `assembleFromShards` puts the slices of a set of GPUs back into whole checkpoint tensors, marking
 * which elements were covered: with the GPUs of one data-parallel replica it must give every element
 * of the model (a test checks that on every schedule of the tiny spec).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { makeDiagnostic } from "../../dsl/diagnostic.js";
import { describeSystemError } from "../../dsl/system-error.js";
import { decodeToFloat32, DTYPE_BYTES } from "./dtypes.js";
import { openSafetensors, TensorReadError, type Checked } from "./safetensors.js";
import { dequantiseStored, SHARD_FORMAT, SHARD_INDEX, type ShardIndex, type ShardTensor } from "./shard.js";

export interface RankShardTensor {
  slice: ShardTensor;
  /** FP32 values of the slice, row-major in its stored shape. */
  values: Float32Array;
  /** The stored FP8 codes and block scales, when the slice is F8_E4M3. */
  fp8: { codes: Uint8Array; scaleInv: Float32Array; block: [number, number] } | null;
}

export interface RankShard {
  gpu: number;
  file: string;
  coordinates: { pp: number; dp: number; tp: number; epGroup: number; ep: number };
  tensors: RankShardTensor[];
}

/** The bundle's shard index. */
export function readShardIndex(bundleDir: string): Checked<ShardIndex> {
  const path = join(bundleDir, ...SHARD_INDEX.split("/"));
  const bad = (reason: string): Checked<ShardIndex> => ({ ok: false, diagnostics: [makeDiagnostic("DSV9130", null, { path: bundleDir, reason }, "write one with dsv3 shard SPEC --schedule NAME --weights PATH -o DIR")] });
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    return bad(e instanceof SyntaxError ? `${SHARD_INDEX} is not JSON` : `cannot read ${SHARD_INDEX} (${describeSystemError(e)})`);
  }
  const idx = json as Partial<ShardIndex> | null;
  if (idx === null || typeof idx !== "object" || idx.format !== SHARD_FORMAT || !Array.isArray(idx.gpus) || !Array.isArray(idx.files)) return bad(`${SHARD_INDEX} is not a ${SHARD_FORMAT} index`);
  return { ok: true, value: idx as ShardIndex };
}

/** Every tensor of GPU `gpu`'s shard (see the file comment). */
export function readRankShard(bundleDir: string, gpu: number, index?: ShardIndex): Checked<RankShard> {
  let idx = index;
  if (idx === undefined) {
    const read = readShardIndex(bundleDir);
    if (!read.ok) return read;
    idx = read.value;
  }
  const g = idx.gpus.find((x) => x.gpu === gpu);
  const file = g === undefined ? undefined : idx.files.find((f) => f.file === g.file);
  if (g === undefined || file === undefined) return { ok: false, diagnostics: [makeDiagnostic("DSV9131", null, { path: bundleDir, gpu, last: idx.gpus.length - 1 })] };
  const opened = openSafetensors(join(bundleDir, ...file.file.split("/")));
  if (!opened.ok) return opened;
  const reader = opened.value;
  try {
    const tensors: RankShardTensor[] = [];
    for (const t of file.tensors) {
      const entry = reader.entry(t.key);
      if (entry === undefined || entry.dtype !== t.dtype) {
        return { ok: false, diagnostics: [makeDiagnostic("DSV9130", null, { path: bundleDir, reason: `${file.file} does not hold '${t.key}' as ${t.dtype}, as ${SHARD_INDEX} says` })] };
      }
      const bytes = reader.readBytes(t.key);
      if (t.dtype === "F8_E4M3" && t.scale !== null) {
        const se = reader.entry(t.scale.key);
        if (se === undefined) return { ok: false, diagnostics: [makeDiagnostic("DSV9130", null, { path: bundleDir, reason: `${file.file} lacks the block scales '${t.scale.key}'` })] };
        const scaleBytes = reader.readBytes(t.scale.key);
        const scaleInv = decodeToFloat32("F32", scaleBytes, new Float32Array(scaleBytes.byteLength / 4));
        tensors.push({ slice: t, values: dequantiseStored(bytes, scaleInv, t), fp8: { codes: bytes, scaleInv, block: t.scale.block } });
      } else {
        tensors.push({ slice: t, values: decodeToFloat32(t.dtype, bytes, new Float32Array(bytes.byteLength / DTYPE_BYTES[t.dtype])), fp8: null });
      }
    }
    return { ok: true, value: { gpu, file: file.file, coordinates: { pp: g.pp, dp: g.dp, tp: g.tp, epGroup: g.epGroup, ep: g.ep }, tensors } };
  } catch (e) {
    if (e instanceof TensorReadError) return { ok: false, diagnostics: [e.diagnostic] };
    throw e;
  } finally {
    reader.close();
  }
}

export interface AssembledTensor {
  shape: number[];
  values: Float32Array;
  /** How many slices wrote each element (0: not covered). */
  covered: Uint8Array;
}

/**
 * Whole checkpoint tensors from the slices of `shards`, plus each element's coverage count. A slice
 * that disagrees with one already placed on a shared element throws (replicas must be identical).
 */
export function assembleFromShards(shards: readonly RankShard[]): Map<string, AssembledTensor> {
  const out = new Map<string, AssembledTensor>();
  for (const shard of shards) {
    for (const t of shard.tensors) {
      const s = t.slice;
      let a = out.get(s.tensor);
      if (a === undefined) {
        const n = s.fullShape.reduce((x, y) => x * y, 1);
        a = { shape: s.fullShape, values: new Float32Array(n), covered: new Uint8Array(n) };
        out.set(s.tensor, a);
      }
      const fullCols = s.cols === null ? 1 : s.fullShape[1]!;
      const [c0, c1] = s.cols ?? [0, 1];
      const w = c1 - c0;
      for (let r = s.rows[0]; r < s.rows[1]; r++) {
        for (let c = c0; c < c1; c++) {
          const at = r * fullCols + c;
          const v = t.values[(r - s.rows[0]) * w + (c - c0)]!;
          if (a.covered[at]! > 0 && !Object.is(a.values[at], v)) {
            throw new RangeError(`assembleFromShards: GPU ${shard.gpu} holds ${v} at ${s.tensor}[${r}, ${c}], another GPU ${a.values[at]}`);
          }
          a.values[at] = v;
          a.covered[at] = Math.min(255, a.covered[at]! + 1);
        }
      }
    }
  }
  return out;
}
