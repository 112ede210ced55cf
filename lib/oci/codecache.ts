// The V8 code cache of nsbox-runc's bundle. `create` (and every command the native front end
// hands to Node) starts Node, and compiling the 600 KB bundle was a good part of that start.
// The package carries dist/nsbox-runc-bundle.cjs (the runtime, lib/oci/bin.ts and the library)
// and, beside it, dist/nsbox-runc-bundle.cache: V8's compiled code for it, made at build time
// (tsup runs dist/nsbox-runc-cache.cjs, ./make-cache.ts, after the build). The entry Node runs,
// dist/nsbox-runc.cjs (./load.ts), compiles the bundle with that cache.
//
// Why it is safe to use: the cache lives where the code lives, made by the same build, and is
// used only when it is as trusted as the bundle (same owner, writable by no one who cannot
// write the bundle). It is used only for the bundle it was made from (the file carries a copy
// of it, compared byte for byte, and names the Node version and the machine), and V8 itself
// refuses a cache of another V8 version or other V8 flags (the script is then compiled as
// without one). Nothing writes it at run time: a cache the runtime (root) wrote where it runs
// would be a persistent file whose forgery runs code as root.
import { Script } from 'node:vm';

export const BUNDLE = 'nsbox-runc-bundle.cjs';
export const CACHE = 'nsbox-runc-bundle.cache';

/**
 * The cache file: this head line (what it was made for), the bundle it was made from, then
 * V8's data. A copy of the bundle, not its mtime (npm gives every file of a package the same
 * one) nor only its length (all V8 compares).
 */
export function cacheHead(bundleLength: number): string {
  return `nsbox-runc code cache 2 ${process.version} ${process.arch} ${bundleLength}\n`;
}

/** V8's data from a cache file, when the file was made by this Node for `bundle`. */
export function cachedDataFor(file: Buffer, bundle: Buffer): Buffer | undefined {
  const head = cacheHead(bundle.length);
  const start = head.length + bundle.length;
  if (file.length <= start || file.toString('latin1', 0, head.length) !== head) return undefined;
  return file.subarray(head.length, start).equals(bundle) ? file.subarray(start) : undefined;
}

/**
 * The bundle as a script whose value is its CommonJS module function, the same text (so the
 * same cache) for the maker and the entry. The bundle has no `import()` (tsup turns it into
 * `require`): a script compiled from a code cache cannot reach Node's dynamic import.
 */
export function compileBundle(file: string, source: string, cachedData?: Buffer): Script {
  const text = `(function (exports, require, module, __filename, __dirname) { ${source.replace(/^#!/, '//')}\n})`;
  return new Script(text, { filename: file, ...(cachedData ? { cachedData } : {}) });
}
