/**
 * The Spec that comes out of the checker: the bundled specs give the figures of the reference
 * (FACTS.md, the Hugging Face configs), units and defaults are normalised, presets and imports
 * behave, and every Spec validates against the JSON Schema — which rejects what it should.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { checkSpecFile } from "../compiler/check/index.js";
import { validateSpec } from "../compiler/spec-schema.js";
import type { Spec, TrainingSchedule } from "../compiler/spec.js";
import { computeStats } from "../compiler/stats.js";
import { COMPILER_VERSION } from "../compiler/version.js";
import { deepseekV3Spec } from "./fixtures/spec-fixtures.js";

function specOf(file: string): Spec {
  const r = checkSpecFile(file);
  expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
  expect(r.spec).not.toBeNull();
  return r.spec!;
}

/** Check an in-memory spec; `files` serves imports. */
function checkText(text: string, files: Record<string, string> = {}) {
  return checkSpecFile("mem.dsv3", (f) => {
    const t = files[f];
    if (t === undefined) throw Object.assign(new Error("no such file"), { code: "ENOENT" });
    return t;
  }, text);
}

const BASE_MODEL = `model { vocab = 100  hidden = 64  layers = 2  attention mha { heads = 4  head_dim = 16 }  ffn dense { intermediate = 128 } }
precision { mode = bf16 }`;
const BASE_CLUSTER = `cluster { nodes = 1  gpus_per_node = 8  gpu = H800  nvlink = 160 GB/s  infiniband = 50 GB/s }`;

describe("specs/deepseek-v3.dsv3", () => {
  const spec = specOf("specs/deepseek-v3.dsv3");

  it("matches the reference figures exactly (FACTS.md)", () => {
    const stats = computeStats(spec);
    expect(stats.params.total).toBe(671_026_419_200);
    expect(stats.params.active).toBe(36_625_618_432);
    expect(stats.params.activeWithEmbedding).toBe(37_552_297_472);
    expect(stats.params.mtp).toBe(11_610_068_224);
    expect(stats.kvCache.bytesPerTokenBf16).toBe(70_272);
  });

  it("is the same model, precision, cluster and training schedule as the hand-written fixture", () => {
    const fixture = deepseekV3Spec();
    expect(spec.model).toEqual(fixture.model);
    expect({ ...spec.cluster, name: "" }).toEqual({ ...fixture.cluster, name: "" });
    expect(spec.schedules[0]).toEqual(fixture.schedules[0]);
    expect(spec.precision).toEqual(fixture.precision);
  });

  it("has the report's deployments: train PP16 DualPipe EP64, prefill on 32 GPUs, decode on 320", () => {
    expect(spec.schedules.map((s) => s.name)).toEqual(["train", "prefill", "decode"]);
    const [train, prefill, decode] = spec.schedules;
    expect(train).toMatchObject({ kind: "training", pipeline: "dualpipe", pp: 16, ep: 64, tp: 1, zero: 1, nodeLimit: 4, commSms: 20, seqLen: 4096, worldSize: 2048 });
    expect(prefill).toMatchObject({ kind: "prefill", gpus: 32, attention: { tp: 4, sp: true, dp: 8 }, moe: { ep: 32, redundantExperts: 32 } });
    expect(decode).toMatchObject({ kind: "decode", gpus: 320, attention: { tp: 4, sp: true, dp: 80 }, moe: { ep: 320, redundantExperts: 64, sharedAsRouted: true } });
  });

  it("derives the YaRN softmax scale of the report (≈ 0.13523)", () => {
    const a = spec.model.attention;
    expect(a.softmaxScale).toBeCloseTo(192 ** -0.5 * (0.1 * Math.log(40) + 1) ** 2, 12);
    expect(a.softmaxScale).toBeCloseTo(0.13523, 5);
  });
});

describe("the other bundled specs", () => {
  it("DeepSeek-V2-Lite has the checkpoint's 15,706,484,224 weights", () => {
    expect(computeStats(specOf("specs/deepseek-v2-lite.dsv3")).params.total).toBe(15_706_484_224);
  });

  it("tiny carries a schedule of every kind", () => {
    const spec = specOf("specs/tiny.dsv3");
    const pipelines = spec.schedules.filter((s): s is TrainingSchedule => s.kind === "training").map((s) => s.pipeline);
    expect(new Set(pipelines)).toEqual(new Set(["dualpipe", "dualpipev", "1f1b", "zb1p"]));
    expect(spec.schedules.some((s) => s.kind === "prefill")).toBe(true);
    expect(spec.schedules.some((s) => s.kind === "decode" && s.moe.redundantExperts > 0)).toBe(true);
    expect(spec.schedules.some((s) => s.kind === "training" && s.tp > 1 && s.sp)).toBe(true);
    expect(spec.schedules.some((s) => s.kind === "training" && s.zero === 1 && s.dp > 1 && s.nodeLimit !== null)).toBe(true);
  });
});

describe("normalisation", () => {
  it("converts units to bytes, bytes/s and FLOP/s", () => {
    const r = checkText(`${BASE_MODEL}
cluster { nodes = 1  gpus_per_node = 8  nvlink = 1.5 TB/s  infiniband = 400 GiB/s
  gpu { name = "X"  fp8_peak = 2 PFLOP/s  bf16_peak = 989 TFLOP/s  hbm = 96 GiB  hbm_bandwidth = 4.8 TB/s  sms = 132 } }`);
    expect(r.diagnostics).toEqual([]);
    const c = r.spec!.cluster;
    expect(c.nvlinkBytesPerS).toBe(1.5e12);
    expect(c.infinibandBytesPerS).toBe(400 * 2 ** 30);
    expect(c.gpu.hbmBytes).toBe(96 * 2 ** 30);
    expect(c.gpu.fp8FlopsPerS).toBe(2e15);
    expect(c.gpu.bf16FlopsPerS).toBe(989e12);
    expect(c.gpus).toBe(8);
  });

  it("fills defaults: dp from the cluster, micro-batch size, gate rules, backward tile", () => {
    const r = checkText(`${BASE_MODEL}\n${BASE_CLUSTER}\ntraining t { pp = 2  microbatches = 4  seq_len = 128  global_batch = 32 }`);
    expect(r.diagnostics).toEqual([]);
    const t = r.spec!.schedules[0] as TrainingSchedule;
    expect(t).toMatchObject({ pipeline: "1f1b", tp: 1, dp: 4, ep: 1, zero: 0, nodeLimit: null, microbatchSize: 2, worldSize: 8 });
    expect(r.spec!.precision.backwardActivationTile).toEqual([128, 1]);
    expect(r.spec!.model.normEps).toBe(1e-6);
  });

  it("spreads presets, the block's own attributes winning, and shadows built-in GPU presets", () => {
    const r = checkText(`${BASE_MODEL}
preset fast { nvlink = 900 GB/s  infiniband = 50 GB/s }
preset big { hbm = 141 GB }
cluster { nodes = 1  gpus_per_node = 8  ...fast  nvlink = 400 GB/s  gpu { ...H800  ...big  sms = 100 } }`);
    expect(r.diagnostics).toEqual([]);
    expect(r.spec!.cluster.nvlinkBytesPerS).toBe(400e9);
    expect(r.spec!.cluster.infinibandBytesPerS).toBe(50e9);
    expect(r.spec!.cluster.gpu).toMatchObject({ name: "H800", hbmBytes: 141e9, sms: 100, fp8FlopsPerS: 1979e12 });
  });

  it("imports files relative to the importer, each once, in declaration order", () => {
    const r = checkText(`import "lib/cluster.dsv3"\nimport "lib/../lib/cluster.dsv3"\n${BASE_MODEL}\ntraining b { microbatches = 1  seq_len = 8  global_batch = 8 }`, {
      "lib/cluster.dsv3": `import "sched.dsv3"\n${BASE_CLUSTER}`,
      "lib/sched.dsv3": `training a { microbatches = 1  seq_len = 8  global_batch = 8 }`,
    });
    expect(r.diagnostics).toEqual([]);
    expect(r.spec!.schedules.map((s) => s.name)).toEqual(["a", "b"]);
    expect([...r.sources.keys()].sort()).toEqual(["lib/cluster.dsv3", "lib/sched.dsv3", "mem.dsv3"]);
  });

  it("is deterministic: the same text gives the same Spec JSON", () => {
    const a = JSON.stringify(specOf("specs/tiny.dsv3"));
    const b = JSON.stringify(specOf("specs/tiny.dsv3"));
    expect(a).toBe(b);
  });
});

describe("the Spec JSON Schema", () => {
  const spec = specOf("specs/deepseek-v3.dsv3");

  it("accepts every bundled spec", () => {
    for (const f of ["specs/deepseek-v3.dsv3", "specs/tiny.dsv3", "specs/deepseek-v2-lite.dsv3"]) expect(validateSpec(specOf(f))).toEqual([]);
  });

  it("rejects an unknown property, a missing one, a wrong type and a bad enum", () => {
    const clone = (): Spec => JSON.parse(JSON.stringify(spec)) as Spec;
    const extra = clone() as unknown as { model: Record<string, unknown> };
    extra.model["extra"] = 1;
    expect(validateSpec(extra).join()).toMatch(/additional/);
    const missing = clone() as unknown as { cluster: Record<string, unknown> };
    delete missing.cluster["gpus"];
    expect(validateSpec(missing).join()).toMatch(/gpus/);
    const wrongType = clone() as unknown as { model: Record<string, unknown> };
    wrongType.model["layers"] = 61.5;
    expect(validateSpec(wrongType).join()).toMatch(/integer/);
    const badEnum = clone() as unknown as { schedules: Record<string, unknown>[] };
    badEnum.schedules[0]!["pipeline"] = "gpipe";
    expect(validateSpec(badEnum).length).toBeGreaterThan(0);
  });
});

describe("version", () => {
  it("COMPILER_VERSION equals package.json's version", () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
    expect(COMPILER_VERSION).toBe(pkg.version);
  });
});
