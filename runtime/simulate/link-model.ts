/**
 * Transfer times on the cluster's links: NVLink inside a node, InfiniBand across nodes, both per GPU
 * and per direction (the Spec's figures).
 *
 * Calibration (source keys of shared/reference/FACTS.md; EP = DeepEP README):
 * - NVLINK_EFFICIENCY: DeepEP's normal kernels reach 153 (dispatch) and 158 (combine) GB/s intranode
 *   at EP8 on the 160 GB/s NVLink: their mean, 155.5/160.
 * - IB_EFFICIENCY_NORMAL: DeepEP's normal kernels reach ≈43–58 GB/s internode (EP16–EP64) on 50 GB/s
 *   InfiniBand; the range's midpoint (50.5) exceeds the nominal link, so the efficiency is capped at 1.
 *   (The published spread is itself 35%; no single figure lies within 15% of both ends.)
 * - IB_EFFICIENCY_LOW_LATENCY and LOW_LATENCY_S: DeepEP's low-latency kernels (128 tokens, hidden
 *   7168, top-8; every token copy sent to its expert's GPU over RDMA) take 163–194 µs to dispatch
 *   (FP8 with scales) and 318–369 µs to combine (BF16). Fitting t = latency + bytes/(e·50 GB/s) to the
 *   two midpoints gives e ≈ 0.862 and a latency of ≈ 2.9 µs.
 *
 * All-to-all: the NVLink and IB parts of one GPU's send run concurrently (the relay forwards as it
 * receives), so an all-to-all takes the slower of the two plus the latency. Pipeline p2p and DP
 * collectives use the normal efficiency.
 */

import type { ClusterSpec } from "../../compiler/spec.js";

export const NVLINK_EFFICIENCY = (153 + 158) / 2 / 160;
export const IB_EFFICIENCY_NORMAL = Math.min(1, (43 + 58) / 2 / 50);
/** Fitted: (343.5 − 178.5) µs for (combine − dispatch) bytes of the low-latency benchmark at 50 GB/s. */
export const IB_EFFICIENCY_LOW_LATENCY = lowLatencyFit().efficiency;
export const LOW_LATENCY_S = lowLatencyFit().latency;

/** DeepEP's low-latency benchmark: bytes each GPU sends in one dispatch and one combine. */
export function deepEpLowLatencyBytes(): { dispatch: number; combine: number } {
  const tokens = 128;
  const topk = 8;
  const hidden = 7168;
  // FP8 payload with one FP32 scale per 128 channels; combine in BF16.
  return { dispatch: tokens * topk * (hidden + (hidden / 128) * 4), combine: tokens * topk * hidden * 2 };
}

function lowLatencyFit(): { efficiency: number; latency: number } {
  const { dispatch, combine } = deepEpLowLatencyBytes();
  const tDispatch = ((163 + 194) / 2) * 1e-6;
  const tCombine = ((318 + 369) / 2) * 1e-6;
  const rate = (combine - dispatch) / (tCombine - tDispatch);
  return { efficiency: rate / 50e9, latency: tDispatch - dispatch / rate };
}

export type AllToAllMode = "normal" | "low-latency";

export class LinkModel {
  readonly nvlinkBytesPerS: number;
  readonly infinibandBytesPerS: number;

  constructor(cluster: Pick<ClusterSpec, "nvlinkBytesPerS" | "infinibandBytesPerS">) {
    this.nvlinkBytesPerS = cluster.nvlinkBytesPerS;
    this.infinibandBytesPerS = cluster.infinibandBytesPerS;
  }

  /** One GPU's share of an all-to-all: `nvlinkBytes` and `ibBytes` sent (and as many received). */
  allToAll(nvlinkBytes: number, ibBytes: number, mode: AllToAllMode): number {
    if (nvlinkBytes <= 0 && ibBytes <= 0) return 0;
    const ib = mode === "normal" ? IB_EFFICIENCY_NORMAL : IB_EFFICIENCY_LOW_LATENCY;
    const nv = nvlinkBytes / (this.nvlinkBytesPerS * NVLINK_EFFICIENCY);
    const rdma = ibBytes / (this.infinibandBytesPerS * ib);
    return Math.max(nv, rdma) + LOW_LATENCY_S;
  }

  /** A point-to-point transfer (pipeline activations or gradients). */
  p2p(bytes: number, crossNode: boolean): number {
    if (bytes <= 0) return 0;
    const rate = crossNode ? this.infinibandBytesPerS * IB_EFFICIENCY_NORMAL : this.nvlinkBytesPerS * NVLINK_EFFICIENCY;
    return bytes / rate + LOW_LATENCY_S;
  }

  /** A collective whose per-GPU send volume (ring figures) is `bytes`, over IB (or NVLink when the group is in one node). */
  collective(bytes: number, crossNode: boolean): number {
    return this.p2p(bytes, crossNode);
  }

  /** The bandwidth an all-to-all reaches on its IB part (bytes over IB / time), as DeepEP reports it. */
  ibBandwidth(nvlinkBytes: number, ibBytes: number, mode: AllToAllMode): number {
    const t = this.allToAll(nvlinkBytes, ibBytes, mode);
    return t > 0 ? ibBytes / t : 0;
  }
}

export const LINK_MODEL_SOURCES =
  "link model calibrated only on DeepEP's figures (FACTS.md): NVLink at (153+158)/2 of 160 GB/s; IB normal kernels at the " +
  "43–58 GB/s midpoint (capped at the 50 GB/s link); low-latency kernels fitted to 163–194 µs dispatch and 318–369 µs combine";
