/** The CUDA backend: KernelSpecs → CUDA C++ → PTX → cubin for Hopper (sm_90a). */
export { CUDA_BACKEND, buildKernels, distinctKernels, resourceViolations, type BuiltKernel, type BuildResult, type CudaBackend, type StageName } from "./backend.js";
export { bundleKernels, manifestEntries, type BundleKernels } from "./bundle-kernels.js";
export { generateKernel, kernelName, unsupportedReason, GENERATOR_VERSION } from "./generate.js";
export type { GeneratedKernel, KernelLaunch, KernelParam } from "./generated-kernel.js";
export { gpuTargetOf, isHopper, H800_TARGET, type GpuTarget } from "./gpu-target.js";
export { chooseGemm, chooseMlaDecode, chooseRowwise, chooseGate } from "./kernel-choice.js";
export { KernelCache, cacheKey, defaultCacheDir } from "./kernel-cache.js";
export { findToolchain, parsePtxasReport, type Toolchain, type KernelResources } from "./nvcc.js";
