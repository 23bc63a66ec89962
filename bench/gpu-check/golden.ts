/**
 * Golden vectors for the GPU check: seeded inputs for a KernelSpec, shaped the way its role needs
 * (positions for RoPE, distinct experts per token for the permutation, padded 128-row segment counts
 * for the contiguous grouped GEMM and valid-row counts up to the capacity for the masked one, distinct slots for the unpermutation, BF16-rounded reals, E4M3 codes with
 * their 1×128 / 128×128 scales from the reference quantiser), and the reference backend's outputs
 * for them (`runKernel`, the CPU oracle). All randomness comes from compiler/seeded-random.ts.
 */
import { checkSpecFile } from "../../compiler/check/index.js";
import { uniqueKernels, type KernelSpec, type KernelTensor } from "../../compiler/kernel-spec.js";
import { lower } from "../../compiler/pipeline.js";
import { mulberry32 } from "../../compiler/seeded-random.js";
import { elements, quantizeTensor, roundTo, runKernel, scaleKey, type KernelValues } from "../../backends/reference/kernels/index.js";

/** The role an i32 input plays, from its kernel kind and position. */
export type IntRole = "positions" | "experts" | "counts" | "slots" | "other";

export function intRole(spec: KernelSpec, t: KernelTensor): IntRole {
  const main = spec.main[0]!;
  const at = main.inputs.indexOf(t.id);
  if (spec.kind === "rope") return "positions";
  if (spec.kind === "moe_permute" && at === 1) return "experts";
  if (spec.kind === "grouped_gemm" && at === 2) return "counts";
  if (spec.kind === "moe_unpermute" && at === 1) return "slots";
  return "other";
}

/** k distinct integers of [0, n), in draw order (a partial Fisher–Yates shuffle). */
function distinct(random: () => number, n: number, k: number): number[] {
  const pool = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(random() * (n - i));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, k);
}

/** Expert segment counts: multiples of 128 summing to at most `rows`, some experts empty. */
export function segmentCounts(random: () => number, groups: number, rows: number): Int32Array {
  const counts = new Int32Array(groups);
  let left = Math.floor(rows / 128);
  for (let g = 0; g < groups && left > 0; g++) {
    const blocks = Math.min(left, Math.floor(random() * 3));
    counts[g] = blocks * 128;
    left -= blocks;
  }
  return counts;
}

/** Masked layout: each group's valid rows, 0..capacity (some groups empty, some full). */
export function maskedCounts(random: () => number, groups: number, capacity: number): Int32Array {
  return Int32Array.from({ length: groups }, () => Math.min(capacity, Math.floor(random() * 1.25 * (capacity + 1))));
}

function intInput(spec: KernelSpec, t: KernelTensor, random: () => number): Int32Array {
  const n = elements(t.shape);
  switch (intRole(spec, t)) {
    case "positions":
      return Int32Array.from({ length: n }, (_, i) => i);
    case "experts": {
      const [tokens, topk] = [t.shape[0]!, t.shape[1]!];
      const experts = spec.constants["experts"] as number;
      const out = new Int32Array(tokens * topk);
      for (let i = 0; i < tokens; i++) out.set(distinct(random, experts, topk), i * topk);
      return out;
    }
    case "counts":
      return spec.constants["layout"] === "masked"
        ? maskedCounts(random, n, (spec.constants["m"] as number) / n)
        : segmentCounts(random, n, spec.constants["m"] as number);
    case "slots": {
      const rows = spec.constants["rows"] as number;
      return Int32Array.from(distinct(random, rows, n));
    }
    case "other":
      return Int32Array.from({ length: n }, () => Math.floor(random() * 4));
  }
}

/** Seeded inputs for every input tensor of `spec` (and `.scale` arrays of quantised ones). */
export function goldenInputs(spec: KernelSpec, seed: number): KernelValues {
  const random = mulberry32(seed);
  const values: KernelValues = new Map();
  for (const t of spec.inputs) {
    const n = elements(t.shape);
    if (t.dtype === "i32") {
      values.set(t.id, intInput(spec, t, random));
      continue;
    }
    // Norm weights near 1; everything else uniform in ±1 (residuals, activations, the KV cache).
    const isNormWeight = spec.kind === "rmsnorm_quantize" && t === spec.inputs[1];
    const x = new Float64Array(n);
    for (let i = 0; i < n; i++) x[i] = isNormWeight ? 0.9 + 0.2 * random() : 2 * random() - 1;
    if (t.quant !== null) {
      const q = quantizeTensor(t, x);
      values.set(t.id, q.codes);
      values.set(scaleKey(t.id), q.scales);
    } else if (t.dtype === "bf16" || t.dtype === "fp32") {
      values.set(t.id, roundTo(t.dtype, x));
    } else {
      throw new Error(`gpu-check: no golden input for %${t.id} (${t.dtype})`);
    }
  }
  return values;
}

/** Only the integer inputs of `spec` (indices, counts, positions): what a timing run must be given. */
export function integerInputs(spec: KernelSpec, seed: number): KernelValues {
  const random = mulberry32(seed);
  const values: KernelValues = new Map();
  for (const t of spec.inputs) if (t.dtype === "i32") values.set(t.id, intInput(spec, t, random));
  return values;
}

export interface GoldenCase {
  spec: KernelSpec;
  inputs: KernelValues;
  outputs: KernelValues;
}

export function goldenCase(spec: KernelSpec, seed: number): GoldenCase {
  const inputs = goldenInputs(spec, seed);
  return { spec, inputs, outputs: runKernel(spec, inputs) };
}

/** The distinct KernelSpecs of a spec file's schedules (every phase it has), in order, ids prefixed by schedule. */
export function checkKernelSpecs(file: string): KernelSpec[] {
  const checked = checkSpecFile(file);
  if (checked.spec === null) throw new Error(`gpu-check: ${file} does not check`);
  const spec = checked.spec;
  const all: KernelSpec[] = [];
  for (const s of spec.schedules) {
    const phase = s.kind === "training" ? "train" : s.kind;
    // Ids repeat across phases (dense_layer.k0 of train and of decode): prefix the schedule.
    all.push(...lower(spec, { phase, schedule: s.name }).kernels.map((k) => ({ ...k, id: `${s.name}/${k.id}` })));
  }
  return uniqueKernels(all);
}

/**
 * A masked-layout case of a grouped GEMM spec (groups × maxM rows, maxM = m / groups): the masked
 * spec, inputs whose counts are each group's valid rows (seeded, 0..maxM), and the expected output —
 * the reference with every group full, rows past a group's count zeroed (the kernel never stores
 * them; the harness zero-fills outputs): an oracle independent of the masked reference's own row
 * bookkeeping (tests/cuda-gpu-check.test.ts compares the two).
 */
export function maskedGoldenCase(contiguous: KernelSpec, seed: number): GoldenCase {
  if (contiguous.kind !== "grouped_gemm") throw new Error("maskedGoldenCase needs a grouped_gemm");
  const groups = contiguous.constants["groups"] as number;
  const m = contiguous.constants["m"] as number;
  const n = contiguous.constants["n"] as number;
  const maxM = m / groups;
  if (!Number.isInteger(maxM) || maxM % 64 !== 0) throw new Error(`maskedGoldenCase: ${m} rows do not split into ${groups} groups of 64-multiples`);
  const spec = structuredClone(contiguous);
  spec.constants = { ...spec.constants, layout: "masked" };
  spec.key = `${spec.kind}:${JSON.stringify(spec.constants)}`;
  spec.id = `${contiguous.id}[masked]`;
  const countsId = spec.main[0]!.inputs[2]!;
  const inputs = goldenInputs(contiguous, seed);
  const full = new Map(inputs).set(countsId, new Int32Array(groups).fill(maxM));
  const outputs = runKernel(contiguous, full);
  const random = mulberry32(seed ^ 0x5eed);
  const valid = Int32Array.from({ length: groups }, () => Math.floor(random() * (maxM + 1)));
  inputs.set(countsId, valid);
  const out = spec.outputs[0]!.id;
  const y = outputs.get(out) as Float32Array;
  for (let g = 0; g < groups; g++) y.fill(0, (g * maxM + valid[g]!) * n, (g + 1) * maxM * n);
  return { spec, inputs, outputs };
}
