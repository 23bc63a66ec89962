/**
 * The CUDA backend (backends/cuda): generated sources (static checks of the FP8 GEMM's Hopper
 * machinery, determinism, kernel choices within the SM's limits), the toolchain's report parser,
 * the content-addressed cache, the manifest's `kernels` section, the CI compile of every kernel of
 * the DeepSeek-V3 train/prefill/decode bundles with nvcc (0 spills, ≤ 227 KiB of shared memory;
 * skipped, saying so, without nvcc), the `dsv3 compile` integration and every DSV93xx diagnostic.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { checkSpecFile } from "../compiler/check/index.js";
import { KERNEL_KINDS, kernelSpecs, uniqueKernels, type KernelSpec } from "../compiler/kernel-spec.js";
import { parseModel } from "../compiler/graph/parse.js";
import { lower } from "../compiler/pipeline.js";
import type { Spec } from "../compiler/spec.js";
import { renderDiagnostic } from "../dsl/diagnostic.js";
import { runCli } from "../cli/main.js";
import { buildKernels, CUDA_BACKEND, distinctKernels, resourceViolations } from "../backends/cuda/backend.js";
import { bundleKernels } from "../backends/cuda/bundle-kernels.js";
import { generateKernel, kernelName, unsupportedReason } from "../backends/cuda/generate.js";
import { gpuTargetOf, H800_TARGET } from "../backends/cuda/gpu-target.js";
import { chooseAttention, chooseGemm, MATH_REGISTERS, PRODUCER_REGISTERS } from "../backends/cuda/kernel-choice.js";
import { SW128_DESC, sw128Descriptor } from "../backends/cuda/kernels/device-prelude.js";
import { cacheKey, KernelCache } from "../backends/cuda/kernel-cache.js";
import { findToolchain, parsePtxasReport } from "../backends/cuda/nvcc.js";
import { serializeManifest, validateManifest, createManifest, type ManifestKernel } from "../runtime/manifest.js";
import { verifyBundle } from "../runtime/bundle-verify.js";
import { resizeGemm } from "../bench/gpu-check/main.js";

const V3 = "specs/deepseek-v3.dsv3";
const scratch = mkdtempSync(join(tmpdir(), "dsv3-cuda-test-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let v3Spec: Spec | null = null;
function v3(): Spec {
  v3Spec ??= checkSpecFile(V3).spec!;
  return v3Spec;
}
const bundles = new Map<string, KernelSpec[]>();
function kernelsOf(schedule: "train" | "prefill" | "decode"): KernelSpec[] {
  let k = bundles.get(schedule);
  if (k === undefined) {
    const kind = v3().schedules.find((s) => s.name === schedule)!.kind;
    k = lower(v3(), { phase: kind === "training" ? "train" : kind, schedule }).kernels;
    bundles.set(schedule, k);
  }
  return k;
}
const SCHEDULES = ["train", "prefill", "decode"] as const;
/** A grouped GEMM spec in the masked layout: 4 groups of 256 rows, N = 4096, K = 7168 (a DeepGEMM shape). */
function masked(grouped: KernelSpec): KernelSpec {
  const s = resizeGemm(grouped, 4 * 256, 4096, 7168, 4);
  s.constants = { ...s.constants, layout: "masked" };
  s.id = `${s.id}[masked]`;
  s.key = `${s.kind}:${JSON.stringify(s.constants)}`;
  return s;
}
/** The training attention of specs/tiny.dsv3 (head dims 12 / 8: the padded, narrow-copy path). */
function tinyAttention(): KernelSpec {
  const tiny = checkSpecFile("specs/tiny.dsv3").spec!;
  return lower(tiny, { phase: "train", schedule: "dualpipe" }).kernels.find((k) => k.kind === "prefill_attention")!;
}
const isFp8Gemm = (s: KernelSpec): boolean => (s.kind === "gemm" || s.kind === "grouped_gemm") && String(s.constants["a"]).startsWith("e4m3");

describe("generated CUDA sources", () => {
  it("every kernel of the V3 train, prefill and decode bundles has a generator, and equal keys share one kernel", () => {
    for (const schedule of SCHEDULES) {
      const specs = kernelsOf(schedule);
      expect(specs.map(unsupportedReason).filter((r) => r !== null)).toEqual([]);
      const distinct = distinctKernels(specs, H800_TARGET);
      expect(distinct.length).toBe(uniqueKernels(specs).length);
      expect(distinct.flatMap((d) => d.ids).sort()).toEqual(specs.map((s) => s.id).sort());
      for (const d of distinct) expect(generateKernel(d.spec, H800_TARGET).entry).toBe(kernelName(d.spec, H800_TARGET));
    }
    // The decode bundle has the MLA decode kernel; the kinds of all three bundles together cover every generator.
    const kinds = new Set(SCHEDULES.flatMap((s) => kernelsOf(s).map((k) => k.kind)));
    expect([...kinds].sort()).toEqual([...KERNEL_KINDS].sort());
    expect(CUDA_BACKEND.stages).toEqual(["cuda-source", "ptx", "cubin"]);
  });

  it("the FP8 GEMMs: TMA into an mbarrier pipeline, e4m3 wgmma, setmaxnreg warp specialisation, promotion every 128", () => {
    const gemms = uniqueKernels(kernelsOf("train").filter(isFp8Gemm));
    expect(gemms.length).toBeGreaterThan(5);
    for (const spec of gemms) {
      const k = generateKernel(spec, H800_TARGET);
      const c = chooseGemm(spec, H800_TARGET);
      const src = k.source;
      // Every size a compile-time constant.
      expect(src).toContain(`constexpr int M = ${spec.constants["m"]}, N = ${spec.constants["n"]}, K = ${spec.constants["k"]}`);
      expect(src).toContain(`wgmma.mma_async.sync.aligned.m64n${c.wgmmaN}k32.f32.e4m3.e4m3`);
      expect(src).toContain("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes");
      expect(src).toContain("mbarrier.arrive.expect_tx");
      expect(src).toContain("mbarrier.try_wait.parity");
      expect(src).toContain(`regs_dec<${PRODUCER_REGISTERS}>()`);
      expect(src).toContain(`regs_inc<${MATH_REGISTERS}>()`);
      expect(src).toContain("setmaxnreg.dec.sync.aligned.u32");
      // Promotion: one K block is 128 elements = 4 k32 wgmmas, then acc × (A scale · B scale) into FP32 registers.
      expect(c.blockK).toBe(128);
      expect(c.promote).toBe(128);
      expect(src).toContain('static_assert(BK == 128, "one K block is one promotion interval")');
      expect(src).toContain("for (int kk = 0; kk < 4; ++kk)");
      expect(src).toMatch(/fin\[i\] \+= acc\[i\] \*/);
      expect(src).toContain("scale_a + row0 * SCALE_COLS + kb");
      expect(src).toMatch(/__ldg\(scale_b0 \+ .* \* SCALE_COLS \+ kb\)/);
      // Registers and shared memory within one SM.
      expect(PRODUCER_REGISTERS * 128 + MATH_REGISTERS * 128 * c.mathWarpgroups).toBeLessThanOrEqual(H800_TARGET.registersPerSm);
      expect(k.launch.sharedBytes).toBeLessThanOrEqual(H800_TARGET.sharedBytesPerBlock);
      expect(c.stages).toBeGreaterThanOrEqual(3);
      expect(k.launch.grid[0]).toBeLessThanOrEqual(H800_TARGET.sms);
      expect(k.choice["multicast"]).toBe(c.multicast);
      if (c.multicast === 2) expect(src).toContain(".multicast::cluster");
      if (spec.kind === "grouped_gemm") expect(src).toContain("expert_of(seg_end, mb * BM)");
    }
  });

  it("the fused epilogues: residual adds, and SwiGLU with the 1×128 re-quantisation across both math warpgroups", () => {
    const specs = uniqueKernels(kernelsOf("train").filter(isFp8Gemm));
    const swiglu = specs.find((s) => (s.constants["epilogue"] as string[]).includes("swiglu"))!;
    const src = generateKernel(swiglu, H800_TARGET).source;
    expect(chooseGemm(swiglu, H800_TARGET).split).toBe("n");
    expect(src).toContain("g / (1.0f + expf(-g)) * u");
    expect(src).toContain("row_amax[mw * 64 + r_in]");
    expect(src).toContain("f32x2_to_e4m3x2(div_round_odd(h[i], sc), div_round_odd(h[i + 1], sc))"); // the exact quotient's E4M3, as the reference
    const twoAdds = specs.find((s) => (s.constants["epilogue"] as string[]).join() === "add,add")!;
    const src2 = generateKernel(twoAdds, H800_TARGET).source;
    expect(src2).toContain("residual0 + at");
    expect(src2).toContain("residual1 + at");
    const head = kernelsOf("train").find((s) => s.kind === "gemm" && s.constants["a"] === "bf16")!;
    const src3 = generateKernel(head, H800_TARGET).source;
    expect(src3).toContain("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16");
    expect(src3).not.toContain("fin[");
    expect(src3).toContain("*(float2*)(out + at)");
  });

  it("the grouped GEMM's masked layout (decode): groups of m/G rows, tiles past a group's count skipped, rows past it never stored", () => {
    const spec = masked(kernelsOf("decode").find((s) => s.kind === "grouped_gemm")!);
    expect(unsupportedReason(spec)).toBeNull();
    const c = chooseGemm(spec, H800_TARGET);
    expect(c.layout).toBe("masked");
    expect(c.tilesM).toBe(4 * Math.ceil(256 / c.blockM));
    const src = generateKernel(spec, H800_TARGET).source;
    expect(src).toContain("MAX_M = 256");
    expect(src).toContain("if ((mb % TILES_PER_GROUP) * BM >= __ldg(counts + e)) continue;");
    expect(src).toContain("if (row < row_end)");
    expect(src).not.toContain("expert_of(");
    const odd = structuredClone(spec);
    odd.constants["m"] = 4 * 100;
    expect(unsupportedReason(odd)).toMatch(/masked groups of 100 rows/);
  });

  it("the FP8 GEMM's Hopper contracts: sw128 descriptors, 1024-byte stage bases, expect_tx = the bytes each CTA receives, barrier counts, register budget", () => {
    // The descriptor (PTX ISA "Matrix Descriptor Format"): address >> 4 in bits 0-13, LBO 16 B (>> 4 = 1)
    // in 16-29, SBO 1024 B (8 rows × 128 B, >> 4 = 64) in 32-45, base offset 0, swizzle mode 1 (128 B) in 62-63.
    expect(sw128Descriptor(0)).toBe(0x4000004000010000n);
    expect(sw128Descriptor(0x400)).toBe(0x4000004000010040n);
    // One k32 step inside a 128-byte row: the start address moves by 32 bytes (2 in the >> 4 field).
    expect(sw128Descriptor(0x400 + 32) - sw128Descriptor(0x400)).toBe(2n);
    // Only 18 address bits are encoded (shared memory is below 256 KiB).
    expect(sw128Descriptor(0x40000 + 0x400)).toBe(sw128Descriptor(0x400));
    const gemms = uniqueKernels([...SCHEDULES.flatMap((s) => kernelsOf(s)), masked(kernelsOf("decode").find((s) => s.kind === "grouped_gemm")!)].filter((s) => s.kind === "gemm" || s.kind === "grouped_gemm"));
    for (const gpu of [H800_TARGET, { ...H800_TARGET, sms: 8 }]) {
      for (const spec of gemms) {
        const k = generateKernel(spec, gpu);
        const c = chooseGemm(spec, gpu);
        const src = k.source;
        const eb = c.variant === "fp8" ? 1 : 2;
        const where = `${spec.id} on ${gpu.sms} SMs`;
        expect(src, where).toContain(`((u64)1 << 16) | ((u64)(${SW128_DESC.sbo} >> 4) << 32) | ((u64)1 << 62)`);
        expect(src, where).toContain(`kk * 32);`);
        // Every stage buffer (A, B, a multicast half of B, a SwiGLU quarter) starts on a 1024-byte boundary.
        const aBytes = c.blockM * c.blockK * eb;
        const bBytes = c.blockN * c.blockK * eb;
        expect([aBytes % 1024, bBytes % 1024, (bBytes / c.multicast) % 1024, c.split === "n" ? (bBytes / 4) % 1024 : 0], where).toEqual([0, 0, 0, 0]);
        // Tensor maps: a 128-byte box row (the 128-byte swizzle's limit), ≤ 256 rows, 16-byte row pitch.
        const maps = k.launch.params.filter((p) => p.kind === "tensor-map");
        for (const p of maps) {
          if (p.kind !== "tensor-map") continue;
          expect([p.box[0] * eb, p.swizzleBytes, p.box[1] <= 256, (p.dims[0] * eb) % 16], where).toEqual([128, 128, true, 0]);
        }
        // expect_tx: every byte that lands in this CTA's stage — its A box, and the whole B tile: with
        // multicast each CTA issues half of B but both halves arrive in both CTAs.
        const a = maps.find((p) => p.name === "tm_a")!;
        const b = maps.find((p) => p.name === "tm_b0")!;
        if (a.kind !== "tensor-map" || b.kind !== "tensor-map") throw new Error("unreachable");
        const bLoads = c.split === "n" ? 4 : c.multicast;
        expect(a.box[0] * a.box[1] * eb + bLoads * b.box[0] * b.box[1] * eb, where).toBe(aBytes + bBytes);
        expect(src, where).toContain("mbar_arrive_expect_tx(&full[s], STAGE_BYTES);");
        expect(src, where).toContain(`constexpr unsigned A_BYTES = BM * BK * ${eb}, B_BYTES = BN * BK * ${eb}, STAGE_BYTES = A_BYTES + B_BYTES;`);
        // empty[s]: one arrive per math warpgroup of each CTA the stage is filled for (both, with multicast).
        expect(src, where).toContain("mbar_init(&full[s], 1); mbar_init(&empty[s], MATH_WG * CLUSTER);");
        expect(src.includes("mbar_arrive_peer(&empty[s], rank ^ 1);"), where).toBe(c.multicast === 2);
        // The stage is released only after the wgmma reading it has completed.
        expect(src.indexOf("wgmma_wait<0>();"), where).toBeLessThan(src.indexOf("mbar_arrive(&empty[s]);"));
        // Warpgroup-aligned threads; setmaxnreg counts multiples of 8 in [24, 256] within the 64K register file.
        expect(k.launch.block[0] % 128, where).toBe(0);
        expect(k.launch.block[0], where).toBe(128 * (1 + c.mathWarpgroups));
        for (const r of [c.producerRegisters, c.mathRegisters]) expect([r % 8, r >= 24 && r <= 256], where).toEqual([0, true]);
        expect(c.producerRegisters * 128 + c.mathRegisters * 128 * c.mathWarpgroups, where).toBeLessThanOrEqual(65_536);
      }
    }
  });

  it("the persistent tile walk: every output tile exactly once, the two CTAs of a multicast pair on the same B tile for the same number of stages", () => {
    // The walk as the kernel writes it (asserted verbatim below, so the model and the source cannot drift apart).
    const walk = ["for (int p = unit; p < TILES / CLUSTER; p += units) {", "mb = CLUSTER * (p % (TILES_M / CLUSTER)) + rank;", "nb = p / (TILES_M / CLUSTER);", "const int units = gridDim.x / CLUSTER, unit = blockIdx.x / CLUSTER;"];
    const gemms = uniqueKernels(SCHEDULES.flatMap((s) => kernelsOf(s)).filter((s) => s.kind === "gemm" || s.kind === "grouped_gemm"));
    for (const sms of [8, 14, 132]) {
      for (const spec of gemms) {
        const gpu = { ...H800_TARGET, sms };
        const c = chooseGemm(spec, gpu);
        const src = generateKernel(spec, gpu).source;
        for (const line of walk) expect(src).toContain(line);
        const cluster = c.multicast;
        const tiles = c.tilesM * c.tilesN;
        const seen = new Uint8Array(tiles);
        const units = c.grid / cluster;
        for (let unit = 0; unit < units; unit++) {
          const pairs: [number, number][][] = [];
          for (let rank = 0; rank < cluster; rank++) {
            const mine: [number, number][] = [];
            for (let p = unit; p < tiles / cluster; p += units) {
              const mb = cluster * (p % (c.tilesM / cluster)) + rank;
              const nb = Math.floor(p / (c.tilesM / cluster));
              seen[nb * c.tilesM + mb]!++;
              mine.push([mb, nb]);
            }
            pairs.push(mine);
          }
          // Both CTAs of a cluster walk as many tiles (so as many stages) and share each tile's nb.
          if (cluster === 2) expect(pairs[0]!.map(([, nb]) => nb)).toEqual(pairs[1]!.map(([, nb]) => nb));
        }
        expect([...new Set(seen)], `${spec.id} on ${sms} SMs`).toEqual([1]);
      }
    }
  });

  it("epilogues the GEMM generator cannot fuse are refused, not miscompiled; a zeroed grouped tile stores in the output's type", () => {
    const dense = kernelsOf("train").find((s) => s.kind === "gemm" && isFp8Gemm(s) && (s.constants["epilogue"] as string[]).length === 0)!;
    const quantOnly = structuredClone(dense);
    quantOnly.constants = { ...quantOnly.constants, epilogue: ["quantize"] };
    expect(unsupportedReason(quantOnly)).toMatch(/epilogue quantize/);
    const addAfterSwiglu = structuredClone(dense);
    addAfterSwiglu.constants = { ...addAfterSwiglu.constants, epilogue: ["swiglu", "add"] };
    expect(unsupportedReason(addAfterSwiglu)).toMatch(/epilogue swiglu → add/);
    const grouped = kernelsOf("train").find((s) => s.kind === "grouped_gemm")!;
    const groupedSwiglu = structuredClone(grouped);
    groupedSwiglu.constants = { ...groupedSwiglu.constants, epilogue: ["swiglu"] };
    expect(unsupportedReason(groupedSwiglu)).toMatch(/SwiGLU epilogue on a grouped GEMM/);
    for (const s of SCHEDULES.flatMap((x) => kernelsOf(x))) if (s.kind === "gemm" || s.kind === "grouped_gemm") expect(unsupportedReason(s), s.id).toBeNull();
    const src = generateKernel(grouped, H800_TARGET).source;
    expect(src).toContain("if (col < N) *(unsigned*)(out + at) = 0u;");
  });

  it("the training/prefill attention: MLA's 192/128 dims with views of kv_b's output and the shared k_rope, mma.sync BF16, online softmax, causal skipping", () => {
    const specs = ["train", "prefill"].flatMap((s) => uniqueKernels(kernelsOf(s as "train" | "prefill").filter((k) => k.kind === "prefill_attention")));
    expect(specs.length).toBe(2);
    expect(kernelsOf("decode").some((k) => k.kind === "prefill_attention")).toBe(false);
    const mla = v3().model.attention;
    if (mla.kind !== "mla") throw new Error("V3 attention is MLA");
    const yarn = mla.rope.yarn!;
    const mscale = 0.1 * yarn.mscaleAllDim * Math.log(yarn.factor) + 1;
    for (const spec of specs) {
      const c = spec.constants;
      expect([c["dk"], c["dv"], c["heads"], c["kv_heads"], c["causal"]]).toEqual([mla.qkNopeHeadDim + mla.qkRopeHeadDim, mla.vHeadDim, mla.heads, mla.heads, true]);
      expect(c["scale"] as number).toBeCloseTo((mscale * mscale) / Math.sqrt(mla.qkNopeHeadDim + mla.qkRopeHeadDim), 12);
      expect(c["k_sources"]).toEqual([`0+${mla.qkNopeHeadDim}/${mla.qkNopeHeadDim + mla.vHeadDim}x${mla.heads}`, `0+${mla.qkRopeHeadDim}/${mla.qkRopeHeadDim}x1`]);
      expect(c["v_sources"]).toEqual([`${mla.qkNopeHeadDim}+${mla.vHeadDim}/${mla.qkNopeHeadDim + mla.vHeadDim}x${mla.heads}`]);
      expect(unsupportedReason(spec)).toBeNull();
      const k = generateKernel(spec, H800_TARGET);
      const ch = chooseAttention(spec, H800_TARGET);
      expect(k.launch.sharedBytes).toBe(ch.sharedBytes);
      expect(k.launch.sharedBytes).toBeLessThanOrEqual(H800_TARGET.sharedBytesPerBlock);
      expect(k.launch.grid).toEqual([Math.ceil((c["q_len"] as number) / ch.blockM), mla.heads, (c["queries"] as number) / (c["q_len"] as number)]);
      expect(k.launch.block[0]).toBe(32 * (ch.blockM / 16));
      // One pointer per source tensor: q, kv_b's output [T, Nh, Dn+Dv], the shared k_rope [T, R].
      expect(k.launch.params.filter((p) => p.kind === "tensor" && p.access === "in").map((p) => (p as { tensor: string }).tensor).sort()).toEqual(spec.inputs.map((t) => t.id).sort());
      expect(k.source).toContain("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32");
      expect(k.source).toContain("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16");
      expect(k.source).toContain("cp.async.cg.shared.global");
      expect(k.source).toContain("exp2f(");
      expect(k.source).toContain("const int kv_end = CAUSAL ? min(KV_LEN, q0 + BM + OFFSET) : KV_LEN;");
      expect(k.source).toContain("TILES_M - 1 - (int)blockIdx.x");
      // The k_rope row: one head, shared by all (head index h / Nh = 0).
      expect(k.source).toContain(`* 1 + h / ${mla.heads}) * ${mla.qkRopeHeadDim}`);
    }
    const wide = structuredClone(specs[0]!);
    wide.constants["dv"] = 256;
    expect(unsupportedReason(wide)).toMatch(/dv 256/);
    // Small heads (specs/tiny.dsv3: QK 12 = 8 + 4, V 8): padded to 16 in shared memory, 8-byte copies of the 4-wide rope run.
    const tiny = tinyAttention();
    expect(unsupportedReason(tiny)).toBeNull();
    const src = generateKernel(tiny, H800_TARGET).source;
    expect(src).toContain("constexpr int DKP = 16, DVP = 16;");
    expect(src).toContain("cp_async<8>(");
    expect(src).toContain("col < DV)");
  });

  it("decode's MoE uses the masked layout (fixed per-expert capacity, valid-row counts); training and prefill the contiguous one", () => {
    for (const schedule of SCHEDULES) {
      const permutes = kernelsOf(schedule).filter((k) => k.kind === "moe_permute");
      const grouped = kernelsOf(schedule).filter((k) => k.kind === "grouped_gemm");
      expect(permutes.length).toBeGreaterThan(0);
      expect(grouped.length).toBe(3 * permutes.length);
      for (const p of permutes) {
        if (schedule !== "decode") {
          expect(p.constants["layout"]).toBeUndefined();
          continue;
        }
        const tokens = p.constants["tokens"] as number;
        expect(p.constants["layout"]).toBe("masked");
        expect(p.constants["capacity"]).toBe(64 * Math.ceil(tokens / 64));
        expect(p.constants["rows"]).toBe((p.constants["capacity"] as number) * (p.constants["experts"] as number));
        const src = generateKernel(p, H800_TARGET).source;
        expect(src).toContain("start[e] = e * CAPACITY;");
        expect(src).toContain("counts[e] = total[e];");
        expect(src).not.toContain("Padding rows");
      }
      for (const g of grouped) {
        expect(g.constants["layout"]).toBe(schedule === "decode" ? "masked" : undefined);
        expect(chooseGemm(g, H800_TARGET).layout).toBe(schedule === "decode" ? "masked" : "contiguous");
        expect(unsupportedReason(g)).toBeNull();
      }
    }
  });

  it("is deterministic, free of paths, and names a kernel by what determines its code", () => {
    const spec = kernelsOf("decode").find((s) => s.kind === "mla_decode_attention")!;
    const a = generateKernel(spec, H800_TARGET);
    const b = generateKernel(structuredClone(spec), H800_TARGET);
    expect(b.source).toBe(a.source);
    expect(a.source).toContain("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32");
    expect(a.source).toContain("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16");
    for (const s of uniqueKernels(kernelsOf("decode"))) expect(generateKernel(s, H800_TARGET).source).not.toMatch(/\/(work|tmp|home|root)\//);
    const other = structuredClone(spec);
    other.constants["kv_len"] = 8192;
    other.key = `${other.kind}:${JSON.stringify(other.constants)}`;
    expect(kernelName(other, H800_TARGET)).not.toBe(kernelName(spec, H800_TARGET));
    expect(kernelName(spec, { ...H800_TARGET, sms: 114 })).not.toBe(kernelName(spec, H800_TARGET));
  });

  it("GEMM choices stay within the SM for any shape: shared memory, grid, tiles covering M and N, even multicast pairs", () => {
    const template = kernelsOf("train").find((s) => s.kind === "gemm" && (s.constants["epilogue"] as string[]).length === 0 && isFp8Gemm(s))!;
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 600 }), fc.integer({ min: 1, max: 400 }), fc.integer({ min: 1, max: 160 }), fc.integer({ min: 16, max: 132 }), (m8, n16, k128, sms) => {
        const spec = structuredClone(template);
        spec.constants = { ...spec.constants, m: m8 * 8, n: n16 * 16, k: k128 * 128 };
        const gpu = { ...H800_TARGET, sms };
        const c = chooseGemm(spec, gpu);
        expect(c.sharedBytes).toBeLessThanOrEqual(gpu.sharedBytesPerBlock);
        expect(c.grid).toBeGreaterThan(0);
        expect(c.grid).toBeLessThanOrEqual(sms);
        expect(c.tilesM * c.blockM).toBeGreaterThanOrEqual(m8 * 8);
        expect(c.tilesN * c.blockN).toBeGreaterThanOrEqual(n16 * 16);
        if (c.multicast === 2) {
          expect(c.tilesM % 2).toBe(0);
          expect(c.grid % 2).toBe(0);
        }
      }),
      { numRuns: 200, seed: 8 },
    );
  });
});

describe("toolchain report, cache and manifest", () => {
  const REPORT = `ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'gemm_a' for 'sm_90a'
ptxas info    : Function properties for gemm_a
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 168 registers, used 1 barriers
ptxas info    : Compiling entry function 'rope_b' for 'sm_90a'
ptxas info    : Function properties for rope_b
    40 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 42 registers, used 1 barriers, 256 bytes smem, 400 bytes cmem[0]
`;

  it("parses ptxas -v per entry function", () => {
    expect(parsePtxasReport(REPORT, "gemm_a")).toEqual({ registers: 168, staticSharedBytes: 0, stackBytes: 0, spillStoreBytes: 0, spillLoadBytes: 0 });
    expect(parsePtxasReport(REPORT, "rope_b")).toEqual({ registers: 42, staticSharedBytes: 256, stackBytes: 40, spillStoreBytes: 8, spillLoadBytes: 12 });
    expect(parsePtxasReport(REPORT, "missing")).toBeNull();
  });

  it("flags spills, shared memory beyond 227 KiB and too many registers", () => {
    const spec = kernelsOf("train").find(isFp8Gemm)!;
    const kernel = generateKernel(spec, H800_TARGET);
    expect(kernel.launch.block[0]).toBe(384);
    const built = (r: { registers: number; sharedBytes: number; spillStoreBytes: number; spillLoadBytes: number }) => ({ kernel, specs: [spec.id], ptx: "", cubin: new Uint8Array(), resources: { ...r, stackBytes: 0 } });
    expect(resourceViolations(built({ registers: 40, sharedBytes: 256, spillStoreBytes: 0, spillLoadBytes: 0 }), H800_TARGET)).toEqual([]);
    const bad = resourceViolations(built({ registers: 255, sharedBytes: 232_449, spillStoreBytes: 8, spillLoadBytes: 4 }), H800_TARGET);
    expect(bad.map((v) => v.what)).toEqual(["spill stores (bytes)", "spill loads (bytes)", "shared memory (bytes)", "registers per block"]);
  });

  it("the cache: keyed by every input, entries written atomically, a read-only location is reported, not thrown", () => {
    const k1 = cacheKey(["ptx", "release 13.0", "-O3", "src"]);
    expect(cacheKey(["ptx", "release 13.0", "-O3", "src"])).toBe(k1);
    expect(cacheKey(["ptx", "release 12.8", "-O3", "src"])).not.toBe(k1);
    expect(cacheKey(["ptx", "release 13.0", "-O2", "src"])).not.toBe(k1);
    expect(cacheKey(["ptx", "release 13.0", "-O3", "src "])).not.toBe(k1);
    expect(cacheKey(["ab", "c"])).not.toBe(cacheKey(["a", "bc"]));
    const cache = new KernelCache(join(scratch, "cache"));
    expect(cache.get(k1, ".ptx")).toBeNull();
    cache.put(k1, ".ptx", "PTX");
    expect(cache.get(k1, ".ptx")?.toString()).toBe("PTX");
    expect([cache.hits, cache.misses]).toEqual([1, 1]);
    writeFileSync(join(scratch, "a-file"), "x");
    const broken = new KernelCache(join(scratch, "a-file", "cache"));
    broken.put(k1, ".ptx", "PTX");
    expect(broken.writeError).not.toBeNull();
  });

  it("the manifest's kernels section: validated, canonical, additive", () => {
    const entry: ManifestKernel = {
      name: "gemm_0123456789",
      kind: "gemm",
      specs: ["dense_layer.k1"],
      files: { cuda: "kernels/cuda/gemm_0123456789.cu", ptx: "kernels/ptx/gemm_0123456789.ptx", cubin: null },
      resources: { registers: 168, sharedBytes: 230576, spillStoreBytes: 0, spillLoadBytes: 0, stackBytes: 0 },
      choice: { block_n: 128, block_m: 128, variant: "fp8" },
      launch: { entry: "gemm_0123456789", grid: [132, 1, 1], block: [384, 1, 1], sharedBytes: 230576, params: [{ kind: "tensor", name: "out", tensor: "1", type: "bf16", elements: 8, access: "out" }], work: { flops: 1, bytes: 2 } },
    };
    const files = [{ path: "kernels/cuda/gemm_0123456789.cu", bytes: new Uint8Array([1]) }];
    const plain = createManifest(files, { compilerVersion: "0.1.0", schedule: "train" });
    expect(serializeManifest(plain)).not.toContain('"kernels":');
    const m = createManifest(files, { compilerVersion: "0.1.0", schedule: "train", kernels: [entry] });
    expect(validateManifest(m)).toEqual([]);
    const text = serializeManifest(m);
    expect(serializeManifest(JSON.parse(text))).toBe(text);
    expect(text.indexOf('"block_m"')).toBeLessThan(text.indexOf('"block_n"'));
    expect(validateManifest({ ...m, kernels: [{ ...entry, resources: { ...entry.resources!, registers: -1 } }] }).length).toBeGreaterThan(0);
    expect(validateManifest({ ...m, kernels: [{ ...entry, extra: 1 }] })).toContain('/kernels/0: unknown property "extra"');
    expect(validateManifest({ ...m, kernels: [{ ...entry, files: { ...entry.files, cuda: "../x.cu" } }] }).length).toBeGreaterThan(0);
    expect(validateManifest({ ...m, kernels: [{ ...entry, choice: { Tiles: 1 } }] }).length).toBeGreaterThan(0);
    expect(validateManifest({ ...m, kernels: [{ ...entry, launch: { ...entry.launch, grid: [0, 1, 1] } }] }).length).toBeGreaterThan(0);
  });
});

const toolchain = findToolchain();
if (toolchain === null) process.stdout.write("tests/cuda.test.ts: nvcc not found — skipping the sm_90a compile and resource checks\n");

describe.skipIf(toolchain === null)("CI: every V3 kernel compiles for sm_90a with 0 spills within the SM (nvcc)", () => {
  it("train, prefill and decode (and a masked grouped GEMM, a GQA attention): distinct kernels compiled once, resources within limits, PTX has the Hopper instructions", async () => {
    const gqa = kernelSpecs(parseModel(readFileSync("tests/passes/fuse-kernels/hand-gqa-prefill-attention.expected.ir", "utf8"))).find((k) => k.kind === "prefill_attention")!;
    const all = [...SCHEDULES.flatMap((s) => kernelsOf(s)), masked(kernelsOf("decode").find((s) => s.kind === "grouped_gemm")!), gqa, tinyAttention()];
    const gpu = v3().cluster.gpu;
    const t0 = performance.now();
    const result = await buildKernels(all, { gpu, toolchain, cache: new KernelCache(join(process.cwd(), "node_modules", ".cache", "dsv3-kernels")) });
    const seconds = (performance.now() - t0) / 1000;
    process.stdout.write(`tests/cuda.test.ts: ${result.kernels.length} distinct kernels (${all.length} KernelSpecs), ${result.stagesRun} tool runs, ${result.cacheHits} cached, ${seconds.toFixed(1)} s\n`);
    expect(result.failures).toEqual([]);
    expect(result.skipped).toEqual([]);
    const distinct = new Set(distinctKernels(all, gpuTargetOf(gpu)).map((d) => kernelName(d.spec, gpuTargetOf(gpu))));
    expect(distinct.size).toBeLessThan(all.length);
    expect(result.kernels.length).toBe(distinct.size);
    for (const b of result.kernels) {
      expect(b.cubin?.byteLength, b.kernel.name).toBeGreaterThan(0);
      expect(b.resources, b.kernel.name).not.toBeNull();
      expect({ name: b.kernel.name, spills: b.resources!.spillStoreBytes + b.resources!.spillLoadBytes }).toEqual({ name: b.kernel.name, spills: 0 });
      expect(b.resources!.sharedBytes, b.kernel.name).toBeLessThanOrEqual(232_448);
      expect(resourceViolations(b, gpuTargetOf(gpu))).toEqual([]);
    }
    const fp8 = result.kernels.filter((b) => b.kernel.kind === "gemm" && b.kernel.choice["variant"] === "fp8");
    for (const b of fp8) {
      expect(b.ptx).toMatch(/wgmma\.mma_async\.sync\.aligned\.m64n\d+k32\.f32\.e4m3\.e4m3/);
      expect(b.ptx).toContain(`setmaxnreg.inc.sync.aligned.u32 ${MATH_REGISTERS}`);
      expect(b.ptx).toContain(`setmaxnreg.dec.sync.aligned.u32 ${PRODUCER_REGISTERS}`);
      expect(b.ptx).toContain("mbarrier.try_wait.parity");
      expect(b.ptx).toContain("cp.async.bulk.tensor.2d");
    }
    expect(fp8.some((b) => b.ptx!.includes(".multicast::cluster"))).toBe(true);
    // setmaxnreg moves registers within the CTA's pool, fixed at launch by ptxas's count: the producer's
    // dec must free what the math warpgroups' inc takes (else the inc blocks forever), and the inc must
    // not be below the launch count (PTX ISA, setmaxnreg).
    for (const b of result.kernels.filter((x) => x.kernel.kind === "gemm" || x.kernel.kind === "grouped_gemm")) {
      const threads = b.kernel.launch.block[0];
      const launchRegs = Math.ceil(b.resources!.registers / 8) * 8;
      const math = threads / 128 - 1;
      expect({ name: b.kernel.name, fits: launchRegs * threads >= PRODUCER_REGISTERS * 128 + MATH_REGISTERS * 128 * math }).toEqual({ name: b.kernel.name, fits: true });
      expect(launchRegs, b.kernel.name).toBeLessThanOrEqual(MATH_REGISTERS);
      expect(launchRegs, b.kernel.name).toBeGreaterThanOrEqual(PRODUCER_REGISTERS);
    }
    const attention = result.kernels.filter((b) => b.kernel.kind === "prefill_attention");
    expect(attention.length).toBe(4);
    for (const b of attention) {
      expect(b.ptx).toContain("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32");
      expect(b.ptx).toContain("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16");
      expect(b.ptx).toContain("cp.async.cg.shared.global");
      process.stdout.write(`tests/cuda.test.ts: ${b.kernel.name} (${b.specs.join(", ")}): ${b.resources!.registers} registers, ${b.resources!.sharedBytes} B shared, ${b.resources!.spillStoreBytes + b.resources!.spillLoadBytes} B spilled\n`);
    }
    // A second build of the same kernels runs no tool at all.
    const again = await buildKernels(all, { gpu, toolchain, cache: new KernelCache(join(process.cwd(), "node_modules", ".cache", "dsv3-kernels")) });
    expect(again.stagesRun).toBe(0);
    expect(again.cacheHits).toBe(2 * again.kernels.length);
    expect(again.kernels.map((b) => Buffer.from(b.cubin!).toString("base64"))).toEqual(result.kernels.map((b) => Buffer.from(b.cubin!).toString("base64")));
  });
});

describe("dsv3 compile writes the kernels into the bundle", () => {
  async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = "";
    let stderr = "";
    const code = await runCli(args, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
    return { code, stdout, stderr };
  }

  it("sources, PTX and cubins listed in the manifest with their resources (or sources only, saying so, without nvcc)", async () => {
    const withTools = join(scratch, "bundle");
    const r = await cli("compile", V3, "--schedule", "decode", "-o", withTools);
    expect(r.code, r.stderr).toBe(0);
    const manifest = JSON.parse(readFileSync(join(withTools, "manifest.json"), "utf8")) as { files: { path: string }[]; kernels: ManifestKernel[] };
    const listed = new Set(manifest.files.map((f) => f.path));
    expect(manifest.kernels.length).toBe(uniqueKernels(kernelsOf("decode")).length);
    expect(manifest.kernels.flatMap((k) => k.specs).sort()).toEqual(kernelsOf("decode").map((k) => k.id).sort());
    for (const k of manifest.kernels) {
      for (const f of [k.files.cuda, k.files.ptx, k.files.cubin]) if (f !== null) expect(listed.has(f), f).toBe(true);
      expect(k.files.cubin === null).toBe(toolchain === null);
      if (toolchain !== null) expect(k.resources!.spillStoreBytes).toBe(0);
    }
    expect(verifyBundle(withTools).ok).toBe(true);
    // Quiet on success (no TTY); --timings adds the kernel build's summary line.
    expect(r.stderr).toBe("");
    if (toolchain !== null) {
      const t = await cli("compile", V3, "--schedule", "decode", "-o", withTools, "--timings");
      expect(t.stderr).toMatch(/cuda: \d+ kernels for sm_90a in [0-9.]+ s \(0 nvcc\/ptxas runs, \d+ cached\)/);
    }

    const saved = process.env["DSV3_NVCC"];
    process.env["DSV3_NVCC"] = "none";
    try {
      const sourcesOnly = join(scratch, "sources-only");
      const s = await cli("compile", V3, "--schedule", "decode", "-o", sourcesOnly);
      expect(s.code, s.stderr).toBe(0);
      expect(s.stderr).toContain("warning DSV9301");
      const m2 = JSON.parse(readFileSync(join(sourcesOnly, "manifest.json"), "utf8")) as { kernels: ManifestKernel[] };
      expect(m2.kernels.every((k) => k.files.ptx === null && k.files.cubin === null && k.resources === null)).toBe(true);
      expect(existsSync(join(sourcesOnly, m2.kernels[0]!.files.cuda))).toBe(true);
    } finally {
      if (saved === undefined) delete process.env["DSV3_NVCC"];
      else process.env["DSV3_NVCC"] = saved;
    }
  });
});

describe("DSV93xx diagnostics", () => {
  /** A fake toolchain: `nvcc` writes its -o file; `ptxas` also prints a report with `spills` bytes of spills; `fail` makes nvcc fail. */
  function fakeToolchain(dir: string, opts: { fail?: boolean; spills?: number }) {
    mkdirSync(dir, { recursive: true });
    const nvcc = join(dir, "nvcc");
    const ptxas = join(dir, "ptxas");
    writeFileSync(
      nvcc,
      opts.fail
        ? `#!/bin/sh\necho "kernel.cu(12): error: identifier \\"tile\\" is undefined" >&2\nexit 1\n`
        : `#!/bin/sh\nwhile [ $# -gt 0 ]; do if [ "$1" = "-o" ]; then out="$2"; fi; shift; done\necho "// ptx" > "$out"\n`,
    );
    writeFileSync(
      ptxas,
      `#!/bin/sh\nwhile [ $# -gt 0 ]; do if [ "$1" = "-o" ]; then out="$2"; fi; last="$1"; shift; done\nname=$(basename "$last" .ptx)\necho cubin > "$out"\n` +
        `echo "ptxas info    : Compiling entry function '$name' for 'sm_90a'"\necho "    0 bytes stack frame, ${opts.spills ?? 0} bytes spill stores, ${opts.spills ?? 0} bytes spill loads"\necho "ptxas info    : Used 255 registers, used 1 barriers"\n`,
    );
    chmodSync(nvcc, 0o755);
    chmodSync(ptxas, 0o755);
    return { nvcc, ptxas, version: "release 0.0, V0.0.0" };
  }
  const rope = (): KernelSpec[] => [kernelsOf("decode").find((s) => s.kind === "rope")!];
  const render = (ds: { code: string }[], code: string): string => renderDiagnostic(ds.find((d) => d.code === code) as never, new Map());

  it("DSV9301: no nvcc, sources only", async () => {
    const r = await bundleKernels(rope(), v3().cluster.gpu, { toolchain: null });
    expect(r.diagnostics.map((d) => d.code)).toEqual(["DSV9301"]);
    expect(render(r.diagnostics, "DSV9301")).toMatchSnapshot();
  });

  it("DSV9302: a tool fails", async () => {
    const r = await bundleKernels(rope(), v3().cluster.gpu, { toolchain: fakeToolchain(join(scratch, "failing"), { fail: true }), cacheDir: null });
    expect(r.diagnostics.map((d) => d.code)).toEqual(["DSV9302"]);
    expect(render(r.diagnostics, "DSV9302").replace(/rope_[0-9a-f]+/g, "rope_<hash>")).toMatchSnapshot();
  });

  it("DSV9303: spills beyond the SM", async () => {
    const r = await bundleKernels(rope(), v3().cluster.gpu, { toolchain: fakeToolchain(join(scratch, "spilling"), { spills: 16 }), cacheDir: null });
    expect(r.diagnostics.map((d) => d.code)).toEqual(["DSV9303"]);
    expect(render(r.diagnostics, "DSV9303").replace(/rope_[0-9a-f]+/g, "rope_<hash>")).toMatchSnapshot();
  });

  it("DSV9304: the cache cannot be written", async () => {
    writeFileSync(join(scratch, "not-a-dir"), "x");
    const r = await bundleKernels(rope(), v3().cluster.gpu, { toolchain: fakeToolchain(join(scratch, "fine"), {}), cacheDir: join(scratch, "not-a-dir", "cache") });
    expect(r.diagnostics.map((d) => d.code)).toEqual(["DSV9304"]);
    expect(render(r.diagnostics, "DSV9304").replaceAll(scratch, "<tmp>").replace(/cache: ENOTDIR[^;]*;/, "cache: <reason>;")).toMatchSnapshot();
  });

  it("DSV9305: not a Hopper GPU", async () => {
    const r = await bundleKernels(rope(), { ...v3().cluster.gpu, name: "A100" }, { toolchain: null });
    expect(r.diagnostics.map((d) => d.code)).toEqual(["DSV9305"]);
    expect(r.manifest).toEqual([]);
    expect(render(r.diagnostics, "DSV9305")).toMatchSnapshot();
  });

  it("DSV9306: sizes the kernels cannot tile", async () => {
    const odd = structuredClone(kernelsOf("train").find((s) => s.kind === "rmsnorm_quantize")!);
    odd.constants["dim"] = 100;
    odd.key = `${odd.kind}:${JSON.stringify(odd.constants)}`;
    const r = await bundleKernels([odd], v3().cluster.gpu, { toolchain: null });
    expect(r.diagnostics.map((d) => d.code)).toEqual(["DSV9306", "DSV9301"]);
    expect(render(r.diagnostics, "DSV9306")).toMatchSnapshot();
  });
});
