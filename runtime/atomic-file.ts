/**
 * Writing one output file atomically: a temporary file beside the target (same directory, so the
 * rename stays on one file system), then a rename over it. Readers see the old file or the new one,
 * never half of either. An existing target keeps its mode, and a symlinked target is replaced where
 * the link points.
 */
import { randomBytes } from "node:crypto";
import { mkdir, realpath, rename, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";

export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  let target = file;
  let mode = 0o644;
  try {
    target = await realpath(file);
    mode = (await stat(target)).mode & 0o7777;
  } catch {
    await mkdir(path.dirname(file), { recursive: true });
  }
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    await writeFile(tmp, data, { mode, flag: "wx" });
    await rename(tmp, target);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}
