/**
 * Reading what the simulator and the report need from a bundle written by `dsv3 compile`: the
 * normalised Spec (`spec.json`), the Plan (`plan/plan.json` with its programs `plan/programs/*.json`
 * and `plan/experts.json` put back in place) and `stats.json`. The bundle is verified first (every
 * file's hash against the manifest), and the Spec is checked against its JSON Schema, so a bundle
 * that was edited by hand is refused with a reason rather than simulated.
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ExpertPlacementPlan, Plan, Program } from "../../compiler/plan/plan.js";
import { PLAN_VERSION } from "../../compiler/plan/plan.js";
import { validateSpec } from "../../compiler/spec-schema.js";
import type { Spec } from "../../compiler/spec.js";
import type { Stats } from "../../compiler/stats.js";
import { verifyBundle } from "../bundle-verify.js";

export interface BundleInput {
  spec: Spec;
  plan: Plan;
  stats: Stats | null;
}

export type BundleRead = { ok: true; input: BundleInput } | { ok: false; reason: string };

function readJson(dir: string, file: string): { ok: true; value: unknown } | { ok: false; reason: string } {
  let text: string;
  try {
    text = readFileSync(join(dir, file), "utf8");
  } catch {
    return { ok: false, reason: `${file} is missing or unreadable` };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    return { ok: false, reason: `${file} is not valid JSON (${(e as Error).message})` };
  }
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

export function readBundle(dir: string): BundleRead {
  const verified = verifyBundle(dir);
  if (!verified.ok) {
    const p = verified.problems[0]!;
    const what =
      p.kind === "missing" ? `file ${p.path} is missing` : p.kind === "modified" ? `file ${p.path} was modified` : p.kind === "unlisted" ? `file ${p.path} is not in the manifest` : "it has no valid manifest.json";
    return { ok: false, reason: `${what} (dsv3 verify lists every problem)` };
  }
  const spec = readJson(dir, "spec.json");
  if (!spec.ok) return spec;
  const schemaErrors = validateSpec(spec.value);
  if (schemaErrors.length > 0) return { ok: false, reason: `spec.json is not a Spec of this version (${schemaErrors[0]})` };
  const summary = readJson(dir, "plan/plan.json");
  if (!summary.ok) return summary;
  const s = summary.value;
  if (!isObject(s) || s.planVersion !== PLAN_VERSION || !Array.isArray(s.programs) || !isObject(s.schedule) || !isObject(s.memory) || !isObject(s.traffic)) {
    return { ok: false, reason: `plan/plan.json is not a plan of version ${PLAN_VERSION}` };
  }
  const programs: Program[] = [];
  for (const entry of s.programs as unknown[]) {
    if (!isObject(entry) || typeof entry.file !== "string") return { ok: false, reason: "plan/plan.json lists a program without its file" };
    const p = readJson(dir, entry.file);
    if (!p.ok) return p;
    if (!isObject(p.value) || !Array.isArray(p.value.ops)) return { ok: false, reason: `${entry.file} is not a program` };
    programs.push(p.value as unknown as Program);
  }
  let experts: ExpertPlacementPlan | null = null;
  if (isObject(s.experts)) {
    if (typeof s.experts.file !== "string") return { ok: false, reason: "plan/plan.json names no experts file" };
    const e = readJson(dir, s.experts.file);
    if (!e.ok) return e;
    experts = e.value as ExpertPlacementPlan;
  }
  const plan = { ...(s as unknown as Plan), programs, experts };
  const stats = readJson(dir, "stats.json");
  return { ok: true, input: { spec: spec.value as Spec, plan, stats: stats.ok ? (stats.value as Stats) : null } };
}
