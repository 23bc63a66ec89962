/**
 * gemm: C = A·Bᵀ with its epilogue applied to the FP32 accumulators before the one store —
 *   - A, B quantised (`a`, `b` formats): fp8Gemm with promotion every `promote` elements of K (the
 *     Hopper accumulator model); otherwise a plain dot product summed in FP64, k ascending, stored
 *     to FP32 (as linearForward);
 *   - `merged` > 1: the GEMMs of several weights sharing A (gate and up) in one kernel, their
 *     outputs side by side along N;
 *   - `epilogue`: add (a residual, added to the FP32 accumulator), swiglu (SiLU(gate)·up of the two
 *     merged accumulators), quantize (the output's format and 1×128 tiles) — no intermediate is
 *     rounded to BF16, which is what the unfused ops do (each op stores its BF16 output).
 * Without an epilogue the result is bitwise the unfused linear; with one it is within rounding of
 * it (tests/kernels.test.ts states the bound). The operand wiring of the epilogue (which input is
 * the residual) comes from `spec.epilogue`.
 */
import type { KernelSpec, KernelTensor } from "../../../compiler/kernel-spec.js";
import { fp8Gemm } from "../numerics/index.js";
import { sigmoid } from "../ops/tensor.js";
import {
  getQuantized,
  getReal,
  num,
  parseFormat,
  quantizeTensor,
  roundTo,
  strings,
  type KernelValues,
} from "./tensors.js";

/** The FP32 accumulators of x·wᵀ (m × n). */
export function gemmAccumulators(spec: KernelSpec, inputs: KernelValues, x: KernelTensor, w: KernelTensor, wIndex = 0): Float32Array {
  const m = num(spec, "m");
  const k = num(spec, "k");
  const n = w.shape[w.shape.length - 2]!;
  const a = parseFormat(spec.constants["a"]);
  const b = parseFormat(spec.constants["b"]);
  if (a.quant !== null && b.quant !== null) {
    return fp8Gemm(getQuantized(inputs, x), getQuantized(inputs, w, wIndex), { promotionInterval: num(spec, "promote") }).f32;
  }
  const xs = getReal(inputs, x);
  const ws = getReal(inputs, w);
  const c = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += xs[i * k + p]! * ws[j * k + p]!;
      c[i * n + j] = s;
    }
  }
  return c;
}

export function runGemm(spec: KernelSpec, inputs: KernelValues): KernelValues {
  const m = num(spec, "m");
  const merged = spec.constants["merged"] === undefined ? 1 : num(spec, "merged");
  const x = spec.tensors[spec.main[0]!.inputs[0]!]!;
  const weights = spec.main.map((op) => spec.tensors[op.inputs[1]!]!);
  if (weights.length !== merged) throw new Error(`${spec.id}: ${weights.length} weights for merged=${merged}`);
  const accs = weights.map((w) => gemmAccumulators(spec, inputs, x, w));
  const epilogue = strings(spec, "epilogue");
  // The live value: FP32 accumulators (m × width); `current` is the unfused value it stands for.
  let width = weights.reduce((s, w) => s + w.shape[0]!, 0);
  let v = new Float32Array(m * width);
  let col = 0;
  for (let p = 0; p < accs.length; p++) {
    const n = weights[p]!.shape[0]!;
    for (let i = 0; i < m; i++) v.set(accs[p]!.subarray(i * n, (i + 1) * n), i * width + col);
    col += n;
  }
  let current = spec.main[spec.main.length - 1]!.outputs[0]!;
  const out: KernelValues = new Map();
  let quantisedOutput = false;
  epilogue.forEach((kind, i) => {
    const op = spec.epilogue[i]!;
    if (op.kind !== kind) throw new Error(`${spec.id}: epilogue constant ${kind} but op ${op.kind}`);
    switch (kind) {
      case "add": {
        const other = op.inputs[0] === current ? op.inputs[1]! : op.inputs[0]!;
        const r = getReal(inputs, spec.tensors[other]!);
        for (let e = 0; e < v.length; e++) v[e] = v[e]! + r[e % r.length]!;
        break;
      }
      case "swiglu": {
        if (accs.length !== 2) throw new Error(`${spec.id}: a swiglu epilogue needs two merged GEMMs`);
        const half = weights[0]!.shape[0]!;
        const h = new Float32Array(m * half);
        for (let r = 0; r < m; r++) {
          for (let j = 0; j < half; j++) {
            const g = v[r * width + j]!;
            h[r * half + j] = g * sigmoid(g) * v[r * width + half + j]!;
          }
        }
        v = h;
        width = half;
        break;
      }
      case "quantize": {
        const t = spec.tensors[op.outputs[0]!]!;
        const q = quantizeTensor(t, v);
        out.set(t.id, q.codes);
        out.set(`${t.id}.scale`, q.scales);
        quantisedOutput = true;
        break;
      }
      default:
        throw new Error(`${spec.id}: no gemm epilogue ${kind}`);
    }
    current = op.outputs[0]!;
  });
  const final = spec.outputs[0]!;
  if (!quantisedOutput) out.set(final.id, roundTo(final.dtype, v));
  return out;
}
