/**
 * CUDA generators for the row-wise memory-bound kernels that end in 1×128 quantisation:
 * `rmsnorm_quantize` (RMSNorm in FP32, the normalised row rounded to BF16, then one quantisation per
 * requested format, optionally also storing the BF16 row) and `swiglu_quantize` (SiLU(g)·u rounded
 * to BF16, then the quantisations). One CTA of dim/8 threads (at most 1024; wider rows take several
 * chunks) owns a row at a time (grid-stride over rows); each thread moves 16-byte vectors of 8 BF16
 * values, so a 1×128 tile is 16 adjacent threads and its amax a 16-lane shuffle (±∞ and NaN left
 * out, as the reference). Scales follow the reference: amax floored at 1e-4, divided by 448, or the
 * smallest sufficient power of two for `pow2` formats. RMSNorm's sum of squares, 1/rms and x·r·w are
 * FP64 like the reference's, so the BF16 row (and with it every tile's amax) matches it bit for bit
 * up to the order of the FP64 sum.
 */
import type { KernelSpec, KernelTensor } from "../../../compiler/kernel-spec.js";
import type { GpuTarget } from "../gpu-target.js";
import { chooseRowwise } from "../kernel-choice.js";
import type { GeneratedKernel, KernelParam } from "../generated-kernel.js";
import { devicePrelude } from "./device-prelude.js";

function num(spec: KernelSpec, key: string): number {
  return spec.constants[key] as number;
}

/** The quantised outputs, in `formats` order, each with its pow2 flag. */
function quantOutputs(spec: KernelSpec): KernelTensor[] {
  return spec.outputs.filter((t) => t.quant !== null);
}

export function generateRowwiseQuantize(spec: KernelSpec, gpu: GpuTarget, name: string): GeneratedKernel {
  const rows = num(spec, "rows");
  const dim = num(spec, "dim");
  if (dim % 8 !== 0) throw new Error(`internal error: ${spec.id}: ${spec.kind} needs a dim divisible by 8, got ${dim}`);
  const tiles = Math.ceil(dim / 128);
  const norm = spec.kind === "rmsnorm_quantize";
  const c = chooseRowwise(rows, dim, gpu);
  const quants = quantOutputs(spec);
  for (const t of quants)
    if (t.dtype !== "e4m3" || t.quant!.tile[0] !== 1 || t.quant!.tile[1] !== 128) throw new Error(`internal error: ${spec.id}: ${spec.kind} quantises to E4M3 1×128 tiles, not ${t.dtype} ${t.quant!.tile.join("×")}`);
  const realOut = spec.outputs.find((t) => t.quant === null) ?? null;
  const params: KernelParam[] = [];
  const inputs = norm ? [spec.inputs[0]!, spec.inputs[1]!] : [spec.inputs[0]!, spec.inputs[1]!];
  const inNames = norm ? ["x", "weight"] : ["gate", "up"];
  inputs.forEach((t, i) => params.push({ kind: "tensor", name: inNames[i]!, tensor: t.id, type: "bf16", elements: norm && i === 1 ? dim : rows * dim, access: "in" }));
  if (realOut) params.push({ kind: "tensor", name: "y", tensor: realOut.id, type: "bf16", elements: rows * dim, access: "out" });
  quants.forEach((t, i) => {
    params.push({ kind: "tensor", name: `q${i}`, tensor: t.id, type: "e4m3", elements: rows * dim, access: "out" });
    params.push({ kind: "tensor", name: `q${i}_scale`, tensor: `${t.id}.scale`, type: "fp32", elements: rows * tiles, access: "out" });
  });
  const signature = params
    .map((p) => (p.kind === "tensor" ? (p.access === "in" ? `const ${p.type === "bf16" ? "bf16_t" : "float"}* __restrict__ ${p.name}` : `${p.type === "bf16" ? "bf16_t" : p.type === "e4m3" ? "fp8_t" : "float"}* __restrict__ ${p.name}`) : ""))
    .join(",\n    ");
  const eps = norm ? num(spec, "eps") : 0;
  // One thread per 8 columns; rows wider than 1024 vectors take CHUNKS passes of THREADS vectors
  // (THREADS·8 is a multiple of 256 columns, so a 1×128 tile stays 16 adjacent lanes of one chunk).
  const chunks = Math.ceil(c.threads / 1024);
  const threads = Math.max(32, Math.ceil(dim / 8 / chunks / 32) * 32);
  const compute = norm
    ? `    // RMSNorm as the reference: the sum of squares and 1/rms in FP64, x·r·w in FP64 rounded to FP32, then BF16.
    double ss = 0.0;
    #pragma unroll
    for (int ch = 0; ch < CHUNKS; ++ch)
      #pragma unroll
      for (int j = 0; j < 8; ++j) ss += (double)v[ch][j] * (double)v[ch][j];
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x / 32] = ss;
    __syncthreads();
    double total = 0.0;
    for (int w = 0; w < THREADS / 32; ++w) total += partial[w];
    __syncthreads();
    const double r = 1.0 / sqrt(total / (double)DIM + EPS);
    #pragma unroll
    for (int ch = 0; ch < CHUNKS; ++ch) {
      const int col = (ch * THREADS + (int)threadIdx.x) * 8;
      if (col < DIM) {
        const uint4 wv = *(const uint4*)(weight + col);
        const bf16_t* wh = (const bf16_t*)&wv;
        #pragma unroll
        for (int j = 0; j < 8; ++j) v[ch][j] = bf16_to_f32(f32_to_bf16((float)((double)v[ch][j] * r * (double)bf16_to_f32(wh[j]))));
      }
    }`
    : `    // SiLU(g)·u as the reference's order, (g·σ(g))·u, with the accurate expf; rounded to BF16.
    #pragma unroll
    for (int ch = 0; ch < CHUNKS; ++ch) {
      const int col = (ch * THREADS + (int)threadIdx.x) * 8;
      if (col < DIM) {
        const uint4 uv = *(const uint4*)(up + base + col);
        const bf16_t* uh = (const bf16_t*)&uv;
        #pragma unroll
        for (int j = 0; j < 8; ++j) {
          const float g = v[ch][j];
          v[ch][j] = bf16_to_f32(f32_to_bf16(__fmul_rn(__fmul_rn(g, 1.0f / (1.0f + expf(-g))), bf16_to_f32(uh[j]))));
        }
      }
    }`;
  const source = `// ${spec.id} (${spec.kind}) — generated by dsv3 for ${gpu.name} (sm_90a). Do not edit.
// ${JSON.stringify(spec.constants)}
${devicePrelude()}
constexpr int ROWS = ${rows}, DIM = ${dim}, TILES = ${tiles}, THREADS = ${threads}, CHUNKS = ${chunks};
constexpr double EPS = ${eps.toPrecision(17)};

extern "C" __global__ void __launch_bounds__(THREADS)
${name}(
    ${signature}) {
  __shared__ double partial[THREADS / 32];
  (void)partial;
  for (int row = blockIdx.x; row < ROWS; row += gridDim.x) {
    const long long base = (long long)row * DIM;
    float v[CHUNKS][8];
    #pragma unroll
    for (int ch = 0; ch < CHUNKS; ++ch) {
      const int col = (ch * THREADS + (int)threadIdx.x) * 8;
      #pragma unroll
      for (int j = 0; j < 8; ++j) v[ch][j] = 0.0f;
      if (col < DIM) {
        const uint4 xv = *(const uint4*)(${norm ? "x" : "gate"} + base + col);
        const bf16_t* xh = (const bf16_t*)&xv;
        #pragma unroll
        for (int j = 0; j < 8; ++j) v[ch][j] = bf16_to_f32(xh[j]);
      }
    }
${compute}
    #pragma unroll
    for (int ch = 0; ch < CHUNKS; ++ch) {
      const int col = (ch * THREADS + (int)threadIdx.x) * 8;
      const bool active = col < DIM;
${realOut ? `      if (active) {
        uint4 o;
        o.x = f32x2_to_bf16x2(v[ch][0], v[ch][1]); o.y = f32x2_to_bf16x2(v[ch][2], v[ch][3]);
        o.z = f32x2_to_bf16x2(v[ch][4], v[ch][5]); o.w = f32x2_to_bf16x2(v[ch][6], v[ch][7]);
        *(uint4*)(y + base + col) = o;
      }` : ""}
      // The tile's amax over its 16 lanes; like the reference, ±∞ and NaN are left out (NaN < x is false).
      float amax = 0.0f;
      #pragma unroll
      for (int j = 0; j < 8; ++j) { const float a = fabsf(v[ch][j]); if (a < INFINITY) amax = fmaxf(amax, a); }
      amax = warp_max_xor(amax, 16);
${quants
  .map(
    (t, i) => `      {
        const float s = tile_scale(amax, ${t.quant!.pow2});
        if (active) {
          uint2 q;
          q.x = (unsigned)f32x2_to_e4m3x2(div_round_odd(v[ch][0], s), div_round_odd(v[ch][1], s)) | ((unsigned)f32x2_to_e4m3x2(div_round_odd(v[ch][2], s), div_round_odd(v[ch][3], s)) << 16);
          q.y = (unsigned)f32x2_to_e4m3x2(div_round_odd(v[ch][4], s), div_round_odd(v[ch][5], s)) | ((unsigned)f32x2_to_e4m3x2(div_round_odd(v[ch][6], s), div_round_odd(v[ch][7], s)) << 16);
          *(uint2*)(q${i} + base + col) = q;
          if ((threadIdx.x & 15) == 0) q${i}_scale[(long long)row * TILES + col / 128] = s;
        }
      }`,
  )
  .join("\n")}
    }
  }
}
`;
  const bytes = rows * dim * 2 * (norm ? 1 : 2) + (realOut ? rows * dim * 2 : 0) + quants.length * rows * (dim + tiles * 4);
  return {
    name,
    kind: spec.kind,
    entry: name,
    source,
    launch: { grid: [c.grid, 1, 1], block: [threads, 1, 1], sharedBytes: 0, params },
    choice: { threads, vector: c.vector, grid: c.grid, ...(chunks > 1 ? { chunks } : {}) },
    work: { flops: 0, bytes },
  };
}
