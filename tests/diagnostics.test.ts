/**
 * Every diagnostic code in the catalog, triggered by a small input, with its full rendered message
 * (file:line:col, the source line with its caret, the fix) snapshotted. The table below must cover
 * the catalog exactly (but for the families delegated below): a code added without a case fails.
 *
 * Checker codes (DSV1xxx–DSV5xxx) edit one small valid spec (`BASE`) in memory; imported files come
 * from an in-memory reader. Each case must report its code and nothing else, but for what it lists in
 * `also`, so a rule that starts to double-report fails here. Command-line codes (DSV9xxx) run `runCli`
 * in-process against temporary directories, whose paths are replaced by `<tmp>` in the snapshots.
 * The TypeScript-spec, Hugging Face and formatter families (6xxx–8xxx) are covered by their own
 * suites; this file checks that each of their codes appears there.
 */
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkSpecFile } from "../compiler/check/index.js";
import { runCli, USAGE } from "../cli/main.js";
import { CATALOG, type DiagnosticCode } from "../dsl/diagnostic-catalog.js";
import { renderDiagnostic } from "../dsl/diagnostic.js";
import type { SourceReader } from "../dsl/load.js";
import { MAX_NESTING, MAX_SYNTAX_ERRORS, MAX_SOURCE_BYTES } from "../dsl/parser.js";
import { MAX_SPREAD_DEPTH } from "../compiler/check/read-blocks.js";

/** A small, valid spec: 4 layers (1 dense, 3 MoE), 16 H800s, one DualPipe training schedule. */
const BASE = `model "tiny" {
  vocab = 1000
  hidden = 256
  layers = 4
  dense_layers = 1
  attention mla {
    heads = 8
    q_lora_rank = none
    kv_lora_rank = 64
    qk_nope_dim = 32
    qk_rope_dim = 16
    v_head_dim = 32
  }
  ffn dense {
    intermediate = 512
  }
  ffn moe {
    routed_experts = 16
    shared_experts = 1
    experts_per_token = 2
    intermediate = 128
    gate {
      groups = 4
      top_groups = 2
    }
  }
  mtp {
    depth = 1
  }
}

precision {
  mode = fp8
}

cluster "c16" {
  nodes = 2
  gpus_per_node = 8
  gpu = H800
  nvlink = 160 GB/s
  infiniband = 50 GB/s
}

training train {
  pipeline = dualpipe
  pp = 2
  microbatches = 4
  ep = 8
  seq_len = 1024
  global_batch = 64
}
`;

/** A serving schedule that fits BASE (8 GPUs, EP8 over 16 experts). */
const DECODE = `
decode serve {
  gpus = 8
  batch_per_gpu = 4
  seq_len = 1024
}
`;

/** Replace each `[from, to]` in `text`; every `from` must occur exactly once. */
function edit(text: string, ...edits: readonly (readonly [string, string])[]): string {
  let out = text;
  for (const [from, to] of edits) {
    const at = out.indexOf(from);
    if (at < 0 || out.indexOf(from, at + 1) >= 0) throw new Error(`edit: '${from}' must occur exactly once`);
    out = out.slice(0, at) + to + out.slice(at + from.length);
  }
  return out;
}

interface SpecCase {
  code: DiagnosticCode;
  what: string;
  /** The entry file's text (named case.dsv3). */
  text: string;
  /** Other files the in-memory reader serves, by path. */
  files?: Readonly<Record<string, string>>;
  /** Other codes this input unavoidably reports too. */
  also?: readonly DiagnosticCode[];
}

interface CliCase {
  code: DiagnosticCode;
  what: string;
  /** Prepares files under `dir` (a fresh temporary directory) and returns the argv. */
  run: (dir: string) => string[] | Promise<string[]>;
}

const SPEC_CASES: readonly SpecCase[] = [
  // ── 1xxx: lexical and syntax ──
  { code: "DSV1001", what: "a stray character", text: edit(BASE, ["  vocab = 1000\n", "  vocab = 1000;\n"]) },
  { code: "DSV1002", what: "an unterminated string", text: edit(BASE, ['model "tiny" {', 'model "tiny {']) },
  { code: "DSV1003", what: "an unterminated block comment", text: `${BASE}\n/* schedules for the\n   bigger cluster go here\n` },
  { code: "DSV1004", what: "a list without commas", text: edit(BASE, ["  mode = fp8\n", "  mode = fp8\n  keep_bf16 = [embedding output_head]\n"]) },
  { code: "DSV1005", what: "an unclosed brace", text: edit(BASE, ["    intermediate = 512\n  }\n", "    intermediate = 512\n"]) },
  { code: "DSV1006", what: "a trailing underscore in a number", text: edit(BASE, ["vocab = 1000", "vocab = 1_000_"]) },
  {
    code: "DSV1007",
    what: "nesting too deep",
    text: edit(BASE, ["  mode = fp8\n", `  mode = fp8\n  recompute = ${"[".repeat(MAX_NESTING + 1)}${"]".repeat(MAX_NESTING + 1)}\n`]),
  },
  {
    code: "DSV1008",
    what: "a file over the size limit",
    text: `// generated\n${"// padding padding padding padding padding padding padding padding padding\n".repeat(Math.ceil(MAX_SOURCE_BYTES / 75) + 1)}`,
  },
  { code: "DSV1009", what: "a comma after an attribute", text: edit(BASE, ["  vocab = 1000\n", "  vocab = 1000,\n"]) },
  {
    code: "DSV1010",
    what: "more syntax errors than the parser reads on",
    text: edit(BASE, ["  vocab = 1000\n", `  vocab = 1000\n  ${"... ".repeat(MAX_SYNTAX_ERRORS + 50)}\n`]),
    also: ["DSV1004"],
  },

  // ── 2xxx: names, structure, imports, presets ──
  { code: "DSV2001", what: "a misspelt block", text: edit(BASE, ["  attention mla {", "  attenton mla {"]) },
  { code: "DSV2002", what: "a misspelt attribute", text: edit(BASE, ["  hidden = 256\n", "  hiden = 256\n"]) },
  { code: "DSV2003", what: "an attribute set twice", text: edit(BASE, ["  layers = 4\n", "  layers = 4\n  layers = 5\n"]) },
  { code: "DSV2004", what: "two precision blocks", text: `${BASE}\nprecision {\n  mode = bf16\n}\n` },
  { code: "DSV2005", what: "a missing required attribute", text: edit(BASE, ["  vocab = 1000\n", ""]) },
  { code: "DSV2006", what: "no cluster block", text: edit(BASE, [BASE.slice(BASE.indexOf('cluster "c16"'), BASE.indexOf("training train")), ""]) },
  { code: "DSV2007", what: "an unknown GPU preset", text: edit(BASE, ["gpu = H800", "gpu = H900"]) },
  { code: "DSV2008", what: "two schedules with one name", text: `${BASE}\ntraining train {\n  pp = 1\n  microbatches = 8\n  seq_len = 1024\n  global_batch = 128\n}\n` },
  { code: "DSV2009", what: "an import of a missing file", text: `import "clusters/h800-16.dsv3"\n${BASE}` },
  {
    code: "DSV2010",
    what: "two files importing each other",
    text: `import "lib/cluster.dsv3"\n${edit(BASE, [BASE.slice(BASE.indexOf('cluster "c16"'), BASE.indexOf("training train")), ""])}`,
    files: { "lib/cluster.dsv3": `import "../case.dsv3"\n\n${BASE.slice(BASE.indexOf('cluster "c16"'), BASE.indexOf("training train"))}` },
  },
  { code: "DSV2011", what: "an unknown attention kind", text: edit(BASE, ["attention mla {", "attention mlx {"]) },
  { code: "DSV2012", what: "a schedule without a name", text: edit(BASE, ["training train {", "training {"]) },
  {
    code: "DSV2013",
    what: "a preset that spreads itself",
    text: `preset fast_links {\n  nvlink = 160 GB/s\n  ...fast_links\n}\n\n${edit(BASE, ["  nvlink = 160 GB/s\n", "  ...fast_links\n"])}`,
  },
  { code: "DSV2014", what: "a cluster without a GPU", text: edit(BASE, ["  gpu = H800\n", ""]) },
  {
    code: "DSV2015",
    what: "a chain of presets nested too deep",
    text: `${Array.from({ length: MAX_SPREAD_DEPTH + 1 }, (_, i) => `preset links${i} { ...links${i + 1} }`).join("\n")}\npreset links${MAX_SPREAD_DEPTH + 1} {\n  nvlink = 160 GB/s\n}\n\n${edit(BASE, ["  nvlink = 160 GB/s\n", "  ...links0\n"])}`,
  },

  // ── 3xxx: types, units, ranges ──
  { code: "DSV3001", what: "a word where a boolean is wanted", text: edit(BASE, ["  layers = 4\n", "  layers = 4\n  tie_embeddings = yes\n"]) },
  { code: "DSV3002", what: "a fractional layer count", text: edit(BASE, ["layers = 4", "layers = 4.5"]) },
  { code: "DSV3003", what: "gigabits instead of gigabytes", text: edit(BASE, ["nvlink = 160 GB/s", "nvlink = 160 Gb/s"]) },
  { code: "DSV3004", what: "a size where a bandwidth is wanted", text: edit(BASE, ["infiniband = 50 GB/s", "infiniband = 50 GB"]) },
  { code: "DSV3005", what: "zero layers", text: edit(BASE, ["layers = 4", "layers = 0"]) },
  { code: "DSV3006", what: "a misspelt pipeline kind", text: edit(BASE, ["pipeline = dualpipe", "pipeline = dual_pipe"]) },
  { code: "DSV3007", what: "a backwards layer range", text: edit(BASE, ["  dense_layers = 1\n", "  layer_pattern {\n    dense = 0\n    moe = 3..1\n  }\n"]) },
  { code: "DSV3008", what: "a bandwidth without a unit", text: edit(BASE, ["nvlink = 160 GB/s", "nvlink = 160"]) },
  { code: "DSV3009", what: "a part listed twice", text: edit(BASE, ["  mode = fp8\n", "  mode = fp8\n  recompute = [rmsnorm, swiglu, rmsnorm]\n"]) },

  // ── 4xxx: model and precision rules ──
  { code: "DSV4001", what: "overlapping layer runs", text: edit(BASE, ["  dense_layers = 1\n", "  layer_pattern {\n    dense = 0..1\n    moe = 1..3\n  }\n"]) },
  { code: "DSV4002", what: "a gap in the layer pattern", text: edit(BASE, ["  dense_layers = 1\n", "  layer_pattern {\n    dense = 0\n    moe = 2..3\n  }\n"]) },
  { code: "DSV4003", what: "a layer past the end", text: edit(BASE, ["  dense_layers = 1\n", "  layer_pattern {\n    dense = 0\n    moe = 1..4\n  }\n"]) },
  { code: "DSV4004", what: "dense layers without a dense FFN", text: edit(BASE, ["  ffn dense {\n    intermediate = 512\n  }\n", ""]) },
  { code: "DSV4005", what: "more top groups than groups", text: edit(BASE, ["top_groups = 2", "top_groups = 8"]) },
  { code: "DSV4006", what: "experts not divisible by groups", text: edit(BASE, ["groups = 4\n", "groups = 3\n"]) },
  { code: "DSV4007", what: "top-k beyond the reachable experts", text: edit(BASE, ["experts_per_token = 2", "experts_per_token = 9"]) },
  {
    code: "DSV4008",
    what: "top2_sum with one expert per group",
    text: edit(BASE, ["groups = 4\n", "groups = 16\n"], ["top_groups = 2\n", "top_groups = 4\n      group_score = top2_sum\n"]),
  },
  {
    code: "DSV4009",
    what: "GQA heads not divisible by kv_heads",
    text: edit(BASE, [BASE.slice(BASE.indexOf("  attention mla {"), BASE.indexOf("  ffn dense")), "  attention gqa {\n    heads = 8\n    kv_heads = 3\n    head_dim = 32\n  }\n"]),
  },
  {
    code: "DSV4010",
    what: "MHA with fewer kv_heads",
    text: edit(BASE, [BASE.slice(BASE.indexOf("  attention mla {"), BASE.indexOf("  ffn dense")), "  attention mha {\n    heads = 8\n    kv_heads = 2\n    head_dim = 32\n  }\n"]),
  },
  { code: "DSV4011", what: "an odd RoPE width", text: edit(BASE, ["qk_rope_dim = 16", "qk_rope_dim = 15"]) },
  { code: "DSV4012", what: "tile and block disagree along K", text: edit(BASE, ["  mode = fp8\n", "  mode = fp8\n  activation_tile = 1x64\n"]) },
  { code: "DSV4013", what: "a promotion interval that does not divide the tile", text: edit(BASE, ["  mode = fp8\n", "  mode = fp8\n  promotion_interval = 96\n"]) },
  { code: "DSV4014", what: "an unused dense FFN", text: edit(BASE, ["dense_layers = 1", "dense_layers = 0"]) },
  {
    code: "DSV4016",
    what: "YaRN that does not extend the context",
    text: edit(BASE, ["    v_head_dim = 32\n", "    v_head_dim = 32\n    rope {\n      yarn {\n        factor = 4\n        original_context = 4096\n      }\n    }\n"]),
  },
  {
    code: "DSV4017",
    what: "bias balancing on a softmax gate",
    text: edit(BASE, ["      groups = 4\n", "      scoring = softmax\n      bias_balancing {\n        update_speed = 0.001\n      }\n      groups = 4\n"]),
  },
  { code: "DSV4018", what: "a non-square weight block", text: edit(BASE, ["  mode = fp8\n", "  mode = fp8\n  weight_block = 64x128\n"]) },

  // ── 5xxx: cluster and schedule rules ──
  { code: "DSV5001", what: "more GPUs than the cluster has", text: edit(BASE, ["  ep = 8\n", "  dp = 16\n  ep = 8\n"]) },
  { code: "DSV5002", what: "heads not divisible by tp", text: edit(BASE, ["heads = 8", "heads = 6"], ["  ep = 8\n", "  tp = 4\n  ep = 8\n"]) },
  { code: "DSV5003", what: "experts not divisible by ep", text: edit(BASE, ["routed_experts = 16", "routed_experts = 12"]) },
  { code: "DSV5004", what: "ep larger than a stage", text: edit(BASE, ["ep = 8", "ep = 16"]) },
  {
    code: "DSV5005",
    what: "DualPipe with an odd number of stages",
    text: edit(BASE, ["pp = 2", "pp = 3"], ["microbatches = 4", "microbatches = 6"], ["  ep = 8\n", "  dp = 4\n  ep = 4\n"], ["global_batch = 64", "global_batch = 48"]),
  },
  { code: "DSV5006", what: "DualPipe with too few micro-batches", text: edit(BASE, ["microbatches = 4", "microbatches = 2"], ["global_batch = 64", "global_batch = 32"]) },
  {
    code: "DSV5007",
    what: "more DualPipeV chunks than layers",
    text: edit(BASE, ["pipeline = dualpipe", "pipeline = dualpipev"], ["pp = 2", "pp = 4"], ["microbatches = 4", "microbatches = 8"], ["ep = 8", "ep = 4"]),
  },
  { code: "DSV5008", what: "node_limit beyond the EP group", text: edit(BASE, ["  ep = 8\n", "  ep = 8\n  node_limit = 2\n"]) },
  { code: "DSV5009", what: "a batch that does not split", text: edit(BASE, ["global_batch = 64", "global_batch = 60"]) },
  { code: "DSV5010", what: "every SM for communication", text: edit(BASE, ["  ep = 8\n", "  ep = 8\n  comm_sms = 132\n"]) },
  { code: "DSV5011", what: "speculation deeper than MTP", text: edit(`${BASE}${DECODE}`, ["  seq_len = 1024\n}\n", "  seq_len = 1024\n  mtp_speculation = 2\n}\n"]) },
  { code: "DSV5012", what: "attention tp·dp not matching gpus", text: edit(`${BASE}${DECODE}`, ["  gpus = 8\n", "  gpus = 8\n  attention {\n    tp = 2\n    dp = 2\n  }\n"]) },
  { code: "DSV5013", what: "ep not dividing the serving GPUs", text: edit(`${BASE}${DECODE}`, ["  gpus = 8\n", "  gpus = 8\n  moe {\n    ep = 16\n  }\n"]) },
  { code: "DSV5014", what: "sequence parallelism without TP", text: edit(BASE, ["  ep = 8\n", "  ep = 8\n  sp = true\n"]) },
  { code: "DSV5015", what: "a sequence longer than the model's context", text: edit(BASE, ["  seq_len = 1024\n  global", "  seq_len = 8192\n  global"]) },
  {
    code: "DSV5016",
    what: "ep on a dense model",
    text: edit(BASE, ["  dense_layers = 1\n", ""], [BASE.slice(BASE.indexOf("  ffn moe {"), BASE.indexOf("  mtp {")), ""]),
  },
  {
    code: "DSV5017",
    what: "shared_as_routed without shared experts",
    text: edit(`${BASE}${DECODE}`, ["shared_experts = 1", "shared_experts = 0"], ["  gpus = 8\n", "  gpus = 8\n  moe {\n    shared_as_routed = true\n  }\n"]),
  },
  { code: "DSV5018", what: "fewer micro-batches than 1F1B stages", text: edit(BASE, ["pipeline = dualpipe", "pipeline = 1f1b"], ["microbatches = 4", "microbatches = 1"]) },
  { code: "DSV5020", what: "ZeRO without data parallelism", text: edit(BASE, ["  ep = 8\n", "  dp = 1\n  ep = 1\n  zero = 1\n"]) },
];

/** A spec with no schedule, for `compile`. */
const NO_SCHEDULE = BASE.slice(0, BASE.indexOf("training train"));

async function compileInto(dir: string, out: string): Promise<void> {
  writeFileSync(join(dir, "tiny.dsv3"), BASE);
  const sink = { stdout: () => {}, stderr: (t: string) => { throw new Error(`compile failed: ${t}`); } };
  if ((await runCli(["compile", join(dir, "tiny.dsv3"), "-o", out], sink)) !== 0) throw new Error("compile failed");
}

const CLI_CASES: readonly CliCase[] = [
  {
    code: "DSV9012",
    what: "an expert-load file that is not JSON",
    run: (dir) => {
      writeFileSync(join(dir, "load.json"), "[[1, 2, 3,\n");
      return ["eplb", "--load", join(dir, "load.json"), "--replicas", "4", "--groups", "1", "--nodes", "1", "--gpus", "2"];
    },
  },
  {
    code: "DSV9013",
    what: "more GPUs than physical expert slots divide over",
    run: (dir) => {
      writeFileSync(join(dir, "load.json"), "[[10, 20, 30, 40]]\n");
      return ["eplb", "--load", join(dir, "load.json"), "--replicas", "6", "--groups", "1", "--nodes", "1", "--gpus", "4"];
    },
  },
  { code: "DSV9001", what: "a spec that does not exist", run: (dir) => ["check", join(dir, "missing.dsv3")] },
  {
    code: "DSV9002",
    what: "a misspelt --schedule",
    run: (dir) => {
      writeFileSync(join(dir, "tiny.dsv3"), BASE);
      return ["stats", join(dir, "tiny.dsv3"), "--schedule", "trian"];
    },
  },
  {
    code: "DSV9003",
    what: "compiling over a folder that is not a bundle",
    run: (dir) => {
      writeFileSync(join(dir, "tiny.dsv3"), BASE);
      mkdirSync(join(dir, "src"));
      writeFileSync(join(dir, "src", "notes.txt"), "keep me\n");
      return ["compile", join(dir, "tiny.dsv3"), "--schedule", "train", "-o", join(dir, "src")];
    },
  },
  {
    code: "DSV9004",
    what: "a bundle with a file deleted",
    run: async (dir) => {
      await compileInto(dir, join(dir, "bundle"));
      unlinkSync(join(dir, "bundle", "stats.json"));
      return ["verify", join(dir, "bundle")];
    },
  },
  {
    code: "DSV9005",
    what: "a bundle with a file edited",
    run: async (dir) => {
      await compileInto(dir, join(dir, "bundle"));
      const spec = join(dir, "bundle", "spec.json");
      writeFileSync(spec, readFileSync(spec, "utf8").replace('"name": "tiny"', '"name": "tinY"')); // same size, new hash
      return ["verify", join(dir, "bundle")];
    },
  },
  {
    code: "DSV9006",
    what: "a bundle with a file added",
    run: async (dir) => {
      await compileInto(dir, join(dir, "bundle"));
      writeFileSync(join(dir, "bundle", "notes.txt"), "added by hand\n");
      return ["verify", join(dir, "bundle")];
    },
  },
  {
    code: "DSV9007",
    what: "a bundle whose manifest was reformatted",
    run: async (dir) => {
      await compileInto(dir, join(dir, "bundle"));
      const manifest = join(dir, "bundle", "manifest.json");
      writeFileSync(manifest, JSON.stringify(JSON.parse(readFileSync(manifest, "utf8"))));
      return ["verify", join(dir, "bundle")];
    },
  },
  {
    code: "DSV9008",
    what: "an output path under a regular file",
    run: (dir) => {
      writeFileSync(join(dir, "tiny.dsv3"), BASE);
      writeFileSync(join(dir, "out"), "a file, not a folder\n");
      return ["compile", join(dir, "tiny.dsv3"), "-o", join(dir, "out", "bundle")];
    },
  },
  { code: "DSV9009", what: "a misspelt command", run: () => ["chekc", "tiny.dsv3"] },
  {
    code: "DSV9010",
    what: "compiling a spec without schedules",
    run: (dir) => {
      writeFileSync(join(dir, "model-only.dsv3"), NO_SCHEDULE);
      return ["compile", join(dir, "model-only.dsv3"), "-o", join(dir, "bundle")];
    },
  },
  {
    code: "DSV9011",
    what: "a file that is not .dsv3",
    run: (dir) => {
      writeFileSync(join(dir, "spec.txt"), BASE);
      return ["check", join(dir, "spec.txt")];
    },
  },
];

/** An in-memory reader: `files` by path, else ENOENT as the disk reader would throw it. */
function memoryReader(files: Readonly<Record<string, string>>): SourceReader {
  return (file) => {
    const text = files[file];
    if (text === undefined) throw Object.assign(new Error(`ENOENT: no such file, open '${file}'`), { code: "ENOENT" });
    return text;
  };
}

/**
 * Families that belong to another front end. Each has its own suite, with its own case per code, its
 * snapshots and its own check that it covers its family; here it is only checked that every code of
 * the family is triggered there.
 */
const DELEGATED: Readonly<Record<string, string>> = {
  DSV55: "tests/plan.test.ts", // plans (memory, KV cache, expert placement)
  DSV6: "tests/ts-spec.test.ts", // TypeScript specs
  DSV7: "tests/hf.test.ts", // Hugging Face configs
  DSV8: "tests/format.test.ts", // the formatter
  DSV91: "tests/checkpoint.test.ts", // checkpoints (safetensors, HF tensor names, shards)
  DSV92: "tests/simulate.test.ts", // simulation and reports
  DSV93: "tests/cuda.test.ts", // the CUDA backend
  DSV94: "tests/distributed.test.ts", // distributed execution on virtual ranks
};

function familySuite(code: string): string | undefined {
  return DELEGATED[code.slice(0, 5)] ?? DELEGATED[code.slice(0, 4)];
}

function codesIn(list: readonly { code: string }[]): string[] {
  return [...new Set(list.map((d) => d.code))].sort();
}

describe("every catalog code is covered", () => {
  it("the test table has exactly the codes of the catalog (but for the delegated families)", () => {
    const tested = [...SPEC_CASES, ...CLI_CASES].map((c) => c.code).sort();
    expect(new Set(tested).size).toBe(tested.length); // one case per code
    expect(tested).toEqual(Object.keys(CATALOG).filter((c) => familySuite(c) === undefined).sort());
  });

  it("every code of a delegated family is triggered in its family's suite", () => {
    for (const code of Object.keys(CATALOG)) {
      const suite = familySuite(code);
      if (suite !== undefined) expect(readFileSync(suite, "utf8"), `${code} in ${suite}`).toContain(code);
    }
  });

  it("the base spec is valid", () => {
    const result = checkSpecFile("case.dsv3", memoryReader({}), BASE);
    expect(result.diagnostics).toEqual([]);
    expect(result.spec).not.toBeNull();
  });
});

describe("checker diagnostics", () => {
  for (const c of SPEC_CASES) {
    it(`${c.code}: ${c.what}`, () => {
      const result = checkSpecFile("case.dsv3", memoryReader(c.files ?? {}), c.text);
      const codes = codesIn(result.diagnostics);
      expect(codes).toContain(c.code);
      // Nothing else is reported, but for what the case says this input unavoidably reports too.
      expect(codes).toEqual([...new Set([c.code, ...(c.also ?? [])])].sort());
      if (CATALOG[c.code].severity === "error") expect(result.spec).toBeNull();
      const rendered = result.diagnostics.filter((d) => d.code === c.code).map((d) => renderDiagnostic(d, result.sources));
      expect(rendered.join("\n\n")).toMatchSnapshot();
    });
  }
});

describe("command-line diagnostics", () => {
  let root: string;
  beforeAll(() => {
    root = realpathSync(mkdtempSync(join(tmpdir(), "dsv3-diagnostics-")));
  });
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
  });

  for (const [i, c] of CLI_CASES.entries()) {
    it(`${c.code}: ${c.what}`, async () => {
      const dir = join(root, `case-${i}`);
      mkdirSync(dir);
      const argv = await c.run(dir);
      let stdout = "";
      let stderr = "";
      const exit = await runCli(argv, { stdout: (t) => { stdout += t; }, stderr: (t) => { stderr += t; } });
      expect(exit).not.toBe(0);
      const codes = [...stderr.matchAll(/\b(?:error|warning) (DSV\d{4}):/g)].map((m) => m[1]);
      expect(codes).toContain(c.code);
      expect(stdout).toBe("");
      // Paths, the usage text and hashes (they change with the Spec's JSON) are not what this pins down.
      const normalised = stderr.split(dir).join("<tmp>").split(USAGE).join("<usage>\n").replace(/\b[0-9a-f]{64}\b/g, "<sha256>");
      expect(normalised).not.toContain(tmpdir());
      expect(normalised).toMatchSnapshot();
    });
  }
});
