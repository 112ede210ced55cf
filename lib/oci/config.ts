// An OCI runtime config (a bundle's config.json) as nsbox Sandbox options. Every field of the
// runtime spec (v1.3.0) is either applied or refused with an OciConfigError naming it; a
// property the spec does not define is ignored, as the spec requires, with a warning naming it
// (nsbox-runc logs it): nothing is silently ignored.
// Where nsbox applies a field in its own way, the comment at the field says how (and
// README "nsbox-runc" lists it).
import { existsSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { CGroup, Namespace, Seccomp, type Mount, type SandboxOptions, type SandboxProgram, type OciHooks, type NamespaceType } from '../index.js';

/** A config.json field nsbox refuses or cannot read; `field` is its JSON path (e.g. `linux.resources.blockIO`). */
export class OciConfigError extends Error {
  readonly field: string;
  constructor(field: string, why: string) {
    super(`config.json: ${field}: ${why}`);
    this.name = 'OciConfigError';
    this.field = field;
  }
}

type J = Record<string, unknown>;
const isObj = (v: unknown): v is J => typeof v === 'object' && v !== null && !Array.isArray(v);

function refuse(field: string, why: string): never {
  throw new OciConfigError(field, why);
}

/**
 * Where the properties config.json has beyond the runtime spec go (OCI, config.md
 * "Extensibility": runtimes may log unknown properties but must otherwise ignore them): a
 * warning each, which nsbox-runc logs. Set by each entry point of this module.
 */
let unknownSink: string[] = [];

/**
 * Checks that `o` is an object and returns it. `known` lists every property the runtime spec
 * (v1.3.0) defines there, each of which the caller applies or refuses; any other property is
 * not the spec's, and is ignored with a warning naming it.
 */
function keys(field: string, o: unknown, known: string[]): J {
  if (!isObj(o)) refuse(field, 'must be an object');
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) unknownSink.push(`config.json: ${field ? `${field}.` : ''}${k}: not a property of the OCI runtime spec nsbox-runc knows (v1.3.0): ignored, as the spec asks`);
  }
  return o;
}

/** Refuses a field that is set to something other than its empty value. */
function unsupportedUnlessEmpty(field: string, v: unknown, why: string): void {
  if (v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0) || (isObj(v) && Object.keys(v).length === 0)) return;
  refuse(field, why);
}

const NS: Record<string, NamespaceType> = { pid: 'pid', network: 'net', mount: 'mount', ipc: 'ipc', uts: 'uts', user: 'user', cgroup: 'cgroup', time: 'time' };

/**
 * The cgroup filesystem at /sys/fs/cgroup: nsbox's view mounts the sandbox's own cgroup there,
 * read-only, when it has a cgroup namespace (the options of OCI's entry are the same). Every
 * other mount is made as given; one at a point of nsbox's view with its type (proc at /proc,
 * tmpfs at /dev, devpts at /dev/pts, ...) replaces nsbox's mount there (Mount, options.ts).
 */
const VIEW_MOUNTS: Record<string, string[]> = { '/sys/fs/cgroup': ['cgroup', 'cgroup2'] };

const PROPAGATION: Record<string, Mount['propagation']> = {
  private: 'private', rprivate: 'private', shared: 'shared', rshared: 'shared', slave: 'slave', rslave: 'slave', unbindable: 'unbindable', runbindable: 'unbindable',
};

function mount(field: string, m: unknown, bundle: string, warnings: string[]): Mount | null {
  const o = keys(field, m, ['destination', 'type', 'source', 'options', 'uidMappings', 'gidMappings']);
  unsupportedUnlessEmpty(`${field}.uidMappings`, o.uidMappings, 'idmapped mounts are not supported by nsbox-runc');
  unsupportedUnlessEmpty(`${field}.gidMappings`, o.gidMappings, 'idmapped mounts are not supported by nsbox-runc');
  if (typeof o.destination !== 'string' || !isAbsolute(o.destination)) refuse(`${field}.destination`, 'must be an absolute path');
  const opts = o.options === undefined ? [] : Array.isArray(o.options) && o.options.every((x) => typeof x === 'string') ? o.options as string[] : refuse(`${field}.options`, 'must be an array of strings');
  const dest = o.destination.replace(/\/+$/, '') || '/';
  const isBind = o.type === 'bind' || opts.includes('bind') || opts.includes('rbind');
  const type = isBind ? 'bind' : typeof o.type === 'string' ? o.type : refuse(`${field}.type`, 'must be a string');
  if (VIEW_MOUNTS[dest]?.includes(type)) return null; // nsbox's view has it (see VIEW_MOUNTS)
  // the flags exactly as given: without nosuid/nodev/noexec a mount allows set-id bits, device
  // files and exec, as with runc (result.isolation.relaxedMounts lists the first two)
  const out: Mount = { type, target: dest, nosuid: false, nodev: false, noexec: false };
  const data: string[] = [], bindData: string[] = [];
  for (const x of opts) {
    if (x === 'bind' || x === 'rbind' || x === 'rw' || x === 'relatime' || x === 'noatime' || x === 'strictatime') continue;
    if (x === 'ro') out.readonly = true;
    else if (x === 'nosuid' || x === 'nodev' || x === 'noexec') out[x] = true;
    else if (x === 'suid' || x === 'dev' || x === 'exec') out[`no${x}`] = false;
    else if (PROPAGATION[x]) out.propagation = PROPAGATION[x];
    else if (x === 'tmpcopyup') {
      if (type !== 'tmpfs') refuse(`${field}.options`, `'tmpcopyup' applies to tmpfs mounts only (this one is ${type})`);
      out.copyUp = true;
    } else if (x === 'copy-symlink' || x === 'idmap' || x === 'ridmap') refuse(`${field}.options`, `'${x}' is not supported by nsbox-runc`);
    else if (isBind && x.includes('=')) bindData.push(x);
    else if (isBind) refuse(`${field}.options`, `'${x}' is not an option of a bind mount nsbox knows`);
    else data.push(x);
  }
  // a filesystem's own options (mode=, size=...) on a bind: a bind makes no filesystem, and
  // mount(2) ignores its data, as with runc: left out, with a warning naming them
  if (bindData.length) warnings.push(`config.json: ${field}.options: ${bindData.map((x) => `'${x}'`).join(', ')} left out: a bind mount has no filesystem options (mount(2) ignores them)`);
  if (isBind) {
    if (typeof o.source !== 'string') refuse(`${field}.source`, 'a bind mount needs a source');
    out.source = resolve(bundle, o.source);
  } else if (typeof o.source === 'string') out.source = o.source;
  if (data.length) out.options = data.join(',');
  return out;
}

const RLIMITS: Record<string, string> = {
  RLIMIT_AS: 'as', RLIMIT_CORE: 'core', RLIMIT_CPU: 'cpu', RLIMIT_DATA: 'data', RLIMIT_FSIZE: 'fsize', RLIMIT_LOCKS: 'locks', RLIMIT_MEMLOCK: 'memlock',
  RLIMIT_MSGQUEUE: 'msgqueue', RLIMIT_NICE: 'nice', RLIMIT_NOFILE: 'nofile', RLIMIT_NPROC: 'nproc', RLIMIT_RSS: 'rss', RLIMIT_RTPRIO: 'rtprio',
  RLIMIT_RTTIME: 'rttime', RLIMIT_SIGPENDING: 'sigpending', RLIMIT_STACK: 'stack',
};
const U64_MAX = 18446744073709551615;

/** An OCI `process` object (config.json's, or `exec --process`'s) as Sandbox/exec options. */
export function processOptions(field: string, p: unknown, warnings: string[] = []): {
  args: string[]; terminal: boolean; consoleSize?: { rows: number; cols: number };
  options: Pick<SandboxOptions, 'env' | 'cwd' | 'uid' | 'gid' | 'groups' | 'umask' | 'capabilities' | 'rlimits' | 'allowNewPrivileges' | 'oomScoreAdj'>;
} {
  unknownSink = warnings;
  const o = keys(field, p, ['terminal', 'consoleSize', 'user', 'args', 'commandLine', 'env', 'cwd', 'capabilities', 'rlimits', 'noNewPrivileges',
    'apparmorProfile', 'oomScoreAdj', 'selinuxLabel', 'ioPriority', 'scheduler', 'execCPUAffinity']);
  unsupportedUnlessEmpty(`${field}.commandLine`, o.commandLine, 'is for Windows');
  unsupportedUnlessEmpty(`${field}.apparmorProfile`, o.apparmorProfile, 'AppArmor is not supported by nsbox-runc');
  unsupportedUnlessEmpty(`${field}.selinuxLabel`, o.selinuxLabel, 'SELinux labels are not supported by nsbox-runc');
  unsupportedUnlessEmpty(`${field}.ioPriority`, o.ioPriority, 'is not supported by nsbox-runc');
  unsupportedUnlessEmpty(`${field}.scheduler`, o.scheduler, 'is not supported by nsbox-runc');
  unsupportedUnlessEmpty(`${field}.execCPUAffinity`, o.execCPUAffinity, 'is not supported by nsbox-runc');
  if (!Array.isArray(o.args) || o.args.length === 0 || o.args.some((a) => typeof a !== 'string')) refuse(`${field}.args`, 'must be a non-empty array of strings');
  const options: ReturnType<typeof processOptions>['options'] = {};
  const env: Record<string, string> = {};
  for (const kv of (o.env ?? []) as unknown[]) {
    if (typeof kv !== 'string' || !kv.includes('=')) refuse(`${field}.env`, 'must hold KEY=value strings');
    env[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1);
  }
  options.env = env;
  if (o.cwd !== undefined) {
    if (typeof o.cwd !== 'string' || !isAbsolute(o.cwd)) refuse(`${field}.cwd`, 'must be an absolute path');
    options.cwd = o.cwd;
  }
  if (o.user !== undefined) {
    const u = keys(`${field}.user`, o.user, ['uid', 'gid', 'umask', 'additionalGids', 'username']);
    unsupportedUnlessEmpty(`${field}.user.username`, u.username, 'is for Windows');
    if (u.uid !== undefined) options.uid = u.uid as number;
    if (u.gid !== undefined) options.gid = u.gid as number;
    if (u.umask !== undefined) options.umask = u.umask as number;
    if (u.additionalGids !== undefined) options.groups = u.additionalGids as number[];
  }
  if (o.capabilities !== undefined) {
    const c = keys(`${field}.capabilities`, o.capabilities, ['bounding', 'effective', 'inheritable', 'permitted', 'ambient']);
    const sets = Object.fromEntries(Object.entries(c).map(([k, v]) => [k, (v ?? []) as string[]])) as Record<string, string[]>;
    if (sets.ambient?.length) {
      // as runc: an ambient capability the kernel cannot raise (not in permitted and
      // inheritable) is left out, with a warning (runc logs it the same way)
      const can = sets.ambient.filter((x) => sets.permitted?.includes(x) && sets.inheritable?.includes(x));
      const left = sets.ambient.filter((x) => !can.includes(x));
      if (left.length) warnings.push(`${field}.capabilities.ambient: ${left.join(', ')} left out (not in permitted and inheritable, so the kernel cannot raise them)`);
      sets.ambient = can;
    }
    options.capabilities = sets;
  } else {
    options.capabilities = {};
  }
  if (o.rlimits !== undefined) {
    if (!Array.isArray(o.rlimits)) refuse(`${field}.rlimits`, 'must be an array');
    const r: Record<string, { soft: number; hard: number }> = {};
    o.rlimits.forEach((x, i) => {
      const l = keys(`${field}.rlimits[${i}]`, x, ['type', 'soft', 'hard']);
      const name = RLIMITS[l.type as string] ?? refuse(`${field}.rlimits[${i}].type`, `unknown rlimit ${String(l.type)}`);
      const num = (v: unknown) => (v === U64_MAX || (typeof v === 'number' && v >= 2 ** 63) ? Infinity : v as number);
      r[name] = { soft: num(l.soft), hard: num(l.hard) };
    });
    options.rlimits = r as SandboxOptions['rlimits'];
  } else {
    // OCI: no rlimits means the runtime's own are kept; nsbox's default sets core 0
    options.rlimits = {};
  }
  options.allowNewPrivileges = o.noNewPrivileges !== true;
  if (o.oomScoreAdj !== undefined) options.oomScoreAdj = o.oomScoreAdj as number;
  let consoleSize: { rows: number; cols: number } | undefined;
  if (o.consoleSize !== undefined) {
    const cs = keys(`${field}.consoleSize`, o.consoleSize, ['height', 'width']);
    if ((cs.height as number) > 0 && (cs.width as number) > 0) consoleSize = { rows: cs.height as number, cols: cs.width as number };
  }
  return { args: o.args as string[], terminal: o.terminal === true, ...(consoleSize ? { consoleSize } : {}), options };
}

/** What config.json makes: the Sandbox options (without id and stateDir) and the program. */
export interface OciSandbox {
  options: Omit<SandboxOptions, 'id' | 'stateDir' | 'program'>;
  program: SandboxProgram;
  terminal: boolean;
  rootfs: string;
}

/**
 * config.json as Sandbox options. `consoleSocket` is the caller's `--console-socket`
 * (needed when `process.terminal` is true). Throws OciConfigError naming the field.
 */
export function configToSandbox(config: unknown, bundle: string, consoleSocket?: string, warnings: string[] = []): OciSandbox {
  unknownSink = warnings;
  const c = keys('', config, ['ociVersion', 'root', 'mounts', 'process', 'hostname', 'domainname', 'hooks', 'annotations', 'linux',
    'solaris', 'windows', 'vm', 'zos', 'freebsd']);
  for (const [k, os] of [['solaris', 'Solaris'], ['windows', 'Windows'], ['vm', 'virtual-machine containers'], ['zos', 'z/OS'], ['freebsd', 'FreeBSD']]) {
    unsupportedUnlessEmpty(k!, c[k!], `is for ${os}; nsbox-runc runs Linux containers`);
  }
  if (typeof c.ociVersion !== 'string' || !/^1\./.test(c.ociVersion)) refuse('ociVersion', `must be a 1.x version (got ${String(c.ociVersion)})`);
  const options: OciSandbox['options'] = { keepAlive: true, bundle, annotations: (c.annotations ?? {}) as Record<string, string> };
  const root = keys('root', c.root, ['path', 'readonly']);
  if (typeof root.path !== 'string') refuse('root.path', 'must be a string');
  const rootfs = resolve(bundle, root.path);
  if (!existsSync(rootfs) || !statSync(rootfs).isDirectory()) refuse('root.path', `${rootfs} is not a directory`);
  // mounts exactly as config.json says: no tmpfs on /tmp unless it lists one
  options.rootfs = { path: rootfs, readonly: root.readonly === true, tmp: false };
  if (c.process === undefined) refuse('process', 'is needed by create');
  const proc = processOptions('process', c.process, warnings);
  unknownSink = warnings;
  Object.assign(options, proc.options);
  if (c.hostname !== undefined) options.hostname = c.hostname as string;
  if (c.domainname !== undefined) options.domainname = c.domainname as string;
  if (c.mounts !== undefined) {
    if (!Array.isArray(c.mounts)) refuse('mounts', 'must be an array');
    options.mounts = c.mounts.map((m, i) => mount(`mounts[${i}]`, m, bundle, warnings)).filter((m): m is Mount => m !== null);
  }
  if (c.hooks !== undefined) {
    // the spec's hook kinds and hook properties (others ignored, with a warning); their values
    // are validated by Sandbox.create (TypeError naming options.hooks.<kind>)
    const h = keys('hooks', c.hooks, ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop']);
    const hooks: Record<string, unknown> = {};
    for (const k of ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop']) {
      if (h[k] === undefined || h[k] === null) continue;
      if (!Array.isArray(h[k])) refuse(`hooks.${k}`, 'must be an array of hooks');
      hooks[k] = (h[k] as unknown[]).map((x, i) => {
        const o = keys(`hooks.${k}[${i}]`, x, ['path', 'args', 'env', 'timeout']);
        return Object.fromEntries(['path', 'args', 'env', 'timeout'].filter((f) => o[f] !== undefined).map((f) => [f, o[f]]));
      });
    }
    options.hooks = hooks as OciHooks;
  }
  if (c.linux !== undefined) {
    const l = keys('linux', c.linux, ['namespaces', 'uidMappings', 'gidMappings', 'devices', 'cgroupsPath', 'resources', 'sysctl', 'seccomp',
      'rootfsPropagation', 'maskedPaths', 'readonlyPaths', 'mountLabel', 'intelRdt', 'personality', 'timeOffsets', 'memoryPolicy', 'netDevices']);
    unsupportedUnlessEmpty('linux.netDevices', l.netDevices, 'moving host network devices into the container is not supported by nsbox-runc');
    unsupportedUnlessEmpty('linux.mountLabel', l.mountLabel, 'SELinux labels are not supported by nsbox-runc');
    unsupportedUnlessEmpty('linux.intelRdt', l.intelRdt, 'is not supported by nsbox-runc');
    unsupportedUnlessEmpty('linux.personality', l.personality, 'is not supported by nsbox-runc');
    unsupportedUnlessEmpty('linux.memoryPolicy', l.memoryPolicy, 'is not supported by nsbox-runc');
    {
      // OCI: a namespace type not listed is the runtime's own (inherited); no list, none made
      let netJoin: Namespace | undefined;
      const join: Partial<Record<NamespaceType, Namespace>> = {};
      if (l.namespaces === undefined || l.namespaces === null) l.namespaces = [];
      if (!Array.isArray(l.namespaces)) refuse('linux.namespaces', 'must be an array');
      const ns: Partial<Record<NamespaceType, boolean>> = { pid: false, net: false, mount: false, ipc: false, uts: false, user: false, cgroup: false, time: false };
      l.namespaces.forEach((x, i) => {
        const n = keys(`linux.namespaces[${i}]`, x, ['type', 'path']);
        const t = NS[n.type as string] ?? refuse(`linux.namespaces[${i}].type`, `unknown namespace ${String(n.type)}`);
        if (typeof n.path === 'string' && n.path !== '') {
          // a namespace made by the caller (podman's pod, CNI's network): the sandbox joins it
          let opened: Namespace;
          try { opened = Namespace.open(n.path); } catch (e) { refuse(`linux.namespaces[${i}].path`, (e as Error).message); }
          if (opened.type !== t) refuse(`linux.namespaces[${i}].path`, `${n.path} is a ${opened.type} namespace, not ${t}`);
          if (t === 'net') netJoin = opened; else join[t] = opened;
          return;
        }
        ns[t] = true;
      });
      options.namespaces = ns;
      if (Object.keys(join).length) options.join = join;
      if (netJoin) options.network = { join: netJoin };
      else if (!ns.net) options.network = 'host';
      else options.network = 'none';
      if (!ns.user && !join.user) options.user = false;
      // the rootfs and the mounts are made in a mount namespace of the container's own: made
      // in the runtime's (as runc does without one) they would change the host's mount table
      if (!ns.mount && !join.mount) refuse('linux.namespaces', "lists no mount namespace: nsbox-runc makes root.path and mounts in one of the container's own (new or joined), never in the runtime's, which is the host's");
    }
    if (l.uidMappings !== undefined || l.gidMappings !== undefined) {
      const map = (f: string, v: unknown) => (Array.isArray(v) ? v : refuse(f, 'must be an array')).map((x, i) => {
        const m = keys(`${f}[${i}]`, x, ['containerID', 'hostID', 'size']);
        return { inside: m.containerID as number, outside: m.hostID as number, count: m.size as number };
      });
      options.user = { uidMap: map('linux.uidMappings', l.uidMappings ?? []), gidMap: map('linux.gidMappings', l.gidMappings ?? []) };
    }
    if (l.devices !== undefined) {
      if (!Array.isArray(l.devices)) refuse('linux.devices', 'must be an array');
      // the host's node of that path bound in when it has that type and number (works in a
      // user namespace); else, without a user namespace, a node made by number (mknod)
      options.devices = l.devices.map((x, i) => {
        const d = keys(`linux.devices[${i}]`, x, ['path', 'type', 'major', 'minor', 'fileMode', 'uid', 'gid']);
        const p = d.path as string;
        if (typeof p !== 'string' || !p.startsWith('/dev/')) refuse(`linux.devices[${i}].path`, 'must be a path under /dev');
        if (d.type !== 'c' && d.type !== 'b' && d.type !== 'u' && d.type !== 'p') refuse(`linux.devices[${i}].type`, `must be c, u, b or p (got ${String(d.type)})`);
        const owner = { ...(typeof d.fileMode === 'number' ? { mode: d.fileMode & 0o7777 } : {}), ...(typeof d.uid === 'number' ? { uid: d.uid } : {}), ...(typeof d.gid === 'number' ? { gid: d.gid } : {}) };
        // a FIFO: made (mknod needs no privilege for one), whatever the namespaces
        if (d.type === 'p') return { target: p, type: 'p' as const, ...owner };
        let st;
        try { st = statSync(p); } catch { /* not on the host */ }
        const major = st ? Math.floor(st.rdev / 256) & 0xfff : -1, minor = st ? (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00) : -1;
        if (st && (d.type === 'b' ? st.isBlockDevice() : st.isCharacterDevice()) && major === d.major && minor === d.minor) return { path: p, readonly: false };
        if (options.user !== false) refuse(`linux.devices[${i}]`, `the host's ${p} is ${st ? 'another node' : 'missing'}, and a node made by number (mknod) needs a container without a user namespace: in one the kernel makes device nodes unusable`);
        return { target: p, type: d.type === 'b' ? 'b' as const : 'c' as const, major: d.major as number, minor: d.minor as number, ...owner };
      });
    }
    if (l.cgroupsPath !== undefined) {
      // the container's cgroup is exactly this path (Sandbox cgroupPath, CGroup.createAt):
      // nsbox makes what is missing of it, and delete removes what it made
      if (typeof l.cgroupsPath !== 'string') refuse('linux.cgroupsPath', 'must be a string');
      if (l.cgroupsPath.includes(':')) refuse('linux.cgroupsPath', 'a systemd slice:prefix:name path: systemd cgroups are not supported by nsbox-runc (use cgroupfs)');
      if (l.cgroupsPath.split('/').some((x) => x === '..' || x === '.')) refuse('linux.cgroupsPath', "may not contain '.' or '..'");
      if (l.cgroupsPath !== '') options.cgroupPath = l.cgroupsPath;
    }
    if (l.resources !== undefined) options.limits = resources(l.resources);
    if (options.limits?.devices) {
      // as runc and crun: the nodes every container's /dev has (nsbox's standard ones, the
      // terminal's) and linux.devices are allowed after the config's rules
      const std: Array<[number, number | undefined]> = [[1, 3], [1, 5], [1, 7], [1, 8], [1, 9], [5, 0], [5, 1], [5, 2], [136, undefined]];
      const given = Array.isArray(l.devices) ? (l.devices as J[]).filter((d) => d.type !== 'p') : [];
      options.limits.devices = [
        ...options.limits.devices,
        ...std.map(([major, minor]) => ({ allow: true, type: 'c' as const, major, ...(minor !== undefined ? { minor } : {}), access: 'rwm' })),
        ...given.map((d) => ({ allow: true, type: d.type === 'b' ? 'b' as const : 'c' as const, major: d.major as number, minor: d.minor as number, access: 'rwm' })),
      ];
    }
    if (l.sysctl !== undefined) options.sysctl = l.sysctl as Record<string, string>;
    if (l.seccomp !== undefined) {
      try { options.seccomp = Seccomp.fromOCI(l.seccomp); } catch (e) { refuse('linux.seccomp', (e as Error).message); }
    } else options.seccomp = 'none'; // OCI: no seccomp object, no filter
    if (l.rootfsPropagation !== undefined) {
      const p = PROPAGATION[l.rootfsPropagation as string] ?? refuse('linux.rootfsPropagation', `${String(l.rootfsPropagation)} is not a propagation type ((r)private, (r)slave, (r)shared or (r)unbindable)`);
      // nsbox makes the whole tree recursively so; 'shared' is a peer group of the container's
      // own, receiving from the host (as 'slave'), never propagating to it (options.ts)
      options.rootPropagation = p;
    }
    if (l.maskedPaths !== undefined) options.maskedPaths = l.maskedPaths as string[];
    if (l.readonlyPaths !== undefined) options.readonlyPaths = l.readonlyPaths as string[];
    if (l.timeOffsets !== undefined) {
      const t = keys('linux.timeOffsets', l.timeOffsets, ['monotonic', 'boottime']);
      const off = (f: string, v: unknown) => (v === undefined ? undefined : keys(`linux.timeOffsets.${f}`, v, ['secs', 'nanosecs']).secs as number);
      options.timeOffsets = { monotonic: off('monotonic', t.monotonic), boottime: off('boottime', t.boottime) };
    }
  } else {
    refuse('linux.namespaces', "is missing (no linux object), so no mount namespace is listed: nsbox-runc makes root.path and mounts in one of the container's own (new or joined), never in the runtime's, which is the host's");
  }
  if (proc.terminal && !consoleSocket) refuse('process.terminal', 'needs --console-socket (nsbox-runc hands the terminal to it)');
  const program: SandboxProgram = { file: proc.args[0]!, args: proc.args.slice(1) };
  if (proc.terminal) program.tty = { consoleSocket: consoleSocket!, ...(proc.consoleSize ?? {}) };
  else program.stdio = [0, 1, 2];
  return { options, program, terminal: proc.terminal, rootfs };
}

/** nsbox's limits the OCI translation sets, and the linux.resources field each comes from. */
const LIMIT_FIELDS: Record<string, string> = {
  cpuMax: 'cpu.quota/period', cpuShares: 'cpu.shares', cpuRealtime: 'cpu.realtimeRuntime/realtimePeriod', cpuset: 'cpu.cpus', cpusetMems: 'cpu.mems',
  blkioWeight: 'blockIO.weight', blkioLeafWeight: 'blockIO.leafWeight', blkioWeightDevice: 'blockIO.weightDevice', ioMax: 'blockIO.throttle*',
  hugetlb: 'hugepageLimits', netClassId: 'network.classID', netPriorities: 'network.priorities',
  memory: 'memory.limit', memorySwap: 'memory.swap', memoryReservation: 'memory.reservation', pids: 'pids.limit', devices: 'devices',
};

/**
 * An error of Sandbox.create for config.json's limits: a cgroup refusal that names nsbox's
 * limit (`limits.blkioWeight: ...`, where the host's controller lacks the file) gets the
 * config.json field in front. Other errors are returned as they are.
 */
export function ociLimitError(e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  const m = /^limits\.(\w+)/.exec(e.message);
  const f = m && LIMIT_FIELDS[m[1]!];
  if (f) e.message = `config.json: linux.resources.${f}: ${e.message}`;
  return e;
}

/** A size as runc's flags take it: bytes, or with a k/m/g/t suffix (binary). */
function size(flag: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(v.trim());
  if (!m) throw new OciConfigError(flag, `'${v}' is not a size`);
  return Math.round(Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase()));
}

/**
 * `runc update`: its flags, or a LinuxResources object (`--resources FILE`), as limits for
 * `Sandbox.update`. A value nsbox-runc does not apply is refused naming the flag or field;
 * removing a limit (-1) is refused (nsbox's limits have no "unlimited" value to set).
 */
export function updateToLimits(flags: Record<string, string | boolean | undefined>, resourcesJson?: unknown, warnings: string[] = []): NonNullable<SandboxOptions['limits']> {
  unknownSink = warnings;
  if (resourcesJson !== undefined) return resources(resourcesJson, '--resources');
  const r: { memory?: J; cpu?: J; pids?: J; blockIO?: J } = {};
  const num = (f: string): number | undefined => {
    const v = flags[f];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !/^-?\d+$/.test(v)) throw new OciConfigError(`--${f}`, `'${String(v)}' is not a number`);
    if (Number(v) < 0) throw new OciConfigError(`--${f}`, 'removing a limit (-1) is not supported by nsbox-runc');
    return Number(v);
  };
  const sz = (f: string): number | undefined => {
    const v = flags[f];
    if (v === undefined) return undefined;
    if (v === '-1') throw new OciConfigError(`--${f}`, 'removing a limit (-1) is not supported by nsbox-runc');
    return size(`--${f}`, String(v));
  };
  const set = (k: 'memory' | 'cpu' | 'pids', f: string, v: unknown) => { if (v !== undefined) (r[k] ??= {})[f] = v; };
  set('memory', 'limit', sz('memory'));
  set('memory', 'reservation', sz('memory-reservation'));
  set('memory', 'swap', sz('memory-swap'));
  for (const f of ['kernel-memory', 'kernel-memory-tcp', 'cpu-burst', 'cpu-idle']) {
    if (flags[f] !== undefined) throw new OciConfigError(`--${f}`, 'is not supported by nsbox-runc');
  }
  set('cpu', 'realtimePeriod', num('cpu-rt-period'));
  set('cpu', 'realtimeRuntime', num('cpu-rt-runtime'));
  if (flags['blkio-weight'] !== undefined) (r as J).blockIO = { weight: num('blkio-weight') };
  set('cpu', 'period', num('cpu-period'));
  set('cpu', 'quota', num('cpu-quota'));
  set('cpu', 'shares', num('cpu-share'));
  set('cpu', 'cpus', flags['cpuset-cpus']);
  set('cpu', 'mems', flags['cpuset-mems']);
  set('pids', 'limit', num('pids-limit'));
  for (const f of ['l3-cache-schema', 'mem-bw-schema']) if (flags[f] !== undefined) throw new OciConfigError(`--${f}`, 'Intel RDT is not supported by nsbox-runc');
  return resources(r, 'update');
}

/** linux.resources as nsbox limits (cgroup limits of the sandbox). */
function resources(r: unknown, field = 'linux.resources', warnings: string[] = unknownSink): NonNullable<SandboxOptions['limits']> {
  const o = keys(field, r, ['devices', 'memory', 'cpu', 'pids', 'blockIO', 'hugepageLimits', 'network', 'rdma', 'unified']);
  const out: NonNullable<SandboxOptions['limits']> = {};
  unsupportedUnlessEmpty(`${field}.rdma`, o.rdma, 'is not supported by nsbox-runc');
  unsupportedUnlessEmpty(`${field}.unified`, o.unified, 'is not supported by nsbox-runc');
  // a limit whose controller this host lacks is refused here, naming the field (the cgroup
  // would refuse it too, naming nsbox's limit)
  const v2 = CGroup.mode() === 'v2';
  let have: string[] | undefined;
  const need = (f: string, controller: string) => {
    have ??= CGroup.controllers();
    if (!have.includes(controller)) refuse(f, `needs the cgroup ${v2 ? 'v2' : 'v1'} ${controller} controller, which this host does not ${v2 ? 'have in its cgroup2 hierarchy' : 'mount as a v1 hierarchy'}`);
  };
  const given = (v: unknown) => v !== undefined && v !== null;
  if (o.devices !== undefined) {
    // the device cgroup, as given (limits.devices: v1 devices controller, v2 BPF program)
    if (!Array.isArray(o.devices)) refuse(`${field}.devices`, 'must be an array');
    out.devices = o.devices.map((x, i) => {
      const d = keys(`${field}.devices[${i}]`, x, ['allow', 'type', 'major', 'minor', 'access']);
      if (typeof d.allow !== 'boolean') refuse(`${field}.devices[${i}].allow`, 'must be a boolean');
      const type = d.type ?? 'a';
      if (type !== 'a' && type !== 'b' && type !== 'c') refuse(`${field}.devices[${i}].type`, `must be a, b or c (got ${String(type)})`);
      const n = (k: 'major' | 'minor') => (d[k] === undefined || d[k] === null || d[k] === -1 ? undefined : typeof d[k] === 'number' ? d[k] as number : refuse(`${field}.devices[${i}].${k}`, 'must be a number'));
      const access = d.access === undefined || d.access === '' ? 'rwm' : typeof d.access === 'string' ? d.access : refuse(`${field}.devices[${i}].access`, 'must be a string');
      const major = n('major'), minor = n('minor');
      return { allow: d.allow, type, ...(major !== undefined ? { major } : {}), ...(minor !== undefined ? { minor } : {}), access };
    });
  }
  if (o.memory !== undefined) {
    const m = keys(`${field}.memory`, o.memory, ['limit', 'reservation', 'swap', 'kernel', 'kernelTCP', 'swappiness', 'disableOOMKiller', 'useHierarchy', 'checkBeforeUpdate']);
    // kernel memory limits: Linux 6.x takes a write to memory.kmem.limit_in_bytes and ignores it
    // (deprecated since 5.4), cgroup v2 has none; runc ignores the field too
    if (given(m.kernel)) warnings.push(`config.json: ${field}.memory.kernel: ignored (the kernel no longer enforces kernel memory limits: memory.kmem.limit_in_bytes is deprecated, cgroup v2 has none)`);
    for (const k of ['kernelTCP', 'swappiness', 'disableOOMKiller', 'useHierarchy', 'checkBeforeUpdate']) {
      if (m[k] !== undefined && m[k] !== false && !(k === 'swappiness' && m[k] === 0)) refuse(`${field}.memory.${k}`, 'is not supported by nsbox-runc');
    }
    const limit = typeof m.limit === 'number' && m.limit > 0 ? m.limit : undefined;
    if (limit !== undefined) out.memory = limit;
    if (typeof m.reservation === 'number' && m.reservation > 0) out.memoryReservation = m.reservation;
    // OCI's swap limits memory and swap together (v1 memory.memsw.limit_in_bytes; runc writes
    // v2 memory.swap.max = swap - limit); nsbox's memorySwap is the swap on top of memory
    if (m.swap === -1) out.memorySwap = 'max';
    else if (given(m.swap) && m.swap !== 0) {
      if (typeof m.swap !== 'number' || !Number.isSafeInteger(m.swap) || m.swap < 0) refuse(`${field}.memory.swap`, `must be a number of bytes or -1 (got ${String(m.swap)})`);
      if (limit === undefined) refuse(`${field}.memory.swap`, 'needs memory.limit beside it (it limits memory and swap together)');
      if (m.swap < limit) refuse(`${field}.memory.swap`, `must be at least memory.limit (${limit}): it limits memory and swap together`);
      out.memorySwap = m.swap - limit;
    }
  }
  if (o.cpu !== undefined) {
    const c = keys(`${field}.cpu`, o.cpu, ['shares', 'quota', 'burst', 'period', 'realtimeRuntime', 'realtimePeriod', 'cpus', 'mems', 'idle']);
    for (const k of ['burst', 'idle']) if (c[k] !== undefined && c[k] !== null && c[k] !== 0) refuse(`${field}.cpu.${k}`, 'is not supported by nsbox-runc');
    const int = (k: string, lo: number, hi: number): number | undefined => {
      const v = c[k];
      if (v === undefined || v === null || v === 0) return undefined; // 0: not set (runc's reading)
      if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) refuse(`${field}.cpu.${k}`, `must be an integer from ${lo} to ${hi} (got ${String(v)})`);
      return v;
    };
    // the kernel's files as given (limits.cpuMax: v1 cfs_quota_us/cfs_period_us, v2 cpu.max);
    // quota -1: no cap
    const quota = int('quota', -1, Number.MAX_SAFE_INTEGER), period = int('period', 1000, 1000000);
    if (quota !== undefined && quota !== -1 && quota < 1000) refuse(`${field}.cpu.quota`, `must be at least 1000 µs, or -1 for no cap (got ${quota})`);
    if (quota !== undefined || period !== undefined) {
      need(`${field}.cpu`, 'cpu');
      out.cpuMax = { ...(quota !== undefined ? { quota: quota === -1 ? 'max' as const : quota } : {}), ...(period !== undefined ? { period } : {}) };
    }
    // v1 cpu.shares as given; v2 cpu.weight converted as runc and crun do
    const shares = int('shares', 2, 262144);
    if (shares !== undefined) { need(`${field}.cpu.shares`, 'cpu'); out.cpuShares = shares; }
    const rtRuntime = int('realtimeRuntime', -1, 2 ** 31 - 1), rtPeriod = int('realtimePeriod', 1, 2 ** 31 - 1);
    if (rtRuntime !== undefined || rtPeriod !== undefined) {
      const f = `${field}.cpu.${rtRuntime !== undefined ? 'realtimeRuntime' : 'realtimePeriod'}`;
      if (v2) refuse(f, 'cgroup v2 has no realtime CPU bandwidth (cpu.rt_runtime_us is cgroup v1\'s)');
      need(f, 'cpu');
      out.cpuRealtime = { ...(rtRuntime !== undefined ? { runtime: rtRuntime } : {}), ...(rtPeriod !== undefined ? { period: rtPeriod } : {}) };
    }
    if (typeof c.cpus === 'string' && c.cpus !== '') out.cpuset = c.cpus;
    if (typeof c.mems === 'string' && c.mems !== '') out.cpusetMems = c.mems;
  }
  if (o.pids !== undefined) {
    const p = keys(`${field}.pids`, o.pids, ['limit']);
    if (typeof p.limit === 'number' && p.limit > 0) out.pids = p.limit;
  }
  if (given(o.blockIO)) {
    // v1 blkio / v2 io, the values as given (weights 10..1000: v1's range; v2 converts them)
    const f = `${field}.blockIO`;
    const b = keys(f, o.blockIO, ['weight', 'leafWeight', 'weightDevice', 'throttleReadBpsDevice', 'throttleWriteBpsDevice', 'throttleReadIOPSDevice', 'throttleWriteIOPSDevice']);
    const weight = (k: string, v: unknown): number | undefined => {
      if (v === undefined || v === null || v === 0) return undefined;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 10 || v > 1000) refuse(k, `must be an integer from 10 to 1000 (got ${String(v)})`);
      return v;
    };
    const dev = (k: string, d: J): string => {
      if (typeof d.major !== 'number' || typeof d.minor !== 'number' || !Number.isInteger(d.major) || !Number.isInteger(d.minor) || d.major < 0 || d.minor < 0) refuse(k, 'needs major and minor numbers');
      return `${d.major}:${d.minor}`;
    };
    const list = (k: string): unknown[] => (b[k] === undefined || b[k] === null ? [] : Array.isArray(b[k]) ? b[k] as unknown[] : refuse(`${f}.${k}`, 'must be an array'));
    const w = weight(`${f}.weight`, b.weight), lw = weight(`${f}.leafWeight`, b.leafWeight);
    if (w !== undefined || lw !== undefined || list('weightDevice').length || ['throttleReadBpsDevice', 'throttleWriteBpsDevice', 'throttleReadIOPSDevice', 'throttleWriteIOPSDevice'].some((k) => list(k).length)) need(f, v2 ? 'io' : 'blkio');
    if (lw !== undefined && v2) refuse(`${f}.leafWeight`, 'cgroup v2 has no leaf weights (v1 blkio.leaf_weight, of the CFQ scheduler)');
    if (w !== undefined) out.blkioWeight = w;
    if (lw !== undefined) out.blkioLeafWeight = lw;
    const wd = list('weightDevice').map((x, i) => {
      const k = `${f}.weightDevice[${i}]`;
      const d = keys(k, x, ['major', 'minor', 'weight', 'leafWeight']);
      const e = { device: dev(k, d), weight: weight(`${k}.weight`, d.weight), leafWeight: weight(`${k}.leafWeight`, d.leafWeight) };
      if (e.leafWeight !== undefined && v2) refuse(`${k}.leafWeight`, 'cgroup v2 has no leaf weights (v1 blkio.leaf_weight_device, of the CFQ scheduler)');
      return Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined)) as { device: string; weight?: number; leafWeight?: number };
    }).filter((e) => e.weight !== undefined || e.leafWeight !== undefined);
    if (wd.length) out.blkioWeightDevice = wd;
    // throttles: one ioMax entry per device (a rate of 0 removes that cap)
    const max = new Map<string, Record<string, number | string>>();
    for (const [k, io] of [['throttleReadBpsDevice', 'rbps'], ['throttleWriteBpsDevice', 'wbps'], ['throttleReadIOPSDevice', 'riops'], ['throttleWriteIOPSDevice', 'wiops']] as const) {
      list(k).forEach((x, i) => {
        const d = keys(`${f}.${k}[${i}]`, x, ['major', 'minor', 'rate']);
        const device = dev(`${f}.${k}[${i}]`, d);
        if (typeof d.rate !== 'number' || !Number.isSafeInteger(d.rate) || d.rate < 0) refuse(`${f}.${k}[${i}].rate`, `must be a non-negative integer (got ${String(d.rate)})`);
        const e = max.get(device) ?? { device };
        e[io] = d.rate;
        max.set(device, e);
      });
    }
    if (max.size) out.ioMax = [...max.values()] as unknown as NonNullable<typeof out.ioMax>;
  }
  if (given(o.hugepageLimits)) {
    // v1 hugetlb.<size>.limit_in_bytes / v2 hugetlb.<size>.max, as given
    const f = `${field}.hugepageLimits`;
    if (!Array.isArray(o.hugepageLimits)) refuse(f, 'must be an array');
    const sizes = CGroup.hugePageSizes();
    const h: Record<string, number> = {};
    o.hugepageLimits.forEach((x, i) => {
      const e = keys(`${f}[${i}]`, x, ['pageSize', 'limit']);
      if (typeof e.pageSize !== 'string' || !sizes.includes(e.pageSize)) refuse(`${f}[${i}].pageSize`, `this host has no huge pages of size ${String(e.pageSize)} (it has: ${sizes.join(', ') || 'none'})`);
      if (typeof e.limit !== 'number' || !Number.isSafeInteger(e.limit) || e.limit < 0) refuse(`${f}[${i}].limit`, `must be a number of bytes (got ${String(e.limit)})`);
      h[e.pageSize] = e.limit;
    });
    if (Object.keys(h).length) { need(f, 'hugetlb'); out.hugetlb = h; }
  }
  if (given(o.network)) {
    // v1 net_cls.classid and net_prio.ifpriomap, as given (cgroup v2 has neither)
    const f = `${field}.network`;
    const n = keys(f, o.network, ['classID', 'priorities']);
    if (given(n.classID)) {
      if (v2) refuse(`${f}.classID`, 'cgroup v2 has no net_cls controller (net_cls.classid is cgroup v1\'s)');
      if (typeof n.classID !== 'number' || !Number.isInteger(n.classID) || n.classID < 0 || n.classID > 0xffffffff) refuse(`${f}.classID`, `must be a 32-bit class id (got ${String(n.classID)})`);
      need(`${f}.classID`, 'net_cls');
      out.netClassId = n.classID;
    }
    if (given(n.priorities) && !(Array.isArray(n.priorities) && n.priorities.length === 0)) {
      if (v2) refuse(`${f}.priorities`, 'cgroup v2 has no net_prio controller (net_prio.ifpriomap is cgroup v1\'s)');
      if (!Array.isArray(n.priorities)) refuse(`${f}.priorities`, 'must be an array');
      need(`${f}.priorities`, 'net_prio');
      out.netPriorities = n.priorities.map((x, i) => {
        const p = keys(`${f}.priorities[${i}]`, x, ['name', 'priority']);
        if (typeof p.name !== 'string' || p.name === '') refuse(`${f}.priorities[${i}].name`, 'must be an interface name');
        if (typeof p.priority !== 'number' || !Number.isInteger(p.priority) || p.priority < 0) refuse(`${f}.priorities[${i}].priority`, `must be a non-negative integer (got ${String(p.priority)})`);
        return { name: p.name, priority: p.priority };
      });
    }
  }
  return out;
}
