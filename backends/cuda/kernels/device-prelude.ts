/**
 * The device-side helpers every generated kernel starts with: BF16/E4M3 conversions, the Hopper
 * asynchronous machinery (mbarrier, TMA `cp.async.bulk.tensor`, `wgmma` fences and shared-memory
 * descriptors, `setmaxnreg`) as inline PTX. No CUDA headers are included: the kernels compile with
 * nothing but nvcc's built-ins, which keeps the front end fast and the output independent of the
 * toolkit's header versions. BF16 values travel as raw 16-bit patterns (`bf16_t`).
 */

/** A CUtensorMap as the driver lays it out: 128 opaque bytes, 64-byte aligned, passed by value. */
export const TENSOR_MAP_TYPE = "TensorMap";

/**
 * The fields of the wgmma shared-memory descriptor for a K-major operand under the 128-byte
 * swizzle (TMA box rows of 128 bytes): stride byte offset = 8 rows × 128 bytes between 8-row core
 * matrices, leading byte offset unused (16), swizzle mode 1 (sm_90 encoding: 0 none, 1 128 B,
 * 2 64 B, 3 32 B).
 */
export const SW128_DESC = { lbo: 16, sbo: 1024, swizzleMode: 1 } as const;

/** The 64-bit descriptor `smem_desc_sw128` builds for the shared-memory address `addr` (a mirror for tests). */
export function sw128Descriptor(addr: number): bigint {
  return (BigInt(addr & 0x3ffff) >> 4n) | (BigInt(SW128_DESC.lbo >> 4) << 16n) | (BigInt(SW128_DESC.sbo >> 4) << 32n) | (BigInt(SW128_DESC.swizzleMode) << 62n);
}

export function devicePrelude(): string {
  return `typedef unsigned short bf16_t;
typedef unsigned char fp8_t;
typedef unsigned long long u64;
struct alignas(64) ${TENSOR_MAP_TYPE} { u64 opaque[16]; };

#define DEV static __device__ __forceinline__

DEV float bf16_to_f32(bf16_t h) { return __uint_as_float(((unsigned)h) << 16); }
DEV bf16_t f32_to_bf16(float x) { unsigned short r; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(x)); return r; }
/** Two floats as packed BF16: \`lo\` in the low half. */
DEV unsigned f32x2_to_bf16x2(float lo, float hi) { unsigned r; asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r; }
/** Two floats as packed E4M3 codes (round to nearest even, saturating to ±448): \`lo\` in the low byte. */
DEV unsigned short f32x2_to_e4m3x2(float lo, float hi) { unsigned short r; asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo)); return r; }
DEV float e4m3_to_f32(fp8_t c) {
  unsigned h2; unsigned short c2 = c;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h2) : "h"(c2));
  float f; asm("{ .reg .f16 lo, hi; mov.b32 {lo, hi}, %1; cvt.f32.f16 %0, lo; }" : "=f"(f) : "r"(h2));
  return f;
}
DEV float warp_max_xor(float v, int width) {
  for (int o = width / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
DEV float warp_sum_xor(float v, int width) {
  for (int o = width / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
/** The 1×128-tile scale of a tile whose largest magnitude is \`amax\` (floor 1e-4, as the reference). */
DEV float tile_scale(float amax, bool pow2) {
  float a = amax > 1e-4f ? amax : 1e-4f;
  if (!pow2) return a / 448.0f;
  int e; double m = frexp((double)a / 448.0, &e);
  (void)m;
  float s = ldexpf(1.0f, e - 1);
  if ((double)a / (double)s > 448.0) s *= 2.0f;
  return s;
}
/**
 * x / s rounded to FP32 by round-to-odd (truncate, set the last bit when inexact), from the exact
 * remainder of the correctly rounded quotient. E4M3's RNE of that equals RNE of the exact quotient,
 * as the reference's FP64 quotient: a plain FP32 quotient could round onto an E4M3 tie first.
 */
DEV float div_round_odd(float x, float s) {
  const float q = __fdiv_rn(x, s);
  const float r = fmaf(-q, s, x);
  if (r == 0.0f || q == 0.0f || !(fabsf(q) < INFINITY)) return q;
  const unsigned b = __float_as_uint(q);
  // |x / s| > |q| when the remainder has q's sign (s > 0): truncation keeps q, else steps one ulp down.
  return __uint_as_float(((r > 0.0f) == (q > 0.0f) ? b : b - 1u) | 1u);
}

DEV unsigned smem_u32(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

// ── mbarrier ──────────────────────────────────────────────────────────────────────────────────────
DEV void mbar_init(u64* bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(smem_u32(bar)), "r"(count) : "memory");
}
/**
 * After the barriers' mbarrier.init (generic proxy): fence.mbarrier_init orders them for the other
 * CTAs of a cluster (multicast complete_tx, remote arrives); fence.proxy.async orders them for this
 * CTA's own TMA unit (the async proxy performs complete_tx). The second is what DeepGEMM and
 * Triton's Hopper pipelines also issue; it costs one fence per CTA.
 */
DEV void mbar_fence_init() { asm volatile("fence.mbarrier_init.release.cluster;\\n\\tfence.proxy.async.shared::cta;" ::: "memory"); }
DEV void mbar_arrive_expect_tx(u64* bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(smem_u32(bar)), "r"(bytes) : "memory");
}
DEV void mbar_arrive(u64* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(smem_u32(bar)) : "memory");
}
DEV void mbar_wait(u64* bar, unsigned parity) {
  asm volatile(
    "{\\n .reg .pred done;\\n"
    "WAIT_%=:\\n"
    " mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\\n"
    " @!done bra WAIT_%=;\\n}" :: "r"(smem_u32(bar)), "r"(parity) : "memory");
}

// ── TMA ───────────────────────────────────────────────────────────────────────────────────────────
DEV void tma_prefetch_map(const ${TENSOR_MAP_TYPE}* map) {
  asm volatile("prefetch.tensormap [%0];" :: "l"(map) : "memory");
}
/** A 2-D box of \`map\` at (inner c0, outer c1) into shared memory; completes on \`bar\`. */
DEV void tma_load_2d(void* dst, const ${TENSOR_MAP_TYPE}* map, u64* bar, int c0, int c1) {
  asm volatile(
    "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
    :: "r"(smem_u32(dst)), "l"(map), "r"(c0), "r"(c1), "r"(smem_u32(bar)) : "memory");
}

// ── warpgroup MMA ─────────────────────────────────────────────────────────────────────────────────
DEV void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
DEV void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> DEV void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" :: "n"(N) : "memory"); }
DEV void reg_fence(float& r) { asm volatile("" : "+f"(r) :: "memory"); }
/**
 * The descriptor of a K-major operand tile in shared memory with the 128-byte swizzle: rows of 128
 * bytes, 8-row core matrices 1024 bytes apart (the stride byte offset), 1024-byte aligned tile.
 * Fields (PTX ISA, "Matrix Descriptor Format"): start address >> 4 in bits 0-13, leading byte
 * offset >> 4 in 16-29 (unused by a swizzled K-major operand whose K extent fits in one swizzle
 * row; 1 by convention), stride byte offset >> 4 in 32-45, base offset in 49-51 (0: every stage
 * buffer starts on a 1024-byte boundary, so the swizzle pattern's phase is that of the TMA write),
 * swizzle mode in 62-63 (1 = 128-byte). The k32 (E4M3) / k16 (BF16) steps inside a 128-byte row
 * advance the start address by 32 bytes: the hardware applies the 128-byte XOR swizzle to the
 * computed address (bits 4-6 ^= bits 7-9), and bits 7-9 of start + 32·kk are those of the row.
 */
DEV u64 smem_desc_sw128(const void* p) {
  u64 addr = smem_u32(p);
  return ((addr & 0x3FFFFull) >> 4) | ((u64)${SW128_DESC.lbo >> 4} << 16) | ((u64)(${SW128_DESC.sbo} >> 4) << 32) | ((u64)${SW128_DESC.swizzleMode} << 62);
}

// ── register reallocation between warpgroups ─────────────────────────────────────────────────────
template <int R> DEV void regs_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" :: "n"(R)); }
template <int R> DEV void regs_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" :: "n"(R)); }
/** A barrier over the \`threads\` math threads only (id 1; 0 is __syncthreads). */
DEV void math_barrier(int threads) { asm volatile("bar.sync 1, %0;" :: "r"(threads) : "memory"); }
`;
}

/** `x` as a C++ float literal that reads back as fround(x) (always with an exponent: `1.000000000e-6f`). */
/**
 * The Ampere-style tensor-core helpers the attention kernels share (they need smem_u32 from the
 * prelude): cp.async group commit/wait, ldmatrix (plain and transposed) and the BF16
 * mma.sync m16n8k16 with FP32 accumulation.
 */
export function mmaSyncHelpers(): string {
  return `DEV void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> DEV void cp_async_wait() { asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory"); }
DEV void ldmatrix_x4(unsigned* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
    : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}
DEV void ldmatrix_x4_trans(unsigned* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
    : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}
DEV void mma_bf16(float* d, const unsigned* a, unsigned b0, unsigned b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
    : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}`;
}

export function floatLiteral(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`internal error: ${x} is not a finite float literal`);
  return `${x.toExponential(9)}f`;
}
