// An OCI runtime config (a bundle's config.json) as nsbox Sandbox options. Every field of the
// runtime spec (v1.3.0) is either applied or refused with an OciConfigError naming it; a
// property the spec does not define is ignored, as the spec requires, with a warning naming it
// (nsbox-runc logs it): nothing is silently ignored.
// Where nsbox applies a field in its own way, the comment at the field says how (and
// README "nsbox-runc" lists it).
import { existsSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { Namespace, Seccomp, type Mount, type SandboxOptions, type SandboxProgram, type OciHooks, type NamespaceType } from '../index.js';

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
  const r: { memory?: J; cpu?: J; pids?: J } = {};
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
  for (const f of ['kernel-memory', 'kernel-memory-tcp', 'cpu-rt-period', 'cpu-rt-runtime', 'cpu-burst', 'cpu-idle', 'blkio-weight']) {
    if (flags[f] !== undefined) throw new OciConfigError(`--${f}`, 'is not supported by nsbox-runc');
  }
  set('cpu', 'period', num('cpu-period'));
  set('cpu', 'quota', num('cpu-quota'));
  set('cpu', 'shares', num('cpu-share'));
  set('cpu', 'cpus', flags['cpuset-cpus']);
  set('cpu', 'mems', flags['cpuset-mems']);
  set('pids', 'limit', num('pids-limit'));
  for (const f of ['l3-cache-schema', 'mem-bw-schema']) if (flags[f] !== undefined) throw new OciConfigError(`--${f}`, 'Intel RDT is not supported by nsbox-runc');
  // a period alone keeps the quota: nsbox sets both, so it needs the quota
  if (r.cpu?.period !== undefined && r.cpu.quota === undefined) throw new OciConfigError('--cpu-period', 'give --cpu-quota with it (nsbox sets a CPU limit as both)');
  return resources(r, 'update');
}

/** linux.resources as nsbox limits (cgroup limits of the sandbox). */
function resources(r: unknown, field = 'linux.resources'): NonNullable<SandboxOptions['limits']> {
  const o = keys(field, r, ['devices', 'memory', 'cpu', 'pids', 'blockIO', 'hugepageLimits', 'network', 'rdma', 'unified']);
  const out: NonNullable<SandboxOptions['limits']> = {};
  unsupportedUnlessEmpty(`${field}.hugepageLimits`, o.hugepageLimits, 'is not supported by nsbox-runc');
  unsupportedUnlessEmpty(`${field}.network`, o.network, 'is not supported by nsbox-runc');
  unsupportedUnlessEmpty(`${field}.rdma`, o.rdma, 'is not supported by nsbox-runc');
  unsupportedUnlessEmpty(`${field}.unified`, o.unified, 'is not supported by nsbox-runc');
  unsupportedUnlessEmpty(`${field}.blockIO`, o.blockIO, 'is not supported by nsbox-runc');
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
    for (const k of ['kernel', 'kernelTCP', 'swappiness', 'disableOOMKiller', 'useHierarchy', 'checkBeforeUpdate']) {
      if (m[k] !== undefined && m[k] !== false && !(k === 'swappiness' && m[k] === 0)) refuse(`${field}.memory.${k}`, 'is not supported by nsbox-runc');
    }
    if (typeof m.limit === 'number' && m.limit > 0) out.memory = m.limit;
    if (typeof m.reservation === 'number' && m.reservation > 0) out.memoryReservation = m.reservation;
    if (typeof m.swap === 'number' && m.swap > 0) out.memorySwap = m.swap;
  }
  if (o.cpu !== undefined) {
    const c = keys(`${field}.cpu`, o.cpu, ['shares', 'quota', 'burst', 'period', 'realtimeRuntime', 'realtimePeriod', 'cpus', 'mems', 'idle']);
    for (const k of ['burst', 'realtimeRuntime', 'realtimePeriod', 'idle']) if (c[k] !== undefined && c[k] !== 0) refuse(`${field}.cpu.${k}`, 'is not supported by nsbox-runc');
    if (typeof c.quota === 'number' && c.quota > 0) out.cpus = c.quota / (typeof c.period === 'number' && c.period > 0 ? c.period : 100000);
    else if (c.period !== undefined && c.quota === undefined) refuse(`${field}.cpu.period`, 'without quota is not supported by nsbox-runc');
    if (typeof c.shares === 'number' && c.shares > 0) out.cpuWeight = Math.max(1, Math.min(10000, Math.round(1 + ((c.shares - 2) * 9999) / 262142)));
    if (typeof c.cpus === 'string' && c.cpus !== '') out.cpuset = c.cpus;
    if (typeof c.mems === 'string' && c.mems !== '') out.cpusetMems = c.mems;
  }
  if (o.pids !== undefined) {
    const p = keys(`${field}.pids`, o.pids, ['limit']);
    if (typeof p.limit === 'number' && p.limit > 0) out.pids = p.limit;
  }
  return out;
}
