/**
 * Checks a checkpoint against a Spec before anything is loaded: every tensor the model needs is
 * present with the right shape and a dtype it may have, nothing else is there, and every F8_E4M3
 * weight has its block scales. All problems come back together as one list of coded diagnostics:
 *   DSV9120 missing (a tensor, or the `_scale_inv` of an FP8 weight)   DSV9121 unexpected
 *   DSV9122 wrong shape (a weight, or its scale grid)                 DSV9123 wrong dtype
 *   DSV9125 (warning) config.json disagreeing with the Spec on a field that sets a shape
 * Missing and unexpected tensors are named one by one up to {@link LISTED}; the rest of each kind is
 * one more diagnostic that counts them and names a few (a V3 checkpoint given for a tiny spec has
 * tens of thousands).
 */
import type { Spec } from "../../compiler/spec.js";
import { exportHfConfig } from "../../compiler/hf/export-hf.js";
import { makeDiagnostic, type Diagnostic } from "../../dsl/diagnostic.js";
import type { SafetensorsDtype } from "./dtypes.js";
import { scaleGridShape } from "./fp8-blocks.js";
import { hfTensorSpecs, scaleName, type HfTensorSpec, type TensorRole } from "./hf-tensor-names.js";
import type { Checkpoint } from "./safetensors-index.js";
import { shapeText, type TensorEntry } from "./safetensors.js";

/** Missing or unexpected tensors named one by one before the rest are counted. */
export const LISTED = 16;

export interface CheckedTensor {
  spec: HfTensorSpec;
  entry: TensorEntry;
  /** The block scales of an F8_E4M3 weight. */
  scale: TensorEntry | null;
}

export interface ValidationResult {
  /** Null when there is an error. */
  tensors: CheckedTensor[] | null;
  /** Errors and warnings. */
  diagnostics: Diagnostic[];
}

const HIGH: readonly SafetensorsDtype[] = ["F32", "BF16", "F16"];
const PROJECTION: readonly SafetensorsDtype[] = ["F32", "BF16", "F16", "F8_E4M3"];

function allowed(role: TensorRole): readonly SafetensorsDtype[] {
  return role === "projection" ? PROJECTION : HIGH;
}

const ROLE_WORDS: Readonly<Record<TensorRole, string>> = {
  embedding: "the embedding",
  head: "the output head",
  norm: "a norm weight",
  projection: "a projection matrix",
  gate: "the MoE gate weight",
  gate_bias: "the gate's selection bias",
  mtp_duplicate: "an MTP copy of the embedding or head",
};

function orList(xs: readonly string[]): string {
  return xs.length === 1 ? xs[0]! : `${xs.slice(0, -1).join(", ")} or ${xs[xs.length - 1]}`;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Fields of config.json that decide shapes, compared with the Spec's own export. */
const CONFIG_FIELDS = [
  "hidden_size",
  "num_hidden_layers",
  "vocab_size",
  "num_attention_heads",
  "q_lora_rank",
  "kv_lora_rank",
  "qk_nope_head_dim",
  "qk_rope_head_dim",
  "v_head_dim",
  "intermediate_size",
  "moe_intermediate_size",
  "n_routed_experts",
  "n_shared_experts",
  "num_nextn_predict_layers",
  "tie_word_embeddings",
] as const;

function configWarnings(ckpt: Checkpoint, spec: Spec): Diagnostic[] {
  if (ckpt.config === null) return [];
  const ours = exportHfConfig(spec).config;
  if (ours === null) return [];
  const out: Diagnostic[] = [];
  for (const field of CONFIG_FIELDS) {
    if (!(field in ckpt.config) || !(field in ours)) continue;
    const found = JSON.stringify(ckpt.config[field]);
    const expected = JSON.stringify(ours[field]);
    if (found !== expected) out.push(makeDiagnostic("DSV9125", null, { path: ckpt.configPath ?? ckpt.source, field, found, expected, model: spec.model.name }));
  }
  return out;
}

function capped(code: "DSV9120" | "DSV9121", items: readonly string[], model: string, fix: string | undefined): Diagnostic[] {
  const out = items.slice(0, LISTED).map((what) => makeDiagnostic(code, null, { what, model }, fix));
  if (items.length > LISTED) {
    const rest = items.slice(LISTED);
    const names = rest.slice(0, 3).map((s) => s.replace(/^tensor /, "")).join(", ");
    out.push(makeDiagnostic(code, null, { what: `${rest.length} more tensors (${names}, …)`, model }, fix));
  }
  return out;
}

/** Checks `ckpt` against the Spec's model (see the file comment). */
export function validateCheckpoint(ckpt: Checkpoint, spec: Spec): ValidationResult {
  const model = spec.model;
  const specs = hfTensorSpecs(model);
  const known = new Set<string>();
  const missing: string[] = [];
  const errors: Diagnostic[] = [];
  const tensors: CheckedTensor[] = [];
  for (const s of specs) {
    known.add(s.name);
    const entry = ckpt.entry(s.name);
    if (entry === undefined) {
      if (s.role !== "mtp_duplicate") missing.push(`tensor '${s.name}' ${shapeText(s.shape)}`);
      continue;
    }
    if (!sameShape(entry.shape, s.shape)) {
      errors.push(makeDiagnostic("DSV9122", null, { name: s.name, found: shapeText(entry.shape), expected: shapeText(s.shape), model: model.name }));
    }
    const ok = allowed(s.role);
    if (!ok.includes(entry.dtype)) {
      errors.push(makeDiagnostic("DSV9123", null, { name: s.name, found: entry.dtype, expected: `${ROLE_WORDS[s.role]} must be ${orList(ok)}` }));
      continue;
    }
    let scale: TensorEntry | null = null;
    if (entry.dtype === "F8_E4M3") {
      const sn = scaleName(s.name);
      known.add(sn);
      const se = ckpt.entry(sn);
      const grid = scaleGridShape(s.shape[0]!, s.shape[1]!);
      if (se === undefined) {
        missing.push(`the block scales '${sn}' ${shapeText(grid)} of the F8_E4M3 weight`);
        continue;
      }
      if (se.dtype !== "F32") {
        errors.push(makeDiagnostic("DSV9123", null, { name: sn, found: se.dtype, expected: "block scales must be F32" }));
        continue;
      }
      if (sameShape(entry.shape, s.shape) && !sameShape(se.shape, grid)) {
        errors.push(makeDiagnostic("DSV9122", null, { name: sn, found: shapeText(se.shape), expected: `${shapeText(grid)} (one scale per 128×128 block of ${shapeText(s.shape)})`, model: model.name }));
        continue;
      }
      scale = se;
    }
    if (sameShape(entry.shape, s.shape)) tensors.push({ spec: s, entry, scale });
  }
  const unexpected = ckpt.names().filter((n) => !known.has(n)).map((n) => `tensor '${n}'`);
  const diagnostics = [
    ...capped("DSV9120", missing, model.name, undefined),
    ...capped("DSV9121", unexpected, model.name, "check that the checkpoint is for this model (dsv3 import-hf its config.json)"),
    ...errors,
    ...configWarnings(ckpt, spec),
  ];
  const failed = diagnostics.some((d) => d.severity === "error");
  return { tensors: failed ? null : tensors, diagnostics };
}
