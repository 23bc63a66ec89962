/** Rendering a diagnostic: the excerpt and caret, also on lines too long to show whole. */
import { describe, expect, it } from "vitest";
import { makeDiagnostic, renderDiagnostic } from "../dsl/diagnostic.js";

describe("renderDiagnostic", () => {
  it("puts the caret under the span on a short line", () => {
    const text = "model {\n  heads = 3\n}\n";
    const d = makeDiagnostic("DSV5002", { file: "a.dsv3", line: 2, col: 11, offset: 18, length: 1 }, { heads: 128, tp: 3 }, "use tp = 2 or 4");
    expect(renderDiagnostic(d, new Map([["a.dsv3", text]]))).toBe(
      "a.dsv3:2:11: error DSV5002: attention heads = 128 are not divisible by tp = 3\n 2 |   heads = 3\n   |           ^\n  fix: use tp = 2 or 4",
    );
  });

  it("shows a window around the caret on a very long line, with the caret still under the span", () => {
    const line = "a".repeat(5000) + "@" + "b".repeat(5000);
    const d = makeDiagnostic("DSV1001", { file: "x.dsv3", line: 1, col: 5001, offset: 5000, length: 1 }, { char: "'@'" });
    const [, excerpt, caret] = renderDiagnostic(d, new Map([["x.dsv3", line]])).split("\n");
    expect(excerpt!.length).toBeLessThan(220);
    expect(excerpt!.startsWith(" 1 | …")).toBe(true);
    expect(excerpt!.endsWith("…")).toBe(true);
    expect(excerpt![caret!.indexOf("^")]).toBe("@");
  });
});

describe("line endings", () => {
  it("counts only \\n as a line break: a lone \\r is white space for the lexer, the excerpt and the caret", async () => {
    const { parseDocument } = await import("../dsl/parser.js");
    const text = 'model {\r  x = "abc\r  y = 1\n}\n';
    const r = parseDocument(text, "cr.dsv3");
    const d = r.diagnostics.all.find((x) => x.code === "DSV1002");
    expect(d?.span).toMatchObject({ line: 1, col: 15 });
    const [, excerpt, caret] = renderDiagnostic(d!, new Map([["cr.dsv3", text]])).split("\n");
    expect(excerpt).toBe(' 1 | model {   x = "abc   y = 1');
    expect(excerpt![caret!.indexOf("^")]).toBe('"');
  });

  it("handles \\r\\n files like \\n files", async () => {
    const { checkSpecFile } = await import("../compiler/check/index.js");
    const { readFileSync } = await import("node:fs");
    const lf = readFileSync("specs/tiny.dsv3", "utf8");
    const crlf = lf.replace(/\n/g, "\r\n");
    expect(checkSpecFile("t.dsv3", undefined, crlf).spec).toEqual(checkSpecFile("t.dsv3", undefined, lf).spec);
  });
});
