/**
 * Node-limited routing: where the routed experts live, which experts a token is routed to, and what
 * moving the tokens costs on the two networks.
 *
 * Placement ({@link placeExpertGroups}). Experts are laid out in contiguous blocks: expert e lives on
 * EP rank floor(e / (experts / ranks)), and rank r on node floor(r / gpusPerNode). The gate's groups
 * are contiguous blocks of experts too (group g = experts [g·s, (g+1)·s)), so when the group size is
 * a multiple of the experts per rank dividing the experts per node, every group lies on one node
 * ("aligned"); DeepSeek-V3 training (256 experts, 8 groups, EP64 over 8 nodes) puts group g on node g.
 * With aligned groups, keeping `topGroups` groups puts a token on at most min(topGroups, nodes)
 * nodes, so the gate's group limit with topGroups = M enforces "at most M nodes".
 *
 * Router ({@link routeTokens}), the DeepSeek-V3 gate's selection on given sigmoid scores:
 * 1. selection score = score + bias (float32), used for choosing only;
 * 2. group limit (groups > 1): a group's score is the sum of its two highest selection scores (of
 *    its one score when the group has one expert); the `topGroups` best groups stay candidates;
 * 3. node limit (M, optional): a node's score is the sum of the highest ceil(K / M) selection scores
 *    among its remaining candidates (the technical report's rule for training, "the sum of the
 *    highest K/M affinity scores of the experts on each node"); when candidates span more than M
 *    nodes only the M best nodes keep theirs;
 * 4. the `topK` candidates with the highest selection scores, in descending order;
 * 5. weights = the chosen experts' unbiased scores, normalised to sum 1, times `routedScale`.
 * Every "best" breaks ties by the lower index (group, node, expert). Sums are float32, like the
 * reference gate's.
 *
 * Traffic ({@link dispatchTraffic}), per MoE layer and micro-batch, for EP ranks each holding
 * `tokensPerGpu` tokens (token t starts on rank floor(t / tokensPerGpu)):
 * - a token is sent once to each distinct GPU holding at least one of its experts (experts on one
 *   GPU share the copy);
 * - dispatch to another node crosses IB once per target node, to the GPU with the sender's in-node
 *   index there (the relay), which forwards it over NVLink to each target GPU of that node other than
 *   itself; on the sender's own node the sender forwards over NVLink directly; a copy for the
 *   sender itself moves nowhere;
 * - a dispatched copy is FP8: `hidden` bytes plus one FP32 scale per 128 channels
 *   (4·ceil(hidden / 128) bytes); routing metadata (expert ids, weights) is not counted;
 * - combine is dispatch reversed with BF16 payloads (2·hidden bytes): each target GPU sends its
 *   experts' weighted sum for the token to the relay (NVLink), the relay adds its node's partial
 *   sums and sends one copy back over IB; so combine moves exactly the copies dispatch moved.
 * Bytes are counted per GPU, sent and received separately; every byte sent is received by some GPU,
 * so over all GPUs the sent and received totals are equal.
 */

/** Stable codes of the argument errors; the CLI maps them to diagnostics. */
export type RoutingErrorCode =
  | "ROUTING_BAD_COUNT"
  | "ROUTING_EXPERTS_NOT_MULTIPLE_OF_RANKS"
  | "ROUTING_RANKS_NOT_MULTIPLE_OF_NODE_SIZE"
  | "ROUTING_EXPERTS_NOT_MULTIPLE_OF_GROUPS"
  | "ROUTING_TOP_GROUPS_RANGE"
  | "ROUTING_TOP_K_RANGE"
  | "ROUTING_NODE_LIMIT_TOO_SMALL"
  | "ROUTING_SHAPE";

export interface RoutingError {
  code: RoutingErrorCode;
  message: string;
  fix?: string;
}

/** Thrown on invalid arguments; `detail` is the typed error. */
export class RoutingArgumentError extends Error {
  readonly detail: RoutingError;
  constructor(detail: RoutingError) {
    super(detail.message);
    this.name = "RoutingArgumentError";
    this.detail = detail;
  }
}

function fail(code: RoutingErrorCode, message: string, fix?: string): never {
  throw new RoutingArgumentError(fix === undefined ? { code, message } : { code, message, fix });
}

function requireCount(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) fail("ROUTING_BAD_COUNT", `${name} must be a positive integer, got ${String(v)}`);
}

function divisorNear(n: number, target: number): number {
  let best = 1;
  for (let d = 1; d <= n; d++) if (n % d === 0 && Math.abs(d - target) < Math.abs(best - target)) best = d;
  return best;
}

// ---------------------------------------------------------------------------------------------
// Placement

export interface ExpertPlacement {
  routedExperts: number;
  groups: number;
  epRanks: number;
  gpusPerNode: number;
  nodes: number;
  expertsPerRank: number;
  expertsPerNode: number;
  groupSize: number;
  /** EP rank holding each expert. */
  expertToRank: Int32Array;
  /** Node holding each expert. */
  expertToNode: Int32Array;
  /** Node holding each group, or -1 for a group whose experts lie on more than one node. */
  groupToNode: Int32Array;
  /** Most nodes one group's experts lie on (1 when every group is on one node). */
  maxNodesPerGroup: number;
}

/**
 * Contiguous placement of `routedExperts` experts on `epRanks` GPUs, `gpusPerNode` to a node, and
 * where the gate's `groups` groups land. Throws {@link RoutingArgumentError} on invalid counts.
 */
export function placeExpertGroups(routedExperts: number, groups: number, epRanks: number, gpusPerNode: number): ExpertPlacement {
  requireCount("routedExperts", routedExperts);
  requireCount("groups", groups);
  requireCount("epRanks", epRanks);
  requireCount("gpusPerNode", gpusPerNode);
  if (routedExperts % epRanks !== 0) {
    fail(
      "ROUTING_EXPERTS_NOT_MULTIPLE_OF_RANKS",
      `${routedExperts} routed experts do not split evenly over ${epRanks} EP ranks`,
      `use an EP size that divides ${routedExperts}, e.g. ${divisorNear(routedExperts, epRanks)}`,
    );
  }
  if (epRanks % gpusPerNode !== 0) {
    fail(
      "ROUTING_RANKS_NOT_MULTIPLE_OF_NODE_SIZE",
      `${epRanks} EP ranks do not fill whole nodes of ${gpusPerNode} GPUs`,
      `use a multiple of ${gpusPerNode} EP ranks, e.g. ${Math.ceil(epRanks / gpusPerNode) * gpusPerNode}`,
    );
  }
  if (routedExperts % groups !== 0) {
    fail(
      "ROUTING_EXPERTS_NOT_MULTIPLE_OF_GROUPS",
      `${routedExperts} routed experts do not split into ${groups} equal groups`,
      `use a group count that divides ${routedExperts}, e.g. ${divisorNear(routedExperts, groups)}`,
    );
  }
  const nodes = epRanks / gpusPerNode;
  const expertsPerRank = routedExperts / epRanks;
  const expertsPerNode = expertsPerRank * gpusPerNode;
  const groupSize = routedExperts / groups;
  const expertToRank = new Int32Array(routedExperts);
  const expertToNode = new Int32Array(routedExperts);
  for (let e = 0; e < routedExperts; e++) {
    expertToRank[e] = Math.floor(e / expertsPerRank);
    expertToNode[e] = Math.floor(e / expertsPerNode);
  }
  const groupToNode = new Int32Array(groups);
  let maxNodesPerGroup = 1;
  for (let g = 0; g < groups; g++) {
    const first = expertToNode[g * groupSize]!;
    const last = expertToNode[(g + 1) * groupSize - 1]!;
    groupToNode[g] = first === last ? first : -1;
    maxNodesPerGroup = Math.max(maxNodesPerGroup, last - first + 1);
  }
  return {
    routedExperts,
    groups,
    epRanks,
    gpusPerNode,
    nodes,
    expertsPerRank,
    expertsPerNode,
    groupSize,
    expertToRank,
    expertToNode,
    groupToNode,
    maxNodesPerGroup,
  };
}

/**
 * The most nodes a token can reach when the gate keeps `topGroups` groups (and no node limit): for
 * groups on one node each, min(topGroups, nodes). The gate's group limit alone enforces a node limit
 * M exactly when this is at most M.
 */
export function maxNodesUnderGroupLimit(placement: ExpertPlacement, topGroups: number): number {
  const spans: number[] = [];
  for (let g = 0; g < placement.groups; g++) {
    const first = placement.expertToNode[g * placement.groupSize]!;
    const last = placement.expertToNode[(g + 1) * placement.groupSize - 1]!;
    spans.push(last - first + 1);
  }
  spans.sort((a, b) => b - a);
  let sum = 0;
  for (let i = 0; i < Math.min(topGroups, spans.length); i++) sum += spans[i]!;
  return Math.min(sum, placement.nodes);
}

// ---------------------------------------------------------------------------------------------
// Router

export interface RouterOptions {
  /** Routed experts: the width of a score row. */
  experts: number;
  groups: number;
  /** Groups a token keeps (1 ≤ topGroups ≤ groups). */
  topGroups: number;
  /** Experts per token. */
  topK: number;
  /** M: the most nodes a token's experts may span; null for plain group-limited routing. */
  nodeLimit: number | null;
  /** Node of each expert ({@link ExpertPlacement.expertToNode}); needed with a node limit. */
  expertToNode?: Int32Array;
  /** Factor on the normalised weights (DeepSeek-V3: 2.5); default 1. */
  routedScale?: number;
}

/** The experts chosen for each token. */
export interface Route {
  tokens: number;
  topK: number;
  /** tokens × topK, each token's experts by descending selection score. */
  experts: Int32Array;
  /** tokens × topK, the matching gate weights. */
  weights: Float32Array;
}

/**
 * Inserts (v, id) into the descending list vals/ids[at .. at+len) of capacity `cap`, where equal
 * values keep the earlier-inserted id first; returns the new length. Callers insert ids in
 * increasing order, so a tie goes to the lower id.
 */
function insertTop(vals: Float64Array, ids: Int32Array, at: number, len: number, cap: number, v: number, id: number): number {
  if (len === cap) {
    if (!(v > vals[at + len - 1]!)) return len;
    len--;
  }
  let i = at + len;
  while (i > at && v > vals[i - 1]!) {
    vals[i] = vals[i - 1]!;
    ids[i] = ids[i - 1]!;
    i--;
  }
  vals[i] = v;
  ids[i] = id;
  return len + 1;
}

/**
 * Routes `scores.length / opts.experts` tokens (scores: tokens × experts sigmoid affinities, row-major;
 * `bias`: one per expert, or null). See the module comment for the rule. Throws
 * {@link RoutingArgumentError} on inconsistent shapes or limits.
 */
export function routeTokens(scores: Float32Array, bias: Float32Array | null, opts: RouterOptions): Route {
  const experts = opts.experts;
  requireCount("experts", experts);
  requireCount("groups", opts.groups);
  requireCount("topGroups", opts.topGroups);
  requireCount("topK", opts.topK);
  const { groups, topGroups, topK, nodeLimit } = opts;
  if (scores.length % experts !== 0) {
    fail("ROUTING_SHAPE", `${scores.length} scores are not a whole number of tokens of ${experts} experts`);
  }
  if (bias !== null && bias.length !== experts) fail("ROUTING_SHAPE", `bias has ${bias.length} entries for ${experts} experts`);
  if (experts % groups !== 0) {
    fail(
      "ROUTING_EXPERTS_NOT_MULTIPLE_OF_GROUPS",
      `${experts} experts do not split into ${groups} equal groups`,
      `use a group count that divides ${experts}, e.g. ${divisorNear(experts, groups)}`,
    );
  }
  if (topGroups > groups)
    fail("ROUTING_TOP_GROUPS_RANGE", `topGroups ${topGroups} exceeds the ${groups} groups`, `use at most ${groups}`);
  const groupSize = experts / groups;
  if (topK > topGroups * groupSize) {
    fail(
      "ROUTING_TOP_K_RANGE",
      `topK ${topK} exceeds the ${topGroups * groupSize} experts of ${topGroups} kept groups`,
      `keep at least ${Math.ceil(topK / groupSize)} groups`,
    );
  }
  let nodeOf: Int32Array | null = null;
  let nodes = 0;
  let perNode = 0;
  if (nodeLimit !== null) {
    requireCount("nodeLimit", nodeLimit);
    const map = opts.expertToNode;
    if (map === undefined || map.length !== experts) {
      fail("ROUTING_SHAPE", `a node limit needs the node of each of the ${experts} experts (expertToNode)`);
    }
    for (let e = 0; e < experts; e++) nodes = Math.max(nodes, map[e]! + 1);
    nodeOf = map;
    perNode = Math.ceil(topK / nodeLimit);
  }
  const tokens = scores.length / experts;
  const scale = opts.routedScale ?? 1;

  const route: Route = {
    tokens,
    topK,
    experts: new Int32Array(tokens * topK),
    weights: new Float32Array(tokens * topK),
  };
  const scratch: RouterScratch = {
    experts,
    groups,
    topGroups,
    topK,
    groupSize,
    nodeLimit: nodeLimit ?? 0,
    nodes,
    perNode,
    nodeOf: nodeOf ?? new Int32Array(0),
    sel: new Float64Array(experts),
    candidate: new Uint8Array(experts),
    groupScore: new Float64Array(groups),
    keptVals: new Float64Array(Math.max(topGroups, nodeLimit ?? 1, topK)),
    keptIds: new Int32Array(Math.max(topGroups, nodeLimit ?? 1, topK)),
    nodeTopVals: new Float64Array(Math.max(1, nodes * perNode)),
    nodeTopIds: new Int32Array(Math.max(1, nodes * perNode)),
    nodeFill: new Int32Array(nodes),
    nodeKeep: new Uint8Array(nodes),
    topVals: new Float64Array(topK),
    topIds: new Int32Array(topK),
  };
  for (let t = 0; t < tokens; t++) {
    const row = t * experts;
    selectionScores(scratch, scores, bias, row);
    if (groups > 1 && topGroups < groups) limitGroups(scratch);
    else scratch.candidate.fill(1);
    if (nodeOf !== null) limitNodes(scratch);
    const n = topCandidates(scratch);
    if (n < topK) {
      fail(
        "ROUTING_NODE_LIMIT_TOO_SMALL",
        `token ${t}: only ${n} candidate experts remain on ${nodeLimit ?? "all"} node(s) for top-${topK}`,
        "raise the node limit or keep more groups",
      );
    }
    const topIds = scratch.topIds;
    let sum = 0;
    for (let i = 0; i < topK; i++) sum = Math.fround(sum + scores[row + topIds[i]!]!);
    for (let i = 0; i < topK; i++) {
      route.experts[t * topK + i] = topIds[i]!;
      route.weights[t * topK + i] = sum > 0 ? Math.fround(Math.fround(scores[row + topIds[i]!]! / sum) * scale) : 0;
    }
  }
  return route;
}

/** Preallocated per-call state of the router (one token at a time). */
interface RouterScratch {
  experts: number;
  groups: number;
  topGroups: number;
  topK: number;
  groupSize: number;
  /** 0 without a node limit. */
  nodeLimit: number;
  nodes: number;
  perNode: number;
  nodeOf: Int32Array;
  sel: Float64Array;
  candidate: Uint8Array;
  groupScore: Float64Array;
  keptVals: Float64Array;
  keptIds: Int32Array;
  nodeTopVals: Float64Array;
  nodeTopIds: Int32Array;
  nodeFill: Int32Array;
  nodeKeep: Uint8Array;
  topVals: Float64Array;
  topIds: Int32Array;
}

function selectionScores(s: RouterScratch, scores: Float32Array, bias: Float32Array | null, row: number): void {
  const sel = s.sel;
  if (bias === null) {
    for (let e = 0; e < s.experts; e++) sel[e] = scores[row + e]!;
  } else {
    for (let e = 0; e < s.experts; e++) sel[e] = Math.fround(scores[row + e]! + bias[e]!);
  }
}

/** Keeps the candidates of the `topGroups` groups with the best top-2 sums. */
function limitGroups(s: RouterScratch): void {
  const { sel, groupSize, groups } = s;
  for (let g = 0; g < groups; g++) {
    let a = -Infinity;
    let b = -Infinity;
    const end = (g + 1) * groupSize;
    for (let k = g * groupSize; k < end; k++) {
      const v = sel[k]!;
      if (v > a) {
        b = a;
        a = v;
      } else if (v > b) b = v;
    }
    s.groupScore[g] = groupSize === 1 ? a : Math.fround(a + b);
  }
  let n = 0;
  for (let g = 0; g < groups; g++) n = insertTop(s.keptVals, s.keptIds, 0, n, s.topGroups, s.groupScore[g]!, g);
  s.candidate.fill(0);
  for (let i = 0; i < n; i++) s.candidate.fill(1, s.keptIds[i]! * groupSize, (s.keptIds[i]! + 1) * groupSize);
}

/** Keeps the candidates of the `nodeLimit` nodes with the best sums of their top ceil(K/M) scores. */
function limitNodes(s: RouterScratch): void {
  const { sel, candidate, nodeOf, nodeFill, nodeTopVals, nodeTopIds, perNode, nodes, experts } = s;
  nodeFill.fill(0);
  for (let e = 0; e < experts; e++) {
    if (candidate[e] === 0) continue;
    const node = nodeOf[e]!;
    const fill = nodeFill[node]!;
    const v = sel[e]!;
    if (fill === perNode && !(v > nodeTopVals[node * perNode + perNode - 1]!)) continue;
    nodeFill[node] = insertTop(nodeTopVals, nodeTopIds, node * perNode, fill, perNode, v, e);
  }
  let used = 0;
  for (let node = 0; node < nodes; node++) if (nodeFill[node]! > 0) used++;
  if (used <= s.nodeLimit) return;
  let n = 0;
  for (let node = 0; node < nodes; node++) {
    const fill = nodeFill[node]!;
    if (fill === 0) continue;
    let sum = 0;
    for (let i = 0; i < fill; i++) sum = Math.fround(sum + nodeTopVals[node * perNode + i]!);
    n = insertTop(s.keptVals, s.keptIds, 0, n, s.nodeLimit, sum, node);
  }
  s.nodeKeep.fill(0);
  for (let i = 0; i < n; i++) s.nodeKeep[s.keptIds[i]!] = 1;
  for (let e = 0; e < experts; e++) if (s.nodeKeep[nodeOf[e]!] === 0) candidate[e] = 0;
}

/** The topK best candidates into topIds (descending); returns how many were found. */
function topCandidates(s: RouterScratch): number {
  const { sel, candidate, topVals, topIds, topK, experts } = s;
  let n = 0;
  for (let e = 0; e < experts; e++) {
    if (candidate[e] === 0) continue;
    const v = sel[e]!;
    if (n === topK && !(v > topVals[topK - 1]!)) continue;
    n = insertTop(topVals, topIds, 0, n, topK, v, e);
  }
  return n;
}

/** Concatenates routes (token order kept). */
export function concatRoutes(routes: readonly Route[]): Route {
  const topK = routes[0]?.topK ?? 0;
  let tokens = 0;
  for (const r of routes) {
    if (r.topK !== topK) fail("ROUTING_SHAPE", `routes with top-${r.topK} and top-${topK} cannot be joined`);
    tokens += r.tokens;
  }
  const out: Route = { tokens, topK, experts: new Int32Array(tokens * topK), weights: new Float32Array(tokens * topK) };
  let at = 0;
  for (const r of routes) {
    out.experts.set(r.experts, at);
    out.weights.set(r.weights, at);
    at += r.experts.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Traffic

export interface TrafficOptions {
  hidden: number;
  /** Tokens each EP rank starts with; the route holds epRanks × tokensPerGpu tokens. */
  tokensPerGpu: number;
  /** Channels per FP8 scale (default 128). */
  scaleBlock?: number;
  /** Bytes per scale (default 4, FP32). */
  scaleBytes?: number;
  /** Bytes per channel of the combined output (default 2, BF16). */
  combineBytesPerChannel?: number;
}

/** Per-GPU bytes of one phase. */
export interface LinkBytes {
  ibSend: Float64Array;
  ibRecv: Float64Array;
  nvlinkSend: Float64Array;
  nvlinkRecv: Float64Array;
}

export interface TrafficReport {
  ranks: number;
  nodes: number;
  gpusPerNode: number;
  tokensPerGpu: number;
  /** Bytes of one dispatched token copy (FP8 payload + scales). */
  dispatchBytesPerCopy: number;
  /** Bytes of one combined token copy (BF16). */
  combineBytesPerCopy: number;
  dispatch: LinkBytes;
  combine: LinkBytes;
  /** Token copies over IB, over NVLink, and kept on the sending GPU (dispatch; combine mirrors it). */
  copies: { ib: number; nvlink: number; local: number };
  /** Per token: mean distinct target nodes, mean distinct target GPUs, most target nodes seen. */
  perToken: { meanNodes: number; meanGpus: number; maxNodes: number };
  /** Mean bytes sent per GPU (equal to the mean received). */
  mean: { dispatchIb: number; dispatchNvlink: number; combineIb: number; combineNvlink: number };
}

function linkBytes(ranks: number): LinkBytes {
  return {
    ibSend: new Float64Array(ranks),
    ibRecv: new Float64Array(ranks),
    nvlinkSend: new Float64Array(ranks),
    nvlinkRecv: new Float64Array(ranks),
  };
}

function total(a: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]!;
  return s;
}

/**
 * Bytes over IB and NVLink per GPU for one dispatch and one combine of `route` (see the module
 * comment for the model). Throws {@link RoutingArgumentError} when the route does not fit.
 */
export function dispatchTraffic(route: Route, placement: ExpertPlacement, opts: TrafficOptions): TrafficReport {
  requireCount("hidden", opts.hidden);
  requireCount("tokensPerGpu", opts.tokensPerGpu);
  const { epRanks: ranks, gpusPerNode, nodes } = placement;
  if (route.tokens !== ranks * opts.tokensPerGpu) {
    fail("ROUTING_SHAPE", `the route has ${route.tokens} tokens, not ${ranks} ranks × ${opts.tokensPerGpu}`);
  }
  const scaleBlock = opts.scaleBlock ?? 128;
  const dispatchBytes = opts.hidden + (opts.scaleBytes ?? 4) * Math.ceil(opts.hidden / scaleBlock);
  const combineBytes = (opts.combineBytesPerChannel ?? 2) * opts.hidden;
  const dispatch = linkBytes(ranks);
  const combine = linkBytes(ranks);
  // Copies per (from, to) pair are counted, then turned into bytes once.
  const ibCopies = new Float64Array(ranks * 2); // [send, recv] per rank
  const nvCopies = new Float64Array(ranks * 2);
  const gpuSeen = new Int32Array(ranks).fill(-1);
  const nodeSeen = new Int32Array(nodes).fill(-1);
  const targets = new Int32Array(route.topK);
  let ib = 0;
  let nvlink = 0;
  let local = 0;
  let nodeSum = 0;
  let gpuSum = 0;
  let maxNodes = 0;
  const K = route.topK;
  for (let t = 0; t < route.tokens; t++) {
    const src = Math.floor(t / opts.tokensPerGpu);
    const srcNode = Math.floor(src / gpusPerNode);
    const srcIndex = src - srcNode * gpusPerNode;
    let nt = 0;
    let nn = 0;
    for (let i = 0; i < K; i++) {
      const e = route.experts[t * K + i]!;
      if (e < 0 || e >= placement.routedExperts)
        fail("ROUTING_SHAPE", `token ${t} names expert ${e} of ${placement.routedExperts}`);
      const g = placement.expertToRank[e]!;
      if (gpuSeen[g] === t) continue;
      gpuSeen[g] = t;
      targets[nt++] = g;
      const node = Math.floor(g / gpusPerNode);
      if (nodeSeen[node] !== t) {
        nodeSeen[node] = t;
        nn++;
        if (node !== srcNode) {
          const relay = node * gpusPerNode + srcIndex;
          ibCopies[src * 2] = ibCopies[src * 2]! + 1;
          ibCopies[relay * 2 + 1] = ibCopies[relay * 2 + 1]! + 1;
          ib++;
        }
      }
    }
    nodeSum += nn;
    gpuSum += nt;
    if (nn > maxNodes) maxNodes = nn;
    for (let i = 0; i < nt; i++) {
      const g = targets[i]!;
      const node = Math.floor(g / gpusPerNode);
      const from = node === srcNode ? src : node * gpusPerNode + srcIndex;
      if (from === g) {
        if (g === src) local++;
        continue;
      }
      nvCopies[from * 2] = nvCopies[from * 2]! + 1;
      nvCopies[g * 2 + 1] = nvCopies[g * 2 + 1]! + 1;
      nvlink++;
    }
  }
  for (let r = 0; r < ranks; r++) {
    const ibOut = ibCopies[r * 2]!;
    const ibIn = ibCopies[r * 2 + 1]!;
    const nvOut = nvCopies[r * 2]!;
    const nvIn = nvCopies[r * 2 + 1]!;
    dispatch.ibSend[r] = ibOut * dispatchBytes;
    dispatch.ibRecv[r] = ibIn * dispatchBytes;
    dispatch.nvlinkSend[r] = nvOut * dispatchBytes;
    dispatch.nvlinkRecv[r] = nvIn * dispatchBytes;
    // Combine runs every copy backwards.
    combine.ibSend[r] = ibIn * combineBytes;
    combine.ibRecv[r] = ibOut * combineBytes;
    combine.nvlinkSend[r] = nvIn * combineBytes;
    combine.nvlinkRecv[r] = nvOut * combineBytes;
  }
  return {
    ranks,
    nodes,
    gpusPerNode,
    tokensPerGpu: opts.tokensPerGpu,
    dispatchBytesPerCopy: dispatchBytes,
    combineBytesPerCopy: combineBytes,
    dispatch,
    combine,
    copies: { ib, nvlink, local },
    perToken: { meanNodes: nodeSum / route.tokens, meanGpus: gpuSum / route.tokens, maxNodes },
    mean: {
      dispatchIb: total(dispatch.ibSend) / ranks,
      dispatchNvlink: total(dispatch.nvlinkSend) / ranks,
      combineIb: total(combine.ibSend) / ranks,
      combineNvlink: total(combine.nvlinkSend) / ranks,
    },
  };
}
