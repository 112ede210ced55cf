// Options -> a validated, fully resolved Plan (DESIGN.md §1): every option checked once,
// here, into the values the addon needs. Nothing here touches the kernel except reading host
// facts (ids, /etc/subuid, which system dirs exist); those reads go through `HostFacts` so
// unit tests can plan for any host. The view's ops come from view.ts, ids from ids.ts.
import { statSync } from 'node:fs';
import { release as osRelease } from 'node:os';
import { SIGNALS } from '../util/sys.js';
import { Capabilities, type ProcessCapabilities } from '../security/capabilities.js';
import { CLONE_FLAGS, type Namespace, type NamespaceType } from '../ns/namespace.js';
import { validateLimits, wantsCgroup } from '../cgroup/limits.js';
import { errnoError } from '../errors.js';
import { formatMaps, mapped, outsideOf, parseIdMaps, within, type IdMap } from '../util/idmap.js';
import { checkKeys, fail, isObject, str, strictAbsPath, uint } from '../util/validate.js';
import { kernelAtLeast, realHost } from './host.js';
import { callerRange, earlyIds, remappedRoot, subidFix, wantsCallerRange } from './ids.js';
import { carryMountPointContext, placeMountPoints, setMountPointContext } from './mountpoints.js';
import { MS, Op, type PlanOp } from './ops.js';
import type { Rlimits, SpawnIsolatedOptions, StdioOption } from './options.js';
import type { HostFacts, Plan, PlanInput, PlanSummary } from './types.js';
import { DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, freshSysfs, planView, type ParsedMount } from './view.js';

const RLIMIT: Record<keyof Rlimits, number> = {
  cpu: 0, fsize: 1, data: 2, stack: 3, core: 4, rss: 5, nproc: 6, nofile: 7, memlock: 8, as: 9,
  locks: 10, sigpending: 11, msgqueue: 12, nice: 13, rtprio: 14, rttime: 15,
};

const NS_TYPES: NamespaceType[] = ['user', 'pid', 'mount', 'uts', 'ipc', 'net', 'cgroup', 'time'];
/** Joined namespaces are entered in this order by an unprivileged caller: user first (it grants the rights for the rest), mount last. */
const JOIN_ORDER: NamespaceType[] = ['user', 'net', 'uts', 'ipc', 'cgroup', 'time', 'pid', 'mount'];
/**
 * Root enters the others while its rights in its own user namespace still cover them all, and
 * the user namespace just before pid and mount: a sandbox's network namespace may belong to
 * nsbox's user namespace rather than the sandbox's (Plan.netPremade), and from inside the
 * sandbox's user namespace it could not be entered.
 */
const ROOT_JOIN_ORDER: NamespaceType[] = ['net', 'uts', 'ipc', 'cgroup', 'time', 'user', 'pid', 'mount'];

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function signalNumber(option: string, v: unknown): number {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 1 || v > 64) fail(option, `must be a signal number 1-64 (got ${v})`, RangeError);
    return v;
  }
  if (typeof v === 'string' && SIGNALS[v] !== undefined) return SIGNALS[v]!;
  return fail(option, `must be a signal name like 'SIGTERM' or a number (got ${String(v)})`);
}

const OPTION_KEYS = [
  'rootfs', 'hostname', 'domainname', 'cwd', 'env', 'uid', 'gid', 'groups', 'namespaces', 'user', 'remapUser',
  'rootPropagation', 'mounts', 'maskedPaths', 'readonlyPaths', 'devices', 'join', 'capabilities', 'allowNewPrivileges', 'rlimits', 'timeOffsets', 'stdio', 'input',
  'encoding', 'buffer', 'all', 'timeout', 'signal', 'killSignal', 'forceKillAfterMs', 'parentDeathSignal', 'init', 'tty', 'nestedUserNamespaces',
  'viewTemplate', 'sysctl', 'umask', 'oomScoreAdj', 'extraFds',
  // filled by later layers (cgroups, networking, images, seccomp); validated there
  'limits', 'onOutputLimit', 'cgroup', 'cgroupParent', 'network', 'image', 'seccomp',
] as const;

/** Validated stdio, as the spawn layer needs it. */
export function parseStdio(v: SpawnIsolatedOptions['stdio']): [StdioOption, StdioOption, StdioOption] {
  const one = (o: string, x: unknown): StdioOption => {
    if (x === 'pipe' || x === 'inherit' || x === 'ignore') return x;
    if (typeof x === 'number') return uint(o, x, 0x7fffffff);
    return fail(o, `must be 'pipe', 'inherit', 'ignore' or an fd number (got ${String(x)})`);
  };
  if (v === undefined) return ['pipe', 'pipe', 'pipe'];
  if (Array.isArray(v)) {
    if (v.length !== 3) fail('options.stdio', 'as an array must have exactly 3 entries');
    return [one('options.stdio[0]', v[0]), one('options.stdio[1]', v[1]), one('options.stdio[2]', v[2])];
  }
  const s = one('options.stdio', v);
  return [s, s, s];
}


/**
 * Builds the plan for one sandbox. Throws TypeError/RangeError naming the option for any
 * mistake; creates nothing.
 */
export function buildPlan(input: PlanInput, host: HostFacts = realHost): Plan {
  // an image's template input: the image layer builds it once to see that it fits (it throws
  // ImageTemplateUnfit where not), the pipeline then takes that plan instead of a second build
  if (input.imageTemplate === undefined || host !== realHost) return makePlan(input, host);
  const made = checkedImagePlans.get(input);
  if (made) {
    checkedImagePlans.delete(input);
    return made;
  }
  const p = makePlan(input, host);
  checkedImagePlans.set(input, p);
  return p;
}

const checkedImagePlans = new WeakMap<PlanInput, Plan>();

function makePlan(input: PlanInput, host: HostFacts): Plan {
  const { file, args } = input;
  let o = input.options ?? {};
  if (!isObject(o)) fail('options', 'must be an object');
  checkKeys('options', o as Record<string, unknown>, OPTION_KEYS);
  str('file', file, { nonEmpty: true });
  if (!Array.isArray(args)) fail('args', 'must be an array of strings');
  const argv = [file, ...args.map((a, i) => str(`args[${i}]`, a))];

  // --- namespaces
  const ns = new Set<NamespaceType>(['pid', 'mount', 'uts', 'ipc', 'net', 'cgroup', 'user']);
  if (o.namespaces !== undefined) {
    if (!isObject(o.namespaces)) fail('options.namespaces', 'must be an object of booleans');
    checkKeys('options.namespaces', o.namespaces, NS_TYPES);
    for (const [k, v] of Object.entries(o.namespaces)) {
      if (typeof v !== 'boolean') fail(`options.namespaces.${k}`, 'must be a boolean');
      if (v) ns.add(k as NamespaceType); else ns.delete(k as NamespaceType);
    }
  }
  if (o.user === false) ns.delete('user');
  else if (o.user !== undefined && !isObject(o.user)) fail('options.user', 'must be false or { uidMap, gidMap }');
  if (o.timeOffsets !== undefined) ns.add('time');
  // network: 'none' and 'loopback' keep the new namespace (lo up); 'host' shares the host's;
  // { join } enters one; bridge mode is prepared by lib/net (a spawn extension)
  const network = (o as SpawnIsolatedOptions).network;
  if (network === 'host') ns.delete('net');
  let joinNet: Namespace | undefined;
  if (typeof network === 'object' && network !== null && 'join' in network) joinNet = (network as { join: Namespace }).join;

  const joins: Plan['joins'] = [];
  const joined: NamespaceType[] = [];
  if (joinNet) {
    if ((o.join as Record<string, unknown> | undefined)?.net !== undefined) fail('options.network', 'cannot be { join } together with options.join.net');
    o = { ...o, join: { ...(o.join as object), net: joinNet } };
  }
  if (o.join !== undefined) {
    if (!isObject(o.join)) fail('options.join', 'must be an object { type: Namespace }');
    checkKeys('options.join', o.join, NS_TYPES);
    for (const t of host.euid === 0 ? ROOT_JOIN_ORDER : JOIN_ORDER) {
      const n = (o.join as Record<string, Namespace | undefined>)[t];
      if (n === undefined) continue;
      if (typeof n !== 'object' || n === null || typeof (n as Namespace).fd !== 'number' || (n as Namespace).type === undefined) {
        fail(`options.join.${t}`, 'must be a Namespace (Namespace.ofProcess / Namespace.open)');
      }
      if (n.type !== t) fail(`options.join.${t}`, `is a ${n.type} namespace, not ${t}`);
      joins.push({ fd: n.fd, nstype: CLONE_FLAGS[t], type: t });
      joined.push(t);
      ns.delete(t);
    }
  }
  if (joined.includes('user') && o.user !== undefined && o.user !== false) fail('options.user', 'cannot set id maps while joining a user namespace');
  // a joined network namespace that the joined user namespace owns (user-mode networking's
  // holder): the sandbox may mount its sysfs (view.ts)
  const joinNs = o.join as Partial<Record<NamespaceType, Namespace>> | undefined;
  const joinedOwnNet = joinNs?.net !== undefined && joinNs.user !== undefined && (host.ownsNamespace?.(joinNs.user, joinNs.net) ?? false);

  const privileged = host.euid === 0 || ns.has('user') || joined.includes('user');
  const ownCgroup = needsCgroup(o);
  const mountNs = ns.has('mount') || joined.includes('mount');

  // --- ids and maps
  let uidMaps: IdMap[] | null = null, gidMaps: IdMap[] | null = null, setgroupsDeny = false;
  let idMapHelpers: Plan['idMapHelpers'], rangeMissing: 'range' | 'uidmap' | undefined;
  if (ns.has('user')) {
    if (isObject(o.user)) {
      checkKeys('options.user', o.user, ['uidMap', 'gidMap']);
      uidMaps = parseIdMaps('options.user.uidMap', o.user.uidMap);
      gidMaps = parseIdMaps('options.user.gidMap', o.user.gidMap);
      if (host.euid !== 0) {
        // maps beyond the caller's own id: newuidmap writes them when they lie in its range
        const r = callerRange(host);
        const own = (m: IdMap[], id: number) => m.every((x) => x.outside === id && x.count === 1);
        if ('helpers' in r && !(own(uidMaps, host.euid) && own(gidMaps, host.egid))) {
          if (!within(uidMaps, r.uidMap)) fail('options.user.uidMap', `maps ids outside this user's own uid and subordinate range (${formatMaps(r.uidMap).trim().replace(/\n/g, ', ')})`, RangeError);
          if (!within(gidMaps, r.gidMap)) fail('options.user.gidMap', `maps ids outside this user's own gid and subordinate range (${formatMaps(r.gidMap).trim().replace(/\n/g, ', ')})`, RangeError);
          idMapHelpers = r.helpers;
          // newgidmap denies setgroups when the gid map is the caller's own gid alone
          setgroupsDeny = own(gidMaps, host.egid);
        } else setgroupsDeny = true;
      }
    } else if (host.euid === 0) {
      ({ uidMap: uidMaps, gidMap: gidMaps } = remappedRoot(o.remapUser, host, input.idBlock));
    } else {
      // an unprivileged caller: its own id, or (options that need more ids, as rootless podman)
      // its subordinate range through newuidmap/newgidmap
      const r = wantsCallerRange(o, input.imageRoot) ? callerRange(host) : null;
      if (r && 'helpers' in r) ({ uidMap: uidMaps, gidMap: gidMaps, helpers: idMapHelpers } = r);
      else {
        uidMaps = [{ inside: 0, outside: host.euid, count: 1 }];
        gidMaps = [{ inside: 0, outside: host.egid, count: 1 }];
        setgroupsDeny = true;
        if (r) rangeMissing = r.missing;
      }
    }
  }
  const noRange = (what: string) => `${what}${rangeMissing ? ` (an unprivileged caller maps only its own id: ${rangeMissing === 'range' ? 'this user has no subordinate range in /etc/subuid and /etc/subgid' : 'newuidmap/newgidmap are not installed'}; fix: ${subidFix(rangeMissing, host)})` : ''}`;
  const uid = o.uid === undefined ? 0 : uint('options.uid', o.uid, 0xfffffffe);
  const gid = o.gid === undefined ? uid : uint('options.gid', o.gid, 0xfffffffe);
  const groups = o.groups === undefined ? [] : (Array.isArray(o.groups) ? o.groups : fail('options.groups', 'must be an array of gids'))
    .map((g, i) => uint(`options.groups[${i}]`, g, 0xfffffffe));
  if (uidMaps && !mapped(uidMaps, uid)) fail('options.uid', noRange(`${uid} is not mapped by the user namespace's uid map`), RangeError);
  if (gidMaps && !mapped(gidMaps, gid)) fail('options.gid', noRange(`${gid} is not mapped by the user namespace's gid map`), RangeError);
  for (const g of groups) if (gidMaps && !mapped(gidMaps, g)) fail('options.groups', noRange(`gid ${g} is not mapped by the gid map`), RangeError);
  if (setgroupsDeny && groups.length > 0) fail('options.groups', noRange('cannot be set by an unprivileged caller (setgroups is denied in its user namespace)'));
  // a joined user namespace allows setgroups(2) only when it says 'allow' (an unprivileged
  // maker's says 'deny': EPERM even with every capability in it). Not known (a persisted file):
  // root calls it as before, another caller only for the groups it asked (the kernel answers)
  const joinedUser = joined.includes('user') ? (o.join as Record<string, Namespace>).user : undefined;
  const joinedSetgroups = joinedUser ? host.setgroupsOf?.(joinedUser) : undefined;
  if (joinedSetgroups === 'deny' && groups.length > 0) fail('options.groups', 'cannot be set in the joined user namespace (setgroups is denied in it)');
  const joinSetGroups = !joinedUser || joinedSetgroups === 'allow' || (joinedSetgroups === undefined && (host.euid === 0 || groups.length > 0));
  if (!privileged && (o.uid !== undefined || o.gid !== undefined)) {
    if (uid !== host.euid || gid !== host.egid) fail('options.uid', 'can only be changed with a user namespace or as root');
  }

  // --- capabilities
  const caps = parseCapabilities(o.capabilities, uid);
  const lastCap = host.lastCap;

  // --- environment and exec candidates
  let env: Record<string, string>;
  if (o.env !== undefined) {
    if (!isObject(o.env)) fail('options.env', 'must be an object of strings');
    env = {};
    for (const [k, v] of Object.entries(o.env)) {
      if (k === '' || k.includes('=') || k.includes('\0')) fail('options.env', `has an invalid name '${k}'`);
      env[k] = str(`options.env.${k}`, v);
    }
  } else {
    env = { PATH: DEFAULT_PATH, HOME: uid === 0 ? '/root' : '/' };
  }
  const envp = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const exec = file.includes('/') ? [file] : (env.PATH ?? DEFAULT_PATH).split(':').map((d) => `${d === '' ? '.' : d}/${file}`);

  // --- rlimits
  const rl: Rlimits = { core: 0, ...(o.rlimits === undefined ? {} : isObject(o.rlimits) ? o.rlimits : fail('options.rlimits', 'must be an object')) };
  checkKeys('options.rlimits', rl as Record<string, unknown>, Object.keys(RLIMIT));
  const rlimits = Object.entries(rl).map(([k, v]) => {
    const opt = `options.rlimits.${k}`;
    const lim = (x: unknown, o2: string) => (x === Infinity ? -1 : uint(o2, x, Number.MAX_SAFE_INTEGER));
    if (typeof v === 'number') return { resource: RLIMIT[k as keyof Rlimits], soft: lim(v, opt), hard: lim(v, opt) };
    if (!isObject(v)) fail(opt, 'must be a number or { soft, hard }');
    const soft = lim(v.soft, `${opt}.soft`), hard = lim(v.hard, `${opt}.hard`);
    if (hard !== -1 && (soft === -1 || soft > hard)) fail(opt, 'soft must not exceed hard', RangeError);
    return { resource: RLIMIT[k as keyof Rlimits], soft, hard };
  });

  // --- time namespace
  let timeOffsets: string | undefined;
  if (o.timeOffsets !== undefined) {
    if (!isObject(o.timeOffsets)) fail('options.timeOffsets', 'must be { monotonic?, boottime? } in seconds');
    checkKeys('options.timeOffsets', o.timeOffsets, ['monotonic', 'boottime']);
    const lines: string[] = [];
    for (const k of ['monotonic', 'boottime'] as const) {
      const v = o.timeOffsets[k];
      if (v === undefined) continue;
      if (typeof v !== 'number' || !Number.isInteger(v)) fail(`options.timeOffsets.${k}`, 'must be an integer number of seconds');
      lines.push(`${k} ${v} 0\n`);
    }
    timeOffsets = lines.join('') || undefined;
  }

  // --- sysctls: namespaced ones only (kernel.hostname and kernel.domainname become the
  // hostname and domainname the child sets; the rest are written to the sandbox's /proc/sys)
  const sysctl = parseSysctl(o.sysctl, ns, joined.includes('net'));
  if (sysctl.hostname !== undefined) {
    if (o.hostname !== undefined) fail('options.sysctl', "cannot set 'kernel.hostname' together with options.hostname");
    o = { ...o, hostname: sysctl.hostname };
  }
  if (sysctl.domainname !== undefined) {
    if (o.domainname !== undefined) fail('options.sysctl', "cannot set 'kernel.domainname' together with options.domainname");
    o = { ...o, domainname: sysctl.domainname };
  }
  if (sysctl.writes.length > 0 && !ns.has('mount')) fail('options.sysctl', "needs a new mount namespace (the values are written to the sandbox's own /proc/sys)");
  const umask = o.umask === undefined ? undefined : uint('options.umask', o.umask, 0o777);
  let extraFds: number[] | undefined;
  if (o.extraFds !== undefined) {
    if (!Array.isArray(o.extraFds)) fail('options.extraFds', 'must be an array of fds');
    if (o.extraFds.length > 256) fail('options.extraFds', `may hold at most 256 fds (got ${o.extraFds.length})`, RangeError);
    extraFds = o.extraFds.map((fd, i) => uint(`options.extraFds[${i}]`, fd, 0x7fffffff));
  }
  let oomScoreAdj: number | undefined;
  if (o.oomScoreAdj !== undefined) {
    if (typeof o.oomScoreAdj !== 'number' || !Number.isInteger(o.oomScoreAdj)) fail('options.oomScoreAdj', `must be an integer (got ${String(o.oomScoreAdj)})`);
    if (o.oomScoreAdj < -1000 || o.oomScoreAdj > 1000) fail('options.oomScoreAdj', `must be between -1000 and 1000 (got ${o.oomScoreAdj})`, RangeError);
    oomScoreAdj = o.oomScoreAdj;
  }

  // --- hostname
  let hostname: string | undefined, domainname: string | undefined;
  if (o.hostname !== undefined || o.domainname !== undefined) {
    if (!ns.has('uts') && !joined.includes('uts')) fail(o.hostname !== undefined ? 'options.hostname' : 'options.domainname', 'needs a uts namespace of the sandbox\'s own, new or joined (options.join.uts)');
  }
  // a new uts namespace gets the hostname 'nsbox' unless given; a joined one (options.join.uts)
  // keeps its own unless given (then it is set there, for everything in that namespace, as runc does)
  if (joined.includes('uts') && ns.has('user') && (o.hostname !== undefined || o.domainname !== undefined)) {
    // a new user namespace owns nothing joined: the kernel would refuse sethostname (EPERM)
    fail(o.hostname !== undefined ? 'options.hostname' : 'options.domainname', "cannot be set in a uts namespace joined by options.join.uts from a new user namespace (the joined one is not the sandbox's to change): join its user namespace too, make none (user: false), or leave it out");
  }
  if (ns.has('uts') || joined.includes('uts')) {
    if (ns.has('uts') || o.hostname !== undefined) hostname = o.hostname === undefined ? 'nsbox' : str('options.hostname', o.hostname, { nonEmpty: true });
    if (hostname !== undefined && Buffer.byteLength(hostname) > 64) fail('options.hostname', 'may be at most 64 bytes', RangeError);
    if (o.domainname !== undefined) {
      domainname = str('options.domainname', o.domainname);
      if (Buffer.byteLength(domainname) > 64) fail('options.domainname', 'may be at most 64 bytes', RangeError);
    }
  }

  // --- filesystem view
  if (o.image !== undefined) {
    fail('options.image', o.rootfs !== undefined ? 'and options.rootfs exclude each other' : "needs nsbox's filesystem layer, which the package's main entry registers");
  }
  let rootfsPath: string | null = null;
  let rootfsReadonly = true;
  let rootfsTmp = true;
  if (o.rootfs !== undefined) {
    if (typeof o.rootfs === 'string') rootfsPath = strictAbsPath('options.rootfs', o.rootfs);
    else if (isObject(o.rootfs)) {
      checkKeys('options.rootfs', o.rootfs, ['path', 'readonly', 'tmp']);
      rootfsPath = strictAbsPath('options.rootfs.path', o.rootfs.path);
      if (o.rootfs.readonly !== undefined) {
        if (typeof o.rootfs.readonly !== 'boolean') fail('options.rootfs.readonly', 'must be a boolean');
        rootfsReadonly = o.rootfs.readonly;
      }
      if (o.rootfs.tmp !== undefined) {
        if (typeof o.rootfs.tmp !== 'boolean') fail('options.rootfs.tmp', 'must be a boolean');
        rootfsTmp = o.rootfs.tmp;
      }
    } else fail('options.rootfs', 'must be an absolute path or { path, readonly?, tmp? }');
    if (rootfsPath === '/') fail('options.rootfs', "must not be '/' (use the default view instead)");
    const k = host.pathKind(rootfsPath);
    if (k.kind !== 'dir') fail('options.rootfs', `must be an existing directory (${rootfsPath} is ${k.kind === 'missing' ? 'missing' : `a ${k.kind}`})`);
  }
  const mounts = o.mounts === undefined ? [] : Array.isArray(o.mounts) ? o.mounts : fail('options.mounts', 'must be an array');
  const cwd = o.cwd === undefined ? '/' : strictAbsPath('options.cwd', o.cwd);
  const rootProp = (o.rootPropagation ?? 'private') as NonNullable<SpawnIsolatedOptions['rootPropagation']>;
  if (!['private', 'slave', 'shared', 'unbindable'].includes(rootProp as string)) fail('options.rootPropagation', "must be 'private', 'slave', 'shared' or 'unbindable'");
  if (!mountNs) {
    if (rootfsPath) fail('options.rootfs', 'needs a new mount namespace');
    if (mounts.length) fail('options.mounts', 'need a new mount namespace');
  }
  const parsedMounts = mounts.map((m, i) => parseMount(`options.mounts[${i}]`, m, host));
  const maskedPaths = pathList('options.maskedPaths', o.maskedPaths, DEFAULT_MASKED_PATHS);
  const readonlyPaths = pathList('options.readonlyPaths', o.readonlyPaths, DEFAULT_READONLY_PATHS);
  const devices = parseDevices(o.devices, host);
  // a node made by number works only on a /dev in the initial user namespace (a tmpfs a user
  // namespace mounts is nodev to the kernel) and mknod needs CAP_MKNOD there: root, no user namespace
  const made = devices.findIndex((d) => d.node && d.node.type !== 'p');
  if (made >= 0 && (host.euid !== 0 || ns.has('user') || joined.includes('user'))) {
    fail(`options.devices[${made}]`, host.euid !== 0
      ? 'a device node by number needs root (mknod); bind the host\'s node instead ({ path })'
      : 'a device node by number needs a sandbox without a user namespace (user: false): in one the kernel makes device nodes unusable; bind the host\'s node instead ({ path })');
  }
  if (!ns.has('mount')) {
    if (o.maskedPaths !== undefined && maskedPaths.length) fail('options.maskedPaths', 'need a new mount namespace');
    if (o.readonlyPaths !== undefined && readonlyPaths.length) fail('options.readonlyPaths', 'need a new mount namespace');
    if (devices.length) fail('options.devices', 'need a new mount namespace');
  }
  // A default view with new user, mount, pid and network namespaces (none joined) may come
  // from a view template: the addon builds its read-only part once, in a mount namespace of
  // its own, and each sandbox gets a copy (view.ts, templateView).
  if (o.viewTemplate !== undefined && typeof o.viewTemplate !== 'boolean') fail('options.viewTemplate', 'must be a boolean');
  // So may a root caller's rootfs with nothing else in its view (view.ts, rootfsTemplateView)
  const plainView = parsedMounts.length === 0 && devices.length === 0 && o.maskedPaths === undefined && o.readonlyPaths === undefined;
  const defaultView = !rootfsPath && plainView;
  const rootfsView = rootfsPath !== null && plainView && !input.rootOverlay && host.euid === 0;
  // An unprivileged caller's default view too, made in a user namespace of nsbox's own that
  // maps its own uid and gid (Plan.holder): so only with those alone mapped, setgroups denied
  const ownOnly = (m: IdMap[] | null, id: number) => m !== null && m.length === 1 && m[0].outside === id && m[0].count === 1;
  const holder = defaultView && host.euid !== 0 && !idMapHelpers && setgroupsDeny && ownOnly(uidMaps, host.euid) && ownOnly(gidMaps, host.egid) && (host.holderTemplates?.() ?? false);
  const useTemplate = (defaultView || rootfsView) && o.viewTemplate !== false && rootProp === 'private' && joins.length === 0 && ns.has('user') && ns.has('mount') && ns.has('pid') && ns.has('net') && (holder || (host.viewTemplates?.() ?? false));
  // an image's template view (view.ts, imageTemplateView) has no whole view beside it: the
  // image layer asks for it only where it fits, and makes a container instead when this throws
  const image = input.imageTemplate;
  if (image && (!useTemplate || host.euid !== 0 || !uidMaps || !gidMaps)) throw new ImageTemplateUnfit();
  const view = planView({
    ns,
    joinedPid: joined.includes('pid'),
    joinedMount: joined.includes('mount'),
    joinedOwnNet,
    rootPropagation: rootProp,
    rootfs: rootfsPath,
    rootfsReadonly,
    rootfsTmp,
    rootOverlay: input.rootOverlay,
    image,
    mounts: parsedMounts,
    devices,
    maskedPaths,
    readonlyPaths,
    ownPathLists: o.maskedPaths !== undefined || o.readonlyPaths !== undefined,
    ownCgroup: ownCgroup && ns.has('cgroup'),
    nestedUserNamespaces: o.nestedUserNamespaces === true,
    attach: host.euid === 0,
    attachBinds: host.euid === 0 && (ns.has('user') || joined.includes('user')),
    template: useTemplate ? { rootOwner: uidMaps && gidMaps ? [outsideOf(uidMaps, 0), outsideOf(gidMaps, 0)] as const : null, ...(holder ? { holder: true as const } : {}) } : null,
  }, host, host === realHost);
  let { ops, template } = view;
  if (sysctl.writes.length > 0) {
    // not the shared default view any more: copies of its lists, the views cached stay as they are
    ops = placeSysctls(ops, N_ROOT, sysctl.writes);
    if (template) template = { ...template, child: placeSysctls(template.child, template.image ? N_ROOT : '', sysctl.writes) };
  }

  // --- stdio
  const stdio = parseStdio(o.tty ? 'ignore' : (o as SpawnIsolatedOptions).stdio).map((s) => (s === 'pipe' ? { kind: 0, fd: -1 } : s === 'inherit' ? { kind: 1, fd: -1 } : s === 'ignore' ? { kind: 2, fd: -1 } : { kind: 3, fd: s }));
  // `all` with both outputs piped: fd 2 is fd 1's socket (kind 4), one queue in write order
  if ((o as SpawnIsolatedOptions).all === true && !o.tty && stdio[1].kind === 0 && stdio[2].kind === 0) stdio[2] = { kind: 4, fd: -1 };

  // --- flags
  let cloneFlags = 0, unshareFlags = 0, lateUnshare = 0;
  let newFlags = [...ns].reduce((f, t) => (t === 'time' ? f : f | CLONE_FLAGS[t]), 0);
  if (ownCgroup && ns.has('cgroup')) {
    // created once the parent has placed the process, so its root is the sandbox's cgroup
    newFlags &= ~CLONE_FLAGS.cgroup;
    lateUnshare = CLONE_FLAGS.cgroup;
  }
  const twoStage = joins.length > 0;
  if (twoStage) unshareFlags = newFlags & ~CLONE_FLAGS.pid;
  else cloneFlags = newFlags;

  const pdeathsig = o.parentDeathSignal === false ? 0 : signalNumber('options.parentDeathSignal', o.parentDeathSignal ?? 'SIGKILL');
  if (o.allowNewPrivileges !== undefined && typeof o.allowNewPrivileges !== 'boolean') fail('options.allowNewPrivileges', 'must be a boolean');
  if (o.init !== undefined && typeof o.init !== 'boolean') fail('options.init', 'must be a boolean');
  if (o.nestedUserNamespaces !== undefined && typeof o.nestedUserNamespaces !== 'boolean') fail('options.nestedUserNamespaces', 'must be a boolean');
  const init = o.init ?? ns.has('pid');
  if (extraFds?.length && init) fail('options.extraFds', 'needs init: false (nsbox-init, pid 1 of a new pid namespace, would not pass them on)');
  if (timeOffsets && !init && !kernelAtLeast(6, 2)) {
    // before 6.2 exec does not enter the time namespace made for children (nsbox-init then
    // starts the program by fork, which does): only the program's own children would see
    // the offsets
    throw errnoError(95, 'time', 'unshare(CLONE_NEWTIME)', undefined,
      `timeOffsets with init: false needs Linux 6.2 (this is ${osRelease()}; before 6.2 exec does not enter the time namespace): keep init on`);
  }
  const tty = parseTty(o.tty);
  if (tty && !ns.has('mount') && !joined.includes('mount')) fail('options.tty', "needs a mount namespace of the sandbox's own, new or joined (its devpts instance)");

  const plan: Plan = {
    cloneFlags,
    unshareFlags,
    lateUnshare,
    twoStage,
    newPidAtStage2: twoStage && ns.has('pid'),
    joins,
    // an unprivileged caller joining a user namespace and a network namespace it does not own
    // (a spare of nsbox's, made in nsbox's user namespace): the network namespace's owner and
    // it are entered first (addon, Stage1), where that owner can be
    ...(host.euid !== 0 && joinNs?.net !== undefined && joinNs.user !== undefined && !joinedOwnNet ? { netOwnerFirst: true as const } : {}),
    uidMap: uidMaps ? formatMaps(uidMaps) : undefined,
    gidMap: gidMaps ? formatMaps(gidMaps) : undefined,
    setgroupsDeny,
    ...(idMapHelpers ? { idMapHelpers } : {}),
    // the network namespace may be a spare nsbox made ahead, owned by nsbox's user namespace:
    // only where nothing inside could tell (a view template, no capabilities kept)
    // (an unprivileged caller's belongs to nsbox's own user namespace, Plan.holder; joined
    // through it: netOwnerFirst)
    netPremade: template !== undefined && caps.any === 0n && !sysctl.net,
    ...(template !== undefined && holder ? { holder: true as const } : {}),
    stdio,
    ops,
    template,
    hostname,
    domainname,
    timeOffsets,
    rlimits,
    ...earlyIds(ns.has('user') || joined.includes('user'), uidMaps, gidMaps, uid, gid),
    setIds: privileged,
    uid,
    gid,
    groups,
    setGroups: privileged && !setgroupsDeny && joinSetGroups,
    dropCaps: privileged,
    lastCap,
    ...caps.plan,
    noNewPrivs: o.allowNewPrivileges !== true,
    pdeathsig,
    ...(umask !== undefined ? { umask } : {}),
    ...(extraFds?.length ? { extraFds } : {}),
    ...(oomScoreAdj !== undefined ? { oomScoreAdj } : {}),
    init,
    tty: tty !== null,
    ttyRows: tty?.rows ?? 24,
    ttyCols: tty?.cols ?? 80,
    ...(tty?.consoleSocket === undefined ? {} : { consoleSocket: tty.consoleSocket }),
    cwd,
    argv,
    envp,
    exec,
    summary: {
      namespaces: NS_TYPES.filter((t) => ns.has(t)),
      joined,
      uidMap: uidMaps,
      gidMap: gidMaps,
      rootfs: image ? image.rootfs : rootfsPath,
      capabilities: Capabilities.fromMask(caps.any),
      ...(caps.sets ? { capabilitySets: caps.sets } : {}),
      noNewPrivs: o.allowNewPrivileges !== true,
      uid,
      gid,
      maskedPaths: view.masked,
      readonlyPaths: view.readonly,
      devices: devices.map((d) => d.node ? `${d.target} (${d.node.type === 'p' ? 'fifo' : `${d.node.type} ${d.node.major}:${d.node.minor}`})` : d.path),
      ...relaxedMounts(parsedMounts),
      seccomp: 'none',
      network: !ns.has('net') ? (joined.includes('net') ? 'joined' : 'host') : 'none',
      // nsbox mounts /sys only in a mount namespace it makes; a joined one keeps its own /sys
      sysfs: ns.has('mount') ? (freshSysfs({ ns, joinedOwnNet }) ? 'own' : 'host') : joined.includes('mount') ? 'joined' : 'host',
      sysctl: Object.fromEntries(sysctl.writes),
      cgroup: null,
      init,
    },
  };
  if (ns.has('mount') && (rootfsPath || parsedMounts.length > 0)) {
    // mount points missing in a root the sandbox must not write (see mountpoints.ts)
    setMountPointContext(plan, {
      host, rootfsReadonly, uidMaps, gidMaps,
      rootUid: uidMaps ? outsideOf(uidMaps, 0) : joined.includes('user') ? undefined : host.euid,
      rootGid: gidMaps ? outsideOf(gidMaps, 0) : joined.includes('user') ? undefined : host.egid,
      callerMounts: parsedMounts.map((m) => ({ target: m.target, source: m.source, resolved: m.hostSource })),
    });
    // a rootfs's template was made only for one with every mount point of its view there (its
    // /proc, /dev, /sys and /tmp: view.ts, rootfsTemplateView), so the pass would find nothing
    // to make: skipped, it reads the rootfs's directories on every spawn (~0.1 ms); it runs
    // again if ops are added (provideEtcFiles, which also drops the template)
    if (!plan.template?.rootfs && !plan.template?.image) placeMountPoints(plan);
  }
  return plan;
}

/** buildPlan's refusal of an image's template view where the options call for a whole view (the image layer then makes a container). */
export class ImageTemplateUnfit extends Error {
  constructor() { super('nsbox internal: this spawn cannot use an image template view'); }
}

/**
 * A copy of `plan` whose op lists can be added to (the original and the view cache it shares
 * lists with stay as they were), for the pipeline to compose the final plan from.
 */
export function forkPlan(plan: Plan, extra: Partial<Plan> = {}): Plan {
  const p: Plan = { ...plan, ...extra, ops: [...plan.ops], ...(plan.template ? { template: { ...plan.template, child: [...plan.template.child] } } : {}) };
  carryMountPointContext(plan, p);
  return p;
}

/** A file under /etc: a plain name, or a relative path of plain names (`ssl/certs/ca-certificates.crt`). */
function checkEtcName(name: string): void {
  if (!name.split('/').every((c) => /^[a-z0-9._-]+$/i.test(c) && c !== '.' && c !== '..')) throw new TypeError(`etc file name '${name}' is not a plain file name`);
}

/**
 * Puts files over /etc/<name> inside the sandbox (read-only binds of files written into the
 * scratch root, which live on after it is detached). Used for /etc/hosts, /etc/resolv.conf and an egress
 * policy's CA bundle.
 * Does nothing when the sandbox has no mount namespace of its own.
 */
export function provideEtcFiles(plan: Plan, files: Record<string, string>): void {
  // a rootfs's template has no /run of nsbox's to write them on: the whole view instead
  if (plan.template?.rootfs) {
    plan.template = undefined;
    plan.netPremade = false;
  }
  if (plan.template?.image) {
    // an image's template view: written on the sandbox's writable layer's tmpfs (/rw, outside
    // its root), bound read-only in the new root before it becomes the root, unlinked
    const ops: PlanOp[] = [];
    for (const [name, text] of Object.entries(files)) {
      checkEtcName(name);
      const tmp = `/rw/.nsbox-etc-${name.replace(/\//g, '_')}`;
      ops.push({ op: Op.WriteFile, path: tmp, data: text, mode: 0o644, trusted: true });
      ops.push({ op: Op.Bind, source: tmp, path: `${N_ROOT}/etc/${name}`, file: true, readonly: true, recursive: false, flags: MS.NOSUID | MS.NODEV | MS.NOEXEC });
      ops.push({ op: Op.Unlink, path: tmp, trusted: true });
    }
    const child = plan.template.child;
    const at = child.findIndex((op) => op.op === Op.MoveRoot);
    child.splice(at < 0 ? child.length : at, 0, ...ops);
    return;
  }
  if (plan.template) {
    // in a copy of the view template: written on the sandbox's fresh /run, bound, unlinked
    const ops: PlanOp[] = [];
    for (const [name, text] of Object.entries(files)) {
      checkEtcName(name);
      const tmp = `/run/.nsbox-etc-${name.replace(/\//g, '_')}`;
      ops.push({ op: Op.WriteFile, path: tmp, data: text, mode: 0o644, trusted: true });
      ops.push({ op: Op.Bind, source: tmp, path: `/etc/${name}`, file: true, readonly: true, recursive: false, flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, trusted: true });
      ops.push({ op: Op.Unlink, path: tmp, trusted: true });
    }
    plan.template.child.push(...ops);
  }
  // before the final pivot into the new root (the host tree is reachable until then)
  const at = plan.ops.findIndex((op) => op.op === Op.PivotRoot && op.path === '/newroot');
  if (at < 0) return;
  const ops: PlanOp[] = [];
  for (const [name, text] of Object.entries(files)) {
    checkEtcName(name);
    const tmp = `/nsbox-etc/${name.replace(/\//g, '_')}`;
    ops.push({ op: Op.WriteFile, path: tmp, data: text, mode: 0o644 });
    ops.push({ op: Op.Bind, source: tmp, path: `/newroot/etc/${name}`, file: true, readonly: true, recursive: false, flags: MS.NOSUID | MS.NODEV | MS.NOEXEC });
  }
  // the files live in the scratch tmpfs (64k): a large one (a CA bundle) needs it larger; the
  // op is replaced, not changed (the view cache shares it)
  const bytes = Object.values(files).reduce((n, t) => n + Buffer.byteLength(t) + 4096, 0);
  const scratch = plan.ops.findIndex((op) => op.op === Op.Mount && op.source === 'nsbox-base');
  if (bytes > 32 * 1024 && scratch >= 0) {
    const m = plan.ops[scratch] as PlanOp & { data?: string };
    plan.ops[scratch] = { ...m, data: (m.data ?? '').replace(/size=\d+k/, `size=${64 + Math.ceil(bytes / 1024)}k`) } as PlanOp;
  }
  // before the root is made read-only (a missing /etc/<name> must still be creatable)
  const ro = plan.ops.findIndex((op) => op.op === Op.RemountRo && op.path === '/newroot');
  plan.ops.splice(ro >= 0 && ro < at ? ro : at, 0, ...ops);
  // a rootfs without /etc/<name> (or /etc): made on a mirror, never written into the rootfs
  placeMountPoints(plan);
}

/** Whether the options give the sandbox a cgroup (limits the cgroup enforces, cpuTimeMs, or an explicit cgroup). */
export function needsCgroup(o: SpawnIsolatedOptions): boolean {
  return o.cgroup !== undefined || wantsCgroup(validateLimits(o.limits));
}

function parseMount(option: string, m: unknown, host: HostFacts): ParsedMount {
  if (!isObject(m)) fail(option, 'must be an object { type, source?, target, ... }');
  checkKeys(option, m, ['type', 'source', 'target', 'readonly', 'propagation', 'options', 'file', 'noexec', 'nosuid', 'nodev', 'copyUp']);
  const type = str(`${option}.type`, m.type, { nonEmpty: true });
  if (!/^[a-z0-9_.-]+$/.test(type)) fail(`${option}.type`, `is not a filesystem type name (got '${type}')`);
  const target = strictAbsPath(`${option}.target`, m.target);
  if (target === '/') fail(`${option}.target`, "must not be '/' (use rootfs)");
  const readonly = m.readonly === undefined ? false : typeof m.readonly === 'boolean' ? m.readonly : fail(`${option}.readonly`, 'must be a boolean');
  const flag = (k: 'noexec' | 'nosuid' | 'nodev' | 'copyUp', dflt: boolean): boolean => (m[k] === undefined ? dflt : typeof m[k] === 'boolean' ? m[k] as boolean : fail(`${option}.${k}`, 'must be a boolean'));
  const noexec = flag('noexec', false), nosuid = flag('nosuid', true), nodev = flag('nodev', true), copyUp = flag('copyUp', false);
  if (copyUp && type !== 'tmpfs') fail(`${option}.copyUp`, `applies to tmpfs mounts only (this one is ${type})`);
  const propagation = (m.propagation ?? 'private') as ParsedMount['propagation'];
  if (!['private', 'shared', 'slave', 'unbindable'].includes(propagation)) fail(`${option}.propagation`, "must be 'private', 'shared', 'slave' or 'unbindable'");
  const options = m.options === undefined ? undefined : str(`${option}.options`, m.options);
  let source: string | undefined;
  let file = false;
  if (type === 'bind') {
    source = strictAbsPath(`${option}.source`, m.source);
    const k = host.pathKind(source);
    if (k.kind === 'missing') fail(`${option}.source`, `does not exist (${source})`);
    file = m.file === undefined ? (k.kind === 'file' || k.kind === 'other' || (k.kind === 'symlink' && isFileTarget(source))) : typeof m.file === 'boolean' ? m.file : fail(`${option}.file`, 'must be a boolean');
    if (options !== undefined) fail(`${option}.options`, 'does not apply to bind mounts');
  } else if (m.source !== undefined) {
    source = str(`${option}.source`, m.source);
  }
  const hostSource = type === 'bind' && source !== undefined ? host.realPath?.(source) ?? source : undefined;
  return { type, source, hostSource, target, readonly, propagation, options, file, noexec, nosuid, nodev, copyUp };
}

/** The summary's `relaxedMounts`: caller mounts that allow set-id bits or device files. */
function relaxedMounts(ms: readonly ParsedMount[]): { relaxedMounts?: NonNullable<PlanSummary['relaxedMounts']> } {
  const out = ms.filter((m) => !m.nosuid || !m.nodev).map((m) => ({ target: m.target, allows: [...(m.nosuid ? [] : ['suid' as const]), ...(m.nodev ? [] : ['dev' as const])] }));
  return out.length ? { relaxedMounts: out } : {};
}

/** The view's new root before the pivot (view.ts). */
const N_ROOT = '/newroot';
/** ipc namespace sysctls (runc's list): SysV shared memory, messages, semaphores, POSIX mqueues */
const SYSCTL_IPC = /^(?:kernel\.(?:shm[a-z_]*|msg[a-z_]*|sem)|fs\.mqueue\.[a-z_]+)$/;
const SYSCTL_COMPONENT = /^[A-Za-z0-9_@:+-]+$/;

interface ParsedSysctl { writes: Array<[string, string]>; hostname?: string; domainname?: string; net: boolean }

/**
 * The `sysctl` option: only sysctls of a namespace the sandbox has of its own (as runc allows
 * them), so that nothing of the host changes: ipc ones with a new ipc namespace, `net.*` with a
 * new network namespace, `kernel.hostname`/`kernel.domainname` with a new uts namespace.
 */
function parseSysctl(v: unknown, ns: Set<NamespaceType>, joinedNet: boolean): ParsedSysctl {
  const out: ParsedSysctl = { writes: [], net: false };
  if (v === undefined) return out;
  if (!isObject(v)) fail('options.sysctl', "must be an object of strings, e.g. { 'net.ipv4.ip_forward': '1' }");
  for (const [k, val] of Object.entries(v)) {
    const opt = `options.sysctl['${k}']`;
    const value = str(opt, val);
    if (!k.split('.').every((c) => SYSCTL_COMPONENT.test(c))) fail('options.sysctl', `has a key that is not a sysctl name: '${k}'`, RangeError);
    if (k === 'kernel.hostname' || k === 'kernel.domainname') {
      if (!ns.has('uts')) fail(opt, 'needs a new uts namespace', RangeError);
      if (k === 'kernel.hostname') out.hostname = value; else out.domainname = value;
      continue;
    }
    if (SYSCTL_IPC.test(k)) {
      if (!ns.has('ipc')) fail(opt, 'needs a new ipc namespace', RangeError);
    } else if (k.startsWith('net.')) {
      // a joined one too (podman's and CNI's): the child writes them after it entered it, and
      // /proc/sys/net is the namespace of the writer
      if (!ns.has('net') && !joinedNet) fail(opt, "needs a network namespace of the sandbox's own (a new or a joined one, not 'host')", RangeError);
      out.net = true;
    } else {
      fail(opt, 'is not a namespaced sysctl: only kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.* (with a network namespace of its own), kernel.hostname and kernel.domainname (with a uts namespace) can be set per sandbox', RangeError);
    }
    out.writes.push([k, value]);
  }
  return out;
}

/**
 * A copy of a view's ops with the sysctl writes placed where the sandbox's /proc is mounted and
 * the child is in its own network namespace: right after the sysfs of that namespace (the child
 * has entered it there, also when the namespace is made beside it), else after /proc. The
 * read-only bind of /proc/sys (readonlyPaths), when it came before, goes after them.
 */
function placeSysctls(list: readonly PlanOp[], root: string, writes: Array<[string, string]>): PlanOp[] {
  const out = [...list];
  const proc = `${root}/proc`;
  let at = out.findIndex((op) => op.netSysfs === true);
  if (at < 0) at = out.findIndex((op) => (op.op === Op.Mount || op.op === Op.Bind) && op.path === proc);
  if (at < 0) throw new Error('nsbox internal: a view without /proc has no place for sysctls');
  const add: PlanOp[] = writes.map(([k, v]) => ({ op: Op.WriteFile, path: `${proc}/sys/${k.replaceAll('.', '/')}`, data: v, mode: 0o644, trusted: true }));
  const ro = out.findIndex((op, i) => i < at && op.op === Op.Bind && op.readonly === true && op.path === `${proc}/sys`);
  if (ro >= 0) {
    add.push(out[ro]!);
    out.splice(ro, 1);
    at--;
  }
  out.splice(at + 1, 0, ...add);
  return out;
}

function isFileTarget(p: string): boolean {
  try { return !statSync(p).isDirectory(); } catch { return false; }
}

function pathList(option: string, v: unknown, def: string[]): string[] {
  if (v === undefined) return def;
  if (!Array.isArray(v)) fail(option, 'must be an array of absolute paths');
  return v.map((p, i) => {
    const a = strictAbsPath(`${option}[${i}]`, p);
    if (a === '/') fail(`${option}[${i}]`, "must not be '/'");
    return a;
  });
}

function parseDevices(v: unknown, host: HostFacts): Array<{ path: string; target: string; readonly: boolean; node?: { type: 'c' | 'b' | 'p'; major: number; minor: number; mode: number; uid: number; gid: number } }> {
  if (v === undefined) return [];
  if (!Array.isArray(v)) fail('options.devices', "must be an array of host device paths or { path, target?, readonly? }");
  return v.map((d, i) => {
    const opt = `options.devices[${i}]`;
    let path: string, target: string | undefined, readonly = false;
    if (isObject(d) && d.type !== undefined) {
      // a node made by number (mknod), not a host node bound in
      checkKeys(opt, d, ['target', 'type', 'major', 'minor', 'mode', 'uid', 'gid']);
      const t = strictAbsPath(`${opt}.target`, d.target);
      if (!t.startsWith('/dev/')) fail(`${opt}.target`, `must be under /dev (got ${t})`);
      if (d.type !== 'c' && d.type !== 'b' && d.type !== 'p') fail(`${opt}.type`, "must be 'c', 'b' or 'p'");
      // a FIFO has no device number (any given is not used)
      const major = d.type === 'p' ? 0 : uint(`${opt}.major`, d.major, 4095), minor = d.type === 'p' ? 0 : uint(`${opt}.minor`, d.minor, 1048575);
      const mode = d.mode === undefined ? 0o666 : uint(`${opt}.mode`, d.mode, 0o7777);
      const uid = d.uid === undefined ? 0 : uint(`${opt}.uid`, d.uid, 0xfffffffe), gid = d.gid === undefined ? 0 : uint(`${opt}.gid`, d.gid, 0xfffffffe);
      return { path: t, target: t, readonly: false, node: { type: d.type, major, minor, mode, uid, gid } };
    }
    if (typeof d === 'string') path = strictAbsPath(opt, d);
    else if (isObject(d)) {
      checkKeys(opt, d, ['path', 'target', 'readonly']);
      path = strictAbsPath(`${opt}.path`, d.path);
      if (d.target !== undefined) target = strictAbsPath(`${opt}.target`, d.target);
      if (d.readonly !== undefined) {
        if (typeof d.readonly !== 'boolean') fail(`${opt}.readonly`, 'must be a boolean');
        readonly = d.readonly;
      }
    } else fail(opt, 'must be a host device path or { path, target?, readonly? }');
    if (!path.startsWith('/dev/')) fail(opt, `must be a device under /dev (got ${path})`);
    const k = host.pathKind(path);
    if (k.kind !== 'other') fail(opt, `must be an existing device node (${path} is ${k.kind === 'missing' ? 'missing' : `a ${k.kind}`})`);
    target ??= path;
    if (!target.startsWith('/dev/')) fail(`${opt}.target`, `must be under /dev (got ${target})`);
    return { path, target, readonly };
  });
}

const CAP_SETS = ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const;

/**
 * `options.capabilities` → the five masks the child applies. An array: those capabilities in
 * bounding, permitted, effective and inheritable, and in ambient when the program's uid is not
 * 0. An object: each set as given, a missing one empty (OCI's process.capabilities), refused
 * where capset(2) or prctl(2) would refuse it in the child (its permitted set is full then, its
 * inheritable set empty: a new or joined user namespace starts so): effective ⊆ permitted,
 * inheritable ⊆ bounding, ambient ⊆ permitted ∩ inheritable. Permitted beyond bounding is
 * allowed, as by the kernel (execve then drops it).
 */
function parseCapabilities(v: unknown, uid: number) {
  const masks = (option: string, list: unknown): bigint => {
    if (!Array.isArray(list)) fail(option, 'must be an array of capability names');
    list.forEach((c, i) => str(`${option}[${i}]`, c));
    try { return Capabilities.toMask(list as string[]); } catch (e) { throw new TypeError(`${option}: ${(e as Error).message}`); }
  };
  let m: Record<(typeof CAP_SETS)[number], bigint>;
  let sets: ProcessCapabilities | undefined;
  if (v === undefined || Array.isArray(v)) {
    const all = v === undefined ? 0n : masks('options.capabilities', v);
    m = { bounding: all, effective: all, permitted: all, inheritable: all, ambient: uid !== 0 ? all : 0n };
  } else {
    if (!isObject(v)) fail('options.capabilities', 'must be an array of capability names or an object of sets (bounding, effective, permitted, inheritable, ambient)');
    checkKeys('options.capabilities', v, CAP_SETS);
    m = Object.fromEntries(CAP_SETS.map((k) => [k, v[k] === undefined ? 0n : masks(`options.capabilities.${k}`, v[k])])) as typeof m;
    const beyond = (what: string, a: bigint, b: bigint, name: string) => {
      if (a & ~b) fail(`options.capabilities.${what}`, `must be a subset of ${name} (${Capabilities.fromMask(a & ~b).join(', ')} not in it)`, RangeError);
    };
    beyond('effective', m.effective, m.permitted, 'permitted');
    beyond('inheritable', m.inheritable, m.bounding, 'bounding');
    beyond('ambient', m.ambient, m.permitted & m.inheritable, 'permitted ∩ inheritable');
    sets = Object.fromEntries(CAP_SETS.map((k) => [k, Capabilities.fromMask(m[k])])) as unknown as ProcessCapabilities;
  }
  const half = (x: bigint): [number, number] => [Number(x & 0xffffffffn), Number(x >> 32n)];
  return {
    any: m.bounding | m.effective | m.permitted | m.inheritable | m.ambient,
    sets,
    plan: { capsBounding: half(m.bounding), capsEffective: half(m.effective), capsPermitted: half(m.permitted), capsInheritable: half(m.inheritable), capsAmbient: half(m.ambient) },
  };
}

function parseTty(v: unknown): { rows: number; cols: number; consoleSocket?: string } | null {
  if (v === undefined || v === false) return null;
  if (v === true) return { rows: 24, cols: 80 };
  if (!isObject(v)) fail('options.tty', 'must be a boolean or { rows?, cols?, consoleSocket? }');
  checkKeys('options.tty', v, ['rows', 'cols', 'consoleSocket']);
  const cs = v.consoleSocket;
  if (cs !== undefined && (typeof cs !== 'string' || cs === '' || cs.includes('\0'))) fail('options.tty.consoleSocket', 'must be the path of a listening unix socket');
  const dim = (k: 'rows' | 'cols', def: number) => {
    const x = v[k];
    if (x === undefined) return def;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 1 || x > 65535) fail(`options.tty.${k}`, 'must be an integer 1..65535', RangeError);
    return x;
  };
  return { rows: dim('rows', 24), cols: dim('cols', 80), ...(cs === undefined ? {} : { consoleSocket: cs as string }) };
}
