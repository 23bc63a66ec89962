/**
 * Auxiliary-loss-free load balancing (DeepSeek-V3 TR §2.1.2): after each training step every expert's
 * selection bias moves by the update speed γ toward balance,
 *   bias_i += γ · sign(mean load − load_i),
 * down for overloaded experts, up for underloaded ones (sign(0) = 0: an expert at the mean stays).
 * The load is the number of tokens routed to each expert over the step. The bias only steers
 * selection (gate.ts); it never enters the weights and gets no gradient.
 */
import { expectCount, expectLength } from "./tensor.js";

/** Tokens routed to each expert (counts over all top-K slots). */
export function expertLoad(chosen: Int32Array, experts: number): Float64Array {
  expectCount("expertLoad", "experts", experts);
  const load = new Float64Array(experts);
  for (let i = 0; i < chosen.length; i++) {
    const e = chosen[i]!;
    if (!(e >= 0 && e < experts)) throw new RangeError(`expertLoad: expert ${e} out of range [0, ${experts})`);
    load[e]!++;
  }
  return load;
}

/** max load / mean load (1 = perfectly balanced; 0 for no load). */
export function loadImbalance(load: ArrayLike<number>): number {
  let sum = 0;
  let max = 0;
  for (let i = 0; i < load.length; i++) {
    sum += load[i]!;
    max = Math.max(max, load[i]!);
  }
  return sum === 0 ? 0 : max / (sum / load.length);
}

/**
 * One bias update in place: bias_i += γ·sign(mean(load) − load_i). With a Float32Array bias (the
 * checkpoint's FP32) each new value is rounded to FP32. Returns the bias.
 */
export function biasUpdate<B extends Float32Array | Float64Array>(bias: B, load: ArrayLike<number>, gamma: number): B {
  expectLength("biasUpdate", "load", load, bias.length);
  let mean = 0;
  for (let i = 0; i < load.length; i++) mean += load[i]!;
  mean /= load.length;
  for (let i = 0; i < bias.length; i++) bias[i] = bias[i]! + gamma * Math.sign(mean - load[i]!);
  return bias;
}
