/**
 * Reads the text form print.ts writes (see there for the grammar by example). Line-based: one
 * header, one param, one `block`, one op or one bracket per line; a `[` at the end of an op line
 * opens a fused body closed by a line `]`. Errors are thrown as `ir:LINE: message`.
 *
 * parse(print(m)) is structurally equal to m, and print(parse(text)) is the canonical spelling of
 * any text this accepts. The parser checks syntax and names; shapes are verify.ts's job.
 */
import { KERNEL_KINDS, type KernelKind } from "../kernel-spec.js";
import { parseDim, type Dims } from "./dim-expr.js";
import {
  BLOCKS,
  DTYPES,
  LAYER_KINDS,
  OP_FLAGS,
  OP_KINDS,
  PHASES,
  type AttrValue,
  type Attrs,
  type Block,
  type Dtype,
  type LayerGraph,
  type LayerKind,
  type ModelGraph,
  type Op,
  type OpFlag,
  type OpKind,
  type Phase,
  type Quant,
  type Value,
  type ValueRole,
} from "./ir.js";

type TokenKind = "val" | "str" | "tile" | "range" | "num" | "ident" | "punct";
interface Token {
  t: TokenKind;
  v: string;
}

const TOKEN_RULES: [TokenKind, RegExp][] = [
  ["val", /^%[A-Za-z0-9_.]+/],
  ["str", /^"(?:[^"\\]|\\.)*"/],
  ["tile", /^[0-9]+x[0-9]+/],
  ["range", /^[0-9]+\.\.[0-9]+/],
  ["num", /^-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?/],
  ["ident", /^[A-Za-z_][A-Za-z0-9_.\-\/]*/],
  ["punct", /^[=(){}[\],:!*+\/]/],
];

class ParseError extends Error {}

class LineLexer {
  private readonly tokens: Token[] = [];
  private at = 0;

  constructor(text: string) {
    let rest = text;
    while (true) {
      rest = rest.replace(/^\s+/, "");
      if (rest === "") break;
      let matched = false;
      for (const [t, re] of TOKEN_RULES) {
        const m = re.exec(rest);
        if (m !== null) {
          this.tokens.push({ t, v: m[0] });
          rest = rest.slice(m[0].length);
          matched = true;
          break;
        }
      }
      if (!matched) throw new ParseError(`unexpected character '${rest[0]}'`);
    }
  }

  peek(offset = 0): Token | undefined {
    return this.tokens[this.at + offset];
  }

  done(): boolean {
    return this.at >= this.tokens.length;
  }

  next(what: string): Token {
    const t = this.tokens[this.at++];
    if (t === undefined) throw new ParseError(`expected ${what}, found the end of the line`);
    return t;
  }

  isPunct(p: string): boolean {
    const t = this.peek();
    return t !== undefined && t.t === "punct" && t.v === p;
  }

  punct(p: string): void {
    const t = this.next(`'${p}'`);
    if (t.t !== "punct" || t.v !== p) throw new ParseError(`expected '${p}', found '${t.v}'`);
  }

  eat(p: string): boolean {
    if (!this.isPunct(p)) return false;
    this.at++;
    return true;
  }

  ident(what: string): string {
    const t = this.next(what);
    if (t.t !== "ident") throw new ParseError(`expected ${what}, found '${t.v}'`);
    return t.v;
  }

  word(w: string): void {
    const got = this.ident(`'${w}'`);
    if (got !== w) throw new ParseError(`expected '${w}', found '${got}'`);
  }

  int(what: string): number {
    const t = this.next(what);
    if (t.t !== "num" || !/^[0-9]+$/.test(t.v)) throw new ParseError(`expected ${what} (an integer), found '${t.v}'`);
    return Number(t.v);
  }

  val(): string {
    const t = this.next("a value (%id)");
    if (t.t !== "val") throw new ParseError(`expected a value (%id), found '${t.v}'`);
    return t.v.slice(1);
  }

  end(): void {
    const t = this.peek();
    if (t !== undefined) throw new ParseError(`unexpected '${t.v}' at the end of the line`);
  }
}

function oneOf<T extends string>(what: string, v: string, options: readonly T[]): T {
  if (!(options as readonly string[]).includes(v)) throw new ParseError(`unknown ${what} '${v}' (expected one of ${options.join(", ")})`);
  return v as T;
}

function scalar(lx: LineLexer): number | string | boolean {
  const t = lx.next("a value");
  if (t.t === "num") return Number(t.v);
  if (t.t === "str") return JSON.parse(t.v) as string;
  if (t.t === "ident") return t.v === "true" ? true : t.v === "false" ? false : t.v;
  throw new ParseError(`expected a number, string or word, found '${t.v}'`);
}

function attrValue(lx: LineLexer): AttrValue {
  if (!lx.eat("[")) return scalar(lx);
  const list: (number | string)[] = [];
  if (lx.eat("]")) return list;
  do {
    const s = scalar(lx);
    if (typeof s === "boolean") throw new ParseError("lists hold numbers and strings only");
    list.push(s);
  } while (lx.eat(","));
  lx.punct("]");
  return list;
}

function attrs(lx: LineLexer): Attrs {
  const out: Attrs = {};
  if (!lx.eat("{")) return out;
  if (lx.eat("}")) return out;
  do {
    const key = lx.ident("an attribute name");
    if (key in out) throw new ParseError(`attribute '${key}' given twice`);
    lx.punct("=");
    out[key] = attrValue(lx);
  } while (lx.eat(","));
  lx.punct("}");
  return out;
}

/** `%id:dtype[dims]/RxC/pow2` → a Value of the given role. */
function typedValue(lx: LineLexer, role: ValueRole): Value {
  const id = lx.val();
  lx.punct(":");
  const dtype = oneOf<Dtype>("dtype", lx.ident("a dtype"), DTYPES);
  lx.punct("[");
  const shape: string[] = [];
  if (!lx.eat("]")) {
    while (true) {
      let text = "";
      let depth = 0;
      while (true) {
        const t = lx.peek();
        if (t === undefined) throw new ParseError("unterminated shape");
        if (t.t === "punct" && (t.v === "," || t.v === "]") && depth === 0) break;
        if (t.t === "punct" && t.v === "(") depth++;
        if (t.t === "punct" && t.v === ")") depth--;
        if (!(t.t === "ident" || t.t === "num" || (t.t === "punct" && "*+()".includes(t.v)))) throw new ParseError(`unexpected '${t.v}' in a shape`);
        text += t.v;
        lx.next("");
      }
      try {
        parseDim(text);
      } catch (e) {
        throw new ParseError((e as Error).message);
      }
      shape.push(text);
      if (lx.eat("]")) break;
      lx.punct(",");
    }
  }
  let quant: Quant | null = null;
  if (lx.eat("/")) {
    const t = lx.next("a tile RxC");
    if (t.t !== "tile") throw new ParseError(`expected a tile RxC, found '${t.v}'`);
    const [r, c] = t.v.split("x").map(Number) as [number, number];
    quant = { tile: [r, c], pow2: false };
    if (lx.eat("/")) {
      lx.word("pow2");
      quant.pow2 = true;
    }
  }
  return { id, dtype, shape, quant, role, shared: false };
}

interface OpenBody {
  op: Op;
  /** The block in force in the enclosing list. */
  outerBlock: Block | null;
  /** The outputs' types as the fused line states them; the body must define them so. */
  types: Value[];
}

function sameType(a: Value, b: Value): boolean {
  return (
    a.dtype === b.dtype &&
    a.shape.join(",") === b.shape.join(",") &&
    (a.quant === null ? b.quant === null : b.quant !== null && a.quant.tile.join("x") === b.quant.tile.join("x") && a.quant.pow2 === b.quant.pow2)
  );
}

/** Parses a whole model. */
export function parseModel(text: string): ModelGraph {
  let model: string | null = null;
  let phase: Phase | null = null;
  let dims: Dims | null = null;
  const graphs: LayerGraph[] = [];
  let graph: LayerGraph | null = null;
  let block: Block | null = null;
  const stack: OpenBody[] = [];
  const lines = text.split("\n");
  const define = (g: LayerGraph, v: Value): void => {
    if (g.values[v.id] !== undefined) throw new ParseError(`%${v.id} is defined twice`);
    g.values[v.id] = v;
  };
  const use = (g: LayerGraph, id: string): string => {
    if (g.values[id] === undefined) throw new ParseError(`%${id} is not defined`);
    return id;
  };
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("//")) continue;
    try {
      const lx = new LineLexer(line);
      const first = lx.peek()!;
      if (graph === null) {
        const word = lx.ident("'model', 'dims' or 'graph'");
        if (word === "model") {
          if (model !== null) throw new ParseError("a second 'model' line");
          const name = scalar(lx);
          if (typeof name !== "string") throw new ParseError("the model name must be a word or a string");
          model = name;
          lx.word("phase");
          lx.punct("=");
          phase = oneOf<Phase>("phase", lx.ident("a phase"), PHASES);
        } else if (word === "dims") {
          if (model === null) throw new ParseError("'dims' before 'model'");
          if (dims !== null) throw new ParseError("a second 'dims' line");
          dims = {};
          while (!lx.done()) {
            const name = lx.ident("a dim name");
            if (name in dims) throw new ParseError(`dim '${name}' given twice`);
            lx.punct("=");
            dims[name] = lx.int(`the size of ${name}`);
          }
        } else if (word === "graph") {
          if (model === null || dims === null) throw new ParseError("'graph' before 'model' and 'dims'");
          const kind = oneOf<LayerKind>("layer kind", lx.ident("a layer kind"), LAYER_KINDS);
          lx.word("count");
          lx.punct("=");
          const count = lx.int("a count");
          const layers: [number, number][] = [];
          if (lx.peek()?.v === "layers") {
            lx.word("layers");
            lx.punct("=");
            do {
              const r = lx.next("a layer range A..B");
              if (r.t !== "range") throw new ParseError(`expected a layer range A..B, found '${r.v}'`);
              const [a, z] = r.v.split("..").map(Number) as [number, number];
              layers.push([a, z]);
            } while (lx.eat(","));
          }
          lx.punct("{");
          graph = { kind, count, layers, params: [], values: {}, ops: [], outputs: [] };
          block = null;
        } else {
          throw new ParseError(`expected 'model', 'dims' or 'graph', found '${word}'`);
        }
        lx.end();
        continue;
      }
      const g: LayerGraph = graph;
      if (first.t === "punct" && first.v === "}") {
        lx.next("}");
        lx.end();
        if (stack.length > 0) throw new ParseError("'}' inside a fused body (missing ']')");
        graphs.push(g);
        graph = null;
        continue;
      }
      if (first.t === "punct" && first.v === "]") {
        lx.next("]");
        lx.end();
        const open = stack.pop();
        if (open === undefined) throw new ParseError("']' without a fused body");
        if (open.op.body!.length === 0) throw new ParseError("an empty fused body");
        for (const t of open.types) {
          const v = g.values[t.id];
          if (v === undefined || !open.op.body!.some((b) => b.outputs.includes(t.id))) throw new ParseError(`fused output %${t.id} is not produced by its body`);
          if (!sameType(v, t)) throw new ParseError(`fused output %${t.id} is typed differently in the body`);
        }
        block = open.outerBlock;
        continue;
      }
      if (first.t === "ident") {
        const word = lx.ident("a keyword");
        if (word === "input" || word === "weight" || word === "state") {
          if (g.ops.length > 0 || stack.length > 0) throw new ParseError(`'${word}' after the first op`);
          const v = typedValue(lx, word);
          if (/^[0-9]+$/.test(v.id)) throw new ParseError(`a ${word} needs a name, not a number (%${v.id})`);
          if (lx.peek()?.v === "shared") {
            lx.word("shared");
            v.shared = true;
          }
          lx.end();
          define(g, v);
          g.params.push(v.id);
        } else if (word === "block") {
          block = oneOf<Block>("block", lx.ident("a block name"), BLOCKS);
          lx.end();
        } else if (word === "output") {
          if (stack.length > 0) throw new ParseError("'output' inside a fused body");
          do g.outputs.push(use(g, lx.val()));
          while (lx.eat(","));
          lx.end();
        } else {
          throw new ParseError(`unknown line '${word}'`);
        }
        continue;
      }
      // An op line.
      if (block === null) throw new ParseError("an op before any 'block' line");
      const outs: Value[] = [];
      do outs.push(typedValue(lx, "temp"));
      while (lx.eat(","));
      lx.punct("=");
      const kind = oneOf<OpKind>("op kind", lx.ident("an op kind"), OP_KINDS);
      let kernel: KernelKind | undefined;
      if (kind === "fused") kernel = oneOf<KernelKind>("kernel kind", lx.ident("a kernel kind"), KERNEL_KINDS);
      lx.punct("(");
      const inputs: string[] = [];
      if (!lx.eat(")")) {
        do inputs.push(use(g, lx.val()));
        while (lx.eat(","));
        lx.punct(")");
      }
      const a = attrs(lx);
      const flags: OpFlag[] = [];
      while (lx.eat("!")) {
        const f = oneOf<OpFlag>("flag", lx.ident("a flag"), OP_FLAGS);
        if (flags.includes(f)) throw new ParseError(`flag '!${f}' given twice`);
        flags.push(f);
      }
      flags.sort();
      const opensBody = lx.eat("[");
      lx.end();
      if (opensBody !== (kind === "fused")) throw new ParseError(kind === "fused" ? "a fused op needs a body: end the line with '['" : "only fused ops have a body");
      if (!opensBody) for (const v of outs) define(g, v);
      const op: Op = { kind, inputs, outputs: outs.map((v) => v.id), attrs: a, flags, block };
      if (kernel !== undefined) {
        op.kernel = kernel;
        op.body = [];
      }
      const list = stack.length > 0 ? stack[stack.length - 1]!.op.body! : g.ops;
      list.push(op);
      // A fused op's outputs are defined by its body; their stated types are checked at ']'.
      if (opensBody) stack.push({ op, outerBlock: block, types: outs });
    } catch (e) {
      if (e instanceof ParseError) throw new Error(`ir:${index + 1}: ${e.message}`);
      throw e;
    }
  }
  if (graph !== null) throw new Error(`ir:${lines.length}: graph ${graph.kind} is not closed with '}'`);
  if (model === null || phase === null || dims === null) throw new Error("ir:1: expected 'model NAME phase=PHASE' and a 'dims' line");
  return { model, phase, dims, graphs };
}
