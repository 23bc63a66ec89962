/**
 * Properties of the parallel lowerings (runtime/execute/distributed): random tiny DeepSeek-V3-shaped
 * models × random valid schedules (tests/fixtures/random-distributed-spec.ts), each run on virtual
 * ranks against the same step on one device, with the traffic check. Each test name says which
 * quantities are bitwise and which are within the tolerance, and why (which collective re-associates
 * a sum). Broken lowerings show the property catches them.
 *
 * Sizes are kept small (hidden 8–16, sequences of 8 tokens, ≤ 16 GPUs) so that the 260 cases run in
 * well under a minute on two cores.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkSpecFile } from "../compiler/check/index.js";
import type { Plan, TrainingProgram } from "../compiler/plan/plan.js";
import type { Spec } from "../compiler/spec.js";
import { DEFAULT_TOLERANCE, runDistributedCheck, type DistributedCheckOptions, type DistributedCheckResult } from "../runtime/execute/distributed/index.js";
import { caseText, servingCaseArb, trainingCaseArb, type RandomCase } from "./fixtures/random-distributed-spec.js";

const SEQ_CAP = 8;

function specOf(c: RandomCase): Spec {
  const text = caseText(c);
  const checked = checkSpecFile("random.dsv3", () => text, text);
  if (!checked.spec) throw new Error(`the generator wrote an invalid spec: ${checked.diagnostics.map((d) => `${d.code} ${d.message}`).join("; ")}\n${text}`);
  return checked.spec;
}

function run(c: RandomCase, options: DistributedCheckOptions = {}): DistributedCheckResult {
  const out = runDistributedCheck(specOf(c), "s", { seed: 1, seqCap: SEQ_CAP, ...options });
  if (out.result === null) throw new Error(`${out.diagnostics.map((d) => `${d.code} ${d.message}`).join("; ")}\n${caseText(c)}`);
  return out.result;
}

function expectTrafficExact(r: DistributedCheckResult): void {
  for (const c of r.traffic.categories) expect(c.mismatchedGpus, c.kind).toEqual([]);
  expect(r.traffic.perLink.measuredPlanned).toEqual(r.traffic.perLink.predictedPlanned);
}

const quantity = (r: DistributedCheckResult, name: string) => r.quantities.find((q) => q.name === name)!;

describe("training lowerings compute what one device computes", () => {
  it("any pipeline (1F1B, ZB1P, DualPipe, DualPipeV) × DP (all-reduce, ZeRO-1) × TP+SP (all-gather/reduce-scatter) × EP (node-limited all-to-all, binding node limits included): loss and every gradient within 1e-4, traffic exact (150 cases)", () => {
    fc.assert(
      fc.property(trainingCaseArb(), (c) => {
        const r = run(c);
        expect(r.maxRelDiff).toBeLessThan(DEFAULT_TOLERANCE);
        expect(r.passes).toBe(true);
        expectTrafficExact(r);
        if (c.schedule.kind === "training" && c.schedule.nodeLimit !== null) expect(r.traffic.routes.maxNodesPerToken).toBeLessThanOrEqual(c.schedule.nodeLimit);
      }),
      { numRuns: 150, seed: 0x6a11 },
    );
  });

  it("pipeline only (p2p send/recv, local hand-offs; 1F1B, ZB1P, DualPipeV; dense, dp 1, tp 1, no MTP): loss and every gradient bitwise (30 cases)", () => {
    fc.assert(
      fc.property(trainingCaseArb({ moe: false, mtp: false, pipelines: ["1f1b", "zb1p", "dualpipev"], tp: [1], dp: [1] }), (c) => {
        const r = run(c);
        expect(r.bitwise).toBe(true);
        expect(r.maxAbsDiff).toBe(0);
      }),
      { numRuns: 30, seed: 0x6a12 },
    );
  });

  it("pipeline × DP all-reduce or ZeRO-1 reduce-scatter (dense, tp 1): loss bitwise (each sequence's forward is the same ops), gradients within 1e-4 (the DP sum re-associates) (20 cases)", () => {
    fc.assert(
      fc.property(trainingCaseArb({ moe: false, tp: [1], dp: [2, 4] }), (c) => {
        const r = run(c);
        expect(quantity(r, "loss").bitwise).toBe(true);
        expect(quantity(r, "loss.main").bitwise).toBe(true);
        expect(r.maxRelDiff).toBeLessThan(DEFAULT_TOLERANCE);
      }),
      { numRuns: 20, seed: 0x6a13 },
    );
  });
});

describe("serving lowerings produce the same tokens as one device", () => {
  it("prefill and decode × attention TP+SP × EP with redundant experts (and shared experts as routed): same greedy tokens and MTP drafts, logits within 1e-4, traffic exact (60 cases)", () => {
    fc.assert(
      fc.property(servingCaseArb(), (c) => {
        const r = run(c);
        expect(r.tokens!.equal).toBe(true);
        expect(r.maxRelDiff).toBeLessThan(DEFAULT_TOLERANCE);
        expectTrafficExact(r);
      }),
      { numRuns: 60, seed: 0x6a14 },
    );
  });
});

/** Sends micro-batch 0's first activation to the sending rank itself instead of the next stage. */
function misroute(plan: Plan): Plan {
  let done = false;
  return {
    ...plan,
    programs: plan.programs.map((p) => {
      if (p.kind !== "training") return p;
      const ops = (p as TrainingProgram).ops.map((o) => {
        if (done || o.op !== "F" || o.send === null) return o;
        done = true;
        return { ...o, send: { ...o.send, peer: p.pipelineRank } };
      });
      return { ...p, ops };
    }),
  };
}

describe("broken lowerings are caught for the right reason", () => {
  it("a dropped combine weight (top-2 routing): an MoE gradient or the logits leave the tolerance; the traffic still matches (20 cases)", () => {
    const arb = fc.oneof(trainingCaseArb({ moe: true }), servingCaseArb()).filter((c) => c.model.moe !== null && c.model.moe.topK === 2);
    fc.assert(
      fc.property(arb, (c) => {
        const r = run(c, { faults: { dropCombineWeight: true } });
        expect(r.passes).toBe(false);
        // Where the fault is: the routed experts' and routers' gradients (training), the logits (serving).
        const hit = r.quantities.filter((q) => q.maxRelDiff > DEFAULT_TOLERANCE).map((q) => q.name);
        if (c.schedule.kind === "training") expect(hit.some((n) => /\.(moe\.(gate|up|down)|router)$/.test(n))).toBe(true);
        else expect(r.worst).toMatch(/logits$/);
        expectTrafficExact(r);
      }),
      { numRuns: 20, seed: 0x6a15 },
    );
  });

  it("a micro-batch routed to the wrong stage: a DSV9401 deadlock naming the rank that waits for it (20 cases)", () => {
    const arb = trainingCaseArb({ pipelines: ["1f1b", "zb1p", "dualpipe"] }).filter((c) => c.schedule.kind === "training" && c.schedule.pp > 1);
    fc.assert(
      fc.property(arb, (c) => {
        const out = runDistributedCheck(specOf(c), "s", { seed: 1, seqCap: SEQ_CAP, editPlan: misroute });
        expect(out.result).toBeNull();
        expect(out.diagnostics[0]!.code).toBe("DSV9401");
        expect(out.diagnostics[0]!.message).toMatch(/waits for the activation of micro-batch 0 \(dir \d\) from GPU \d+/);
      }),
      { numRuns: 20, seed: 0x6a16 },
    );
  });
});
