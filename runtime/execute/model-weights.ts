/**
 * The whole model's parameters for the CPU executor: the token embedding, every decoder layer (dense
 * or MoE per the spec's layer pattern), the final norm and output head, and the MTP modules (their
 * projection/norms and one transformer block each; embedding and head shared with the main model).
 *
 * Initialisation is the DeepSeek-V3 report's: every matrix (embedding, projections, experts, gate,
 * output head) ~ N(0, std²) with std 0.006, every RMSNorm gain 1, every gate selection bias 0. It is
 * deterministic for a seed (mulberry32 + Box–Muller from the reference ops, drawn in a fixed order).
 *
 * {@link parameterList} flattens weights — or gradients, which have the same structure — into one
 * fixed order of named tensors, so the optimizer and gradient accumulation walk them in lock-step.
 * The gate bias is not a parameter (it gets no gradient; the bias update moves it).
 */
import type { ModelSpec } from "../../compiler/spec.js";
import {
  TensorRandom,
  decoderLayerConfigOf,
  mlaWeightSizes,
  type DecoderLayerConfig,
  type DecoderLayerGrads,
  type DecoderLayerWeights,
  type Dtype,
  type MlaWeights,
  type MtpWeights,
  type RealArray,
} from "../../backends/reference/ops/index.js";

/** The report's initialisation standard deviation. */
export const DEFAULT_INIT_STD = 0.006;

export interface MtpModuleWeights<A extends RealArray> {
  proj: MtpWeights<A>;
  block: DecoderLayerWeights<A>;
}

export interface ModelWeights<A extends RealArray> {
  /** vocab × hidden. */
  embed: A;
  layers: DecoderLayerWeights<A>[];
  finalNorm: A;
  /** vocab × hidden. */
  head: A;
  mtp: MtpModuleWeights<A>[];
}

export interface MtpModuleGrads<A extends RealArray> {
  proj: MtpWeights<A>;
  block: DecoderLayerGrads<A>;
}

export interface ModelGrads<A extends RealArray> {
  embed: A;
  layers: DecoderLayerGrads<A>[];
  finalNorm: A;
  head: A;
  mtp: MtpModuleGrads<A>[];
}

/** The kind of each layer 0..layers−1 from the spec's layer pattern. */
export function layerKinds(model: ModelSpec): ("dense" | "moe")[] {
  const kinds: ("dense" | "moe")[] = new Array(model.layers).fill("dense");
  for (const run of model.layerPattern) for (let l = run.first; l <= run.last; l++) kinds[l] = run.kind;
  return kinds;
}

/** The MTP modules' block kind: an MoE block when the model has an MoE FFN (as in V3), else dense. */
export function mtpBlockKind(model: ModelSpec): "dense" | "moe" {
  return model.moe !== null ? "moe" : "dense";
}

/** Layer configs of the main layers for sequences of `seqLen` tokens. */
export function mainLayerConfigs(model: ModelSpec, seqLen: number): DecoderLayerConfig[] {
  return layerKinds(model).map((k) => decoderLayerConfigOf(model, k, seqLen));
}

function initLayer<A extends RealArray>(r: TensorRandom<A>, cfg: DecoderLayerConfig, std: number): DecoderLayerWeights<A> {
  const d = cfg.mla.hidden;
  const a = cfg.mla.attention;
  const s = mlaWeightSizes(cfg.mla);
  const mat = (n: number | null): A => r.normals(n!, std);
  const ones = (n: number | null): A => r.zeros(n!).fill(1) as A;
  const ql = a.qLoraRank;
  const mla: MlaWeights<A> = {
    qA: ql === null ? null : mat(s.qA),
    qANorm: ql === null ? null : ones(s.qANorm),
    qB: ql === null ? null : mat(s.qB),
    q: ql === null ? mat(s.q) : null,
    kvA: mat(s.kvA),
    kvANorm: ones(s.kvANorm),
    kvB: mat(s.kvB),
    o: mat(s.o),
  };
  const ffn = cfg.ffn;
  const swiglu = (inter: number) => ({
    gate: mat(inter * d),
    up: mat(inter * d),
    down: mat(d * inter),
  });
  if (ffn.kind === "dense") {
    return {
      attnNorm: ones(d),
      mla,
      ffnNorm: ones(d),
      dense: swiglu(ffn.inter),
      moe: null,
      gate: null,
      gateBias: null,
    };
  }
  const m = ffn.moe;
  return {
    attnNorm: ones(d),
    mla,
    ffnNorm: ones(d),
    dense: null,
    moe: {
      gate: mat(m.experts * m.inter * d),
      up: mat(m.experts * m.inter * d),
      down: mat(m.experts * d * m.inter),
      shared: m.shared > 0 ? swiglu(m.shared * m.inter) : null,
    },
    gate: mat(m.experts * d),
    gateBias: ffn.gate.gate.biasBalancing !== null ? r.zeros(m.experts) : null,
  };
}

/** Seeded initial weights of the whole model (see the file comment). */
export function initModelWeights<A extends RealArray>(
  model: ModelSpec,
  seed: number,
  dtype: Dtype,
  std = DEFAULT_INIT_STD,
): ModelWeights<A> {
  const r = new TensorRandom<A>(seed, dtype);
  const d = model.hidden;
  const V = model.vocab;
  const embed = r.normals(V * d, std);
  // Sequence length does not change a layer's weights; 1 is a placeholder.
  const layers = mainLayerConfigs(model, 1).map((cfg) => initLayer(r, cfg, std));
  const finalNorm = r.zeros(d).fill(1) as A;
  const head = r.normals(V * d, std);
  const mtpCfg = decoderLayerConfigOf(model, mtpBlockKind(model), 1);
  const mtp: MtpModuleWeights<A>[] = [];
  for (let k = 0; k < model.mtp.depth; k++) {
    const proj: MtpWeights<A> = {
      enorm: r.zeros(d).fill(1) as A,
      hnorm: r.zeros(d).fill(1) as A,
      ehProj: r.normals(d * 2 * d, std),
      headNorm: r.zeros(d).fill(1) as A,
    };
    mtp.push({ proj, block: initLayer(r, mtpCfg, std) });
  }
  return { embed, layers, finalNorm, head, mtp };
}

/** One named parameter tensor; `decay` is false for RMSNorm gains (no weight decay on them). */
export interface NamedTensor<A extends RealArray> {
  name: string;
  value: A;
  decay: boolean;
}

type LayerLike<A extends RealArray> = Pick<DecoderLayerWeights<A>, "attnNorm" | "mla" | "ffnNorm" | "dense" | "moe" | "gate">;

function pushLayer<A extends RealArray>(out: NamedTensor<A>[], prefix: string, l: LayerLike<A>): void {
  const put = (name: string, v: A | null) => {
    if (v !== null)
      out.push({
        name: `${prefix}.${name}`,
        value: v,
        decay: !/norm/i.test(name),
      });
  };
  put("attnNorm", l.attnNorm);
  const m = l.mla;
  put("mla.qA", m.qA);
  put("mla.qANorm", m.qANorm);
  put("mla.qB", m.qB);
  put("mla.q", m.q);
  put("mla.kvA", m.kvA);
  put("mla.kvANorm", m.kvANorm);
  put("mla.kvB", m.kvB);
  put("mla.o", m.o);
  put("ffnNorm", l.ffnNorm);
  if (l.dense) {
    put("dense.gate", l.dense.gate);
    put("dense.up", l.dense.up);
    put("dense.down", l.dense.down);
  }
  if (l.moe) {
    put("moe.gate", l.moe.gate);
    put("moe.up", l.moe.up);
    put("moe.down", l.moe.down);
    if (l.moe.shared) {
      put("moe.shared.gate", l.moe.shared.gate);
      put("moe.shared.up", l.moe.shared.up);
      put("moe.shared.down", l.moe.shared.down);
    }
  }
  put("router", l.gate);
}

/** Every parameter (or gradient) tensor in one fixed order; weights and their grads list alike. */
export function parameterList<A extends RealArray>(w: ModelWeights<A> | ModelGrads<A>): NamedTensor<A>[] {
  const out: NamedTensor<A>[] = [{ name: "embed", value: w.embed, decay: true }];
  w.layers.forEach((l, i) => pushLayer(out, `layers.${i}`, l));
  out.push({ name: "finalNorm", value: w.finalNorm, decay: false });
  out.push({ name: "head", value: w.head, decay: true });
  w.mtp.forEach((m, k) => {
    const p = `mtp.${k}`;
    out.push({ name: `${p}.enorm`, value: m.proj.enorm, decay: false });
    out.push({ name: `${p}.hnorm`, value: m.proj.hnorm, decay: false });
    out.push({ name: `${p}.ehProj`, value: m.proj.ehProj, decay: true });
    out.push({ name: `${p}.headNorm`, value: m.proj.headNorm, decay: false });
    pushLayer(out, `${p}.block`, m.block);
  });
  return out;
}

/** Total number of trainable parameters. */
export function parameterCount<A extends RealArray>(w: ModelWeights<A>): number {
  return parameterList(w).reduce((s, t) => s + t.value.length, 0);
}
