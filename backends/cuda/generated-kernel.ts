/**
 * What a kernel generator produces: CUDA C++ for one KernelSpec, specialised on every size, plus
 * how to launch it (grid, block, dynamic shared memory, and each parameter bound to a tensor of the
 * KernelSpec by id, as the reference backend keys its values: `id` or `id.scale`). The launch record
 * goes into the bundle, so a runtime (or the GPU check's host harness) can build the TMA descriptors
 * and launch the cubin without knowing how the kernel was generated.
 */
import type { ConstantValue, KernelKind } from "../../compiler/kernel-spec.js";

export type ElementType = "bf16" | "fp32" | "e4m3" | "i32" | "u8";

export type KernelParam =
  /** A device pointer to a tensor (or its scales, `id.scale`). */
  | { kind: "tensor"; name: string; tensor: string; type: ElementType; elements: number; access: "in" | "out" }
  /**
   * A CUtensorMap passed by value (`__grid_constant__`): a 2-D row-major tensor of `dims` = [inner,
   * outer] elements, loaded in `box` = [inner, outer] boxes with the 128-byte swizzle.
   */
  | { kind: "tensor-map"; name: string; tensor: string; type: ElementType; dims: [number, number]; box: [number, number]; swizzleBytes: 128 }
  /** The page table of a paged cache: `sequences` × `pages` i32 page indices (built by the runtime). */
  | { kind: "page-table"; name: string; tensor: string; sequences: number; pages: number };

export interface KernelLaunch {
  grid: [number, number, number];
  block: [number, number, number];
  /** Dynamic shared memory requested at launch (the kernel opts into it above 48 KiB). */
  sharedBytes: number;
  params: KernelParam[];
}

export interface GeneratedKernel {
  /** `<kind>_<hash8>`: unique per distinct code; the file stem in the bundle. */
  name: string;
  kind: KernelKind;
  /** The extern "C" entry point. */
  entry: string;
  source: string;
  launch: KernelLaunch;
  /** The derived choices (tiles, stages, multicast, …), recorded in the manifest. */
  choice: Record<string, ConstantValue>;
  /** Useful work of one launch, for the GPU check: FLOPs and bytes moved (minimum). */
  work: { flops: number; bytes: number };
}
