/**
 * One prefill or decode step of a serving plan on virtual ranks. Every GPU runs the plan's serving
 * program (compiler/plan/programs.ts) op by op, for its attention group's micro-batches:
 * - embedding: vocabulary-parallel lookup of the micro-batch's rows, reduce-scattered to the rank's
 *   SP block;
 * - attention: RMSNorm on the block, all-gather over the attention-TP group, the rank's heads
 *   (prefill: the naive form per prompt; decode: the absorbed form over the rank's latent KV cache,
 *   which every TP rank of the group holds whole), reduce-scatter of the head partial sums;
 * - dense_ffn: the dense MLP whole on the rank's rows;
 * - dispatch / experts / combine: the router (with its selection bias) on the rank's rows, each pick
 *   sent to one replica of its expert (the one on the sending GPU if any, else one on its node, else
 *   replica `row mod replicas`), the GPU's expert slots and (unless served as routed) the shared
 *   experts, the node-limited combine;
 * - head: the final norm (an MTP module's own norm after its block) and the vocabulary-parallel head,
 *   logits gathered over TP, greedy token of each sequence's last row;
 * - mtp: module k's norms and eh_proj on the main model's last hidden rows and the embeddings of the
 *   next tokens (the sequence shifted by k, continued with the main greedy token and the drafts).
 * Decode runs the same program twice: once over each sequence's context to fill the caches (a warm-up
 * whose traffic is not counted), then the measured step on [greedy token, drafts] — the 1 + D tokens
 * per sequence the plan's decode step verifies.
 */
import type { Plan, ServingProgram } from "../../../compiler/plan/plan.js";
import { RecipeBytes } from "../../../compiler/plan/recipe-bytes.js";
import type { ServingSchedule, Spec } from "../../../compiler/spec.js";
import {
  add,
  gateForward,
  linearForward,
  mlaAbsorbedForward,
  mlaForward,
  mlaLatentForward,
  rmsnormForward,
  swigluMlpForward,
  type MlaConfig,
} from "../../../backends/reference/ops/index.js";
import { argmaxRow } from "../decode.js";
import { blockOffsets, runRanks, VirtualCluster, type Wait } from "./collectives.js";
import { ExpertExchange, type ExpertRoute, type ReceivedTokens } from "./expert-all-to-all.js";
import { gatherRows, myRows, runExperts, scatterRows, type LoweringFaults, type RankEnv, type Rows } from "./rank-layer.js";
import type { RankLayerWeights, RankStageWeights, RankWeightSource } from "./rank-weights.js";

type F32 = Float32Array;
type Gen<T> = Generator<Wait, T, void>;

export interface ServingRunInput {
  spec: Spec;
  plan: Plan;
  schedule: ServingSchedule;
  weights: RankWeightSource;
  /** Per attention group (dp index), its sequences: prefill prompts, or decode contexts. */
  sequences: readonly (readonly Int32Array[])[];
  faults?: LoweringFaults;
}

/** What one sequence's step produced. */
export interface SequenceOutput {
  /** Rows of the step × vocab (prefill: the prompt; decode: the 1 + D step tokens). */
  logits: F32;
  /** The greedy token of every row. */
  greedy: Int32Array;
  /** The MTP modules' drafts after the last row, and their last-row logits. */
  drafts: number[];
  draftLogits: F32[];
  /** Decode: the step's input tokens ([greedy after the context, drafts]). */
  stepTokens: Int32Array | null;
}

export interface ServingRunResult {
  cluster: VirtualCluster;
  experts: ExpertExchange;
  /** Per attention group, per sequence. */
  outputs: SequenceOutput[][];
}

interface LatentCache {
  tokens: number;
  latent: F32;
  kRope: F32;
}

function concat(a: F32, b: F32): F32 {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** The physical slot of each pick: a replica of its logical expert, preferring the sender's GPU, then its node. */
function chooseSlots(logical: Int32Array, slots: readonly number[], spg: number, members: readonly number[], me: number, gpusPerNode: number): Int32Array {
  const replicas = new Map<number, number[]>();
  slots.forEach((e, i) => {
    const list = replicas.get(e) ?? [];
    list.push(i);
    replicas.set(e, list);
  });
  const out = new Int32Array(logical.length);
  const myNode = Math.floor(me / gpusPerNode);
  for (let i = 0; i < logical.length; i++) {
    const list = replicas.get(logical[i]!);
    if (list === undefined) throw new Error(`serving: expert ${logical[i]} has no slot`);
    const onGpu = list.find((s) => members[Math.floor(s / spg)] === me);
    const onNode = list.find((s) => Math.floor(members[Math.floor(s / spg)]! / gpusPerNode) === myNode);
    out[i] = onGpu ?? onNode ?? list[i % list.length]!;
  }
  return out;
}

export function runDistributedServing(input: ServingRunInput): ServingRunResult {
  const { spec, plan, schedule } = input;
  const model = spec.model;
  const a = model.attention;
  if (a.kind !== "mla") throw new RangeError("distributed serving: MLA attention only");
  const d = model.hidden;
  const V = model.vocab;
  const L = model.layers;
  const recipe = new RecipeBytes(spec.precision);
  const tp = schedule.attention.tp;
  const ep = schedule.moe.ep;
  const M = schedule.microbatches;
  const gpn = plan.cluster.gpusPerNode;
  const cluster = new VirtualCluster(plan.gpus, gpn);
  const experts = new ExpertExchange(cluster, d, recipe.dispatchCopy(d), recipe.combineCopy(d));
  const program = plan.programs[0] as ServingProgram;
  const faults = input.faults ?? {};
  const moe = model.moe;
  const sharedAsRouted = schedule.moe.sharedAsRouted;
  const outputs: SequenceOutput[][] = input.sequences.map((seqs) =>
    seqs.map(() => ({ logits: new Float32Array(0), greedy: new Int32Array(0), drafts: [], draftLogits: [], stepTokens: null })),
  );
  const current: string[] = [];
  const rankWeights = Array.from({ length: plan.gpus }, (_, g) => input.weights(g));
  const caches = Array.from({ length: plan.gpus }, () => new Map<string, LatentCache>());

  /** One pass of the program; `chunks(group, seq)` gives each sequence's tokens for the pass and its start position. */
  const pass = (phase: string, chunkOf: (group: number, seq: number) => { ids: Int32Array; start: number }, record: boolean): void => {
    const task = function* (gpu: number): Gen<void> {
      const rank = plan.ranks[gpu]!;
      const rw = rankWeights[gpu]!;
      const st: RankStageWeights = rw.stages[0]!;
      const tpMembers = Array.from({ length: tp }, (_, i) => rank.dp * tp + i);
      const epMembers = Array.from({ length: ep }, (_, i) => rank.epGroup * ep + i);
      const epGroup = moe === null ? null : { id: `serve.g${rank.epGroup}`, members: epMembers, slotsPerGpu: plan.experts!.slotsPerGpu };
      const env: RankEnv = { gpu, model, cluster, experts, tpMembers, tpIndex: rank.tp, ffnTp: 1, epGroup, nodeLimit: null, faults };
      const seqs = input.sequences[rank.dp]!;
      const perMb = seqs.length / M;
      interface MbState {
        ids: Int32Array;
        segments: { seq: number; first: number; rows: number; start: number }[];
        rows: Rows;
        x: F32;
        h: F32;
        ffnIn: F32;
        route: ExpertRoute | null;
        received: ReceivedTokens | null;
        expertPartial: Float64Array | null;
        sharedY: F32 | null;
        /** Greedy token and drafts so far per sequence (main first). */
        next: number[][];
        mtp: number;
      }
      const state: MbState[] = [];
      for (let mb = 0; mb < M; mb++) {
        const segments: MbState["segments"] = [];
        const idList: number[] = [];
        for (let j = 0; j < perMb; j++) {
          const seq = mb * perMb + j;
          const c = chunkOf(rank.dp, seq);
          segments.push({ seq, first: idList.length, rows: c.ids.length, start: c.start });
          idList.push(...c.ids);
        }
        const total = idList.length;
        const rows: Rows = { total, offsets: blockOffsets(total, tp), tag: `${phase}:a${rank.dp}:mb${mb}`, epTag: `${phase}:mb${mb}` };
        state.push({ ids: Int32Array.from(idList), segments, rows, x: new Float32Array(0), h: new Float32Array(0), ffnIn: new Float32Array(0), route: null, received: null, expertPartial: null, sharedY: null, next: segments.map(() => []), mtp: -1 });
      }
      const layerW = (layer: number): RankLayerWeights => (layer < L ? st.layers[layer]! : st.mtp[layer - L]!.block);
      const mlaCfg: MlaConfig = { hidden: d, normEps: model.normEps, attention: { ...a, heads: a.heads / tp } };
      let opIndex = 0;
      for (const op of program.ops) {
        opIndex++;
        current[gpu] = `${op.op}${op.layer === null ? "" : ` layer ${op.layer}`} mb ${op.mb} (op ${opIndex} of ${program.ops.length}, ${phase})`;
        const s = state[op.mb]!;
        const mine = myRows(env, s.rows);
        const lt = `${op.layer ?? "h"}`;
        if (op.op === "embedding") {
          const v = st.embed!;
          const part = new Float32Array(s.rows.total * d);
          for (let t = 0; t < s.rows.total; t++) {
            const id = s.ids[t]! - v.first;
            if (id >= 0 && id < v.count) part.set(v.table.subarray(id * d, (id + 1) * d), t * d);
          }
          s.x = yield* scatterRows(env, part, s.rows, d, "embed", "tp_vocab");
        } else if (op.op === "attention") {
          const w = layerW(op.layer!);
          const attnIn = rmsnormForward(s.x, w.attnNorm, mine.count, d, model.normEps);
          const full = yield* gatherRows(env, attnIn, s.rows, `L${lt}.attn.ag`);
          const out = new Float32Array(s.rows.total * d);
          for (const seg of s.segments) {
            const xs = full.subarray(seg.first * d, (seg.first + seg.rows) * d);
            let y: F32;
            if (schedule.kind === "prefill") {
              y = mlaForward(xs, w.mla, mlaCfg, seg.rows, seg.start).y;
            } else {
              const key = `${op.layer}:${rank.dp}:${seg.seq}`;
              const c = caches[gpu]!.get(key) ?? { tokens: 0, latent: new Float32Array(0), kRope: new Float32Array(0) };
              if (c.tokens !== seg.start) throw new Error(`serving: cache of layer ${op.layer} holds ${c.tokens} tokens, the step starts at ${seg.start}`);
              const lat = mlaLatentForward(xs, w.mla, mlaCfg, seg.rows, seg.start).cache;
              const next = { tokens: c.tokens + seg.rows, latent: concat(c.latent, lat.latent), kRope: concat(c.kRope, lat.kRope) };
              caches[gpu]!.set(key, next);
              y = mlaAbsorbedForward(xs, next, w.mla, mlaCfg, seg.rows).y;
            }
            out.set(y, seg.first * d);
          }
          const attn = yield* scatterRows(env, out, s.rows, d, `L${lt}.attn.rs`);
          s.h = add(s.x, attn);
        } else if (op.op === "dense_ffn") {
          const w = layerW(op.layer!);
          const ffnIn = rmsnormForward(s.h, w.ffnNorm, mine.count, d, model.normEps);
          s.x = add(s.h, swigluMlpForward(ffnIn, w.dense!, mine.count, d, w.ffnSlice.count).y);
        } else if (op.op === "dispatch") {
          const w = layerW(op.layer!);
          const mo = moe!;
          s.ffnIn = rmsnormForward(s.h, w.ffnNorm, mine.count, d, model.normEps);
          const gate = gateForward(s.ffnIn, w.router!, w.gateBias, { experts: mo.routedExperts, topK: mo.expertsPerToken, gate: mo.gate }, mine.count, d);
          const extra = sharedAsRouted ? mo.sharedExperts : 0;
          const K = mo.expertsPerToken + extra;
          const logical = new Int32Array(mine.count * K);
          const weights = new Float32Array(mine.count * K);
          for (let t = 0; t < mine.count; t++) {
            for (let k = 0; k < mo.expertsPerToken; k++) {
              logical[t * K + k] = gate.experts[t * mo.expertsPerToken + k]!;
              weights[t * K + k] = gate.weights[t * mo.expertsPerToken + k]!;
            }
            for (let j = 0; j < extra; j++) {
              logical[t * K + mo.expertsPerToken + j] = mo.routedExperts + j;
              weights[t * K + mo.expertsPerToken + j] = 1;
            }
          }
          const slotRow = plan.experts!.sameForAllLayers ? plan.experts!.slots[0]! : plan.experts!.slots[plan.experts!.layers.indexOf(op.layer!)]!;
          const slots = chooseSlots(logical, slotRow, plan.experts!.slotsPerGpu, epMembers, gpu, gpn);
          const r = yield* experts.dispatch(epGroup!, gpu, s.ffnIn, mine.count, slots, weights, K, `${s.rows.epTag}:L${lt}`);
          s.route = r.route;
          s.received = r.received;
        } else if (op.op === "experts") {
          const w = layerW(op.layer!);
          s.expertPartial = runExperts(env, w, s.received!).partial;
          s.sharedY = w.shared === null ? null : swigluMlpForward(s.ffnIn, w.shared, mine.count, d, w.ffnSlice.count).y;
        } else if (op.op === "combine") {
          const c = yield* experts.combine(s.route!, gpu, s.expertPartial!, s.received!, null, `${s.rows.epTag}:L${lt}`);
          const f = s.sharedY === null ? c.y : add(s.sharedY, c.y);
          s.x = add(s.h, f);
        } else if (op.op === "head") {
          const norm = s.mtp < 0 ? st.finalNorm! : st.mtp[s.mtp]!.proj.headNorm;
          const normed = rmsnormForward(s.x, norm, mine.count, d, model.normEps);
          const full = yield* gatherRows(env, normed, s.rows, `head${s.mtp}.normed`, "tp_vocab");
          const head = st.head!;
          const T = s.rows.total;
          const slice = linearForward(full, head.table, T, d, head.count);
          let logits = slice;
          if (tp > 1) {
            const gathered = yield* cluster.allGather(`tp:${tpMembers[0]}:${s.rows.tag}:head${s.mtp}.logits`, tpMembers, gpu, slice, "tp_vocab", 4, "the logits");
            logits = new Float32Array(T * V);
            for (let m = 0; m < tp; m++) for (let t = 0; t < T; t++) logits.set(gathered.subarray(m * T * head.count + t * head.count, m * T * head.count + (t + 1) * head.count), t * V + m * head.count);
          }
          s.segments.forEach((seg, j) => {
            const last = seg.first + seg.rows - 1;
            const tok = argmaxRow(logits, last, V);
            s.next[j]!.push(tok);
            if (!record || rank.tp !== 0) return;
            const o = outputs[rank.dp]![seg.seq]!;
            if (s.mtp < 0) {
              o.logits = logits.slice(seg.first * V, (seg.first + seg.rows) * V);
              o.greedy = Int32Array.from({ length: seg.rows }, (_, i) => argmaxRow(logits, seg.first + i, V));
            } else {
              o.drafts.push(tok);
              o.draftLogits.push(logits.slice(last * V, (last + 1) * V));
            }
          });
        } else if (op.op === "mtp") {
          const k = op.layer! - L;
          s.mtp = k;
          const m = st.mtp[k]!;
          // Next ids of module k+1: the step's ids shifted by k+1, continued with the greedy token and the drafts.
          const ids = new Int32Array(s.rows.total);
          s.segments.forEach((seg, j) => {
            const ext = [...s.ids.subarray(seg.first, seg.first + seg.rows), ...s.next[j]!];
            for (let i = 0; i < seg.rows; i++) ids[seg.first + i] = ext[i + k + 1]!;
          });
          const v = st.embed!;
          const part = new Float32Array(s.rows.total * d);
          for (let t = 0; t < s.rows.total; t++) {
            const id = ids[t]! - v.first;
            if (id >= 0 && id < v.count) part.set(v.table.subarray(id * d, (id + 1) * d), t * d);
          }
          const emb = yield* scatterRows(env, part, s.rows, d, `mtp${k}.embed`, "tp_vocab");
          const eN = rmsnormForward(emb, m.proj.enorm, mine.count, d, model.normEps);
          const hN = rmsnormForward(s.x, m.proj.hnorm, mine.count, d, model.normEps);
          const cat = new Float32Array(mine.count * 2 * d);
          for (let t = 0; t < mine.count; t++) {
            cat.set(eN.subarray(t * d, (t + 1) * d), t * 2 * d);
            cat.set(hN.subarray(t * d, (t + 1) * d), t * 2 * d + d);
          }
          s.x = linearForward(cat, m.proj.ehProj, mine.count, 2 * d, d);
        }
      }
      current[gpu] = `done (${phase})`;
    };
    runRanks(Array.from({ length: plan.gpus }, (_, g) => task(g)), (g) => current[g] ?? "its first op");
  };

  if (schedule.kind === "prefill") {
    pass("prefill", (g, s) => ({ ids: Int32Array.from(input.sequences[g]![s]!), start: 0 }), true);
  } else {
    pass("context", (g, s) => ({ ids: Int32Array.from(input.sequences[g]![s]!), start: 0 }), true);
    // The step's tokens: the greedy token after the context and the drafts.
    const step = outputs.map((row) => row.map((o) => Int32Array.from([o.greedy[o.greedy.length - 1]!, ...o.drafts])));
    cluster.traffic.reset();
    experts.log.length = 0;
    outputs.forEach((row, g) => row.forEach((_, s) => (row[s] = { logits: new Float32Array(0), greedy: new Int32Array(0), drafts: [], draftLogits: [], stepTokens: step[g]![s]! })));
    pass("step", (g, s) => ({ ids: step[g]![s]!, start: input.sequences[g]![s]!.length }), true);
  }
  return { cluster, experts, outputs };
}
