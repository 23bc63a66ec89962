/**
 * The interpreter of a KernelSpec's `replaces`: every unfused op run on the reference backend's ops
 * and numerics, one entry per op kind in OP_SEMANTICS, each value stored in its declared dtype (a
 * bf16 temporary is rounded to BF16, a quantised one is quantised to its tile) — the composition a
 * fused kernel must reproduce (tests/kernels.test.ts).
 *
 * An op attribute that names a dim (`k: "K"`, `kv_len: "S"`) is read from the KernelSpec's constants
 * (DIM_ATTRS): a KernelSpec carries concrete constants, not the graph's dims.
 *
 * Semantics the reference ops do not have (tensors.ts for the layouts):
 *   moe_permute: experts ascending, each expert's (t, k) rows in token order, each segment padded
 *     with zero rows to a multiple of `align` (zero codes, the scale of an all-zero tile); rows after
 *     the last segment are padding too. counts[e] = the padded segment length, so grouped_linear
 *     needs no `align`: expert e owns rows [Σ_{e'<e} counts[e'], + counts[e]); rows past Σ counts are 0.
 *   moe_permute {capacity} (the masked layout of decode): expert e's rows start at e·capacity, in token
 *     order; counts[e] = its valid rows (at most capacity); rows past them are never written (zero
 *     codes and zero scales here; whatever the buffer held on a GPU).
 *   grouped_linear {layout=masked}: group e's rows are [e·M/E, e·M/E + counts[e]); other rows 0.
 *   broadcast: the input repeated along the output's `axis`.
 *   moe_unpermute: Σ_k fround(w[t,k]·y[slots[t,k]]) accumulated in FP32, k ascending, then rounded
 *     to the output dtype.
 *   attention: block-diagonal — query sequence b (q_len queries) attends to keys [b·kv_len, (b+1)·kv_len),
 *     causally, the queries being the last q_len positions of their sequence.
 */
import type { KernelSpec, KernelTensor } from "../../../compiler/kernel-spec.js";
import type { Op, OpKind } from "../../../compiler/graph/ir.js";
import type { GateSpec } from "../../../compiler/spec.js";
import { fp8Gemm, tileScale } from "../numerics/index.js";
import { attentionForward } from "../ops/attention.js";
import { gateScores, gateSelect, gateWeights, type GateConfig } from "../ops/gate.js";
import { linearForward } from "../ops/linear.js";
import { rmsnormForward } from "../ops/rmsnorm.js";
import { ropeForward, ropeTable } from "../ops/rope.js";
import { swigluForward } from "../ops/swiglu.js";
import {
  elements,
  getInt,
  getQuantized,
  getReal,
  matrixShape,
  minifloatOf,
  pickOutputs,
  quantizeTensor,
  roundTo,
  scaleKey,
  setQuantized,
  type KernelValues,
} from "./tensors.js";

/** Op attributes that may name a dim, and the KernelSpec constant holding their value. */
export const DIM_ATTRS: Partial<Record<OpKind, Record<string, string>>> = {
  attention: { q_len: "q_len", kv_len: "kv_len", scale: "scale" },
  group_topk: { k: "topk", groups: "groups", top_groups: "top_groups" },
  gate_weights: { scale: "routed_scale" },
  moe_permute: { align: "align", capacity: "capacity" },
  linear: { promote: "promote" },
  grouped_linear: { promote: "promote" },
};

export interface OpContext {
  spec: KernelSpec;
  op: Op;
  values: KernelValues;
  input(i: number): KernelTensor;
  output(i: number): KernelTensor;
  attr(key: string): number;
}

export type OpSemantics = (c: OpContext) => void;

function gateConfig(experts: number, topK: number, extra: Partial<GateSpec>): GateConfig {
  const gate: GateSpec = {
    scoring: "sigmoid",
    biasBalancing: null,
    groups: 1,
    topGroups: 1,
    groupScore: "top2_sum",
    normalizeTopk: false,
    routedScale: 1,
    seqAuxLossWeight: 0,
    ...extra,
  } as GateSpec;
  return { experts, topK, gate };
}

/** Split/concat along `axis`: copies blocks of `inner` elements. */
function axisBlocks(shape: readonly number[], axis: number): { outer: number; inner: number } {
  return { outer: elements(shape.slice(0, axis)), inner: elements(shape.slice(axis)) };
}

/** The one mapping table: op kind → its CPU semantics on the reference ops/numerics. */
export const OP_SEMANTICS: Partial<Record<OpKind, OpSemantics>> = {
  rmsnorm(c) {
    const x = c.input(0);
    const [rows, dim] = matrixShape(x.shape);
    const y = rmsnormForward(getReal(c.values, x), getReal(c.values, c.input(1)), rows, dim, c.attr("eps"));
    c.values.set(c.output(0).id, roundTo(c.output(0).dtype, y));
  },
  linear(c) {
    const x = c.input(0);
    const w = c.input(1);
    const out = c.output(0);
    const [m, k] = matrixShape(x.shape);
    const n = w.shape[0]!;
    if (x.quant !== null && w.quant !== null) {
      const r = fp8Gemm(getQuantized(c.values, x), getQuantized(c.values, w), { promotionInterval: c.attr("promote") });
      c.values.set(out.id, roundTo(out.dtype, r.f32));
    } else {
      const y = linearForward(getReal(c.values, x), getReal(c.values, w), m, k, n);
      c.values.set(out.id, roundTo(out.dtype, y));
    }
  },
  grouped_linear(c) {
    const x = c.input(0);
    const w = c.input(1);
    const counts = getInt(c.values, c.input(2));
    const out = c.output(0);
    const [m, k] = matrixShape(x.shape);
    const n = w.shape[1]!;
    const qx = getQuantized(c.values, x);
    const y = new Float32Array(m * n);
    const masked = c.op.attrs["layout"] === "masked";
    let row = 0;
    for (let e = 0; e < counts.length; e++) {
      const rows = counts[e]!;
      if (masked) row = e * (m / counts.length);
      if (masked && rows > m / counts.length) throw new Error(`grouped_linear: ${rows} rows in a group of ${m / counts.length}`);
      if (rows === 0) continue;
      const tilesPerRow = qx.scaleShape[1];
      const part = {
        ...qx,
        shape: [rows, k] as [number, number],
        scaleShape: [rows, tilesPerRow] as [number, number],
        data: qx.data.subarray(row * k, (row + rows) * k),
        scales: qx.scales.subarray(row * tilesPerRow, (row + rows) * tilesPerRow),
      };
      const r = fp8Gemm(part, getQuantized(c.values, w, e), { promotionInterval: c.attr("promote") });
      y.set(r.f32, row * n);
      row += rows;
    }
    c.values.set(out.id, roundTo(out.dtype, y));
  },
  add(c) {
    const a = getReal(c.values, c.input(0));
    const b = getReal(c.values, c.input(1));
    const y = new Float32Array(a.length);
    for (let i = 0; i < a.length; i++) y[i] = a[i]! + b[i % b.length]!;
    c.values.set(c.output(0).id, roundTo(c.output(0).dtype, y));
  },
  scale(c) {
    const x = getReal(c.values, c.input(0));
    const f = c.attr("factor");
    c.values.set(c.output(0).id, roundTo(c.output(0).dtype, x.map((v) => v * f)));
  },
  swiglu(c) {
    const y = swigluForward(getReal(c.values, c.input(0)), getReal(c.values, c.input(1)));
    c.values.set(c.output(0).id, roundTo(c.output(0).dtype, y));
  },
  reshape(c) {
    c.values.set(c.output(0).id, getReal(c.values, c.input(0)).slice());
  },
  split(c) {
    const x = c.input(0);
    const xs = getReal(c.values, x);
    const axis = c.attr("axis");
    const { outer, inner } = axisBlocks(x.shape, axis);
    let from = 0;
    for (let o = 0; o < c.op.outputs.length; o++) {
      const t = c.output(o);
      const w = axisBlocks(t.shape, axis).inner;
      const y = new Float32Array(outer * w);
      for (let i = 0; i < outer; i++) y.set(xs.subarray(i * inner + from, i * inner + from + w), i * w);
      c.values.set(t.id, roundTo(t.dtype, y));
      from += w;
    }
  },
  broadcast(c) {
    // Inserts the output's dim at `axis`: each block of `inner` elements repeated `count` times.
    const x = getReal(c.values, c.input(0));
    const out = c.output(0);
    const axis = c.attr("axis");
    const count = out.shape[axis]!;
    const inner = elements(out.shape.slice(axis + 1));
    const outer = x.length / inner;
    const y = new Float32Array(outer * count * inner);
    for (let i = 0; i < outer; i++) for (let r = 0; r < count; r++) y.set(x.subarray(i * inner, (i + 1) * inner), (i * count + r) * inner);
    c.values.set(out.id, roundTo(out.dtype, y));
  },
  concat(c) {
    const out = c.output(0);
    const axis = c.attr("axis");
    const { outer, inner } = axisBlocks(out.shape, axis);
    const y = new Float32Array(outer * inner);
    let from = 0;
    for (let p = 0; p < c.op.inputs.length; p++) {
      const t = c.input(p);
      const xs = getReal(c.values, t);
      const w = axisBlocks(t.shape, axis).inner;
      for (let i = 0; i < outer; i++) y.set(xs.subarray(i * w, (i + 1) * w), i * inner + from);
      from += w;
    }
    c.values.set(out.id, roundTo(out.dtype, y));
  },
  rope(c) {
    const x = c.input(0);
    const pos = getInt(c.values, c.input(1));
    const rows = x.shape[0]!;
    const heads = x.shape.length === 3 ? x.shape[1]! : 1;
    const dim = x.shape[x.shape.length - 1]!;
    const table = ropeTable(dim, ropeSpecOf(c.op.attrs["theta"], c.op.attrs["yarn"]), pos);
    const y = ropeForward(getReal(c.values, x), table, rows, heads, dim, 0);
    c.values.set(c.output(0).id, roundTo(c.output(0).dtype, y));
  },
  attention(c) {
    const qT = c.input(0);
    const kT = c.input(1);
    const vT = c.input(2);
    const out = c.output(0);
    const q = getReal(c.values, qT);
    const k = getReal(c.values, kT);
    const v = getReal(c.values, vT);
    const [tqAll, heads, dk] = qT.shape as [number, number, number];
    const kvHeads = kT.shape.length === 3 ? kT.shape[1]! : 1;
    const dv = vT.shape[vT.shape.length - 1]!;
    const qLen = c.attr("q_len");
    const kvLen = c.attr("kv_len");
    const y = new Float32Array(tqAll * heads * dv);
    for (let b = 0; b * qLen < tqAll; b++) {
      const qs = q.subarray(b * qLen * heads * dk, (b + 1) * qLen * heads * dk);
      const ks = k.subarray(b * kvLen * kvHeads * dk, (b + 1) * kvLen * kvHeads * dk);
      const vs = v.subarray(b * kvLen * kvHeads * dv, (b + 1) * kvLen * kvHeads * dv);
      const shape = { tq: qLen, tk: kvLen, heads, kvHeads, dk, dv, scale: c.attr("scale") };
      if (c.op.attrs["causal"] !== true) Object.assign(shape, { causalOffset: kvLen });
      y.set(attentionForward(qs, ks, vs, shape).out, b * qLen * heads * dv);
    }
    c.values.set(out.id, roundTo(out.dtype, y));
  },
  gate_scores(c) {
    const x = c.input(0);
    const [tokens, experts] = matrixShape(x.shape);
    const scoring = c.op.attrs["scoring"] as GateSpec["scoring"];
    c.values.set(c.output(0).id, roundTo(c.output(0).dtype, gateScores(getReal(c.values, x), tokens, experts, scoring)));
  },
  group_topk(c) {
    const x = c.input(0);
    const [tokens, experts] = matrixShape(x.shape);
    const cfg = gateConfig(experts, c.attr("k"), {
      groups: c.attr("groups"),
      topGroups: c.attr("top_groups"),
      groupScore: c.op.attrs["group_score"] as GateSpec["groupScore"],
    });
    c.values.set(c.output(0).id, gateSelect(getReal(c.values, x), null, cfg, tokens));
  },
  gate_weights(c) {
    const s = c.input(0);
    const idx = c.input(1);
    const [tokens, experts] = matrixShape(s.shape);
    const cfg = gateConfig(experts, idx.shape[1]!, {
      normalizeTopk: c.op.attrs["normalize"] === true,
      routedScale: c.attr("scale"),
    });
    const w = gateWeights(getReal(c.values, s), getInt(c.values, idx), cfg, tokens);
    c.values.set(c.output(0).id, roundTo(c.output(0).dtype, w));
  },
  quantize(c) {
    const x = getReal(c.values, c.input(0));
    setQuantized(c.values, c.output(0).id, quantizeTensor(c.output(0), x));
  },
  moe_permute(c) {
    const xT = c.input(0);
    const idx = getInt(c.values, c.input(1));
    const [rowsT, countsT, slotsT] = [c.output(0), c.output(1), c.output(2)];
    const [tokens, hidden] = matrixShape(xT.shape);
    const topk = c.input(1).shape[1]!;
    const experts = countsT.shape[0]!;
    const align = c.op.attrs["align"] === undefined ? 1 : c.attr("align");
    const capacity = c.op.attrs["capacity"] === undefined ? 0 : c.attr("capacity");
    const M = rowsT.shape[0]!;
    const quantised = xT.quant !== null;
    const src = quantised ? c.values.get(xT.id)! : getReal(c.values, xT);
    const dst = quantised ? (src instanceof Uint16Array ? new Uint16Array(M * hidden) : new Uint8Array(M * hidden)) : new Float32Array(M * hidden);
    const tilesPerRow = quantised ? Math.ceil(hidden / xT.quant!.tile[1]) : 0;
    const srcScales = quantised ? (c.values.get(scaleKey(xT.id)) as Float32Array) : null;
    const zeroScale = quantised ? tileScale(0, minifloatOf(xT.dtype), xT.quant!.pow2) : 0;
    // Masked layout: rows past a group's count are never written (zero codes, zero scales).
    const dstScales = new Float32Array(M * tilesPerRow).fill(capacity > 0 ? 0 : zeroScale);
    const counts = new Int32Array(experts);
    const slots = new Int32Array(tokens * topk);
    let row = 0;
    for (let e = 0; e < experts; e++) {
      if (capacity > 0) row = e * capacity;
      const start = row;
      for (let t = 0; t < tokens; t++) {
        for (let k = 0; k < topk; k++) {
          if (idx[t * topk + k] !== e) continue;
          if (row >= M) throw new Error(`moe_permute: more than ${M} rows`);
          dst.set(src.subarray(t * hidden, (t + 1) * hidden) as never, row * hidden);
          if (srcScales !== null) dstScales.set(srcScales.subarray(t * tilesPerRow, (t + 1) * tilesPerRow), row * tilesPerRow);
          slots[t * topk + k] = row++;
        }
      }
      if (capacity > 0) {
        if (row - start > capacity) throw new Error(`moe_permute: expert ${e} receives ${row - start} rows, over its capacity ${capacity}`);
        counts[e] = row - start;
        continue;
      }
      row = start + Math.ceil((row - start) / align) * align;
      counts[e] = row - start;
    }
    if (row > M) throw new Error(`moe_permute: ${row} padded rows exceed ${M}`);
    c.values.set(rowsT.id, dst);
    if (quantised) c.values.set(scaleKey(rowsT.id), dstScales);
    c.values.set(countsT.id, counts);
    c.values.set(slotsT.id, slots);
  },
  moe_unpermute(c) {
    const yT = c.input(0);
    const y = getReal(c.values, yT);
    const slots = getInt(c.values, c.input(1));
    const w = getReal(c.values, c.input(2));
    const [tokens, topk] = c.input(1).shape as [number, number];
    const hidden = yT.shape[1]!;
    const out = new Float32Array(tokens * hidden);
    for (let t = 0; t < tokens; t++) {
      for (let h = 0; h < hidden; h++) {
        let acc = 0;
        for (let k = 0; k < topk; k++) acc = Math.fround(acc + Math.fround(w[t * topk + k]! * y[slots[t * topk + k]! * hidden + h]!));
        out[t * hidden + h] = acc;
      }
    }
    c.values.set(c.output(0).id, roundTo(c.output(0).dtype, out));
  },
};

/** RoPE attrs (theta, yarn as [factor, originalContext, betaFast, betaSlow, mscale, mscaleAllDim]). */
export function ropeSpecOf(theta: unknown, yarn: unknown): { theta: number; yarn: null | { factor: number; originalContext: number; betaFast: number; betaSlow: number; mscale: number; mscaleAllDim: number } } {
  if (typeof theta !== "number") throw new Error("rope: theta must be a number");
  if (!Array.isArray(yarn)) return { theta, yarn: null };
  const [factor, originalContext, betaFast, betaSlow, mscale, mscaleAllDim] = yarn.map(Number) as number[];
  return { theta, yarn: { factor: factor!, originalContext: originalContext!, betaFast: betaFast!, betaSlow: betaSlow!, mscale: mscale!, mscaleAllDim: mscaleAllDim! } };
}

/** Runs `spec.replaces` one op at a time on `inputs`; returns the KernelSpec's outputs. */
export function runUnfused(spec: KernelSpec, inputs: KernelValues): KernelValues {
  const values: KernelValues = new Map(inputs);
  const tensor = (id: string): KernelTensor => {
    const t = spec.tensors[id];
    if (t === undefined) throw new Error(`${spec.id}: no tensor %${id}`);
    return t;
  };
  for (const op of spec.replaces) {
    const f = OP_SEMANTICS[op.kind];
    if (f === undefined) throw new Error(`${spec.id}: no reference semantics for op ${op.kind}`);
    f({
      spec,
      op,
      values,
      input: (i) => tensor(op.inputs[i]!),
      output: (i) => tensor(op.outputs[i]!),
      attr(key) {
        const v = op.attrs[key];
        if (typeof v === "number") return v;
        const constant = DIM_ATTRS[op.kind]?.[key];
        const cv = constant === undefined ? undefined : spec.constants[constant];
        if (typeof cv === "number") return cv;
        throw new Error(`${spec.id}: ${op.kind} attribute '${key}' (${JSON.stringify(v)}) has no value`);
      },
    });
    for (const id of op.outputs) {
      const t = tensor(id);
      const v = values.get(id);
      if (v === undefined || v.length !== elements(t.shape)) throw new Error(`${spec.id}: ${op.kind} left %${id} with the wrong size`);
    }
  }
  return pickOutputs(spec, values);
}
