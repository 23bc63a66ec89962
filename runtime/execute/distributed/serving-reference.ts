/**
 * The single-device side of a serving check: the whole sequence through the reference ops (naive
 * MLA, the gate with its selection bias, the MoE with the shared experts), the head, and the MTP
 * modules drafting after the last position — module k+1 takes the sequence shifted by k+1, continued
 * with the greedy token and the earlier drafts. Causal attention makes the rows of a prefix the same
 * whether or not later tokens follow, so a decode step's rows are the last rows of the sequence
 * extended by the step's tokens.
 */
import type { ModelSpec } from "../../../compiler/spec.js";
import {
  decoderLayerConfigOf,
  decoderLayerForward,
  embeddingForward,
  linearForward,
  outputHeadForward,
  rmsnormForward,
} from "../../../backends/reference/ops/index.js";
import { argmaxRow } from "../decode.js";
import { mainLayerConfigs, mtpBlockKind, type ModelWeights } from "../model-weights.js";

type F32 = Float32Array;

export interface ReferenceServe {
  /** Rows from `from` on × vocab. */
  logits: F32;
  greedy: Int32Array;
  drafts: number[];
  draftLogits: F32[];
}

export function referenceServe(model: ModelSpec, w: ModelWeights<F32>, ids: Int32Array, from: number, mtpModules: number): ReferenceServe {
  const T = ids.length;
  const d = model.hidden;
  const V = model.vocab;
  const cfgs = mainLayerConfigs(model, T);
  let x = embeddingForward(ids, w.embed, V, d);
  for (let l = 0; l < w.layers.length; l++) x = decoderLayerForward(x, w.layers[l]!, cfgs[l]!, T).y;
  const logits = outputHeadForward(x, w.finalNorm, w.head, T, d, V, model.normEps).logits;
  const greedyLast = argmaxRow(logits, T - 1, V);
  const next = [greedyLast];
  const draftLogits: F32[] = [];
  let prev = x;
  const blockCfg = decoderLayerConfigOf(model, mtpBlockKind(model), T);
  for (let k = 0; k < mtpModules; k++) {
    const m = w.mtp[k]!;
    const ext = [...ids, ...next];
    const nid = Int32Array.from({ length: T }, (_, i) => ext[i + k + 1]!);
    const emb = embeddingForward(nid, w.embed, V, d);
    const eN = rmsnormForward(emb, m.proj.enorm, T, d, model.normEps);
    const hN = rmsnormForward(prev, m.proj.hnorm, T, d, model.normEps);
    const cat = new Float32Array(T * 2 * d);
    for (let t = 0; t < T; t++) {
      cat.set(eN.subarray(t * d, (t + 1) * d), t * 2 * d);
      cat.set(hN.subarray(t * d, (t + 1) * d), t * 2 * d + d);
    }
    const y = decoderLayerForward(linearForward(cat, m.proj.ehProj, T, 2 * d, d), m.block, blockCfg, T).y;
    const ml = outputHeadForward(y, m.proj.headNorm, w.head, T, d, V, model.normEps).logits;
    next.push(argmaxRow(ml, T - 1, V));
    draftLogits.push(ml.slice((T - 1) * V, T * V));
    prev = y;
  }
  return {
    logits: logits.slice(from * V, T * V),
    greedy: Int32Array.from({ length: T - from }, (_, i) => argmaxRow(logits, from + i, V)),
    drafts: next.slice(1),
    draftLogits,
  };
}
