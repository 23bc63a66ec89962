/**
 * `dsv3 shard`: a checkpoint cut into per-GPU shards following a schedule's Plan, written as a bundle
 * (manifest with the SHA-256 of every file, spec.json, plan/, and weights/):
 *
 *   weights/shard-index.json         which file each GPU loads and exactly which slice of which
 *                                    checkpoint tensor each entry of the file is (rank-slices.ts)
 *   weights/shard-NNNNN.safetensors  one file per distinct slice set: GPUs that hold the same slices
 *                                    (data-parallel replicas) share a file; its `__metadata__` repeats
 *                                    its part of the index, so a file describes itself
 *
 * Dtypes ("recipe", the default): where the Plan's kernels take FP8 (precision mode fp8: every
 * projection matrix, experts included) a slice is stored as F8_E4M3 with `<key>_scale_inv` per block
 * of the recipe's weight block, re-quantised with the numerics' quantiser (power-of-two scales when the
 * recipe says so) — unless the source is already FP8 with the same block grid, the slice is block-
 * aligned and the scales already meet the recipe, when codes and scales are copied unchanged. Other
 * tensors take the dtype the recipe keeps their part in (embedding, output_head, moe_gate, norm; BF16
 * when it does not say), the gate bias F32. "none" keeps the checkpoint's dtype and bytes exactly (an
 * FP8 slice that cuts through blocks is dequantised to F32), for checks that must be bit-exact.
 *
 * Streaming: the checkpoint is validated (headers only) before anything is written; then each shard
 * file is written tensor by tensor, each slice read from the checkpoint when it is written (row slices
 * read only their rows), so the peak memory is about one tensor (its FP32 values, when it is
 * re-quantised), never the checkpoint. The bundle is assembled in a temporary sibling directory and
 * renamed into place, as compile's bundles are; a failed shard leaves nothing behind.
 *
 * Reading back: rank-shard.ts (`readRankShard(bundleDir, gpu)`: a GPU's slices with their values) and
 * shard-weight-source.ts (a GPU's shard as the virtual-rank executor's RankWeights).
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { buildPlan, planBundleFiles, type Plan } from "../../compiler/plan/index.js";
import type { HighPrecisionPart, Spec } from "../../compiler/spec.js";
import { makeDiagnostic, type Diagnostic } from "../../dsl/diagnostic.js";
import { BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, COMPILER_NAME, MANIFEST_FILE, comparePaths, serializeManifest, validateManifest, type BundleManifest, type ManifestFile } from "../manifest.js";
import { DTYPE_BYTES, decodeToFloat32, encodeFromNumbers, type SafetensorsDtype } from "./dtypes.js";
import { dequantiseBlocks, quantiseBlocks, scaleGridShape, type BlockShape, type QuantisedBlocks } from "./fp8-blocks.js";
import { hfTensorSpecs, type HfTensorSpec } from "./hf-tensor-names.js";
import { readTensorValues } from "./load-weights.js";
import { rankSlices, sliceClass, type TensorSlice } from "./rank-slices.js";
import { openCheckpoint, type Checkpoint } from "./safetensors-index.js";
import { TensorReadError, writeSafetensorsStreaming, type TensorLayout } from "./safetensors.js";
import { validateCheckpoint, type CheckedTensor } from "./validate.js";

export const SHARD_INDEX = "weights/shard-index.json";
export const SHARD_FORMAT = "dsv3-shards";
export const SHARD_FORMAT_VERSION = 1;

export type RequantiseMode = "recipe" | "none";

/** One tensor of a shard file: a slice of a checkpoint tensor, as stored. */
export interface ShardTensor extends TensorSlice {
  dtype: SafetensorsDtype;
  /** Stored shape: the slice's rows (and columns). */
  shape: number[];
  /** The key of its block scales when F8_E4M3, with the block. */
  scale: { key: string; block: [number, number] } | null;
}

export interface ShardFileEntry {
  /** Bundle path. */
  file: string;
  gpus: number[];
  tensors: ShardTensor[];
}

export interface ShardIndex {
  format: typeof SHARD_FORMAT;
  version: typeof SHARD_FORMAT_VERSION;
  model: string;
  schedule: string;
  requantise: RequantiseMode;
  files: ShardFileEntry[];
  /** Every GPU of the plan: its file and coordinates. */
  gpus: { gpu: number; file: string; pp: number; dp: number; tp: number; epGroup: number; ep: number }[];
}

export interface ShardProgress {
  filesDone: number;
  files: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface ShardOptions {
  compilerVersion: string;
  requantise?: RequantiseMode;
  onProgress?: (p: ShardProgress) => void;
}

export interface ShardResult {
  /** Null when there is an error. */
  written: { gpus: number; shardFiles: number; tensors: number; bytes: number; sourceBytes: number } | null;
  diagnostics: Diagnostic[];
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function sliceShape(s: TensorSlice): number[] {
  return s.cols === null ? [s.rows[1] - s.rows[0]] : [s.rows[1] - s.rows[0], s.cols[1] - s.cols[0]];
}

const PART_OF: Partial<Record<HfTensorSpec["role"], HighPrecisionPart>> = { embedding: "embedding", head: "output_head", norm: "norm", gate: "moe_gate" };

function recipeDtype(spec: Spec, t: HfTensorSpec): SafetensorsDtype {
  if (t.role === "gate_bias") return "F32";
  if (t.role === "projection") return "BF16";
  const part = PART_OF[t.role];
  const hp = part === undefined ? undefined : spec.precision.highPrecision.find((h) => h.part === part)?.dtype;
  return hp === "fp32" ? "F32" : "BF16";
}

function isAligned(s: TensorSlice, block: BlockShape): boolean {
  const edge = (r: [number, number], n: number, b: number): boolean => r[0] % b === 0 && (r[1] % b === 0 || r[1] === n);
  return s.cols !== null && edge(s.rows, s.fullShape[0]!, block.rows) && edge(s.cols, s.fullShape[1]!, block.cols);
}

/** How each slice is stored (see the file comment). */
function storage(spec: Spec, t: HfTensorSpec, source: CheckedTensor, s: TensorSlice, mode: RequantiseMode): ShardTensor {
  const shape = sliceShape(s);
  const base = { ...s, shape };
  if (mode === "none") {
    if (source.entry.dtype !== "F8_E4M3") return { ...base, dtype: source.entry.dtype, scale: null };
    if (isAligned(s, { rows: 128, cols: 128 })) return { ...base, dtype: "F8_E4M3", scale: { key: `${s.key}_scale_inv`, block: [128, 128] } };
    return { ...base, dtype: "F32", scale: null };
  }
  if (t.role === "projection" && spec.precision.mode === "fp8") {
    const [br, bc] = spec.precision.weightBlock;
    return { ...base, dtype: "F8_E4M3", scale: { key: `${s.key}_scale_inv`, block: [br, bc] } };
  }
  return { ...base, dtype: recipeDtype(spec, t), scale: null };
}

/** Rows [r0, r1) × cols [c0, c1) of a row-major matrix with `cols` columns of `width`-byte elements. */
function gatherBytes(bytes: Uint8Array, fullCols: number, width: number, rows: number, c0: number, c1: number): Uint8Array {
  if (c0 === 0 && c1 === fullCols) return bytes;
  const out = new Uint8Array(rows * (c1 - c0) * width);
  const rowBytes = fullCols * width;
  for (let r = 0; r < rows; r++) out.set(bytes.subarray(r * rowBytes + c0 * width, r * rowBytes + c1 * width), r * (c1 - c0) * width);
  return out;
}

function gatherFloats(v: Float32Array, fullCols: number, r0: number, r1: number, c0: number, c1: number): Float32Array {
  const out = new Float32Array((r1 - r0) * (c1 - c0));
  for (let r = r0; r < r1; r++) out.set(v.subarray(r * fullCols + c0, r * fullCols + c1), (r - r0) * (c1 - c0));
  return out;
}

/** Reads the slice's source bytes: only its rows (and, after reading, only its columns). */
function sliceSourceBytes(ckpt: Checkpoint, src: CheckedTensor, s: TensorSlice): Uint8Array {
  const width = DTYPE_BYTES[src.entry.dtype];
  const fullCols = s.cols === null ? 1 : s.fullShape[1]!;
  const rowBytes = fullCols * width;
  const bytes = ckpt.reader(src.entry.name)!.readRange(src.entry.name, s.rows[0] * rowBytes, s.rows[1] * rowBytes);
  return s.cols === null ? bytes : gatherBytes(bytes, fullCols, width, s.rows[1] - s.rows[0], s.cols[0], s.cols[1]);
}

/** The slice's values in FP32. */
function sliceValues(ckpt: Checkpoint, src: CheckedTensor, s: TensorSlice): Float32Array {
  if (src.entry.dtype === "F8_E4M3") {
    const full = readTensorValues(ckpt, src.entry, src.scale);
    return s.cols === null ? full.slice(s.rows[0], s.rows[1]) : gatherFloats(full, s.fullShape[1]!, s.rows[0], s.rows[1], s.cols[0], s.cols[1]);
  }
  const bytes = sliceSourceBytes(ckpt, src, s);
  return decodeToFloat32(src.entry.dtype, bytes, new Float32Array(bytes.byteLength / DTYPE_BYTES[src.entry.dtype]));
}

function isPow2(x: number): boolean {
  if (!(x > 0) || !Number.isFinite(x)) return false;
  const e = Math.floor(Math.log2(x));
  return 2 ** e === x;
}

/** Produces each stored tensor's bytes on demand, one source tensor at a time. */
class SliceProducer {
  private pending: { key: string; q: QuantisedBlocks } | null = null;
  private pendingScale: { key: string; bytes: Uint8Array } | null = null;
  constructor(
    private readonly ckpt: Checkpoint,
    private readonly sources: ReadonlyMap<string, CheckedTensor>,
    private readonly pow2Scales: boolean,
    private readonly requantise: RequantiseMode,
  ) {}

  /** Bytes of `t` (a slice), or of the scale tensor `scaleOf`'s block scales. */
  bytes(t: ShardTensor | null, scaleOf: ShardTensor | null): Uint8Array {
    if (scaleOf !== null) {
      if (this.pendingScale?.key === scaleOf.key) return this.pendingScale.bytes;
      if (this.pending?.key === scaleOf.key) return asBytes(this.pending.q.scaleInv);
      this.bytes(scaleOf, null);
      return this.bytes(null, scaleOf);
    }
    const s = t!;
    const src = this.sources.get(s.tensor)!;
    if (s.dtype !== "F8_E4M3") {
      if (src.entry.dtype === s.dtype) return sliceSourceBytes(this.ckpt, src, s);
      return encodeFromNumbers(s.dtype, sliceValues(this.ckpt, src, s));
    }
    const [br, bc] = s.scale!.block;
    const rows = s.shape[0]!;
    const cols = s.shape[1]!;
    // Copy codes and scales when the source's blocks are the slice's and its scales fit the recipe.
    if (src.entry.dtype === "F8_E4M3" && br === 128 && bc === 128 && isAligned(s, { rows: 128, cols: 128 })) {
      const grid = scaleGridShape(s.fullShape[0]!, s.fullShape[1]!);
      const scales = decodeToFloat32("F32", this.ckpt.reader(src.scale!.name)!.readBytes(src.scale!.name), new Float32Array(grid[0] * grid[1]));
      const g0 = s.rows[0] / 128;
      const g1 = Math.ceil(s.rows[1] / 128);
      const h0 = s.cols![0] / 128;
      const h1 = Math.ceil(s.cols![1] / 128);
      const sub = gatherFloats(scales, grid[1], g0, g1, h0, h1);
      if (this.requantise === "none" || !this.pow2Scales || sub.every(isPow2)) {
        this.pendingScale = { key: s.key, bytes: asBytes(sub) };
        return sliceSourceBytes(this.ckpt, src, s);
      }
    }
    const q = quantiseBlocks(sliceValues(this.ckpt, src, s), rows, cols, { block: { rows: br, cols: bc }, pow2Scales: this.pow2Scales });
    this.pending = { key: s.key, q };
    this.pendingScale = null;
    return q.codes;
  }
}

function asBytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function fileLayout(entry: ShardFileEntry): { layout: TensorLayout[]; byKey: Map<string, { t: ShardTensor | null; scaleOf: ShardTensor | null }> } {
  const layout: TensorLayout[] = [];
  const byKey = new Map<string, { t: ShardTensor | null; scaleOf: ShardTensor | null }>();
  for (const t of entry.tensors) {
    layout.push({ name: t.key, dtype: t.dtype, shape: t.shape });
    byKey.set(t.key, { t, scaleOf: null });
    if (t.scale !== null) {
      const grid = scaleGridShape(t.shape[0]!, t.shape[1]!, { rows: t.scale.block[0], cols: t.scale.block[1] });
      layout.push({ name: t.scale.key, dtype: "F32", shape: grid });
      byKey.set(t.scale.key, { t: null, scaleOf: t });
    }
  }
  return { layout, byKey };
}

function storedBytes(layout: readonly TensorLayout[]): number {
  return layout.reduce((s, t) => s + elementCount(t.shape) * DTYPE_BYTES[t.dtype], 0);
}

/** The shard index of a plan: which GPUs share which file and what each file holds. */
export function planShards(spec: Spec, plan: Plan, sources: ReadonlyMap<string, CheckedTensor>, requantise: RequantiseMode): ShardIndex {
  const specs = hfTensorSpecs(spec.model);
  const specByName = new Map(specs.map((s) => [s.name, s]));
  const classes = new Map<string, TensorSlice[]>();
  const fileOfContent = new Map<string, ShardFileEntry>();
  const files: ShardFileEntry[] = [];
  const gpus: ShardIndex["gpus"] = [];
  for (const rank of plan.ranks) {
    const cls = sliceClass(rank);
    let slices = classes.get(cls);
    if (slices === undefined) {
      slices = rankSlices(spec, plan, rank, specs);
      classes.set(cls, slices);
    }
    const tensors = slices.map((s) => storage(spec, specByName.get(s.tensor)!, sources.get(s.tensor)!, s, requantise));
    const content = JSON.stringify(tensors);
    let entry = fileOfContent.get(content);
    if (entry === undefined) {
      entry = { file: `weights/shard-${String(files.length).padStart(5, "0")}.safetensors`, gpus: [], tensors };
      fileOfContent.set(content, entry);
      files.push(entry);
    }
    entry.gpus.push(rank.gpu);
    gpus.push({ gpu: rank.gpu, file: entry.file, pp: rank.pp, dp: rank.dp, tp: rank.tp, epGroup: rank.epGroup, ep: rank.ep });
  }
  return { format: SHARD_FORMAT, version: SHARD_FORMAT_VERSION, model: spec.model.name, schedule: plan.schedule.name, requantise, files, gpus };
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Moves the finished temporary bundle to `target`, replacing a bundle there (never anything else). */
function moveIntoPlace(tmp: string, target: string): Diagnostic | null {
  if (existsSync(target)) {
    const st = lstatSync(target);
    const isBundle = st.isDirectory() && existsSync(join(target, MANIFEST_FILE));
    const isEmpty = st.isDirectory() && readdirSync(target).length === 0;
    if (!isBundle && !isEmpty) return makeDiagnostic("DSV9003", null, { path: target }, "choose another -o directory, or remove it first");
    const old = `${target}.old-${process.pid}-${randomBytes(4).toString("hex")}`;
    renameSync(target, old);
    renameSync(tmp, target);
    rmSync(old, { recursive: true, force: true });
    return null;
  }
  renameSync(tmp, target);
  return null;
}

/** Cuts the checkpoint at `weights` into the bundle `out` for the schedule (see the file comment). */
export function shardCheckpoint(spec: Spec, scheduleName: string, weights: string, out: string, options: ShardOptions): ShardResult {
  const planned = buildPlan(spec, scheduleName);
  if (planned.plan === null) return { written: null, diagnostics: planned.diagnostics };
  return shardCheckpointForPlan(spec, planned.plan, weights, out, options);
}

/** shardCheckpoint for a Plan already built (the schedule's name is the plan's). */
export function shardCheckpointForPlan(spec: Spec, plan: Plan, weights: string, out: string, options: ShardOptions): ShardResult {
  const requantise = options.requantise ?? "recipe";
  const scheduleName = plan.schedule.name;
  const opened = openCheckpoint(weights);
  if (!opened.ok) return { written: null, diagnostics: opened.diagnostics };
  const ckpt = opened.value;
  const target = resolve(out);
  const tmp = join(dirname(target), `${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    const checked = validateCheckpoint(ckpt, spec);
    if (checked.tensors === null) return { written: null, diagnostics: checked.diagnostics };
    const sources = new Map(checked.tensors.map((t) => [t.spec.name, t]));
    const index = planShards(spec, plan, sources, requantise);
    const layouts = index.files.map((f) => fileLayout(f));
    const bytesTotal = layouts.reduce((s, l) => s + storedBytes(l.layout), 0);
    const manifest: ManifestFile[] = [];
    mkdirSync(join(tmp, "weights"), { recursive: true });
    const small = new Map<string, string>([["spec.json", `${JSON.stringify(spec, null, 2)}\n`], ...planBundleFiles(plan), [SHARD_INDEX, `${JSON.stringify(index)}\n`]]);
    for (const [path, text] of small) {
      const full = join(tmp, ...path.split("/"));
      mkdirSync(dirname(full), { recursive: true });
      const bytes = Buffer.from(text, "utf8");
      writeFileSync(full, bytes);
      manifest.push({ path, bytes: bytes.byteLength, sha256: sha256(bytes) });
    }
    const producer = new SliceProducer(ckpt, sources, spec.precision.pow2Scales, requantise);
    let bytesDone = 0;
    let tensors = 0;
    index.files.forEach((f, i) => {
      const { layout, byKey } = layouts[i]!;
      const meta = { format: "pt", "dsv3.shard": JSON.stringify({ model: index.model, schedule: index.schedule, gpus: f.gpus, tensors: f.tensors }) };
      const written = writeSafetensorsStreaming(join(tmp, ...f.file.split("/")), layout, (t) => {
        const which = byKey.get(t.name)!;
        const b = producer.bytes(which.t, which.scaleOf);
        bytesDone += b.byteLength;
        return b;
      }, meta);
      tensors += layout.length;
      manifest.push({ path: f.file, bytes: written.bytes, sha256: written.sha256 });
      options.onProgress?.({ filesDone: i + 1, files: index.files.length, bytesDone, bytesTotal });
    });
    const m: BundleManifest = {
      format: BUNDLE_FORMAT,
      formatVersion: BUNDLE_FORMAT_VERSION,
      compiler: { name: COMPILER_NAME, version: options.compilerVersion },
      schedule: scheduleName,
      files: manifest.sort((a, b) => comparePaths(a.path, b.path)),
    };
    const problems = validateManifest(m);
    if (problems.length > 0) throw new Error(`shard: the manifest would be invalid: ${problems.join("; ")}`);
    writeFileSync(join(tmp, MANIFEST_FILE), serializeManifest(m));
    const refused = moveIntoPlace(tmp, target);
    if (refused !== null) return { written: null, diagnostics: [refused] };
    return { written: { gpus: plan.ranks.length, shardFiles: index.files.length, tensors, bytes: bytesDone, sourceBytes: ckpt.dataBytes() }, diagnostics: checked.diagnostics };
  } catch (e) {
    if (e instanceof TensorReadError) return { written: null, diagnostics: [e.diagnostic] };
    throw e;
  } finally {
    ckpt.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Dequantised FP32 values of a stored FP8 slice (for readers). */
export function dequantiseStored(codes: Uint8Array, scaleInv: Float32Array, t: ShardTensor): Float32Array {
  const [br, bc] = t.scale!.block;
  return dequantiseBlocks(codes, scaleInv, t.shape[0]!, t.shape[1]!, new Float32Array(codes.length), { rows: br, cols: bc });
}
