/**
 * AdamW over FP32 master weights (DeepSeek-V3 TR §3.3 / §4.2): β = (0.9, 0.95), weight decay 0.1
 * (decoupled, on matrices only — RMSNorm gains are not decayed), ε = 1e-8. The first and second
 * moments are stored in the recipe's `optimizer_states` dtype: with bf16 every moment is rounded to
 * BF16 (round-to-nearest-even, the numerics' `roundToBf16`) after each update; with fp32 to FP32.
 *   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  (rounded to the state dtype)
 *   p ← p − lr·( m/(1−β1ᵗ) / (√(v/(1−β2ᵗ)) + ε) + wd·p ).
 */
import { roundToBf16 } from "../../backends/reference/numerics/bf16.js";
import type { HighPrecisionDtype } from "../../compiler/spec.js";
import type { RealArray } from "../../backends/reference/ops/index.js";
import type { NamedTensor } from "./model-weights.js";

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** The moments' storage dtype. */
  stateDtype: HighPrecisionDtype;
}

/** Defaults: the report's betas and weight decay; lr 3e-3 (the tiny models' rate, not the report's 2.2e-4). */
export const DEFAULT_ADAMW: AdamWOptions = {
  lr: 3e-3,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.1,
  stateDtype: "bf16",
};

export class AdamW {
  private readonly m: Float32Array[];
  private readonly v: Float32Array[];
  private t = 0;
  constructor(
    params: readonly NamedTensor<RealArray>[],
    readonly options: AdamWOptions,
  ) {
    this.m = params.map((p) => new Float32Array(p.value.length));
    this.v = params.map((p) => new Float32Array(p.value.length));
  }

  get steps(): number {
    return this.t;
  }

  /** One update of `params` (in place) from `grads` (same order and shapes). */
  step(params: readonly NamedTensor<RealArray>[], grads: readonly NamedTensor<RealArray>[]): void {
    if (params.length !== this.m.length || grads.length !== params.length) throw new RangeError("AdamW: parameter list changed");
    this.t++;
    const { lr, beta1, beta2, eps, weightDecay, stateDtype } = this.options;
    const bf16 = stateDtype === "bf16";
    const c1 = 1 - beta1 ** this.t;
    const c2 = 1 - beta2 ** this.t;
    for (let i = 0; i < params.length; i++) {
      const p = params[i]!.value;
      const g = grads[i]!.value;
      if (g.length !== p.length) throw new RangeError(`AdamW: ${params[i]!.name} has ${p.length} elements, its gradient ${g.length}`);
      const m = this.m[i]!;
      const v = this.v[i]!;
      const wd = params[i]!.decay ? weightDecay : 0;
      for (let j = 0; j < p.length; j++) {
        const gj = g[j]!;
        let mj = beta1 * m[j]! + (1 - beta1) * gj;
        let vj = beta2 * v[j]! + (1 - beta2) * gj * gj;
        if (bf16) {
          mj = roundToBf16(mj);
          vj = roundToBf16(vj);
        }
        m[j] = mj;
        v[j] = vj;
        const pj = p[j]!;
        p[j] = pj - lr * (m[j]! / c1 / (Math.sqrt(v[j]! / c2) + eps) + wd * pj);
      }
    }
  }
}
