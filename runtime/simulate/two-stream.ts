/**
 * One GPU's two streams inside a compute slot: the compute SMs and the communication SMs (with the
 * links behind them), as a small list-scheduling simulation.
 *
 * A chain is one micro-batch's work in one slot (a forward or backward chunk): pieces on the
 * compute stream (attention, experts, …) and on the communication stream (dispatch, combine), each
 * waiting for the pieces it depends on. One chain alone exposes its communication (a dispatch must
 * finish before the experts it feeds). Two chains — an overlapped F&B pair of DualPipe — interleave:
 * while one chain's all-to-all runs on the communication stream, the other chain's computation runs
 * on the compute stream, which is how DualPipe hides one micro-batch's communication behind the
 * other's computation.
 *
 * Each stream runs one piece at a time, never idles while a piece of its kind is ready, and picks
 * the piece that became ready first (ties: the chain that did not run last on that stream, then
 * chain order), so the result is deterministic.
 */

export const COMPUTE = 0;
export const COMMUNICATION = 1;

export interface Piece {
  name: string;
  stream: typeof COMPUTE | typeof COMMUNICATION;
  seconds: number;
  /** Indices of pieces of the same chain this one waits for. */
  after: number[];
  /** The model layer the piece belongs to (MTP module k is layer `layers + k`); null for embedding, head, optimizer work. */
  layer: number | null;
}

export interface PlacedPiece {
  chain: number;
  piece: number;
  start: number;
  end: number;
}

export interface TwoStreamRun {
  seconds: number;
  computeBusy: number;
  communicationBusy: number;
  /** Communication time not hidden behind computation: seconds − computeBusy. */
  exposedCommunication: number;
  /** Each chain's end. */
  chainEnds: number[];
  placed: PlacedPiece[];
}

export function runTwoStreams(chains: readonly (readonly Piece[])[]): TwoStreamRun {
  const done = chains.map((c) => new Float64Array(c.length).fill(Number.NaN));
  const started = chains.map((c) => new Uint8Array(c.length));
  const streamFree = [0, 0];
  const lastChain = [-1, -1];
  const busy = [0, 0];
  const placed: PlacedPiece[] = [];
  let remaining = chains.reduce((a, c) => a + c.length, 0);
  // Ready time of a piece whose dependencies are all done; NaN otherwise.
  const readyTime = (c: number, p: number): number => {
    let t = 0;
    for (const d of chains[c]![p]!.after) {
      const e = done[c]![d]!;
      if (Number.isNaN(e)) return Number.NaN;
      if (e > t) t = e;
    }
    return t;
  };
  while (remaining > 0) {
    // The next placement: over both streams, the candidate with the earliest start.
    let best: { c: number; p: number; s: number; start: number; ready: number } | null = null;
    for (let s = 0; s < 2; s++) {
      for (let c = 0; c < chains.length; c++) {
        const chain = chains[c]!;
        for (let p = 0; p < chain.length; p++) {
          if (started[c]![p] === 1 || chain[p]!.stream !== s) continue;
          const ready = readyTime(c, p);
          if (Number.isNaN(ready)) continue;
          const start = Math.max(ready, streamFree[s]!);
          const better =
            best === null ||
            start < best.start ||
            (start === best.start && s === best.s && ready < best.ready) ||
            (start === best.start && s === best.s && ready === best.ready && c !== lastChain[s] && best.c === lastChain[s]);
          if (better) best = { c, p, s, start, ready };
          break; // within one chain and stream, pieces run in list order
        }
      }
    }
    if (best === null) throw new Error("two-stream schedule: a piece waits on a piece that never runs");
    const piece = chains[best.c]![best.p]!;
    const end = best.start + piece.seconds;
    started[best.c]![best.p] = 1;
    done[best.c]![best.p] = end;
    streamFree[best.s] = end;
    lastChain[best.s] = best.c;
    busy[best.s]! += piece.seconds;
    placed.push({ chain: best.c, piece: best.p, start: best.start, end });
    remaining--;
  }
  const chainEnds = done.map((d) => d.reduce((a, b) => Math.max(a, b), 0));
  const seconds = Math.max(0, ...chainEnds);
  return {
    seconds,
    computeBusy: busy[COMPUTE]!,
    communicationBusy: busy[COMMUNICATION]!,
    exposedCommunication: Math.max(0, seconds - busy[COMPUTE]!),
    chainEnds,
    placed,
  };
}
