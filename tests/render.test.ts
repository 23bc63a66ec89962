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
