/**
 * Writes a bundle directory so that a failed or killed compile never leaves a partial bundle at the
 * destination.
 *
 * How: every file and then `manifest.json` are written (and fsynced) into a fresh temporary sibling
 * `<dir>.tmp-<pid>-<hex>` in the destination's parent, so the final step is a rename within one file
 * system. With no bundle at the destination, that rename is atomic: `dir` is absent, then complete.
 * Replacing an existing bundle takes two renames (`dir` → `<dir>.old-<pid>-<hex>`, then temporary →
 * `dir`), since Node offers no atomic directory exchange. A kill between the two leaves `dir` absent
 * and the old bundle whole under its `.old-` name; `removeStaleTemporaries`, which every write runs
 * first, puts it back. So at every moment `dir` is absent, the old bundle or the new one, never a mix.
 *
 * The writer writes the caller's bytes as given. Keeping timestamps, absolute paths and anything else
 * machine-specific out of the contents is the caller's job; the writer adds only the manifest, which
 * holds nothing but the caller's paths, sizes, hashes and `meta`. Identical input gives a
 * byte-identical tree: files are written in sorted order and the manifest is canonical.
 *
 * Not designed for two writers racing on the same destination: one of them fails with an `io` error.
 */
import {
  closeSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";
import {
  BUNDLE_FORMAT,
  MANIFEST_FILE,
  checkBundlePath,
  comparePaths,
  createManifest,
  describeConflict,
  findFileDirectoryConflicts,
  serializeManifest,
  validateManifest,
  type ManifestKernel,
} from "./manifest.js";
import { verifyBundle } from "./bundle-verify.js";

export type BundleErrorCode = "unsafe-path" | "not-a-bundle" | "io";

/**
 * The error the writer throws for anything a user can cause. (Whatever `afterEachFile` throws is
 * passed through unchanged, and a `meta` that would make an invalid manifest is a `TypeError`: both
 * are the calling code's bugs.) `path` is the offending bundle-relative path for `unsafe-path`, and a
 * file-system path for `not-a-bundle` and `io`.
 */
export class BundleError extends Error {
  override readonly name = "BundleError";
  constructor(
    readonly code: BundleErrorCode,
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface BundleMeta {
  compilerVersion: string;
  schedule: string;
  /** The compiled GPU kernels, recorded in the manifest (see `ManifestKernel`). */
  kernels?: ManifestKernel[];
}

export interface WriteBundleOptions {
  /**
   * Called after each payload file is written and fsynced (in path order; not for the manifest).
   * For tests and progress reporting. If it throws, the write is abandoned and the temporary
   * directory removed.
   */
  afterEachFile?: (path: string) => void;
}

/**
 * Every file of the bundle, `manifest.json` included, as bytes, in the order the writer writes them
 * (payload files sorted by path, then the manifest). Pure: no file system. Throws `unsafe-path` for
 * a path `checkBundlePath` rejects or a path inside another file (`a` and `a/b`).
 */
export function renderBundle(
  files: ReadonlyMap<string, string | Uint8Array>,
  meta: BundleMeta,
): Map<string, Uint8Array> {
  for (const path of files.keys()) {
    const why = checkBundlePath(path);
    if (why !== null) throw new BundleError("unsafe-path", path, `unsafe bundle path ${JSON.stringify(path)}: ${why}`);
  }
  const [conflict] = findFileDirectoryConflicts([...files.keys()]);
  if (conflict !== undefined) {
    throw new BundleError("unsafe-path", conflict.path, `conflicting bundle paths: ${describeConflict(conflict)}`);
  }
  const out = new Map<string, Uint8Array>();
  for (const path of [...files.keys()].sort(comparePaths)) {
    const content = files.get(path)!;
    out.set(path, typeof content === "string" ? Buffer.from(content, "utf8") : content);
  }
  const manifest = createManifest(
    [...out].map(([path, bytes]) => ({ path, bytes })),
    meta,
  );
  // Self-check: catches bad `meta` (an empty schedule, say) before anything reaches the disk.
  const errors = validateManifest(manifest);
  if (errors.length > 0) throw new TypeError(`the bundle manifest would be invalid: ${errors.join("; ")}`);
  out.set(MANIFEST_FILE, Buffer.from(serializeManifest(manifest), "utf8"));
  return out;
}

/**
 * Writes `files` and a manifest as the bundle `dir`, replacing a bundle already there. Refuses
 * (`not-a-bundle`) to replace anything else: a file, or a non-empty directory without a dsv3
 * manifest. Creates `dir`'s parent if needed. On error the temporary directory is removed and `dir`
 * is left as it was.
 */
export function writeBundle(
  dir: string,
  files: ReadonlyMap<string, string | Uint8Array>,
  meta: BundleMeta,
  options: WriteBundleOptions = {},
): void {
  const rendered = renderBundle(files, meta);
  const target = resolve(dir);
  const parent = dirname(target);
  if (parent === target) throw new BundleError("not-a-bundle", target, "cannot write a bundle over the file-system root");

  removeStaleTemporaries(target);
  const existing = inspectDestination(target);
  io(parent, () => mkdirSync(parent, { recursive: true }));

  const tmp = `${target}.tmp-${process.pid}-${randomHex()}`;
  try {
    io(tmp, () => mkdirSync(tmp));
    const directories = new Set<string>([tmp]);
    for (const [path, bytes] of rendered) {
      const full = join(tmp, ...path.split("/"));
      const folder = dirname(full);
      if (!directories.has(folder)) {
        io(folder, () => mkdirSync(folder, { recursive: true }));
        for (let d = folder; d !== tmp && !directories.has(d); d = dirname(d)) directories.add(d);
      }
      io(full, () => writeFileDurably(full, bytes));
      if (path !== MANIFEST_FILE) options.afterEachFile?.(path);
    }
    // Make the directory entries durable too, deepest first, before the bundle becomes visible.
    for (const d of [...directories].sort((a, b) => b.length - a.length)) fsyncDirectory(d);
    moveIntoPlace(tmp, target, existing);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  fsyncDirectory(parent);
}

/**
 * Deletes `<dir>.tmp-<pid>-<hex>` and `<dir>.old-<pid>-<hex>` siblings left by writers that died
 * (their pid is no longer alive), after first restoring an `.old-` bundle to `dir` if a writer died
 * between its two renames and `dir` is missing. Only an `.old-` bundle that verifies is restored (a
 * writer killed while deleting its `.old-` directory leaves a partial one). Best effort: never
 * throws; says what it did (names relative to `dir`'s parent).
 * Entries of live processes (this one included) are left alone. A dead writer's pid reused by an
 * unrelated process keeps its leftovers until that process exits too.
 */
export function removeStaleTemporaries(dir: string): { restored: string | null; removed: string[] } {
  const target = resolve(dir);
  const parent = dirname(target);
  const pattern = new RegExp(`^${escapeRegExp(basename(target))}\\.(tmp|old)-([0-9]+)-[0-9a-f]+$`);
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return { restored: null, removed: [] };
  }
  const stale = names
    .map((name) => ({ name, match: pattern.exec(name) }))
    .filter((e): e is { name: string; match: RegExpExecArray } => e.match !== null)
    .filter((e) => !isAlive(Number(e.match[2])))
    .sort((a, b) => comparePaths(a.name, b.name));

  let restored: string | null = null;
  if (!exists(target)) {
    // A writer died mid-swap. Roll back to the old bundle (the new one never finished publishing).
    for (const e of stale) {
      if (e.match[1] !== "old" || !verifyBundle(join(parent, e.name)).ok) continue;
      try {
        renameSync(join(parent, e.name), target);
        restored = e.name;
        break;
      } catch {
        // Try the next candidate, if any.
      }
    }
  }
  const removed: string[] = [];
  for (const e of stale) {
    if (e.name === restored) continue;
    try {
      rmSync(join(parent, e.name), { recursive: true, force: true });
      removed.push(e.name);
    } catch {
      // Best effort: a later write will try again.
    }
  }
  return { restored, removed };
}

type Destination = "absent" | "replaceable";

/** What is at `target` now; throws `not-a-bundle` when it is something the writer must not replace. */
function inspectDestination(target: string): Destination {
  let stat;
  try {
    stat = lstatSync(target);
  } catch (e) {
    if (errorCode(e) === "ENOENT") return "absent";
    throw new BundleError("io", target, `cannot inspect ${target}: ${errorText(e)}`, { cause: e });
  }
  if (!stat.isDirectory()) {
    throw new BundleError("not-a-bundle", target, `${target} exists and is not a directory; refusing to replace it`);
  }
  const entries = io(target, () => readdirSync(target));
  if (entries.length === 0) return "replaceable";
  if (!entries.includes(MANIFEST_FILE)) {
    throw new BundleError(
      "not-a-bundle",
      target,
      `${target} is a non-empty directory without ${MANIFEST_FILE}; refusing to replace it`,
    );
  }
  // Only a manifest of ours makes the directory ours: a web project's manifest.json does not.
  let format: unknown;
  try {
    format = (JSON.parse(readFileSync(join(target, MANIFEST_FILE), "utf8")) as { format?: unknown }).format;
  } catch {
    format = undefined;
  }
  if (format !== BUNDLE_FORMAT) {
    throw new BundleError(
      "not-a-bundle",
      target,
      `${join(target, MANIFEST_FILE)} is not a ${BUNDLE_FORMAT} manifest; refusing to replace ${target}`,
    );
  }
  return "replaceable";
}

function moveIntoPlace(tmp: string, target: string, existing: Destination): void {
  if (existing === "absent") {
    io(target, () => renameSync(tmp, target));
    return;
  }
  const old = `${target}.old-${process.pid}-${randomHex()}`;
  io(target, () => renameSync(target, old));
  try {
    renameSync(tmp, target);
  } catch (e) {
    // Put the old bundle back; if even that fails, `removeStaleTemporaries` will once we are gone.
    try {
      renameSync(old, target);
    } catch {
      // Leave it under its `.old-` name.
    }
    throw new BundleError("io", target, `cannot move the new bundle into ${target}: ${errorText(e)}`, { cause: e });
  }
  // The new bundle is in place; the old one is garbage. Failing to delete it is not an error.
  rmSync(old, { recursive: true, force: true });
}

function writeFileDurably(path: string, bytes: Uint8Array): void {
  // `wx`: the temporary directory is fresh, so an existing file would mean a bug, not a rewrite.
  const fd = openSync(path, "wx", 0o644);
  try {
    let offset = 0;
    while (offset < bytes.byteLength) offset += writeSync(fd, bytes, offset, bytes.byteLength - offset);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync a directory so renames and new entries in it survive a crash. Not possible on Windows. */
function fsyncDirectory(path: string): void {
  if (process.platform === "win32") return;
  io(path, () => {
    const fd = openSync(path, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  });
}

/** Runs a file-system operation, turning its errors into `BundleError("io")`. */
function io<T>(path: string, op: () => T): T {
  try {
    return op();
  } catch (e) {
    if (e instanceof BundleError) throw e;
    throw new BundleError("io", path, `${path}: ${errorText(e)}`, { cause: e });
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return errorCode(e) === "EPERM";
  }
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function randomHex(): string {
  return randomBytes(6).toString("hex");
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function errorCode(e: unknown): string | undefined {
  return typeof e === "object" && e !== null && "code" in e ? String((e as { code: unknown }).code) : undefined;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
