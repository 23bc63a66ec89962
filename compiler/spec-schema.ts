/**
 * The JSON Schema of the Spec (compiler/spec.ts). Every Spec that leaves the checker is validated
 * against it with ajv; a failure there is a compiler bug, not a user error. Objects are closed
 * (`additionalProperties: false`) and every property is required, so the schema and the TypeScript
 * types cannot drift apart without a test failing.
 */
import { Ajv, type ValidateFunction } from "ajv";
import { CACHE_FORMATS, CACHE_POINTS, HIGH_DTYPES, HIGH_PRECISION_PARTS, PIPELINE_KINDS, RECOMPUTE_PARTS } from "./check/vocabulary.js";
import { SPEC_VERSION } from "./spec.js";

type Schema = Record<string, unknown>;

const int = (minimum = 0): Schema => ({ type: "integer", minimum });
const pos = (): Schema => ({ type: "number", exclusiveMinimum: 0 });
const num = (minimum = 0): Schema => ({ type: "number", minimum });
const bool = (): Schema => ({ type: "boolean" });
const str = (): Schema => ({ type: "string" });
const oneOf = (values: readonly (string | number)[]): Schema => ({ enum: [...values] });
const nullable = (s: Schema): Schema => ({ anyOf: [s, { type: "null" }] });
const pair = (): Schema => ({ type: "array", items: int(1), minItems: 2, maxItems: 2 });
const obj = (properties: Record<string, Schema>): Schema => ({
  type: "object",
  properties,
  required: Object.keys(properties),
  additionalProperties: false,
});

const rope = obj({
  theta: pos(),
  yarn: nullable(obj({ factor: pos(), originalContext: int(1), betaFast: num(), betaSlow: num(), mscale: num(), mscaleAllDim: num() })),
});

const mla = obj({
  kind: { const: "mla" },
  heads: int(1),
  qLoraRank: nullable(int(1)),
  kvLoraRank: int(1),
  qkNopeHeadDim: int(1),
  qkRopeHeadDim: int(1),
  vHeadDim: int(1),
  rope,
  softmaxScale: pos(),
});

const mha = obj({ kind: oneOf(["mha", "gqa"]), heads: int(1), kvHeads: int(1), headDim: int(1), rope, softmaxScale: pos() });

const moe = obj({
  routedExperts: int(1),
  sharedExperts: int(0),
  expertsPerToken: int(1),
  expertIntermediate: int(1),
  activation: oneOf(["swiglu", "gelu"]),
  gate: obj({
    scoring: oneOf(["sigmoid", "softmax"]),
    biasBalancing: nullable(obj({ updateSpeed: num() })),
    groups: int(1),
    topGroups: int(1),
    groupScore: oneOf(["top2_sum", "max"]),
    normalizeTopk: bool(),
    routedScale: num(),
    seqAuxLossWeight: num(),
  }),
});

const model = obj({
  name: str(),
  vocab: int(1),
  hidden: int(1),
  layers: int(1),
  layerPattern: { type: "array", minItems: 1, items: obj({ kind: oneOf(["dense", "moe"]), first: int(0), last: int(0) }) },
  normEps: pos(),
  tieEmbeddings: bool(),
  maxPositions: int(1),
  attention: { oneOf: [mla, mha] },
  denseFfn: nullable(obj({ intermediate: int(1), activation: oneOf(["swiglu", "gelu"]) })),
  moe: nullable(moe),
  mtp: obj({ depth: int(0), lossWeight: num() }),
});

const precision = obj({
  mode: oneOf(["fp8", "bf16"]),
  gemmFormat: oneOf(["e4m3", "e5m2"]),
  activationTile: pair(),
  backwardActivationTile: pair(),
  weightBlock: pair(),
  promotionInterval: int(1),
  scaleMax: pos(),
  pow2Scales: bool(),
  highPrecision: { type: "array", items: obj({ part: oneOf(HIGH_PRECISION_PARTS), dtype: oneOf(HIGH_DTYPES) }) },
  masterWeights: oneOf(HIGH_DTYPES),
  gradients: oneOf(HIGH_DTYPES),
  optimizerStates: oneOf(HIGH_DTYPES),
  activationCache: obj({
    default: oneOf(CACHE_FORMATS),
    exceptions: { type: "array", items: obj({ point: oneOf(CACHE_POINTS), format: oneOf(CACHE_FORMATS), pow2Scales: bool(), recomputeOutput: bool() }) },
  }),
  recompute: { type: "array", uniqueItems: true, items: oneOf(RECOMPUTE_PARTS) },
});

const cluster = obj({
  name: str(),
  nodes: int(1),
  gpusPerNode: int(1),
  gpus: int(1),
  gpu: obj({ name: str(), fp8FlopsPerS: pos(), bf16FlopsPerS: pos(), hbmBytes: pos(), hbmBytesPerS: pos(), sms: int(1) }),
  nvlinkBytesPerS: pos(),
  infinibandBytesPerS: pos(),
});

const training = obj({
  name: str(),
  kind: { const: "training" },
  pipeline: oneOf(PIPELINE_KINDS),
  pp: int(1),
  microbatches: int(1),
  tp: int(1),
  sp: bool(),
  dp: int(1),
  ep: int(1),
  zero: oneOf([0, 1, 2, 3]),
  nodeLimit: nullable(int(1)),
  commSms: int(0),
  seqLen: int(1),
  globalBatch: int(1),
  microbatchSize: int(1),
  worldSize: int(1),
});

const serving = obj({
  name: str(),
  kind: oneOf(["prefill", "decode"]),
  gpus: int(1),
  attention: obj({ tp: int(1), sp: bool(), dp: int(1) }),
  moe: obj({ ep: int(1), redundantExperts: int(0), sharedAsRouted: bool() }),
  microbatches: int(1),
  batchPerGpu: int(1),
  seqLen: int(1),
  mtpSpeculation: int(0),
  nodeLimit: nullable(int(1)),
  commSms: int(0),
});

export const SPEC_SCHEMA: Schema = {
  $schema: "http://json-schema.org/draft-07/schema#",
  $id: "https://dsv3.dev/schema/spec-v1.json",
  title: "dsv3 Spec",
  ...obj({
    specVersion: { const: SPEC_VERSION },
    model,
    precision,
    cluster,
    schedules: { type: "array", items: { oneOf: [training, serving] } },
  }),
};

let validator: ValidateFunction | null = null;

/** Schema errors of `spec` as readable strings; empty when it validates. */
export function validateSpec(spec: unknown): string[] {
  validator ??= new Ajv({ allErrors: true, strict: true }).compile(SPEC_SCHEMA);
  if (validator(spec)) return [];
  return (validator.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? "is invalid"}`);
}
