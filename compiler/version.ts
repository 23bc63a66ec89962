/** The compiler's version, recorded in every bundle. Kept equal to package.json's (a test checks). */
export const COMPILER_VERSION = "0.1.0";
