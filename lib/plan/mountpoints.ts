// Mount points that are missing in a root the sandbox cannot (or must not) write: a read-only
// rootfs, a host directory of the default view, a read-only bind. The planner makes them
// without writing there (docs/filesystem.md, "Missing mount points"):
//
// where a target's deepest existing ancestor D (resolved in the sandbox's view: a symlink in
// the rootfs leads inside the rootfs, never out) lacks the next component, a small tmpfs that
// mirrors D goes over D: every entry of D bound back in (directories and files from D itself,
// resolved in the root with no symlinks), symlinks made again, mode and owner like D's; on it
// the missing components are made, and it is read-only when D was. Built on the scratch root
// first, then bound onto D as a whole, so nothing under D is ever missing for the sandbox.
//
// A writable root keeps the runc behaviour: the mount point is made in it when the sandbox's
// root may write D (an image container's own upper layer, a rootfs it owns).
//
// The pass runs over the finished op list (buildPlan) and again whenever ops are added
// (provideEtcFiles): the ops it made before are dropped and made again from the whole list.
import type { IdMap } from '../util/idmap.js';
import { NsboxError } from '../errors.js';
import { MS, Op, type PlanOp } from './ops.js';
import type { DirInfo, HostFacts, Plan } from './types.js';

const N = '/newroot', OLD = '/oldroot', STAGE = '/nsbox-mirror';
/** Directories with more entries than this are not mirrored (the mount point fails as before). */
const MAX_ENTRIES = 4096;

export type { DirInfo } from './types.js';

export interface MountPointContext {
  host: HostFacts;
  rootfsReadonly: boolean;
  uidMaps: IdMap[] | null;
  gidMaps: IdMap[] | null;
  /** host ids of the sandbox's root; undefined when not known (a joined user namespace) */
  rootUid?: number;
  rootGid?: number;
  /** the caller's mounts: sandbox target and, for binds, the host path as given and as used */
  callerMounts: Array<{ target: string; source?: string; resolved?: string }>;
}

const contexts = new WeakMap<Plan, MountPointContext>();
const made = new WeakSet<PlanOp>();
/** Internal staging paths of a plan's mirrors -> the sandbox directory each stands for. */
const stageNames = new WeakMap<Plan, Map<string, string>>();

/** A copy of a plan (see forkPlan) keeps what was recorded for the original. */
export function carryMountPointContext(from: Plan, to: Plan): void {
  const c = contexts.get(from);
  if (c) contexts.set(to, c);
  const n = stageNames.get(from);
  if (n) stageNames.set(to, n);
}

export function setMountPointContext(plan: Plan, c: MountPointContext): void {
  contexts.set(plan, c);
}

type Kind = { kind: 'dir' | 'file' | 'missing' | 'own' } | { kind: 'symlink'; target: string };
interface Mirror {
  at: string;
  host: string;
  info: DirInfo;
  writable: boolean;
  made: Map<string, 'dir' | 'file'>;
  entries: Map<string, DirInfo['entries'][number]>;
  /** placed right after this op, or after the parent mirror's ops */
  anchor: PlanOp | Mirror;
  final?: PlanOp;
}
interface Layer { at: string; seq: number; kind: 'host' | 'own' | 'mirror'; host?: string; writable?: boolean; op?: PlanOp; m?: Mirror }

function under(p: string, at: string): boolean {
  return at === '/' || p === at || p.startsWith(`${at}/`);
}
function rel(p: string, at: string): string {
  return p === at ? '' : at === '/' ? p.slice(1) : p.slice(at.length + 1);
}
function join(a: string, b: string): string {
  return b === '' ? a : a === '/' ? `/${b}` : `${a}/${b}`;
}
function insideOf(maps: IdMap[] | null, id: number): number | undefined {
  if (!maps) return id;
  const m = maps.find((x) => id >= x.outside && id < x.outside + x.count);
  return m ? m.inside + (id - m.outside) : undefined;
}

/** (Re)makes the mirror ops of `plan` (see the top of this file). Does nothing without a context. */
export function placeMountPoints(plan: Plan): void {
  const c = contexts.get(plan);
  if (!c || !c.host.dirInfo) return;
  const host = c.host;
  const ops = plan.ops.filter((o) => !made.has(o));
  const layers: Layer[] = [];
  const mirrors: Mirror[] = [];

  const layerOf = (p: string): Layer | undefined => {
    let best: Layer | undefined;
    for (const l of layers) if (under(p, l.at) && (!best || l.seq >= best.seq)) best = l;
    return best;
  };
  const kindAt = (p: string): Kind => {
    const l = layerOf(p);
    if (!l || l.kind === 'own') return { kind: 'own' };
    const r = rel(p, l.at);
    let k: ReturnType<HostFacts['pathKind']>;
    if (l.kind === 'host') k = host.pathKind(join(l.host!, r));
    else {
      const m = l.m!;
      if (r === '') return { kind: 'dir' };
      const mk = m.made.get(r);
      if (mk) return { kind: mk };
      const first = r.split('/')[0]!;
      const e = m.entries.get(first);
      if (!e) return { kind: 'missing' };
      if (r === first) return e.kind === 'symlink' ? { kind: 'symlink', target: e.target! } : { kind: e.kind === 'dir' ? 'dir' : 'file' };
      k = host.pathKind(join(m.host, r));
    }
    if (k.kind === 'symlink') return k;
    return { kind: k.kind === 'other' ? 'file' : k.kind };
  };
  /** The deepest existing directory on the way to `p` and what is missing below it, or null. */
  const resolve = (p: string, real: boolean): { dir: string; rest: string[]; own?: boolean } | null => {
    let parts = p.split('/').filter(Boolean);
    let cur = '/';
    let hops = 0;
    for (let i = 0; i < parts.length; i++) {
      const next = join(cur, parts[i]!);
      const k = kindAt(next);
      // in what nsbox mounted (a fresh tmpfs): the child makes what is missing, but not through
      // a symlink; reached through one, the resolved path is made first
      if (k.kind === 'own') return hops > 0 ? { dir: cur, rest: parts.slice(i), own: true } : null;
      if (k.kind === 'symlink') {
        if (real || ++hops > 40) return null;
        const np: string[] = [];
        const base = k.target.startsWith('/') ? [] : cur.split('/').filter(Boolean);
        for (const s of [...base, ...k.target.split('/'), ...parts.slice(i + 1)]) {
          if (s === '' || s === '.') continue;
          if (s === '..') np.pop(); else np.push(s);
        }
        parts = np;
        cur = '/';
        i = -1;
        continue;
      }
      if (k.kind === 'dir') { cur = next; continue; }
      if (k.kind === 'missing') return { dir: cur, rest: parts.slice(i) };
      return null; // a file: the target itself, or a component that is not a directory (the child reports it)
    }
    return null;
  };
  const canWrite = (info: DirInfo): boolean => {
    if (c.rootUid === undefined) return false;
    if (c.rootUid === 0 && !c.uidMaps) return true;
    if (info.uid === c.rootUid) return (info.mode & 0o200) !== 0;
    if (info.gid === c.rootGid) return (info.mode & 0o020) !== 0;
    return (info.mode & 0o002) !== 0;
  };
  const before = new Map<PlanOp, PlanOp[]>();
  const need = (op: PlanOp, target: string, kind: 'dir' | 'file', real: boolean) => {
    const r = resolve(target, real);
    if (!r) return;
    if (r.own) {
      const dir = join(r.dir, (kind === 'dir' ? r.rest : r.rest.slice(0, -1)).join('/'));
      if (dir === r.dir) return;
      const mk: PlanOp = { op: Op.Mkdir, path: N + dir, mode: 0o755 };
      made.add(mk);
      before.set(op, [...(before.get(op) ?? []), mk]);
      return;
    }
    const l = layerOf(r.dir);
    if (!l || l.kind === 'own') return;
    let m: Mirror | undefined;
    let base: string;
    if (l.kind === 'mirror' && (r.dir === l.at || l.m!.made.has(rel(r.dir, l.at)))) {
      m = l.m!;
      base = rel(r.dir, l.at);
    } else {
      const hostDir = l.kind === 'host' ? join(l.host!, rel(r.dir, l.at)) : join(l.m!.host, rel(r.dir, l.at));
      const writable = l.kind === 'host' ? l.writable! : l.m!.writable;
      const info = host.dirInfo!(hostDir);
      if (!info || info.entries.length > MAX_ENTRIES) return;
      if (writable && canWrite(info)) return; // made in place by the child, as runc does
      m = { at: r.dir, host: hostDir, info, writable, made: new Map(), entries: new Map(info.entries.map((e) => [e.name, e])), anchor: l.kind === 'host' ? l.op! : l.m! };
      mirrors.push(m);
      // (a fraction above its anchor's: it covers what the anchor made, nothing mounted later)
      layers.push({ at: r.dir, seq: l.seq + mirrors.length / 10000, kind: 'mirror', m });
      base = '';
    }
    for (let i = 0; i < r.rest.length; i++) {
      const p = join(base === '' ? '/' : `/${base}`, r.rest.slice(0, i + 1).join('/')).slice(1);
      if (!m.made.has(p)) m.made.set(p, i === r.rest.length - 1 ? kind : 'dir');
    }
  };

  ops.forEach((op, seq) => {
    if (op.op !== Op.Bind && op.op !== Op.Mount && op.op !== Op.Attach) return;
    const t = op.path;
    if (t === undefined || !(t === N || t.startsWith(`${N}/`))) return;
    const sp = t === N ? '/' : t.slice(N.length);
    // (a `present` op is made only where its target exists: nothing to place)
    if (!op.trusted && !op.present) need(op, sp, op.file ? 'file' : 'dir', op.real === true);
    // the layer the op makes
    const writable = sp === '/' ? !c.rootfsReadonly : !op.readonly;
    if (op.op === Op.Attach) layers.push({ at: sp, seq, kind: 'host', host: op.source!, writable, op });
    else if (op.op === Op.Bind && op.source?.startsWith(`${OLD}/`)) layers.push({ at: sp, seq, kind: 'host', host: op.source.slice(OLD.length), writable, op });
    else if (op.op === Op.Bind && (op.source === N || op.source?.startsWith(`${N}/`))) return; // the same content again (read-only paths)
    else layers.push({ at: sp, seq, kind: 'own', op });
  });

  // the ops: each mirror right after its anchor (after the mirrors placed there before it)
  const names = new Map<string, string>();
  const after = new Map<PlanOp, PlanOp>();
  mirrors.forEach((m, k) => {
    const S = `${STAGE}/${k}`;
    names.set(S, m.at);
    const ro = !m.writable;
    const own: string[] = [`mode=${(m.info.mode & 0o7777).toString(8).padStart(4, '0')}`];
    const u = insideOf(c.uidMaps, m.info.uid), g = insideOf(c.gidMaps, m.info.gid);
    if (u !== undefined && g !== undefined) own.push(`uid=${u}`, `gid=${g}`);
    const count = m.entries.size + m.made.size + 8;
    if (ro) own.push(`size=${4 * count}k`, `nr_inodes=${count}`);
    const list: PlanOp[] = [{ op: Op.Mount, source: 'nsbox-mirror', path: S, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: own.join(',') }];
    for (const e of [...m.entries.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.kind === 'symlink') list.push({ op: Op.Symlink, source: e.target!, path: `${S}/${e.name}` });
      else list.push({ op: Op.Bind, source: N + join(m.at, e.name), path: `${S}/${e.name}`, file: e.kind !== 'dir', recursive: true, readonly: ro, real: true, flags: 0 });
    }
    for (const p of [...m.made.keys()].sort()) {
      if (m.made.get(p) === 'dir') list.push({ op: Op.Mkdir, path: `${S}/${p}`, mode: 0o755 });
      else list.push({ op: Op.WriteFile, path: `${S}/${p}`, data: '', mode: 0o644 });
    }
    if (ro) list.push({ op: Op.RemountRo, path: S, recursive: false });
    m.final = { op: Op.Bind, source: S, path: m.at === '/' ? N : N + m.at, recursive: true, real: true, flags: 0 };
    list.push(m.final);
    for (const o of list) made.add(o);
    const anchor = 'op' in m.anchor ? m.anchor : (m.anchor as Mirror).final!;
    const prev = after.get(anchor) ?? anchor;
    ops.splice(ops.indexOf(prev) + 1, 0, ...list);
    after.set(anchor, m.final);
  });
  for (const [op, list] of before) ops.splice(ops.indexOf(op), 0, ...list);
  plan.ops = ops;
  stageNames.set(plan, names);
}

/**
 * The error a failed spawn of `plan` reports, with the paths a person knows: the sandbox path
 * and the host path the caller gave, never nsbox's own (/newroot, /oldroot, staging dirs).
 */
export function publicError(plan: Plan, err: unknown): unknown {
  if (!(err instanceof NsboxError) || err.path === undefined) return err;
  const internal = err.path;
  const c = contexts.get(plan);
  let shown: string | undefined;
  let path: string | undefined;
  for (const m of c?.callerMounts ?? []) {
    if (internal === N + m.target || (m.resolved !== undefined && (internal === OLD + m.resolved || internal === m.resolved))) {
      path = internal === N + m.target ? m.target : m.source;
      shown = m.source !== undefined ? `${m.target}, from ${m.source}` : m.target;
      break;
    }
  }
  if (shown === undefined) {
    const names = stageNames.get(plan);
    const stage = [...(names ?? [])].find(([s]) => internal === s || internal.startsWith(`${s}/`));
    if (stage) path = join(stage[1], rel(internal, stage[0]));
    else if (internal === N) path = '/';
    else if (internal.startsWith(`${N}/`)) path = internal.slice(N.length);
    else if (internal.startsWith(`${OLD}/`)) path = internal.slice(OLD.length);
    else if (internal.startsWith('/nsbox-etc/')) path = `/etc/${internal.slice('/nsbox-etc/'.length)}`;
    else if (internal.startsWith('/nsbox-') || internal.startsWith(`/tmp${N}`) || internal.startsWith(`/tmp${OLD}`) || internal.startsWith('/run/.nsbox-')) path = undefined;
    else path = internal;
    shown = path;
  }
  if (shown === internal && path === internal) return err;
  const e = new NsboxError(err.message.replace(` (${internal})`, shown === undefined ? '' : ` (${shown})`), {
    code: err.code, errno: err.errno, syscall: err.syscall, path, step: err.step, detail: err.detail,
  });
  if (path === undefined) delete e.path;
  e.stack = err.stack?.replace(err.message, e.message);
  return e;
}
