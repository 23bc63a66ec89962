/**
 * The TypeScript form of a spec: the builders (dsl/ts/builders.ts), the static reader
 * (dsl/ts/read-ts-spec.ts), the runtime `toDocument` and `dsv3 export --to ts` (compiler/export-ts.ts).
 *
 * The .ts fixtures under tests/fixtures/ts-specs/ are only ever read as text: no test imports or runs
 * one (one of them writes a file when run).
 */
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import * as prettier from "prettier";
import { Project, ts } from "ts-morph";
import { describe, expect, it } from "vitest";
import { checkDocuments, checkSpecFile } from "../compiler/check/index.js";
import {
  ATTENTION_VARIANTS, CLUSTER, DECODE, FFN_VARIANTS, GPU, MODEL, PRECISION, PREFILL, TRAINING, type BlockDef,
} from "../compiler/check/vocabulary.js";
import { exportTs } from "../compiler/export-ts.js";
import type { Spec } from "../compiler/spec.js";
import { CATALOG, type DiagnosticCode } from "../dsl/diagnostic-catalog.js";
import { renderDiagnostic, type Diagnostic } from "../dsl/diagnostic.js";
import { MAX_NESTING } from "../dsl/parser.js";
import { printDocument } from "../dsl/print.js";
import { UNITS } from "../dsl/units.js";
import {
  BANDWIDTH_UNITS, BYTE_UNITS, cluster, decode, dense, DSL_TYPE_NAMES, DURATION_UNITS, FLOP_RATE_UNITS, GPU_PRESETS, H800, mla, model, moe,
  prefill, spec, training, type PrecisionFields,
} from "../dsl/ts/builders.js";
import { checkTsSpecFile, isTsSpecFile } from "../dsl/ts/check-ts-spec.js";
import { readTsSpec } from "../dsl/ts/read-ts-spec.js";
import { MAX_TS_NODES } from "../dsl/ts/to-ast.js";
import { toDocument } from "../dsl/ts/to-document.js";
import { specFiles, validSpecText } from "./fixtures/generated-specs.js";
import { checkSpecValue } from "../index.js";

const FIXTURES = "tests/fixtures/ts-specs";
const V3_TS = path.join(FIXTURES, "deepseek-v3.ts");
const UNTRUSTED_TS = path.join(FIXTURES, "untrusted-writes-file.ts");

const noImports = (): string => {
  throw new Error("no imports");
};

function referenceSpec(file: string): Spec {
  const r = checkSpecFile(file);
  expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
  return r.spec!;
}

function referenceSpecText(text: string): Spec {
  const r = checkSpecFile("reference.dsv3", noImports, text);
  expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
  return r.spec!;
}

/** Read a TS spec and check it; the reader's and the checker's diagnostics together. */
function checkTs(file: string, text: string): { spec: Spec | null; diagnostics: Diagnostic[]; read: Diagnostic[] } {
  const read = readTsSpec(file, text);
  if (read.document === null) return { spec: null, diagnostics: read.diagnostics, read: read.diagnostics };
  const checked = checkDocuments([read.document], read.diagnostics);
  return { spec: checked.spec, diagnostics: checked.diagnostics, read: read.diagnostics };
}

function render(list: readonly Diagnostic[], file: string, text: string): string {
  return list.map((d) => renderDiagnostic(d, new Map([[file, text]]))).join("\n\n");
}

function where(d: Diagnostic): string {
  return `${d.code}@${d.span?.line}:${d.span?.col}`;
}

/** `line:col` (1-based) of the first `needle` in `text`. */
function at(text: string, needle: string): string {
  const offset = text.indexOf(needle);
  if (offset < 0) throw new Error(`'${needle}' is not in the text`);
  const before = text.slice(0, offset).split("\n");
  return `${before.length}:${before[before.length - 1]!.length + 1}`;
}

// ── The V3 spec in TypeScript ───────────────────────────────────────────────────────────────────
describe("tests/fixtures/ts-specs/deepseek-v3.ts", () => {
  const text = readFileSync(V3_TS, "utf8");

  it("reads, statically, to exactly the Spec of specs/deepseek-v3.dsv3", () => {
    readTsSpec(V3_TS, text); // warm up, so the timing below is of a read, not of loading the parser
    const t0 = performance.now();
    const result = checkTs(V3_TS, text);
    const ms = performance.now() - t0;
    expect(result.diagnostics).toEqual([]);
    expect(result.spec).toEqual(referenceSpec("specs/deepseek-v3.dsv3"));
    console.log(`read + check of the V3 TypeScript spec: ${ms.toFixed(1)} ms`);
  });

  it("turns the shared constant into a preset and its spreads into `...batch`", () => {
    const doc = readTsSpec(V3_TS, text).document!;
    const preset = doc.items.find((i) => i.kind === "preset");
    expect(preset).toMatchObject({ kind: "preset", name: "batch" });
    const training = doc.items.find((i) => i.kind === "block" && i.type === "training");
    expect(training?.kind === "block" && training.body[0]).toMatchObject({ kind: "spread", name: "batch" });
  });

  it("evaluates arithmetic on constants exactly", () => {
    const doc = readTsSpec(V3_TS, text).document!;
    const modelBlock = doc.items.find((i) => i.kind === "block" && i.type === "model");
    const hidden = modelBlock?.kind === "block" ? modelBlock.body.find((e) => e.kind === "attribute" && e.key === "hidden") : undefined;
    expect(hidden).toMatchObject({ value: { kind: "number", value: 7168, unit: null } });
    // The value's span is the expression `hidden` (a shorthand property) in the .ts source.
    expect(hidden?.kind === "attribute" && text.slice(hidden.value.span.offset, hidden.value.span.offset + hidden.value.span.length)).toBe("hidden");
  });

  it("checks through checkTsSpecFile with the same result", () => {
    const r = checkTsSpecFile(V3_TS);
    expect(r.diagnostics).toEqual([]);
    expect(r.spec).toEqual(referenceSpec("specs/deepseek-v3.dsv3"));
    expect(r.sources.get(V3_TS)).toBe(text);
    expect(isTsSpecFile("model.ts")).toBe(true);
    expect(isTsSpecFile("model.d.ts")).toBe(false);
    expect(isTsSpecFile("model.dsv3")).toBe(false);
  });
});

// ── The accepted subset, feature by feature ───────────────────────────────────────────────────
describe("the accepted subset", () => {
  it("reads aliases, satisfies/as, type declarations, exported consts, nested presets and GPU spreads as the text language would", () => {
    const ts = [
      'import { cluster as c, H200, mla, model, moe, dense, spec as s, training, type TrainingFields } from "dsv3";',
      'import type { GpuFields } from "dsv3";',
      "type Batch = Pick<TrainingFields, \"seq_len\" | \"global_batch\">;",
      "interface Unused { x: number }",
      "export const base = { seq_len: 2 ** 7 } as const;",
      "const batch = { ...base, global_batch: (0x10 + 16) % 1000 } satisfies Batch;",
      "const width = 64;",
      'const gpu = { ...H200, hbm: "96 GiB", name: `H200-96` } satisfies GpuFields;',
      "const the_spec = s({",
      '  model: model("m", {',
      "    vocab: 1_000, hidden: width, layers: 4, 'dense_layers': 1, norm_eps: 1e-5, max_positions: +256,",
      "    attention: mla({ heads: width / 16, q_lora_rank: null, kv_lora_rank: 16, qk_nope_dim: 8, qk_rope_dim: -(-4), v_head_dim: 8 }),",
      "    ffn: [dense({ intermediate: width * 4 }), moe({ routed_experts: 8, experts_per_token: 2, intermediate: 32, gate: { scoring: \"softmax\" } })],",
      "  }),",
      '  precision: { mode: "fp8", recompute: ["rmsnorm"], keep_bf16: [] },',
      '  cluster: c("two", { nodes: 2, gpus_per_node: 4, gpu, nvlink: "1.8 TB/s", infiniband: "100 GiB/s" }),',
      "  schedules: [",
      '    training("a", { ...batch, pp: 2, microbatches: 4, dp: 4, ep: 2 }),',
      '    training("b", { ...batch, microbatches: 4, dp: 8, node_limit: null }),',
      "  ],",
      "});",
      "export default the_spec;",
      "",
    ].join("\n");
    const dsv3 = `preset base {
  seq_len = 128
}

preset batch {
  ...base
  global_batch = 32
}

model "m" {
  vocab = 1000
  hidden = 64
  layers = 4
  dense_layers = 1
  norm_eps = 1e-5
  max_positions = 256
  attention mla {
    heads = 4
    q_lora_rank = none
    kv_lora_rank = 16
    qk_nope_dim = 8
    qk_rope_dim = 4
    v_head_dim = 8
  }
  ffn dense {
    intermediate = 256
  }
  ffn moe {
    routed_experts = 8
    experts_per_token = 2
    intermediate = 32
    gate {
      scoring = softmax
    }
  }
}

precision {
  mode = fp8
  recompute = [rmsnorm]
  keep_bf16 = []
}

cluster "two" {
  nodes = 2
  gpus_per_node = 4
  gpu {
    ...H200
    hbm = 96 GiB
    name = "H200-96"
  }
  nvlink = 1.8 TB/s
  infiniband = 100 GiB/s
}

training a {
  ...batch
  pp = 2
  microbatches = 4
  dp = 4
  ep = 2
}

training b {
  ...batch
  microbatches = 4
  dp = 8
  node_limit = none
}
`;
    const fromTs = checkTs("features.ts", ts);
    expect(fromTs.diagnostics).toEqual([]);
    expect(fromTs.spec).toEqual(referenceSpecText(dsv3));
    // Each preset comes out once, in declaration order, named where it is declared.
    const doc = readTsSpec("features.ts", ts).document!;
    const presets = doc.items.filter((i) => i.kind === "preset");
    expect(presets.map((i) => `${i.kind === "preset" && i.name}@${i.kind === "preset" && i.nameSpan.line}`)).toEqual(["base@5", "batch@6"]);
  });

  it("gives the AST of the text language: printing what was read and checking the text gives the same Spec", () => {
    const text = readFileSync(V3_TS, "utf8");
    const printed = printDocument(readTsSpec(V3_TS, text).document!);
    expect(referenceSpecText(printed)).toEqual(referenceSpec("specs/deepseek-v3.dsv3"));
  });

  it("never throws, whatever the text", () => {
    const text = readFileSync(V3_TS, "utf8");
    fc.assert(
      fc.property(fc.nat({ max: text.length }), fc.nat({ max: 40 }), fc.string({ maxLength: 12 }), (at, cut, insert) => {
        const mutated = text.slice(0, at) + insert + text.slice(at + cut);
        const r = readTsSpec("mutated.ts", mutated);
        for (const d of r.diagnostics) expect(d.span?.file ?? "mutated.ts").toBe("mutated.ts");
        if (r.document !== null) checkDocuments([r.document], r.diagnostics);
      }),
      { numRuns: 150 },
    );
  });
});

// ── Untrusted input: read, never run ────────────────────────────────────────────────────────────
describe("a spec whose top level would write a file", () => {
  it("is reported where it would act, and nothing is written", () => {
    const target = path.join(tmpdir(), `dsv3-ts-spec-pwned-${process.pid}-${Date.now()}`);
    const fixture = readFileSync(UNTRUSTED_TS, "utf8");
    expect(fixture).toContain('writeFileSync("/tmp/dsv3-ts-spec-pwned", "x");');
    const text = fixture.replace("/tmp/dsv3-ts-spec-pwned", target);
    expect(existsSync(target)).toBe(false);

    const read = readTsSpec(UNTRUSTED_TS, text);
    const checked = checkTsSpecFile(UNTRUSTED_TS, noImports, text);
    expect(existsSync(target)).toBe(false);

    // The import from node:fs (line 2) and the call statement (line 5), both at column 1.
    expect(read.diagnostics.map(where)).toEqual(["DSV6003@2:1", "DSV6002@5:1"]);
    const [imp, call] = read.diagnostics;
    expect(text.slice(imp!.span!.offset, imp!.span!.offset + imp!.span!.length)).toBe('import { writeFileSync } from "node:fs";');
    expect(text.slice(call!.span!.offset, call!.span!.offset + call!.span!.length)).toBe(`writeFileSync("${target}", "x");`);
    // The spec itself is fine: it is read, and the checker adds nothing; the errors keep it from use.
    expect(read.document).not.toBeNull();
    expect(checked.diagnostics.map(where)).toEqual(["DSV6003@2:1", "DSV6002@5:1"]);
    expect(checked.spec).toBeNull();
    // The messages, from the fixture as written (the temporary path differs from run to run).
    expect(render(readTsSpec(UNTRUSTED_TS, fixture).diagnostics, UNTRUSTED_TS, fixture)).toMatchSnapshot();
  });
});

// ── Every DSV6xxx code ──────────────────────────────────────────────────────────────────────────
/** A small valid spec in TypeScript; `parts` replace pieces of it. */
function tsSpec(parts: { top?: string; model?: string; head?: string; precision?: string; schedules?: string; imports?: string } = {}): string {
  return [
    parts.imports ?? 'import { cluster, H800, mla, model, moe, spec, training } from "dsv3";',
    parts.top ?? "",
    "export default spec({",
    `  model: model(${parts.head ?? '"tiny"'}, {`,
    "    vocab: 512,",
    "    hidden: 64,",
    "    layers: 2,",
    "    attention: mla({ heads: 4, q_lora_rank: null, kv_lora_rank: 16, qk_nope_dim: 8, qk_rope_dim: 4, v_head_dim: 8 }),",
    "    ffn: moe({ routed_experts: 8, experts_per_token: 2, intermediate: 32 }),",
    parts.model ?? "",
    "  }),",
    `  precision: ${parts.precision ?? '{ mode: "bf16" }'},`,
    '  cluster: cluster({ nodes: 1, gpus_per_node: 8, gpu: H800, nvlink: "160 GB/s", infiniband: "50 GB/s" }),',
    `  schedules: [${parts.schedules ?? 'training("train", { microbatches: 4, dp: 8, ep: 8, seq_len: 128, global_batch: 32 })'}],`,
    "});",
    "",
  ].filter((l) => l !== "").join("\n") + "\n";
}

interface TsCase {
  code: DiagnosticCode;
  what: string;
  text: string;
}

const nested = (depth: number): string => `${"{ a: ".repeat(depth)}1${" }".repeat(depth)}`;

const TS_CASES: TsCase[] = [
  { code: "DSV6001", what: "a syntax error", text: tsSpec({ top: "const broken = { vocab: 512,, };" }) },
  { code: "DSV6002", what: "an expression statement, a function and a loop", text: tsSpec({ top: 'console.log("hi");\nfunction f() { return 1; }\nfor (;;) {}' }) },
  { code: "DSV6003", what: "an import from another module", text: tsSpec({ top: 'import { execSync } from "node:child_process";' }) },
  { code: "DSV6004", what: "a misspelt import from dsv3", text: tsSpec({ imports: 'import { cluster, H800, mla, model, moe, spec, training, modle } from "dsv3";' }) },
  { code: "DSV6005", what: "default and namespace imports of dsv3", text: tsSpec({ top: 'import dsv3 from "dsv3";\nimport * as d from "dsv3";' }) },
  { code: "DSV6006", what: "let and var", text: tsSpec({ top: "let layers = 2;\nvar vocab = 512;" }) },
  {
    code: "DSV6007",
    what: "property access, template substitution, new, a function, a computed key, a getter, undefined",
    text: tsSpec({
      top: [
        'const key = "dense_layers";',
        "const seq = 128;",
      ].join("\n"),
      model: [
        "    max_positions: process.env.MAX,",
        "    norm_eps: new Number(1e-6),",
        "    tie_embeddings: (() => false)(),",
        "    [key]: 1,",
        "    get mtp() { return { depth: 1 }; },",
        "    layer_pattern: undefined,",
      ].join("\n"),
      schedules: 'training(`train-${seq}`, { microbatches: 4, dp: 8, ep: 8, seq_len: seq, global_batch: 32 })',
    }),
  },
  { code: "DSV6008", what: "calls of require and of Math.max", text: tsSpec({ top: 'const fs = require("node:fs");', model: "    max_positions: Math.max(256, 512)," }) },
  { code: "DSV6009", what: "an undeclared name and a builder used without its import", text: tsSpec({ model: "    max_positions: MAX_POSITIONS,\n    layer_pattern: dense({ intermediate: 128 })," }) },
  { code: "DSV6010", what: "a constant used before its declaration", text: tsSpec({ top: "const positions = 2 * context;\nconst context = 128;" }) },
  { code: "DSV6011", what: "arithmetic on a string", text: tsSpec({ top: 'const positions = "256" * 2;' }) },
  { code: "DSV6012", what: "a division by zero", text: tsSpec({ model: "    max_positions: 1 / 0," }) },
  { code: "DSV6013", what: "builders called with the wrong number of arguments", text: tsSpec({ model: "    mtp: mla(),", schedules: "training({ microbatches: 4, seq_len: 128, global_batch: 32 })" }) },
  { code: "DSV6014", what: "no default export", text: 'import { spec } from "dsv3";\nconst s = spec({} as never);\n' },
  { code: "DSV6015", what: "two default exports", text: tsSpec() + 'export default spec({} as never);\n' },
  { code: "DSV6016", what: "spreading a number and an object literal", text: tsSpec({ top: "const layers = 2;", model: "    ...layers,\n    mtp: { ...{ depth: 1 } }," }) },
  { code: "DSV6017", what: "a default export that is not spec(…)", text: 'import { model } from "dsv3";\nexport default model("m", {} as never);\n' },
  {
    code: "DSV6018",
    what: "constants that expand to too many values",
    text: tsSpec({
      top: [
        "const a = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1];",
        "const b = [a, a, a, a, a, a, a, a, a, a];",
        "const c = [b, b, b, b, b, b, b, b, b, b];",
        "const d = [c, c, c, c, c, c, c, c, c, c];",
        "const e = [d, d, d, d, d, d, d, d, d, d];",
        "const f = [e, e, e, e, e, e, e, e, e, e];",
      ].join("\n"),
      precision: '{ mode: "bf16", recompute: f }',
    }),
  },
  { code: "DSV6019", what: "a name that is not a string, fields that are not an object", text: tsSpec({ head: "42", schedules: 'training("t", 5)' }) },
];

describe("every DSV6xxx code", () => {
  it("has a case here, and the base spec of the cases is valid", () => {
    const codes = Object.keys(CATALOG).filter((c) => c.startsWith("DSV6")).sort();
    expect(TS_CASES.map((c) => c.code).sort()).toEqual(codes);
    const base = checkTs("case.ts", tsSpec());
    expect(base.diagnostics).toEqual([]);
    expect(base.spec).not.toBeNull();
  });

  for (const c of TS_CASES) {
    it(`${c.code}: ${c.what}`, () => {
      const result = checkTs("case.ts", c.text);
      const hits = result.read.filter((d) => d.code === c.code);
      expect(hits.length).toBeGreaterThan(0);
      for (const d of hits) expect(d.span?.file).toBe("case.ts");
      expect(result.spec).toBeNull();
      expect(render(result.read, "case.ts", c.text)).toMatchSnapshot();
    });
  }

  it("reports several problems in one read, and stops at none of them", () => {
    const text = tsSpec({ top: 'let a = 1;\nconsole.log(a);\nconst b = process.argv;', model: "    max_positions: 1 / 0," });
    const r = readTsSpec("case.ts", text);
    expect(r.diagnostics.map(where)).toEqual([
      `DSV6006@${at(text, "let")}`, `DSV6002@${at(text, "console.log")}`, `DSV6007@${at(text, "process.argv")}`, `DSV6012@${at(text, "1 / 0")}`,
    ]);
  });

  it("refuses nesting deeper than the text language allows (DSV1007)", () => {
    const text = tsSpec({ model: `    mtp: ${nested(MAX_NESTING + 2)},` });
    const r = readTsSpec("case.ts", text);
    expect(r.document).toBeNull();
    expect(r.diagnostics.map((d) => d.code)).toEqual(["DSV1007"]);
    const parens = `const x = ${"(".repeat(20_000)}1${")".repeat(20_000)};\n`;
    const deep = readTsSpec("case.ts", tsSpec({ top: parens }));
    expect(deep.diagnostics.map((d) => d.code)).toContain("DSV1007");
  });

  it("keeps the expansion limit in step with the catalog case", () => {
    expect(10 ** 6).toBeGreaterThan(MAX_TS_NODES);
  });
});

// ── The checker's diagnostics point into the .ts file ───────────────────────────────────────────
describe("checker diagnostics on a TypeScript spec", () => {
  it("locate wrong units, out-of-range values and rule violations in the .ts source", () => {
    const text = tsSpec({
      model: "    mtp: { depth: 1, loss_weight: 500 },",
      schedules: 'training("train", { microbatches: 4, tp: 3, dp: 8, ep: 8, seq_len: 128, global_batch: 32 })',
    }).replace('nvlink: "160 GB/s"', 'nvlink: "160 Gb/s"');
    const r = checkTs("case.ts", text);
    expect(r.read).toEqual([]);
    const codes = r.diagnostics.map(where);
    expect(codes).toContain(`DSV3003@${at(text, '"160 Gb/s"')}`); // unknown unit; did you mean 'GB/s'?
    expect(codes).toContain(`DSV3005@${at(text, "500")}`); // loss_weight out of range
    expect(codes).toContain(`DSV5002@${at(text, "3, dp")}`); // heads = 4 not divisible by tp = 3
    expect(render(r.diagnostics, "case.ts", text)).toMatchSnapshot();
  });

  it("point a scalar constant's problem at the place it is used", () => {
    const text = tsSpec({ top: "const layers = 5000;" }).replace("layers: 2,", "layers,");
    const r = checkTs("case.ts", text);
    expect(r.diagnostics.map(where)).toEqual([`DSV3005@${at(text, "layers,")}`]);
    expect(render(r.diagnostics, "case.ts", text)).toMatchSnapshot();
  });
});

// ── Builders at run time ────────────────────────────────────────────────────────────────────────
describe("the builders, run", () => {
  it("build the V3 spec; toDocument + the checker give the Spec of the .dsv3 file", () => {
    const batch = { seq_len: 4096 };
    const precision = {
      mode: "fp8", format: "e4m3", activation_tile: "1x128", backward_activation_tile: "128x1", weight_block: "128x128",
      promotion_interval: 128, scale_max: 448, pow2_scales: false, keep_bf16: ["embedding", "output_head", "attention_core"],
      keep_fp32: ["moe_gate", "norm"], master_weights: "fp32", gradients: "fp32", optimizer_states: "bf16",
      activation_cache: {
        default: "e4m3",
        attn_out_proj_input: { format: "e5m6", pow2_scales: true },
        swiglu_input: { format: "e4m3", recompute_output: true },
        moe_dispatch: { format: "e4m3", pow2_scales: true },
        moe_combine: { format: "bf16" },
      },
      recompute: ["rmsnorm", "mla_up_proj"],
    } as const satisfies PrecisionFields;
    const value = spec({
      model: model("DeepSeek-V3", {
        vocab: 129_280, hidden: 7168, layers: 61, dense_layers: 3, norm_eps: 1e-6, tie_embeddings: false, max_positions: 163_840,
        attention: mla({
          heads: 128, q_lora_rank: 1536, kv_lora_rank: 512, qk_nope_dim: 128, qk_rope_dim: 64, v_head_dim: 128,
          rope: { theta: 10000, yarn: { factor: 40, original_context: 4096, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 1 } },
        }),
        ffn: [
          dense({ intermediate: 18432 }),
          moe({
            routed_experts: 256, shared_experts: 1, experts_per_token: 8, intermediate: 2048,
            gate: { scoring: "sigmoid", bias_balancing: { update_speed: 0.001 }, groups: 8, top_groups: 4, group_score: "top2_sum", normalize_topk: true, routed_scale: 2.5, seq_aux_loss_weight: 0.0001 },
          }),
        ],
        mtp: { depth: 1, loss_weight: 0.3 },
      }),
      precision,
      cluster: cluster("h800-2048", { nodes: 256, gpus_per_node: 8, gpu: H800, nvlink: "160 GB/s", infiniband: "50 GB/s" }),
      schedules: [
        training("train", { ...batch, pipeline: "dualpipe", pp: 16, microbatches: 120, dp: 128, ep: 64, zero: 1, node_limit: 4, comm_sms: 20, global_batch: 15360 }),
        prefill("prefill", { ...batch, gpus: 32, attention: { tp: 4, sp: true, dp: 8 }, moe: { ep: 32, redundant_experts: 32 }, microbatches: 2, batch_per_gpu: 4 }),
        decode("decode", { ...batch, gpus: 320, attention: { tp: 4, sp: true, dp: 80 }, moe: { ep: 320, redundant_experts: 64, shared_as_routed: true }, microbatches: 2, batch_per_gpu: 128, mtp_speculation: 1 }),
      ],
    });
    const checked = checkDocuments([toDocument(value, "v3.ts")]);
    expect(checked.diagnostics).toEqual([]);
    expect(checked.spec).toEqual(referenceSpec("specs/deepseek-v3.dsv3"));
    // The same through the package's API, and through the text language.
    expect(checkSpecValue(value).spec).toEqual(checked.spec);
    expect(referenceSpecText(printDocument(toDocument(value)))).toEqual(checked.spec);
  });

  it("GPU presets have the prelude's figures: `gpu: H800` and a copy of H800 check the same", () => {
    for (const [name, gpu] of Object.entries(GPU_PRESETS)) {
      const byName = readTsSpec("case.ts", tsSpec({ imports: `import { cluster, ${name}, mla, model, moe, spec, training } from "dsv3";` }).replace("gpu: H800", `gpu: ${name}`));
      const copy = spec({
        model: model("tiny", {
          vocab: 512, hidden: 64, layers: 2,
          attention: mla({ heads: 4, q_lora_rank: null, kv_lora_rank: 16, qk_nope_dim: 8, qk_rope_dim: 4, v_head_dim: 8 }),
          ffn: moe({ routed_experts: 8, experts_per_token: 2, intermediate: 32 }),
        }),
        precision: { mode: "bf16" },
        cluster: cluster({ nodes: 1, gpus_per_node: 8, gpu: { ...gpu }, nvlink: "160 GB/s", infiniband: "50 GB/s" }),
        schedules: [training("train", { microbatches: 4, dp: 8, ep: 8, seq_len: 128, global_batch: 32 })],
      });
      const a = checkDocuments([byName.document!]).spec!;
      const b = checkDocuments([toDocument(copy)]).spec!;
      expect(b.cluster.gpu).toEqual(a.cluster.gpu);
      expect(a.cluster.gpu.name).toBe(name);
    }
  });

  it("toDocument refuses what no spec can hold", () => {
    const base = spec({} as never);
    expect(() => toDocument({ ...base, fields: { precision: { mode: "bf16", scale_max: Number.NaN } } } as never)).toThrow(/NaN/);
    expect(() => toDocument({ ...base, fields: { precision: { mode: () => "bf16" } } } as never)).toThrow(/function/);
    expect(() => toDocument({ ...base, fields: { schedules: [model("m", {} as never)] } } as never)).toThrow(/DSV3001/);
  });

  it("the unit lists match the language's units", () => {
    const byDimension = (d: string): string[] => [...UNITS].filter(([, u]) => u.dimension === d).map(([k]) => k).sort();
    expect([...BYTE_UNITS].sort()).toEqual(byDimension("bytes"));
    expect([...BANDWIDTH_UNITS].sort()).toEqual(byDimension("bytes/s"));
    expect([...FLOP_RATE_UNITS].sort()).toEqual(byDimension("FLOP/s"));
    expect([...DURATION_UNITS].sort()).toEqual(byDimension("seconds"));
  });
});

// ── Types: what an editor flags ─────────────────────────────────────────────────────────────────
describe("the builder types (TypeScript compiler, real type checking)", () => {
  const root = process.cwd();
  const project = new Project({
    compilerOptions: {
      strict: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
      noEmit: true, skipLibCheck: true, types: [], lib: ["lib.es2023.d.ts"], paths: { dsv3: [path.join(root, "dsl/ts/builders.ts")] },
    },
    skipAddingFilesFromTsConfig: true,
  });
  const typeErrors = (name: string, text: string): { line: number; message: string }[] => {
    const file = project.createSourceFile(path.join(root, FIXTURES, `__typecheck_${name}.ts`), text, { overwrite: true });
    return file.getPreEmitDiagnostics().map((d) => ({ line: d.getLineNumber() ?? 0, message: ts.flattenDiagnosticMessageText(d.getMessageText() as string | ts.DiagnosticMessageChain, " ") }));
  };
  const v3 = readFileSync(V3_TS, "utf8");
  const lineOf = (text: string, needle: string): number => text.slice(0, text.indexOf(needle)).split("\n").length;

  it("accept the V3 fixture and the exported V3 spec", async () => {
    expect(typeErrors("v3", v3)).toEqual([]);
    expect(typeErrors("exported", await exportTs(referenceSpec("specs/deepseek-v3.dsv3")))).toEqual([]);
  });

  it("flag a wrong unit and an unknown pipeline kind at their lines", () => {
    const bad = v3.replace('nvlink: "160 GB/s"', 'nvlink: "160 Gb/s"').replace('pipeline: "dualpipe"', 'pipeline: "dualpipe2"');
    const errors = typeErrors("bad", bad);
    expect(errors.length).toBeGreaterThanOrEqual(2);
    expect(errors.map((e) => e.line)).toEqual(expect.arrayContaining([lineOf(bad, '"160 Gb/s"'), lineOf(bad, '"dualpipe2"')]));
    expect(errors.find((e) => e.line === lineOf(bad, '"dualpipe2"'))?.message).toMatch(/dualpipe/);
  });

  it("follow the checker's vocabulary: the same keys, required where it requires them, the same enum members", () => {
    const builders = project.addSourceFileAtPath(path.join(root, "dsl/ts/builders.ts"));
    const pairs: [string, BlockDef, string[]][] = [
      ["ModelFields", MODEL, ["attention"]],
      ["MlaFields", ATTENTION_VARIANTS.mla!, []],
      ["MhaFields", ATTENTION_VARIANTS.mha!, []],
      ["RopeFields", ATTENTION_VARIANTS.mla!.blocks.rope!, []],
      ["YarnFields", ATTENTION_VARIANTS.mla!.blocks.rope!.blocks.yarn!, []],
      ["DenseFields", FFN_VARIANTS.dense!, []],
      ["MoeFields", FFN_VARIANTS.moe!, []],
      ["GateFields", FFN_VARIANTS.moe!.blocks.gate!, []],
      ["LayerPatternFields", MODEL.blocks.layer_pattern!, []],
      ["MtpFields", MODEL.blocks.mtp!, []],
      ["PrecisionFields", PRECISION, []],
      ["ActivationCacheFields", PRECISION.blocks.activation_cache!, []],
      ["CacheExceptionFields", PRECISION.blocks.activation_cache!.blocks.swiglu_input!, []],
      ["GpuFields", GPU, []],
      ["ClusterFields", CLUSTER, ["gpu"]],
      ["TrainingFields", TRAINING, []],
      ["ServingFields", PREFILL, []],
      ["ServingFields", DECODE, []],
      ["ServingAttentionFields", PREFILL.blocks.attention!, []],
      ["ServingMoeFields", PREFILL.blocks.moe!, []],
    ];
    for (const [name, def, requiredBlocks] of pairs) {
      const props = builders.getInterfaceOrThrow(name).getProperties();
      const keys = [...Object.keys(def.attrs), ...Object.keys(def.blocks)].sort();
      expect(props.map((p) => p.getName()).sort(), name).toEqual(keys);
      for (const p of props) {
        const attr = def.attrs[p.getName()];
        const required = attr ? attr.required === true : requiredBlocks.includes(p.getName());
        expect(`${name}.${p.getName()} ${p.hasQuestionToken() ? "optional" : "required"}`).toBe(`${name}.${p.getName()} ${required ? "required" : "optional"}`);
        if (attr?.type.t === "enum" || attr?.type.t === "enum-list") {
          let type = p.getType().getNonNullableType();
          if (type.isArray() || type.getArrayElementType()) type = type.getArrayElementType()!;
          if (type.isObject() && type.getText().startsWith("readonly ")) type = type.getTypeArguments()[0] ?? type;
          const members = (type.isUnion() ? type.getUnionTypes() : [type]).map((t) => t.getLiteralValue());
          expect(members.map(String).sort(), `${name}.${p.getName()}`).toEqual([...attr.type.values].sort());
        }
      }
    }
  });

  it("keep the package entry light: index.ts loads the reader and the exporter only on demand", () => {
    const index = project.addSourceFileAtPath(path.join(root, "index.ts"));
    const eager = [...index.getImportDeclarations(), ...index.getExportDeclarations()]
      .filter((d) => !d.isTypeOnly())
      .map((d) => d.getModuleSpecifierValue() ?? "");
    expect(eager.filter((m) => /read-ts-spec|export-ts|check-ts-spec|ts-morph|prettier/.test(m))).toEqual([]);
    for (const name of ["spec", "model", "mla", "mha", "gqa", "dense", "moe", "cluster", "training", "prefill", "decode", "H800", "H100", "H200", "toDocument", "exportTs", "checkTsSpec"]) {
      expect(index.getExportedDeclarations().has(name), name).toBe(true);
    }
  });

  it("export every type name a spec may import", () => {
    const builders = project.addSourceFileAtPath(path.join(root, "dsl/ts/builders.ts"));
    const exported = builders.getExportedDeclarations();
    for (const name of DSL_TYPE_NAMES) expect(exported.has(name), name).toBe(true);
  });
});

// ── Round trip: Spec → exportTs → readTsSpec → checker → the same Spec ──────────────────────────

async function roundTrip(spec: Spec): Promise<string> {
  const text = await exportTs(spec, { source: "gen.dsv3" });
  const back = checkTs("exported.ts", text);
  expect(back.diagnostics).toEqual([]);
  expect(back.spec).toEqual(spec);
  return text;
}

describe("dsv3 export --to ts", () => {
  const full = specFiles("specs")
    .map((f) => ({ f, r: checkSpecFile(f) }))
    .filter(({ r }) => r.spec !== null && r.diagnostics.some((d) => d.code === "DSV2006") === false);

  it("round-trips every spec in specs/ to the identical Spec", async () => {
    expect(full.map(({ f }) => f)).toEqual(expect.arrayContaining([path.join("specs", "deepseek-v3.dsv3"), path.join("specs", "tiny.dsv3"), path.join("specs", "deepseek-v2-lite.dsv3")]));
    for (const { r } of full) await roundTrip(r.spec!);
  });

  it("is deterministic and already prettier-formatted", async () => {
    for (const { r } of full) {
      const a = await exportTs(r.spec!);
      const b = await exportTs(structuredClone(r.spec!));
      expect(b).toBe(a);
      expect(await prettier.format(a, { parser: "typescript" })).toBe(a);
    }
  });

  it("writes the V3 spec with builders, a GPU preset and quantity strings", async () => {
    const text = await exportTs(referenceSpec("specs/deepseek-v3.dsv3"), { source: "specs/deepseek-v3.dsv3" });
    expect(text).toMatchSnapshot();
  });

  it("round-trips generated valid specs (Spec → .ts → Spec is the identity)", async () => {
    await fc.assert(
      fc.asyncProperty(validSpecText, async (text) => {
        const first = checkSpecFile("gen.dsv3", noImports, text);
        expect(first.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
        const exported = await roundTrip(first.spec!);
        expect(await prettier.format(exported, { parser: "typescript" })).toBe(exported);
      }),
      { numRuns: 60 },
    );
  });
});
