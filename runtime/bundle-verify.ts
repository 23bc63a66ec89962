/**
 * Checks a bundle directory against its manifest: the manifest is present, schema-valid and in
 * canonical form; every listed file is there as a regular file with the listed size and SHA-256; and
 * nothing else is (apart from `manifest.json` itself and the directories that hold listed files).
 *
 * Never throws on a bad bundle: every problem is reported, sorted by path, then kind, then detail.
 * The directory tree is walked without following symbolic links, so a link inside a bundle can
 * neither stand in for a listed file nor lead the verifier outside the bundle.
 */
import { readdirSync, readFileSync, statSync, type Dirent } from "node:fs";
import { join, resolve } from "node:path";
import {
  MANIFEST_FILE,
  comparePaths,
  serializeManifest,
  sha256Hex,
  validateManifest,
  type BundleManifest,
} from "./manifest.js";

export type BundleProblemKind = "no-manifest" | "manifest-invalid" | "missing" | "modified" | "unlisted";

export interface BundleProblem {
  kind: BundleProblemKind;
  /** Bundle-relative posix path the problem is about (`manifest.json` for manifest problems). */
  path: string;
  detail: string;
}

export interface BundleVerification {
  ok: boolean;
  problems: BundleProblem[];
}

/** What the walk found at one bundle-relative path. */
type Entry = { type: "file"; size: number } | { type: "other"; what: string };

export function verifyBundle(dir: string): BundleVerification {
  const root = resolve(dir);
  const problems = verify(root).sort(compareProblems);
  return { ok: problems.length === 0, problems };
}

function verify(root: string): BundleProblem[] {
  try {
    if (!statSync(root).isDirectory()) return [noManifest(`${root} is not a directory`)];
  } catch (e) {
    return [noManifest(`cannot read ${root}: ${errorText(e)}`)];
  }

  const { entries, unreadable } = walk(root);
  const rootError = unreadable.find((u) => u.path === ".");
  if (rootError !== undefined) return [noManifest(`cannot read ${root}: ${rootError.why}`)];
  const manifestEntry = entries.get(MANIFEST_FILE);
  if (manifestEntry === undefined) return [noManifest(`${MANIFEST_FILE} not found`)];
  if (manifestEntry.type !== "file") return [noManifest(`${MANIFEST_FILE} is ${manifestEntry.what}, not a file`)];

  const manifest = readManifest(join(root, MANIFEST_FILE));
  if (!("files" in manifest)) return manifest;

  const problems: BundleProblem[] = [];
  const listed = new Set<string>();
  for (const file of manifest.files) {
    listed.add(file.path);
    const entry = entries.get(file.path);
    if (entry === undefined) {
      const blocked = unreadable.find((u) => file.path.startsWith(`${u.path}/`));
      problems.push({
        kind: "missing",
        path: file.path,
        detail: blocked === undefined ? "listed in the manifest but not found" : `cannot read directory ${blocked.path}: ${blocked.why}`,
      });
      continue;
    }
    if (entry.type !== "file") {
      problems.push({ kind: "modified", path: file.path, detail: `is ${entry.what}, not a regular file` });
      continue;
    }
    if (entry.size !== file.bytes) {
      problems.push({ kind: "modified", path: file.path, detail: `size is ${entry.size} bytes, manifest says ${file.bytes}` });
      continue;
    }
    let bytes: Buffer;
    try {
      bytes = readFileSync(join(root, ...file.path.split("/")));
    } catch (e) {
      problems.push({ kind: "missing", path: file.path, detail: `present but unreadable: ${errorText(e)}` });
      continue;
    }
    const hash = sha256Hex(bytes);
    if (hash !== file.sha256) {
      problems.push({ kind: "modified", path: file.path, detail: `sha256 is ${hash}, manifest says ${file.sha256}` });
    }
  }
  for (const [path, entry] of entries) {
    if (path === MANIFEST_FILE || listed.has(path)) continue;
    const what = entry.type === "file" ? "a file" : entry.what;
    problems.push({ kind: "unlisted", path, detail: `${what} not listed in the manifest` });
  }
  for (const u of unreadable) {
    // Nothing under an unreadable directory is checked; say so even if nothing listed is there.
    if (!manifest.files.some((f) => f.path.startsWith(`${u.path}/`))) {
      problems.push({ kind: "unlisted", path: u.path, detail: `directory cannot be read: ${u.why}` });
    }
  }
  return problems;
}

/** The manifest, or the problems that make it unusable. */
function readManifest(path: string): BundleManifest | BundleProblem[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    return [invalid(`cannot read: ${errorText(e)}`)];
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return [invalid(`not valid JSON: ${errorText(e)}`)];
  }
  const errors = validateManifest(parsed);
  if (errors.length > 0) return errors.map(invalid);
  const manifest = parsed as BundleManifest;
  // The writer only ever writes the canonical text; anything else was edited after the fact.
  if (serializeManifest(manifest) !== text) {
    return [invalid("not in canonical form (key order, indentation or trailing newline differ from what the writer emits)")];
  }
  return manifest;
}

/**
 * Every non-directory entry under `root`, by bundle-relative posix path, plus the directories that
 * could not be listed. Symbolic links are reported as entries, never followed.
 */
function walk(root: string): { entries: Map<string, Entry>; unreadable: { path: string; why: string }[] } {
  const entries = new Map<string, Entry>();
  const unreadable: { path: string; why: string }[] = [];
  const visit = (relative: string[]): void => {
    let children: Dirent[];
    try {
      children = readdirSync(join(root, ...relative), { withFileTypes: true });
    } catch (e) {
      if (relative.length === 0) throw e;
      unreadable.push({ path: relative.join("/"), why: errorText(e) });
      return;
    }
    for (const child of children) {
      const path = [...relative, child.name];
      if (child.isDirectory()) visit(path);
      else if (child.isFile()) entries.set(path.join("/"), { type: "file", size: fileSize(join(root, ...path)) });
      else entries.set(path.join("/"), { type: "other", what: describeDirent(child) });
    }
  };
  try {
    visit([]);
  } catch (e) {
    unreadable.push({ path: ".", why: errorText(e) });
  }
  return { entries, unreadable };
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return -1; // Vanished while we looked: reported as a size mismatch.
  }
}

function describeDirent(d: Dirent): string {
  if (d.isSymbolicLink()) return "a symbolic link";
  if (d.isFIFO()) return "a FIFO";
  if (d.isSocket()) return "a socket";
  if (d.isBlockDevice() || d.isCharacterDevice()) return "a device";
  return "an unknown kind of entry";
}

function noManifest(detail: string): BundleProblem {
  return { kind: "no-manifest", path: MANIFEST_FILE, detail };
}

function invalid(detail: string): BundleProblem {
  return { kind: "manifest-invalid", path: MANIFEST_FILE, detail };
}

function compareProblems(a: BundleProblem, b: BundleProblem): number {
  return comparePaths(a.path, b.path) || compareStrings(a.kind, b.kind) || compareStrings(a.detail, b.detail);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
