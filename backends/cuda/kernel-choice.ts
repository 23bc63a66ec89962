/**
 * Kernel choices — tiles, pipeline stages, warpgroup roles, TMA multicast, launch shapes — derived
 * from a KernelSpec's sizes and the GPU target alone (no tuning runs, no randomness), so the same
 * spec gives the same kernels on every machine, and every choice is recorded in the manifest.
 *
 * GEMMs follow the rules a Hopper FP8 GEMM library applies: a 128-element K block (one
 * promotion interval, one 128-byte swizzled row of E4M3), M tiles of 64 rows per math warpgroup, N
 * tiles from a small set chosen to minimise waves × per-tile time on the target's SMs, as many
 * pipeline stages as shared memory holds (at most 8), a persistent grid of min(SMs, tiles), and a
 * 2-CTA cluster multicasting the shared B tile when the M tiles pair up and there is more than one
 * wave. The fused SwiGLU + quantise epilogue needs a whole 1×128 output tile per row, so its two
 * math warpgroups split N (gate|up halves for output columns [0, 64) and [64, 128)) instead of M.
 */
import type { KernelSpec } from "../../compiler/kernel-spec.js";
import type { GpuTarget } from "./gpu-target.js";

export type GemmVariant = "fp8" | "bf16";

export interface GemmChoice {
  variant: GemmVariant;
  grouped: boolean;
  /**
   * Grouped layouts: `contiguous` (expert segments of padded rows, training and prefill) or `masked`
   * (each group owns m/groups rows of which `counts[g]` are valid, decode); null for plain GEMMs.
   */
  layout: "contiguous" | "masked" | null;
  /** Masked layout: M tiles per group. */
  tilesPerGroup: number;
  /** How the math warpgroups share the CTA tile: by rows (m) or by columns (n, SwiGLU only). */
  split: "m" | "n";
  blockM: number;
  /** Accumulator columns of the CTA tile (for SwiGLU: gate and up columns together). */
  blockN: number;
  /** K elements per pipeline stage: 128 bytes of a row (E4M3: 128; BF16: 64). */
  blockK: number;
  /** Accumulator columns of one math warpgroup (the wgmma N). */
  wgmmaN: number;
  mathWarpgroups: number;
  stages: number;
  /** CTAs of a cluster sharing the B tile by TMA multicast (1: none). */
  multicast: 1 | 2;
  tilesM: number;
  tilesN: number;
  grid: number;
  threads: number;
  producerRegisters: number;
  mathRegisters: number;
  stageBytes: number;
  sharedBytes: number;
  /** Promotion interval along K (FP8 only; 0 for BF16). */
  promote: number;
}

export const GEMM_MAX_STAGES = 8;
/** Registers per thread after `setmaxnreg`: 40·128 + 232·256 = 64,512 ≤ 65,536 for three warpgroups. */
export const PRODUCER_REGISTERS = 40;
export const MATH_REGISTERS = 232;

function num(spec: KernelSpec, key: string): number {
  const v = spec.constants[key];
  if (typeof v !== "number") throw new Error(`internal error: ${spec.id} has no numeric constant '${key}'`);
  return v;
}

export function isSwigluEpilogue(spec: KernelSpec): boolean {
  const e = spec.constants["epilogue"];
  return Array.isArray(e) && e.includes("swiglu");
}

/** The bytes of shared memory a GEMM reserves besides its stages. */
function gemmReserve(stages: number, grouped: boolean, groups: number, swiglu: boolean): number {
  return 1024 /* alignment slack */ + 2 * stages * 8 /* full/empty barriers */ + (grouped ? 4 * (groups + 1) : 0) + (swiglu ? 2 * 64 * 4 : 0) + 64;
}

export function chooseGemm(spec: KernelSpec, gpu: GpuTarget): GemmChoice {
  const grouped = spec.kind === "grouped_gemm";
  const m = num(spec, "m");
  const n = num(spec, "n");
  const k = num(spec, "k");
  const groups = grouped ? num(spec, "groups") : 0;
  const variant: GemmVariant = String(spec.constants["a"]).startsWith("e4m3") ? "fp8" : "bf16";
  const elementBytes = variant === "fp8" ? 1 : 2;
  const blockK = 128 / elementBytes;
  const swiglu = isSwigluEpilogue(spec);
  const candidates: { blockM: number; blockN: number; split: "m" | "n" }[] = swiglu
    ? [{ blockM: 64, blockN: 256, split: "n" }]
    : [64, 128].flatMap((blockM) => [64, 128].map((blockN) => ({ blockM, blockN, split: "m" as const })));
  const smFlops = (variant === "fp8" ? gpu.fp8FlopsPerS : gpu.bf16FlopsPerS) / gpu.sms;
  // Shared-memory fill bandwidth per SM (L2 → SM), about 64 B/clk at 1.75 GHz.
  const smBytesPerS = 112e9;
  let best: { c: (typeof candidates)[number]; cost: number } | null = null;
  for (const c of candidates) {
    const tiles = Math.ceil(m / c.blockM) * Math.ceil((swiglu ? n / 2 : n) / (swiglu ? c.blockN / 2 : c.blockN));
    const waves = Math.ceil(tiles / gpu.sms);
    const tileTime = Math.max((2 * c.blockM * c.blockN * k) / smFlops, ((c.blockM + c.blockN) * k * elementBytes) / smBytesPerS);
    const cost = waves * tileTime;
    if (best === null || cost < best.cost * (1 - 1e-9) || (Math.abs(cost - best.cost) <= best.cost * 1e-9 && c.blockM * c.blockN > best.c.blockM * best.c.blockN)) {
      best = { c, cost };
    }
  }
  const { blockN, split } = best!.c;
  const layout = grouped ? (spec.constants["layout"] === "masked" ? "masked" : "contiguous") : null;
  // A masked group's rows start at g·(m/groups): tiles must not straddle groups.
  const blockM = layout === "masked" && (m / groups) % best!.c.blockM !== 0 ? 64 : best!.c.blockM;
  const mathWarpgroups = split === "n" ? 2 : blockM / 64;
  const wgmmaN = split === "n" ? blockN / 2 : blockN;
  const tilesPerGroup = layout === "masked" ? Math.ceil(m / groups / blockM) : 0;
  const tilesM = layout === "masked" ? groups * tilesPerGroup : Math.ceil(m / blockM);
  const tilesN = swiglu ? Math.ceil(n / 2 / (blockN / 2)) : Math.ceil(n / blockN);
  const tiles = tilesM * tilesN;
  const stageBytes = (blockM + blockN) * blockK * elementBytes;
  let stages = GEMM_MAX_STAGES;
  while (stages > 2 && stages * stageBytes + gemmReserve(stages, grouped, groups, swiglu) > gpu.sharedBytesPerBlock) stages--;
  const multicast: 1 | 2 = !swiglu && !grouped && tilesM % 2 === 0 && tiles > gpu.sms && gpu.sms % 2 === 0 ? 2 : 1;
  let grid = Math.min(gpu.sms, tiles);
  if (multicast === 2) grid -= grid % 2;
  return {
    variant,
    grouped,
    layout,
    tilesPerGroup,
    split,
    blockM,
    blockN,
    blockK,
    wgmmaN,
    mathWarpgroups,
    stages,
    multicast,
    tilesM,
    tilesN,
    grid,
    threads: 128 * (1 + mathWarpgroups),
    producerRegisters: PRODUCER_REGISTERS,
    mathRegisters: MATH_REGISTERS,
    stageBytes,
    sharedBytes: stages * stageBytes + gemmReserve(stages, grouped, groups, swiglu),
    promote: variant === "fp8" ? num(spec, "promote") : 0,
  };
}

/** Row-wise memory-bound kernels: threads per row so that each thread moves 16-byte vectors. */
export interface RowChoice {
  /** Elements each thread handles per row (a 16-byte BF16 vector: 8). */
  vector: number;
  threads: number;
  /** Rows per CTA. */
  rows: number;
  grid: number;
}

/** One CTA of dim/8 threads per row (dim ≤ 8192), rows in a grid-stride loop over ≤ 16 waves. */
export function chooseRowwise(rowCount: number, dim: number, gpu: GpuTarget): RowChoice {
  const vector = 8;
  const threads = Math.max(32, Math.ceil(dim / vector / 32) * 32);
  const perSm = Math.max(1, Math.floor(2048 / threads));
  const grid = Math.min(rowCount, gpu.sms * perSm * 16);
  return { vector, threads, rows: 1, grid };
}

/** MLA decode: one CTA per (sequence, head group), KV pages of 64 rows in a double-buffered ring. */
export interface MlaDecodeChoice {
  headsPerCta: number;
  /** Query rows of one CTA: heads × q_len (the tensor-core M). */
  rowsPerCta: number;
  pageRows: number;
  stages: number;
  /** KV splits per sequence (flash-decoding), combined by a second pass. */
  splits: number;
  threads: number;
  grid: [number, number, number];
  sharedBytes: number;
}

export function chooseMlaDecode(spec: KernelSpec, gpu: GpuTarget): MlaDecodeChoice {
  const queries = num(spec, "queries");
  const heads = num(spec, "heads");
  const qLen = num(spec, "q_len");
  const kvLen = num(spec, "kv_len");
  const dk = num(spec, "dk");
  const pageRows = typeof spec.constants["kv_block"] === "number" ? num(spec, "kv_block") : 64;
  const sequences = Math.ceil(queries / qLen);
  const headsPerCta = Math.max(1, Math.min(heads, Math.floor(64 / qLen)));
  const rowsPerCta = headsPerCta * qLen;
  const headGroups = Math.ceil(heads / headsPerCta);
  const pages = Math.ceil(kvLen / pageRows);
  // Split the KV sequence until the grid fills the GPU about twice, at least 4 pages a split.
  let splits = 1;
  while (sequences * headGroups * splits < 2 * gpu.sms && pages / (splits * 2) >= 4) splits *= 2;
  const stages = 2;
  const sharedBytes = stages * pageRows * dk * 2 + rowsPerCta * dk * 2 + rowsPerCta * pageRows * 4 + 1024;
  return { headsPerCta, rowsPerCta, pageRows, stages, splits, threads: 256, grid: [splits, headGroups, sequences], sharedBytes };
}

/** The router: one warp per token, each lane 8 experts; the gate weight streamed through shared memory. */
export interface GateChoice {
  tokensPerCta: number;
  kChunk: number;
  threads: number;
  grid: number;
  sharedBytes: number;
}

export function chooseGate(spec: KernelSpec, gpu: GpuTarget): GateChoice {
  const tokens = num(spec, "m");
  const experts = num(spec, "n");
  const tokensPerCta = 32;
  const kChunk = 32;
  void gpu;
  const threads = Math.max(experts, 128);
  const sharedBytes = 4 * (tokensPerCta * kChunk + experts * (kChunk + 1) + tokensPerCta * (experts + 1));
  return { tokensPerCta, kChunk, threads, grid: Math.ceil(tokens / tokensPerCta), sharedBytes };
}

/**
 * Prefill / training attention (FlashAttention-2 on mma.sync): a CTA takes `blockM` queries of one
 * head of one sequence, one warp per 16 query rows holding its rows' scores, softmax state and
 * output accumulators in registers; keys and values stream through a double-buffered shared-memory
 * ring in tiles of `blockN`. 128 queries (8 warps) when the sequence has them, else 64 (4 warps);
 * causal grids launch the longest (last) query tiles first.
 */
export interface AttentionChoice {
  blockM: number;
  blockN: number;
  stages: number;
  warps: number;
  threads: number;
  /** Row pitches in shared memory (elements): the head dim padded to 16, +8 to keep ldmatrix rows on distinct banks. */
  ldk: number;
  ldv: number;
  tilesM: number;
  grid: [number, number, number];
  sharedBytes: number;
}

export function chooseAttention(spec: KernelSpec, gpu: GpuTarget): AttentionChoice {
  const queries = num(spec, "queries");
  const heads = num(spec, "heads");
  const qLen = num(spec, "q_len");
  const dk = num(spec, "dk");
  const dv = num(spec, "dv");
  const blockN = typeof spec.constants["kv_block"] === "number" ? num(spec, "kv_block") : 64;
  const preferred = typeof spec.constants["q_block"] === "number" ? num(spec, "q_block") : 128;
  const blockM = qLen <= 64 ? 64 : preferred;
  const ldk = Math.ceil(dk / 16) * 16 + 8;
  const ldv = Math.ceil(dv / 16) * 16 + 8;
  const stages = 2;
  const sharedBytes = 2 * (blockM * ldk + stages * blockN * (ldk + ldv));
  if (sharedBytes > gpu.sharedBytesPerBlock) throw new Error(`internal error: ${spec.id}: attention tiles need ${sharedBytes} bytes of shared memory`);
  const tilesM = Math.ceil(qLen / blockM);
  const warps = blockM / 16;
  return { blockM, blockN, stages, warps, threads: 32 * warps, ldk, ldv, tilesM, grid: [tilesM, heads, Math.ceil(queries / qLen)], sharedBytes };
}
