// Unpacks one layer tar (plain, gzip, or zstd where Node's zlib has it) into a directory,
// as a layer: `.wh.<name>` entries become whiteouts (char device 0/0), `.wh..wh..opq` makes
// its directory opaque. Every entry is created through directory fds resolved inside the
// layer (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, addon/src/fs.cc fsLayerCreate), so
// a symlink in the layer can never carry a later entry outside it; `..` names are refused.
// The diff id is the sha256 of the uncompressed tar stream.
import { createHash, zlib } from '../util/builtins.js';
import { close, fchmod, fchmodSync, fchown, futimes, write } from 'node:fs';
import { posix } from 'node:path';
import { PassThrough, Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import type { Header } from 'tar-stream';
import { tarStream } from './tar.js';
import { errnoError } from '../errors.js';
import { fsNative, Kind, O, RESOLVE, RESOLVE_SAFE } from './native.js';

const writeP = (fd: number, b: Buffer) => new Promise<number>((res, rej) => write(fd, b, (e, n) => (e ? rej(e) : res(n))));
/** Files up to this size are written synchronously in one native call. */
const SMALL_FILE = 256 << 10;
const fchownP = promisify(fchown), fchmodP = promisify(fchmod), futimesP = promisify(futimes), closeP = promisify(close);

/** Progress of a layer import. */
export interface ImportProgress {
  /** uncompressed tar bytes read so far */
  bytes: number;
  /** entries created so far */
  entries: number;
}

export interface ExtractOptions {
  /** Create device nodes from the tar (refused by default: a layer has no business with them). */
  allowDevices?: boolean;
  /** xattr namespace of overlay metadata: `'trusted'` (default) or `'user'`. */
  xattrNamespace?: 'trusted' | 'user';
  /** Leave every entry owned by the caller (an unprivileged caller may not chown): the tar's owners are dropped. */
  squash?: boolean;
  /**
   * With `squash`: collects here the tar's owners of the entries not owned 0:0 (ids as in the
   * image, and the mode where set-id bits are to be put back after a chown), for an
   * unprivileged caller's store to give them afterwards (subids.ts chownLayer).
   */
  owners?: Array<{ path: string; uid: number; gid: number; mode?: number }>;
  /** Called about every 4 MiB of uncompressed data and at the end. */
  onProgress?: (p: ImportProgress) => void;
}

export interface ExtractResult {
  /** `sha256:<hex>` of the uncompressed tar */
  diffId: string;
  /** uncompressed tar size in bytes */
  size: number;
  entries: number;
}

function refused(name: string, why: string): Error {
  return errnoError(1, 'import', 'tar', name, `layer entry refused: ${why}`);
}

/** Normalises a tar member name to a path relative to the layer root; refuses `..` escapes. */
export function layerPath(name: string): string {
  if (name.includes('\0')) throw refused(name, 'NUL in name');
  const n = posix.normalize(`/${name}`);
  // posix.normalize of an absolute path never leaves '/': detect escapes on the raw name
  const raw = posix.normalize(name.replace(/^\/+/, '') || '.');
  if (raw === '..' || raw.startsWith('../')) throw refused(name, 'the name leaves the layer (..)');
  return n.slice(1).replace(/\/+$/, '');
}

/** Looks at the first bytes and returns the decompressed stream for gzip / zstd, or the input. */
async function decompress(src: Readable): Promise<Readable> {
  const it = src[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const head: Buffer[] = [];
  let n = 0;
  while (n < 4) {
    const r = await it.next();
    if (r.done) break;
    const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    head.push(b);
    n += b.length;
  }
  const first = Buffer.concat(head);
  const rest = Readable.from((async function* () {
    if (first.length) yield first;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    }
  })(), { objectMode: false, highWaterMark: 1 << 20 });
  if (first[0] === 0x1f && first[1] === 0x8b) {
    const pt = new PassThrough({ highWaterMark: 1 << 20 });
    pipeline(rest, zlib().createGunzip(), pt).catch((e) => pt.destroy(e));
    return pt;
  }
  if (first.length >= 4 && first.readUInt32LE(0) === 0xfd2fb528) {
    const mk = (zlib as unknown as { createZstdDecompress?: () => Transform }).createZstdDecompress;
    if (!mk) throw errnoError(95, 'import', 'zstd', undefined, `zstd-compressed layers need Node's zlib zstd support (Node >= 22.15; this is ${process.version})`);
    const pt = new PassThrough({ highWaterMark: 1 << 20 });
    pipeline(rest, mk(), pt).catch((e) => pt.destroy(e));
    return pt;
  }
  return rest;
}

/**
 * Extracts the layer tar `src` into the existing, empty directory `dir` (owned by the caller).
 * Rejects with an NsboxError (step `'import'`) on a refused entry or a kernel failure; the
 * caller removes `dir` then.
 */
export async function extractLayer(src: Readable, dir: string, opts: ExtractOptions = {}): Promise<ExtractResult> {
  const nat = fsNative();
  const opaqueXattr = `${opts.xattrNamespace ?? 'trusted'}.overlay.opaque`;
  const hash = createHash('sha256');
  let size = 0, entries = 0, lastReport = 0;
  const report = () => opts.onProgress?.({ bytes: size, entries });
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      if (size - lastReport >= 4 << 20) { lastReport = size; report(); }
      cb(null, chunk);
    },
  });
  const rootFd = nat.fsOpenat2(-100, dir, O.PATH | O.DIRECTORY | O.NOFOLLOW, 0, RESOLVE.NO_MAGICLINKS, 'import');
  const dirTimes: Array<[string, number]> = [];
  const dirModes: Array<[string, number]> = [];
  try {
    const input = await decompress(src);
    const ex = (await tarStream()).extract();
    const handle = async (h: Header, body: Readable): Promise<void> => {
      const rel = layerPath(h.name);
      const base = posix.basename(rel);
      const parent = posix.dirname(rel) === '.' ? '' : posix.dirname(rel);
      const mtime = h.mtime ? Math.floor(h.mtime.getTime() / 1000) : 0;
      const mode = h.mode ?? 0o644, uid = opts.squash ? -1 : h.uid ?? 0, gid = opts.squash ? -1 : h.gid ?? 0;
      if (opts.squash && opts.owners && ((h.uid ?? 0) !== 0 || (h.gid ?? 0) !== 0) && !base.startsWith('.wh.') && h.type !== 'link') {
        const setId = (h.type === 'file' || h.type === 'contiguous-file' || h.type === 'directory') && (mode & 0o7000) !== 0;
        opts.owners.push({ path: rel, uid: h.uid ?? 0, gid: h.gid ?? 0, ...(setId ? { mode: mode & 0o7777 } : {}) });
      }
      const create = (r: string, kind: number, link = '', maj = 0, min = 0) =>
        nat.fsLayerCreate(rootFd, r, kind, mode, uid, gid, link, maj, min, mtime, opaqueXattr);
      if (base.startsWith('.wh.')) {
        body.resume();
        if (base === '.wh..wh..opq') create(parent, Kind.Opaque);
        else if (!base.startsWith('.wh..wh.')) {
          const victim = base.slice(4);
          if (victim === '' || victim === '.' || victim === '..') throw refused(h.name, 'bad whiteout name');
          create(parent ? `${parent}/${victim}` : victim, Kind.Whiteout);
        }
        return;
      }
      switch (h.type) {
        case 'file': case 'contiguous-file': {
          if (rel === '') throw refused(h.name, 'a file cannot replace the layer root');
          if ((h.size ?? 0) <= SMALL_FILE) {
            // small files in one native call (create, write, chown, chmod, times, close): the
            // thread-pool round trips of async writes would cost more than the write itself
            const parts: Buffer[] = [];
            for await (const chunk of body) parts.push(chunk as Buffer);
            nat.fsLayerCreate(rootFd, rel, Kind.File, mode & 0o7777, uid, gid, '', 0, 0, mtime, opaqueXattr, Buffer.concat(parts));
            return;
          }
          const fd = create(rel, Kind.File);
          try {
            for await (const chunk of body) {
              let off = 0;
              while (off < (chunk as Buffer).length) off += await writeP(fd, off === 0 ? chunk as Buffer : (chunk as Buffer).subarray(off));
            }
            await fchownP(fd, uid, gid);
            await fchmodP(fd, mode & 0o7777);
            await futimesP(fd, mtime, mtime);
          } finally {
            await closeP(fd);
          }
          return;
        }
        case 'directory':
          body.resume();
          if (opts.squash && (mode & 0o700) !== 0o700) {
            // the caller (no CAP_DAC_OVERRIDE) must still make the entries below it: the
            // directory's own mode is given at the end
            nat.fsLayerCreate(rootFd, rel, Kind.Dir, (mode | 0o700) & 0o7777, uid, gid, '', 0, 0, mtime, opaqueXattr);
            dirModes.push([rel, mode & 0o7777]);
          } else {
            create(rel, Kind.Dir);
          }
          dirTimes.push([rel, mtime]);
          return;
        case 'symlink':
          body.resume();
          if (rel === '') throw refused(h.name, 'a symlink cannot replace the layer root');
          create(rel, Kind.Symlink, h.linkname ?? '');
          return;
        case 'link': {
          body.resume();
          const target = layerPath(h.linkname ?? '');
          if (target === '') throw refused(h.name, 'hardlink to the layer root');
          create(rel, Kind.Hardlink, target);
          return;
        }
        case 'fifo':
          body.resume();
          create(rel, Kind.Fifo);
          return;
        case 'character-device': case 'block-device':
          body.resume();
          if (!opts.allowDevices) throw refused(h.name, 'device node (allowDevices is off)');
          create(rel, h.type === 'character-device' ? Kind.Char : Kind.Block, '', h.devmajor ?? 0, h.devminor ?? 0);
          return;
        default:
          body.resume();
      }
    };
    ex.on('entry', (h, body, next) => {
      handle(h, body as unknown as Readable).then(() => { entries++; next(); }, (e) => { body.resume(); next(e as Error); });
    });
    await pipeline(input, counter, ex as unknown as NodeJS.WritableStream);
    // directories' times last: creating their children changed them
    for (let i = dirTimes.length - 1; i >= 0; i--) nat.fsSetTimesIn(rootFd, dirTimes[i][0], dirTimes[i][1]);
    // then (squashed) the modes that would have kept the caller out, deepest first (a chmod
    // leaves the times)
    for (let i = dirModes.length - 1; i >= 0; i--) {
      const fd = nat.fsOpenat2(rootFd, dirModes[i][0] === '' ? '.' : dirModes[i][0], O.RDONLY | O.DIRECTORY | O.NOFOLLOW, 0, RESOLVE_SAFE, 'import');
      try { fchmodSync(fd, dirModes[i][1]); } finally { nat.closeFd(fd); }
    }
    report();
    return { diffId: `sha256:${hash.digest('hex')}`, size, entries };
  } finally {
    nat.closeFd(rootFd);
  }
}
