/**
 * Every user-facing diagnostic of dsv3: a stable code, a severity and one message template.
 * `{name}` placeholders are filled by `makeDiagnostic`. Codes never change meaning once released;
 * retire a code rather than reuse it. Each code has a test that triggers it and snapshots the message
 * (tests/diagnostics.test.ts; the 6xxx–8xxx front ends in their own suites, which it checks).
 *
 * Families: 1xxx lexical and syntax · 2xxx names, structure, imports, presets · 3xxx types, units and
 * ranges · 4xxx model and precision rules · 5xxx cluster and schedule rules · 9xxx command line, files
 * and bundles.
 */

export type Severity = "error" | "warning";

export interface CatalogEntry {
  severity: Severity;
  template: string;
}

export const CATALOG = {
  // ── 1xxx: lexical and syntax ────────────────────────────────────────────────────────────────
  DSV1001: { severity: "error", template: "unexpected character {char}" },
  DSV1002: { severity: "error", template: "unterminated string" },
  DSV1003: { severity: "error", template: "unterminated block comment" },
  DSV1004: { severity: "error", template: "expected {expected} but found {found}" },
  DSV1005: { severity: "error", template: "'{open}' is never closed" },
  DSV1006: { severity: "error", template: "invalid number '{raw}': {reason}" },
  DSV1007: { severity: "error", template: "nesting deeper than {max} levels" },
  DSV1008: { severity: "error", template: "file is {bytes} bytes; the limit is {max} bytes" },
  DSV1009: { severity: "error", template: "'{found}' cannot start an entry here; expected an attribute (key = value), a block, or '...preset'" },
  DSV1010: { severity: "error", template: "more than {max} syntax errors: the rest of the file was not read" },

  // ── 2xxx: names, structure, imports, presets ────────────────────────────────────────────────
  DSV2001: { severity: "error", template: "unknown block '{name}' in {where}" },
  DSV2002: { severity: "error", template: "unknown attribute '{name}' in {where}" },
  DSV2003: { severity: "error", template: "'{name}' is set twice in {where}" },
  DSV2004: { severity: "error", template: "there can be only one '{name}' block{where}" },
  DSV2005: { severity: "error", template: "{where} is missing the required attribute '{name}'" },
  DSV2006: { severity: "error", template: "the spec has no '{name}' block" },
  DSV2007: { severity: "error", template: "unknown preset '{name}'" },
  DSV2008: { severity: "error", template: "{what} '{name}' is defined twice" },
  DSV2009: { severity: "error", template: "cannot import '{path}': {reason}" },
  DSV2010: { severity: "error", template: "import cycle: {cycle}" },
  DSV2011: { severity: "error", template: "unknown {what} '{name}'" },
  DSV2012: { severity: "error", template: "'{name}' takes {expected}, found {found}" },
  DSV2013: { severity: "error", template: "preset '{name}' spreads itself (cycle: {cycle})" },
  DSV2014: { severity: "error", template: "{where} is missing the required block '{name}'" },
  DSV2015: { severity: "error", template: "preset '{name}' cannot be spread: {reason}" },

  // ── 3xxx: types, units, ranges ──────────────────────────────────────────────────────────────
  DSV3001: { severity: "error", template: "'{name}' expects {expected}, found {found}" },
  DSV3002: { severity: "error", template: "'{name}' must be a whole number, found {value}" },
  DSV3003: { severity: "error", template: "unknown unit '{unit}'" },
  DSV3004: { severity: "error", template: "'{name}' is {dimension}; the unit '{unit}' is {unitDimension}" },
  DSV3005: { severity: "error", template: "'{name}' = {value} is out of range {range}" },
  DSV3006: { severity: "error", template: "'{name}' must be one of {allowed}; found '{value}'" },
  DSV3007: { severity: "error", template: "range {from}..{to} runs backwards" },
  DSV3008: { severity: "error", template: "'{name}' is {dimension} and needs a unit" },
  DSV3009: { severity: "error", template: "'{name}' lists '{value}' twice" },

  // ── 4xxx: model and precision rules ─────────────────────────────────────────────────────────
  DSV4001: { severity: "error", template: "layer {layer} is listed twice in the layer pattern" },
  DSV4002: { severity: "error", template: "the layer pattern does not cover {missing}" },
  DSV4003: { severity: "error", template: "layer {layer} does not exist: the model has {layers} layers (0..{last})" },
  DSV4004: { severity: "error", template: "{count} layer(s) are {kind} but the model has no 'ffn {kind}' block" },
  DSV4005: { severity: "error", template: "top_groups = {topGroups} exceeds groups = {groups}" },
  DSV4006: { severity: "error", template: "routed_experts = {experts} is not divisible by groups = {groups}" },
  DSV4007: { severity: "error", template: "experts_per_token = {k} exceeds the {available} experts that {reason}" },
  DSV4008: { severity: "error", template: "group_score = top2_sum needs at least 2 experts per group; there are {perGroup}" },
  DSV4009: { severity: "error", template: "heads = {heads} is not divisible by kv_heads = {kvHeads}" },
  DSV4010: { severity: "error", template: "'mha' attention has kv_heads = heads; found kv_heads = {kvHeads}, heads = {heads}" },
  DSV4011: { severity: "error", template: "'{name}' = {value} must be even (RoPE rotates pairs of dimensions)" },
  DSV4012: { severity: "error", template: "activation tile {tile} and weight block {block} disagree along K ({tileK} vs {blockK})" },
  DSV4013: { severity: "error", template: "promotion_interval = {interval} does not divide the scaling group of {groupK} elements along K" },
  DSV4014: { severity: "warning", template: "'ffn {kind}' is given but no layer uses it" },
  DSV4016: { severity: "error", template: "yarn original_context = {original} must be below max_positions = {max}" },
  DSV4017: { severity: "warning", template: "bias_balancing is meant for sigmoid gates; this gate scores with {scoring}" },
  DSV4018: { severity: "error", template: "the weight-block shape {block} must be square for the transposed backward GEMM" },

  // ── 5xxx: cluster and schedule rules ────────────────────────────────────────────────────────
  DSV5001: { severity: "error", template: "schedule '{schedule}' needs {world} GPUs ({product}) but the cluster has {gpus}" },
  DSV5002: { severity: "error", template: "attention heads = {heads} are not divisible by tp = {tp}" },
  DSV5003: { severity: "error", template: "{slots} expert slots ({detail}) are not divisible by ep = {ep}" },
  DSV5004: { severity: "error", template: "ep = {ep} does not divide the {ranks} ranks of one pipeline stage (tp·dp = {tp}·{dp})" },
  DSV5005: { severity: "error", template: "{pipeline} needs an even number of pipeline stages; pp = {pp}" },
  DSV5006: { severity: "error", template: "{pipeline} needs {requirement}; found {mb}" },
  DSV5007: { severity: "error", template: "{layers} layers cannot fill {chunks} pipeline chunks ({detail})" },
  DSV5008: { severity: "error", template: "node_limit = {limit} exceeds the {nodes} node(s) an EP group of {ep} GPUs spans" },
  DSV5009: { severity: "error", template: "global_batch = {batch} sequences is not divisible by dp·microbatches = {dp}·{mb}" },
  DSV5010: { severity: "error", template: "comm_sms = {sms} leaves no SMs for computation: the {gpu} has {total}" },
  DSV5011: { severity: "error", template: "mtp_speculation = {spec} exceeds the model's mtp depth = {depth}" },
  DSV5012: { severity: "error", template: "attention tp·dp = {tp}·{dp} = {product} does not match gpus = {gpus}" },
  DSV5013: { severity: "error", template: "ep = {ep} does not divide gpus = {gpus}" },
  DSV5014: { severity: "warning", template: "sp = true has no effect with tp = 1" },
  DSV5015: { severity: "error", template: "seq_len = {seq} exceeds the model's max_positions = {max}" },
  DSV5016: { severity: "error", template: "schedule '{schedule}' sets ep = {ep} but the model has no MoE layers" },
  DSV5017: { severity: "error", template: "shared_as_routed needs shared experts; the model has none" },
  DSV5018: { severity: "warning", template: "{mb} micro-batches for {pp} pipeline stages: the pipeline never reaches steady state" },
  DSV5020: { severity: "error", template: "zero = {zero} needs data parallelism; dp = 1" },

  // ── 9xxx: command line, files, bundles ──────────────────────────────────────────────────────
  DSV9001: { severity: "error", template: "cannot read '{path}': {reason}" },
  DSV9002: { severity: "error", template: "unknown schedule '{name}'; the spec has {available}" },
  DSV9003: { severity: "error", template: "'{path}' exists and is not a dsv3 bundle; refusing to replace it" },
  DSV9004: { severity: "error", template: "bundle file '{path}' is missing" },
  DSV9005: { severity: "error", template: "bundle file '{path}' was modified: {detail}" },
  DSV9006: { severity: "error", template: "bundle file '{path}' is not listed in the manifest" },
  DSV9007: { severity: "error", template: "bundle manifest '{path}' is missing or invalid: {detail}" },
  DSV9008: { severity: "error", template: "cannot write '{path}': {reason}" },
  DSV9009: { severity: "error", template: "{message}" },
  DSV9010: { severity: "error", template: "the spec declares no schedule; add a 'training NAME {{ … }}', 'prefill NAME {{ … }}' or 'decode NAME {{ … }}' block" },
  DSV9011: { severity: "error", template: "'{path}' is not a spec this version reads (expected a .dsv3 or .ts file)" },
  DSV9012: { severity: "error", template: "invalid load file '{path}': {message}" },
  DSV9013: { severity: "error", template: "invalid expert placement request: {message}" },

  // ── 8xxx: formatter ─────────────────────────────────────────────────────────────────────────
  DSV8001: { severity: "error", template: "'{path}' is not formatted; run dsv3 fmt {path}" },

  // ── 7xxx: Hugging Face configs ──────────────────────────────────────────────────────────────
  DSV7001: { severity: "error", template: "invalid JSON: {reason}" },
  DSV7002: { severity: "error", template: "a Hugging Face config is a JSON object; found {found}" },
  DSV7003: { severity: "error", template: "unsupported {what} '{name}': dsv3 imports {supported}" },
  DSV7004: { severity: "error", template: "{where} is missing the required field '{name}'" },
  DSV7005: { severity: "error", template: "'{name}' expects {expected}, found {found}" },
  DSV7006: { severity: "error", template: "'{name}' = {value} is not supported: {reason}" },
  DSV7007: { severity: "warning", template: "'{name}' is not modelled by dsv3 and is ignored" },
  DSV7008: { severity: "warning", template: "'{name}' = {value} is ignored: {reason}" },
  DSV7009: { severity: "error", template: "the spec cannot be written as a Hugging Face DeepSeek config: {reason}" },

  // ── 6xxx: TypeScript specs ──────────────────────────────────────────────────────────────────
  DSV6001: { severity: "error", template: "TypeScript syntax error: {message}" },
  DSV6002: { severity: "error", template: "{what} is not allowed in a spec; a TypeScript spec holds only imports from \"dsv3\", const declarations and one `export default spec({{ … }})`" },
  DSV6003: { severity: "error", template: "a spec may import only from \"dsv3\"; this imports from '{module}'" },
  DSV6004: { severity: "error", template: "\"dsv3\" exports no '{name}'" },
  DSV6005: { severity: "error", template: "{what} of \"dsv3\" is not supported; import names: import {{ spec, model, … }} from \"dsv3\"" },
  DSV6006: { severity: "error", template: "'{keyword}' declarations are not allowed; a spec declares constants with 'const'" },
  DSV6007: { severity: "error", template: "{what} is not allowed in a spec value" },
  DSV6008: { severity: "error", template: "'{name}' is not a dsv3 builder; a spec may call only {builders}" },
  DSV6009: { severity: "error", template: "'{name}' is not declared; a spec may refer only to constants declared above and to names imported from \"dsv3\"" },
  DSV6010: { severity: "error", template: "'{name}' is used before its declaration on line {line}" },
  DSV6011: { severity: "error", template: "'{op}' needs numbers; found {found}" },
  DSV6012: { severity: "error", template: "{expression} is not a finite number" },
  DSV6013: { severity: "error", template: "{builder}() takes {expected}; found {found} argument(s)" },
  DSV6014: { severity: "error", template: "the file has no `export default spec({{ … }})`" },
  DSV6015: { severity: "error", template: "the file has more than one default export" },
  DSV6016: { severity: "error", template: "only a const object (a preset) or a GPU preset can be spread; found {found}" },
  DSV6017: { severity: "error", template: "the default export must be spec({{ … }}); found {found}" },
  DSV6018: { severity: "error", template: "the spec expands to more than {max} values" },
  DSV6019: { severity: "error", template: "{builder}() expects {expected} as its {which}; found {found}" },

  // ── 55xx: plans ─────────────────────────────────────────────────────────────────────────────
  DSV5501: { severity: "error", template: "schedule '{schedule}' does not fit in memory: GPU {gpu} ({where}) needs {need} but has {budget}; largest: {items}" },
  DSV5502: { severity: "error", template: "schedule '{schedule}': the KV cache needs {need} tokens per GPU ({detail}) but GPU {gpu} has room for {capacity}" },
  DSV5503: { severity: "error", template: "schedule '{schedule}': cannot place the experts: {message}" },

  // ── 91xx: checkpoints (safetensors, Hugging Face tensor names, shards) ───────────────────────
  DSV9101: { severity: "error", template: "'{path}' is truncated: {detail}" },
  DSV9102: { severity: "error", template: "'{path}': the header length {length} runs past the end of the file ({size} bytes)" },
  DSV9103: { severity: "error", template: "'{path}': the header is not valid safetensors JSON: {reason}" },
  DSV9104: { severity: "error", template: "'{path}': tensor '{name}': {reason}" },
  DSV9105: { severity: "error", template: "'{path}': tensor '{name}' has the unknown dtype '{dtype}'" },
  DSV9106: { severity: "error", template: "'{path}': tensor '{name}' ({dtype} {shape}) needs {need} bytes, but its data offsets span {have}" },
  DSV9107: { severity: "error", template: "'{path}': tensor '{name}' has invalid data offsets {offsets}: {reason}" },
  DSV9108: { severity: "error", template: "'{path}': the data of tensors '{first}' and '{second}' overlap (bytes {range})" },
  DSV9109: { severity: "error", template: "'{path}': data bytes {range} belong to no tensor" },
  DSV9110: { severity: "error", template: "'{path}': the index maps {count} tensor(s) to the shard '{shard}', which {reason}" },
  DSV9111: { severity: "error", template: "'{path}' is invalid: {reason}" },
  DSV9112: { severity: "error", template: "'{path}' holds no safetensors checkpoint: {reason}" },
  DSV9113: { severity: "error", template: "tensor '{name}' appears in both '{first}' and '{second}'" },
  DSV9120: { severity: "error", template: "the checkpoint lacks {what}, which the spec '{model}' needs" },
  DSV9121: { severity: "error", template: "the checkpoint has {what}, which the spec '{model}' does not use" },
  DSV9122: { severity: "error", template: "tensor '{name}' has shape {found}; the spec '{model}' needs {expected}" },
  DSV9123: { severity: "error", template: "tensor '{name}' is {found}; {expected}" },
  DSV9124: { severity: "error", template: "'{path}': reading tensor '{name}' failed: {reason}" },
  DSV9125: { severity: "warning", template: "'{path}' says {field} = {found}; the spec '{model}' has {expected}" },
  DSV9130: { severity: "error", template: "'{path}' is not a shard bundle: {reason}" },
  DSV9131: { severity: "error", template: "the bundle '{path}' has no shard for GPU {gpu} (it has GPUs 0..{last})" },


  // ── 92xx: simulation and reports ────────────────────────────────────────────────────────────
  DSV9201: { severity: "error", template: "cannot read bundle '{path}': {reason}" },
  DSV9202: { severity: "error", template: "invalid --sweep: {message}" },
  DSV9203: { severity: "error", template: "bundle '{path}' was compiled for schedule '{bundle}', not '{name}'" },
  DSV9204: { severity: "error", template: "'{path}' is not a bundle directory; dsv3 report reads a directory written by dsv3 compile" },

  // ── 93xx: CUDA backend ──────────────────────────────────────────────────────────────────────
  DSV9301: { severity: "warning", template: "nvcc was not found: the bundle has the CUDA sources of {count} kernel(s) but no PTX, cubins or resource report" },
  DSV9302: { severity: "error", template: "kernel {name} ({kind}) failed to compile: {output}" },
  DSV9303: { severity: "error", template: "kernel {name} ({kind}) exceeds the sm_90a limits: {violations}" },
  DSV9304: { severity: "warning", template: "cannot write the kernel cache {path}: {reason}; kernels were compiled without caching" },
  DSV9305: { severity: "warning", template: "GPU '{gpu}' is not a Hopper GPU: the CUDA backend generates sm_90a kernels only, so the bundle has no CUDA kernels" },
  DSV9306: { severity: "warning", template: "{count} kernel(s) have no CUDA code, e.g. {id} ({kind}): {reason}" },

  // ── 94xx: distributed execution on virtual ranks ────────────────────────────────────────────
  DSV9401: { severity: "error", template: "schedule '{schedule}' deadlocks on virtual ranks: {detail}" },
  DSV9402: { severity: "error", template: "schedule '{schedule}' is too large for the CPU executor: {detail}" },
  DSV9403: { severity: "error", template: "backend '{backend}' cannot run a schedule's plan; the virtual-rank executor runs on 'cpu'" },
  DSV9404: { severity: "error", template: "the virtual-rank executor cannot run schedule '{schedule}': {detail}" },
  DSV9405: { severity: "error", template: "schedule '{schedule}' does not compute what one device computes: maxRelDiff {diff} on '{worst}' exceeds the tolerance {tolerance}" },
  DSV9406: { severity: "error", template: "schedule '{schedule}' moved other bytes than its plan predicts: {detail}" },
} as const satisfies Record<string, CatalogEntry>;

export type DiagnosticCode = keyof typeof CATALOG;
