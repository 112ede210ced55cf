// nsbox-runc's cache of compiled seccomp programs, in its --root. podman gives every container
// the same profile (its default: ~7 KB of JSON, ~680 BPF instructions), and compiling it in JS
// was a good part of each `create`'s CPU (docs/oci-runtime.md, Start-up time). The program of a
// profile is kept in `<root>/.seccomp-cache/<nn>.bpf` and used again by a later create or exec
// of the same build for the same profile.
//
// Why it is safe to use:
// - A program is taken only for the very profile it was compiled from: the file carries the
//   profile's JSON text (as config.json gave it), compared byte for byte, not a hash of it.
// - Only from the build that wrote it: the head names the build (a hash of the library's
//   sources, made by the build), the Node version and the machine; any other is not used (and
//   is replaced), so a fixed compiler never serves an old program.
// - Only when no other user could have written it: the root, the cache directory and the file
//   are owned by this process's user (the file also by nobody else: one link, a regular file
//   opened without following a symlink) and writable by no one else. Anything else: the profile
//   is compiled as without a cache, and the file is left alone.
// - The program is installed only after the same checks as a compiled one (its length here; the
//   spawn's own checks of an early filter); the profile itself is still validated (fromOCI) on
//   every call, so a config it refuses is refused as before.
// The file names are the low 8 bits of a hash of the text: at most 256 files, a collision
// replaces the older one.
import { closeSync, fstatSync, lstatSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeSync, constants } from 'node:fs';

/** The kernel takes at most 4096 instructions (BPF_MAXINSNS) of 8 bytes. */
const MAX_BYTES = 4096 * 8;
const MAX_FILE = 1 << 20;

/** The directory of the cache in a runtime root. */
export const cacheDir = (root: string): string => `${root}/.seccomp-cache`;

/** FNV-1a (32 bits) of a string's UTF-16 units: picks the file, not a check of the content. */
function bucket(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 0x01000193); }
  return ((h >>> 0) & 0xff).toString(16).padStart(2, '0');
}

const head = (build: string, textBytes: number): string =>
  `nsbox-runc seccomp cache 1 ${build} ${process.version} ${process.arch} ${textBytes}\n`;

/** Whether `path` (not followed) is a directory of this user that no one else can write. */
function ownDir(path: string, uid: number): boolean {
  try {
    const st = lstatSync(path);
    return st.isDirectory() && st.uid === uid && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

/**
 * The program cached in `root` for the profile `text` by the build `build`, or undefined (none,
 * another profile's or build's, or a file it does not trust).
 */
export function readCachedProgram(root: string, build: string, text: string): Buffer | undefined {
  const uid = process.geteuid?.() ?? -1;
  const dir = cacheDir(root);
  if (!ownDir(root, uid) || !ownDir(dir, uid)) return undefined;
  let fd: number;
  try { fd = openSync(`${dir}/${bucket(text)}.bpf`, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK); } catch { return undefined; }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.uid !== uid || (st.mode & 0o022) !== 0 || st.nlink !== 1 || st.size > MAX_FILE) return undefined;
    const file = Buffer.allocUnsafe(st.size);
    let got = 0;
    while (got < file.length) {
      const n = readSync(fd, file, got, file.length - got, got);
      if (n === 0) return undefined;
      got += n;
    }
    const textBuf = Buffer.from(text, 'utf8');
    const h = Buffer.from(head(build, textBuf.length), 'latin1');
    const start = h.length + textBuf.length;
    const prog = file.subarray(start);
    if (file.length <= start || !file.subarray(0, h.length).equals(h) || !file.subarray(h.length, start).equals(textBuf)) return undefined;
    if (prog.length % 8 !== 0 || prog.length > MAX_BYTES) return undefined;
    return Buffer.from(prog); // a copy of its own (the spawn plan keeps it)
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Keeps `program` for the profile `text` in `root`'s cache (best effort: a cache that cannot be
 * written, or a directory not this user's alone, is left as it is). Written to a new file and
 * renamed over the old one, so a reader sees a whole file or none.
 */
export function writeCachedProgram(root: string, build: string, text: string, program: Buffer): void {
  if (program.length === 0 || program.length % 8 !== 0 || program.length > MAX_BYTES) return;
  const uid = process.geteuid?.() ?? -1;
  const dir = cacheDir(root);
  // the root as Sandbox.create makes it (the first create compiles before it runs)
  try { mkdirSync(root, { recursive: true, mode: 0o700 }); } catch { /* checked next */ }
  if (!ownDir(root, uid)) return;
  try { mkdirSync(dir, { mode: 0o700 }); } catch { /* there already (checked next) */ }
  if (!ownDir(dir, uid)) return;
  const tmp = `${dir}/.${bucket(text)}.${process.pid}`;
  let fd: number;
  try { fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600); } catch { return; }
  try {
    const textBuf = Buffer.from(text, 'utf8');
    const data = Buffer.concat([Buffer.from(head(build, textBuf.length), 'latin1'), textBuf, program]);
    let put = 0;
    while (put < data.length) put += writeSync(fd, data, put, data.length - put, put);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, `${dir}/${bucket(text)}.bpf`);
  } catch {
    if (fd >= 0) try { closeSync(fd); } catch { /* closed */ }
    rmSync(tmp, { force: true });
  }
}

/**
 * The program of the profile `text` (config.json's `linux.seccomp` as JSON): from `root`'s cache
 * when it has this build's for that text, else `compile()`d and kept there. Without a build id
 * (the library run from its sources) there is no cache.
 */
export function seccompProgram(root: string, build: string | undefined, text: string, compile: () => Buffer): Buffer {
  if (build === undefined) return compile();
  const have = readCachedProgram(root, build, text);
  if (have) return have;
  const prog = compile();
  writeCachedProgram(root, build, text, prog);
  return prog;
}
