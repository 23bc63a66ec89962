/** `dsv3 stats` without --json: a short human-readable table. */
import type { Stats } from "../compiler/stats.js";

const grouped = (n: number): string => n.toLocaleString("en-US");
const billions = (n: number): string => `${(n / 1e9).toFixed(2)}B`;

export function formatStatsText(s: Stats): string {
  const rows: [string, string][] = [
    ["model", `${s.model.name}: ${s.model.layers} layers (${s.model.denseLayers} dense, ${s.model.moeLayers} MoE), hidden ${s.model.hidden}, vocab ${s.model.vocab}, ${s.model.attention}`],
    ["params.total", `${grouped(s.params.total)} (${billions(s.params.total)})`],
    ["params.active", `${grouped(s.params.active)} (${billions(s.params.active)}; with embedding ${billions(s.params.activeWithEmbedding)})`],
    ["params.mtp", `${grouped(s.params.mtp)} (${billions(s.params.mtp)})`],
  ];
  for (const b of s.params.breakdown) rows.push([`  ${b.component}`, grouped(b.params)]);
  rows.push(
    ["kvCache/token (BF16)", `${grouped(s.kvCache.bytesPerTokenBf16)} B (${s.kvCache.elementsPerTokenPerLayer} elements × layer)`],
    ["kvCache/token (FP8)", `${grouped(s.kvCache.bytesPerTokenFp8)} B`],
    ["FLOPs/token forward", `${(s.flopsPerToken.forward / 1e9).toFixed(2)} GFLOP at seq ${s.flopsPerToken.seqLen}`],
    ["FLOPs/token training", `${(s.flopsPerToken.training / 1e9).toFixed(2)} GFLOP (incl. MTP)`],
  );
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n") + `\n\n${s.flopsPerToken.convention}\n`;
}
