/**
 * The bundle manifest: `manifest.json` at the root of every bundle. It names the format and its
 * version, the compiler that wrote the bundle, the schedule the bundle was compiled for, and the
 * size and SHA-256 of every other file in the bundle (the manifest never lists itself).
 *
 * Three things here must agree, and the tests check that they do:
 *   - the TypeScript type `BundleManifest`,
 *   - the JSON Schema `MANIFEST_SCHEMA` (what `validateManifest` checks with ajv), and
 *   - `checkBundlePath`, the path rule the writer applies before it touches the disk.
 *
 * The manifest is serialised in one canonical form (`serializeManifest`): fixed key order, two-space
 * indentation, a trailing newline, files sorted by the UTF-8 bytes of their paths. Identical input
 * gives identical bytes, and the verifier refuses a manifest that is not in this form.
 */
import { createHash } from "node:crypto";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";

/** The manifest's file name at the bundle root. It is reserved: no payload file may use it. */
export const MANIFEST_FILE = "manifest.json";
export const BUNDLE_FORMAT = "dsv3-bundle";
export const BUNDLE_FORMAT_VERSION = 1;
export const COMPILER_NAME = "dsv3";

export interface ManifestFile {
  /** Posix path relative to the bundle root (see `checkBundlePath`). */
  path: string;
  /** Size in bytes. */
  bytes: number;
  /** SHA-256 of the file's bytes, 64 lower-case hex digits. */
  sha256: string;
}

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  formatVersion: typeof BUNDLE_FORMAT_VERSION;
  compiler: { name: typeof COMPILER_NAME; version: string };
  /** The name of the parallel schedule this bundle was compiled for. */
  schedule: string;
  /** Every file of the bundle but the manifest, sorted by `comparePaths`, no duplicates. */
  files: ManifestFile[];
}

/**
 * One path segment: anything but `/`, `\` and control characters, and not exactly `.` or `..`
 * (the lookahead). `manifest.json` is excluded by a `not` in the schema.
 */
const SEGMENT = "(?!\\.\\.?(?:/|$))[^/\\\\\\u0000-\\u001f]+";

/**
 * A safe, canonical bundle path: relative (no leading `/`), posix separators only (no `\`), no empty
 * segments (so no `//` and no trailing `/`), no `.` or `..` segments, no control characters.
 * Canonical matters as much as safe: one file has exactly one spelling, so the verifier's walk of the
 * directory tree and the manifest's list can be compared path by path.
 */
const PATH_PATTERN = `^${SEGMENT}(?:/${SEGMENT})*$`;

/** The manifest's JSON Schema (draft-07). `additionalProperties: false` at every level. */
export const MANIFEST_SCHEMA = {
  $schema: "http://json-schema.org/draft-07/schema#",
  title: "dsv3 bundle manifest",
  type: "object",
  additionalProperties: false,
  required: ["format", "formatVersion", "compiler", "schedule", "files"],
  properties: {
    format: { const: BUNDLE_FORMAT },
    formatVersion: { const: BUNDLE_FORMAT_VERSION },
    compiler: {
      type: "object",
      additionalProperties: false,
      required: ["name", "version"],
      properties: {
        name: { const: COMPILER_NAME },
        version: { type: "string", minLength: 1 },
      },
    },
    schedule: { type: "string", minLength: 1 },
    files: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["path", "bytes", "sha256"],
        properties: {
          path: { type: "string", pattern: PATH_PATTERN, not: { const: MANIFEST_FILE } },
          bytes: { type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
          sha256: { type: "string", pattern: "^[0-9a-f]{64}$" },
        },
      },
    },
  },
} as const;

let compiled: ValidateFunction | undefined;

function schemaValidator(): ValidateFunction {
  // Compiled on first use, so importing this module stays cheap.
  compiled ??= new Ajv({ allErrors: true, strict: true }).compile(MANIFEST_SCHEMA);
  return compiled;
}

function formatAjvError(e: ErrorObject): string {
  const where = e.instancePath === "" ? "(root)" : e.instancePath;
  const params = e.params as Record<string, unknown>;
  if (e.keyword === "additionalProperties") {
    return `${where}: unknown property ${JSON.stringify(params["additionalProperty"])}`;
  }
  if (e.keyword === "const") {
    return `${where}: must be ${JSON.stringify(params["allowedValue"])}`;
  }
  if (e.keyword === "not" && e.instancePath.endsWith("/path")) {
    return `${where}: ${JSON.stringify(MANIFEST_FILE)} is reserved for the manifest itself`;
  }
  return `${where}: ${e.message ?? e.keyword}`;
}

/**
 * Checks `x` against the schema, then what a schema cannot say: files sorted by `comparePaths`
 * without duplicates, and no path that is both a file and a directory (`a` and `a/b`).
 * Returns error messages; an empty array means the manifest is valid.
 */
export function validateManifest(x: unknown): string[] {
  const validate = schemaValidator();
  if (!validate(x)) return (validate.errors ?? []).map(formatAjvError);
  const files = (x as BundleManifest).files;
  const errors: string[] = [];
  for (let i = 1; i < files.length; i++) {
    const prev = files[i - 1]!.path;
    const cur = files[i]!.path;
    const order = comparePaths(prev, cur);
    if (order === 0) errors.push(`/files/${i}/path: duplicate path ${JSON.stringify(cur)}`);
    else if (order > 0) {
      errors.push(`/files/${i}/path: ${JSON.stringify(cur)} is out of order (files must be sorted by path)`);
    }
  }
  errors.push(...findFileDirectoryConflicts(files.map((f) => f.path)).map(describeConflict));
  return errors;
}

/**
 * Why `path` is not a safe bundle path, or null when it is. Agrees with the schema's path rule
 * (a property test checks this), so anything the writer accepts the verifier accepts too.
 */
export function checkBundlePath(path: string): string | null {
  if (path === "") return "the path is empty";
  if (path.startsWith("/")) return "the path is absolute (starts with '/')";
  if (path.includes("\\")) return "the path contains a backslash (use '/' as the separator)";
  if (/[\u0000-\u001f]/.test(path)) return "the path contains a control character";
  const segments = path.split("/");
  if (segments.some((s) => s === "")) return "the path has an empty segment ('//' or a trailing '/')";
  if (segments.some((s) => s === "..")) return "the path has a '..' segment";
  if (segments.some((s) => s === ".")) return "the path has a '.' segment";
  if (path === MANIFEST_FILE) return `${JSON.stringify(MANIFEST_FILE)} is reserved for the manifest itself`;
  return null;
}

/** A path used both as a file and, by `path`, as a directory (`a` and `a/b`). */
export interface FileDirectoryConflict {
  file: string;
  path: string;
}

/**
 * The paths that are used both as a file and as a directory: such a set of files cannot exist on
 * disk. `paths` may be in any order; the result is sorted by `path`, then `file`.
 */
export function findFileDirectoryConflicts(paths: readonly string[]): FileDirectoryConflict[] {
  const set = new Set(paths);
  const conflicts: FileDirectoryConflict[] = [];
  for (const path of [...set].sort(comparePaths)) {
    const segments = path.split("/");
    for (let i = 1; i < segments.length; i++) {
      const file = segments.slice(0, i).join("/");
      if (set.has(file)) conflicts.push({ file, path });
    }
  }
  return conflicts;
}

export function describeConflict(c: FileDirectoryConflict): string {
  return `${JSON.stringify(c.file)} is a file, so ${JSON.stringify(c.path)} cannot be inside it`;
}

/**
 * Byte-wise order of the UTF-8 encodings: the same on every machine and locale. (JavaScript's `<`
 * compares UTF-16 code units, which orders characters above U+FFFF differently.)
 */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** The manifest for `files` (any order; paths assumed already checked). */
export function createManifest(
  files: Iterable<{ path: string; bytes: Uint8Array }>,
  meta: { compilerVersion: string; schedule: string },
): BundleManifest {
  const entries = [...files]
    .map((f) => ({ path: f.path, bytes: f.bytes.byteLength, sha256: sha256Hex(f.bytes) }))
    .sort((a, b) => comparePaths(a.path, b.path));
  return {
    format: BUNDLE_FORMAT,
    formatVersion: BUNDLE_FORMAT_VERSION,
    compiler: { name: COMPILER_NAME, version: meta.compilerVersion },
    schedule: meta.schedule,
    files: entries,
  };
}

/**
 * The canonical text of a manifest. Objects are rebuilt key by key, so the output's key order is
 * this function's, not the order the caller happened to build its object in.
 */
export function serializeManifest(m: BundleManifest): string {
  const canonical = {
    format: m.format,
    formatVersion: m.formatVersion,
    compiler: { name: m.compiler.name, version: m.compiler.version },
    schedule: m.schedule,
    files: m.files.map((f) => ({ path: f.path, bytes: f.bytes, sha256: f.sha256 })),
  };
  return JSON.stringify(canonical, null, 2) + "\n";
}
