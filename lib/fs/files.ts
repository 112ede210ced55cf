// Host <-> sandbox file access relative to a sandbox root (a rootfs, a container's merged dir
// or upper dir). Every path is resolved inside the root with openat2(RESOLVE_IN_ROOT |
// RESOLVE_NO_MAGICLINKS): `..`, absolute symlinks and symlinks racing in the tree all stay
// inside it. Writes never follow a final symlink. Sizes are capped.
import { close, fstat, open as fsOpen, read, write, type Stats } from 'node:fs';
import { posix } from 'node:path';
import { promisify } from 'node:util';
import { errnoError } from '../errors.js';
import { fsError, fsNative, O, RESOLVE } from './native.js';
import { absPath, byteSize, checkOptions, fail, innerPath } from '../util/validate.js';

const closeP = promisify(close);
const fstatP = promisify(fstat) as (fd: number) => Promise<Stats>;
const readP = (fd: number, b: Buffer, off: number, len: number) => new Promise<number>((res, rej) => read(fd, b, off, len, null, (e, n) => (e ? rej(e) : res(n))));
const writeP = (fd: number, b: Buffer) => new Promise<number>((res, rej) => write(fd, b, (e, n) => (e ? rej(e) : res(n))));
const openP = (p: string, flags: string | number, mode?: number) => new Promise<number>((res, rej) => fsOpen(p, flags, mode, (e, fd) => (e ? rej(e) : res(fd))));

/** Default cap of {@link readFile}, {@link writeFile}, {@link copyIn}, {@link copyOut}: 64 MiB. */
export const DEFAULT_MAX_BYTES = 64 << 20;

/** Options of {@link readFile} and {@link copyOut}. */
export interface SafeReadOptions {
  /** Refuse files larger than this (bytes or `'16M'`). Default 64 MiB. */
  maxBytes?: number | string;
}

/** Options of {@link writeFile} and {@link copyIn}. */
export interface SafeWriteOptions {
  /** Mode of a new file. Default `0o644`. */
  mode?: number;
  /** Owner of the file (host ids; mind the sandbox's id map). Default: unchanged / the caller. */
  uid?: number;
  gid?: number;
  /** Create missing parent directories (mode 0755). Default `false`. */
  mkdirs?: boolean;
  /** Refuse data larger than this. Default 64 MiB. */
  maxBytes?: number | string;
}

function cap(o: { maxBytes?: number | string }): number {
  return o.maxBytes === undefined ? DEFAULT_MAX_BYTES : byteSize('options.maxBytes', o.maxBytes);
}

function parseWrite(o: SafeWriteOptions) {
  checkOptions('options', o, ['mode', 'uid', 'gid', 'mkdirs', 'maxBytes']);
  const mode = o.mode ?? 0o644;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) fail('options.mode', 'must be a file mode (0 to 0o7777)', RangeError);
  for (const k of ['uid', 'gid'] as const) {
    const v = o[k];
    if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xfffffffe)) fail(`options.${k}`, 'must be an id (0 to 4294967294)', RangeError);
  }
  if (o.mkdirs !== undefined && typeof o.mkdirs !== 'boolean') fail('options.mkdirs', 'must be a boolean');
  return { mode, max: cap(o) };
}

function openRoot(root: string): number {
  return fsNative().fsOpenat2(-100, root, O.PATH | O.DIRECTORY, 0, RESOLVE.NO_MAGICLINKS, 'files');
}

/** Opens `path` inside `root` for reading (a regular file, resolved in the root). */
function openIn(root: string, path: string): number {
  const nat = fsNative();
  const rootFd = openRoot(root);
  try {
    return nat.fsOpenat2(rootFd, path === '' ? '.' : path, O.RDONLY, 0, RESOLVE.IN_ROOT | RESOLVE.NO_MAGICLINKS, 'files');
  } finally {
    nat.closeFd(rootFd);
  }
}

async function readCapped(fd: number, max: number, where: string): Promise<Buffer> {
  const st = await fstatP(fd);
  if (!st.isFile()) throw errnoError(22, 'files', 'read', where, 'not a regular file');
  if (st.size > max) throw fsError('EFBIG', 27, 'files', 'read', where, `file is ${st.size} bytes, over the ${max} byte cap`);
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const b = Buffer.allocUnsafe(Math.min(1 << 20, max + 1 - total));
    const n = await readP(fd, b, 0, b.length);
    if (n === 0) break;
    total += n;
    if (total > max) throw fsError('EFBIG', 27, 'files', 'read', where, `file grew over the ${max} byte cap`);
    chunks.push(b.subarray(0, n));
  }
  return Buffer.concat(chunks);
}

/** Reads the regular file `path` inside `root` (resolved in the root; at most `maxBytes`). */
export async function readFile(root: string, path: string, options: SafeReadOptions = {}): Promise<Buffer> {
  const r = absPath('root', root);
  const p = innerPath('path', path);
  checkOptions('options', options, ['maxBytes']);
  const max = cap(options);
  const fd = openIn(r, p);
  try {
    return await readCapped(fd, max, `/${p}`);
  } finally {
    await closeP(fd);
  }
}

async function writeAll(fd: number, data: Buffer) {
  for (let off = 0; off < data.length;) off += await writeP(fd, data.subarray(off));
}

/** Opens `path` in `root` for writing: parent resolved in the root, the file itself never a symlink. */
function openForWrite(root: string, p: string, mode: number, mkdirs: boolean): number {
  if (p === '') fail('path', 'must name a file inside the root');
  const nat = fsNative();
  const rootFd = openRoot(root);
  try {
    const parent = nat.fsOpenParentIn(rootFd, p, mkdirs);
    try {
      return nat.fsOpenat(parent, posix.basename(p), O.WRONLY | O.CREAT | O.TRUNC, mode, 'files');
    } finally {
      nat.closeFd(parent);
    }
  } finally {
    nat.closeFd(rootFd);
  }
}

/**
 * Writes `data` to `path` inside `root` (created with `mode`, or truncated). A symlink as the
 * file itself is refused (ELOOP); parents are resolved inside the root.
 */
export async function writeFile(root: string, path: string, data: string | Uint8Array, options: SafeWriteOptions = {}): Promise<void> {
  const r = absPath('root', root);
  const p = innerPath('path', path);
  const { mode, max } = parseWrite(options);
  if (typeof data !== 'string' && !(data instanceof Uint8Array)) throw new TypeError('data must be a string or a Uint8Array');
  const buf = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length > max) throw new RangeError(`data is ${buf.length} bytes, over options.maxBytes (${max})`);
  const fd = openForWrite(r, p, mode, options.mkdirs === true);
  try {
    await writeAll(fd, buf);
    await chownChmod(fd, options, mode);
  } finally {
    await closeP(fd);
  }
}

async function chownChmod(fd: number, o: SafeWriteOptions, mode: number) {
  const { fchown, fchmod } = await import('node:fs');
  if (o.uid !== undefined || o.gid !== undefined) await promisify(fchown)(fd, o.uid ?? -1, o.gid ?? -1);
  if (o.mode !== undefined) await promisify(fchmod)(fd, mode);
}

/** Copies the host file `hostPath` to `path` inside `root` (see {@link writeFile}). */
export async function copyIn(hostPath: string, root: string, path: string, options: SafeWriteOptions = {}): Promise<void> {
  const h = absPath('hostPath', hostPath);
  const r = absPath('root', root);
  const p = innerPath('path', path);
  const { mode, max } = parseWrite(options);
  const src = await openP(h, 'r');
  try {
    const data = await readCapped(src, max, h);
    const fd = openForWrite(r, p, mode, options.mkdirs === true);
    try {
      await writeAll(fd, data);
      await chownChmod(fd, options, mode);
    } finally {
      await closeP(fd);
    }
  } finally {
    await closeP(src);
  }
}

/** Copies the file `path` inside `root` to the host file `hostPath` (created 0644 or truncated). */
export async function copyOut(root: string, path: string, hostPath: string, options: SafeReadOptions = {}): Promise<void> {
  const r = absPath('root', root);
  const p = innerPath('path', path);
  const h = absPath('hostPath', hostPath);
  checkOptions('options', options, ['maxBytes']);
  const data = await readFile(r, p, options);
  const fd = await openP(h, 'w', 0o644);
  try {
    await writeAll(fd, data);
  } finally {
    await closeP(fd);
  }
}
