/**
 * Which slice of which checkpoint tensor each GPU of a Plan holds — the Plan's weight layout
 * (compiler/plan/weights.ts) made concrete per tensor:
 *
 *   - pipeline stages: a training GPU holds the layers of the stages its program runs (DualPipe: two),
 *     the embedding on stage 0 (and its copy for the MTP modules on the last stage when that is
 *     another rank), the final norm, head and MTP modules on the last stage; a serving GPU holds
 *     every layer and the MTP modules it speculates with;
 *   - attention TP (training tp; serving attention tp): q_b_proj / q_proj and kv_b_proj by rows of
 *     whole heads, o_proj by the matching columns, ceil(heads/tp) heads a rank; q_a_proj,
 *     kv_a_proj_with_mqa and the latent norms whole (they are not per head);
 *   - FFN TP (training tp; serving 1): dense and shared-expert gate/up by rows of the intermediate,
 *     down by columns;
 *   - vocabulary TP (tp): the embedding and head by rows of ceil(vocab/tp);
 *   - experts: the routed experts in the GPU's slots of each MoE layer (EP rank r holds slots
 *     [r·s, (r+1)·s)); a redundant replica is the same expert in another slot, so an expert can sit
 *     on several GPUs, and on one GPU in several slots (listed once, with every slot). Served as
 *     routed, shared expert j is logical expert routed + j: rows [j·I, (j+1)·I) of the shared MLP.
 *   - the gate, its bias, the norms and eh_proj whole wherever their layer is.
 * MTP copies of the embedding and head are not sharded (the executor shares the main ones).
 */
import type { Spec } from "../../compiler/spec.js";
import type { Plan, RankPlan, StageContents, TrainingProgram } from "../../compiler/plan/plan.js";
import { servingStage } from "../../compiler/plan/memory.js";
import { hfTensorSpecs, type HfTensorSpec } from "./hf-tensor-names.js";

export type SliceKind = "replicated" | "vocab" | "heads" | "ffn" | "expert" | "shared-expert";

export interface TensorSlice {
  /** The key of the tensor in the shard file (the HF name, suffixed for a shared expert in a slot). */
  key: string;
  /** The HF name of the whole tensor. */
  tensor: string;
  fullShape: number[];
  /** Rows [begin, end) of the whole tensor (axis 0). */
  rows: [number, number];
  /** Columns [begin, end) (axis 1); null for 1-D tensors. */
  cols: [number, number] | null;
  kind: SliceKind;
  /** Main layer, or MTP module k as layers + k; null for the embedding, final norm and head. */
  layer: number | null;
  /** The logical expert (routed e, or routed + j for shared expert j served as routed). */
  expert: number | null;
  /** The physical slots of the layer that hold the expert on this GPU. */
  slots: number[] | null;
}

/** [i·⌈n/parts⌉, min(n, (i+1)·⌈n/parts⌉)). */
export function chunk(n: number, parts: number, i: number): [number, number] {
  const size = Math.ceil(n / parts);
  return [Math.min(n, i * size), Math.min(n, (i + 1) * size)];
}

interface Held {
  layers: Set<number>;
  embedding: boolean;
  head: boolean;
  mtpModules: number;
}

function heldParts(spec: Spec, plan: Plan, rank: RankPlan): Held {
  let stages: StageContents[];
  if (plan.schedule.kind === "training") {
    const program = plan.programs.find((p) => p.id === rank.program) as TrainingProgram;
    const ids = [...new Set(program.stages.map((s) => s.stage))];
    stages = ids.map((s) => plan.partition!.stages[s]!);
  } else {
    const schedule = spec.schedules.find((s) => s.name === plan.schedule.name);
    if (schedule === undefined || schedule.kind === "training") throw new Error(`rank-slices: no serving schedule '${plan.schedule.name}'`);
    stages = [servingStage(spec, schedule)];
  }
  const held: Held = { layers: new Set(), embedding: false, head: false, mtpModules: 0 };
  for (const s of stages) {
    for (let l = s.layers.first; l <= s.layers.last; l++) held.layers.add(l);
    held.embedding ||= s.embedding || s.embeddingCopyForMtp;
    held.head ||= s.head;
    held.mtpModules = Math.max(held.mtpModules, s.mtpModules);
  }
  return held;
}

/** The split sizes of the plan's weight layout (compiler/plan/memory.ts). */
function splits(plan: Plan): { attentionTp: number; ffnTp: number; vocabTp: number } {
  const tp = plan.schedule.tp;
  return plan.schedule.kind === "training" ? { attentionTp: tp, ffnTp: tp, vocabTp: tp } : { attentionTp: tp, ffnTp: 1, vocabTp: tp };
}

/** The logical experts in this GPU's slots of MoE layer `layer`, each with its slots. */
function slotExperts(plan: Plan, rank: RankPlan, layer: number): Map<number, number[]> {
  const out = new Map<number, number[]>();
  const e = plan.experts;
  if (e === null) return out;
  const idx = e.layers.indexOf(layer);
  if (idx < 0) return out;
  const row = e.slots[e.sameForAllLayers ? 0 : idx]!;
  for (let p = rank.ep * e.slotsPerGpu; p < (rank.ep + 1) * e.slotsPerGpu; p++) {
    const logical = row[p]!;
    const list = out.get(logical) ?? [];
    list.push(p);
    out.set(logical, list);
  }
  return out;
}

function whole(t: HfTensorSpec, kind: SliceKind = "replicated"): TensorSlice {
  return {
    key: t.name,
    tensor: t.name,
    fullShape: t.shape,
    rows: [0, t.shape[0]!],
    cols: t.shape.length > 1 ? [0, t.shape[1]!] : null,
    kind,
    layer: t.layer,
    expert: null,
    slots: null,
  };
}

function byAxis(t: HfTensorSpec, axis: 0 | 1, range: [number, number], kind: SliceKind): TensorSlice {
  const s = whole(t, kind);
  if (axis === 0) s.rows = range;
  else s.cols = range;
  return s;
}

/**
 * Every slice GPU `rank.gpu` holds, in the checkpoint's tensor order. It depends only on the rank's
 * program, TP index and EP rank (see {@link sliceClass}). `specs` saves recomputing the tensor list.
 */
export function rankSlices(spec: Spec, plan: Plan, rank: RankPlan, specs: readonly HfTensorSpec[] = hfTensorSpecs(spec.model)): TensorSlice[] {
  const model = spec.model;
  const held = heldParts(spec, plan, rank);
  const { attentionTp, ffnTp, vocabTp } = splits(plan);
  const sharedInSlots = plan.experts?.sharedAsRouted ?? false;
  const routed = model.moe?.routedExperts ?? 0;
  const inter = model.moe?.expertIntermediate ?? 0;
  const holdsLayer = (L: number): boolean => (L < model.layers ? held.layers.has(L) : L - model.layers < held.mtpModules);
  const out: TensorSlice[] = [];
  const sharedDone = new Set<number>();
  for (const t of specs) {
    if (t.role === "mtp_duplicate") continue;
    if (t.layer === null) {
      const wanted = t.role === "embedding" ? held.embedding || (held.head && model.tieEmbeddings) : held.head;
      if (!wanted) continue;
      out.push(t.split.kind === "vocab" ? byAxis(t, 0, chunk(t.shape[0]!, vocabTp, rank.tp), "vocab") : whole(t));
      continue;
    }
    if (!holdsLayer(t.layer)) continue;
    const split = t.split;
    switch (split.kind) {
      case "replicated":
        out.push(whole(t));
        break;
      case "vocab":
        out.push(byAxis(t, 0, chunk(t.shape[0]!, vocabTp, rank.tp), "vocab"));
        break;
      case "heads": {
        const a = model.attention;
        const [h0, h1] = chunk(a.heads, attentionTp, rank.tp);
        out.push(byAxis(t, split.axis, [h0 * split.perHead, h1 * split.perHead], "heads"));
        break;
      }
      case "ffn": {
        const width = t.shape[split.axis]!;
        if (split.group === "shared" && sharedInSlots) {
          // Served as routed: shared expert j is the logical expert routed + j, in the slots.
          if (sharedDone.has(t.layer)) break;
          const experts = slotExperts(plan, rank, t.layer);
          for (const [logical, slots] of [...experts].sort((a, b) => a[0] - b[0])) {
            if (logical < routed) continue;
            const j = logical - routed;
            for (const m of specs.filter((x) => x.layer === t.layer && x.split.kind === "ffn" && x.split.group === "shared")) {
              const s = byAxis(m, (m.split as { axis: 0 | 1 }).axis, [j * inter, (j + 1) * inter], "shared-expert");
              s.key = `${m.name}[shared ${j}]`;
              s.expert = logical;
              s.slots = slots;
              out.push(s);
            }
          }
          sharedDone.add(t.layer);
          break;
        }
        out.push(byAxis(t, split.axis, chunk(width, ffnTp, ffnTp === 1 ? 0 : rank.tp), "ffn"));
        break;
      }
      case "expert": {
        const slots = slotExperts(plan, rank, t.layer).get(split.expert);
        if (slots === undefined) break;
        const s = whole(t, "expert");
        s.expert = split.expert;
        s.slots = slots;
        out.push(s);
        break;
      }
    }
  }
  return out;
}

/** GPUs with the same class hold the same slices. */
export function sliceClass(rank: RankPlan): string {
  return `${rank.program}|tp${rank.tp}|ep${rank.ep}`;
}
