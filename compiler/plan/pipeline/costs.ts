/**
 * Op durations for the simulation, in any one time unit.
 *
 * - `F`: one forward chunk.
 * - `B`: one full backward chunk (input gradient + weight gradient).
 * - `W`: the weight-gradient part of `B`; a split backward's input-gradient op takes B − W.
 * - `FB`: an overlapped forward-and-backward pair (the table's F&B).
 *
 * Defaults: F = 1, B = 2F, W = B/2, FB = F + B — the proportions of the DualPipe README's figures
 * (a backward twice a forward, split evenly) with no compute gain from overlapping: the overlap
 * exists to hide communication, which this model treats as free. A partial cost fills its missing
 * entries from the given ones the same way (B from F, W from B, FB from F and B).
 */

import { fail } from "./schedule.js";
import type { PipelineFailure } from "./schedule.js";

export interface Costs {
  F: number;
  B: number;
  W: number;
  FB: number;
}

export const DEFAULT_COSTS: Readonly<Costs> = { F: 1, B: 2, W: 1, FB: 3 };

/** Fills the missing costs and checks them: all finite, F, B, FB > 0, 0 ≤ W ≤ B. */
export function resolveCosts(partial: Partial<Costs> = {}): Costs | PipelineFailure {
  const F = partial.F ?? DEFAULT_COSTS.F;
  const B = partial.B ?? 2 * F;
  const W = partial.W ?? B / 2;
  const FB = partial.FB ?? F + B;
  const c: Costs = { F, B, W, FB };
  for (const name of ["F", "B", "W", "FB"] as const) {
    const v = c[name];
    if (typeof v !== "number" || !Number.isFinite(v)) return fail("pp-cost", `cost ${name} must be a finite number; found ${String(v)}`, `use ${name}=1`);
    if (v < 0 || (v === 0 && name !== "W")) {
      return fail("pp-cost", `cost ${name} must be ${name === "W" ? "≥ 0" : "> 0"}; found ${v}`, `use ${name}=${name === "W" ? 0 : 1}`);
    }
  }
  if (W > B) return fail("pp-cost", `cost W (the weight-gradient part of B) cannot exceed B; found W=${W} > B=${B}`, `use W ≤ ${B}`);
  return c;
}

/**
 * Parses the CLI's `--cost` value, `F=1,B=2,W=1,FB=3` (any subset, any order; `F&B` is accepted for
 * `FB`). Returns the entries given; `resolveCosts` fills and checks the rest.
 */
export function parseCostOption(text: string): Partial<Costs> | PipelineFailure {
  const out: Partial<Costs> = {};
  const parts = text.split(",").map((p) => p.trim()).filter((p) => p !== "");
  if (parts.length === 0) return fail("pp-cost", "--cost is empty", "use --cost F=1,B=2,W=1,FB=3");
  for (const part of parts) {
    const m = /^([A-Za-z&]+)\s*=\s*(.+)$/.exec(part);
    const name = m?.[1]?.toUpperCase().replace("F&B", "FB");
    if (!m || (name !== "F" && name !== "B" && name !== "W" && name !== "FB")) {
      return fail("pp-cost", `--cost entry '${part}' is not NAME=NUMBER with NAME one of F, B, W, FB`, "use --cost F=1,B=2,W=1,FB=3");
    }
    const value = Number(m[2]);
    if (m[2]!.trim() === "" || !Number.isFinite(value)) return fail("pp-cost", `--cost ${name}: '${m[2]}' is not a number`, `use ${name}=1`);
    if (out[name] !== undefined) return fail("pp-cost", `--cost gives ${name} twice`, `give ${name} once`);
    out[name] = value;
  }
  return out;
}
