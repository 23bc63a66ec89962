/**
 * Pipeline schedules (compiler/plan/pipeline): every schedule is checked by execution, against a
 * model of the pipeline written here independently of the simulator, and its figures are compared
 * with the DualPipe table (shared/reference/FACTS.md, "Pipeline schedules").
 *
 * The golden op sequences live in tests/fixtures/pipeline-sequences.txt; regenerate them with
 * `npx vitest run tests/pipeline.test.ts -u` (never silently).
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";

import {
  buildSchedule,
  DEFAULT_COSTS,
  parseCostOption,
  pipelineCommand,
  resolveCosts,
  simulate,
  tableFormulas,
} from "../compiler/plan/pipeline/index.js";
import type {
  Costs,
  Dir,
  OpKind,
  PipelineFailure,
  PipelineKind,
  Schedule,
  ScheduleOp,
  Simulation,
  TimedOp,
} from "../compiler/plan/pipeline/index.js";

const KINDS: PipelineKind[] = ["1f1b", "zb1p", "dualpipe", "dualpipev"];

function build(kind: PipelineKind, stages: number, microbatches: number): Schedule {
  const s = buildSchedule(kind, stages, microbatches);
  if ("error" in s) throw new Error(`${kind} P=${stages} N=${microbatches}: ${s.error.message}`);
  return s;
}

function run(s: Schedule, costs: Costs): Simulation {
  const r = simulate(s, costs);
  if (!r.ok) throw new Error(`${s.kind} P=${s.stages} N=${s.microbatches}: ${r.failure.problems.join("; ")}`);
  return r.sim;
}

function errorOf(x: Schedule | PipelineFailure): string {
  return "error" in x ? x.error.code : "ok";
}

// ---------------------------------------------------------------------------------------------
// An independent model of where micro-batches go: a "journey" is the ordered list of (rank, dir)
// hops a micro-batch passes through, first stage to last (the loss). It is written from the
// schedules' definitions, not from the builders' prevHop/nextHop.

interface Journey {
  hops: { rank: number; dir: Dir }[];
  microbatches: number;
}

function journeys(kind: PipelineKind, P: number, N: number): Journey[] {
  const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
  switch (kind) {
    case "1f1b":
    case "zb1p":
      return [{ hops: range(P).map((rank) => ({ rank, dir: 0 as Dir })), microbatches: N }];
    case "dualpipe":
      return [
        { hops: range(P).map((rank) => ({ rank, dir: 0 as Dir })), microbatches: N / 2 },
        { hops: range(P).map((i) => ({ rank: P - 1 - i, dir: 1 as Dir })), microbatches: N / 2 },
      ];
    case "dualpipev": {
      const D = P / 2;
      const down = range(D).map((rank) => ({ rank, dir: 0 as Dir }));
      const up = range(D).map((i) => ({ rank: D - 1 - i, dir: 1 as Dir }));
      return [{ hops: [...down, ...up], microbatches: N }];
    }
  }
}

const opKey = (rank: number, op: OpKind, dir: Dir, mb: number): string => `${rank}:${op}:${dir}:${mb}`;

/** Checks a simulated schedule against the model above; returns every problem found. */
function verify(kind: PipelineKind, P: number, N: number, s: Schedule, sim: Simulation, c: Costs): string[] {
  const problems: string[] = [];
  const devices = kind === "dualpipev" ? P / 2 : P;
  if (s.ranks !== devices || sim.ranks.length !== devices) problems.push(`expected ${devices} ranks`);
  const js = journeys(kind, P, N);

  // Exactly once: every (F|B, dir, mb) of each hop on its rank; W at most once; nothing else.
  const expected = new Map<string, number>();
  for (const j of js) {
    for (const h of j.hops) {
      for (let mb = 0; mb < j.microbatches; mb++) {
        expected.set(opKey(h.rank, "F", h.dir, mb), 1);
        expected.set(opKey(h.rank, "B", h.dir, mb), 1);
        expected.set(opKey(h.rank, "W", h.dir, mb), 0); // 0 or 1 allowed
      }
    }
  }
  const at = new Map<string, TimedOp>();
  for (const r of sim.ranks) {
    for (const o of r.ops) {
      const k = opKey(r.rank, o.op, o.dir, o.mb);
      if (!expected.has(k)) problems.push(`unexpected op ${k}`);
      if (at.has(k)) problems.push(`duplicate op ${k}`);
      at.set(k, o);
    }
  }
  for (const [k, n] of expected) if (n === 1 && !at.has(k)) problems.push(`missing op ${k}`);

  // The simulation ran each rank's list as given, in order.
  sim.ranks.forEach((r, rank) => {
    const listed = s.rankOps[rank]!;
    const strip = (o: ScheduleOp): string => `${o.op}${o.dir}:${o.mb}:${o.overlapGroup}`;
    if (r.ops.map(strip).join() !== listed.map(strip).join()) problems.push(`rank ${rank}: timeline order differs from its op list`);
  });

  // Durations, and no two slots of a rank overlap in time except the halves of one pair.
  for (const r of sim.ranks) {
    const split = new Set(r.ops.filter((o) => o.op === "W").map((o) => `${o.dir}:${o.mb}`));
    let prevEnd = 0;
    for (let i = 0; i < r.ops.length; i++) {
      const o = r.ops[i]!;
      const pairNext = o.overlapGroup !== null ? r.ops[i + 1] : undefined;
      const isPair = pairNext !== undefined && pairNext.overlapGroup === o.overlapGroup;
      if (o.overlapGroup !== null && !isPair) problems.push(`rank ${r.rank}: overlap group ${o.overlapGroup} has one op`);
      const bSplit = (b: TimedOp): boolean => split.has(`${b.dir}:${b.mb}`);
      let want: number;
      if (isPair) {
        if (o.op !== "F" || pairNext.op !== "B") problems.push(`rank ${r.rank}: pair ${o.overlapGroup} is not F then B`);
        if (o.start !== pairNext.start || o.end !== pairNext.end) problems.push(`rank ${r.rank}: pair ${o.overlapGroup} halves not simultaneous`);
        want = c.FB - (bSplit(pairNext) ? c.W : 0);
      } else {
        want = o.op === "F" ? c.F : o.op === "W" ? c.W : c.B - (bSplit(o) ? c.W : 0);
      }
      if (Math.abs(o.end - o.start - want) > 1e-9) problems.push(`rank ${r.rank}: ${o.op}${o.dir}:${o.mb} lasts ${o.end - o.start}, not ${want}`);
      if (o.start < prevEnd - 1e-9) problems.push(`rank ${r.rank}: ${o.op}${o.dir}:${o.mb} starts at ${o.start} before the previous slot ends at ${prevEnd}`);
      prevEnd = o.end;
      if (isPair) i++;
    }
  }

  // Dependencies, in each direction; and each slot starts as early as they allow (event order).
  const readyAt = new Map<TimedOp, number>();
  const need = (o: TimedOp | undefined, dep: TimedOp | undefined, what: string): void => {
    if (o === undefined || dep === undefined) return;
    if (o.start < dep.end - 1e-9) problems.push(`${what}: starts ${o.start} before its input ends ${dep.end}`);
    readyAt.set(o, Math.max(readyAt.get(o) ?? 0, dep.end));
  };
  let messages = 0;
  for (const j of js) {
    const L = j.hops.length;
    for (let mb = 0; mb < j.microbatches; mb++) {
      const get = (i: number, op: OpKind): TimedOp | undefined => at.get(opKey(j.hops[i]!.rank, op, j.hops[i]!.dir, mb));
      for (let i = 0; i < L; i++) {
        const name = `mb ${mb} hop ${i} (rank ${j.hops[i]!.rank} dir ${j.hops[i]!.dir})`;
        if (i > 0) need(get(i, "F"), get(i - 1, "F"), `F of ${name}`);
        need(get(i, "B"), get(i, "F"), `B of ${name} after its F`);
        if (i < L - 1) need(get(i, "B"), get(i + 1, "B"), `B of ${name} after the next stage's B`);
        need(get(i, "W"), get(i, "B"), `W of ${name}`);
        if (i > 0 && j.hops[i]!.rank !== j.hops[i - 1]!.rank) messages += 2; // activation down, gradient up
      }
    }
  }
  if (sim.messages !== messages) problems.push(`${sim.messages} messages, expected ${messages}`);
  for (const r of sim.ranks) {
    let free = 0;
    for (let i = 0; i < r.ops.length; i++) {
      const o = r.ops[i]!;
      const mate = o.overlapGroup !== null ? r.ops[i + 1] : undefined;
      const ready = Math.max(free, readyAt.get(o) ?? 0, mate ? (readyAt.get(mate) ?? 0) : 0);
      if (Math.abs(o.start - ready) > 1e-9) problems.push(`rank ${r.rank}: ${o.op}${o.dir}:${o.mb} starts at ${o.start}, could start at ${ready}`);
      free = o.end;
      if (mate) i++;
    }
  }

  // Figures, recomputed from the timeline.
  const makespan = Math.max(...sim.ranks.flatMap((r) => r.ops.map((o) => o.end)));
  if (sim.makespan !== makespan) problems.push(`makespan ${sim.makespan} ≠ ${makespan}`);
  let worstIdle = 0;
  let peak = 0;
  for (const r of sim.ranks) {
    const intervals = [...new Map(r.ops.map((o) => [`${o.start}-${o.end}`, o])).values()].sort((a, b) => a.start - b.start);
    let busy = 0;
    let reach = -Infinity;
    for (const o of intervals) {
      busy += Math.max(0, o.end - Math.max(o.start, reach));
      reach = Math.max(reach, o.end);
    }
    if (Math.abs(r.idle - (makespan - busy)) > 1e-9) problems.push(`rank ${r.rank}: idle ${r.idle} ≠ ${makespan - busy}`);
    worstIdle = Math.max(worstIdle, makespan - busy);
    const hasW = new Set(r.ops.filter((o) => o.op === "W").map((o) => `${o.dir}:${o.mb}`));
    const events = r.ops.flatMap((o): [number, number][] =>
      o.op === "F" ? [[o.start, 1]] : o.op === "W" || (o.op === "B" && !hasW.has(`${o.dir}:${o.mb}`)) ? [[o.end, -1]] : [],
    );
    events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let live = 0;
    let rankPeak = 0;
    for (const [, d] of events) rankPeak = Math.max(rankPeak, (live += d));
    if (live !== 0) problems.push(`rank ${r.rank}: ${live} activations never released`);
    if (r.activationPeak !== rankPeak) problems.push(`rank ${r.rank}: activation peak ${r.activationPeak} ≠ ${rankPeak}`);
    peak = Math.max(peak, rankPeak);
  }
  if (Math.abs(sim.bubble - worstIdle) > 1e-9) problems.push(`bubble ${sim.bubble} ≠ ${worstIdle}`);
  if (sim.activationPeak !== peak) problems.push(`activation peak ${sim.activationPeak} ≠ ${peak}`);
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Arbitraries: valid (kind, P, N) across each kind's domain, and costs. Costs are multiples of 1/4
// so every sum is exact in binary floating point and the figures compare with ===.

const validShape = fc.oneof(
  fc.record({ kind: fc.constantFrom<PipelineKind>("1f1b", "zb1p"), P: fc.integer({ min: 1, max: 16 }), N: fc.integer({ min: 1, max: 40 }) }),
  fc
    .record({ h: fc.integer({ min: 1, max: 8 }), extra: fc.integer({ min: 0, max: 12 }) })
    .map(({ h, extra }) => ({ kind: "dualpipe" as PipelineKind, P: 2 * h, N: 4 * h + 2 * extra })),
  fc
    .record({ d: fc.integer({ min: 1, max: 8 }), extra: fc.integer({ min: 0, max: 24 }) })
    .map(({ d, extra }) => ({ kind: "dualpipev" as PipelineKind, P: 2 * d, N: 2 * d + extra })),
);

const quarter = (min: number, max: number): fc.Arbitrary<number> => fc.integer({ min: min * 4, max: max * 4 }).map((x) => x / 4);

const anyCosts: fc.Arbitrary<Costs> = fc
  .record({ F: quarter(0.25, 6), B: quarter(0.25, 8), wShare: fc.double({ min: 0, max: 1, noNaN: true }), FB: quarter(0.25, 14) })
  .map(({ F, B, wShare, FB }) => ({ F, B, W: Math.floor(wShare * B * 4) / 4, FB }));

describe("pipeline schedules: validity by execution", () => {
  it("every valid (kind, P, N) runs without deadlock and satisfies the independent model", () => {
    fc.assert(
      fc.property(validShape, anyCosts, ({ kind, P, N }, c) => {
        const s = build(kind, P, N);
        const sim = run(s, c);
        expect(verify(kind, P, N, s, sim, c)).toEqual([]);
      }),
      { numRuns: 250 },
    );
  });

  it("the default costs give valid schedules for PP ∈ {2, 4, 8, 16} at the smallest and larger N", () => {
    for (const kind of KINDS) {
      for (const P of [2, 4, 8, 16]) {
        const min = kind === "dualpipe" ? 2 * P : P;
        for (const N of [min, min + 2, 4 * P]) {
          const s = build(kind, P, N);
          expect(verify(kind, P, N, s, run(s, DEFAULT_COSTS), DEFAULT_COSTS), `${kind} P=${P} N=${N}`).toEqual([]);
        }
      }
    }
  });

  it("detects a deadlock and names each blocked rank and what it waits for", () => {
    // Two-stage 1F1B in which rank 0 waits for B0's gradient before sending F1, while rank 1 runs
    // both forwards before any backward: rank 1 needs F1 from rank 0, rank 0 needs B0 from rank 1.
    const s = build("1f1b", 2, 2);
    const op = (o: OpKind, mb: number): ScheduleOp => ({ op: o, mb, dir: 0, overlapGroup: null });
    const bad: Schedule = { ...s, rankOps: [[op("F", 0), op("B", 0), op("F", 1), op("B", 1)], [op("F", 0), op("F", 1), op("B", 0), op("B", 1)]] };
    const r = simulate(bad, DEFAULT_COSTS);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.failure.problems[0]).toBe("deadlock");
    expect(r.failure.blocked).toEqual([
      { rank: 0, op: op("B", 0), waitingFor: "gradient of mb 0 dir 0 from rank 1" },
      { rank: 1, op: op("F", 1), waitingFor: "activation of mb 1 dir 0 from rank 0" },
    ]);
  });

  it("reports missing, repeated and stray ops, W before its B, and malformed overlap groups", () => {
    const s = build("zb1p", 2, 2);
    const op = (o: OpKind, mb: number, dir: Dir = 0, overlapGroup: number | null = null): ScheduleOp => ({ op: o, mb, dir, overlapGroup });
    const check = (rankOps: ScheduleOp[][]): string[] => {
      const r = simulate({ ...s, rankOps }, DEFAULT_COSTS);
      return r.ok ? [] : r.failure.problems;
    };
    const good1 = s.rankOps[1]!;
    expect(check([[op("F", 0), op("F", 1), op("B", 0), op("B", 1)], good1])).toEqual([]);
    expect(check([[op("F", 0), op("F", 1), op("B", 0)], good1])).toContain("rank 0: B mb 1 dir 0 listed 0 times");
    expect(check([[op("F", 0), op("F", 0), op("F", 1), op("B", 0), op("B", 1)], good1])).toContain("rank 0: F mb 0 dir 0 listed 2 times");
    expect(check([[op("F", 0), op("F", 1), op("B", 0), op("B", 1), op("F", 0, 1)], good1])).toContain("rank 0: unexpected op F/1/0");
    expect(check([[op("F", 0), op("F", 1, 0, 7), op("B", 0), op("B", 1)], good1])).toContain("rank 0: overlap group 7 is not one F followed by one B");
    const wFirst = check([[op("F", 0), op("F", 1), op("W", 0), op("B", 0), op("B", 1)], good1]);
    expect(wFirst[0]).toBe("deadlock");
    expect(wFirst).toContain("rank 0 blocked at W mb 0 dir 0, waiting for its own B mb 0 dir 0");
  });
});

describe("pipeline schedules: a clear error outside each kind's domain", () => {
  it("rejects stage and micro-batch counts that are not positive integers, for every kind", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...KINDS),
        fc.oneof(fc.integer({ min: -5, max: 0 }), fc.constantFrom(1.5, Number.NaN, Infinity)),
        (kind, bad) => {
          expect(errorOf(buildSchedule(kind, bad, 64))).toBe("pp-stages");
          expect(errorOf(buildSchedule(kind, 4, bad))).toBe("pp-microbatches");
        },
      ),
    );
    for (const kind of ["dualpipe", "dualpipev"] as const) expect(errorOf(buildSchedule(kind, 1, 8))).toBe("pp-stages");
  });

  it("DualPipe: odd PP, odd N and N < 2·PP each have their own error and fix", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 15 }), fc.integer({ min: 0, max: 40 }), (k, N) => {
        const odd = buildSchedule("dualpipe", 2 * k + 1, Math.max(1, N));
        expect(errorOf(odd)).toBe("pp-odd");
        const P = 2 * k;
        const r = buildSchedule("dualpipe", P, Math.max(1, N));
        const n = Math.max(1, N);
        expect(errorOf(r)).toBe(n % 2 === 1 ? "pp-odd-microbatches" : n < 2 * P ? "pp-few-microbatches" : "ok");
        if ("error" in r) {
          expect(r.error.message).toMatch(/DualPipe/);
          expect(r.error.fix).toMatch(/^use microbatches = \d+$/);
          const fixed = Number(/\d+$/.exec(r.error.fix!)![0]);
          expect(errorOf(buildSchedule("dualpipe", P, fixed))).toBe("ok");
        }
      }),
    );
    const e = buildSchedule("dualpipe", 7, 28);
    expect("error" in e && e.error).toEqual({
      code: "pp-odd",
      message: "DualPipe needs an even number of pipeline stages; stages = 7; DualPipe places one stage per direction on each rank and pairs ranks r and P−1−r",
      fix: "use stages = 8",
    });
  });

  it("DualPipeV: odd PP and N < PP (= 2·devices) are rejected; odd N is fine", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 15 }), fc.integer({ min: 1, max: 40 }), (d, N) => {
        expect(errorOf(buildSchedule("dualpipev", 2 * d + 1, N))).toBe("pp-odd");
        expect(errorOf(buildSchedule("dualpipev", 2 * d, N))).toBe(N < 2 * d ? "pp-few-microbatches" : "ok");
      }),
    );
    const e = buildSchedule("dualpipev", 8, 6);
    expect("error" in e && e.error.message).toBe("DualPipeV needs at least 2·devices = stages = 8 micro-batches; found 6");
  });

  it("unknown kinds and bad costs", () => {
    const k = buildSchedule("gpipe", 4, 8);
    expect("error" in k && k.error.code).toBe("pp-kind");
    expect("error" in k && k.error.message).toBe("unknown pipeline schedule 'gpipe'; expected one of 1f1b, zb1p, dualpipe, dualpipev");
    for (const cost of [{ F: 0 }, { B: -1 }, { W: -0.5 }, { B: 2, W: 3 }, { FB: Number.NaN }, { F: Infinity }]) {
      const r = pipelineCommand({ kind: "1f1b", stages: 4, microbatches: 8, cost, json: true });
      expect("error" in r && r.error.code, JSON.stringify(cost)).toBe("pp-cost");
    }
    const bad = resolveCosts({ B: 2, W: 3 });
    expect("error" in bad && bad.error.message).toBe("cost W (the weight-gradient part of B) cannot exceed B; found W=3 > B=2");
    expect(parseCostOption("F=1,B=2,W=1,FB=3")).toEqual({ F: 1, B: 2, W: 1, FB: 3 });
    expect(parseCostOption("F&B=2.5, f=0.5")).toEqual({ FB: 2.5, F: 0.5 });
    expect(resolveCosts(parseCostOption("F=2") as Partial<Costs>)).toEqual({ F: 2, B: 4, W: 2, FB: 6 });
    for (const text of ["", "F", "X=1", "F=abc", "F=1,F=2", "F="]) expect(errorOf(parseCostOption(text) as PipelineFailure), text).toBe("pp-cost");
  });
});

// ---------------------------------------------------------------------------------------------
// Figures against the DualPipe table. Bubble = idle time per device inside the step, the largest
// over devices; activations in chunks (one stage's activations of one micro-batch).

describe("pipeline figures against the table in FACTS.md", () => {
  const Bi = (c: Costs): number => c.B - c.W; // the input-gradient part of a split backward

  it("1F1B: bubble = (PP−1)(F+B) exactly, for every cost and every N ≥ 1; activations PP (N when N < PP)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 40 }), anyCosts, (P, N, c) => {
        const sim = run(build("1f1b", P, N), c);
        expect(sim.bubble).toBe((P - 1) * (c.F + c.B));
        expect(sim.activationPeak).toBe(Math.min(P, N));
        for (const r of sim.ranks) expect(r.idle).toBe((P - 1) * (c.F + c.B)); // every device idles the same
      }),
      { numRuns: 120 },
    );
  });

  it("ZB1P: bubble = (PP−1)(F+B−2W) exactly when W ≤ F and W ≤ B−W (N ≥ PP); activations PP", () => {
    const inRegime = fc
      .record({ W: quarter(0, 3), f: quarter(0, 3), b: quarter(0, 3) })
      .map(({ W, f, b }) => ({ F: W + f || 0.25, B: 2 * W + b || 0.25, W, FB: 1 }));
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 0, max: 24 }), inRegime, (P, extra, c) => {
        const sim = run(build("zb1p", P, P + extra), c);
        expect(sim.bubble).toBe((P - 1) * (c.F + c.B - 2 * c.W));
        expect(sim.activationPeak).toBe(P);
        expect(tableFormulas("zb1p", P, c, P + extra).assumptionsHold).toBe(true);
      }),
      { numRuns: 120 },
    );
  });

  it("ZB1P outside that regime: a postponed W no longer fits its gap; measured (PP−1)(F+B−W−min(W,F,B−W))", () => {
    // The formula counts each of the PP−1 gap slots as shrunk by one whole W. A gap is as long as
    // an F (during the warm-up) or an input-gradient B (during the drain), so when W exceeds either,
    // only min(W, F, B−W) of it is recovered per slot and the measured bubble is larger.
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 16 }), fc.integer({ min: 0, max: 24 }), anyCosts, (P, extra, c) => {
        const sim = run(build("zb1p", P, P + extra), c);
        const measured = (P - 1) * (c.F + Bi(c) - Math.min(c.W, c.F, Bi(c)));
        expect(sim.bubble).toBe(measured);
        const table = tableFormulas("zb1p", P, c, P + extra);
        if (c.W > Math.min(c.F, Bi(c))) {
          expect(sim.bubble).toBeGreaterThan(table.bubble);
          expect(table.assumptionsHold).toBe(false);
        } else {
          expect(sim.bubble).toBe(table.bubble);
        }
      }),
      { numRuns: 120 },
    );
  });

  // The DualPipe formula is derived from (and its figure drawn with) a forward as long as an
  // input-gradient backward: F = B − W, with W ≤ F, and an overlapped pair no shorter than a full
  // backward and no longer than doing both halves in turn: B ≤ F&B ≤ F + B.
  const dualRegime = fc
    .record({ W: quarter(0, 3), extraF: quarter(0, 3), share: fc.double({ min: 0, max: 1, noNaN: true }) })
    .map(({ W, extraF, share }) => {
      const F = W + extraF || 0.25;
      const B = F + W;
      return { F, B, W, FB: B + Math.floor(share * F * 4) / 4 };
    });

  for (const kind of ["dualpipe", "dualpipev"] as const) {
    const shapes =
      kind === "dualpipe"
        ? fc.record({ h: fc.integer({ min: 1, max: 8 }), extra: fc.integer({ min: 0, max: 10 }) }).map(({ h, extra }) => ({ P: 2 * h, N: 4 * h + 2 * extra }))
        : fc.record({ d: fc.integer({ min: 1, max: 8 }), extra: fc.integer({ min: 0, max: 20 }) }).map(({ d, extra }) => ({ P: 2 * d, N: 2 * d + extra }));

    it(`${kind}: bubble = (PP/2−1)(F&B+B−3W) exactly when F = B−W, W ≤ F, B ≤ F&B ≤ F+B; activations PP+1`, () => {
      fc.assert(
        fc.property(shapes, dualRegime, ({ P, N }, c) => {
          const sim = run(build(kind, P, N), c);
          expect(sim.bubble).toBe((P / 2 - 1) * (c.FB + c.B - 3 * c.W));
          expect(sim.activationPeak).toBe(P + 1);
          expect(tableFormulas(kind, P, c, N).assumptionsHold).toBe(true);
        }),
        { numRuns: 150 },
      );
    });

    it(`${kind}: with F ≠ B−W (W ≤ min(F, B−W), max(F,B) ≤ F&B ≤ F+B) the bubble moves by a closed-form amount`, () => {
      // Off the formula's proportions the warm-up (forwards) and the drain (input-gradient
      // backwards) stop tiling as the formula counts them. Measured, on the worst device:
      //   formula + (PP/2−1)·max(0, F − (B−W)) − min(F, (PP/2−1)·max(0, (B−W) − F)):
      // longer forwards add their excess once per half-pipeline hop; longer input-gradient
      // backwards let the drain absorb up to one forward of idle time.
      const regime = fc
        .record({ F: quarter(0.25, 6), Bi: quarter(0.25, 6), wShare: fc.double({ min: 0, max: 1, noNaN: true }), fbShare: fc.double({ min: 0, max: 1, noNaN: true }) })
        .map(({ F, Bi, wShare, fbShare }) => {
          const W = Math.floor(wShare * Math.min(F, Bi) * 4) / 4;
          const B = Bi + W;
          const lo = Math.max(F, B);
          return { F, B, W, FB: lo + Math.floor(fbShare * (F + B - lo) * 4) / 4 };
        });
      fc.assert(
        fc.property(shapes, regime, ({ P, N }, c) => {
          const sim = run(build(kind, P, N), c);
          const k = P / 2 - 1;
          const table = (P / 2 - 1) * (c.FB + c.B - 3 * c.W);
          expect(sim.bubble).toBe(table + k * Math.max(0, c.F - Bi(c)) - Math.min(c.F, k * Math.max(0, Bi(c) - c.F)));
          expect(sim.activationPeak).toBe(P + 1);
        }),
        { numRuns: 150 },
      );
    });
  }

  it("activations: PP (1F1B, ZB1P) and PP+1 (DualPipe, DualPipeV) for every cost when N ≥ PP", () => {
    fc.assert(
      fc.property(validShape, anyCosts, ({ kind, P, N }, c) => {
        fc.pre(N >= P);
        expect(run(build(kind, P, N), c).activationPeak).toBe(kind === "1f1b" || kind === "zb1p" ? P : P + 1);
      }),
      { numRuns: 120 },
    );
  });

  it("PP ∈ {4, 8, 16} with the default costs (F=1, B=2, W=1, F&B=3, the figures' proportions): measured = table", () => {
    const c = DEFAULT_COSTS;
    const rows: string[] = [];
    for (const P of [4, 8, 16]) {
      for (const kind of KINDS) {
        const N = kind === "dualpipe" ? 4 * P : 2 * P;
        const sim = run(build(kind, P, N), c);
        const t = tableFormulas(kind, P, c, N);
        rows.push(`${kind} PP=${P}: bubble ${sim.bubble} (table ${t.bubble}), activations ${sim.activationPeak} (table ${t.activation})`);
        expect(sim.bubble).toBe(t.bubble);
        expect(sim.activationPeak).toBe(t.activation);
      }
    }
    expect(rows).toEqual([
      "1f1b PP=4: bubble 9 (table 9), activations 4 (table 4)",
      "zb1p PP=4: bubble 3 (table 3), activations 4 (table 4)",
      "dualpipe PP=4: bubble 2 (table 2), activations 5 (table 5)",
      "dualpipev PP=4: bubble 2 (table 2), activations 5 (table 5)",
      "1f1b PP=8: bubble 21 (table 21), activations 8 (table 8)",
      "zb1p PP=8: bubble 7 (table 7), activations 8 (table 8)",
      "dualpipe PP=8: bubble 6 (table 6), activations 9 (table 9)",
      "dualpipev PP=8: bubble 6 (table 6), activations 9 (table 9)",
      "1f1b PP=16: bubble 45 (table 45), activations 16 (table 16)",
      "zb1p PP=16: bubble 15 (table 15), activations 16 (table 16)",
      "dualpipe PP=16: bubble 14 (table 14), activations 17 (table 17)",
      "dualpipev PP=16: bubble 14 (table 14), activations 17 (table 17)",
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Structure of DualPipe and DualPipeV.

describe("DualPipe and DualPipeV structure", () => {
  const strip = (ops: ScheduleOp[], swap = false): string[] =>
    ops.map((o) => `${o.op}${swap ? 1 - o.dir : o.dir}:${o.mb}${o.overlapGroup === null ? "" : "&"}`);

  it("DualPipe is mirror-symmetric: rank P−1−r runs rank r's order with the directions swapped", () => {
    for (const [P, N] of [[2, 4], [4, 8], [6, 20], [8, 20], [16, 32]] as const) {
      const s = build("dualpipe", P, N);
      for (let r = 0; r < P; r++) expect(strip(s.rankOps[P - 1 - r]!, true)).toEqual(strip(s.rankOps[r]!));
    }
  });

  it("DualPipeV is DualPipe cut in half: its D devices run DualPipe(2D, 2N)'s first D ranks, with the same timeline", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 12 }), anyCosts, (D, extra, c) => {
        const N = 2 * D + extra;
        const v = build("dualpipev", 2 * D, N);
        const d = build("dualpipe", 2 * D, 2 * N);
        const sv = run(v, c);
        const sd = run(d, c);
        for (let r = 0; r < D; r++) {
          expect(strip(v.rankOps[r]!)).toEqual(strip(d.rankOps[r]!));
          expect(sv.ranks[r]!.ops.map((o) => [o.start, o.end])).toEqual(sd.ranks[r]!.ops.map((o) => [o.start, o.end]));
        }
        expect(sv.makespan).toBe(sd.makespan);
        expect(sv.bubble).toBe(sd.bubble);
      }),
      { numRuns: 60 },
    );
  });

  it("each rank has the eight phases' counts: pairs, lone ops and split backwards", () => {
    for (const [P, N] of [[4, 8], [8, 20], [8, 32], [16, 32]] as const) {
      const s = build("dualpipe", P, N);
      const h = P / 2;
      s.rankOps.forEach((ops, r) => {
        const q = Math.min(r, P - 1 - r);
        const edge = h - q - 1;
        const steady = N / 2 - P + q + 1;
        const middle = q === h - 1;
        const pairs = ops.filter((o) => o.overlapGroup !== null).length / 2;
        expect(pairs, `rank ${r}`).toBe(2 * steady + edge - (middle ? 1 : 0));
        expect(ops.filter((o) => o.op === "W").length).toBe(2 * edge + q + 1);
        // Phase 1 and 2: the rank starts with 2·edge + 1 forwards of its near direction.
        const near = r < h ? 0 : 1;
        const lead = ops.findIndex((o) => !(o.op === "F" && o.dir === near));
        expect(lead).toBe(2 * edge + 1);
      });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The command: JSON, text, SVG, determinism, golden sequences.

describe("pipelineCommand", () => {
  it("JSON: fixed key order, every op once per rank, overlap pairs share a group, deterministic", () => {
    const args = { kind: "dualpipe", stages: 4, microbatches: 8, json: true };
    const a = pipelineCommand(args);
    const b = pipelineCommand(args);
    if ("error" in a || "error" in b) throw new Error("unexpected error");
    expect(a.stdout).toBe(b.stdout);
    expect(a.svg).toBeUndefined();
    const doc = JSON.parse(a.stdout) as {
      ranks: { rank: number; ops: Record<string, unknown>[] }[];
      bubble: number;
      makespan: number;
      activationPeak: number;
      definitions: Record<string, string>;
      table: { bubble: number };
    };
    expect(Object.keys(doc)).toEqual([
      "kind", "stages", "devices", "microbatches", "microbatchesPerDirection", "directions", "cost",
      "ranks", "bubble", "makespan", "activationPeak", "messages", "table", "definitions",
    ]);
    expect(Object.keys(doc.ranks[0]!)).toEqual(["rank", "stages", "busy", "idle", "activationPeak", "ops"]);
    expect(Object.keys(doc.ranks[0]!.ops[0]!)).toEqual(["op", "mb", "dir", "start", "end", "overlapGroup"]);
    expect(doc.definitions["bubble"]).toMatch(/^idle time per device inside the step/);
    expect([doc.bubble, doc.makespan, doc.activationPeak, doc.table.bubble]).toEqual([2, 26, 5, 2]);
    for (const r of doc.ranks) {
      const keys = r.ops.map((o) => `${o["op"]}${o["dir"]}:${o["mb"]}`);
      expect(new Set(keys).size).toBe(keys.length);
      const groups = new Map<unknown, number>();
      for (const o of r.ops) if (o["overlapGroup"] !== null) groups.set(o["overlapGroup"], (groups.get(o["overlapGroup"]) ?? 0) + 1);
      for (const n of groups.values()) expect(n).toBe(2);
    }
  });

  it("text summary states the figures, the table and the bubble definition", () => {
    const r = pipelineCommand({ kind: "zb1p", stages: 4, microbatches: 8, cost: { F: 1, B: 3, W: 1.5, FB: 4 }, json: false });
    if ("error" in r) throw new Error(r.error.message);
    const lines = r.stdout.split("\n");
    expect(lines.slice(0, 4)).toEqual([
      "zb1p: 4 stages on 4 devices, 8 micro-batches; costs F=1 B=3 W=1.5 F&B=4",
      "bubble      4.5   table (PP-1)(F+B-2W) = 3   (differs: W exceeds F or B−W, so a postponed weight gradient does not fit the gap it is meant to fill)",
      "activations 4   table PP = 4 chunks per device",
      "makespan    36.5   messages 48",
    ]);
    expect(r.stdout).toContain("bubble = idle time per device inside the step (makespan - busy time of the device), the largest over devices");
    expect(lines[7]).toBe("rank  stages  busy  idle  peak  ops");
    expect(lines[11]).toBe("   3  3         32   4.5     4  F0 B0 F1 B1 F2 B2 F3 B3 W0 F4 B4 W1 F5 B5 W2 F6 B6 W3 F7 B7 W4 W5 W6 W7");
  });

  it("SVG: well-formed, self-contained, one op rectangle per op and one frame per overlapped pair, deterministic", () => {
    for (const [kind, P, N] of [["dualpipe", 8, 20], ["dualpipev", 8, 10], ["zb1p", 4, 8], ["1f1b", 3, 5]] as const) {
      const args = { kind, stages: P, microbatches: N, json: false, svgFile: "out.svg" };
      const a = pipelineCommand(args);
      const b = pipelineCommand(args);
      if ("error" in a || "error" in b) throw new Error("unexpected error");
      const svg = a.svg!;
      expect(svg).toBe(b.svg);
      expect(svg.startsWith(`<svg xmlns="http://www.w3.org/2000/svg"`)).toBe(true);
      expect(svg.endsWith("</svg>\n")).toBe(true);
      expect(svg).not.toMatch(/<script|<image|href=|@import|url\(/i);
      // Minimal well-formedness: tags balance, attributes quoted, no raw '&' or '<' in text.
      const stack: string[] = [];
      for (const m of svg.matchAll(/<(\/?)([a-zA-Z][a-zA-Z0-9]*)((?:\s+[a-zA-Z][a-zA-Z0-9:-]*="[^"<]*")*)\s*(\/?)>/g)) {
        const [, close, name, , self] = m;
        if (self) continue;
        if (close) expect(stack.pop()).toBe(name);
        else stack.push(name!);
      }
      expect(stack).toEqual([]);
      const stripped = svg.replace(/<(\/?)([a-zA-Z][a-zA-Z0-9]*)((?:\s+[a-zA-Z][a-zA-Z0-9:-]*="[^"<]*")*)\s*(\/?)>/g, "");
      expect(stripped).not.toMatch(/<|>|&(?!amp;|lt;|gt;|quot;)/);
      const s = build(kind, P, N);
      const ops = s.rankOps.flat();
      expect(svg.match(/<rect class="op"/g)!.length).toBe(ops.length);
      expect((svg.match(/<rect class="pair"/g) ?? []).length).toBe(ops.filter((o) => o.overlapGroup !== null).length / 2);
    }
  });

  it("golden op sequences, including the report's and README's figure cases", async () => {
    const cases: [PipelineKind, number, number][] = [
      ["1f1b", 4, 6],
      ["zb1p", 4, 6],
      ["dualpipe", 4, 8],
      ["dualpipe", 8, 20], // DeepSeek-V3 report Figure 5 / DualPipe README: 8 ranks, 20 micro-batches
      ["dualpipev", 8, 10], // DualPipe README: DualPipeV on 4 devices (8 stages), 10 micro-batches
    ];
    const text = cases
      .map(([kind, P, N]) => {
        const r = pipelineCommand({ kind, stages: P, microbatches: N, json: false });
        if ("error" in r) throw new Error(r.error.message);
        return `== dsv3 pipeline --kind ${kind} --stages ${P} --microbatches ${N}\n${r.stdout}`;
      })
      .join("\n");
    await expect(text).toMatchFileSnapshot("./fixtures/pipeline-sequences.txt");
  });
});
