/**
 * `dsv3 run FILE --backend cpu --weights PATH --tokens 1,2,3 [--logits] [--json]`: the forward pass of
 * the CPU reference executor on the given token ids with a checkpoint's weights (a .safetensors file,
 * an index, or a checkpoint directory), reporting each position's most likely next token and, with
 * `--logits`, every position's vocab-size row of logits.
 *
 * `dsv3 run FILE --save-weights DIR [--seed S] [--dtype f32|bf16|fp8] [--json]`: the Spec's seeded
 * initial weights written as a Hugging Face-layout checkpoint (config.json + model.safetensors): F32 by
 * default, so they load back bit for bit; BF16; or FP8 as the official DeepSeek-V3 checkpoint stores
 * them (E4M3 projection matrices with a `weight_scale_inv` per 128×128 block, the rest BF16, the gate
 * bias F32).
 */
import type { Spec } from "../../compiler/spec.js";
import { makeDiagnostic } from "../../dsl/diagnostic.js";
import { describeSystemError } from "../../dsl/system-error.js";
import type { Values } from "../options.js";
import { display, EXIT_ERRORS, EXIT_OK, printDiagnostics, toJson, usageError, type CliIo } from "../output.js";

/** Token ids from "1,2,3", or a usage message. */
export function parseTokenList(raw: string, vocab: number): Int32Array | string {
  const parts = raw.split(",").map((s) => s.trim());
  if (parts.length === 0 || parts.some((p) => p === "")) return `--tokens must be comma-separated token ids, like 1,2,3; found '${raw}'`;
  const ids = new Int32Array(parts.length);
  for (let i = 0; i < parts.length; i++) {
    const n = Number(parts[i]);
    if (!/^[0-9]+$/.test(parts[i]!) || !Number.isInteger(n) || n >= vocab) return `--tokens: '${parts[i]}' is not a token id in [0, ${vocab})`;
    ids[i] = n;
  }
  return ids;
}

/** The most parameters the CPU executor holds (FP32: 2 GB). */
export const CPU_WEIGHTS_LIMIT = 500_000_000;

export async function runWeights(spec: Spec, values: Values, io: CliIo): Promise<number> {
  if (values.backend !== undefined && values.backend !== "cpu") return usageError(io, `backend '${values.backend}' is not available (only 'cpu')`);
  if (spec.model.attention.kind === "mla") {
    const { hfTensorSpecs } = await import("../../runtime/checkpoint/hf-tensor-names.js");
    const params = hfTensorSpecs(spec.model).reduce((n, t) => n + (t.role === "mtp_duplicate" ? 0 : t.shape.reduce((a, b) => a * b, 1)), 0);
    if (params > CPU_WEIGHTS_LIMIT) {
      return usageError(io, `'${spec.model.name}' has ${params.toLocaleString("en-US")} parameters; the CPU executor holds at most ${CPU_WEIGHTS_LIMIT.toLocaleString("en-US")} in FP32`, "use a smaller spec (specs/tiny.dsv3), or dsv3 shard to cut the checkpoint for a plan");
    }
  }
  const stray = (["steps", "batch", "generate", "prompt-tokens", "schedule"] as const).find((k) => values[k] !== undefined) ?? (values.speculative ? "speculative" : undefined);
  if (stray !== undefined) return usageError(io, `--${stray} does not go with --weights, --tokens or --save-weights`);
  const saveDir = values["save-weights"];
  if (saveDir !== undefined) {
    if (values.weights !== undefined || values.tokens !== undefined || values.logits) return usageError(io, "--save-weights writes a checkpoint; run the forward (--weights, --tokens, --logits) in a separate command");
    return saveWeights(spec, saveDir, values, io);
  }
  if (values.seed !== undefined) return usageError(io, "--seed goes with --save-weights (a checkpoint's weights are not seeded)");
  if (values.dtype !== undefined) return usageError(io, "--dtype goes with --save-weights (a checkpoint's dtypes are its own)");
  if (values.weights === undefined || values.tokens === undefined) return usageError(io, "the forward on a checkpoint needs both --weights PATH and --tokens 1,2,3");
  const ids = parseTokenList(values.tokens, spec.model.vocab);
  if (typeof ids === "string") return usageError(io, ids);
  if (ids.length > spec.model.maxPositions) return usageError(io, `--tokens: ${ids.length} tokens exceed max_positions ${spec.model.maxPositions}`);
  if (spec.model.attention.kind !== "mla") return usageError(io, `the CPU executor runs MLA attention, not ${spec.model.attention.kind}`);
  const [{ loadModelWeights }, { forwardFull, argmaxRow }] = await Promise.all([import("../../runtime/checkpoint/load-weights.js"), import("../../runtime/execute/decode.js")]);
  const loaded = loadModelWeights(values.weights, spec);
  printDiagnostics(io, loaded.diagnostics, new Map());
  if (loaded.weights === null) return EXIT_ERRORS;
  const V = spec.model.vocab;
  const { logits } = forwardFull(loaded.weights, spec.model, ids);
  const next = Array.from({ length: ids.length }, (_, t) => argmaxRow(logits, t, V));
  const rows = values.logits ? Array.from({ length: ids.length }, (_, t) => Array.from(logits.subarray(t * V, (t + 1) * V))) : null;
  if (values.json) {
    io.stdout(toJson({ model: spec.model.name, weights: display(values.weights), tokens: Array.from(ids), next, ...(rows ? { logits: rows } : {}) }));
    return EXIT_OK;
  }
  const lines = [`${spec.model.name}: forward of ${ids.length} token(s) with the weights of ${display(values.weights)} (${loaded.tensors} tensors, CPU, FP32)`];
  for (let t = 0; t < ids.length; t++) lines.push(`  position ${t}  token ${ids[t]}  next ${next[t]}  (logit ${logits[t * V + next[t]!]!.toPrecision(6)})`);
  if (rows) rows.forEach((r, t) => lines.push(`logits ${t}: ${r.map((x) => x.toPrecision(6)).join(" ")}`));
  io.stdout(`${lines.join("\n")}\n`);
  return EXIT_OK;
}

async function saveWeights(spec: Spec, dir: string, values: Values, io: CliIo): Promise<number> {
  let seed = 0;
  if (values.seed !== undefined) {
    seed = Number(values.seed);
    if (!Number.isInteger(seed) || seed < 0) return usageError(io, `--seed must be a whole number ≥ 0; found '${values.seed}'`);
  }
  const dtypes = { f32: "F32", bf16: "BF16", fp8: "FP8" } as const;
  const dtypeName = (values.dtype ?? "f32").toLowerCase();
  if (!Object.hasOwn(dtypes, dtypeName)) return usageError(io, `--dtype must be f32, bf16 or fp8; found '${values.dtype}'`);
  const dtype = dtypes[dtypeName as keyof typeof dtypes];
  if (spec.model.attention.kind !== "mla") return usageError(io, `the CPU executor's weights are MLA weights; the model has ${spec.model.attention.kind} attention`);
  const [{ initModelWeights }, { saveModelWeights }] = await Promise.all([import("../../runtime/execute/model-weights.js"), import("../../runtime/checkpoint/save-weights.js")]);
  const weights = initModelWeights<Float32Array>(spec.model, seed, "f32");
  let saved;
  try {
    saved = await saveModelWeights(dir, spec, weights, { dtype });
  } catch (e) {
    if ((e as { code?: unknown }).code === undefined) throw e;
    printDiagnostics(io, [makeDiagnostic("DSV9008", null, { path: display(dir), reason: describeSystemError(e) })], new Map());
    return EXIT_ERRORS;
  }
  printDiagnostics(io, saved.diagnostics, new Map());
  if (saved.written === null) return EXIT_ERRORS;
  const w = saved.written;
  if (values.json) {
    io.stdout(toJson({ model: spec.model.name, path: display(dir), seed, dtype: dtypeName, tensors: w.tensors, dataBytes: w.totalSize, files: w.files.map((f) => ({ name: f.name, bytes: f.written.bytes, sha256: f.written.sha256 })) }));
    return EXIT_OK;
  }
  io.stdout(`wrote ${display(dir)}: config.json and ${w.files.map((f) => f.name).join(", ")} (${w.tensors} tensors, ${w.totalSize} bytes of ${dtype === "FP8" ? "FP8/BF16/F32" : dtype} data, seed ${seed})\n`);
  return EXIT_OK;
}
