/**
 * Correctness review of the non-GEMM CUDA generators (backends/cuda/kernels/) without a GPU: the
 * index arithmetic the generated code relies on is emulated here against the PTX ISA's tables and
 * checked against plain matrix products and the CPU reference.
 *
 * - mma.sync.m16n8k16 (row.col, BF16 → FP32) and ldmatrix.m8n8.x4 (plain and .trans) are emulated
 *   from the PTX ISA's fragment tables (A: row g + 8·(r%2), cols 2t + 8·(r/2); B: k 2t + 8·r, col g;
 *   C: row g + 8·(r/2), col 2t + r%2; ldmatrix: lane 8m + i addresses row i of matrix m, lane 4i + w
 *   receives word w of row i, or of column i with .trans). The generators' lane → address and
 *   register → (row, key/column) formulas — pinned below to the exact text of the generated source —
 *   must then give S = Q·Kᵀ, the P re-pack and O = P·V exactly, for prefill and MLA decode attention.
 * - The causal block/warp skipping and the `edge` masking of prefill attention cover exactly the
 *   reference's visible (query, key) pairs when q_len ≠ kv_len.
 * - Prefill attention's per-row online softmax, as generated (tile skipping, edge mask, base 2, the
 *   0 reference while the max is −∞, BF16 P), equals exact softmax attention (diff < 1e-5).
 * - The router's warp algorithm, lane by lane (group top-2 butterfly, group ranks, arg-max rounds),
 *   picks exactly gateSelect's experts, ties included, for groups of 32, 4 and 1 experts.
 * - The quantisation's round-to-odd quotient gives the reference codec's E4M3 code of the exact
 *   quotient (the plain FP32 quotient does not always); pow2 tile scales equal tileScale's.
 * - RoPE's baked frequencies and amplitude are the reference's, bit for bit.
 * - The row-wise kernels and moe_unpermute stay within 1024 threads for rows wider than 8192, and
 *   these variants compile with nvcc with 0 spills (skipped, saying so, without nvcc).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkSpecFile } from "../compiler/check/index.js";
import type { KernelSpec } from "../compiler/kernel-spec.js";
import { lower } from "../compiler/pipeline.js";
import { generateKernel, unsupportedReason } from "../backends/cuda/generate.js";
import { H800_TARGET } from "../backends/cuda/gpu-target.js";
import { findToolchain } from "../backends/cuda/nvcc.js";
import { buildKernels } from "../backends/cuda/backend.js";
import { E4M3, encodeMinifloat, roundToBf16, tileScale } from "../backends/reference/numerics/index.js";
import { diffMetric } from "../bench/gpu-check/compare.js";
import { ropeFrequencies, yarnMscale } from "../backends/reference/ops/rope.js";
import { gateSelect, type GateConfig } from "../backends/reference/ops/gate.js";
import type { GateSpec } from "../compiler/spec.js";
import { ropeSpecOf } from "../backends/reference/kernels/unfused.js";
import { mulberry32 } from "../compiler/seeded-random.js";

// ── the kernels of the gpu-check model (small, every kind) ─────────────────────────────────────
const CHECK_MODEL = "bench/gpu-check/check-model.dsv3";
let checkSpecs: KernelSpec[] | null = null;
function kernels(): KernelSpec[] {
  if (checkSpecs === null) {
    const spec = checkSpecFile(CHECK_MODEL).spec!;
    checkSpecs = [];
    for (const s of spec.schedules) checkSpecs.push(...lower(spec, { phase: s.kind === "training" ? "train" : s.kind, schedule: s.name }).kernels);
  }
  return checkSpecs;
}
const kernelOf = (kind: string): KernelSpec => kernels().find((k) => k.kind === kind)!;
const sourceOf = (spec: KernelSpec): string => generateKernel(spec, H800_TARGET).source;

// ── PTX ISA emulation ────────────────────────────────────────────────────────────────────────────
/** A warp's registers: [lane][register] → two 16-bit values (low half first). */
type Regs = [number, number][][];

/**
 * ldmatrix.sync.aligned.m8n8.x4(.trans).b16: lane 8m + i gives the address of row i of matrix m;
 * lane 4i + w receives, in register m, elements (i, 2w), (i, 2w + 1) of matrix m — or, with .trans,
 * elements (2w, i), (2w + 1, i).
 */
function ldmatrixX4(smem: Float64Array, address: (lane: number) => number, trans: boolean): Regs {
  const regs: Regs = Array.from({ length: 32 }, () => [] as [number, number][]);
  for (let m = 0; m < 4; m++) {
    const row = (i: number, c: number): number => smem[address(8 * m + i) + c]!;
    for (let i = 0; i < 8; i++)
      for (let w = 0; w < 4; w++) regs[4 * i + w]![m] = trans ? [row(2 * w, i), row(2 * w + 1, i)] : [row(i, 2 * w), row(i, 2 * w + 1)];
  }
  return regs;
}

/** mma.sync.m16n8k16.row.col: D[lane][0..3] += A·B with A (4 regs), B (2 regs) in the PTX fragment layouts. */
function mma(d: number[][], a: Regs, b: Regs): void {
  const A = Array.from({ length: 16 }, () => new Float64Array(16));
  const B = Array.from({ length: 16 }, () => new Float64Array(8));
  for (let lane = 0; lane < 32; lane++) {
    const g = lane >> 2;
    const t = lane & 3;
    for (let r = 0; r < 4; r++)
      for (let e = 0; e < 2; e++) A[g + 8 * (r % 2)]![2 * t + 8 * Math.floor(r / 2) + e] = a[lane]![r]![e]!;
    for (let r = 0; r < 2; r++) for (let e = 0; e < 2; e++) B[2 * t + 8 * r + e]![g] = b[lane]![r]![e]!;
  }
  for (let lane = 0; lane < 32; lane++) {
    const g = lane >> 2;
    const t = lane & 3;
    for (let r = 0; r < 4; r++) {
      const row = g + 8 * Math.floor(r / 2);
      const col = 2 * t + (r % 2);
      let s = 0;
      for (let k = 0; k < 16; k++) s += A[row]![k]! * B[k]![col]!;
      d[lane]![r] = d[lane]![r]! + s;
    }
  }
}
/** Registers r0, r1 of every lane of an x4 load: the B operand of one n8 tile. */
const pick = (regs: Regs, r0: number, r1: number): Regs => regs.map((l) => [l[r0]!, l[r1]!]);

function randomMatrix(rng: () => number, rows: number, ld: number): Float64Array {
  const m = new Float64Array(rows * ld);
  for (let i = 0; i < m.length; i++) m[i] = Math.floor(rng() * 17) - 8; // small integers: exact sums
  return m;
}

describe("prefill_attention: fragment layouts of S = Q·Kᵀ, the P re-pack and O = P·V", () => {
  it("the generated source uses the index formulas emulated here", () => {
    const src = sourceOf(kernelOf("prefill_attention"));
    for (const text of [
      "ldmatrix_x4(a, qs + (warp * 16 + (q & 1) * 8 + (lane & 7)) * LDK + k0 + (q >> 1) * 8);",
      "ldmatrix_x4(b, kp + (n * 16 + (q >> 1) * 8 + (lane & 7)) * LDK + k0 + (q & 1) * 8);",
      "mma_bf16(s + n * 8, a, b[0], b[1]);",
      "mma_bf16(s + n * 8 + 4, a, b[2], b[3]);",
      "const int j = j0 + (i / 4) * 8 + (lane % 4) * 2 + (i & 1);",
      "const int ra = q0 + warp * 16 + lane / 4, rb = ra + 8;",
      "const bool lower = (i & 2) != 0;",
      "p[i / 2] = f32x2_to_bf16x2(p0, p1);",
      "const unsigned a[4] = {p[kk * 4], p[kk * 4 + 1], p[kk * 4 + 2], p[kk * 4 + 3]};",
      "ldmatrix_x4_trans(b, vp + (kk * 16 + (q & 1) * 8 + (lane & 7)) * LDV + t * 16 + (q >> 1) * 8);",
      "mma_bf16(o + t * 8, a, b[0], b[1]);",
      "mma_bf16(o + t * 8 + 4, a, b[2], b[3]);",
      "const int col = (i / 4) * 8 + (lane % 4) * 2;",
      "mx_a = warp_max_xor(mx_a, 4);",
      "l_a = l_a * ca + warp_sum_xor(sum_a, 4);",
    ])
      expect(src).toContain(text);
  });

  it("emulated with the PTX tables, one warp's S and O equal the matrix products exactly", () => {
    const rng = mulberry32(11);
    const BM = 32;
    const BN = 64;
    const DKP = 48;
    const DVP = 32;
    const LDK = DKP + 8;
    const LDV = DVP + 8;
    const qs = randomMatrix(rng, BM, LDK);
    const kp = randomMatrix(rng, BN, LDK);
    const vp = randomMatrix(rng, BN, LDV);
    for (const warp of [0, 1]) {
      // S = Q·Kᵀ: s[n * 8 + 4h + r] for n16 tile n, n8 half h.
      const s = Array.from({ length: 32 }, () => new Array<number>(BN / 2).fill(0));
      for (let k0 = 0; k0 < DKP; k0 += 16) {
        const a = ldmatrixX4(qs, (lane) => (warp * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LDK + k0 + ((lane >> 3) >> 1) * 8, false);
        for (let n = 0; n < BN / 16; n++) {
          const b = ldmatrixX4(kp, (lane) => (n * 16 + ((lane >> 3) >> 1) * 8 + (lane & 7)) * LDK + k0 + ((lane >> 3) & 1) * 8, false);
          for (const [h, r0, r1] of [[0, 0, 1], [1, 2, 3]] as const) {
            const d = s.map((l) => l.slice(n * 8 + 4 * h, n * 8 + 4 * h + 4));
            mma(d, a, pick(b, r0, r1));
            d.forEach((v, lane) => v.forEach((x, r) => (s[lane]![n * 8 + 4 * h + r] = x)));
          }
        }
      }
      const S = (row: number, key: number): number => {
        let x = 0;
        for (let c = 0; c < DKP; c++) x += qs[row * LDK + c]! * kp[key * LDK + c]!;
        return x;
      };
      for (let lane = 0; lane < 32; lane++)
        for (let i = 0; i < BN / 2; i++) {
          const row = warp * 16 + (lane >> 2) + ((i & 2) !== 0 ? 8 : 0);
          const key = Math.floor(i / 4) * 8 + (lane % 4) * 2 + (i & 1);
          expect(s[lane]![i]).toBe(S(row, key));
        }
      // P (here S itself) re-packed from the C fragments into A fragments, O = P·V.
      const o = Array.from({ length: 32 }, () => new Array<number>(DVP / 2).fill(0));
      for (let kk = 0; kk < BN / 16; kk++) {
        const a: Regs = s.map((l) => [0, 1, 2, 3].map((j) => [l[(kk * 4 + j) * 2]!, l[(kk * 4 + j) * 2 + 1]!] as [number, number]));
        for (let t = 0; t < DVP / 16; t++) {
          const b = ldmatrixX4(vp, (lane) => (kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LDV + t * 16 + ((lane >> 3) >> 1) * 8, true);
          for (const [h, r0, r1] of [[0, 0, 1], [1, 2, 3]] as const) {
            const d = o.map((l) => l.slice(t * 8 + 4 * h, t * 8 + 4 * h + 4));
            mma(d, a, pick(b, r0, r1));
            d.forEach((v, lane) => v.forEach((x, r) => (o[lane]![t * 8 + 4 * h + r] = x)));
          }
        }
      }
      for (let lane = 0; lane < 32; lane++)
        for (let i = 0; i < DVP / 2; i++) {
          const row = warp * 16 + (lane >> 2) + ((i & 2) !== 0 ? 8 : 0);
          const col = Math.floor(i / 4) * 8 + (lane % 4) * 2 + (i & 1);
          let x = 0;
          for (let key = 0; key < BN; key++) x += S(row, key) * vp[key * LDV + col]!;
          expect(o[lane]![i]).toBe(x);
        }
    }
  });
});

describe("mla_decode_attention: fragment layouts through the shared P tile", () => {
  it("the generated source uses the index formulas emulated here", () => {
    const src = sourceOf(kernelOf("mla_decode_attention"));
    for (const text of [
      "const int rg = warp & 1, cg = warp >> 1;",
      "ldmatrix_x4(a, qs + (rg * 16 + (q & 1) * 8 + (lane & 7)) * LDQ + k0 + (q >> 1) * 8);",
      "ldmatrix_x4(b, kp + (cg * 16 + (q >> 1) * 8 + (lane & 7)) * LDQ + k0 + (q & 1) * 8);",
      "const int j = p * PAGE + cg * 16 + (i / 4) * 8 + (lane % 4) * 2 + (i & 1);",
      "*(unsigned*)(ps + row * LDP + cg * 16 + (i / 4) * 8 + (lane % 4) * 2) = packed;",
      "ldmatrix_x4(a, ps + (rg * 16 + (q & 1) * 8 + (lane & 7)) * LDP + k0 + (q >> 1) * 8);",
      "ldmatrix_x4_trans(b, kp + (k0 + (q & 1) * 8 + (lane & 7)) * LDQ + cg * (DV / 4) + t * 16 + (q >> 1) * 8);",
      "const int col = cg * (DV / 4) + (i / 4) * 8 + (lane % 4) * 2;",
      "for (int t = 0; t < DV / 64; ++t) {",
    ])
      expect(src).toContain(text);
  });

  it("emulated with the PTX tables, the 8 warps' S tiles, P tile and O quarters equal the matrix products", () => {
    const rng = mulberry32(12);
    const PAGE = 64;
    const DK = 32;
    const DV = 128;
    const LDQ = Math.max(DK, DV) + 8;
    const LDP = PAGE + 8;
    const qs = randomMatrix(rng, 32, LDQ);
    const kp = randomMatrix(rng, PAGE, LDQ);
    const S = (row: number, key: number): number => {
      let x = 0;
      for (let c = 0; c < DK; c++) x += qs[row * LDQ + c]! * kp[key * LDQ + c]!;
      return x;
    };
    const ps = new Float64Array(32 * LDP);
    for (let warp = 0; warp < 8; warp++) {
      const rg = warp & 1;
      const cg = warp >> 1;
      const s = Array.from({ length: 32 }, () => new Array<number>(8).fill(0));
      for (let k0 = 0; k0 < DK; k0 += 16) {
        const a = ldmatrixX4(qs, (lane) => (rg * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LDQ + k0 + ((lane >> 3) >> 1) * 8, false);
        const b = ldmatrixX4(kp, (lane) => (cg * 16 + ((lane >> 3) >> 1) * 8 + (lane & 7)) * LDQ + k0 + ((lane >> 3) & 1) * 8, false);
        for (const [h, r0, r1] of [[0, 0, 1], [1, 2, 3]] as const) {
          const d = s.map((l) => l.slice(4 * h, 4 * h + 4));
          mma(d, a, pick(b, r0, r1));
          d.forEach((v, lane) => v.forEach((x, r) => (s[lane]![4 * h + r] = x)));
        }
      }
      for (let lane = 0; lane < 32; lane++)
        for (let i = 0; i < 8; i++) {
          const row = rg * 16 + (lane >> 2) + ((i & 2) !== 0 ? 8 : 0);
          const key = cg * 16 + Math.floor(i / 4) * 8 + (lane % 4) * 2 + (i & 1);
          expect(s[lane]![i]).toBe(S(row, key));
          ps[row * LDP + key] = s[lane]![i]!; // the packed store, element by element
        }
    }
    for (let warp = 0; warp < 8; warp++) {
      const rg = warp & 1;
      const cg = warp >> 1;
      const o = Array.from({ length: 32 }, () => new Array<number>(DV / 8).fill(0));
      for (let k0 = 0; k0 < PAGE; k0 += 16) {
        const a = ldmatrixX4(ps, (lane) => (rg * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LDP + k0 + ((lane >> 3) >> 1) * 8, false);
        for (let t = 0; t < DV / 64; t++) {
          const b = ldmatrixX4(kp, (lane) => (k0 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LDQ + cg * (DV / 4) + t * 16 + ((lane >> 3) >> 1) * 8, true);
          for (const [h, r0, r1] of [[0, 0, 1], [1, 2, 3]] as const) {
            const d = o.map((l) => l.slice(t * 8 + 4 * h, t * 8 + 4 * h + 4));
            mma(d, a, pick(b, r0, r1));
            d.forEach((v, lane) => v.forEach((x, r) => (o[lane]![t * 8 + 4 * h + r] = x)));
          }
        }
      }
      for (let lane = 0; lane < 32; lane++)
        for (let i = 0; i < DV / 8; i++) {
          const row = rg * 16 + (lane >> 2) + ((i & 2) !== 0 ? 8 : 0);
          const col = cg * (DV / 4) + Math.floor(i / 4) * 8 + (lane % 4) * 2 + (i & 1);
          let x = 0;
          for (let key = 0; key < PAGE; key++) x += S(row, key) * kp[key * LDQ + col]!;
          expect(o[lane]![i]).toBe(x);
        }
    }
  });
});

describe("prefill_attention: causal block skipping and edge masking", () => {
  it("the generated source uses the conditions emulated here", () => {
    const src = sourceOf(kernelOf("prefill_attention"));
    for (const text of [
      "const int kv_end = CAUSAL ? min(KV_LEN, q0 + BM + OFFSET) : KV_LEN;",
      "if (!CAUSAL || j0 <= q0 + warp * 16 + 15 + OFFSET) {",
      "const bool edge = j0 + BN > KV_LEN || (CAUSAL && j0 + BN - 1 > q0 + warp * 16 + OFFSET);",
      "if (j >= KV_LEN || (CAUSAL && j > row + OFFSET)) v = -INFINITY;",
    ])
      expect(src).toContain(text);
  });

  it("computed and unmasked (query, key) pairs are exactly the reference's visible ones, q_len ≠ kv_len", () => {
    // Reference (backends/reference/kernels/prefill-attention.ts): query i sees j ≤ min(kv_len − 1, i + kv_len − q_len).
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 200 }), fc.boolean(), (qLen, extra, causal) => {
        const kvLen = qLen + extra;
        const BM = 128;
        const BN = 64;
        const OFFSET = kvLen - qLen;
        for (let q0 = 0; q0 < qLen; q0 += BM) {
          const kvEnd = causal ? Math.min(kvLen, q0 + BM + OFFSET) : kvLen;
          const tiles = Math.ceil(kvEnd / BN);
          for (let warp = 0; warp < BM / 16; warp++) {
            const seen = new Map<number, number>();
            for (let kt = 0; kt < tiles; kt++) {
              const j0 = kt * BN;
              if (causal && !(j0 <= q0 + warp * 16 + 15 + OFFSET)) continue;
              const edge = j0 + BN > kvLen || (causal && j0 + BN - 1 > q0 + warp * 16 + OFFSET);
              for (let r = 0; r < 16; r++) {
                const row = q0 + warp * 16 + r;
                for (let j = j0; j < j0 + BN; j++) {
                  const masked = edge && (j >= kvLen || (causal && j > row + OFFSET));
                  if (!masked) {
                    if (j >= kvLen || (causal && j > row + OFFSET)) return false; // an invisible key leaks in
                    seen.set(row, (seen.get(row) ?? 0) + 1);
                  }
                }
              }
            }
            for (let r = 0; r < 16; r++) {
              const row = q0 + warp * 16 + r;
              if (row >= qLen) continue;
              const visible = causal ? Math.min(kvLen - 1, row + OFFSET) + 1 : kvLen;
              if ((seen.get(row) ?? 0) !== visible) return false;
            }
          }
        }
        return true;
      }),
      { numRuns: 60 },
    );
  });
});

describe("prefill_attention: the per-row online softmax as generated", () => {
  /**
   * One query row as the kernel computes it: the CTA's key tiles up to kv_end, the warp skip, the
   * edge mask, base-2 scores (scale·log2 e folded in), the running max with a 0 reference while it
   * is −∞, the rescale factor, FP32 probabilities summed unrounded and used as BF16 in P·V, O / l.
   */
  function kernelRow(q: Float64Array, k: Float64Array, v: Float64Array, dk: number, dv: number, qLen: number, kvLen: number, row: number, scale: number, causal: boolean): Float64Array {
    const BM = 128;
    const BN = 64;
    const OFFSET = kvLen - qLen;
    const q0 = Math.floor(row / BM) * BM;
    const warp = Math.floor((row - q0) / 16);
    const SL = Math.fround(scale * Math.LOG2E);
    const kvEnd = causal ? Math.min(kvLen, q0 + BM + OFFSET) : kvLen;
    let m = -Infinity;
    let l = 0;
    const o = new Float64Array(dv);
    for (let kt = 0; kt < Math.ceil(kvEnd / BN); kt++) {
      const j0 = kt * BN;
      if (causal && !(j0 <= q0 + warp * 16 + 15 + OFFSET)) continue;
      const edge = j0 + BN > kvLen || (causal && j0 + BN - 1 > q0 + warp * 16 + OFFSET);
      const s = new Float64Array(BN);
      let mx = -Infinity;
      for (let jj = 0; jj < BN; jj++) {
        const j = j0 + jj;
        let dot = 0;
        if (j < kvLen) for (let c = 0; c < dk; c++) dot += q[row * dk + c]! * k[j * dk + c]!;
        let x = Math.fround(Math.fround(dot) * SL);
        if (edge && (j >= kvLen || (causal && j > row + OFFSET))) x = -Infinity;
        s[jj] = x;
        mx = Math.max(mx, x);
      }
      const nm = Math.max(m, mx);
      const ref = nm === -Infinity ? 0 : nm;
      const ca = Math.fround(2 ** (m - ref));
      m = nm;
      let sum = 0;
      for (let c = 0; c < dv; c++) o[c] = Math.fround(o[c]! * ca);
      for (let jj = 0; jj < BN; jj++) {
        const p = Math.fround(2 ** (s[jj]! - ref));
        sum = Math.fround(sum + p);
        const pb = roundToBf16(p);
        if (pb !== 0) for (let c = 0; c < dv; c++) o[c] = Math.fround(o[c]! + pb * v[(j0 + jj) * dv + c]!);
      }
      l = Math.fround(Math.fround(l * ca) + sum);
    }
    const inv = l > 0 ? Math.fround(1 / l) : 0;
    return o.map((x) => roundToBf16(Math.fround(x * inv)));
  }

  it("equals the exact softmax attention within the gpu-check tolerance, q_len ≠ kv_len, ragged tiles", () => {
    const rng = mulberry32(21);
    for (const [qLen, kvLen, causal] of [
      [200, 330, true],
      [70, 70, true],
      [150, 129, false],
    ] as const) {
      const dk = 24;
      const dv = 16;
      const scale = 0.35;
      const rand = (n: number): Float64Array => Float64Array.from({ length: n }, () => roundToBf16(rng() * 4 - 2));
      const q = rand(qLen * dk);
      const k = rand(kvLen * dk);
      const v = rand(kvLen * dv);
      const got: number[] = [];
      const want: number[] = [];
      for (let row = 0; row < qLen; row++) {
        got.push(...kernelRow(q, k, v, dk, dv, qLen, kvLen, row, scale, causal));
        const last = causal ? Math.min(kvLen - 1, row + kvLen - qLen) : kvLen - 1;
        const sc = Array.from({ length: last + 1 }, (_, j) => {
          let d = 0;
          for (let c = 0; c < dk; c++) d += q[row * dk + c]! * k[j * dk + c]!;
          return d * scale;
        });
        const mx = Math.max(...sc);
        const e = sc.map((x) => Math.exp(x - mx));
        const z = e.reduce((a, b) => a + b, 0);
        for (let c = 0; c < dv; c++) want.push(e.reduce((a, w, j) => a + w * v[j * dv + c]!, 0) / z);
      }
      expect(diffMetric(got, want)).toBeLessThan(1e-5);
    }
  });

  it("kv_block and q_block the tiles cannot take are refused (a diagnostic, not a broken kernel)", () => {
    const base = kernelOf("prefill_attention");
    expect(unsupportedReason(base)).toBeNull();
    for (const [kvBlock, qBlock] of [[128, 128], [40, 128], [64, 512], [64, 72]] as const)
      expect(unsupportedReason({ ...base, constants: { ...base.constants, kv_block: kvBlock, q_block: qBlock } })).toMatch(/kv_block/);
  });
});

describe("gate_topk", () => {
  it("the warp butterfly merge of per-lane top-2 pairs equals the sequential top-2 of a group", () => {
    // As the generated code: each lane's (a, b) from its PER_LANE values, then xor-merges across LANES_PER_GROUP lanes.
    fc.assert(
      fc.property(fc.constantFrom(1, 2, 4, 8, 16, 32), fc.constantFrom(1, 2, 4, 8), fc.integer({ min: 0, max: 1 << 30 }), (lanes, perLane, seed) => {
        const rng = mulberry32(seed);
        const values = Array.from({ length: lanes * perLane }, () => Math.floor(rng() * 9) / 8); // ties on purpose
        const pairs = Array.from({ length: lanes }, (_, l) => {
          let a = -Infinity;
          let b = -Infinity;
          for (let j = 0; j < perLane; j++) {
            const v = values[l * perLane + j]!;
            if (v > a) {
              b = a;
              a = v;
            } else if (v > b) b = v;
          }
          return [a, b] as [number, number];
        });
        for (let o = 1; o < lanes; o <<= 1) {
          const next = pairs.map(([a, b], l) => {
            const [a2, b2] = pairs[l ^ o]!;
            return [Math.max(a, a2), Math.max(Math.min(a, a2), Math.max(b, b2))] as [number, number];
          });
          pairs.splice(0, lanes, ...next);
        }
        const sorted = [...values].sort((x, y) => y - x);
        return pairs.every(([a, b]) => a === sorted[0] && b === (sorted.length > 1 ? sorted[1] : -Infinity));
      }),
      { numRuns: 200 },
    );
  });

  /**
   * The generated warp algorithm lane by lane: each lane's PER_LANE selection scores, the group
   * top-2 butterfly, group ranks (ties → lower group), then TOPK rounds of per-lane best (ties →
   * lower j) and the xor arg-max reduction (ties → lower expert).
   */
  function warpSelect(sel: Float32Array, experts: number, groups: number, topGroups: number, topk: number): number[] {
    const perLane = Math.max(1, experts / 32);
    const lanesPerGroup = experts / groups / perLane;
    const sumTop2 = experts / groups > 1;
    const lane = Array.from({ length: 32 }, (_, l) => Array.from({ length: perLane }, (_, j) => (l * perLane + j < experts ? sel[l * perLane + j]! : -Infinity)));
    let pairs = lane.map((vs) => {
      let a = -Infinity;
      let b = -Infinity;
      for (const v of vs) {
        if (v > a) {
          b = a;
          a = v;
        } else if (v > b) b = v;
      }
      return [a, b] as [number, number];
    });
    for (let o = 1; o < lanesPerGroup; o <<= 1)
      pairs = pairs.map(([a, b], l) => {
        const [a2, b2] = pairs[l ^ o]!;
        return [Math.max(a, a2), Math.max(Math.min(a, a2), Math.max(b, b2))];
      });
    const groupScore = pairs.map(([a, b]) => (sumTop2 ? Math.fround(a + b) : a));
    const kept = groupScore.map((mine, l) => {
      let rank = 0;
      for (let g = 0; g < groups; g++) {
        const gs = groupScore[(g * lanesPerGroup) % 32]!;
        if (gs > mine || (gs === mine && g < Math.floor(l / lanesPerGroup))) rank++;
      }
      return rank < topGroups;
    });
    const taken = lane.map(() => new Array<boolean>(perLane).fill(false));
    const chosen: number[] = [];
    for (let k = 0; k < topk; k++) {
      let best = lane.map((vs, l) => {
        let bv = -Infinity;
        let be = 0x7fffffff;
        vs.forEach((v, j) => {
          if (kept[l] && !taken[l]![j] && v > bv) {
            bv = v;
            be = l * perLane + j;
          }
        });
        return [bv, be] as [number, number];
      });
      for (let o = 16; o > 0; o >>= 1)
        best = best.map(([v, e], l) => {
          const [v2, e2] = best[l ^ o]!;
          return v2 > v || (v2 === v && e2 < e) ? [v2, e2] : [v, e];
        });
      const e = best[0]![1];
      taken[Math.floor(e / perLane)]![e % perLane] = true;
      chosen.push(e);
    }
    return chosen;
  }

  it("the warp selection equals gateSelect, ties included (groups of 64, 32, 4 and 1 experts)", () => {
    const rng = mulberry32(31);
    for (const [experts, groups, topGroups, topk] of [
      [256, 8, 4, 8],
      [16, 4, 2, 4],
      [32, 32, 8, 6],
      [16, 16, 4, 4],
      [64, 1, 1, 6],
    ] as const) {
      const gate = kernelOf("gate_topk");
      expect(unsupportedReason({ ...gate, constants: { ...gate.constants, n: experts, groups, top_groups: topGroups, topk } })).toBeNull();
      const cfg: GateConfig = {
        experts,
        topK: topk,
        gate: { scoring: "sigmoid", biasBalancing: null, groups, topGroups, groupScore: "top2_sum", normalizeTopk: true, routedScale: 1, seqAuxLossWeight: 0 } as unknown as GateSpec,
      };
      for (let t = 0; t < 50; t++) {
        const sel = Float32Array.from({ length: experts }, () => Math.floor(rng() * 12) / 8 - 0.25); // many ties
        expect(warpSelect(sel, experts, groups, topGroups, topk)).toEqual(Array.from(gateSelect(sel, null, cfg, 1)));
      }
    }
  });

  it("a group of one expert scores that expert (never a + −∞), as gateSelect", () => {
    const base = kernelOf("gate_topk");
    const n = base.constants["n"] as number;
    const single = { ...base, constants: { ...base.constants, groups: n, top_groups: n / 2 } };
    expect(unsupportedReason(single)).toBeNull();
    expect(sourceOf(single)).toContain("const float my_group_score = a;");
    expect(sourceOf(base)).toContain("const float my_group_score = a + b;");
  });
});

describe("rowwise quantisation numerics", () => {
  /** FP32 bits of a float. */
  const bitsOf = (x: number): number => {
    const f = new Float32Array([x]);
    return new Uint32Array(f.buffer)[0]!;
  };
  const fromBits = (b: number): number => new Float32Array(new Uint32Array([b >>> 0]).buffer)[0]!;
  /** The generated div_round_odd: FP32 quotient, its exact remainder (the FMA), round to odd. */
  const divRoundOdd = (x: number, s: number): number => {
    const q = Math.fround(x / s);
    const r = x - q * s; // exact in FP64 (products of two FP32 values are exact), as fmaf's remainder
    if (r === 0 || q === 0 || !Number.isFinite(q)) return q;
    const b = bitsOf(q);
    return fromBits(((r > 0) === (q > 0) ? b : b - 1) | 1);
  };
  const bf16Values = (lo: number, hi: number): number[] => {
    const out: number[] = [];
    for (let b = lo; b < hi; b++) out.push(fromBits(b << 16));
    return out;
  };

  it("the generated kernels quantise through div_round_odd and leave ±∞ out of amax", () => {
    for (const kind of ["rmsnorm_quantize", "swiglu_quantize"]) {
      const src = sourceOf(kernelOf(kind));
      expect(src).toContain("f32x2_to_e4m3x2(div_round_odd(v[ch][0], s), div_round_odd(v[ch][1], s))");
      expect(src).toContain("if (a < INFINITY) amax = fmaxf(amax, a);");
      expect(src).toContain("amax = warp_max_xor(amax, 16);");
    }
  });

  it("E4M3 of the round-to-odd FP32 quotient is the reference's E4M3 of the exact quotient; the plain FP32 quotient is not", () => {
    // Tiles of BF16 values: amax a (so s = fround(a / 448)) and an element x ≤ a.
    const amaxes = bf16Values(0x3f80, 0x4000); // [1, 2)·2^0 and [2, 4)·2^0 … two binades
    const xs = bf16Values(0x3c00, 0x4080); // 2^-7 .. 4
    let plainWrong = 0;
    let cases = 0;
    for (const a of amaxes) {
      const s = tileScale(a, E4M3);
      for (const x of xs) {
        if (x > a) continue;
        cases++;
        const exact = encodeMinifloat(E4M3, x / s, "satfinite");
        expect(encodeMinifloat(E4M3, divRoundOdd(x, s), "satfinite")).toBe(exact);
        expect(encodeMinifloat(E4M3, divRoundOdd(-x, s), "satfinite")).toBe(encodeMinifloat(E4M3, -x / s, "satfinite"));
        if (encodeMinifloat(E4M3, Math.fround(x / s), "satfinite") !== exact) plainWrong++;
      }
    }
    expect(cases).toBeGreaterThan(10_000);
    expect(plainWrong).toBeGreaterThan(0); // the double rounding the kernel avoids is real
  });

  it("the device tile_scale's pow2 rule (frexp, then one doubling) equals tileScale", () => {
    const deviceScale = (amax: number): number => {
      const a = amax > 1e-4 ? amax : Math.fround(1e-4);
      const q = a / 448;
      const e = Math.floor(Math.log2(q)) + 1; // frexp: q = m·2^e, m ∈ [0.5, 1)
      let s = 2 ** (e - 1);
      if (2 ** (e - 1) > q) s /= 2; // guard Math.log2's rounding at exact powers
      if (q >= 2 ** e) s *= 2;
      if (a / s > 448) s *= 2;
      return s;
    };
    fc.assert(
      fc.property(fc.float({ min: 0, max: Math.fround(1e30), noNaN: true }), (amax) => deviceScale(Math.fround(amax)) === tileScale(Math.fround(amax), E4M3, true)),
      { numRuns: 500 },
    );
    for (const a of [0, 1e-5, 448, 896, 447.99998, 448 * 2 ** -20]) expect(deviceScale(Math.fround(a))).toBe(tileScale(Math.fround(a), E4M3, true));
  });

  it("rows wider than 8192 columns take chunks of at most 1024 threads, each tile inside one chunk", () => {
    for (const kind of ["rmsnorm_quantize", "swiglu_quantize"]) {
      const base = kernelOf(kind);
      for (const dim of [7168, 18432, 24576, 8200]) {
        const wide = { ...base, constants: { ...base.constants, dim }, key: `${base.key}#${dim}` };
        const g = generateKernel(wide, H800_TARGET);
        const threads = g.launch.block[0];
        const chunks = Number(/CHUNKS = (\d+);/.exec(g.source)![1]);
        expect(threads).toBeLessThanOrEqual(1024);
        expect(threads % 32).toBe(0);
        expect(threads * chunks * 8).toBeGreaterThanOrEqual(dim);
        expect((threads * 8) % 128).toBe(0);
      }
    }
    const unpermute = kernelOf("moe_unpermute");
    const wide = generateKernel({ ...unpermute, constants: { ...unpermute.constants, hidden: 18432 }, key: `${unpermute.key}#18432` }, H800_TARGET);
    expect(wide.launch.block[0]).toBe(1024);
    expect(wide.source).toContain("for (int col = threadIdx.x * 8; col < HIDDEN; col += THREADS * 8) {");
  });
});

describe("rope", () => {
  it("bakes the reference's YaRN frequencies and amplitude bit for bit, and fills cos/sin for any rope width", () => {
    const spec = kernelOf("rope");
    const src = sourceOf(spec);
    const rope = ropeSpecOf(spec.constants["theta"], spec.constants["yarn"]);
    const ropeDim = spec.constants["rope_dim"] as number;
    const freqs = /FREQ\[HALF\] = \{([^}]*)\}/.exec(src)![1]!.split(",").map(Number);
    expect(freqs).toEqual(Array.from(ropeFrequencies(ropeDim, rope)));
    const amplitude = Number(/AMPLITUDE = ([^;]+);/.exec(src)![1]);
    expect(amplitude).toBe(rope.yarn ? yarnMscale(rope.yarn.factor, rope.yarn.mscale) / yarnMscale(rope.yarn.factor, rope.yarn.mscaleAllDim) : 1);
    expect(src).toContain("for (int i = threadIdx.x; i < HALF; i += THREADS) {");
    expect(src).toContain("__shared__ double cs[HALF], sn[HALF];");
    // One head of 128 rope dims: 32 threads for 64 pairs.
    const wide = { ...spec, constants: { ...spec.constants, heads: 1, rope_dim: 128, head_dim: 128, offset: 0 }, key: `${spec.key}#wide` };
    const g = generateKernel(wide, H800_TARGET);
    expect(g.launch.block[0]).toBeLessThan(64);
    expect(g.source).toContain("HALF = 64");
  });
});

describe("the reviewed generators compile (nvcc)", () => {
  const toolchain = findToolchain();
  it.skipIf(toolchain === null)("the wide-row, wide-rope, wide-unpermute and single-expert-group variants compile with 0 spills", async () => {
    const rms = kernelOf("rmsnorm_quantize");
    const swi = kernelOf("swiglu_quantize");
    const rope = kernelOf("rope");
    const gate = kernelOf("gate_topk");
    const unpermute = kernelOf("moe_unpermute");
    const n = gate.constants["n"] as number;
    const variants: KernelSpec[] = [
      { ...rms, id: `${rms.id}#w`, constants: { ...rms.constants, dim: 18432 }, key: `${rms.key}#18432` },
      { ...swi, id: `${swi.id}#w`, constants: { ...swi.constants, dim: 18432 }, key: `${swi.key}#18432` },
      { ...rope, id: `${rope.id}#w`, constants: { ...rope.constants, heads: 1, rope_dim: 128, head_dim: 128, offset: 0 }, key: `${rope.key}#wide` },
      { ...gate, id: `${gate.id}#g1`, constants: { ...gate.constants, groups: n, top_groups: n / 2 }, key: `${gate.key}#g1` },
      { ...unpermute, id: `${unpermute.id}#w`, constants: { ...unpermute.constants, hidden: 18432 }, key: `${unpermute.key}#18432` },
    ];
    const result = await buildKernels(variants, { gpu: checkSpecFile(CHECK_MODEL).spec!.cluster.gpu, toolchain, cache: null });
    expect(result.failures).toEqual([]);
    expect(result.kernels.length).toBe(variants.length);
    for (const b of result.kernels) expect(b.resources!.spillStoreBytes + b.resources!.spillLoadBytes).toBe(0);
  }, 120_000);
});
