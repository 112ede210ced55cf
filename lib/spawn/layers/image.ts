// The image layer: `options.image`, validated when spawnIsolated is called (a bad value throws
// before anything is made). In `resolve` (before cgroups and network) the inputs are rebuilt:
// the image config's Env / WorkingDir / User applied under the caller's options, and the
// command taken from Entrypoint + Cmd when `file` is IMAGE_COMMAND. A root caller's ephemeral
// sandbox gets the image as a view template (PlanInput.imageTemplate, view.ts
// imageTemplateView: nothing made on the host); otherwise an ephemeral container of the image
// is created and mounted (rootfs = its merged dir, writable), and `release` unmounts and removes
// it (unless `keep`), after exit or failed setup.
import { statfsSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { errnoError } from '../../errors.js';
import { readFile } from '../../fs/files.js';
import { fsNative } from '../../fs/native.js';
import { userNsFd } from '../../fs/overlay.js';
import { Container, hostResolvConf, LayerStore, refString } from '../../fs/store.js';
import { IMAGE_COMMAND, type ImageConfig } from '../../fs/image.js';
import { byteSize, checkOptions, fail } from '../../util/validate.js';
import { onTeardown } from '../../teardown.js';
import { buildPlan, DEFAULT_PATH, ImageTemplateUnfit, kernelAtLeast, realHost, sandboxIdMaps, type ImageTemplate } from '../../plan/index.js';
import type { ImageSpec, SpawnIsolatedOptions } from '../../plan/options.js';
import type { SpawnInput, SpawnLayer } from '../layer.js';

function validateSpec(v: unknown): { ref: string; keep: boolean; store: LayerStore; tmpfsSize?: number } {
  checkOptions('options.image', v, ['store', 'ref', 'keep', 'tmpfsSize']);
  const s = v as ImageSpec;
  if (!(s.store instanceof LayerStore)) fail('options.image.store', 'must be a LayerStore (LayerStore.open(root))');
  // a reference string, or the ImageInfo importImage()/image() returned (its id)
  const ref = refString('options.image.ref', s.ref);
  if (s.keep !== undefined && typeof s.keep !== 'boolean') fail('options.image.keep', 'must be a boolean');
  const tmpfsSize = s.tmpfsSize === undefined ? undefined : byteSize('options.image.tmpfsSize', s.tmpfsSize);
  try {
    s.store._checkImage(ref);
  } catch (e) {
    if (e instanceof RangeError) throw new RangeError(`options.image.ref: no image '${ref}' in the store at ${s.store.root}`);
    throw e;
  }
  return { store: s.store, ref, keep: s.keep ?? false, tmpfsSize };
}

/** `user[:group]` of an image config to ids, names looked up in the image's own /etc/passwd and /etc/group. */
async function resolveUser(roots: string[], user: string): Promise<{ uid: number; gid?: number; home?: string }> {
  const [u, g] = user.split(':', 2);
  const table = async (f: string) => {
    for (const root of roots) {
      try {
        return (await readFile(root, f, { maxBytes: 4 << 20 })).toString('utf8').split('\n').map((l) => l.split(':'));
      } catch { /* not in this one */ }
    }
    return [];
  };
  let uid: number, gid: number | undefined, home: string | undefined;
  const passwd = await table('etc/passwd');
  if (/^\d+$/.test(u)) {
    uid = Number(u);
    const e = passwd.find((x) => x[2] === u);
    if (e) { gid = Number(e[3]); home = e[5]; }
  } else {
    const e = passwd.find((x) => x[0] === u);
    if (!e) throw new RangeError(`options.image: the image's User '${user}' is not in its /etc/passwd`);
    uid = Number(e[2]); gid = Number(e[3]); home = e[5];
  }
  if (g !== undefined && g !== '') {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const e = (await table('etc/group')).find((x) => x[0] === g);
      if (!e) throw new RangeError(`options.image: the image's group '${g}' is not in its /etc/group`);
      gid = Number(e[2]);
    }
  }
  return { uid, gid, home };
}

/** The inputs spawnIsolated runs with, given a mounted image root and its config. */
export async function applyImageConfig(input: SpawnInput, root: string, config: ImageConfig, lookIn: string[] = [root]): Promise<SpawnInput> {
  const ids = input.options.uid === undefined && config.User ? await resolveUser(lookIn, config.User) : undefined;
  return configured(input, root, config, ids);
}

/** applyImageConfig once the image's User is looked up (`ids`; none where it has none or options.uid is given). */
function configured(input: SpawnInput, root: string, config: ImageConfig, ids: { uid: number; gid?: number; home?: string } | undefined): SpawnInput {
  const o: SpawnIsolatedOptions = { ...input.options, image: undefined, rootfs: { path: root, readonly: false } };
  let file = input.file, args = input.args;
  if (file === IMAGE_COMMAND) {
    const argv = [...(config.Entrypoint ?? []), ...(args.length ? args : config.Cmd ?? [])];
    if (argv.length === 0) throw new TypeError('file: the image has no Entrypoint or Cmd to run (give a program instead of IMAGE_COMMAND)');
    [file, ...args] = argv;
  }
  if (ids) {
    o.uid = ids.uid;
    if (o.gid === undefined && ids.gid !== undefined) o.gid = ids.gid;
  }
  const env: Record<string, string> = { PATH: DEFAULT_PATH, HOME: ids?.home || ((o.uid ?? 0) === 0 ? '/root' : '/') };
  for (const kv of config.Env ?? []) {
    const i = kv.indexOf('=');
    if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  o.env = { ...env, ...(input.options.env ?? {}) };
  if (o.cwd === undefined && config.WorkingDir) o.cwd = config.WorkingDir;
  return { ...input, file, args, options: o };
}

// ---- an ephemeral image of a root caller as a view template (no container) ----------------

const OVERLAY_MAGIC = 0x794c7630;
/** Filesystems (by device) of layer directories: whether an idmapped mount of them can be stacked under two overlays. */
const layerFsOk = new Map<string, boolean>();
/** A template view of an image failed to build here: containers from then on. */
let templatesRefused = false;
let hostsCache: { resolv: string; at: number } | undefined;

/** /etc/resolv.conf as the init layer gets it, read again after a second. */
function resolvConf(): string {
  const now = performance.now();
  if (!hostsCache || now - hostsCache.at > 1000) hostsCache = { resolv: hostResolvConf(), at: now };
  return hostsCache.resolv;
}

/**
 * The inputs of a spawn whose root is the image as a view template (PlanInput.imageTemplate,
 * view.ts imageTemplateView), or undefined where it cannot be: not root, `keep`, Linux before
 * 6.6 (user xattrs on the tmpfs of the writable layer), a layer's filesystem that takes no
 * idmapped mount or is itself an overlay (a third level), options that call for a whole view
 * (buildPlan refuses: ImageTemplateUnfit), or after such a template failed in this process.
 */
function templateInput(spec: ReturnType<typeof validateSpec>, input: SpawnInput, hostname: string | undefined): { input: SpawnInput; config: ImageConfig; lookIn: string[] } | undefined {
  if (spec.keep || realHost.euid !== 0 || !kernelAtLeast(6, 6) || templatesRefused || process.env.NSBOX_IMAGE_TEMPLATE === '0') return undefined;
  if (input.options.viewTemplate === false) return undefined;
  const maps = sandboxIdMaps(input.options, realHost, input.idBlock);
  if (!maps) return undefined;
  const root = spec.store._imageRoot(spec.ref);
  if (root.layers.length === 0) return undefined;
  const fd = userNsFd(maps);
  for (const l of root.layers) {
    const dev = l.id.slice(0, l.id.indexOf(':'));
    let ok = layerFsOk.get(dev);
    if (ok === undefined) {
      ok = statfsSync(l.path).type !== OVERLAY_MAGIC && fsNative().fsIdmapProbe(l.path, fd) === 0;
      layerFsOk.set(dev, ok);
    }
    if (!ok) return undefined;
  }
  const name = hostname ?? 'nsbox';
  const image: ImageTemplate = {
    layers: root.layers,
    userNsFd: fd,
    etc: {
      hostname: `${name}\n`,
      hosts: `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${name}\n`,
      'resolv.conf': resolvConf(),
    },
    etcMode: root.etcMode,
    dirs: root.dirs,
    tmp: root.tmp,
    ...(spec.tmpfsSize !== undefined ? { tmpfsSize: spec.tmpfsSize } : {}),
    rootfs: root.layers[0]!.path,
  };
  return { input: { ...input, imageTemplate: image }, config: root.config, lookIn: root.layers.map((l) => l.path) };
}

/** The sandbox's hostname as the init layer's files take it (a valid one, else none: 'nsbox'). */
function hostnameOf(input: SpawnInput): string | undefined {
  const h = input.options.hostname;
  return typeof h === 'string' && /^[a-zA-Z0-9][a-zA-Z0-9.-]{0,63}$/.test(h) ? h : undefined;
}

/** The image's template input, configured, without a rootfs: itself where its plan can be built (buildPlan keeps that plan for the pipeline), else undefined (a container then). */
function fitting(next: SpawnInput): SpawnInput | undefined {
  const ti = { ...next, options: { ...next.options, rootfs: undefined } };
  try {
    buildPlan(ti);
    return ti;
  } catch (e) {
    if (e instanceof ImageTemplateUnfit) return undefined;
    throw e;
  }
}

/** A template view of an image failed to build: images get containers in this process from now on. */
export function imageTemplateFailed(): void {
  templatesRefused = true;
}

/**
 * The image layer: `options.image` (`{ store, ref, keep?, tmpfsSize? }`). The image's config
 * applies, the caller's options override it: `env` is merged over the image's Env (PATH and
 * HOME defaults below both), `cwd` over WorkingDir, `uid`/`gid` over User; `hostname` also goes
 * into the container's /etc/hostname and /etc/hosts.
 */
export const imageLayer: SpawnLayer = {
  name: 'image',
  open(opts) {
    if (opts.image === undefined) return undefined;
    const spec = validateSpec(opts.image);
    let container: Container | undefined;
    let dropTeardown = () => {};
    let resolved = false;
    return {
      // an unprivileged caller without a subordinate range: the layers were extracted without
      // their owners (store.ts rootless); with one they kept them (subids.ts), as root's do
      report: () => (realHost.euid !== 0 && (container ? container.store._squashed(container.image) : spec.store._squashed(spec.store.image(spec.ref).id)) ? { imageOwners: 'squashed' as const } : {}),
      // a root caller's ephemeral sandbox, the image's User needing no lookup: its view
      // template, before the base plan is built (it is built once, with it)
      resolveNow(input) {
        if (resolved) return undefined;
        const t = templateInput(spec, input, hostnameOf(input));
        if (!t || (input.options.uid === undefined && t.config.User)) return undefined;
        try {
          const ti = fitting(configured(t.input, '/', t.config, undefined));
          if (ti) resolved = true;
          return ti;
        } catch {
          return undefined; // a mistake: resolve rejects the spawn with it, as before
        }
      },
      async resolve(input) {
        if (resolved) return undefined;
        const hostname = hostnameOf(input);
        // a root caller's ephemeral sandbox: the image as a view template, nothing on the host
        const t = templateInput(spec, input, hostname);
        if (t) {
          const ti = fitting(await applyImageConfig(t.input, '/', t.config, t.lookIn));
          if (ti) return ti;
        }
        const config = spec.store.image(spec.ref).config;
        container = await spec.store.createContainer(spec.ref, {
          name: `nsbox-run-${process.pid}-${Math.random().toString(16).slice(2, 10)}`,
          hostname, tmpfsSize: spec.tmpfsSize, ephemeral: !spec.keep,
        });
        if (realHost.euid !== 0) {
          // an unprivileged caller: the sandbox mounts the overlay itself, in its own user
          // namespace (userxattr), over the container's empty merged dir; the layers' files are
          // owned by the caller and its subordinate ids as the sandbox's maps give the image's
          // owners (or all the caller's, squashed, without a range)
          const [maj, min] = release().split('.').map((n) => parseInt(n, 10));
          if (maj < 5 || (maj === 5 && min < 11)) throw errnoError(95, 'image', 'overlay', spec.store.root, `an unprivileged caller's image needs Linux 5.11 or later (overlay inside a user namespace, userxattr); this is ${release()}: run as root, or use options.rootfs`);
          const dir = join(spec.store.root, container.id);
          if (opts.parentDeathSignal !== false) dropTeardown = onTeardown({ mounts: spec.tmpfsSize !== undefined ? [dir] : [], dirs: spec.keep ? [] : [dir] });
          const merged = container.mergedDir;
          return applyImageConfig({ ...input, imageRoot: true, rootOverlay: container.overlayDirs() }, merged, config, container.overlayDirs().lower);
        }
        // the image's owners, shifted into the sandbox's user namespace (its root owns what the
        // image's root owns), where this host can (else they stay as on disk; see docs)
        const root = container.mount({ idmap: sandboxIdMaps(input.options, realHost, input.idBlock) ?? undefined });
        // the thread's teardown: unmount it and (ephemeral) remove its directory; the store's
        // record of it stays for store.gc() / nsbox gc once this process is gone. Not for a
        // sandbox that is to outlive the thread
        const dir = join(spec.store.root, container.id);
        if (opts.parentDeathSignal !== false) dropTeardown = onTeardown({ mounts: [root, ...(spec.tmpfsSize !== undefined ? [dir] : [])], dirs: spec.keep ? [] : [dir] });
        return applyImageConfig(input, root, config);
      },
      async release() {
        if (!container) return;
        const c = container;
        container = undefined;
        dropTeardown();
        try {
          c.unmount();
        } catch {
          try { c.store._mounted().get(c.id)?.unmount({ detach: true }); } catch { /* gone */ }
          c.store._mounted().delete(c.id);
        }
        if (!spec.keep) await c.remove().catch(() => {});
      },
    };
  },
};
