/**
 * Sweeps: every combination of a few schedule attributes (`pp=8,16 ep=32,64 microbatches=16,32`),
 * each checked by the spec checker (so an invalid combination is named with the checker's own
 * message), planned (one that does not fit in memory is set aside with the plan's reason), and
 * simulated; the configurations that fit are ranked by simulated throughput (tokens/s per GPU;
 * decode: without speculation).
 *
 * Changing `pp` (or `tp`) of a training schedule keeps the schedule's GPUs: dp becomes
 * worldSize / (pp · tp) unless the sweep sets dp too.
 */

import { checkDocuments } from "../../compiler/check/index.js";
import { buildPlan } from "../../compiler/plan/index.js";
import type { ScheduleSpec, Spec } from "../../compiler/spec.js";
import { specToDocument } from "../../compiler/spec-to-ast.js";
import { simulatePlan } from "./simulate-plan.js";

/** Sweepable attributes (`.dsv3` names) and the Spec field each sets. */
export const TRAINING_AXES = ["pp", "ep", "dp", "tp", "microbatches", "zero", "comm_sms"] as const;
export const SERVING_AXES = ["ep", "microbatches", "batch_per_gpu", "redundant_experts", "comm_sms"] as const;

export interface SweepAxis {
  name: string;
  values: number[];
}

export type SweepParse = { ok: true; axes: SweepAxis[] } | { ok: false; message: string; fix: string };

/** Parses `NAME=V1,V2,…` items (one per item; names may not repeat). */
export function parseSweep(items: readonly string[], kind: ScheduleSpec["kind"]): SweepParse {
  const allowed: readonly string[] = kind === "training" ? TRAINING_AXES : SERVING_AXES;
  const axes: SweepAxis[] = [];
  for (const item of items) {
    const m = /^([a-z_]+)=(.+)$/.exec(item.trim());
    if (m === null) return { ok: false, message: `sweep item '${item}' is not NAME=V1,V2,…`, fix: `write it like ${allowed[0]}=8,16` };
    const name = m[1]!;
    if (!allowed.includes(name)) return { ok: false, message: `'${name}' cannot be swept for a ${kind} schedule`, fix: `sweep one of ${allowed.join(", ")}` };
    if (axes.some((a) => a.name === name)) return { ok: false, message: `'${name}' is swept twice`, fix: `give ${name} once with all its values, e.g. ${name}=${m[2]}` };
    const values: number[] = [];
    for (const raw of m[2]!.split(",")) {
      const v = Number(raw.trim());
      if (raw.trim() === "" || !Number.isInteger(v) || v < 0) return { ok: false, message: `'${raw}' in ${name}=${m[2]} is not a whole number`, fix: `use whole numbers, e.g. ${name}=8,16` };
      if (!values.includes(v)) values.push(v);
    }
    axes.push({ name, values });
  }
  return { ok: true, axes };
}

export interface SweepRow {
  settings: Record<string, number>;
  status: "ok" | "invalid" | "does-not-fit";
  reason: string | null;
  tokensPerSecondPerGpu: number | null;
  stepSeconds: number | null;
  mfu: number | null;
  bubbleShare: number | null;
  peakMemoryBytes: number | null;
}

export interface SweepResult {
  schedule: string;
  metric: string;
  /** Fitting configurations first, best throughput first; then the others in sweep order. */
  rows: SweepRow[];
}

function applySettings(spec: Spec, schedule: string, settings: Record<string, number>): Spec {
  const schedules = spec.schedules.map((s): ScheduleSpec => {
    if (s.name !== schedule) return s;
    if (s.kind === "training") {
      const pp = settings.pp ?? s.pp;
      const tp = settings.tp ?? s.tp;
      const dp = settings.dp ?? (settings.pp !== undefined || settings.tp !== undefined ? s.worldSize / (pp * tp) : s.dp);
      return {
        ...s,
        pp,
        tp,
        dp,
        ep: settings.ep ?? s.ep,
        microbatches: settings.microbatches ?? s.microbatches,
        zero: (settings.zero ?? s.zero) as 0 | 1 | 2 | 3,
        commSms: settings.comm_sms ?? s.commSms,
      };
    }
    return {
      ...s,
      moe: { ...s.moe, ep: settings.ep ?? s.moe.ep, redundantExperts: settings.redundant_experts ?? s.moe.redundantExperts },
      microbatches: settings.microbatches ?? s.microbatches,
      batchPerGpu: settings.batch_per_gpu ?? s.batchPerGpu,
      commSms: settings.comm_sms ?? s.commSms,
    };
  });
  return { ...spec, schedules };
}

function combinations(axes: readonly SweepAxis[]): Record<string, number>[] {
  let out: Record<string, number>[] = [{}];
  for (const a of axes) out = out.flatMap((c) => a.values.map((v) => ({ ...c, [a.name]: v })));
  return out;
}

export function runSweep(spec: Spec, schedule: string, axes: readonly SweepAxis[]): SweepResult {
  const rows: SweepRow[] = [];
  const empty = { tokensPerSecondPerGpu: null, stepSeconds: null, mfu: null, bubbleShare: null, peakMemoryBytes: null };
  for (const settings of combinations(axes)) {
    const changed = applySettings(spec, schedule, settings);
    // Re-check the changed Spec as if the user had written it: derived fields and every rule.
    const checked = checkDocuments([specToDocument(changed)]);
    const error = checked.diagnostics.find((d) => d.severity === "error");
    if (checked.spec === null || error !== undefined) {
      rows.push({ settings, status: "invalid", reason: error ? `${error.code}: ${error.message}` : "the spec does not check", ...empty });
      continue;
    }
    const planned = buildPlan(checked.spec, schedule);
    if (planned.plan === null) {
      const d = planned.diagnostics[0];
      rows.push({
        settings,
        status: "does-not-fit",
        reason: d ? `${d.code}: ${d.message}` : "no plan",
        ...empty,
        peakMemoryBytes: planned.draft?.memory.peakBytes ?? null,
      });
      continue;
    }
    const sim = simulatePlan(checked.spec, planned.plan).result;
    const throughput =
      sim.kind === "training" ? sim.tokensPerSecondPerGpu : sim.kind === "prefill" ? sim.prefillTokensPerSecondPerGpu! : sim.decode!.withoutMtp.tokensPerSecondPerGpu;
    rows.push({
      settings,
      status: "ok",
      reason: null,
      tokensPerSecondPerGpu: throughput,
      stepSeconds: sim.stepSeconds,
      mfu: sim.kind === "training" ? sim.mfu : null,
      bubbleShare: sim.kind === "training" ? sim.bubbleShare : null,
      peakMemoryBytes: sim.peakMemoryBytes,
    });
  }
  const ok = rows.filter((r) => r.status === "ok").sort((a, b) => b.tokensPerSecondPerGpu! - a.tokensPerSecondPerGpu!);
  const rest = rows.filter((r) => r.status !== "ok");
  const kind = spec.schedules.find((s) => s.name === schedule)?.kind;
  return {
    schedule,
    metric: kind === "decode" ? "decode tokens/s per GPU (without speculation)" : kind === "prefill" ? "prefill tokens/s per GPU" : "training tokens/s per GPU",
    rows: [...ok, ...rest],
  };
}

export function sweepText(result: SweepResult, axes: readonly SweepAxis[]): string {
  const names = axes.map((a) => a.name);
  const header = ["rank", ...names, "tokens/s/GPU", "step", "MFU", "bubble", "peak memory", "status"];
  const rows: string[][] = [];
  let rank = 0;
  for (const r of result.rows) {
    rows.push([
      r.status === "ok" ? String(++rank) : "-",
      ...names.map((n) => String(r.settings[n])),
      r.tokensPerSecondPerGpu === null ? "-" : r.tokensPerSecondPerGpu.toFixed(1),
      r.stepSeconds === null ? "-" : `${r.stepSeconds.toFixed(3)} s`,
      r.mfu === null ? "-" : `${(100 * r.mfu).toFixed(1)}%`,
      r.bubbleShare === null ? "-" : `${(100 * r.bubbleShare).toFixed(1)}%`,
      r.peakMemoryBytes === null ? "-" : `${(r.peakMemoryBytes / 1e9).toFixed(1)} GB`,
      r.status === "ok" ? "fits" : `${r.status}: ${r.reason}`,
    ]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (i === header.length - 1 ? 0 : r[i]!.length))));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  const lines = [`sweep of schedule '${result.schedule}', ranked by ${result.metric} (configurations that fit in memory first)`, fmt(header), ...rows.map(fmt)];
  if (rank === 0) lines.push("no configuration both checks and fits in memory; the status column says why each one does not");
  return lines.join("\n") + "\n";
}
