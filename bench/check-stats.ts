/**
 * Benchmark: `dsv3 check` and `dsv3 stats` on the DeepSeek-V3 spec, in-process (after warm-up) and
 * as whole commands (a fresh node process each, start-up included). Reports numbers; never fails.
 *
 *   npm run bench
 */
import { spawnSync } from "node:child_process";
import { performance } from "node:perf_hooks";
import { checkSpecFile } from "../compiler/check/index.js";
import { computeStats } from "../compiler/stats.js";

const SPEC = "specs/deepseek-v3.dsv3";

function summary(samples: number[]): string {
  const s = [...samples].sort((a, b) => a - b);
  const pick = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return `median ${pick(0.5).toFixed(3)} ms  p90 ${pick(0.9).toFixed(3)} ms  min ${s[0]!.toFixed(3)} ms  (n=${s.length})`;
}

function timeInProcess(label: string, n: number, fn: () => void): void {
  for (let i = 0; i < 20; i++) fn();
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    fn();
    samples.push(performance.now() - t);
  }
  console.log(`${label.padEnd(34)} ${summary(samples)}`);
}

function timeCommand(label: string, args: string[], n: number): void {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = spawnSync(process.execPath, args, { encoding: "utf8" });
    samples.push(performance.now() - t);
    if (r.status !== 0) throw new Error(`dsv3 ${args.join(" ")} failed: ${r.stderr}`);
  }
  console.log(`${label.padEnd(34)} ${summary(samples)}`);
}

console.log(`dsv3 check/stats on ${SPEC} (node ${process.version})`);
timeInProcess("in-process check (parse+check)", 300, () => {
  if (!checkSpecFile(SPEC).spec) throw new Error("the V3 spec does not check");
});
const spec = checkSpecFile(SPEC).spec!;
timeInProcess("in-process stats (computeStats)", 3000, () => computeStats(spec));
timeInProcess("in-process check + stats", 300, () => computeStats(checkSpecFile(SPEC).spec!));
timeCommand("command: node -e '' (node start-up)", ["-e", ""], 15);
timeCommand("command: dsv3 --version", ["bin/dsv3.js", "--version"], 15);
timeCommand("command: dsv3 check", ["bin/dsv3.js", "check", SPEC], 15);
timeCommand("command: dsv3 stats --json", ["bin/dsv3.js", "stats", SPEC, "--json"], 15);
