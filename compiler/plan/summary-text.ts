/** `dsv3 plan` without --json: stages, experts per GPU, the memory table and the traffic table. */

import type { MemoryCategory, Plan } from "./plan.js";
import { MEMORY_CATEGORIES } from "./plan.js";
import { formatBytes } from "./memory.js";

/** Bytes in a table cell: GB, MB, kB or B with two decimals. */
function gb(bytes: number): string {
  return formatBytes(bytes);
}

/** A FLOP count with an SI prefix (3 decimals). */
function flops(x: number): string {
  const units: [number, string][] = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [v, u] of units) if (x >= v) return `${(x / v).toFixed(3)} ${u}`;
  return `${x.toFixed(0)} `;
}

/** Rows under a header; `align` per column: "l" pads at the end, "r" at the start. */
function table(header: string[], rows: string[][], align: ("l" | "r")[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    "  " + cells.map((c, i) => (align[i] === "l" ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  return [line(header), ...rows.map(line)];
}

const SHORT: Readonly<Record<MemoryCategory, string>> = {
  weights: "weights",
  gradients: "grads",
  master_weights: "master",
  optimizer_states: "optim",
  activations: "activ",
  kv_cache: "kv",
  communication_buffers: "comm",
  framework_reserve: "reserve",
};

export function planSummaryText(plan: Plan): string {
  const s = plan.schedule;
  const c = plan.cluster;
  const out: string[] = [];
  const what = s.kind === "training" ? `training (${s.pipeline})` : s.kind;
  out.push(`plan '${s.name}' — ${what} of ${plan.model} on ${plan.gpus} GPUs (${c.gpu}, ${c.gpusPerNode} per node, ${gb(c.hbmBytes)} each)`);
  if (s.kind === "training") {
    out.push(
      `pipeline: ${s.stages} stages on ${s.pipelineRanks} pipeline rank(s); ${s.microbatches} micro-batches of ${s.tokensPerMicrobatch} tokens; ` +
        `tp ${s.tp}, dp ${s.dp}, ep ${s.ep}, zero ${s.zero}`,
    );
  } else {
    out.push(`attention TP${s.tp} × DP${s.dp}, MoE EP${s.ep}; ${s.microbatches} micro-batch(es) of ${s.tokensPerMicrobatch} tokens per attention group`);
  }

  if (plan.partition !== null) {
    const p = plan.partition;
    out.push("", `stages (forward FLOPs per token; largest / mean = ${p.imbalance.toFixed(3)})`);
    const rows = p.stages.map((st) => {
      const also = [st.embedding ? "embedding" : "", st.head ? "head" : "", st.mtpModules > 0 ? `mtp×${st.mtpModules}` : "", st.embeddingCopyForMtp ? "embedding copy" : ""]
        .filter((x) => x !== "")
        .join(", ");
      return [String(st.stage), `${st.layers.first}-${st.layers.last}`, String(st.denseLayers), String(st.moeLayers), flops(st.flopsPerToken), also];
    });
    out.push(...table(["stage", "layers", "dense", "moe", "FLOP/token", "also"], rows, ["r", "l", "r", "r", "r", "l"]));
  }

  const e = plan.experts;
  if (e !== null) {
    out.push("");
    if (e.policy === "contiguous") {
      out.push(`experts per GPU: ${e.slotsPerGpu} routed per MoE layer × ${e.layers.length} MoE layers (contiguous, EP${e.epSize})`);
    } else {
      const shared = e.sharedAsRouted ? `, shared served as routed (${e.logicalExperts} logical experts)` : "";
      out.push(
        `experts per GPU: ${e.slotsPerGpu} slot(s) per MoE layer × ${e.layers.length} MoE layers ` +
          `(${e.slotsPerGpu * e.epSize - e.redundantSlots} routed + ${e.redundantSlots} redundant over EP${e.epSize}${shared}; ${e.policy})`,
      );
      if (e.balance !== null) out.push(`  max/mean GPU load, mean over layers: ${e.balance.before.toFixed(3)} without redundancy → ${e.balance.after.toFixed(3)} with`);
      if (e.loadProfile !== null) out.push(`  load profile: synthetic (Zipf exponent ${e.loadProfile.exponent}, seed ${e.loadProfile.seed}) — no observed load`);
    }
  }

  const m = plan.memory;
  out.push("", `memory per GPU (budget ${gb(m.budgetBytes)})`);
  const used = MEMORY_CATEGORIES.filter((cat) => m.classes.some((cl) => cl.byCategory.some((b) => b.category === cat)));
  const memRows = m.classes.map((cl) => [
    cl.id,
    String(cl.gpuCount),
    ...used.map((cat) => gb(cl.byCategory.find((b) => b.category === cat)?.bytes ?? 0)),
    gb(cl.totalBytes),
    cl.holds,
  ]);
  out.push(...table(["class", "GPUs", ...used.map((u) => SHORT[u]), "total", "holds"], memRows, ["l", "r", ...used.map(() => "r" as const), "r", "l"]));
  const verdict = m.fits ? `fits (${gb(m.budgetBytes - m.peakBytes)} free)` : `DOES NOT FIT (${gb(m.peakBytes - m.budgetBytes)} over)`;
  out.push(`  peak ${gb(m.peakBytes)} on GPU ${m.peakGpu} — ${verdict}`);
  for (const cl of m.classes) {
    if (cl.kvCache === null) continue;
    const kv = cl.kvCache;
    out.push(
      `  KV cache: ${kv.bytesPerToken} B per token (${kv.format}; replicated over ${kv.replicatedOver} GPU(s)); ` +
        `capacity ${kv.capacityTokens} tokens per GPU = ${kv.sequencesAtSeqLen} sequences at seq_len, ${kv.unitCapacityTokens} tokens per unit; ` +
        `the batch needs ${kv.neededTokens}`,
    );
  }

  const t = plan.traffic;
  {
    out.push("", `traffic per GPU per step (bytes sent; received alike)`);
    const rows = t.perProgram.map((g) => [
      g.program,
      gb(g.dispatch.nvlinkBytes),
      gb(g.dispatch.ibBytes),
      gb(g.combine.nvlinkBytes),
      gb(g.combine.ibBytes),
      gb(g.p2pBytes),
      gb(g.dataParallel.reduceScatterBytes),
      gb(g.dataParallel.allGatherBytes),
      gb(g.dataParallel.allReduceBytes),
      gb(g.tensorParallelBytes),
    ]);
    out.push(...table(["program", "dispatch NVLink", "dispatch IB", "combine NVLink", "combine IB", "p2p", "DP RS", "DP AG", "DP AR", "TP"], rows, ["l", "r", "r", "r", "r", "r", "r", "r", "r", "r"]));
    const k = t.copiesPerToken;
    out.push(
      `  per token and MoE layer: ${k.ib.toFixed(3)} IB, ${k.nvlink.toFixed(3)} NVLink, ${k.local.toFixed(3)} local copies ` +
        `(${k.distinctGpus.toFixed(3)} GPUs on ${k.distinctNodes.toFixed(3)} nodes); ${t.dispatchBytesPerCopy} B dispatched, ${t.combineBytesPerCopy} B combined per copy`,
    );
  }

  if (plan.notes.length > 0) {
    out.push("", "notes");
    for (const n of plan.notes) out.push(`  - ${n}`);
  }
  return out.join("\n") + "\n";
}
