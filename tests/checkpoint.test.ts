/**
 * Checkpoints (runtime/checkpoint/): safetensors reading and writing, dtypes, FP8 block scales, the
 * Hugging Face names of the executor's weights, validation against a Spec, loading and saving, and
 * `dsv3 run --weights/--save-weights`. Every DSV91xx code is triggered here and its full rendered
 * message snapshotted (tests/diagnostics.test.ts checks that each appears in this file).
 *
 * Layout conventions: tests/checkpoint-layout.test.ts · malformed files under fast-check:
 * tests/checkpoint-fuzz.test.ts · per-rank shards: tests/checkpoint-shard.test.ts.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeBf16Array, roundToBf16 } from "../backends/reference/numerics/bf16.js";
import { E4M3, encodeE4M3 } from "../backends/reference/numerics/fp8-e4m3.js";
import { dequantize, quantize, WEIGHT_BLOCK } from "../backends/reference/numerics/quantize.js";
import { checkSpecFile } from "../compiler/check/index.js";
import type { Spec } from "../compiler/spec.js";
import type { DiagnosticCode } from "../dsl/diagnostic-catalog.js";
import { renderDiagnostic, type Diagnostic } from "../dsl/diagnostic.js";
import { bf16FromFloat32, decodeToFloat32, DTYPE_BYTES, encodeFromNumbers, F16, type SafetensorsDtype } from "../runtime/checkpoint/dtypes.js";
import { dequantiseBlocks, encodeE4M3Finite, quantiseBlocks, scaleGridShape } from "../runtime/checkpoint/fp8-blocks.js";
import { bindModelWeights, hfTensorSpecs, scaleName } from "../runtime/checkpoint/hf-tensor-names.js";
import { loadModelWeights } from "../runtime/checkpoint/load-weights.js";
import { readRankShard } from "../runtime/checkpoint/rank-shard.js";
import { INDEX_FILE, openCheckpoint, writeCheckpointFiles } from "../runtime/checkpoint/safetensors-index.js";
import { openSafetensors, safetensorsHeaderBytes, writeSafetensors, type TensorData } from "../runtime/checkpoint/safetensors.js";
import { saveModelWeights } from "../runtime/checkpoint/save-weights.js";
import { validateCheckpoint } from "../runtime/checkpoint/validate.js";
import { forwardFull } from "../runtime/execute/decode.js";
import { initModelWeights, parameterList, type ModelWeights } from "../runtime/execute/model-weights.js";
import { cli } from "./fixtures/in-process-cli.js";

let dir: string;
let tiny: Spec;
let v2Lite: Spec;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "dsv3-checkpoint-"));
  tiny = checkSpecFile("specs/tiny.dsv3").spec!;
  v2Lite = checkSpecFile("specs/deepseek-v2-lite.dsv3").spec!;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type F32 = Float32Array;

function bytesOf(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Every parameter of a and b, bit for bit (the gate biases too). */
function expectSameWeights(a: ModelWeights<F32>, b: ModelWeights<F32>): void {
  const la = parameterList(a);
  const lb = parameterList(b);
  expect(lb.map((t) => t.name)).toEqual(la.map((t) => t.name));
  la.forEach((t, i) => expect(bytesOf(lb[i]!.value).equals(bytesOf(t.value)), t.name).toBe(true));
  a.layers.forEach((l, i) => {
    if (l.gateBias) expect(bytesOf(b.layers[i]!.gateBias!).equals(bytesOf(l.gateBias))).toBe(true);
  });
}

/** Weights whose gate biases are not all zero, so saving them is tested too. */
function tinyWeights(seed: number): ModelWeights<F32> {
  const w = initModelWeights<F32>(tiny.model, seed, "f32");
  w.layers.forEach((l, i) => l.gateBias?.forEach((_, e) => (l.gateBias![e] = (i + 1) * 0.01 * (e - 3))));
  w.mtp.forEach((m) => m.block.gateBias?.fill(-0.125));
  return w;
}

function fresh(name: string): string {
  const p = path.join(dir, name);
  rmSync(p, { recursive: true, force: true });
  mkdirSync(p, { recursive: true });
  return p;
}

describe("dtypes", () => {
  it("decode every dtype to FP32 and encode back", () => {
    const values = [0, -0, 1, -2.5, 0.15625, 448, 2 ** -9];
    const cases: [SafetensorsDtype, number[]][] = [
      ["F32", values],
      ["F64", values],
      ["BF16", values],
      ["F16", values],
      ["F8_E4M3", values],
      ["F8_E5M2", [0, 1, -2.5, 0.15625, 448]],
      ["I64", [0, -3, 2 ** 40, 7]],
      ["I32", [0, -3, 2 ** 30, 7]],
      ["I16", [0, -3, 300]],
      ["I8", [0, -3, 127]],
      ["U8", [0, 3, 255]],
      ["BOOL", [0, 1, 1]],
    ];
    for (const [dtype, xs] of cases) {
      const bytes = encodeFromNumbers(dtype, xs);
      expect(bytes.byteLength, dtype).toBe(xs.length * DTYPE_BYTES[dtype]);
      const back = decodeToFloat32(dtype, bytes, new Float32Array(xs.length));
      expect(Array.from(back), dtype).toEqual(xs.map((x) => Math.fround(x)));
    }
  });

  it("BF16 rounds to nearest even; F16 and E4M3 codes decode to their values", () => {
    const x = [1 + 2 ** -8, 1 + 3 * 2 ** -8, 1e-3, -123.456];
    const back = decodeToFloat32("BF16", encodeFromNumbers("BF16", x), new Float32Array(4));
    expect(Array.from(back)).toEqual(x.map(roundToBf16));
    // 0x3C00 = 1, 0xC000 = -2, 0x0001 = 2^-24, 0x7BFF = 65504 (F16); E4M3 0x7E = 448, 0x01 = 2^-9.
    expect(Array.from(decodeToFloat32("F16", new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7bff]).buffer), new Float32Array(4)))).toEqual([1, -2, 2 ** -24, 65504]);
    expect(F16.maxFinite).toBe(65504);
    expect(Array.from(decodeToFloat32("F8_E4M3", Uint8Array.from([0x7e, 0x01, 0xfe]), new Float32Array(3)))).toEqual([448, 2 ** -9, -448]);
  });

  it("the FP32 → BF16 fast path gives the numerics' BF16 codes for every kind of FP32 bit pattern", () => {
    const special = [0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff, 0x7f7fffff, 0x00000001, 0x3f808000, 0x3f818000, 0x3f807fff];
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(...special)), { minLength: 1, maxLength: 64 }), (words) => {
        const f = new Float32Array(Uint32Array.from(words).buffer);
        const ours = new Uint16Array(bf16FromFloat32(f).buffer);
        expect(Array.from(ours)).toEqual(Array.from(encodeBf16Array(f, new Uint16Array(f.length))));
      }),
      { numRuns: 500 },
    );
  });

  it("misaligned bytes decode the same as aligned ones", () => {
    const src = encodeFromNumbers("F32", [1.5, -2, 3.25]);
    const shifted = new Uint8Array(src.byteLength + 1);
    shifted.set(src, 1);
    expect(Array.from(decodeToFloat32("F32", shifted.subarray(1), new Float32Array(3)))).toEqual([1.5, -2, 3.25]);
  });
});

describe("safetensors files", () => {
  it("the writer's bytes: little-endian length, JSON header padded to 8 bytes, data in name order", () => {
    const file = path.join(dir, "format.safetensors");
    const tensors: TensorData[] = [
      { name: "b", dtype: "F32", shape: [2], data: encodeFromNumbers("F32", [1, 2]) },
      { name: "a", dtype: "BF16", shape: [1, 3], data: encodeFromNumbers("BF16", [1, -1, 0.5]) },
    ];
    writeSafetensors(file, tensors, { format: "pt" });
    const raw = readFileSync(file);
    const n = Number(raw.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(raw.subarray(8, 8 + n).toString("utf8"));
    expect(header).toEqual({
      __metadata__: { format: "pt" },
      a: { dtype: "BF16", shape: [1, 3], data_offsets: [0, 6] },
      b: { dtype: "F32", shape: [2], data_offsets: [6, 14] },
    });
    expect(Object.keys(header)).toEqual(["__metadata__", "a", "b"]);
    expect(raw.byteLength).toBe(8 + n + 14);
    expect(Array.from(raw.subarray(8 + n + 6))).toEqual(Array.from(encodeFromNumbers("F32", [1, 2])));
    // Same input, same bytes.
    writeSafetensors(file, [...tensors].reverse(), { format: "pt" });
    expect(readFileSync(file).equals(raw)).toBe(true);
  });

  it("reads a file built by hand, one tensor at a time", () => {
    const json = Buffer.from('{"x":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F16","shape":[],"data_offsets":[8,10]}}');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.byteLength));
    const data = Buffer.from([5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00, 0x3c]);
    const file = path.join(dir, "by-hand.safetensors");
    writeFileSync(file, Buffer.concat([len, json, data]));
    const r = openSafetensors(file);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(Array.from(r.value.readFloat32("x"))).toEqual([5, -1]);
    expect(Array.from(r.value.readFloat32("y"))).toEqual([1]);
    expect(r.value.header.metadata).toBeNull();
    r.value.close();
  });

  it("a header for a tensor set states each tensor's offsets", () => {
    const { offsets } = safetensorsHeaderBytes([{ name: "a", dtype: "F8_E4M3", shape: [3, 5] }, { name: "b", dtype: "I64", shape: [2] }], null);
    expect(offsets).toEqual([[0, 15], [15, 31]]);
  });
});

describe("FP8 block scales", () => {
  it("dequantises with the scale of each 128×128 block, edge blocks included (hand-computed)", () => {
    const rows = 130;
    const cols = 129;
    const codes = new Uint8Array(rows * cols).fill(0x38); // E4M3 0x38 = 1.0
    const scales = Float32Array.from([2, 3, 5, 7]); // grid 2×2
    expect(scaleGridShape(rows, cols)).toEqual([2, 2]);
    const w = dequantiseBlocks(codes, scales, rows, cols);
    expect(E4M3.decodeTable[0x38]).toBe(1);
    expect(w[0]).toBe(2);
    expect(w[127]).toBe(2);
    expect(w[128]).toBe(3); // row 0, column 128: the partial right block
    expect(w[127 * cols + 128]).toBe(3);
    expect(w[128 * cols + 0]).toBe(5); // row 128: the partial bottom block
    expect(w[129 * cols + 128]).toBe(7); // the partial corner block
  });

  it("the specialised E4M3 encoder is the numerics' generic encoder, code for code", () => {
    // Every finite code's value, the midpoints between neighbours (ties), and values just around them.
    const mags = Array.from({ length: 0x7f }, (_, c) => E4M3.decodeTable[c]!);
    const probes: number[] = [0, 1e-300, 2 ** -10, 2 ** -9.5, 447.99, 448, 456, 464, 464.0001, 480, 1e6, 1e300];
    for (let c = 0; c + 1 < mags.length; c++) {
      const mid = (mags[c]! + mags[c + 1]!) / 2;
      probes.push(mags[c]!, mid, mid * (1 + 2 ** -40), mid * (1 - 2 ** -40));
    }
    for (const p of probes) for (const x of [p, -p]) expect(encodeE4M3Finite(x), String(x)).toBe(encodeE4M3(x, "satfinite"));
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (x) => encodeE4M3Finite(x) === encodeE4M3(x, "satfinite")),
      { numRuns: 3000 },
    );
  });

  it("quantiseBlocks is the numerics' quantize (codes and scales), special values and edge blocks included", () => {
    const value = fc.oneof(
      fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e4, max: 1e4 }),
      fc.float({ noNaN: true, noDefaultInfinity: true, min: Math.fround(-1e-6), max: Math.fround(1e-6) }),
      fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, 448, -3.4028234663852886e38),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 40 }),
        fc.constantFrom({ rows: 16, cols: 16 }, { rows: 8, cols: 32 }, { rows: 128, cols: 128 }),
        fc.boolean(),
        fc.array(value, { minLength: 1600, maxLength: 1600 }),
        (rows, cols, block, pow2Scales, pool) => {
          const x = Float32Array.from({ length: rows * cols }, (_, i) => pool[i % pool.length]!);
          const ours = quantiseBlocks(x, rows, cols, { block, pow2Scales });
          const ref = quantize(x, rows, cols, { tile: block, pow2Scales });
          expect(Buffer.from(ours.codes).equals(Buffer.from(ref.data))).toBe(true);
          expect(bytesOf(ours.scaleInv).equals(bytesOf(ref.scales))).toBe(true);
          expect(ours.scaleShape).toEqual([...ref.scaleShape]);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("quantise → write → read → dequantise gives exactly the numerics' quantiser's dequantised values", () => {
    const rows = 200;
    const cols = 150;
    const x = new Float32Array(rows * cols).map((_, i) => Math.sin(i * 0.37) * (1 + (i % 17)) * 1e-2);
    for (const pow2Scales of [false, true]) {
      const q = quantiseBlocks(x, rows, cols, { pow2Scales });
      const file = path.join(dir, `fp8-${pow2Scales}.safetensors`);
      writeSafetensors(file, [
        { name: "w.weight", dtype: "F8_E4M3", shape: [rows, cols], data: q.codes },
        { name: scaleName("w.weight"), dtype: "F32", shape: q.scaleShape, data: new Uint8Array(q.scaleInv.buffer) },
      ]);
      const r = openSafetensors(file);
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      const codes = r.value.readBytes("w.weight");
      const scales = r.value.readFloat32("w.weight_scale_inv");
      r.value.close();
      const ours = dequantiseBlocks(codes, scales, rows, cols);
      const reference = dequantize(quantize(x, rows, cols, { tile: WEIGHT_BLOCK, pow2Scales }), new Float32Array(rows * cols));
      expect(bytesOf(ours).equals(bytesOf(reference))).toBe(true);
    }
  });
});

describe("Hugging Face names", () => {
  it("name every executor parameter once, with the DeepSeek-V3 layout and shapes", () => {
    const specs = hfTensorSpecs(tiny.model);
    const names = specs.map((s) => s.name);
    expect(new Set(names).size).toBe(names.length);
    const w = tinyWeights(1);
    const views = bindModelWeights(tiny.model, w);
    // Every spec tensor but the MTP copies is a view of the right size; together they are every parameter.
    for (const s of specs) {
      if (s.role === "mtp_duplicate") expect(views.has(s.name)).toBe(false);
      else expect(views.get(s.name)!.length, s.name).toBe(s.shape.reduce((a, b) => a * b, 1));
    }
    const viewed = [...views.values()].reduce((n, v) => n + v.length, 0);
    const params = parameterList(w).reduce((n, t) => n + t.value.length, 0);
    const biases = w.layers.concat(w.mtp.map((m) => m.block)).reduce((n, l) => n + (l.gateBias?.length ?? 0), 0);
    expect(viewed).toBe(params + biases);
    expect(names).toContain("model.layers.1.mlp.gate.e_score_correction_bias");
    expect(names).toContain("model.layers.3.mlp.experts.7.down_proj.weight");
    expect(names).toContain("model.layers.4.eh_proj.weight");
    expect(names).toContain("model.layers.4.shared_head.norm.weight");
    expect(specs.find((s) => s.name === "model.layers.0.self_attn.kv_a_proj_with_mqa.weight")!.shape).toEqual([16 + 4, 64]);
    expect(specs.find((s) => s.name === "model.layers.0.self_attn.q_b_proj.weight")!.shape).toEqual([4 * (8 + 4), 32]);
    expect(specs.find((s) => s.name === "model.layers.0.self_attn.kv_b_proj.weight")!.shape).toEqual([4 * (8 + 8), 16]);
    expect(specs.find((s) => s.name === "model.layers.1.mlp.shared_experts.down_proj.weight")!.shape).toEqual([64, 32]);
  });

  it("a V2-style model has q_proj, no selection bias and no MTP layer", () => {
    const names = hfTensorSpecs(v2Lite.model).map((s) => s.name);
    expect(names).toContain("model.layers.0.self_attn.q_proj.weight");
    expect(names.some((n) => n.includes("q_a_proj"))).toBe(false);
    expect(names.some((n) => n.includes("e_score_correction_bias"))).toBe(false);
    expect(names.some((n) => n.startsWith(`model.layers.${v2Lite.model.layers}.`))).toBe(false);
  });
});

describe("save and load", () => {
  it("weights written by --save-weights load back bit-identically (and the file tensors are the executor's arrays)", async () => {
    const out = fresh("f32");
    const w = tinyWeights(7);
    const saved = await saveModelWeights(out, tiny, w);
    expect(saved.diagnostics).toEqual([]);
    const loaded = loadModelWeights(out, tiny);
    expect(loaded.diagnostics).toEqual([]);
    expectSameWeights(w, loaded.weights!);
    // No permutation: the file holds the executor's q_b_proj as is.
    const r = openSafetensors(path.join(out, "model.safetensors"));
    if (!r.ok) throw new Error("unreadable");
    expect(Buffer.from(r.value.readBytes("model.layers.2.self_attn.q_b_proj.weight")).equals(bytesOf(w.layers[2]!.mla.qB!))).toBe(true);
    expect(Buffer.from(r.value.readBytes("model.layers.4.embed_tokens.weight")).equals(bytesOf(w.embed))).toBe(true);
    r.value.close();
    const config = JSON.parse(readFileSync(path.join(out, "config.json"), "utf8"));
    expect(config.architectures).toEqual(["DeepseekV3ForCausalLM"]);
    expect(config.torch_dtype).toBe("float32");
    expect(config.quantization_config).toBeUndefined();
  });

  it("a sharded checkpoint with an index loads the same as the single file", async () => {
    const out = fresh("sharded");
    const w = tinyWeights(8);
    const saved = await saveModelWeights(out, tiny, w, { maxShardBytes: 300_000 });
    expect(saved.written!.files.length).toBeGreaterThan(3);
    const index = JSON.parse(readFileSync(path.join(out, INDEX_FILE), "utf8"));
    expect(Object.keys(index.weight_map).length).toBe(saved.written!.tensors);
    expect(index.metadata.total_size).toBe(saved.written!.totalSize);
    const single = fresh("single");
    await saveModelWeights(single, tiny, w);
    const a = loadModelWeights(out, tiny);
    const b = loadModelWeights(path.join(single, "model.safetensors"), tiny);
    expect(a.diagnostics).toEqual([]);
    expectSameWeights(b.weights!, a.weights!);
    expectSameWeights(w, a.weights!);
    // The index file itself is a checkpoint path too.
    expectSameWeights(w, loadModelWeights(path.join(out, INDEX_FILE), tiny).weights!);
  });

  it("BF16 checkpoints load as the BF16 rounding of every weight; the gate bias stays FP32", async () => {
    const out = fresh("bf16");
    const w = tinyWeights(9);
    await saveModelWeights(out, tiny, w, { dtype: "BF16" });
    const ck = openCheckpoint(out);
    if (!ck.ok) throw new Error("unreadable");
    expect(ck.value.entry("model.layers.1.mlp.gate.e_score_correction_bias")!.dtype).toBe("F32");
    expect(ck.value.entry("model.layers.1.mlp.gate.weight")!.dtype).toBe("BF16");
    ck.value.close();
    const loaded = loadModelWeights(out, tiny).weights!;
    const la = parameterList(w);
    parameterList(loaded).forEach((t, i) => {
      const want = Float32Array.from(la[i]!.value, roundToBf16);
      expect(bytesOf(t.value).equals(bytesOf(want)), t.name).toBe(true);
    });
    expect(Array.from(loaded.layers[1]!.gateBias!)).toEqual(Array.from(w.layers[1]!.gateBias!));
  });

  it("FP8 checkpoints: projections as E4M3 + weight_scale_inv load as the quantiser's dequantised values", async () => {
    const out = fresh("fp8");
    const w = tinyWeights(10);
    await saveModelWeights(out, tiny, w, { dtype: "FP8" });
    const config = JSON.parse(readFileSync(path.join(out, "config.json"), "utf8"));
    expect(config.quantization_config.weight_block_size).toEqual([128, 128]);
    const loaded = loadModelWeights(out, tiny).weights!;
    const views = bindModelWeights(tiny.model, loaded);
    const orig = bindModelWeights(tiny.model, w);
    let fp8 = 0;
    for (const s of hfTensorSpecs(tiny.model)) {
      if (s.role === "mtp_duplicate") continue;
      const x = orig.get(s.name)!;
      const want = s.fp8
        ? dequantize(quantize(x, s.shape[0]!, s.shape[1]!, { tile: WEIGHT_BLOCK, pow2Scales: tiny.precision.pow2Scales }), new Float32Array(x.length))
        : s.role === "gate_bias"
          ? x
          : Float32Array.from(x, roundToBf16);
      if (s.fp8) fp8++;
      expect(bytesOf(views.get(s.name)!).equals(bytesOf(want)), s.name).toBe(true);
    }
    expect(fp8).toBeGreaterThan(100);
  });

  it("validation reports missing, unexpected, mis-shaped and wrong-dtype tensors together, and loads nothing", async () => {
    const out = fresh("broken");
    const w = tinyWeights(11);
    await saveModelWeights(out, tiny, w);
    const ck = openCheckpoint(out);
    if (!ck.ok) throw new Error("unreadable");
    const keep: TensorData[] = [];
    for (const name of ck.value.names()) {
      const e = ck.value.entry(name)!;
      if (name === "model.layers.0.input_layernorm.weight") continue; // missing
      let data: Uint8Array = ck.value.reader(name)!.readBytes(name);
      let shape = e.shape;
      let dtype: SafetensorsDtype = e.dtype;
      if (name === "model.norm.weight") {
        shape = [32];
        data = data.subarray(0, 32 * 4);
      }
      if (name === "model.layers.1.post_attention_layernorm.weight") {
        dtype = "I32";
        data = encodeFromNumbers("I32", new Array(64).fill(1));
      }
      keep.push({ name, dtype, shape, data });
    }
    ck.value.close();
    keep.push({ name: "model.layers.9.mlp.gate.weight", dtype: "BF16", shape: [2], data: new Uint8Array(4) });
    const file = path.join(dir, "broken.safetensors");
    writeSafetensors(file, keep);
    const r = loadModelWeights(file, tiny);
    expect(r.weights).toBeNull();
    expect(r.diagnostics.map((d) => d.code).sort()).toEqual(["DSV9120", "DSV9121", "DSV9122", "DSV9123"]);
    expect(r.diagnostics.map((d) => d.message).join("\n")).toContain("model.layers.0.input_layernorm.weight");
  });
});

describe("dsv3 run --weights / --save-weights", () => {
  it("--save-weights then --weights --tokens --logits --json gives the executor's logits on those weights", async () => {
    const out = path.join(dir, "cli-tiny");
    const saved = await cli("run", "specs/tiny.dsv3", "--save-weights", out, "--seed", "4", "--json");
    expect(saved.stderr).toBe("");
    expect(saved.code).toBe(0);
    expect(JSON.parse(saved.stdout).files[0].name).toBe("model.safetensors");
    const r = await cli("run", "specs/tiny.dsv3", "--backend", "cpu", "--weights", out, "--tokens", "1,2,3,500", "--logits", "--json");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout);
    const w = initModelWeights<F32>(tiny.model, 4, "f32");
    const { logits } = forwardFull(w, tiny.model, Int32Array.from([1, 2, 3, 500]));
    expect(json.tokens).toEqual([1, 2, 3, 500]);
    expect(json.logits.length).toBe(4);
    expect(json.logits[0].length).toBe(512);
    expect(Float32Array.from(json.logits.flat() as number[])).toEqual(logits);
    const text = await cli("run", "specs/tiny.dsv3", "--weights", path.join(out, "model.safetensors"), "--tokens", "1,2");
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/position 1 {2}token 2 {2}next \d+/);
  });

  it("--dtype fp8 writes the official layout (E4M3 projections + weight_scale_inv, BF16 elsewhere, F32 gate bias) and it runs", async () => {
    const out = path.join(dir, "cli-tiny-fp8");
    const saved = await cli("run", "specs/tiny.dsv3", "--save-weights", out, "--seed", "4", "--dtype", "fp8", "--json");
    expect(saved.stderr).toBe("");
    expect(saved.code).toBe(0);
    expect(JSON.parse(saved.stdout).dtype).toBe("fp8");
    const header = openSafetensors(path.join(out, "model.safetensors"));
    if (!header.ok) throw new Error("unreadable");
    const dtypeOf = (name: string): string | undefined => header.value.header.tensors.get(name)?.dtype;
    expect(dtypeOf("model.layers.1.self_attn.kv_b_proj.weight")).toBe("F8_E4M3");
    expect(dtypeOf("model.layers.1.self_attn.kv_b_proj.weight_scale_inv")).toBe("F32");
    expect(dtypeOf("model.layers.1.mlp.experts.3.down_proj.weight")).toBe("F8_E4M3");
    expect(dtypeOf("model.layers.1.input_layernorm.weight")).toBe("BF16");
    expect(dtypeOf("model.layers.1.mlp.gate.e_score_correction_bias")).toBe("F32");
    header.value.close();
    // The forward runs on the dequantised weights, which are near, not equal to, the F32 ones.
    const loaded = loadModelWeights(out, tiny);
    if (loaded.weights === null) throw new Error(loaded.diagnostics.map((d) => d.message).join("; "));
    const r = await cli("run", "specs/tiny.dsv3", "--weights", out, "--tokens", "5,6,7", "--logits", "--json");
    expect(r.code).toBe(0);
    expect(Float32Array.from(JSON.parse(r.stdout).logits.flat() as number[])).toEqual(forwardFull(loaded.weights, tiny.model, Int32Array.from([5, 6, 7])).logits);
    const f32 = initModelWeights<F32>(tiny.model, 4, "f32").layers[1]!.mla.kvB;
    const fp8 = loaded.weights.layers[1]!.mla.kvB;
    expect(fp8).not.toEqual(f32);
    let worst = 0;
    let amax = 0;
    for (let i = 0; i < f32.length; i++) {
      worst = Math.max(worst, Math.abs(fp8[i]! - f32[i]!));
      amax = Math.max(amax, Math.abs(f32[i]!));
    }
    expect(worst).toBeLessThanOrEqual(amax / 16); // E4M3: 3 mantissa bits, half an ulp at the top binade
    expect((await cli("run", "specs/tiny.dsv3", "--save-weights", out, "--dtype", "int4")).code).toBe(2);
    expect((await cli("run", "specs/tiny.dsv3", "--weights", out, "--tokens", "1", "--dtype", "fp8")).code).toBe(2);
  });

  it("bad token lists and mixed options are usage errors; a bad checkpoint is exit 1", async () => {
    const out = path.join(dir, "cli-tiny");
    expect((await cli("run", "specs/tiny.dsv3", "--weights", out, "--tokens", "1,512")).stderr).toContain("'512' is not a token id in [0, 512)");
    expect((await cli("run", "specs/tiny.dsv3", "--weights", out, "--tokens", "1,,2")).code).toBe(2);
    expect((await cli("run", "specs/tiny.dsv3", "--weights", out)).code).toBe(2);
    expect((await cli("run", "specs/tiny.dsv3", "--save-weights", out, "--tokens", "1")).code).toBe(2);
    expect((await cli("run", "specs/tiny.dsv3", "--weights", out, "--tokens", "1", "--steps", "3")).code).toBe(2);
    const big = await cli("run", "specs/deepseek-v3.dsv3", "--save-weights", path.join(dir, "never-written"));
    expect(big.code).toBe(2);
    expect(big.stderr).toContain("the CPU executor holds at most 500,000,000");
    const bad = await cli("run", "specs/tiny.dsv3", "--weights", path.join(dir, "nothing-here"), "--tokens", "1");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("DSV9001");
  });
});

// ── Every DSV91xx code, its full message ────────────────────────────────────────────────────────

/** A safetensors file from a header object (or raw text) and data bytes. */
function rawFile(name: string, header: unknown, data: Uint8Array | number = 0, lengthOverride?: bigint): string {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.byteLength));
  const file = path.join(dir, name);
  writeFileSync(file, Buffer.concat([len, json, typeof data === "number" ? Buffer.alloc(data) : data]));
  return file;
}

function render(d: Diagnostic): string {
  return renderDiagnostic(d, new Map()).split(dir).join("<tmp>");
}

const T = (dtype: string, shape: number[], a: number, b: number) => ({ dtype, shape, data_offsets: [a, b] });

function diagnosticsOf(file: string): Diagnostic[] {
  const r = openSafetensors(file);
  if (r.ok) r.value.close();
  return r.ok ? [] : r.diagnostics;
}

async function tinyCheckpoint(name: string): Promise<string> {
  const out = fresh(name);
  await saveModelWeights(out, tiny, tinyWeights(12));
  return out;
}

/** Rewrites a saved checkpoint with `edit` applied to its tensor list. */
async function editedCheckpoint(name: string, edit: (ts: TensorData[]) => TensorData[]): Promise<string> {
  const src = await tinyCheckpoint(`${name}-src`);
  const ck = openCheckpoint(src);
  if (!ck.ok) throw new Error("unreadable");
  const ts = ck.value.names().map((n) => ({ ...ck.value.entry(n)!, name: n, data: ck.value.reader(n)!.readBytes(n) }));
  ck.value.close();
  const file = path.join(dir, `${name}.safetensors`);
  writeSafetensors(file, edit(ts));
  return file;
}

const CASES: { code: DiagnosticCode; run: () => Promise<Diagnostic[]> }[] = [
  {
    code: "DSV9101",
    run: async () => {
      const five = path.join(dir, "five.safetensors");
      writeFileSync(five, Buffer.from([1, 2, 3, 4, 5]));
      return [...diagnosticsOf(five), ...diagnosticsOf(rawFile("cut.safetensors", { a: T("F32", [4], 0, 16) }, 10))];
    },
  },
  { code: "DSV9102", run: async () => diagnosticsOf(rawFile("long-header.safetensors", {}, 0, 1000n)) },
  { code: "DSV9103", run: async () => diagnosticsOf(rawFile("bad-json.safetensors", '{"a": {"dtype": "F32",')) },
  { code: "DSV9104", run: async () => diagnosticsOf(rawFile("bad-entry.safetensors", { a: { dtype: "F32", shape: [1] }, __metadata__: { n: 1 } })) },
  { code: "DSV9105", run: async () => diagnosticsOf(rawFile("bad-dtype.safetensors", { a: T("F4", [2], 0, 1) }, 1)) },
  { code: "DSV9106", run: async () => diagnosticsOf(rawFile("bad-size.safetensors", { a: T("F32", [2, 3], 0, 20) }, 20)) },
  { code: "DSV9107", run: async () => diagnosticsOf(rawFile("bad-offsets.safetensors", { a: T("F32", [0], 8, 4), b: T("F32", [1], -4, 0) }, 8)) },
  { code: "DSV9108", run: async () => diagnosticsOf(rawFile("overlap.safetensors", { a: T("F32", [2], 0, 8), b: T("F32", [1], 4, 8) }, 8)) },
  { code: "DSV9109", run: async () => diagnosticsOf(rawFile("hole.safetensors", { a: T("F32", [1], 4, 8) }, 12)) },
  {
    code: "DSV9110",
    run: async () => {
      const d = fresh("index-missing");
      writeFileSync(path.join(d, INDEX_FILE), JSON.stringify({ weight_map: { a: "model-00002-of-00002.safetensors", b: "model-00002-of-00002.safetensors", c: "../x.safetensors" } }));
      const r = openCheckpoint(d);
      return r.ok ? [] : r.diagnostics;
    },
  },
  {
    code: "DSV9111",
    run: async () => {
      const d = fresh("index-bad");
      writeFileSync(path.join(d, INDEX_FILE), '{"weight_map": [1, 2]}');
      const r = openCheckpoint(d);
      return r.ok ? [] : r.diagnostics;
    },
  },
  {
    code: "DSV9112",
    run: async () => {
      const r = openCheckpoint(fresh("empty"));
      return r.ok ? [] : r.diagnostics;
    },
  },
  {
    code: "DSV9113",
    run: async () => {
      const d = fresh("two-files");
      const t: TensorData = { name: "x", dtype: "F32", shape: [1], data: new Uint8Array(4) };
      writeSafetensors(path.join(d, "a.safetensors"), [t]);
      writeSafetensors(path.join(d, "b.safetensors"), [t]);
      const r = openCheckpoint(d);
      return r.ok ? [] : r.diagnostics;
    },
  },
  {
    code: "DSV9120",
    run: async () => {
      const f = await editedCheckpoint("missing", (ts) => ts.filter((t) => !t.name.startsWith("model.layers.2.") && t.name !== "model.norm.weight"));
      return loadModelWeights(f, tiny).diagnostics;
    },
  },
  {
    code: "DSV9121",
    run: async () => {
      const f = await editedCheckpoint("unexpected", (ts) => [...ts, { name: "model.layers.7.mlp.gate.weight", dtype: "BF16", shape: [8, 64], data: new Uint8Array(8 * 64 * 2) }]);
      return loadModelWeights(f, tiny).diagnostics;
    },
  },
  {
    code: "DSV9122",
    run: async () => {
      const f = await editedCheckpoint("misshaped", (ts) =>
        ts.map((t) => (t.name === "model.layers.0.self_attn.kv_b_proj.weight" ? { ...t, shape: [16, 64] } : t)),
      );
      return loadModelWeights(f, tiny).diagnostics;
    },
  },
  {
    code: "DSV9123",
    run: async () => {
      const f = await editedCheckpoint("wrong-dtype", (ts) =>
        ts.map((t) => (t.name === "model.norm.weight" ? { ...t, dtype: "F8_E4M3" as const, data: new Uint8Array(64) } : t)),
      );
      return loadModelWeights(f, tiny).diagnostics;
    },
  },
  {
    code: "DSV9124",
    run: async () => {
      const f = await editedCheckpoint("shrinks", (ts) => ts);
      const r = openSafetensors(f);
      if (!r.ok) return r.diagnostics;
      truncateSync(f, r.value.header.dataStart + 10);
      try {
        r.value.readBytes("lm_head.weight");
        return [];
      } catch (e) {
        return [(e as { diagnostic: Diagnostic }).diagnostic];
      } finally {
        r.value.close();
      }
    },
  },
  {
    code: "DSV9125",
    run: async () => {
      const d = await tinyCheckpoint("config-mismatch");
      const config = JSON.parse(readFileSync(path.join(d, "config.json"), "utf8"));
      config.hidden_size = 128;
      writeFileSync(path.join(d, "config.json"), JSON.stringify(config));
      return loadModelWeights(d, tiny).diagnostics;
    },
  },
  { code: "DSV9130", run: async () => { const r = readRankShard(fresh("not-a-bundle"), 0); return r.ok ? [] : r.diagnostics; } },
  {
    code: "DSV9131",
    run: async () => {
      const src = await tinyCheckpoint("for-shard");
      const bundle = path.join(dir, "bundle-9131");
      expect((await cli("shard", "specs/tiny.dsv3", "--schedule", "prefill", "--weights", src, "-o", bundle)).code).toBe(0);
      const r = readRankShard(bundle, 4);
      return r.ok ? [] : r.diagnostics;
    },
  },
];

describe("DSV91xx diagnostics", () => {
  for (const c of CASES) {
    it(`${c.code} is reported with its full message`, async () => {
      const ds = await c.run();
      expect(ds.length, c.code).toBeGreaterThan(0);
      expect(ds.some((d) => d.code === c.code), ds.map((d) => d.code).join(",")).toBe(true);
      expect(ds.map(render).join("\n\n")).toMatchSnapshot();
    });
  }

  it("a checkpoint of another model is one capped list, no crash", async () => {
    const f = await tinyCheckpoint("other-model");
    const r = loadModelWeights(f, v2Lite);
    expect(r.weights).toBeNull();
    const missing = r.diagnostics.filter((d) => d.code === "DSV9120");
    expect(missing.length).toBe(17);
    expect(missing[16]!.message).toMatch(/^the checkpoint lacks \d+ more tensors/);
  });

  it("validation keeps FP8 scales with their weights", async () => {
    const out = fresh("fp8-no-scale");
    await saveModelWeights(out, tiny, tinyWeights(13), { dtype: "FP8" });
    const ck = openCheckpoint(out);
    if (!ck.ok) throw new Error("unreadable");
    const ts = ck.value.names().filter((n) => n !== "model.layers.0.mlp.up_proj.weight_scale_inv").map((n) => ({ ...ck.value.entry(n)!, name: n, data: ck.value.reader(n)!.readBytes(n) }));
    ck.value.close();
    const file = path.join(dir, "fp8-no-scale.safetensors");
    writeSafetensors(file, ts);
    const again = openCheckpoint(file);
    if (!again.ok) throw new Error("unreadable");
    const v = validateCheckpoint(again.value, tiny);
    again.value.close();
    expect(v.tensors).toBeNull();
    expect(v.diagnostics.map((d) => d.message)).toEqual(["the checkpoint lacks the block scales 'model.layers.0.mlp.up_proj.weight_scale_inv' [1, 1] of the F8_E4M3 weight, which the spec 'tiny-v3' needs"]);
  });
});

describe("checkpoint files on disk", () => {
  it("a reader never reads outside a tensor's bytes", () => {
    const file = path.join(dir, "range.safetensors");
    writeSafetensors(file, [{ name: "a", dtype: "U8", shape: [4], data: Uint8Array.from([1, 2, 3, 4]) }]);
    const r = openSafetensors(file);
    if (!r.ok) throw new Error("unreadable");
    expect(Array.from(r.value.readRange("a", 2, 100))).toEqual([3, 4]);
    expect(Array.from(r.value.readRange("a", -5, 1))).toEqual([1]);
    r.value.close();
  });

  it("writes are atomic: a failing producer leaves the old file and no temporary", async () => {
    const out = fresh("atomic");
    await writeCheckpointFiles(out, [{ name: "a", dtype: "F32", shape: [1] }], () => new Uint8Array(4), null);
    const before = readFileSync(path.join(out, "model.safetensors"));
    await expect(
      writeCheckpointFiles(out, [{ name: "a", dtype: "F32", shape: [1] }], () => {
        throw new Error("boom");
      }, null),
    ).rejects.toThrow("boom");
    expect(readFileSync(path.join(out, "model.safetensors")).equals(before)).toBe(true);
    expect(readdirSync(out).filter((n) => n.includes(".tmp"))).toEqual([]);
  });
});
