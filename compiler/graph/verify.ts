/**
 * Structural and shape checks of Graph IR: every value defined once before it is used, every op's
 * input and output shapes consistent with its kind (the rules in ir.ts), fused bodies closed over
 * their op's inputs. The builder runs it on what it builds and the pipeline after every pass; a
 * failure is an internal error (the Spec was valid), reported with the graph, op and reason.
 */
import { KERNEL_KINDS } from "../kernel-spec.js";
import { evalShape, type Dims } from "./dim-expr.js";
import { isQuantisedDtype, type LayerGraph, type ModelGraph, type Op, type Value } from "./ir.js";

class VerifyError extends Error {}

function fail(why: string): never {
  throw new VerifyError(why);
}

function eq(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function fmt(s: readonly number[]): string {
  return `[${s.join(",")}]`;
}

function expectShape(what: string, got: readonly number[], want: readonly number[]): void {
  if (!eq(got, want)) fail(`${what} has shape ${fmt(got)}, expected ${fmt(want)}`);
}

function expectRank(what: string, s: readonly number[], rank: number): void {
  if (s.length !== rank) fail(`${what} has rank ${s.length}, expected ${rank}`);
}

function numAttr(op: Op, key: string, dims: Dims): number {
  const v = op.attrs[key];
  if (typeof v === "number") return v;
  if (typeof v === "string" && dims[v] !== undefined) return dims[v]!;
  return fail(`attribute '${key}' must be a number or a dim name, got ${JSON.stringify(v)}`);
}

/** Checks one (non-fused) op's shapes; `v(i)`/`o(j)` are the concrete shapes of inputs/outputs. */
function checkOpShapes(op: Op, ins: Value[], outs: Value[], dims: Dims): void {
  const s = ins.map((x) => evalShape(x.shape, dims));
  const r = outs.map((x) => evalShape(x.shape, dims));
  const nIn = (n: number): void => {
    if (s.length !== n) fail(`takes ${n} inputs, got ${s.length}`);
  };
  const nOut = (n: number): void => {
    if (r.length !== n) fail(`gives ${n} outputs, got ${r.length}`);
  };
  const i = (k: number): number[] => s[k]!;
  const o = (k: number): number[] => r[k]!;
  const dim = (shape: number[], k: number): number => shape[k < 0 ? shape.length + k : k]!;
  const same = (): void => expectShape("the output", o(0), i(0));
  switch (op.kind) {
    case "embedding":
      nIn(2), nOut(1);
      expectRank("ids", i(0), 1);
      expectRank("table", i(1), 2);
      if (ins[0]!.dtype !== "i32") fail("ids must be i32");
      expectShape("the output", o(0), [dim(i(0), 0), dim(i(1), 1)]);
      return;
    case "rmsnorm":
      nIn(2), nOut(1);
      expectShape("the weight", i(1), [dim(i(0), -1)]);
      same();
      return;
    case "linear":
      nIn(2), nOut(1);
      expectRank("x", i(0), 2);
      expectRank("w", i(1), 2);
      if (dim(i(0), 1) !== dim(i(1), 1)) fail(`x ${fmt(i(0))} and w ${fmt(i(1))} disagree on K`);
      expectShape("the output", o(0), [dim(i(0), 0), dim(i(1), 0)]);
      return;
    case "grouped_linear":
      nIn(3), nOut(1);
      expectRank("x", i(0), 2);
      expectRank("w", i(1), 3);
      expectShape("counts", i(2), [dim(i(1), 0)]);
      if (dim(i(0), 1) !== dim(i(1), 2)) fail(`x ${fmt(i(0))} and w ${fmt(i(1))} disagree on K`);
      if (op.attrs["layout"] === "masked" && dim(i(0), 0) % dim(i(1), 0) !== 0) fail(`masked rows ${fmt(i(0))} do not split into ${dim(i(1), 0)} groups`);
      expectShape("the output", o(0), [dim(i(0), 0), dim(i(1), 1)]);
      return;
    case "add": {
      nIn(2), nOut(1);
      const a = i(0);
      const b = i(1);
      if (b.length > a.length || !eq(a.slice(a.length - b.length), b)) fail(`cannot add ${fmt(b)} to ${fmt(a)}`);
      same();
      return;
    }
    case "scale":
    case "gelu":
    case "gate_scores":
      nIn(1), nOut(1);
      same();
      return;
    case "swiglu":
      nIn(2), nOut(1);
      expectShape("u", i(1), i(0));
      same();
      return;
    case "reshape": {
      nIn(1), nOut(1);
      const n = (x: number[]): number => x.reduce((p, q) => p * q, 1);
      if (n(i(0)) !== n(o(0))) fail(`cannot reshape ${fmt(i(0))} to ${fmt(o(0))}`);
      return;
    }
    case "split": {
      nIn(1);
      const axis = numAttr(op, "axis", dims);
      let sum = 0;
      for (const [k, out] of r.entries()) {
        if (out.length !== i(0).length) fail(`output ${k} has rank ${out.length}, expected ${i(0).length}`);
        for (let d = 0; d < out.length; d++) if (d !== axis && out[d] !== i(0)[d]) fail(`output ${k} ${fmt(out)} differs from ${fmt(i(0))} off axis ${axis}`);
        sum += out[axis]!;
      }
      if (sum !== i(0)[axis]) fail(`outputs cover ${sum} of ${i(0)[axis]} along axis ${axis}`);
      return;
    }
    case "concat": {
      nOut(1);
      const axis = numAttr(op, "axis", dims);
      let sum = 0;
      for (const [k, x] of s.entries()) {
        if (x.length !== o(0).length) fail(`input ${k} has rank ${x.length}, expected ${o(0).length}`);
        for (let d = 0; d < x.length; d++) if (d !== axis && x[d] !== o(0)[d]) fail(`input ${k} ${fmt(x)} differs from ${fmt(o(0))} off axis ${axis}`);
        sum += x[axis]!;
      }
      if (sum !== o(0)[axis]) fail(`inputs cover ${sum} of ${o(0)[axis]} along axis ${axis}`);
      return;
    }
    case "broadcast": {
      nIn(1), nOut(1);
      const axis = numAttr(op, "axis", dims);
      const without = o(0).filter((_, d) => d !== axis);
      expectShape("the input", i(0), without);
      return;
    }
    case "rope":
      nIn(2), nOut(1);
      if (dim(i(0), -1) % 2 !== 0) fail(`rotates an odd dim ${dim(i(0), -1)}`);
      expectShape("positions", i(1), [dim(i(0), 0)]);
      same();
      return;
    case "attention": {
      nIn(3), nOut(1);
      const [q, k, v] = [i(0), i(1), i(2)];
      expectRank("q", q, 3);
      if (k.length !== v.length || (k.length !== 2 && k.length !== 3)) fail(`k ${fmt(k)} and v ${fmt(v)} must both have rank 2 or 3`);
      const hkv = k.length === 3 ? k[1]! : 1;
      if (k.length === 3 && v[1] !== hkv) fail(`k and v disagree on kv heads`);
      if (dim(k, 0) !== dim(v, 0)) fail(`k and v disagree on keys`);
      if (dim(k, -1) !== dim(q, -1)) fail(`q ${fmt(q)} and k ${fmt(k)} disagree on the head dim`);
      if (q[1]! % hkv !== 0) fail(`${q[1]} heads do not share ${hkv} kv heads evenly`);
      expectShape("the output", o(0), [q[0]!, q[1]!, dim(v, -1)]);
      const qLen = numAttr(op, "q_len", dims);
      const kvLen = numAttr(op, "kv_len", dims);
      if (q[0]! % qLen !== 0 || dim(k, 0) % kvLen !== 0 || q[0]! / qLen !== dim(k, 0) / kvLen) {
        fail(`${q[0]} queries in runs of ${qLen} and ${dim(k, 0)} keys in runs of ${kvLen} are not the same sequences`);
      }
      return;
    }
    case "group_topk": {
      nIn(1), nOut(1);
      expectRank("sel", i(0), 2);
      const k = numAttr(op, "k", dims);
      const groups = numAttr(op, "groups", dims);
      if (dim(i(0), 1) % groups !== 0) fail(`${dim(i(0), 1)} experts do not split into ${groups} groups`);
      expectShape("the output", o(0), [dim(i(0), 0), k]);
      if (outs[0]!.dtype !== "i32") fail("expert ids must be i32");
      return;
    }
    case "gate_weights":
      nIn(2), nOut(1);
      expectRank("scores", i(0), 2);
      expectShape("idx", i(1), [dim(i(0), 0), dim(i(1), 1)]);
      expectShape("the output", o(0), i(1));
      return;
    case "seq_aux_loss":
      nIn(2), nOut(1);
      expectShape("idx", i(1), [dim(i(0), 0), dim(i(1), 1)]);
      expectShape("the output", o(0), []);
      return;
    case "moe_permute": {
      nIn(2), nOut(3);
      const [t, h] = [dim(i(0), 0), dim(i(0), 1)];
      const k = dim(i(1), 1);
      expectShape("idx", i(1), [t, k]);
      const e = dim(o(1), 0);
      expectRank("counts", o(1), 1);
      const align = op.attrs["align"] === undefined ? 1 : numAttr(op, "align", dims);
      // Masked layout (decode): every expert owns `capacity` rows.
      const capacity = op.attrs["capacity"] === undefined ? 0 : numAttr(op, "capacity", dims);
      if (capacity > 0 && capacity < t) fail(`capacity ${capacity} is below the ${t} rows one expert may receive`);
      const rows = capacity > 0 ? e * capacity : align === 1 ? t * k : align * Math.floor((t * k + (align - 1) * e) / align);
      expectShape("the rows", o(0), [rows, h]);
      expectShape("the slots", o(2), [t, k]);
      return;
    }
    case "moe_unpermute":
      nIn(3), nOut(1);
      expectShape("weights", i(2), i(1));
      expectShape("the output", o(0), [dim(i(1), 0), dim(i(0), 1)]);
      return;
    case "quantize":
      nIn(1), nOut(1);
      same();
      if (outs[0]!.quant === null || !isQuantisedDtype(outs[0]!.dtype)) fail("the output must be a quantised format");
      return;
    case "cross_entropy":
      nIn(2), nOut(1);
      expectShape("labels", i(1), [dim(i(0), 0)]);
      expectShape("the output", o(0), []);
      return;
    case "kv_cache_write":
      nIn(2), nOut(1);
      expectShape("the new rows", i(1).slice(1), i(0).slice(1));
      same();
      return;
    case "mla_absorb_uk":
    case "mla_absorb_uv": {
      nIn(2), nOut(1);
      const x = i(0);
      const w = i(1);
      expectRank("x", x, 3);
      expectRank("kv_b", w, 2);
      const heads = x[1]!;
      if (w[0]! % heads !== 0) fail(`kv_b ${fmt(w)} rows do not split over ${heads} heads`);
      const perHead = w[0]! / heads;
      const c = w[1]!;
      if (op.kind === "mla_absorb_uk") {
        if (x[2]! >= perHead) fail(`q_nope dim ${x[2]} leaves no v rows in kv_b`);
        expectShape("the output", o(0), [x[0]!, heads, c]);
      } else {
        expectShape("x", x, [x[0]!, heads, c]);
        if (o(0)[2]! >= perHead) fail(`v dim ${o(0)[2]} leaves no k rows in kv_b`);
        expectShape("the output", o(0).slice(0, 2), [x[0]!, heads]);
      }
      return;
    }
    case "fused":
      return;
  }
}

/** `defined`: what the ops may read; `seen`: every id defined anywhere in the graph (ids are unique). */
function checkOps(g: LayerGraph, ops: readonly Op[], defined: Set<string>, seen: Set<string>, dims: Dims, where: string): void {
  for (const [index, op] of ops.entries()) {
    const at = `${where === "" ? "" : `${where} `}op ${index} (${op.kind}${op.kernel ? ` ${op.kernel}` : ""})`;
    try {
      for (const id of op.inputs) if (!defined.has(id)) fail(`uses %${id} before it is defined`);
      const ins = op.inputs.map((id) => g.values[id] ?? fail(`no value %${id}`));
      const outs = op.outputs.map((id) => g.values[id] ?? fail(`no value %${id}`));
      if (op.outputs.length === 0) fail("has no outputs");
      for (const x of outs) if (x.role !== "temp") fail(`writes the param %${x.id}`);
      if (op.kind === "fused") {
        if (op.body === undefined || op.body.length === 0 || op.kernel === undefined) fail("a fused op needs a kernel kind and a body");
        if (!KERNEL_KINDS.includes(op.kernel)) fail(`unknown kernel kind '${op.kernel}'`);
        const inner = new Set(op.inputs);
        checkOps(g, op.body, inner, seen, dims, `${at} body`);
        for (const id of op.outputs) if (!inner.has(id) || op.inputs.includes(id)) fail(`output %${id} is not produced by the body`);
        for (const id of op.outputs) defined.add(id);
      } else {
        if (op.body !== undefined || op.kernel !== undefined) fail("only fused ops have a body");
        checkOpShapes(op, ins, outs, dims);
        for (const id of op.outputs) {
          if (seen.has(id)) fail(`defines %${id} twice`);
          seen.add(id);
          defined.add(id);
        }
      }
    } catch (e) {
      if (e instanceof VerifyError) throw new VerifyError(`${at}: ${e.message}`);
      throw e;
    }
  }
}

/** Checks one graph; throws an internal error describing the first problem. */
export function verifyGraph(g: LayerGraph, dims: Dims): void {
  try {
    const defined = new Set<string>();
    const seen = new Set<string>();
    for (const id of g.params) {
      const v = g.values[id] ?? fail(`param %${id} has no value`);
      if (v.role === "temp") fail(`param %${id} is a temporary`);
      if (/^[0-9]+$/.test(id)) fail(`param %${id} needs a name, not a number`);
      if (defined.has(id)) fail(`param %${id} declared twice`);
      defined.add(id);
      seen.add(id);
    }
    for (const v of Object.values(g.values)) {
      if (v.quant !== null && !isQuantisedDtype(v.dtype)) fail(`%${v.id} has scales but dtype ${v.dtype}`);
      evalShape(v.shape, dims);
    }
    checkOps(g, g.ops, defined, seen, dims, "");
    for (const id of g.outputs) if (!defined.has(id)) fail(`output %${id} is not defined`);
  } catch (e) {
    if (e instanceof Error) throw new Error(`internal error: graph ${g.kind}: ${e.message}`);
    throw e;
  }
}

/** Checks every graph of a model. */
export function verifyModel(m: ModelGraph): void {
  const kinds = new Set<string>();
  for (const g of m.graphs) {
    if (kinds.has(g.kind)) throw new Error(`internal error: two ${g.kind} graphs`);
    kinds.add(g.kind);
    verifyGraph(g, m.dims);
  }
}
