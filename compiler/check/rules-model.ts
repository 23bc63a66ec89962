/** Rules about the model and its precision recipe. */
import { nearestDivisors, orList } from "./divisors.js";
import { known, type Rule } from "./rule.js";

/** Every layer exactly once, no layer outside the model; then each kind used has its FFN block. */
const layerPatternCoversEveryLayer: Rule = (ctx) => {
  const { layers } = ctx.spec.model;
  const runs = [...ctx.spans.layerRuns].sort((a, b) => a.first - b.first || a.last - b.last);
  const patternSpan = ctx.spans.layerPatternSpan;
  if (!known(layers) || patternSpan === null) return;
  let covered = -1; // highest layer covered so far
  const missing: string[] = [];
  for (const r of runs) {
    if (r.last > layers - 1) {
      const bad = Math.max(r.first, layers);
      ctx.reportAt("DSV4003", r.span, { layer: bad, layers, last: layers - 1 }, r.first <= layers - 1 ? `end the range at ${layers - 1}` : "remove it");
    }
    if (r.first <= covered) {
      ctx.reportAt("DSV4001", r.span, { layer: r.first }, "remove it from one of the lists");
    } else if (r.first > covered + 1) {
      missing.push(gapText(covered + 1, Math.min(r.first, layers) - 1));
    }
    covered = Math.max(covered, r.last);
  }
  if (covered < layers - 1) missing.push(gapText(covered + 1, layers - 1));
  const shown = missing.filter((m) => m !== "");
  if (shown.length > 0) {
    ctx.reportAt("DSV4002", patternSpan, { missing: shown.slice(0, 6).join(", ") + (shown.length > 6 ? ", …" : "") }, "add the missing layers to 'dense' or 'moe'");
  }
};

function gapText(a: number, b: number): string {
  if (b < a) return "";
  return a === b ? `layer ${a}` : `layers ${a}..${b}`;
}

const ffnBlockForEveryLayerKind: Rule = (ctx) => {
  const m = ctx.spec.model;
  for (const kind of ["dense", "moe"] as const) {
    let count = 0;
    for (const r of m.layerPattern) if (r.kind === kind) count += r.last - r.first + 1;
    const has = kind === "dense" ? m.denseFfn !== null : m.moe !== null;
    // At the layer pattern, else at dense_layers (which split the layers), else at the model.
    const at = ctx.spans.layerPatternSpan !== null ? "model.layerPattern" : "model.denseLayers";
    if (count > 0 && !has && !ctx.spans.ffnUnread) ctx.report("DSV4004", at, { count, kind }, `add 'ffn ${kind} { … }' to the model`);
    if (count === 0 && has && m.layerPattern.length > 0 && !(kind === "moe" && m.mtp.depth > 0)) {
      ctx.report("DSV4014", kind === "dense" ? "model.denseFfn" : "model.moe", { kind }, "remove the block or use it in the layer pattern");
    }
  }
};

const gateGroups: Rule = (ctx) => {
  const moe = ctx.spec.model.moe;
  if (!moe) return;
  const g = moe.gate;
  if (known(g.groups, g.topGroups) && g.topGroups > g.groups) {
    ctx.report("DSV4005", "model.moe.gate.topGroups", { topGroups: g.topGroups, groups: g.groups }, `use top_groups ≤ ${g.groups}`);
    return;
  }
  if (!known(moe.routedExperts, g.groups)) return;
  if (moe.routedExperts % g.groups !== 0) {
    ctx.report("DSV4006", "model.moe.gate.groups", { experts: moe.routedExperts, groups: g.groups }, `use groups = ${orList(nearestDivisors(moe.routedExperts, g.groups))}`);
    return;
  }
  const perGroup = moe.routedExperts / g.groups;
  if (g.groupScore === "top2_sum" && g.groups > 1 && perGroup < 2) {
    ctx.report("DSV4008", "model.moe.gate.groupScore", { perGroup }, "use group_score = max, or fewer groups");
  }
  if (!known(moe.expertsPerToken, g.topGroups)) return;
  const reachable = g.groups > 1 ? g.topGroups * perGroup : moe.routedExperts;
  if (moe.expertsPerToken > reachable) {
    const reason = g.groups > 1 ? `top_groups = ${g.topGroups} groups of ${perGroup} hold` : "the layer has";
    ctx.report("DSV4007", "model.moe.expertsPerToken", { k: moe.expertsPerToken, available: reachable, reason }, `use experts_per_token ≤ ${reachable}`);
  }
};

const attentionHeads: Rule = (ctx) => {
  const a = ctx.spec.model.attention;
  if (a.kind === "mla") {
    if (known(a.qkRopeHeadDim) && a.qkRopeHeadDim % 2 !== 0) ctx.report("DSV4011", "model.attention.qkRopeHeadDim", { name: "qk_rope_dim", value: a.qkRopeHeadDim }, `use ${a.qkRopeHeadDim + 1}`);
    return;
  }
  if (known(a.headDim) && a.headDim % 2 !== 0) ctx.report("DSV4011", "model.attention.headDim", { name: "head_dim", value: a.headDim }, `use ${a.headDim + 1}`);
  if (!known(a.heads, a.kvHeads)) return;
  if (a.kind === "mha" && a.kvHeads !== a.heads) ctx.report("DSV4010", "model.attention.kvHeads", { kvHeads: a.kvHeads, heads: a.heads }, "remove kv_heads, or write 'attention gqa'");
  if (a.kind === "gqa" && a.heads % a.kvHeads !== 0) ctx.report("DSV4009", "model.attention.kvHeads", { heads: a.heads, kvHeads: a.kvHeads }, `use kv_heads = ${orList(nearestDivisors(a.heads, a.kvHeads))}`);
};

const yarnExtendsTheContext: Rule = (ctx) => {
  const m = ctx.spec.model;
  const y = m.attention.rope.yarn;
  if (!y || !known(y.originalContext, m.maxPositions)) return;
  if (y.originalContext >= m.maxPositions) {
    ctx.report("DSV4016", "model.attention.rope.yarn.originalContext", { original: y.originalContext, max: m.maxPositions }, `raise max_positions to the extended context (original_context × factor = ${Math.round(y.originalContext * y.factor)})`);
  }
};

const biasBalancingNeedsSigmoid: Rule = (ctx) => {
  const g = ctx.spec.model.moe?.gate;
  if (g && g.biasBalancing && g.scoring !== "sigmoid") ctx.report("DSV4017", "model.moe.gate.scoring", { scoring: g.scoring }, "use scoring = sigmoid");
};

const fp8TilesAgreeAlongK: Rule = (ctx) => {
  const p = ctx.spec.precision;
  if (p.mode !== "fp8") return;
  const [, tileK] = p.activationTile;
  const [blockN, blockK] = p.weightBlock;
  if (tileK !== blockK) {
    ctx.report("DSV4012", "precision.activationTile", { tile: `${p.activationTile[0]}x${tileK}`, block: `${blockN}x${blockK}`, tileK, blockK }, `use activation_tile = 1x${blockK}`);
    return;
  }
  if (blockN !== blockK) ctx.report("DSV4018", "precision.weightBlock", { block: `${blockN}x${blockK}` }, `use weight_block = ${blockK}x${blockK}`);
  if (known(p.promotionInterval) && tileK % p.promotionInterval !== 0) {
    ctx.report("DSV4013", "precision.promotionInterval", { interval: p.promotionInterval, groupK: tileK }, `use promotion_interval = ${tileK} (or a divisor of it)`);
  }
};

export const MODEL_RULES: readonly Rule[] = [
  layerPatternCoversEveryLayer,
  ffnBlockForEveryLayerKind,
  gateGroups,
  attentionHeads,
  yarnExtendsTheContext,
  biasBalancingNeedsSigmoid,
  fp8TilesAgreeAlongK,
];
