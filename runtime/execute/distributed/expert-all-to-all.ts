/**
 * The MoE all-to-all of one expert-parallel group, in memory, along the node-limited route of
 * compiler/plan/node-limited-routing.ts:
 * - dispatch: a token goes once to each distinct GPU holding one of its picks; a remote node is
 *   reached by one InfiniBand copy to the relay (the GPU of that node with the sender's in-node
 *   index), which forwards it over NVLink to that node's other targets; targets on the sender's own
 *   node get NVLink copies from the sender; a copy for the sender itself moves nowhere;
 * - combine: the reverse: each target sends its picks' weighted sum for the token to the relay
 *   (NVLink), the relay adds its node's partial sums and sends one copy back over IB; on the
 *   sender's node each target sends its partial sum straight back. The sender adds the partial sums
 *   node by node in ascending node order (within a node in ascending GPU order).
 * A dispatched copy is FP8 (`dispatchBytes` = hidden + FP32 scales), a combined copy BF16
 * (`combineBytes`); the backward moves the output gradient along the dispatch route (FP8, as the
 * recipe quantises it) and the input gradient along the combine route (BF16). The gradients of the
 * routing weights go back with the combine as routing metadata, which the planner does not count
 * either.
 *
 * Every exchange is logged (its route as physical slots per pick), so the planner's own byte rule
 * (`dispatchTraffic`) can be applied to the routes actually taken (traffic-check.ts).
 */
import type { VirtualCluster, Wait } from "./collectives.js";

/** One EP group's shape: members (global GPU ids, EP-rank order) and the expert slots each holds. */
export interface ExpertGroup {
  id: string;
  members: readonly number[];
  slotsPerGpu: number;
}

/** What the source posts: its rows and, per row, the K physical slots picked and their weights. */
interface DispatchPost {
  x: Float32Array;
  rows: number;
  slots: Int32Array;
  weights: Float32Array;
}

/** The copies one GPU receives: one per (source, token), with that copy's picks on this GPU. */
export interface ReceivedTokens {
  copies: number;
  /** Source member index and its row, per copy. */
  src: Int32Array;
  row: Int32Array;
  /** copies × hidden. */
  x: Float32Array;
  /** Picks of copy c are pickStart[c] .. pickStart[c+1]: the pick index k, the local slot, the weight. */
  pickStart: Int32Array;
  pickK: Int32Array;
  pickSlot: Int32Array;
  pickWeight: Float32Array;
}

/** How one source's rows travel: per member, per row, the copy index at that member (−1: none). */
export interface ExpertRoute {
  group: ExpertGroup;
  topK: number;
  /** Per member (index), its rows. */
  rows: number[];
  /** copyAt[target][srcMember] → Int32Array(rows of src) of copy index at target or −1. */
  copyAt: Int32Array[][];
  /** Physical slot of every pick, members concatenated in member order (rows × topK each). */
  slots: Int32Array;
}

/** One logged exchange, for the traffic check. */
export interface ExchangeLog {
  group: ExpertGroup;
  /** Slot of each pick, members in order, tokensPerMember rows each. */
  slots: Int32Array;
  topK: number;
  tokensPerMember: number;
  /** Which direction: forward dispatch+combine, or backward (gradient dispatch + combine). */
  pass: "forward" | "backward";
}

export class ExpertExchange {
  readonly log: ExchangeLog[] = [];
  /** Per node, the stamp of the last token that reached it (no per-token sets). */
  private readonly nodeSeen: Int32Array;
  private stamp = 0;
  constructor(
    readonly cluster: VirtualCluster,
    readonly hidden: number,
    readonly dispatchBytes: number,
    readonly combineBytes: number,
  ) {
    this.nodeSeen = new Int32Array(Math.ceil(cluster.gpus / cluster.gpusPerNode));
  }

  /** True the first time `node` is seen for the current stamp. */
  private firstVisit(node: number): boolean {
    if (this.nodeSeen[node] === this.stamp) return false;
    this.nodeSeen[node] = this.stamp;
    return true;
  }

  private relay(srcGpu: number, targetGpu: number): number {
    const gpn = this.cluster.gpusPerNode;
    return this.cluster.node(targetGpu) * gpn + (srcGpu % gpn);
  }

  /** Counts one token copy set (dispatch direction) from src to targets. */
  private countDispatch(srcGpu: number, targets: readonly number[], kind: "dispatch", bytes: number): void {
    const c = this.cluster;
    const srcNode = c.node(srcGpu);
    this.stamp++;
    for (const g of targets) {
      const node = c.node(g);
      if (node !== srcNode && this.firstVisit(node)) c.count(srcGpu, this.relay(srcGpu, g), kind, bytes);
    }
    for (const g of targets) {
      const from = c.node(g) === srcNode ? srcGpu : this.relay(srcGpu, g);
      if (from !== g) c.count(from, g, kind, bytes);
    }
  }

  /** Counts the reverse (combine direction) of the same copies. */
  private countCombine(srcGpu: number, targets: readonly number[], bytes: number): void {
    const c = this.cluster;
    const srcNode = c.node(srcGpu);
    this.stamp++;
    for (const g of targets) {
      const node = c.node(g);
      const to = node === srcNode ? srcGpu : this.relay(srcGpu, g);
      if (to !== g) c.count(g, to, "combine", bytes);
      if (node !== srcNode && this.firstVisit(node)) c.count(this.relay(srcGpu, g), srcGpu, "combine", bytes);
    }
  }

  /**
   * Forward dispatch: posts this member's rows and picks; returns the copies this GPU receives and
   * the route (shared by every member) for the combine and the backward.
   */
  *dispatch(
    group: ExpertGroup,
    gpu: number,
    x: Float32Array,
    rows: number,
    slots: Int32Array,
    weights: Float32Array,
    topK: number,
    tag: string,
  ): Generator<Wait, { received: ReceivedTokens; route: ExpertRoute }, void> {
    const d = this.hidden;
    return yield* this.cluster.exchange<DispatchPost, { received: ReceivedTokens; route: ExpertRoute }>(
      `ep:${group.id}:${tag}`,
      group.members,
      gpu,
      { x, rows, slots, weights },
      (posted) => {
        const members = group.members;
        const n = members.length;
        const posts = members.map((m) => posted.get(m)!);
        const copyAt: Int32Array[][] = members.map(() => posts.map((p) => new Int32Array(p.rows).fill(-1)));
        const copies = new Int32Array(n);
        const picks = new Int32Array(n);
        // Pass 1: count copies and picks per target; count the bytes.
        for (let s = 0; s < n; s++) {
          const p = posts[s]!;
          for (let t = 0; t < p.rows; t++) {
            const targets: number[] = [];
            for (let k = 0; k < topK; k++) {
              const m = Math.floor(p.slots[t * topK + k]! / group.slotsPerGpu);
              if (m < 0 || m >= n) throw new Error(`expert all-to-all: slot ${p.slots[t * topK + k]} outside the group`);
              picks[m]!++;
              if (copyAt[m]![s]![t] === -1) {
                copyAt[m]![s]![t] = copies[m]!++;
                targets.push(members[m]!);
              }
            }
            this.countDispatch(members[s]!, targets, "dispatch", this.dispatchBytes);
          }
        }
        const received: ReceivedTokens[] = members.map((_, m) => ({
          copies: copies[m]!,
          src: new Int32Array(copies[m]!),
          row: new Int32Array(copies[m]!),
          x: new Float32Array(copies[m]! * d),
          pickStart: new Int32Array(copies[m]! + 1),
          pickK: new Int32Array(picks[m]!),
          pickSlot: new Int32Array(picks[m]!),
          pickWeight: new Float32Array(picks[m]!),
        }));
        // Pass 2: fill the copies (copy index order = source member, then row) and their picks.
        const pickFill = new Int32Array(n);
        for (let s = 0; s < n; s++) {
          const p = posts[s]!;
          for (let t = 0; t < p.rows; t++) {
            for (let m = 0; m < n; m++) {
              const c = copyAt[m]![s]![t]!;
              if (c === -1) continue;
              const r = received[m]!;
              r.src[c] = s;
              r.row[c] = t;
              r.x.set(p.x.subarray(t * d, (t + 1) * d), c * d);
              r.pickStart[c] = pickFill[m]!;
              for (let k = 0; k < topK; k++) {
                const slot = p.slots[t * topK + k]!;
                if (Math.floor(slot / group.slotsPerGpu) !== m) continue;
                const at = pickFill[m]!++;
                r.pickK[at] = k;
                r.pickSlot[at] = slot - m * group.slotsPerGpu;
                r.pickWeight[at] = p.weights[t * topK + k]!;
              }
            }
          }
        }
        received.forEach((r, m) => (r.pickStart[r.copies] = pickFill[m]!));
        const all = new Int32Array(posts.reduce((a, p) => a + p.rows * topK, 0));
        let at = 0;
        for (const p of posts) {
          all.set(p.slots, at);
          at += p.slots.length;
        }
        const route: ExpertRoute = { group, topK, rows: posts.map((p) => p.rows), copyAt, slots: all };
        const rows0 = posts[0]!.rows;
        if (posts.every((p) => p.rows === rows0) && rows0 > 0) this.log.push({ group, slots: all, topK, tokensPerMember: rows0, pass: "forward" });
        return new Map(members.map((m, i) => [m, { received: received[i]!, route }]));
      },
      `the ${tag} dispatch`,
    );
  }

  /** Targets (global GPUs) of row t of source member s, in member order. */
  private targetsOf(route: ExpertRoute, s: number, t: number): number[] {
    const out: number[] = [];
    route.group.members.forEach((g, m) => {
      if (route.copyAt[m]![s]![t]! !== -1) out.push(g);
    });
    return out;
  }

  /**
   * Combine: every member posts one partial row per copy it received (copies × hidden, in the
   * double) and optionally one value per pick it received (the routing-weight gradients); each
   * source gets its rows summed node by node, and its picks' values as rows × topK.
   */
  *combine(
    route: ExpertRoute,
    gpu: number,
    partial: Float64Array,
    received: ReceivedTokens,
    pickValues: Float32Array | null,
    tag: string,
  ): Generator<Wait, { y: Float32Array; pickValues: Float32Array | null }, void> {
    const d = this.hidden;
    const group = route.group;
    type Post = { partial: Float64Array; received: ReceivedTokens; pickValues: Float32Array | null };
    return yield* this.cluster.exchange<Post, { y: Float32Array; pickValues: Float32Array | null }>(
      `ep:${group.id}:${tag}`,
      group.members,
      gpu,
      { partial, received, pickValues },
      (posted) => {
        const members = group.members;
        const out = new Map<number, { y: Float32Array; pickValues: Float32Array | null }>();
        const K = route.topK;
        const values = members.map((srcGpu, s) => (posted.get(srcGpu)!.pickValues === null ? null : new Float32Array(route.rows[s]! * K)));
        members.forEach((g, m) => {
          const p = posted.get(g)!;
          if (p.pickValues === null) return;
          const r = p.received;
          for (let c = 0; c < r.copies; c++) {
            const v = values[r.src[c]!];
            if (!v) continue;
            for (let i = r.pickStart[c]!; i < r.pickStart[c + 1]!; i++) v[r.row[c]! * K + r.pickK[i]!] = p.pickValues[i]!;
          }
        });
        members.forEach((srcGpu, s) => {
          const rows = route.rows[s]!;
          const y = new Float32Array(rows * d);
          const acc = new Float64Array(d);
          const nodeAcc = new Float64Array(d);
          for (let t = 0; t < rows; t++) {
            acc.fill(0);
            const targets = this.targetsOf(route, s, t);
            let i = 0;
            while (i < targets.length) {
              const node = this.cluster.node(targets[i]!);
              nodeAcc.fill(0);
              for (; i < targets.length && this.cluster.node(targets[i]!) === node; i++) {
                const m = members.indexOf(targets[i]!);
                const c = route.copyAt[m]![s]![t]!;
                const pp = posted.get(targets[i]!)!.partial;
                for (let j = 0; j < d; j++) nodeAcc[j] = nodeAcc[j]! + pp[c * d + j]!;
              }
              for (let j = 0; j < d; j++) acc[j] = acc[j]! + nodeAcc[j]!;
            }
            for (let j = 0; j < d; j++) y[t * d + j] = acc[j]!;
            this.countCombine(srcGpu, targets, this.combineBytes);
          }
          out.set(srcGpu, { y, pickValues: values[s]! });
        });
        return out;
      },
      `the ${tag} combine`,
    );
  }

  /** Backward dispatch: the output gradient rows go along the forward's dispatch route. */
  *dispatchAgain(route: ExpertRoute, gpu: number, dy: Float32Array, tag: string): Generator<Wait, Float32Array, void> {
    const d = this.hidden;
    const group = route.group;
    return yield* this.cluster.exchange<Float32Array, Float32Array>(
      `ep:${group.id}:${tag}`,
      group.members,
      gpu,
      dy,
      (posted) => {
        const members = group.members;
        const out = new Map<number, Float32Array>();
        members.forEach((g, m) => {
          const copies = route.copyAt[m]!.reduce((a, rowsOf) => a + rowsOf.reduce((b, c) => b + (c >= 0 ? 1 : 0), 0), 0);
          const buf = new Float32Array(copies * d);
          members.forEach((srcGpu, s) => {
            const src = posted.get(srcGpu)!;
            const at = route.copyAt[m]![s]!;
            for (let t = 0; t < at.length; t++) if (at[t]! >= 0) buf.set(src.subarray(t * d, (t + 1) * d), at[t]! * d);
          });
          out.set(g, buf);
        });
        members.forEach((srcGpu, s) => {
          for (let t = 0; t < route.rows[s]!; t++) this.countDispatch(srcGpu, this.targetsOf(route, s, t), "dispatch", this.dispatchBytes);
        });
        const rows0 = route.rows[0]!;
        if (route.rows.every((r) => r === rows0) && rows0 > 0) this.log.push({ group, slots: route.slots, topK: route.topK, tokensPerMember: rows0, pass: "backward" });
        return out;
      },
      `the ${tag} gradient dispatch`,
    );
  }
}
