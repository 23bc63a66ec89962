/** A file-system error in words, for diagnostics (the raw message repeats the path and the errno). */
export function describeSystemError(e: unknown): string {
  switch ((e as { code?: unknown } | null | undefined)?.code) {
    case "ENOENT": return "no such file";
    case "EISDIR": return "it is a directory";
    case "ENOTDIR": return "part of the path is a file, not a directory";
    case "EACCES":
    case "EPERM": return "permission denied";
    case "ENOSPC": return "no space left on the device";
    case "EROFS": return "the file system is read-only";
    default: return e instanceof Error ? e.message : String(e);
  }
}
