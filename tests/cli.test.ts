/**
 * The `dsv3` command end to end: in-process through `runCli`, and as a real child process through
 * `node bin/dsv3.js` (which runs dist/, built by the test command before vitest starts; the children
 * run a private copy of bin/ and dist/, see `binPath`).
 *
 * Covers: `check --json` and its text form, `stats --json` against the DeepSeek-V3 figures,
 * deterministic and location-free bundles, `verify` catching a flipped byte and a missing file,
 * SIGKILL during `compile` (never a partial bundle at DIR; a bundle already there survives), and the
 * usage paths (`--version`, `--help`, unknown commands and flags).
 */
import { spawn, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  watch,
  writeFileSync,
  type FSWatcher,
} from "node:fs";
import { homedir, hostname, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli, type CliRun as Run } from "./fixtures/in-process-cli.js";
import { verifyBundle } from "../runtime/bundle-verify.js";
import { removeStaleTemporaries } from "../runtime/bundle-writer.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const DIST_MAIN = path.join(REPO, "dist", "cli", "main.js");
const V3 = "specs/deepseek-v3.dsv3";
const INVALID = "tests/fixtures/cli-invalid.dsv3";
const SYNTAX = "tests/fixtures/cli-syntax-error.dsv3";
const VERSION = (JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8")) as { version: string }).version;
/** `file:line:col: error DSVxxxx: message`, the head line of every rendered diagnostic. */
const DIAGNOSTIC_HEAD = /^(\S+?):(\d+):(\d+): error (DSV\d{4}): \S/m;

/** The child-process tests run the compiled command: say how to get it when it is not there. */
function requireDist(): void {
  if (!existsSync(DIST_MAIN)) {
    throw new Error(
      `${path.relative(REPO, DIST_MAIN)} is missing: bin/dsv3.js runs the compiled CLI. ` +
        "Build it with `npx tsc -p tsconfig.json` (`npm test` does this before vitest starts).",
    );
  }
}

/**
 * The child processes run a private copy of bin/ and dist/ (with package.json, and node_modules
 * linked), taken once: a `tsc` rebuilding dist/ while the tests run — another session, a watcher —
 * would otherwise hand a child half-written modules. The copy is byte for byte the real command.
 */
let binCopy: string | null = null;
function binPath(): string {
  requireDist();
  for (let attempt = 1; binCopy === null; attempt++) {
    const root = mkdtempSync(path.join(tmpdir(), "dsv3-cli-bin-"));
    cpSync(path.join(REPO, "bin"), path.join(root, "bin"), { recursive: true });
    cpSync(path.join(REPO, "dist"), path.join(root, "dist"), { recursive: true });
    cpSync(path.join(REPO, "package.json"), path.join(root, "package.json"));
    symlinkSync(path.join(REPO, "node_modules"), path.join(root, "node_modules"), "dir");
    const copy = path.join(root, "bin", "dsv3.js");
    // A copy taken in the middle of a rebuild does not load: take it again.
    const probe = spawnSync(process.execPath, [copy, "check", V3, "--json"], { cwd: REPO, encoding: "utf8", timeout: 60_000 });
    if (probe.status === 0 || attempt === 5) binCopy = copy;
    else {
      rmSync(root, { recursive: true, force: true });
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2_000);
    }
  }
  return binCopy;
}

afterAll(() => {
  if (binCopy !== null) rmSync(path.dirname(path.dirname(binCopy)), { recursive: true, force: true });
});

/** `node bin/dsv3.js ARGS` as a child process, from the repository root. */
function bin(...args: string[]): Run {
  const r = spawnSync(process.execPath, [binPath(), ...args], { cwd: REPO, encoding: "utf8", timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function json<T = Record<string, unknown>>(r: Run): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch (e) {
    throw new Error(`stdout is not JSON (exit ${r.code}): ${r.stdout.slice(0, 500)}\nstderr: ${r.stderr.slice(0, 500)}`, { cause: e });
  }
}

/** Every regular file under `dir`, by posix relative path. */
function readTree(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const visit = (rel: string): void => {
    for (const d of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const child = rel === "" ? d.name : `${rel}/${d.name}`;
      if (d.isDirectory()) visit(child);
      else out.set(child, readFileSync(path.join(dir, child)));
    }
  };
  visit("");
  return out;
}

function expectSameTree(a: string, b: string): void {
  const ta = readTree(a);
  const tb = readTree(b);
  expect([...ta.keys()].sort()).toEqual([...tb.keys()].sort());
  for (const [file, bytes] of ta) expect(bytes.equals(tb.get(file)!), `${file} differs between ${a} and ${b}`).toBe(true);
}

let scratch: string;

beforeAll(() => {
  expect(process.cwd(), "the CLI tests run from the repository root").toBe(REPO);
  scratch = mkdtempSync(path.join(tmpdir(), "dsv3-cli-test-"));
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** A fresh directory under the scratch folder. */
function fresh(name: string): string {
  const dir = path.join(scratch, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

// ── check ───────────────────────────────────────────────────────────────────────────────────────

describe("dsv3 check", () => {
  it("--json on the V3 spec: ok, no diagnostics, its three schedules", async () => {
    const r = await cli("check", V3, "--json");
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    const out = json(r);
    expect(out).toEqual({ ok: true, diagnostics: [], schedules: ["train", "prefill", "decode"] });
  });

  it("--json on an invalid spec: exit 1, ok false, each diagnostic with code, file, line and col", async () => {
    const r = await cli("check", INVALID, "--json");
    expect(r.code).toBe(1);
    const out = json<{ ok: boolean; diagnostics: Record<string, unknown>[]; schedules: string[] }>(r);
    expect(out.ok).toBe(false);
    expect(out.schedules).toEqual([]);
    expect(out.diagnostics.length).toBeGreaterThanOrEqual(3);
    for (const d of out.diagnostics) {
      expect(d["code"]).toMatch(/^DSV\d{4}$/);
      expect(["error", "warning"]).toContain(d["severity"]);
      expect(typeof d["message"]).toBe("string");
      expect(d["file"]).toBe(INVALID);
      expect(Number.isInteger(d["line"]) && (d["line"] as number) >= 1).toBe(true);
      expect(Number.isInteger(d["col"]) && (d["col"] as number) >= 1).toBe(true);
      expect("fix" in d).toBe(true);
    }
    // The three planted errors, each where it was planted (at the key or at the value).
    const text = readFileSync(path.join(REPO, INVALID), "utf8").split("\n");
    const planted: [string, string, string][] = [
      ["DSV2002", "hiden", "7168"],
      ["DSV3005", "layers", "0"],
      ["DSV3006", "mode", "fp9"],
    ];
    for (const [code, key, value] of planted) {
      const line = text.findIndex((l) => new RegExp(`^\\s*${key} = ${value}\\b`).test(l)) + 1;
      expect(line, `${key} = ${value} is in the fixture`).toBeGreaterThan(0);
      const cols = [text[line - 1]!.indexOf(key) + 1, text[line - 1]!.indexOf(` ${value}`) + 2];
      const d = out.diagnostics.find((x) => x["code"] === code);
      expect(d, `${code} reported`).toBeDefined();
      expect(d!["line"], code).toBe(line);
      expect(cols, code).toContain(d!["col"]);
    }
    expect(out.diagnostics.find((d) => d["code"] === "DSV2002")!["fix"]).toMatch(/hidden/);
  });

  it("text output: `file:line:col: error DSVxxxx: message`, the source line and a caret", async () => {
    const r = await cli("check", INVALID);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(DIAGNOSTIC_HEAD);
    const heads = [...r.stderr.matchAll(new RegExp(DIAGNOSTIC_HEAD.source, "gm"))];
    expect(heads.map((m) => m[4])).toEqual(expect.arrayContaining(["DSV2002", "DSV3005", "DSV3006"]));
    for (const m of heads) expect(m[1]).toBe(INVALID);
    expect(r.stderr).toMatch(/^ +\d+ \| +layers = 0$/m);
    expect(r.stderr).toMatch(/^ +\| +\^/m);
    expect(r.stderr).toMatch(/\d+ error\(s\), \d+ warning\(s\)/);
  });

  it("a syntax error: exit 1, with the lexer's and parser's codes at their lines", async () => {
    const r = await cli("check", SYNTAX, "--json");
    expect(r.code).toBe(1);
    const out = json<{ ok: boolean; diagnostics: { code: string; line: number; col: number }[] }>(r);
    expect(out.ok).toBe(false);
    expect(out.diagnostics).toEqual(expect.arrayContaining([
      expect.objectContaining({ code: "DSV1002", line: 2, col: 7 }),
      expect.objectContaining({ code: "DSV1004", line: 3 }),
    ]));
    const text = await cli("check", SYNTAX);
    expect(text.stderr).toMatch(new RegExp(`^${SYNTAX.replace(/\./g, "\\.")}:2:7: error DSV1002: `, "m"));
  });

  it("text output on the V3 spec says ok and names the schedules", async () => {
    const r = await cli("check", V3);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/ok/);
    expect(r.stdout).toMatch(/train, prefill, decode/);
  });

  it("a missing file: exit 1, DSV9001; a file that is not .dsv3: exit 2, DSV9011", async () => {
    const missing = await cli("check", "specs/no-such-spec.dsv3", "--json");
    expect(missing.code).toBe(1);
    expect(json<{ diagnostics: { code: string }[] }>(missing).diagnostics.map((d) => d.code)).toContain("DSV9001");
    const wrongKind = await cli("check", "package.json");
    expect(wrongKind.code).toBe(2);
    expect(wrongKind.stderr).toMatch(/error DSV9011: /);
  });

  it("as a child process: the same JSON and exit codes", async () => {
    const ok = bin("check", V3, "--json");
    expect(ok.code, ok.stderr).toBe(0);
    expect(json(ok)).toEqual(json(await cli("check", V3, "--json")));
    const bad = bin("check", INVALID, "--json");
    expect(bad.code).toBe(1);
    expect(json(bad)).toEqual(json(await cli("check", INVALID, "--json")));
    const text = bin("check", INVALID);
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(DIAGNOSTIC_HEAD);
  });
});

// ── stats ───────────────────────────────────────────────────────────────────────────────────────

describe("dsv3 stats", () => {
  const expected = {
    total: 671_026_419_200,
    active: 36_625_618_432,
    mtp: 11_610_068_224,
    kvBytesPerTokenBf16: 70_272,
  };

  function checkNumbers(out: { params: Record<string, unknown>; kvCache: Record<string, unknown> }): void {
    expect(out.params["total"]).toBe(expected.total);
    expect(out.params["active"]).toBe(expected.active);
    expect(out.params["mtp"]).toBe(expected.mtp);
    expect(out.kvCache["bytesPerTokenBf16"]).toBe(expected.kvBytesPerTokenBf16);
  }

  it("--json on the V3 spec: 671,026,419,200 total, 36,625,618,432 active, 11,610,068,224 MTP, 70,272 KV bytes/token", async () => {
    const r = await cli("stats", V3, "--json");
    expect(r.code, r.stderr).toBe(0);
    checkNumbers(json(r));
  });

  it("as a child process, with --schedule", async () => {
    const r = bin("stats", V3, "--json", "--schedule", "train");
    expect(r.code, r.stderr).toBe(0);
    checkNumbers(json(r));
  });

  it("text output, and an unknown schedule (exit 1, DSV9002)", async () => {
    const text = await cli("stats", V3);
    expect(text.code).toBe(0);
    expect(text.stdout.length).toBeGreaterThan(0);
    const unknown = await cli("stats", V3, "--schedule", "trian");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/error DSV9002: .*trian/);
  });

  it("on an invalid spec: exit 1 with diagnostics, nothing on stdout", async () => {
    const r = await cli("stats", INVALID, "--json");
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(DIAGNOSTIC_HEAD);
  });
});

// ── compile and verify ──────────────────────────────────────────────────────────────────────────

describe("dsv3 compile and dsv3 verify", () => {
  it("writes manifest.json, spec.json, stats.json and the plan, and verify passes", async () => {
    const dir = path.join(fresh("compile-basic"), "bundle");
    const r = await cli("compile", V3, "--schedule", "train", "-o", dir);
    expect(r.code, r.stderr).toBe(0);
    const files = [...readTree(dir).keys()].sort();
    expect(files.filter((f) => !/^(plan|graph|kernels)\//.test(f))).toEqual(["manifest.json", "spec.json", "stats.json"]);
    expect(files).toEqual(expect.arrayContaining(["plan/plan.json", "graph/model.ir", "kernels/kernel-specs.json"]));
    // One program per DualPipe pipeline rank (PP16), each listed by the plan.
    expect(files.filter((f) => f.startsWith("plan/programs/"))).toHaveLength(16);
    const manifest = JSON.parse(readFileSync(path.join(dir, "manifest.json"), "utf8")) as { schedule: string; compiler: { version: string }; files: { path: string }[] };
    expect(manifest.schedule).toBe("train");
    expect(manifest.compiler.version).toBe(VERSION);
    expect(manifest.files.map((f) => f.path)).toEqual(files.filter((f) => f !== "manifest.json"));
    expect(verifyBundle(dir)).toEqual({ ok: true, problems: [] });
    const v = await cli("verify", dir);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toMatch(/ok/);
    expect(json(await cli("verify", dir, "--json"))).toEqual({ ok: true, diagnostics: [] });
  });

  it("two compiles give byte-identical trees, whatever the path spelling; no path or host leaks into the bundle", async () => {
    const root = fresh("determinism");
    const a = path.join(root, "a");
    const b = path.join(root, "nested", "deeper", "b");
    const c = path.join(root, "c");
    expect((await cli("compile", V3, "--schedule", "decode", "-o", a)).code).toBe(0);
    expect((await cli("compile", V3, "--schedule", "decode", "-o", b)).code).toBe(0);
    expectSameTree(a, b);
    // The spec named by an absolute path, the bundle written by a child process.
    const child = bin("compile", path.join(REPO, V3), "--schedule", "decode", "-o", c);
    expect(child.code, child.stderr).toBe(0);
    expectSameTree(a, c);
    // Recompiling over an existing bundle gives the same bytes again.
    expect((await cli("compile", V3, "--schedule", "decode", "-o", a)).code).toBe(0);
    expectSameTree(a, b);

    const forbidden = [REPO, root, scratch, tmpdir(), homedir(), process.cwd(), "dsv3-cli-test-"];
    const host = hostname();
    if (host.length >= 4) forbidden.push(host);
    for (const [file, bytes] of readTree(a)) {
      const text = bytes.toString("utf8");
      for (const f of forbidden) expect(text.includes(f), `${file} contains ${JSON.stringify(f)}`).toBe(false);
      expect(text, `${file} contains an absolute path`).not.toMatch(/"\/(?:tmp|home|work|root|Users|var)\//);
      expect(text, `${file} contains a timestamp`).not.toMatch(/\b20\d\d-\d\d-\d\dT\d\d:/);
      if (file.endsWith(".json")) expect(() => JSON.parse(text), file).not.toThrow();
    }
  });

  it("verify: one flipped byte in spec.json → exit 1, DSV9005 naming spec.json", async () => {
    const dir = path.join(fresh("flip"), "bundle");
    expect((await cli("compile", V3, "--schedule", "train", "-o", dir)).code).toBe(0);
    const file = path.join(dir, "spec.json");
    const bytes = readFileSync(file);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = bytes[at]! ^ 0x01;
    writeFileSync(file, bytes);

    const r = await cli("verify", dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error DSV9005: .*spec\.json/);
    expect(r.stderr).not.toMatch(/stats\.json/);
    const j = json<{ ok: boolean; diagnostics: { code: string; message: string }[] }>(await cli("verify", dir, "--json"));
    expect(j.ok).toBe(false);
    expect(j.diagnostics).toHaveLength(1);
    expect(j.diagnostics[0]!.code).toBe("DSV9005");
    expect(j.diagnostics[0]!.message).toContain("spec.json");
    const child = bin("verify", dir);
    expect(child.code).toBe(1);
    expect(child.stderr).toMatch(/error DSV9005: .*spec\.json/);
  });

  it("verify: stats.json deleted → exit 1, DSV9004 naming stats.json", async () => {
    const dir = path.join(fresh("missing"), "bundle");
    expect((await cli("compile", V3, "--schedule", "train", "-o", dir)).code).toBe(0);
    unlinkSync(path.join(dir, "stats.json"));

    const r = await cli("verify", dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error DSV9004: .*stats\.json/);
    const j = json<{ ok: boolean; diagnostics: { code: string; message: string }[] }>(await cli("verify", dir, "--json"));
    expect(j.ok).toBe(false);
    expect(j.diagnostics.map((d) => d.code)).toEqual(["DSV9004"]);
    expect(j.diagnostics[0]!.message).toContain("stats.json");
    const child = bin("verify", dir);
    expect(child.code).toBe(1);
    expect(child.stderr).toMatch(/error DSV9004: .*stats\.json/);
  });

  it("verify: an extra file (DSV9006), a missing manifest or a missing directory (DSV9007)", async () => {
    const dir = path.join(fresh("extra"), "bundle");
    expect((await cli("compile", V3, "--schedule", "train", "-o", dir)).code).toBe(0);
    writeFileSync(path.join(dir, "notes.txt"), "hello\n");
    const extra = await cli("verify", dir);
    expect(extra.code).toBe(1);
    expect(extra.stderr).toMatch(/error DSV9006: .*notes\.txt/);
    unlinkSync(path.join(dir, "manifest.json"));
    expect((await cli("verify", dir)).stderr).toMatch(/error DSV9007: /);
    const gone = await cli("verify", path.join(scratch, "no-such-bundle"));
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/error DSV9007: /);
  });

  it("refuses to write over something that is not a bundle (DSV9003), and leaves it alone", async () => {
    const dir = fresh("not-a-bundle");
    writeFileSync(path.join(dir, "precious.txt"), "keep me\n");
    const r = await cli("compile", V3, "--schedule", "train", "-o", dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error DSV9003: /);
    expect(readdirSync(dir)).toEqual(["precious.txt"]);
  });

  it("compile needs -o (exit 2) and a schedule when the spec has several (exit 2); an unknown one is exit 1", async () => {
    const dir = path.join(fresh("usage"), "bundle");
    const noOut = await cli("compile", V3, "--schedule", "train");
    expect(noOut.code).toBe(2);
    expect(noOut.stderr).toMatch(/error DSV9009: /);
    const noSchedule = await cli("compile", V3, "-o", dir);
    expect(noSchedule.code).toBe(2);
    expect(noSchedule.stderr).toMatch(/error DSV9009: .*--schedule/);
    const unknown = await cli("compile", V3, "--schedule", "nope", "-o", dir);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/error DSV9002: /);
    const invalid = await cli("compile", INVALID, "--schedule", "train", "-o", dir);
    expect(invalid.code).toBe(1);
    expect(existsSync(dir)).toBe(false);
  });
});

// ── SIGKILL during compile ──────────────────────────────────────────────────────────────────────

describe("SIGKILL during `dsv3 compile` (a real child process)", () => {
  const TRIALS_FIRST_WRITE = 30;
  const TRIALS_REPLACE = 20;
  let typicalMs = 0;

  interface Outcome {
    killed: boolean;
    code: number | null;
    ms: number;
    stderr: string;
  }

  /**
   * When to SIGKILL: a delay after the start; or a delay after the writer's `.tmp-` (or `.old-`)
   * sibling of DIR appears, seen through fs.watch — so that some kills land inside the few
   * milliseconds in which files are written and renamed, not only in start-up.
   */
  type Kill = { afterMs: number } | { onSibling: "tmp" | "old"; thenMs: number } | null;

  /** Spawns `dsv3 compile` to `dir` and SIGKILLs it as `kill` says (never, if null). */
  function compileAndKill(dir: string, schedule: string, kill: Kill): Promise<Outcome> {
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const child = spawn(process.execPath, [binPath(), "compile", V3, "--schedule", schedule, "-o", dir], { cwd: REPO, stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (t: string) => void (stderr += t));
      let timer: NodeJS.Timeout | null = null;
      let watcher: FSWatcher | null = null;
      const killNow = (): void => void child.kill("SIGKILL");
      if (kill !== null && "afterMs" in kill) timer = setTimeout(killNow, kill.afterMs);
      else if (kill !== null) {
        const prefix = `${path.basename(dir)}.${kill.onSibling}-`;
        watcher = watch(path.dirname(dir), (_event, name) => {
          if (watcher === null || typeof name !== "string" || !name.startsWith(prefix)) return;
          watcher.close();
          watcher = null;
          if (kill.thenMs <= 0) killNow();
          else timer = setTimeout(killNow, kill.thenMs);
        });
      }
      child.on("error", reject);
      child.on("close", (code, signal) => {
        if (timer) clearTimeout(timer);
        watcher?.close();
        resolve({ killed: signal === "SIGKILL", code, ms: performance.now() - t0, stderr });
      });
    });
  }

  /** Trial i's kill: a third at a random moment of the run, a third late in it, a third on the writer's temporary. */
  function killFor(trial: number, sibling: "tmp" | "old"): Kill {
    switch (trial % 3) {
      case 0: return { afterMs: Math.random() * typicalMs };
      case 1: return { afterMs: typicalMs * (0.8 + 0.2 * Math.random()) };
      default: return { onSibling: sibling, thenMs: Math.random() < 0.5 ? 0 : Math.random() * 3 };
    }
  }

  function describeKill(k: Kill): string {
    if (k === null) return "no kill";
    return "afterMs" in k ? `kill after ${k.afterMs.toFixed(0)} ms` : `kill ${k.thenMs.toFixed(1)} ms after the .${k.onSibling}- directory appeared`;
  }

  /** Leftovers of killed writers next to `dir`: only its own `.tmp-`/`.old-` siblings may exist. */
  function siblings(dir: string): string[] {
    const base = path.basename(dir);
    return readdirSync(path.dirname(dir)).filter((n) => n !== base).sort();
  }

  function manifestSchedule(dir: string): string {
    return (JSON.parse(readFileSync(path.join(dir, "manifest.json"), "utf8")) as { schedule: string }).schedule;
  }

  /** Calibration: how long a whole compile takes as a child process (the kills fall within it). */
  beforeAll(async () => {
    requireDist();
    const dir = path.join(fresh("kill-calibrate"), "bundle");
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await compileAndKill(dir, "train", null);
      expect(r.code, r.stderr).toBe(0);
      times.push(r.ms);
    }
    expect(verifyBundle(dir).ok).toBe(true);
    typicalMs = [...times].sort((a, b) => a - b)[1]!;
    console.log(`cli.test: a child-process compile takes ${times.map((t) => t.toFixed(0)).join(", ")} ms; timed kills fall in [0, ${typicalMs.toFixed(0)}] ms`);
  });

  it(`first write: after a kill at a random moment, DIR is absent or a bundle that verifies (${TRIALS_FIRST_WRITE} trials)`, async () => {
    expect(typicalMs).toBeGreaterThan(0);
    const root = fresh("kill-first");
    const counts = { absent: 0, complete: 0, finished: 0, leftovers: 0 };
    for (let trial = 0; trial < TRIALS_FIRST_WRITE; trial++) {
      const dir = path.join(root, `bundle-${trial}`);
      const kill = killFor(trial, "tmp");
      const r = await compileAndKill(dir, "train", kill);
      const context = `trial ${trial}: ${describeKill(kill)}, killed=${r.killed}, exit=${r.code}, ${r.stderr.slice(0, 300)}`;
      if (!r.killed) {
        expect(r.code, context).toBe(0);
        counts.finished++;
      }
      if (!existsSync(dir)) {
        expect(r.killed, `${context}: a finished compile left no bundle`).toBe(true);
        counts.absent++;
      } else {
        expect(verifyBundle(dir), context).toEqual({ ok: true, problems: [] });
        expect(manifestSchedule(dir), context).toBe("train");
        counts.complete++;
      }
      for (const n of siblings(dir)) {
        expect(n, `${context}: unexpected entry next to DIR`).toMatch(/^bundle-\d+(?:\.(?:tmp|old)-\d+-[0-9a-f]+)?$/);
        if (n.startsWith(`${path.basename(dir)}.`)) counts.leftovers++; // a killed writer's temporary: cleaned by the next write
      }
    }
    // A later compile to a DIR cleans up what killed writers left next to it.
    const last = path.join(root, `bundle-${TRIALS_FIRST_WRITE - 1}`);
    const r = await compileAndKill(last, "train", null);
    expect(r.code, r.stderr).toBe(0);
    expect(siblings(last).filter((n) => n.startsWith(`bundle-${TRIALS_FIRST_WRITE - 1}.`))).toEqual([]);
    console.log(`cli.test: SIGKILL, first write: ${counts.absent} absent (${counts.leftovers} with a partial temporary left beside DIR), ${counts.complete} complete (${counts.finished} not killed in time)`);
  });

  it(`replacing a bundle: the old one or the new one, never a mix; a kill between the renames is recovered (${TRIALS_REPLACE} trials)`, async () => {
    expect(typicalMs).toBeGreaterThan(0);
    const root = fresh("kill-replace");
    const dir = path.join(root, "bundle");
    const counts = { old: 0, new: 0, restored: 0 };
    for (let trial = 0; trial < TRIALS_REPLACE; trial++) {
      // DIR holds a valid bundle of one schedule; the killed compile writes another.
      const [before, after] = trial % 2 === 0 ? ["train", "decode"] : ["decode", "train"];
      const setup = await compileAndKill(dir, before, null);
      expect(setup.code, setup.stderr).toBe(0);
      expect(manifestSchedule(dir)).toBe(before);

      // On the writer's temporary, or on its `.old-` rename: the only moment DIR may be absent.
      const kill = killFor(trial, trial % 2 === 0 ? "tmp" : "old");
      const r = await compileAndKill(dir, after, kill);
      const context = `trial ${trial}: ${describeKill(kill)}, killed=${r.killed}, exit=${r.code}, ${r.stderr.slice(0, 300)}`;
      if (!existsSync(dir)) {
        // Killed between `rename(dir, old)` and `rename(tmp, dir)`: the old bundle waits under its `.old-` name.
        expect(r.killed, context).toBe(true);
        const recovery = removeStaleTemporaries(dir);
        expect(recovery.restored, `${context}: nothing restored (${siblings(dir).join(", ")})`).not.toBeNull();
        expect(existsSync(dir), context).toBe(true);
        counts.restored++;
      }
      expect(verifyBundle(dir), context).toEqual({ ok: true, problems: [] });
      const now = manifestSchedule(dir);
      expect([before, after], context).toContain(now);
      if (now === before) counts.old++;
      else counts.new++;
      if (!r.killed) {
        expect(r.code, context).toBe(0);
        expect(now, `${context}: finished, yet the old bundle is in place`).toBe(after);
      }
      // Recovery (as every later write runs it) leaves nothing behind and the bundle intact.
      removeStaleTemporaries(dir);
      expect(siblings(dir), context).toEqual([]);
      expect(verifyBundle(dir).ok, context).toBe(true);
    }
    console.log(`cli.test: SIGKILL, replace: ${counts.old} old kept, ${counts.new} new in place, ${counts.restored} restored after a kill between the renames`);
  });
});

describe("what a kill between the two renames leaves, made by hand (the window is microseconds wide)", () => {
  /** The pid of a process that has exited and been reaped. */
  function deadPid(): number {
    const r = spawnSync(process.execPath, ["-e", ""]);
    expect(r.pid).toBeGreaterThan(0);
    return r.pid!;
  }

  it("removeStaleTemporaries puts the old bundle back; verify passes; the next compile cleans up", async () => {
    const root = fresh("rename-window");
    const dir = path.join(root, "bundle");
    expect((await cli("compile", V3, "--schedule", "train", "-o", dir)).code).toBe(0);
    const pid = deadPid();
    // `rename(dir, dir.old-…)` done, `rename(dir.tmp-…, dir)` not: DIR is absent, the new bundle half written.
    renameSync(dir, `${dir}.old-${pid}-0123456789ab`);
    mkdirSync(`${dir}.tmp-${pid}-ba9876543210`);
    writeFileSync(path.join(`${dir}.tmp-${pid}-ba9876543210`, "spec.json"), "{\n");
    expect((await cli("verify", dir)).code).toBe(1);

    const recovery = removeStaleTemporaries(dir);
    expect(recovery.restored).toBe(`bundle.old-${pid}-0123456789ab`);
    expect(recovery.removed).toEqual([`bundle.tmp-${pid}-ba9876543210`]);
    expect((await cli("verify", dir)).code).toBe(0);
    expect(readdirSync(root)).toEqual(["bundle"]);

    // The same state again, this time left for `dsv3 compile` itself to recover before it writes.
    renameSync(dir, `${dir}.old-${pid}-0123456789ab`);
    mkdirSync(`${dir}.tmp-${pid}-ba9876543210`);
    const r = bin("compile", V3, "--schedule", "decode", "-o", dir);
    expect(r.code, r.stderr).toBe(0);
    expect(verifyBundle(dir).ok).toBe(true);
    expect((JSON.parse(readFileSync(path.join(dir, "manifest.json"), "utf8")) as { schedule: string }).schedule).toBe("decode");
    expect(readdirSync(root)).toEqual(["bundle"]);
  });
});

// ── usage ───────────────────────────────────────────────────────────────────────────────────────

describe("usage", () => {
  it("--version prints package.json's version", async () => {
    const r = await cli("--version");
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(VERSION);
    const child = bin("--version");
    expect(child.code).toBe(0);
    expect(child.stdout.trim()).toBe(VERSION);
  });

  it("--help, -h, help and no arguments print the usage and exit 0", async () => {
    for (const args of [["--help"], ["-h"], ["help"], []]) {
      const r = await cli(...args);
      expect(r.code, args.join(" ")).toBe(0);
      expect(r.stdout, args.join(" ")).toMatch(/usage:/);
      for (const command of ["check", "stats", "compile", "verify"]) expect(r.stdout).toContain(`dsv3 ${command}`);
    }
    const child = bin("--help");
    expect(child.code).toBe(0);
    expect(child.stdout).toMatch(/usage:/);
  });

  it("an unknown command exits 2 with DSV9009 (and a suggestion)", async () => {
    const r = await cli("chek", V3);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/error DSV9009: .*chek/);
    expect(r.stderr).toMatch(/check/);
    const child = bin("frobnicate");
    expect(child.code).toBe(2);
    expect(child.stderr).toMatch(/error DSV9009: /);
  });

  it("an unknown flag, or the wrong number of arguments, exits 2 with DSV9009", async () => {
    for (const args of [["check", V3, "--jsn"], ["check"], ["check", V3, V3], ["verify"]]) {
      const r = await cli(...args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr, args.join(" ")).toMatch(/error DSV9009: /);
    }
  });
});
