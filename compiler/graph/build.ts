/**
 * Spec → ModelGraph, unfused and unquantised: every op of the embedding, the dense and MoE decoder
 * layers (MLA or MHA/GQA attention in its naive form, dense FFN, MoE gate, routed experts as grouped
 * ops, shared experts, residual adds), the output head, the loss (training) and the MTP module.
 * Passes (compiler/passes) then quantise, absorb, mark recomputation and fuse.
 *
 * Phases and token geometry (dims):
 *   train    T = B·L tokens per micro-batch: B = the schedule's micro-batch size, L its seqLen; the
 *            loss graph and, with MTP depth > 0, the MTP graph (×depth); seq aux loss when α > 0
 *   prefill  T = B·L: B = ⌈batchPerGpu / microbatches⌉ prompts of L tokens; the KV cache of the L
 *            tokens is written (S = L)
 *   decode   T = B·Tq: B = ⌈batchPerGpu / microbatches⌉ sequences, Tq = 1 + mtpSpeculation queries
 *            each against a context of S = seqLen cached tokens; the MTP graph ×mtpSpeculation
 * `tokens` overrides T (as B whole sequences when it divides, else one sequence of T tokens). With
 * no schedule of the phase's kind: B = 1, L = S = 4096, Tq = 1.
 *
 * The naive MLA keeps, in prefill and decode, a KV cache of the per-head keys and values
 * (Nh·(Dn+R) + Nh·Dv elements per token and layer), as the official inference code's "naive" mode;
 * the absorb-mla pass turns it into the latent cache (C + R per token and layer).
 *
 * Dtypes: activations BF16; norm and projection weights BF16 (as in the checkpoint); the gate's
 * weight, bias, logits, scores and routing weights FP32 (FACTS: gate in FP32); logits and losses
 * FP32; token ids, positions, expert ids and slots i32. RMSNorm and the attention softmax compute
 * in FP32 internally (the ops' semantics). What the FP8 recipe changes is insert-fp8-quantisation's.
 */
import type { Activation, MlaSpec, MhaSpec, MoeSpec, RopeSpec, ScheduleSpec, Spec } from "../spec.js";
import type { Dims } from "./dim-expr.js";
import type { Attrs, Block, Dtype, LayerGraph, LayerKind, ModelGraph, Op, OpKind, Phase, ValueRole } from "./ir.js";
import { verifyModel } from "./verify.js";

export interface BuildOptions {
  phase: Phase;
  /** The schedule fixing the token geometry (default: the first of the phase's kind). */
  schedule?: string;
  /** Tokens per micro-batch, overriding the schedule's. */
  tokens?: number;
}

const DEFAULT_SEQ_LEN = 4096;

/** Builds one LayerGraph; temporaries are numbered in construction order. */
export class LayerBuilder {
  private next = 0;
  block: Block = "embedding";
  readonly graph: LayerGraph;

  constructor(kind: LayerKind, count: number, layers: [number, number][]) {
    this.graph = { kind, count, layers, params: [], values: {}, ops: [], outputs: [] };
  }

  private param(role: ValueRole, name: string, dtype: Dtype, shape: string[], shared = false): string {
    if (this.graph.values[name] !== undefined) return name;
    this.graph.values[name] = { id: name, dtype, shape, quant: null, role, shared };
    this.graph.params.push(name);
    return name;
  }

  input(name: string, dtype: Dtype, shape: string[]): string {
    return this.param("input", name, dtype, shape);
  }

  weight(name: string, shape: string[], dtype: Dtype = "bf16", shared = false): string {
    return this.param("weight", name, dtype, shape, shared);
  }

  state(name: string, dtype: Dtype, shape: string[]): string {
    return this.param("state", name, dtype, shape);
  }

  op(kind: OpKind, inputs: string[], outs: [Dtype, string[]][], attrs: Attrs = {}): string[] {
    const outputs = outs.map(([dtype, shape]) => {
      const id = String(this.next++);
      this.graph.values[id] = { id, dtype, shape, quant: null, role: "temp", shared: false };
      return id;
    });
    const op: Op = { kind, inputs, outputs, attrs, flags: [], block: this.block };
    this.graph.ops.push(op);
    return outputs;
  }

  op1(kind: OpKind, inputs: string[], dtype: Dtype, shape: string[], attrs: Attrs = {}): string {
    return this.op(kind, inputs, [[dtype, shape]], attrs)[0]!;
  }

  output(...ids: string[]): void {
    this.graph.outputs.push(...ids);
  }
}

interface Geometry {
  phase: Phase;
  T: number;
  B: number;
  /** Sequence length (train, prefill). */
  L: number | null;
  /** Cached context (prefill: L; decode: seqLen). */
  S: number | null;
  /** Queries per sequence (decode). */
  Tq: number | null;
  /** MTP modules run (training depth, decode speculation). */
  mtp: number;
}

function scheduleKindOf(phase: Phase): ScheduleSpec["kind"] {
  return phase === "train" ? "training" : phase;
}

function pickSchedule(spec: Spec, phase: Phase, name: string | undefined): ScheduleSpec | null {
  const kind = scheduleKindOf(phase);
  if (name !== undefined) {
    const s = spec.schedules.find((x) => x.name === name);
    if (s === undefined) {
      const known = spec.schedules.map((x) => `'${x.name}'`).join(", ") || "none";
      throw new Error(`graph: no schedule named '${name}' (schedules: ${known})`);
    }
    if (s.kind !== kind) throw new Error(`graph: schedule '${name}' is a ${s.kind} schedule, not ${kind} (phase ${phase})`);
    return s;
  }
  return spec.schedules.find((x) => x.kind === kind) ?? null;
}

function geometry(spec: Spec, options: BuildOptions): Geometry {
  const { phase, tokens } = options;
  const s = pickSchedule(spec, phase, options.schedule);
  if (tokens !== undefined && !(Number.isInteger(tokens) && tokens > 0)) throw new Error(`graph: tokens must be a positive integer, got ${tokens}`);
  const seqLen = s?.seqLen ?? DEFAULT_SEQ_LEN;
  if (phase === "decode") {
    const serving = s !== null && s.kind !== "training" ? s : null;
    let Tq = 1 + (serving?.mtpSpeculation ?? 0);
    let B = serving === null ? 1 : Math.ceil(serving.batchPerGpu / serving.microbatches);
    if (tokens !== undefined) {
      if (tokens % Tq === 0) B = tokens / Tq;
      else [Tq, B] = [1, tokens];
    }
    return { phase, T: B * Tq, B, L: null, S: seqLen, Tq, mtp: Tq - 1 };
  }
  let L = seqLen;
  let B = s === null ? 1 : s.kind === "training" ? s.microbatchSize : Math.ceil(s.batchPerGpu / s.microbatches);
  if (tokens !== undefined) {
    if (tokens % L === 0) B = tokens / L;
    else [B, L] = [1, tokens];
  }
  return {
    phase,
    T: B * L,
    B,
    L,
    S: phase === "prefill" ? L : null,
    Tq: null,
    mtp: phase === "train" ? spec.model.mtp.depth : 0,
  };
}

function ropeAttrs(rope: RopeSpec): Attrs {
  const a: Attrs = { theta: rope.theta };
  const y = rope.yarn;
  if (y !== null) a["yarn"] = [y.factor, y.originalContext, y.betaFast, y.betaSlow, y.mscale, y.mscaleAllDim];
  return a;
}

/** Build context shared by the graph builders. */
interface Ctx {
  spec: Spec;
  geo: Geometry;
  eps: number;
}

function attentionAttrs(ctx: Ctx, scale: number): Attrs {
  const decode = ctx.geo.phase === "decode";
  return { scale, causal: true, q_len: decode ? "Tq" : "L", kv_len: decode ? "S" : "L" };
}

/** MLA, naive form, on the normed input x [T,H]; returns the output projection's result [T,H]. */
function buildMla(b: LayerBuilder, ctx: Ctx, a: MlaSpec, x: string, pos: string): string {
  b.block = "mla";
  const { phase } = ctx.geo;
  let q: string;
  if (a.qLoraRank !== null) {
    const wqa = b.weight("mla.q_a", ["Q", "H"]);
    const wqn = b.weight("mla.q_a_norm", ["Q"]);
    const wqb = b.weight("mla.q_b", ["Nh*(Dn+R)", "Q"]);
    const qa = b.op1("linear", [x, wqa], "bf16", ["T", "Q"]);
    const qn = b.op1("rmsnorm", [qa, wqn], "bf16", ["T", "Q"], { eps: ctx.eps });
    q = b.op1("linear", [qn, wqb], "bf16", ["T", "Nh*(Dn+R)"]);
  } else {
    const wq = b.weight("mla.q", ["Nh*(Dn+R)", "H"]);
    q = b.op1("linear", [x, wq], "bf16", ["T", "Nh*(Dn+R)"]);
  }
  const wkva = b.weight("mla.kv_a", ["C+R", "H"]);
  const wkvn = b.weight("mla.kv_a_norm", ["C"]);
  const wkvb = b.weight("mla.kv_b", ["Nh*(Dn+Dv)", "C"]);
  const wo = b.weight("mla.o", ["H", "Nh*Dv"]);
  const rope = ropeAttrs(a.rope);
  const q3 = b.op1("reshape", [q], "bf16", ["T", "Nh", "Dn+R"]);
  const [qNope, qPe] = b.op("split", [q3], [["bf16", ["T", "Nh", "Dn"]], ["bf16", ["T", "Nh", "R"]]], { axis: 2 });
  const qPeRot = b.op1("rope", [qPe!, pos], "bf16", ["T", "Nh", "R"], rope);
  const qFull = b.op1("concat", [qNope!, qPeRot], "bf16", ["T", "Nh", "Dn+R"], { axis: 2 });
  const kva = b.op1("linear", [x, wkva], "bf16", ["T", "C+R"]);
  const [latent, kPe] = b.op("split", [kva], [["bf16", ["T", "C"]], ["bf16", ["T", "R"]]], { axis: 1 });
  const latentNormed = b.op1("rmsnorm", [latent!, wkvn], "bf16", ["T", "C"], { eps: ctx.eps });
  const kPeRot = b.op1("rope", [kPe!, pos], "bf16", ["T", "R"], rope);
  const kvb = b.op1("linear", [latentNormed, wkvb], "bf16", ["T", "Nh*(Dn+Dv)"]);
  const kvb3 = b.op1("reshape", [kvb], "bf16", ["T", "Nh", "Dn+Dv"]);
  const [kNope, v] = b.op("split", [kvb3], [["bf16", ["T", "Nh", "Dn"]], ["bf16", ["T", "Nh", "Dv"]]], { axis: 2 });
  const kPeAll = b.op1("broadcast", [kPeRot], "bf16", ["T", "Nh", "R"], { axis: 1 });
  const k = b.op1("concat", [kNope!, kPeAll], "bf16", ["T", "Nh", "Dn+R"], { axis: 2 });
  let keys = k;
  let values = v!;
  if (phase !== "train") {
    const kc = b.state("mla.k_cache", "bf16", ["B*S", "Nh", "Dn+R"]);
    const vc = b.state("mla.v_cache", "bf16", ["B*S", "Nh", "Dv"]);
    const kw = b.op1("kv_cache_write", [kc, k], "bf16", ["B*S", "Nh", "Dn+R"]);
    const vw = b.op1("kv_cache_write", [vc, v!], "bf16", ["B*S", "Nh", "Dv"]);
    b.output(kw, vw);
    if (phase === "decode") [keys, values] = [kw, vw];
  }
  const att = b.op1("attention", [qFull, keys, values], "bf16", ["T", "Nh", "Dv"], attentionAttrs(ctx, a.softmaxScale));
  const att2 = b.op1("reshape", [att], "bf16", ["T", "Nh*Dv"]);
  return b.op1("linear", [att2, wo], "bf16", ["T", "H"]);
}

/** Multi-head or grouped-query attention on x [T,H]; returns the output projection's result. */
function buildMha(b: LayerBuilder, ctx: Ctx, a: MhaSpec, x: string, pos: string): string {
  b.block = "attention";
  const wq = b.weight("attn.q", ["Nh*Dh", "H"]);
  const wk = b.weight("attn.k", ["Nkv*Dh", "H"]);
  const wv = b.weight("attn.v", ["Nkv*Dh", "H"]);
  const wo = b.weight("attn.o", ["H", "Nh*Dh"]);
  const rope = ropeAttrs(a.rope);
  const q = b.op1("reshape", [b.op1("linear", [x, wq], "bf16", ["T", "Nh*Dh"])], "bf16", ["T", "Nh", "Dh"]);
  const k = b.op1("reshape", [b.op1("linear", [x, wk], "bf16", ["T", "Nkv*Dh"])], "bf16", ["T", "Nkv", "Dh"]);
  const v = b.op1("reshape", [b.op1("linear", [x, wv], "bf16", ["T", "Nkv*Dh"])], "bf16", ["T", "Nkv", "Dh"]);
  const qr = b.op1("rope", [q, pos], "bf16", ["T", "Nh", "Dh"], rope);
  const kr = b.op1("rope", [k, pos], "bf16", ["T", "Nkv", "Dh"], rope);
  let keys = kr;
  let values = v;
  if (ctx.geo.phase !== "train") {
    const kc = b.state("attn.k_cache", "bf16", ["B*S", "Nkv", "Dh"]);
    const vc = b.state("attn.v_cache", "bf16", ["B*S", "Nkv", "Dh"]);
    const kw = b.op1("kv_cache_write", [kc, kr], "bf16", ["B*S", "Nkv", "Dh"]);
    const vw = b.op1("kv_cache_write", [vc, v], "bf16", ["B*S", "Nkv", "Dh"]);
    b.output(kw, vw);
    if (ctx.geo.phase === "decode") [keys, values] = [kw, vw];
  }
  const att = b.op1("attention", [qr, keys, values], "bf16", ["T", "Nh", "Dh"], attentionAttrs(ctx, a.softmaxScale));
  const att2 = b.op1("reshape", [att], "bf16", ["T", "Nh*Dh"]);
  return b.op1("linear", [att2, wo], "bf16", ["T", "H"]);
}

/** A dense MLP (SwiGLU: gate, up, down; GELU: up, down) of width `width` on x [T,H]. */
function buildMlp(b: LayerBuilder, prefix: string, width: string, activation: Activation, x: string): string {
  const down = (h: string): string => b.op1("linear", [h, b.weight(`${prefix}.down`, ["H", width])], "bf16", ["T", "H"]);
  if (activation === "swiglu") {
    const wg = b.weight(`${prefix}.gate`, [width, "H"]);
    const wu = b.weight(`${prefix}.up`, [width, "H"]);
    const g = b.op1("linear", [x, wg], "bf16", ["T", width]);
    const u = b.op1("linear", [x, wu], "bf16", ["T", width]);
    return down(b.op1("swiglu", [g, u], "bf16", ["T", width]));
  }
  const wu = b.weight(`${prefix}.up`, [width, "H"]);
  const u = b.op1("linear", [x, wu], "bf16", ["T", width]);
  return down(b.op1("gelu", [u], "bf16", ["T", width]));
}

/** The MoE FFN on x [T,H]: gate, routed experts (grouped), shared experts; returns [T,H] and the aux loss. */
function buildMoe(b: LayerBuilder, ctx: Ctx, moe: MoeSpec, x: string): { y: string; aux: string | null } {
  const gate = moe.gate;
  b.block = "moe_gate";
  const wg = b.weight("gate.weight", ["E", "H"], "fp32");
  const wb = gate.biasBalancing === null ? null : b.weight("gate.bias", ["E"], "fp32");
  const logits = b.op1("linear", [x, wg], "fp32", ["T", "E"]);
  const scores = b.op1("gate_scores", [logits], "fp32", ["T", "E"], { scoring: gate.scoring });
  const selection = wb === null ? scores : b.op1("add", [scores, wb], "fp32", ["T", "E"]);
  const idx = b.op1("group_topk", [selection], "i32", ["T", "K"], {
    k: "K",
    groups: "G",
    top_groups: gate.topGroups,
    group_score: gate.groupScore,
  });
  const weights = b.op1("gate_weights", [scores, idx], "fp32", ["T", "K"], { normalize: gate.normalizeTopk, scale: gate.routedScale });
  const aux =
    ctx.geo.phase === "train" && gate.seqAuxLossWeight > 0
      ? b.op1("seq_aux_loss", [scores, idx], "fp32", [], { alpha: gate.seqAuxLossWeight, seq_len: "L" })
      : null;

  b.block = "moe_experts";
  const rowsDim = "T*K";
  const [rows, counts, slots] = b.op("moe_permute", [x, idx], [
    ["bf16", [rowsDim, "H"]],
    ["i32", ["E"]],
    ["i32", ["T", "K"]],
  ]);
  const grouped = (h: string, name: string, n: string, k: string): string =>
    b.op1("grouped_linear", [h, b.weight(`experts.${name}`, ["E", n, k]), counts!], "bf16", [rowsDim, n]);
  let hidden: string;
  if (moe.activation === "swiglu") {
    const wGate = b.weight("experts.gate", ["E", "Fe", "H"]);
    const wUp = b.weight("experts.up", ["E", "Fe", "H"]);
    const g = b.op1("grouped_linear", [rows!, wGate, counts!], "bf16", [rowsDim, "Fe"]);
    const u = b.op1("grouped_linear", [rows!, wUp, counts!], "bf16", [rowsDim, "Fe"]);
    hidden = b.op1("swiglu", [g, u], "bf16", [rowsDim, "Fe"]);
  } else {
    hidden = b.op1("gelu", [grouped(rows!, "up", "Fe", "H")], "bf16", [rowsDim, "Fe"]);
  }
  const expertOut = grouped(hidden, "down", "H", "Fe");
  const routed = b.op1("moe_unpermute", [expertOut, slots!, weights], "bf16", ["T", "H"]);
  if (moe.sharedExperts === 0) return { y: routed, aux };
  b.block = "shared_experts";
  const shared = buildMlp(b, "shared", "Fs", moe.activation, x);
  b.block = "residual";
  return { y: b.op1("add", [routed, shared], "bf16", ["T", "H"]), aux };
}

/** One decoder block (pre-norm, residual) on x [T,H]: attention then a dense or MoE FFN. */
function buildDecoderBlock(b: LayerBuilder, ctx: Ctx, x: string, pos: string, ffn: "dense" | "moe"): { y: string; aux: string | null } {
  const model = ctx.spec.model;
  b.block = "rmsnorm";
  const attnIn = b.op1("rmsnorm", [x, b.weight("attn_norm", ["H"])], "bf16", ["T", "H"], { eps: ctx.eps });
  const a = model.attention;
  const attnOut = a.kind === "mla" ? buildMla(b, ctx, a, attnIn, pos) : buildMha(b, ctx, a, attnIn, pos);
  b.block = "residual";
  const h = b.op1("add", [x, attnOut], "bf16", ["T", "H"]);
  b.block = "rmsnorm";
  const ffnIn = b.op1("rmsnorm", [h, b.weight("ffn_norm", ["H"])], "bf16", ["T", "H"], { eps: ctx.eps });
  let f: string;
  let aux: string | null = null;
  if (ffn === "dense") {
    const dense = model.denseFfn;
    if (dense === null) throw new Error(`internal error: model '${model.name}' has a dense layer but no dense FFN`);
    b.block = "dense_ffn";
    f = buildMlp(b, "ffn", "F", dense.activation, ffnIn);
  } else {
    if (model.moe === null) throw new Error(`internal error: model '${model.name}' has a MoE layer but no MoE`);
    ({ y: f, aux } = buildMoe(b, ctx, model.moe, ffnIn));
  }
  b.block = "residual";
  return { y: b.op1("add", [h, f], "bf16", ["T", "H"]), aux };
}

function buildDecoderLayer(ctx: Ctx, kind: "dense" | "moe", runs: [number, number][]): LayerGraph {
  const count = runs.reduce((n, [a, z]) => n + z - a + 1, 0);
  const b = new LayerBuilder(kind === "dense" ? "dense_layer" : "moe_layer", count, runs);
  const x = b.input("x", "bf16", ["T", "H"]);
  const pos = b.input("pos", "i32", ["T"]);
  const { y, aux } = buildDecoderBlock(b, ctx, x, pos, kind);
  b.graph.outputs.unshift(y, ...(aux === null ? [] : [aux]));
  return b.graph;
}

function buildEmbedding(): LayerGraph {
  const b = new LayerBuilder("embedding", 1, []);
  const ids = b.input("ids", "i32", ["T"]);
  b.block = "embedding";
  b.output(b.op1("embedding", [ids, b.weight("embed", ["V", "H"])], "bf16", ["T", "H"]));
  return b.graph;
}

function buildHead(ctx: Ctx): LayerGraph {
  const b = new LayerBuilder("head", 1, []);
  const h = b.input("h", "bf16", ["T", "H"]);
  const norm = b.weight("final_norm", ["H"]);
  const tied = ctx.spec.model.tieEmbeddings;
  const w = tied ? b.weight("embed", ["V", "H"], "bf16", true) : b.weight("head", ["V", "H"]);
  b.block = "head";
  const n = b.op1("rmsnorm", [h, norm], "bf16", ["T", "H"], { eps: ctx.eps });
  b.output(b.op1("linear", [n, w], "fp32", ["T", "V"]));
  return b.graph;
}

function buildLoss(): LayerGraph {
  const b = new LayerBuilder("loss", 1, []);
  const logits = b.input("logits", "fp32", ["T", "V"]);
  const labels = b.input("labels", "i32", ["T"]);
  b.block = "loss";
  b.output(b.op1("cross_entropy", [logits, labels], "fp32", []));
  return b.graph;
}

/** One MTP module (×count): enorm, hnorm, concat, eh_proj, one decoder block, shared head (and loss). */
function buildMtp(ctx: Ctx, count: number): LayerGraph {
  const model = ctx.spec.model;
  const b = new LayerBuilder("mtp", count, []);
  const train = ctx.geo.phase === "train";
  const h = b.input("h", "bf16", ["T", "H"]);
  const nextIds = b.input("next_ids", "i32", ["T"]);
  const pos = b.input("pos", "i32", ["T"]);
  const labels = train ? b.input("labels", "i32", ["T"]) : null;
  const embed = b.weight("embed", ["V", "H"], "bf16", true);
  const head = model.tieEmbeddings ? embed : b.weight("head", ["V", "H"], "bf16", true);
  b.block = "embedding";
  const e = b.op1("embedding", [nextIds, embed], "bf16", ["T", "H"]);
  b.block = "mtp";
  const en = b.op1("rmsnorm", [e, b.weight("enorm", ["H"])], "bf16", ["T", "H"], { eps: ctx.eps });
  const hn = b.op1("rmsnorm", [h, b.weight("hnorm", ["H"])], "bf16", ["T", "H"], { eps: ctx.eps });
  const cat = b.op1("concat", [en, hn], "bf16", ["T", "2*H"], { axis: 1 });
  const proj = b.op1("linear", [cat, b.weight("eh_proj", ["H", "2*H"])], "bf16", ["T", "H"]);
  const { y, aux } = buildDecoderBlock(b, ctx, proj, pos, model.moe !== null ? "moe" : "dense");
  b.block = "head";
  const n = b.op1("rmsnorm", [y, b.weight("shared_head.norm", ["H"])], "bf16", ["T", "H"], { eps: ctx.eps });
  const logits = b.op1("linear", [n, head], "fp32", ["T", "V"]);
  const outs = [y];
  if (labels !== null) {
    b.block = "loss";
    const ce = b.op1("cross_entropy", [logits, labels], "fp32", []);
    outs.push(b.op1("scale", [ce], "fp32", [], { factor: model.mtp.lossWeight / model.mtp.depth }));
  } else {
    outs.push(logits);
  }
  if (aux !== null) outs.push(aux);
  b.graph.outputs.unshift(...outs);
  return b.graph;
}

/** The named sizes of the model and token geometry. */
function dimsOf(spec: Spec, geo: Geometry, usesDense: boolean, usesMoe: boolean): Dims {
  const m = spec.model;
  const d: Dims = { T: geo.T, B: geo.B };
  if (geo.L !== null) d["L"] = geo.L;
  if (geo.Tq !== null) d["Tq"] = geo.Tq;
  if (geo.S !== null) d["S"] = geo.S;
  d["H"] = m.hidden;
  d["V"] = m.vocab;
  const a = m.attention;
  d["Nh"] = a.heads;
  if (a.kind === "mla") {
    if (a.qLoraRank !== null) d["Q"] = a.qLoraRank;
    d["C"] = a.kvLoraRank;
    d["Dn"] = a.qkNopeHeadDim;
    d["R"] = a.qkRopeHeadDim;
    d["Dv"] = a.vHeadDim;
  } else {
    d["Nkv"] = a.kvHeads;
    d["Dh"] = a.headDim;
  }
  if (usesDense && m.denseFfn !== null) d["F"] = m.denseFfn.intermediate;
  if (usesMoe && m.moe !== null) {
    d["E"] = m.moe.routedExperts;
    d["K"] = m.moe.expertsPerToken;
    d["G"] = m.moe.gate.groups;
    d["Fe"] = m.moe.expertIntermediate;
    if (m.moe.sharedExperts > 0) d["Fs"] = m.moe.sharedExperts * m.moe.expertIntermediate;
  }
  return d;
}

/** The unfused, unquantised ModelGraph of `spec` for one phase (see the file comment). */
export function buildModelGraph(spec: Spec, options: BuildOptions): ModelGraph {
  const geo = geometry(spec, options);
  const ctx: Ctx = { spec, geo, eps: spec.model.normEps };
  const runs: Record<"dense" | "moe", [number, number][]> = { dense: [], moe: [] };
  for (const run of spec.model.layerPattern) runs[run.kind].push([run.first, run.last]);
  const mtpBlock = spec.model.moe !== null ? "moe" : "dense";
  const withMtp = geo.mtp > 0;
  const graphs: LayerGraph[] = [buildEmbedding()];
  if (runs.dense.length > 0) graphs.push(buildDecoderLayer(ctx, "dense", runs.dense));
  if (runs.moe.length > 0) graphs.push(buildDecoderLayer(ctx, "moe", runs.moe));
  graphs.push(buildHead(ctx));
  if (geo.phase === "train") graphs.push(buildLoss());
  if (withMtp) graphs.push(buildMtp(ctx, geo.mtp));
  const usesDense = runs.dense.length > 0 || (withMtp && mtpBlock === "dense");
  const usesMoe = runs.moe.length > 0 || (withMtp && mtpBlock === "moe");
  const model: ModelGraph = { model: spec.model.name, phase: geo.phase, dims: dimsOf(spec, geo, usesDense, usesMoe), graphs };
  verifyModel(model);
  return model;
}
