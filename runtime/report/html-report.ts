/**
 * The bundle report: one self-contained HTML file (inline CSS and SVG, no fonts, images or scripts
 * from anywhere else) with
 * - the stats table (model figures from `stats.json`, the simulated step's figures),
 * - the pipeline timeline (training: compiler/plan/pipeline/timeline-svg.ts over the simulated
 *   slots; serving: the two streams of the simulated GPU),
 * - memory per GPU class, stacked by category, against the HBM budget,
 * - expert load per GPU of one EP group before and after placement (the plan's load profile),
 * - traffic per GPU and step by link (NVLink, InfiniBand) and kind,
 * - the plan's and the simulator's modelling notes.
 * Each chart sits in `<figure class="chart-figure" data-chart=NAME>`; a few lines of inline script
 * record, on load, each chart's rendered width and the number of drawn marks in `data-rendered-*`
 * attributes (what the headless-browser test reads). Pure function of its input apart from that.
 */

import type { Plan, TrainingProgram } from "../../compiler/plan/plan.js";
import { MEMORY_CATEGORIES } from "../../compiler/plan/plan.js";
import { syntheticLoads } from "../../compiler/plan/expert-assignment.js";
import type { Costs } from "../../compiler/plan/pipeline/costs.js";
import type { Schedule, PipelineKind } from "../../compiler/plan/pipeline/schedule.js";
import type { Simulation as PipelineSimulation, TimedOp } from "../../compiler/plan/pipeline/simulate.js";
import { tableFormulas } from "../../compiler/plan/pipeline/table-formulas.js";
import { timelineSvg } from "../../compiler/plan/pipeline/timeline-svg.js";
import type { Spec } from "../../compiler/spec.js";
import type { Stats } from "../../compiler/stats.js";
import type { SimulationRun } from "../simulate/simulate-plan.js";
import { seconds } from "../simulate/simulation-text.js";
import { barChartSvg, esc } from "./svg-bar-chart.js";
import { servingTimelineSvg } from "./serving-timeline-svg.js";

export interface ReportInput {
  spec: Spec;
  plan: Plan;
  stats: Stats | null;
  run: SimulationRun;
}

const CATEGORY_COLOURS: Record<string, string> = {
  weights: "#3182bd",
  gradients: "#9ecae1",
  master_weights: "#31a354",
  optimizer_states: "#a1d99b",
  activations: "#e6550d",
  kv_cache: "#fdae6b",
  communication_buffers: "#756bb1",
  framework_reserve: "#bdbdbd",
};

const gb = (v: number): string => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

/** The decimal byte unit (B, KB, MB, GB) in which `maxBytes` reads as at least 1, so small plans' axes do not all read 0.00. */
export function byteUnit(maxBytes: number): { unit: string; bytes: number } {
  for (const [unit, bytes] of [["GB", 1e9], ["MB", 1e6], ["KB", 1e3]] as const) if (maxBytes >= bytes) return { unit, bytes };
  return { unit: "B", bytes: 1 };
}

function memoryChart(plan: Plan): string {
  const classes = plan.memory.classes;
  return barChartSvg({
    title: `memory per GPU by category (${classes.length} distinct budget(s) of ${plan.gpus} GPUs)`,
    categories: classes.map((c) => `${c.id} ×${c.gpuCount}`),
    series: MEMORY_CATEGORIES.map((cat) => ({
      name: cat.replace(/_/g, " "),
      colour: CATEGORY_COLOURS[cat]!,
      values: classes.map((c) => (c.byCategory.find((b) => b.category === cat)?.bytes ?? 0) / 1e9),
    })).filter((s) => s.values.some((v) => v > 0)),
    format: gb,
    unit: "GB",
    reference: { value: plan.memory.budgetBytes / 1e9, label: `HBM ${gb(plan.memory.budgetBytes / 1e9)} GB` },
    slot: classes.length > 12 ? 44 : 64,
  });
}

/** Per-GPU load of the first placed MoE layer (mean = 1), before (no redundant experts, contiguous) and after placement. */
export function expertLoads(spec: Spec, plan: Plan): { before: number[]; after: number[]; layer: number; profile: string } | null {
  const ex = plan.experts;
  const moe = spec.model.moe;
  if (ex === null || moe === null || ex.layers.length === 0) return null;
  const shared = ex.logicalExperts - moe.routedExperts;
  const loads = syntheticLoads(ex.layers.length, moe.routedExperts, shared, moe.expertsPerToken);
  const L = ex.logicalExperts;
  const load = loads.load.subarray(0, L);
  const ep = ex.epSize;
  const before = new Array<number>(ep).fill(0);
  for (let e = 0; e < L; e++) before[Math.floor((e * ep) / L)]! += load[e]!;
  const row = ex.slots[0]!;
  const replicas = new Array<number>(L).fill(0);
  for (const e of row) replicas[e]!++;
  const after = new Array<number>(ep).fill(0);
  row.forEach((e, p) => {
    after[Math.floor(p / ex.slotsPerGpu)]! += load[e]! / Math.max(1, replicas[e]!);
  });
  const mean = before.reduce((a, b) => a + b, 0) / ep;
  const norm = (xs: number[]): number[] => xs.map((x) => (mean > 0 ? x / mean : 0));
  const profile =
    ex.loadProfile?.note ??
    "training places experts contiguously without redundant experts; the load shown is the planner's synthetic Zipf profile (the expected-value model of the simulation treats routing as uniform)";
  return { before: norm(before), after: norm(after), layer: ex.layers[0]!, profile };
}

function expertChart(spec: Spec, plan: Plan): { svg: string; note: string } | null {
  const loads = expertLoads(spec, plan);
  if (loads === null) return null;
  const ep = loads.before.length;
  const maxOf = (xs: number[]): number => Math.max(...xs);
  const series = [{ name: `before placement (max/mean ${maxOf(loads.before).toFixed(2)})`, colour: "#bdbdbd", values: loads.before }];
  if (plan.experts!.policy !== "contiguous") series.push({ name: `after ${plan.experts!.policy} (max/mean ${maxOf(loads.after).toFixed(2)})`, colour: "#e6550d", values: loads.after });
  const svg = barChartSvg({
    title: `expert load per GPU of one EP group, MoE layer ${loads.layer} (mean = 1)`,
    categories: Array.from({ length: ep }, (_, g) => `${g}`),
    series,
    format: (v) => v.toFixed(2),
    unit: "load / mean",
    grouped: true,
    reference: { value: 1, label: "mean" },
    slot: ep > 64 ? 6 : ep > 16 ? 16 : 40,
    labelEvery: ep > 64 ? 32 : ep > 16 ? 8 : 1,
  });
  return { svg, note: loads.profile };
}

function trafficChart(plan: Plan): string {
  const progs = plan.traffic.perProgram;
  const total = (t: (typeof progs)[number]): number =>
    t.dispatch.nvlinkBytes + t.combine.nvlinkBytes + t.dispatch.ibBytes + t.combine.ibBytes + t.p2pBytes + t.dataParallel.reduceScatterBytes + t.dataParallel.allGatherBytes + t.dataParallel.allReduceBytes + t.tensorParallelBytes;
  const scale = byteUnit(Math.max(0, ...progs.map(total)));
  const v = (f: (t: (typeof progs)[number]) => number): number[] => progs.map((t) => f(t) / scale.bytes);
  return barChartSvg({
    title: "traffic each GPU sends per step, by link and kind",
    categories: progs.map((t) => t.program),
    series: [
      { name: "all-to-all over NVLink", colour: "#756bb1", values: v((t) => t.dispatch.nvlinkBytes + t.combine.nvlinkBytes) },
      { name: "all-to-all over InfiniBand", colour: "#e6550d", values: v((t) => t.dispatch.ibBytes + t.combine.ibBytes) },
      { name: "pipeline p2p", colour: "#31a354", values: v((t) => t.p2pBytes) },
      { name: "data-parallel collectives", colour: "#3182bd", values: v((t) => t.dataParallel.reduceScatterBytes + t.dataParallel.allGatherBytes + t.dataParallel.allReduceBytes) },
      { name: "tensor-parallel collectives", colour: "#fdae6b", values: v((t) => t.tensorParallelBytes) },
    ].filter((s) => s.values.some((x) => x > 0)),
    format: gb,
    unit: scale.unit,
    slot: progs.length > 8 ? 52 : 96,
  });
}

function pipelineChart(input: ReportInput): string {
  const { run, plan } = input;
  if (run.kind === "serving") return servingTimelineSvg(run.step, `serving step of one GPU (${run.result.kind}, ${plan.schedule.microbatches} micro-batch(es))`);
  const programs = plan.programs as TrainingProgram[];
  const dirs = [...new Set(programs.flatMap((p) => p.stages.map((s) => s.dir)))].sort();
  const schedule: Schedule = {
    kind: plan.schedule.pipeline as PipelineKind,
    stages: plan.schedule.stages,
    ranks: programs.length,
    microbatches: plan.schedule.microbatches,
    dirs,
    microbatchesPerDir: plan.schedule.microbatches / dirs.length,
    rankOps: [],
    stageOf: (rank, dir) => programs[rank]!.stages.find((s) => s.dir === dir)?.stage ?? -1,
    prevHop: () => null,
    nextHop: () => null,
  };
  const ms = 1e3;
  const ranks = run.timeline.run.slots.map((slots, r) => {
    const ops: TimedOp[] = [];
    for (const s of slots) {
      for (const i of s.ops) {
        const o = programs[r]!.ops[i]!;
        ops.push({ op: o.op, mb: o.mb, dir: o.dir, overlapGroup: o.overlapGroup, start: s.start * ms, end: s.end * ms });
      }
    }
    return { rank: r, ops, busy: run.timeline.run.busy[r]! * ms, idle: run.timeline.run.idle[r]! * ms, activationPeak: programs[r]!.activationPeakChunks };
  });
  const sim: PipelineSimulation = {
    ranks,
    makespan: run.timeline.run.makespan * ms,
    bubble: Math.max(...ranks.map((r) => r.idle)),
    activationPeak: Math.max(...ranks.map((r) => r.activationPeak)),
    messages: run.timeline.p2p.length,
  };
  // The title's costs: the middle stage's simulated durations (ms), and the table's formula on them.
  const st = run.result.stages[Math.floor(run.result.stages.length / 2)]!;
  const costs: Costs = { F: st.forwardSeconds * ms, B: st.backwardSeconds * ms, W: st.weightGradientSeconds * ms, FB: (st.forwardSeconds + st.backwardSeconds) * ms };
  return timelineSvg(schedule, sim, costs, tableFormulas(schedule.kind, schedule.stages, costs, schedule.microbatches));
}

function row(label: string, value: string): string {
  return `<tr><th>${esc(label)}</th><td>${esc(value)}</td></tr>`;
}

const num = (x: number, d = 0): string => x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;

function statsTable(input: ReportInput): string {
  const { run, stats, plan } = input;
  const rows: string[] = [];
  rows.push(row("model", plan.model));
  rows.push(row("schedule", `${plan.schedule.name} (${plan.schedule.kind}${plan.schedule.pipeline ? `, ${plan.schedule.pipeline}` : ""})`));
  rows.push(row("cluster", `${plan.cluster.name}: ${plan.gpus} of ${plan.cluster.nodes * plan.cluster.gpusPerNode} ${plan.cluster.gpu} GPUs`));
  if (stats !== null) {
    rows.push(row("parameters (total / active per token)", `${num(stats.params.total)} / ${num(stats.params.active)}`));
    rows.push(row("KV cache per token (BF16)", `${num(stats.kvCache.bytesPerTokenBf16)} B`));
    rows.push(row("training FLOPs per token", num(stats.flopsPerToken.training)));
  }
  const r = run.result;
  rows.push(row("simulated step time", seconds(r.stepSeconds)));
  if (r.kind === "training") {
    rows.push(row("tokens/s per GPU", num(r.tokensPerSecondPerGpu, 1)));
    rows.push(row("MFU (dense FP8 peak / dense BF16 peak)", `${pct(r.mfu)} / ${pct(r.mfuBf16Peak)}`));
    rows.push(row("pipeline bubble", pct(r.bubbleShare)));
    rows.push(row("exposed communication (worst rank)", `${seconds(r.exposedCommunicationSeconds)} (${pct(r.exposedCommunicationShare)})`));
    rows.push(row("GPU-hours per trillion tokens", num(r.gpuHoursPerTrillionTokens)));
    if (r.validation !== null) rows.push(row("validation (report: 180K GPU-hours per trillion tokens)", `simulated / reported = ${r.validation.ratio.toFixed(2)}`));
  } else {
    rows.push(row("exposed communication", `${seconds(r.exposedCommunicationSeconds)} (${pct(r.exposedCommunicationShare)})`));
    if (r.prefillTokensPerSecondPerGpu !== null) rows.push(row("prefill tokens/s per GPU", num(r.prefillTokensPerSecondPerGpu, 1)));
    if (r.decode !== null) {
      const d = r.decode.withoutMtp;
      rows.push(row("decode without MTP", `${num(d.tokensPerSecondPerGpu, 1)} tokens/s per GPU, ${num(d.tokensPerSecondPerUser, 1)} per user, ${seconds(d.timePerOutputTokenSeconds)} per token`));
      const m = r.decode.withMtp;
      if (m !== null) rows.push(row(`decode with MTP (acceptance ${m.acceptanceRate})`, `${num(m.tokensPerSecondPerGpu, 1)} tokens/s per GPU, ${num(m.tokensPerSecondPerUser, 1)} per user, ${seconds(m.timePerOutputTokenSeconds)} per token`));
    }
  }
  rows.push(row("peak memory per GPU", `${(r.peakMemoryBytes / 1e9).toFixed(2)} GB of ${(plan.memory.budgetBytes / 1e9).toFixed(0)} GB`));
  rows.push(row("simulation", r.compression));
  return `<table class="stats">\n${rows.join("\n")}\n</table>`;
}

const STYLE = `body{font-family:sans-serif;margin:24px;color:#111}h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table.stats{border-collapse:collapse}table.stats th{text-align:left;padding:3px 12px 3px 0;font-weight:normal;color:#444}
table.stats td{padding:3px 0;font-variant-numeric:tabular-nums}figure{margin:8px 0;overflow-x:auto;border:1px solid #ddd;padding:4px}
figcaption{font-size:12px;color:#555;margin-top:4px}ul.notes{font-size:12px;color:#333}`;

/** Records, on load, each chart's rendered width and drawn marks (for headless checks). */
const PROBE = `document.querySelectorAll("figure.chart-figure").forEach(function(f){var s=f.querySelector("svg");if(!s)return;var n=0;s.querySelectorAll("rect.mark,rect.op").forEach(function(r){var b=r.getBBox();if(b.width>0&&b.height>0)n++;});f.setAttribute("data-rendered-width",String(Math.round(s.getBoundingClientRect().width)));f.setAttribute("data-rendered-marks",String(n));});`;

export function htmlReport(input: ReportInput): string {
  const { plan, spec, run } = input;
  const figure = (name: string, svg: string, caption: string): string =>
    `<figure class="chart-figure" data-chart="${name}">\n${svg.trim()}\n<figcaption>${esc(caption)}</figcaption>\n</figure>`;
  const parts: string[] = [];
  parts.push(`<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>${esc(`dsv3 report: ${plan.model}, ${plan.schedule.name}`)}</title>\n<style>${STYLE}</style>\n</head>\n<body>`);
  parts.push(`<h1>${esc(`${plan.model} — schedule '${plan.schedule.name}'`)}</h1>`);
  parts.push(`<h2>Figures</h2>\n${statsTable(input)}`);
  parts.push(`<h2>Pipeline timeline</h2>`);
  parts.push(
    figure(
      "timeline",
      pipelineChart(input),
      run.kind === "training"
        ? "one row per pipeline rank (each stands for its GPUs); times in ms; F&B pairs overlap one micro-batch's all-to-all with the other's compute"
        : "the two streams of the simulated GPU; the micro-batches interleave so one's all-to-all overlaps the other's compute",
    ),
  );
  parts.push(`<h2>Memory per GPU</h2>`);
  parts.push(figure("memory", memoryChart(plan), "each bar is one memory class (the GPUs with the same budget, ×count); dashed line: the HBM budget"));
  const experts = expertChart(spec, plan);
  if (experts !== null) {
    parts.push(`<h2>Expert load</h2>`);
    parts.push(figure("experts", experts.svg, experts.note));
  }
  parts.push(`<h2>Traffic per link</h2>`);
  parts.push(figure("traffic", trafficChart(plan), plan.traffic.model));
  parts.push(`<h2>Modelling notes</h2>\n<ul class="notes">\n${[...plan.notes, ...run.result.model, ...(run.result.kind === "training" ? [run.result.mfuConvention] : [])].map((n) => `<li>${esc(n)}</li>`).join("\n")}\n</ul>`);
  parts.push(`<script>${PROBE}</script>\n</body>\n</html>\n`);
  return parts.join("\n");
}
