/**
 * Reading a TypeScript spec (`model.ts`) statically, with ts-morph: the file is parsed, never run.
 * A spec is untrusted input, so only the DSL's subset is accepted:
 *
 *   - `import { spec, model, … } from "dsv3"` (named imports of builders, GPU presets and types);
 *   - top-level `const` declarations (optionally `export`ed) whose initialisers are number, string
 *     and boolean literals, `null`, object and array literals, arithmetic (+ - * / % **, unary
 *     minus, parentheses) on numbers and constants, references to constants declared above,
 *     spreads of a constant object (a preset) or a GPU preset, and calls of the dsv3 builders;
 *     `as …` and `satisfies …` are allowed (types are erased);
 *   - type aliases and interfaces (erased);
 *   - exactly one `export default spec({ … })` (the convention: the default export is the spec).
 *
 * Everything else — other statements, `let`/`var`, functions, classes, loops, `require`, `import()`,
 * calls of anything but a builder, property access (`process.env`), template literals with
 * substitutions, computed keys, getters, `new` — is a coded diagnostic (DSV6xxx) at the offending
 * node, and reading goes on, so one run reports every problem.
 *
 * The value is converted to the AST of the text language (to-ast.ts) with spans into the .ts file,
 * so the checker's own diagnostics ("heads not divisible by tp") point into the .ts source too.
 */
import { LineIndex } from "../line-index.js";
import {
  Node, Project, SyntaxKind, ts, VariableDeclarationKind,
  type ArrayLiteralExpression, type BinaryExpression, type CallExpression, type Expression, type ImportDeclaration,
  type ObjectLiteralExpression, type PrefixUnaryExpression, type SourceFile, type SpreadAssignment, type Statement, type VariableStatement,
} from "ts-morph";
import type { Document } from "../ast.js";
import { DiagnosticSink, sortDiagnostics, type Diagnostic, type MessageArgs } from "../diagnostic.js";
import type { DiagnosticCode } from "../diagnostic-catalog.js";
import { MAX_NESTING, MAX_SOURCE_BYTES } from "../parser.js";
import type { Span } from "../span.js";
import { closestName, suggestionFix } from "../suggest.js";
import { BUILDERS, DSL_TYPE_NAMES, GPU_PRESETS, type BuilderName } from "./builders.js";
import { describe, numberRaw, tsValueToDocument } from "./to-ast.js";
import type { TsEntry, TsValue } from "./ts-value.js";

export interface ReadTsResult {
  /**
   * The spec as an AST, or null when it could not be read faithfully (a problem inside the spec's
   * value, or no `export default spec(…)`). Problems outside the spec's value (a stray statement,
   * an import from another module) are reported but leave the document in place.
   */
  document: Document | null;
  diagnostics: Diagnostic[];
}

/** The module a spec imports from. */
export const DSV3_MODULE = "dsv3";
/** Syntax errors reported at most, per file. */
export const MAX_SYNTAX_ERRORS = 10;
/** Deepest expression (arithmetic, parentheses) the reader follows. */
export const MAX_EXPRESSION_DEPTH = 256;

type Sym =
  | { kind: "builder"; builder: BuilderName }
  | { kind: "gpu"; name: string }
  | { kind: "type" }
  /** A name whose declaration was refused (already reported): references to it are silent holes. */
  | { kind: "refused" }
  | { kind: "const"; line: number; nameSpan: Span; state: "evaluating" | "done"; value: TsValue | null; failed: boolean };

const VALUE_NAMES: readonly string[] = [...Object.keys(BUILDERS), ...Object.keys(GPU_PRESETS)];
const IMPORTABLE: readonly string[] = [...VALUE_NAMES, ...DSL_TYPE_NAMES];

/** Read `text` (the contents of `file`) as a TypeScript spec. Never runs it; never throws on user input. */
export function readTsSpec(file: string, text: string): ReadTsResult {
  const sink = new DiagnosticSink();
  if (text.length > MAX_SOURCE_BYTES) {
    sink.report("DSV1008", { file, line: 1, col: 1, offset: 0, length: 0 }, { bytes: text.length, max: MAX_SOURCE_BYTES });
    return { document: null, diagnostics: sink.all };
  }
  let source: SourceFile;
  try {
    // One in-memory project per read: no file system, no type checking, no lib files loaded.
    const project = new Project({ useInMemoryFileSystem: true, compilerOptions: { noLib: true, noResolve: true, allowJs: false } });
    source = project.createSourceFile("/spec.ts", text, { overwrite: true, scriptKind: ts.ScriptKind.TS });
  } catch (e) {
    if (e instanceof RangeError) { // the parser's stack, on absurd nesting
      sink.report("DSV1007", { file, line: 1, col: 1, offset: 0, length: 0 }, { max: MAX_NESTING });
      return { document: null, diagnostics: sink.all };
    }
    throw e;
  }
  const reader = new TsSpecReader(file, text, source, sink);
  const document = reader.read();
  return { document, diagnostics: sortDiagnostics(sink.all) };
}

class TsSpecReader {
  private readonly lines: LineIndex;
  private readonly symbols = new Map<string, Sym>();
  /** Top-level names declared anywhere in the file, with the line of their declaration. */
  private readonly declaredAt = new Map<string, number>();
  /** Set when the value being evaluated depends on something reported. */
  private failed = false;
  private depth = 0;
  private nesting = 0;
  private tooDeepReported = false;

  constructor(private readonly file: string, text: string, private readonly source: SourceFile, private readonly sink: DiagnosticSink) {
    this.lines = new LineIndex(file, text);
  }

  read(): Document | null {
    if (this.syntaxErrors()) return null;
    const statements = this.source.getStatements();
    for (const s of statements) {
      if (!Node.isVariableStatement(s)) continue;
      for (const d of s.getDeclarations()) {
        const n = d.getNameNode();
        if (Node.isIdentifier(n) && !this.declaredAt.has(n.getText())) this.declaredAt.set(n.getText(), this.spanOf(n).line);
      }
    }
    // Imports first: they are hoisted, so a builder may be used above its import.
    for (const s of statements) if (Node.isImportDeclaration(s)) this.importDeclaration(s);
    // Then the rest in order, as a module's body runs: a constant exists from its declaration on.
    let root: { value: TsValue | null; failed: boolean; node: Node } | null = null;
    for (const s of statements) {
      if (Node.isImportDeclaration(s)) continue;
      else if (Node.isVariableStatement(s)) this.variableStatement(s);
      else if (Node.isExportAssignment(s)) {
        if (s.isExportEquals()) {
          this.report("DSV6002", s, { what: "`export =`" }, "write `export default spec({ … })`");
          continue;
        }
        if (root !== null) {
          this.report("DSV6015", s, {}, `remove it; the first is at ${this.where(root.node)}`);
          continue;
        }
        const { value, failed } = this.evaluateIsolated(s.getExpression());
        root = { value, failed, node: s };
      } else if (Node.isTypeAliasDeclaration(s) || Node.isInterfaceDeclaration(s) || Node.isEmptyStatement(s)) {
        continue; // erased at compile time: nothing runs
      } else {
        this.report("DSV6002", s, { what: statementWhat(s) }, "remove it: a spec is read, never run");
      }
    }
    if (root === null) {
      this.sink.report("DSV6014", { file: this.file, line: 1, col: 1, offset: 0, length: 0 }, {}, "end the file with `export default spec({ model, precision, cluster, schedules })`");
      return null;
    }
    if (root.failed || root.value === null) return null;
    const before = this.sink.errorCount;
    const doc = tsValueToDocument(root.value, this.file, this.sink);
    return this.sink.errorCount > before ? null : doc;
  }

  // ── Diagnostics and spans ─────────────────────────────────────────────────────────────────────
  private syntaxErrors(): boolean {
    const diags = (this.source.compilerNode as unknown as { parseDiagnostics?: readonly ts.DiagnosticWithLocation[] }).parseDiagnostics ?? [];
    // The first few: after that, the parser's recovery mostly reports its own confusion.
    for (const d of diags.slice(0, MAX_SYNTAX_ERRORS)) {
      this.sink.report("DSV6001", this.spanAt(d.start, d.length), { message: ts.flattenDiagnosticMessageText(d.messageText, " ") });
    }
    return diags.length > 0;
  }

  private spanAt(offset: number, length: number): Span {
    return this.lines.span(offset, length);
  }

  private spanOf(node: Node): Span {
    const start = node.getStart();
    return this.spanAt(start, node.getEnd() - start);
  }

  private where(node: Node): string {
    const s = this.spanOf(node);
    return `${s.file}:${s.line}:${s.col}`;
  }

  private report(code: DiagnosticCode, node: Node, args: MessageArgs = {}, fix?: string): null {
    this.sink.report(code, this.spanOf(node), args, fix);
    this.failed = true;
    return null;
  }

  // ── Statements ────────────────────────────────────────────────────────────────────────────────
  private importDeclaration(s: ImportDeclaration): void {
    const module = s.getModuleSpecifierValue();
    const clause = s.getImportClause();
    if (module !== DSV3_MODULE) {
      this.report("DSV6003", s, { module }, `import from "${DSV3_MODULE}" only; a spec is data, not a program`);
      for (const n of clause ? [clause.getDefaultImport(), clause.getNamespaceImport(), ...clause.getNamedImports().map((i) => i.getAliasNode() ?? i.getNameNode())] : []) {
        if (n) this.define(n.getText(), { kind: "refused" }, n);
      }
      return;
    }
    if (clause === undefined) {
      this.report("DSV6005", s, { what: "a side-effect import" }, `write import { spec, model, … } from "${DSV3_MODULE}"`);
      return;
    }
    const def = clause.getDefaultImport();
    if (def) {
      this.report("DSV6005", def, { what: "a default import" }, `write import { spec, model, … } from "${DSV3_MODULE}"`);
      this.define(def.getText(), { kind: "refused" }, def);
    }
    const ns = clause.getNamespaceImport();
    if (ns) {
      this.report("DSV6005", ns, { what: "a namespace import" }, `write import { spec, model, … } from "${DSV3_MODULE}"`);
      this.define(ns.getText(), { kind: "refused" }, ns);
    }
    const typeOnly = clause.isTypeOnly();
    for (const spec of clause.getNamedImports()) {
      const imported = spec.getNameNode().getText();
      const localNode = spec.getAliasNode() ?? spec.getNameNode();
      const local = localNode.getText();
      if (!IMPORTABLE.includes(imported)) {
        this.report("DSV6004", spec.getNameNode(), { name: imported }, suggestionFix(imported, IMPORTABLE));
        this.define(local, { kind: "refused" }, localNode);
        continue;
      }
      let sym: Sym;
      if (typeOnly || spec.isTypeOnly() || !VALUE_NAMES.includes(imported)) sym = { kind: "type" };
      else if (Object.hasOwn(BUILDERS, imported)) sym = { kind: "builder", builder: imported as BuilderName };
      else sym = { kind: "gpu", name: imported };
      this.define(local, sym, localNode);
    }
  }

  private define(name: string, sym: Sym, node: Node): boolean {
    if (this.symbols.has(name)) {
      this.sink.report("DSV2008", this.spanOf(node), { what: "name", name }, "rename one");
      return false;
    }
    this.symbols.set(name, sym);
    return true;
  }

  private variableStatement(s: VariableStatement): void {
    const kind = s.getDeclarationKind();
    if (s.hasModifier(SyntaxKind.DeclareKeyword)) {
      this.report("DSV6002", s, { what: "an ambient `declare` declaration" }, "remove it: a spec is read, never run");
      for (const d of s.getDeclarations()) this.refuseName(d.getNameNode());
      return;
    }
    if (kind !== VariableDeclarationKind.Const) {
      this.report("DSV6006", s.getDeclarationKindKeywords()[0] ?? s, { keyword: kind }, "declare it with const");
      for (const d of s.getDeclarations()) this.refuseName(d.getNameNode());
      return;
    }
    for (const d of s.getDeclarations()) {
      const nameNode = d.getNameNode();
      if (!Node.isIdentifier(nameNode)) {
        this.report("DSV6007", nameNode, { what: "a destructuring pattern" }, "declare one constant per name: const NAME = …");
        continue;
      }
      const name = nameNode.getText();
      const sym: Sym = { kind: "const", line: this.spanOf(nameNode).line, nameSpan: this.spanOf(nameNode), state: "evaluating", value: null, failed: true };
      if (!this.define(name, sym, nameNode)) continue;
      const init = d.getInitializer();
      if (init === undefined) {
        sym.state = "done";
        continue; // a syntax error, already reported
      }
      const { value, failed } = this.evaluateIsolated(init);
      sym.value = value;
      sym.failed = failed || value === null;
      sym.state = "done";
    }
  }

  private refuseName(n: Node): void {
    if (Node.isIdentifier(n) && !this.symbols.has(n.getText())) this.symbols.set(n.getText(), { kind: "refused" });
  }

  /** Evaluate one top-level initialiser; `failed` says whether it depends on anything reported. */
  private evaluateIsolated(e: Expression): { value: TsValue | null; failed: boolean } {
    const outer = this.failed;
    this.failed = false;
    const value = this.evaluate(e);
    const failed = this.failed || value === null;
    this.failed = outer;
    return { value, failed };
  }

  // ── Expressions ───────────────────────────────────────────────────────────────────────────────
  private evaluate(e: Node): TsValue | null {
    if (this.depth >= MAX_EXPRESSION_DEPTH) return this.tooDeep(e, MAX_EXPRESSION_DEPTH);
    this.depth++;
    try {
      return this.evaluateNode(e);
    } finally {
      this.depth--;
    }
  }

  private tooDeep(e: Node, max: number): null {
    this.failed = true;
    if (!this.tooDeepReported) this.report("DSV1007", e, { max });
    this.tooDeepReported = true;
    return null;
  }

  /** Objects, lists and builder calls nest at most MAX_NESTING deep, as blocks do in the text language. */
  private nested<T>(e: Node, f: () => T): T | null {
    if (this.nesting >= MAX_NESTING) return this.tooDeep(e, MAX_NESTING);
    this.nesting++;
    try {
      return f();
    } finally {
      this.nesting--;
    }
  }

  private evaluateNode(e: Node): TsValue | null {
    const span = this.spanOf(e);
    if (Node.isNumericLiteral(e)) {
      const value = e.getLiteralValue();
      if (!Number.isFinite(value)) return this.report("DSV6012", e, { expression: snippet(e) });
      return { k: "number", value, raw: numberRaw(value, e.getText()), span };
    }
    if (Node.isStringLiteral(e) || Node.isNoSubstitutionTemplateLiteral(e)) return { k: "string", value: e.getLiteralValue(), span };
    if (Node.isTrueLiteral(e) || Node.isFalseLiteral(e)) return { k: "bool", value: e.getLiteralValue(), span };
    if (Node.isNullLiteral(e)) return { k: "null", span };
    if (Node.isParenthesizedExpression(e) || Node.isAsExpression(e) || Node.isSatisfiesExpression(e)) return this.evaluate(e.getExpression());
    if (Node.isIdentifier(e)) return this.reference(e);
    if (Node.isPrefixUnaryExpression(e)) return this.prefixUnary(e);
    if (Node.isBinaryExpression(e)) return this.binary(e);
    if (Node.isObjectLiteralExpression(e)) return this.nested(e, () => this.object(e));
    if (Node.isArrayLiteralExpression(e)) return this.nested(e, () => this.array(e));
    if (Node.isCallExpression(e)) return this.nested(e, () => this.call(e));
    return this.report("DSV6007", e, { what: expressionWhat(e) }, expressionFix(e));
  }

  private reference(e: Node): TsValue | null {
    const name = e.getText();
    const span = this.spanOf(e);
    const sym = this.symbols.get(name);
    if (sym === undefined) {
      const line = this.declaredAt.get(name);
      if (line !== undefined) return this.report("DSV6010", e, { name, line }, "move its declaration above this use");
      if (name === "undefined") return this.report("DSV6007", e, { what: "`undefined`" }, "leave the field out, or write null for none");
      if (VALUE_NAMES.includes(name)) return this.report("DSV6009", e, { name }, `import it: import { ${name} } from "${DSV3_MODULE}"`);
      const near = closestName(name, [...this.symbols].filter(([, s]) => s.kind === "const" || s.kind === "gpu").map(([n]) => n));
      return this.report("DSV6009", e, { name }, near === null ? undefined : `did you mean '${near}'?`);
    }
    switch (sym.kind) {
      case "refused":
        this.failed = true;
        return null;
      case "type":
        return this.report("DSV6009", e, { name }, `'${name}' is a type; use it after \`satisfies\` or \`as\``);
      case "builder":
        return this.report("DSV6007", e, { what: `the builder '${name}' without a call` }, `call it: ${name}(…)`);
      case "gpu":
        return { k: "gpu", name: sym.name, span };
      case "const": {
        if (sym.state !== "done") return this.report("DSV6010", e, { name, line: sym.line }, "a constant cannot refer to itself");
        if (sym.failed || sym.value === null) {
          this.failed = true;
          return null;
        }
        const v = sym.value;
        // A scalar used here is written here: its span is the reference, so carets point at the use.
        if (v.k === "number" || v.k === "string" || v.k === "bool" || v.k === "null" || v.k === "gpu") return { ...v, span };
        return v;
      }
    }
  }

  private prefixUnary(e: PrefixUnaryExpression): TsValue | null {
    const op = e.getOperatorToken();
    if (op !== SyntaxKind.MinusToken && op !== SyntaxKind.PlusToken) {
      return this.report("DSV6007", e, { what: `the operator '${ts.tokenToString(op) ?? "?"}'` }, "only + - * / % ** and parentheses are allowed");
    }
    const v = this.evaluate(e.getOperand());
    if (v === null) return null;
    if (v.k !== "number") return this.report("DSV6011", e, { op: ts.tokenToString(op) ?? "-", found: describe(v) });
    const value = op === SyntaxKind.MinusToken ? -v.value : v.value;
    return this.finite(e, value === 0 ? 0 : value);
  }

  private binary(e: BinaryExpression): TsValue | null {
    const opKind = e.getOperatorToken().getKind();
    const opText = e.getOperatorToken().getText();
    const ops: Partial<Record<SyntaxKind, (a: number, b: number) => number>> = {
      [SyntaxKind.PlusToken]: (a, b) => a + b,
      [SyntaxKind.MinusToken]: (a, b) => a - b,
      [SyntaxKind.AsteriskToken]: (a, b) => a * b,
      [SyntaxKind.SlashToken]: (a, b) => a / b,
      [SyntaxKind.PercentToken]: (a, b) => a % b,
      [SyntaxKind.AsteriskAsteriskToken]: (a, b) => a ** b,
    };
    const f = ops[opKind];
    if (f === undefined) {
      const what = opKind >= SyntaxKind.FirstAssignment && opKind <= SyntaxKind.LastAssignment ? `the assignment '${snippet(e)}'` : `the operator '${opText}'`;
      return this.report("DSV6007", e, { what }, "only + - * / % ** and parentheses are allowed");
    }
    const a = this.evaluate(e.getLeft());
    const b = this.evaluate(e.getRight());
    if (a === null || b === null) return null;
    if (a.k !== "number" || b.k !== "number") return this.report("DSV6011", e.getOperatorToken(), { op: opText, found: describe(a.k !== "number" ? a : b) });
    const value = f(a.value, b.value);
    return this.finite(e, Object.is(value, -0) ? 0 : value);
  }

  private finite(e: Node, value: number): TsValue | null {
    if (!Number.isFinite(value)) return this.report("DSV6012", e, { expression: snippet(e) });
    return { k: "number", value, raw: numberRaw(value), span: this.spanOf(e) };
  }

  private object(e: ObjectLiteralExpression): TsValue {
    const entries: TsEntry[] = [];
    for (const p of e.getProperties()) {
      if (Node.isPropertyAssignment(p)) {
        const nameNode = p.getNameNode();
        let key: string;
        if (Node.isIdentifier(nameNode)) key = nameNode.getText();
        else if (Node.isStringLiteral(nameNode) || Node.isNoSubstitutionTemplateLiteral(nameNode)) key = nameNode.getLiteralValue();
        else if (Node.isNumericLiteral(nameNode)) key = String(nameNode.getLiteralValue());
        else {
          this.report("DSV6007", nameNode, { what: Node.isComputedPropertyName(nameNode) ? "a computed property name" : "this property name" }, "write the key itself: key: value");
          continue;
        }
        const init = p.getInitializer();
        const value = init ? this.evaluate(init) : null;
        if (value !== null) entries.push({ kind: "prop", key, keySpan: this.spanOf(nameNode), value, span: this.spanOf(p) });
      } else if (Node.isShorthandPropertyAssignment(p)) {
        const nameNode = p.getNameNode();
        const value = this.reference(nameNode);
        if (value !== null) entries.push({ kind: "prop", key: nameNode.getText(), keySpan: this.spanOf(nameNode), value, span: this.spanOf(p) });
      } else if (Node.isSpreadAssignment(p)) {
        const spread = this.spread(p);
        if (spread !== null) entries.push(spread);
      } else {
        const what = Node.isGetAccessorDeclaration(p) ? "a getter" : Node.isSetAccessorDeclaration(p) ? "a setter" : Node.isMethodDeclaration(p) ? "a method" : "this property";
        this.report("DSV6007", p, { what }, "write key: value");
      }
    }
    return { k: "object", entries, span: this.spanOf(e) };
  }

  /** `...NAME`: a constant object becomes a preset; a GPU preset stays one. */
  private spread(p: SpreadAssignment): TsEntry | null {
    const target = p.getExpression();
    if (!Node.isIdentifier(target)) {
      return this.report("DSV6016", target, { found: Node.isObjectLiteralExpression(target) ? "an object literal" : `'${snippet(target)}'` }, "declare the object as a const and spread its name");
    }
    const name = target.getText();
    const sym = this.symbols.get(name);
    const value = this.reference(target);
    if (value === null) return null;
    const span = this.spanOf(p);
    const nameSpan = this.spanOf(target);
    if (value.k === "gpu") return { kind: "spread", name: value.name, nameSpan, body: null, span };
    if (value.k === "object" && sym?.kind === "const") return { kind: "spread", name, nameSpan, body: value, declSpan: sym.nameSpan, span };
    return this.report("DSV6016", target, { found: `'${name}' = ${describe(value)}` }, "spread a const object or a GPU preset");
  }

  private array(e: ArrayLiteralExpression): TsValue {
    const items: TsValue[] = [];
    for (const el of e.getElements()) {
      if (Node.isSpreadElement(el)) {
        this.report("DSV6007", el, { what: "a spread in a list" }, "write the items out");
        continue;
      }
      if (Node.isOmittedExpression(el)) {
        this.report("DSV6007", e, { what: "an empty list slot" }, "remove the extra comma");
        continue;
      }
      const v = this.evaluate(el);
      if (v !== null) items.push(v);
    }
    return { k: "array", items, span: this.spanOf(e) };
  }

  private call(e: CallExpression): TsValue | null {
    const callee = e.getExpression();
    if (callee.getKind() === SyntaxKind.ImportKeyword) return this.report("DSV6007", e, { what: "a dynamic import()" }, "a spec imports only from \"dsv3\", statically");
    if (!Node.isIdentifier(callee) && !Node.isPropertyAccessExpression(callee) && !Node.isElementAccessExpression(callee)) {
      return this.report("DSV6007", callee, { what: expressionWhat(callee) }, "a spec is read, never run: write the value itself");
    }
    const name = Node.isIdentifier(callee) ? callee.getText() : null;
    const sym = name === null ? undefined : this.symbols.get(name);
    if (sym === undefined && name !== null && Object.hasOwn(BUILDERS, name)) {
      return this.report("DSV6009", callee, { name }, `import it: import { ${name} } from "${DSV3_MODULE}"`);
    }
    if (sym?.kind !== "builder") {
      return this.report("DSV6008", e, { name: snippet(callee), builders: Object.keys(BUILDERS).join(", ") }, "a spec is read, never run: write the value itself");
    }
    const builder = sym.builder;
    const args = e.getArguments();
    const spreadArg = args.find((a) => Node.isSpreadElement(a));
    if (spreadArg) return this.report("DSV6007", spreadArg, { what: "a spread argument" }, "pass the arguments themselves");
    const [min, max] = BUILDERS[builder].labels;
    if (args.length < min + 1 || args.length > max + 1) {
      const expected = max === 0 ? "one argument, { … }" : min === max ? `two arguments, a name and { … }` : "an optional name and { … }";
      const at = args.length > max + 1 ? args[max + 1]! : e;
      return this.report("DSV6013", at, { builder, expected, found: args.length }, max === 0 ? `write ${builder}({ … })` : `write ${builder}("NAME", { … })`);
    }
    const labelArgs = args.slice(0, args.length - 1);
    const labels: { value: string; span: Span }[] = [];
    let ok = true;
    for (const a of labelArgs) {
      const v = this.evaluate(a);
      if (v === null) { ok = false; continue; }
      if (v.k !== "string") {
        this.report("DSV6019", a, { builder, which: "name", expected: "a string", found: describe(v) });
        ok = false;
        continue;
      }
      labels.push({ value: v.value, span: v.span });
    }
    const fieldsArg = args[args.length - 1]!;
    const fields = this.evaluate(fieldsArg);
    if (fields !== null && fields.k !== "object") {
      return this.report("DSV6019", fieldsArg, { builder, which: "fields", expected: "an object { … }", found: describe(fields) });
    }
    if (!ok || fields === null) return null;
    return { k: "call", builder, calleeSpan: this.spanOf(callee), labels, fields, span: this.spanOf(e) };
  }
}

/** The start of a node's text, for messages (one line, at most 40 characters). */
function snippet(n: Node): string {
  const text = n.getText().replace(/\s+/g, " ");
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}

function statementWhat(s: Statement): string {
  if (Node.isExpressionStatement(s)) {
    const e = s.getExpression();
    return Node.isCallExpression(e) ? `the call statement '${snippet(e)}'` : `the expression statement '${snippet(s)}'`;
  }
  if (Node.isFunctionDeclaration(s)) return "a function declaration";
  if (Node.isClassDeclaration(s)) return "a class declaration";
  if (Node.isEnumDeclaration(s)) return "an enum declaration";
  if (Node.isModuleDeclaration(s)) return "a namespace declaration";
  if (Node.isImportEqualsDeclaration(s)) return "an `import … = require(…)`";
  if (Node.isExportDeclaration(s)) return "an export declaration";
  if (Node.isIfStatement(s)) return "an if statement";
  if (Node.isForStatement(s) || Node.isForInStatement(s) || Node.isForOfStatement(s) || Node.isWhileStatement(s) || Node.isDoStatement(s)) return "a loop";
  if (Node.isBlock(s)) return "a block statement";
  if (Node.isTryStatement(s)) return "a try statement";
  if (Node.isThrowStatement(s)) return "a throw statement";
  if (Node.isSwitchStatement(s)) return "a switch statement";
  return `a statement (${s.getKindName()})`;
}

function expressionWhat(e: Node): string {
  if (Node.isParenthesizedExpression(e)) return expressionWhat(e.getExpression());
  if (Node.isPropertyAccessExpression(e) || Node.isElementAccessExpression(e)) return `the property access '${snippet(e)}'`;
  if (Node.isTemplateExpression(e)) return "a template literal with substitutions";
  if (Node.isTaggedTemplateExpression(e)) return "a tagged template";
  if (Node.isNewExpression(e)) return "a `new` expression";
  if (Node.isArrowFunction(e) || Node.isFunctionExpression(e)) return "a function";
  if (Node.isClassExpression(e)) return "a class expression";
  if (Node.isConditionalExpression(e)) return "a conditional expression";
  if (Node.isAwaitExpression(e)) return "an await expression";
  if (Node.isBigIntLiteral(e)) return "a BigInt literal";
  if (Node.isRegularExpressionLiteral(e)) return "a regular expression";
  if (Node.isPostfixUnaryExpression(e)) return `the operator '${ts.tokenToString(e.getOperatorToken()) ?? "?"}'`;
  if (Node.isTypeOfExpression(e)) return "a typeof expression";
  if (Node.isNonNullExpression(e)) return "a non-null assertion (!)";
  if (Node.isTypeAssertion(e)) return "an angle-bracket type assertion";
  return `the expression '${snippet(e)}' (${e.getKindName()})`;
}

function expressionFix(e: Node): string | undefined {
  if (Node.isTemplateExpression(e)) return 'write the string itself, e.g. "160 GB/s"';
  if (Node.isPropertyAccessExpression(e) || Node.isElementAccessExpression(e)) return "a spec cannot read its environment: write the value itself";
  if (Node.isTypeAssertion(e)) return "write `value as Type`";
  return undefined;
}
