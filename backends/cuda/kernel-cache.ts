/**
 * The content-addressed cache of compile stages: an entry's key is the SHA-256 of everything that
 * affects the stage's output — the stage's name, its input bytes, its flags and the toolchain's
 * version — so a hit can be reused without asking whether it is stale, and a second compile of the
 * same bundle runs no tool at all. Entries are written to a temporary name and renamed, so a killed
 * compile never leaves a torn entry; concurrent writers of one key write the same bytes.
 *
 * Where: `$DSV3_CACHE_DIR`, else `node_modules/.cache/dsv3-kernels` of the package (git-ignored).
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export function cacheKey(parts: readonly (string | Uint8Array)[]): string {
  const h = createHash("sha256");
  for (const p of parts) {
    const bytes = typeof p === "string" ? Buffer.from(p, "utf8") : p;
    h.update(String(bytes.byteLength)).update(":").update(bytes);
  }
  return h.digest("hex");
}

/** The package root: the nearest ancestor of this module with a package.json. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json"))) return dir;
    const up = dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const forced = env["DSV3_CACHE_DIR"];
  return forced ? resolve(forced) : join(packageRoot(), "node_modules", ".cache", "dsv3-kernels");
}

export class KernelCache {
  hits = 0;
  misses = 0;
  /** The first write error, if any (the cache then stops writing; compiles go on). */
  writeError: Error | null = null;

  constructor(readonly dir: string) {}

  private path(key: string, suffix: string): string {
    return join(this.dir, key.slice(0, 2), `${key}${suffix}`);
  }

  get(key: string, suffix: string): Buffer | null {
    try {
      const b = readFileSync(this.path(key, suffix));
      this.hits++;
      return b;
    } catch {
      this.misses++;
      return null;
    }
  }

  put(key: string, suffix: string, bytes: string | Uint8Array): void {
    if (this.writeError !== null) return;
    const target = this.path(key, suffix);
    const tmp = `${target}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
    try {
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(tmp, bytes);
      renameSync(tmp, target);
    } catch (e) {
      try {
        rmSync(tmp, { force: true });
      } catch {
        // Nothing was written where nothing can be.
      }
      this.writeError = e instanceof Error ? e : new Error(String(e));
    }
  }
}
