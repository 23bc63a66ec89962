import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import fc from "fast-check";

import {
  EplbArgumentError,
  balancedPacking,
  eplbCommand,
  eplbPolicy,
  gpuLoads,
  loadSummary,
  noRedundancyPlacement,
  parseLoadJson,
  planRedundantExperts,
  rebalanceExperts,
  replicateExperts,
  type EplbError,
  type EplbOptions,
  type EplbPlacement,
  type ExpertLoads,
} from "../compiler/plan/eplb.js";

function loadsOf(rows: number[][]): ExpertLoads {
  return { layers: rows.length, experts: rows[0]!.length, load: Float64Array.from(rows.flat()) };
}

function rowsOf(a: Int32Array, rows: number, cols: number): number[][] {
  return Array.from({ length: rows }, (_, r) => Array.from(a.subarray(r * cols, (r + 1) * cols)));
}

/** Every structural promise of a placement (problems collected, then asserted once: it runs per property case). */
function expectValidPlacement(p: EplbPlacement): void {
  const { layers, experts, replicas, gpus, maxReplicas } = p;
  const problems: string[] = [];
  const check = (ok: boolean, what: string): void => {
    if (!ok && problems.length < 10) problems.push(what);
  };
  check(replicas % gpus === 0 && p.slotsPerGpu * gpus === replicas, "equal slots per GPU");
  check(p.phy2log.length === layers * replicas && p.phyRank.length === layers * replicas, "phy2log size");
  check(p.log2phy.length === layers * experts * maxReplicas, "log2phy size");
  for (let l = 0; l < layers; l++) {
    const count = new Int32Array(experts);
    for (let q = 0; q < replicas; q++) {
      const e = p.phy2log[l * replicas + q]!;
      if (!(e >= 0 && e < experts)) {
        check(false, `layer ${l} slot ${q}: expert ${e}`);
        continue;
      }
      count[e] = count[e]! + 1;
      // log2phy names this slot under this replica's rank.
      check(p.log2phy[(l * experts + e) * maxReplicas + p.phyRank[l * replicas + q]!] === q, `layer ${l} slot ${q}: log2phy`);
    }
    let sum = 0;
    for (let e = 0; e < experts; e++) {
      const c = count[e]!;
      check(c >= 1, `layer ${l} expert ${e}: no replica`);
      check(p.logcnt[l * experts + e] === c, `layer ${l} expert ${e}: logcnt`);
      check(c <= maxReplicas, `layer ${l} expert ${e}: wider than log2phy`);
      sum += p.logcnt[l * experts + e]!;
      for (let r = 0; r < maxReplicas; r++) {
        const slot = p.log2phy[(l * experts + e) * maxReplicas + r]!;
        check(r < c ? p.phy2log[l * replicas + slot] === e : slot === -1, `layer ${l} expert ${e} replica ${r}: log2phy ${slot}`);
      }
    }
    check(sum === replicas, `layer ${l}: logcnt sums to ${sum}`);
  }
  expect(problems).toEqual([]);
}

const README_LOADS = [
  [90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
  [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27],
];
const README_OPTS: EplbOptions = { replicas: 16, groups: 4, nodes: 2, gpus: 8 };

describe("EPLB: the reference's README example", () => {
  it("reproduces the published phy2log exactly", () => {
    const p = rebalanceExperts(loadsOf(README_LOADS), README_OPTS);
    expect(p.policy).toBe("hierarchical");
    expect(rowsOf(p.phy2log, 2, 16)).toEqual([
      [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
      [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
    ]);
    expect(rowsOf(p.logcnt, 2, 12)).toEqual([
      [1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1],
      [1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1],
    ]);
    expect(p.maxReplicas).toBe(2);
    // Replica ranks in creation order, as the reference's log2phy lists them.
    expect(Array.from(p.log2phy.subarray(0, 2 * 12))).toEqual([
      12, -1, 15, 13, 11, -1, 6, -1, 7, 5, 0, 2, 1, -1, 3, -1, 4, -1, 9, -1, 8, 10, 14, -1,
    ]);
    expectValidPlacement(p);
  });

  it("keeps every group on one node and every replica on its expert's node (hierarchical)", () => {
    const p = rebalanceExperts(loadsOf(README_LOADS), README_OPTS);
    const slotsPerNode = 16 / 2;
    for (let l = 0; l < 2; l++) {
      const nodeOf = new Int32Array(12).fill(-1);
      for (let q = 0; q < 16; q++) {
        const e = p.phy2log[l * 16 + q]!;
        const node = Math.floor(q / slotsPerNode);
        if (nodeOf[e] === -1) nodeOf[e] = node;
        expect(nodeOf[e]).toBe(node);
      }
      for (let g = 0; g < 4; g++) for (let k = 1; k < 3; k++) expect(nodeOf[g * 3 + k]).toBe(nodeOf[g * 3]);
    }
  });

  it("the guarded plan equals the reference here, and beats no redundancy", () => {
    const loads = loadsOf(README_LOADS);
    const planned = planRedundantExperts(loads, README_OPTS);
    expect(planned.fallbackLayers).toEqual([]);
    expect(Array.from(planned.placement.phy2log)).toEqual(Array.from(rebalanceExperts(loads, README_OPTS).phy2log));
    expect(Array.from(planned.after.max)).toEqual([156, 179.5]);
    expect(Array.from(planned.after.mean)).toEqual([1033 / 8, 1156 / 8]);
    expect(Array.from(planned.before.max)).toEqual([183, 197]);
  });

  it("the command's JSON is deterministic, in the documented key order", () => {
    const text = readFileSync(new URL("./fixtures/eplb-readme-load.json", import.meta.url), "utf8");
    const args = { loadJsonText: text, ...README_OPTS, json: true };
    const a = eplbCommand(args);
    const b = eplbCommand(args);
    if (!("stdout" in a) || !("stdout" in b)) throw new Error("eplb failed");
    expect(a.stdout).toBe(b.stdout);
    const parsed = JSON.parse(a.stdout) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(["phy2log", "log2phy", "logcnt", "maxLoadPerGpu", "meanLoadPerGpu"]);
    expect(parsed.phy2log).toEqual([
      [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
      [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
    ]);
    expect((parsed.log2phy as number[][][])[0]![1]).toEqual([15, 13]);
    expect(parsed.maxLoadPerGpu).toEqual([156, 179.5]);
    expect(parsed.meanLoadPerGpu).toEqual([129.125, 144.5]);
    expect(a.stdout.split("\n").slice(0, 3)).toEqual(["{", '  "phy2log": [', "    [5,6,5,7,8,4,3,4,10,9,10,2,0,1,11,1],"]);
  });

  it("the command's text summary shows max and mean per GPU before and after", () => {
    const out = eplbCommand({ loadJsonText: JSON.stringify(README_LOADS), ...README_OPTS, json: false });
    if (!("stdout" in out)) throw new Error("eplb failed");
    expect(out.stdout).toContain(
      "12 experts → 16 replicas (4 redundant) on 8 GPUs in 2 node(s), 4 group(s); hierarchical policy",
    );
    const lines = out.stdout.split("\n");
    const header = lines.findIndex((line) => line.trimStart().startsWith("layer"));
    expect(lines[header]).toMatch(/mean\s+max before\s+max after\s+imbalance before\s+imbalance after/);
    expect(lines[header + 1]!.trim().split(/\s+/)).toEqual(["0", "129.125", "183", "156", "1.417", "1.208"]);
    expect(lines[header + 2]!.trim().split(/\s+/)).toEqual(["1", "144.500", "197", "179.500", "1.363", "1.242"]);
    expect(out.stdout).toContain("worst imbalance (max / mean): 1.417 before, 1.242 after");
  });
});

describe("EPLB: golden placements of the reference", () => {
  interface GoldenCase {
    kind: string;
    replicas: number;
    groups: number;
    nodes: number;
    gpus: number;
    load: number[][];
    phy2log: number[][];
    logcnt: number[][];
  }
  const golden = JSON.parse(readFileSync(new URL("./fixtures/eplb-reference-cases.json", import.meta.url), "utf8")) as {
    cases: GoldenCase[];
  };
  it("has cases for both policies and for rows longer than 16", () => {
    expect(golden.cases.length).toBeGreaterThan(30);
    const policies = new Set(golden.cases.map((c) => eplbPolicy(c)));
    expect(policies).toEqual(new Set(["hierarchical", "global"]));
    expect(golden.cases.some((c) => c.load[0]!.length === 256)).toBe(true);
  });
  for (const [i, c] of golden.cases.entries()) {
    it(`case ${i} (${c.kind}: ${c.load[0]!.length} experts, ${c.replicas} replicas, ${c.groups} groups, ${c.nodes} nodes, ${c.gpus} GPUs)`, () => {
      const p = rebalanceExperts(loadsOf(c.load), c);
      expect(rowsOf(p.phy2log, p.layers, p.replicas)).toEqual(c.phy2log);
      expect(rowsOf(p.logcnt, p.layers, p.experts)).toEqual(c.logcnt);
      expectValidPlacement(p);
    });
  }
});

describe("EPLB: the greedy building blocks", () => {
  it("balanced packing: heaviest first to the lightest pack with room; equal weights lowest index first", () => {
    // Weights 5 3 3 3 1 1 into 2 packs of 3: item 0 → pack 0 (5); 1 → pack 1 (3); 2 → pack 1 (6);
    // 3 → pack 0 (8); 4 → pack 1 (7, full); 5 → pack 0, the only one with room.
    const p = balancedPacking(Float64Array.from([5, 3, 3, 3, 1, 1]), 2);
    expect(Array.from(p.packIndex)).toEqual([0, 1, 1, 0, 1, 0]);
    expect(Array.from(p.rankInPack)).toEqual([0, 0, 1, 1, 2, 2]);
    // All equal: items in index order, each to the lowest-numbered lightest pack.
    const q = balancedPacking(new Float64Array(6).fill(2), 3);
    expect(Array.from(q.packIndex)).toEqual([0, 1, 2, 0, 1, 2]);
    // One item per pack: the identity.
    expect(Array.from(balancedPacking(Float64Array.from([1, 9, 4]), 3).packIndex)).toEqual([0, 1, 2]);
  });

  it("balanced packing accumulates in float32", () => {
    // 2^24 + 1 is not a float32: pack 0 holding 2^24 and 1 still weighs 2^24, ties with pack 1 and,
    // being lower-numbered, takes the next 1 too (in float64 pack 1 would be lighter and take it).
    const big = 2 ** 24;
    const p = balancedPacking(Float64Array.from([big, big, 1, 1, 1, 1]), 2);
    expect(Array.from(p.packIndex)).toEqual([0, 1, 0, 0, 1, 1]);
  });

  it("replication: each extra replica to the largest load per replica, lowest index on a tie", () => {
    const r = replicateExperts(Float64Array.from([6, 6, 2]), 6);
    // 6 6 2 → expert 0 (tie with 1) → 3 6 2 → expert 1 → 3 3 2 → expert 0 (tie) → 2 3 2.
    expect(Array.from(r.phy2log)).toEqual([0, 1, 2, 0, 1, 0]);
    expect(Array.from(r.rank)).toEqual([0, 0, 0, 1, 1, 2]);
    expect(Array.from(r.logcnt)).toEqual([3, 2, 1]);
  });

  it("uses the global policy when the nodes do not divide the groups", () => {
    expect(eplbPolicy({ groups: 4, nodes: 2 })).toBe("hierarchical");
    expect(eplbPolicy({ groups: 4, nodes: 3 })).toBe("global");
    const loads = loadsOf([[10, 1, 1, 1, 1, 1, 1, 1, 1]]);
    const p = rebalanceExperts(loads, { replicas: 12, groups: 3, nodes: 2, gpus: 4 });
    expect(p.policy).toBe("global");
    expectValidPlacement(p);
    // Globally, the heavy expert gets the redundant replicas: 10/4 = 2.5 per replica.
    expect(p.logcnt[0]).toBe(4);
  });
});

describe("EPLB: no worse than no redundancy", () => {
  it("the reference alone can be worse: loads [4, 0, 9, 7], 6 replicas on 2 GPUs", () => {
    const loads = loadsOf([[4, 0, 9, 7]]);
    const opts = { replicas: 6, groups: 1, nodes: 1, gpus: 2 };
    expect(loadSummary(loads, rebalanceExperts(loads, opts)).max[0]).toBe(11.5);
    const base = noRedundancyPlacement(loads, opts);
    expect(loadSummary(base.loads, base.placement).max[0]).toBe(11);
    const planned = planRedundantExperts(loads, opts);
    expect(planned.fallbackLayers).toEqual([0]);
    expect(planned.after.max[0]).toBe(11);
    expectValidPlacement(planned.placement);
    // The command guards by default and reports the reference with exactReference.
    const json = (exactReference: boolean): { maxLoadPerGpu: number[] } => {
      const out = eplbCommand({ loadJsonText: "[[4,0,9,7]]", ...opts, json: true, exactReference });
      if (!("stdout" in out)) throw new Error("eplb failed");
      return JSON.parse(out.stdout) as { maxLoadPerGpu: number[] };
    };
    expect(json(false).maxLoadPerGpu).toEqual([11]);
    expect(json(true).maxLoadPerGpu).toEqual([11.5]);
  });

  it("the no-redundancy baseline pads with zero-load slots when the GPUs do not divide the experts", () => {
    const loads = loadsOf(README_LOADS);
    const base = noRedundancyPlacement(loads, README_OPTS);
    expect(base.loads.experts).toBe(16);
    expect(base.placement.slotsPerGpu).toBe(2);
    expect(Array.from(base.placement.logcnt).every((c) => c === 1)).toBe(true);
  });

  const config = fc
    .record({
      nodes: fc.integer({ min: 1, max: 4 }),
      gpusPerNode: fc.integer({ min: 1, max: 4 }),
      groups: fc.integer({ min: 1, max: 8 }),
      groupSize: fc.integer({ min: 1, max: 6 }),
      extraSlots: fc.integer({ min: 0, max: 3 }),
      layers: fc.integer({ min: 1, max: 3 }),
      integerLoads: fc.boolean(),
    })
    .chain((c) => {
      const experts = c.groups * c.groupSize;
      const gpus = c.nodes * c.gpusPerNode;
      const load = c.integerLoads
        ? fc.integer({ min: 0, max: 1000 })
        : fc.double({ min: 0, max: 1000, noNaN: true, noDefaultInfinity: true });
      return fc.record({
        opts: fc.constant<EplbOptions>({
          replicas: (Math.ceil(experts / gpus) + c.extraSlots) * gpus,
          groups: c.groups,
          nodes: c.nodes,
          gpus,
        }),
        rows: fc.array(fc.array(load, { minLength: experts, maxLength: experts }), { minLength: c.layers, maxLength: c.layers }),
      });
    });

  it("property: the reference gives every expert a replica, equal slots per GPU, consistent maps", () => {
    fc.assert(
      fc.property(config, ({ opts, rows }) => {
        const p = rebalanceExperts(loadsOf(rows), opts);
        expect(p.policy).toBe(opts.groups % opts.nodes === 0 ? "hierarchical" : "global");
        expectValidPlacement(p);
      }),
      { numRuns: 300 },
    );
  });

  it("property: the guarded plan is valid, never worse than no redundancy, and the reference wherever that is not worse", () => {
    fc.assert(
      fc.property(config, ({ opts, rows }) => {
        const loads = loadsOf(rows);
        const planned = planRedundantExperts(loads, opts);
        expectValidPlacement(planned.placement);
        const reference = rebalanceExperts(loads, opts);
        const refMax = loadSummary(loads, reference).max;
        const base = noRedundancyPlacement(loads, opts);
        const baseMax = loadSummary(base.loads, base.placement).max;
        const after = loadSummary(loads, planned.placement);
        for (let l = 0; l < loads.layers; l++) {
          expect(after.max[l]).toBeLessThanOrEqual(baseMax[l]!);
          expect(planned.after.max[l]).toBe(after.max[l]);
          expect(planned.before.max[l]).toBe(baseMax[l]);
          const fellBack = planned.fallbackLayers.includes(l);
          expect(fellBack).toBe(refMax[l]! > baseMax[l]!);
          if (!fellBack) {
            const row = (a: Int32Array): number[] => Array.from(a.subarray(l * opts.replicas, (l + 1) * opts.replicas));
            expect(row(planned.placement.phy2log)).toEqual(row(reference.phy2log));
          }
        }
        // The mean GPU load is the total load over the GPUs, whatever the placement.
        const per = gpuLoads(loads, planned.placement);
        for (let l = 0; l < loads.layers; l++) {
          let total = 0;
          for (let e = 0; e < loads.experts; e++) total += loads.load[l * loads.experts + e]!;
          let sum = 0;
          for (let g = 0; g < opts.gpus; g++) sum += per[l * opts.gpus + g]!;
          expect(sum).toBeCloseTo(total, 6);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("EPLB: invalid arguments are typed errors", () => {
  function errorOf(loadJsonText: string, opts: Partial<EplbOptions> = {}): EplbError {
    const out = eplbCommand({ loadJsonText, ...README_OPTS, ...opts, json: true });
    if (!("error" in out)) throw new Error("expected an error");
    return out.error;
  }
  const readme = JSON.stringify(README_LOADS);

  it("replicas not a multiple of the GPUs", () => {
    expect(errorOf(readme, { replicas: 18 })).toEqual({
      code: "EPLB_REPLICAS_NOT_MULTIPLE_OF_GPUS",
      message: "18 replicas do not fill 8 GPUs with equal slots",
      fix: "use a multiple of 8, e.g. --replicas 24",
    });
  });
  it("GPUs not a multiple of the nodes", () => {
    expect(errorOf(readme, { gpus: 9, replicas: 18 })).toMatchObject({
      code: "EPLB_GPUS_NOT_MULTIPLE_OF_NODES",
      fix: "use a multiple of 2 GPUs, e.g. --gpus 10",
    });
  });
  it("experts not a multiple of the groups", () => {
    expect(errorOf(readme, { groups: 5 })).toEqual({
      code: "EPLB_EXPERTS_NOT_MULTIPLE_OF_GROUPS",
      message: "12 experts do not split into 5 equal groups",
      fix: "use a group count that divides 12, e.g. --groups 4",
    });
  });
  it("fewer replicas than experts", () => {
    expect(errorOf(readme, { replicas: 8 })).toEqual({
      code: "EPLB_TOO_FEW_REPLICAS",
      message: "8 replicas cannot hold 12 experts (every expert needs at least one)",
      fix: "use at least 12 replicas, e.g. --replicas 16",
    });
  });
  it("counts that are not positive integers", () => {
    expect(errorOf(readme, { nodes: 0 }).code).toBe("EPLB_BAD_COUNT");
    expect(errorOf(readme, { gpus: 2.5 }).message).toBe("--gpus must be a positive integer, got 2.5");
  });
  it("rows of different lengths, empty tables, non-arrays", () => {
    expect(errorOf("[[1,2,3],[1,2]]")).toMatchObject({
      code: "EPLB_LOAD_SHAPE",
      message: "layer 1 has 2 experts but layer 0 has 3",
    });
    expect(errorOf("[]").code).toBe("EPLB_LOAD_SHAPE");
    expect(errorOf("[[]]").code).toBe("EPLB_LOAD_SHAPE");
    expect(errorOf('{"a":1}').code).toBe("EPLB_LOAD_SHAPE");
    expect(errorOf("[[1,2],3]").code).toBe("EPLB_LOAD_SHAPE");
  });
  it("negative, non-numeric and non-float32 loads", () => {
    expect(errorOf("[[1,-2,3,4]]")).toMatchObject({
      code: "EPLB_LOAD_VALUE",
      message: "layer 0, expert 1: load -2 is not a finite non-negative number (float32)",
    });
    expect(errorOf('[[1,"2",3,4]]').code).toBe("EPLB_LOAD_VALUE");
    expect(errorOf("[[1,null,3,4]]").code).toBe("EPLB_LOAD_VALUE");
    expect(errorOf("[[1,1e39,3,4]]").code).toBe("EPLB_LOAD_VALUE");
  });
  it("text that is not JSON", () => {
    expect(errorOf("[[1,2,").code).toBe("EPLB_LOAD_JSON");
  });
  it("the library throws EplbArgumentError with the same detail, NaN included", () => {
    const loads: ExpertLoads = { layers: 1, experts: 4, load: Float64Array.from([1, Number.NaN, 2, 3]) };
    let caught: unknown;
    try {
      rebalanceExperts(loads, { replicas: 4, groups: 1, nodes: 1, gpus: 2 });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(EplbArgumentError);
    expect((caught as EplbArgumentError).detail.code).toBe("EPLB_LOAD_VALUE");
    expect(() => rebalanceExperts(loadsOf([[1, 2, 3]]), { replicas: 3, groups: 1, nodes: 1, gpus: 2 })).toThrow(
      EplbArgumentError,
    );
    expect(parseLoadJson("[[0, 1.5]]")).toEqual({ layers: 1, experts: 2, load: Float64Array.from([0, 1.5]) });
  });
});
