/** "Did you mean …": the closest known name by edit distance, when it is close enough to help. */

/** Edits (insert, delete, substitute, swap two neighbours: `chekc` → `check` is one) from a to b. */
function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let before = new Uint16Array(b.length + 1); // row i - 2, for swaps
  let prev = new Uint16Array(b.length + 1);
  let cur = new Uint16Array(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    let rowMin = cur[0];
    for (let j = 1; j <= b.length; j++) {
      const cost = a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1;
      let v = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a.charCodeAt(i - 1) === b.charCodeAt(j - 2) && a.charCodeAt(i - 2) === b.charCodeAt(j - 1)) {
        v = Math.min(v, before[j - 2]! + 1);
      }
      cur[j] = v;
      if (v < rowMin) rowMin = v;
    }
    if (rowMin > limit) return limit + 1;
    [before, prev, cur] = [prev, cur, before];
  }
  return prev[b.length]!;
}

/** The candidate nearest to `name` (case-insensitive; ties keep catalog order), or null if none is close. */
export function closestName(name: string, candidates: Iterable<string>): string | null {
  const lower = name.toLowerCase();
  const limit = Math.max(1, Math.min(3, Math.floor(name.length / 3)));
  let best: string | null = null;
  let bestDistance = limit + 1;
  for (const c of candidates) {
    const cl = c.toLowerCase();
    const d = cl === lower ? 0 : editDistance(lower, cl, limit);
    const substring = lower.length >= 3 && (cl.includes(lower) || lower.includes(cl)) ? limit : limit + 1;
    const score = Math.min(d, substring);
    if (score < bestDistance) {
      best = c;
      bestDistance = score;
    }
  }
  return best;
}

/** `did you mean 'x'?` or the list of valid names when nothing is close (at most `max` shown). */
export function suggestionFix(name: string, candidates: readonly string[], max = 12): string | undefined {
  const best = closestName(name, candidates);
  if (best !== null) return `did you mean '${best}'?`;
  if (candidates.length === 0) return undefined;
  const shown = candidates.slice(0, max).join(", ");
  return `valid names: ${shown}${candidates.length > max ? ", …" : ""}`;
}
