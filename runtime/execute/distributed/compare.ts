/**
 * Distributed vs single-device numbers. For each named quantity (a loss, a gradient tensor, logits):
 *   maxAbsDiff = max_i |a_i − b_i|,
 *   maxRelDiff = maxAbsDiff / max_i |b_i|   (relative to the reference tensor's largest magnitude, so
 *                an entry near zero does not blow the ratio up; a scalar is relative to itself),
 *   bitwise    = every a_i equals b_i exactly.
 * The summary takes the largest of each over all quantities and names the worst one.
 */

export interface QuantityDiff {
  name: string;
  elements: number;
  maxAbsDiff: number;
  maxRelDiff: number;
  bitwise: boolean;
}

export interface Comparison {
  quantities: QuantityDiff[];
  maxAbsDiff: number;
  maxRelDiff: number;
  /** The quantity with the largest relative difference. */
  worst: string;
  bitwise: boolean;
  /** Quantities compared bit for bit equal, and all of them. */
  bitwiseCount: number;
}

export function diffOf(name: string, a: ArrayLike<number>, b: ArrayLike<number>): QuantityDiff {
  if (a.length !== b.length) throw new RangeError(`compare: '${name}' has ${a.length} elements distributed and ${b.length} on one device`);
  let abs = 0;
  let scale = 0;
  let bitwise = true;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x !== y) bitwise = false;
    const dd = Math.abs(x - y);
    if (dd > abs || Number.isNaN(dd)) abs = Number.isNaN(dd) ? Infinity : dd;
    const m = Math.abs(y);
    if (m > scale) scale = m;
  }
  return { name, elements: a.length, maxAbsDiff: abs, maxRelDiff: abs === 0 ? 0 : scale === 0 ? Infinity : abs / scale, bitwise };
}

export function summarize(quantities: QuantityDiff[]): Comparison {
  let maxAbsDiff = 0;
  let maxRelDiff = 0;
  let worst = quantities[0]?.name ?? "";
  let bitwiseCount = 0;
  for (const q of quantities) {
    if (q.maxAbsDiff > maxAbsDiff) maxAbsDiff = q.maxAbsDiff;
    if (q.maxRelDiff > maxRelDiff) {
      maxRelDiff = q.maxRelDiff;
      worst = q.name;
    }
    if (q.bitwise) bitwiseCount++;
  }
  return { quantities, maxAbsDiff, maxRelDiff, worst, bitwise: bitwiseCount === quantities.length, bitwiseCount };
}
