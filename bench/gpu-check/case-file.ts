/**
 * The harness's case files (see harness.cu for the format): which cubin and entry to launch, the
 * launch shape, one buffer per tensor the kernel touches (from golden values, random bits of the
 * right type, a page table, or zeros for outputs) and the kernel arguments in order, TMA operands
 * as descriptors over their buffer. Also the byte encodings both sides agree on: BF16 as the upper
 * half of the FP32 bits, E4M3 as codes, FP32 and I32 raw, little-endian.
 */
import type { KernelArray, KernelValues } from "../../backends/reference/kernels/index.js";
import type { ElementType, GeneratedKernel, KernelParam } from "../../backends/cuda/generated-kernel.js";

export function elementBytes(t: ElementType): number {
  return t === "fp32" || t === "i32" ? 4 : t === "bf16" ? 2 : 1;
}

/** The device bytes of a reference array stored as `type`. */
export function encodeValues(type: ElementType, a: KernelArray): Uint8Array {
  if (type === "bf16") {
    const f = a instanceof Float32Array ? a : Float32Array.from(a);
    const bits = new Uint32Array(f.buffer, f.byteOffset, f.length);
    const out = new Uint16Array(f.length);
    for (let i = 0; i < f.length; i++) out[i] = bits[i]! >>> 16;
    return new Uint8Array(out.buffer);
  }
  if (type === "fp32") return new Uint8Array(Float32Array.from(a).buffer);
  if (type === "i32") return new Uint8Array(Int32Array.from(a).buffer);
  return a instanceof Uint8Array ? a : Uint8Array.from(a);
}

/** The reference array of device bytes stored as `type` (BF16 widened to FP32). */
export function decodeValues(type: ElementType, bytes: Uint8Array): KernelArray {
  const copy = new Uint8Array(bytes);
  if (type === "bf16") {
    const h = new Uint16Array(copy.buffer, 0, copy.byteLength / 2);
    const bits = new Uint32Array(h.length);
    for (let i = 0; i < h.length; i++) bits[i] = h[i]! << 16;
    return new Float32Array(bits.buffer);
  }
  if (type === "fp32") return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
  if (type === "i32") return new Int32Array(copy.buffer, 0, copy.byteLength / 4);
  return copy;
}

export interface CaseBuffer {
  id: string;
  tensor: string;
  type: ElementType;
  bytes: number;
  /** `zero`, `random`, or the bytes to upload. */
  init: "zero" | "random" | Uint8Array;
  output: boolean;
}

export interface HarnessCase {
  buffers: CaseBuffer[];
  /** The case file's text, with `{dir}` where the caller's directory goes. */
  text: (paths: { cubin: string; file: (buffer: CaseBuffer) => string; out: (buffer: CaseBuffer) => string }) => string;
}

const RANDOM_INIT: Record<ElementType, string> = { e4m3: "e4m3", u8: "e4m3", bf16: "bf16", fp32: "f32pos", i32: "zero" };

/**
 * A case for `kernel`: inputs from `values` where it has them (golden runs), else random bits — but
 * integer inputs must be given (indices and counts must be valid), and page tables are identity.
 */
export function harnessCase(kernel: GeneratedKernel, values: KernelValues | null, timing: { warmup: number; iters: number; rotate: number }): HarnessCase {
  const buffers = new Map<string, CaseBuffer>();
  const args: { param: KernelParam; buffer: CaseBuffer }[] = [];
  for (const p of kernel.launch.params) {
    let b = buffers.get(p.tensor);
    if (b === undefined) {
      let type: ElementType;
      let bytes: number;
      let init: CaseBuffer["init"];
      let output = false;
      if (p.kind === "page-table") {
        type = "i32";
        const table = Int32Array.from({ length: p.sequences * p.pages }, (_, i) => i);
        bytes = table.byteLength;
        init = new Uint8Array(table.buffer);
      } else if (p.kind === "tensor-map") {
        type = p.type;
        bytes = p.dims[0] * p.dims[1] * elementBytes(p.type);
        const v = values?.get(p.tensor);
        init = v === undefined ? "random" : encodeValues(type, v);
      } else {
        type = p.type;
        bytes = p.elements * elementBytes(p.type);
        output = p.access === "out";
        if (output) init = "zero";
        else {
          const v = values?.get(p.tensor);
          if (v === undefined && p.type === "i32") throw new Error(`gpu-check: integer input ${p.tensor} of ${kernel.name} needs values`);
          init = v === undefined ? "random" : encodeValues(type, v);
        }
      }
      if (init instanceof Uint8Array && init.byteLength !== bytes) throw new Error(`gpu-check: ${p.tensor} has ${init.byteLength} bytes, ${bytes} expected`);
      b = { id: `b${buffers.size}`, tensor: p.tensor, type, bytes, init, output };
      buffers.set(p.tensor, b);
    }
    args.push({ param: p, buffer: b });
  }
  const list = [...buffers.values()];
  return {
    buffers: list,
    text: ({ cubin, file, out }) => {
      const l = kernel.launch;
      const lines = [
        `cubin ${cubin}`,
        `entry ${kernel.entry}`,
        `grid ${l.grid.join(" ")}`,
        `block ${l.block.join(" ")}`,
        `smem ${l.sharedBytes}`,
        `warmup ${timing.warmup}`,
        `iters ${timing.iters}`,
        `rotate ${timing.rotate}`,
      ];
      for (const b of list) {
        const init = b.init === "zero" ? "zero" : b.init === "random" ? RANDOM_INIT[b.type] : `file:${file(b)}`;
        lines.push(`buffer ${b.id} ${b.bytes} ${init}${b.output ? ` out ${out(b)}` : ""}`);
      }
      for (const { param, buffer } of args) {
        if (param.kind === "tensor-map") {
          lines.push(`arg tmap ${buffer.id} ${param.type === "bf16" ? "bf16" : "u8"} ${param.dims[0]} ${param.dims[1]} ${param.box[0]} ${param.box[1]}`);
        } else lines.push(`arg ptr ${buffer.id}`);
      }
      return lines.join("\n") + "\n";
    },
  };
}

/** Input copies to rotate through so that consecutive launches never find their inputs in L2. */
export function rotationCount(inputBytes: number, l2Bytes: number, budgetBytes = 16e9): number {
  if (inputBytes <= 0) return 1;
  const wanted = Math.ceil((2 * l2Bytes) / inputBytes) + 1;
  return Math.max(1, Math.min(wanted, Math.floor(budgetBytes / inputBytes), 64));
}
