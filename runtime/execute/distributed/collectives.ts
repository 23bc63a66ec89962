/**
 * The virtual cluster: N ranks in one process, each a generator that runs its program and yields
 * whenever it waits on another rank, and the in-memory exchanges between them — point-to-point
 * send/recv and group rendezvous (all-gather, reduce-scatter, all-reduce, all-to-all) — with the
 * bytes each GPU sends counted per kind of traffic and per link.
 *
 * Links. Two GPUs on one node (gpu / gpusPerNode equal) talk over NVLink, others over InfiniBand;
 * a GPU never "sends" to itself (local, not counted). Ring collectives are counted the way the
 * planner counts them (compiler/plan/traffic.ts): over n members each GPU sends (n − 1)/n of the
 * full tensor's wire bytes (reduce-scatter or all-gather; twice that for an all-reduce), on the link
 * to its ring successor (the next member in GPU order).
 *
 * Scheduling. {@link runRanks} resumes the ranks round-robin in GPU order; a rank runs until it
 * yields a {@link Wait} that is not ready. A pass in which no rank can move while some are unfinished
 * is a deadlock: {@link DeadlockError} names every blocked rank, the op it was running and what it
 * waited for. Everything is deterministic: the order of execution, of sums (contributions are
 * combined in member order) and of counters does not depend on timing.
 */

export type LinkType = "nvlink" | "ib";

/** The kinds of traffic, as the planner names them (plus the ones its model leaves out). */
export type TrafficKind =
  | "p2p"
  | "dispatch"
  | "combine"
  | "tp"
  | "dp_reduce_scatter"
  | "dp_all_gather"
  | "dp_all_reduce"
  /** Vocabulary-parallel embedding and head (partial embeddings, gathered hidden states and logits). */
  | "tp_vocab"
  /** Gradients of TP-replicated weights (norms, latent projections, router) summed over the TP group. */
  | "tp_replicated_grads"
  /** Gate scores gathered over the TP group for the sequence-wise balance loss. */
  | "tp_aux_scores";

export const TRAFFIC_KINDS: readonly TrafficKind[] = [
  "p2p",
  "dispatch",
  "combine",
  "tp",
  "dp_reduce_scatter",
  "dp_all_gather",
  "dp_all_reduce",
  "tp_vocab",
  "tp_replicated_grads",
  "tp_aux_scores",
];

/** Bytes sent by every GPU, per kind and link (fractional ring shares are kept until reported). */
export class TrafficCounters {
  private readonly bytes = new Map<string, Float64Array>();
  constructor(readonly gpus: number) {}

  add(gpu: number, kind: TrafficKind, link: LinkType, bytes: number): void {
    if (bytes === 0) return;
    const key = `${kind}/${link}`;
    let row = this.bytes.get(key);
    if (row === undefined) {
      row = new Float64Array(this.gpus);
      this.bytes.set(key, row);
    }
    row[gpu] = row[gpu]! + bytes;
  }

  /** Bytes GPU `gpu` sent for `kind` over `link` (or both links). */
  get(gpu: number, kind: TrafficKind, link?: LinkType): number {
    if (link === undefined) return this.get(gpu, kind, "nvlink") + this.get(gpu, kind, "ib");
    return this.bytes.get(`${kind}/${link}`)?.[gpu] ?? 0;
  }

  /** Sum over GPUs. */
  total(kind: TrafficKind, link?: LinkType): number {
    let s = 0;
    for (let g = 0; g < this.gpus; g++) s += this.get(g, kind, link);
    return s;
  }

  reset(): void {
    this.bytes.clear();
  }
}

/** What a rank waits for; `ready` is polled by the scheduler. */
export interface Wait {
  ready(): boolean;
  /** In words, for a deadlock report ("activation of micro-batch 2 from GPU 1"). */
  what: string;
}

export type RankTask = Generator<Wait, void, void>;

/** A blocked rank in a deadlock. */
export interface BlockedRank {
  gpu: number;
  /** The op the rank was running ("F mb 2 dir 0 stage 1 (op 7 of 24)"). */
  op: string;
  waitingFor: string;
}

export class DeadlockError extends Error {
  constructor(
    readonly blocked: BlockedRank[],
    readonly finished: number[],
  ) {
    super(`deadlock: ${blocked.map((b) => `GPU ${b.gpu} in ${b.op} waits for ${b.waitingFor}`).join("; ")}`);
    this.name = "DeadlockError";
  }
}

/** Runs every rank to completion or throws {@link DeadlockError}. `opOf(gpu)` says what a rank is doing. */
export function runRanks(tasks: readonly RankTask[], opOf: (gpu: number) => string): void {
  const waits: (Wait | null)[] = tasks.map(() => null);
  const done: boolean[] = tasks.map(() => false);
  let left = tasks.length;
  while (left > 0) {
    let progressed = false;
    for (let g = 0; g < tasks.length; g++) {
      if (done[g]) continue;
      const w = waits[g];
      if (w !== null && w !== undefined && !w.ready()) continue;
      progressed = true;
      for (;;) {
        const r = tasks[g]!.next();
        if (r.done) {
          done[g] = true;
          waits[g] = null;
          left--;
          break;
        }
        waits[g] = r.value;
        if (!r.value.ready()) break;
      }
    }
    if (!progressed) {
      const blocked: BlockedRank[] = [];
      const finished: number[] = [];
      for (let g = 0; g < tasks.length; g++) {
        if (done[g]) finished.push(g);
        else blocked.push({ gpu: g, op: opOf(g), waitingFor: waits[g]?.what ?? "nothing" });
      }
      throw new DeadlockError(blocked, finished);
    }
  }
}

/** A group exchange every member posts to once; the result exists when all have posted. */
interface Rendezvous {
  members: readonly number[];
  posted: Map<number, unknown>;
  result: Map<number, unknown> | null;
  taken: number;
}

/**
 * The exchanges of one run. Payloads are plain typed arrays passed by reference (receivers copy or
 * only read them); the byte counts are the wire bytes the caller states.
 */
export class VirtualCluster {
  readonly traffic: TrafficCounters;
  private readonly mail = new Map<string, unknown>();
  private readonly rendezvous = new Map<string, Rendezvous>();
  /** Per rank and group key, how many collectives it has joined (matching by issue order). */
  private readonly joined = new Map<string, number>();

  constructor(
    readonly gpus: number,
    readonly gpusPerNode: number,
  ) {
    this.traffic = new TrafficCounters(gpus);
  }

  node(gpu: number): number {
    return Math.floor(gpu / this.gpusPerNode);
  }

  link(a: number, b: number): LinkType {
    return this.node(a) === this.node(b) ? "nvlink" : "ib";
  }

  /** Counts `bytes` sent from `from` to `to` (nothing when they are the same GPU). */
  count(from: number, to: number, kind: TrafficKind, bytes: number): void {
    if (from === to) return;
    this.traffic.add(from, kind, this.link(from, to), bytes);
  }

  // ── point to point ──────────────────────────────────────────────────────────────────────────

  send(from: number, to: number, tag: string, payload: unknown, kind: TrafficKind, bytes: number): void {
    const key = `${from}>${to}:${tag}`;
    if (this.mail.has(key)) throw new Error(`virtual cluster: GPU ${from} sent '${tag}' to GPU ${to} twice`);
    this.mail.set(key, payload);
    this.count(from, to, kind, bytes);
  }

  /** Waits for the message `tag` from `from`; yields until it arrives. */
  *recv<T>(from: number, to: number, tag: string, what: string): Generator<Wait, T, void> {
    const key = `${from}>${to}:${tag}`;
    yield { ready: () => this.mail.has(key), what: `${what} from GPU ${from}` };
    const v = this.mail.get(key) as T;
    this.mail.delete(key);
    return v;
  }

  /** Messages sent and never received (a program that sends more than its peers take). */
  undelivered(): string[] {
    return [...this.mail.keys()].sort();
  }

  // ── group rendezvous ────────────────────────────────────────────────────────────────────────

  /**
   * Joins the next collective of `group` (members in GPU order, `gpu` among them) with `payload`;
   * once every member has joined, `combine` (run once) maps the posted payloads to each member's
   * result. Returns this member's result.
   */
  *exchange<P, R>(
    group: string,
    members: readonly number[],
    gpu: number,
    payload: P,
    combine: (posted: ReadonlyMap<number, P>) => Map<number, R>,
    what: string,
  ): Generator<Wait, R, void> {
    if (members.length === 1) return combine(new Map([[gpu, payload]])).get(gpu)!;
    const seqKey = `${gpu}|${group}`;
    const n = this.joined.get(seqKey) ?? 0;
    this.joined.set(seqKey, n + 1);
    const key = `${group}#${n}`;
    let rv = this.rendezvous.get(key);
    if (rv === undefined) {
      rv = { members, posted: new Map(), result: null, taken: 0 };
      this.rendezvous.set(key, rv);
    }
    rv.posted.set(gpu, payload);
    const r = rv;
    yield {
      ready: () => r.posted.size === r.members.length,
      what: `${what} (${group}: ${r.members.filter((m) => !r.posted.has(m)).map((m) => `GPU ${m}`).join(", ") || "everyone"} not there yet)`,
    };
    if (r.result === null) r.result = combine(r.posted as Map<number, P>) as Map<number, unknown>;
    const out = r.result.get(gpu) as R;
    if (++r.taken === r.members.length) this.rendezvous.delete(key);
    return out;
  }

  /** Ring bytes of one reduce-scatter or all-gather of a tensor of `wireBytes`, on every member. */
  countRing(members: readonly number[], kind: TrafficKind, wireBytes: number, factor = 1): void {
    const n = members.length;
    if (n <= 1) return;
    for (let i = 0; i < n; i++) this.count(members[i]!, members[(i + 1) % n]!, kind, (factor * (n - 1) * wireBytes) / n);
  }

  /**
   * All-gather of row blocks: member i contributes rows (any count), everyone gets the concatenation
   * in member order. `bytesPerElement` is the wire format; counted as a ring over the full result.
   */
  *allGather(
    group: string,
    members: readonly number[],
    gpu: number,
    part: Float32Array,
    kind: TrafficKind,
    bytesPerElement: number,
    what: string,
  ): Generator<Wait, Float32Array, void> {
    return yield* this.exchange(group, members, gpu, part, (posted) => {
      let n = 0;
      for (const m of members) n += posted.get(m)!.length;
      const full = new Float32Array(n);
      let at = 0;
      for (const m of members) {
        const p = posted.get(m)!;
        full.set(p, at);
        at += p.length;
      }
      this.countRing(members, kind, n * bytesPerElement);
      return new Map(members.map((m) => [m, full]));
    }, what);
  }

  /**
   * Reduce-scatter: every member contributes a full tensor; member i gets the sum (in member order,
   * in the double) of its block [offsets[i], offsets[i+1]).
   */
  *reduceScatter(
    group: string,
    members: readonly number[],
    gpu: number,
    full: Float32Array,
    offsets: readonly number[],
    kind: TrafficKind,
    bytesPerElement: number,
    what: string,
  ): Generator<Wait, Float32Array, void> {
    return yield* this.exchange(group, members, gpu, full, (posted) => {
      const out = new Map<number, Float32Array>();
      members.forEach((m, i) => {
        const from = offsets[i]!;
        const to = offsets[i + 1]!;
        out.set(m, sumSlices(members.map((x) => posted.get(x)!), from, to));
      });
      this.countRing(members, kind, full.length * bytesPerElement);
      return out;
    }, what);
  }

  /** All-reduce (sum in member order); counted as reduce-scatter + all-gather. */
  *allReduce(
    group: string,
    members: readonly number[],
    gpu: number,
    full: Float32Array,
    kind: TrafficKind,
    bytesPerElement: number,
    what: string,
  ): Generator<Wait, Float32Array, void> {
    return yield* this.exchange(group, members, gpu, full, (posted) => {
      const sum = sumSlices(members.map((x) => posted.get(x)!), 0, full.length);
      this.countRing(members, kind, full.length * bytesPerElement, 2);
      return new Map(members.map((m) => [m, sum]));
    }, what);
  }
}

/** Σ over parts of part[from..to), summed in the double in part order, stored as FP32. */
export function sumSlices(parts: readonly Float32Array[], from: number, to: number): Float32Array {
  const out = new Float32Array(to - from);
  if (parts.length === 1) {
    out.set(parts[0]!.subarray(from, to));
    return out;
  }
  const acc = new Float64Array(to - from);
  for (const p of parts) for (let i = from; i < to; i++) acc[i - from] = acc[i - from]! + p[i]!;
  out.set(acc);
  return out;
}

/** Even split of `n` items over `parts` blocks (the first blocks one larger): block offsets. */
export function blockOffsets(n: number, parts: number): number[] {
  const out = [0];
  const base = Math.floor(n / parts);
  const extra = n % parts;
  for (let i = 0; i < parts; i++) out.push(out[i]! + base + (i < extra ? 1 : 0));
  return out;
}
