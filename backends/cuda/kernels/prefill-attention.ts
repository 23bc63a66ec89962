/**
 * CUDA generator for `prefill_attention`: FlashAttention-2-style forward attention for training and
 * prefill (V3: MLA in its naive form, 128 heads, QK 192 = 128 nope + 64 rope, V 128, causal, the
 * softmax scale with YaRN's mscale² folded in), BF16 in and out, FP32 softmax and accumulation, on
 * the tensor cores by `mma.sync.m16n8k16` BF16 → FP32 (operands by `ldmatrix`; Hopper's wgmma would
 * need 64-row warpgroup tiles and a producer warpgroup — the mma.sync form keeps each warp's 16 query
 * rows, its softmax state and its output in registers, FlashAttention-2's partition).
 *
 * One CTA per (tile of BM queries, head, sequence) — the tile order reversed under the causal mask so
 * the longest tiles start first; warp w owns query rows [16w, 16w+16). The CTA's Q tile is loaded
 * once into shared memory; K and V tiles of BN keys stream through a two-stage cp.async ring. Per
 * key tile each warp computes S = Q·Kᵀ (16 × BN, FP32 in registers), masks it (keys past kv_len;
 * under the causal mask keys past the row's position — only on the tiles the diagonal crosses),
 * updates the row max and sum across the 4 lanes of a row (online softmax in base 2, the scale times
 * log2 e folded into one multiply), rescales its O accumulators, packs P to BF16 straight from the S
 * registers into A fragments (the C layout of two n8 tiles is the A layout of one k16 step) and adds
 * P·V (V by `ldmatrix.trans`). Key tiles past the CTA's last query are never loaded (causal block
 * skipping), and a warp whose rows all precede a tile skips its math. O / sum is stored in BF16.
 *
 * Operands are read through their sources (compiler/attention-operands.ts): for MLA the keys'
 * columns [0, 128) come from kv_b's output head, [128, 192) from the one shared k_rope row, and V
 * from kv_b's output columns [128, 256) — the prologue's split/broadcast/concat cost nothing. Each
 * run of columns is copied in the widest cp.async its alignment allows (16 bytes for V3; 8 or 4 for
 * small heads), and head dims that are not multiples of 16 are padded with zero columns in shared
 * memory (the padded output columns are not stored).
 */
import { attentionDims, attentionOperandLayout, type AttentionSource } from "../../../compiler/attention-operands.js";
import type { KernelSpec } from "../../../compiler/kernel-spec.js";
import type { GpuTarget } from "../gpu-target.js";
import type { GeneratedKernel, KernelParam } from "../generated-kernel.js";
import { chooseAttention } from "../kernel-choice.js";
import { devicePrelude, floatLiteral, mmaSyncHelpers } from "./device-prelude.js";

/** Head dims are padded to the mma's k16 / n16 in shared memory (zero columns). */
const pad16 = (x: number): number => Math.ceil(x / 16) * 16;

/**
 * Elements per cp.async of each source run (8, 4 or 2: 16-, 8- or 4-byte copies): the largest that
 * divides its width, its offset and row in global memory and its column in shared memory; 0 if none.
 */
function copyVectors(sources: readonly AttentionSource[]): number[] {
  let col = 0;
  return sources.map((s) => {
    const v = [8, 4, 2].find((e) => s.width % e === 0 && s.offset % e === 0 && s.row % e === 0 && col % e === 0) ?? 0;
    col += s.width;
    return v;
  });
}

/** Why the generator cannot tile `spec`, or null. */
export function prefillAttentionUnsupported(spec: KernelSpec): string | null {
  const n = (k: string): number => (typeof spec.constants[k] === "number" ? (spec.constants[k] as number) : NaN);
  const layout = attentionOperandLayout(spec.replaces, spec.main[0]!, (id) => spec.tensors[id]!.shape);
  const aligned = [layout.q, layout.k, layout.v].every((ss) => copyVectors(ss).every((v) => v > 0));
  const heads = n("heads");
  const kvHeads = n("kv_heads");
  const shared = [...layout.k, ...layout.v].every((s) => heads % s.heads === 0 && (s.heads === 1 || s.heads === kvHeads)) && layout.q.every((s) => s.heads === heads);
  // The tiles (kernel-choice.ts): BN keys in n16 steps (S is BN/2 registers a thread), BM rows in warps of 16.
  const blockN = typeof spec.constants["kv_block"] === "number" ? n("kv_block") : 64;
  const blockM = typeof spec.constants["q_block"] === "number" ? n("q_block") : 128;
  const tiles = blockN % 16 === 0 && blockN >= 16 && blockN <= 64 && blockM % 16 === 0 && blockM >= 16 && blockM <= 256;
  if (pad16(n("dk")) <= 256 && pad16(n("dv")) <= 128 && n("dv") % 2 === 0 && aligned && shared && tiles && n("q_len") <= n("kv_len") && n("queries") % n("q_len") === 0) return null;
  return `dk ${n("dk")} / dv ${n("dv")} (at most 256 / 128, dv even), operand columns in runs of 4-byte multiples, heads ${heads} / kv heads ${kvHeads}, kv_block ${blockN} / q_block ${blockM} (multiples of 16, at most 64 / 256)`;
}

export function generatePrefillAttention(spec: KernelSpec, gpu: GpuTarget, name: string): GeneratedKernel {
  const c = spec.constants;
  const { queries, heads, dk, dv, qLen, kvLen, scale, causal } = attentionDims(spec);
  const ch = chooseAttention(spec, gpu);
  const sequences = ch.grid[2];
  const layout = attentionOperandLayout(spec.replaces, spec.main[0]!, (id) => spec.tensors[id]!.shape);
  // One pointer per distinct source tensor, in first-use order (q, k, v).
  const tensors: string[] = [];
  for (const s of [...layout.q, ...layout.k, ...layout.v]) if (!tensors.includes(s.tensor)) tensors.push(s.tensor);
  const out = spec.outputs[0]!;
  const params: KernelParam[] = [
    ...tensors.map((id, i): KernelParam => ({ kind: "tensor", name: `src${i}`, tensor: id, type: "bf16", elements: spec.tensors[id]!.shape.reduce((p, q) => p * q, 1), access: "in" })),
    { kind: "tensor", name: "out", tensor: out.id, type: "bf16", elements: queries * heads * dv, access: "out" },
  ];
  /** cp.async of `rows` rows of an operand (its sources side by side) into `dst` (pitch `ld`). */
  const loadRows = (sources: AttentionSource[], dst: string, ld: number, rows: string, rowLimit: string, token: string): string => {
    const vectors = copyVectors(sources);
    let col = 0;
    return sources
      .map((s, i) => {
        const e = vectors[i]!;
        const vecs = s.width / e;
        const zero = e === 8 ? "*(uint4*)d = make_uint4(0, 0, 0, 0)" : e === 4 ? "*(uint2*)d = make_uint2(0, 0)" : "*(unsigned*)d = 0u";
        const text = `  for (int v = threadIdx.x; v < ${rows} * ${vecs}; v += THREADS) {
    const int r = v / ${vecs}, c = (v % ${vecs}) * ${e};
    bf16_t* d = ${dst} + r * ${ld} + ${col} + c;
    if (${rowLimit}) cp_async<${e * 2}>(d, src${tensors.indexOf(s.tensor)} + ((long long)(${token}) * ${s.heads} + h / ${heads / s.heads}) * ${s.row} + ${s.offset} + c);
    else ${zero};
  }`;
        col += s.width;
        return text;
      })
      .join("\n");
  };
  const dkp = pad16(dk);
  const dvp = pad16(dv);
  const offset = kvLen - qLen;
  const source = `// ${spec.id} (${spec.kind}) — generated by dsv3 for ${gpu.name} (sm_90a). Do not edit.
// ${JSON.stringify(c)}
${devicePrelude()}
constexpr int QUERIES = ${queries}, HEADS = ${heads}, Q_LEN = ${qLen}, KV_LEN = ${kvLen}, DK = ${dk}, DV = ${dv};
/** The head dims padded to 16 (the mma's k and n steps); the padding columns hold zeros. */
constexpr int DKP = ${dkp}, DVP = ${dvp};
constexpr int BM = ${ch.blockM}, BN = ${ch.blockN}, LDK = ${ch.ldk}, LDV = ${ch.ldv}, THREADS = ${ch.threads}, TILES_M = ${ch.tilesM};
/** Under the causal mask query i (of Q_LEN, the last of the sequence's KV_LEN positions) sees keys ≤ i + OFFSET. */
constexpr int OFFSET = ${offset};
constexpr float SCALE_LOG2E = ${floatLiteral(scale * Math.LOG2E)};
constexpr bool CAUSAL = ${causal};

/** A BYTES-byte asynchronous copy global → shared (16: .cg, bypassing L1; 4 and 8: .ca). */
template <int BYTES> DEV void cp_async(void* dst, const void* src) {
  if constexpr (BYTES == 16) asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(smem_u32(dst)), "l"(src) : "memory");
  else asm volatile("cp.async.ca.shared.global [%0], [%1], %2;" :: "r"(smem_u32(dst)), "l"(src), "n"(BYTES) : "memory");
}
${mmaSyncHelpers()}

/** Key/value tile \`kt\` of sequence \`seq\`, head \`h\` into ring slot (ks, vs); rows past KV_LEN zeroed. */
DEV void load_kv(bf16_t* ks, bf16_t* vs, ${tensors.map((_, i) => `const bf16_t* __restrict__ src${i}`).join(", ")}, int seq, int h, int kt) {
  const int j0 = kt * BN;
${loadRows(layout.k, "ks", ch.ldk, "BN", "j0 + r < KV_LEN", "seq * KV_LEN + j0 + r")}
${loadRows(layout.v, "vs", ch.ldv, "BN", "j0 + r < KV_LEN", "seq * KV_LEN + j0 + r")}
  cp_async_commit();
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
${name}(${tensors.map((_, i) => `const bf16_t* __restrict__ src${i}`).join(", ")}, bf16_t* __restrict__ out) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16_t* qs = (bf16_t*)smem_raw;          // [BM][LDK]
  bf16_t* ks = qs + BM * LDK;               // [2][BN][LDK]
  bf16_t* vs = ks + 2 * BN * LDK;           // [2][BN][LDV]
  const int tile = CAUSAL ? TILES_M - 1 - (int)blockIdx.x : (int)blockIdx.x;
  const int h = blockIdx.y, seq = blockIdx.z;
  const int q0 = tile * BM;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int ra = q0 + warp * 16 + lane / 4, rb = ra + 8;   // this thread's two query rows
  // Causal block skipping: keys past the CTA's last query are never loaded.
  const int kv_end = CAUSAL ? min(KV_LEN, q0 + BM + OFFSET) : KV_LEN;
  const int kv_tiles = (kv_end + BN - 1) / BN;
  if (DKP != DK || DVP != DV) {
    // Zero the padding columns of Q, both K slots and both V slots once (loads never touch them).
    for (int r = threadIdx.x; r < BM + 2 * BN; r += THREADS) for (int c = DK; c < DKP; ++c) qs[r * LDK + c] = 0;
    for (int r = threadIdx.x; r < 2 * BN; r += THREADS) for (int c = DV; c < DVP; ++c) vs[r * LDV + c] = 0;
  }
  {
${loadRows(layout.q, "qs", ch.ldk, "BM", "q0 + r < Q_LEN", "seq * Q_LEN + q0 + r").replace(/^/gm, "  ")}
  }
  load_kv(ks, vs, ${tensors.map((_, i) => `src${i}`).join(", ")}, seq, h, 0);
  float o[DVP / 2];
  #pragma unroll
  for (int i = 0; i < DVP / 2; ++i) o[i] = 0.0f;
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;
  const int q = lane >> 3;
  for (int kt = 0; kt < kv_tiles; ++kt) {
    if (kt + 1 < kv_tiles) { load_kv(ks + ((kt + 1) & 1) * BN * LDK, vs + ((kt + 1) & 1) * BN * LDV, ${tensors.map((_, i) => `src${i}`).join(", ")}, seq, h, kt + 1); cp_async_wait<1>(); }
    else cp_async_wait<0>();
    __syncthreads();
    const bf16_t* kp = ks + (kt & 1) * BN * LDK;
    const bf16_t* vp = vs + (kt & 1) * BN * LDV;
    const int j0 = kt * BN;
    // A warp whose 16 rows all precede this tile under the causal mask has nothing to add.
    if (!CAUSAL || j0 <= q0 + warp * 16 + 15 + OFFSET) {
      // S = Q·Kᵀ: 16 rows × BN keys, BN / 8 n8 tiles of 4 FP32 registers.
      float s[BN / 2];
      #pragma unroll
      for (int i = 0; i < BN / 2; ++i) s[i] = 0.0f;
      #pragma unroll 2
      for (int k0 = 0; k0 < DKP; k0 += 16) {
        unsigned a[4];
        ldmatrix_x4(a, qs + (warp * 16 + (q & 1) * 8 + (lane & 7)) * LDK + k0 + (q >> 1) * 8);
        #pragma unroll
        for (int n = 0; n < BN / 16; ++n) {
          unsigned b[4];
          ldmatrix_x4(b, kp + (n * 16 + (q >> 1) * 8 + (lane & 7)) * LDK + k0 + (q & 1) * 8);
          mma_bf16(s + n * 8, a, b[0], b[1]);
          mma_bf16(s + n * 8 + 4, a, b[2], b[3]);
        }
      }
      // Scale (base 2) and mask: keys past KV_LEN, and under the causal mask keys after the row's position.
      const bool edge = j0 + BN > KV_LEN || (CAUSAL && j0 + BN - 1 > q0 + warp * 16 + OFFSET);
      float mx_a = -INFINITY, mx_b = -INFINITY;
      #pragma unroll
      for (int i = 0; i < BN / 2; ++i) {
        const bool lower = (i & 2) != 0;
        float v = s[i] * SCALE_LOG2E;
        if (edge) {
          const int j = j0 + (i / 4) * 8 + (lane % 4) * 2 + (i & 1);
          const int row = lower ? rb : ra;
          if (j >= KV_LEN || (CAUSAL && j > row + OFFSET)) v = -INFINITY;
        }
        s[i] = v;
        if (lower) mx_b = fmaxf(mx_b, v); else mx_a = fmaxf(mx_a, v);
      }
      mx_a = warp_max_xor(mx_a, 4);
      mx_b = warp_max_xor(mx_b, 4);
      const float nm_a = fmaxf(m_a, mx_a), nm_b = fmaxf(m_b, mx_b);
      // A row with no visible key yet keeps a zero state (its reference point is 0, not −∞).
      const float ref_a = nm_a == -INFINITY ? 0.0f : nm_a, ref_b = nm_b == -INFINITY ? 0.0f : nm_b;
      const float ca = exp2f(m_a - ref_a), cb = exp2f(m_b - ref_b);
      m_a = nm_a; m_b = nm_b;
      float sum_a = 0.0f, sum_b = 0.0f;
      unsigned p[BN / 4];
      #pragma unroll
      for (int i = 0; i < BN / 2; i += 2) {
        const bool lower = (i & 2) != 0;
        const float ref = lower ? ref_b : ref_a;
        const float p0 = exp2f(s[i] - ref), p1 = exp2f(s[i + 1] - ref);
        if (lower) sum_b += p0 + p1; else sum_a += p0 + p1;
        p[i / 2] = f32x2_to_bf16x2(p0, p1);
      }
      l_a = l_a * ca + warp_sum_xor(sum_a, 4);
      l_b = l_b * cb + warp_sum_xor(sum_b, 4);
      #pragma unroll
      for (int i = 0; i < DVP / 2; ++i) o[i] *= (i & 2) ? cb : ca;
      // O += P·V: P's registers are the A fragments (two n8 tiles of S = one k16 step).
      #pragma unroll
      for (int kk = 0; kk < BN / 16; ++kk) {
        const unsigned a[4] = {p[kk * 4], p[kk * 4 + 1], p[kk * 4 + 2], p[kk * 4 + 3]};
        #pragma unroll
        for (int t = 0; t < DVP / 16; ++t) {
          unsigned b[4];
          ldmatrix_x4_trans(b, vp + (kk * 16 + (q & 1) * 8 + (lane & 7)) * LDV + t * 16 + (q >> 1) * 8);
          mma_bf16(o + t * 8, a, b[0], b[1]);
          mma_bf16(o + t * 8 + 4, a, b[2], b[3]);
        }
      }
    }
    __syncthreads();
  }
  const float ia = l_a > 0.0f ? 1.0f / l_a : 0.0f, ib = l_b > 0.0f ? 1.0f / l_b : 0.0f;
  #pragma unroll
  for (int i = 0; i < DVP / 2; i += 2) {
    const bool lower = (i & 2) != 0;
    const int r = lower ? rb : ra;
    const int col = (i / 4) * 8 + (lane % 4) * 2;
    const float inv = lower ? ib : ia;
    if (r < Q_LEN && seq * Q_LEN + r < QUERIES && col < DV) *(unsigned*)(out + ((long long)(seq * Q_LEN + r) * HEADS + h) * DV + col) = f32x2_to_bf16x2(o[i] * inv, o[i + 1] * inv);
  }
}
`;
  // Visible (query, key) pairs per head and sequence, under the causal mask or not.
  const pairs = causal ? qLen * offset + (qLen * (qLen + 1)) / 2 : qLen * kvLen;
  const sourceBytes = (ss: AttentionSource[], rows: number): number => ss.reduce((sum, s) => sum + rows * s.heads * s.width * 2, 0);
  return {
    name,
    kind: spec.kind,
    entry: name,
    source,
    launch: { grid: ch.grid, block: [ch.threads, 1, 1], sharedBytes: ch.sharedBytes, params },
    choice: {
      block_m: ch.blockM,
      block_n: ch.blockN,
      stages: ch.stages,
      warps: ch.warps,
      threads: ch.threads,
      mma: "mma.sync.m16n8k16.bf16",
      causal_skip: causal,
      grid: ch.grid.join("x"),
    },
    work: {
      flops: 2 * sequences * heads * pairs * (dk + dv),
      bytes: sourceBytes(layout.q, queries) + sourceBytes([...layout.k, ...layout.v], sequences * kvLen) + queries * heads * dv * 2,
    },
  };
}
