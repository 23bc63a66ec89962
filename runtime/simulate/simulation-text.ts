/** The readable summary of a simulation (what `dsv3 simulate` prints without --json). */

import { formatBytes } from "../../compiler/plan/memory.js";
import type { DecodeFigures } from "./serving.js";
import type { Simulation } from "./simulate-plan.js";

export function seconds(s: number): string {
  if (s >= 1) return `${s.toFixed(3)} s`;
  if (s >= 1e-3) return `${(s * 1e3).toFixed(3)} ms`;
  return `${(s * 1e6).toFixed(1)} µs`;
}

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

function num(x: number, digits = 0): string {
  return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function simulationText(sim: Simulation): string {
  const lines: string[] = [];
  if (sim.kind === "training") {
    lines.push(`schedule '${sim.schedule}' (training, ${sim.pipeline}) on ${sim.gpus} GPUs`);
    lines.push(`  ${sim.compression}`);
    lines.push(`  step time                    ${seconds(sim.stepSeconds)} (pipeline ${seconds(sim.pipelineSeconds)}, tail ${seconds(sim.tailSeconds)})`);
    lines.push(`  tokens per step              ${num(sim.tokensPerStep)}`);
    lines.push(`  tokens/s per GPU             ${num(sim.tokensPerSecondPerGpu, 1)}`);
    lines.push(`  MFU                          ${pct(sim.mfu)} of dense FP8 peak (${pct(sim.mfuBf16Peak)} of dense BF16 peak)`);
    lines.push(`  pipeline bubble              ${pct(sim.bubbleShare)} (largest idle time over pipeline ranks / pipeline time)`);
    lines.push(`  exposed communication        ${seconds(sim.exposedCommunicationSeconds)} (${pct(sim.exposedCommunicationShare)} of the step, worst rank)`);
    lines.push(`  peak memory per GPU          ${formatBytes(sim.peakMemoryBytes)}${sim.memoryFits ? "" : " (does not fit)"}`);
    lines.push(`  GPU-hours per trillion tokens ${num(sim.gpuHoursPerTrillionTokens)}`);
    if (sim.validation !== null) {
      lines.push(`  validation: ${num(sim.validation.reportedGpuHoursPerTrillionTokens)} reported → simulated/reported ${sim.validation.ratio.toFixed(2)} (${sim.validation.note})`);
    }
    lines.push("");
    lines.push("  rank  busy          idle          exposed comm  tail          memory");
    for (const r of sim.ranks) {
      lines.push(
        `  ${String(r.rank).padStart(4)}  ${seconds(r.busySeconds).padEnd(12)}  ${seconds(r.idleSeconds).padEnd(12)}  ${seconds(r.exposedCommunicationSeconds).padEnd(12)}  ${seconds(r.tailSeconds).padEnd(12)}  ${formatBytes(r.peakMemoryBytes)}`,
      );
    }
    lines.push("");
    lines.push("  stage  F (one micro-batch)  B (full)      W             all-to-all");
    for (const s of sim.stages) {
      lines.push(`  ${String(s.stage).padStart(5)}  ${seconds(s.forwardSeconds).padEnd(19)}  ${seconds(s.backwardSeconds).padEnd(12)}  ${seconds(s.weightGradientSeconds).padEnd(12)}  ${seconds(s.allToAllSeconds)}`);
    }
    lines.push("");
    lines.push(`  MFU convention: ${sim.mfuConvention}`);
  } else {
    lines.push(`schedule '${sim.schedule}' (${sim.kind}) on ${sim.gpus} GPUs`);
    lines.push(`  ${sim.compression}`);
    lines.push(`  step time                    ${seconds(sim.stepSeconds)}`);
    lines.push(`  exposed communication        ${seconds(sim.exposedCommunicationSeconds)} (${pct(sim.exposedCommunicationShare)} of the step)`);
    lines.push(`  peak memory per GPU          ${formatBytes(sim.peakMemoryBytes)}${sim.memoryFits ? "" : " (does not fit)"}`);
    if (sim.prefillTokensPerSecondPerGpu !== null) lines.push(`  prefill tokens/s per GPU     ${num(sim.prefillTokensPerSecondPerGpu, 1)}`);
    if (sim.decode !== null) {
      const row = (label: string, d: DecodeFigures): void => {
        lines.push(
          `  ${label.padEnd(28)} ${num(d.tokensPerSecondPerGpu, 1)} tokens/s per GPU, ${num(d.tokensPerSecondPerUser, 1)} tokens/s per user, ` +
            `${seconds(d.timePerOutputTokenSeconds)} per output token (step ${seconds(d.stepSeconds)})`,
        );
      };
      row("decode without MTP", sim.decode.withoutMtp);
      if (sim.decode.withMtp !== null) row(`decode with MTP (${sim.decode.withMtp.draftTokens} draft, p=${sim.decode.withMtp.acceptanceRate})`, sim.decode.withMtp);
    }
  }
  lines.push("");
  for (const m of sim.model) lines.push(`  model: ${m}`);
  return lines.join("\n") + "\n";
}
