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
  /** The compiled GPU kernels (CUDA backend), in the order the backend lists them; absent if none. */
  kernels?: ManifestKernel[];
}

/** One generated kernel: its files in the bundle, ptxas's resource report, its choices and launch. */
export interface ManifestKernel {
  name: string;
  kind: string;
  /** The KernelSpec ids it implements. */
  specs: string[];
  /** Bundle paths; ptx and cubin are null when the bundle was compiled without nvcc. */
  files: { cuda: string; ptx: string | null; cubin: string | null };
  /** Null without nvcc. sharedBytes = static + the launch's dynamic shared memory. */
  resources: { registers: number; sharedBytes: number; spillStoreBytes: number; spillLoadBytes: number; stackBytes: number } | null;
  /** Derived kernel choices (tiles, stages, multicast, …). */
  choice: Record<string, unknown>;
  /** Grid, block, dynamic shared memory and parameters bound to KernelSpec tensors. */
  launch: Record<string, unknown>;
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
    kernels: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name", "kind", "specs", "files", "resources", "choice", "launch"],
        properties: {
          name: { type: "string", pattern: "^[A-Za-z_][A-Za-z0-9_]*$" },
          kind: { type: "string", minLength: 1 },
          specs: { type: "array", items: { type: "string" } },
          files: {
            type: "object",
            additionalProperties: false,
            required: ["cuda", "ptx", "cubin"],
            properties: {
              cuda: { type: "string", pattern: PATH_PATTERN },
              ptx: { anyOf: [{ type: "string", pattern: PATH_PATTERN }, { type: "null" }] },
              cubin: { anyOf: [{ type: "string", pattern: PATH_PATTERN }, { type: "null" }] },
            },
          },
          resources: {
            anyOf: [
              { type: "null" },
              {
                type: "object",
                additionalProperties: false,
                required: ["registers", "sharedBytes", "spillStoreBytes", "spillLoadBytes", "stackBytes"],
                properties: {
                  registers: { type: "integer", minimum: 0 },
                  sharedBytes: { type: "integer", minimum: 0 },
                  spillStoreBytes: { type: "integer", minimum: 0 },
                  spillLoadBytes: { type: "integer", minimum: 0 },
                  stackBytes: { type: "integer", minimum: 0 },
                },
              },
            ],
          },
          choice: {
            type: "object",
            additionalProperties: false,
            patternProperties: { "^[a-z][a-z0-9_]*$": { anyOf: [{ type: "number" }, { type: "string" }, { type: "boolean" }] } },
          },
          launch: {
            type: "object",
            additionalProperties: false,
            required: ["entry", "grid", "block", "sharedBytes", "params", "work"],
            properties: {
              entry: { type: "string", pattern: "^[A-Za-z_][A-Za-z0-9_]*$" },
              grid: { type: "array", minItems: 3, maxItems: 3, items: { type: "integer", minimum: 1 } },
              block: { type: "array", minItems: 3, maxItems: 3, items: { type: "integer", minimum: 1 } },
              sharedBytes: { type: "integer", minimum: 0 },
              params: {
                type: "array",
                items: {
                  type: "object",
                  additionalProperties: false,
                  required: ["kind", "name", "tensor"],
                  properties: {
                    kind: { enum: ["tensor", "tensor-map", "page-table"] },
                    name: { type: "string", minLength: 1 },
                    tensor: { type: "string", minLength: 1 },
                    type: { enum: ["bf16", "fp32", "e4m3", "i32", "u8"] },
                    elements: { type: "integer", minimum: 0 },
                    access: { enum: ["in", "out"] },
                    dims: { type: "array", items: { type: "integer", minimum: 1 } },
                    box: { type: "array", items: { type: "integer", minimum: 1 } },
                    swizzleBytes: { type: "integer" },
                    sequences: { type: "integer", minimum: 1 },
                    pages: { type: "integer", minimum: 1 },
                  },
                },
              },
              work: {
                type: "object",
                additionalProperties: false,
                required: ["flops", "bytes"],
                properties: { flops: { type: "number", minimum: 0 }, bytes: { type: "number", minimum: 0 } },
              },
            },
          },
        },
      },
    },
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
  meta: { compilerVersion: string; schedule: string; kernels?: ManifestKernel[] },
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
    ...(meta.kernels !== undefined ? { kernels: meta.kernels } : {}),
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
    ...(m.kernels !== undefined ? { kernels: m.kernels.map(canonicalKernel) } : {}),
  };
  return JSON.stringify(canonical, null, 2) + "\n";
}

/** A kernel entry with its keys in the canonical order (nested objects: keys sorted). */
function canonicalKernel(k: ManifestKernel): ManifestKernel {
  return {
    name: k.name,
    kind: k.kind,
    specs: [...k.specs],
    files: { cuda: k.files.cuda, ptx: k.files.ptx, cubin: k.files.cubin },
    resources:
      k.resources === null
        ? null
        : {
            registers: k.resources.registers,
            sharedBytes: k.resources.sharedBytes,
            spillStoreBytes: k.resources.spillStoreBytes,
            spillLoadBytes: k.resources.spillLoadBytes,
            stackBytes: k.resources.stackBytes,
          },
    choice: sortKeys(k.choice) as Record<string, unknown>,
    launch: sortKeys(k.launch) as Record<string, unknown>,
  };
}

function sortKeys(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(sortKeys);
  if (x !== null && typeof x === "object") {
    const o = x as Record<string, unknown>;
    return Object.fromEntries(Object.keys(o).sort().map((key) => [key, sortKeys(o[key])]));
  }
  return x;
}
