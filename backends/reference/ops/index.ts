/**
 * The reference backend's ops: CPU forward and backward of every DeepSeek-V3 op at small sizes, the
 * semantics kernels and parallel plans are tested against. Generic over Float32Array (the working
 * precision) and Float64Array (gradient checks); see tensor.ts.
 */
export * from "./tensor.js";
export * from "./rmsnorm.js";
export * from "./linear.js";
export * from "./swiglu.js";
export * from "./rope.js";
export * from "./attention.js";
export * from "./mla.js";
export * from "./gate.js";
export * from "./moe.js";
export * from "./aux-loss.js";
export * from "./bias-update.js";
export * from "./cross-entropy.js";
export * from "./embedding.js";
export * from "./output-head.js";
export * from "./mtp.js";
export * from "./decoder-layer.js";
export * from "./random-weights.js";
