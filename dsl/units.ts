/**
 * Units the language accepts after a number, and what they normalise to. Bytes and FLOPs use SI
 * prefixes (1 GB = 10^9 B) or IEC ones (1 GiB = 2^30 B); rates are per second.
 */

export type Dimension = "bytes" | "bytes/s" | "FLOP/s" | "seconds";

export interface UnitInfo {
  dimension: Dimension;
  /** Multiply by this to get the base unit (B, B/s, FLOP/s, s). */
  factor: number;
}

const SI: ReadonlyArray<readonly [string, number]> = [
  ["", 1], ["K", 1e3], ["M", 1e6], ["G", 1e9], ["T", 1e12], ["P", 1e15],
];
const IEC: ReadonlyArray<readonly [string, number]> = [
  ["Ki", 2 ** 10], ["Mi", 2 ** 20], ["Gi", 2 ** 30], ["Ti", 2 ** 40], ["Pi", 2 ** 50],
];

function buildUnits(): Map<string, UnitInfo> {
  const units = new Map<string, UnitInfo>();
  for (const [prefix, factor] of [...SI, ...IEC]) {
    units.set(`${prefix}B`, { dimension: "bytes", factor });
    units.set(`${prefix}B/s`, { dimension: "bytes/s", factor });
  }
  for (const [prefix, factor] of SI) units.set(`${prefix}FLOP/s`, { dimension: "FLOP/s", factor });
  units.set("s", { dimension: "seconds", factor: 1 });
  units.set("ms", { dimension: "seconds", factor: 1e-3 });
  units.set("us", { dimension: "seconds", factor: 1e-6 });
  units.set("ns", { dimension: "seconds", factor: 1e-9 });
  return units;
}

export const UNITS: ReadonlyMap<string, UnitInfo> = buildUnits();

/**
 * Words the lexer reads as a unit when they follow a number on the same line. Lower-case rates and
 * sizes (`gb/s`, `80 gb`) are read too, so the checker can say "unknown unit, did you mean 'GB/s'?".
 */
export const UNIT_WORD = /[A-Z][A-Za-z]*(?:\/s)?|[a-z][A-Za-z]*\/s|(?:ms|us|ns|s|[kmgtp]i?b)(?![A-Za-z0-9_])/y;

/** A unit for `dimension` that suggests itself in fixes. */
export function exampleUnit(dimension: Dimension): string {
  switch (dimension) {
    case "bytes": return "GB";
    case "bytes/s": return "GB/s";
    case "FLOP/s": return "TFLOP/s";
    case "seconds": return "us";
  }
}
