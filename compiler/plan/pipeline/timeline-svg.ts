/**
 * A per-rank timeline of a simulated schedule as a self-contained SVG, in the manner of Figure 5 of
 * the DeepSeek-V3 report: one row per rank, time to the right, one rectangle per op.
 *
 * - Colour: the hue follows the micro-batch (golden-angle steps, so neighbours differ); direction 0
 *   uses a saturated palette, direction 1 a pale one. A `B` is a darker shade of its micro-batch's
 *   colour, a `W` a lighter one with a dashed border.
 * - The two halves of an overlapped F&B pair share one time slot: the F fills the top half of the
 *   row, the B the bottom half, and a heavy black frame encloses the pair.
 * - Labels: op letter and micro-batch, a prime for direction 1 (`F3`, `B3'`), where they fit.
 * - Every op rectangle has class "op" (and nothing else has), so a reader can count them; each has a
 *   <title> with its exact times. No scripts, no external fonts or references; the output is a pure
 *   function of the simulation, so it is byte-identical for the same input.
 */

import type { Costs } from "./costs.js";
import type { Schedule } from "./schedule.js";
import type { Simulation, TimedOp } from "./simulate.js";
import type { TableFigures } from "./table-formulas.js";

const ROW = 28;
const GAP = 6;
const LEFT = 96;
const TOP = 58;
const RIGHT = 24;
const MAX_PLOT_WIDTH = 16000;

/** Numbers in the SVG: at most two decimals, no trailing zeros, never "-0". */
function n(x: number): string {
  const r = Math.round(x * 100) / 100;
  return String(r === 0 ? 0 : r);
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function lightness(op: { op: string; dir: number }): number {
  const base = op.dir === 0 ? 58 : 78;
  const shade = op.op === "B" ? -14 : op.op === "W" ? +12 : 0;
  return Math.max(15, Math.min(95, base + shade));
}

export function opColour(op: { op: string; mb: number; dir: number }): string {
  const hue = Math.round((op.mb * 137.508) % 360);
  return `hsl(${hue},${op.dir === 0 ? 72 : 48}%,${lightness(op)}%)`;
}

/** Label ink: white on the darkest fills, black elsewhere. */
function ink(op: { op: string; dir: number }): string {
  return lightness(op) < 50 ? "#ffffff" : "#000000";
}

export function opLabel(op: { op: string; mb: number; dir: number }, twoDirs: boolean): string {
  return `${op.op}${op.mb}${twoDirs && op.dir === 1 ? "'" : ""}`;
}

/** A tick step of 1, 2 or 5 × 10^k giving about `target` ticks. */
function tickStep(span: number, target: number): number {
  const raw = span / target;
  if (!(raw > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

export function timelineSvg(schedule: Schedule, sim: Simulation, costs: Costs, table: TableFigures): string {
  const durations = sim.ranks.flatMap((r) => r.ops.map((o) => o.end - o.start)).filter((d) => d > 0);
  const shortest = durations.length > 0 ? Math.min(...durations) : 1;
  const span = Math.max(sim.makespan, shortest);
  const scale = Math.min(32 / shortest, MAX_PLOT_WIDTH / span);
  const plotW = span * scale;
  const titles = [
    `${schedule.kind}: ${schedule.stages} stages on ${schedule.ranks} devices, ${schedule.microbatches} micro-batches; ` +
      `F=${n(costs.F)} B=${n(costs.B)} W=${n(costs.W)} F&B=${n(costs.FB)}`,
    `makespan ${n(sim.makespan)}, bubble ${n(sim.bubble)} (table ${table.bubbleFormula} = ${n(table.bubble)}), ` +
      `activation peak ${sim.activationPeak} (table ${table.activationFormula} = ${table.activation})`,
  ];
  const width = Math.max(LEFT + plotW + RIGHT, 16 + Math.max(...titles.map((t) => t.length)) * 7.3);
  const rowsH = schedule.ranks * (ROW + GAP);
  const axisY = TOP + rowsH + 4;
  const legendY = axisY + 40;
  const twoDirs = schedule.dirs.length > 1;
  const x = (t: number): number => LEFT + t * scale;

  const out: string[] = ["", ""]; // the <svg> header and background, written once the height is known
  titles.forEach((t, i) => out.push(`<text x="8" y="${20 + 16 * i}" font-size="12">${esc(t)}</text>`));

  for (const r of sim.ranks) {
    const y = TOP + r.rank * (ROW + GAP);
    const stages = schedule.dirs.map((d) => schedule.stageOf(r.rank, d)).join(",");
    out.push(`<text x="8" y="${n(y + ROW / 2 + 4)}">rank ${r.rank}</text>`);
    out.push(`<text x="56" y="${n(y + ROW / 2 + 4)}" fill="#666666">s${esc(stages)}</text>`);
    out.push(`<rect class="lane" x="${n(LEFT)}" y="${n(y)}" width="${n(plotW)}" height="${ROW}" fill="#f4f4f4"/>`);
    const pairs = new Map<number, TimedOp[]>();
    for (const o of r.ops) {
      if (o.overlapGroup !== null) pairs.set(o.overlapGroup, [...(pairs.get(o.overlapGroup) ?? []), o]);
    }
    for (const o of r.ops) {
      const inPair = o.overlapGroup !== null;
      const oy = inPair && o.op === "B" ? y + ROW / 2 : y;
      const oh = inPair ? ROW / 2 : ROW;
      const ox = x(o.start);
      const ow = (o.end - o.start) * scale;
      const dash = o.op === "W" ? ` stroke-dasharray="3 2"` : "";
      const tip = `${o.op} mb ${o.mb} dir ${o.dir} on rank ${r.rank}: ${n(o.start)} to ${n(o.end)}${inPair ? ` (overlapped pair ${o.overlapGroup})` : ""}`;
      out.push(
        `<rect class="op" x="${n(ox)}" y="${n(oy)}" width="${n(ow)}" height="${n(oh)}" fill="${opColour(o)}" stroke="#555555" stroke-width="0.5"${dash}><title>${esc(tip)}</title></rect>`,
      );
      const label = opLabel(o, twoDirs);
      if (ow >= label.length * 6 + 2) {
        out.push(`<text x="${n(ox + ow / 2)}" y="${n(oy + oh / 2 + 3.5)}" text-anchor="middle" fill="${ink(o)}"${inPair ? ` font-size="9"` : ""}>${esc(label)}</text>`);
      }
    }
    for (const [, halves] of [...pairs.entries()].sort((a, b) => a[0] - b[0])) {
      const start = Math.min(...halves.map((h) => h.start));
      const end = Math.max(...halves.map((h) => h.end));
      out.push(`<rect class="pair" x="${n(x(start))}" y="${n(y)}" width="${n((end - start) * scale)}" height="${ROW}" fill="none" stroke="#000000" stroke-width="2"/>`);
    }
  }

  // Time axis.
  out.push(`<line x1="${n(LEFT)}" y1="${n(axisY)}" x2="${n(LEFT + plotW)}" y2="${n(axisY)}" stroke="#000000"/>`);
  const step = tickStep(span, Math.max(2, Math.floor(plotW / 60)));
  for (let i = 0; i * step <= span + 1e-9; i++) {
    const t = i * step;
    out.push(`<line x1="${n(x(t))}" y1="${n(axisY)}" x2="${n(x(t))}" y2="${n(axisY + 5)}" stroke="#000000"/>`);
    out.push(`<text x="${n(x(t))}" y="${n(axisY + 16)}" text-anchor="middle">${n(t)}</text>`);
  }
  out.push(`<text x="8" y="${n(axisY + 16)}">time</text>`);

  // Legend.
  const items: { label: string; draw: (lx: number, ly: number) => string }[] = [
    { label: "F forward", draw: (lx, ly) => sw(lx, ly, opColour({ op: "F", mb: 0, dir: 0 }), "") },
    { label: "B backward (input grad when a W follows)", draw: (lx, ly) => sw(lx, ly, opColour({ op: "B", mb: 0, dir: 0 }), "") },
    { label: "W weight grad", draw: (lx, ly) => sw(lx, ly, opColour({ op: "W", mb: 0, dir: 0 }), ` stroke-dasharray="3 2"`) },
  ];
  if (sim.ranks.some((r) => r.ops.some((o) => o.overlapGroup !== null))) {
    items.push({
      label: "F&B overlapped pair",
      draw: (lx, ly) =>
        `<rect class="legend" x="${n(lx)}" y="${n(ly)}" width="24" height="7" fill="${opColour({ op: "F", mb: 1, dir: 0 })}"/>` +
        `<rect class="legend" x="${n(lx)}" y="${n(ly + 7)}" width="24" height="7" fill="${opColour({ op: "B", mb: 2, dir: twoDirs ? 1 : 0 })}"/>` +
        `<rect class="legend" x="${n(lx)}" y="${n(ly)}" width="24" height="14" fill="none" stroke="#000000" stroke-width="2"/>`,
    });
  }
  if (twoDirs) {
    items.push({ label: "direction 1 (pale, label ')", draw: (lx, ly) => sw(lx, ly, opColour({ op: "F", mb: 0, dir: 1 }), "") });
  }
  items.push({
    label: "hue = micro-batch 0,1,2,3",
    draw: (lx, ly) => [0, 1, 2, 3].map((mb) => `<rect class="legend" x="${n(lx + mb * 6)}" y="${n(ly)}" width="6" height="14" fill="${opColour({ op: "F", mb, dir: 0 })}"/>`).join(""),
  });
  let lx = LEFT;
  let ly = legendY;
  for (const item of items) {
    const w = 34 + item.label.length * 6 + 18;
    if (lx + w > Math.max(width, 900) && lx > LEFT) {
      lx = LEFT;
      ly += 24;
    }
    out.push(item.draw(lx, ly));
    out.push(`<text x="${n(lx + 30)}" y="${n(ly + 11)}">${esc(item.label)}</text>`);
    lx += w;
  }
  const height = ly + 48;
  out[0] = `<svg xmlns="http://www.w3.org/2000/svg" width="${n(width)}" height="${n(height)}" viewBox="0 0 ${n(width)} ${n(height)}" font-family="monospace" font-size="10">`;
  out[1] = `<rect class="bg" x="0" y="0" width="${n(width)}" height="${n(height)}" fill="#ffffff"/>`;
  out.push(`<text x="8" y="${n(height - 8)}" fill="#666666">bubble = idle time per device inside the step (makespan - busy), largest over devices</text>`);
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

function sw(x: number, y: number, fill: string, extra: string): string {
  return `<rect class="legend" x="${n(x)}" y="${n(y)}" width="24" height="14" fill="${fill}" stroke="#555555" stroke-width="0.5"${extra}/>`;
}
