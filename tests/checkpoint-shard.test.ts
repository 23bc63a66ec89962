/**
 * Per-GPU shards (runtime/checkpoint/shard.ts, rank-slices.ts, rank-shard.ts) on every schedule of the
 * tiny spec (training with DualPipe, DualPipeV, 1F1B, ZB1P with TP, ZeRO-1 with EP; prefill with TP and
 * redundant experts; decode with shared experts served as routed):
 *   - every element of every model tensor is held by each data-parallel replica (the GPUs of one dp
 *     index for the dense parts; of one EP group for the routed experts), and the replicas hold the
 *     same values — the source's, bit for bit, when shards keep the checkpoint's dtypes;
 *   - the model put back together from one replica's shards gives the unsharded checkpoint's logits
 *     exactly;
 *   - with the recipe's dtypes, FP8 slices are the numerics' block quantisation of the source slice,
 *     and an FP8 source whose blocks line up is copied, not re-quantised;
 *   - the bundle verifies and is byte-identical when written twice; `dsv3 shard` writes it.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { roundToBf16 } from "../backends/reference/numerics/bf16.js";
import { checkSpecFile } from "../compiler/check/index.js";
import type { Spec } from "../compiler/spec.js";
import { quantiseBlocks } from "../runtime/checkpoint/fp8-blocks.js";
import { bindModelWeights, hfTensorSpecs } from "../runtime/checkpoint/hf-tensor-names.js";
import { loadModelWeights } from "../runtime/checkpoint/load-weights.js";
import { assembleFromShards, readRankShard, readShardIndex, type RankShard } from "../runtime/checkpoint/rank-shard.js";
import { openCheckpoint } from "../runtime/checkpoint/safetensors-index.js";
import { saveModelWeights } from "../runtime/checkpoint/save-weights.js";
import { shardCheckpoint, shardCheckpointForPlan, type RequantiseMode } from "../runtime/checkpoint/shard.js";
import { shardWeightSource } from "../runtime/checkpoint/shard-weight-source.js";
import { encodeFromNumbers } from "../runtime/checkpoint/dtypes.js";
import { writeSafetensors } from "../runtime/checkpoint/safetensors.js";
import { buildPlan } from "../compiler/plan/index.js";
import { runDistributedCheck, slicedWeightSource } from "../runtime/execute/distributed/index.js";
import { verifyBundle } from "../runtime/bundle-verify.js";
import { forwardFull } from "../runtime/execute/decode.js";
import { initModelWeights, type ModelWeights } from "../runtime/execute/model-weights.js";
import { cli } from "./fixtures/in-process-cli.js";

type F32 = Float32Array;

let dir: string;
let tiny: Spec;
let ckpt: string;
let source: Map<string, F32>;
let sourceLogits: F32;
const TOKENS = Int32Array.from([5, 17, 300, 2, 511, 64]);

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "dsv3-checkpoint-shard-"));
  tiny = checkSpecFile("specs/tiny.dsv3").spec!;
  ckpt = path.join(dir, "ckpt");
  const w = initModelWeights<F32>(tiny.model, 21, "f32");
  w.layers.forEach((l) => l.gateBias?.forEach((_, e) => (l.gateBias![e] = 0.01 * e)));
  await saveModelWeights(ckpt, tiny, w);
  const loaded = loadModelWeights(ckpt, tiny).weights!;
  source = bindModelWeights(tiny.model, loaded);
  sourceLogits = forwardFull(loaded, tiny.model, TOKENS).logits;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function shard(schedule: string, requantise: RequantiseMode, from = ckpt): { bundle: string; shards: RankShard[] } {
  const bundle = path.join(dir, `bundle-${schedule}-${requantise}-${path.basename(from)}`);
  const r = shardCheckpoint(tiny, schedule, from, bundle, { compilerVersion: "test", requantise });
  expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
  expect(r.written).not.toBeNull();
  const index = readShardIndex(bundle);
  if (!index.ok) throw new Error("no index");
  const shards = index.value.gpus.map((g) => {
    const s = readRankShard(bundle, g.gpu, index.value);
    if (!s.ok) throw new Error(s.diagnostics.map((d) => d.message).join("; "));
    return s.value;
  });
  return { bundle, shards };
}

const isExpert = (kind: string): boolean => kind === "expert" || kind === "shared-expert";

function only(shards: readonly RankShard[], keep: (kind: string) => boolean): RankShard[] {
  return shards.map((s) => ({ ...s, tensors: s.tensors.filter((t) => keep(t.slice.kind)) }));
}

function groups<K>(shards: readonly RankShard[], key: (s: RankShard) => K): RankShard[][] {
  const m = new Map<K, RankShard[]>();
  for (const s of shards) m.set(key(s), [...(m.get(key(s)) ?? []), s]);
  return [...m.values()];
}

/** Every tensor the schedule deploys: the whole model, but MTP modules only where it runs them. */
function deployedTensors(schedule: string): string[] {
  const s = tiny.schedules.find((x) => x.name === schedule)!;
  const mtp = s.kind === "training" ? tiny.model.mtp.depth : Math.min(s.mtpSpeculation, tiny.model.mtp.depth);
  return hfTensorSpecs(tiny.model)
    .filter((t) => t.role !== "mtp_duplicate" && (t.layer === null || t.layer < tiny.model.layers + mtp))
    .map((t) => t.name)
    .sort();
}

describe("shards of every tiny schedule", () => {
  const schedules = ["dualpipe", "dualpipev", "one_f_one_b", "zb1p_tp", "zero1_ep", "prefill", "decode"];
  for (const name of schedules) {
    it(`${name}: each replica covers every element with the source's values, and reassembles to the same logits`, () => {
      const { shards } = shard(name, "none");
      const dense = groups(only(shards, (k) => !isExpert(k)), (s) => s.coordinates.dp);
      const experts = groups(only(shards, isExpert), (s) => s.coordinates.epGroup);
      expect(dense.length).toBeGreaterThan(0);
      const check = (replica: RankShard[]): Map<string, { values: F32; covered: Uint8Array }> => {
        const assembled = assembleFromShards(replica);
        for (const [tensor, a] of assembled) {
          expect(a.covered.every((c) => c > 0), `${tensor} fully covered`).toBe(true);
          expect(Buffer.from(a.values.buffer).equals(Buffer.from(source.get(tensor)!.buffer.slice(source.get(tensor)!.byteOffset, source.get(tensor)!.byteOffset + source.get(tensor)!.byteLength))), tensor).toBe(true);
        }
        return assembled;
      };
      const denseNames = check(dense[0]!);
      for (const r of dense.slice(1)) expect([...check(r).keys()].sort()).toEqual([...denseNames.keys()].sort());
      const expertNames = experts.length > 0 ? check(experts[0]!) : new Map();
      for (const r of experts.slice(1)) expect([...check(r).keys()].sort()).toEqual([...expertNames.keys()].sort());
      // Dense and expert parts together: every tensor of the model.
      const shared = new Set([...denseNames.keys()].filter((k) => expertNames.has(k)));
      for (const k of shared) expect(k).toMatch(/shared_experts/); // served as routed: only in the slots
      expect([...new Set([...denseNames.keys(), ...expertNames.keys()])].sort()).toEqual(deployedTensors(name));
      // One replica's weights reassembled give the unsharded logits exactly.
      const w = initModelWeights<F32>(tiny.model, 0, "f32", 0);
      const views = bindModelWeights(tiny.model, w);
      for (const [tensor, a] of [...assembleFromShards([...dense[0]!, ...(experts[0] ?? [])])]) views.get(tensor)!.set(a.values);
      expect(forwardFull(w as ModelWeights<F32>, tiny.model, TOKENS).logits).toEqual(sourceLogits);
    });
  }

  it("decode: redundant replicas of experts sit on several GPUs, shared experts in slots, all copies equal", () => {
    const { shards } = shard("decode", "none");
    const placements = new Map<string, number>();
    for (const s of shards) for (const t of s.tensors) if (t.slice.kind === "expert" || t.slice.kind === "shared-expert") placements.set(t.slice.key + `@${s.gpu}`, (t.slice.slots ?? []).length);
    const copies = new Map<string, number>();
    for (const s of shards) for (const t of s.tensors) if (t.slice.kind === "expert") copies.set(t.slice.tensor, (copies.get(t.slice.tensor) ?? 0) + t.slice.slots!.length);
    expect([...copies.values()].some((n) => n > 1)).toBe(true);
    expect(shards.some((s) => s.tensors.some((t) => t.slice.kind === "shared-expert"))).toBe(true);
    // assembleFromShards throws if two copies of an element differ.
    expect(() => assembleFromShards(shards)).not.toThrow();
  });

  it("zb1p_tp: attention split by heads, the vocabulary by rows, FFN by the intermediate", () => {
    const { shards } = shard("zb1p_tp", "none");
    const s0 = shards.find((s) => s.coordinates.tp === 0 && s.coordinates.pp === 0)!;
    const s1 = shards.find((s) => s.coordinates.tp === 1 && s.coordinates.pp === 0)!;
    const slice = (s: RankShard, n: string) => s.tensors.find((t) => t.slice.tensor === n)!.slice;
    expect(slice(s0, "model.layers.0.self_attn.q_b_proj.weight").rows).toEqual([0, 24]);
    expect(slice(s1, "model.layers.0.self_attn.q_b_proj.weight").rows).toEqual([24, 48]);
    expect(slice(s1, "model.layers.0.self_attn.kv_b_proj.weight").rows).toEqual([32, 64]);
    expect(slice(s1, "model.layers.0.self_attn.o_proj.weight").cols).toEqual([16, 32]);
    expect(slice(s1, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight").rows).toEqual([0, 20]);
    expect(slice(s1, "model.embed_tokens.weight").rows).toEqual([256, 512]);
    expect(slice(s1, "model.layers.0.mlp.down_proj.weight").cols).toEqual([64, 128]);
    expect(slice(s0, "model.layers.0.mlp.up_proj.weight").rows).toEqual([0, 64]);
  });
});

describe("shards in the recipe's dtypes", () => {
  it("FP8 slices are the numerics' block quantisation of the source slice; the rest BF16 (gate bias FP32)", () => {
    const { shards } = shard("zb1p_tp", "recipe");
    let fp8 = 0;
    for (const s of shards) {
      for (const t of s.tensors) {
        const src = source.get(t.slice.tensor)!;
        const full = t.slice.fullShape;
        const [r0, r1] = t.slice.rows;
        const [c0, c1] = t.slice.cols ?? [0, 1];
        const cols = full.length > 1 ? full[1]! : 1;
        const part = new Float32Array((r1 - r0) * (c1 - c0));
        for (let r = r0; r < r1; r++) part.set(src.subarray(r * cols + c0, r * cols + c1), (r - r0) * (c1 - c0));
        if (t.fp8 !== null) {
          fp8++;
          const q = quantiseBlocks(part, r1 - r0, c1 - c0, { block: { rows: t.fp8.block[0], cols: t.fp8.block[1] }, pow2Scales: tiny.precision.pow2Scales });
          expect(Buffer.from(t.fp8.codes).equals(Buffer.from(q.codes)), t.slice.key).toBe(true);
          expect(Array.from(t.fp8.scaleInv)).toEqual(Array.from(q.scaleInv));
        } else if (t.slice.tensor.endsWith("e_score_correction_bias")) {
          expect(t.slice.dtype).toBe("F32");
          expect(t.values).toEqual(part);
        } else {
          // The part's high-precision dtype from the recipe (BF16 unless it says FP32); never a projection.
          expect(t.slice.tensor).toMatch(/norm|embed_tokens|lm_head|mlp\.gate\.weight/);
          expect(["BF16", "F32"]).toContain(t.slice.dtype);
          expect(t.values).toEqual(t.slice.dtype === "F32" ? part : Float32Array.from(part, roundToBf16));
        }
      }
    }
    expect(fp8).toBeGreaterThan(50);
  });

  it("an FP8 checkpoint's whole, block-aligned tensors are copied, not re-quantised", async () => {
    const fp8 = path.join(dir, "ckpt-fp8");
    await saveModelWeights(fp8, tiny, initModelWeights<F32>(tiny.model, 22, "f32"), { dtype: "FP8" });
    const { shards } = shard("dualpipe", "recipe", fp8);
    const ck = openCheckpoint(fp8);
    if (!ck.ok) throw new Error("unreadable");
    const name = "model.layers.0.self_attn.q_a_proj.weight";
    const t = shards[0]!.tensors.find((x) => x.slice.tensor === name)!;
    expect(Buffer.from(t.fp8!.codes).equals(Buffer.from(ck.value.reader(name)!.readBytes(name)))).toBe(true);
    expect(Buffer.from(t.fp8!.scaleInv.buffer).equals(Buffer.from(ck.value.reader(`${name}_scale_inv`)!.readBytes(`${name}_scale_inv`)))).toBe(true);
    ck.value.close();
  });
});

/** The path of the first difference between two plain structures (typed arrays compared by bytes), or null. */
function firstDifference(a: unknown, b: unknown, at: string): string | null {
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b)) {
    if (!ArrayBuffer.isView(a) || !ArrayBuffer.isView(b) || a.constructor !== b.constructor) return `${at}: not the same array type`;
    return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength)) ? null : `${at}: values differ`;
  }
  if (a !== null && b !== null && typeof a === "object" && typeof b === "object") {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      const d = firstDifference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${at}.${k}`);
      if (d !== null) return d;
    }
    return null;
  }
  return Object.is(a, b) ? null : `${at}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`;
}

describe("shards as the virtual-rank executor's weights", () => {
  it("every GPU of every tiny schedule gets from its shard exactly the RankWeights the executor slices itself", () => {
    const full = loadModelWeights(ckpt, tiny).weights!;
    for (const name of ["dualpipe", "dualpipev", "one_f_one_b", "zb1p_tp", "zero1_ep", "prefill", "decode"]) {
      const plan = buildPlan(tiny, name).plan!;
      const { bundle } = shard(name, "none");
      const source = shardWeightSource(bundle, tiny, plan);
      if (!source.ok) throw new Error(source.diagnostics.map((d) => d.message).join("; "));
      const sliced = slicedWeightSource(tiny, plan, full);
      for (const r of plan.ranks) expect(firstDifference(source.value(r.gpu), sliced(r.gpu), `${name} GPU ${r.gpu}`)).toBeNull();
    }
  });

  it("the distributed check run on shard weights gives the same result, logits included, as on the sliced weights", () => {
    for (const name of ["decode", "zb1p_tp"]) {
      const viaShards = runDistributedCheck(tiny, name, {
        weightSource: (run, full) => {
          const file = path.join(dir, `executor-${name}.safetensors`);
          const views = bindModelWeights(run.spec.model, full);
          writeSafetensors(
            file,
            hfTensorSpecs(run.spec.model).map((t) => ({ name: t.name, dtype: "F32" as const, shape: t.shape, data: encodeFromNumbers("F32", views.get(t.duplicateOf ?? t.name)!) })),
          );
          const bundle = path.join(dir, `executor-${name}`);
          expect(shardCheckpointForPlan(run.spec, run.plan, file, bundle, { compilerVersion: "test", requantise: "none" }).written).not.toBeNull();
          const source = shardWeightSource(bundle, run.spec, run.plan);
          if (!source.ok) throw new Error(source.diagnostics.map((d) => d.message).join("; "));
          return source.value;
        },
      });
      const direct = runDistributedCheck(tiny, name);
      expect(viaShards.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
      expect(viaShards.result!.passes).toBe(true);
      expect(JSON.stringify(viaShards.result)).toBe(JSON.stringify(direct.result));
    }
  });
});

describe("the shard bundle", () => {
  it("verifies, is byte-identical when written twice, and dsv3 shard writes it", async () => {
    const a = path.join(dir, "cli-bundle");
    const r = await cli("shard", "specs/tiny.dsv3", "--schedule", "dualpipe", "--weights", ckpt, "-o", a);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^wrote .*cli-bundle \(schedule 'dualpipe'\): 8 GPUs in \d+ shard files/);
    expect(verifyBundle(a).ok).toBe(true);
    const first = readFileSync(path.join(a, "manifest.json"));
    expect((await cli("shard", "specs/tiny.dsv3", "--schedule", "dualpipe", "--weights", ckpt, "-o", a)).code).toBe(0);
    expect(readFileSync(path.join(a, "manifest.json")).equals(first)).toBe(true);
    const index = JSON.parse(readFileSync(path.join(a, "weights/shard-index.json"), "utf8"));
    expect(index.gpus.length).toBe(8);
    // A shard file describes itself in its metadata.
    const ck = openCheckpoint(path.join(a, index.files[0].file));
    if (!ck.ok) throw new Error("unreadable");
    expect(JSON.parse(ck.value.readers[0]!.header.metadata!["dsv3.shard"]!).gpus).toEqual(index.files[0].gpus);
    ck.value.close();
  });

  it("refuses a bad checkpoint before writing anything; needs --weights and -o", async () => {
    const out = path.join(dir, "never");
    const r = await cli("shard", "specs/tiny.dsv3", "--schedule", "prefill", "--weights", path.join(dir, "nope.safetensors"), "-o", out);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("DSV9001");
    expect(() => readFileSync(path.join(out, "manifest.json"))).toThrow();
    expect((await cli("shard", "specs/tiny.dsv3", "--schedule", "prefill", "-o", out)).code).toBe(2);
    expect((await cli("shard", "specs/tiny.dsv3", "--schedule", "prefill", "--weights", ckpt)).code).toBe(2);
  });
});
