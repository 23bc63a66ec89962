/**
 * The GPU check's final table: one row per measured kernel (or device ceiling) with its shape, the
 * correctness verdict, the median time, the achieved rate (TFLOP/s for compute-bound kernels, GB/s
 * for memory-bound ones), the target it is held to and the ratio to it.
 */
export interface ResultRow {
  kernel: string;
  shape: string;
  /** `ok`, `FAIL (diff 3e-2)`, or `-` when not checked (timing-only shapes). */
  check: string;
  /** Median microseconds, or null when not timed. */
  micros: number | null;
  /** Achieved rate in the unit below, or null. */
  rate: number | null;
  unit: "TFLOP/s" | "GB/s" | "";
  /** The target in the same unit and where it comes from (`DeepGEMM H800`, `85% of copy`), or null. */
  target: { value: number; source: string } | null;
}

function fmt(x: number | null, digits = 0): string {
  if (x === null || !Number.isFinite(x)) return "-";
  return x >= 100 || digits === 0 ? x.toFixed(digits) : x.toPrecision(3);
}

export function ratioText(row: ResultRow): string {
  if (row.rate === null || row.target === null || row.target.value <= 0) return "-";
  return `${Math.round((100 * row.rate) / row.target.value)}%`;
}

/** A fixed-width text table (columns padded to their widest cell), numbers right-aligned. */
export function formatTable(rows: readonly ResultRow[]): string {
  const header = ["kernel", "shape", "check", "time µs", "achieved", "target", "vs target"];
  const body = rows.map((r) => [
    r.kernel,
    r.shape,
    r.check,
    r.micros === null ? "-" : fmt(r.micros, r.micros >= 100 ? 0 : 1),
    r.rate === null ? "-" : `${fmt(r.rate)} ${r.unit}`,
    r.target === null ? "-" : `${fmt(r.target.value)} ${r.unit} (${r.target.source})`,
    ratioText(r),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const right = new Set([3, 4, 6]);
  const line = (cells: string[]): string => cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n") + "\n";
}

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError("median of nothing");
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
