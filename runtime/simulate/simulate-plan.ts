/**
 * The simulator's entry: a checked Spec and its Plan (from `buildPlan`, or read from a bundle) →
 * the simulated figures of one step, and the timeline the trace and the report draw.
 */

import { buildPlan } from "../../compiler/plan/index.js";
import type { Plan } from "../../compiler/plan/plan.js";
import type { Spec } from "../../compiler/spec.js";
import { simulateServing } from "./serving.js";
import type { ServingRun, ServingSimulation } from "./serving.js";
import { simulateTraining } from "./training.js";
import type { TrainingRun, TrainingSimulation } from "./training.js";

export type Simulation = TrainingSimulation | ServingSimulation;

export type SimulationRun = ({ kind: "training" } & TrainingRun) | ({ kind: "serving" } & ServingRun);

/** Acceptance rate of an MTP draft when none is given: the low end of the 85–90% the DeepSeek-V3 report measured for the second token. */
export const DEFAULT_ACCEPTANCE_RATE = 0.85;

export interface SimulateOptions {
  acceptanceRate?: number;
}

/** The same Spec with one serving schedule's MTP speculation turned off. */
export function withoutSpeculation(spec: Spec, schedule: string): Spec {
  return { ...spec, schedules: spec.schedules.map((s) => (s.name === schedule && s.kind !== "training" ? { ...s, mtpSpeculation: 0 } : s)) };
}

export function simulatePlan(spec: Spec, plan: Plan, options: SimulateOptions = {}): SimulationRun {
  if (plan.schedule.kind === "training") return { kind: "training", ...simulateTraining(spec, plan) };
  let plain: { spec: Spec; plan: Plan } | null = null;
  const schedule = spec.schedules.find((s) => s.name === plan.schedule.name);
  if (schedule !== undefined && schedule.kind === "decode" && schedule.mtpSpeculation > 0) {
    const s = withoutSpeculation(spec, schedule.name);
    const p = buildPlan(s, schedule.name).draft;
    if (p !== null) plain = { spec: s, plan: p };
  }
  return { kind: "serving", ...simulateServing(spec, plan, plain, options.acceptanceRate ?? DEFAULT_ACCEPTANCE_RATE) };
}
