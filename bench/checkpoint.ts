/**
 * Benchmark: checkpoint I/O on a synthetic multi-GB DeepSeek-V3-style checkpoint (BF16, sharded with
 * an index), generated in a temporary directory under os.tmpdir() and deleted afterwards:
 *   - write: the synthetic checkpoint (streaming writer, tensor by tensor);
 *   - load:  open + validate against the Spec + read and decode every tensor to FP32, one at a time
 *            (the loader's path; the FP32 model itself would not fit the point of the test);
 *   - shard: `dsv3 shard` for a training schedule (pp 2, ep 4, dp 4) keeping the checkpoint's dtypes
 *            ("none": slicing and copying) and in the recipe's dtypes ("recipe": FP8 re-quantisation
 *            of every projection with 128×128 block scales).
 * Each phase runs in its own process, so its peak resident memory (VmHWM from /proc/self/status, or
 * the largest sampled rss elsewhere) is its own; throughput is checkpoint bytes per second.
 * Reports numbers; never fails.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/checkpoint.js [--experts=32] [--phases=load,shard-none,shard-recipe]
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { checkSpecFile } from "../compiler/check/index.js";
import { mulberry32 } from "../compiler/seeded-random.js";
import type { Spec } from "../compiler/spec.js";
import { COMPILER_VERSION } from "../compiler/version.js";
import { DTYPE_BYTES } from "../runtime/checkpoint/dtypes.js";
import { hfTensorSpecs } from "../runtime/checkpoint/hf-tensor-names.js";
import { readTensorValues } from "../runtime/checkpoint/load-weights.js";
import { openCheckpoint, writeCheckpointFiles } from "../runtime/checkpoint/safetensors-index.js";
import type { TensorLayout } from "../runtime/checkpoint/safetensors.js";
import { shardCheckpoint } from "../runtime/checkpoint/shard.js";
import { validateCheckpoint } from "../runtime/checkpoint/validate.js";

function option(name: string, fallback: string): string {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg ? arg.slice(name.length + 3) : fallback;
}

/** A V3-shaped model of about 1.4 B parameters (≈2.8 GB in BF16) with `experts` routed experts. */
function specText(experts: number): string {
  return `
model "bench-v3" {
  vocab = 32000
  hidden = 2048
  layers = 4
  layer_pattern { dense = 0  moe = 1..3 }
  max_positions = 4096
  attention mla { heads = 16  q_lora_rank = 512  kv_lora_rank = 256  qk_nope_dim = 64  qk_rope_dim = 32  v_head_dim = 64
                  rope { theta = 10000 } }
  ffn dense { intermediate = 8192 }
  ffn moe { routed_experts = ${experts}  shared_experts = 2  experts_per_token = 4  intermediate = 1408
            gate { scoring = sigmoid  bias_balancing { update_speed = 0.001 }  groups = 4  top_groups = 2 } }
  mtp { depth = 1  loss_weight = 0.3 }
}
precision { mode = fp8 }
cluster "bench-1x8" { nodes = 1  gpus_per_node = 8  gpu = H800  nvlink = 160 GB/s  infiniband = 50 GB/s }
training train { seq_len = 1024  global_batch = 32  pipeline = 1f1b  pp = 2  microbatches = 4  dp = 4  ep = 4 }
`;
}

/** Peak resident set of this process in bytes (VmHWM), or null off Linux. */
function peakRss(): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

interface PhaseResult {
  phase: string;
  seconds: number;
  bytes: number;
  peakRssBytes: number | null;
  detail: string;
}

function loadSpec(dir: string): Spec {
  const checked = checkSpecFile(path.join(dir, "bench.dsv3"));
  if (!checked.spec) throw new Error(`bench spec did not check: ${checked.diagnostics.map((d) => d.message).join("; ")}`);
  return checked.spec;
}

/** One phase, run in a child process: prints its PhaseResult as JSON. */
function runPhase(phase: string, dir: string): PhaseResult {
  const spec = loadSpec(dir);
  const ckpt = path.join(dir, "checkpoint");
  const start = performance.now();
  let bytes = 0;
  let detail = "";
  if (phase === "load") {
    const opened = openCheckpoint(ckpt);
    if (!opened.ok) throw new Error(opened.diagnostics.map((d) => d.message).join("; "));
    const v = validateCheckpoint(opened.value, spec);
    if (v.tensors === null) throw new Error(v.diagnostics.map((d) => d.message).join("; "));
    let largest = 0;
    for (const t of v.tensors) {
      const values = readTensorValues(opened.value, t.entry, t.scale);
      largest = Math.max(largest, values.byteLength);
      bytes += t.entry.end - t.entry.begin;
    }
    opened.value.close();
    detail = `${v.tensors.length} tensors decoded to FP32, largest ${(largest / 1e6).toFixed(0)} MB as FP32`;
  } else {
    const requantise = phase === "shard-recipe" ? "recipe" : "none";
    const out = path.join(dir, `bundle-${requantise}`);
    const r = shardCheckpoint(spec, "train", ckpt, out, { compilerVersion: COMPILER_VERSION, requantise });
    if (r.written === null) throw new Error(r.diagnostics.map((d) => d.message).join("; "));
    bytes = r.written.sourceBytes;
    detail = `${r.written.gpus} GPUs, ${r.written.shardFiles} shard files, ${(r.written.bytes / 1e9).toFixed(2)} GB written`;
    rmSync(out, { recursive: true, force: true });
  }
  return { phase, seconds: (performance.now() - start) / 1000, bytes, peakRssBytes: peakRss(), detail };
}

/** Writes the synthetic checkpoint: BF16 (gate bias F32), values from a seeded pool of small numbers. */
async function writeSyntheticCheckpoint(spec: Spec, dir: string): Promise<{ seconds: number; bytes: number; files: number }> {
  const next = mulberry32(20241226);
  const pool = new Uint16Array(1 << 22);
  // BF16 codes of magnitudes about 2^-8 … 2^-5 with random signs and mantissas.
  for (let i = 0; i < pool.length; i++) {
    const r = Math.floor(next() * 2 ** 32) >>> 0;
    pool[i] = ((r & 1) << 15) | ((119 + ((r >>> 1) & 3)) << 7) | ((r >>> 3) & 0x7f);
  }
  const layout: TensorLayout[] = hfTensorSpecs(spec.model).map((s) => ({ name: s.name, dtype: s.role === "gate_bias" ? "F32" : "BF16", shape: s.shape }));
  let turn = 0;
  const produce = (t: TensorLayout): Uint8Array => {
    const n = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    const out = new Uint8Array(n);
    if (t.dtype === "F32") return out; // zero selection bias
    const src = new Uint8Array(pool.buffer);
    const shift = (turn++ * 2 * 7919) % src.byteLength;
    for (let at = 0; at < n; ) {
      const from = at === 0 ? shift : 0;
      const len = Math.min(n - at, src.byteLength - from);
      out.set(src.subarray(from, from + len), at);
      at += len;
    }
    return out;
  };
  const out = path.join(dir, "checkpoint");
  mkdirSync(out, { recursive: true });
  const start = performance.now();
  const written = await writeCheckpointFiles(out, layout, produce, 1_000_000_000, { format: "pt" });
  return { seconds: (performance.now() - start) / 1000, bytes: written.totalSize, files: written.files.length };
}

function mbps(bytes: number, seconds: number): string {
  return `${(bytes / 1e6 / seconds).toFixed(0)} MB/s`;
}

function gb(bytes: number | null): string {
  return bytes === null ? "n/a" : `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}

async function main(): Promise<void> {
  const childPhase = option("phase", "");
  if (childPhase !== "") {
    process.stdout.write(`${JSON.stringify(runPhase(childPhase, option("dir", "")))}\n`);
    return;
  }
  const experts = Number(option("experts", "32"));
  const phases = option("phases", "load,shard-none,shard-recipe").split(",");
  const dir = mkdtempSync(path.join(tmpdir(), "dsv3-bench-checkpoint-"));
  try {
    writeFileSync(path.join(dir, "bench.dsv3"), specText(experts));
    const spec = loadSpec(dir);
    const w = await writeSyntheticCheckpoint(spec, dir);
    console.log(`synthetic checkpoint: ${spec.model.name}, ${(w.bytes / 1e9).toFixed(2)} GB BF16 in ${w.files} shards + index (${dir})`);
    console.log(`  write         ${w.seconds.toFixed(1)} s  ${mbps(w.bytes, w.seconds)}`);
    const self = fileURLToPath(import.meta.url);
    for (const phase of phases) {
      const r = spawnSync(process.execPath, [self, `--phase=${phase}`, `--dir=${dir}`], { encoding: "utf8", maxBuffer: 1 << 24 });
      if (r.status !== 0) {
        console.log(`  ${phase.padEnd(13)} failed: ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")}`);
        continue;
      }
      const p = JSON.parse(r.stdout.trim().split("\n").pop()!) as PhaseResult;
      console.log(`  ${phase.padEnd(13)} ${p.seconds.toFixed(1)} s  ${mbps(p.bytes, p.seconds)}  peak RSS ${gb(p.peakRssBytes)}  (${p.detail})`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
