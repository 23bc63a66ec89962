/** Divisor arithmetic for fixes such as "use tp = 4 (a divisor of 128)". */

/** The divisors of n (ascending). n ≤ 2^31 so trial division to √n is fast. */
export function divisors(n: number): number[] {
  const low: number[] = [];
  const high: number[] = [];
  for (let d = 1; d * d <= n; d++) {
    if (n % d !== 0) continue;
    low.push(d);
    if (d * d !== n) high.push(n / d);
  }
  return [...low, ...high.reverse()];
}

/** The divisors of n nearest to x: the largest below and the smallest above (one or two values). */
export function nearestDivisors(n: number, x: number): number[] {
  const ds = divisors(n);
  let below: number | undefined;
  let above: number | undefined;
  for (const d of ds) {
    if (d <= x) below = d;
    else if (above === undefined) above = d;
  }
  return [below, above].filter((d): d is number => d !== undefined);
}

/** "4 or 8" / "4". */
export function orList(xs: readonly number[]): string {
  return xs.join(" or ");
}

/** The greatest common divisor of two positive whole numbers. */
export function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}
