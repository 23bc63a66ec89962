/**
 * One training step of a plan on virtual ranks: every GPU runs its pipeline rank's program
 * (compiler/plan/programs.ts) op by op — F, B, W per micro-batch and stage, receiving and sending
 * what the op states — then reduces its gradients over its data-parallel groups (ZeRO-1:
 * reduce-scatter, AdamW on the shard, all-gather of the updated weights; ZeRO-0: all-reduce).
 *
 * Data. DP rank d runs micro-batches 0…M−1 (DualPipe: M/2 per direction, direction 1's counted after
 * direction 0's); micro-batch i of DP rank d is sequence d·M + i of the step's batch, one sequence of
 * `seqLen` tokens. The single-device reference runs the same dp·M sequences as one batch.
 *
 * A stage's F runs its layers on the rank's rows (SP block), its embedding (vocabulary-parallel,
 * partial rows reduce-scattered) when it is stage 0, and when it is the last stage the final norm and
 * head (normed rows and logits gathered over TP) and the MTP modules (on the whole padded sequence:
 * module k's last k rows are padding with no label and no balance-loss weight, so the TP blocks keep
 * the sequence's row count). B runs the backward: with a W for the same micro-batch on the rank it
 * computes both halves and W commits the weight gradients (they are added to the rank's at W);
 * otherwise they are added at B. A hop to the same rank (DualPipeV's turn) is a local hand-off.
 */
import type { Plan, TrainingOp, TrainingProgram } from "../../../compiler/plan/plan.js";
import { RecipeBytes } from "../../../compiler/plan/recipe-bytes.js";
import type { Spec } from "../../../compiler/spec.js";
import {
  addInto,
  crossEntropyBackward,
  crossEntropyForward,
  linearBackward,
  linearForward,
  rmsnormBackward,
  rmsnormForward,
} from "../../../backends/reference/ops/index.js";
import { DEFAULT_ADAMW } from "../adamw.js";
import { initModelWeights, type ModelGrads } from "../model-weights.js";
import { zeroGrads } from "../training-step.js";
import { blockOffsets, runRanks, VirtualCluster, type Wait } from "./collectives.js";
import { ExpertExchange } from "./expert-all-to-all.js";
import { gatherRows, myRows, rankLayerBackward, rankLayerForward, scatterRows, trainingNodeLimit, type LoweringFaults, type RankEnv, type RankLayerCache, type RankLayerGrads, type Rows } from "./rank-layer.js";
import type { RankLayerWeights, RankStageWeights, RankWeights, RankWeightSource, VocabShard } from "./rank-weights.js";
import { GradStore, rankTensors, type RankTensor } from "./tensor-registry.js";

type F32 = Float32Array;
type Gen<T> = Generator<Wait, T, void>;

export interface TrainingRunInput {
  spec: Spec;
  /** The plan built for the scaled-down schedule (scaled-schedule.ts). */
  plan: Plan;
  weights: RankWeightSource;
  /** Sequences of the step, in order (dp · microbatches of seqLen tokens). */
  batch: readonly Int32Array[];
  faults?: LoweringFaults;
}

export interface SampleLosses {
  main: number;
  mtp: number[];
  /** α·L_Bal per MoE layer id (main layers, then layers + k for MTP block k); 0 elsewhere. */
  auxByLayer: Float64Array;
}

export interface TrainingRunResult {
  cluster: VirtualCluster;
  experts: ExpertExchange;
  samples: SampleLosses[];
  losses: { main: number; mtp: number[]; aux: number; total: number };
  /** The full model's gradients assembled from the ranks' reduced gradients. */
  grads: ModelGrads<F32>;
  /** Per GPU its tensors (names, groups) — for the traffic check. */
  tensors: RankTensor[][];
  /** Order in which each GPU ran its ops (for the report). */
  opsRun: number[];
}

function f32(x: ArrayLike<number>): F32 {
  return x instanceof Float32Array ? x : Float32Array.from(x);
}

/** Vocabulary-parallel embedding: this rank's partial rows of all T ids, reduce-scattered to its SP block. */
function* embedForward(env: RankEnv, v: VocabShard, ids: Int32Array, rows: Rows, what: string): Gen<F32> {
  const d = env.model.hidden;
  const T = ids.length;
  const part = new Float32Array(T * d);
  for (let t = 0; t < T; t++) {
    const id = ids[t]! - v.first;
    if (id >= 0 && id < v.count) part.set(v.table.subarray(id * d, (id + 1) * d), t * d);
  }
  return yield* scatterRows(env, part, rows, d, what, "tp_vocab");
}

function* embedBackward(env: RankEnv, v: VocabShard, ids: Int32Array, dx: F32, rows: Rows, grad: F32, what: string): Gen<void> {
  const d = env.model.hidden;
  const full = yield* gatherRows(env, dx, rows, what, "tp_vocab");
  const acc = new Float64Array(v.count * d);
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]! - v.first;
    if (id < 0 || id >= v.count) continue;
    for (let j = 0; j < d; j++) acc[id * d + j] = acc[id * d + j]! + full[t * d + j]!;
  }
  addInto(grad, f32(acc));
}

interface HeadPass {
  normed: F32;
  normedFull: F32;
  logits: F32;
}

/** Final (or MTP) norm and the vocabulary-parallel head: the full logits on every TP rank. */
function* headForward(env: RankEnv, h: F32, norm: F32, head: VocabShard, rows: Rows, what: string): Gen<HeadPass> {
  const d = env.model.hidden;
  const V = env.model.vocab;
  const T = rows.total;
  const mine = myRows(env, rows);
  const normed = rmsnormForward(h, norm, mine.count, d, env.model.normEps);
  const normedFull = yield* gatherRows(env, normed, rows, `${what}.normed`, "tp_vocab");
  const slice = linearForward(normedFull, head.table, T, d, head.count);
  let logits = slice;
  if (env.tpMembers.length > 1) {
    const gathered = yield* env.cluster.allGather(`tp:${env.tpMembers[0]}:${rows.tag}:${what}.logits`, env.tpMembers, env.gpu, slice, "tp_vocab", 4, `${what} logits`);
    logits = new Float32Array(T * V);
    const per = head.count;
    for (let m = 0; m < env.tpMembers.length; m++)
      for (let t = 0; t < T; t++) logits.set(gathered.subarray(m * T * per + t * per, m * T * per + (t + 1) * per), t * V + m * per);
  }
  return { normed, normedFull, logits };
}

function* headBackward(env: RankEnv, dLogits: F32, h: F32, norm: F32, head: VocabShard, pass: HeadPass, rows: Rows, gNorm: F32, gHead: F32, what: string): Gen<F32> {
  const d = env.model.hidden;
  const V = env.model.vocab;
  const T = rows.total;
  const mine = myRows(env, rows);
  let dSlice = dLogits;
  if (head.count !== V) {
    dSlice = new Float32Array(T * head.count);
    for (let t = 0; t < T; t++) dSlice.set(dLogits.subarray(t * V + head.first, t * V + head.first + head.count), t * head.count);
  }
  const lin = linearBackward(dSlice, pass.normedFull, head.table, T, d, head.count);
  addInto(gHead, lin.dw);
  const dNormed = yield* scatterRows(env, lin.dx, rows, d, `${what}.bwd`, "tp_vocab");
  const r = rmsnormBackward(dNormed, h, norm, mine.count, d, env.model.normEps);
  addInto(gNorm, r.dw);
  return r.dx;
}

function layerGrads(store: GradStore, w: RankLayerWeights): RankLayerGrads {
  const m = w.mla;
  const opt = (x: F32 | null): F32 | null => (x === null ? null : store.of(x));
  const mlp = (x: { gate: F32; up: F32; down: F32 } | null) => (x === null ? null : { gate: store.of(x.gate), up: store.of(x.up), down: store.of(x.down) });
  return {
    attnNorm: store.of(w.attnNorm),
    mla: { qA: opt(m.qA), qANorm: opt(m.qANorm), qB: opt(m.qB), q: opt(m.q), kvA: store.of(m.kvA), kvANorm: store.of(m.kvANorm), kvB: store.of(m.kvB), o: store.of(m.o) },
    ffnNorm: store.of(w.ffnNorm),
    dense: mlp(w.dense),
    router: opt(w.router),
    shared: mlp(w.shared),
    experts: w.experts === null ? null : { gate: store.of(w.experts.gate), up: store.of(w.experts.up), down: store.of(w.experts.down) },
  };
}

/** What an F leaves for its B. */
interface StageCache {
  x0: F32;
  layers: { w: RankLayerWeights; x: F32; cache: RankLayerCache }[];
  head: { h: F32; pass: HeadPass; labels: Int32Array } | null;
  mtp: { prev: F32; nextEmb: F32; eNormed: F32; hNormed: F32; concat: F32; blockIn: F32; block: RankLayerCache; y: F32; head: HeadPass; labels: Int32Array; ids: Int32Array }[];
}

export function runDistributedTraining(input: TrainingRunInput): TrainingRunResult {
  const { spec, plan } = input;
  const model = spec.model;
  const d = model.hidden;
  const V = model.vocab;
  const recipe = new RecipeBytes(spec.precision);
  const sched = plan.schedule;
  const tp = sched.tp;
  const perRank = tp * sched.dp;
  const M = sched.microbatches;
  const cluster = new VirtualCluster(plan.gpus, plan.cluster.gpusPerNode);
  const experts = new ExpertExchange(cluster, d, recipe.dispatchCopy(d), recipe.combineCopy(d));
  const partition = plan.partition!;
  const lastStage = partition.stages.length - 1;
  const shareEnds = sched.pipeline === "dualpipe" || sched.pipeline === "dualpipev";
  const T = input.batch[0]!.length;
  const depth = model.mtp.depth;
  const lambda = model.mtp.lossWeight;
  const B = input.batch.length;
  if (B !== sched.dp * M) throw new RangeError(`distributed training: ${B} sequences for dp ${sched.dp} × ${M} micro-batches`);
  const faults = input.faults ?? {};
  const samples: SampleLosses[] = input.batch.map(() => ({ main: 0, mtp: new Array<number>(depth).fill(0), auxByLayer: new Float64Array(model.layers + depth) }));
  const rankWeights: RankWeights[] = [];
  const stores: GradStore[] = [];
  const current: string[] = [];
  const opsRun: number[] = [];
  const tensors: RankTensor[][] = [];
  const reduced: Map<string, { gpu: number; from: number; values: F32; tensor: RankTensor }[]> = new Map();
  const programs = new Map(plan.programs.map((p) => [p.id, p]));
  const schedule = spec.schedules.find((x) => x.name === sched.name);
  const nodeLimit = schedule !== undefined && schedule.kind === "training" ? trainingNodeLimit(model, sched.ep, plan.cluster.gpusPerNode, schedule.nodeLimit) : null;

  const task = function* (gpu: number): Gen<void> {
    const rank = plan.ranks[gpu]!;
    const program = programs.get(rank.program) as TrainingProgram;
    const rw = rankWeights[gpu]!;
    const store = new GradStore();
    stores[gpu] = store;
    const base = rank.pp * perRank;
    const inRank = gpu - base;
    const tpMembers = Array.from({ length: tp }, (_, i) => base + rank.dp * tp + i);
    const ep = sched.ep;
    const epGroup =
      model.moe === null
        ? null
        : { id: `pp${rank.pp}.g${rank.epGroup}`, members: Array.from({ length: ep }, (_, i) => base + rank.epGroup * ep + i), slotsPerGpu: model.moe.routedExperts / ep };
    const env: RankEnv = { gpu, model, cluster, experts, tpMembers, tpIndex: rank.tp, ffnTp: tp, epGroup, nodeLimit, faults };
    const peer = (pp: number): number => pp * perRank + inRank;
    const stageW = (s: number): RankStageWeights => {
      const st = rw.stages.find((x) => x.stage === s);
      if (st === undefined) throw new Error(`distributed training: GPU ${gpu} holds no stage ${s}`);
      return st;
    };
    const sampleOf = (op: TrainingOp): number => (sched.pipeline === "dualpipe" ? op.dir * (M / 2) + op.mb : op.mb);
    const hasW = new Set(program.ops.filter((o) => o.op === "W").map((o) => `${o.mb}:${o.dir}:${o.stage}`));
    const caches = new Map<string, StageCache>();
    const pending = new Map<string, GradStore>();
    const local = new Map<string, F32>();
    let opIndex = 0;
    let opTag = "";
    const rowsOf = (sample: number, what: string): Rows => ({ total: T, offsets: blockOffsets(T, tp), tag: `d${rank.dp}s${sample}:${what}`, epTag: `${opTag}:${what}` });

    for (const op of program.ops) {
      opIndex++;
      opsRun[gpu] = opIndex;
      current[gpu] = `${op.op} mb ${op.mb} dir ${op.dir} stage ${op.stage} (op ${opIndex} of ${program.ops.length} of program ${program.id})`;
      const sample = sampleOf(op);
      opTag = `mb${op.mb}.dir${op.dir}.st${op.stage}`;
      const seq = input.batch[rank.dp * M + sample]!;
      const st = stageW(op.stage);
      const key = `${sample}:${op.stage}`;
      const rows = rowsOf(sample, "main");
      const mine = myRows(env, rows);
      if (op.op === "F") {
        let x: F32;
        if (st.embed !== null && op.stage === 0) {
          x = yield* embedForward(env, st.embed, seq, rows, `s${sample}.embed`);
        } else if (op.recv !== null) {
          x = yield* cluster.recv<F32>(peer(op.recv.peer), gpu, `act:${sample}:${op.stage - 1}`, `the activation of micro-batch ${op.mb} (dir ${op.dir})`);
        } else {
          const got = local.get(`act:${sample}:${op.stage - 1}`);
          if (got === undefined) throw new Error(`distributed training: GPU ${gpu} runs F of micro-batch ${op.mb} on stage ${op.stage} with no input (no receive, no local hand-off)`);
          local.delete(`act:${sample}:${op.stage - 1}`);
          x = got;
        }
        const sc: StageCache = { x0: x, layers: [], head: null, mtp: [] };
        for (const lw of st.layers) {
          const r = yield* rankLayerForward(env, lw, x, rows, { auxRows: T });
          sc.layers.push({ w: lw, x, cache: r.cache });
          if (env.tpIndex === 0) samples[rank.dp * M + sample]!.auxByLayer[lw.layer] = r.aux;
          x = r.y;
        }
        if (op.stage === lastStage) {
          const labels = new Int32Array(T).fill(-1);
          for (let i = 0; i + 1 < T; i++) labels[i] = seq[i + 1]!;
          const hp = yield* headForward(env, x, st.finalNorm!, st.head!, rows, `s${sample}.head`);
          sc.head = { h: x, pass: hp, labels };
          const rec = samples[rank.dp * M + sample]!;
          if (env.tpIndex === 0) rec.main = crossEntropyForward(hp.logits, labels, T, V);
          let prev = x;
          for (const m of st.mtp) {
            const k = m.module + 1;
            const ids = new Int32Array(T);
            const mlabels = new Int32Array(T).fill(-1);
            for (let i = 0; i < T; i++) {
              if (i + k < T) ids[i] = seq[i + k]!;
              if (i + k + 1 < T) mlabels[i] = seq[i + k + 1]!;
            }
            const mrows = rowsOf(sample, `mtp${k}`);
            const nextEmb = yield* embedForward(env, st.embed!, ids, mrows, `s${sample}.mtp${k}.embed`);
            const eNormed = rmsnormForward(nextEmb, m.proj.enorm, mine.count, d, model.normEps);
            const hNormed = rmsnormForward(prev, m.proj.hnorm, mine.count, d, model.normEps);
            const concat = new Float32Array(mine.count * 2 * d);
            for (let t = 0; t < mine.count; t++) {
              concat.set(eNormed.subarray(t * d, (t + 1) * d), t * 2 * d);
              concat.set(hNormed.subarray(t * d, (t + 1) * d), t * 2 * d + d);
            }
            const blockIn = linearForward(concat, m.proj.ehProj, mine.count, 2 * d, d);
            const b = yield* rankLayerForward(env, m.block, blockIn, mrows, { auxRows: T - k });
            if (env.tpIndex === 0) rec.auxByLayer[model.layers + m.module] = b.aux;
            const mh = yield* headForward(env, b.y, m.proj.headNorm, st.head!, mrows, `s${sample}.mtp${k}.head`);
            if (env.tpIndex === 0) rec.mtp[m.module] = crossEntropyForward(mh.logits, mlabels, T, V);
            sc.mtp.push({ prev, nextEmb, eNormed, hNormed, concat, blockIn, block: b.cache, y: b.y, head: mh, labels: mlabels, ids });
            prev = b.y;
          }
        } else if (op.send !== null) {
          cluster.send(gpu, peer(op.send.peer), `act:${sample}:${op.stage}`, x, "p2p", x.length * 2);
        } else {
          local.set(`act:${sample}:${op.stage}`, x);
        }
        caches.set(key, sc);
      } else if (op.op === "B") {
        const sc = caches.get(key);
        if (sc === undefined) throw new Error(`distributed training: GPU ${gpu} runs B of micro-batch ${op.mb} on stage ${op.stage} before its F`);
        const split = hasW.has(`${op.mb}:${op.dir}:${op.stage}`);
        // The op's gradients go to a fresh store that is added to the rank's at once (or at W): the
        // single-device step adds each sequence's gradients the same way, so with one sequence per
        // micro-batch the accumulation order is the same.
        const g = new GradStore();
        const scale = 1 / B;
        let dy: F32;
        if (op.stage === lastStage) {
          const hd = sc.head!;
          const dLogits = crossEntropyBackward(scale, hd.pass.logits, hd.labels, T, V);
          dy = yield* headBackward(env, dLogits, hd.h, st.finalNorm!, st.head!, hd.pass, rows, g.of(st.finalNorm!), g.of(st.head!.table), `s${sample}.head`);
          let dHidden: F32 | null = null;
          for (let i = st.mtp.length - 1; i >= 0; i--) {
            const m = st.mtp[i]!;
            const c = sc.mtp[i]!;
            const k = m.module + 1;
            const mrows = rowsOf(sample, `mtp${k}`);
            const dl = crossEntropyBackward(scale * (lambda / depth), c.head.logits, c.labels, T, V);
            const dyBlock = yield* headBackward(env, dl, c.y, m.proj.headNorm, st.head!, c.head, mrows, g.of(m.proj.headNorm), g.of(st.head!.table), `s${sample}.mtp${k}.head`);
            if (dHidden !== null) addInto(dyBlock, dHidden);
            const dBlockIn = yield* rankLayerBackward(env, m.block, dyBlock, scale, mrows, { auxRows: T - k }, c.block, layerGrads(g, m.block));
            const eh = linearBackward(dBlockIn, c.concat, m.proj.ehProj, mine.count, 2 * d, d);
            addInto(g.of(m.proj.ehProj), eh.dw);
            const dE = new Float32Array(mine.count * d);
            const dH = new Float32Array(mine.count * d);
            for (let t = 0; t < mine.count; t++) {
              dE.set(eh.dx.subarray(t * 2 * d, t * 2 * d + d), t * d);
              dH.set(eh.dx.subarray(t * 2 * d + d, (t + 1) * 2 * d), t * d);
            }
            const e = rmsnormBackward(dE, c.nextEmb, m.proj.enorm, mine.count, d, model.normEps);
            addInto(g.of(m.proj.enorm), e.dw);
            yield* embedBackward(env, st.embed!, c.ids, e.dx, mrows, g.of(st.embed!.table), `s${sample}.mtp${k}.embed.bwd`);
            const hh = rmsnormBackward(dH, c.prev, m.proj.hnorm, mine.count, d, model.normEps);
            addInto(g.of(m.proj.hnorm), hh.dw);
            if (k === 1) addInto(dy, hh.dx);
            else dHidden = hh.dx;
          }
        } else if (op.recv !== null) {
          dy = yield* cluster.recv<F32>(peer(op.recv.peer), gpu, `grad:${sample}:${op.stage + 1}`, `the gradient of micro-batch ${op.mb} (dir ${op.dir})`);
        } else {
          const got = local.get(`grad:${sample}:${op.stage + 1}`);
          if (got === undefined) throw new Error(`distributed training: GPU ${gpu} runs B of micro-batch ${op.mb} on stage ${op.stage} with no output gradient`);
          local.delete(`grad:${sample}:${op.stage + 1}`);
          dy = got;
        }
        for (let i = sc.layers.length - 1; i >= 0; i--) {
          const l = sc.layers[i]!;
          dy = yield* rankLayerBackward(env, l.w, dy, scale, rows, { auxRows: T }, l.cache, layerGrads(g, l.w));
        }
        if (st.embed !== null && op.stage === 0) {
          yield* embedBackward(env, st.embed, seq, dy, rows, g.of(st.embed.table), `s${sample}.embed.bwd`);
        } else if (op.send !== null) {
          cluster.send(gpu, peer(op.send.peer), `grad:${sample}:${op.stage}`, dy, "p2p", dy.length * 2);
        } else {
          local.set(`grad:${sample}:${op.stage}`, dy);
        }
        if (split) pending.set(`${op.mb}:${op.dir}:${op.stage}`, g);
        else store.addFrom(g);
        caches.delete(key);
      } else {
        const g = pending.get(`${op.mb}:${op.dir}:${op.stage}`);
        if (g === undefined) throw new Error(`distributed training: GPU ${gpu} runs W of micro-batch ${op.mb} on stage ${op.stage} before its B`);
        store.addFrom(g);
        pending.delete(`${op.mb}:${op.dir}:${op.stage}`);
      }
    }
    current[gpu] = `the gradient reduction (program ${program.id} done)`;
    yield* reduceGradients(gpu, rw, store);
  };

  const holders = new Map<string, number[]>();
  const registry = (gpu: number, rw: RankWeights): RankTensor[] => {
    if (tensors[gpu] === undefined) tensors[gpu] = rankTensors(model, recipe, rw, lastStage, shareEnds);
    return tensors[gpu]!;
  };

  const reduceGradients = function* (gpu: number, rw: RankWeights, store: GradStore): Gen<void> {
    const rank = plan.ranks[gpu]!;
    const list = [...registry(gpu, rw)].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const tpMembers = Array.from({ length: tp }, (_, i) => rank.pp * perRank + rank.dp * tp + i);
    const gradBytes = recipe.gradientBytes;
    for (const t of list) {
      let grad = store.ofTensor(t);
      if (t.tpReplicated) {
        const bare = t.name.replace(/@tp\d+$/, "");
        grad = yield* cluster.allReduce(`tpgrad:${tpMembers[0]}:${bare}`, tpMembers, gpu, grad, "tp_replicated_grads", gradBytes, `the TP sum of ${bare}`);
      }
      const members = holders.get(t.name)!;
      const at = members.indexOf(gpu);
      if (sched.zero >= 1) {
        const offsets = blockOffsets(grad.length, members.length);
        const shard = yield* cluster.reduceScatter(`dp:${t.name}`, members, gpu, grad, offsets, "dp_reduce_scatter", gradBytes, `the reduce-scatter of ${t.name}`);
        pushReduced(t, gpu, offsets[at]!, shard);
        // AdamW's first step on the shard (master = working weights here), then the all-gather of the
        // updated working weights (counted at the recipe's working bytes).
        const o = DEFAULT_ADAMW;
        const from = offsets[at]!;
        const updated = new Float32Array(shard.length);
        for (let i = 0; i < shard.length; i++) {
          const p = t.value[from + i]!;
          const gi = t.trainable ? shard[i]! : 0;
          const step = gi / (Math.abs(gi) + o.eps);
          updated[i] = t.trainable ? p - o.lr * (step + (/norm/i.test(t.name) ? 0 : o.weightDecay) * p) : p;
        }
        const perElement = t.workingBytes / t.value.length;
        yield* cluster.allGather(`dpag:${t.name}`, members, gpu, updated, "dp_all_gather", perElement, `the all-gather of ${t.name}`);
      } else {
        const sum = yield* cluster.allReduce(`dp:${t.name}`, members, gpu, grad, "dp_all_reduce", gradBytes, `the all-reduce of ${t.name}`);
        if (at === 0) pushReduced(t, gpu, 0, sum);
      }
    }
  };
  const pushReduced = (tensor: RankTensor, gpu: number, from: number, values: F32): void => {
    let list = reduced.get(tensor.name);
    if (list === undefined) {
      list = [];
      reduced.set(tensor.name, list);
    }
    list.push({ gpu, from, values, tensor });
  };

  // Holders of each tensor name (every GPU's registry) before any rank runs.
  for (let g = 0; g < plan.gpus; g++) {
    const rw = input.weights(g);
    rankWeights[g] = rw;
    for (const t of registry(g, rw)) {
      const list = holders.get(t.name) ?? [];
      list.push(g);
      holders.set(t.name, list);
    }
  }

  const tasks = Array.from({ length: plan.gpus }, (_, g) => task(g));
  runRanks(tasks, (g) => current[g] ?? "its first op");
  const undelivered = cluster.undelivered();
  if (undelivered.length > 0) throw new Error(`distributed training: messages never received: ${undelivered.slice(0, 4).join(", ")}`);

  // Assemble the full gradients: each name once (ZeRO: its shards), copies of the embedding added.
  const grads = zeroModelGrads(spec);
  for (const name of [...reduced.keys()].sort()) {
    const parts = reduced.get(name)!;
    const t = parts[0]!.tensor;
    // A TP-replicated tensor is summed over its TP group before the DP reduction: every TP index holds the same sum.
    if (!t.trainable || (t.tpReplicated && !t.name.endsWith("@tp0"))) continue;
    const whole = new Float32Array(t.value.length);
    const seen = new Set<number>();
    for (const p of parts) {
      if (seen.has(p.from)) continue;
      seen.add(p.from);
      whole.set(p.values, p.from);
    }
    t.place(grads, whole);
  }
  const losses = { main: 0, mtp: new Array<number>(depth).fill(0), aux: 0, total: 0 };
  for (const s of samples) {
    losses.main += s.main / B;
    s.mtp.forEach((l, k) => (losses.mtp[k]! += l / B));
    let aux = 0;
    for (let l = 0; l < s.auxByLayer.length; l++) aux += s.auxByLayer[l]!;
    losses.aux += aux / B;
  }
  const mtpTerm = depth > 0 ? (lambda / depth) * losses.mtp.reduce((a, l) => a + l, 0) : 0;
  losses.total = losses.main + mtpTerm + losses.aux;
  return { cluster, experts, samples, losses, grads, tensors, opsRun };
}

/** Zero gradients of the whole model (the single-device shapes, from a zero-std initialisation). */
function zeroModelGrads(spec: Spec): ModelGrads<F32> {
  return zeroGrads(initModelWeights<F32>(spec.model, 0, "f32", 0));
}
