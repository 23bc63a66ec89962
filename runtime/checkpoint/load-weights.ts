/**
 * A Hugging Face checkpoint → the CPU executor's weights (FP32). The checkpoint is opened (headers
 * only) and validated against the Spec as a whole first (validate.ts); only a checkpoint with no
 * error is read, one tensor at a time, straight into a fresh set of weights, which is returned only
 * when every tensor has been read — so a caller never sees half-loaded weights. FP8 weights are
 * dequantised with their block scales (fp8-blocks.ts); BF16/F16 decode exactly; a tied model's head
 * is the embedding.
 */
import type { Spec } from "../../compiler/spec.js";
import type { Diagnostic } from "../../dsl/diagnostic.js";
import { initModelWeights, type ModelWeights } from "../execute/model-weights.js";
import { decodeToFloat32, DTYPE_BYTES } from "./dtypes.js";
import { dequantiseBlocks } from "./fp8-blocks.js";
import { bindModelWeights } from "./hf-tensor-names.js";
import { openCheckpoint, type Checkpoint } from "./safetensors-index.js";
import { TensorReadError, type TensorEntry } from "./safetensors.js";
import { validateCheckpoint } from "./validate.js";

/**
 * One tensor's values as FP32 into `out` (allocated when absent): decoded, or dequantised with
 * `scale` for F8_E4M3. Throws TensorReadError when the file cannot be read.
 */
export function readTensorValues(ckpt: Checkpoint, entry: TensorEntry, scale: TensorEntry | null, out?: Float32Array): Float32Array {
  const count = (entry.end - entry.begin) / DTYPE_BYTES[entry.dtype];
  const dst = out ?? new Float32Array(count);
  const bytes = ckpt.reader(entry.name)!.readBytes(entry.name);
  if (entry.dtype === "F8_E4M3" && scale !== null) {
    const scales = decodeToFloat32("F32", ckpt.reader(scale.name)!.readBytes(scale.name), new Float32Array(scale.shape[0]! * scale.shape[1]!));
    return dequantiseBlocks(bytes, scales, entry.shape[0]!, entry.shape[1]!, dst);
  }
  return decodeToFloat32(entry.dtype, bytes, dst);
}

export interface LoadResult {
  /** Null when there is an error (see the diagnostics). */
  weights: ModelWeights<Float32Array> | null;
  /** Errors, and warnings (config.json disagreeing with the Spec). */
  diagnostics: Diagnostic[];
  /** Tensors read and their bytes in the checkpoint. */
  tensors: number;
  bytes: number;
}

/** Loads the checkpoint at `source` (a .safetensors file, an index, or a directory) for the Spec's model. */
export function loadModelWeights(source: string, spec: Spec): LoadResult {
  const opened = openCheckpoint(source);
  if (!opened.ok) return { weights: null, diagnostics: opened.diagnostics, tensors: 0, bytes: 0 };
  const ckpt = opened.value;
  try {
    const checked = validateCheckpoint(ckpt, spec);
    if (checked.tensors === null) return { weights: null, diagnostics: checked.diagnostics, tensors: 0, bytes: 0 };
    const weights = initModelWeights<Float32Array>(spec.model, 0, "f32", 0);
    const views = bindModelWeights(spec.model, weights);
    let bytes = 0;
    let count = 0;
    for (const t of checked.tensors) {
      const view = views.get(t.spec.name);
      if (view === undefined) continue; // an MTP duplicate of the embedding or head
      readTensorValues(ckpt, t.entry, t.scale, view);
      bytes += t.entry.end - t.entry.begin + (t.scale ? t.scale.end - t.scale.begin : 0);
      count++;
    }
    if (spec.model.tieEmbeddings) weights.head.set(weights.embed);
    return { weights, diagnostics: checked.diagnostics, tensors: count, bytes };
  } catch (e) {
    if (e instanceof TensorReadError) return { weights: null, diagnostics: [e.diagnostic], tensors: 0, bytes: 0 };
    throw e;
  } finally {
    ckpt.close();
  }
}
