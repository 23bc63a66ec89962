/**
 * The safetensors format: an 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the
 * raw data. The JSON maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (byte
 * offsets into the data region, end exclusive) and may hold `__metadata__`, a string → string map.
 *
 * Reading never holds the file in memory: `openSafetensors` reads the length and the header only,
 * checks every entry against the file's size, and `readTensorBytes` reads one tensor's bytes with
 * positioned reads. A malformed file is a list of coded diagnostics naming the path — never an
 * exception and never a read outside the file:
 *   DSV9101 truncated (shorter than 8 bytes, or a tensor's data ends past the end of the file)
 *   DSV9102 header length past the end of the file (or above the 100 MB the format allows)
 *   DSV9103 header not UTF-8 JSON, or not an object
 *   DSV9104 an entry that is not {dtype, shape, data_offsets}, or a bad `__metadata__`
 *   DSV9105 unknown dtype               DSV9106 shape × dtype ≠ the bytes the offsets span
 *   DSV9107 offsets not whole, or begin > end
 *   DSV9108 two tensors' bytes overlap  DSV9109 data bytes that belong to no tensor (holes, a tail)
 *
 * Writing is atomic (a temporary file beside the target, fsynced, then renamed) and deterministic:
 * `__metadata__` first, then the tensors sorted by name, their data in the same order, the JSON
 * padded with spaces so the data starts on an 8-byte boundary. `writeSafetensorsStreaming` asks for
 * each tensor's bytes only when it writes them, so a writer holds one tensor at a time, and returns
 * the file's size and SHA-256 (hashed while writing).
 */
import { createHash, randomBytes } from "node:crypto";
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync } from "node:fs";
import path from "node:path";
import { makeDiagnostic, type Diagnostic } from "../../dsl/diagnostic.js";
import { describeSystemError } from "../../dsl/system-error.js";
import { DTYPE_BYTES, DTYPES, decodeToFloat32, isDtype, type SafetensorsDtype } from "./dtypes.js";

/** The format's limit on the header (the reference implementation's). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte offsets into the data region, end exclusive. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** The path as given (diagnostics show it). */
  path: string;
  /** File size in bytes. */
  size: number;
  /** Offset of the data region: 8 + header length. */
  dataStart: number;
  /** Tensors by name, in name order. */
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string> | null;
}

export type Checked<T> = { ok: true; value: T } | { ok: false; diagnostics: Diagnostic[] };

/** A read failed after the header checked out (the file changed underneath, an I/O error). */
export class TensorReadError extends Error {
  override readonly name = "TensorReadError";
  constructor(readonly diagnostic: Diagnostic) {
    super(diagnostic.message);
  }
}

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

const isWhole = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/**
 * Checks a header: `json` is the header text (N bytes after the length), `size` the file size.
 * Pure (no file system): the fuzz tests drive it directly as well as through files.
 */
export function parseSafetensorsHeader(file: string, headerBytes: Uint8Array, size: number): Checked<SafetensorsHeader> {
  const diagnostics: Diagnostic[] = [];
  const bad = (d: Diagnostic): Checked<SafetensorsHeader> => ({ ok: false, diagnostics: [d] });
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    return bad(makeDiagnostic("DSV9103", null, { path: file, reason: "it is not UTF-8" }));
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return bad(makeDiagnostic("DSV9103", null, { path: file, reason: (e as Error).message }));
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return bad(makeDiagnostic("DSV9103", null, { path: file, reason: `the header is ${Array.isArray(json) ? "an array" : json === null ? "null" : `a ${typeof json}`}, not an object` }));
  }
  const dataStart = 8 + headerBytes.byteLength;
  const dataLength = size - dataStart;
  let metadata: Record<string, string> | null = null;
  const entries: TensorEntry[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (raw === null || typeof raw !== "object" || Array.isArray(raw) || Object.values(raw).some((v) => typeof v !== "string")) {
        diagnostics.push(makeDiagnostic("DSV9104", null, { path: file, name, reason: "__metadata__ must map strings to strings" }));
      } else metadata = raw as Record<string, string>;
      continue;
    }
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
      diagnostics.push(makeDiagnostic("DSV9104", null, { path: file, name, reason: "the entry is not an object {dtype, shape, data_offsets}" }));
      continue;
    }
    const e = raw as Record<string, unknown>;
    const extra = Object.keys(e).filter((k) => k !== "dtype" && k !== "shape" && k !== "data_offsets");
    if (extra.length > 0 || !("dtype" in e) || !("shape" in e) || !("data_offsets" in e)) {
      const missing = ["dtype", "shape", "data_offsets"].filter((k) => !(k in e));
      const why = missing.length > 0 ? `the entry lacks ${missing.join(", ")}` : `unknown key(s) ${extra.map((k) => JSON.stringify(k)).join(", ")}`;
      diagnostics.push(makeDiagnostic("DSV9104", null, { path: file, name, reason: why }));
      continue;
    }
    if (typeof e["dtype"] !== "string") {
      diagnostics.push(makeDiagnostic("DSV9104", null, { path: file, name, reason: "dtype is not a string" }));
      continue;
    }
    const dtype = e["dtype"];
    if (!isDtype(dtype)) {
      diagnostics.push(makeDiagnostic("DSV9105", null, { path: file, name, dtype: dtype.slice(0, 40) }, `use one of ${DTYPES.join(", ")}`));
      continue;
    }
    const shape = e["shape"];
    if (!Array.isArray(shape) || !shape.every(isWhole) || !Number.isSafeInteger(elementCount(shape as number[]) * DTYPE_BYTES[dtype])) {
      diagnostics.push(makeDiagnostic("DSV9104", null, { path: file, name, reason: "shape is not a list of whole numbers of a representable size" }));
      continue;
    }
    const offsets = e["data_offsets"];
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isWhole)) {
      diagnostics.push(makeDiagnostic("DSV9107", null, { path: file, name, offsets: JSON.stringify(offsets)?.slice(0, 60) ?? "?", reason: "they must be two whole numbers [begin, end]" }));
      continue;
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) {
      diagnostics.push(makeDiagnostic("DSV9107", null, { path: file, name, offsets: `[${begin}, ${end}]`, reason: "begin is after end" }));
      continue;
    }
    const need = elementCount(shape as number[]) * DTYPE_BYTES[dtype];
    if (end - begin !== need) {
      diagnostics.push(makeDiagnostic("DSV9106", null, { path: file, name, dtype, shape: shapeText(shape as number[]), need, have: end - begin }));
      continue;
    }
    if (end > dataLength) {
      diagnostics.push(
        makeDiagnostic("DSV9101", null, {
          path: file,
          detail: `tensor '${name}' ends at data byte ${end}, but the file has ${Math.max(0, dataLength)} data bytes (${size} bytes in all)`,
        }),
      );
      continue;
    }
    entries.push({ name, dtype, shape: [...(shape as number[])], begin, end });
  }
  if (diagnostics.length > 0) return { ok: false, diagnostics };
  // Every data byte belongs to exactly one tensor.
  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end || (a.name < b.name ? -1 : 1));
  let covered = 0;
  let last: TensorEntry | null = null;
  for (const t of byOffset) {
    if (t.begin === t.end) continue;
    if (last !== null && t.begin < covered) {
      diagnostics.push(makeDiagnostic("DSV9108", null, { path: file, first: last.name, second: t.name, range: `[${t.begin}, ${Math.min(covered, t.end)})` }));
    } else if (t.begin > covered) {
      diagnostics.push(makeDiagnostic("DSV9109", null, { path: file, range: `[${covered}, ${t.begin})` }));
    }
    if (t.end > covered) {
      covered = t.end;
      last = t;
    }
  }
  if (covered < dataLength) diagnostics.push(makeDiagnostic("DSV9109", null, { path: file, range: `[${covered}, ${dataLength})` }));
  if (diagnostics.length > 0) return { ok: false, diagnostics };
  const tensors = new Map<string, TensorEntry>();
  for (const t of [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) tensors.set(t.name, t);
  return { ok: true, value: { path: file, size, dataStart, tensors, metadata } };
}

/** Fills `buf` from `fd` at `position`; false when the file ends first. */
function readFully(fd: number, buf: Uint8Array, position: number): boolean {
  let done = 0;
  while (done < buf.byteLength) {
    const n = readSync(fd, buf, done, buf.byteLength - done, position + done);
    if (n === 0) return false;
    done += n;
  }
  return true;
}

/** An open safetensors file: its checked header and a descriptor for positioned reads. */
export class SafetensorsReader {
  private fd: number | null;
  constructor(
    readonly header: SafetensorsHeader,
    fd: number,
  ) {
    this.fd = fd;
  }

  get path(): string {
    return this.header.path;
  }

  entry(name: string): TensorEntry | undefined {
    return this.header.tensors.get(name);
  }

  /** The raw bytes of one tensor (only those bytes are read). */
  readBytes(name: string): Uint8Array {
    return this.readRange(name, 0, Number.POSITIVE_INFINITY);
  }

  /** Bytes [from, to) of one tensor's data (clamped to it): row ranges of a row-major tensor. */
  readRange(name: string, from: number, to: number): Uint8Array {
    const t = this.header.tensors.get(name);
    const fail = (reason: string): never => {
      throw new TensorReadError(makeDiagnostic("DSV9124", null, { path: this.path, name, reason }));
    };
    if (t === undefined) return fail("the file has no such tensor");
    if (this.fd === null) return fail("the file was closed");
    const a = Math.max(0, Math.min(from, t.end - t.begin));
    const b = Math.max(a, Math.min(to, t.end - t.begin));
    const buf = new Uint8Array(b - a);
    let complete: boolean;
    try {
      complete = readFully(this.fd, buf, this.header.dataStart + t.begin + a);
    } catch (e) {
      return fail(describeSystemError(e));
    }
    if (!complete) fail("the file ended early (it changed after it was opened)");
    return buf;
  }

  /** One tensor decoded to FP32 (see dtypes.ts). */
  readFloat32(name: string): Float32Array {
    const t = this.entry(name);
    const bytes = this.readBytes(name);
    return decodeToFloat32(t!.dtype, bytes, new Float32Array(bytes.byteLength / DTYPE_BYTES[t!.dtype]));
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/** Opens and checks a safetensors file (reads the length and the header only). */
export function openSafetensors(file: string): Checked<SafetensorsReader> {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (e) {
    return { ok: false, diagnostics: [makeDiagnostic("DSV9001", null, { path: file, reason: describeSystemError(e) })] };
  }
  const fail = (d: Diagnostic[]): Checked<SafetensorsReader> => {
    closeSync(fd);
    return { ok: false, diagnostics: d };
  };
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) return fail([makeDiagnostic("DSV9001", null, { path: file, reason: "it is a directory" })]);
    const size = st.size;
    const lengthBytes = new Uint8Array(8);
    if (size < 8 || !readFully(fd, lengthBytes, 0)) {
      return fail([makeDiagnostic("DSV9101", null, { path: file, detail: `it has ${size} bytes, fewer than the 8-byte header length` })]);
    }
    const length = new DataView(lengthBytes.buffer).getBigUint64(0, true);
    if (length > BigInt(size - 8) || length > BigInt(MAX_HEADER_BYTES)) {
      return fail([makeDiagnostic("DSV9102", null, { path: file, length: length.toString(), size }, length > BigInt(MAX_HEADER_BYTES) && length <= BigInt(size - 8) ? `the format allows headers of up to ${MAX_HEADER_BYTES} bytes` : undefined)]);
    }
    const headerBytes = new Uint8Array(Number(length));
    if (!readFully(fd, headerBytes, 8)) return fail([makeDiagnostic("DSV9101", null, { path: file, detail: "the file ended inside the header" })]);
    const parsed = parseSafetensorsHeader(file, headerBytes, size);
    if (!parsed.ok) return fail(parsed.diagnostics);
    return { ok: true, value: new SafetensorsReader(parsed.value, fd) };
  } catch (e) {
    return fail([makeDiagnostic("DSV9001", null, { path: file, reason: describeSystemError(e) })]);
  }
}

// ── Writing ─────────────────────────────────────────────────────────────────────────────────────

export interface TensorLayout {
  name: string;
  dtype: SafetensorsDtype;
  shape: readonly number[];
}

export interface TensorData extends TensorLayout {
  data: Uint8Array;
}

/** The header bytes (length + padded JSON) for tensors in the given order, and each one's offsets. */
export function safetensorsHeaderBytes(tensors: readonly TensorLayout[], metadata: Readonly<Record<string, string>> | null): { header: Uint8Array; offsets: [number, number][] } {
  const obj: Record<string, unknown> = {};
  if (metadata !== null) {
    const meta: Record<string, string> = {};
    for (const k of Object.keys(metadata).sort()) meta[k] = metadata[k]!;
    obj["__metadata__"] = meta;
  }
  const offsets: [number, number][] = [];
  let at = 0;
  for (const t of tensors) {
    if (t.name === "__metadata__") throw new RangeError("safetensors: a tensor cannot be named __metadata__");
    if (t.name in obj) throw new RangeError(`safetensors: tensor '${t.name}' twice`);
    const bytes = elementCount(t.shape) * DTYPE_BYTES[t.dtype];
    obj[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [at, at + bytes] };
    offsets.push([at, at + bytes]);
    at += bytes;
  }
  const json = Buffer.from(JSON.stringify(obj), "utf8");
  const padded = Math.ceil((8 + json.byteLength) / 8) * 8 - 8;
  const header = new Uint8Array(8 + padded).fill(0x20);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return { header, offsets };
}

export interface WrittenFile {
  bytes: number;
  sha256: string;
}

function byName<T extends TensorLayout>(tensors: readonly T[]): T[] {
  return [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Writes `file` atomically, asking `produce(tensor)` for each tensor's bytes in name order just
 * before they are written (each must have exactly shape × dtype bytes).
 */
export function writeSafetensorsStreaming(
  file: string,
  tensors: readonly TensorLayout[],
  produce: (tensor: TensorLayout) => Uint8Array,
  metadata: Readonly<Record<string, string>> | null = null,
): WrittenFile {
  const ordered = byName(tensors);
  const { header, offsets } = safetensorsHeaderBytes(ordered, metadata);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const hash = createHash("sha256");
  const fd = openSync(tmp, "wx", 0o644);
  let bytes = 0;
  const put = (b: Uint8Array): void => {
    let done = 0;
    while (done < b.byteLength) done += writeSync(fd, b, done, b.byteLength - done);
    hash.update(b);
    bytes += b.byteLength;
  };
  try {
    put(header);
    ordered.forEach((t, i) => {
      const data = produce(t);
      const [begin, end] = offsets[i]!;
      if (data.byteLength !== end - begin) throw new RangeError(`safetensors: tensor '${t.name}' has ${data.byteLength} bytes, ${end - begin} expected`);
      put(data);
    });
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, file);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    try {
      unlinkSync(tmp);
    } catch {
      // never created or already renamed
    }
    throw e;
  }
  return { bytes, sha256: hash.digest("hex") };
}

/** Writes in-memory tensors atomically (see writeSafetensorsStreaming). */
export function writeSafetensors(file: string, tensors: readonly TensorData[], metadata: Readonly<Record<string, string>> | null = null): WrittenFile {
  const data = new Map(tensors.map((t) => [t.name, t.data]));
  return writeSafetensorsStreaming(file, tensors, (t) => data.get(t.name)!, metadata);
}
