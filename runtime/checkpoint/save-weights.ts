/**
 * The executor's weights → a Hugging Face-layout checkpoint directory: `config.json` (the Spec's
 * export, compiler/hf/export-hf.ts) and `model.safetensors`, or shards with
 * `model.safetensors.index.json` when a shard size is given. Tensor names and layouts are
 * hf-tensor-names.ts's, the MTP layers' copies of the embedding and head included.
 *
 * Dtypes: "F32" (the default) writes every tensor as F32, so loading gives the same bits back;
 * "BF16" rounds every tensor to BF16 but the gate bias (F32); "FP8" writes the projection matrices as
 * F8_E4M3 with `weight_scale_inv` per 128×128 block (the numerics' quantiser, fp8-blocks.ts; power-of-
 * two scales when the Spec's recipe says so) and the rest as BF16, as the official V3 checkpoint does.
 * Every file is written atomically; config.json and the index come last.
 */
import { mkdirSync } from "node:fs";
import type { Spec } from "../../compiler/spec.js";
import { exportHfConfig, formatHfConfig } from "../../compiler/hf/export-hf.js";
import type { Diagnostic } from "../../dsl/diagnostic.js";
import { writeFileAtomic } from "../atomic-file.js";
import type { ModelWeights } from "../execute/model-weights.js";
import { encodeFromNumbers, type SafetensorsDtype } from "./dtypes.js";
import { quantiseBlocks, scaleGridShape, type QuantisedBlocks } from "./fp8-blocks.js";
import { bindModelWeights, hfTensorSpecs, scaleName } from "./hf-tensor-names.js";
import { CONFIG_FILE, writeCheckpointFiles, type ShardedWrite } from "./safetensors-index.js";
import type { TensorLayout } from "./safetensors.js";

export type SaveDtype = "F32" | "BF16" | "FP8";

export interface SaveOptions {
  dtype?: SaveDtype;
  /** Split into shards of at most this many data bytes (null: one file). */
  maxShardBytes?: number | null;
}

export interface SaveResult {
  /** Null when the Spec has no Hugging Face form (see the diagnostics, DSV7009). */
  written: (ShardedWrite & { tensors: number }) | null;
  diagnostics: Diagnostic[];
}

/** Writes `weights` of the Spec's model as a checkpoint in `dir` (created if needed). */
export async function saveModelWeights(dir: string, spec: Spec, weights: ModelWeights<Float32Array>, options: SaveOptions = {}): Promise<SaveResult> {
  const exported = exportHfConfig(spec);
  if (exported.config === null) return { written: null, diagnostics: exported.diagnostics };
  const dtype = options.dtype ?? "F32";
  const config = { ...exported.config };
  if (dtype !== "FP8") delete config["quantization_config"];
  else if (!("quantization_config" in config)) config["quantization_config"] = { activation_scheme: "dynamic", fmt: "e4m3", quant_method: "fp8", weight_block_size: [128, 128] };
  config["torch_dtype"] = dtype === "F32" ? "float32" : "bfloat16";
  const pow2 = dtype === "FP8" && spec.precision.pow2Scales;

  const views = bindModelWeights(spec.model, weights);
  const values = new Map<string, Float32Array>();
  const layout: TensorLayout[] = [];
  for (const s of hfTensorSpecs(spec.model)) {
    const v = views.get(s.duplicateOf ?? s.name);
    if (v === undefined) throw new Error(`saveModelWeights: no executor tensor for ${s.name}`);
    values.set(s.name, v);
    const fp8 = dtype === "FP8" && s.fp8;
    const tensorDtype: SafetensorsDtype = fp8 ? "F8_E4M3" : dtype === "F32" || s.role === "gate_bias" ? "F32" : "BF16";
    layout.push({ name: s.name, dtype: tensorDtype, shape: s.shape });
    if (fp8) layout.push({ name: scaleName(s.name), dtype: "F32", shape: scaleGridShape(s.shape[0]!, s.shape[1]!) });
  }
  const byName = new Map(layout.map((t) => [t.name, t]));
  // The writer asks for tensors in name order: a weight comes right before its `_scale_inv`.
  let last: { name: string; q: QuantisedBlocks } | null = null;
  const quantised = (name: string): QuantisedBlocks => {
    if (last?.name !== name) {
      const shape = byName.get(name)!.shape;
      last = { name, q: quantiseBlocks(values.get(name)!, shape[0]!, shape[1]!, { pow2Scales: pow2 }) };
    }
    return last.q;
  };
  const produce = (t: TensorLayout): Uint8Array => {
    if (t.name.endsWith("_scale_inv") && !values.has(t.name)) {
      const q = quantised(t.name.slice(0, -"_scale_inv".length));
      return new Uint8Array(q.scaleInv.buffer, q.scaleInv.byteOffset, q.scaleInv.byteLength);
    }
    if (t.dtype === "F8_E4M3") return quantised(t.name).codes;
    return encodeFromNumbers(t.dtype, values.get(t.name)!);
  };
  mkdirSync(dir, { recursive: true });
  const written = await writeCheckpointFiles(dir, layout, produce, options.maxShardBytes ?? null, { format: "pt" });
  const sorted: Record<string, unknown> = {};
  for (const k of Object.keys(config).sort()) sorted[k] = config[k];
  await writeFileAtomic(`${dir.replace(/\/+$/, "")}/${CONFIG_FILE}`, formatHfConfig(sorted));
  return { written: { ...written, tensors: layout.length }, diagnostics: [] };
}
