/**
 * Expert placement with redundant experts (EPLB): from per-layer load statistics, choose how many
 * physical replicas each logical expert gets and which GPU slot each replica occupies.
 *
 * The placements are those of DeepSeek's public EPLB reference (the same greedy rules, the same
 * tie-breaks, float32 arithmetic where the reference computes in float32). Two policies:
 *
 * - **hierarchical** (used when the node count divides the group count): (1) pack the expert groups
 *   onto nodes with {@link balancedPacking} by group load, each node receiving groups/nodes groups;
 *   (2) inside each node, give the node's replicas/nodes physical slots to its experts with
 *   {@link replicateExperts}; (3) pack each node's replicas onto its GPUs with {@link balancedPacking},
 *   a replica weighing its expert's load divided by the expert's replica count.
 * - **global** (otherwise): the same three steps with one group and one node, i.e. replicate over all
 *   experts and pack all replicas onto all GPUs.
 *
 * Greedy rules and tie-breaks (what makes the output reproducible bit for bit):
 * - {@link balancedPacking}: items are visited by weight, heaviest first; each goes to the lightest
 *   pack that still has room, the lowest-numbered such pack on a tie. Items of equal weight are
 *   visited lowest index first (a stable descending order). The reference sorts with torch's
 *   `sort(descending=True)`, which does not promise stability. Where torch's CPU sort is the C++
 *   standard library's (libstdc++ `std::sort`), rows of at most 16 items are insertion-sorted, which
 *   is stable, so the two agree exactly; that covers the README example. For longer rows, and for
 *   newer x86 builds that sort with a SIMD quicksort, the order among equal weights depends on the
 *   torch build and the CPU, so no single rule reproduces every build: we fix the stable one. The
 *   order of equal-weight items never changes any pack's load (the greedy sees the same sequence of
 *   weights), only which of the tied items lands where; ties between replicas of one expert do not
 *   even change `phy2log`, only which replica rank sits in which slot.
 * - {@link replicateExperts}: each extra replica goes to the expert with the largest load per
 *   replica, the lowest index on a tie (torch's max returns the first maximum).
 * - Arithmetic: loads are rounded to float32 first (the reference calls `.float()`); group loads are
 *   float32 sums (computed exactly and rounded once: identical to torch whenever the loads are
 *   integers with group sums below 2^24, as token counts are); load per replica and pack loads are
 *   float32 divisions and float32 running sums, as in the reference.
 *
 * Outputs (row-major typed arrays, one row per layer): `phy2log[l][p]` the logical expert in
 * physical slot p (GPU p / (replicas/gpus)); `phyRank[l][p]` which replica of its expert the slot
 * holds (0 = the original); `logcnt[l][e]` the replica count of expert e; `log2phy[l][e][r]` the slot
 * of replica r of expert e, -1 past `logcnt` (width `maxReplicas`, the largest count in any layer).
 *
 * GPU load: an expert's load is split evenly over its replicas; a GPU's load is the sum over its
 * slots. These report figures use the loads as given (float64), not the float32 copies.
 *
 * No-redundancy baseline (the "before" figures, {@link noRedundancyPlacement}): every expert once,
 * placed by the reference itself with replicas = experts (same policy, same balanced packing). When
 * the GPUs do not divide the experts, zero-load dummies pad the experts to the next multiple of the
 * GPU count and the global policy's packing places them.
 *
 * The reference's greedy does NOT promise a max GPU load at most the baseline's: with loads
 * [4, 0, 9, 7], 6 replicas on 2 GPUs it gives 11.5 where every expert once gives 11, and random
 * small cases are worse in 10–30% of layers (by up to ~8%). {@link planRedundantExperts} guards
 * against that layer by layer (the reference placement where it is not worse, a baseline-derived
 * placement where it is); {@link rebalanceExperts} is the unguarded reference.
 */

/** Stable codes of the argument errors; the CLI maps them to diagnostics. */
export type EplbErrorCode =
  | "EPLB_LOAD_JSON"
  | "EPLB_LOAD_SHAPE"
  | "EPLB_LOAD_VALUE"
  | "EPLB_BAD_COUNT"
  | "EPLB_REPLICAS_NOT_MULTIPLE_OF_GPUS"
  | "EPLB_GPUS_NOT_MULTIPLE_OF_NODES"
  | "EPLB_EXPERTS_NOT_MULTIPLE_OF_GROUPS"
  | "EPLB_TOO_FEW_REPLICAS";

export interface EplbError {
  code: EplbErrorCode;
  message: string;
  fix?: string;
}

/** Thrown by the library functions on invalid arguments; `eplbCommand` returns the `detail` instead. */
export class EplbArgumentError extends Error {
  readonly detail: EplbError;
  constructor(detail: EplbError) {
    super(detail.message);
    this.name = "EplbArgumentError";
    this.detail = detail;
  }
}

/** Per-layer, per-expert load: `load[layer * experts + expert]`. */
export interface ExpertLoads {
  layers: number;
  experts: number;
  load: Float64Array;
}

export interface EplbOptions {
  /** Physical expert slots in all (a multiple of `gpus`, at least the expert count). */
  replicas: number;
  /** Expert groups of the gate's group-limited routing (divides the expert count). */
  groups: number;
  nodes: number;
  /** GPUs in all (a multiple of `nodes`). */
  gpus: number;
}

export type EplbPolicy = "hierarchical" | "global";

export interface EplbPlacement {
  layers: number;
  experts: number;
  replicas: number;
  groups: number;
  nodes: number;
  gpus: number;
  policy: EplbPolicy;
  /** Slots per GPU: replicas / gpus. */
  slotsPerGpu: number;
  /** Width of `log2phy`: the largest replica count of any expert in any layer. */
  maxReplicas: number;
  /** layers × replicas: logical expert of each physical slot. */
  phy2log: Int32Array;
  /** layers × replicas: replica rank (0-based) of each physical slot. */
  phyRank: Int32Array;
  /** layers × experts × maxReplicas: slot of each replica, -1 past the expert's count. */
  log2phy: Int32Array;
  /** layers × experts: replica count of each expert. */
  logcnt: Int32Array;
}

// ---------------------------------------------------------------------------------------------
// Validation

function isPositiveInt(n: number): boolean {
  return Number.isInteger(n) && n > 0;
}

function nextMultiple(n: number, of: number): number {
  return Math.ceil(n / of) * of;
}

/** The first argument problem for a placement of `experts` experts, or null when all is well. */
export function checkEplbOptions(experts: number, opts: EplbOptions): EplbError | null {
  for (const key of ["replicas", "groups", "nodes", "gpus"] as const) {
    const v = opts[key];
    if (!isPositiveInt(v)) {
      return { code: "EPLB_BAD_COUNT", message: `--${key} must be a positive integer, got ${String(v)}` };
    }
  }
  const { replicas, groups, nodes, gpus } = opts;
  if (experts % groups !== 0) {
    const divisors: number[] = [];
    for (let d = 1; d <= experts; d++) if (experts % d === 0) divisors.push(d);
    const near = divisors.reduce((a, b) => (Math.abs(b - groups) < Math.abs(a - groups) ? b : a), 1);
    return {
      code: "EPLB_EXPERTS_NOT_MULTIPLE_OF_GROUPS",
      message: `${experts} experts do not split into ${groups} equal groups`,
      fix: `use a group count that divides ${experts}, e.g. --groups ${near}`,
    };
  }
  if (gpus % nodes !== 0) {
    return {
      code: "EPLB_GPUS_NOT_MULTIPLE_OF_NODES",
      message: `${gpus} GPUs do not spread evenly over ${nodes} nodes`,
      fix: `use a multiple of ${nodes} GPUs, e.g. --gpus ${nextMultiple(gpus, nodes)}`,
    };
  }
  if (replicas < experts) {
    return {
      code: "EPLB_TOO_FEW_REPLICAS",
      message: `${replicas} replicas cannot hold ${experts} experts (every expert needs at least one)`,
      fix: `use at least ${experts} replicas, e.g. --replicas ${nextMultiple(experts, gpus)}`,
    };
  }
  if (replicas % gpus !== 0) {
    return {
      code: "EPLB_REPLICAS_NOT_MULTIPLE_OF_GPUS",
      message: `${replicas} replicas do not fill ${gpus} GPUs with equal slots`,
      fix: `use a multiple of ${gpus}, e.g. --replicas ${nextMultiple(replicas, gpus)}`,
    };
  }
  return null;
}

function checkLoads(loads: ExpertLoads): EplbError | null {
  if (!isPositiveInt(loads.layers) || !isPositiveInt(loads.experts) || loads.load.length !== loads.layers * loads.experts) {
    return { code: "EPLB_LOAD_SHAPE", message: "the load table must have at least one layer and one expert" };
  }
  for (let i = 0; i < loads.load.length; i++) {
    const v = loads.load[i]!;
    if (!(v >= 0) || !Number.isFinite(Math.fround(v))) {
      const layer = Math.floor(i / loads.experts);
      return {
        code: "EPLB_LOAD_VALUE",
        message: `layer ${layer}, expert ${i - layer * loads.experts}: load ${String(v)} is not a finite non-negative number (float32)`,
      };
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// The two greedy building blocks

/** Where each item went: `packIndex[i]` its pack, `rankInPack[i]` its position in that pack. */
export interface Packing {
  packIndex: Int32Array;
  rankInPack: Int32Array;
}

/**
 * Packs `weights.length` items into `numPacks` packs of exactly `weights.length / numPacks` items,
 * greedily balancing pack weight (see the module comment for the order and tie-breaks). Weights are
 * taken as float32 values; pack weights accumulate in float32. With one item per pack, item i goes
 * to pack i.
 */
export function balancedPacking(weights: Float64Array, numPacks: number): Packing {
  const n = weights.length;
  const perPack = n / numPacks;
  if (!Number.isInteger(perPack) || perPack < 1) {
    throw new RangeError(`balancedPacking: ${n} items do not split into ${numPacks} equal packs`);
  }
  const packIndex = new Int32Array(n);
  const rankInPack = new Int32Array(n);
  if (perPack === 1) {
    for (let i = 0; i < n; i++) packIndex[i] = i;
    return { packIndex, rankInPack };
  }
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => weights[b]! - weights[a]! || a - b);
  const packWeight = new Float64Array(numPacks);
  const packCount = new Int32Array(numPacks);
  for (let k = 0; k < n; k++) {
    const item = order[k]!;
    let best = -1;
    for (let p = 0; p < numPacks; p++) {
      if (packCount[p]! < perPack && (best < 0 || packWeight[p]! < packWeight[best]!)) best = p;
    }
    packIndex[item] = best;
    rankInPack[item] = packCount[best]!;
    packWeight[best] = Math.fround(packWeight[best]! + weights[item]!);
    packCount[best] = packCount[best]! + 1;
  }
  return { packIndex, rankInPack };
}

export interface Replication {
  /** Logical expert of each physical replica; replica i < experts is expert i itself. */
  phy2log: Int32Array;
  /** Replica rank of each physical replica (0 for the originals). */
  rank: Int32Array;
  /** Replica count of each logical expert. */
  logcnt: Int32Array;
}

/**
 * Gives `numPhysical - weights.length` extra replicas, one at a time, each to the expert with the
 * largest float32 load per replica (lowest index on a tie).
 */
export function replicateExperts(weights: Float64Array, numPhysical: number): Replication {
  const m = weights.length;
  if (numPhysical < m) throw new RangeError(`replicateExperts: ${numPhysical} replicas < ${m} experts`);
  const phy2log = new Int32Array(numPhysical);
  const rank = new Int32Array(numPhysical);
  const logcnt = new Int32Array(m).fill(1);
  const perReplica = new Float64Array(m);
  for (let j = 0; j < m; j++) {
    phy2log[j] = j;
    perReplica[j] = weights[j]!;
  }
  for (let i = m; i < numPhysical; i++) {
    let best = 0;
    for (let j = 1; j < m; j++) if (perReplica[j]! > perReplica[best]!) best = j;
    phy2log[i] = best;
    rank[i] = logcnt[best]!;
    const c = logcnt[best]! + 1;
    logcnt[best] = c;
    perReplica[best] = Math.fround(weights[best]! / c);
  }
  return { phy2log, rank, logcnt };
}

// ---------------------------------------------------------------------------------------------
// The placement

/** Which policy the reference uses for these options. */
export function eplbPolicy(opts: Pick<EplbOptions, "groups" | "nodes">): EplbPolicy {
  return opts.groups % opts.nodes === 0 ? "hierarchical" : "global";
}

/** One layer through the three steps; writes its rows of phy2log and phyRank. */
function placeLayer(
  w: Float64Array, // float32 loads of this layer's experts
  replicas: number,
  groups: number,
  nodes: number,
  gpus: number,
  phy2logOut: Int32Array,
  phyRankOut: Int32Array,
): void {
  const experts = w.length;
  const groupSize = experts / groups;
  const groupsPerNode = groups / nodes;
  const expertsPerNode = experts / nodes;
  const slotsPerNode = replicas / nodes;
  const gpusPerNode = gpus / nodes;
  const slotsPerGpu = replicas / gpus;

  // Step 1: groups onto nodes. Experts are renumbered node-major ("node-local order"): the group
  // at position r of node n takes positions (n * groupsPerNode + r) * groupSize + k.
  const groupLoad = new Float64Array(groups);
  for (let g = 0; g < groups; g++) {
    let s = 0;
    for (let k = 0; k < groupSize; k++) s += w[g * groupSize + k]!;
    groupLoad[g] = Math.fround(s);
  }
  const groupPacking = balancedPacking(groupLoad, nodes);
  const fromLocal = new Int32Array(experts); // node-major position → logical expert
  for (let g = 0; g < groups; g++) {
    const base = (groupPacking.packIndex[g]! * groupsPerNode + groupPacking.rankInPack[g]!) * groupSize;
    for (let k = 0; k < groupSize; k++) {
      fromLocal[base + k] = g * groupSize + k;
    }
  }

  const nodeLoad = new Float64Array(expertsPerNode);
  const slotLoad = new Float64Array(slotsPerNode);
  for (let node = 0; node < nodes; node++) {
    // Step 2: replicas inside the node.
    for (let j = 0; j < expertsPerNode; j++) nodeLoad[j] = w[fromLocal[node * expertsPerNode + j]!]!;
    const rep = replicateExperts(nodeLoad, slotsPerNode);

    // Step 3: the node's replicas onto its GPUs.
    for (let q = 0; q < slotsPerNode; q++) {
      const j = rep.phy2log[q]!;
      slotLoad[q] = Math.fround(nodeLoad[j]! / rep.logcnt[j]!);
    }
    const gpuPacking = balancedPacking(slotLoad, gpusPerNode);
    for (let q = 0; q < slotsPerNode; q++) {
      const slot = node * slotsPerNode + gpuPacking.packIndex[q]! * slotsPerGpu + gpuPacking.rankInPack[q]!;
      phy2logOut[slot] = fromLocal[node * expertsPerNode + rep.phy2log[q]!]!;
      phyRankOut[slot] = rep.rank[q]!;
    }
  }
}

/**
 * The reference placement for every layer. Throws {@link EplbArgumentError} on invalid input.
 */
export function rebalanceExperts(loads: ExpertLoads, opts: EplbOptions): EplbPlacement {
  const err = checkLoads(loads) ?? checkEplbOptions(loads.experts, opts);
  if (err) throw new EplbArgumentError(err);
  const { layers, experts } = loads;
  const { replicas, gpus } = opts;
  const policy = eplbPolicy(opts);
  const groups = policy === "hierarchical" ? opts.groups : 1;
  const nodes = policy === "hierarchical" ? opts.nodes : 1;

  const phy2log = new Int32Array(layers * replicas);
  const phyRank = new Int32Array(layers * replicas);
  const w = new Float64Array(experts);
  for (let l = 0; l < layers; l++) {
    for (let e = 0; e < experts; e++) w[e] = Math.fround(loads.load[l * experts + e]!);
    placeLayer(
      w,
      replicas,
      groups,
      nodes,
      gpus,
      phy2log.subarray(l * replicas, (l + 1) * replicas),
      phyRank.subarray(l * replicas, (l + 1) * replicas),
    );
  }
  // The replica counts follow from phy2log (they equal the counts the replication step kept).
  return finishPlacement({
    layers,
    experts,
    replicas,
    groups: opts.groups,
    nodes: opts.nodes,
    gpus,
    policy,
    slotsPerGpu: replicas / gpus,
    phy2log,
    phyRank,
  });
}

/** Per layer: the largest and the mean GPU load. */
export interface LoadSummary {
  max: Float64Array;
  mean: Float64Array;
}

/**
 * Load of every GPU (layers × gpus): each expert's load split evenly over its replicas, summed over
 * the GPU's slots. An expert whose replicas all sit on one GPU adds exactly its load there. Experts
 * at or past `loads.experts` (zero-load padding) add nothing.
 */
export function gpuLoads(loads: ExpertLoads, placement: EplbPlacement): Float64Array {
  const { layers, replicas, gpus, slotsPerGpu, experts } = placement;
  const out = new Float64Array(layers * gpus);
  const seenOn = new Int32Array(experts).fill(-1);
  const onGpu = new Int32Array(experts);
  const list = new Int32Array(slotsPerGpu);
  for (let l = 0; l < layers; l++) {
    seenOn.fill(-1);
    for (let g = 0; g < gpus; g++) {
      let distinct = 0;
      for (let j = 0; j < slotsPerGpu; j++) {
        const e = placement.phy2log[l * replicas + g * slotsPerGpu + j]!;
        if (seenOn[e] !== g) {
          seenOn[e] = g;
          onGpu[e] = 0;
          list[distinct++] = e;
        }
        onGpu[e] = onGpu[e]! + 1;
      }
      let sum = 0;
      for (let i = 0; i < distinct; i++) {
        const e = list[i]!;
        if (e >= loads.experts) continue;
        const load = loads.load[l * loads.experts + e]!;
        const k = onGpu[e]!;
        const c = placement.logcnt[l * experts + e]!;
        sum += k === c ? load : (load * k) / c;
      }
      out[l * gpus + g] = sum;
    }
  }
  return out;
}

/** Per layer, the largest and the mean GPU load of a placement. */
export function loadSummary(loads: ExpertLoads, placement: EplbPlacement): LoadSummary {
  const per = gpuLoads(loads, placement);
  const { layers, gpus } = placement;
  const max = new Float64Array(layers);
  const mean = new Float64Array(layers);
  for (let l = 0; l < layers; l++) {
    let m = 0;
    let total = 0;
    for (let g = 0; g < gpus; g++) {
      const v = per[l * gpus + g]!;
      if (v > m) m = v;
      total += v;
    }
    max[l] = m;
    mean[l] = total / gpus;
  }
  return { max, mean };
}

/**
 * The no-redundancy baseline: every expert exactly once, with the same number of slots on every GPU.
 * - experts divisible by gpus: the reference itself with replicas = experts (same policy, same
 *   balanced packing; no expert is replicated);
 * - otherwise no such placement exists without padding: the experts plus zero-load dummies (numbered
 *   from `experts` up) fill ceil(experts / gpus) slots per GPU, packed onto the GPUs by the global
 *   policy's balanced packing.
 * Returns the loads it was computed on (padded with zeros in the second case) and the placement.
 */
export function noRedundancyPlacement(loads: ExpertLoads, opts: EplbOptions): { loads: ExpertLoads; placement: EplbPlacement } {
  const err = checkLoads(loads) ?? checkEplbOptions(loads.experts, opts);
  if (err) throw new EplbArgumentError(err);
  const { experts, layers } = loads;
  if (experts % opts.gpus === 0) return { loads, placement: rebalanceExperts(loads, { ...opts, replicas: experts }) };
  const padded = nextMultiple(experts, opts.gpus);
  const load = new Float64Array(layers * padded);
  for (let l = 0; l < layers; l++) load.set(loads.load.subarray(l * experts, (l + 1) * experts), l * padded);
  const paddedLoads: ExpertLoads = { layers, experts: padded, load };
  const placement = rebalanceExperts(paddedLoads, { replicas: padded, groups: 1, nodes: 1, gpus: opts.gpus });
  return { loads: paddedLoads, placement: { ...placement, groups: opts.groups, nodes: opts.nodes } };
}

/** logcnt, maxReplicas and log2phy of a placement given its phy2log and phyRank. */
function finishPlacement(base: Omit<EplbPlacement, "maxReplicas" | "log2phy" | "logcnt">): EplbPlacement {
  const { layers, experts, replicas, phy2log, phyRank } = base;
  const logcnt = new Int32Array(layers * experts);
  for (let l = 0; l < layers; l++) {
    for (let p = 0; p < replicas; p++) {
      const i = l * experts + phy2log[l * replicas + p]!;
      logcnt[i] = logcnt[i]! + 1;
    }
  }
  let maxReplicas = 1;
  for (let i = 0; i < logcnt.length; i++) if (logcnt[i]! > maxReplicas) maxReplicas = logcnt[i]!;
  const log2phy = new Int32Array(layers * experts * maxReplicas).fill(-1);
  for (let l = 0; l < layers; l++) {
    for (let p = 0; p < replicas; p++) {
      const e = phy2log[l * replicas + p]!;
      log2phy[(l * experts + e) * maxReplicas + phyRank[l * replicas + p]!] = p;
    }
  }
  return { ...base, maxReplicas, log2phy, logcnt };
}

/**
 * Writes layer `l` of the fallback placement: the baseline's placement, its free slots (dummies and
 * the extra slots of redundancy) filled so that no GPU's load rises. A GPU holding real experts
 * repeats them, heaviest first, round robin (all replicas of such an expert stay on that GPU, so its
 * load is unchanged). A GPU holding none takes replicas of the heaviest expert (lowest index on a
 * tie): its load becomes a fraction of that expert's load, and the expert's home GPU gets lighter.
 */
function fillFromBaseline(
  l: number,
  loads: ExpertLoads,
  base: EplbPlacement,
  replicas: number,
  gpus: number,
  phy2log: Int32Array,
  phyRank: Int32Array,
): void {
  const experts = loads.experts;
  const slots = replicas / gpus;
  const row = loads.load.subarray(l * experts, (l + 1) * experts);
  let heaviest = 0;
  for (let e = 1; e < experts; e++) if (row[e]! > row[heaviest]!) heaviest = e;
  const count = new Int32Array(experts);
  const mine = new Int32Array(base.slotsPerGpu);
  // GPUs with real experts first, so the heaviest expert's original replica gets rank 0 wherever
  // the GPUs without real experts sit.
  const emptyGpus: number[] = [];
  for (let g = 0; g < gpus; g++) {
    let n = 0;
    for (let j = 0; j < base.slotsPerGpu; j++) {
      const e = base.phy2log[l * base.replicas + g * base.slotsPerGpu + j]!;
      if (e < experts) mine[n++] = e;
    }
    if (n === 0) {
      emptyGpus.push(g);
      continue;
    }
    const own = Array.from(mine.subarray(0, n));
    const byLoad = [...own].sort((a, b) => row[b]! - row[a]! || a - b);
    for (let j = 0; j < slots; j++) {
      const e = j < n ? own[j]! : byLoad[(j - n) % n]!;
      const p = l * replicas + g * slots + j;
      phy2log[p] = e;
      phyRank[p] = count[e]!;
      count[e] = count[e]! + 1;
    }
  }
  for (const g of emptyGpus) {
    for (let j = 0; j < slots; j++) {
      const p = l * replicas + g * slots + j;
      phy2log[p] = heaviest;
      phyRank[p] = count[heaviest]!;
      count[heaviest] = count[heaviest]! + 1;
    }
  }
}

/** The placement serving uses, with how it compares to the no-redundancy baseline. */
export interface PlannedPlacement {
  placement: EplbPlacement;
  /** Layers where the reference placement was worse than the baseline and the fallback is used. */
  fallbackLayers: number[];
  /** Max and mean GPU load of the no-redundancy baseline. */
  before: LoadSummary;
  /** Max and mean GPU load of `placement`. */
  after: LoadSummary;
}

/**
 * The reference placement, guarded: in a layer where its largest GPU load exceeds the no-redundancy
 * baseline's (the reference's greedy does not promise otherwise: e.g. loads [4,0,9,7], 6 replicas on
 * 2 GPUs give 11.5 against 11), that layer uses the baseline filled by {@link fillFromBaseline}
 * instead, whose largest GPU load is at most the baseline's. So every layer's max GPU load is at most
 * the baseline's, and wherever the reference is not worse its placement is returned unchanged.
 * Throws {@link EplbArgumentError} on invalid input.
 */
export function planRedundantExperts(loads: ExpertLoads, opts: EplbOptions): PlannedPlacement {
  const reference = rebalanceExperts(loads, opts);
  const baseline = noRedundancyPlacement(loads, opts);
  const before = loadSummary(baseline.loads, baseline.placement);
  const refSummary = loadSummary(loads, reference);
  const fallbackLayers: number[] = [];
  for (let l = 0; l < loads.layers; l++) if (refSummary.max[l]! > before.max[l]!) fallbackLayers.push(l);
  if (fallbackLayers.length === 0) return { placement: reference, fallbackLayers, before, after: refSummary };
  const phy2log = reference.phy2log.slice();
  const phyRank = reference.phyRank.slice();
  for (const l of fallbackLayers) fillFromBaseline(l, loads, baseline.placement, opts.replicas, opts.gpus, phy2log, phyRank);
  const { maxReplicas: _m, log2phy: _a, logcnt: _c, ...rest } = reference;
  const placement = finishPlacement({ ...rest, phy2log, phyRank });
  return { placement, fallbackLayers, before, after: loadSummary(loads, placement) };
}

// ---------------------------------------------------------------------------------------------
// Command

/** Parses the `--load` file: a JSON array (layers) of equal-length arrays (per-expert load). */
export function parseLoadJson(text: string): ExpertLoads | { error: EplbError } {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return { error: { code: "EPLB_LOAD_JSON", message: `the load file is not valid JSON: ${(e as Error).message}` } };
  }
  const shapeFix = "write a JSON array with one array of per-expert loads per layer, e.g. [[90,132,40],[20,107,104]]";
  if (!Array.isArray(data) || data.length === 0) {
    return {
      error: { code: "EPLB_LOAD_SHAPE", message: "the load file must be a non-empty JSON array of layers", fix: shapeFix },
    };
  }
  const first: unknown = data[0];
  if (!Array.isArray(first) || first.length === 0) {
    return {
      error: { code: "EPLB_LOAD_SHAPE", message: "layer 0 must be a non-empty array of per-expert loads", fix: shapeFix },
    };
  }
  const layers = data.length;
  const experts = first.length;
  const load = new Float64Array(layers * experts);
  for (let l = 0; l < layers; l++) {
    const row: unknown = data[l];
    if (!Array.isArray(row)) {
      return { error: { code: "EPLB_LOAD_SHAPE", message: `layer ${l} is not an array of per-expert loads`, fix: shapeFix } };
    }
    if (row.length !== experts) {
      return {
        error: {
          code: "EPLB_LOAD_SHAPE",
          message: `layer ${l} has ${row.length} experts but layer 0 has ${experts}`,
          fix: "give every layer the same number of experts",
        },
      };
    }
    for (let e = 0; e < experts; e++) {
      const v: unknown = row[e];
      if (typeof v !== "number" || !(v >= 0) || !Number.isFinite(Math.fround(v))) {
        return {
          error: {
            code: "EPLB_LOAD_VALUE",
            message: `layer ${l}, expert ${e}: load ${JSON.stringify(v)} is not a finite non-negative number (float32)`,
            fix: "loads are token counts or other non-negative finite numbers",
          },
        };
      }
      load[l * experts + e] = v;
    }
  }
  return { layers, experts, load };
}

function rowsJson(data: ArrayLike<number>, rows: number, cols: number, indent: string): string {
  const lines: string[] = [];
  for (let r = 0; r < rows; r++) {
    const cells: string[] = [];
    for (let c = 0; c < cols; c++) cells.push(String(data[r * cols + c]));
    lines.push(`${indent}[${cells.join(",")}]`);
  }
  return lines.join(",\n");
}

/** The placement as JSON text: fixed key order, one layer per line, byte-identical for equal input. */
export function placementJson(placement: EplbPlacement, summary: { max: Float64Array; mean: Float64Array }): string {
  const { layers, experts, replicas, maxReplicas } = placement;
  const log2phyLayers: string[] = [];
  for (let l = 0; l < layers; l++) {
    const rows = rowsJson(
      placement.log2phy.subarray(l * experts * maxReplicas, (l + 1) * experts * maxReplicas),
      experts,
      maxReplicas,
      "",
    );
    log2phyLayers.push(`    [${rows.replaceAll(",\n", ",")}]`);
  }
  const vec = (a: Float64Array): string => `[${Array.from(a, (v) => String(v)).join(",")}]`;
  return (
    "{\n" +
    `  "phy2log": [\n${rowsJson(placement.phy2log, layers, replicas, "    ")}\n  ],\n` +
    `  "log2phy": [\n${log2phyLayers.join(",\n")}\n  ],\n` +
    `  "logcnt": [\n${rowsJson(placement.logcnt, layers, experts, "    ")}\n  ],\n` +
    `  "maxLoadPerGpu": ${vec(summary.max)},\n` +
    `  "meanLoadPerGpu": ${vec(summary.mean)}\n` +
    "}\n"
  );
}

function fmt(v: number): string {
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
  const a = Math.abs(v);
  return a >= 1e6 || (a > 0 && a < 1e-3) ? v.toExponential(4) : v.toFixed(3);
}

/** The text summary: per layer, max and mean GPU load without and with redundancy. */
export function placementText(planned: PlannedPlacement, exactReference: boolean): string {
  const { placement, after, before, fallbackLayers } = planned;
  const { layers, experts, replicas, gpus, nodes, groups, policy } = placement;
  const out: string[] = [];
  out.push(
    `eplb: ${layers} layer(s) × ${experts} experts → ${replicas} replicas (${replicas - experts} redundant) ` +
      `on ${gpus} GPUs in ${nodes} node(s), ${groups} group(s); ${policy} policy`,
  );
  out.push("load per GPU: an expert's load split evenly over its replicas; before = every expert once, no redundancy");
  const header = ["layer", "mean", "max before", "max after", "imbalance before", "imbalance after"];
  const rows: string[][] = [header];
  let worstBefore = 0;
  let worstAfter = 0;
  const fallback = new Set(fallbackLayers);
  for (let l = 0; l < layers; l++) {
    const mean = after.mean[l]!;
    const ib = mean > 0 ? before.max[l]! / mean : 1;
    const ia = mean > 0 ? after.max[l]! / mean : 1;
    worstBefore = Math.max(worstBefore, ib);
    worstAfter = Math.max(worstAfter, ia);
    const mark = fallback.has(l) ? (exactReference ? " (worse)" : " (fallback)") : "";
    rows.push([String(l), fmt(mean), fmt(before.max[l]!), fmt(after.max[l]!), ib.toFixed(3), ia.toFixed(3) + mark]);
  }
  const widths = header.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows)
    out.push(
      r
        .map((cell, c) => (c === r.length - 1 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)))
        .join("  ")
        .trimEnd(),
    );
  out.push(`worst imbalance (max / mean): ${worstBefore.toFixed(3)} before, ${worstAfter.toFixed(3)} after`);
  if (fallbackLayers.length > 0) {
    out.push(
      exactReference
        ? `${fallbackLayers.length} layer(s) marked (worse): the reference placement's max GPU load exceeds the no-redundancy baseline's`
        : `${fallbackLayers.length} layer(s) marked (fallback): the reference placement was worse than no redundancy there, so the baseline's placement is kept and its spare slots repeat experts on their own GPU`,
    );
  }
  return out.join("\n") + "\n";
}

export interface EplbCommandArgs {
  loadJsonText: string;
  replicas: number;
  groups: number;
  nodes: number;
  gpus: number;
  json: boolean;
  /**
   * Output the reference placement in every layer, even where it is worse than no redundancy
   * (default false: such layers fall back, see {@link planRedundantExperts}).
   */
  exactReference?: boolean;
}

/** `dsv3 eplb`: the placement as JSON, or a text summary; a typed error for invalid input. */
export function eplbCommand(args: EplbCommandArgs): { stdout: string } | { error: EplbError } {
  const parsed = parseLoadJson(args.loadJsonText);
  if ("error" in parsed) return parsed;
  const opts: EplbOptions = { replicas: args.replicas, groups: args.groups, nodes: args.nodes, gpus: args.gpus };
  const err = checkEplbOptions(parsed.experts, opts);
  if (err) return { error: err };
  const exact = args.exactReference === true;
  let planned = planRedundantExperts(parsed, opts);
  if (exact && planned.fallbackLayers.length > 0) {
    const reference = rebalanceExperts(parsed, opts);
    planned = { ...planned, placement: reference, after: loadSummary(parsed, reference) };
  }
  if (args.json) return { stdout: placementJson(planned.placement, planned.after) };
  return { stdout: placementText(planned, exact) };
}
