/**
 * Fusion into KernelSpecs: groups of ops become one `fused` op (one kernel) whose body keeps the
 * ops it replaces (kernel-spec.ts derives the KernelSpec from it). Patterns, tried in this order,
 * each op joining at most one kernel:
 *
 *   gate_topk             the gate GEMM (FP32) + scores + selection bias + group top-k + weights
 *   moe_permute           the permutation into an expert-contiguous layout, each expert's rows
 *                         padded to a multiple of 128 (the grouped GEMM's M tile): the permuted rows
 *                         and everything computed on them up to the unpermute get the padded row
 *                         count Mp = 128·⌊(T·K + 127·E)/128⌋ (the worst case; a new dim). Decode
 *                         uses the masked layout instead (DeepGEMM's, for CUDA-graph decode: fixed
 *                         shapes whatever the routing): expert e owns rows [e·cap, (e+1)·cap) of
 *                         which counts[e] are valid, cap = 64·⌈T/64⌉ (no expert receives more than
 *                         T rows), Mm = E·cap rows; the grouped GEMMs on them get `layout=masked`
 *   moe_unpermute         the weighted combine back to token order
 *   mla_decode_attention  absorbed MLA decode attention over the latent cache (FlashMLA's kernel):
 *                         the query concat [q_abs | q_rope] and the value slice of the cache as its
 *                         prologue (page of 64 cached tokens: `kv_block=64`)
 *   prefill_attention     attention with per-head keys and values in training and prefill (MLA in
 *                         its naive form, 192-dim QK / 128-dim V for V3; MHA/GQA), FlashAttention
 *                         style (tiles of 128 queries, 64 keys per online-softmax step); the key's
 *                         concat of k_nope and the broadcast k_rope, and the split of [k_nope | v],
 *                         join as views (compiler/attention-operands.ts), so per-head keys are never
 *                         materialised
 *   rope                  RoPE, with the split/concat around it when it rotates the trailing R dims
 *                         of each head in place ([q_nope | q_rope] → [q_nope | rope(q_rope)])
 *   rmsnorm_quantize      an RMSNorm and every quantisation of its output (several formats at once:
 *                         the MoE input's dispatch copy with pow2 scales and the shared experts' one);
 *                         the BF16 output too when something else reads it (the gate)
 *   gemm [swiglu, …]      a dense SwiGLU MLP's gate and up GEMMs (same input) as one GEMM of N = 2·F
 *                         with the SwiGLU, and its requantisation for the down GEMM, as epilogue
 *   swiglu_quantize       a SwiGLU and its quantisation (the routed experts: the grouped GEMM of the
 *                         padded layout has no epilogue)
 *   gemm / grouped_gemm   every other GEMM, with the chain of residual adds that alone read its
 *                         output as epilogue (o_proj + residual; shared experts' down + routed + residual)
 *
 * A group whose fusion would make a cycle (an outside op both reading its output and feeding it) is
 * not fused. The fused ops are placed by a stable topological sort (each at its first op's place).
 * Quantisations not taken by a pattern (the output projection's input) stay standalone ops.
 */
import { evalDim, evalShape, type Dims } from "../graph/dim-expr.js";
import type { Attrs, LayerGraph, ModelGraph, Op, OpFlag, Phase } from "../graph/ir.js";
import { cloneModel, GraphEdit } from "../graph/rewrite.js";
import { KERNEL_MAIN_OPS, type KernelKind } from "../kernel-spec.js";
import type { Pass } from "./pass.js";

/** Rows of each expert's segment are padded to a multiple of this (DeepGEMM's M block). */
export const EXPERT_ROW_ALIGN = 128;
/** Decode's masked layout: each expert's fixed capacity is a multiple of this (the masked GEMM's M tile). */
export const MASKED_ROW_ALIGN = 64;
/** Cached tokens per page of the MLA decode kernel's KV cache (FlashMLA's block size). */
export const MLA_KV_BLOCK = 64;
/** Prefill attention: queries per CTA and keys per step of its online softmax (FlashAttention-2's tiles). */
export const ATTENTION_Q_BLOCK = 128;
export const ATTENTION_KV_BLOCK = 64;

interface Region {
  kernel: KernelKind;
  ops: Op[];
  attrs: Attrs;
}

function fuseGraph(g: LayerGraph, dims: Dims, phase: Phase): boolean {
  const e = new GraphEdit(g);
  const index = new Map<Op, number>(g.ops.map((op, i) => [op, i]));
  const prod = e.producers();
  const cons = e.consumers();
  const isOut = new Set(g.outputs);
  const taken = new Set<Op>();
  const regions: Region[] = [];
  const consumersOf = (id: string): Op[] => cons.get(id) ?? [];
  const free = (op: Op | undefined): op is Op => op !== undefined && op.kind !== "fused" && !taken.has(op);
  const sole = (id: string): Op | undefined => {
    const c = consumersOf(id);
    return c.length === 1 && !isOut.has(id) ? c[0] : undefined;
  };
  const producedBy = (id: string | undefined, kind: Op["kind"]): Op | undefined => {
    const op = id === undefined ? undefined : prod.get(id);
    return op !== undefined && op.kind === kind && free(op) ? op : undefined;
  };
  /** No outside op is both downstream of the group and upstream of it. */
  const acyclic = (ops: Op[]): boolean => {
    const inside = new Set(ops);
    const stack = ops.flatMap((op) => op.outputs.flatMap((id) => consumersOf(id).filter((c) => !inside.has(c))));
    const seen = new Set<Op>();
    while (stack.length > 0) {
      const op = stack.pop()!;
      if (seen.has(op)) continue;
      seen.add(op);
      for (const id of op.outputs) {
        for (const c of consumersOf(id)) {
          if (inside.has(c)) return false;
          stack.push(c);
        }
      }
    }
    return true;
  };
  const group = (kernel: KernelKind, ops: Op[], attrs: Attrs = {}): boolean => {
    if (ops.some((op) => taken.has(op)) || !acyclic(ops)) return false;
    for (const op of ops) taken.add(op);
    regions.push({ kernel, ops: [...ops].sort((a, b) => index.get(a)! - index.get(b)!), attrs });
    return true;
  };
  const ofKind = (kind: Op["kind"]): Op[] => g.ops.filter((op) => op.kind === kind);

  // gate_topk
  for (const topk of ofKind("group_topk")) {
    if (!free(topk)) continue;
    const ops = [topk];
    let sel = prod.get(topk.inputs[0]!);
    if (sel !== undefined && sel.kind === "add" && free(sel) && sole(sel.outputs[0]!) === topk) {
      ops.push(sel);
      sel = prod.get(sel.inputs[0]!);
    }
    if (sel === undefined || sel.kind !== "gate_scores" || !free(sel)) continue;
    const lin = producedBy(sel.inputs[0], "linear");
    if (lin === undefined || sole(lin.outputs[0]!) !== sel) continue;
    ops.push(sel, lin);
    const weights = consumersOf(topk.outputs[0]!).find((c) => c.kind === "gate_weights" && free(c) && c.inputs[0] === sel!.outputs[0]);
    if (weights !== undefined) ops.push(weights);
    group("gate_topk", ops);
  }

  // moe_permute (padded to 128 rows per expert; decode: the masked layout) and moe_unpermute
  for (const op of ofKind("moe_permute")) {
    if (!free(op) || !group("moe_permute", [op])) continue;
    const rows = e.value(op.outputs[0]!);
    const before = rows.shape[0]!;
    const experts = evalShape(e.value(op.outputs[1]!).shape, dims)[0]!;
    const tokens = evalShape(e.value(op.inputs[0]!).shape, dims)[0]!;
    const masked = phase === "decode";
    // A token's top-k experts are distinct, so no expert receives more than `tokens` rows.
    const capacity = MASKED_ROW_ALIGN * Math.ceil(tokens / MASKED_ROW_ALIGN);
    const padded = masked ? experts * capacity : EXPERT_ROW_ALIGN * Math.floor((evalDim(before, dims) + (EXPERT_ROW_ALIGN - 1) * experts) / EXPERT_ROW_ALIGN);
    const stem = masked ? "Mm" : "Mp";
    let name = stem;
    for (let n = 2; dims[name] !== undefined && dims[name] !== padded; n++) name = `${stem}${n}`;
    dims[name] = padded;
    if (masked) op.attrs["capacity"] = capacity;
    else op.attrs["align"] = EXPERT_ROW_ALIGN;
    rows.shape[0] = name;
    const queue = [rows.id];
    const seen = new Set(queue);
    while (queue.length > 0) {
      for (const c of consumersOf(queue.shift()!)) {
        if (c.kind === "moe_unpermute") continue;
        if (masked && c.kind === "grouped_linear") c.attrs["layout"] = "masked";
        for (const id of c.outputs) {
          const v = e.value(id);
          if (v.shape[0] === before && !seen.has(id)) {
            v.shape[0] = name;
            seen.add(id);
            queue.push(id);
          }
        }
      }
    }
  }
  for (const op of ofKind("moe_unpermute")) if (free(op)) group("moe_unpermute", [op]);

  // mla_decode_attention: attention over a shared latent key/value (rank-2 k and v)
  for (const att of ofKind("attention")) {
    if (!free(att) || e.value(att.inputs[1]!).shape.length !== 2) continue;
    const ops = [att];
    const qc = producedBy(att.inputs[0], "concat");
    if (qc !== undefined && sole(qc.outputs[0]!) === att) ops.push(qc);
    const vs = producedBy(att.inputs[2], "split");
    if (
      vs !== undefined &&
      vs.inputs[0] === att.inputs[1] &&
      vs.outputs[0] === att.inputs[2] &&
      sole(vs.outputs[0]!) === att &&
      vs.outputs.slice(1).every((id) => consumersOf(id).length === 0 && !isOut.has(id))
    ) {
      ops.push(vs);
    }
    group("mla_decode_attention", ops, { kv_block: MLA_KV_BLOCK });
  }

  // prefill_attention: per-head keys and values (rank-3 k and v), the naive MLA's (or MHA's) —
  // with the key's concat(k_nope, broadcast(k_rope)) and the split of [k_nope | v] as views
  for (const att of ofKind("attention")) {
    if (phase === "decode" || !free(att) || e.value(att.inputs[1]!).shape.length !== 3) continue;
    const ops = [att];
    const lastAxis = (op: Op, id: string): boolean => op.attrs["axis"] === e.value(id).shape.length - 1;
    const kc = producedBy(att.inputs[1], "concat");
    if (kc !== undefined && sole(kc.outputs[0]!) === att && lastAxis(kc, kc.outputs[0]!)) {
      ops.push(kc);
      for (const id of kc.inputs) {
        const bc = producedBy(id, "broadcast");
        if (bc !== undefined && sole(id) === kc && bc.attrs["axis"] === 1 && e.value(bc.inputs[0]!).shape.length === 2) ops.push(bc);
      }
    }
    // A split of the keys' or values' columns joins when the kernel reads all it produces.
    const splits = new Set([...ops.flatMap((op) => op.inputs), att.inputs[2]!].map((id) => producedBy(id, "split")));
    for (const sp of splits) {
      if (sp === undefined || !lastAxis(sp, sp.inputs[0]!)) continue;
      const inside = new Set([...ops, sp]);
      if (sp.outputs.every((id) => !isOut.has(id) && consumersOf(id).every((c) => inside.has(c)))) ops.push(sp);
    }
    group("prefill_attention", ops, { q_block: ATTENTION_Q_BLOCK, kv_block: ATTENTION_KV_BLOCK });
  }

  // rope (in place on the trailing dims: split → rope → concat)
  for (const r of ofKind("rope")) {
    if (!free(r)) continue;
    const ops = [r];
    const sp = producedBy(r.inputs[0], "split");
    const cat = sole(r.outputs[0]!);
    if (
      sp !== undefined &&
      cat !== undefined &&
      cat.kind === "concat" &&
      free(cat) &&
      sp.outputs.length === 2 &&
      sp.outputs[1] === r.inputs[0] &&
      cat.inputs.length === 2 &&
      cat.inputs[0] === sp.outputs[0] &&
      cat.inputs[1] === r.outputs[0] &&
      cat.attrs["axis"] === sp.attrs["axis"] &&
      sole(sp.outputs[0]!) === cat
    ) {
      ops.push(sp, cat);
    }
    group("rope", ops);
  }

  // rmsnorm_quantize
  for (const n of ofKind("rmsnorm")) {
    if (!free(n)) continue;
    const qs = consumersOf(n.outputs[0]!).filter((c) => c.kind === "quantize" && free(c));
    if (qs.length > 0) group("rmsnorm_quantize", [n, ...qs]);
  }

  // gemm with a SwiGLU (+ requantisation) epilogue: a dense MLP's gate and up projections
  for (const s of ofKind("swiglu")) {
    if (!free(s)) continue;
    const gate = producedBy(s.inputs[0], "linear");
    const up = producedBy(s.inputs[1], "linear");
    if (gate === undefined || up === undefined || gate === up || gate.inputs[0] !== up.inputs[0]) continue;
    if (sole(gate.outputs[0]!) !== s || sole(up.outputs[0]!) !== s) continue;
    const qs = consumersOf(s.outputs[0]!).filter((c) => c.kind === "quantize" && free(c));
    group("gemm", [gate, up, s, ...qs]);
  }

  // swiglu_quantize
  for (const s of ofKind("swiglu")) {
    if (!free(s)) continue;
    const qs = consumersOf(s.outputs[0]!).filter((c) => c.kind === "quantize" && free(c));
    if (qs.length > 0) group("swiglu_quantize", [s, ...qs]);
  }

  // every other GEMM, with its residual-add chain
  for (const op of g.ops) {
    if (!free(op) || (op.kind !== "linear" && op.kind !== "grouped_linear")) continue;
    const ops = [op];
    if (op.kind === "linear") {
      let cur = op.outputs[0]!;
      for (let c = sole(cur); c !== undefined && c.kind === "add" && free(c) && !ops.includes(c); c = sole(cur)) {
        if (!acyclic([...ops, c])) break;
        ops.push(c);
        cur = c.outputs[0]!;
      }
    }
    group(op.kind === "linear" ? "gemm" : "grouped_gemm", ops);
  }

  if (regions.length === 0) return false;
  const firstIndex = new Map<Op, number>();
  const fusedOps = regions.map((r) => {
    const inside = new Set(r.ops);
    const produced = new Set(r.ops.flatMap((op) => op.outputs));
    const inputs: string[] = [];
    for (const op of r.ops) for (const id of op.inputs) if (!produced.has(id) && !inputs.includes(id)) inputs.push(id);
    const outputs = r.ops.flatMap((op) => op.outputs).filter((id) => isOut.has(id) || consumersOf(id).some((c) => !inside.has(c)));
    const flags = [...new Set(r.ops.flatMap((op) => op.flags))].sort() as OpFlag[];
    const main = r.ops.find((op) => KERNEL_MAIN_OPS[r.kernel].includes(op.kind)) ?? r.ops[0]!;
    const fused: Op = { kind: "fused", inputs, outputs, attrs: r.attrs, flags, block: main.block, kernel: r.kernel, body: r.ops };
    firstIndex.set(fused, index.get(r.ops[0]!)!);
    return fused;
  });
  g.ops = [...g.ops.filter((op) => !taken.has(op)), ...fusedOps];
  e.toposort((op) => index.get(op) ?? firstIndex.get(op)!);
  return true;
}

export const fuseKernels: Pass = {
  name: "fuse-kernels",
  run(model: ModelGraph): ModelGraph {
    const out = cloneModel(model);
    let changed = false;
    for (const g of out.graphs) changed = fuseGraph(g, out.dims, out.phase) || changed;
    return changed ? out : model;
  },
};
