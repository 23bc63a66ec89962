/**
 * Built-in presets, written in the language itself so they read like user presets. GPU figures are
 * dense (no sparsity) datasheet peaks of the SXM parts; see shared/reference/FACTS.md for H800/H200.
 */
import type { Preset } from "../../dsl/ast.js";
import { parseDocument } from "../../dsl/parser.js";

export const PRELUDE_FILE = "<prelude>";

export const PRELUDE_SOURCE = `// Hopper GPUs (sm_90, 132 SMs). H800 and H100 share compute and memory; the H800 has less NVLink.
preset H800 {
  name = "H800"
  fp8_peak = 1979 TFLOP/s
  bf16_peak = 989 TFLOP/s
  hbm = 80 GB
  hbm_bandwidth = 3.35 TB/s
  sms = 132
}

preset H100 {
  ...H800
  name = "H100"
}

// The same SM as the H800 and H100, with more and faster HBM (HBM3e).
preset H200 {
  ...H800
  name = "H200"
  hbm = 141 GB
  hbm_bandwidth = 4.8 TB/s
}
`;

let cached: Preset[] | null = null;

export function preludePresets(): Preset[] {
  if (cached === null) {
    const parsed = parseDocument(PRELUDE_SOURCE, PRELUDE_FILE);
    if (parsed.diagnostics.all.length > 0) throw new Error(`the prelude does not parse: ${parsed.diagnostics.all[0]!.message}`);
    cached = parsed.document.items.filter((i): i is Preset => i.kind === "preset");
  }
  return cached;
}
