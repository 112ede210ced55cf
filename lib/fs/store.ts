// LayerStore: Docker's overlay2 layout under a root directory, with no daemon.
//
//   <root>/<id>/diff/          the layer's files (whiteouts as char 0/0, opaque dirs by xattr)
//   <root>/<id>/link           its short name, e.g. "K7ZQ4M2XJ3PA"
//   <root>/<id>/lower          its parents' short links, top first: "l/ABC...:l/DEF..."
//   <root>/<id>/work, merged/  for container (and -init) layers only
//   <root>/l/<SHORT> -> ../<id>/diff
//   <root>/nsbox-store.json    layers, images, tags and containers (replaced atomically)
//   <root>/nsbox-store.lock    flock(2): every change of the above happens under it
//   <root>/nsbox-tmp-<pid>-<start>-*  an import in progress (removed by its owner, or by gc)
//
// Every store registers its root in the store registry (/var/lib/nsbox/stores.d, one file per
// store; NSBOX_STORE_REGISTRY overrides it) so that `nsbox gc` finds the containers of crashed
// processes. Container mounts carry their owner in their source: `nsbox-<pid>-<start>-overlay`
// (the merged view) and `nsbox-<pid>-<start>-layer` (a tmpfs writable layer).
//
// Image layer ids are Docker's chain ids (sha256 over the parent's chain id and the diff id),
// so the same layer imported twice is stored once. Container layers have random ids and an
// `<id>-init` layer below them holding /etc/hosts, /etc/hostname, /etc/resolv.conf and the
// mount points the runtime needs, as Docker's `-init` layer does.
import { createHash, randomBytes } from '../util/builtins.js';
import { chmodSync, closeSync, createReadStream, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { userInfo } from 'node:os';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { errnoError } from '../errors.js';
import type { IdMap } from '../util/idmap.js';
import { extractLayer, type ImportProgress } from './extract.js';
import { openInArchive, readArchiveDir, type ImageConfig, type ImageConfigFile } from './image.js';
import { fsNative } from './native.js';
import { exportUpper, lowerHas, OverlayMount, upperChanges, type OverlayChange } from './overlay.js';
import { absPath, bool, byteSize, checkOptions, fail, isPlainObject } from '../util/validate.js';
import { ownerGone, ownerTag, selfOwnerMark } from '../owner.js';
import { chownLayer, removeTree, runInStoreNs, runInStoreNsSync, storeUserNs, type OwnerEntry } from './subids.js';

const MS_NOSUID = 2, MS_NODEV = 4;

/** A layer of the store. */
export interface LayerInfo {
  /** directory name under the root (chain id hex for image layers) */
  id: string;
  parent: string | null;
  /** `sha256:` of the layer's uncompressed tar */
  diffId: string;
  /** uncompressed tar size */
  size: number;
  /** short link name under `<root>/l/` */
  link: string;
}

/** An image of the store. */
export interface ImageInfo {
  /** `sha256:` of the config blob, as Docker's image id */
  id: string;
  /** `name:tag` references pointing at it */
  names: string[];
  /** layer ids, bottom first */
  layers: string[];
  /** the runtime part of the image config */
  config: ImageConfig;
  created: string;
}

interface ContainerRecord {
  name: string;
  id: string;
  image: string;
  created: string;
  hostname: string;
  tmpfsSize?: number;
  /** pid of the process that created it (for gc of forgotten ephemeral containers) */
  pid: number;
  /** that process's start time (a reused pid is not the creator); absent in older stores */
  start?: number;
  ephemeral?: boolean;
}

interface State {
  version: 1;
  /** `squashed`: imported by an unprivileged caller without a subordinate range (its owners dropped) */
  layers: Record<string, Omit<LayerInfo, 'id'> & { squashed?: true }>;
  images: Record<string, { layers: string[]; config: ImageConfigFile; created: string }>;
  tags: Record<string, string>;
  containers: Record<string, ContainerRecord>;
}

/** Options of {@link LayerStore.importLayer}. */
export interface ImportLayerOptions {
  /** id of the layer below this one (its chain id decides this layer's id). */
  parent?: string;
  /** Create device nodes found in the tar. Default false: a layer with one is refused. */
  allowDevices?: boolean;
  /** Progress callback, about every 4 MiB of uncompressed data. */
  onProgress?: (p: ImportProgress) => void;
}

/** Options of {@link LayerStore.importImage}. */
export interface ImportImageOptions {
  /** `name[:tag]` to give the image (default: the archive's own names). */
  name?: string;
  /** Which image of a multi-image archive (a RepoTag or OCI ref name). Default the first. */
  select?: string;
  allowDevices?: boolean;
  onProgress?: (p: ImportProgress & { layer: number; layers: number }) => void;
}

/** Options of {@link LayerStore.createContainer}. */
export interface CreateContainerOptions {
  /** Unique name. Default `nsbox-<12 hex>`. */
  name?: string;
  /** Written to /etc/hostname and /etc/hosts of the init layer. Default `'nsbox'`. */
  hostname?: string;
  /** Put the writable layer on a tmpfs of this size (bytes or `'64M'`) instead of the store's disk. */
  tmpfsSize?: number | string;
  /** @internal mark for gc: removed when its creating process is gone */
  ephemeral?: boolean;
}

/** Options of {@link LayerStore.open}. */
export interface LayerStoreOptions {
  /** Overlay mount mechanism for containers (see OverlayMount's `driver`). Default `'auto'`. */
  driver?: 'auto' | 'fsopen' | 'mount';
}

const SHORT_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
/** An image as the store's methods take it: a reference string, or what `importImage()`/`image()` returned. */
export type ImageRef = string | ImageInfo;

/** The reference string of an {@link ImageRef} (an ImageInfo stands for its id). */
export function refString(option: string, ref: unknown): string {
  if (typeof ref === 'string') {
    if (ref === '') fail(option, 'must be an image reference (name[:tag] or id) or an ImageInfo');
    return ref;
  }
  if (isPlainObject(ref) && typeof ref.id === 'string' && /^sha256:[a-f0-9]{64}$/.test(ref.id) && Array.isArray(ref.layers)) return ref.id;
  fail(option, 'must be an image reference (name[:tag] or id) or an ImageInfo');
}

function shortId(): string {
  // 12 base32 characters (60 bits): shorter than Docker's 26 so ~300 layers fit one page in the mount(2) fallback
  const b = randomBytes(12);
  let s = '';
  for (let i = 0; i < 12; i++) s += SHORT_ALPHABET[b[i] & 31];
  return s;
}

function normalizeRef(ref: string): string {
  // name[:tag] -> name:tag (a ':' after the last '/' is a tag; registry ports keep theirs)
  const slash = ref.lastIndexOf('/');
  return ref.indexOf(':', slash + 1) >= 0 ? ref : `${ref}:latest`;
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Root's default store (the CLI's `--store` default for root). */
export const ROOT_STORE = '/var/lib/nsbox/overlay2';

/**
 * Where the caller's store is when `LayerStore.open` is given no root: root's is
 * /var/lib/nsbox/overlay2; a non-root caller's is in its own data directory, as rootless podman's
 * ~/.local/share/containers: `$XDG_DATA_HOME/nsbox/store` when that variable is an absolute path
 * (the XDG rule), else `$HOME/.local/share/nsbox/store` (the passwd entry's home when HOME is not
 * an absolute path).
 */
export function defaultStoreRoot(): string {
  if (process.geteuid?.() === 0) return ROOT_STORE;
  const xdg = process.env.XDG_DATA_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, 'nsbox', 'store');
  let home = process.env.HOME;
  if (!home || !isAbsolute(home)) { try { home = userInfo().homedir; } catch { home = ''; } }
  if (!home || !isAbsolute(home)) throw errnoError(2, 'store', 'default-root', undefined, 'no home directory for the default store (HOME and the passwd entry give none): pass LayerStore.open a root, or set XDG_DATA_HOME');
  return join(home, '.local', 'share', 'nsbox', 'store');
}

/** The directory of the store registry (see the file's head). */
export function storeRegistryDir(): string {
  return process.env.NSBOX_STORE_REGISTRY || '/var/lib/nsbox/stores.d';
}

/**
 * How an unprivileged caller's layers are stored, overlay metadata in user.* xattrs (the
 * overlay is mounted inside the sandbox's user namespace with userxattr). The files are
 * extracted as the caller; with a subordinate range (subids.ts) the tar's owners are collected
 * and given afterwards in the caller's store namespace, as rootless podman keeps them, else
 * they are dropped (squashed: every file the caller's, its sandbox's root).
 */
function rootless(): { squash?: true; xattrNamespace?: 'user' } {
  return process.geteuid?.() === 0 ? {} : { squash: true, xattrNamespace: 'user' };
}

/** An unprivileged caller's overlays (mounted by its sandboxes, in their user namespaces) keep their metadata in user.* xattrs. */
function rootlessXattr(): boolean {
  return process.geteuid?.() !== 0;
}

/** A container's writable layer as a tar: in the caller's store namespace where it has one (see Container.exportDiff). */
async function exportLayer(upper: string, dest: Writable, idmap: ContainerIdmap | undefined): Promise<void> {
  const ns = process.geteuid?.() === 0 ? null : storeUserNs();
  const inNs = ns ? runInStoreNs(ns, `await nsbox.exportUpper(${JSON.stringify(upper)}, process.stdout, { userxattr: true });`, 'export', dest) : null;
  if (inNs) { await inNs; return; }
  await exportUpper(upper, dest, { idmap, userxattr: rootlessXattr() });
}

/** Records a store's root in the registry (best effort: unprivileged callers have none). */
function registerStore(root: string): void {
  const f = join(storeRegistryDir(), createHash('sha256').update(root).digest('hex').slice(0, 32));
  try {
    if (existsSync(f)) return;
    mkdirSync(storeRegistryDir(), { recursive: true, mode: 0o755 });
    writeFileSync(f, root, { mode: 0o644 });
  } catch { /* not writable here: gc finds this store only when told or through its mounts */ }
}

/** Roots of the registered stores; entries of stores that no longer exist are dropped. */
export function registeredStores(): string[] {
  const out: string[] = [];
  let names: string[];
  try { names = readdirSync(storeRegistryDir()); } catch { return out; }
  for (const n of names) {
    if (!/^[0-9a-f]{32}$/.test(n)) continue;
    const f = join(storeRegistryDir(), n);
    try {
      const root = readFileSync(f, 'utf8');
      if (!root.startsWith('/')) continue;
      if (existsSync(root)) out.push(root);
      else rmSync(f, { force: true });
    } catch { /* unreadable: skip */ }
  }
  return out;
}

const TMP_RE = /^nsbox-tmp-(\d+)-(?:(\d+)-)?[A-Za-z0-9]{6}$/;
const STATE_TMP_RE = /^nsbox-store\.json\.(\d+)\.[0-9a-f]{8}$/;
const LAYER_DIR_RE = /^[a-f0-9]{64}(-init)?$/;

/**
 * A Docker-overlay2-style layer store under one root directory. Safe to share between
 * processes: every change of the metadata happens under an flock on `<root>/nsbox-store.lock`.
 */
export class LayerStore {
  readonly root: string;
  readonly driver: 'auto' | 'fsopen' | 'mount';
  /** containers this object mounted (unmounted by dispose) */
  #mounted = new Map<string, OverlayMount>();

  private constructor(root: string, driver: LayerStore['driver']) {
    this.root = root;
    this.driver = driver;
  }

  /** Where `LayerStore.open()` with no root puts the caller's store (see `defaultStoreRoot`). */
  static defaultRoot(): string {
    return defaultStoreRoot();
  }

  /**
   * Opens (creating if needed) a store at `root`, an absolute path; without one, the caller's
   * default store (`defaultStoreRoot()`: root's /var/lib/nsbox/overlay2, a non-root caller's
   * $XDG_DATA_HOME/nsbox/store or ~/.local/share/nsbox/store).
   */
  static open(root?: string, options: LayerStoreOptions = {}): LayerStore {
    const byDefault = root === undefined;
    const r = byDefault ? defaultStoreRoot() : absPath('root', root);
    checkOptions('options', options, ['driver']);
    const driver = options.driver ?? 'auto';
    if (!['auto', 'fsopen', 'mount'].includes(driver)) fail('options.driver', "must be 'auto', 'fsopen' or 'mount'");
    if (existsSync(r) && !lstatSync(r).isDirectory()) fail('root', `must be a directory (${r})`);
    try {
      // 0711 like Docker's 0710: sandboxes (unprivileged host uids) pass through to <id>/merged, nobody lists
      // a non-root caller's default store: the directories above it are the user's own (0700, the XDG rule)
      if (!existsSync(r) && byDefault && process.geteuid?.() !== 0) mkdirSync(dirname(r), { recursive: true, mode: 0o700 });
      if (!existsSync(r)) { mkdirSync(r, { recursive: true, mode: 0o711 }); chmodSync(r, 0o711); }
      mkdirSync(join(r, 'l'), { recursive: true, mode: 0o700 });
    } catch (e) {
      throw errnoError((e as NodeJS.ErrnoException).errno ? Math.abs((e as NodeJS.ErrnoException).errno!) : 5, 'store', 'mkdir', r);
    }
    registerStore(r);
    return new LayerStore(r, driver);
  }

  // ---- metadata under the lock ----------------------------------------------------------------

  #statePath() { return join(this.root, 'nsbox-store.json'); }

  /** the state as last read outside the lock, by the identity of the file it came from (read-only) */
  #snapshot: { key: string; state: State } | undefined;

  /**
   * The state for reading only (never changed or written back): parsed again only when the
   * file was replaced since (every write renames a new file over it: a new inode).
   */
  #readShared(): State {
    let key: string;
    try {
      const st = statSync(this.#statePath(), { bigint: true });
      key = `${st.dev}:${st.ino}:${st.mtimeNs}:${st.size}`;
    } catch {
      return this.#read();
    }
    if (this.#snapshot?.key === key) return this.#snapshot.state;
    const state = this.#read();
    this.#snapshot = { key, state };
    return state;
  }

  #read(): State {
    try {
      const s = JSON.parse(readFileSync(this.#statePath(), 'utf8')) as State;
      if (s.version === 1) return s;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw errnoError(5, 'store', 'read', this.#statePath(), `store metadata unreadable: ${(e as Error).message}`);
    }
    return { version: 1, layers: {}, images: {}, tags: {}, containers: {} };
  }

  #write(s: State): void {
    const tmp = join(this.root, `nsbox-store.json.${process.pid}.${randomBytes(4).toString('hex')}`);
    writeFileSync(tmp, JSON.stringify(s, null, 1));
    renameSync(tmp, this.#statePath());
  }

  /** Runs `fn` with the store locked (exclusive flock, polled so the event loop never blocks); writes the state back when `fn` returns true. */
  async #locked<T>(fn: (s: State) => T | Promise<T>, write = true): Promise<T> {
    const nat = fsNative();
    const fd = openSync(join(this.root, 'nsbox-store.lock'), 'a', 0o600);
    try {
      for (let i = 0; !nat.fsFlock(fd, true); i++) await sleep(Math.min(1 + i, 20));
      const s = this.#read();
      const r = await fn(s);
      if (write) this.#write(s);
      return r;
    } finally {
      closeSync(fd); // releases the flock
    }
  }

  // ---- layers -----------------------------------------------------------------------------------

  #tmpDir(): string {
    return mkdtempSync(join(this.root, `nsbox-tmp-${ownerTag()}-`));
  }

  /**
   * Imports one layer tar (plain or gzip; zstd where Node's zlib has it) on top of `parent`.
   * Entries escaping the layer are refused (NsboxError `step: 'import'`, code `EPERM`);
   * nothing of a failed import stays. Returns the (possibly already stored) layer.
   */
  async importLayer(tar: Readable, options: ImportLayerOptions = {}): Promise<LayerInfo> {
    if (!tar || typeof (tar as Readable).pipe !== 'function') throw new TypeError('tar must be a readable stream');
    checkOptions('options', options, ['parent', 'allowDevices', 'onProgress']);
    if (options.parent !== undefined && (typeof options.parent !== 'string' || !/^[a-f0-9]{64}$/.test(options.parent))) fail('options.parent', 'must be a layer id (64 hex digits)');
    const allowDevices = bool('options.allowDevices', options.allowDevices, false);
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') fail('options.onProgress', 'must be a function');
    if (options.parent !== undefined && !this.#read().layers[options.parent]) {
      tar.resume();
      throw new RangeError(`options.parent: no layer ${options.parent} in the store`);
    }
    const tmp = this.#tmpDir();
    try {
      mkdirSync(join(tmp, 'diff'), { mode: 0o755 });
      const ns = process.geteuid?.() === 0 ? null : storeUserNs();
      const owners: OwnerEntry[] | undefined = ns ? [] : undefined;
      const r = await extractLayer(tar, join(tmp, 'diff'), { allowDevices, onProgress: options.onProgress, ...rootless(), owners });
      // the image's owners, in this user's subordinate ids (its sandboxes' maps)
      if (ns && owners) chownLayer(ns, join(tmp, 'diff'), owners);
      const squashed = process.geteuid?.() !== 0 && !ns;
      const parentChain = options.parent ? `sha256:${options.parent}` : null;
      const chain = parentChain ? `sha256:${createHash('sha256').update(`${parentChain} ${r.diffId}`).digest('hex')}` : r.diffId;
      const id = chain.slice(7);
      return await this.#locked((s) => {
        const have = s.layers[id];
        if (have) return { id, parent: have.parent, diffId: have.diffId, size: have.size, link: have.link };
        if (options.parent && !s.layers[options.parent]) throw new RangeError(`options.parent: layer ${options.parent} was removed meanwhile`);
        const link = shortId();
        const lower = options.parent ? this.#lowerOf(s, options.parent) : [];
        writeFileSync(join(tmp, 'link'), link);
        if (lower.length) writeFileSync(join(tmp, 'lower'), lower.map((l) => `l/${l}`).join(':'));
        renameSync(tmp, join(this.root, id));
        symlinkSync(`../${id}/diff`, join(this.root, 'l', link));
        const info = { parent: options.parent ?? null, diffId: r.diffId, size: r.size, link };
        s.layers[id] = squashed ? { ...info, squashed: true } : info;
        return { id, ...info };
      });
    } finally {
      // a removal that fails must not hide why the import failed: gc removes what stays
      try { removeTree(tmp); } catch { /* left for gc (nsbox-tmp-<pid>-...) */ }
    }
  }

  /** Short links of `top` and its parents, top first. */
  #lowerOf(s: State, top: string): string[] {
    const out: string[] = [];
    for (let id: string | null = top; id; id = s.layers[id]?.parent ?? null) {
      const l = s.layers[id];
      if (!l) throw errnoError(2, 'store', 'lookup', join(this.root, id), 'store metadata names a missing layer');
      out.push(l.link);
    }
    return out;
  }

  /** Layers of the store. */
  layers(): LayerInfo[] {
    const s = this.#read();
    return Object.entries(s.layers).filter(([id]) => /^[a-f0-9]{64}$/.test(id)).map(([id, l]) => ({ id, parent: l.parent, diffId: l.diffId, size: l.size, link: l.link }));
  }

  /** Directory of a layer's files. */
  layerPath(id: string): string {
    if (typeof id !== 'string' || !/^[a-f0-9]{64}$/.test(id)) fail('id', 'must be a layer id (64 hex digits)');
    return join(this.root, id, 'diff');
  }

  /** Removes a layer no image, container or other layer uses (NsboxError EBUSY otherwise). */
  async removeLayer(id: string): Promise<void> {
    this.layerPath(id);
    await this.#locked((s) => {
      if (!s.layers[id]) throw new RangeError(`id: no layer ${id} in the store`);
      const users = this.#layerUsers(s, id);
      if (users.length) throw errnoError(16, 'store', 'remove', join(this.root, id), `layer in use by ${users.join(', ')}`);
      this.#dropLayer(s, id);
    });
  }

  #layerUsers(s: State, id: string): string[] {
    const users: string[] = [];
    for (const [lid, l] of Object.entries(s.layers)) if (l.parent === id) users.push(`layer ${lid}`);
    for (const [iid, im] of Object.entries(s.images)) if (im.layers.includes(id)) users.push(`image ${iid}`);
    return users;
  }

  #dropLayer(s: State, id: string): void {
    const l = s.layers[id];
    if (!l) return;
    delete s.layers[id];
    rmSync(join(this.root, 'l', l.link), { force: true });
    removeTree(join(this.root, id));
  }

  /** Removes layers nothing uses any more (after an image was removed). */
  #collect(s: State): void {
    for (let again = true; again;) {
      again = false;
      for (const id of Object.keys(s.layers)) {
        if (!/^[a-f0-9]{64}$/.test(id)) continue;
        if (this.#layerUsers(s, id).length === 0) { this.#dropLayer(s, id); again = true; }
      }
    }
  }

  // ---- images -----------------------------------------------------------------------------------

  /**
   * Imports an image: an OCI image layout directory, or a tar of one, or a `docker save` tar
   * (plain or gzip). Layers are imported in order (diff ids checked against the config); the
   * image is named `options.name` or by the archive's own names.
   */
  async importImage(path: string, options: ImportImageOptions = {}): Promise<ImageInfo> {
    const p = absPath('path', path);
    checkOptions('options', options, ['name', 'select', 'allowDevices', 'onProgress']);
    if (options.name !== undefined && (typeof options.name !== 'string' || !/^[a-z0-9][a-z0-9._\/:-]*$/i.test(options.name))) fail('options.name', 'must be a reference like name:tag');
    if (options.select !== undefined && typeof options.select !== 'string') fail('options.select', 'must be a string');
    const allowDevices = bool('options.allowDevices', options.allowDevices, false);
    let st;
    try { st = lstatSync(p); } catch { fail('path', `does not exist (${p})`); }
    let dir = p, tmp: string | undefined;
    try {
      if (!st.isDirectory()) {
        if (!st.isFile()) fail('path', 'must be an image layout directory or an archive file');
        tmp = this.#tmpDir();
        dir = join(tmp, 'archive');
        mkdirSync(dir);
        await extractLayer(createReadStream(p), dir, rootless());
      }
      const a = readArchiveDir(dir, options.select);
      const diffIds = a.config.rootfs?.diff_ids;
      if (diffIds && diffIds.length !== a.layers.length) throw errnoError(22, 'image', 'read', p, `config lists ${diffIds.length} layers, the manifest ${a.layers.length}`);
      let parent: string | undefined;
      const layers: string[] = [];
      for (let i = 0; i < a.layers.length; i++) {
        const fd = openInArchive(dir, a.layers[i]);
        if (fd < 0) throw errnoError(2, 'image', 'open', join(dir, a.layers[i]), 'layer blob missing');
        const prog = options.onProgress;
        const l = await this.importLayer(createReadStream('', { fd }), {
          parent, allowDevices, onProgress: prog ? (x) => prog({ ...x, layer: i, layers: a.layers.length }) : undefined,
        });
        if (diffIds && diffIds[i] !== l.diffId) throw errnoError(22, 'image', 'verify', a.layers[i], `layer ${i} has diff id ${l.diffId}, the config says ${diffIds[i]}`);
        layers.push(l.id);
        parent = l.id;
      }
      const id = `sha256:${createHash('sha256').update(a.configBytes).digest('hex')}`;
      const names = (options.name ? [options.name] : a.names).map(normalizeRef);
      return await this.#locked((s) => {
        for (const l of layers) if (!s.layers[l]) throw errnoError(2, 'image', 'import', join(this.root, l), 'a layer was removed while the image was imported');
        s.images[id] = { layers, config: a.config, created: s.images[id]?.created ?? new Date().toISOString() };
        for (const n of names) s.tags[n] = id;
        return this.#imageInfo(s, id);
      });
    } finally {
      if (tmp) { try { removeTree(tmp); } catch { /* left for gc (nsbox-tmp-<pid>-...) */ } }
    }
  }

  #imageInfo(s: State, id: string): ImageInfo {
    const im = s.images[id];
    return {
      id, names: Object.entries(s.tags).filter(([, v]) => v === id).map(([k]) => k).sort(),
      layers: [...im.layers], config: structuredClone(im.config.config ?? {}), created: im.created,
    };
  }

  #findImage(s: State, given: ImageRef, option = 'ref'): string {
    const ref = refString(option, given);
    const tagged = s.tags[normalizeRef(ref)];
    if (tagged && s.images[tagged]) return tagged;
    const hex = ref.replace(/^sha256:/, '');
    if (/^[a-f0-9]{6,64}$/.test(hex)) {
      const m = Object.keys(s.images).filter((k) => k.slice(7).startsWith(hex));
      if (m.length === 1) return m[0];
    }
    throw new RangeError(`${option}: no image '${ref}' in the store`);
  }

  /** The image `ref` (name[:tag], id or unique id prefix, or an {@link ImageInfo} of this store). */
  image(ref: ImageRef): ImageInfo {
    const s = this.#readShared();
    return this.#imageInfo(s, this.#findImage(s, ref));
  }

  /** All images. */
  images(): ImageInfo[] {
    const s = this.#read();
    return Object.keys(s.images).map((id) => this.#imageInfo(s, id));
  }

  /** Adds a name to an image. */
  async tag(ref: ImageRef, name: string): Promise<void> {
    if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9._\/:-]*$/i.test(name)) fail('name', 'must be a reference like name:tag');
    await this.#locked((s) => { s.tags[normalizeRef(name)] = this.#findImage(s, ref); });
  }

  /**
   * Removes an image (by name: only that name, and the image once no name is left; by id: the
   * image and its names) and the layers nothing else uses. A container of it: NsboxError EBUSY.
   */
  async removeImage(given: ImageRef): Promise<void> {
    await this.#locked((s) => {
      const id = this.#findImage(s, given);
      const ref = typeof given === 'string' ? given : id;
      const byName = s.tags[normalizeRef(ref)] === id;
      if (byName) delete s.tags[normalizeRef(ref)];
      const named = Object.values(s.tags).includes(id);
      if (byName && named) return;
      const users = Object.values(s.containers).filter((c) => c.image === id).map((c) => c.name);
      if (users.length) {
        if (byName) s.tags[normalizeRef(ref)] = id;
        throw errnoError(16, 'store', 'remove', id, `image in use by container(s) ${users.join(', ')}`);
      }
      for (const [k, v] of Object.entries(s.tags)) if (v === id) delete s.tags[k];
      delete s.images[id];
      this.#collect(s);
    });
  }

  // ---- containers -------------------------------------------------------------------------------

  /**
   * Creates a container of image `ref`: an init layer (/etc/hosts, /etc/hostname,
   * /etc/resolv.conf, and /proc /sys /dev /tmp where the image lacks them) and an empty
   * writable layer, on disk or on a tmpfs of `tmpfsSize`. Not mounted yet: see
   * {@link Container.mount}.
   */
  async createContainer(ref: ImageRef, options: CreateContainerOptions = {}): Promise<Container> {
    checkOptions('options', options, ['name', 'hostname', 'tmpfsSize', 'ephemeral']);
    const name = options.name ?? `nsbox-${randomBytes(6).toString('hex')}`;
    if (typeof name !== 'string' || !/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(name)) fail('options.name', 'must be 1-128 of [a-zA-Z0-9_.-], starting with a letter or digit');
    const hostname = options.hostname ?? 'nsbox';
    if (typeof hostname !== 'string' || !/^[a-zA-Z0-9][a-zA-Z0-9.-]{0,63}$/.test(hostname)) fail('options.hostname', 'must be a host name');
    const tmpfsSize = options.tmpfsSize === undefined ? undefined : byteSize('options.tmpfsSize', options.tmpfsSize);
    const nat = fsNative();
    const id = randomBytes(32).toString('hex');
    return await this.#locked((s) => {
      const image = this.#findImage(s, ref);
      if (s.containers[name]) throw errnoError(17, 'store', 'create', name, 'a container of this name exists');
      const im = s.images[image];
      const imageLinks = im.layers.length ? this.#lowerOf(s, im.layers[im.layers.length - 1]) : [];
      const made: string[] = [];
      const links: string[] = [];
      let tmpfsMounted = false;
      try {
        // the init layer
        const initId = `${id}-init`;
        const initDir = join(this.root, initId);
        mkdirSync(initDir, { mode: 0o700 });
        made.push(initDir);
        const diff = join(initDir, 'diff');
        mkdirSync(join(diff, 'etc'), { recursive: true, mode: 0o755 });
        mkdirSync(join(initDir, 'work'));
        const lowerDiffs = [...im.layers].reverse().map((l) => join(this.root, l, 'diff'));
        const hosts = `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${hostname}\n`;
        writeFileSync(join(diff, 'etc', 'hosts'), hosts, { mode: 0o644 });
        writeFileSync(join(diff, 'etc', 'hostname'), `${hostname}\n`, { mode: 0o644 });
        writeFileSync(join(diff, 'etc', 'resolv.conf'), hostResolvConf(), { mode: 0o644 });
        // mount points the runtime needs: /proc, /sys, /dev must be real directories (a
        // symlink in the image is covered by a directory here), /tmp is made when missing
        for (const [d, mode] of [['proc', 0o555], ['sys', 0o555], ['dev', 0o755], ['tmp', 0o1777]] as const) {
          const below = lowerHas(lowerDiffs, d, false);
          if (below?.isDirectory() || (below && d === 'tmp')) continue;
          mkdirSync(join(diff, d));
          fsChmod(join(diff, d), mode);
        }
        if (lowerHas(lowerDiffs, 'etc', false)) {
          // keep the image's /etc owner and mode: the init layer's copy must not change them
          const st = lowerHas(lowerDiffs, 'etc', false)!;
          fsChmod(join(diff, 'etc'), st.mode & 0o7777);
        }
        const initLink = shortId();
        writeFileSync(join(initDir, 'link'), initLink);
        if (imageLinks.length) writeFileSync(join(initDir, 'lower'), imageLinks.map((l) => `l/${l}`).join(':'));
        symlinkSync(`../${initId}/diff`, join(this.root, 'l', initLink));
        links.push(initLink);
        // the container layer
        // 0711: the sandbox's (unprivileged) host uid must reach <id>/merged to bind it as its root
        const dir = join(this.root, id);
        mkdirSync(dir, { mode: 0o711 });
        fsChmod(dir, 0o711);
        made.push(dir);
        if (tmpfsSize !== undefined) {
          nat.fsMount(`nsbox-${ownerTag()}-layer`, dir, 'tmpfs', MS_NOSUID | MS_NODEV, `size=${tmpfsSize},mode=0711`);
          tmpfsMounted = true;
        }
        for (const d of ['diff', 'work', 'merged']) mkdirSync(join(dir, d), { mode: d === 'diff' ? 0o755 : 0o700 });
        const link = shortId();
        writeFileSync(join(dir, 'link'), link);
        writeFileSync(join(dir, 'lower'), [initLink, ...imageLinks].map((l) => `l/${l}`).join(':'));
        symlinkSync(`../${id}/diff`, join(this.root, 'l', link));
        links.push(link);
        s.layers[initId] = { parent: im.layers[im.layers.length - 1] ?? null, diffId: '', size: 0, link: initLink };
        s.layers[id] = { parent: initId, diffId: '', size: 0, link };
        s.containers[name] = { name, id, image, created: new Date().toISOString(), hostname, tmpfsSize, pid: process.pid, start: selfOwnerMark().start, ephemeral: options.ephemeral };
        return new Container(this, name, id, image);
      } catch (e) {
        if (tmpfsMounted) { try { nat.fsUmount(join(this.root, id), true); } catch { /* best effort */ } }
        for (const l of links) rmSync(join(this.root, 'l', l), { force: true });
        for (const d of made) rmSync(d, { recursive: true, force: true });
        throw e;
      }
    });
  }

  /**
   * @internal What a sandbox's root of image `ref` is made of, without a container (the image
   * layer's view template, lib/plan/view.ts imageTemplateView): its layer directories, top
   * first, with their identities (a layer imported again is a new directory, so a new
   * template), and what the init layer must add (mount points the image lacks, its /etc's
   * mode). Kept per image and layer identities; read again when the store's file changes.
   */
  _imageRoot(ref: ImageRef): ImageRoot {
    const s = this.#readShared();
    const id = this.#findImage(s, ref);
    // the same state file as last time: the same layer directories (they change only with it)
    const last = this.#lastRoot.get(id);
    if (last && last.state === s) return last.root;
    const im = s.images[id];
    const dirs = [...im.layers].reverse().map((l) => join(this.root, l, 'diff'));
    const layers = dirs.map((path) => {
      const st = statSync(path, { bigint: true });
      return { path, id: `${st.dev}:${st.ino}` };
    });
    const key = `${id}|${layers.map((l) => l.id).join(',')}`;
    let r = this.#roots.get(key);
    if (!r) {
      const missing: Array<[string, number]> = [];
      for (const [d, mode] of [['proc', 0o555], ['sys', 0o555], ['dev', 0o755], ['tmp', 0o1777]] as const) {
        const below = lowerHas(dirs, d, false);
        if (below?.isDirectory() || (below && d === 'tmp')) continue;
        missing.push([d, mode]);
      }
      const tmp = lowerHas(dirs, 'tmp', false);
      const etc = lowerHas(dirs, 'etc', false);
      r = { id, layers, config: im.config.config ?? {}, dirs: missing, tmp: !tmp || tmp.isDirectory(), etcMode: etc ? etc.mode & 0o7777 : null, squashed: im.layers.some((l) => s.layers[l]?.squashed === true) };
      if (this.#roots.size >= 32) this.#roots.clear();
      this.#roots.set(key, r);
    }
    if (this.#lastRoot.size >= 32) this.#lastRoot.clear();
    this.#lastRoot.set(id, { state: s, root: r });
    return r;
  }

  #roots = new Map<string, ImageRoot>();
  #lastRoot = new Map<string, { state: State; root: ImageRoot }>();

  /** @internal Whether `ref` names an image of the store (RangeError naming it when not). */
  _checkImage(ref: ImageRef, option = 'ref'): void {
    this.#findImage(this.#readShared(), ref, option);
  }

  /** A container by name. */
  container(name: string): Container {
    const c = this.#read().containers[name];
    if (!c) throw new RangeError(`name: no container '${name}' in the store`);
    return new Container(this, c.name, c.id, c.image);
  }

  /** Names of the store's containers. */
  containers(): string[] {
    return Object.keys(this.#read().containers).sort();
  }

  /** @internal */
  _containerLayers(id: string, image: string): { lower: string[]; links: string[] } {
    const s = this.#read();
    const im = s.images[image];
    if (!im) throw errnoError(2, 'store', 'lookup', image, 'the image of this container is gone');
    const layers = [`${id}-init`, ...[...im.layers].reverse()];
    return { lower: layers.map((l) => join(this.root, l, 'diff')), links: layers.map((l) => `l/${s.layers[l].link}`) };
  }

  /**
   * @internal Whether an image's files were squashed to the caller (some layer imported by an
   * unprivileged caller without a subordinate range): its other owners are not kept.
   */
  _squashed(image: string): boolean {
    const s = this.#read();
    return (s.images[image]?.layers ?? []).some((l) => s.layers[l]?.squashed === true);
  }

  /** @internal */
  _mounted(): Map<string, OverlayMount> {
    return this.#mounted;
  }

  /** @internal */
  async _removeContainer(name: string, id: string): Promise<void> {
    await this.#locked((s) => {
      const c = s.containers[name];
      if (!c || c.id !== id) return;
      const dir = join(this.root, id);
      if (isMountPoint(join(dir, 'merged'))) throw errnoError(16, 'store', 'remove', join(dir, 'merged'), 'the container is mounted (by another process?)');
      if (c.tmpfsSize !== undefined && isMountPoint(dir)) fsNative().fsUmount(dir, false);
      for (const l of [id, `${id}-init`]) {
        const li = s.layers[l];
        if (li) rmSync(join(this.root, 'l', li.link), { force: true });
        removeTree(join(this.root, l));
        delete s.layers[l];
      }
      delete s.containers[name];
    });
  }

  /** @internal */
  async _commit(name: string, upper: string, image: string, newName?: string, changes?: Partial<ImageConfig>, idmap?: ContainerIdmap): Promise<ImageInfo> {
    const s0 = this.#read();
    const im = s0.images[image];
    if (!im) throw errnoError(2, 'store', 'commit', image, 'the image of this container is gone');
    const pt = new PassThrough({ highWaterMark: 1 << 20 });
    const exp = exportLayer(upper, pt, idmap);
    const [layer] = await Promise.all([this.importLayer(pt, { parent: im.layers[im.layers.length - 1] }), exp]);
    const config: ImageConfigFile = structuredClone(im.config);
    config.rootfs = { type: 'layers', diff_ids: [...(im.config.rootfs?.diff_ids ?? []), layer.diffId] };
    config.created = new Date().toISOString();
    if (changes) config.config = { ...(config.config ?? {}), ...structuredClone(changes) };
    config.history = [...((im.config.history as unknown[]) ?? []), { created: config.created, created_by: `nsbox commit ${name}` }];
    const bytes = Buffer.from(JSON.stringify(config));
    const id = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    return await this.#locked((s) => {
      if (!s.layers[layer.id]) throw errnoError(2, 'store', 'commit', layer.id, 'the new layer was removed meanwhile');
      s.images[id] = { layers: [...im.layers, layer.id], config, created: config.created! };
      if (newName) s.tags[normalizeRef(newName)] = id;
      return this.#imageInfo(s, id);
    });
  }

  /**
   * Removes what crashed processes left in this store: their `nsbox-tmp-<pid>-*` directories
   * and state-file temporaries, their ephemeral containers (made by spawnIsolated's `image`
   * option; unmounted first), and layer directories and links that no record names (a process
   * killed inside createContainer). Containers of live processes are never touched.
   * `owners`: only what these (dead) processes left. Returns what was removed (names of
   * containers, directory names otherwise).
   */
  async gc(options: { owners?: number[] } = {}): Promise<string[]> {
    checkOptions('options', options, ['owners']);
    if (options.owners !== undefined && (!Array.isArray(options.owners) || !options.owners.every((p) => Number.isInteger(p) && p > 0))) fail('options.owners', 'must be an array of pids');
    const only = options.owners === undefined ? undefined : new Set(options.owners);
    const mine = (pid: number) => !only || only.has(pid);
    const removed: string[] = [];
    for (const n of readdirSync(this.root)) {
      const m = TMP_RE.exec(n) ?? STATE_TMP_RE.exec(n);
      if (m && mine(Number(m[1])) && ownerGone(Number(m[1]), m[2] === undefined ? undefined : Number(m[2]))) { removeTree(join(this.root, n)); removed.push(n); }
    }
    const dead = Object.values(this.#read().containers).filter((c) => c.ephemeral && mine(c.pid) && ownerGone(c.pid, c.start));
    for (const c of dead) {
      const merged = join(this.root, c.id, 'merged');
      if (isMountPoint(merged)) fsNative().fsUmount(merged, true);
      await this._removeContainer(c.name, c.id);
      removed.push(c.name);
    }
    // under the lock every layer directory is in the record (imports and createContainer make
    // and record them in one locked step): one that is not was left by a killed process (whose
    // pid it does not name: swept only when not asked for given owners)
    if (!only) await this.#locked((s) => {
      const links = new Set(Object.values(s.layers).map((l) => l.link));
      for (const n of readdirSync(this.root)) {
        if (!LAYER_DIR_RE.test(n) || s.layers[n]) continue;
        const dir = join(this.root, n);
        if (isMountPoint(join(dir, 'merged'))) { try { fsNative().fsUmount(join(dir, 'merged'), true); } catch { continue; } }
        if (isMountPoint(dir)) { try { fsNative().fsUmount(dir, true); } catch { continue; } }
        removeTree(dir);
        removed.push(n);
      }
      for (const l of readdirSync(join(this.root, 'l'))) {
        if (!links.has(l) && !existsSync(join(this.root, 'l', l))) { rmSync(join(this.root, 'l', l), { force: true }); removed.push(`l/${l}`); }
      }
    }, false);
    return removed;
  }

  /** Unmounts every container this object mounted (the containers stay). */
  dispose(): void {
    for (const m of this.#mounted.values()) { try { m.unmount({ detach: true }); } catch { /* already gone */ } }
    this.#mounted.clear();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}

/** mkdir's mode is masked by the umask, and sticky/set-id bits need chmod anyway. */
function fsChmod(p: string, mode: number) {
  chmodSync(p, mode);
}

/** @internal The host's /etc/resolv.conf for a sandbox (loopback resolvers dropped). */
export function hostResolvConf(): string {
  try {
    const t = readFileSync('/etc/resolv.conf', 'utf8');
    // a loopback resolver of the host is not reachable from a sandbox's network namespace
    const lines = t.split('\n').filter((l) => !/^\s*nameserver\s+(127\.|::1)/.test(l));
    return `${lines.join('\n').trim()}\n`;
  } catch {
    return '';
  }
}

/** Whether `p` is a mount point in this process's mount namespace. */
export function isMountPoint(p: string): boolean {
  const esc = p.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === esc);
}

/** @internal See LayerStore._imageRoot. */
export interface ImageRoot {
  id: string;
  /** layer directories (diff), top first, with `dev:ino` */
  layers: ReadonlyArray<{ path: string; id: string }>;
  config: ImageConfig;
  /** mount points to make (name, mode) */
  dirs: ReadonlyArray<readonly [string, number]>;
  /** /tmp is a directory (or missing: made) */
  tmp: boolean;
  etcMode: number | null;
  squashed: boolean;
}

/** User namespace maps a container's layers are idmapped through (see Container.mount). */
export interface ContainerIdmap { uidMap: IdMap[]; gidMap: IdMap[] }

/** A container of a {@link LayerStore}: an init layer and a writable layer over an image. */
export class Container {
  readonly store: LayerStore;
  readonly name: string;
  /** the writable layer's id (directory under the store root) */
  readonly id: string;
  /** the image id */
  readonly image: string;

  /** @internal use LayerStore.createContainer */
  constructor(store: LayerStore, name: string, id: string, image: string) {
    this.store = store;
    this.name = name;
    this.id = id;
    this.image = image;
  }

  /** The writable layer (overlay upper dir). */
  get upperDir(): string { return join(this.store.root, this.id, 'diff'); }
  /** Where the merged view is mounted. */
  get mergedDir(): string { return join(this.store.root, this.id, 'merged'); }

  /**
   * Mounts the merged view (idempotent within this process) and returns its path. `idmap`:
   * the user namespace maps of the sandbox that will use it (see OverlayMountOptions.idmap;
   * spawnIsolated's `image` option passes the sandbox's own): the image's files are then owned
   * by the same ids inside as in the image. The maps are kept with the container, so that
   * exportDiff and commit give the layer the ids inside, also from another process.
   */
  mount(options: { readonly?: boolean; idmap?: ContainerIdmap } = {}): string {
    const m = this.store._mounted();
    if (m.get(this.id)?.mounted) return this.mergedDir;
    const { lower, links } = this.store._containerLayers(this.id, this.image);
    // the upper dir holds files under the maps of its first mount (or none): later mounts
    // keep those, whatever they ask for
    const first = this.#mapsOnDisk();
    const idmap = first === undefined ? options.idmap : first ?? undefined;
    const parsed = OverlayMount.parse({ lower, upper: this.upperDir, work: join(this.store.root, this.id, 'work'), target: this.mergedDir, readonly: options.readonly ?? false, driver: this.store.driver, idmap });
    parsed.source = `nsbox-${ownerTag()}-overlay`; // the mounting process: gc unmounts it once that is gone
    const om = OverlayMount.mountWith(parsed, { dir: this.store.root, lower: links, upper: `${this.id}/diff`, work: `${this.id}/work` });
    if (first === undefined) writeFileSync(join(this.store.root, this.id, 'idmap.json'), JSON.stringify(om.idmap ?? null));
    m.set(this.id, om);
    return this.mergedDir;
  }

  /**
   * The overlay's directories (lower top first, upper, work) for a mount made elsewhere: an
   * unprivileged caller's sandbox mounts them itself, inside its user namespace.
   */
  overlayDirs(): { lower: string[]; upper: string; work: string } {
    return { lower: this.store._containerLayers(this.id, this.image).lower, upper: this.upperDir, work: join(this.store.root, this.id, 'work') };
  }

  /** The maps the container's files are shifted through: those of its first mount (undefined when that was not idmapped, or before it). */
  get idmap(): ContainerIdmap | undefined {
    return this.#mapsOnDisk() ?? undefined;
  }

  /** undefined: never mounted; null: first mounted without maps. */
  #mapsOnDisk(): ContainerIdmap | null | undefined {
    try {
      return JSON.parse(readFileSync(join(this.store.root, this.id, 'idmap.json'), 'utf8')) as ContainerIdmap | null;
    } catch {
      return undefined;
    }
  }

  /** Unmounts the merged view if this process mounted it. */
  unmount(): void {
    const m = this.store._mounted();
    const om = m.get(this.id);
    if (!om) return;
    om.unmount();
    m.delete(this.id);
  }

  /** Whether this process has it mounted. */
  get mounted(): boolean {
    return this.store._mounted().get(this.id)?.mounted === true;
  }

  /** What the container changed over its image and init layer. */
  changes(): OverlayChange[] {
    const { lower } = this.store._containerLayers(this.id, this.image);
    // an unprivileged caller with a subordinate range looks in its store namespace (see exportDiff)
    const ns = process.geteuid?.() === 0 ? null : storeUserNs();
    const inNs = ns ? runInStoreNsSync<OverlayChange[]>(ns, `nsbox.upperChanges(${JSON.stringify(this.upperDir)}, ${JSON.stringify(lower)}, true)`, 'changes') : null;
    return inNs ?? upperChanges(this.upperDir, lower, rootlessXattr());
  }

  /**
   * The maps the writable layer's host owners go back through: those of its first mount; for
   * an unprivileged caller (whose sandbox mounted it) the caller's own maps (its uid is root
   * inside, its subordinate ids 1..).
   */
  #exportMaps(): ContainerIdmap | undefined {
    const m = this.idmap;
    if (m || process.geteuid?.() === 0) return m;
    const ns = storeUserNs();
    if (ns) return { uidMap: ns.uidMap, gidMap: ns.gidMap };
    return { uidMap: [{ inside: 0, outside: process.geteuid?.() ?? 0, count: 1 }], gidMap: [{ inside: 0, outside: process.getegid?.() ?? 0, count: 1 }] };
  }

  /**
   * The writable layer as a layer tar. An unprivileged caller with a subordinate range reads
   * it in its store namespace (a Node process there; files of the range the caller could not
   * read are then read too, their owners seen as the ids inside).
   */
  exportDiff(dest: Writable): Promise<void> {
    return exportLayer(this.upperDir, dest, this.#exportMaps());
  }

  /**
   * Makes a new image of the container's image plus its writable layer (the init layer is not
   * part of it, as with `docker commit`). `config` overrides parts of the image config.
   */
  commit(options: { name?: string; config?: Partial<ImageConfig> } = {}): Promise<ImageInfo> {
    checkOptions('options', options, ['name', 'config']);
    if (options.name !== undefined && (typeof options.name !== 'string' || !/^[a-z0-9][a-z0-9._\/:-]*$/i.test(options.name))) fail('options.name', 'must be a reference like name:tag');
    if (options.config !== undefined && !isPlainObject(options.config)) fail('options.config', 'must be an object');
    return this.store._commit(this.name, this.upperDir, this.image, options.name, options.config, this.#exportMaps());
  }

  /** Unmounts (if this process mounted it) and deletes the container's layers. */
  async remove(): Promise<void> {
    this.unmount();
    await this.store._removeContainer(this.name, this.id);
  }
}
