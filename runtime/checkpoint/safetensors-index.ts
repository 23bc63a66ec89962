/**
 * A checkpoint: one safetensors file, or a directory holding `model.safetensors`, or shards named by
 * `model.safetensors.index.json` ({"metadata": {"total_size": N}, "weight_map": {tensor: shard file}}),
 * and usually the model's `config.json`. Only headers are read when a checkpoint is opened; tensors
 * are read one at a time from the shard that holds them.
 *
 * Diagnostics: the index not JSON or not of that shape, or config.json not JSON (DSV9111); the index
 * naming a shard that is missing, outside the directory, or lacks a tensor it is said to hold
 * (DSV9110); a directory with no checkpoint (DSV9112); without an index, one tensor in two files
 * (DSV9113); and whatever a shard's own header has (safetensors.ts). Writing a sharded checkpoint
 * splits the tensors, in name order, into shards of at most `maxShardBytes` of data each
 * (`model-00001-of-00003.safetensors`, …) and writes the index last, so a reader never finds an
 * index naming a shard not yet written.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { makeDiagnostic, type Diagnostic } from "../../dsl/diagnostic.js";
import { describeSystemError } from "../../dsl/system-error.js";
import { writeFileAtomic } from "../atomic-file.js";
import { DTYPE_BYTES } from "./dtypes.js";
import { openSafetensors, writeSafetensorsStreaming, type Checked, type SafetensorsReader, type TensorEntry, type TensorLayout, type WrittenFile } from "./safetensors.js";

export const INDEX_FILE = "model.safetensors.index.json";
export const SINGLE_FILE = "model.safetensors";
export const CONFIG_FILE = "config.json";

export class Checkpoint {
  constructor(
    /** The path the user gave. */
    readonly source: string,
    readonly readers: readonly SafetensorsReader[],
    private readonly location: ReadonlyMap<string, SafetensorsReader>,
    /** config.json beside the weights, parsed (null when absent). */
    readonly config: Record<string, unknown> | null,
    readonly configPath: string | null,
  ) {}

  /** Every tensor name, sorted. */
  names(): string[] {
    return [...this.location.keys()].sort();
  }

  has(name: string): boolean {
    return this.location.has(name);
  }

  entry(name: string): TensorEntry | undefined {
    return this.location.get(name)?.entry(name);
  }

  /** The file that holds `name`. */
  fileOf(name: string): string | undefined {
    return this.location.get(name)?.path;
  }

  reader(name: string): SafetensorsReader | undefined {
    return this.location.get(name);
  }

  /** Total bytes of tensor data. */
  dataBytes(): number {
    let n = 0;
    for (const name of this.location.keys()) {
      const e = this.entry(name)!;
      n += e.end - e.begin;
    }
    return n;
  }

  close(): void {
    for (const r of this.readers) r.close();
  }
}

function join(dir: string, name: string): string {
  return dir === "" ? name : `${dir.replace(/\/+$/, "")}/${name}`;
}

function readConfig(dir: string): Checked<{ config: Record<string, unknown> | null; configPath: string | null }> {
  const p = join(dir, CONFIG_FILE);
  if (!existsSync(p)) return { ok: true, value: { config: null, configPath: null } };
  try {
    const json: unknown = JSON.parse(readFileSync(p, "utf8"));
    if (json === null || typeof json !== "object" || Array.isArray(json)) return { ok: false, diagnostics: [makeDiagnostic("DSV9111", null, { path: p, reason: "it is not a JSON object" })] };
    return { ok: true, value: { config: json as Record<string, unknown>, configPath: p } };
  } catch (e) {
    return { ok: false, diagnostics: [makeDiagnostic("DSV9111", null, { path: p, reason: e instanceof SyntaxError ? `not JSON (${e.message})` : describeSystemError(e) })] };
  }
}

function closeAll(readers: readonly SafetensorsReader[]): void {
  for (const r of readers) r.close();
}

/** Opens several files whose tensors together make the checkpoint (no index: every tensor once). */
function openFiles(source: string, files: readonly string[], config: { config: Record<string, unknown> | null; configPath: string | null }): Checked<Checkpoint> {
  const readers: SafetensorsReader[] = [];
  const diagnostics: Diagnostic[] = [];
  const location = new Map<string, SafetensorsReader>();
  for (const f of files) {
    const r = openSafetensors(f);
    if (!r.ok) {
      diagnostics.push(...r.diagnostics);
      continue;
    }
    readers.push(r.value);
    for (const name of r.value.header.tensors.keys()) {
      const seen = location.get(name);
      if (seen !== undefined) diagnostics.push(makeDiagnostic("DSV9113", null, { name, first: seen.path, second: f }, "give an index (model.safetensors.index.json) that says which file holds it"));
      else location.set(name, r.value);
    }
  }
  if (diagnostics.length > 0) {
    closeAll(readers);
    return { ok: false, diagnostics };
  }
  return { ok: true, value: new Checkpoint(source, readers, location, config.config, config.configPath) };
}

function openIndexed(source: string, indexPath: string, config: { config: Record<string, unknown> | null; configPath: string | null }): Checked<Checkpoint> {
  const invalid = (reason: string): Checked<Checkpoint> => ({ ok: false, diagnostics: [makeDiagnostic("DSV9111", null, { path: indexPath, reason })] });
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(indexPath, "utf8"));
  } catch (e) {
    return invalid(e instanceof SyntaxError ? `not JSON (${e.message})` : describeSystemError(e));
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) return invalid("it is not a JSON object");
  const map = (json as Record<string, unknown>)["weight_map"];
  if (map === null || typeof map !== "object" || Array.isArray(map)) return invalid("it has no \"weight_map\" object");
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    if (typeof shard !== "string") return invalid(`"weight_map" maps '${name}' to ${JSON.stringify(shard)}, not a file name`);
    const list = byShard.get(shard) ?? [];
    list.push(name);
    byShard.set(shard, list);
  }
  const dir = path.dirname(indexPath);
  const diagnostics: Diagnostic[] = [];
  const readers: SafetensorsReader[] = [];
  const location = new Map<string, SafetensorsReader>();
  for (const shard of [...byShard.keys()].sort()) {
    const names = byShard.get(shard)!.sort();
    const count = names.length;
    if (shard === "" || path.isAbsolute(shard) || shard.split(/[\\/]/).includes("..")) {
      diagnostics.push(makeDiagnostic("DSV9110", null, { path: indexPath, count, shard, reason: "lies outside the checkpoint's directory" }));
      continue;
    }
    const file = join(dir, shard);
    if (!existsSync(file)) {
      diagnostics.push(makeDiagnostic("DSV9110", null, { path: indexPath, count, shard, reason: "does not exist" }, `copy ${shard} next to the index, or fix its weight_map`));
      continue;
    }
    const r = openSafetensors(file);
    if (!r.ok) {
      diagnostics.push(...r.diagnostics);
      continue;
    }
    readers.push(r.value);
    const absent = names.filter((n) => !r.value.header.tensors.has(n));
    if (absent.length > 0) {
      diagnostics.push(makeDiagnostic("DSV9110", null, { path: indexPath, count: absent.length, shard, reason: `does not hold them (${absent.slice(0, 3).map((n) => `'${n}'`).join(", ")}${absent.length > 3 ? ", …" : ""})` }));
    }
    for (const n of names) if (r.value.header.tensors.has(n)) location.set(n, r.value);
  }
  if (diagnostics.length > 0) {
    closeAll(readers);
    return { ok: false, diagnostics };
  }
  return { ok: true, value: new Checkpoint(source, readers, location, config.config, config.configPath) };
}

/** Opens a checkpoint (see the file comment); reads headers only. */
export function openCheckpoint(source: string): Checked<Checkpoint> {
  let isDir: boolean;
  try {
    isDir = statSync(source).isDirectory();
  } catch (e) {
    return { ok: false, diagnostics: [makeDiagnostic("DSV9001", null, { path: source, reason: describeSystemError(e) })] };
  }
  const none = { config: null, configPath: null };
  if (!isDir) {
    if (source.endsWith(".json")) {
      const config = readConfig(path.dirname(source));
      if (!config.ok) return config;
      return openIndexed(source, source, config.value);
    }
    return openFiles(source, [source], none);
  }
  const config = readConfig(source);
  if (!config.ok) return config;
  const index = join(source, INDEX_FILE);
  if (existsSync(index)) return openIndexed(source, index, config.value);
  const single = join(source, SINGLE_FILE);
  if (existsSync(single)) return openFiles(source, [single], config.value);
  let names: string[];
  try {
    names = readdirSync(source).filter((n) => n.endsWith(".safetensors") && !n.startsWith(".")).sort();
  } catch (e) {
    return { ok: false, diagnostics: [makeDiagnostic("DSV9001", null, { path: source, reason: describeSystemError(e) })] };
  }
  if (names.length === 0) {
    return { ok: false, diagnostics: [makeDiagnostic("DSV9112", null, { path: source, reason: `no ${INDEX_FILE}, ${SINGLE_FILE} or other .safetensors file` }, "give the path of a .safetensors file or of a directory that holds one")] };
  }
  return openFiles(source, names.map((n) => join(source, n)), config.value);
}

// ── Writing ─────────────────────────────────────────────────────────────────────────────────────

export interface ShardedWrite {
  files: { name: string; tensors: number; written: WrittenFile }[];
  totalSize: number;
}

function dataBytes(t: TensorLayout): number {
  return t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
}

/**
 * Writes the tensors into `dir` as `model.safetensors` (one file, when `maxShardBytes` is null or
 * everything fits) or as shards plus the index. `produce` is asked for each tensor once.
 */
export async function writeCheckpointFiles(
  dir: string,
  tensors: readonly TensorLayout[],
  produce: (t: TensorLayout) => Uint8Array,
  maxShardBytes: number | null,
  metadata: Readonly<Record<string, string>> | null = null,
): Promise<ShardedWrite> {
  const ordered = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const groups: TensorLayout[][] = [];
  let current: TensorLayout[] = [];
  let bytes = 0;
  for (const t of ordered) {
    const b = dataBytes(t);
    if (maxShardBytes !== null && current.length > 0 && bytes + b > maxShardBytes) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
    current.push(t);
    bytes += b;
  }
  if (current.length > 0 || groups.length === 0) groups.push(current);
  const totalSize = ordered.reduce((s, t) => s + dataBytes(t), 0);
  const files: ShardedWrite["files"] = [];
  if (groups.length === 1) {
    const written = writeSafetensorsStreaming(join(dir, SINGLE_FILE), groups[0]!, produce, metadata);
    return { files: [{ name: SINGLE_FILE, tensors: groups[0]!.length, written }], totalSize };
  }
  const width = 5;
  const total = String(groups.length).padStart(width, "0");
  const weightMap: Record<string, string> = {};
  groups.forEach((g, i) => {
    const name = `model-${String(i + 1).padStart(width, "0")}-of-${total}.safetensors`;
    const written = writeSafetensorsStreaming(join(dir, name), g, produce, metadata);
    files.push({ name, tensors: g.length, written });
    for (const t of g) weightMap[t.name] = name;
  });
  const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
  await writeFileAtomic(join(dir, INDEX_FILE), `${JSON.stringify(index, null, 2)}\n`);
  return { files, totalSize };
}
