#!/usr/bin/env node
// The dsv3 command: runs the compiled CLI (npm ci builds dist/ through the `prepare` script).
import { runCli } from "../dist/cli/main.js";

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
});
