/**
 * A small, dependency-free SVG bar chart: one bar per category, each bar a stack of series (or, with
 * `grouped`, the series side by side), a value axis with round ticks, an optional reference line
 * (a memory budget), and a legend. Every bar segment is a `<rect class="mark">` with a `<title>`
 * giving its exact value, so a reader (or a test) can count and read them. Pure function of its
 * input: same data, same bytes.
 */

export interface BarSeries {
  name: string;
  colour: string;
  /** One value per category (≥ 0). */
  values: number[];
}

export interface BarChartInput {
  title: string;
  categories: string[];
  series: BarSeries[];
  /** Formats a value for ticks and tooltips. */
  format: (v: number) => string;
  unit: string;
  grouped?: boolean;
  reference?: { value: number; label: string };
  /** Width of one category's slot in px (default 48). */
  slot?: number;
  /** Label every k-th category only (default 1: all). */
  labelEvery?: number;
}

export function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Numbers in the SVG: at most two decimals, never "-0". */
export function px(x: number): string {
  const r = Math.round(x * 100) / 100;
  return String(r === 0 ? 0 : r);
}

/** A tick step of 1, 2 or 5 × 10^k giving about `target` ticks up to `max`. */
export function niceStep(max: number, target: number): number {
  const raw = max / target;
  if (!(raw > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

export function barChartSvg(input: BarChartInput): string {
  const slot = input.slot ?? 48;
  const left = 84;
  const top = 40;
  const plotH = 240;
  const n = input.categories.length;
  const legendW = Math.max(190, ...input.series.map((s) => s.name.length * 6.2 + 30));
  const plotW = Math.max(240, n * slot, input.title.length * 7.2 - 76, Math.min(input.series.length, 3) * legendW);
  const totals = input.categories.map((_, i) =>
    input.grouped ? Math.max(0, ...input.series.map((s) => s.values[i] ?? 0)) : input.series.reduce((a, s) => a + (s.values[i] ?? 0), 0),
  );
  const max = Math.max(1e-12, ...totals, input.reference?.value ?? 0);
  const step = niceStep(max, 5);
  const axisMax = Math.ceil(max / step) * step;
  const y = (v: number): number => top + plotH - (v / axisMax) * plotH;
  const every = Math.max(1, input.labelEvery ?? 1);
  const labelRows = every === 1 && input.categories.some((c) => c.length * 6.5 > slot) ? 2 : 1;
  const legendY = top + plotH + 24 + labelRows * 14;
  const width = left + plotW + 24;
  const perRow = Math.max(1, Math.floor((width - left) / legendW));
  const legendRows = Math.ceil(input.series.length / perRow);
  const height = legendY + legendRows * 20 + 12;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${px(width)}" height="${px(height)}" viewBox="0 0 ${px(width)} ${px(height)}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect x="0" y="0" width="${px(width)}" height="${px(height)}" fill="#ffffff"/>`);
  out.push(`<text x="8" y="20" font-size="13" font-weight="bold">${esc(input.title)}</text>`);
  for (let v = 0; v <= axisMax + step / 1e6; v += step) {
    out.push(`<line x1="${px(left)}" y1="${px(y(v))}" x2="${px(left + plotW)}" y2="${px(y(v))}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${px(left - 6)}" y="${px(y(v) + 4)}" text-anchor="end">${esc(input.format(v))}</text>`);
  }
  out.push(`<text x="8" y="${px(top - 8)}" fill="#555555">${esc(input.unit)}</text>`);
  input.categories.forEach((cat, i) => {
    const x0 = left + i * (plotW / n);
    const w = Math.min((plotW / n) * 0.7, 96);
    const xb = x0 + (plotW / n - w) / 2;
    let acc = 0;
    input.series.forEach((s, k) => {
      const v = s.values[i] ?? 0;
      if (!(v > 0)) return;
      const bx = input.grouped ? xb + (k * w) / input.series.length : xb;
      const bw = input.grouped ? w / input.series.length : w;
      const y1 = input.grouped ? y(v) : y(acc + v);
      const h = input.grouped ? y(0) - y(v) : y(acc) - y(acc + v);
      out.push(`<rect class="mark" x="${px(bx)}" y="${px(y1)}" width="${px(bw)}" height="${px(Math.max(0.5, h))}" fill="${s.colour}"><title>${esc(`${cat} · ${s.name}: ${input.format(v)}`)}</title></rect>`);
      if (!input.grouped) acc += v;
    });
    const label = esc(cat);
    const lx = x0 + plotW / n / 2;
    if (i % every !== 0) return;
    if (labelRows === 1) out.push(`<text x="${px(lx)}" y="${px(top + plotH + 16)}" text-anchor="middle">${label}</text>`);
    else out.push(`<text x="${px(lx)}" y="${px(top + plotH + 12 + (i % 2) * 14)}" text-anchor="middle" font-size="10">${label}</text>`);
  });
  out.push(`<line x1="${px(left)}" y1="${px(y(0))}" x2="${px(left + plotW)}" y2="${px(y(0))}" stroke="#000000"/>`);
  if (input.reference !== undefined) {
    const ry = y(input.reference.value);
    out.push(`<line class="reference" x1="${px(left)}" y1="${px(ry)}" x2="${px(left + plotW)}" y2="${px(ry)}" stroke="#c00000" stroke-dasharray="6 3" stroke-width="1.5"/>`);
    out.push(`<text x="${px(left + plotW)}" y="${px(ry - 4)}" text-anchor="end" fill="#c00000">${esc(input.reference.label)}</text>`);
  }
  input.series.forEach((s, k) => {
    const lx = left + (k % perRow) * legendW;
    const ly = legendY + Math.floor(k / perRow) * 20;
    out.push(`<rect class="legend" x="${px(lx)}" y="${px(ly - 10)}" width="12" height="12" fill="${s.colour}"/>`);
    out.push(`<text x="${px(lx + 18)}" y="${px(ly)}">${esc(s.name)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n");
}
