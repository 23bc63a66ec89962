/**
 * The CUDA toolchain: finding nvcc (and the ptxas beside it), its version (part of every cache key),
 * running one compile step, and reading ptxas's resource report (`-v`): registers, static shared
 * memory, stack, spill stores and loads per entry function.
 *
 * nvcc is looked up as `$DSV3_NVCC` (a path; `none` disables the toolchain), else `nvcc` on PATH,
 * else `$CUDA_HOME/bin/nvcc` or /usr/local/cuda/bin/nvcc.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";

export interface Toolchain {
  nvcc: string;
  ptxas: string;
  /** `release 13.0, V13.0.88`: what `nvcc --version` says about itself. */
  version: string;
}

/** The flags of each stage; part of the cache key. */
export const PTX_FLAGS = ["--gpu-architecture=compute_90a", "-ptx", "-O3", "-std=c++17", "-diag-suppress", "177,550"] as const;
export const CUBIN_FLAGS = ["-arch=sm_90a", "-O3", "-v"] as const;

function onPath(name: string): string | null {
  for (const dir of (process.env["PATH"] ?? "").split(delimiter)) {
    if (dir === "") continue;
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return null;
}

/** The toolchain, or null when there is none (or `$DSV3_NVCC` is `none`). */
export function findToolchain(env: NodeJS.ProcessEnv = process.env): Toolchain | null {
  const forced = env["DSV3_NVCC"];
  if (forced === "none") return null;
  const candidates = forced
    ? [forced]
    : [onPath("nvcc"), env["CUDA_HOME"] ? join(env["CUDA_HOME"], "bin", "nvcc") : null, "/usr/local/cuda/bin/nvcc"].filter((p): p is string => p !== null);
  for (const nvcc of candidates) {
    if (!existsSync(nvcc)) continue;
    let text: string;
    try {
      text = execFileSync(nvcc, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    } catch {
      continue;
    }
    const ptxas = join(dirname(nvcc), "ptxas");
    const m = /release ([0-9.]+), (V[0-9.]+)/.exec(text);
    return { nvcc, ptxas: existsSync(ptxas) ? ptxas : "ptxas", version: m ? `release ${m[1]}, ${m[2]}` : text.trim().split("\n").pop()! };
  }
  return null;
}

export class ToolError extends Error {
  override readonly name = "ToolError";
  constructor(
    readonly tool: string,
    readonly output: string,
  ) {
    super(`${tool} failed: ${output}`);
  }
}

/** Runs `tool args` in `cwd`; resolves with stderr+stdout, rejects with ToolError on failure. */
export function runTool(tool: string, args: readonly string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(tool, [...args], { cwd, encoding: "utf8", maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const out = `${stderr}${stdout}`;
      if (err) reject(new ToolError(tool.split("/").pop()!, out.trim() || err.message));
      else resolve(out);
    });
  });
}

export interface KernelResources {
  registers: number;
  /** Static shared memory (ptxas) plus the launch's dynamic shared memory. */
  sharedBytes: number;
  spillStoreBytes: number;
  spillLoadBytes: number;
  stackBytes: number;
}

/**
 * The resource report of entry `entry` in ptxas's `-v` output. Null when the report does not
 * mention the entry (ptxas changed its wording, say).
 */
export function parsePtxasReport(text: string, entry: string): Omit<KernelResources, "sharedBytes"> & { staticSharedBytes: number } | null {
  const lines = text.split(/\r?\n/);
  const start = lines.findIndex((l) => l.includes(`Compiling entry function '${entry}'`));
  if (start < 0) return null;
  let end = lines.findIndex((l, i) => i > start && l.includes("Compiling entry function"));
  if (end < 0) end = lines.length;
  const block = lines.slice(start, end).join("\n");
  const registers = /Used (\d+) registers/.exec(block);
  if (!registers) return null;
  const frame = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(block);
  const smem = /(\d+) bytes smem/.exec(block);
  return {
    registers: Number(registers[1]),
    staticSharedBytes: smem ? Number(smem[1]) : 0,
    stackBytes: frame ? Number(frame[1]) : 0,
    spillStoreBytes: frame ? Number(frame[2]) : 0,
    spillLoadBytes: frame ? Number(frame[3]) : 0,
  };
}
