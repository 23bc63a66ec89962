/** The Graph IR passes, one file each; compiler/pipeline.ts lists them in order. */
export * from "./pass.js";
export * from "./absorb-mla.js";
export * from "./insert-fp8-quantisation.js";
export * from "./mark-recompute.js";
export * from "./fuse-kernels.js";
