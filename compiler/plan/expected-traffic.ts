/**
 * Expected all-to-all traffic of node-limited routing, in closed form.
 *
 * Routing real tokens through `routeTokens` and counting with `dispatchTraffic`
 * (node-limited-routing.ts) is exact for one batch of scores but costs O(tokens · experts) per layer,
 * which at V3 sizes (2048 GPUs × 12k tokens × 256 experts × 58 layers) is far too slow for a plan. The
 * plan uses the expectation under uniform routing instead, with the same transport rules as
 * `dispatchTraffic`:
 * - the token's routed experts lie on M candidate nodes of its EP group, chosen uniformly (M = the
 *   node limit; without one, the nodes the gate's group limit can reach, or all of the group's
 *   nodes), and its K picks are a uniform K-subset of the candidates' expert slots;
 * - one copy goes to each distinct target GPU; a remote node is reached once over IB, at the GPU
 *   with the sender's in-node index (the relay), which forwards over NVLink to the node's other
 *   targets; targets on the sender's node get NVLink copies from the sender; a copy for the sender
 *   itself stays local.
 * With C candidate slots, x slots per GPU, g GPUs per node of the group, N nodes in the group and
 * miss(s) = C(C−s, K)/C(C, K) the chance that a given s slots get none of the K picks:
 *   E[target GPUs]  = M·g·(1 − miss(x)),       E[target nodes] = M·(1 − miss(g·x)),
 *   E[IB copies]    = E[target nodes]·(1 − 1/N),
 *   E[local copies] = (M/N)·(1 − miss(x)),     E[NVLink copies] = M·(g − 1)·(1 − miss(x)).
 * Every GPU sends and receives the same expected bytes (the model is symmetric). The tests compare
 * these figures with `dispatchTraffic` on routed random scores.
 */

export interface ExpectedCopiesOptions {
  /** Expert slots per GPU (routed experts / EP, or the serving slots with redundant experts). */
  slotsPerGpu: number;
  /** GPUs in the EP group. */
  ep: number;
  gpusPerNode: number;
  /** Experts each token picks (routed, plus the shared ones when served as routed). */
  picks: number;
  /** Candidate nodes M (at most the group's nodes). */
  candidateNodes: number;
}

export interface ExpectedCopies {
  ib: number;
  nvlink: number;
  local: number;
  distinctGpus: number;
  distinctNodes: number;
}

/** C(n − s, k) / C(n, k): the chance that a fixed s of n items get none of k uniform picks. */
export function missProbability(n: number, s: number, k: number): number {
  if (k > n) throw new Error(`expected traffic: ${k} picks from ${n} candidates`);
  if (n - s < k) return 0;
  let p = 1;
  for (let i = 0; i < k; i++) p *= (n - s - i) / (n - i);
  return p;
}

/** The nodes an EP group of `ep` GPUs spans, and its GPUs per node. */
export function epGroupShape(ep: number, gpusPerNode: number): { nodes: number; gpusPerNode: number } {
  return ep <= gpusPerNode ? { nodes: 1, gpusPerNode: ep } : { nodes: Math.ceil(ep / gpusPerNode), gpusPerNode };
}

export function expectedCopies(opts: ExpectedCopiesOptions): ExpectedCopies {
  const shape = epGroupShape(opts.ep, opts.gpusPerNode);
  const N = shape.nodes;
  const g = shape.gpusPerNode;
  const M = Math.max(1, Math.min(opts.candidateNodes, N));
  const x = opts.slotsPerGpu;
  const C = M * g * x;
  const K = Math.min(opts.picks, C);
  if (K <= 0) return { ib: 0, nvlink: 0, local: 0, distinctGpus: 0, distinctNodes: 0 };
  const hitGpu = 1 - missProbability(C, x, K);
  const hitNode = 1 - missProbability(C, g * x, K);
  const distinctNodes = M * hitNode;
  return {
    ib: distinctNodes * (1 - 1 / N),
    nvlink: M * (g - 1) * hitGpu,
    local: (M / N) * hitGpu,
    distinctGpus: M * g * hitGpu,
    distinctNodes,
  };
}
