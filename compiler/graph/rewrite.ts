/**
 * Helpers for passes: an editor over a (cloned) LayerGraph — fresh temporary ids, producers and
 * consumers, replacing uses, dead-op elimination, a stable topological order — and the canonical
 * renumbering Before/Expected tests compare under.
 *
 * Passes are pure: they `structuredClone` the ModelGraph and edit the clone.
 */
import { allOps, type Attrs, type Block, type LayerGraph, type ModelGraph, type Op, type OpKind, type Value } from "./ir.js";

const NUMERIC = /^[0-9]+$/;

export class GraphEdit {
  private nextId: number;

  constructor(readonly g: LayerGraph) {
    let max = -1;
    for (const id of Object.keys(g.values)) if (NUMERIC.test(id)) max = Math.max(max, Number(id));
    this.nextId = max + 1;
  }

  value(id: string): Value {
    const v = this.g.values[id];
    if (v === undefined) throw new Error(`internal error: graph ${this.g.kind} has no value %${id}`);
    return v;
  }

  /** A new temporary typed like `like` with the given changes. */
  fresh(like: Omit<Value, "id" | "role" | "shared">): string {
    const id = String(this.nextId++);
    this.g.values[id] = { id, dtype: like.dtype, shape: [...like.shape], quant: like.quant === null ? null : { tile: [...like.quant.tile], pow2: like.quant.pow2 }, role: "temp", shared: false };
    return id;
  }

  /** A new op (not inserted) producing fresh values of the given types. */
  makeOp(kind: OpKind, inputs: string[], outs: Omit<Value, "id" | "role" | "shared">[], block: Block, attrs: Attrs = {}): Op {
    return { kind, inputs, outputs: outs.map((o) => this.fresh(o)), attrs, flags: [], block };
  }

  /** The top-level op producing each value. */
  producers(): Map<string, Op> {
    const m = new Map<string, Op>();
    for (const op of this.g.ops) for (const id of op.outputs) m.set(id, op);
    return m;
  }

  /** The top-level ops reading each value, in op order. */
  consumers(): Map<string, Op[]> {
    const m = new Map<string, Op[]>();
    for (const op of this.g.ops) {
      for (const id of op.inputs) {
        const list = m.get(id);
        if (list === undefined) m.set(id, [op]);
        else if (!list.includes(op)) list.push(op);
      }
    }
    return m;
  }

  /** Replaces every read of `from` by `to` (ops, fused bodies, graph outputs). */
  replaceUses(from: string, to: string): void {
    for (const op of allOps(this.g.ops)) op.inputs = op.inputs.map((id) => (id === from ? to : id));
    this.g.outputs = this.g.outputs.map((id) => (id === from ? to : id));
  }

  /**
   * Removes ops none of whose outputs is read (or is a graph output), repeatedly; then values no
   * longer referenced, and state params nothing reads. Weights and inputs stay (they are the
   * layer's interface).
   */
  dce(): void {
    let changed = true;
    while (changed) {
      changed = false;
      const used = new Set(this.g.outputs);
      for (const op of this.g.ops) for (const id of op.inputs) used.add(id);
      const kept = this.g.ops.filter((op) => op.outputs.some((id) => used.has(id)));
      if (kept.length !== this.g.ops.length) {
        this.g.ops = kept;
        changed = true;
      }
    }
    const referenced = new Set(this.g.outputs);
    for (const op of allOps(this.g.ops)) for (const id of [...op.inputs, ...op.outputs]) referenced.add(id);
    this.g.params = this.g.params.filter((id) => this.g.values[id]!.role !== "state" || referenced.has(id));
    for (const id of this.g.params) referenced.add(id);
    for (const id of Object.keys(this.g.values)) if (!referenced.has(id)) delete this.g.values[id];
  }

  /**
   * Reorders the top-level ops into a valid execution order that keeps the given order where it
   * can: repeatedly the ready op of smallest `key` (default: its current position).
   */
  toposort(key: (op: Op, index: number) => number = (_op, i) => i): void {
    const ops = this.g.ops;
    const keys = ops.map(key);
    const producer = new Map<string, number>();
    ops.forEach((op, i) => op.outputs.forEach((id) => producer.set(id, i)));
    const deps = ops.map((op) => new Set(op.inputs.map((id) => producer.get(id)).filter((p): p is number => p !== undefined)));
    const done = new Array<boolean>(ops.length).fill(false);
    const out: Op[] = [];
    for (let n = 0; n < ops.length; n++) {
      let best = -1;
      for (let i = 0; i < ops.length; i++) {
        if (done[i] || [...deps[i]!].some((d) => !done[d])) continue;
        if (best < 0 || keys[i]! < keys[best]! || (keys[i] === keys[best] && i < best)) best = i;
      }
      if (best < 0) throw new Error(`internal error: graph ${this.g.kind} has a cycle`);
      done[best] = true;
      out.push(ops[best]!);
    }
    this.g.ops = out;
  }
}

/** A deep copy of a model (passes edit the copy). */
export function cloneModel(m: ModelGraph): ModelGraph {
  return structuredClone(m);
}

/**
 * The model with every numbered temporary renumbered 0, 1, … in order of definition (ops in
 * order, fused bodies in place) and values nothing refers to dropped, so graphs equal up to id
 * choice compare equal.
 */
export function canonicalize(m: ModelGraph): ModelGraph {
  const out = cloneModel(m);
  for (const g of out.graphs) {
    const map = new Map<string, string>();
    let n = 0;
    for (const op of allOps(g.ops)) {
      if (op.kind === "fused") continue;
      for (const id of op.outputs) if (NUMERIC.test(id) && !map.has(id)) map.set(id, String(n++));
    }
    const referenced = new Set([...g.params, ...g.outputs]);
    for (const op of allOps(g.ops)) for (const id of [...op.inputs, ...op.outputs]) referenced.add(id);
    const r = (id: string): string => map.get(id) ?? id;
    const values: Record<string, Value> = {};
    for (const v of Object.values(g.values)) if (referenced.has(v.id)) values[r(v.id)] = { ...v, id: r(v.id) };
    g.values = values;
    for (const op of allOps(g.ops)) {
      op.inputs = op.inputs.map(r);
      op.outputs = op.outputs.map(r);
    }
    g.outputs = g.outputs.map(r);
  }
  return out;
}
