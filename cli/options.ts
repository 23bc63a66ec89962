/** The command line: commands, options, and which command takes which option. */
import type { parseArgs } from "node:util";

export const COMMANDS = ["check", "stats", "plan", "compile", "run", "verify", "fmt", "export", "import-hf", "pipeline", "eplb", "simulate", "report", "shard"] as const;
export type Command = (typeof COMMANDS)[number];

export const OPTIONS = {
  json: { type: "boolean", default: false },
  schedule: { type: "string" },
  out: { type: "string", short: "o" },
  to: { type: "string" },
  check: { type: "boolean", default: false },
  "with-schedules": { type: "boolean", default: false },
  kind: { type: "string" },
  stages: { type: "string" },
  microbatches: { type: "string" },
  cost: { type: "string" },
  svg: { type: "string" },
  load: { type: "string" },
  replicas: { type: "string" },
  groups: { type: "string" },
  nodes: { type: "string" },
  gpus: { type: "string" },
  "exact-reference": { type: "boolean", default: false },
  "dump-after": { type: "string" },
  backend: { type: "string" },
  steps: { type: "string" },
  seed: { type: "string" },
  batch: { type: "string" },
  generate: { type: "string" },
  "prompt-tokens": { type: "string" },
  speculative: { type: "boolean", default: false },
  timings: { type: "boolean", default: false },
  // issue 9: checkpoints
  weights: { type: "string" },
  tokens: { type: "string" },
  logits: { type: "boolean", default: false },
  "save-weights": { type: "string" },
  dtype: { type: "string" },
  // issue 7: simulation and reports
  trace: { type: "string" },
  sweep: { type: "string", multiple: true },
  acceptance: { type: "string" },
  help: { type: "boolean", short: "h", default: false },
  version: { type: "boolean", default: false },
} as const;

/** Options each command accepts (besides --help); anything else is a usage error. */
export const ACCEPTS: Readonly<Record<Command, readonly string[]>> = {
  check: ["json"],
  stats: ["json", "schedule"],
  plan: ["json", "schedule"],
  run: ["backend", "steps", "seed", "batch", "schedule", "json", "generate", "prompt-tokens", "speculative", "weights", "tokens", "logits", "save-weights", "dtype"],
  compile: ["schedule", "out", "dump-after", "timings"],
  verify: ["json"],
  fmt: ["check"],
  export: ["to", "out", "schedule"],
  "import-hf": ["out", "with-schedules"],
  pipeline: ["kind", "stages", "microbatches", "cost", "json", "svg"],
  eplb: ["load", "replicas", "groups", "nodes", "gpus", "json", "exact-reference"],
  simulate: ["schedule", "json", "trace", "sweep", "acceptance"],
  report: ["out"],
  shard: ["schedule", "weights", "out"],
};

export type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; tokens: true }>>["values"];

/** A whole number ≥ 1 from a flag, or a usage message. */
export function countFlag(name: string, raw: string | undefined): number | string {
  if (raw === undefined) return `--${name} is required`;
  const n = Number(raw);
  return Number.isInteger(n) && n >= 1 ? n : `--${name} must be a whole number ≥ 1; found '${raw}'`;
}
