/**
 * Benchmark: the CPU reference executor's speed on one tiny MLA + MoE decoder layer, forward and
 * forward + backward, in FP32 (the working precision) and FP64 (the gradient checks' precision).
 * Reports numbers; never fails.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/reference-ops.js [--tokens=64] [--seconds=2]
 *
 * The layer is the tiny spec's (specs/tiny.dsv3) MoE layer: hidden 64, MLA with 4 heads (q_lora 32,
 * kv_lora 16, qk_nope 8, qk_rope 4, v 8, YaRN), 8 routed experts top-2 in 4 groups (top-2 groups,
 * sigmoid, bias), 1 shared expert, intermediate 32, sequence-wise aux loss on; one sequence of
 * `--tokens` tokens. Weights and inputs are seeded. The figure is tokens per second of one thread.
 */
import { performance } from "node:perf_hooks";
import { checkSpecFile } from "../compiler/check/index.js";
import {
  TensorRandom,
  decoderLayerBackward,
  decoderLayerConfigOf,
  decoderLayerForward,
  randomDecoderLayerWeights,
  type Dtype,
  type RealArray,
} from "../backends/reference/ops/index.js";

function option(name: string, fallback: number): number {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.slice(name.length + 3)) : fallback;
}

const TOKENS = option("tokens", 64);
const SECONDS = option("seconds", 2);

const checked = checkSpecFile("specs/tiny.dsv3");
if (!checked.spec) throw new Error("specs/tiny.dsv3 did not check");
const model = checked.spec.model;
const cfg = decoderLayerConfigOf(model, "moe", TOKENS);

/** Runs `step` repeatedly for about SECONDS (after a short warm-up); returns seconds per step. */
function time(step: () => void): number {
  const warm = performance.now();
  while (performance.now() - warm < 200) step();
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < SECONDS * 1000) {
    step();
    n++;
    t = performance.now();
  }
  return (t - t0) / 1000 / n;
}

function bench<A extends RealArray>(dtype: Dtype): { fwd: number; fwdBwd: number } {
  const r = new TensorRandom<A>(1, dtype);
  const w = randomDecoderLayerWeights(r, cfg);
  const x = r.normals(TOKENS * model.hidden);
  const dy = r.normals(TOKENS * model.hidden);
  const fwd = time(() => {
    decoderLayerForward(x, w, cfg, TOKENS);
  });
  const fwdBwd = time(() => {
    const f = decoderLayerForward(x, w, cfg, TOKENS);
    decoderLayerBackward(dy, 1, x, w, cfg, f.cache);
  });
  return { fwd, fwdBwd };
}

const ffn = cfg.ffn.kind === "moe" ? cfg.ffn : null;
console.log(
  `reference ops: one MLA + MoE layer of ${model.name} (hidden ${model.hidden}, ${cfg.mla.attention.heads} heads, ` +
    `${ffn?.moe.experts ?? 0} experts top-${ffn?.moe.topK ?? 0}, ${TOKENS} tokens), one thread\n`,
);
console.log("dtype   forward ms   tokens/s   fwd+bwd ms   tokens/s");
for (const dtype of ["f32", "f64"] as const) {
  const { fwd, fwdBwd } = bench(dtype);
  const row = [
    dtype.padEnd(6),
    (fwd * 1000).toFixed(3).padStart(11),
    Math.round(TOKENS / fwd).toString().padStart(10),
    (fwdBwd * 1000).toFixed(3).padStart(12),
    Math.round(TOKENS / fwdBwd).toString().padStart(10),
  ];
  console.log(row.join(" "));
}
