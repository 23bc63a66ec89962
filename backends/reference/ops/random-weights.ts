/**
 * Seeded random tensors and weights for tests and benchmarks of the reference ops: a mulberry32
 * generator, normal samples (Box–Muller), and a fan-in-scaled initialisation of every weight struct
 * (linear weights N(0, 1/in), norm weights 1 + N(0, 0.1²), gate bias 0). Deterministic for a seed.
 */
import type { DecoderLayerConfig, DecoderLayerWeights } from "./decoder-layer.js";
import { mlaWeightSizes, type MlaConfig, type MlaWeights } from "./mla.js";
import type { MoeConfig, MoeWeights } from "./moe.js";
import type { SwigluMlpWeights } from "./swiglu.js";
import type { RealArray } from "./tensor.js";
import { mulberry32 } from "../../../compiler/seeded-random.js";

export { mulberry32 };

export type Dtype = "f32" | "f64";


/** Seeded random-tensor source of one element type. */
export class TensorRandom<A extends RealArray> {
  private readonly u: () => number;
  constructor(
    seed: number,
    readonly dtype: Dtype,
  ) {
    this.u = mulberry32(seed);
  }
  /** A uniform [0, 1) number. */
  uniform(): number {
    return this.u();
  }
  /** A uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.u() * n);
  }
  /** One standard normal sample. */
  normal(): number {
    const a = Math.max(this.u(), 1e-300);
    return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * this.u());
  }
  zeros(n: number): A {
    return (this.dtype === "f64" ? new Float64Array(n) : new Float32Array(n)) as A;
  }
  /** n samples of N(mean, std²). */
  normals(n: number, std = 1, mean = 0): A {
    const x = this.zeros(n);
    for (let i = 0; i < n; i++) x[i] = mean + std * this.normal();
    return x;
  }
  /** A linear weight [outF, inF] ~ N(0, 1/inF). */
  linear(outF: number, inF: number): A {
    return this.normals(outF * inF, 1 / Math.sqrt(inF));
  }
  /** A norm weight [dim] ~ 1 + N(0, 0.1²). */
  norm(dim: number): A {
    return this.normals(dim, 0.1, 1);
  }
}

export function randomMlaWeights<A extends RealArray>(r: TensorRandom<A>, cfg: MlaConfig): MlaWeights<A> {
  const a = cfg.attention;
  const d = cfg.hidden;
  const qk = a.qkNopeHeadDim + a.qkRopeHeadDim;
  const s = mlaWeightSizes(cfg);
  const ql = a.qLoraRank;
  return {
    qA: ql === null ? null : r.linear(ql, d),
    qANorm: ql === null ? null : r.norm(ql),
    qB: ql === null ? null : r.linear(a.heads * qk, ql),
    q: ql === null ? r.linear(a.heads * qk, d) : null,
    kvA: r.linear(a.kvLoraRank + a.qkRopeHeadDim, d),
    kvANorm: r.norm(s.kvANorm!),
    kvB: r.linear(a.heads * (a.qkNopeHeadDim + a.vHeadDim), a.kvLoraRank),
    o: r.linear(d, a.heads * a.vHeadDim),
  };
}

export function randomSwigluMlpWeights<A extends RealArray>(r: TensorRandom<A>, hidden: number, inter: number): SwigluMlpWeights<A> {
  return { gate: r.linear(inter, hidden), up: r.linear(inter, hidden), down: r.linear(hidden, inter) };
}

export function randomMoeWeights<A extends RealArray>(r: TensorRandom<A>, cfg: MoeConfig): MoeWeights<A> {
  const { experts: E, inter: I, hidden: d } = cfg;
  return {
    gate: r.normals(E * I * d, 1 / Math.sqrt(d)),
    up: r.normals(E * I * d, 1 / Math.sqrt(d)),
    down: r.normals(E * d * I, 1 / Math.sqrt(I)),
    shared: cfg.shared > 0 ? randomSwigluMlpWeights(r, d, cfg.shared * I) : null,
  };
}

export function randomDecoderLayerWeights<A extends RealArray>(r: TensorRandom<A>, cfg: DecoderLayerConfig): DecoderLayerWeights<A> {
  const d = cfg.mla.hidden;
  const ffn = cfg.ffn;
  return {
    attnNorm: r.norm(d),
    mla: randomMlaWeights(r, cfg.mla),
    ffnNorm: r.norm(d),
    dense: ffn.kind === "dense" ? randomSwigluMlpWeights(r, d, ffn.inter) : null,
    moe: ffn.kind === "moe" ? randomMoeWeights(r, ffn.moe) : null,
    gate: ffn.kind === "moe" ? r.linear(ffn.gate.experts, d) : null,
    gateBias: ffn.kind === "moe" && ffn.gate.gate.biasBalancing !== null ? r.zeros(ffn.gate.experts) : null,
  };
}
