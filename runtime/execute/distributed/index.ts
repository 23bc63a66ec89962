/**
 * `dsv3 run SPEC --schedule NAME --backend cpu`: run one step of the schedule's plan on virtual ranks
 * and the same step on one device, and compare them — numbers and bytes.
 *
 *   scaled-schedule.ts (the schedule shrunk for the CPU, same structure) → buildPlan → rank-weights.ts
 *   (each GPU's weights through one RankWeightSource) → training-executor.ts / serving-executor.ts
 *   (every GPU runs its program; collectives.ts, expert-all-to-all.ts, rank-layer.ts) → the same
 *   step on one device (training-step.ts / serving-reference.ts) → compare.ts → traffic-check.ts.
 *
 * Training compares the loss (total, main, each MTP depth, balance) and every parameter's gradient;
 * serving compares each sequence's logits, greedy tokens and MTP drafts (decode: also the step's
 * input tokens). Same spec, schedule and seed ⇒ the same result, byte for byte.
 */
import { computeStats } from "../../../compiler/stats.js";
import { epGroupShape } from "../../../compiler/plan/expected-traffic.js";
import type { Plan } from "../../../compiler/plan/plan.js";
import { RecipeBytes } from "../../../compiler/plan/recipe-bytes.js";
import { mulberry32 } from "../../../compiler/seeded-random.js";
import type { ScheduleSpec, ServingSchedule, Spec } from "../../../compiler/spec.js";
import { makeDiagnostic, type Diagnostic } from "../../../dsl/diagnostic.js";
import { DEFAULT_INIT_STD, initModelWeights, parameterList, type ModelWeights } from "../model-weights.js";
import { stepConfigOf, trainingStep } from "../training-step.js";
import { DeadlockError } from "./collectives.js";
import { diffOf, summarize, type Comparison, type QuantityDiff } from "./compare.js";
import { trainingNodeLimit, type LoweringFaults } from "./rank-layer.js";
import { slicedWeightSource, type RankWeightSource } from "./rank-weights.js";
import { scaleSchedule, type ScaledRun } from "./scaled-schedule.js";
import { referenceServe } from "./serving-reference.js";
import { runDistributedServing } from "./serving-executor.js";
import { checkTraffic, type TrafficCheck } from "./traffic-check.js";
import { runDistributedTraining } from "./training-executor.js";

export { DeadlockError, runRanks, VirtualCluster } from "./collectives.js";
export type { RankWeights, RankWeightSource } from "./rank-weights.js";
export { slicedWeightSource } from "./rank-weights.js";
export type { LoweringFaults } from "./rank-layer.js";

/** maxRelDiff above this fails the check (the issue's bar; FP32 re-association gives ≈1e-7). */
export const DEFAULT_TOLERANCE = 1e-4;
/** Largest model (parameters, MTP included) and cluster the CPU executor takes. */
export const CPU_MAX_PARAMETERS = 50_000_000;
export const CPU_MAX_GPUS = 256;

export interface DistributedCheckOptions {
  seed?: number;
  seqCap?: number;
  batchCap?: number;
  tolerance?: number;
  faults?: LoweringFaults;
  /** Replace the default weight source (the sliced single-device weights). */
  weightSource?: (run: ScaledRun, full: ModelWeights<Float32Array>) => RankWeightSource;
  /** Change the plan before it runs (the broken-lowering tests). */
  editPlan?: (plan: Plan) => Plan;
}

export interface DistributedCheckResult {
  spec: string;
  schedule: string;
  kind: ScheduleSpec["kind"];
  seed: number;
  gpus: number;
  scaling: string;
  tolerance: number;
  /** maxRelDiff ≤ tolerance (and, serving, the same tokens). */
  passes: boolean;
  maxAbsDiff: number;
  maxRelDiff: number;
  worst: string;
  /** Every quantity bit for bit equal. */
  bitwise: boolean;
  bitwiseQuantities: number;
  quantities: QuantityDiff[];
  /** Serving: generated tokens per sequence, distributed and single-device. */
  tokens: { distributed: number[][]; singleDevice: number[][]; equal: boolean } | null;
  traffic: TrafficCheck;
}

export type DistributedCheckOutcome = { result: DistributedCheckResult; diagnostics: Diagnostic[] } | { result: null; diagnostics: Diagnostic[] };

function unsupported(spec: Spec, s: ScheduleSpec): string | null {
  const m = spec.model;
  if (m.attention.kind !== "mla") return `attention ${m.attention.kind} (the executor runs MLA)`;
  if (m.tieEmbeddings) return "tied embeddings";
  if (m.denseFfn !== null && m.denseFfn.activation !== "swiglu") return `a ${m.denseFfn.activation} dense FFN (the executor runs SwiGLU)`;
  if (m.moe !== null && m.moe.activation !== "swiglu") return `${m.moe.activation} experts (the executor runs SwiGLU)`;
  const tp = s.kind === "training" ? s.tp : s.attention.tp;
  const sp = s.kind === "training" ? s.sp : s.attention.sp;
  if (tp > 1 && !sp) return `tp = ${tp} without sequence parallelism (the executor splits rows over TP; set sp = true)`;
  if (m.vocab % tp !== 0) return `a vocabulary of ${m.vocab} that tp = ${tp} does not divide (vocabulary-parallel head)`;
  if (s.kind === "training" && m.denseFfn !== null && m.denseFfn.intermediate % tp !== 0) return `a dense intermediate of ${m.denseFfn.intermediate} that tp = ${tp} does not divide`;
  if (s.kind === "training" && m.moe !== null && (m.moe.sharedExperts * m.moe.expertIntermediate) % tp !== 0) return `shared experts of width ${m.moe.sharedExperts * m.moe.expertIntermediate} that tp = ${tp} does not divide`;
  const ep = s.kind === "training" ? s.ep : s.moe.ep;
  const gpn = spec.cluster.gpusPerNode;
  if (m.moe !== null && ep > gpn && ep % gpn !== 0) return `an EP group of ${ep} GPUs that does not fill whole nodes of ${gpn} (the IB relay would lie outside the group)`;
  const nodes = epGroupShape(ep, gpn).nodes;
  if (m.moe !== null && s.kind !== "training" && s.nodeLimit !== null && s.nodeLimit < nodes) return `a serving node_limit = ${s.nodeLimit} below the ${nodes} nodes of an EP group (with redundant replicas an expert has no single node)`;
  if (m.moe !== null && s.kind === "training" && s.nodeLimit !== null && s.nodeLimit * (m.moe.routedExperts / nodes) < m.moe.expertsPerToken)
    return `node_limit = ${s.nodeLimit} leaves ${s.nodeLimit * (m.moe.routedExperts / nodes)} experts for top-${m.moe.expertsPerToken}`;
  return null;
}

/** Runs the check; user errors come back as DSV94xx (or the planner's) diagnostics. */
export function runDistributedCheck(spec: Spec, scheduleName: string, options: DistributedCheckOptions = {}): DistributedCheckOutcome {
  const seed = options.seed ?? 0;
  const tolerance = options.tolerance ?? DEFAULT_TOLERANCE;
  const s = spec.schedules.find((x) => x.name === scheduleName);
  if (s === undefined) {
    const names = spec.schedules.map((x) => x.name);
    return { result: null, diagnostics: [makeDiagnostic("DSV9002", null, { name: scheduleName, available: names.length ? names.join(", ") : "none" })] };
  }
  const params = computeStats(spec).params;
  const paramCount = params.total + params.mtp;
  const gpus = s.kind === "training" ? s.worldSize : s.gpus;
  if (paramCount > CPU_MAX_PARAMETERS || gpus > CPU_MAX_GPUS) {
    const detail = `${paramCount.toLocaleString("en-US")} parameters on ${gpus} GPUs (the executor holds every rank's weights in one process; at most ${CPU_MAX_PARAMETERS.toLocaleString("en-US")} parameters and ${CPU_MAX_GPUS} GPUs)`;
    return { result: null, diagnostics: [makeDiagnostic("DSV9402", null, { schedule: s.name, detail }, "check the schedule on a toy model of the same shape (as specs/tiny.dsv3 does for DeepSeek-V3): keep the schedule block, shrink hidden, vocab and the expert width")] };
  }
  const why = unsupported(spec, s);
  if (why !== null) return { result: null, diagnostics: [makeDiagnostic("DSV9404", null, { schedule: s.name, detail: why })] };
  const scaled = scaleSchedule(spec, scheduleName, { ...(options.seqCap !== undefined ? { seqCap: options.seqCap } : {}), ...(options.batchCap !== undefined ? { batchCap: options.batchCap } : {}) });
  if ("error" in scaled) return { result: null, diagnostics: scaled.diagnostics };
  const plan = options.editPlan ? options.editPlan(scaled.plan) : scaled.plan;
  const model = spec.model;
  const full = initModelWeights<Float32Array>(model, seed, "f32", DEFAULT_INIT_STD);
  const source = options.weightSource ? options.weightSource(scaled, full) : slicedWeightSource(scaled.spec, plan, full);
  const u = mulberry32((seed ^ 0x0d157e5) >>> 0);
  const token = (): number => Math.floor(u() * model.vocab);
  const recipe = new RecipeBytes(spec.precision);
  const d = model.hidden;
  try {
    if (scaled.schedule.kind === "training") {
      const sc = scaled.schedule;
      const batch = Array.from({ length: sc.dp * sc.microbatches }, () => Int32Array.from({ length: sc.seqLen }, token));
      const r = runDistributedTraining({ spec: scaled.spec, plan, weights: source, batch, ...(options.faults ? { faults: options.faults } : {}) });
      // The single-device step routes with the same gate, node limit included (it is part of the model's routing in training).
      const cfg = stepConfigOf(model, sc.seqLen);
      const nl = trainingNodeLimit(model, sc.ep, spec.cluster.gpusPerNode, sc.nodeLimit);
      if (nl !== null) for (const l of [...cfg.layers, ...cfg.mtpBlocks]) if (l.ffn.kind === "moe") l.ffn.gate = { ...l.ffn.gate, nodeLimit: nl };
      const ref = trainingStep(full, cfg, batch);
      const qs: QuantityDiff[] = [
        diffOf("loss", [r.losses.total], [ref.losses.total]),
        diffOf("loss.main", [r.losses.main], [ref.losses.main]),
        ...r.losses.mtp.map((l, k) => diffOf(`loss.mtp${k + 1}`, [l], [ref.losses.mtp[k]!])),
        diffOf("loss.balance", [r.losses.aux], [ref.losses.aux]),
      ];
      const a = parameterList(r.grads);
      const b = parameterList(ref.grads);
      a.forEach((t, i) => qs.push(diffOf(`grad.${t.name}`, t.value, b[i]!.value)));
      const traffic = checkTraffic(plan, r.cluster, r.experts.log, d, recipe.dispatchCopy(d), recipe.combineCopy(d));
      return finish(spec, s, seed, plan, scaled.scaling, tolerance, summarize(qs), null, traffic);
    }
    const sv = scaled.schedule as ServingSchedule;
    const groups = sv.attention.dp;
    const D = Math.min(sv.mtpSpeculation, model.mtp.depth);
    const ctx = sv.kind === "prefill" ? sv.seqLen : sv.seqLen - (1 + sv.mtpSpeculation);
    const sequences = Array.from({ length: groups }, () => Array.from({ length: sv.batchPerGpu }, () => Int32Array.from({ length: Math.max(1, ctx) }, token)));
    const r = runDistributedServing({ spec: scaled.spec, plan, schedule: sv, weights: source, sequences, ...(options.faults ? { faults: options.faults } : {}) });
    const qs: QuantityDiff[] = [];
    const distTokens: number[][] = [];
    const refTokens: number[][] = [];
    sequences.forEach((seqs, g) =>
      seqs.forEach((seq, j) => {
        const o = r.outputs[g]![j]!;
        let ref;
        let refStep: number[] = [];
        if (sv.kind === "prefill") ref = referenceServe(model, full, seq, 0, D);
        else {
          const c = referenceServe(model, full, seq, seq.length - 1, D);
          refStep = [c.greedy[c.greedy.length - 1]!, ...c.drafts];
          const ext = Int32Array.from([...seq, ...refStep]);
          ref = referenceServe(model, full, ext, seq.length, D);
        }
        const name = `group${g}.seq${j}`;
        qs.push(diffOf(`${name}.logits`, o.logits, ref.logits));
        o.draftLogits.forEach((l, k) => qs.push(diffOf(`${name}.mtp${k + 1}.logits`, l, ref.draftLogits[k]!)));
        distTokens.push([...(o.stepTokens ?? []), ...o.greedy, ...o.drafts]);
        refTokens.push([...refStep, ...ref.greedy, ...ref.drafts]);
      }),
    );
    const equal = distTokens.every((t, i) => t.length === refTokens[i]!.length && t.every((x, k) => x === refTokens[i]![k]));
    const traffic = checkTraffic(plan, r.cluster, r.experts.log, d, recipe.dispatchCopy(d), recipe.combineCopy(d));
    return finish(spec, s, seed, plan, scaled.scaling, tolerance, summarize(qs), { distributed: distTokens, singleDevice: refTokens, equal }, traffic);
  } catch (e) {
    if (e instanceof DeadlockError) {
      const detail = e.blocked.map((b) => `GPU ${b.gpu} in ${b.op} waits for ${b.waitingFor}`).join("; ");
      return { result: null, diagnostics: [makeDiagnostic("DSV9401", null, { schedule: s.name, detail }, "a receive with no matching send: check each op's recv/send peers and the micro-batch order of the programs (dsv3 plan --json shows them)")] };
    }
    throw e;
  }
}

function finish(spec: Spec, s: ScheduleSpec, seed: number, plan: Plan, scaling: string, tolerance: number, c: Comparison, tokens: DistributedCheckResult["tokens"], traffic: TrafficCheck): DistributedCheckOutcome {
  const passes = c.maxRelDiff <= tolerance && (tokens === null || tokens.equal);
  const result: DistributedCheckResult = {
    spec: spec.model.name,
    schedule: s.name,
    kind: s.kind,
    seed,
    gpus: plan.gpus,
    scaling,
    tolerance,
    passes,
    maxAbsDiff: c.maxAbsDiff,
    maxRelDiff: c.maxRelDiff,
    worst: c.worst,
    bitwise: c.bitwise,
    bitwiseQuantities: c.bitwiseCount,
    quantities: c.quantities,
    tokens,
    traffic,
  };
  const diagnostics: Diagnostic[] = [];
  if (!passes) {
    diagnostics.push(
      makeDiagnostic(
        "DSV9405",
        null,
        { schedule: s.name, diff: c.maxRelDiff.toExponential(3), worst: c.worst, tolerance: tolerance.toExponential(1) },
        tokens !== null && !tokens.equal ? "the generated tokens differ too; compare the failing quantity's op in the plan's programs" : "the failing quantity names the op to look at; compare it across the plan's programs",
      ),
    );
  }
  if (!traffic.matches) {
    const bad = traffic.categories.filter((k) => k.mismatchedGpus.length > 0).map((k) => `${k.kind} measured ${k.measured} B vs predicted ${k.predicted} B (GPUs ${k.mismatchedGpus.slice(0, 4).join(", ")})`);
    const pl = traffic.perLink;
    if (pl.measuredPlanned.nvlink !== pl.predictedPlanned.nvlink || pl.measuredPlanned.ib !== pl.predictedPlanned.ib) bad.push(`per link NVLink ${pl.measuredPlanned.nvlink}/${pl.predictedPlanned.nvlink} B, IB ${pl.measuredPlanned.ib}/${pl.predictedPlanned.ib} B`);
    diagnostics.push(makeDiagnostic("DSV9406", null, { schedule: s.name, detail: bad.join("; ") }));
  }
  return { result, diagnostics };
}

function bytes(n: number): string {
  return `${Math.round(n).toLocaleString("en-US")} B`;
}

/** The text report. */
export function distributedCheckText(r: DistributedCheckResult): string {
  const lines: string[] = [];
  lines.push(`${r.spec} · schedule '${r.schedule}' (${r.kind}) on ${r.gpus} virtual ranks vs one device, seed ${r.seed}`);
  lines.push(`  ${r.scaling}`);
  lines.push(`  maxAbsDiff ${r.maxAbsDiff.toExponential(3)}  maxRelDiff ${r.maxRelDiff.toExponential(3)} (worst: ${r.worst})  tolerance ${r.tolerance.toExponential(1)}  ${r.passes ? "PASS" : "FAIL"}`);
  lines.push(`  bitwise: ${r.bitwise ? "every quantity" : `${r.bitwiseQuantities} of ${r.quantities.length} quantities`} bit for bit equal`);
  if (r.kind === "training") {
    const loss = r.quantities.find((q) => q.name === "loss")!;
    lines.push(`  loss: maxRelDiff ${loss.maxRelDiff.toExponential(3)}${loss.bitwise ? " (bitwise)" : ""}; gradients: ${r.quantities.filter((q) => q.name.startsWith("grad.")).length} tensors`);
  }
  if (r.tokens !== null) lines.push(`  tokens: ${r.tokens.equal ? "the same" : "DIFFERENT"} — distributed ${r.tokens.distributed.map((t) => t.join(",")).join(" | ")}`);
  const t = r.traffic;
  lines.push(`  traffic (bytes sent, all GPUs; ${t.matches ? "predicted = measured" : "MISMATCH"}):`);
  lines.push(`    ${"kind".padEnd(18)} ${"measured".padStart(14)} ${"predicted".padStart(14)}`);
  for (const c of t.categories) lines.push(`    ${c.kind.padEnd(18)} ${bytes(c.measured).padStart(14)} ${bytes(c.predicted).padStart(14)}${c.mismatchedGpus.length > 0 ? `  differs on GPUs ${c.mismatchedGpus.join(", ")}` : ""}`);
  lines.push(`    per link (p2p + dispatch + combine): NVLink ${bytes(t.perLink.measuredPlanned.nvlink)} measured / ${bytes(t.perLink.predictedPlanned.nvlink)} predicted, IB ${bytes(t.perLink.measuredPlanned.ib)} / ${bytes(t.perLink.predictedPlanned.ib)}`);
  lines.push(`    all traffic per link: NVLink ${bytes(t.perLink.measured.nvlink)}, IB ${bytes(t.perLink.measured.ib)}`);
  if (t.routes.exchanges > 0) lines.push(`    routes: ${t.routes.exchanges} dispatches of ${t.routes.tokens} tokens; distinct nodes per token ${t.routes.meanNodesPerToken} on average, ${t.routes.maxNodesPerToken} at most`);
  lines.push(`    not in the planner's model: ${t.unmodelled.map((u) => `${u.kind} ${bytes(u.bytes)}`).join(", ")}`);
  lines.push(
    `    the plan's expected all-to-all (uniform routing): dispatch NVLink ${bytes(t.expectedAllToAll.dispatch.nvlink)} IB ${bytes(t.expectedAllToAll.dispatch.ib)}, combine NVLink ${bytes(t.expectedAllToAll.combine.nvlink)} IB ${bytes(t.expectedAllToAll.combine.ib)}`,
  );
  lines.push(`    compared: ${t.statement}`);
  return lines.join("\n") + "\n";
}

/** The JSON report: the result with numbers as numbers (no timings: the same run gives the same bytes). */
export function distributedCheckJson(r: DistributedCheckResult): string {
  return JSON.stringify(r, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v), 2) + "\n";
}
