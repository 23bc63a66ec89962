/**
 * The commands built on the later modules, end to end through `runCli`: export (dsv3, ts, hf) and
 * import-hf round trips, fmt, pipeline (JSON and SVG) and eplb.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli } from "./fixtures/in-process-cli.js";
import { checkSpecFile } from "../compiler/check/index.js";



let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "dsv3-cli-commands-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SPECS = ["specs/deepseek-v3.dsv3", "specs/tiny.dsv3", "specs/deepseek-v2-lite.dsv3"];

describe("dsv3 export", () => {
  for (const spec of SPECS) {
    it(`${spec} → dsv3 and → ts read back to the same Spec`, async () => {
      const original = checkSpecFile(spec).spec;
      expect(original).not.toBeNull();
      for (const [to, ext] of [["dsv3", "dsv3"], ["ts", "ts"]] as const) {
        const out = path.join(dir, `${path.basename(spec, ".dsv3")}.${ext}`);
        const r = await cli("export", spec, "--to", to, "-o", out);
        expect(r.stderr).toBe("");
        expect(r.code).toBe(0);
        const back = await cli("check", out, "--json");
        expect(JSON.parse(back.stdout).ok).toBe(true);
        const compiled = path.join(dir, `bundle-${to}-${path.basename(spec)}`);
        expect((await cli("compile", out, "--schedule", original!.schedules[0]!.name, "-o", compiled)).code).toBe(0);
        expect(JSON.parse(readFileSync(path.join(compiled, "spec.json"), "utf8"))).toEqual(original);
      }
    });
  }

  it("the canonical .dsv3 form is fmt-clean", async () => {
    const out = path.join(dir, "canonical.dsv3");
    expect((await cli("export", "specs/tiny.dsv3", "--to", "dsv3", "-o", out)).code).toBe(0);
    const r = await cli("fmt", "--check", out);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
  });

  it("→ hf → import-hf preserves the model", async () => {
    const hf = path.join(dir, "config.json");
    expect((await cli("export", "specs/deepseek-v3.dsv3", "--to", "hf", "-o", hf)).code).toBe(0);
    const imported = path.join(dir, "imported.dsv3");
    const r = await cli("import-hf", hf, "-o", imported);
    expect(r.code).toBe(0);
    const a = checkSpecFile("specs/deepseek-v3.dsv3").spec!;
    const b = checkSpecFile(imported.split(path.sep).join("/")).spec!;
    // The HF format has no field for the sequence-wise balance weight: it travels as aux_loss_alpha.
    expect(b.model).toEqual(a.model);
  });

  it("rejects a missing or unknown --to", async () => {
    expect((await cli("export", "specs/tiny.dsv3")).stderr).toMatch(/DSV9009: 'dsv3 export' needs --to/);
    const r = await cli("export", "specs/tiny.dsv3", "--to", "hff");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/did you mean 'hf'\?/);
  });
});

describe("dsv3 import-hf", () => {
  it("imports the reference V3 config to a spec whose stats equal specs/deepseek-v3.dsv3", async () => {
    const out = path.join(dir, "v3.dsv3");
    expect((await cli("import-hf", "tests/fixtures/hf-DeepSeek-V3.json", "-o", out, "--with-schedules")).code).toBe(0);
    const a = await cli("stats", "specs/deepseek-v3.dsv3", "--json");
    const b = await cli("stats", out, "--json");
    const pa = JSON.parse(a.stdout), pb = JSON.parse(b.stdout);
    expect(pb.params).toEqual(pa.params);
    expect(pb.kvCache).toEqual(pa.kvCache);
  });

  it("reports an unknown architecture as a coded error and writes nothing", async () => {
    const cfg = path.join(dir, "llama.json");
    writeFileSync(cfg, JSON.stringify({ architectures: ["LlamaForCausalLM"], hidden_size: 4096 }));
    const out = path.join(dir, "llama.dsv3");
    const r = await cli("import-hf", cfg, "-o", out);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error DSV7003/);
    expect(() => readFileSync(out)).toThrow();
  });
});

describe("dsv3 fmt", () => {
  it("rewrites a messy file, then --check passes", async () => {
    const f = path.join(dir, "messy.dsv3");
    writeFileSync(f, readFileSync("tests/fixtures/fmt-messy.dsv3"));
    expect((await cli("fmt", "--check", f)).code).toBe(1);
    expect((await cli("fmt", f)).code).toBe(0);
    expect(readFileSync(f, "utf8")).toBe(readFileSync("tests/fixtures/fmt-messy.formatted.dsv3", "utf8"));
    expect((await cli("fmt", "--check", f)).code).toBe(0);
  });
});

describe("dsv3 pipeline", () => {
  it("prints the schedule as JSON with the contract's fields and writes an SVG", async () => {
    const svg = path.join(dir, "dualpipe.svg");
    const r = await cli("pipeline", "--kind", "dualpipe", "--stages", "8", "--microbatches", "20", "--json", "--svg", svg);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as { ranks: { rank: number; ops: { op: string; mb: number; dir: number; start: number; end: number }[] }[]; bubble: number; makespan: number; activationPeak: number };
    expect(j.ranks).toHaveLength(8);
    expect(j.activationPeak).toBe(9);
    for (const rank of j.ranks) {
      const keys = new Set(rank.ops.map((o) => `${o.op}${o.dir}:${o.mb}`));
      expect(keys.size).toBe(rank.ops.length); // each (op, dir, mb) once
    }
    const text = readFileSync(svg, "utf8");
    expect(text.startsWith("<svg")).toBe(true);
    expect(text).toContain("</svg>");
  });

  it("refuses DualPipe on an odd number of stages with DSV5005", async () => {
    const r = await cli("pipeline", "--kind", "dualpipe", "--stages", "5", "--microbatches", "20");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error DSV5005/);
  });

  it("parses --cost and rejects a malformed one", async () => {
    const ok = await cli("pipeline", "--kind", "zb1p", "--stages", "4", "--microbatches", "8", "--cost", "F=1,B=2,W=1", "--json");
    expect(JSON.parse(ok.stdout).bubble).toBe(3); // (PP-1)(F+B-2W)
    const bad = await cli("pipeline", "--kind", "zb1p", "--stages", "4", "--microbatches", "8", "--cost", "F=x");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/DSV9009/);
  });
});

describe("dsv3 eplb", () => {
  it("reproduces the public EPLB example's placement", async () => {
    const r = await cli("eplb", "--load", "tests/fixtures/eplb-readme-load.json", "--replicas", "16", "--groups", "4", "--nodes", "2", "--gpus", "8", "--json");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as { phy2log: number[][]; logcnt: number[][] };
    expect(j.phy2log).toEqual([
      [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
      [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
    ]);
    expect(j.logcnt.map((row) => row.reduce((a, b) => a + b, 0))).toEqual([16, 16]);
  });
});

describe("dsv3 plan", () => {
  it("plans DeepSeek-V3 train within 80 GB on every GPU (JSON: memory.peakBytes and memory.perGpu)", async () => {
    const r = await cli("plan", "specs/deepseek-v3.dsv3", "--schedule", "train", "--json");
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { memory: { peakBytes: number; perGpu: unknown[] } };
    expect(j.memory.perGpu).toHaveLength(2048);
    expect(j.memory.peakBytes).toBeLessThan(80e9);
  });

  it("points a plan that does not fit at its schedule block in the spec", async () => {
    const f = path.join(dir, "v3-big-microbatches.dsv3");
    writeFileSync(f, readFileSync("specs/deepseek-v3.dsv3", "utf8").replace("microbatches = 120", "microbatches = 40").replace('import "clusters/', `import "${path.resolve("specs/clusters")}/`));
    const r = await cli("plan", f, "--schedule", "train");
    expect(r.code).toBe(1);
    const line = readFileSync(f, "utf8").split("\n").findIndex((l) => l.startsWith("training train")) + 1;
    expect(r.stderr).toMatch(new RegExp(`:${line}:1: error DSV5501: schedule 'train' does not fit in memory`));
    expect(r.stdout).toMatch(/memory per GPU/); // the draft plan is still shown
    const c = await cli("compile", f, "--schedule", "train", "-o", path.join(dir, "nofit"));
    expect(c.code).toBe(1);
    expect(() => readFileSync(path.join(dir, "nofit", "manifest.json"))).toThrow();
  });
});

describe("dsv3 compile lowers the model", () => {
  it("writes the fused Graph IR and its KernelSpecs, and --dump-after prints the graph after a pass", async () => {
    const out = path.join(dir, "lowered");
    const r = await cli("compile", "specs/tiny.dsv3", "--schedule", "decode", "-o", out, "--dump-after=absorb-mla");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^\/\/ after absorb-mla:\nmodel tiny-v3 phase=decode/);
    expect(r.stderr).toMatch(/mla_absorb_uk/);
    const ir = readFileSync(path.join(out, "graph", "model.ir"), "utf8");
    expect(ir).toMatch(/= fused mla_decode_attention\(/);
    const kernels = JSON.parse(readFileSync(path.join(out, "kernels", "kernel-specs.json"), "utf8")) as { kind: string }[];
    expect(kernels.map((k) => k.kind)).toEqual(expect.arrayContaining(["rmsnorm_quantize", "gemm", "gate_topk", "moe_permute", "mla_decode_attention"]));
  });

  it("rejects an unknown pass with a did-you-mean", async () => {
    const r = await cli("compile", "specs/tiny.dsv3", "--schedule", "decode", "-o", path.join(dir, "x"), "--dump-after=fuse");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/DSV9009: unknown pass 'fuse' for --dump-after/);
    expect(r.stderr).toMatch(/did you mean 'fuse-kernels'\?/);
  });
});

describe("dsv3 run", () => {
  it("trains tiny on the CPU: first loss near ln(vocab), byte-identical JSON for a seed", async () => {
    const a = await cli("run", "specs/tiny.dsv3", "--backend", "cpu", "--steps", "2", "--seed", "7", "--json");
    expect(a.code, a.stderr).toBe(0);
    const j = JSON.parse(a.stdout) as { losses: number[]; expertLoad: number[][] };
    expect(j.losses).toHaveLength(2);
    expect(Math.abs(j.losses[0]! - Math.log(512))).toBeLessThan(0.25);
    expect(j.expertLoad.length).toBeGreaterThan(0);
    const b = await cli("run", "specs/tiny.dsv3", "--backend", "cpu", "--steps", "2", "--seed", "7", "--json");
    expect(b.stdout).toBe(a.stdout);
  });

  it("refuses a backend it does not have", async () => {
    const r = await cli("run", "specs/tiny.dsv3", "--backend", "gpu");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/DSV9009: backend 'gpu' is not available/);
  });
});

describe("dsv3 run --generate", () => {
  it("speculative decoding with the MTP module outputs exactly the greedy tokens", async () => {
    const args = ["run", "specs/tiny.dsv3", "--backend", "cpu", "--generate", "12", "--prompt-tokens", "5,9,12", "--steps", "2", "--json"];
    const greedy = await cli(...args);
    const spec = await cli(...args, "--speculative");
    expect(greedy.code, greedy.stderr).toBe(0);
    expect(spec.code, spec.stderr).toBe(0);
    const g = JSON.parse(greedy.stdout) as { tokens: number[] };
    const s = JSON.parse(spec.stdout) as { tokens: number[]; drafted: number; acceptanceRate: number };
    expect(g.tokens).toHaveLength(12);
    expect(s.tokens).toEqual(g.tokens);
    expect(s.drafted).toBeGreaterThan(0);
    expect(s.acceptanceRate).toBeGreaterThanOrEqual(0);
    expect(s.acceptanceRate).toBeLessThanOrEqual(1);
  });

  it("needs both --generate and --prompt-tokens", async () => {
    const r = await cli("run", "specs/tiny.dsv3", "--backend", "cpu", "--generate", "4");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/DSV9009: decoding needs both --generate N and --prompt-tokens/);
  });
});
