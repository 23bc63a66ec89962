/**
 * Before/Expected tests of the Graph IR passes (TVM's habit): each case is a pair of files in the
 * IR's text form,
 *
 *   tests/passes/<pass>/<case>.before.ir     the input
 *   tests/passes/<pass>/<case>.expected.ir   what the pass must produce
 *
 * The before file is parsed and verified, the pass applied, its output verified, and the result
 * compared structurally with the parsed expected file (both renumbered canonically, so temporaries'
 * ids do not matter; attributes are unordered).
 *
 * Directives in the before file's leading `//` lines:
 *   // spec: FILE        the Spec whose precision recipe is the pass context (default specs/tiny.dsv3)
 *   // mode: bf16|fp8    overrides that recipe's mode
 *   // from: FILE phase=PHASE graph=KIND [tokens=N]
 *                        the case is a layer of a real spec: the rest of the before file is what the
 *                        pipeline gives for FILE in PHASE (N tokens per micro-batch, default the
 *                        schedule's) just before this pass, reduced to graph KIND; a before file that
 *                        no longer matches the pipeline fails (stale)
 * Every pass has at least two cases: a small hand-written graph and a layer of specs/tiny.dsv3.
 *
 * Goldens are never rewritten silently. After a deliberate change, regenerate them with
 *
 *   UPDATE_GOLDENS=1 npx vitest run tests/passes.test.ts
 *
 * (it rewrites every expected file and every `from:` before file), then review the diff.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

import { buildModelGraph } from "../compiler/graph/build.js";
import { graphOf, PHASES, type LayerKind, type ModelGraph, type Phase } from "../compiler/graph/ir.js";
import { parseModel } from "../compiler/graph/parse.js";
import { printModel } from "../compiler/graph/print.js";
import { canonicalize } from "../compiler/graph/rewrite.js";
import { verifyModel } from "../compiler/graph/verify.js";
import type { PassContext } from "../compiler/passes/pass.js";
import { PASSES } from "../compiler/pipeline.js";
import type { Spec } from "../compiler/spec.js";
import { loadSpec } from "./fixtures/plan-specs.js";

const ROOT = "tests/passes";
const UPDATE = process.env["UPDATE_GOLDENS"] === "1";
const REGENERATE = "UPDATE_GOLDENS=1 npx vitest run tests/passes.test.ts";

interface Directives {
  header: string[];
  spec: string;
  mode: "bf16" | "fp8" | null;
  from: { spec: string; phase: Phase; graph: LayerKind; tokens: number | undefined } | null;
  body: string;
}

function readDirectives(text: string): Directives {
  const lines = text.split("\n");
  let i = 0;
  while (i < lines.length && lines[i]!.startsWith("//")) i++;
  const header = lines.slice(0, i);
  const d: Directives = { header, spec: "specs/tiny.dsv3", mode: null, from: null, body: lines.slice(i).join("\n") };
  for (const line of header) {
    const m = /^\/\/ (spec|mode|from): (.*)$/.exec(line);
    if (m === null) continue;
    const value = m[2]!.trim();
    if (m[1] === "spec") d.spec = value;
    else if (m[1] === "mode") {
      if (value !== "bf16" && value !== "fp8") throw new Error(`mode: ${value}`);
      d.mode = value;
    } else {
      const f = /^(\S+) phase=(\S+) graph=(\S+)(?: tokens=([0-9]+))?$/.exec(value);
      if (f === null || !PHASES.includes(f[2] as Phase)) throw new Error(`from: ${value}`);
      d.from = { spec: f[1]!, phase: f[2] as Phase, graph: f[3] as LayerKind, tokens: f[4] === undefined ? undefined : Number(f[4]) };
      d.spec = f[1]!;
    }
  }
  return d;
}

function contextOf(d: Directives): PassContext {
  const spec = loadSpec(d.spec);
  return { precision: d.mode === null ? spec.precision : { ...spec.precision, mode: d.mode } };
}

/** The pipeline's graph `kind` for `spec` in `phase` just before `passName`, as a one-graph model. */
function pipelineBefore(spec: Spec, phase: Phase, kind: LayerKind, tokens: number | undefined, passName: string): string {
  const ctx: PassContext = { precision: spec.precision };
  let m: ModelGraph = buildModelGraph(spec, tokens === undefined ? { phase } : { phase, tokens });
  for (const p of PASSES) {
    if (p.name === passName) break;
    m = p.run(m, ctx);
  }
  const g = graphOf(m, kind);
  if (g === undefined) throw new Error(`no ${kind} graph in ${phase}`);
  return printModel({ ...m, graphs: [g] });
}

function canonicalText(m: ModelGraph): string {
  return printModel(canonicalize(m));
}

const passDirs = readdirSync(ROOT).filter((d) => !d.startsWith(".")).sort();

describe("Before/Expected pass tests", () => {
  it("every pass has a folder with a hand-written case and a case from specs/tiny.dsv3", () => {
    expect(passDirs).toEqual(PASSES.map((p) => p.name).sort());
    for (const dir of passDirs) {
      const befores = readdirSync(path.join(ROOT, dir)).filter((f) => f.endsWith(".before.ir"));
      const kinds = befores.map((f) => readDirectives(readFileSync(path.join(ROOT, dir, f), "utf8")).from);
      expect(kinds.some((k) => k === null), `${dir}: a hand-written case`).toBe(true);
      expect(kinds.some((k) => k !== null && k.spec === "specs/tiny.dsv3"), `${dir}: a tiny case`).toBe(true);
    }
  });

  for (const dir of passDirs) {
    const pass = PASSES.find((p) => p.name === dir);
    describe(dir, () => {
      const cases = readdirSync(path.join(ROOT, dir))
        .filter((f) => f.endsWith(".before.ir"))
        .map((f) => f.slice(0, -".before.ir".length))
        .sort();
      for (const name of cases) {
        it(name, () => {
          if (pass === undefined) throw new Error(`tests/passes/${dir}: no pass named '${dir}'`);
          const beforeFile = path.join(ROOT, dir, `${name}.before.ir`);
          const expectedFile = path.join(ROOT, dir, `${name}.expected.ir`);
          let text = readFileSync(beforeFile, "utf8");
          const d = readDirectives(text);
          if (d.from !== null) {
            const fresh = pipelineBefore(loadSpec(d.from.spec), d.from.phase, d.from.graph, d.from.tokens, dir);
            if (UPDATE) {
              text = `${d.header.join("\n")}\n${fresh}`;
              writeFileSync(beforeFile, text);
            } else {
              expect(d.body, `${beforeFile} is stale; regenerate with ${REGENERATE}`).toBe(fresh);
            }
          }
          const before = parseModel(text);
          verifyModel(before);
          const after = pass.run(before, contextOf(d));
          verifyModel(after);
          const actual = canonicalText(after);
          if (UPDATE) {
            writeFileSync(expectedFile, `// ${dir} applied to ${name}.before.ir (regenerate: ${REGENERATE})\n${actual}`);
            return;
          }
          if (!existsSync(expectedFile)) throw new Error(`${expectedFile} is missing; create it with ${REGENERATE}`);
          const expected = parseModel(readFileSync(expectedFile, "utf8"));
          verifyModel(expected);
          expect(actual, `${dir}(${name}) differs from ${expectedFile}`).toBe(canonicalText(expected));
          expect(canonicalize(after)).toEqual(canonicalize(expected));
          // The pass is pure: applying it again to a fresh parse gives the same graph.
          expect(canonicalText(pass.run(parseModel(text), contextOf(d)))).toBe(actual);
        });
      }
    });
  }
});
