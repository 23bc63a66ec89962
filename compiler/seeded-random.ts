/**
 * The one seeded random generator of the project (mulberry32): uniform [0, 1) doubles from a 32-bit
 * seed, the same sequence on every machine. Synthetic expert loads, reference weights, benchmarks
 * and tests draw from it, so a seed means the same numbers everywhere.
 */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
