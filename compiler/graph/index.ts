/** The Graph IR: contract (ir.ts), builder, text form, checks, analysis and rewriting helpers. */
export * from "./ir.js";
export * from "./dim-expr.js";
export * from "./build.js";
export * from "./print.js";
export * from "./parse.js";
export * from "./verify.js";
export * from "./analysis.js";
export * from "./rewrite.js";
