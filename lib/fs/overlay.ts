// OverlayMount: an overlayfs mount made with the new mount API (fsopen('overlay'), one
// `lowerdir+` per layer, fsmount, move_mount onto the opened target; where the kernel lacks
// `lowerdir+`, before 6.8, all layers in one `lowerdir=` string when it fits), or with mount(2)
// and short relative links (or when asked, to test it).
// Also reads an upper dir back: changes() and exportDiff() (an OCI/Docker layer tar).
import { chmodSync, chownSync, closeSync, existsSync, fstatSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, symlinkSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createReadStream } from 'node:fs';
import type { Writable } from 'node:stream';
import type { Header } from 'tar-stream';
import { tarStream } from './tar.js';

type Hdr = Partial<Header> & { name: string };
import { errnoError, NsboxError } from '../errors.js';
import type { IdMap } from '../util/idmap.js';
import { formatMaps, parseIdMaps } from '../util/idmap.js';
import { fsNative, O, RESOLVE } from './native.js';
import { absPath, bool, checkKeys, existingDir, fail, isPlainObject } from '../util/validate.js';
import { ownerTag } from '../owner.js';

const MS_RDONLY = 1, MS_NOSUID = 2, MS_NODEV = 4;

/** Options of {@link OverlayMount.mount}. */
export interface OverlayMountOptions {
  /** Read-only layers, **top first** (like `lowerdir=` and Docker's `lower` file). At least one. */
  lower: string[];
  /** The writable layer (needs `work` on the same filesystem; made when missing). Without it the mount is read-only. */
  upper?: string;
  /** overlayfs's work directory: empty, same filesystem as `upper` (made when missing). */
  work?: string;
  /** Existing directory the merged view is mounted on. */
  target: string;
  /** Mount read-only. Default: `true` without `upper`, else `false`. */
  readonly?: boolean;
  /** Keep overlay metadata in `user.overlay.*` xattrs instead of `trusted.overlay.*` (the `userxattr` option; needed in a user namespace). Default `false`. */
  userxattr?: boolean;
  /** Add `nosuid` to the mount. Default `false` (`nodev` is always set). */
  nosuid?: boolean;
  /**
   * `'auto'` (default): the new mount API with `lowerdir+` (Linux 6.8), else with one
   * `lowerdir=` string where it fits fsconfig's 255 bytes, else mount(2) with short links;
   * `'fsopen'`: the new API only; `'mount'`: mount(2) with short links only.
   */
  driver?: 'auto' | 'fsopen' | 'mount';
  /**
   * Shift the lower layers' owners through these maps (idmapped mounts, `MOUNT_ATTR_IDMAP`):
   * a file owned by `inside` on disk shows as `outside`, so a sandbox whose user namespace has
   * the same maps sees the layers' own owners (its root owns what the image's root owns). The
   * upper dir's root is given to the owner of inside 0; copies up and new files land in the
   * upper dir under the sandbox's host ids (exportDiff maps them back). Needs root, the new
   * mount API with `lowerdir+` by fd (Linux 6.13) and a filesystem that supports idmapped
   * mounts; where any is missing the mount is made without and `idmapped` is false.
   */
  idmap?: { uidMap: IdMap[]; gidMap: IdMap[] };
}

/** One change in an upper dir relative to its lower layers. */
export interface OverlayChange {
  /** Absolute path inside the merged view, e.g. `/etc/hosts`. */
  path: string;
  kind: 'added' | 'modified' | 'deleted';
}

/** Internal: how the store mounts with its own overlay2 `l/` links in the fallback. */
export interface LegacyLinks {
  /** directory the relative paths below are resolved from (the store root) */
  dir: string;
  lower: string[];
  upper?: string;
  work?: string;
}

interface Parsed {
  lower: string[];
  upper?: string;
  work?: string;
  target: string;
  readonly: boolean;
  userxattr: boolean;
  nosuid: boolean;
  driver: 'auto' | 'fsopen' | 'mount';
  idmap?: { uidMap: IdMap[]; gidMap: IdMap[] };
  /** internal: the mount's source (the store names its owner there for gc) */
  source?: string;
}

function parseOptions(o: unknown): Parsed {
  if (!isPlainObject(o)) fail('options', 'must be an object { lower, upper?, work?, target, ... }');
  checkKeys('options', o, ['lower', 'upper', 'work', 'target', 'readonly', 'userxattr', 'nosuid', 'driver', 'idmap']);
  if (!Array.isArray(o.lower) || o.lower.length === 0) fail('options.lower', 'must be a non-empty array of directories (top first)');
  if (o.lower.length > 500) fail('options.lower', `has ${o.lower.length} layers; overlayfs stacks at most 500`, RangeError);
  const lower = o.lower.map((l, i) => existingDir(`options.lower[${i}]`, l));
  // upper and work may be missing: mount() makes them (mkdir -p)
  const upper = o.upper === undefined ? undefined : dirOrMissing('options.upper', o.upper);
  const work = o.work === undefined ? undefined : dirOrMissing('options.work', o.work);
  if ((upper === undefined) !== (work === undefined)) fail(upper === undefined ? 'options.work' : 'options.work', 'and options.upper go together');
  if (upper !== undefined && existsSync(upper) && existsSync(work!)) sameFilesystem(upper, work!);
  const target = existingDir('options.target', o.target);
  const readonly = bool('options.readonly', o.readonly, upper === undefined);
  if (!readonly && upper === undefined) fail('options.readonly', 'can only be false with options.upper');
  const driver = (o.driver ?? 'auto') as Parsed['driver'];
  if (!['auto', 'fsopen', 'mount'].includes(driver)) fail('options.driver', "must be 'auto', 'fsopen' or 'mount'");
  let idmap: Parsed['idmap'];
  if (o.idmap !== undefined) {
    if (!isPlainObject(o.idmap)) fail('options.idmap', 'must be { uidMap, gidMap }');
    checkKeys('options.idmap', o.idmap, ['uidMap', 'gidMap']);
    idmap = { uidMap: parseIdMaps('options.idmap.uidMap', o.idmap.uidMap), gidMap: parseIdMaps('options.idmap.gidMap', o.idmap.gidMap) };
  }
  return { lower, upper, work, target, readonly, userxattr: bool('options.userxattr', o.userxattr, false), nosuid: bool('options.nosuid', o.nosuid, false), driver, idmap };
}

/** An absolute path that is a directory or does not exist yet (a symlink or file is refused). */
function dirOrMissing(option: string, v: unknown): string {
  const p = absPath(option, v);
  let st;
  try { st = lstatSync(p); } catch { return p; }
  if (!st.isDirectory()) fail(option, `must be a directory, not a symlink or file (${p})`);
  return p;
}

function sameFilesystem(upper: string, work: string): void {
  if (lstatSync(upper).dev !== lstatSync(work).dev) fail('options.work', 'must be on the same filesystem as options.upper');
}

/** Where `inside` maps to (the identity where no map covers it). */
export function mapId(maps: readonly IdMap[] | undefined, id: number, back = false): number {
  for (const m of maps ?? []) {
    const from = back ? m.outside : m.inside, to = back ? m.inside : m.outside;
    if (id >= from && id < from + m.count) return to + (id - from);
  }
  return id;
}

// One user namespace per set of maps, made once and kept for the process's life: its fd is
// all an idmapped mount needs.
const userNsFds = new Map<string, number>();
/** @internal The fd of this process's user namespace with these maps (made once, kept). */
export function userNsFd(idmap: { uidMap: IdMap[]; gidMap: IdMap[] }): number {
  const u = formatMaps(idmap.uidMap), g = formatMaps(idmap.gidMap);
  let fd = userNsFds.get(`${u}|${g}`);
  if (fd === undefined) userNsFds.set(`${u}|${g}`, (fd = fsNative().fsUserNs(u, g)));
  return fd;
}

// redirect_dir and metacopy off: a renamed lower directory is copied (EXDEV to the program,
// which `mv` handles), so an upper dir is always a plain layer that changes()/exportDiff read.
const PARAMS: Array<[string, string]> = [['redirect_dir', 'off'], ['metacopy', 'off'], ['index', 'off']];

/**
 * An overlayfs mount. Make one with {@link OverlayMount.mount}; {@link OverlayMount.unmount}
 * (or `await using`) removes it. The object owns the mount only, never the layer directories.
 */
export class OverlayMount {
  /** The merged view. */
  readonly target: string;
  /** Layers, top first. */
  readonly lower: readonly string[];
  readonly upper: string | undefined;
  readonly work: string | undefined;
  readonly readonly: boolean;
  readonly userxattr: boolean;
  /** Which mechanism made the mount: `'fsopen'` (new mount API, `lowerdir+`) or `'mount'` (mount(2) with short links). */
  readonly driver: 'fsopen' | 'mount';
  /** The maps the lower layers are shifted through (`options.idmap`), or undefined when the mount is not idmapped. */
  readonly idmap: { readonly uidMap: readonly IdMap[]; readonly gidMap: readonly IdMap[] } | undefined;
  #mounted = true;

  private constructor(p: Parsed, driver: 'fsopen' | 'mount', idmapped = false) {
    this.target = p.target;
    this.lower = Object.freeze([...p.lower]);
    this.upper = p.upper;
    this.work = p.work;
    this.readonly = p.readonly;
    this.userxattr = p.userxattr;
    this.driver = driver;
    this.idmap = idmapped && p.idmap ? Object.freeze({ uidMap: Object.freeze(p.idmap.uidMap), gidMap: Object.freeze(p.idmap.gidMap) }) : undefined;
  }

  /** Whether the lower layers are idmapped (see `OverlayMountOptions.idmap`). */
  get idmapped(): boolean {
    return this.idmap !== undefined;
  }

  /**
   * Mounts `lower` (top first) with optional `upper`/`work` on `target`. Argument mistakes
   * throw TypeError/RangeError; kernel failures throw NsboxError (`step: 'overlay'`, with the
   * kernel's own message in `detail`). Nothing is left mounted when it throws.
   */
  static mount(options: OverlayMountOptions): OverlayMount {
    const p = parseOptions(options);
    // missing upper and work directories are made (upper 0755, work 0700, parents 0755), and
    // removed again when the mount fails
    const made: string[] = [];
    try {
      if (p.upper !== undefined && p.work !== undefined) {
        for (const [d, mode] of [[p.upper, 0o755], [p.work, 0o700]] as const) {
          if (existsSync(d)) continue;
          const first = mkdirSync(d, { recursive: true, mode: 0o755 });
          chmodSync(d, mode);
          if (first) made.push(first);
        }
        sameFilesystem(p.upper, p.work);
      }
      return OverlayMount.mountWith(p);
    } catch (e) {
      for (const d of made.reverse()) rmSync(d, { recursive: true, force: true });
      throw e;
    }
  }

  /** @internal the store's entry: its own `l/` short links serve the fallback. */
  static mountWith(p: Parsed, links?: LegacyLinks): OverlayMount {
    try {
      return OverlayMount.#mountWith(p, links);
    } catch (e) {
      // fsopen/mount in the host's mount namespace: EPERM without CAP_SYS_ADMIN there
      if (e instanceof NsboxError && e.code === 'EPERM' && (e.syscall === 'fsopen' || e.syscall === 'mount')) {
        throw errnoError(1, 'overlay', e.syscall, p.target, "mounting an overlay on the host needs root (CAP_SYS_ADMIN in the host's user namespace); " +
          "without it, run images in sandboxes (spawnIsolated's image option mounts the layers inside the sandbox's own user namespace) " +
          'and commit a container a sandbox kept (image: { keep: true })');
      }
      throw e;
    }
  }

  static #mountWith(p: Parsed, links?: LegacyLinks): OverlayMount {
    const nat = fsNative();
    if (p.driver !== 'mount') {
      const opts = {
        lower: p.lower, upper: p.upper, work: p.work, target: p.target, readonly: p.readonly, userxattr: p.userxattr,
        nosuid: p.nosuid, source: p.source ?? 'nsbox-overlay', params: PARAMS,
      };
      if (p.idmap && process.geteuid?.() === 0) {
        try {
          // the merged root is the upper dir's root: the owner of inside 0, as a copy-up would make it
          if (p.upper) chownSync(p.upper, mapId(p.idmap.uidMap, 0), mapId(p.idmap.gidMap, 0));
          if (nat.fsOverlayMount({ ...opts, idmapFd: userNsFd(p.idmap) })) return new OverlayMount(p, 'fsopen', true);
        } catch (e) {
          // this kernel or filesystem cannot: mount without (the owners stay as on disk)
          if (!(e instanceof NsboxError) || e.code !== 'EOPNOTSUPP') throw e;
          if (p.upper) chownSync(p.upper, 0, 0);
        }
      }
      if (nat.fsOverlayMount(opts)) return new OverlayMount(p, 'fsopen');
      // no lowerdir+ (before 6.8; before 6.5 the kernel only refuses it at create): every
      // layer in one lowerdir= string, while fsconfig takes it (a string of at most 255 bytes;
      // no ',' which the legacy parser of kernels before 6.5 refuses even escaped)
      const one = lowerdirString(p.lower);
      if (Buffer.byteLength(one) <= 255 && !one.includes(',') && nat.fsOverlayMount({ ...opts, lowerdir: one })) return new OverlayMount(p, 'fsopen');
      if (p.driver === 'fsopen') {
        throw errnoError(22, 'overlay', 'fsconfig', p.target, "this kernel's overlayfs has no lowerdir+ (Linux 6.8) and these layers do not fit one lowerdir= string (255 bytes, no ','): use driver 'mount' or 'auto'");
      }
    }
    legacyMount(p, links);
    return new OverlayMount(p, 'mount');
  }

  /** @internal */
  static parse(options: unknown): Parsed {
    return parseOptions(options);
  }

  /** Whether it is still mounted (by this object). */
  get mounted(): boolean {
    return this.#mounted;
  }

  /** Unmounts (idempotent). `detach` uses MNT_DETACH when something still holds the mount busy. */
  unmount(opts: { detach?: boolean } = {}): void {
    if (!this.#mounted) return;
    fsNative().fsUmount(this.target, opts.detach === true);
    this.#mounted = false;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.unmount();
  }

  /** Changes in the upper dir relative to the lower layers (see {@link upperChanges}). */
  changes(): OverlayChange[] {
    if (!this.upper) return [];
    return upperChanges(this.upper, this.lower, this.userxattr);
  }

  /** Writes the upper dir to `dest` as a layer tar (see {@link exportUpper}); resolves once `dest` finished. */
  async exportDiff(dest: Writable): Promise<void> {
    if (!this.upper) throw new TypeError('exportDiff needs a mount with an upper dir');
    await exportUpper(this.upper, dest, { userxattr: this.userxattr, idmap: this.idmap });
  }
}

/** The layers (top first) as one `lowerdir=` value: backslash, `:` and `,` escaped with a backslash. */
export function lowerdirString(lower: readonly string[]): string {
  return lower.map((l) => l.replace(/[\\:,]/g, (c) => `\\${c}`)).join(':');
}

function legacyMount(p: Parsed, links?: LegacyLinks): void {
  const nat = fsNative();
  const flags = MS_NODEV | (p.readonly ? MS_RDONLY : 0) | (p.nosuid ? MS_NOSUID : 0);
  const opts = (l: LegacyLinks) => {
    let s = `lowerdir=${lowerdirString(l.lower)}`;
    if (l.upper) s += `,upperdir=${l.upper},workdir=${l.work}`;
    for (const [k, v] of PARAMS) s += `,${k}=${v}`;
    if (p.userxattr) s += ',userxattr';
    return s;
  };
  if (links) {
    nat.fsOverlayMountLegacy(links.dir, opts(links), p.target, flags, p.source);
    return;
  }
  // short links 0, 1, 2, ... in a private temporary dir, removed right after the mount
  // (overlayfs resolves the layer paths when mounting)
  const dir = mkdtempSync(join(tmpdir(), `nsbox-ovl-${ownerTag()}-`)); // the owner: for gc
  try {
    const l: LegacyLinks = { dir, lower: [] };
    p.lower.forEach((d, i) => { const n = i.toString(36); symlinkSync(d, join(dir, n)); l.lower.push(n); });
    if (p.upper) { symlinkSync(p.upper, join(dir, 'u')); symlinkSync(p.work!, join(dir, 'w')); l.upper = 'u'; l.work = 'w'; }
    nat.fsOverlayMountLegacy(dir, opts(l), p.target, flags, p.source);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- reading an upper dir ---------------------------------------------------------------------

function xattr(userx: boolean, name: string): string {
  return `${userx ? 'user' : 'trusted'}.overlay.${name}`;
}

function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

function lstatOrNull(p: string): Stats | null {
  try { return lstatSync(p); } catch { return null; }
}

function isOpaque(path: string, userx: boolean): boolean {
  const v = fsNative().fsLgetxattr(path, xattr(userx, 'opaque'));
  return v !== null && v.toString() === 'y';
}

/** Refuses what a plain layer cannot express (redirect dirs, metacopy files). */
function refuseSpecial(path: string, rel: string, userx: boolean): void {
  for (const n of ['redirect', 'metacopy']) {
    if (fsNative().fsLgetxattr(path, xattr(userx, n)) !== null) {
      throw errnoError(95, 'changes', 'getxattr', `/${rel}`, `overlayfs ${n} entry: mount with ${n === 'redirect' ? 'redirect_dir' : 'metacopy'}=off (as OverlayMount does) to read it as a layer`);
    }
  }
}

/** Whether `rel` exists in the stack of lower layers (top first), honouring whiteouts and opaque dirs. */
export function lowerHas(lower: readonly string[], rel: string, userx: boolean): Stats | null {
  const parts = rel.split('/');
  for (const layer of lower) {
    let hidden = false;
    let cur = layer;
    for (let i = 0; i < parts.length; i++) {
      cur = join(cur, parts[i]);
      const st = lstatOrNull(cur);
      if (!st) break; // not in this layer: look below, unless an opaque parent stops it
      if (isWhiteout(st)) return null;
      if (i === parts.length - 1) return st;
      if (!st.isDirectory()) return null;
      if (isOpaque(cur, userx)) hidden = true;
    }
    if (hidden) return null;
    // an opaque parent in this layer hides what lies below even when the path is missing here
    let p = layer;
    for (let i = 0; i < parts.length - 1; i++) {
      p = join(p, parts[i]);
      const st = lstatOrNull(p);
      if (!st || !st.isDirectory()) break;
      if (isOpaque(p, userx)) return null;
    }
  }
  return null;
}

/**
 * Changes of `upper` over `lower` (top first): a whiteout is `deleted`; an opaque directory
 * that replaced a lower one lists the lower children it hides as `deleted`; a path also
 * present below is `modified`, else `added`. Directories copied up only to hold changed
 * children are not listed. Sorted by path. Refuses (NsboxError EOPNOTSUPP) redirect and
 * metacopy entries, which OverlayMount never creates.
 */
export function upperChanges(upper: string, lower: readonly string[], userx = false): OverlayChange[] {
  const out: OverlayChange[] = [];
  const walk = (rel: string) => {
    const names = readdirSync(rel ? join(upper, rel) : upper).sort();
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = join(upper, r);
      const st = lstatSync(abs);
      if (isWhiteout(st)) {
        if (lowerHas(lower, r, userx)) out.push({ path: `/${r}`, kind: 'deleted' });
        continue;
      }
      refuseSpecial(abs, r, userx);
      const below = lowerHas(lower, r, userx);
      if (st.isDirectory()) {
        const opaque = isOpaque(abs, userx);
        if (!below || !below.isDirectory()) out.push({ path: `/${r}`, kind: below ? 'modified' : 'added' });
        else if (opaque) {
          // the lower children not recreated here are gone
          const mine = new Set(readdirSync(abs));
          for (const l of lower) {
            for (const c of lstatOrNull(join(l, r))?.isDirectory() ? readdirSync(join(l, r)) : []) {
              if (!mine.has(c) && lowerHas(lower, `${r}/${c}`, userx) && !out.some((x) => x.path === `/${r}/${c}`)) out.push({ path: `/${r}/${c}`, kind: 'deleted' });
            }
          }
        }
        walk(r);
        continue;
      }
      out.push({ path: `/${r}`, kind: below ? 'modified' : 'added' });
    }
  };
  walk('');
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * Writes `upper` as a layer tar to `dest` (ends it): whiteouts become `.wh.<name>` files,
 * opaque directories get a `.wh..wh..opq` entry, hardlinks inside the layer stay hardlinks.
 * Entries are sorted, names are relative (`etc/hosts`), owners and modes as on disk, mtimes in
 * whole seconds. File contents are opened beneath `upper` without following any symlink.
 */
export async function exportUpper(upper: string, dest: Writable, opts: { userxattr?: boolean; idmap?: { readonly uidMap: readonly IdMap[]; readonly gidMap: readonly IdMap[] } } = {}): Promise<void> {
  const userx = opts.userxattr === true;
  // an idmapped mount's upper dir holds the sandbox's host ids: the layer gets the ids inside
  const uidOf = (id: number) => mapId(opts.idmap?.uidMap, id, true), gidOf = (id: number) => mapId(opts.idmap?.gidMap, id, true);
  const nat = fsNative();
  const pk = (await tarStream()).pack();
  const done = pipeline(pk, dest);
  const rootFd = nat.fsOpenat2(-100, upper, O.PATH | O.DIRECTORY, 0, RESOLVE.NO_MAGICLINKS, 'export');
  const inodes = new Map<string, string>();
  const add = (h: Hdr, body?: Buffer) => new Promise<void>((res, rej) => { pk.entry(h, body ?? Buffer.alloc(0), (e) => (e ? rej(e) : res())); });
  const base = (st: Stats, name: string): Hdr => ({
    name, mode: st.mode & 0o7777, uid: uidOf(st.uid), gid: gidOf(st.gid), mtime: new Date(Math.floor(st.mtimeMs / 1000) * 1000),
  });
  try {
    const walk = async (rel: string) => {
      const names = readdirSync(rel ? join(upper, rel) : upper).sort();
      for (const name of names) {
        const r = rel ? `${rel}/${name}` : name;
        const abs = join(upper, r);
        const st = lstatSync(abs);
        if (isWhiteout(st)) {
          await add({ ...base(st, rel ? `${rel}/.wh.${name}` : `.wh.${name}`), mode: 0o644, type: 'file', size: 0 });
          continue;
        }
        refuseSpecial(abs, r, userx);
        if (st.isDirectory()) {
          await add({ ...base(st, `${r}/`), type: 'directory' });
          if (isOpaque(abs, userx)) await add({ ...base(st, `${r}/.wh..wh..opq`), mode: 0o644, type: 'file', size: 0 });
          await walk(r);
        } else if (st.isSymbolicLink()) {
          await add({ ...base(st, r), type: 'symlink', linkname: readlinkSync(abs) });
        } else if (st.isFile()) {
          const key = `${st.dev}:${st.ino}`;
          if (st.nlink > 1 && inodes.has(key)) {
            await add({ ...base(st, r), type: 'link', linkname: inodes.get(key)! });
            continue;
          }
          if (st.nlink > 1) inodes.set(key, r);
          const fd = nat.fsOpenat2(rootFd, r, O.RDONLY | O.NOFOLLOW, 0, RESOLVE.BENEATH | RESOLVE.NO_SYMLINKS | RESOLVE.NO_MAGICLINKS, 'export');
          const size = fstatSync(fd).size;
          if (size === 0) {
            closeSync(fd);
            await add({ ...base(st, r), type: 'file', size: 0 });
            continue;
          }
          await new Promise<void>((res, rej) => {
            const w = pk.entry({ ...base(st, r), type: 'file', size }, (e) => (e ? rej(e) : res()));
            pipeline(createReadStream('', { fd, autoClose: true, start: 0, end: size - 1 }), w).catch(rej);
          });
        } else if (st.isFIFO()) {
          await add({ ...base(st, r), type: 'fifo' });
        } else if (st.isCharacterDevice() || st.isBlockDevice()) {
          const devmajor = Math.floor(st.rdev / 256) & 0xfff, devminor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
          await add({ ...base(st, r), type: st.isCharacterDevice() ? 'character-device' : 'block-device', devmajor, devminor });
        }
        // sockets are not layer content
      }
    };
    await walk('');
    pk.finalize();
  } catch (e) {
    pk.destroy(e as Error);
    await done.catch(() => {});
    throw e;
  } finally {
    nat.closeFd(rootFd);
  }
  await done;
}

export type { Parsed as OverlayParsed };
