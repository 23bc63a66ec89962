/** Bit-exact numerics of the reference backend: minifloat formats, quantisation, FP8 GEMM. */
export * from "./minifloat.js";
export * from "./fp8-e4m3.js";
export * from "./fp8-e5m2.js";
export * from "./e5m6.js";
export * from "./ue8m0.js";
export * from "./bf16.js";
export * from "./quantize.js";
export * from "./fp8-gemm.js";
