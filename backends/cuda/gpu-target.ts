/**
 * The GPU a bundle's kernels are generated for: the Hopper SM's fixed limits (the same on H800,
 * H100 and H200: sm_90a, 227 KiB of shared memory a block can opt into, 64 Ki registers per SM,
 * 255 per thread) plus what the spec's GPU preset says (SM count, peaks). Kernel choices
 * (kernel-choice.ts) are derived from this and nothing else, so they are deterministic.
 */
import type { GpuSpec } from "../../compiler/spec.js";

export interface GpuTarget {
  /** The preset's name (H800, H100, H200). */
  name: string;
  arch: "sm_90a";
  sms: number;
  /** Dynamic shared memory one block may opt into (cudaFuncAttributeMaxDynamicSharedMemorySize). */
  sharedBytesPerBlock: number;
  registersPerSm: number;
  maxRegistersPerThread: number;
  l2Bytes: number;
  fp8FlopsPerS: number;
  bf16FlopsPerS: number;
  hbmBytesPerS: number;
}

/** 227 KiB: the sm_90 opt-in limit per block (228 KiB per SM less 1 KiB reserved by the system). */
export const HOPPER_SHARED_BYTES_PER_BLOCK = 232_448;
export const HOPPER_REGISTERS_PER_SM = 65_536;
export const HOPPER_L2_BYTES = 50 * 1024 * 1024;

/** GPU names whose SM is Hopper's (sm_90): the only target of this backend. */
const HOPPER_NAMES = /^(H100|H200|H800|H20|GH200)\b/i;

export function isHopper(gpu: Pick<GpuSpec, "name">): boolean {
  return HOPPER_NAMES.test(gpu.name);
}

export function gpuTargetOf(gpu: GpuSpec): GpuTarget {
  return {
    name: gpu.name,
    arch: "sm_90a",
    sms: gpu.sms,
    sharedBytesPerBlock: HOPPER_SHARED_BYTES_PER_BLOCK,
    registersPerSm: HOPPER_REGISTERS_PER_SM,
    maxRegistersPerThread: 255,
    l2Bytes: HOPPER_L2_BYTES,
    fp8FlopsPerS: gpu.fp8FlopsPerS,
    bf16FlopsPerS: gpu.bf16FlopsPerS,
    hbmBytesPerS: gpu.hbmBytesPerS,
  };
}

/** The H800 preset's figures (shared/reference/FACTS.md), for tests and the GPU check's defaults. */
export const H800_TARGET: GpuTarget = gpuTargetOf({
  name: "H800",
  fp8FlopsPerS: 1979e12,
  bf16FlopsPerS: 989e12,
  hbmBytes: 80e9,
  hbmBytesPerS: 3.35e12,
  sms: 132,
});
