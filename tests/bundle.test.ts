/**
 * The bundle contract: the manifest's schema and canonical form, the writer (deterministic, atomic,
 * refuses to clobber what is not a bundle) and the verifier (names every missing, modified and
 * unlisted file). The kill test SIGKILLs a real child process part-way through a write.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { Ajv } from "ajv";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  BundleError,
  removeStaleTemporaries,
  renderBundle,
  writeBundle,
  type BundleMeta,
} from "../runtime/bundle-writer.js";
import { verifyBundle, type BundleProblem } from "../runtime/bundle-verify.js";
import {
  MANIFEST_FILE,
  MANIFEST_SCHEMA,
  checkBundlePath,
  comparePaths,
  serializeManifest,
  validateManifest,
  type BundleManifest,
} from "../runtime/manifest.js";

const META: BundleMeta = { compilerVersion: "0.1.0", schedule: "dualpipe" };

/** A small bundle with nested folders, binary content and paths whose byte order is not UTF-16's. */
function sampleFiles(): Map<string, string | Uint8Array> {
  return new Map<string, string | Uint8Array>([
    ["spec.json", '{"model":"tiny"}\n'],
    ["plan/rank1.json", '{"rank":1}\n'],
    ["plan/rank0.json", '{"rank":0}\n'],
    ["kernels/gemm.cubin", new Uint8Array([0, 1, 2, 255, 254, 0, 7])],
    ["report/alpha.txt", "ok\n"],
    ["report/Zeta.txt", "upper case sorts first in byte order, unlike locale order\n"],
    ["report/\u{1F600}.txt", "astral: U+1F600 sorts after U+FF5E in UTF-8\n"],
    ["report/\uFF5E.txt", "BMP: U+FF5E\n"],
    ["empty.bin", new Uint8Array(0)],
  ]);
}

/** Every regular file under `dir`, by posix relative path. */
function readTree(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const visit = (rel: string): void => {
    for (const d of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const child = rel === "" ? d.name : `${rel}/${d.name}`;
      if (d.isDirectory()) visit(child);
      else out.set(child, readFileSync(join(dir, child)));
    }
  };
  visit("");
  return out;
}

function sortedEntries(tree: Map<string, Uint8Array>): [string, Buffer][] {
  return [...tree].map(([p, b]): [string, Buffer] => [p, Buffer.from(b)]).sort((a, b) => comparePaths(a[0], b[0]));
}

/** Names in `dir`'s parent that are temporaries or leftovers of writes to `dir`. */
function siblings(dir: string): string[] {
  const base = basename(dir);
  return readdirSync(dirname(dir))
    .filter((n) => n.startsWith(`${base}.tmp-`) || n.startsWith(`${base}.old-`))
    .sort();
}

function catchBundleError(f: () => void): BundleError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(BundleError);
    return e as BundleError;
  }
  throw new Error("expected a BundleError, but nothing was thrown");
}

function readManifest(dir: string): BundleManifest {
  return JSON.parse(readFileSync(join(dir, MANIFEST_FILE), "utf8")) as BundleManifest;
}

/** The pid of a process that has exited and been reaped. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", ""]);
  expect(r.pid).toBeGreaterThan(0);
  return r.pid!;
}

let scratch: string;
let dir: string;

beforeEach(() => {
  scratch = mkdtempSync(join(tmpdir(), "dsv3-bundle-test-"));
  dir = join(scratch, "out", "bundle");
});

afterEach(() => {
  rmSync(scratch, { recursive: true, force: true });
});

describe("manifest", () => {
  it("is sorted by UTF-8 bytes, canonical and schema-valid", () => {
    const rendered = renderBundle(sampleFiles(), META);
    const text = Buffer.from(rendered.get(MANIFEST_FILE)!).toString("utf8");
    const manifest = JSON.parse(text) as BundleManifest;
    expect(validateManifest(manifest)).toEqual([]);
    expect(serializeManifest(manifest)).toBe(text);
    expect(text.endsWith("}\n")).toBe(true);
    expect(Object.keys(manifest)).toEqual(["format", "formatVersion", "compiler", "schedule", "files"]);
    expect(manifest).toMatchObject({
      format: "dsv3-bundle",
      formatVersion: 1,
      compiler: { name: "dsv3", version: "0.1.0" },
      schedule: "dualpipe",
    });
    expect(manifest.files.map((f) => f.path)).toEqual([
      "empty.bin",
      "kernels/gemm.cubin",
      "plan/rank0.json",
      "plan/rank1.json",
      "report/Zeta.txt",
      "report/alpha.txt",
      "report/\uFF5E.txt",
      "report/\u{1F600}.txt",
      "spec.json",
    ]);
    // UTF-16 order would put the astral character first; the manifest must not.
    expect("report/\u{1F600}.txt" < "report/\uFF5E.txt").toBe(true);
    const empty = manifest.files.find((f) => f.path === "empty.bin")!;
    expect(empty).toEqual({
      path: "empty.bin",
      bytes: 0,
      sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    });
    expect(manifest.files.find((f) => f.path === "kernels/gemm.cubin")!.bytes).toBe(7);
    expect(manifest.files.some((f) => f.path === MANIFEST_FILE)).toBe(false);
  });

  it("serialises with a fixed key order whatever order the object was built in", () => {
    const m = JSON.parse(Buffer.from(renderBundle(sampleFiles(), META).get(MANIFEST_FILE)!).toString()) as BundleManifest;
    const shuffled = {
      files: m.files.map((f) => ({ sha256: f.sha256, bytes: f.bytes, path: f.path })),
      schedule: m.schedule,
      compiler: { version: m.compiler.version, name: m.compiler.name },
      formatVersion: m.formatVersion,
      format: m.format,
    } as BundleManifest;
    expect(serializeManifest(shuffled)).toBe(serializeManifest(m));
  });

  it("has additionalProperties: false on every object schema, and ajv accepts it in strict mode", () => {
    const objects: string[] = [];
    const visit = (node: unknown, where: string): void => {
      if (typeof node !== "object" || node === null) return;
      const n = node as Record<string, unknown>;
      if (n["type"] === "object") {
        objects.push(where);
        expect(n["additionalProperties"], where).toBe(false);
      }
      for (const [k, v] of Object.entries(n)) visit(v, `${where}/${k}`);
    };
    visit(MANIFEST_SCHEMA, "#");
    expect(objects).toEqual([
      "#",
      "#/properties/compiler",
      "#/properties/kernels/items",
      "#/properties/kernels/items/properties/files",
      "#/properties/kernels/items/properties/resources/anyOf/1",
      "#/properties/kernels/items/properties/choice",
      "#/properties/kernels/items/properties/launch",
      "#/properties/kernels/items/properties/launch/properties/params/items",
      "#/properties/kernels/items/properties/launch/properties/work",
      "#/properties/files/items",
    ]);
    expect(() => new Ajv({ strict: true }).compile(MANIFEST_SCHEMA)).not.toThrow();
  });

  it("rejects manifests that break the schema or the rules a schema cannot state", () => {
    const good = JSON.parse(Buffer.from(renderBundle(sampleFiles(), META).get(MANIFEST_FILE)!).toString()) as BundleManifest;
    const variant = (f: (m: Record<string, any>) => void): unknown => {
      const m = structuredClone(good) as Record<string, any>;
      f(m);
      return m;
    };
    const cases: [string, unknown, RegExp][] = [
      ["extra top-level property", variant((m) => (m["built"] = "2024-01-01")), /unknown property "built"/],
      ["extra file property", variant((m) => (m["files"][0].mtime = 1)), /\/files\/0: unknown property "mtime"/],
      ["extra compiler property", variant((m) => (m["compiler"].host = "x")), /\/compiler: unknown property "host"/],
      ["wrong format", variant((m) => (m["format"] = "zip")), /\/format: must be "dsv3-bundle"/],
      ["wrong version", variant((m) => (m["formatVersion"] = 2)), /\/formatVersion: must be 1/],
      ["upper-case hash", variant((m) => (m["files"][0].sha256 = m["files"][0].sha256.toUpperCase())), /\/files\/0\/sha256/],
      ["short hash", variant((m) => (m["files"][0].sha256 = "abc")), /\/files\/0\/sha256/],
      ["fractional size", variant((m) => (m["files"][0].bytes = 1.5)), /\/files\/0\/bytes/],
      ["negative size", variant((m) => (m["files"][0].bytes = -1)), /\/files\/0\/bytes/],
      ["absolute path", variant((m) => (m["files"][0].path = "/etc/passwd")), /\/files\/0\/path/],
      ["dot-dot path", variant((m) => (m["files"][0].path = "a/../b")), /\/files\/0\/path/],
      ["manifest listed", variant((m) => (m["files"][0].path = MANIFEST_FILE)), /reserved/],
      ["missing schedule", variant((m) => delete m["schedule"]), /must have required property 'schedule'/],
      ["unsorted", variant((m) => m["files"].reverse()), /out of order/],
      ["duplicate", variant((m) => m["files"].splice(1, 0, m["files"][1])), /duplicate path/],
      [
        "file and directory",
        variant((m) => m["files"].splice(2, 0, { ...m["files"][2], path: "plan" })),
        /"plan" is a file, so "plan\/rank0.json" cannot be inside it/,
      ],
      ["not an object", [], /\(root\): must be object/],
    ];
    for (const [name, value, pattern] of cases) {
      const errors = validateManifest(value);
      expect(errors.length, name).toBeGreaterThan(0);
      expect(errors.join("\n"), name).toMatch(pattern);
    }
  });

  it("checkBundlePath agrees with the schema's path rule", () => {
    const pathOf = (p: string): unknown => ({
      format: "dsv3-bundle",
      formatVersion: 1,
      compiler: { name: "dsv3", version: "1" },
      schedule: "s",
      files: [{ path: p, bytes: 0, sha256: "0".repeat(64) }],
    });
    const piece = fc.constantFrom("a", "b.json", ".", "..", "/", "\\", "\u0000", "\n", "\u2028", "\u{1F600}", "manifest.json", " ", "...");
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 8 }).map((xs) => xs.join("")), (p) => {
        const schemaOk = validateManifest(pathOf(p)).length === 0;
        expect(checkBundlePath(p) === null, JSON.stringify(p)).toBe(schemaOk);
      }),
      { numRuns: 2000 },
    );
    for (const ok of ["a", "plan/rank0.json", "...", ".hidden", "a/.b/c..", "sub/manifest.json"]) {
      expect(checkBundlePath(ok), ok).toBeNull();
    }
    for (const bad of ["", "/a", "a\\b", "a//b", "a/", "./a", "a/./b", "../a", "a/..", "manifest.json", "a\u0000b"]) {
      expect(checkBundlePath(bad), JSON.stringify(bad)).not.toBeNull();
    }
  });
});

describe("writeBundle and verifyBundle", () => {
  it("round-trips: what is written verifies, and the tree is exactly the rendered bundle", () => {
    writeBundle(dir, sampleFiles(), META);
    expect(verifyBundle(dir)).toEqual({ ok: true, problems: [] });
    expect(sortedEntries(readTree(dir))).toEqual(sortedEntries(renderBundle(sampleFiles(), META)));
    expect(readFileSync(join(dir, "plan", "rank0.json"), "utf8")).toBe('{"rank":0}\n');
    expect(siblings(dir)).toEqual([]);
  });

  it("writes byte-identical trees for identical input, whatever the map's insertion order", () => {
    const a = join(scratch, "a");
    const b = join(scratch, "b");
    writeBundle(a, sampleFiles(), META);
    writeBundle(b, new Map([...sampleFiles()].reverse()), { schedule: META.schedule, compilerVersion: META.compilerVersion });
    const treeA = sortedEntries(readTree(a));
    const treeB = sortedEntries(readTree(b));
    expect(treeA.map(([p]) => p)).toEqual(treeB.map(([p]) => p));
    for (let i = 0; i < treeA.length; i++) {
      expect(treeA[i]![1].equals(treeB[i]![1]), treeA[i]![0]).toBe(true);
    }
    // The manifest records nothing about where or when it was written.
    const text = readFileSync(join(a, MANIFEST_FILE), "utf8");
    expect(text).not.toContain(scratch);
    expect(text).not.toMatch(/20\d\d-\d\d-\d\d/);
  });

  it("reports a flipped byte as `modified`, naming the file", () => {
    writeBundle(dir, sampleFiles(), META);
    const target = join(dir, "kernels", "gemm.cubin");
    const bytes = readFileSync(target);
    bytes[3] = bytes[3]! ^ 0x01;
    writeFileSync(target, bytes);
    const r = verifyBundle(dir);
    expect(r.ok).toBe(false);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toMatchObject({ kind: "modified", path: "kernels/gemm.cubin" });
    expect(r.problems[0]!.detail).toMatch(/^sha256 is [0-9a-f]{64}, manifest says [0-9a-f]{64}$/);
  });

  it("reports a changed size as `modified`", () => {
    writeBundle(dir, sampleFiles(), META);
    writeFileSync(join(dir, "spec.json"), "{}\n");
    expect(verifyBundle(dir).problems).toEqual([
      { kind: "modified", path: "spec.json", detail: "size is 3 bytes, manifest says 17" },
    ]);
  });

  it("reports a deleted file as `missing`, naming it", () => {
    writeBundle(dir, sampleFiles(), META);
    unlinkSync(join(dir, "plan", "rank1.json"));
    const r = verifyBundle(dir);
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([{ kind: "missing", path: "plan/rank1.json", detail: "listed in the manifest but not found" }]);
  });

  it("reports stray files and links as `unlisted`, but not stray empty directories", () => {
    writeBundle(dir, sampleFiles(), META);
    writeFileSync(join(dir, "stray.txt"), "x");
    writeFileSync(join(dir, "plan", "rank9.json"), "{}");
    mkdirSync(join(dir, "empty-dir"));
    symlinkSync("spec.json", join(dir, "link.json"));
    const r = verifyBundle(dir);
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([
      { kind: "unlisted", path: "link.json", detail: "a symbolic link not listed in the manifest" },
      { kind: "unlisted", path: "plan/rank9.json", detail: "a file not listed in the manifest" },
      { kind: "unlisted", path: "stray.txt", detail: "a file not listed in the manifest" },
    ]);
  });

  it("does not accept a symbolic link in place of a listed file", () => {
    writeBundle(dir, sampleFiles(), META);
    const copy = join(scratch, "outside.json");
    writeFileSync(copy, readFileSync(join(dir, "spec.json")));
    unlinkSync(join(dir, "spec.json"));
    symlinkSync(copy, join(dir, "spec.json"));
    expect(verifyBundle(dir).problems).toEqual([
      { kind: "modified", path: "spec.json", detail: "is a symbolic link, not a regular file" },
    ]);
  });

  it("sorts problems by path, then kind", () => {
    writeBundle(dir, sampleFiles(), META);
    unlinkSync(join(dir, "spec.json"));
    writeFileSync(join(dir, "empty.bin"), "now not empty");
    writeFileSync(join(dir, "aaa.txt"), "stray");
    const r = verifyBundle(dir);
    expect(r.problems.map((p) => [p.kind, p.path])).toEqual([
      ["unlisted", "aaa.txt"],
      ["modified", "empty.bin"],
      ["missing", "spec.json"],
    ]);
    expect(verifyBundle(dir)).toEqual(r);
  });

  it("reports corrupt, invalid and non-canonical manifests as `manifest-invalid`", () => {
    writeBundle(dir, sampleFiles(), META);
    const manifestPath = join(dir, MANIFEST_FILE);
    const original = readFileSync(manifestPath, "utf8");
    const only = (problems: BundleProblem[]): void => {
      expect(problems.length).toBeGreaterThan(0);
      for (const p of problems) expect(p).toMatchObject({ kind: "manifest-invalid", path: MANIFEST_FILE });
    };

    writeFileSync(manifestPath, original.slice(0, original.length / 2));
    let r = verifyBundle(dir);
    expect(r.ok).toBe(false);
    only(r.problems);
    expect(r.problems[0]!.detail).toMatch(/^not valid JSON/);

    writeFileSync(manifestPath, serializeManifest({ ...JSON.parse(original), schedule: "" }));
    only(verifyBundle(dir).problems);

    const extra = { ...JSON.parse(original), generatedAt: "now" };
    writeFileSync(manifestPath, JSON.stringify(extra, null, 2) + "\n");
    r = verifyBundle(dir);
    only(r.problems);
    expect(r.problems[0]!.detail).toMatch(/unknown property "generatedAt"/);

    writeFileSync(manifestPath, JSON.stringify(JSON.parse(original)));
    r = verifyBundle(dir);
    only(r.problems);
    expect(r.problems[0]!.detail).toMatch(/canonical/);

    writeFileSync(manifestPath, original);
    expect(verifyBundle(dir).ok).toBe(true);
  });

  it("reports `no-manifest` for a missing directory, a file, or a directory without a manifest", () => {
    expect(verifyBundle(join(scratch, "nowhere"))).toMatchObject({ ok: false, problems: [{ kind: "no-manifest" }] });
    const file = join(scratch, "file");
    writeFileSync(file, "x");
    expect(verifyBundle(file)).toMatchObject({ ok: false, problems: [{ kind: "no-manifest" }] });
    writeBundle(dir, sampleFiles(), META);
    unlinkSync(join(dir, MANIFEST_FILE));
    expect(verifyBundle(dir).problems).toEqual([{ kind: "no-manifest", path: MANIFEST_FILE, detail: "manifest.json not found" }]);
  });

  it("rejects unsafe paths with `unsafe-path`, before touching the disk", () => {
    const bad = ["/etc/passwd", "../escape", "a/../../b", "a\\b", "a//b", "a/", "", "./a", MANIFEST_FILE, "x\u0000y"];
    for (const path of bad) {
      const files = new Map(sampleFiles()).set(path, "evil");
      const e = catchBundleError(() => writeBundle(dir, files, META));
      expect(e.code, JSON.stringify(path)).toBe("unsafe-path");
      expect(e.path).toBe(path);
    }
    const conflict = catchBundleError(() => writeBundle(dir, new Map([["plan", "x"], ["plan/a", "y"]]), META));
    expect(conflict).toMatchObject({ code: "unsafe-path", path: "plan/a" });
    expect(existsSync(dirname(dir))).toBe(false);
  });

  it("refuses to replace a directory that is not a bundle, and leaves it untouched", () => {
    mkdirSync(join(dir, "sub"), { recursive: true });
    writeFileSync(join(dir, "thesis.tex"), "years of work");
    writeFileSync(join(dir, "sub", "data.csv"), "1,2,3");
    const before = sortedEntries(readTree(dir));
    const e = catchBundleError(() => writeBundle(dir, sampleFiles(), META));
    expect(e.code).toBe("not-a-bundle");
    expect(e.path).toBe(dir);
    expect(sortedEntries(readTree(dir))).toEqual(before);
    expect(siblings(dir)).toEqual([]);

    // A manifest.json that is not ours does not make the directory a bundle.
    writeFileSync(join(dir, MANIFEST_FILE), '{"name":"my-web-app","icons":[]}');
    expect(catchBundleError(() => writeBundle(dir, sampleFiles(), META)).code).toBe("not-a-bundle");
    expect(readFileSync(join(dir, "thesis.tex"), "utf8")).toBe("years of work");

    // Nor may a plain file be replaced.
    const file = join(scratch, "file");
    writeFileSync(file, "keep me");
    expect(catchBundleError(() => writeBundle(file, sampleFiles(), META)).code).toBe("not-a-bundle");
    expect(readFileSync(file, "utf8")).toBe("keep me");
  });

  it("reports file-system failures as `io`", () => {
    const file = join(scratch, "file");
    writeFileSync(file, "x");
    const e = catchBundleError(() => writeBundle(join(file, "bundle"), sampleFiles(), META));
    expect(e.code).toBe("io");
    expect(e.path).toBe(join(file, "bundle"));
    expect(readFileSync(file, "utf8")).toBe("x");
  });

  it("replaces an empty directory", () => {
    mkdirSync(dir, { recursive: true });
    writeBundle(dir, sampleFiles(), META);
    expect(verifyBundle(dir).ok).toBe(true);
  });

  it("replaces an existing bundle completely and leaves no siblings behind", () => {
    writeBundle(dir, new Map([["old-only.txt", "old"], ["spec.json", "old spec"]]), { ...META, schedule: "old" });
    writeBundle(dir, sampleFiles(), META);
    expect(verifyBundle(dir)).toEqual({ ok: true, problems: [] });
    expect(existsSync(join(dir, "old-only.txt"))).toBe(false);
    expect(readManifest(dir).schedule).toBe("dualpipe");
    expect(sortedEntries(readTree(dir))).toEqual(sortedEntries(renderBundle(sampleFiles(), META)));
    expect(siblings(dir)).toEqual([]);
  });

  it("removes its temporary directory and keeps the old bundle when a write fails", () => {
    writeBundle(dir, sampleFiles(), { ...META, schedule: "old" });
    const before = sortedEntries(readTree(dir));
    let calls = 0;
    expect(() =>
      writeBundle(dir, new Map([["a", "1"], ["b", "2"], ["c", "3"]]), META, {
        afterEachFile: () => {
          calls += 1;
          if (calls === 2) throw new Error("disk on fire");
        },
      }),
    ).toThrow("disk on fire");
    expect(calls).toBe(2);
    expect(siblings(dir)).toEqual([]);
    expect(sortedEntries(readTree(dir))).toEqual(before);
  });

  it("calls afterEachFile once per payload file, in path order", () => {
    const seen: string[] = [];
    writeBundle(dir, sampleFiles(), META, { afterEachFile: (p) => seen.push(p) });
    expect(seen).toEqual([...sampleFiles().keys()].sort(comparePaths));
  });

  it("treats a meta that would make an invalid manifest as a programming error", () => {
    expect(() => writeBundle(dir, sampleFiles(), { ...META, schedule: "" })).toThrow(TypeError);
    expect(existsSync(dir)).toBe(false);
  });
});

describe("removeStaleTemporaries", () => {
  let live: ChildProcess | undefined;
  afterEach(() => {
    live?.kill("SIGKILL");
    live = undefined;
  });

  it("removes leftovers of dead writers, keeps those of live ones", async () => {
    writeBundle(dir, sampleFiles(), META);
    const dead = deadPid();
    live = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
    await new Promise((r) => live!.once("spawn", r));
    const deadTmp = `${basename(dir)}.tmp-${dead}-0a1b2c`;
    const deadOld = `${basename(dir)}.old-${dead}-3d4e5f`;
    const liveTmp = `${basename(dir)}.tmp-${live.pid}-abcdef`;
    const unrelated = `${basename(dir)}.tmp-notapid`;
    for (const name of [deadTmp, deadOld, liveTmp, unrelated]) {
      mkdirSync(join(dirname(dir), name, "plan"), { recursive: true });
      writeFileSync(join(dirname(dir), name, "plan", "x"), "partial");
    }
    const r = removeStaleTemporaries(dir);
    expect(r).toEqual({ restored: null, removed: [deadOld, deadTmp].sort(comparePaths) });
    expect(siblings(dir)).toEqual([liveTmp, unrelated].sort());
    expect(verifyBundle(dir).ok).toBe(true);

    // writeBundle runs it first, and it never touches the live writer's directory.
    writeBundle(dir, sampleFiles(), META);
    expect(siblings(dir)).toEqual([liveTmp, unrelated].sort());
  });

  it("restores the old bundle when a writer died between its two renames", () => {
    writeBundle(dir, sampleFiles(), { ...META, schedule: "old" });
    const expected = sortedEntries(readTree(dir));
    const dead = deadPid();
    const old = `${basename(dir)}.old-${dead}-000001`;
    const tmp = `${basename(dir)}.tmp-${dead}-000002`;
    // What a kill between `rename(dir, old)` and `rename(tmp, dir)` leaves behind.
    renameSync(dir, join(dirname(dir), old));
    writeBundle(join(dirname(dir), tmp), new Map([["new.txt", "new"]]), META);
    expect(existsSync(dir)).toBe(false);

    expect(removeStaleTemporaries(dir)).toEqual({ restored: old, removed: [tmp] });
    expect(verifyBundle(dir).ok).toBe(true);
    expect(sortedEntries(readTree(dir))).toEqual(expected);
    expect(siblings(dir)).toEqual([]);
  });

  it("does nothing, and does not throw, when the parent does not exist", () => {
    expect(removeStaleTemporaries(join(scratch, "no", "such", "dir"))).toEqual({ restored: null, removed: [] });
  });
});

describe("kill safety (SIGKILL of a real writer process)", () => {
  const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
  const script = join(repo, "tests", "fixtures", "slow-bundle-writer.mjs");
  const FILE_COUNT = 200;
  const SLEEP_MS = 5;
  let filesJson: string;
  let work: string;

  /** Deterministic contents for the child to write, distinct per schedule. */
  function payload(schedule: string): Map<string, string> {
    const files = new Map<string, string>();
    for (let i = 0; i < FILE_COUNT; i++) {
      const folder = ["plan", "kernels", "report"][i % 3]!;
      files.set(`${folder}/f${String(i).padStart(3, "0")}.json`, `{"schedule":"${schedule}","i":${i}}\n`);
    }
    return files;
  }

  beforeAll(() => {
    // The child runs the compiled writer; make sure it exists and is not older than the source.
    const sources = ["bundle-writer", "bundle-verify", "manifest"];
    for (const name of sources) {
      const js = join(repo, "dist", "runtime", `${name}.js`);
      const ts = join(repo, "runtime", `${name}.ts`);
      if (!existsSync(js) || statSync(js).mtimeMs < statSync(ts).mtimeMs) {
        throw new Error(
          `the kill test runs the compiled writer, but ${js} is missing or older than ${ts}: ` +
            "run `npx tsc -p tsconfig.json` (npm test does this) and try again",
        );
      }
    }
    work = mkdtempSync(join(tmpdir(), "dsv3-bundle-kill-"));
    filesJson = join(work, "files.json");
    writeFileSync(filesJson, JSON.stringify(Object.fromEntries(payload("new"))));
  });

  afterAll(() => {
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  /**
   * Runs the child and SIGKILLs it once it reports `killAfter` files written (plus a random extra
   * 0–4 ms). Resolves when the child has exited and been reaped, with how far it got.
   */
  function runAndKill(target: string, killAfter: number): Promise<{ written: number; done: boolean; stderr: string }> {
    return new Promise((resolvePromise, reject) => {
      const child = spawn(process.execPath, [script, target, filesJson, "new", String(SLEEP_MS)], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let written = 0;
      let done = false;
      let stderr = "";
      let buffered = "";
      let killing = false;
      child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
      child.stdout!.on("data", (d: Buffer) => {
        buffered += d.toString();
        const lines = buffered.split("\n");
        buffered = lines.pop()!;
        for (const line of lines) {
          if (line.startsWith("file ")) written = Number(line.slice(5));
          if (line === "done") done = true;
        }
        if (!killing && written >= killAfter) {
          killing = true;
          setTimeout(() => child.kill("SIGKILL"), Math.floor(Math.random() * 5));
        }
      });
      child.on("error", reject);
      // 'exit' comes after the child is reaped, so its pid is no longer alive for removeStaleTemporaries.
      child.on("exit", () => resolvePromise({ written, done, stderr }));
    });
  }

  /** `dir` holds exactly the bundle the child would write for `schedule`. */
  function expectExactly(target: string, schedule: string): void {
    const expected = renderBundle(payload(schedule), { compilerVersion: "0.0.0-test", schedule });
    expect(sortedEntries(readTree(target))).toEqual(sortedEntries(expected));
  }

  /** One kill point in each fifth of the write, chosen at random within it. */
  function killPoints(): number[] {
    const trials = 5;
    return Array.from({ length: trials }, (_, i) => {
      const lo = Math.floor((i * FILE_COUNT) / trials) + 1;
      const hi = Math.floor(((i + 1) * FILE_COUNT) / trials);
      return lo + Math.floor(Math.random() * (hi - lo + 1));
    });
  }

  it("writes a complete bundle when left alone", async () => {
    const target = join(work, "alone", "bundle");
    const r = await runAndKill(target, Number.POSITIVE_INFINITY);
    expect(r.stderr).toBe("");
    expect(r).toMatchObject({ written: FILE_COUNT, done: true });
    expect(verifyBundle(target).ok).toBe(true);
    expectExactly(target, "new");
  });

  it("leaves no bundle or a complete one when killed during a first write", async () => {
    const points = killPoints();
    for (const [trial, killAfter] of points.entries()) {
      const target = join(work, `fresh-${trial}`, "bundle");
      const r = await runAndKill(target, killAfter);
      const context = `trial ${trial}: kill after ${killAfter} files, child wrote ${r.written}, done=${r.done}`;
      expect(r.stderr, context).toBe("");
      // Straight after the kill, before any recovery: absent, or complete and verified.
      if (existsSync(target)) {
        expect(verifyBundle(target).problems, context).toEqual([]);
        expectExactly(target, "new");
      }
      const cleaned = removeStaleTemporaries(target);
      expect(siblings(target), context).toEqual([]);
      if (!r.done && !existsSync(target)) expect(cleaned.removed.length, context).toBeGreaterThan(0);
    }
  });

  it("leaves the old bundle or the new one, never a mix, when killed while replacing", async () => {
    const points = killPoints();
    let sawOld = 0;
    for (const [trial, killAfter] of points.entries()) {
      const target = join(work, `replace-${trial}`, "bundle");
      writeBundle(target, payload("old"), { compilerVersion: "0.0.0-test", schedule: "old" });
      const r = await runAndKill(target, killAfter);
      const context = `trial ${trial}: kill after ${killAfter} files, child wrote ${r.written}, done=${r.done}`;
      expect(r.stderr, context).toBe("");
      // Straight after the kill: absent only if the kill fell between the two renames.
      if (existsSync(target)) expect(verifyBundle(target).problems, context).toEqual([]);
      removeStaleTemporaries(target);
      expect(verifyBundle(target).problems, context).toEqual([]);
      const schedule = readManifest(target).schedule;
      expect(["old", "new"], context).toContain(schedule);
      expectExactly(target, schedule);
      if (schedule === "old") sawOld += 1;
      expect(siblings(target), context).toEqual([]);
    }
    // Kills land before the 200th file's sleep ends, so most trials must have caught the write part-way.
    expect(sawOld).toBeGreaterThan(0);
  });
});
