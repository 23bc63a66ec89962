/** Rules about schedules on the cluster: parallel degrees, pipeline shapes, routing limits. */
import type { ServingSchedule, TrainingSchedule } from "../spec.js";
import { gcd, nearestDivisors, orList } from "./divisors.js";
import { known, type Rule, type RuleContext } from "./rule.js";

function ruleForEach(check: (ctx: RuleContext, s: TrainingSchedule | ServingSchedule, at: string) => void): Rule {
  return (ctx) => {
    for (const s of ctx.spec.schedules) check(ctx, s, `schedules.${s.name}`);
  };
}

/** Nodes an EP group of `ep` consecutive GPUs spans. */
function nodesSpanned(ep: number, gpusPerNode: number): number {
  return Math.ceil(ep / gpusPerNode);
}

const fitsTheCluster = ruleForEach((ctx, s, at) => {
  const gpus = ctx.spec.cluster.gpus;
  if (s.kind === "training") {
    if (!known(s.pp, s.tp, s.dp, gpus)) return;
    if (!Number.isInteger(s.dp)) {
      const stage = s.pp * s.tp;
      ctx.report("DSV5001", gpus % s.tp !== 0 ? `${at}.tp` : `${at}.pp`, { schedule: s.name, world: `a multiple of pp·tp = ${s.pp}·${s.tp} = ${stage}`, product: `dp would be ${gpus} / ${stage} = ${+(gpus / stage).toFixed(2)}`, gpus }, `set dp explicitly, or use pp·tp dividing ${gpus}`);
    } else if (s.worldSize > gpus) {
      ctx.report("DSV5001", `${at}.dp`, { schedule: s.name, world: s.worldSize, product: `pp·tp·dp = ${s.pp}·${s.tp}·${s.dp}`, gpus }, `use dp ≤ ${Math.floor(gpus / (s.pp * s.tp))}`);
    }
  } else if (known(s.gpus, gpus) && s.gpus > gpus) {
    ctx.report("DSV5001", `${at}.gpus`, { schedule: s.name, world: s.gpus, product: "gpus", gpus }, `use gpus ≤ ${gpus}`);
  }
});

const headsDivisibleByTp = ruleForEach((ctx, s, at) => {
  const tp = s.kind === "training" ? s.tp : s.attention.tp;
  const heads = ctx.spec.model.attention.heads;
  if (!known(tp, heads) || heads % tp === 0) return;
  ctx.report("DSV5002", s.kind === "training" ? `${at}.tp` : `${at}.attention.tp`, { heads, tp }, `use tp = ${orList(nearestDivisors(heads, tp))}`);
});

const expertsDivideOverEp = ruleForEach((ctx, s, at) => {
  const moe = ctx.spec.model.moe;
  const ep = s.kind === "training" ? s.ep : s.moe.ep;
  const epPath = s.kind === "training" ? `${at}.ep` : `${at}.moe.ep`;
  if (!known(ep)) return;
  if (!moe) {
    // MoE layers without 'ffn moe' (DSV4004), or an 'ffn' block that did not read: not "no MoE layers".
    if (ctx.spans.ffnUnread || ctx.spec.model.layerPattern.some((r) => r.kind === "moe")) return;
    const written = s.kind === "training" ? ep > 1 : ctx.spans.has(epPath);
    if (written) ctx.report("DSV5016", epPath, { schedule: s.name, ep }, "remove ep, or add 'ffn moe' to the model");
    return;
  }
  const redundant = s.kind === "training" ? 0 : s.moe.redundantExperts;
  if (!known(moe.routedExperts, redundant)) return;
  const slots = moe.routedExperts + redundant;
  if (slots % ep !== 0) {
    const detail = redundant > 0 ? `${moe.routedExperts} routed + ${redundant} redundant` : `${moe.routedExperts} routed`;
    ctx.report("DSV5003", epPath, { slots, detail, ep }, `use ep = ${orList(nearestDivisors(gcd(slots, epRanks(s) ?? slots), ep))}`);
  }
});

/** The ranks ep must divide (tp·dp of a training stage, the GPUs of a serving unit), when known. */
function epRanks(s: TrainingSchedule | ServingSchedule): number | undefined {
  const ranks = s.kind === "training" ? s.tp * s.dp : s.gpus;
  return known(ranks) && Number.isInteger(ranks) && ranks > 0 ? ranks : undefined;
}

/** A fix for ep that also keeps the experts divisible, when that is known. */
function epFix(ctx: RuleContext, s: TrainingSchedule | ServingSchedule, ranks: number, ep: number): string {
  const moe = ctx.spec.model.moe;
  const slots = moe ? moe.routedExperts + (s.kind === "training" ? 0 : s.moe.redundantExperts) : NaN;
  return `use ep = ${orList(nearestDivisors(known(slots) && slots > 0 ? gcd(ranks, slots) : ranks, ep))}`;
}

const epFitsInAStage = ruleForEach((ctx, s, at) => {
  if (s.kind === "training") {
    if (!known(s.ep, s.tp, s.dp) || !Number.isInteger(s.dp)) return;
    const ranks = s.tp * s.dp;
    if (ranks % s.ep !== 0) ctx.report("DSV5004", `${at}.ep`, { ep: s.ep, ranks, tp: s.tp, dp: s.dp }, epFix(ctx, s, ranks, s.ep));
  } else if (known(s.moe.ep, s.gpus) && s.gpus % s.moe.ep !== 0) {
    ctx.report("DSV5013", `${at}.moe.ep`, { ep: s.moe.ep, gpus: s.gpus }, epFix(ctx, s, s.gpus, s.moe.ep));
  }
});

const pipelineShape = ruleForEach((ctx, s, at) => {
  if (s.kind !== "training" || !known(s.pp, s.microbatches)) return;
  const { pp, microbatches: mb } = s;
  if (s.pipeline === "dualpipe" && pp % 2 !== 0) {
    ctx.report("DSV5005", `${at}.pp`, { pipeline: "dualpipe", pp }, `use pp = ${pp + 1}, or pipeline = dualpipev`);
  }
  if (s.pipeline === "dualpipe" || s.pipeline === "dualpipev") {
    const min = 2 * pp;
    const even = s.pipeline === "dualpipe";
    if (mb < min || (even && mb % 2 !== 0)) {
      const requirement = even ? `an even number of micro-batches, at least 2·pp = ${min}` : `at least 2·pp = ${min} micro-batches`;
      const fix = even ? Math.max(min, mb + (mb % 2)) : Math.max(min, mb);
      ctx.report("DSV5006", `${at}.microbatches`, { pipeline: s.pipeline, requirement, mb }, `use microbatches = ${fix}`);
    }
  } else if (pp > 1 && mb < pp) {
    ctx.report("DSV5018", `${at}.microbatches`, { mb, pp }, `use microbatches ≥ ${pp}`);
  }
  const layers = ctx.spec.model.layers;
  if (!known(layers)) return;
  const chunks = s.pipeline === "dualpipev" ? 2 * pp : pp;
  if (layers < chunks) {
    const detail = s.pipeline === "dualpipev" ? `dualpipev puts 2 chunks on each of ${pp} devices` : `${pp} stages`;
    ctx.report("DSV5007", `${at}.pp`, { layers, chunks, detail }, `use pp ≤ ${s.pipeline === "dualpipev" ? Math.floor(layers / 2) : layers}`);
  }
});

const nodeLimitWithinEpGroup = ruleForEach((ctx, s, at) => {
  const ep = s.kind === "training" ? s.ep : s.moe.ep;
  const limit = s.nodeLimit;
  const perNode = ctx.spec.cluster.gpusPerNode;
  if (limit === null || !known(limit, ep, perNode)) return;
  const nodes = nodesSpanned(ep, perNode);
  if (limit > nodes) ctx.report("DSV5008", `${at}.nodeLimit`, { limit, nodes, ep }, `use node_limit ≤ ${nodes}`);
});

const batchSplitsEvenly = ruleForEach((ctx, s, at) => {
  if (s.kind !== "training" || !known(s.globalBatch, s.dp, s.microbatches) || !Number.isInteger(s.dp)) return;
  if (!Number.isInteger(s.microbatchSize)) {
    const unit = s.dp * s.microbatches;
    const lower = Math.max(unit, Math.floor(s.globalBatch / unit) * unit);
    ctx.report("DSV5009", `${at}.globalBatch`, { batch: s.globalBatch, dp: s.dp, mb: s.microbatches }, `use global_batch = ${lower} or ${lower + unit}`);
  }
});

const commSmsLeaveCompute = ruleForEach((ctx, s, at) => {
  const gpu = ctx.spec.cluster.gpu;
  if (!known(s.commSms, gpu.sms) || s.commSms < gpu.sms) return;
  ctx.report("DSV5010", `${at}.commSms`, { sms: s.commSms, gpu: gpu.name, total: gpu.sms }, `use comm_sms < ${gpu.sms} (DeepSeek-V3 used 20 of 132)`);
});

const servingShape = ruleForEach((ctx, s, at) => {
  if (s.kind === "training") return;
  const { tp, dp } = s.attention;
  if (known(tp, dp, s.gpus) && !Number.isInteger(dp)) {
    // dp defaults to gpus / tp: a tp that does not divide gpus leaves no whole dp (tp·dp still equals gpus).
    ctx.report("DSV3002", `${at}.attention.tp`, { name: "dp", value: `${s.gpus} / ${tp} (gpus / tp, its default)` }, `use tp = ${orList(nearestDivisors(s.gpus, tp))}, or set dp`);
  } else if (known(tp, dp, s.gpus) && tp * dp !== s.gpus) {
    const path = ctx.spans.has(`${at}.attention.dp`) ? `${at}.attention.dp` : `${at}.attention.tp`;
    const fix = s.gpus % tp === 0 ? `use dp = ${s.gpus / tp}` : `use tp = ${orList(nearestDivisors(s.gpus, tp))}`;
    ctx.report("DSV5012", path, { tp, dp, product: tp * dp, gpus: s.gpus }, fix);
  }
  const depth = ctx.spec.model.mtp.depth;
  if (known(s.mtpSpeculation, depth) && s.mtpSpeculation > depth) {
    ctx.report("DSV5011", `${at}.mtpSpeculation`, { spec: s.mtpSpeculation, depth }, depth === 0 ? "remove mtp_speculation, or give the model an mtp block" : `use mtp_speculation ≤ ${depth}`);
  }
  const moe = ctx.spec.model.moe;
  if (s.moe.sharedAsRouted && moe && known(moe.sharedExperts) && moe.sharedExperts === 0) {
    ctx.report("DSV5017", `${at}.moe.sharedAsRouted`, {}, "remove shared_as_routed");
  }
});

const sequenceFitsTheModel = ruleForEach((ctx, s, at) => {
  const max = ctx.spec.model.maxPositions;
  if (known(s.seqLen, max) && s.seqLen > max) ctx.report("DSV5015", `${at}.seqLen`, { seq: s.seqLen, max }, `use seq_len ≤ ${max}, or raise the model's max_positions`);
});

const sequenceParallelNeedsTp = ruleForEach((ctx, s, at) => {
  const sp = s.kind === "training" ? s.sp : s.attention.sp;
  const tp = s.kind === "training" ? s.tp : s.attention.tp;
  if (sp && tp === 1) ctx.report("DSV5014", s.kind === "training" ? `${at}.sp` : `${at}.attention.sp`, {}, "remove sp, or use tp > 1");
});

const zeroNeedsDataParallel = ruleForEach((ctx, s, at) => {
  if (s.kind === "training" && s.zero > 0 && s.dp === 1) ctx.report("DSV5020", `${at}.zero`, { zero: s.zero }, "use zero = 0");
});

export const SCHEDULE_RULES: readonly Rule[] = [
  fitsTheCluster,
  headsDivisibleByTp,
  expertsDivideOverEp,
  epFitsInAStage,
  pipelineShape,
  nodeLimitWithinEpGroup,
  batchSplitsEvenly,
  commSmsLeaveCompute,
  servingShape,
  sequenceFitsTheModel,
  sequenceParallelNeedsTp,
  zeroNeedsDataParallel,
];
