/**
 * Malformed safetensors files under fast-check: truncated files, corrupted header bytes, arbitrary
 * header lengths and arbitrary header JSON. The reader must never throw and never read outside the
 * file: it either reports coded diagnostics (DSV91xx, naming the path) or returns a header whose
 * tensors lie inside the data region, have the bytes their shape and dtype need, do not overlap and
 * cover the data — and then every tensor reads back with exactly its bytes.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Diagnostic } from "../dsl/diagnostic.js";
import { DTYPE_BYTES, DTYPES, encodeFromNumbers } from "../runtime/checkpoint/dtypes.js";
import { openSafetensors, parseSafetensorsHeader, safetensorsHeaderBytes, type SafetensorsHeader } from "../runtime/checkpoint/safetensors.js";

let dir: string;
let valid: Buffer;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "dsv3-checkpoint-fuzz-"));
  const tensors = [
    { name: "model.embed_tokens.weight", dtype: "BF16" as const, shape: [4, 3] },
    { name: "model.layers.0.mlp.gate.e_score_correction_bias", dtype: "F32" as const, shape: [5] },
    { name: "w", dtype: "F8_E4M3" as const, shape: [2, 7] },
    { name: "w_scale_inv", dtype: "F32" as const, shape: [1, 1] },
    { name: "ids", dtype: "I64" as const, shape: [3] },
  ];
  const { header } = safetensorsHeaderBytes(tensors, { format: "pt" });
  const data = tensors.map((t) => encodeFromNumbers(t.dtype, Array.from({ length: t.shape.reduce((a, b) => a * b, 1) }, (_, i) => (i % 7) - 3)));
  valid = Buffer.concat([header, ...data]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const OUR_CODES = /^DSV(91\d\d|9001)$/;

/** The invariants of a header the reader accepted. */
function expectSound(h: SafetensorsHeader): void {
  const dataLength = h.size - h.dataStart;
  const spans: [number, number][] = [];
  for (const t of h.tensors.values()) {
    expect(t.begin).toBeGreaterThanOrEqual(0);
    expect(t.end).toBeLessThanOrEqual(dataLength);
    expect(t.end - t.begin).toBe(t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype]);
    if (t.end > t.begin) spans.push([t.begin, t.end]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  let at = 0;
  for (const [b, e] of spans) {
    expect(b).toBe(at);
    at = e;
  }
  expect(at).toBe(dataLength);
}

function expectCoded(ds: readonly Diagnostic[], file: string): void {
  expect(ds.length).toBeGreaterThan(0);
  for (const d of ds) {
    expect(d.code).toMatch(OUR_CODES);
    expect(d.message).toContain(file);
  }
}

let counter = 0;
/** Writes `bytes` to a fresh file and opens it: diagnostics, or a sound header whose tensors all read. */
function checkFile(bytes: Uint8Array): void {
  const file = path.join(dir, `f${counter++}.safetensors`);
  writeFileSync(file, bytes);
  const r = openSafetensors(file);
  if (!r.ok) {
    expectCoded(r.diagnostics, file);
    return;
  }
  try {
    expectSound(r.value.header);
    for (const [name, t] of r.value.header.tensors) {
      const b = r.value.readBytes(name);
      expect(b.byteLength).toBe(t.end - t.begin);
      expect(Buffer.from(b).equals(Buffer.from(bytes.subarray(r.value.header.dataStart + t.begin, r.value.header.dataStart + t.end)))).toBe(true);
      r.value.readFloat32(name);
    }
  } finally {
    r.value.close();
  }
}

describe("malformed safetensors files (fast-check)", () => {
  it("the valid file reads", () => {
    checkFile(valid);
  });

  it("truncated at any length: a coded diagnostic, never a crash", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000 }), (cut) => {
        const n = cut % valid.byteLength;
        checkFile(valid.subarray(0, n));
      }),
      { numRuns: 150 },
    );
  });

  it("corrupted bytes anywhere (header length, JSON, data): diagnostics or a sound header", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (edits) => {
        const b = Buffer.from(valid);
        for (const [at, v] of edits) b[at % b.byteLength] = v;
        checkFile(b);
      }),
      { numRuns: 300 },
    );
  });

  it("any header length: diagnostics or a sound header", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (len) => {
        const b = Buffer.from(valid);
        b.writeBigUInt64LE(len, 0);
        checkFile(b);
      }),
      { numRuns: 150 },
    );
  });

  it("arbitrary header JSON: parseSafetensorsHeader never throws and what it accepts is sound", () => {
    const dtype = fc.oneof(fc.constantFrom(...DTYPES), fc.string({ maxLength: 6 }), fc.integer());
    const dim = fc.oneof(fc.integer({ min: 0, max: 6 }), fc.integer({ min: -3, max: 2 ** 40 }), fc.double(), fc.constant("2"));
    const offset = fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer(), fc.double(), fc.constant(null));
    const entry = fc.oneof(
      fc.record({ dtype, shape: fc.array(dim, { maxLength: 3 }), data_offsets: fc.array(offset, { minLength: 0, maxLength: 3 }) }),
      fc.record({ dtype, shape: fc.array(dim, { maxLength: 3 }), data_offsets: fc.tuple(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 64 })) }, { requiredKeys: ["dtype"] }),
      fc.anything({ maxDepth: 2 }),
    );
    const header = fc.oneof(
      fc.dictionary(fc.oneof(fc.string({ maxLength: 8 }), fc.constant("__metadata__")), entry, { maxKeys: 5 }),
      fc.anything({ maxDepth: 2 }),
    );
    fc.assert(
      fc.property(header, fc.integer({ min: 0, max: 128 }), (h, dataLength) => {
        const json = Buffer.from(JSON.stringify(h) ?? "undefined");
        const r = parseSafetensorsHeader("fuzz.safetensors", json, 8 + json.byteLength + dataLength);
        if (r.ok) expectSound(r.value);
        else expectCoded(r.diagnostics, "fuzz.safetensors");
      }),
      { numRuns: 1500 },
    );
  });

  it("header bytes that are not UTF-8 are a coded diagnostic", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 40 }), (bytes) => {
        const r = parseSafetensorsHeader("bytes.safetensors", bytes, 8 + bytes.byteLength);
        if (r.ok) expectSound(r.value);
        else expectCoded(r.diagnostics, "bytes.safetensors");
      }),
      { numRuns: 500 },
    );
  });
});
