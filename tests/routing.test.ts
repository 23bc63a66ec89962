import { describe, expect, it } from "vitest";
import fc from "fast-check";

import {
  RoutingArgumentError,
  concatRoutes,
  dispatchTraffic,
  maxNodesUnderGroupLimit,
  placeExpertGroups,
  routeTokens,
  type ExpertPlacement,
  type Route,
  type RouterOptions,
  type RoutingErrorCode,
} from "../compiler/plan/node-limited-routing.js";
import { mulberry32 as rng } from "../compiler/seeded-random.js";


function codeOf(fn: () => unknown): RoutingErrorCode {
  try {
    fn();
  } catch (e) {
    if (e instanceof RoutingArgumentError) return e.detail.code;
    throw e;
  }
  throw new Error("expected a RoutingArgumentError");
}

/** Indices ordered by value, highest first, lower index first on ties. */
function ranked(values: readonly number[], ids: readonly number[]): number[] {
  return [...ids].sort((a, b) => values[b]! - values[a]! || a - b);
}

/**
 * An independent, naive statement of the gate's selection (sorts instead of streaming top-k), used
 * as the oracle. Returns null when fewer than topK candidates remain.
 */
function naiveRoute(scores: Float32Array, bias: Float32Array | null, t: number, opts: RouterOptions): number[] | null {
  const { experts, groups, topGroups, topK, nodeLimit } = opts;
  const sel = Array.from({ length: experts }, (_, e) =>
    bias === null ? scores[t * experts + e]! : Math.fround(scores[t * experts + e]! + bias[e]!),
  );
  const groupSize = experts / groups;
  let candidates = Array.from({ length: experts }, (_, e) => e);
  if (groups > 1 && topGroups < groups) {
    const groupScore = Array.from({ length: groups }, (_, g) => {
      const top = sel.slice(g * groupSize, (g + 1) * groupSize).sort((a, b) => b - a);
      return groupSize === 1 ? top[0]! : Math.fround(top[0]! + top[1]!);
    });
    const kept = new Set(
      ranked(
        groupScore,
        Array.from({ length: groups }, (_, g) => g),
      ).slice(0, topGroups),
    );
    candidates = candidates.filter((e) => kept.has(Math.floor(e / groupSize)));
  }
  if (nodeLimit !== null) {
    const nodeOf = opts.expertToNode!;
    const nodes = [...new Set(candidates.map((e) => nodeOf[e]!))].sort((a, b) => a - b);
    if (nodes.length > nodeLimit) {
      const per = Math.ceil(topK / nodeLimit);
      const nodeScore: number[] = [];
      for (const n of nodes) {
        const top = candidates
          .filter((e) => nodeOf[e] === n)
          .map((e) => sel[e]!)
          .sort((a, b) => b - a)
          .slice(0, per);
        nodeScore[n] = top.reduce((s, v) => Math.fround(s + v), 0);
      }
      const kept = new Set(ranked(nodeScore, nodes).slice(0, nodeLimit));
      candidates = candidates.filter((e) => kept.has(nodeOf[e]!));
    }
  }
  if (candidates.length < topK) return null;
  return ranked(sel, candidates).slice(0, topK);
}

function expertsOf(route: Route, t: number): number[] {
  return Array.from(route.experts.subarray(t * route.topK, (t + 1) * route.topK));
}

describe("placement of experts and groups", () => {
  it("DeepSeek-V3 training: 256 experts in 8 groups on EP64 over 8 nodes puts group g on node g", () => {
    const p = placeExpertGroups(256, 8, 64, 8);
    expect(p.nodes).toBe(8);
    expect(p.expertsPerRank).toBe(4);
    expect(p.expertsPerNode).toBe(32);
    expect(Array.from(p.groupToNode)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(p.maxNodesPerGroup).toBe(1);
    expect(p.expertToRank[0]).toBe(0);
    expect(p.expertToRank[255]).toBe(63);
    expect(p.expertToNode[33]).toBe(1);
    // Keeping 4 groups keeps a token on at most 4 nodes: the group limit is the node limit.
    expect(maxNodesUnderGroupLimit(p, 4)).toBe(4);
  });

  it("several groups per node, and groups that straddle nodes", () => {
    const twoPerNode = placeExpertGroups(64, 8, 16, 4);
    expect(Array.from(twoPerNode.groupToNode)).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
    expect(maxNodesUnderGroupLimit(twoPerNode, 3)).toBe(3);
    const straddling = placeExpertGroups(64, 2, 16, 4);
    expect(Array.from(straddling.groupToNode)).toEqual([-1, -1]);
    expect(straddling.maxNodesPerGroup).toBe(2);
    expect(maxNodesUnderGroupLimit(straddling, 1)).toBe(2);
  });

  it("invalid counts are typed errors", () => {
    expect(codeOf(() => placeExpertGroups(256, 8, 60, 8))).toBe("ROUTING_EXPERTS_NOT_MULTIPLE_OF_RANKS");
    expect(codeOf(() => placeExpertGroups(256, 8, 64, 6))).toBe("ROUTING_RANKS_NOT_MULTIPLE_OF_NODE_SIZE");
    expect(codeOf(() => placeExpertGroups(256, 7, 64, 8))).toBe("ROUTING_EXPERTS_NOT_MULTIPLE_OF_GROUPS");
    expect(codeOf(() => placeExpertGroups(256, 0, 64, 8))).toBe("ROUTING_BAD_COUNT");
    try {
      placeExpertGroups(256, 8, 60, 8);
    } catch (e) {
      expect((e as RoutingArgumentError).detail).toEqual({
        code: "ROUTING_EXPERTS_NOT_MULTIPLE_OF_RANKS",
        message: "256 routed experts do not split evenly over 60 EP ranks",
        fix: "use an EP size that divides 256, e.g. 64",
      });
    }
  });
});

describe("the router", () => {
  it("a worked example: group limit, node limit, top-k, weights", () => {
    // 8 experts, 4 groups of 2, one group per node (4 nodes), keep 3 groups, top-3, at most 2 nodes.
    const p = placeExpertGroups(8, 4, 4, 1);
    const scores = Float32Array.from([0.9, 0.1, 0.5, 0.45, 0.2, 0.2, 0.6, 0.3]);
    // Group scores (top-2 sums): 1.0, 0.95, 0.4, 0.9 → keep groups 0, 1, 3.
    // Node scores (top ceil(3/2) = 2): same sums → keep nodes 0 and 1.
    // Top-3 among experts 0..3: 0 (0.9), 2 (0.5), 3 (0.45).
    const opts: RouterOptions = {
      experts: 8,
      groups: 4,
      topGroups: 3,
      topK: 3,
      nodeLimit: 2,
      expertToNode: p.expertToNode,
      routedScale: 2.5,
    };
    const r = routeTokens(scores, null, opts);
    expect(expertsOf(r, 0)).toEqual([0, 2, 3]);
    const sum = Math.fround(Math.fround(Math.fround(0.9) + Math.fround(0.5)) + Math.fround(0.45));
    expect(r.weights[0]).toBe(Math.fround(Math.fround(Math.fround(0.9) / sum) * 2.5));
    // Without the node limit, the three kept groups are used: 0, 6, 2.
    expect(expertsOf(routeTokens(scores, null, { ...opts, nodeLimit: null }), 0)).toEqual([0, 6, 2]);
    // The bias steers selection only: the weights stay the unbiased scores.
    const bias = Float32Array.from([0, 0, 0, 0, 0, 0, 0, 1]);
    const biased = routeTokens(scores, bias, { ...opts, nodeLimit: null });
    expect(expertsOf(biased, 0)).toEqual([7, 0, 6]);
    const s2 = Math.fround(Math.fround(Math.fround(0.3) + Math.fround(0.9)) + Math.fround(0.6));
    expect(biased.weights[0]).toBe(Math.fround(Math.fround(Math.fround(0.3) / s2) * 2.5));
  });

  it("ties go to the lower index (groups, nodes, experts)", () => {
    const p = placeExpertGroups(8, 4, 4, 1);
    const scores = new Float32Array(8).fill(0.5);
    // Groups 0, 1, 2 kept (ties), then one node of those three: node 0 (ties); its experts 0 and 1.
    const r = routeTokens(scores, null, {
      experts: 8,
      groups: 4,
      topGroups: 3,
      topK: 2,
      nodeLimit: 1,
      expertToNode: p.expertToNode,
    });
    expect(expertsOf(r, 0)).toEqual([0, 1]);
    // Without the node limit: the lowest three indices of the kept groups.
    expect(expertsOf(routeTokens(scores, null, { experts: 8, groups: 4, topGroups: 3, topK: 3, nodeLimit: null }), 0)).toEqual([
      0, 1, 2,
    ]);
  });

  const routerCase = fc
    .record({
      nodes: fc.integer({ min: 1, max: 4 }),
      gpusPerNode: fc.integer({ min: 1, max: 3 }),
      expertsPerRank: fc.integer({ min: 1, max: 3 }),
      groupsPick: fc.nat(),
      topGroupsPick: fc.nat(),
      topKPick: fc.nat(),
      nodeLimit: fc.integer({ min: 1, max: 5 }),
      tokens: fc.integer({ min: 1, max: 12 }),
      levels: fc.constantFrom(4, 16, 1 << 20),
      withBias: fc.boolean(),
      seed: fc.integer(),
    })
    .map((c) => {
      const ranks = c.nodes * c.gpusPerNode;
      const experts = ranks * c.expertsPerRank;
      const divisors = Array.from({ length: experts }, (_, i) => i + 1).filter((d) => experts % d === 0);
      const groups = divisors[c.groupsPick % divisors.length]!;
      const topGroups = 1 + (c.topGroupsPick % groups);
      const groupSize = experts / groups;
      const topK = 1 + (c.topKPick % Math.min(8, topGroups * groupSize));
      const placement = placeExpertGroups(experts, groups, ranks, c.gpusPerNode);
      const random = rng(c.seed);
      // Few score levels force ties; 2^20 levels make them rare.
      const scores = Float32Array.from({ length: c.tokens * experts }, () => Math.floor(random() * c.levels) / c.levels);
      const bias = c.withBias ? Float32Array.from({ length: experts }, () => (Math.floor(random() * 4) - 2) / 16) : null;
      return { placement, scores, bias, nodeLimit: c.nodeLimit, opts: { experts, groups, topGroups, topK } };
    });

  function route(
    c: { placement: ExpertPlacement; scores: Float32Array; bias: Float32Array | null; opts: Omit<RouterOptions, "nodeLimit"> },
    nodeLimit: number | null,
  ): Route | "too few" {
    try {
      return routeTokens(c.scores, c.bias, { ...c.opts, nodeLimit, expertToNode: c.placement.expertToNode });
    } catch (e) {
      if (e instanceof RoutingArgumentError && e.detail.code === "ROUTING_NODE_LIMIT_TOO_SMALL") return "too few";
      throw e;
    }
  }

  it("property: every token's experts are distinct and lie on at most M nodes, in the kept groups", () => {
    fc.assert(
      fc.property(routerCase, (c) => {
        const r = route(c, c.nodeLimit);
        if (r === "too few") return;
        for (let t = 0; t < r.tokens; t++) {
          const chosen = expertsOf(r, t);
          expect(new Set(chosen).size).toBe(c.opts.topK);
          const nodes = new Set(chosen.map((e) => c.placement.expertToNode[e]!));
          expect(nodes.size).toBeLessThanOrEqual(c.nodeLimit);
          const groups = new Set(chosen.map((e) => Math.floor(e / (c.opts.experts / c.opts.groups))));
          expect(groups.size).toBeLessThanOrEqual(c.opts.topGroups);
        }
      }),
      { numRuns: 400 },
    );
  });

  it("property: equals a naive sort-based statement of the rule, ties included", () => {
    fc.assert(
      fc.property(routerCase, fc.boolean(), (c, limited) => {
        const nodeLimit = limited ? c.nodeLimit : null;
        const r = route(c, nodeLimit);
        const tokens = c.scores.length / c.opts.experts;
        const expected = Array.from({ length: tokens }, (_, t) =>
          naiveRoute(c.scores, c.bias, t, { ...c.opts, nodeLimit, expertToNode: c.placement.expertToNode }),
        );
        if (r === "too few") {
          expect(expected.some((x) => x === null)).toBe(true);
          return;
        }
        for (let t = 0; t < tokens; t++) expect(expertsOf(r, t)).toEqual(expected[t]);
      }),
      { numRuns: 400 },
    );
  });

  it("property: with M ≥ nodes, node-limited routing is plain group-limited routing", () => {
    fc.assert(
      fc.property(routerCase, fc.integer({ min: 0, max: 2 }), (c, extra) => {
        const limited = route(c, c.placement.nodes + extra);
        const plain = route(c, null);
        expect(limited).not.toBe("too few");
        expect(limited).toEqual(plain);
      }),
      { numRuns: 200 },
    );
  });

  it("property: with one group per node and topGroups ≤ M, the group limit alone keeps tokens on ≤ M nodes", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 8 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer(),
        (nodes, topGroupsPick, gpusPerNode, seed) => {
          const experts = nodes * gpusPerNode * 2;
          const placement = placeExpertGroups(experts, nodes, nodes * gpusPerNode, gpusPerNode);
          const topGroups = 1 + (topGroupsPick % nodes);
          const random = rng(seed);
          const scores = Float32Array.from({ length: 16 * experts }, random);
          const r = routeTokens(scores, null, {
            experts,
            groups: nodes,
            topGroups,
            topK: Math.min(4, topGroups * gpusPerNode * 2),
            nodeLimit: null,
          });
          expect(maxNodesUnderGroupLimit(placement, topGroups)).toBe(topGroups);
          for (let t = 0; t < r.tokens; t++) {
            expect(new Set(expertsOf(r, t).map((e) => placement.expertToNode[e]!)).size).toBeLessThanOrEqual(topGroups);
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it("weights are normalised and scaled", () => {
    const random = rng(3);
    const scores = Float32Array.from({ length: 50 * 64 }, random);
    const r = routeTokens(scores, null, { experts: 64, groups: 8, topGroups: 4, topK: 6, nodeLimit: null, routedScale: 2.5 });
    for (let t = 0; t < r.tokens; t++) {
      let s = 0;
      for (let i = 0; i < 6; i++) s += r.weights[t * 6 + i]!;
      expect(s).toBeCloseTo(2.5, 5);
    }
  });

  it("invalid options are typed errors", () => {
    const s = new Float32Array(16);
    const base: RouterOptions = { experts: 8, groups: 4, topGroups: 2, topK: 2, nodeLimit: null };
    expect(codeOf(() => routeTokens(new Float32Array(10), null, base))).toBe("ROUTING_SHAPE");
    expect(codeOf(() => routeTokens(s, new Float32Array(3), base))).toBe("ROUTING_SHAPE");
    expect(codeOf(() => routeTokens(s, null, { ...base, groups: 3 }))).toBe("ROUTING_EXPERTS_NOT_MULTIPLE_OF_GROUPS");
    expect(codeOf(() => routeTokens(s, null, { ...base, topGroups: 5 }))).toBe("ROUTING_TOP_GROUPS_RANGE");
    expect(codeOf(() => routeTokens(s, null, { ...base, topK: 5 }))).toBe("ROUTING_TOP_K_RANGE");
    expect(codeOf(() => routeTokens(s, null, { ...base, nodeLimit: 2 }))).toBe("ROUTING_SHAPE");
    expect(codeOf(() => routeTokens(s, null, { ...base, topK: 0 }))).toBe("ROUTING_BAD_COUNT");
    const p = placeExpertGroups(8, 4, 4, 1);
    expect(
      codeOf(() => routeTokens(s, null, { ...base, topGroups: 4, topK: 3, nodeLimit: 1, expertToNode: p.expertToNode })),
    ).toBe("ROUTING_NODE_LIMIT_TOO_SMALL");
  });
});

describe("dispatch and combine traffic", () => {
  it("a worked example on 2 nodes × 2 GPUs", () => {
    // 4 experts, one per GPU. A token on rank 0 goes to experts 1, 2, 3: rank 1 over NVLink; node 1
    // over IB once, to rank 2 (in-node index 0), which forwards to rank 3 over NVLink.
    const p = placeExpertGroups(4, 1, 4, 2);
    const route: Route = {
      tokens: 4,
      topK: 3,
      experts: Int32Array.from([1, 2, 3, 0, 1, 2, 0, 2, 3, 2, 3, 0]),
      weights: new Float32Array(12),
    };
    const t = dispatchTraffic(route, p, { hidden: 256, tokensPerGpu: 1 });
    const B = 256 + 4 * 2;
    const C = 512;
    expect(t.dispatchBytesPerCopy).toBe(B);
    expect(t.combineBytesPerCopy).toBe(C);
    // Token 1 on rank 1: experts 0, 1, 2 → rank 0 over NVLink, itself, node 1 over IB to rank 3
    //   (in-node index 1), which forwards to rank 2.
    // Token 2 on rank 2: experts 0, 2, 3 → node 0 over IB to rank 0 (which holds expert 0), rank 3 over NVLink.
    // Token 3 on rank 3: experts 2, 3, 0 → rank 2 over NVLink, itself, node 0 over IB to rank 1, which forwards to rank 0.
    // NVLink copies: 0→1, 2→3 (token 0); 1→0, 3→2 (token 1); 2→3 (token 2); 3→2, 1→0 (token 3).
    expect(Array.from(t.dispatch.ibSend)).toEqual([B, B, B, B]);
    expect(Array.from(t.dispatch.ibRecv)).toEqual([B, B, B, B]);
    expect(Array.from(t.dispatch.nvlinkSend)).toEqual([B, 2 * B, 2 * B, 2 * B]);
    expect(Array.from(t.dispatch.nvlinkRecv)).toEqual([2 * B, B, 2 * B, 2 * B]);
    // Combine runs the same copies backwards in BF16.
    expect(Array.from(t.combine.ibSend)).toEqual([C, C, C, C]);
    expect(Array.from(t.combine.nvlinkSend)).toEqual([2 * C, C, 2 * C, 2 * C]);
    expect(Array.from(t.combine.nvlinkRecv)).toEqual([C, 2 * C, 2 * C, 2 * C]);
    expect(t.copies).toEqual({ ib: 4, nvlink: 7, local: 3 });
    expect(t.mean).toEqual({ dispatchIb: B, dispatchNvlink: (7 * B) / 4, combineIb: C, combineNvlink: (7 * C) / 4 });
    expect(t.perToken).toEqual({ meanNodes: 2, meanGpus: 3, maxNodes: 2 });
  });

  it("property: bytes sent equal bytes received, combine mirrors dispatch, copies match a brute-force count", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 300 }),
        fc.integer(),
        (nodes, gpusPerNode, expertsPerRank, tokensPerGpu, hidden, seed) => {
          const ranks = nodes * gpusPerNode;
          const experts = ranks * expertsPerRank;
          const p = placeExpertGroups(experts, 1, ranks, gpusPerNode);
          const topK = Math.min(4, Math.min(2, nodes) * gpusPerNode * expertsPerRank);
          const random = rng(seed);
          const scores = Float32Array.from({ length: ranks * tokensPerGpu * experts }, random);
          const r = routeTokens(scores, null, {
            experts,
            groups: 1,
            topGroups: 1,
            topK,
            nodeLimit: Math.min(2, nodes),
            expertToNode: p.expertToNode,
          });
          const t = dispatchTraffic(r, p, { hidden, tokensPerGpu });
          const sum = (a: Float64Array): number => a.reduce((s, v) => s + v, 0);
          for (const phase of [t.dispatch, t.combine]) {
            expect(sum(phase.ibSend)).toBe(sum(phase.ibRecv));
            expect(sum(phase.nvlinkSend)).toBe(sum(phase.nvlinkRecv));
          }
          const B = t.dispatchBytesPerCopy;
          const C = t.combineBytesPerCopy;
          expect(B).toBe(hidden + 4 * Math.ceil(hidden / 128));
          for (let g = 0; g < ranks; g++) {
            expect(t.combine.ibRecv[g]! / C).toBe(t.dispatch.ibSend[g]! / B);
            expect(t.combine.ibSend[g]! / C).toBe(t.dispatch.ibRecv[g]! / B);
            expect(t.combine.nvlinkSend[g]! / C).toBe(t.dispatch.nvlinkRecv[g]! / B);
          }
          // Brute force: IB copies = Σ over tokens of the distinct target nodes other than the source's;
          // every target GPU other than the source gets exactly one copy (over IB, NVLink or both).
          let ib = 0;
          let delivered = 0;
          const recvAny = new Float64Array(ranks);
          for (let tok = 0; tok < r.tokens; tok++) {
            const src = Math.floor(tok / tokensPerGpu);
            const gpus = new Set(expertsOf(r, tok).map((e) => p.expertToRank[e]!));
            const targetNodes = new Set([...gpus].map((g) => Math.floor(g / gpusPerNode)));
            ib += [...targetNodes].filter((n) => n !== Math.floor(src / gpusPerNode)).length;
            for (const g of gpus) {
              if (g === src) continue;
              delivered++;
              recvAny[g] = recvAny[g]! + 1;
            }
          }
          expect(t.copies.ib).toBe(ib);
          expect(sum(t.dispatch.ibSend)).toBe(ib * B);
          // A GPU receives a token copy once, either over NVLink or (as its own node's relay) over IB.
          let viaRelayOnly = 0;
          for (let g = 0; g < ranks; g++) {
            const received = (t.dispatch.nvlinkRecv[g]! + t.dispatch.ibRecv[g]!) / B;
            expect(received).toBeGreaterThanOrEqual(recvAny[g]!);
            viaRelayOnly += received - recvAny[g]!;
          }
          // Relays that hold none of the token's experts receive a copy they only forward.
          expect(t.copies.nvlink + t.copies.ib - viaRelayOnly).toBe(delivered);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("DeepSeek-V3 training shape: tokens stay on ≤ 4 nodes and the node limit adds nothing to the group limit", () => {
    const p = placeExpertGroups(256, 8, 64, 8);
    const random = rng(11);
    const tokensPerGpu = 8;
    const routes: Route[] = [];
    const plain: Route[] = [];
    for (let r = 0; r < 64; r++) {
      const scores = Float32Array.from({ length: tokensPerGpu * 256 }, random);
      const opts: RouterOptions = {
        experts: 256,
        groups: 8,
        topGroups: 4,
        topK: 8,
        nodeLimit: 4,
        expertToNode: p.expertToNode,
        routedScale: 2.5,
      };
      routes.push(routeTokens(scores, null, opts));
      plain.push(routeTokens(scores, null, { ...opts, nodeLimit: null }));
    }
    const route = concatRoutes(routes);
    expect(route).toEqual(concatRoutes(plain));
    const t = dispatchTraffic(route, p, { hidden: 7168, tokensPerGpu });
    expect(t.perToken.maxNodes).toBeLessThanOrEqual(4);
    expect(t.dispatchBytesPerCopy).toBe(7168 + 4 * 56);
    expect(t.combineBytesPerCopy).toBe(2 * 7168);
    expect(codeOf(() => dispatchTraffic(route, p, { hidden: 7168, tokensPerGpu: 7 }))).toBe("ROUTING_SHAPE");
  });
});
