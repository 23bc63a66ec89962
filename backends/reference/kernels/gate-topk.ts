/**
 * gate_topk: the router, token by token in one pass — logits x·Wᵀ (FP64 dot, k ascending, stored in
 * FP32), scores (sigmoid or softmax over the row), selection scores = scores + bias (FP32), the
 * group-limited top-k (gateSelect on the one row) and the routing weights (gateWeights). Same
 * operations in the same order as linear → gate_scores → add → group_topk → gate_weights: bitwise.
 */
import type { KernelSpec } from "../../../compiler/kernel-spec.js";
import type { GateSpec } from "../../../compiler/spec.js";
import { gateScores, gateSelect, gateWeights, type GateConfig } from "../ops/gate.js";
import { getReal, num, type KernelValues } from "./tensors.js";

export function runGateTopk(spec: KernelSpec, inputs: KernelValues): KernelValues {
  const tokens = num(spec, "m");
  const experts = num(spec, "n");
  const hidden = num(spec, "k");
  const topK = num(spec, "topk");
  const hasBias = spec.constants["bias"] === true;
  const cfg: GateConfig = {
    experts,
    topK,
    gate: {
      scoring: spec.constants["scoring"] as GateSpec["scoring"],
      biasBalancing: null,
      groups: num(spec, "groups"),
      topGroups: num(spec, "top_groups"),
      groupScore: spec.constants["group_score"] as GateSpec["groupScore"],
      normalizeTopk: spec.constants["normalize"] === true,
      routedScale: num(spec, "routed_scale"),
      seqAuxLossWeight: 0,
    } as GateSpec,
  };
  const x = getReal(inputs, spec.inputs[0]!);
  const w = getReal(inputs, spec.inputs[1]!);
  const bias = hasBias ? getReal(inputs, spec.inputs[2]!) : null;
  const scoresAll = new Float32Array(tokens * experts);
  const idxAll = new Int32Array(tokens * topK);
  const weightsAll = new Float32Array(tokens * topK);
  const logits = new Float32Array(experts);
  const sel = new Float32Array(experts);
  for (let t = 0; t < tokens; t++) {
    for (let e = 0; e < experts; e++) {
      let s = 0;
      for (let p = 0; p < hidden; p++) s += x[t * hidden + p]! * w[e * hidden + p]!;
      logits[e] = s;
    }
    const scores = gateScores(logits, 1, experts, cfg.gate.scoring);
    for (let e = 0; e < experts; e++) sel[e] = bias === null ? scores[e]! : scores[e]! + bias[e]!;
    const idx = gateSelect(sel, null, cfg, 1);
    scoresAll.set(scores, t * experts);
    idxAll.set(idx, t * topK);
    weightsAll.set(gateWeights(scores, idx, cfg, 1), t * topK);
  }
  // Outputs by role: the scores, the chosen experts (i32), the weights.
  const out: KernelValues = new Map();
  const roles: Record<string, Float32Array | Int32Array> = {
    gate_scores: scoresAll,
    group_topk: idxAll,
    gate_weights: weightsAll,
  };
  for (const t of spec.outputs) {
    const producer = spec.replaces.find((op) => op.outputs.includes(t.id));
    const v = producer === undefined ? undefined : roles[producer.kind];
    if (v === undefined) throw new Error(`${spec.id}: gate_topk cannot produce %${t.id}`);
    out.set(t.id, v);
  }
  return out;
}
