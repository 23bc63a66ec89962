/**
 * MLA weight absorption (decode), and the latent KV cache (prefill and decode).
 *
 * The naive MLA (build.ts) up-projects the normalised latent c_kv with kv_b into per-head k_nope and
 * v, concatenates the shared rotated k_rope to every head's key, and in serving caches those keys and
 * values: Nh·(Dn+R) + Nh·Dv elements per token and layer. Because q_nope·k_nope = (W_UKᵀ·q_nope)·c_kv
 * and P·v = W_UV·(P·c_kv) (backends/reference/ops/mla.ts, "Absorbed form"), decode instead
 *
 *   q_abs = mla_absorb_uk(q_nope, kv_b)            [T,Nh,C]   W_UK absorbed into the query
 *   query = concat(q_abs, q_rope)                  [T,Nh,C+R]
 *   cache = kv_cache_write(kv_cache, [c_kv | k_rope])  [B·S,C+R]  the latent cache
 *   out   = attention(query, cache, cache[:, :C])  [T,Nh,C]   one key/value head shared by all heads
 *   o     = mla_absorb_uv(out, kv_b)               [T,Nh,Dv]  W_UV applied after attention
 *
 * so the cache holds C + R elements per token and layer (576 for V3) and kv_b never runs over the
 * context. Prefill keeps the naive attention (compute-bound; no context to re-read) but writes the
 * same latent cache, so decode can read what prefill wrote. Training is unchanged.
 *
 * The pattern is matched structurally from each attention op: query = concat(q_nope, q_rope); key =
 * concat(k_nope, broadcast(k_rope)); [k_nope | v] = split(reshape(linear(c_kv, kv_b))); in serving
 * the key and value pass through kv_cache_write. Attention that does not match (MHA/GQA) is left.
 */
import type { Phase } from "../graph/ir.js";
import type { LayerGraph, ModelGraph, Op } from "../graph/ir.js";
import { cloneModel, GraphEdit } from "../graph/rewrite.js";
import type { Pass } from "./pass.js";

interface NaiveMla {
  attention: Op;
  qNope: string;
  qRope: string;
  latent: string;
  kRope: string;
  kvB: string;
  /** The cache writes of the per-head keys and values (prefill, decode). */
  kWrite: Op | null;
  vWrite: Op | null;
}

function matchNaiveMla(g: LayerGraph, att: Op, phase: Phase): NaiveMla | null {
  const e = new GraphEdit(g);
  const prod = e.producers();
  const cons = e.consumers();
  const by = (id: string | undefined, kind: Op["kind"]): Op | null => {
    const op = id === undefined ? undefined : prod.get(id);
    return op !== undefined && op.kind === kind ? op : null;
  };
  const [q, k, v] = att.inputs;
  const qc = by(q, "concat");
  if (qc === null || qc.inputs.length !== 2) return null;
  let kNew = k!;
  let vNew = v!;
  let kWrite: Op | null = null;
  let vWrite: Op | null = null;
  if (phase === "decode") {
    kWrite = by(k, "kv_cache_write");
    vWrite = by(v, "kv_cache_write");
    if (kWrite === null || vWrite === null) return null;
    kNew = kWrite.inputs[1]!;
    vNew = vWrite.inputs[1]!;
  } else if (phase === "prefill") {
    kWrite = (cons.get(kNew) ?? []).find((op) => op.kind === "kv_cache_write" && op.inputs[1] === kNew) ?? null;
    vWrite = (cons.get(vNew) ?? []).find((op) => op.kind === "kv_cache_write" && op.inputs[1] === vNew) ?? null;
    if (kWrite === null || vWrite === null) return null;
  }
  const kc = by(kNew, "concat");
  if (kc === null || kc.inputs.length !== 2) return null;
  const bc = by(kc.inputs[1], "broadcast");
  const sp = by(kc.inputs[0], "split");
  if (bc === null || sp === null || sp.outputs.length !== 2 || sp.outputs[0] !== kc.inputs[0] || sp.outputs[1] !== vNew) return null;
  const rs = by(sp.inputs[0], "reshape");
  const lin = rs === null ? null : by(rs.inputs[0], "linear");
  if (lin === null) return null;
  return {
    attention: att,
    qNope: qc.inputs[0]!,
    qRope: qc.inputs[1]!,
    latent: lin.inputs[0]!,
    kRope: bc.inputs[0]!,
    kvB: lin.inputs[1]!,
    kWrite,
    vWrite,
  };
}

/** The latent cache's name beside the naive key cache's (`mla.k_cache` → `mla.kv_cache`). */
function latentCacheName(g: LayerGraph, kCache: string): string {
  const base = kCache.endsWith("k_cache") ? `${kCache.slice(0, -"k_cache".length)}kv_cache` : `${kCache}.latent`;
  let name = base;
  for (let n = 2; g.values[name] !== undefined; n++) name = `${base}${n}`;
  return name;
}

function absorbOne(g: LayerGraph, e: GraphEdit, mla: NaiveMla, phase: Phase): void {
  const att = mla.attention;
  const block = att.block;
  const T = (id: string) => e.value(id);
  const latent = T(mla.latent);
  const kRope = T(mla.kRope);
  const C = T(mla.kvB).shape[1]!;
  const R = kRope.shape[kRope.shape.length - 1]!;
  const CR = `${C}+${R}`;
  const kWrite = mla.kWrite!;
  const vWrite = mla.vWrite!;
  const kCache = T(kWrite.inputs[0]!);
  const rowsDim = kCache.shape[0]!;
  const stateId = latentCacheName(g, kCache.id);
  g.values[stateId] = { id: stateId, dtype: kCache.dtype, shape: [rowsDim, CR], quant: null, role: "state", shared: false };
  g.params.push(stateId);
  const bf = (shape: string[]) => ({ dtype: latent.dtype, shape, quant: null });
  const added: Op[] = [];
  const kvNew = e.makeOp("concat", [mla.latent, mla.kRope], [bf([latent.shape[0]!, CR])], block, { axis: 1 });
  const kvAll = e.makeOp("kv_cache_write", [stateId, kvNew.outputs[0]!], [bf([rowsDim, CR])], block);
  added.push(kvNew, kvAll);
  const cacheOut = kvAll.outputs[0]!;
  if (phase === "decode") {
    const qNope = T(mla.qNope);
    const qAbs = e.makeOp("mla_absorb_uk", [mla.qNope, mla.kvB], [bf([qNope.shape[0]!, qNope.shape[1]!, C])], block);
    const query = e.makeOp("concat", [qAbs.outputs[0]!, mla.qRope], [bf([qNope.shape[0]!, qNope.shape[1]!, CR])], block, { axis: 2 });
    const values = e.makeOp("split", [cacheOut], [bf([rowsDim, C]), bf([rowsDim, R])], block, { axis: 1 });
    const core = e.makeOp("attention", [query.outputs[0]!, cacheOut, values.outputs[0]!], [bf([qNope.shape[0]!, qNope.shape[1]!, C])], block, { ...att.attrs });
    const out = T(att.outputs[0]!);
    const o = e.makeOp("mla_absorb_uv", [core.outputs[0]!, mla.kvB], [{ dtype: out.dtype, shape: [...out.shape], quant: null }], block);
    added.unshift(qAbs, query);
    added.push(values, core, o);
    e.replaceUses(att.outputs[0]!, o.outputs[0]!);
  }
  // The latent cache replaces the key and value caches among the graph's outputs.
  g.outputs = g.outputs.flatMap((id) => (id === kWrite.outputs[0] ? [cacheOut] : id === vWrite.outputs[0] ? [] : [id]));
  const at = g.ops.indexOf(phase === "decode" ? att : kWrite);
  g.ops.splice(at, 0, ...added);
}

function absorbGraph(g: LayerGraph, phase: Phase): boolean {
  const matches = g.ops
    .filter((op) => op.kind === "attention")
    .map((op) => matchNaiveMla(g, op, phase))
    .filter((x): x is NaiveMla => x !== null);
  if (matches.length === 0) return false;
  const e = new GraphEdit(g);
  for (const mla of matches) absorbOne(g, e, mla, phase);
  e.dce();
  return true;
}

export const absorbMla: Pass = {
  name: "absorb-mla",
  run(model: ModelGraph): ModelGraph {
    if (model.phase === "train") return model;
    const out = cloneModel(model);
    let changed = false;
    for (const g of out.graphs) changed = absorbGraph(g, out.phase) || changed;
    return changed ? out : model;
  },
};
