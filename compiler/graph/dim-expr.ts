/**
 * Symbolic dimensions of Graph IR shapes: a dim is a tiny arithmetic expression over named sizes
 * and integers, e.g. `T`, `Nh*(Dn+R)`, `B*S`, `2*H`, `C+R`. Grammar (no spaces are kept):
 *
 *   expr   := term ('+' term)*
 *   term   := factor ('*' factor)*
 *   factor := INT | NAME | '(' expr ')'
 *   NAME   := [A-Za-z_][A-Za-z0-9_]*
 *
 * The names are bound by the ModelGraph's `dims` table (T tokens, H hidden, …). Expressions are
 * compared as written (structurally), and evaluated to numbers where concrete sizes are needed
 * (shape checks, FLOP counts, KernelSpec constants).
 */

export type DimAst =
  | { kind: "int"; value: number }
  | { kind: "name"; name: string }
  | { kind: "add" | "mul"; left: DimAst; right: DimAst };

/** Named sizes: dim name → concrete value. Insertion order is the print order. */
export type Dims = Record<string, number>;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const parsed = new Map<string, DimAst>();

/** Parses a dim expression (cached); throws on a malformed one. */
export function parseDim(text: string): DimAst {
  const hit = parsed.get(text);
  if (hit !== undefined) return hit;
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`dim expression '${text}': ${why} at ${i}`);
  };
  const expr = (): DimAst => {
    let left = term();
    while (text[i] === "+") {
      i++;
      left = { kind: "add", left, right: term() };
    }
    return left;
  };
  const term = (): DimAst => {
    let left = factor();
    while (text[i] === "*") {
      i++;
      left = { kind: "mul", left, right: factor() };
    }
    return left;
  };
  const factor = (): DimAst => {
    const c = text[i];
    if (c === "(") {
      i++;
      const e = expr();
      if (text[i] !== ")") fail("expected ')'");
      i++;
      return e;
    }
    const m = /^(?:[0-9]+|[A-Za-z_][A-Za-z0-9_]*)/.exec(text.slice(i));
    if (m === null) return fail("expected a name, an integer or '('");
    i += m[0].length;
    return /^[0-9]/.test(m[0]) ? { kind: "int", value: Number(m[0]) } : { kind: "name", name: m[0] };
  };
  const ast = expr();
  if (i !== text.length) fail("unexpected character");
  parsed.set(text, ast);
  return ast;
}

/** The concrete value of a dim expression under `dims`; throws on an unbound name. */
export function evalDim(text: string, dims: Dims): number {
  const go = (a: DimAst): number => {
    switch (a.kind) {
      case "int":
        return a.value;
      case "name": {
        const v = dims[a.name];
        if (v === undefined) throw new Error(`dim '${a.name}' is not bound (in '${text}')`);
        return v;
      }
      case "add":
        return go(a.left) + go(a.right);
      case "mul":
        return go(a.left) * go(a.right);
    }
  };
  return go(parseDim(text));
}

/** Concrete sizes of a shape. */
export function evalShape(shape: readonly string[], dims: Dims): number[] {
  return shape.map((d) => evalDim(d, dims));
}

/** Number of elements of a shape (1 for a scalar `[]`). */
export function numel(shape: readonly string[], dims: Dims): number {
  let n = 1;
  for (const d of shape) n *= evalDim(d, dims);
  return n;
}

/** Whether `name` may name a dim. */
export function isDimName(name: string): boolean {
  return NAME.test(name);
}
