/**
 * `dsv3 shard FILE --schedule NAME --weights PATH -o DIR`: cut a Hugging Face checkpoint into per-GPU
 * shards following the schedule's plan and write them as a bundle (runtime/checkpoint/shard.ts). On a
 * terminal, stderr shows the progress (files and bytes written).
 */
import type { Spec } from "../../compiler/spec.js";
import { COMPILER_VERSION } from "../../compiler/version.js";
import { makeDiagnostic } from "../../dsl/diagnostic.js";
import { describeSystemError } from "../../dsl/system-error.js";
import type { Values } from "../options.js";
import { display, EXIT_ERRORS, EXIT_OK, EXIT_USAGE, printDiagnostics, usageError, type CliIo } from "../output.js";
import { pickSchedule } from "./spec-input.js";

function megabytes(b: number): string {
  return `${(b / 1e6).toFixed(1)} MB`;
}

export async function runShard(spec: Spec, values: Values, io: CliIo): Promise<number> {
  if (values.weights === undefined) return usageError(io, "'dsv3 shard' needs --weights PATH (a .safetensors file or a checkpoint directory)");
  if (values.out === undefined) return usageError(io, "'dsv3 shard' needs -o DIR");
  const schedule = pickSchedule(spec, values.schedule, true);
  if (schedule !== null && typeof schedule !== "string") {
    printDiagnostics(io, [schedule], new Map());
    return schedule.code === "DSV9009" ? EXIT_USAGE : EXIT_ERRORS;
  }
  const { shardCheckpoint } = await import("../../runtime/checkpoint/shard.js");
  const tty = process.stderr.isTTY === true;
  let result;
  try {
    result = shardCheckpoint(spec, schedule!, values.weights, values.out, {
      compilerVersion: COMPILER_VERSION,
      ...(tty
        ? { onProgress: (p: { filesDone: number; files: number; bytesDone: number; bytesTotal: number }) => io.stderr(`\rshard: ${p.filesDone}/${p.files} files, ${megabytes(p.bytesDone)} of ${megabytes(p.bytesTotal)}${p.filesDone === p.files ? "\n" : ""}`) }
        : {}),
    });
  } catch (e) {
    if ((e as { code?: unknown }).code === undefined) throw e;
    printDiagnostics(io, [makeDiagnostic("DSV9008", null, { path: display(values.out), reason: describeSystemError(e) })], new Map());
    return EXIT_ERRORS;
  }
  printDiagnostics(io, result.diagnostics, new Map());
  if (result.written === null) return EXIT_ERRORS;
  const w = result.written;
  io.stdout(`wrote ${display(values.out)} (schedule '${schedule}'): ${w.gpus} GPUs in ${w.shardFiles} shard files, ${w.tensors} tensors, ${megabytes(w.bytes)} of weights from ${megabytes(w.sourceBytes)} of checkpoint\n`);
  return EXIT_OK;
}
