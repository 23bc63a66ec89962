/**
 * The serving step's timeline as SVG: one row per stream of the simulated GPU (compute;
 * communication), one rectangle per op (class "mark", with a <title> of its exact times), coloured
 * by op kind and shaded by micro-batch, so the two-micro-batch overlap of all-to-all and compute
 * can be read off. Pure function of the simulated step.
 */

import type { ServingStep } from "../simulate/serving.js";
import { esc, niceStep, px } from "./svg-bar-chart.js";

const COLOURS: Record<string, string> = {
  embedding: "#8c6d31",
  attention: "#3182bd",
  dense_ffn: "#31a354",
  experts: "#e6550d",
  dispatch: "#756bb1",
  combine: "#9e9ac8",
  head: "#636363",
  mtp: "#d6616b",
};

export function servingTimelineSvg(step: ServingStep, title: string): string {
  const left = 150;
  const top = 44;
  const row = 36;
  const plotW = 1400;
  const span = Math.max(step.stepSeconds, 1e-9);
  const scale = plotW / span;
  const width = left + plotW + 24;
  const height = top + 2 * (row + 8) + 70;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${px(width)}" height="${px(height)}" viewBox="0 0 ${px(width)} ${px(height)}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect x="0" y="0" width="${px(width)}" height="${px(height)}" fill="#ffffff"/>`);
  out.push(`<text x="8" y="20" font-size="13" font-weight="bold">${esc(title)}</text>`);
  ["compute stream", "communication stream"].forEach((name, i) => {
    const y = top + i * (row + 8);
    out.push(`<text x="8" y="${px(y + row / 2 + 4)}">${name}</text>`);
    out.push(`<rect x="${px(left)}" y="${px(y)}" width="${px(plotW)}" height="${row}" fill="#f4f4f4"/>`);
  });
  for (const o of step.ops) {
    const w = (o.end - o.start) * scale;
    if (!(w > 0)) continue;
    const i = o.op.stream === "compute" ? 0 : 1;
    const y = top + i * (row + 8) + (o.op.mb % 2 === 0 ? 0 : row / 2);
    const colour = COLOURS[o.op.op] ?? "#999999";
    const ms = (s: number): string => `${(s * 1e3).toFixed(3)} ms`;
    out.push(
      `<rect class="mark" x="${px(left + o.start * scale)}" y="${px(y)}" width="${px(Math.max(0.3, w))}" height="${px(row / 2)}" fill="${colour}" opacity="${o.op.mb % 2 === 0 ? 1 : 0.65}"><title>${esc(
        `${o.op.op}${o.op.layer === null ? "" : ` layer ${o.op.layer}`} micro-batch ${o.op.mb}: ${ms(o.start)} to ${ms(o.end)}`,
      )}</title></rect>`,
    );
  }
  const axisY = top + 2 * (row + 8) + 4;
  out.push(`<line x1="${px(left)}" y1="${px(axisY)}" x2="${px(left + plotW)}" y2="${px(axisY)}" stroke="#000000"/>`);
  const step1 = niceStep(span * 1e3, 10);
  for (let t = 0; t <= span * 1e3 + 1e-9; t += step1) {
    const x = left + (t / 1e3) * scale;
    out.push(`<line x1="${px(x)}" y1="${px(axisY)}" x2="${px(x)}" y2="${px(axisY + 5)}" stroke="#000000"/>`);
    out.push(`<text x="${px(x)}" y="${px(axisY + 17)}" text-anchor="middle">${px(t)}</text>`);
  }
  out.push(`<text x="8" y="${px(axisY + 17)}">time (ms)</text>`);
  let lx = left;
  for (const [name, colour] of Object.entries(COLOURS)) {
    out.push(`<rect class="legend" x="${px(lx)}" y="${px(axisY + 32)}" width="12" height="12" fill="${colour}"/>`);
    out.push(`<text x="${px(lx + 16)}" y="${px(axisY + 42)}">${esc(name.replace("_", " "))}</text>`);
    lx += 110;
  }
  out.push(`<text x="${px(lx)}" y="${px(axisY + 42)}" fill="#555555">top half: even micro-batches; bottom half: odd</text>`);
  out.push("</svg>");
  return out.join("\n");
}
