/**
 * Every parameter tensor a rank holds, with the name that identifies it across ranks, the planner's
 * weight group it belongs to, its working bytes under the recipe, and where it sits in the full
 * model — all derived from the RankWeights structure alone (so a checkpoint-shard source works too).
 *
 * Names. Two GPUs hold "the same" tensor when their names are equal: the data-parallel group of a
 * tensor is every GPU holding its name. A TP-sliced tensor carries its slice (`[h0:2]`); a tensor
 * every TP rank holds whole (norms, q_a/kv_a, the router, eh_proj) carries `@tp<i>`, so its
 * data-parallel group is the dp (× 2 for DualPipe) GPUs of the same TP index, as in the planner, and
 * its TP partial sums are added first (an all-reduce over the TP group). A routed expert is named by
 * its logical expert; the embedding copy a last stage keeps for MTP (1F1B/ZB1P with pp > 1) is named
 * apart from stage 0's (its gradient is added to stage 0's when the gradients are assembled).
 *
 * Working bytes follow compiler/plan/weights.ts: GEMM weights FP8 with one FP32 scale per block (or
 * BF16), the parts the recipe keeps in high precision in their dtype, the gate bias in FP32.
 */
import type { RecipeBytes } from "../../../compiler/plan/recipe-bytes.js";
import type { WeightGroupName } from "../../../compiler/plan/weights.js";
import type { ModelSpec } from "../../../compiler/spec.js";
import type { ModelGrads } from "../model-weights.js";
import type { RankLayerWeights, RankWeights, VocabShard } from "./rank-weights.js";

type F32 = Float32Array;

export interface RankTensor {
  name: string;
  value: F32;
  group: WeightGroupName;
  expert: boolean;
  /** Whole on every TP rank (partial gradients summed over TP before the DP reduction). */
  tpReplicated: boolean;
  /** Working bytes of the whole tensor. */
  workingBytes: number;
  /** Adds a gradient shaped like `value` into the full model's gradients. */
  place: (full: ModelGrads<F32>, grad: F32) => void;
  /** Whether the tensor takes a gradient (the gate bias does not; it is held and reduced as zeros). */
  trainable: boolean;
  /** A view into a packed tensor (one expert of the packed expert weights): the gradient is the same view of the packed gradient. */
  packed?: { tensor: F32; from: number; to: number };
}

function addRows(dst: F32, src: F32, rowLen: number, first: number): void {
  const at = first * rowLen;
  for (let i = 0; i < src.length; i++) dst[at + i] = dst[at + i]! + src[i]!;
}

function addCols(dst: F32, src: F32, rows: number, cols: number, first: number, count: number): void {
  for (let r = 0; r < rows; r++) for (let c = 0; c < count; c++) dst[r * cols + first + c] = dst[r * cols + first + c]! + src[r * count + c]!;
}

function addAll(dst: F32, src: F32): void {
  for (let i = 0; i < src.length; i++) dst[i] = dst[i]! + src[i]!;
}

/** The rank's tensors, each once (a tensor object used by two stages is listed once). */
export function rankTensors(model: ModelSpec, recipe: RecipeBytes, rw: RankWeights, lastStage: number, pipelineRanksShareEnds: boolean): RankTensor[] {
  const a = model.attention;
  if (a.kind !== "mla") throw new RangeError("distributed executor: MLA attention only");
  const d = model.hidden;
  const out: RankTensor[] = [];
  const seen = new Set<F32>();
  const tpTag = rw.tp > 1 ? `@tp${rw.tpIndex}` : "";
  const push = (t: RankTensor): void => {
    if (seen.has(t.value)) return;
    seen.add(t.value);
    out.push(t);
  };
  const qk = a.qkNopeHeadDim + a.qkRopeHeadDim;
  const nv = a.qkNopeHeadDim + a.vHeadDim;
  const norm = (n: number): number => recipe.partWeight("norm", 1, n, false);
  const vocabTensor = (v: VocabShard, name: string, group: WeightGroupName, get: (g: ModelGrads<F32>) => F32): void => {
    const bytes = group === "embedding" ? recipe.partWeight("embedding", v.count, d, false) : recipe.partWeight("output_head", d, v.count, true);
    push({ name: `${name}[v${v.first}:${v.count}]`, value: v.table, group, expert: false, tpReplicated: false, workingBytes: bytes, trainable: true, place: (g, x) => addRows(get(g), x, d, v.first) });
  };
  const layer = (w: RankLayerWeights, mtp: number | null): void => {
    const base = mtp === null ? `layers.${w.layer}` : `mtp.${mtp}.block`;
    const lg = (g: ModelGrads<F32>) => (mtp === null ? g.layers[w.layer]! : g.mtp[mtp]!.block);
    const main = mtp === null;
    const G = (name: WeightGroupName): WeightGroupName => (main ? name : name === "routed_experts" ? "mtp_routed_experts" : "mtp");
    const whole = (name: string, value: F32 | null, group: WeightGroupName, bytes: number, get: (g: ModelGrads<F32>) => F32 | null, trainable = true): void => {
      if (value === null) return;
      push({ name: `${base}.${name}${tpTag}`, value, group: G(group), expert: false, tpReplicated: rw.tp > 1, workingBytes: bytes, trainable, place: (g, x) => addAll(get(g)!, x) });
    };
    const h = w.heads;
    const hs = `[h${h.first}:${h.count}]`;
    const sliced = (name: string, value: F32 | null, bytes: number, place: (g: ModelGrads<F32>, x: F32) => void): void => {
      if (value === null) return;
      push({ name: `${base}.${name}${hs}`, value, group: G("attention"), expert: false, tpReplicated: false, workingBytes: bytes, trainable: true, place });
    };
    const m = w.mla;
    whole("attnNorm", w.attnNorm, "norms", norm(d), (g) => lg(g).attnNorm);
    whole("mla.qA", m.qA, "attention", a.qLoraRank === null ? 0 : recipe.gemmWeight(d, a.qLoraRank), (g) => lg(g).mla.qA);
    whole("mla.qANorm", m.qANorm, "norms", a.qLoraRank === null ? 0 : norm(a.qLoraRank), (g) => lg(g).mla.qANorm);
    sliced("mla.qB", m.qB, a.qLoraRank === null ? 0 : recipe.gemmWeight(a.qLoraRank, h.count * qk), (g, x) => addRows(lg(g).mla.qB!, x, a.qLoraRank!, h.first * qk));
    sliced("mla.q", m.q, recipe.gemmWeight(d, h.count * qk), (g, x) => addRows(lg(g).mla.q!, x, d, h.first * qk));
    whole("mla.kvA", m.kvA, "attention", recipe.gemmWeight(d, a.kvLoraRank + a.qkRopeHeadDim), (g) => lg(g).mla.kvA);
    whole("mla.kvANorm", m.kvANorm, "norms", norm(a.kvLoraRank), (g) => lg(g).mla.kvANorm);
    sliced("mla.kvB", m.kvB, recipe.gemmWeight(a.kvLoraRank, h.count * nv), (g, x) => addRows(lg(g).mla.kvB, x, a.kvLoraRank, h.first * nv));
    sliced("mla.o", m.o, recipe.gemmWeight(h.count * a.vHeadDim, d), (g, x) => addCols(lg(g).mla.o, x, d, a.heads * a.vHeadDim, h.first * a.vHeadDim, h.count * a.vHeadDim));
    whole("ffnNorm", w.ffnNorm, "norms", norm(d), (g) => lg(g).ffnNorm);
    const fs = w.ffnSlice;
    const mlp = (name: string, mw: { gate: F32; up: F32; down: F32 } | null, inter: number, group: WeightGroupName, get: (g: ModelGrads<F32>) => { gate: F32; up: F32; down: F32 }): void => {
      if (mw === null) return;
      const tag = rw.ffnTp > 1 ? `[i${fs.first}:${fs.count}]` : "";
      const common = { group: G(group), expert: false, tpReplicated: false, trainable: true };
      push({ ...common, name: `${base}.${name}.gate${tag}`, value: mw.gate, workingBytes: recipe.gemmWeight(d, fs.count), place: (g, x) => addRows(get(g).gate, x, d, fs.first) });
      push({ ...common, name: `${base}.${name}.up${tag}`, value: mw.up, workingBytes: recipe.gemmWeight(d, fs.count), place: (g, x) => addRows(get(g).up, x, d, fs.first) });
      push({ ...common, name: `${base}.${name}.down${tag}`, value: mw.down, workingBytes: recipe.gemmWeight(fs.count, d), place: (g, x) => addCols(get(g).down, x, d, inter, fs.first, fs.count) });
    };
    if (w.dense !== null) mlp("dense", w.dense, model.denseFfn!.intermediate, "dense_ffn", (g) => lg(g).dense!);
    const moe = model.moe;
    if (w.kind === "moe" && moe !== null) {
      mlp("moe.shared", w.shared, moe.sharedExperts * moe.expertIntermediate, "shared_experts", (g) => lg(g).moe!.shared!);
      whole("router", w.router, "gate", recipe.partWeight("moe_gate", moe.routedExperts, d, true), (g) => lg(g).gate);
      whole("gateBias", w.gateBias, "gate", 4 * moe.routedExperts, () => null, false);
      const ex = w.experts!;
      const n = moe.expertIntermediate * d;
      const one = recipe.gemmWeight(d, moe.expertIntermediate);
      const down = recipe.gemmWeight(moe.expertIntermediate, d);
      for (let s = 0; s < ex.logical.length; s++) {
        const e = ex.logical[s]!;
        const common = { group: G("routed_experts"), expert: true, tpReplicated: false, trainable: true };
        const at = e * n;
        push({ ...common, name: `${base}.expert.${e}.gate`, value: ex.gate.subarray(s * n, (s + 1) * n), packed: { tensor: ex.gate, from: s * n, to: (s + 1) * n }, workingBytes: one, place: (g, x) => addRows(lg(g).moe!.gate, x, 1, at) });
        push({ ...common, name: `${base}.expert.${e}.up`, value: ex.up.subarray(s * n, (s + 1) * n), packed: { tensor: ex.up, from: s * n, to: (s + 1) * n }, workingBytes: one, place: (g, x) => addRows(lg(g).moe!.up, x, 1, at) });
        push({ ...common, name: `${base}.expert.${e}.down`, value: ex.down.subarray(s * n, (s + 1) * n), packed: { tensor: ex.down, from: s * n, to: (s + 1) * n }, workingBytes: down, place: (g, x) => addRows(lg(g).moe!.down, x, 1, at) });
      }
    }
  };
  for (const st of rw.stages) {
    const copy = st.stage === lastStage && st.stage !== 0 && !pipelineRanksShareEnds;
    if (st.embed !== null && !seen.has(st.embed.table)) vocabTensor(st.embed, copy ? "embedCopyForMtp" : "embed", "embedding", (g) => g.embed);
    for (const l of st.layers) layer(l, null);
    if (st.finalNorm !== null) {
      const fn = st.finalNorm;
      push({ name: `finalNorm${tpTag}`, value: fn, group: "norms", expert: false, tpReplicated: rw.tp > 1, workingBytes: norm(d), trainable: true, place: (g, x) => addAll(g.finalNorm, x) });
    }
    if (st.head !== null) vocabTensor(st.head, "head", "output_head", (g) => g.head);
    for (const m of st.mtp) {
      const k = m.module;
      const common = { group: "mtp" as const, expert: false, tpReplicated: rw.tp > 1, trainable: true };
      push({ ...common, name: `mtp.${k}.enorm${tpTag}`, value: m.proj.enorm, workingBytes: norm(d), place: (g, x) => addAll(g.mtp[k]!.proj.enorm, x) });
      push({ ...common, name: `mtp.${k}.hnorm${tpTag}`, value: m.proj.hnorm, workingBytes: norm(d), place: (g, x) => addAll(g.mtp[k]!.proj.hnorm, x) });
      push({ ...common, name: `mtp.${k}.ehProj${tpTag}`, value: m.proj.ehProj, workingBytes: recipe.gemmWeight(2 * d, d), place: (g, x) => addAll(g.mtp[k]!.proj.ehProj, x) });
      push({ ...common, name: `mtp.${k}.headNorm${tpTag}`, value: m.proj.headNorm, workingBytes: norm(d), place: (g, x) => addAll(g.mtp[k]!.proj.headNorm, x) });
      layer(m.block, k);
    }
  }
  return out;
}

/** One gradient buffer per weight tensor object. */
export class GradStore {
  readonly map = new Map<F32, F32>();
  /** The gradient of a registry tensor (a view into the packed gradient for an expert). */
  ofTensor(t: { value: F32; packed?: { tensor: F32; from: number; to: number } }): F32 {
    return t.packed ? this.of(t.packed.tensor).subarray(t.packed.from, t.packed.to) : this.of(t.value);
  }
  of(w: F32): F32 {
    let g = this.map.get(w);
    if (g === undefined) {
      g = new Float32Array(w.length);
      this.map.set(w, g);
    }
    return g;
  }
  /** Adds every gradient of `other` into this store. */
  addFrom(other: GradStore): void {
    for (const [w, g] of other.map) {
      const dst = this.of(w);
      for (let i = 0; i < g.length; i++) dst[i] = dst[i]! + g[i]!;
    }
  }
}
