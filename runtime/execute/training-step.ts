/**
 * One training step's forward and backward on the CPU reference ops, per sequence of T tokens:
 *   x = Emb(t) → every decoder layer (dense or MoE per the layer pattern) → final RMSNorm + output head
 *   → cross-entropy against t_{i+1} (the last position has no target);
 *   MTP module k = 1…D on rows 0…T−k−1 (mtp.ts), loss (λ/D)·Σ_k L^k;
 *   the sequence-wise auxiliary loss α·L_Bal of every MoE layer (and of each MTP block).
 * The objective of a batch of B sequences is the mean over sequences of
 *   L_main + (λ/D)·Σ_k L^k + Σ_layers α·L_Bal,
 * and the gradients returned are of that objective. Each sequence runs separately (attention is causal
 * within a sequence). Generic over Float32Array (training) and Float64Array (gradient checks).
 */
import type { ModelSpec } from "../../compiler/spec.js";
import {
  addInto,
  allocLike,
  crossEntropyBackward,
  crossEntropyForward,
  decoderLayerBackward,
  decoderLayerConfigOf,
  decoderLayerForward,
  embeddingBackward,
  embeddingForward,
  expertLoad,
  mtpBackward,
  mtpForward,
  mtpLossWeight,
  mtpShift,
  outputHeadBackward,
  outputHeadForward,
  type DecoderLayerCache,
  type DecoderLayerConfig,
  type DecoderLayerGrads,
  type MtpBlock,
  type MtpCache,
  type MtpConfig,
  type MtpGrads,
  type RealArray,
} from "../../backends/reference/ops/index.js";
import { mainLayerConfigs, mtpBlockKind, parameterList, type ModelGrads, type ModelWeights } from "./model-weights.js";

export interface StepConfig {
  model: ModelSpec;
  /** Tokens per sequence. */
  seqLen: number;
  layers: DecoderLayerConfig[];
  /** The MTP block config of module k (its aux loss runs over its T−k−1… rows: seqLen = rows). */
  mtpBlocks: DecoderLayerConfig[];
  mtp: MtpConfig;
}

export function stepConfigOf(model: ModelSpec, seqLen: number): StepConfig {
  if (model.attention.kind !== "mla") throw new RangeError(`dsv3 run: the CPU executor needs MLA attention, not ${model.attention.kind}`);
  const depth = model.mtp.depth;
  if (depth > 0 && seqLen - depth < 1) throw new RangeError(`dsv3 run: sequences of ${seqLen} tokens are too short for MTP depth ${depth}`);
  const mtpBlocks: DecoderLayerConfig[] = [];
  for (let k = 1; k <= depth; k++) mtpBlocks.push(decoderLayerConfigOf(model, mtpBlockKind(model), seqLen - k));
  return {
    model,
    seqLen,
    layers: mainLayerConfigs(model, seqLen),
    mtpBlocks,
    mtp: { hidden: model.hidden, vocab: model.vocab, normEps: model.normEps },
  };
}

/** What one step measured (means over the batch's sequences). */
export interface StepLosses {
  /** The main next-token cross-entropy. */
  main: number;
  /** Each MTP depth's cross-entropy L^k (unweighted). */
  mtp: number[];
  /** Σ over MoE layers (main and MTP blocks) of α·L_Bal. */
  aux: number;
  /** The objective: main + (λ/D)·Σ L^k + aux. */
  total: number;
}

export interface StepResult<A extends RealArray> {
  losses: StepLosses;
  grads: ModelGrads<A>;
  /** Per MoE layer (main layers in order, then MTP blocks): tokens routed to each expert over the batch. */
  loads: Float64Array[];
}

/** Zero gradients shaped like the weights. */
export function zeroGrads<A extends RealArray>(w: ModelWeights<A>): ModelGrads<A> {
  const z = (x: A): A => allocLike(x, x.length);
  const zn = (x: A | null): A | null => (x === null ? null : z(x));
  const layer = (l: ModelWeights<A>["layers"][number]): DecoderLayerGrads<A> => ({
    attnNorm: z(l.attnNorm),
    mla: {
      qA: zn(l.mla.qA),
      qANorm: zn(l.mla.qANorm),
      qB: zn(l.mla.qB),
      q: zn(l.mla.q),
      kvA: z(l.mla.kvA),
      kvANorm: z(l.mla.kvANorm),
      kvB: z(l.mla.kvB),
      o: z(l.mla.o),
    },
    ffnNorm: z(l.ffnNorm),
    dense: l.dense === null ? null : { gate: z(l.dense.gate), up: z(l.dense.up), down: z(l.dense.down) },
    moe:
      l.moe === null
        ? null
        : {
            gate: z(l.moe.gate),
            up: z(l.moe.up),
            down: z(l.moe.down),
            shared:
              l.moe.shared === null
                ? null
                : {
                    gate: z(l.moe.shared.gate),
                    up: z(l.moe.shared.up),
                    down: z(l.moe.shared.down),
                  },
          },
    gate: zn(l.gate),
  });
  return {
    embed: z(w.embed),
    layers: w.layers.map(layer),
    finalNorm: z(w.finalNorm),
    head: z(w.head),
    mtp: w.mtp.map((m) => ({
      proj: {
        enorm: z(m.proj.enorm),
        hnorm: z(m.proj.hnorm),
        ehProj: z(m.proj.ehProj),
        headNorm: z(m.proj.headNorm),
      },
      block: layer(m.block),
    })),
  };
}

/** acc += g, tensor by tensor (same structure). */
function accumulate<A extends RealArray>(acc: ModelGrads<A>, g: { list: A[] }): void {
  const dst = parameterList(acc);
  if (dst.length !== g.list.length) throw new Error(`training step: ${g.list.length} gradient tensors, want ${dst.length}`);
  for (let i = 0; i < dst.length; i++) addInto(dst[i]!.value, g.list[i]!);
}

interface SequenceResult<A extends RealArray> {
  main: number;
  mtp: number[];
  aux: number;
  grads: ModelGrads<A>;
  /** Chosen experts (tokens × topK) per MoE layer, main then MTP. */
  chosen: Int32Array[];
}

/** Forward and backward of one sequence; `scale` multiplies every gradient (1/B for a batch mean). */
function sequenceStep<A extends RealArray>(w: ModelWeights<A>, cfg: StepConfig, tokens: Int32Array, scale: number): SequenceResult<A> {
  const { model } = cfg;
  const T = tokens.length;
  const d = model.hidden;
  const V = model.vocab;
  const eps = model.normEps;
  const lambda = model.mtp.lossWeight;
  const depth = w.mtp.length;
  const grads = zeroGrads(w);
  const chosen: Int32Array[] = [];

  // Forward through the main model.
  const x0 = embeddingForward(tokens, w.embed, V, d);
  const inputs: A[] = [];
  const caches: DecoderLayerCache<A>[] = [];
  let x = x0;
  let aux = 0;
  for (let l = 0; l < w.layers.length; l++) {
    inputs.push(x);
    const out = decoderLayerForward(x, w.layers[l]!, cfg.layers[l]!, T);
    caches.push(out.cache);
    aux += out.auxLoss;
    if (out.cache.gate) chosen.push(out.cache.gate.experts);
    x = out.y;
  }
  const hLast = x;
  const labels = new Int32Array(T).fill(-1);
  for (let i = 0; i + 1 < T; i++) labels[i] = tokens[i + 1]!;
  const head = outputHeadForward(hLast, w.finalNorm, w.head, T, d, V, eps);
  const main = crossEntropyForward(head.logits, labels, T, V);

  // MTP modules: module k takes h^{k−1} (its first T−k rows) and Emb(t_{i+k}).
  const mtpLosses: number[] = [];
  const mtpState: {
    prev: A;
    nextEmb: A;
    ids: Int32Array;
    cache: MtpCache<A>;
  }[] = [];
  let prevFull = hLast;
  for (let k = 1; k <= depth; k++) {
    const m = w.mtp[k - 1]!;
    const shift = mtpShift(tokens, k);
    const rows = shift.rows;
    const prev = prevFull.subarray(0, rows * d) as A;
    const nextEmb = embeddingForward(shift.inputIds, w.embed, V, d);
    const blockCfg = cfg.mtpBlocks[k - 1]!;
    const blockGrads = grads.mtp[k - 1]!.block;
    const block: MtpBlock<A> = {
      forward: (bx: A, n: number) => {
        const out = decoderLayerForward(bx, m.block, blockCfg, n);
        aux += out.auxLoss;
        if (out.cache.gate) chosen.push(out.cache.gate.experts);
        return {
          y: out.y,
          backward: (dy: A) => {
            const b = decoderLayerBackward(dy, scale, bx, m.block, blockCfg, out.cache);
            const src = layerGradList(b.grads);
            const dst = layerGradList(blockGrads);
            for (let i = 0; i < dst.length; i++) addInto(dst[i]!, src[i]!);
            return b.dx;
          },
        };
      },
    };
    const out = mtpForward(prev, nextEmb, shift.labels, m.proj, w.head, block, cfg.mtp, rows);
    mtpLosses.push(out.loss);
    mtpState.push({ prev, nextEmb, ids: shift.inputIds, cache: out.cache });
    prevFull = out.hidden;
  }

  // Backward: the head, the MTP modules (last first), the layers (last first), the embedding.
  const dLogits = crossEntropyBackward(scale, head.logits, labels, T, V);
  const hb = outputHeadBackward(dLogits, hLast, w.finalNorm, w.head, head, T, d, V, eps);
  addInto(grads.finalNorm, hb.dNorm);
  addInto(grads.head, hb.dHead);
  const dh = hb.dh;
  let dHidden: A | null = null;
  for (let k = depth; k >= 1; k--) {
    const s = mtpState[k - 1]!;
    const m = w.mtp[k - 1]!;
    const g: MtpGrads<A> = mtpBackward(scale * mtpLossWeight(depth, lambda), dHidden, s.prev, s.nextEmb, m.proj, w.head, cfg.mtp, s.cache);
    const pg = grads.mtp[k - 1]!.proj;
    addInto(pg.enorm, g.weights.enorm);
    addInto(pg.hnorm, g.weights.hnorm);
    addInto(pg.ehProj, g.weights.ehProj);
    addInto(pg.headNorm, g.weights.headNorm);
    addInto(grads.head, g.dHead);
    addInto(grads.embed, embeddingBackward(g.dNextEmb, s.ids, V, d));
    if (k === 1) {
      addInto(dh.subarray(0, g.dPrevHidden.length) as A, g.dPrevHidden);
    } else {
      // h^{k−1} (T−k+1 rows): module k used its first T−k rows; zero gradient past them.
      const full: A = allocLike(g.dPrevHidden, (T - k + 1) * d);
      full.set(g.dPrevHidden);
      dHidden = full;
    }
  }
  let dy = dh;
  for (let l = w.layers.length - 1; l >= 0; l--) {
    const b = decoderLayerBackward(dy, scale, inputs[l]!, w.layers[l]!, cfg.layers[l]!, caches[l]!);
    const gl = grads.layers[l]!;
    const src = layerGradList(b.grads);
    const dst = layerGradList(gl);
    for (let i = 0; i < dst.length; i++) addInto(dst[i]!, src[i]!);
    dy = b.dx;
  }
  addInto(grads.embed, embeddingBackward(dy, tokens, V, d));
  return { main, mtp: mtpLosses, aux, grads, chosen };
}

/** The non-null gradient tensors of one layer, in parameterList's order. */
function layerGradList<A extends RealArray>(g: DecoderLayerGrads<A>): A[] {
  const probe: ModelGrads<A> = {
    embed: g.attnNorm,
    layers: [g],
    finalNorm: g.attnNorm,
    head: g.attnNorm,
    mtp: [],
  };
  const list = parameterList(probe).filter((t) => t.name.startsWith("layers.0."));
  return list.map((t) => t.value);
}

/**
 * One step's forward and backward over a batch of sequences (each `cfg.seqLen` tokens): the mean
 * losses, the gradients of the mean objective, and the expert loads summed over the batch.
 */
export function trainingStep<A extends RealArray>(w: ModelWeights<A>, cfg: StepConfig, batch: readonly Int32Array[]): StepResult<A> {
  if (batch.length === 0) throw new RangeError("training step: an empty batch");
  const B = batch.length;
  const grads = zeroGrads(w);
  const depth = w.mtp.length;
  const losses: StepLosses = {
    main: 0,
    mtp: new Array<number>(depth).fill(0),
    aux: 0,
    total: 0,
  };
  let loads: Float64Array[] = [];
  const experts = cfg.model.moe?.routedExperts ?? 0;
  for (const seq of batch) {
    if (seq.length !== cfg.seqLen) throw new RangeError(`training step: a sequence of ${seq.length} tokens, want ${cfg.seqLen}`);
    const r = sequenceStep(w, cfg, seq, 1 / B);
    accumulate(grads, { list: parameterList(r.grads).map((t) => t.value) });
    losses.main += r.main / B;
    r.mtp.forEach((l, k) => (losses.mtp[k]! += l / B));
    losses.aux += r.aux / B;
    if (loads.length === 0) loads = r.chosen.map(() => new Float64Array(experts));
    r.chosen.forEach((c, i) => addInto(loads[i]!, expertLoad(c, experts)));
  }
  const lambda = cfg.model.mtp.lossWeight;
  const mtpTerm = depth > 0 ? (lambda / depth) * losses.mtp.reduce((s, l) => s + l, 0) : 0;
  losses.total = losses.main + mtpTerm + losses.aux;
  return { losses, grads, loads };
}
