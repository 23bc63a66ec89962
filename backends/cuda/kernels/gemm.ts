/**
 * CUDA generator for `gemm` and `grouped_gemm` KernelSpecs: a warp-specialised, persistent Hopper
 * GEMM specialised on every size.
 *
 *   - warpgroup 0 is the producer (`setmaxnreg.dec` to 40 registers): one thread walks the CTA's
 *     tiles and K blocks, waits for a free stage on its `empty` mbarrier, announces the stage's bytes
 *     on its `full` mbarrier (`arrive.expect_tx`) and issues the TMA loads (`cp.async.bulk.tensor`,
 *     128-byte swizzle) of the A and B boxes — B multicast to both CTAs of a 2-CTA cluster when the
 *     kernel choice says so;
 *   - warpgroups 1.. are the math warpgroups (`setmaxnreg.inc` to 232): each waits on `full`, issues
 *     `wgmma.mma_async` over the stage (E4M3×E4M3 → FP32, k32 per instruction; BF16 k16), waits,
 *     frees the stage, and — FP8 — promotes: the 128-deep partial sum times the row's 1×128 A scale
 *     and the tile's 128×128 B scale is added into FP32 registers, so the tensor cores' limited
 *     accumulation never spans more than one promotion interval;
 *   - the epilogue works on those FP32 registers: residual adds (BF16 in), a store in BF16/FP32, or
 *     SwiGLU of the merged gate|up accumulators followed by the 1×128 E4M3 re-quantisation (the row's
 *     amax over the 128 output columns combined across the two math warpgroups in shared memory).
 *
 * grouped_gemm (MoE experts, contiguous layout): rows come in per-expert segments of `counts[e]`
 * rows (padded to 128 by moe_permute); the CTA finds the expert of its M tile by a binary search of
 * the segments' ends (prefix sums built in shared memory at start), loads B rows `e·N + n`, and
 * writes zeros for tiles past the last segment, as the reference does. Masked layout (decode, a
 * `layout: masked` constant): group g owns rows [g·m/G, (g+1)·m/G) of which the first `counts[g]`
 * are valid; tiles wholly past them are skipped and rows past them never stored.
 */
import type { KernelSpec, KernelTensor } from "../../../compiler/kernel-spec.js";
import type { GpuTarget } from "../gpu-target.js";
import { chooseGemm, isSwigluEpilogue, type GemmChoice } from "../kernel-choice.js";
import type { GeneratedKernel, KernelParam } from "../generated-kernel.js";
import { devicePrelude } from "./device-prelude.js";

interface GemmOperands {
  x: KernelTensor;
  weights: KernelTensor[];
  counts: KernelTensor | null;
  residuals: KernelTensor[];
  out: KernelTensor;
}

function operandsOf(spec: KernelSpec): GemmOperands {
  const x = spec.tensors[spec.main[0]!.inputs[0]!]!;
  const weights = spec.main.map((op) => spec.tensors[op.inputs[1]!]!);
  const counts = spec.kind === "grouped_gemm" ? spec.tensors[spec.main[0]!.inputs[2]!]! : null;
  const residuals: KernelTensor[] = [];
  let current = spec.main[spec.main.length - 1]!.outputs[0]!;
  for (const op of spec.epilogue) {
    if (op.kind === "add") residuals.push(spec.tensors[op.inputs[0] === current ? op.inputs[1]! : op.inputs[0]!]!);
    current = op.outputs[0]!;
  }
  return { x, weights, counts, residuals, out: spec.outputs[0]! };
}

/** The wgmma instruction text for one warpgroup tile of `n` columns. */
export function wgmmaInstruction(variant: "fp8" | "bf16", n: number): string {
  return variant === "fp8"
    ? `wgmma.mma_async.sync.aligned.m64n${n}k32.f32.e4m3.e4m3`
    : `wgmma.mma_async.sync.aligned.m64n${n}k16.f32.bf16.bf16`;
}

/** A device function issuing one wgmma on `acc[n/2]`; `accumulate` = 0 zeroes the accumulators first. */
function wgmmaFunction(variant: "fp8" | "bf16", n: number): string {
  const regs = n / 2;
  const list = Array.from({ length: regs }, (_, i) => `%${i}`).join(", ");
  const constraints = Array.from({ length: regs }, (_, i) => `"+f"(acc[${i}])`).join(", ");
  const tail = variant === "fp8" ? "p, 1, 1;" : "p, 1, 1, 0, 0;";
  return `DEV void wgmma_tile(float* acc, u64 desc_a, u64 desc_b, int accumulate) {
  asm volatile(
    "{\\n .reg .pred p;\\n setp.ne.b32 p, %${regs + 2}, 0;\\n"
    "${wgmmaInstruction(variant, n)} {${list}}, %${regs}, %${regs + 1}, ${tail}\\n}"
    : ${constraints}
    : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}`;
}

/*
 * Protocol notes (checked against the PTX ISA; tests/cuda.test.ts pins what can be pinned statically):
 *   - full[s] has one arrival (the producer's arrive.expect_tx of STAGE_BYTES = the A box plus the
 *     whole B tile: under multicast each CTA issues half of B, but both halves complete_tx on the
 *     barrier at the same offset in both CTAs). A peer's bytes may land before the local expect_tx;
 *     the pending arrival keeps the phase open meanwhile. Boxes partly or wholly out of bounds are
 *     zero-filled and still count their full bytes.
 *   - empty[s] has MATH_WG × CLUSTER arrivals: thread 0 of each math warpgroup arrives (locally, and
 *     on the peer's barrier under multicast, since the peer's producer writes into this CTA's stage)
 *     after wgmma.wait_group 0. wgmma is one warpgroup-wide operation that starts only once all four
 *     warps have issued it, so warp 0 seeing its group complete means the stage's reads are done.
 *   - Phases: `it` counts stages over the CTA's whole tile walk (never reset per tile), stage it %
 *     STAGES, parity (it / STAGES) & 1 for full and its complement for empty (a fresh barrier's
 *     "previous phase" counts as complete, so the first STAGES waits pass). Producer and consumers
 *     skip exactly the same tiles (same predicate on counts / seg_end) before touching `it`.
 */
export function generateGemm(spec: KernelSpec, gpu: GpuTarget, name: string): GeneratedKernel {
  const c = chooseGemm(spec, gpu);
  const ops = operandsOf(spec);
  const m = spec.constants["m"] as number;
  const n = spec.constants["n"] as number;
  const k = spec.constants["k"] as number;
  const groups = c.grouped ? (spec.constants["groups"] as number) : 1;
  const swiglu = isSwigluEpilogue(spec);
  const fp8 = c.variant === "fp8";
  const eb = fp8 ? 1 : 2;
  const elem = fp8 ? "fp8_t" : "bf16_t";
  const outQuant = ops.out.quant !== null;
  const outN = swiglu ? n / 2 : n;
  const kBlocks = Math.ceil(k / c.blockK);
  const scaleCols = Math.ceil(k / 128);
  const bScaleRows = Math.ceil((swiglu ? n / 2 : n) / 128);
  const outType = ops.out.dtype === "fp32" ? "float" : ops.out.dtype === "bf16" ? "bf16_t" : "fp8_t";
  const pow2 = ops.out.quant?.pow2 === true;

  const params: KernelParam[] = [];
  const bRows = c.grouped ? groups * n : swiglu ? n / 2 : n;
  params.push({ kind: "tensor-map", name: "tm_a", tensor: ops.x.id, type: fp8 ? "e4m3" : "bf16", dims: [k, m], box: [c.blockK, c.blockM], swizzleBytes: 128 });
  const bBoxRows = swiglu ? 64 : c.blockN / c.multicast;
  ops.weights.forEach((w, i) => {
    params.push({ kind: "tensor-map", name: `tm_b${i}`, tensor: w.id, type: fp8 ? "e4m3" : "bf16", dims: [k, bRows], box: [c.blockK, bBoxRows], swizzleBytes: 128 });
  });
  if (fp8) {
    params.push({ kind: "tensor", name: "scale_a", tensor: `${ops.x.id}.scale`, type: "fp32", elements: m * scaleCols, access: "in" });
    ops.weights.forEach((w, i) => {
      params.push({ kind: "tensor", name: `scale_b${i}`, tensor: `${w.id}.scale`, type: "fp32", elements: groups * bScaleRows * scaleCols, access: "in" });
    });
  }
  if (ops.counts) params.push({ kind: "tensor", name: "counts", tensor: ops.counts.id, type: "i32", elements: groups, access: "in" });
  ops.residuals.forEach((r, i) => params.push({ kind: "tensor", name: `residual${i}`, tensor: r.id, type: "bf16", elements: m * n, access: "in" }));
  params.push({ kind: "tensor", name: "out", tensor: ops.out.id, type: outQuant ? "e4m3" : (ops.out.dtype as "bf16" | "fp32"), elements: m * outN, access: "out" });
  if (outQuant) params.push({ kind: "tensor", name: "out_scale", tensor: `${ops.out.id}.scale`, type: "fp32", elements: m * Math.ceil(outN / 128), access: "out" });

  const signature = params
    .map((p) => {
      if (p.kind === "tensor-map") return `const __grid_constant__ TensorMap ${p.name}`;
      if (p.kind !== "tensor") throw new Error("internal error: gemm has no page table");
      const t = p.type === "fp32" ? "float" : p.type === "bf16" ? "bf16_t" : p.type === "i32" ? "int" : "fp8_t";
      return p.access === "in" ? `const ${t}* __restrict__ ${p.name}` : `${t}* __restrict__ ${p.name}`;
    })
    .join(",\n    ");

  const regs = c.wgmmaN / 2;
  const kSteps = c.blockK / (fp8 ? 32 : 16);
  const rowGuard = m % c.blockM !== 0;
  const colGuard = !swiglu && n % c.blockN !== 0;
  const cluster = c.multicast;

  const src = `// ${spec.id} (${spec.kind}) — generated by dsv3 for ${gpu.name} (sm_90a). Do not edit.
// ${JSON.stringify(spec.constants)}
${devicePrelude()}
${wgmmaFunction(c.variant, c.wgmmaN)}

constexpr int M = ${m}, N = ${n}, K = ${k}, GROUPS = ${groups};
constexpr int BM = ${c.blockM}, BN = ${c.blockN}, BK = ${c.blockK}, WN = ${c.wgmmaN};
constexpr int K_BLOCKS = ${kBlocks}, STAGES = ${c.stages}, MATH_WG = ${c.mathWarpgroups}, CLUSTER = ${cluster};
constexpr int TILES_M = ${c.tilesM}, TILES_N = ${c.tilesN}, TILES = TILES_M * TILES_N;
constexpr int MAX_M = ${c.layout === "masked" ? m / groups : m}, TILES_PER_GROUP = ${Math.max(1, c.tilesPerGroup)};
constexpr int SCALE_COLS = ${scaleCols}, B_SCALE_ROWS = ${bScaleRows}, OUT_N = ${outN}, OUT_TILES = ${Math.ceil(outN / 128)};
constexpr unsigned A_BYTES = BM * BK * ${eb}, B_BYTES = BN * BK * ${eb}, STAGE_BYTES = A_BYTES + B_BYTES;
static_assert(A_BYTES % 1024 == 0 && B_BYTES % 1024 == 0, "stages must keep 1024-byte alignment");
${fp8 ? `static_assert(BK == ${c.promote}, "one K block is one promotion interval");` : ""}

/** Tile \`p\` of this CTA's cluster slot: M blocks of a cluster pair up, N outer. */
DEV void tile_coords(int p, int rank, int& mb, int& nb) {
  mb = CLUSTER * (p % (TILES_M / CLUSTER)) + rank;
  nb = p / (TILES_M / CLUSTER);
}
${c.layout === "masked" ? `/** Masked layout: the group of M tile \`mb\`, and its first row. */
DEV int masked_group(int mb) { return mb / TILES_PER_GROUP; }
DEV int masked_row0(int mb) { return (mb / TILES_PER_GROUP) * MAX_M + (mb % TILES_PER_GROUP) * BM; }` : ""}
${c.layout === "contiguous" ? `/** The expert owning row \`row\` (GROUPS when past the last segment). */
DEV int expert_of(const int* seg_end, int row) {
  int lo = 0, hi = GROUPS;
  while (lo < hi) { int mid = (lo + hi) >> 1; if (seg_end[mid] <= row) lo = mid + 1; else hi = mid; }
  return lo;
}` : ""}
${cluster > 1 ? `DEV void cluster_sync() { asm volatile("barrier.cluster.arrive.release.aligned;\\nbarrier.cluster.wait.acquire.aligned;" ::: "memory"); }
DEV unsigned cluster_rank() { unsigned r; asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r)); return r; }
DEV void mbar_arrive_peer(u64* bar, unsigned peer) {
  asm volatile("{\\n .reg .b32 remote;\\n mapa.shared::cluster.u32 remote, %0, %1;\\n mbarrier.arrive.release.cluster.shared::cluster.b64 _, [remote];\\n}"
    :: "r"(smem_u32(bar)), "r"(peer) : "memory");
}
DEV void tma_load_2d_multicast(void* dst, const TensorMap* map, u64* bar, int c0, int c1, unsigned short mask) {
  asm volatile(
    "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, %3}], [%4], %5;"
    :: "r"(smem_u32(dst)), "l"(map), "r"(c0), "r"(c1), "r"(smem_u32(bar)), "h"(mask) : "memory");
}` : ""}

extern "C" __global__ void __launch_bounds__(${c.threads}, 1)${cluster > 1 ? ` __cluster_dims__(${cluster}, 1, 1)` : ""}
${name}(
    ${signature}) {
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = (unsigned char*)(((unsigned long long)smem_raw + 1023) & ~1023ull);
  unsigned char* s_a = smem;
  unsigned char* s_b = smem + STAGES * A_BYTES;
  u64* full = (u64*)(smem + STAGES * STAGE_BYTES);
  u64* empty = full + STAGES;
  ${c.layout === "contiguous" ? "int* seg_end = (int*)(empty + STAGES);" : ""}
  ${swiglu ? "float* row_amax = (float*)(empty + STAGES);" : ""}
  const int wg = threadIdx.x / 128;
  const unsigned rank = ${cluster > 1 ? "cluster_rank()" : "0"};
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) { mbar_init(&full[s], 1); mbar_init(&empty[s], MATH_WG * CLUSTER); }
    mbar_fence_init();
    tma_prefetch_map(&tm_a);
${ops.weights.map((_, i) => `    tma_prefetch_map(&tm_b${i});`).join("\n")}
  }
${c.layout === "contiguous" ? groupedScan(groups, c.threads) : ""}
  __syncthreads();
  ${cluster > 1 ? "cluster_sync();" : ""}
  const int units = gridDim.x / CLUSTER, unit = blockIdx.x / CLUSTER;
  if (wg == 0) {
    // ── producer warpgroup: one thread issues every TMA load ──
    regs_dec<${c.producerRegisters}>();
    if (threadIdx.x == 0) {
      int it = 0;
      for (int p = unit; p < TILES / CLUSTER; p += units) {
        int mb, nb;
        tile_coords(p, rank, mb, nb);
        ${c.layout === "contiguous" ? "const int e = expert_of(seg_end, mb * BM);\n        if (e == GROUPS) continue;" : ""}${c.layout === "masked" ? "const int e = masked_group(mb);\n        if ((mb % TILES_PER_GROUP) * BM >= __ldg(counts + e)) continue;" : ""}
        const int a_row = ${c.layout === "masked" ? "masked_row0(mb)" : "mb * BM"};
        for (int kb = 0; kb < K_BLOCKS; ++kb, ++it) {
          const int s = it % STAGES;
          mbar_wait(&empty[s], ((it / STAGES) & 1) ^ 1);
          mbar_arrive_expect_tx(&full[s], STAGE_BYTES);
          tma_load_2d(s_a + s * A_BYTES, &tm_a, &full[s], kb * BK, a_row);
${producerBLoads(c, swiglu)}
        }
      }
    }
  } else {
    // ── math warpgroups ──
    regs_inc<${c.mathRegisters}>();
    const int mw = wg - 1, t = threadIdx.x % 128, warp = t / 32, lane = t % 32;
    const int r_in = warp * 16 + lane / 4;
    float acc[${regs}];
    ${fp8 ? `float fin[${regs}];` : ""}
    int it = 0;
    for (int p = unit; p < TILES / CLUSTER; p += units) {
      int mb, nb;
      tile_coords(p, rank, mb, nb);
      const int row0 = ${c.layout === "masked" ? "masked_row0(mb)" : "mb * BM"} + ${c.split === "m" ? "mw * 64 + " : ""}r_in, row1 = row0 + 8;
      ${c.layout === "contiguous" ? `const int e = expert_of(seg_end, mb * BM);
      if (e == GROUPS) {
${zeroTile(c, outType, rowGuard)}
        continue;
      }` : ""}${c.layout === "masked" ? `const int e = masked_group(mb);
      const int row_end = e * MAX_M + __ldg(counts + e);
      if ((mb % TILES_PER_GROUP) * BM >= row_end - e * MAX_M) continue;` : ""}
      ${fp8 ? "#pragma unroll\n      for (int i = 0; i < " + regs + "; ++i) fin[i] = 0.0f;" : ""}
      for (int kb = 0; kb < K_BLOCKS; ++kb, ++it) {
        const int s = it % STAGES;
${fp8 ? mathScaleLoads(c, swiglu, rowGuard) : ""}
        mbar_wait(&full[s], (it / STAGES) & 1);
        #pragma unroll
        for (int i = 0; i < ${regs}; ++i) reg_fence(acc[i]);
        wgmma_fence();
        #pragma unroll
        for (int kk = 0; kk < ${kSteps}; ++kk) {
          const u64 da = smem_desc_sw128(s_a + s * A_BYTES + ${c.split === "m" ? "mw * 64 * 128 + " : ""}kk * 32);
          const u64 db = smem_desc_sw128(s_b + s * B_BYTES + ${c.split === "n" ? "mw * WN * 128 + " : ""}kk * 32);
          wgmma_tile(acc, da, db, ${fp8 ? "kk" : "kb + kk"});
        }
        wgmma_commit();
        wgmma_wait<0>();
        #pragma unroll
        for (int i = 0; i < ${regs}; ++i) reg_fence(acc[i]);
        if (t == 0) {
          mbar_arrive(&empty[s]);
          ${cluster > 1 ? "mbar_arrive_peer(&empty[s], rank ^ 1);" : ""}
        }
${fp8 ? promotion(c, swiglu) : ""}
      }
${swiglu ? swigluEpilogue(c, fp8 ? "fin" : "acc", outQuant, pow2, rowGuard, outN % 128 !== 0) : storeEpilogue(c, fp8 ? "fin" : "acc", ops.residuals.length, outType, rowGuard, colGuard, c.layout === "masked")}
    }
  }
  ${cluster > 1 ? "cluster_sync();" : ""}
}
`;
  const flops = 2 * m * n * k;
  const bytes = m * k * eb + (c.grouped ? groups : 1) * n * k * eb + m * outN * (outType === "float" ? 4 : outType === "bf16_t" ? 2 : 1) + ops.residuals.length * m * n * 2;
  void elem;
  return {
    name,
    kind: spec.kind,
    entry: name,
    source: src,
    launch: { grid: [c.grid, 1, 1], block: [c.threads, 1, 1], sharedBytes: c.sharedBytes, params },
    choice: gemmChoiceRecord(c),
    work: { flops, bytes },
  };
}

function gemmChoiceRecord(c: GemmChoice): Record<string, number | string | boolean> {
  return {
    variant: c.variant,
    ...(c.layout !== null ? { layout: c.layout } : {}),
    split: c.split,
    block_m: c.blockM,
    block_n: c.blockN,
    block_k: c.blockK,
    wgmma_n: c.wgmmaN,
    math_warpgroups: c.mathWarpgroups,
    stages: c.stages,
    multicast: c.multicast,
    tiles: c.tilesM * c.tilesN,
    grid: c.grid,
    producer_registers: c.producerRegisters,
    math_registers: c.mathRegisters,
    promote: c.promote,
  };
}

/** Inclusive prefix sums of the expert counts into `seg_end` (a Hillis–Steele scan, or serial). */
function groupedScan(groups: number, threads: number): string {
  if (groups <= threads) {
    return `  if (threadIdx.x < GROUPS) seg_end[threadIdx.x] = counts[threadIdx.x];
  __syncthreads();
  for (int off = 1; off < GROUPS; off <<= 1) {
    const int v = (threadIdx.x < GROUPS && threadIdx.x >= off) ? seg_end[threadIdx.x - off] : 0;
    __syncthreads();
    if (threadIdx.x < GROUPS) seg_end[threadIdx.x] += v;
    __syncthreads();
  }`;
  }
  return `  if (threadIdx.x == 0) { int s = 0; for (int g = 0; g < GROUPS; ++g) { s += counts[g]; seg_end[g] = s; } }`;
}

function producerBLoads(c: GemmChoice, swiglu: boolean): string {
  const pad = "          ";
  if (swiglu) {
    // [gate j0..j0+64 | up j0..j0+64 | gate j0+64..j0+128 | up j0+64..j0+128], 64 rows × 128 B each.
    return [
      `${pad}tma_load_2d(s_b + s * B_BYTES + 0 * 8192, &tm_b0, &full[s], kb * BK, nb * 128);`,
      `${pad}tma_load_2d(s_b + s * B_BYTES + 1 * 8192, &tm_b1, &full[s], kb * BK, nb * 128);`,
      `${pad}tma_load_2d(s_b + s * B_BYTES + 2 * 8192, &tm_b0, &full[s], kb * BK, nb * 128 + 64);`,
      `${pad}tma_load_2d(s_b + s * B_BYTES + 3 * 8192, &tm_b1, &full[s], kb * BK, nb * 128 + 64);`,
    ].join("\n");
  }
  const row = c.grouped ? "e * N + nb * BN" : "nb * BN";
  if (c.multicast > 1) {
    return `${pad}tma_load_2d_multicast(s_b + s * B_BYTES + rank * (B_BYTES / CLUSTER), &tm_b0, &full[s], kb * BK, ${row} + rank * (BN / CLUSTER), (unsigned short)((1u << CLUSTER) - 1));`;
  }
  return `${pad}tma_load_2d(s_b + s * B_BYTES, &tm_b0, &full[s], kb * BK, ${row});`;
}

/** The two A scales of the thread's rows and the tile's B scale(s) for K block `kb`. */
function mathScaleLoads(c: GemmChoice, swiglu: boolean, rowGuard: boolean): string {
  const pad = "        ";
  const guard0 = rowGuard ? "row0 < M ? " : "";
  const guard1 = rowGuard ? "row1 < M ? " : "";
  const tail = rowGuard ? " : 0.0f" : "";
  const lines = [
    `${pad}const float sa0 = ${guard0}__ldg(scale_a + row0 * SCALE_COLS + kb)${tail};`,
    `${pad}const float sa1 = ${guard1}__ldg(scale_a + row1 * SCALE_COLS + kb)${tail};`,
  ];
  if (swiglu) {
    lines.push(`${pad}const float sb_gate = __ldg(scale_b0 + nb * SCALE_COLS + kb);`);
    lines.push(`${pad}const float sb_up = __ldg(scale_b1 + nb * SCALE_COLS + kb);`);
  } else {
    const blockRow = c.grouped ? "(e * B_SCALE_ROWS + (nb * BN) / 128)" : "((nb * BN) / 128)";
    lines.push(`${pad}const float sb = __ldg(scale_b0 + ${blockRow} * SCALE_COLS + kb);`);
  }
  return lines.join("\n");
}

/** Promotion: fin += acc × (A scale of the row) × (B scale of the column block). */
function promotion(c: GemmChoice, swiglu: boolean): string {
  const pad = "        ";
  if (swiglu) {
    const half = c.wgmmaN / 2 / 8; // n8 chunks of the gate half
    return `${pad}{
${pad}  const float g0 = sa0 * sb_gate, g1 = sa1 * sb_gate, u0 = sa0 * sb_up, u1 = sa1 * sb_up;
${pad}  #pragma unroll
${pad}  for (int i = 0; i < ${c.wgmmaN / 2}; ++i) {
${pad}    const bool up = (i / 4) >= ${half};
${pad}    const bool lower = (i & 2) != 0;
${pad}    fin[i] += acc[i] * (up ? (lower ? u1 : u0) : (lower ? g1 : g0));
${pad}  }
${pad}}`;
  }
  return `${pad}{
${pad}  const float s0 = sa0 * sb, s1 = sa1 * sb;
${pad}  #pragma unroll
${pad}  for (int i = 0; i < ${c.wgmmaN / 2}; ++i) fin[i] += acc[i] * ((i & 2) ? s1 : s0);
${pad}}`;
}

/**
 * Contiguous layout, an M tile past the last expert segment: the thread's accumulator positions
 * are stored as zeros (as the reference does), two columns at a time in the output's own type —
 * guarded by M as well as N, since the zeroed tile may be the last, partial one.
 */
function zeroTile(c: GemmChoice, outType: string, rowGuard: boolean): string {
  const pad = "        ";
  const store = outType === "float" ? "*(float2*)(out + at) = make_float2(0.0f, 0.0f);" : "*(unsigned*)(out + at) = 0u;";
  const guards = [rowGuard ? "row < M" : "", "col < N"].filter((g) => g !== "");
  return `${pad}#pragma unroll
${pad}for (int i = 0; i < ${c.wgmmaN / 2}; i += 2) {
${pad}  const int row = (i & 2) ? row1 : row0;
${pad}  const int col = nb * BN + (i / 4) * 8 + (lane % 4) * 2;
${pad}  const long long at = (long long)row * N + col;
${pad}  if (${guards.join(" && ")}) ${store}
${pad}}`;
}

/** Plain epilogue: optional residual adds, then BF16 (or FP32) stores straight from registers. */
function storeEpilogue(c: GemmChoice, regs: string, residuals: number, outType: string, rowGuard: boolean, colGuard: boolean, masked: boolean): string {
  const pad = "      ";
  const guards = [masked ? "row < row_end" : rowGuard ? "row < M" : "", colGuard ? "col < N" : ""].filter((g) => g !== "");
  const adds = Array.from({ length: residuals }, (_, r) => `${pad}    { const unsigned rr = *(const unsigned*)(residual${r} + at); v0 += bf16_to_f32((bf16_t)(rr & 0xffffu)); v1 += bf16_to_f32((bf16_t)(rr >> 16)); }`).join("\n");
  const store =
    outType === "float"
      ? `*(float2*)(out + at) = make_float2(v0, v1);`
      : `*(unsigned*)(out + at) = f32x2_to_bf16x2(v0, v1);`;
  return `${pad}#pragma unroll
${pad}for (int i = 0; i < ${c.wgmmaN / 2}; i += 2) {
${pad}  const int row = (i & 2) ? row1 : row0;
${pad}  const int col = nb * BN + (i / 4) * 8 + (lane % 4) * 2;
${pad}  ${guards.length > 0 ? `if (${guards.join(" && ")}) ` : ""}{
${pad}    const long long at = (long long)row * N + col;
${pad}    float v0 = ${regs}[i], v1 = ${regs}[i + 1];
${adds}
${pad}    ${store}
${pad}  }
${pad}}`;
}

/**
 * SwiGLU + 1×128 quantisation: warpgroup mw holds gate columns [64·mw, 64·mw + 64) of output tile
 * nb in its first 8 n8 chunks and the matching up columns in the next 8, so SiLU(g)·u is
 * thread-local; the row amax over the tile's 128 columns is a quad shuffle plus one exchange
 * between the two warpgroups through shared memory.
 */
function swigluEpilogue(c: GemmChoice, regs: string, quantise: boolean, pow2: boolean, rowGuard: boolean, colGuard: boolean): string {
  const pad = "      ";
  const half = c.wgmmaN / 4; // registers of the gate half
  const guards = [rowGuard ? "row < M" : "", colGuard ? "col < OUT_N" : ""].filter((g) => g !== "");
  const guard = guards.length > 0 ? `if (${guards.join(" && ")}) ` : "";
  if (!quantise) {
    return `${pad}#pragma unroll
${pad}for (int i = 0; i < ${half}; i += 2) {
${pad}  const int row = (i & 2) ? row1 : row0;
${pad}  const int col = nb * 128 + mw * 64 + (i / 4) * 8 + (lane % 4) * 2;
${pad}  const float g0 = ${regs}[i], u0 = ${regs}[i + ${half}], g1 = ${regs}[i + 1], u1 = ${regs}[i + 1 + ${half}];
${pad}  ${guard}*(unsigned*)(out + (long long)row * OUT_N + col) = f32x2_to_bf16x2(g0 / (1.0f + expf(-g0)) * u0, g1 / (1.0f + expf(-g1)) * u1);
${pad}}`;
  }
  return `${pad}{
${pad}  float h[${half}];
${pad}  float amax0 = 0.0f, amax1 = 0.0f;
${pad}  #pragma unroll
${pad}  for (int i = 0; i < ${half}; ++i) {
${pad}    const float g = ${regs}[i], u = ${regs}[i + ${half}];
${pad}    h[i] = g / (1.0f + expf(-g)) * u;
${pad}    if (i & 2) amax1 = fmaxf(amax1, fabsf(h[i])); else amax0 = fmaxf(amax0, fabsf(h[i]));
${pad}  }
${pad}  amax0 = warp_max_xor(amax0, 4);
${pad}  amax1 = warp_max_xor(amax1, 4);
${pad}  math_barrier(256);
${pad}  if ((lane & 3) == 0) { row_amax[mw * 64 + r_in] = amax0; row_amax[mw * 64 + r_in + 8] = amax1; }
${pad}  math_barrier(256);
${pad}  const float s0 = tile_scale(fmaxf(row_amax[r_in], row_amax[64 + r_in]), ${pow2});
${pad}  const float s1 = tile_scale(fmaxf(row_amax[r_in + 8], row_amax[64 + r_in + 8]), ${pow2});
${pad}  #pragma unroll
${pad}  for (int i = 0; i < ${half}; i += 2) {
${pad}    const bool lower = (i & 2) != 0;
${pad}    const int row = lower ? row1 : row0;
${pad}    const float sc = lower ? s1 : s0;
${pad}    const int col = nb * 128 + mw * 64 + (i / 4) * 8 + (lane % 4) * 2;
${pad}    ${guard}*(unsigned short*)(out + (long long)row * OUT_N + col) = f32x2_to_e4m3x2(div_round_odd(h[i], sc), div_round_odd(h[i + 1], sc));
${pad}  }
${pad}  if (mw == 0 && (lane & 3) == 0) {
${pad}    ${rowGuard ? "if (row0 < M) " : ""}out_scale[(long long)row0 * OUT_TILES + nb] = s0;
${pad}    ${rowGuard ? "if (row1 < M) " : ""}out_scale[(long long)row1 * OUT_TILES + nb] = s1;
${pad}  }
${pad}}`;
}
