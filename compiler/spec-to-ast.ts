/**
 * Spec → AST: the canonical .dsv3 form of a Spec, every default written out. Printing the result
 * and checking it again gives the same Spec (a property test checks it); `dsv3 export --to dsv3`
 * and `--to ts` start from here. Quantities are written with the largest unit prefix that keeps
 * the value exact (`1979 TFLOP/s`, `3.35 TB/s`).
 */
import type { Attribute, Block, Document, Entry, Label, NumberValue, Value } from "../dsl/ast.js";
import type { Span } from "../dsl/span.js";
import { UNITS, type Dimension } from "../dsl/units.js";
import type { AttentionSpec, ClusterSpec, LayerRun, ModelSpec, MoeSpec, PrecisionSpec, ScheduleSpec, Spec } from "./spec.js";

const AT: Span = { file: "<export>", line: 1, col: 1, offset: 0, length: 0 };

/** A number literal whose text reads back as exactly `value` (integers ≥ 100,000 grouped by `_`). */
export function numberLiteral(value: number, unit: string | null = null): NumberValue {
  let raw = String(value);
  if (value !== 0 && Math.abs(value) < 1e-3) raw = value.toExponential();
  if (Number.isInteger(value) && Math.abs(value) >= 100_000 && !raw.includes("e")) raw = raw.replace(/\B(?=(\d{3})+(?!\d))/g, "_");
  return { kind: "number", value, raw, unit, span: AT };
}

/** `value` in base units as a literal with the largest exact prefix of `dimension`. */
export function quantityLiteral(value: number, dimension: Dimension): NumberValue {
  const candidates = [...UNITS].filter(([, u]) => u.dimension === dimension && Number.isInteger(Math.log10(u.factor))).sort((a, b) => b[1].factor - a[1].factor);
  // Prefer a whole number (1979 TFLOP/s over 1.979 PFLOP/s), then any exact value ≥ 1 (3.35 TB/s).
  for (const whole of [true, false]) {
    for (const [unit, info] of candidates) {
      const scaled = value / info.factor;
      if (Math.abs(scaled) < 1 || (whole && !Number.isInteger(scaled))) continue;
      const lit = numberLiteral(scaled, unit);
      if (Number(lit.raw.replace(/_/g, "")) * info.factor === value) return lit;
    }
  }
  const base = candidates[candidates.length - 1]![0];
  return numberLiteral(value, base);
}

const ident = (name: string): Value => ({ kind: "ident", name, span: AT });
const str = (value: string): Value => ({ kind: "string", value, span: AT });
const bool = (b: boolean): Value => ident(b ? "true" : "false");
const list = (items: readonly string[]): Value => ({ kind: "list", items: items.map(ident), span: AT });
const shape = ([rows, cols]: readonly [number, number]): Value => ({ kind: "shape", rows, cols, span: AT });
const orNone = (n: number | null): Value => (n === null ? ident("none") : numberLiteral(n));

function attr(key: string, value: Value | number): Attribute {
  return { kind: "attribute", key, keySpan: AT, value: typeof value === "number" ? numberLiteral(value) : value, span: AT };
}

function block(type: string, labels: readonly (string | Label)[], body: readonly (Entry | null)[]): Block {
  return {
    kind: "block",
    type,
    typeSpan: AT,
    labels: labels.map((l) => (typeof l === "string" ? { kind: "ident", value: l, span: AT } : l)),
    body: body.filter((e): e is Entry => e !== null),
    span: AT,
  };
}

const nameLabel = (value: string): Label => ({ kind: /^[A-Za-z_][A-Za-z0-9_]*$/.test(value) ? "ident" : "string", value, span: AT });

function layerEntries(m: ModelSpec): Entry[] {
  const runs = m.layerPattern;
  const leadingDense = runs.length <= 2 && runs.every((r, i) => (runs.length === 2 ? (i === 0 ? r.kind === "dense" : r.kind === "moe") : true));
  if (leadingDense) {
    const dense = runs.find((r) => r.kind === "dense");
    const count = dense ? dense.last - dense.first + 1 : 0;
    return [attr("dense_layers", count)];
  }
  const ranges = (kind: LayerRun["kind"]): Value => ({
    kind: "list",
    items: runs.filter((r) => r.kind === kind).map((r): Value => (r.first === r.last ? numberLiteral(r.first) : { kind: "range", from: numberLiteral(r.first), to: numberLiteral(r.last), span: AT })),
    span: AT,
  });
  const body: Entry[] = [];
  if (runs.some((r) => r.kind === "dense")) body.push(attr("dense", ranges("dense")));
  if (runs.some((r) => r.kind === "moe")) body.push(attr("moe", ranges("moe")));
  return [block("layer_pattern", [], body)];
}

function attentionBlock(a: AttentionSpec): Block {
  const y = a.rope.yarn;
  const rope = block("rope", [], [
    attr("theta", a.rope.theta),
    y ? block("yarn", [], [attr("factor", y.factor), attr("original_context", y.originalContext), attr("beta_fast", y.betaFast), attr("beta_slow", y.betaSlow), attr("mscale", y.mscale), attr("mscale_all_dim", y.mscaleAllDim)]) : null,
  ]);
  if (a.kind === "mla") {
    return block("attention", ["mla"], [
      attr("heads", a.heads), attr("q_lora_rank", orNone(a.qLoraRank)), attr("kv_lora_rank", a.kvLoraRank), attr("qk_nope_dim", a.qkNopeHeadDim),
      attr("qk_rope_dim", a.qkRopeHeadDim), attr("v_head_dim", a.vHeadDim), rope,
    ]);
  }
  return block("attention", [a.kind], [attr("heads", a.heads), attr("kv_heads", a.kvHeads), attr("head_dim", a.headDim), rope]);
}

function moeBlock(moe: MoeSpec): Block {
  const g = moe.gate;
  return block("ffn", ["moe"], [
    attr("routed_experts", moe.routedExperts), attr("shared_experts", moe.sharedExperts), attr("experts_per_token", moe.expertsPerToken),
    attr("intermediate", moe.expertIntermediate), attr("activation", ident(moe.activation)),
    block("gate", [], [
      attr("scoring", ident(g.scoring)),
      g.biasBalancing ? block("bias_balancing", [], [attr("update_speed", g.biasBalancing.updateSpeed)]) : null,
      attr("groups", g.groups), attr("top_groups", g.topGroups), attr("group_score", ident(g.groupScore)), attr("normalize_topk", bool(g.normalizeTopk)),
      attr("routed_scale", g.routedScale), attr("seq_aux_loss_weight", g.seqAuxLossWeight),
    ]),
  ]);
}

function modelBlock(m: ModelSpec): Block {
  return block("model", [nameLabel(m.name)], [
    attr("vocab", m.vocab), attr("hidden", m.hidden), attr("layers", m.layers), ...layerEntries(m), attr("norm_eps", m.normEps),
    attr("tie_embeddings", bool(m.tieEmbeddings)), attr("max_positions", m.maxPositions), attentionBlock(m.attention),
    m.denseFfn ? block("ffn", ["dense"], [attr("intermediate", m.denseFfn.intermediate), attr("activation", ident(m.denseFfn.activation))]) : null,
    m.moe ? moeBlock(m.moe) : null,
    block("mtp", [], [attr("depth", m.mtp.depth), attr("loss_weight", m.mtp.lossWeight)]),
  ]);
}

function precisionBlock(p: PrecisionSpec): Block {
  return block("precision", [], [
    attr("mode", ident(p.mode)), attr("format", ident(p.gemmFormat)), attr("activation_tile", shape(p.activationTile)),
    attr("backward_activation_tile", shape(p.backwardActivationTile)), attr("weight_block", shape(p.weightBlock)),
    attr("promotion_interval", p.promotionInterval), attr("scale_max", p.scaleMax), attr("pow2_scales", bool(p.pow2Scales)),
    attr("keep_bf16", list(p.highPrecision.filter((h) => h.dtype === "bf16").map((h) => h.part))),
    attr("keep_fp32", list(p.highPrecision.filter((h) => h.dtype === "fp32").map((h) => h.part))),
    attr("master_weights", ident(p.masterWeights)), attr("gradients", ident(p.gradients)), attr("optimizer_states", ident(p.optimizerStates)),
    block("activation_cache", [], [
      attr("default", ident(p.activationCache.default)),
      ...p.activationCache.exceptions.map((e) => block(e.point, [], [attr("format", ident(e.format)), attr("pow2_scales", bool(e.pow2Scales)), attr("recompute_output", bool(e.recomputeOutput))])),
    ]),
    attr("recompute", list(p.recompute)),
  ]);
}

function clusterBlock(c: ClusterSpec): Block {
  const g = c.gpu;
  return block("cluster", [nameLabel(c.name)], [
    attr("nodes", c.nodes), attr("gpus_per_node", c.gpusPerNode),
    block("gpu", [], [
      attr("name", str(g.name)), attr("fp8_peak", quantityLiteral(g.fp8FlopsPerS, "FLOP/s")), attr("bf16_peak", quantityLiteral(g.bf16FlopsPerS, "FLOP/s")),
      attr("hbm", quantityLiteral(g.hbmBytes, "bytes")), attr("hbm_bandwidth", quantityLiteral(g.hbmBytesPerS, "bytes/s")), attr("sms", g.sms),
    ]),
    attr("nvlink", quantityLiteral(c.nvlinkBytesPerS, "bytes/s")), attr("infiniband", quantityLiteral(c.infinibandBytesPerS, "bytes/s")),
  ]);
}

function scheduleBlock(s: ScheduleSpec, hasMoe: boolean): Block {
  if (s.kind === "training") {
    return block("training", [nameLabel(s.name)], [
      attr("pipeline", ident(s.pipeline)), attr("pp", s.pp), attr("microbatches", s.microbatches), attr("tp", s.tp), attr("sp", bool(s.sp)),
      attr("dp", s.dp), attr("ep", s.ep), attr("zero", s.zero), attr("node_limit", orNone(s.nodeLimit)), attr("comm_sms", s.commSms),
      attr("seq_len", s.seqLen), attr("global_batch", s.globalBatch),
    ]);
  }
  return block(s.kind, [nameLabel(s.name)], [
    attr("gpus", s.gpus),
    block("attention", [], [attr("tp", s.attention.tp), attr("sp", bool(s.attention.sp)), attr("dp", s.attention.dp)]),
    hasMoe ? block("moe", [], [attr("ep", s.moe.ep), attr("redundant_experts", s.moe.redundantExperts), attr("shared_as_routed", bool(s.moe.sharedAsRouted))]) : null,
    attr("microbatches", s.microbatches), attr("batch_per_gpu", s.batchPerGpu), attr("seq_len", s.seqLen), attr("mtp_speculation", s.mtpSpeculation),
    attr("node_limit", orNone(s.nodeLimit)), attr("comm_sms", s.commSms),
  ]);
}

export function specToDocument(spec: Spec, file = "<export>"): Document {
  return {
    kind: "document",
    file,
    items: [
      modelBlock(spec.model),
      precisionBlock(spec.precision),
      clusterBlock(spec.cluster),
      ...spec.schedules.map((s) => scheduleBlock(s, spec.model.moe !== null)),
    ],
    comments: [],
  };
}
