/**
 * Benchmark: `dsv3 run specs/tiny.dsv3 --backend cpu` — training steps per second and tokens per
 * second of the CPU executor (forward + backward of the whole model with MTP and aux loss, AdamW
 * with BF16 moments, bias update), one thread. Reports numbers; never fails.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/execute.js [--steps=30] [--batch=2] [--seed=0]
 */
import { performance } from "node:perf_hooks";
import { checkSpecFile } from "../compiler/check/index.js";
import { train } from "../runtime/execute/train.js";

function option(name: string, fallback: number): number {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.slice(name.length + 3)) : fallback;
}

const STEPS = option("steps", 30);
const BATCH = option("batch", 2);
const SEED = option("seed", 0);

const checked = checkSpecFile("specs/tiny.dsv3");
if (!checked.spec) throw new Error("specs/tiny.dsv3 did not check");
const start = performance.now();
const r = train(checked.spec, { steps: STEPS, seed: SEED, batch: BATCH });
const seconds = (performance.now() - start) / 1000;
const tokens = r.tokensPerStep * STEPS;
console.log(`tiny-v3, ${r.parameters} parameters, ${STEPS} steps of ${BATCH} × ${r.seqLen} tokens (seed ${SEED})`);
console.log(`  ${seconds.toFixed(2)} s total, ${((seconds / STEPS) * 1000).toFixed(0)} ms/step, ${(tokens / seconds).toFixed(0)} tokens/s`);
console.log(`  loss ${r.losses[0]} → ${r.losses[r.losses.length - 1]} (ln vocab = ${Math.log(checked.spec.model.vocab).toFixed(4)})`);
