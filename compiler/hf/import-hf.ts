/**
 * Hugging Face config.json → .dsv3 (`dsv3 import-hf`), for the DeepSeek-V2/V3 family of configs
 * (`DeepseekV2ForCausalLM`, `DeepseekV3ForCausalLM`, `DeepseekV32ForCausalLM` and models that reuse
 * them): the config is read with positions, mapped field by field onto the AST of a `model` block,
 * a `precision` block, a default cluster and, on request, two single-node schedules, then printed
 * in canonical form with a header naming the source config.
 *
 * Every node of the AST carries the span of the JSON key it came from, so the checker, run on the
 * AST before it is printed, reports its problems at the config's own keys (`"topk_group"`, not a line
 * of a file that does not exist yet). The text is returned only when nothing is an error.
 *
 * What the config does not say is stated, never guessed silently:
 * - A field absent from the config takes the default of the DeepSeek remote-code config class of its
 *   family (V2: softmax, greedy, no groups, no shared experts, first_k_dense_replace 0; V3: sigmoid,
 *   noaux_tc, 8 groups / top 4, one shared expert, first_k_dense_replace 3, routed_scaling_factor 2.5),
 *   except `num_nextn_predict_layers`, which defaults to 0 (the Hugging Face modelling code builds no
 *   MTP module). The shape fields are required: a missing one is an error naming it.
 * - What the format cannot carry is written as an assumption with a comment in the generated file:
 *   the bias update speed of `noaux_tc` (0.001) and the MTP loss weight (0.3), both the DeepSeek-V3
 *   report's; and the cluster (one node of 8 H800 GPUs).
 * - A field dsv3 does not model is a warning naming it (DSV7007); known fields that carry nothing for
 *   dsv3 (token ids, dtype, versions, initialisation, dropout) are consumed silently (`IGNORED`).
 *
 * HF → dsv3: topk_method noaux_tc ⇒ gate bias_balancing + group_score top2_sum; greedy ⇒ groups 1;
 * group_limited_greedy ⇒ group_score max over n_group / topk_group; norm_topk_prob ⇒ normalize_topk;
 * aux_loss_alpha (seq_aux) ⇒ seq_aux_loss_weight; layer i is MoE iff n_routed_experts is set,
 * i ≥ first_k_dense_replace and i mod moe_layer_freq = 0 (⇒ dense_layers or a layer_pattern);
 * num_nextn_predict_layers ⇒ mtp depth; rope_scaling yarn ⇒ rope { yarn }; q_lora_rank null ⇒ none;
 * hidden_act silu ⇒ swiglu; quantization_config fp8 e4m3 128×128 ⇒ precision mode fp8, else bf16.
 */
import path from "node:path";
import type { Attribute, Block, Document, Entry, Label, NumberValue, Value } from "../../dsl/ast.js";
import { DiagnosticSink, sortDiagnostics, type Diagnostic } from "../../dsl/diagnostic.js";
import { MAX_SOURCE_BYTES } from "../../dsl/parser.js";
import { printDocument } from "../../dsl/print.js";
import { LineIndex } from "../../dsl/line-index.js";
import type { Span } from "../../dsl/span.js";
import { checkDocuments } from "../check/index.js";
import { numberLiteral, quantityLiteral } from "../spec-to-ast.js";

export interface ImportHfOptions {
  /** The config's file name as shown to the user: diagnostics' spans and the header name it. */
  sourceName: string;
  /** Add a single-node training schedule and a decode schedule (`--with-schedules`). */
  withSchedules?: boolean;
}

export interface ImportHfResult {
  /** The .dsv3 text, or null when any diagnostic is an error. */
  text: string | null;
  /** Spans point into the config (file = `sourceName`), at the key concerned. */
  diagnostics: Diagnostic[];
}

/** Architectures whose configs dsv3 reads, and the family whose defaults fill absent fields. */
export const HF_ARCHITECTURES: Readonly<Record<string, Family>> = {
  DeepseekV2ForCausalLM: "v2",
  DeepseekV3ForCausalLM: "v3",
  DeepseekV32ForCausalLM: "v3",
};

/** `model_type` values accepted when a config has no `architectures`. */
const MODEL_TYPES: Readonly<Record<string, Family>> = { deepseek_v2: "v2", deepseek_v3: "v3", deepseek_v32: "v3" };

type Family = "v2" | "v3";

/** Assumptions for what the Hugging Face format cannot carry (see the module comment). */
export const ASSUMED_BIAS_UPDATE_SPEED = 0.001;
export const ASSUMED_MTP_LOSS_WEIGHT = 0.3;

/** The default cluster of an imported spec: one node of 8 H800 (TR §3.1 links). */
const DEFAULT_CLUSTER = { name: "h800-node", nodes: 1, gpusPerNode: 8, gpu: "H800", nvlinkBytesPerS: 160e9, infinibandBytesPerS: 50e9 } as const;

/** Top-level fields the importer maps. Anything neither here nor in IGNORED is warned about. */
const KNOWN = new Set([
  "architectures", "model_type", "_name_or_path",
  "vocab_size", "hidden_size", "num_hidden_layers", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings", "hidden_act",
  "num_attention_heads", "num_key_value_heads", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
  "rope_theta", "rope_scaling", "attention_bias",
  "intermediate_size", "moe_intermediate_size", "n_routed_experts", "n_shared_experts", "num_experts_per_tok",
  "scoring_func", "topk_method", "n_group", "topk_group", "norm_topk_prob", "routed_scaling_factor", "aux_loss_alpha", "seq_aux",
  "first_k_dense_replace", "moe_layer_freq", "num_nextn_predict_layers", "quantization_config",
]);

/**
 * Known Hugging Face fields that describe nothing dsv3 models (tokens, storage dtype, versions,
 * initialisation, dropout, caching, remote-code wiring, the expert-parallel size of the reference
 * code, a layout flag with the same result): consumed without a word.
 */
export const IGNORED = new Set([
  "bos_token_id", "eos_token_id", "pad_token_id", "torch_dtype", "dtype", "transformers_version", "auto_map", "initializer_range",
  "use_cache", "attention_dropout", "pretraining_tp", "ep_size", "rope_interleave", "head_dim", "output_attentions",
  "output_hidden_states", "return_dict", "use_return_dict", "torchscript", "_attn_implementation", "_commit_hash", "id2label",
  "label2id", "tokenizer_class",
]);

const ROPE_SCALING_KEYS = new Set(["type", "rope_type", "factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "mscale", "mscale_all_dim"]);
const QUANTIZATION_KEYS = new Set(["quant_method", "fmt", "weight_block_size", "activation_scheme", "scale_fmt"]);

/** Deepest JSON nesting read (a config has three levels). */
const MAX_JSON_DEPTH = 256;
/** Most layers an imported config may have (the language's own limit). */
const MAX_LAYERS = 4096;
const MAX_COUNT = 1 << 20;

// ── JSON with positions ─────────────────────────────────────────────────────────────────────────

interface JsonMember {
  key: string;
  keySpan: Span;
  value: JsonValue;
}

type JsonValue = { span: Span } & (
  | { kind: "object"; members: JsonMember[] }
  | { kind: "array"; items: JsonValue[] }
  | { kind: "string"; value: string }
  | { kind: "number"; value: number }
  | { kind: "boolean"; value: boolean }
  | { kind: "null" }
);

type JsonObject = Extract<JsonValue, { kind: "object" }>;

class JsonSyntaxError extends Error {
  constructor(message: string, readonly offset: number, readonly length: number) {
    super(message);
  }
}

/** A strict JSON (RFC 8259) reader that keeps the span of every key and value. */
class JsonReader {
  private pos = 0;
  private readonly lines: LineIndex;

  constructor(private readonly text: string, file: string) {
    this.lines = new LineIndex(file, text);
    if (text.charCodeAt(0) === 0xfeff) this.pos = 1; // a byte-order mark
  }

  span(offset: number, length: number): Span {
    return this.lines.span(offset, length);
  }

  read(): JsonValue {
    this.skipSpace();
    const value = this.value(0);
    this.skipSpace();
    if (this.pos < this.text.length) this.fail(`unexpected ${this.found()} after the end of the JSON value`);
    return value;
  }

  private fail(message: string, offset = this.pos, length = offset < this.text.length ? 1 : 0): never {
    throw new JsonSyntaxError(message, offset, length);
  }

  /** What is at the cursor, for messages. */
  private found(): string {
    if (this.pos >= this.text.length) return "end of file";
    const c = this.text.charCodeAt(this.pos);
    if (c < 32) return `character U+${c.toString(16).padStart(4, "0").toUpperCase()}`;
    return `'${this.text[this.pos]}'`;
  }

  private skipSpace(): void {
    for (;;) {
      const c = this.text.charCodeAt(this.pos);
      if (c === 32 || c === 9 || c === 10 || c === 13) this.pos++;
      else return;
    }
  }

  private value(depth: number): JsonValue {
    if (depth > MAX_JSON_DEPTH) this.fail(`nesting deeper than ${MAX_JSON_DEPTH} levels`);
    const start = this.pos;
    const c = this.text[this.pos];
    switch (c) {
      case "{": return this.object(depth);
      case "[": return this.array(depth);
      case '"': {
        const value = this.string();
        return { kind: "string", value, span: this.span(start, this.pos - start) };
      }
      case "t": case "f": case "n": {
        for (const [word, v] of [["true", true], ["false", false], ["null", null]] as const) {
          if (this.text.startsWith(word, this.pos)) {
            this.pos += word.length;
            const span = this.span(start, word.length);
            return v === null ? { kind: "null", span } : { kind: "boolean", value: v, span };
          }
        }
        return this.fail(`expected a value but found ${this.word()}`);
      }
      default:
        if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number();
        return this.fail(`expected a value but found ${/[A-Za-z]/.test(c ?? "") ? this.word() : this.found()}`);
    }
  }

  /** A bare word at the cursor (`NaN`, `True`), quoted for a message. */
  private word(): string {
    const m = /[A-Za-z_][A-Za-z0-9_]*/y;
    m.lastIndex = this.pos;
    const w = m.exec(this.text)?.[0];
    return w ? `'${w}'` : this.found();
  }

  private number(): JsonValue {
    const re = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
    re.lastIndex = this.pos;
    const m = re.exec(this.text);
    if (!m) this.fail(`invalid number: expected a digit after ${this.found()}`, this.pos);
    const raw = m[0];
    const next = this.text[this.pos + raw.length];
    if (next === "." || next === "e" || next === "E") this.fail(`invalid number '${raw}${next}': expected a digit after '${next}'`, this.pos, raw.length + 1);
    const start = this.pos;
    this.pos += raw.length;
    return { kind: "number", value: Number(raw), span: this.span(start, raw.length) };
  }

  private string(): string {
    const start = this.pos;
    this.pos++; // the opening quote
    let out = "";
    for (;;) {
      if (this.pos >= this.text.length) this.fail("unterminated string", start, 1);
      const ch = this.text[this.pos]!;
      const code = ch.charCodeAt(0);
      if (ch === '"') {
        this.pos++;
        return out;
      }
      if (code === 10 || code === 13) this.fail("unterminated string (a line break inside a string must be written \\n)", start, 1);
      if (code < 32) this.fail(`control character U+${code.toString(16).padStart(4, "0").toUpperCase()} inside a string`);
      if (ch !== "\\") {
        out += ch;
        this.pos++;
        continue;
      }
      const e = this.text[this.pos + 1];
      const simple: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
      if (e !== undefined && simple[e] !== undefined) {
        out += simple[e];
        this.pos += 2;
      } else if (e === "u" && /^[0-9A-Fa-f]{4}$/.test(this.text.slice(this.pos + 2, this.pos + 6))) {
        out += String.fromCharCode(parseInt(this.text.slice(this.pos + 2, this.pos + 6), 16));
        this.pos += 6;
      } else {
        this.fail(`invalid escape '\\${e ?? ""}' in a string`, this.pos, e === undefined ? 1 : 2);
      }
    }
  }

  private object(depth: number): JsonValue {
    const start = this.pos;
    this.pos++;
    const members: JsonMember[] = [];
    this.skipSpace();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return { kind: "object", members, span: this.span(start, this.pos - start) };
    }
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] !== '"') {
        this.fail(this.text[this.pos] === "}" ? "a comma before '}' (trailing commas are not JSON)" : `expected a property name in double quotes but found ${this.found()}`);
      }
      const keyStart = this.pos;
      const key = this.string();
      const keySpan = this.span(keyStart, this.pos - keyStart);
      this.skipSpace();
      if (this.text[this.pos] !== ":") this.fail(`expected ':' after the property name but found ${this.found()}`);
      this.pos++;
      this.skipSpace();
      members.push({ key, keySpan, value: this.value(depth + 1) });
      this.skipSpace();
      const c = this.text[this.pos];
      if (c === ",") {
        this.pos++;
        continue;
      }
      if (c === "}") {
        this.pos++;
        return { kind: "object", members, span: this.span(start, this.pos - start) };
      }
      this.fail(`expected ',' or '}' after a property value but found ${this.found()}`);
    }
  }

  private array(depth: number): JsonValue {
    const start = this.pos;
    this.pos++;
    const items: JsonValue[] = [];
    this.skipSpace();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return { kind: "array", items, span: this.span(start, this.pos - start) };
    }
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] === "]") this.fail("a comma before ']' (trailing commas are not JSON)");
      items.push(this.value(depth + 1));
      this.skipSpace();
      const c = this.text[this.pos];
      if (c === ",") {
        this.pos++;
        continue;
      }
      if (c === "]") {
        this.pos++;
        return { kind: "array", items, span: this.span(start, this.pos - start) };
      }
      this.fail(`expected ',' or ']' after a list item but found ${this.found()}`);
    }
  }
}

/** A JSON value described for a message: `the string "gelu"`, `the number 1.5`, `null`. */
function describeJson(v: JsonValue): string {
  switch (v.kind) {
    case "object": return "an object";
    case "array": return "a list";
    case "string": return `the string ${JSON.stringify(v.value.length > 40 ? `${v.value.slice(0, 40)}…` : v.value)}`;
    case "number": return `the number ${v.value}`;
    case "boolean": return String(v.value);
    case "null": return "null";
  }
}

/** A JSON value as a short literal for messages. */
function jsonLiteral(v: JsonValue): string {
  switch (v.kind) {
    case "object": return "{…}";
    case "array": return v.items.length <= 4 && v.items.every((i) => i.kind !== "object" && i.kind !== "array") ? `[${v.items.map(jsonLiteral).join(", ")}]` : "[…]";
    case "string": return JSON.stringify(v.value.length > 40 ? `${v.value.slice(0, 40)}…` : v.value);
    case "number": return String(v.value);
    case "boolean": return String(v.value);
    case "null": return "null";
  }
}

// ── Reading fields ──────────────────────────────────────────────────────────────────────────────

/** A value read from the config and where its key is (the object's `{` for a default). */
interface Field<T> {
  value: T;
  span: Span;
  /** Written in the config (not a default). */
  given: boolean;
}

type Kind = "int" | "number" | "bool" | "string" | "object" | "array";

const EXPECTED: Record<Kind, string> = {
  int: "a whole number",
  number: "a number",
  bool: "true or false",
  string: "a string",
  object: "an object",
  array: "a list",
};

type KindValue<K extends Kind> = K extends "int" | "number" ? number : K extends "bool" ? boolean : K extends "string" ? string : K extends "object" ? JsonObject : JsonValue[];

/** The members of one JSON object, read by key; `prefix` names nested keys (`rope_scaling.`). */
class ConfigObject {
  private readonly members = new Map<string, JsonMember>();
  /** Keys present with a value of the wrong type (already reported). */
  private readonly bad = new Set<string>();
  readonly start: Span;

  constructor(readonly node: JsonObject, readonly prefix: string, private readonly sink: DiagnosticSink) {
    this.start = { ...node.span, length: 1 };
    for (const m of node.members) {
      const earlier = this.members.get(m.key);
      if (earlier) this.sink.report("DSV7008", earlier.keySpan, { name: prefix + m.key, value: jsonLiteral(earlier.value), reason: "the key is given again later, and the last value counts" }, "remove one of them");
      this.members.set(m.key, m);
    }
  }

  keys(): string[] {
    return [...this.members.keys()];
  }

  member(key: string): JsonMember | undefined {
    return this.members.get(key);
  }

  /** Present in the config (null counts as present). */
  has(key: string): boolean {
    return this.members.has(key);
  }

  /**
   * The value of `key`: undefined when absent or of the wrong type (reported), null only when
   * `nullable` and the config says null.
   */
  get<K extends Kind>(key: string, kind: K, nullable: true): Field<KindValue<K> | null> | undefined;
  get<K extends Kind>(key: string, kind: K, nullable?: false): Field<KindValue<K>> | undefined;
  get<K extends Kind>(key: string, kind: K, nullable = false): Field<KindValue<K> | null> | undefined {
    const m = this.members.get(key);
    if (!m) return undefined;
    const v = m.value;
    if (v.kind === "null" && nullable) return { value: null, span: m.keySpan, given: true };
    let ok: unknown;
    switch (kind) {
      case "int": ok = v.kind === "number" && Number.isInteger(v.value) ? v.value : undefined; break;
      case "number": ok = v.kind === "number" ? v.value : undefined; break;
      case "bool": ok = v.kind === "boolean" ? v.value : undefined; break;
      case "string": ok = v.kind === "string" ? v.value : undefined; break;
      case "object": ok = v.kind === "object" ? v : undefined; break;
      case "array": ok = v.kind === "array" ? v.items : undefined; break;
    }
    if (ok === undefined) {
      const expected = EXPECTED[kind] + (nullable ? " or null" : "");
      this.sink.report("DSV7005", m.keySpan, { name: this.prefix + key, expected, found: describeJson(v) });
      this.bad.add(key);
      return undefined;
    }
    return { value: ok as KindValue<K>, span: m.keySpan, given: true };
  }

  /** `get`, or the default when absent (not when of the wrong type). */
  or<K extends Kind>(key: string, kind: K, fallback: KindValue<K>): Field<KindValue<K>> | undefined {
    if (!this.has(key)) return { value: fallback, span: this.start, given: false };
    return this.get(key, kind);
  }

  orNullable<K extends Kind>(key: string, kind: K, fallback: KindValue<K> | null): Field<KindValue<K> | null> | undefined {
    if (!this.has(key)) return { value: fallback, span: this.start, given: false };
    return this.get(key, kind, true);
  }

  /** `get`, reporting a missing key (DSV7004). */
  need<K extends Kind>(key: string, kind: K, why?: string): Field<KindValue<K>> | undefined {
    if (!this.has(key)) {
      this.missing(key, why);
      return undefined;
    }
    return this.get(key, kind);
  }

  needNullable<K extends Kind>(key: string, kind: K, why?: string): Field<KindValue<K> | null> | undefined {
    if (!this.has(key)) {
      this.missing(key, why);
      return undefined;
    }
    return this.get(key, kind, true);
  }

  private missing(key: string, why: string | undefined): void {
    const where = this.prefix === "" ? "the config" : `'${this.prefix.slice(0, -1)}'`;
    this.sink.report("DSV7004", this.start, { where, name: this.prefix + key }, why ?? `add "${key}": … to ${where}`);
  }

  /** An integer in [min, max]; out of range is DSV3005 at the key. */
  inRange(f: Field<number> | undefined, key: string, min: number, max: number): Field<number> | undefined {
    if (f === undefined || (f.value >= min && f.value <= max)) return f;
    this.sink.report("DSV3005", f.span, { name: this.prefix + key, value: f.value, range: `${min}..${max}` });
    return undefined;
  }
}

// ── Building the AST ────────────────────────────────────────────────────────────────────────────

function num(value: number, span: Span): NumberValue {
  return { ...numberLiteral(value), span };
}

function ident(name: string, span: Span): Value {
  return { kind: "ident", name, span };
}

function attr(key: string, value: Value, span: Span): Attribute {
  return { kind: "attribute", key, keySpan: span, value, span };
}

/** `key = n` where n comes from (or defaults at) `f`. */
function numAttr(key: string, f: Field<number>): Attribute {
  return attr(key, num(f.value, f.span), f.span);
}

function block(type: string, labels: readonly Label[], body: readonly (Entry | null)[], span: Span): Block {
  return { kind: "block", type, typeSpan: span, labels: [...labels], body: body.filter((e): e is Entry => e !== null), span };
}

function label(value: string, span: Span): Label {
  const bare = /^[A-Za-z_][A-Za-z0-9_]*$/.test(value) && value !== "import" && value !== "preset";
  return { kind: bare ? "ident" : "string", value, span };
}

/** Layer kinds as runs (`first..last`), in order. */
interface Run {
  kind: "dense" | "moe";
  first: number;
  last: number;
}

function runsOf(kinds: readonly ("dense" | "moe")[]): Run[] {
  const runs: Run[] = [];
  kinds.forEach((kind, i) => {
    const last = runs[runs.length - 1];
    if (last && last.kind === kind) last.last = i;
    else runs.push({ kind, first: i, last: i });
  });
  return runs;
}

/** `dense_layers = n` when the dense layers lead, else a `layer_pattern` block (as spec-to-ast writes it). */
function layerEntries(runs: readonly Run[], span: Span): Entry {
  const leading = runs.length === 1 || (runs.length === 2 && runs[0]!.kind === "dense" && runs[1]!.kind === "moe");
  if (leading) {
    const dense = runs.find((r) => r.kind === "dense");
    return attr("dense_layers", num(dense ? dense.last + 1 : 0, span), span);
  }
  const list = (kind: Run["kind"]): Value => ({
    kind: "list",
    items: runs.filter((r) => r.kind === kind).map((r): Value => (r.first === r.last ? num(r.first, span) : { kind: "range", from: num(r.first, span), to: num(r.last, span), span })),
    span,
  });
  return block("layer_pattern", [], [attr("dense", list("dense"), span), attr("moe", list("moe"), span)], span);
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** The file's display name and the model name a config without `_name_or_path` gets. */
function nameFromSource(sourceName: string): string {
  const p = sourceName.replace(/\\/g, "/");
  const base = path.posix.basename(p);
  const dir = path.posix.basename(path.posix.dirname(p));
  if (base.toLowerCase() === "config.json" && dir !== "" && dir !== "." && dir !== "/") return dir;
  const stem = base.replace(/\.json$/i, "");
  return stem === "" ? "model" : stem;
}

/** Comments placed before a line of the printed text (matched exactly, indentation included). */
interface Note {
  before: string;
  text: string;
}

interface Built {
  items: Block[];
  notes: Note[];
  header: string;
}

/** Read the model, precision, cluster and schedules out of the config. Null when an error stops it. */
function build(cfg: ConfigObject, sink: DiagnosticSink, options: ImportHfOptions): Built | null {
  const start = cfg.start;

  // Architecture and family.
  let family: Family | undefined;
  let architecture: string | undefined;
  const modelType = cfg.get("model_type", "string");
  const archs = cfg.get("architectures", "array");
  if (archs) {
    const names = archs.value.map((v) => (v.kind === "string" ? v.value : null));
    if (names.length === 0 || names.some((n) => n === null)) {
      sink.report("DSV7005", archs.span, { name: "architectures", expected: "a non-empty list of strings", found: describeJson(cfg.member("architectures")!.value) });
      return null;
    }
    architecture = (names as string[]).find((n) => HF_ARCHITECTURES[n] !== undefined);
    if (architecture === undefined) {
      sink.report("DSV7003", archs.span, { what: names.length > 1 ? "architectures" : "architecture", name: names.join(", "), supported: Object.keys(HF_ARCHITECTURES).join(", ") }, "for another family, write the model as a .dsv3 spec by hand (attention mha or gqa, ffn dense)");
      return null;
    }
    family = HF_ARCHITECTURES[architecture]!;
  } else if (cfg.has("architectures")) {
    return null; // wrong type, reported
  } else if (modelType && MODEL_TYPES[modelType.value] !== undefined) {
    family = MODEL_TYPES[modelType.value]!;
  } else {
    if (modelType) {
      sink.report("DSV7003", modelType.span, { what: "model_type", name: modelType.value, supported: Object.keys(HF_ARCHITECTURES).join(", ") }, "for another family, write the model as a .dsv3 spec by hand (attention mha or gqa, ffn dense)");
    } else {
      sink.report("DSV7004", start, { where: "the config", name: "architectures" }, `add "architectures": ["DeepseekV3ForCausalLM"] (or DeepseekV2ForCausalLM)`);
    }
    return null;
  }
  const v3 = family === "v3";

  // Warn about every field dsv3 does not model (never dropped silently).
  for (const key of cfg.keys()) {
    if (KNOWN.has(key) || IGNORED.has(key)) continue;
    sink.report("DSV7007", cfg.member(key)!.keySpan, { name: key }, "its effect is not in the imported spec; check that the model does not depend on it");
  }

  // Shapes.
  const vocab = cfg.need("vocab_size", "int");
  const hidden = cfg.need("hidden_size", "int");
  const layers = cfg.inRange(cfg.need("num_hidden_layers", "int"), "num_hidden_layers", 1, MAX_LAYERS);
  const maxPositions = cfg.need("max_position_embeddings", "int");
  const normEps = cfg.or("rms_norm_eps", "number", 1e-6);
  const tie = cfg.or("tie_word_embeddings", "bool", false);
  const act = cfg.or("hidden_act", "string", "silu");
  if (act && act.value !== "silu" && act.value !== "swish") {
    sink.report("DSV7006", act.span, { name: "hidden_act", value: JSON.stringify(act.value), reason: "DeepSeek MLPs are gated; dsv3 models the SiLU-gated one (SwiGLU) only" }, `use "hidden_act": "silu"`);
  }

  // Attention (MLA).
  const heads = cfg.need("num_attention_heads", "int");
  const kvHeads = cfg.get("num_key_value_heads", "int");
  if (heads && kvHeads && kvHeads.value !== heads.value) {
    sink.report("DSV7008", kvHeads.span, { name: "num_key_value_heads", value: kvHeads.value, reason: `MLA caches one latent per token that every head shares; the ${heads.value} attention heads are imported as they are` });
  }
  const qLora = cfg.needNullable("q_lora_rank", "int", `add "q_lora_rank": null for a full-rank q_proj, or the query compression rank`);
  const kvLora = cfg.need("kv_lora_rank", "int");
  const qkNope = cfg.need("qk_nope_head_dim", "int");
  const qkRope = cfg.need("qk_rope_head_dim", "int");
  const vHead = cfg.need("v_head_dim", "int");
  const theta = cfg.or("rope_theta", "number", 10000);
  const bias = cfg.get("attention_bias", "bool");
  if (bias && bias.value) sink.report("DSV7008", bias.span, { name: "attention_bias", value: "true", reason: "dsv3 models MLA projections without biases; they are neither imported nor counted" });

  // RoPE scaling.
  let yarn: Block | null = null;
  const scaling = cfg.orNullable("rope_scaling", "object", null);
  if (scaling && scaling.value !== null) {
    const rs = new ConfigObject(scaling.value, "rope_scaling.", sink);
    for (const key of rs.keys()) if (!ROPE_SCALING_KEYS.has(key)) sink.report("DSV7007", rs.member(key)!.keySpan, { name: `rope_scaling.${key}` }, "its effect is not in the imported spec");
    const typeKey = rs.has("rope_type") ? "rope_type" : "type";
    const type = rs.need(typeKey, "string");
    if (type && type.value !== "yarn") {
      sink.report("DSV7006", type.span, { name: `rope_scaling.${typeKey}`, value: JSON.stringify(type.value), reason: "dsv3 models YaRN context extension only" }, `remove rope_scaling for plain RoPE, or use "type": "yarn"`);
    } else if (type) {
      const factor = rs.need("factor", "number");
      const original = rs.need("original_max_position_embeddings", "int");
      const fields = [
        factor && numAttr("factor", factor),
        original && numAttr("original_context", original),
        ...([["beta_fast", "beta_fast", 32], ["beta_slow", "beta_slow", 1], ["mscale", "mscale", 1], ["mscale_all_dim", "mscale_all_dim", 0]] as const).map(([hf, dsv3, d]) => {
          const f = rs.or(hf, "number", d);
          return f ? numAttr(dsv3, { ...f, span: f.given ? f.span : scaling.span }) : undefined;
        }),
      ];
      if (original && maxPositions && original.value >= maxPositions.value) {
        // dsv3 applies YaRN only when the context exceeds the original one (the checker insists).
        sink.report("DSV7008", scaling.span, { name: "rope_scaling", value: `yarn (factor ${factor?.value ?? "?"})`, reason: `original_max_position_embeddings = ${original.value} is not below max_position_embeddings = ${maxPositions.value}, so YaRN never applies; the spec uses plain RoPE` }, "raise max_position_embeddings to the extended context, or remove rope_scaling");
      } else if (fields.every((f) => f !== undefined)) {
        yarn = block("yarn", [], fields as Attribute[], scaling.span);
      }
    }
  }

  // Layers: layer i is MoE iff experts exist, i ≥ first_k_dense_replace and i mod moe_layer_freq = 0.
  const routed = cfg.needNullable("n_routed_experts", "int", `add "n_routed_experts": the routed experts per MoE layer (null for a dense model)`);
  const firstDense = cfg.inRange(cfg.or("first_k_dense_replace", "int", v3 ? 3 : 0), "first_k_dense_replace", 0, MAX_COUNT);
  const freq = cfg.inRange(cfg.or("moe_layer_freq", "int", 1), "moe_layer_freq", 1, MAX_COUNT);
  const mtpDepth = cfg.inRange(cfg.or("num_nextn_predict_layers", "int", 0), "num_nextn_predict_layers", 0, 64);
  if (!layers || !routed || !firstDense || !freq || !mtpDepth) return null;
  const L = layers.value, k = firstDense.value, f = freq.value, depth = mtpDepth.value;
  const isMoe = (i: number): boolean => routed.value !== null && i >= k && i % f === 0;
  const kinds = Array.from({ length: L }, (_, i): "dense" | "moe" => (isMoe(i) ? "moe" : "dense"));
  const anyMoe = kinds.includes("moe");
  const moeUsed = anyMoe || (depth > 0 && isMoe(L));
  const denseUsed = kinds.includes("dense") || (depth > 0 && !moeUsed);
  if (routed.value !== null && !moeUsed) {
    sink.report("DSV7008", routed.span, { name: "n_routed_experts", value: routed.value, reason: `no layer is MoE (first_k_dense_replace = ${k}, num_hidden_layers = ${L}); the model is imported dense` });
  }
  if (depth > 0) {
    const mismatch = Array.from({ length: depth }, (_, j) => L + j).find((i) => isMoe(i) !== moeUsed);
    if (mismatch !== undefined) {
      const [hfKind, dsv3Kind] = moeUsed ? ["a dense", "MoE"] : ["an MoE", "dense"];
      sink.report("DSV7008", mtpDepth.span, { name: "num_nextn_predict_layers", value: depth, reason: `by first_k_dense_replace and moe_layer_freq layer ${mismatch} (an MTP module) would have ${hfKind} FFN, but dsv3 gives every MTP module the model's ${dsv3Kind} FFN` });
    }
  }
  const runs = runsOf(kinds);
  const patternSpan = f > 1 ? cfg.member("moe_layer_freq")!.keySpan : firstDense.span;

  // Dense FFN.
  let denseBlock: Block | null = null;
  if (denseUsed) {
    const inter = cfg.need("intermediate_size", "int", `add "intermediate_size": the dense FFN width (some layers are dense)`);
    if (inter) denseBlock = block("ffn", [label("dense", inter.span)], [numAttr("intermediate", inter), attr("activation", ident("swiglu", act?.span ?? start), act?.span ?? start)], inter.span);
  }

  // MoE FFN and its gate.
  let moeBlock: Block | null = null;
  let biasNote = false;
  if (moeUsed && routed.value !== null) {
    const why = "(the model has MoE layers)";
    const shared = cfg.orNullable("n_shared_experts", "int", v3 ? 1 : null);
    const topk = cfg.need("num_experts_per_tok", "int", `add "num_experts_per_tok": the routed experts each token uses ${why}`);
    const inter = cfg.need("moe_intermediate_size", "int", `add "moe_intermediate_size": the expert FFN width ${why}`);
    const scoring = cfg.or("scoring_func", "string", v3 ? "sigmoid" : "softmax");
    if (scoring && scoring.value !== "sigmoid" && scoring.value !== "softmax") {
      sink.report("DSV7006", scoring.span, { name: "scoring_func", value: JSON.stringify(scoring.value), reason: "dsv3 models sigmoid and softmax gates" }, `use "sigmoid" or "softmax"`);
    }
    const method = cfg.or("topk_method", "string", v3 ? "noaux_tc" : "greedy");
    const nGroup = cfg.orNullable("n_group", "int", v3 ? 8 : null);
    const topkGroup = cfg.orNullable("topk_group", "int", v3 ? 4 : null);
    const normTopk = cfg.or("norm_topk_prob", "bool", v3);
    const scale = cfg.or("routed_scaling_factor", "number", v3 ? 2.5 : 1);
    const alpha = cfg.or("aux_loss_alpha", "number", 0.001);
    const seqAux = cfg.or("seq_aux", "bool", true);
    let groups: Field<number> | undefined;
    let topGroups: Field<number> | undefined;
    let groupScore = "max";
    let biased = false;
    const groupField = (g: Field<number | null> | undefined, key: string): Field<number> | undefined => {
      if (!g) return undefined;
      if (g.value === null) {
        sink.report(g.given ? "DSV7005" : "DSV7004", g.given ? g.span : start, g.given ? { name: key, expected: "a whole number", found: "null" } : { where: "the config", name: key }, `topk_method ${method?.value} needs "${key}"`);
        return undefined;
      }
      return g as Field<number>;
    };
    switch (method?.value) {
      case undefined:
        break;
      case "greedy":
        for (const [g, key] of [[nGroup, "n_group"], [topkGroup, "topk_group"]] as const) {
          if (g && g.given && g.value !== null && g.value !== 1) sink.report("DSV7008", g.span, { name: key, value: g.value, reason: "topk_method greedy chooses among all experts without groups" });
        }
        groups = { value: 1, span: method.span, given: false };
        topGroups = groups;
        break;
      case "group_limited_greedy":
      case "noaux_tc":
        groups = groupField(nGroup, "n_group");
        topGroups = groupField(topkGroup, "topk_group");
        biased = method.value === "noaux_tc";
        groupScore = biased ? "top2_sum" : "max";
        break;
      default:
        if (method) sink.report("DSV7006", method.span, { name: "topk_method", value: JSON.stringify(method.value), reason: "dsv3 models greedy, group_limited_greedy and noaux_tc" }, `use "greedy", "group_limited_greedy" or "noaux_tc"`);
    }
    let seqAuxWeight = alpha;
    if (alpha && seqAux && !seqAux.value) {
      if (alpha.value !== 0) sink.report("DSV7008", alpha.span, { name: "aux_loss_alpha", value: alpha.value, reason: "with seq_aux = false it weighs a batch-wise balance loss, which dsv3 does not model; the sequence-wise loss is imported off" });
      seqAuxWeight = { value: 0, span: seqAux.span, given: true };
    }
    if (shared && topk && inter && scoring && method && normTopk && scale && seqAuxWeight && groups && topGroups) {
      biasNote = biased;
      const gateSpan = method.span;
      moeBlock = block("ffn", [label("moe", routed.span)], [
        attr("routed_experts", num(routed.value, routed.span), routed.span),
        attr("shared_experts", num(shared.value ?? 0, shared.span), shared.span),
        numAttr("experts_per_token", topk),
        numAttr("intermediate", inter),
        attr("activation", ident("swiglu", act?.span ?? start), act?.span ?? start),
        block("gate", [], [
          attr("scoring", ident(scoring.value, scoring.span), scoring.span),
          biased ? block("bias_balancing", [], [attr("update_speed", num(ASSUMED_BIAS_UPDATE_SPEED, gateSpan), gateSpan)], gateSpan) : null,
          numAttr("groups", groups),
          numAttr("top_groups", topGroups),
          attr("group_score", ident(groupScore, gateSpan), gateSpan),
          attr("normalize_topk", ident(normTopk.value ? "true" : "false", normTopk.span), normTopk.span),
          numAttr("routed_scale", scale),
          numAttr("seq_aux_loss_weight", seqAuxWeight),
        ], gateSpan),
      ], routed.span);
    }
  }

  // Precision: FP8 E4M3 with 128×128 weight blocks, else BF16.
  let precision: Block | null = null;
  const quant = cfg.orNullable("quantization_config", "object", null);
  if (quant) {
    const at = quant.span;
    let fp8 = false;
    let pow2 = false;
    if (quant.value !== null) {
      const q = new ConfigObject(quant.value, "quantization_config.", sink);
      for (const key of q.keys()) if (!QUANTIZATION_KEYS.has(key)) sink.report("DSV7007", q.member(key)!.keySpan, { name: `quantization_config.${key}` }, "its effect is not in the imported spec");
      const methodQ = q.get("quant_method", "string");
      const fmt = q.or("fmt", "string", "e4m3");
      const blockSize = q.get("weight_block_size", "array");
      const scheme = q.or("activation_scheme", "string", "dynamic");
      const scaleFmt = q.orNullable("scale_fmt", "string", null);
      const square128 = blockSize !== undefined && blockSize.value.length === 2 && blockSize.value.every((v) => v.kind === "number" && v.value === 128);
      fp8 = methodQ?.value === "fp8" && fmt?.value === "e4m3" && square128 && scheme?.value === "dynamic";
      if (fp8 && scaleFmt && scaleFmt.value !== null) {
        if (scaleFmt.value === "ue8m0") pow2 = true;
        else sink.report("DSV7008", scaleFmt.span, { name: "quantization_config.scale_fmt", value: JSON.stringify(scaleFmt.value), reason: "dsv3 knows FP32 scales and power-of-two (ue8m0) ones" });
      }
      if (!fp8) {
        sink.report("DSV7008", at, { name: "quantization_config", value: jsonLiteral(quant.value), reason: "dsv3 imports FP8 E4M3 with 128×128 weight blocks and dynamic activation scaling only; the precision is set to bf16" });
      }
    }
    precision = fp8
      ? block("precision", [], [attr("mode", ident("fp8", at), at), attr("format", ident("e4m3", at), at), attr("activation_tile", { kind: "shape", rows: 1, cols: 128, span: at }, at), attr("weight_block", { kind: "shape", rows: 128, cols: 128, span: at }, at), pow2 ? attr("pow2_scales", ident("true", at), at) : null], at)
      : block("precision", [], [attr("mode", ident("bf16", at), at)], at);
  }

  if (sink.hasErrors || !vocab || !hidden || !maxPositions || !normEps || !tie || !heads || !qLora || !kvLora || !qkNope || !qkRope || !vHead || !theta) return null;
  if (denseUsed && !denseBlock) return null;
  if (moeUsed && !moeBlock) return null;

  const nameField = cfg.get("_name_or_path", "string");
  const fromPath = nameField?.value.replace(/[\\/]+$/, "").split(/[\\/]/).pop() ?? "";
  const name = fromPath !== "" ? fromPath : nameFromSource(options.sourceName);
  const notes: Note[] = [];

  const model = block("model", [label(name, nameField?.span ?? start)], [
    numAttr("vocab", vocab),
    numAttr("hidden", hidden),
    numAttr("layers", layers),
    layerEntries(runs, patternSpan),
    numAttr("norm_eps", normEps),
    attr("tie_embeddings", ident(tie.value ? "true" : "false", tie.span), tie.span),
    numAttr("max_positions", maxPositions),
    block("attention", [label("mla", heads.span)], [
      numAttr("heads", heads),
      attr("q_lora_rank", qLora.value === null ? ident("none", qLora.span) : num(qLora.value, qLora.span), qLora.span),
      numAttr("kv_lora_rank", kvLora),
      numAttr("qk_nope_dim", qkNope),
      numAttr("qk_rope_dim", qkRope),
      numAttr("v_head_dim", vHead),
      block("rope", [], [numAttr("theta", theta), yarn], theta.span),
    ], heads.span),
    denseBlock,
    moeBlock,
    depth > 0 ? block("mtp", [], [numAttr("depth", mtpDepth), attr("loss_weight", num(ASSUMED_MTP_LOSS_WEIGHT, mtpDepth.span), mtpDepth.span)], mtpDepth.span) : null,
  ], start);
  if (biasNote) notes.push({ before: "      bias_balancing {", text: `noaux_tc: the config has no bias update speed; ${ASSUMED_BIAS_UPDATE_SPEED} (the DeepSeek-V3 report's) is assumed.` });
  if (depth > 0) notes.push({ before: "  mtp {", text: `The config has no MTP loss weight; ${ASSUMED_MTP_LOSS_WEIGHT} (the DeepSeek-V3 report's) is assumed.` });

  if (!precision) precision = block("precision", [], [attr("mode", ident("bf16", start), start)], start);

  const c = DEFAULT_CLUSTER;
  const cluster = block("cluster", [label(c.name, start)], [
    attr("nodes", num(c.nodes, start), start),
    attr("gpus_per_node", num(c.gpusPerNode, start), start),
    attr("gpu", ident(c.gpu, start), start),
    attr("nvlink", { ...quantityLiteral(c.nvlinkBytesPerS, "bytes/s"), span: start }, start),
    attr("infiniband", { ...quantityLiteral(c.infinibandBytesPerS, "bytes/s"), span: start }, start),
  ], start);
  notes.push({ before: `cluster "${c.name}" {`, text: `Not from the config: a default cluster of one node with ${c.gpusPerNode} ${c.gpu} GPUs; edit it to describe yours.` });

  const items: Block[] = [model, precision, cluster];
  if (options.withSchedules) {
    const gpus = c.nodes * c.gpusPerNode;
    const ep = moeBlock && routed.value !== null ? gcd(routed.value, gpus) : 1;
    const seqLen = Math.min(4096, maxPositions.value);
    const n = (key: string, v: number): Attribute => attr(key, num(v, start), start);
    items.push(block("training", [label("train", start)], [
      attr("pipeline", ident("1f1b", start), start), n("pp", 1), n("microbatches", 4), n("tp", 1), n("dp", gpus),
      moeBlock ? n("ep", ep) : null, n("zero", 1), n("seq_len", seqLen), n("global_batch", 32),
    ], start));
    items.push(block("decode", [label("decode", start)], [
      n("gpus", gpus),
      block("attention", [], [n("tp", 1), n("dp", gpus)], start),
      moeBlock ? block("moe", [], [n("ep", ep)], start) : null,
      n("batch_per_gpu", 64), n("seq_len", seqLen), depth > 0 ? n("mtp_speculation", 1) : null,
    ], start));
    notes.push({ before: "training train {", text: `Added by --with-schedules: one node, ZeRO-1 data parallelism over ${gpus} GPUs${moeBlock ? ` with EP${ep}` : ""}.` });
    notes.push({ before: "decode decode {", text: `Added by --with-schedules: decoding on the same ${gpus} GPUs${moeBlock ? `, EP${ep}` : ""}.` });
  }

  const what = [architecture, modelType ? `model_type ${modelType.value}` : null].filter((x) => x).join(", ");
  // A line break in the file name or model_type must not end the comment.
  const header = `// Imported from ${options.sourceName.replace(/\\/g, "/")} (${what}) by dsv3 import-hf.`.replace(/[\u0000-\u001f\u2028\u2029]/g, "?");
  return { items, notes, header };
}

/** Insert each note as a comment line (same indentation) before the first line equal to `before`. */
function insertNotes(text: string, notes: readonly Note[]): string {
  const lines = text.split("\n");
  for (const note of notes) {
    const at = lines.indexOf(note.before);
    if (at < 0) throw new Error(`import-hf: no line '${note.before}' to annotate`);
    const indent = note.before.slice(0, note.before.length - note.before.trimStart().length);
    lines.splice(at, 0, `${indent}// ${note.text}`);
  }
  return lines.join("\n");
}

/** Parse `jsonText` (a Hugging Face config.json) and return the equivalent .dsv3 text. */
export function importHfConfig(jsonText: string, options: ImportHfOptions): ImportHfResult {
  const file = options.sourceName;
  const sink = new DiagnosticSink();
  const top: Span = { file, line: 1, col: 1, offset: 0, length: 0 };
  if (jsonText.length > MAX_SOURCE_BYTES) {
    sink.report("DSV1008", top, { bytes: jsonText.length, max: MAX_SOURCE_BYTES });
    return { text: null, diagnostics: sink.all };
  }
  const reader = new JsonReader(jsonText, file);
  let root: JsonValue;
  try {
    root = reader.read();
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    sink.report("DSV7001", reader.span(e.offset, e.length), { reason: e.message });
    return { text: null, diagnostics: sink.all };
  }
  if (root.kind !== "object") {
    sink.report("DSV7002", root.span, { found: describeJson(root) }, "a config.json holds one object: { \"architectures\": [...], ... }");
    return { text: null, diagnostics: sink.all };
  }
  const built = build(new ConfigObject(root, "", sink), sink, options);
  if (built === null || sink.hasErrors) return { text: null, diagnostics: sortDiagnostics(sink.all) };

  const doc: Document = { kind: "document", file, items: built.items, comments: [] };
  // Check the AST itself: its spans are the config's keys, so problems point into the config.
  const checked = checkDocuments([doc]);
  for (const d of checked.diagnostics) sink.add(d);
  const diagnostics = sortDiagnostics(sink.all);
  if (sink.hasErrors) return { text: null, diagnostics };
  const text = `${built.header}\n\n${insertNotes(printDocument(doc), built.notes)}`;
  return { text, diagnostics };
}
