/**
 * Which experts each GPU holds.
 *
 * Training: contiguous expert parallelism, as `placeExpertGroups` lays it out: in every MoE layer
 * (the MTP blocks included) expert e sits on EP rank floor(e / (E/ep)); the gate's groups then lie
 * on whole nodes when the group size is a multiple of the experts per node's share, which is what
 * lets the group limit enforce the node limit.
 *
 * Serving with redundant experts: the EPLB placement (`planRedundantExperts`, the reference greedy
 * guarded against doing worse than no redundancy) from a per-layer load profile. With no observed
 * load the plan uses a deterministic synthetic one and says so: in layer l, routed expert e gets a
 * Zipf-like share 1/(1 + rank_l(e))^s of the layer's K·T routed picks, rank_l a permutation drawn
 * from a seeded generator (mulberry32(seed + l)), s = 0.5, T = 2^20 tokens; a shared expert served
 * as routed is picked by every token (load T). Shared experts served as routed are extra logical
 * experts numbered after the routed ones; the group-limited hierarchical policy is used when the
 * groups divide the logical experts and the nodes divide the groups, the global one otherwise.
 */

import { EplbArgumentError, planRedundantExperts } from "./eplb.js";
import type { EplbOptions, ExpertLoads } from "./eplb.js";
import type { ServingSchedule, Spec, TrainingSchedule } from "../spec.js";
import type { ExpertPlacementPlan } from "./plan.js";
import { layerKinds } from "./partition.js";
import { epGroupShape } from "./expected-traffic.js";
import { mulberry32 } from "../seeded-random.js";

export const SYNTHETIC_LOAD = { exponent: 0.5, seed: 20241226, tokens: 1 << 20 } as const;

/** Main-model MoE layers, then the MoE blocks of `mtpModules` MTP modules (numbered layers + k). */
export function moeLayerIds(spec: Spec, mtpModules: number): number[] {
  const ids: number[] = [];
  layerKinds(spec.model).forEach((k, l) => {
    if (k === "moe") ids.push(l);
  });
  if (spec.model.moe !== null) for (let k = 0; k < mtpModules; k++) ids.push(spec.model.layers + k);
  return ids;
}

export function trainingExperts(spec: Spec, schedule: TrainingSchedule): ExpertPlacementPlan | null {
  const moe = spec.model.moe;
  if (moe === null) return null;
  const E = moe.routedExperts;
  return {
    policy: "contiguous",
    epSize: schedule.ep,
    slotsPerGpu: E / schedule.ep,
    logicalExperts: E,
    redundantSlots: 0,
    sharedAsRouted: false,
    layers: moeLayerIds(spec, spec.model.mtp.depth),
    slots: [Array.from({ length: E }, (_, e) => e)],
    sameForAllLayers: true,
    loadProfile: null,
    balance: null,
  };
}


/** The synthetic load profile (see the module comment): layers × logical experts, whole tokens. */
export function syntheticLoads(layers: number, routed: number, sharedAsRouted: number, topK: number): ExpertLoads {
  const experts = routed + sharedAsRouted;
  const load = new Float64Array(layers * experts);
  const weights = Array.from({ length: routed }, (_, r) => 1 / Math.pow(1 + r, SYNTHETIC_LOAD.exponent));
  const total = weights.reduce((a, w) => a + w, 0);
  const picks = topK * SYNTHETIC_LOAD.tokens;
  for (let l = 0; l < layers; l++) {
    const next = mulberry32(SYNTHETIC_LOAD.seed + l);
    const perm = Array.from({ length: routed }, (_, e) => e);
    for (let i = routed - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [perm[i], perm[j]] = [perm[j]!, perm[i]!];
    }
    for (let rank = 0; rank < routed; rank++) load[l * experts + perm[rank]!] = Math.round((picks * weights[rank]!) / total);
    for (let s = 0; s < sharedAsRouted; s++) load[l * experts + routed + s] = SYNTHETIC_LOAD.tokens;
  }
  return { layers, experts, load };
}

export type ServingExperts = { plan: ExpertPlacementPlan; candidateNodes: number } | { error: string; fix?: string };

export function servingExperts(spec: Spec, schedule: ServingSchedule): ServingExperts | null {
  const moe = spec.model.moe;
  if (moe === null) return null;
  const shared = schedule.moe.sharedAsRouted ? moe.sharedExperts : 0;
  const logical = moe.routedExperts + shared;
  const slotsTotal = moe.routedExperts + schedule.moe.redundantExperts;
  const ep = schedule.moe.ep;
  const layers = moeLayerIds(spec, Math.min(schedule.mtpSpeculation, spec.model.mtp.depth));
  const shape = epGroupShape(ep, spec.cluster.gpusPerNode);
  const nodes = ep % shape.gpusPerNode === 0 ? shape.nodes : 1;
  const groups = moe.gate.groups > 1 && logical % moe.gate.groups === 0 && moe.gate.groups % nodes === 0 ? moe.gate.groups : 1;
  const opts: EplbOptions = { replicas: slotsTotal, groups, nodes, gpus: ep };
  if (slotsTotal < logical) {
    return {
      error: `${slotsTotal} expert slots (${moe.routedExperts} routed + ${schedule.moe.redundantExperts} redundant) cannot hold ${logical} experts (${moe.routedExperts} routed + ${shared} shared served as routed)`,
      fix: `use redundant_experts ≥ ${shared} (and a multiple that keeps the slots divisible by ep = ${ep})`,
    };
  }
  const loads = syntheticLoads(layers.length, moe.routedExperts, shared, moe.expertsPerToken);
  let planned;
  try {
    planned = planRedundantExperts(loads, opts);
  } catch (e) {
    if (e instanceof EplbArgumentError) return e.detail.fix === undefined ? { error: e.detail.message } : { error: e.detail.message, fix: e.detail.fix };
    throw e;
  }
  const p = planned.placement;
  const slots: number[][] = [];
  for (let l = 0; l < layers.length; l++) slots.push(Array.from(p.phy2log.subarray(l * slotsTotal, (l + 1) * slotsTotal)));
  const ratio = (s: { max: Float64Array; mean: Float64Array }): number => {
    let acc = 0;
    for (let l = 0; l < s.max.length; l++) acc += s.mean[l]! > 0 ? s.max[l]! / s.mean[l]! : 1;
    return Math.round((acc / s.max.length) * 1e4) / 1e4;
  };
  // Hierarchical placement keeps each gate group on one node: the group limit bounds the nodes.
  const candidateNodes =
    schedule.nodeLimit ?? (p.policy === "hierarchical" && groups > 1 ? Math.min(moe.gate.topGroups, nodes) : nodes);
  return {
    plan: {
      policy: p.policy === "hierarchical" ? "eplb-hierarchical" : "eplb-global",
      epSize: ep,
      slotsPerGpu: slotsTotal / ep,
      logicalExperts: logical,
      redundantSlots: schedule.moe.redundantExperts,
      sharedAsRouted: schedule.moe.sharedAsRouted,
      layers,
      slots,
      sameForAllLayers: false,
      loadProfile: {
        kind: "synthetic-zipf",
        exponent: SYNTHETIC_LOAD.exponent,
        seed: SYNTHETIC_LOAD.seed,
        note:
          `no observed expert load: a synthetic profile (layer l: routed expert e gets a share 1/(1+rank_l(e))^${SYNTHETIC_LOAD.exponent} ` +
          `of the routed picks, rank_l a seeded permutation, seed ${SYNTHETIC_LOAD.seed}${shared > 0 ? "; each shared expert picked by every token" : ""}); ` +
          "replace it with measured loads (dsv3 eplb --load) before deployment",
      },
      balance: { before: ratio(planned.before), after: ratio(planned.after) },
    },
    candidateNodes,
  };
}
