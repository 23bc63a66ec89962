/**
 * From well-typed blocks (read-blocks.ts) to the Spec: fills every default, converts units, resolves
 * the layer pattern and derives the figures later stages share. Values that were missing or invalid
 * are NaN here (already reported); the rules skip any check that involves one, and a Spec with errors
 * never leaves the checker.
 *
 * It also records where each Spec field came from (`SpanIndex`), so rules that work on the typed
 * Spec can still point at the source.
 */
import type { Span } from "../../dsl/span.js";
import type {
  AttentionSpec, CacheException, CacheFormat, CachePoint, ClusterSpec, GateSpec, GpuSpec, HighPrecisionDtype, HighPrecisionPart,
  LayerRun, ModelSpec, MoeSpec, PrecisionSpec, RecomputePart, RopeSpec, ScheduleSpec, ServingSchedule, Spec, TrainingSchedule,
} from "../spec.js";
import { SPEC_VERSION } from "../spec.js";
import { yarnSoftmaxScale } from "../yarn.js";
import type { ReadBlock } from "./read-blocks.js";
import { CACHE_POINTS, HIGH_PRECISION_PARTS, type AttrValue, type LayerSet } from "./vocabulary.js";

/** Spec path (e.g. `model.attention.heads`, `schedules.train.tp`) → where it was written. */
export class SpanIndex {
  private readonly spans = new Map<string, Span>();
  /** Spans of layer-pattern runs, for the layer rules. */
  readonly layerRuns: { kind: "dense" | "moe"; first: number; last: number; span: Span }[] = [];
  /** Where "the pattern does not cover …" is reported. */
  layerPatternSpan: Span | null = null;
  /** An 'ffn' block was written but did not read (a wrong kind, a misspelt type): none is reported missing. */
  ffnUnread = false;

  set(path: string, span: Span): void {
    this.spans.set(path, span);
  }

  /** Whether `path` itself was recorded (an attribute written, or defaulted from the vocabulary). */
  has(path: string): boolean {
    return this.spans.has(path);
  }

  /** The span of `path`, else of its nearest recorded parent. */
  at(path: string): Span {
    let p = path;
    for (;;) {
      const s = this.spans.get(p);
      if (s) return s;
      const dot = p.lastIndexOf(".");
      if (dot < 0) return this.spans.get("") ?? { file: "<input>", line: 1, col: 1, offset: 0, length: 0 };
      p = p.slice(0, dot);
    }
  }
}

/** Reads values out of a ReadBlock, recording spans under `prefix`. */
class Fields {
  constructor(private readonly rb: ReadBlock | undefined, private readonly prefix: string, private readonly index: SpanIndex) {
    if (rb) index.set(prefix, rb.typeSpan);
  }

  private raw(key: string, specKey: string): AttrValue | undefined {
    const a = this.rb?.attrs.get(key);
    if (a) this.index.set(`${this.prefix}.${specKey}`, a.span);
    return a?.value;
  }

  /** Whether the user wrote the attribute (defaults do not count). */
  written(key: string): boolean {
    const a = this.rb?.attrs.get(key);
    return a !== undefined && a.span !== this.rb?.typeSpan;
  }

  num(key: string, specKey = camel(key)): number {
    const v = this.raw(key, specKey);
    return typeof v === "number" ? v : NaN;
  }
  optNum(key: string, specKey = camel(key)): number | undefined {
    const v = this.raw(key, specKey);
    return typeof v === "number" ? v : undefined;
  }
  intOrNone(key: string, specKey = camel(key)): number | null {
    const v = this.raw(key, specKey);
    return typeof v === "number" ? v : v === null ? null : this.rb?.bad.has(key) ? NaN : null;
  }
  bool(key: string, fallback: boolean, specKey = camel(key)): boolean {
    const v = this.raw(key, specKey);
    return typeof v === "boolean" ? v : fallback;
  }
  optBool(key: string, specKey = camel(key)): boolean | undefined {
    const v = this.raw(key, specKey);
    return typeof v === "boolean" ? v : undefined;
  }
  str<T extends string>(key: string, fallback: T, specKey = camel(key)): T {
    const v = this.raw(key, specKey);
    return typeof v === "string" ? (v as T) : fallback;
  }
  list<T extends string>(key: string, specKey = camel(key)): T[] | undefined {
    const v = this.raw(key, specKey);
    return Array.isArray(v) && (v.length === 0 || typeof v[0] === "string") ? ([...v] as T[]) : undefined;
  }
  shape(key: string, specKey = camel(key)): [number, number] | undefined {
    const v = this.raw(key, specKey);
    return Array.isArray(v) && typeof v[0] === "number" ? [v[0] as number, v[1] as number] : undefined;
  }
  layers(key: string): LayerSet | undefined {
    const v = this.rb?.attrs.get(key)?.value;
    return v !== null && typeof v === "object" && "kind" in v ? v : undefined;
  }
  block(type: string): ReadBlock | undefined {
    return this.rb?.blocks.get(type)?.[0];
  }
  blocks(type: string): ReadBlock[] {
    return this.rb?.blocks.get(type) ?? [];
  }
}

function camel(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function label(rb: ReadBlock | undefined, fallback: string): string {
  return rb?.labels[0]?.value ?? fallback;
}

function buildRope(f: Fields, index: SpanIndex): RopeSpec {
  const rope = new Fields(f.block("rope"), "model.attention.rope", index);
  const yarnBlock = rope.block("yarn");
  const theta = f.block("rope") ? rope.num("theta") : 10000;
  if (!yarnBlock) return { theta, yarn: null };
  const y = new Fields(yarnBlock, "model.attention.rope.yarn", index);
  return {
    theta,
    yarn: {
      factor: y.num("factor"),
      originalContext: y.num("original_context"),
      betaFast: y.num("beta_fast"),
      betaSlow: y.num("beta_slow"),
      mscale: y.num("mscale"),
      mscaleAllDim: y.num("mscale_all_dim"),
    },
  };
}

function buildAttention(rb: ReadBlock | undefined, index: SpanIndex): AttentionSpec {
  const f = new Fields(rb, "model.attention", index);
  const kind = (rb?.labels[0]?.value ?? "mla") as "mla" | "mha" | "gqa";
  const rope = buildRope(f, index);

  if (kind === "mla") {
    const nope = f.num("qk_nope_dim", "qkNopeHeadDim");
    const ropeDim = f.num("qk_rope_dim", "qkRopeHeadDim");
    return {
      kind,
      heads: f.num("heads"),
      qLoraRank: f.intOrNone("q_lora_rank"),
      kvLoraRank: f.num("kv_lora_rank"),
      qkNopeHeadDim: nope,
      qkRopeHeadDim: ropeDim,
      vHeadDim: f.num("v_head_dim"),
      rope,
      softmaxScale: yarnSoftmaxScale(nope + ropeDim, rope),
    };
  }
  const heads = f.num("heads");
  const headDim = f.num("head_dim");
  return { kind, heads, kvHeads: f.optNum("kv_heads") ?? heads, headDim, rope, softmaxScale: yarnSoftmaxScale(headDim, rope) };
}

function buildMoe(rb: ReadBlock, index: SpanIndex): MoeSpec {
  const f = new Fields(rb, "model.moe", index);
  const g = new Fields(f.block("gate"), "model.moe.gate", index);
  const biasBlock = g.block("bias_balancing");
  const bias = biasBlock ? { updateSpeed: new Fields(biasBlock, "model.moe.gate.biasBalancing", index).num("update_speed") } : null;
  const scoring = g.str<"sigmoid" | "softmax">("scoring", "sigmoid");
  const groups = f.block("gate") ? g.num("groups") : 1;
  const gate: GateSpec = {
    scoring,
    biasBalancing: bias,
    groups,
    topGroups: g.optNum("top_groups") ?? groups,
    groupScore: g.str("group_score", bias ? "top2_sum" : "max"),
    normalizeTopk: g.optBool("normalize_topk") ?? scoring === "sigmoid",
    routedScale: f.block("gate") ? g.num("routed_scale") : 1,
    seqAuxLossWeight: f.block("gate") ? g.num("seq_aux_loss_weight") : 0,
  };
  return {
    routedExperts: f.num("routed_experts"),
    sharedExperts: f.num("shared_experts"),
    expertsPerToken: f.num("experts_per_token"),
    expertIntermediate: f.num("intermediate", "expertIntermediate"),
    activation: f.str("activation", "swiglu"),
    gate,
  };
}

/** Resolve `dense_layers` or `layer_pattern` into sorted runs; coverage is checked by the rules. */
function buildLayerPattern(f: Fields, layers: number, hasMoe: boolean, index: SpanIndex): LayerRun[] {
  const pattern = f.block("layer_pattern");
  if (pattern) {
    // A list that did not read (already reported) would only show up again as a gap.
    if (pattern.bad.size > 0) return [];
    index.layerPatternSpan = pattern.typeSpan;
    const p = new Fields(pattern, "model.layerPattern", index);
    for (const kind of ["dense", "moe"] as const) {
      for (const r of p.layers(kind)?.runs ?? []) index.layerRuns.push({ kind, first: r.first, last: r.last, span: r.span });
    }
    const runs = index.layerRuns.map(({ kind, first, last }) => ({ kind, first, last }));
    runs.sort((a, b) => a.first - b.first || a.last - b.last);
    return mergeRuns(runs);
  }
  if (!Number.isFinite(layers)) return [];
  const dense = f.optNum("dense_layers") ?? (hasMoe ? 0 : layers);
  const runs: LayerRun[] = [];
  if (dense > 0) runs.push({ kind: "dense", first: 0, last: Math.min(dense, layers) - 1 });
  if (dense < layers) runs.push({ kind: "moe", first: dense, last: layers - 1 });
  return runs;
}

function mergeRuns(runs: LayerRun[]): LayerRun[] {
  const out: LayerRun[] = [];
  for (const r of runs) {
    const last = out[out.length - 1];
    if (last && last.kind === r.kind && r.first <= last.last + 1) last.last = Math.max(last.last, r.last);
    else out.push({ ...r });
  }
  return out;
}

function buildModel(rb: ReadBlock | undefined, index: SpanIndex): ModelSpec {
  const f = new Fields(rb, "model", index);
  const ffns = f.blocks("ffn");
  index.ffnUnread = rb?.bad.has("ffn") ?? false;
  const denseRb = ffns.find((b) => b.labels[0]?.value === "dense");
  const moeRb = ffns.find((b) => b.labels[0]?.value === "moe");
  if (denseRb) index.set("model.denseFfn", denseRb.typeSpan);
  const denseF = new Fields(denseRb, "model.denseFfn", index);
  const layers = f.num("layers");
  const mtp = f.block("mtp");
  const mtpF = new Fields(mtp, "model.mtp", index);
  return {
    name: label(rb, "model"),
    vocab: f.num("vocab"),
    hidden: f.num("hidden"),
    layers,
    layerPattern: buildLayerPattern(f, layers, moeRb !== undefined, index),
    normEps: f.num("norm_eps"),
    tieEmbeddings: f.bool("tie_embeddings", false),
    maxPositions: f.num("max_positions"),
    attention: buildAttention(f.block("attention"), index),
    denseFfn: denseRb ? { intermediate: denseF.num("intermediate"), activation: denseF.str("activation", "swiglu") } : null,
    moe: moeRb ? buildMoe(moeRb, index) : null,
    mtp: mtp ? { depth: mtpF.num("depth"), lossWeight: mtpF.num("loss_weight") } : { depth: 0, lossWeight: 0 },
  };
}

const DEFAULT_KEEP: readonly { part: HighPrecisionPart; dtype: HighPrecisionDtype }[] = [
  { part: "embedding", dtype: "bf16" },
  { part: "output_head", dtype: "bf16" },
  { part: "moe_gate", dtype: "fp32" },
  { part: "norm", dtype: "fp32" },
  { part: "attention_core", dtype: "bf16" },
];

function buildPrecision(rb: ReadBlock | undefined, index: SpanIndex): PrecisionSpec {
  const f = new Fields(rb, "precision", index);
  const format = f.str<"e4m3" | "e5m2">("format", "e4m3");
  const tile = f.shape("activation_tile") ?? [1, 128];
  const bf16 = f.list<HighPrecisionPart>("keep_bf16", "highPrecision");
  const fp32 = f.list<HighPrecisionPart>("keep_fp32", "highPrecision");
  let highPrecision = [...DEFAULT_KEEP];
  if (bf16 || fp32) {
    highPrecision = [];
    for (const part of HIGH_PRECISION_PARTS) {
      if (fp32?.includes(part)) highPrecision.push({ part, dtype: "fp32" });
      else if (bf16?.includes(part)) highPrecision.push({ part, dtype: "bf16" });
    }
  }
  const cacheRb = f.block("activation_cache");
  const cache = new Fields(cacheRb, "precision.activationCache", index);
  const exceptions: CacheException[] = [];
  for (const point of CACHE_POINTS) {
    const e = cache.block(point);
    if (!e) continue;
    const ef = new Fields(e, `precision.activationCache.${point}`, index);
    exceptions.push({ point: point as CachePoint, format: ef.str<CacheFormat>("format", "bf16"), pow2Scales: ef.bool("pow2_scales", false), recomputeOutput: ef.bool("recompute_output", false) });
  }
  return {
    mode: f.str("mode", "fp8"),
    gemmFormat: format,
    activationTile: tile,
    backwardActivationTile: f.shape("backward_activation_tile") ?? [tile[1], tile[0]],
    weightBlock: f.shape("weight_block") ?? [128, 128],
    promotionInterval: f.num("promotion_interval"),
    scaleMax: f.optNum("scale_max") ?? (format === "e4m3" ? 448 : 57344),
    pow2Scales: f.bool("pow2_scales", false),
    highPrecision,
    masterWeights: f.str("master_weights", "fp32"),
    gradients: f.str("gradients", "fp32"),
    optimizerStates: f.str("optimizer_states", "fp32"),
    activationCache: { default: cacheRb ? cache.str<CacheFormat>("default", format) : format, exceptions },
    recompute: f.list<RecomputePart>("recompute") ?? [],
  };
}

function buildCluster(rb: ReadBlock | undefined, index: SpanIndex): ClusterSpec {
  const f = new Fields(rb, "cluster", index);
  const g = new Fields(f.block("gpu"), "cluster.gpu", index);
  const gpu: GpuSpec = {
    name: g.str("name", "gpu"),
    fp8FlopsPerS: g.num("fp8_peak", "fp8FlopsPerS"),
    bf16FlopsPerS: g.num("bf16_peak", "bf16FlopsPerS"),
    hbmBytes: g.num("hbm", "hbmBytes"),
    hbmBytesPerS: g.num("hbm_bandwidth", "hbmBytesPerS"),
    sms: g.num("sms"),
  };
  const nodes = f.num("nodes");
  const gpusPerNode = f.num("gpus_per_node");
  return {
    name: label(rb, "cluster"),
    nodes,
    gpusPerNode,
    gpus: nodes * gpusPerNode,
    gpu,
    nvlinkBytesPerS: f.num("nvlink", "nvlinkBytesPerS"),
    infinibandBytesPerS: f.num("infiniband", "infinibandBytesPerS"),
  };
}

function buildTraining(rb: ReadBlock, cluster: ClusterSpec, index: SpanIndex): TrainingSchedule {
  const name = label(rb, "training");
  const f = new Fields(rb, `schedules.${name}`, index);
  const pp = f.num("pp");
  const tp = f.num("tp");
  const dp = f.optNum("dp") ?? cluster.gpus / (pp * tp);
  const microbatches = f.num("microbatches");
  const globalBatch = f.num("global_batch");
  return {
    name,
    kind: "training",
    pipeline: f.str("pipeline", "1f1b"),
    pp,
    microbatches,
    tp,
    sp: f.bool("sp", false),
    dp,
    ep: f.num("ep"),
    zero: f.num("zero") as 0 | 1 | 2 | 3,
    nodeLimit: f.intOrNone("node_limit"),
    commSms: f.num("comm_sms"),
    seqLen: f.num("seq_len"),
    globalBatch,
    microbatchSize: globalBatch / (dp * microbatches),
    worldSize: pp * tp * dp,
  };
}

function buildServing(rb: ReadBlock, kind: "prefill" | "decode", index: SpanIndex): ServingSchedule {
  const name = label(rb, kind);
  const f = new Fields(rb, `schedules.${name}`, index);
  const gpus = f.num("gpus");
  const att = new Fields(f.block("attention"), `schedules.${name}.attention`, index);
  const moe = new Fields(f.block("moe"), `schedules.${name}.moe`, index);
  const tp = f.block("attention") ? att.num("tp") : 1;
  return {
    name,
    kind,
    gpus,
    attention: { tp, sp: att.bool("sp", false), dp: att.optNum("dp") ?? gpus / tp },
    moe: { ep: moe.optNum("ep") ?? gpus, redundantExperts: moe.optNum("redundant_experts") ?? 0, sharedAsRouted: moe.bool("shared_as_routed", false) },
    microbatches: f.num("microbatches"),
    batchPerGpu: f.num("batch_per_gpu"),
    seqLen: f.num("seq_len"),
    mtpSpeculation: f.num("mtp_speculation"),
    nodeLimit: f.intOrNone("node_limit"),
    commSms: f.num("comm_sms"),
  };
}

/** Build the draft Spec (NaN where a value was missing or invalid). */
export function buildSpec(top: ReadBlock, index: SpanIndex, files: readonly string[]): Spec {
  const t = new Fields(top, "", index);
  const cluster = buildCluster(t.block("cluster"), index);
  // Declaration order across files: imported files come first.
  const order = (rb: ReadBlock): number => files.indexOf(rb.typeSpan.file) * 2 ** 32 + rb.typeSpan.offset;
  const schedules: { at: number; s: ScheduleSpec }[] = [];
  for (const rb of t.blocks("training")) schedules.push({ at: order(rb), s: buildTraining(rb, cluster, index) });
  for (const kind of ["prefill", "decode"] as const) {
    for (const rb of t.blocks(kind)) schedules.push({ at: order(rb), s: buildServing(rb, kind, index) });
  }
  schedules.sort((a, b) => a.at - b.at);
  return {
    specVersion: SPEC_VERSION,
    model: buildModel(t.block("model"), index),
    precision: buildPrecision(t.block("precision"), index),
    cluster,
    schedules: schedules.map((x) => x.s),
  };
}
