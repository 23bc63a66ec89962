/**
 * Token embedding: out[t] = table[ids[t]] (table vocab × hidden); backward scatter-adds each row's
 * gradient into the row of its token (a token seen twice gets both). Not tied to the output head in
 * DeepSeek-V3; the MTP modules share it with the main model.
 */
import { allocLike, expectCount, expectLength, type RealArray } from "./tensor.js";

function checkIds(op: string, ids: Int32Array, vocab: number): void {
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]!;
    if (!(id >= 0 && id < vocab)) throw new RangeError(`${op}: token id ${id} outside the vocabulary of ${vocab}`);
  }
}

/** Rows of the table for each id: ids.length × hidden. */
export function embeddingForward<A extends RealArray>(ids: Int32Array, table: A, vocab: number, hidden: number): A {
  expectCount("embeddingForward", "hidden", hidden);
  expectLength("embeddingForward", "table", table, vocab * hidden);
  checkIds("embeddingForward", ids, vocab);
  const out = allocLike(table, ids.length * hidden);
  for (let t = 0; t < ids.length; t++) out.set(table.subarray(ids[t]! * hidden, (ids[t]! + 1) * hidden), t * hidden);
  return out;
}

/** The table's gradient (vocab × hidden) for dOut (ids.length × hidden). */
export function embeddingBackward<A extends RealArray>(dOut: A, ids: Int32Array, vocab: number, hidden: number): A {
  expectLength("embeddingBackward", "dOut", dOut, ids.length * hidden);
  checkIds("embeddingBackward", ids, vocab);
  const acc = new Float64Array(vocab * hidden);
  for (let t = 0; t < ids.length; t++) {
    const dst = ids[t]! * hidden;
    for (let j = 0; j < hidden; j++) acc[dst + j] = acc[dst + j]! + dOut[t * hidden + j]!;
  }
  const dTable = allocLike(dOut, vocab * hidden);
  dTable.set(acc);
  return dTable;
}
