/**
 * Predicted = measured traffic. What is compared, per GPU, bytes sent:
 * - p2p: the planner's figure (compiler/plan/traffic.ts: Σ of the program's sends, BF16 hidden
 *   states of one micro-batch's rows), per link by the peer named in each op;
 * - data parallel: the planner's ring figures per parameter group (reduce-scatter of the gradients
 *   and all-gather of the working weights under ZeRO ≥ 1, all-reduce under ZeRO-0), from the plan
 *   alone (its per-program figures are per GPU and carry no link);
 * - tensor parallel: the planner's eight all-gathers/reduce-scatters per layer and micro-batch (serving:
 *   two), from the plan alone;
 * - dispatch and combine per link: the planner's transport rule (`dispatchTraffic`,
 *   node-limited-routing.ts) applied to the routes the gates actually chose in this step — the plan's
 *   own all-to-all figures are expected values under uniform routing, so they are printed beside
 *   the measured bytes but not required to match.
 * Traffic the planner does not model (vocabulary-parallel embedding and head, TP sums of replicated
 * gradients, gate scores gathered for the balance loss) is measured and reported apart.
 */
import { dispatchTraffic, type ExpertPlacement } from "../../../compiler/plan/node-limited-routing.js";
import type { Plan, TrainingProgram } from "../../../compiler/plan/plan.js";
import { epGroupShape } from "../../../compiler/plan/expected-traffic.js";
import { TRAFFIC_KINDS, type TrafficKind, type VirtualCluster } from "./collectives.js";
import type { ExchangeLog } from "./expert-all-to-all.js";

export interface CategoryCheck {
  kind: string;
  /** Sum over GPUs. */
  measured: number;
  predicted: number;
  /** GPUs whose measured bytes differ from their predicted bytes. */
  mismatchedGpus: number[];
}

export interface LinkTotals {
  nvlink: number;
  ib: number;
}

export interface TrafficCheck {
  /** Every compared category, exact per GPU. */
  categories: CategoryCheck[];
  /** Measured bytes per link over every kind of traffic, and the predicted per-link bytes of the kinds the planner places on links (p2p, dispatch, combine). */
  perLink: { measured: LinkTotals; measuredPlanned: LinkTotals; predictedPlanned: LinkTotals };
  /** Measured bytes of traffic the planner does not model, per kind. */
  unmodelled: { kind: string; bytes: number }[];
  /** The routes taken (forward dispatches): how many, and the distinct nodes a token's experts lie on. */
  routes: { exchanges: number; tokens: number; maxNodesPerToken: number; meanNodesPerToken: number };
  /** The plan's expected all-to-all bytes (uniform routing), summed over GPUs, beside the measured. */
  expectedAllToAll: { dispatch: LinkTotals; combine: LinkTotals };
  matches: boolean;
  statement: string;
}

export const TRAFFIC_STATEMENT =
  "exact per GPU: p2p, data-parallel (reduce-scatter, all-gather, all-reduce) and tensor-parallel bytes against the plan's " +
  "figures; dispatch and combine bytes per link against the planner's transport rule (dispatchTraffic) on the routes taken";

function placementOf(log: ExchangeLog, gpusPerNode: number): ExpertPlacement {
  const ep = log.group.members.length;
  const spg = log.group.slotsPerGpu;
  const shape = epGroupShape(ep, gpusPerNode);
  const slots = ep * spg;
  const expertToRank = new Int32Array(slots);
  const expertToNode = new Int32Array(slots);
  for (let s = 0; s < slots; s++) {
    expertToRank[s] = Math.floor(s / spg);
    expertToNode[s] = Math.floor(expertToRank[s]! / shape.gpusPerNode);
  }
  return {
    routedExperts: slots,
    groups: 1,
    epRanks: ep,
    gpusPerNode: shape.gpusPerNode,
    nodes: shape.nodes,
    expertsPerRank: spg,
    expertsPerNode: spg * shape.gpusPerNode,
    groupSize: slots,
    expertToRank,
    expertToNode,
    groupToNode: new Int32Array(1).fill(-1),
    maxNodesPerGroup: shape.nodes,
  };
}

/** The planner's all-to-all rule on the logged routes: per GPU, bytes per kind and link. */
function predictedAllToAll(plan: Plan, logs: readonly ExchangeLog[], hidden: number, dispatchBytes: number, combineBytes: number): { bytes: Map<string, Float64Array>; routes: TrafficCheck["routes"] } {
  const out = new Map<string, Float64Array>();
  const routes = { exchanges: 0, tokens: 0, maxNodesPerToken: 0, meanNodesPerToken: 0 };
  let nodeSum = 0;
  const add = (key: string, gpu: number, v: number): void => {
    let row = out.get(key);
    if (row === undefined) {
      row = new Float64Array(plan.gpus);
      out.set(key, row);
    }
    row[gpu] = row[gpu]! + v;
  };
  for (const log of logs) {
    const members = log.group.members;
    const report = dispatchTraffic({ tokens: members.length * log.tokensPerMember, topK: log.topK, experts: log.slots, weights: new Float32Array(log.slots.length) }, placementOf(log, plan.cluster.gpusPerNode), {
      hidden,
      tokensPerGpu: log.tokensPerMember,
    });
    if (log.pass === "forward") {
      const tokens = members.length * log.tokensPerMember;
      routes.exchanges++;
      routes.tokens += tokens;
      nodeSum += report.perToken.meanNodes * tokens;
      routes.maxNodesPerToken = Math.max(routes.maxNodesPerToken, report.perToken.maxNodes);
    }
    const kd = dispatchBytes / report.dispatchBytesPerCopy;
    const kc = combineBytes / report.combineBytesPerCopy;
    members.forEach((g, m) => {
      add("dispatch/nvlink", g, report.dispatch.nvlinkSend[m]! * kd);
      add("dispatch/ib", g, report.dispatch.ibSend[m]! * kd);
      add("combine/nvlink", g, report.combine.nvlinkSend[m]! * kc);
      add("combine/ib", g, report.combine.ibSend[m]! * kc);
    });
  }
  routes.meanNodesPerToken = routes.tokens > 0 ? Math.round((nodeSum / routes.tokens) * 1e6) / 1e6 : 0;
  return { bytes: out, routes };
}

export function checkTraffic(plan: Plan, cluster: VirtualCluster, logs: readonly ExchangeLog[], hidden: number, dispatchBytes: number, combineBytes: number): TrafficCheck {
  const tr = cluster.traffic;
  const perProgram = new Map(plan.traffic.perProgram.map((p) => [p.program, p]));
  const { bytes: a2a, routes } = predictedAllToAll(plan, logs, hidden, dispatchBytes, combineBytes);
  const categories: CategoryCheck[] = [];
  const check = (kind: string, measuredOf: (g: number) => number, predictedOf: (g: number) => number): void => {
    const c: CategoryCheck = { kind, measured: 0, predicted: 0, mismatchedGpus: [] };
    for (let g = 0; g < plan.gpus; g++) {
      const m = Math.round(measuredOf(g));
      const p = Math.round(predictedOf(g));
      c.measured += m;
      c.predicted += p;
      if (m !== p) c.mismatchedGpus.push(g);
    }
    categories.push(c);
  };
  const figures = (g: number) => perProgram.get(plan.ranks[g]!.program)!;
  check("p2p", (g) => tr.get(g, "p2p"), (g) => figures(g).p2pBytes);
  check("dp_reduce_scatter", (g) => tr.get(g, "dp_reduce_scatter"), (g) => figures(g).dataParallel.reduceScatterBytes);
  check("dp_all_gather", (g) => tr.get(g, "dp_all_gather"), (g) => figures(g).dataParallel.allGatherBytes);
  check("dp_all_reduce", (g) => tr.get(g, "dp_all_reduce"), (g) => figures(g).dataParallel.allReduceBytes);
  check("tp", (g) => tr.get(g, "tp"), (g) => figures(g).tensorParallelBytes);
  for (const k of ["dispatch", "combine"] as const)
    for (const link of ["nvlink", "ib"] as const) check(`${k}/${link}`, (g) => tr.get(g, k, link), (g) => a2a.get(`${k}/${link}`)?.[g] ?? 0);

  // Per link: the kinds the planner places on links.
  const predictedPlanned: LinkTotals = { nvlink: 0, ib: 0 };
  for (const p of plan.programs) {
    if (p.kind !== "training") continue;
    const gpusOf = plan.ranks.filter((r) => r.program === p.id);
    const perRank = plan.schedule.tp * plan.schedule.dp;
    for (const r of gpusOf) {
      for (const o of (p as TrainingProgram).ops) {
        if (o.send === null) continue;
        const peer = o.send.peer * perRank + (r.gpu - r.pp * perRank);
        predictedPlanned[cluster.link(r.gpu, peer)] += o.send.bytes;
      }
    }
  }
  for (const [key, row] of a2a) {
    const link = key.endsWith("/ib") ? "ib" : "nvlink";
    for (const v of row) predictedPlanned[link] += v;
  }
  const measured: LinkTotals = { nvlink: 0, ib: 0 };
  const measuredPlanned: LinkTotals = { nvlink: 0, ib: 0 };
  for (const k of TRAFFIC_KINDS) {
    for (const link of ["nvlink", "ib"] as const) {
      const v = tr.total(k, link);
      measured[link] += v;
      if (k === "p2p" || k === "dispatch" || k === "combine") measuredPlanned[link] += v;
    }
  }
  measured.nvlink = Math.round(measured.nvlink);
  measured.ib = Math.round(measured.ib);
  const unmodelled = (["tp_vocab", "tp_replicated_grads", "tp_aux_scores"] as TrafficKind[]).map((kind) => ({ kind, bytes: Math.round(tr.total(kind)) }));
  const expected = { dispatch: { nvlink: 0, ib: 0 }, combine: { nvlink: 0, ib: 0 } };
  for (let g = 0; g < plan.gpus; g++) {
    const f = figures(g);
    expected.dispatch.nvlink += f.dispatch.nvlinkBytes;
    expected.dispatch.ib += f.dispatch.ibBytes;
    expected.combine.nvlink += f.combine.nvlinkBytes;
    expected.combine.ib += f.combine.ibBytes;
  }
  return {
    categories,
    perLink: { measured, measuredPlanned, predictedPlanned },
    unmodelled,
    routes,
    expectedAllToAll: expected,
    matches: categories.every((c) => c.mismatchedGpus.length === 0) && measuredPlanned.nvlink === predictedPlanned.nvlink && measuredPlanned.ib === predictedPlanned.ib,
    statement: TRAFFIC_STATEMENT,
  };
}
