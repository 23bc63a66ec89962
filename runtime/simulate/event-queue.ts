/**
 * The discrete-event engine's queue: events ordered by time, then by the order they were posted
 * (a binary heap over parallel typed arrays, so the order is deterministic and nothing is allocated
 * per event beyond the arrays' growth).
 */

export class EventQueue {
  private times = new Float64Array(64);
  private seqs = new Float64Array(64);
  private payloads = new Int32Array(64);
  private size = 0;
  private posted = 0;

  get length(): number {
    return this.size;
  }

  /** Posts event `payload` (a small integer the caller interprets) at `time`. */
  push(time: number, payload: number): void {
    if (this.size === this.times.length) this.grow();
    let i = this.size++;
    const seq = this.posted++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(time, seq, this.times[parent]!, this.seqs[parent]!)) break;
      this.times[i] = this.times[parent]!;
      this.seqs[i] = this.seqs[parent]!;
      this.payloads[i] = this.payloads[parent]!;
      i = parent;
    }
    this.times[i] = time;
    this.seqs[i] = seq;
    this.payloads[i] = payload;
  }

  /** The earliest event's time (Infinity when empty). */
  peekTime(): number {
    return this.size === 0 ? Number.POSITIVE_INFINITY : this.times[0]!;
  }

  /** Removes the earliest event and returns its payload (−1 when empty). */
  pop(): number {
    if (this.size === 0) return -1;
    const top = this.payloads[0]!;
    const last = --this.size;
    const t = this.times[last]!;
    const s = this.seqs[last]!;
    const p = this.payloads[last]!;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= last) break;
      const r = l + 1;
      const c = r < last && this.before(this.times[r]!, this.seqs[r]!, this.times[l]!, this.seqs[l]!) ? r : l;
      if (!this.before(this.times[c]!, this.seqs[c]!, t, s)) break;
      this.times[i] = this.times[c]!;
      this.seqs[i] = this.seqs[c]!;
      this.payloads[i] = this.payloads[c]!;
      i = c;
    }
    this.times[i] = t;
    this.seqs[i] = s;
    this.payloads[i] = p;
    return top;
  }

  private before(t1: number, s1: number, t2: number, s2: number): boolean {
    return t1 < t2 || (t1 === t2 && s1 < s2);
  }

  private grow(): void {
    const n = this.times.length * 2;
    const times = new Float64Array(n);
    const seqs = new Float64Array(n);
    const payloads = new Int32Array(n);
    times.set(this.times);
    seqs.set(this.seqs);
    payloads.set(this.payloads);
    this.times = times;
    this.seqs = seqs;
    this.payloads = payloads;
  }
}
