// nsbox-runc: the runc command line (as podman/conmon and containerd's shim call it) on
// nsbox's public API: a created Sandbox (Sandbox.create with `program`) per container, its
// state in --root (default /run/nsbox-runc), found again by id from each call.
import { appendFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createRequire } from 'node:module';
import { Sandbox, NsboxError, Seccomp, type ExecOptions, type SandboxInfo } from '../index.js';
import { configToSandbox, ociLimitError, OciConfigError, processOptions, updateToLimits } from './config.js';
import { seccompProgram } from './seccomp-cache.js';
import { primeSeccompProgram } from '../security/seccomp/option.js';
import type { SeccompProfile } from '../security/seccomp/profile.js';

/**
 * The build's id (a hash of the library's sources, set by the build: tsup.config.ts), which
 * the seccomp program cache (./seccomp-cache.ts) is keyed on; none when run from the sources.
 */
declare const NSBOX_BUILD_ID: string | undefined;
const BUILD_ID = typeof NSBOX_BUILD_ID === 'string' ? NSBOX_BUILD_ID : undefined;

/** The package's version (read when asked: create, the common call, does not need it). */
const version = (): string => (createRequire(import.meta.url)('../package.json') as { version: string }).version;
const OCI_VERSION = '1.0.2';
const DEFAULT_ROOT = '/run/nsbox-runc';

/** A usage mistake: exit code 1 with the message, as runc. */
class UsageError extends Error {}

interface Globals {
  root: string;
  log?: string;
  logFormat: 'text' | 'json';
}

const USAGE = `nsbox-runc: an OCI runtime on nsbox (the runc command line)

usage: nsbox-runc [--root DIR] [--log FILE] [--log-format text|json] COMMAND [ARGS]

commands:
  create --bundle DIR [--pid-file FILE] [--console-socket SOCK] ID
  start ID
  state ID
  kill [--all] ID [SIGNAL]          (default SIGTERM)
  delete [--force] ID
  exec [--process FILE.json] [--detach] [--tty] [--console-socket SOCK] [--pid-file FILE] ID [COMMAND ARGS...]
  ps [--format table|json] ID
  list [--format table|json]
  pause ID / resume ID
  update [--resources FILE|-] [--memory N] [--memory-swap N] [--memory-reservation N] [--cpu-quota N] [--cpu-period N] [--cpu-share N]
         [--cpu-rt-period N] [--cpu-rt-runtime N] [--cpuset-cpus L] [--cpuset-mems L] [--pids-limit N] [--blkio-weight N] ID
  features
  spec [--bundle DIR]
  --version

--systemd-cgroup is refused: nsbox-runc manages cgroups itself (cgroupfs).`;

/** Takes `--name value`, `--name=value`, and boolean flags from args; returns the rest. */
function parseFlags(args: string[], spec: Record<string, 'bool' | 'value'>, aliases: Record<string, string> = {}): { flags: Record<string, string | boolean>; rest: string[] } {
  const flags: Record<string, string | boolean> = {};
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (rest.length > 0 || !a.startsWith('-') || a === '-') { rest.push(a); continue; }
    if (a === '--') { rest.push(...args.slice(i + 1)); break; }
    let name = a.replace(/^--?/, '');
    let val: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) { val = name.slice(eq + 1); name = name.slice(0, eq); }
    name = aliases[name] ?? name;
    const kind = spec[name];
    if (!kind) throw new UsageError(`unknown option ${a}`);
    if (kind === 'bool') flags[name] = val === undefined ? true : val !== 'false';
    else {
      if (val === undefined) {
        if (i + 1 >= args.length) throw new UsageError(`${a} needs a value`);
        val = args[++i]!;
      }
      flags[name] = val;
    }
  }
  return { flags, rest };
}

function oneId(rest: string[], cmd: string, max = 1): string {
  if (rest.length < 1 || rest.length > max) throw new UsageError(`${cmd}: needs the container id${max > 1 ? ' (and at most one more argument)' : ''}`);
  return rest[0]!;
}

async function attach(g: Globals, id: string): Promise<Sandbox> {
  try {
    return await Sandbox.attach(id, { stateDir: g.root });
  } catch (e) {
    if (e instanceof NsboxError && e.code === 'ENOENT') throw new Error(`container does not exist: ${id}`);
    throw e;
  }
}

function runcStatus(box: Sandbox | SandboxInfo): 'created' | 'running' | 'stopped' | 'paused' {
  const s = box.status;
  if (s === 'exited') return 'stopped';
  if (s === 'running' && box instanceof Sandbox && paused(box)) return 'paused';
  return s;
}

/** Whether the sandbox's cgroup is frozen (pause): v2 cgroup.freeze, v1 freezer.state. */
function paused(box: Sandbox): boolean {
  const p = box.cgroup?.paths as Record<string, string> | undefined;
  if (!p) return false;
  try {
    if (p.unified) return readFileSync(`${p.unified}/cgroup.freeze`, 'utf8').trim() === '1';
    if (p.freezer) return readFileSync(`${p.freezer}/freezer.state`, 'utf8').trim() !== 'THAWED';
  } catch { /* gone */ }
  return false;
}

/** runc's state JSON; `fixedOnly`: only the members that never change (bundle on), for writeFront. */
function stateJson(g: Globals, box: Sandbox, info: SandboxInfo | undefined, fixedOnly = false): Record<string, unknown> {
  const st = box.ociState();
  const cfg = readConfig(st.bundle);
  const root = cfg ? resolve(st.bundle, ((cfg.root as { path?: string } | undefined)?.path) ?? 'rootfs') : '';
  const fixed = {
    bundle: st.bundle, rootfs: root, created: info?.created ?? '', owner: '',
    ...(Object.keys(st.annotations ?? {}).length ? { annotations: st.annotations } : {}),
  };
  if (fixedOnly) return fixed;
  const status = runcStatus(box);
  return { ociVersion: OCI_VERSION, id: box.id, pid: status === 'stopped' ? 0 : box.pid, status, ...fixed };
}

function readConfig(bundle: string): Record<string, unknown> | undefined {
  if (!bundle) return undefined;
  try { return JSON.parse(readFileSync(`${bundle}/config.json`, 'utf8')) as Record<string, unknown>; } catch { return undefined; }
}

/** `--preserve-fds N` (create: at most 251, what nsbox-init takes in one message; exec: 256). */
function preserveFds(v: string | boolean | undefined, cmd: 'create' | 'exec'): number {
  if (v === undefined) return 0;
  const max = cmd === 'create' ? 251 : 256;
  if (typeof v !== 'string' || !/^\d+$/.test(v) || Number(v) > max) throw new UsageError(`${cmd}: --preserve-fds must be a number of fds, at most ${max} (got ${String(v)})`);
  return Number(v);
}

async function cmdCreate(g: Globals, args: string[]): Promise<number> {
  const { flags, rest } = parseFlags(args, { bundle: 'value', 'pid-file': 'value', 'console-socket': 'value', 'no-pivot': 'bool', 'no-new-keyring': 'bool', 'preserve-fds': 'value' }, { b: 'bundle' });
  const id = oneId(rest, 'create');
  if (flags['no-pivot']) throw new UsageError('create: --no-pivot is not supported (nsbox always pivots into the root)');
  const preserve = preserveFds(flags['preserve-fds'], 'create');
  const bundle = resolve(typeof flags.bundle === 'string' ? flags.bundle : '.');
  let config: unknown;
  try { config = JSON.parse(readFileSync(`${bundle}/config.json`, 'utf8')); } catch (e) {
    throw new Error(`cannot read ${bundle}/config.json: ${(e as Error).message}`);
  }
  const consoleSocket = typeof flags['console-socket'] === 'string' ? resolve(flags['console-socket']) : undefined;
  const warnings: string[] = [];
  const { options, program } = configToSandbox(config, bundle, consoleSocket, warnings);
  useSeccompCache(g, config, options.seccomp);
  // runc's --preserve-fds: the runtime's own fds 3 .. 3+N-1 become the container process's
  if (preserve > 0) program.extraFds = Array.from({ length: preserve }, (_, i) => 3 + i);
  for (const w of warnings) log(g, 'warning', w);
  // linux.cgroupsPath is the container's cgroup itself (options.cgroupPath): Sandbox.create
  // makes what is missing of it and destroy removes that again
  let box: Sandbox;
  try {
    box = await Sandbox.create({ ...options, id, stateDir: g.root, program });
  } catch (e) {
    throw ociLimitError(e); // a limit the host's controller cannot take: named as config.json's field
  }
  writeFront(g, box, config, options.network);
  if (typeof flags['pid-file'] === 'string') writeFileSync(resolve(flags['pid-file']), String(box.pid));
  return 0;
}

/**
 * `<id>.runc` beside the sandbox's state: what the native front end (addon/runc/front.cc,
 * build/Release/nsbox-runc) needs to answer state, kill, start and delete without Node (its
 * five lines are described there). Removed by delete.
 */
function writeFront(g: Globals, box: Sandbox, config: unknown, network: unknown): void {
  const hooks = ((config as { hooks?: Record<string, unknown[]> }).hooks) ?? {};
  const has = (k: string) => Array.isArray(hooks[k]) && hooks[k]!.length > 0;
  const startHooks = has('startContainer') || has('poststart');
  const p = box.cgroup?.paths as Record<string, string> | undefined;
  const freezer = p?.unified ? `${p.unified}/cgroup.freeze` : p?.freezer ? `${p.freezer}/freezer.state` : '';
  const st = JSON.parse(readFileSync(`${g.root}/${box.id}.json`, 'utf8')) as { holderStart: number; cgroup: Record<string, string>; cgroupMade?: string[]; image: unknown; created?: string };
  // (its `created` as Sandbox.list gives it, without reading every container's state)
  const fixed = JSON.stringify(stateJson(g, box, { created: st.created ?? '' } as SandboxInfo, true)).slice(1, -1);
  // what Sandbox.destroy() of the attached sandbox removes (removeOpenedCgroup): the
  // directories nsbox made for an exact cgroupsPath, else its own (named nsbox) ones
  const dirs = [...new Set(Object.values(st.cgroup ?? {}))];
  const remove = st.cgroupMade ? ['made', ...st.cgroupMade] : ['nsbox', ...dirs.filter((d) => /nsbox/.test(d))];
  // the front end deletes natively only what destroy() would do no more for: a cgroup, no
  // image container, no bridge network handed to the holder (nsbox-runc joins, shares the
  // host's or has none), no poststop hook to run
  const plainNet = network === 'host' || network === 'none' || (typeof network === 'object' && network !== null && 'join' in network);
  const nativeDelete = dirs.length > 0 && !st.image && plainNet && !has('poststop') && ![...dirs, ...remove].some((d) => /[\t\n]/.test(d));
  writeFileSync(frontFile(g, box.id), `${box.pid} ${st.holderStart} 1 ${startHooks ? 1 : 0} ${nativeDelete ? 1 : 0}\n${freezer}\n${fixed}\n${dirs.join('\t')}\n${remove.join('\t')}\n`, { mode: 0o600 });
}

const frontFile = (g: Globals, id: string) => `${g.root}/${id}.runc`;

/**
 * The compiled program of config.json's seccomp profile from the root's cache
 * (./seccomp-cache.ts), compiled and kept there when it has none: given to the profile object
 * (validated by fromOCI as always), so the spawn does not compile it again.
 */
function useSeccompCache(g: Globals, config: unknown, profile: unknown): void {
  const sc = ((config as { linux?: { seccomp?: unknown } } | undefined)?.linux)?.seccomp;
  if (sc === undefined || profile === null || typeof profile !== 'object') return;
  const p = profile as SeccompProfile;
  primeSeccompProgram(p, seccompProgram(g.root, BUILD_ID, JSON.stringify(sc), () => Seccomp.compile(p)));
}

async function cmdStart(g: Globals, args: string[]): Promise<number> {
  const box = await attach(g, oneId(args, 'start'));
  const st = runcStatus(box);
  if (st !== 'created') throw new Error(`cannot start a container that is ${st}`);
  try {
    await box.start();
  } catch (e) {
    // OCI: a failed poststart hook is a warning; the container runs on
    if (e instanceof NsboxError && e.step === 'hook' && e.syscall === 'poststart') { log(g, 'warning', e.message); return 0; }
    throw e;
  }
  return 0;
}

async function cmdState(g: Globals, args: string[]): Promise<number> {
  const id = oneId(args, 'state');
  const box = await attach(g, id);
  const info = Sandbox.list({ stateDir: g.root }).find((s) => s.id === id);
  process.stdout.write(`${JSON.stringify(stateJson(g, box, info), null, 2)}\n`);
  return 0;
}

async function cmdKill(g: Globals, args: string[]): Promise<number> {
  const { flags, rest } = parseFlags(args, { all: 'bool' }, { a: 'all' });
  const id = oneId(rest, 'kill', 2);
  let sig: string | number = rest[1] ?? 'SIGTERM';
  if (/^\d+$/.test(String(sig))) sig = Number(sig);
  else if (!String(sig).startsWith('SIG')) sig = `SIG${String(sig).toUpperCase()}`;
  const box = await attach(g, id);
  if (runcStatus(box) === 'stopped') throw new Error('container not running');
  await box.signal(sig as NodeJS.Signals, { all: flags.all === true });
  return 0;
}

async function cmdDelete(g: Globals, args: string[]): Promise<number> {
  const { flags, rest } = parseFlags(args, { force: 'bool' }, { f: 'force' });
  const id = oneId(rest, 'delete');
  let box: Sandbox;
  try { box = await attach(g, id); } catch (e) {
    // runc delete --force of a container that does not exist succeeds
    if (flags.force && /does not exist/.test((e as Error).message)) { rmSync(frontFile(g, id), { force: true }); return 0; }
    throw e;
  }
  const st = runcStatus(box);
  if ((st === 'running' || st === 'paused') && !flags.force) throw new Error(`cannot delete container that is not stopped: ${st}`);
  try {
    await box.destroy();
  } catch (e) {
    // OCI: a failed poststop hook is a warning; the delete goes on (the library has done it)
    if (!(e instanceof NsboxError && e.step === 'hook' && e.syscall === 'poststop')) throw e;
    log(g, 'warning', e.message);
  } finally {
    rmSync(frontFile(g, id), { force: true });
  }
  return 0;
}

/** runc update [--resources FILE|-] [--memory N ...] ID: the container's cgroup limits, live. */
async function cmdUpdate(g: Globals, args: string[]): Promise<number> {
  const spec: Record<string, 'value'> = {};
  for (const f of ['resources', 'memory', 'memory-reservation', 'memory-swap', 'kernel-memory', 'kernel-memory-tcp', 'cpu-period', 'cpu-quota', 'cpu-share',
    'cpu-rt-period', 'cpu-rt-runtime', 'cpu-burst', 'cpu-idle', 'cpuset-cpus', 'cpuset-mems', 'pids-limit', 'blkio-weight', 'l3-cache-schema', 'mem-bw-schema']) spec[f] = 'value';
  const { flags, rest } = parseFlags(args, spec, { r: 'resources' });
  const id = oneId(rest, 'update');
  let json: unknown;
  if (typeof flags.resources === 'string') {
    const text = flags.resources === '-' ? readFileSync(0, 'utf8') : readFileSync(resolve(flags.resources), 'utf8');
    try { json = JSON.parse(text); } catch (e) { throw new Error(`update: --resources: ${(e as Error).message}`); }
  }
  const warnings: string[] = [];
  const limits = updateToLimits(flags as Record<string, string>, json, warnings);
  for (const w of warnings) log(g, 'warning', w);
  const box = await attach(g, id);
  if (runcStatus(box) === 'stopped') throw new Error('container not running');
  try { await box.update({ limits }); } catch (e) { throw ociLimitError(e); }
  return 0;
}

async function cmdExec(g: Globals, args: string[]): Promise<number> {
  const { flags, rest } = parseFlags(args, {
    process: 'value', detach: 'bool', tty: 'bool', 'console-socket': 'value', 'pid-file': 'value', cwd: 'value', env: 'value', user: 'value',
    'no-new-privs': 'bool', 'preserve-fds': 'value', 'process-label': 'value', apparmor: 'value', cap: 'value',
  }, { p: 'process', d: 'detach', t: 'tty', e: 'env', u: 'user', c: 'cap' });
  const id = rest[0];
  if (!id) throw new UsageError('exec: needs the container id');
  // --preserve-fds N: our fds 3 .. 3+N-1 are the process's 3 .. 3+N-1 (as runc's)
  const preserve = preserveFds(flags['preserve-fds'], 'exec');
  for (const f of ['process-label', 'apparmor', 'cwd', 'env', 'user', 'cap']) {
    if (flags[f] !== undefined && typeof flags.process === 'string') throw new UsageError(`exec: --${f} with --process: give it in the process file`);
  }
  for (const f of ['process-label', 'apparmor', 'cap']) if (flags[f] !== undefined) throw new UsageError(`exec: --${f} is not supported (give capabilities in --process)`);
  const box = await attach(g, id);
  if (runcStatus(box) === 'stopped') throw new Error('cannot exec in a stopped container');
  let argv: string[];
  let opts: ExecOptions;
  let terminal = false;
  if (typeof flags.process === 'string') {
    let p: unknown;
    try { p = JSON.parse(readFileSync(resolve(flags.process), 'utf8')); } catch (e) { throw new Error(`cannot read the process file: ${(e as Error).message}`); }
    const warnings: string[] = [];
    const po = processOptions('process', p, warnings);
    for (const w of warnings) log(g, 'warning', w);
    argv = po.args;
    terminal = po.terminal;
    const o = po.options;
    opts = { env: o.env, cwd: o.cwd, uid: o.uid, gid: o.gid, groups: o.groups, umask: o.umask, oomScoreAdj: o.oomScoreAdj, capabilities: o.capabilities, allowNewPrivileges: o.allowNewPrivileges };
    if (o.rlimits && Object.keys(o.rlimits).length) opts.rlimits = o.rlimits;
  } else {
    argv = rest.slice(1);
    if (!argv.length) throw new UsageError('exec: needs a command or --process');
    terminal = flags.tty === true;
    opts = {};
    if (typeof flags.cwd === 'string') opts.cwd = flags.cwd;
    if (typeof flags.user === 'string') {
      const [u, gg] = flags.user.split(':');
      opts.uid = Number(u);
      if (gg !== undefined) opts.gid = Number(gg);
    }
    if (typeof flags.env === 'string') opts.env = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', [flags.env.split('=')[0]!]: flags.env.slice(flags.env.indexOf('=') + 1) };
    if (flags['no-new-privs']) opts.allowNewPrivileges = false;
  }
  for (const k of Object.keys(opts) as Array<keyof ExecOptions>) if (opts[k] === undefined) delete opts[k];
  // the container's own seccomp filter (a profile object is not kept in the state file)
  const cfg = readConfig(box.ociState().bundle);
  const sc = (cfg?.linux as Record<string, unknown> | undefined)?.seccomp;
  opts.seccomp = sc !== undefined ? Seccomp.fromOCI(sc) : 'none';
  useSeccompCache(g, cfg, opts.seccomp);
  if (terminal) {
    if (typeof flags['console-socket'] !== 'string') throw new UsageError('exec: a terminal needs --console-socket');
    opts.tty = { consoleSocket: resolve(flags['console-socket']) };
  } else {
    opts.stdio = 'inherit';
  }
  if (preserve > 0) opts.extraFds = Array.from({ length: preserve }, (_, i) => 3 + i);
  const detach = flags.detach === true;
  if (detach) opts.parentDeathSignal = false;
  opts.buffer = false;
  const p = box.exec(argv[0]!, argv.slice(1), opts);
  await new Promise<void>((res, rej) => { p.once('spawn', () => res()); p.then(() => res(), rej); });
  if (typeof flags['pid-file'] === 'string' && p.pid !== undefined) writeFileSync(resolve(flags['pid-file']), String(p.pid));
  if (detach) { p.unref(); return 0; }
  const r = await p;
  return r.exitCode ?? 128 + (r.signal ? (SIGNUMS[r.signal] ?? 9) : 9);
}

const SIGNUMS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGUSR1: 10, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14 };

async function cmdPs(g: Globals, args: string[]): Promise<number> {
  const { flags, rest } = parseFlags(args, { format: 'value' }, { f: 'format' });
  const box = await attach(g, oneId(rest, 'ps'));
  const pids = box.cgroup ? await box.cgroup.pids() : (box.status === 'exited' ? [] : [box.pid]);
  if (flags.format === 'json') process.stdout.write(`${JSON.stringify(pids)}\n`);
  else {
    process.stdout.write('PID CMD\n');
    for (const pid of pids) {
      let cmd = '';
      try { cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim(); } catch { /* gone */ }
      process.stdout.write(`${pid} ${cmd}\n`);
    }
  }
  return 0;
}

function cmdList(g: Globals, args: string[]): number {
  const { flags } = parseFlags(args, { format: 'value', quiet: 'bool' }, { f: 'format', q: 'quiet' });
  const list = Sandbox.list({ stateDir: g.root });
  if (flags.quiet) { for (const s of list) process.stdout.write(`${s.id}\n`); return 0; }
  const rows = list.map((s) => ({ id: s.id, pid: s.status === 'exited' ? 0 : s.holderPid, status: runcStatus(s), created: s.created }));
  if (flags.format === 'json') process.stdout.write(`${JSON.stringify(rows)}\n`);
  else {
    process.stdout.write('ID PID STATUS CREATED\n');
    for (const r of rows) process.stdout.write(`${r.id} ${r.pid} ${r.status} ${r.created}\n`);
  }
  return 0;
}

function cmdFeatures(): number {
  const f = {
    ociVersionMin: '1.0.0',
    ociVersionMax: OCI_VERSION,
    hooks: ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'],
    mountOptions: ['ro', 'rw', 'bind', 'rbind', 'noexec', 'exec', 'nosuid', 'suid', 'nodev', 'dev', 'tmpcopyup', 'relatime', 'noatime', 'strictatime', 'private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave', 'unbindable', 'runbindable'],
    linux: {
      namespaces: ['cgroup', 'ipc', 'mount', 'network', 'pid', 'time', 'user', 'uts'],
      capabilities: [],
      cgroup: { v1: true, v2: true, systemd: false, systemdUser: false },
      seccomp: { enabled: true, actions: ['SCMP_ACT_ALLOW', 'SCMP_ACT_ERRNO', 'SCMP_ACT_KILL', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_LOG', 'SCMP_ACT_TRACE', 'SCMP_ACT_TRAP'] },
      apparmor: { enabled: false },
      selinux: { enabled: false },
    },
    annotations: { 'org.nsbox.runc.version': version() },
  };
  process.stdout.write(`${JSON.stringify(f, null, 2)}\n`);
  return 0;
}

function cmdSpec(args: string[]): number {
  const { flags } = parseFlags(args, { bundle: 'value', rootless: 'bool' }, { b: 'bundle' });
  const dir = resolve(typeof flags.bundle === 'string' ? flags.bundle : '.');
  const file = `${dir}/config.json`;
  if (existsSync(file)) throw new Error(`File ${file} exists. Remove it first`);
  const caps = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
  const spec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: true, user: { uid: 0, gid: 0 }, args: ['sh'], env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'], cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }], noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'nsbox',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }, { type: 'user' }],
      uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
      gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
      maskedPaths: ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
  writeFileSync(file, `${JSON.stringify(spec, null, '\t')}\n`);
  return 0;
}

function log(g: Globals, level: 'error' | 'warning', msg: string): void {
  if (g.log) {
    const line = g.logFormat === 'json' ? JSON.stringify({ level, msg, time: new Date().toISOString() }) : `${new Date().toISOString()} ${level}: ${msg}`;
    try { appendFileSync(g.log, `${line}\n`); } catch { /* no log then */ }
  }
  process.stderr.write(`${level === 'error' ? '' : 'warning: '}${msg}\n`);
}

/** Runs one nsbox-runc command line; resolves to the process's exit code. */
export async function main(argv: string[]): Promise<number> {
  const g: Globals = { root: DEFAULT_ROOT, logFormat: 'text' };
  try {
    const { flags, rest } = parseFlags(argv, {
      root: 'value', log: 'value', 'log-format': 'value', 'systemd-cgroup': 'bool', debug: 'bool', rootless: 'value', criu: 'value', version: 'bool', help: 'bool',
    }, { v: 'version', h: 'help' });
    if (typeof flags.log === 'string') g.log = flags.log;
    if (flags['log-format'] !== undefined) {
      if (flags['log-format'] !== 'json' && flags['log-format'] !== 'text') throw new UsageError(`--log-format must be text or json (got ${String(flags['log-format'])})`);
      g.logFormat = flags['log-format'];
    }
    if (typeof flags.root === 'string') g.root = resolve(flags.root);
    if (flags['systemd-cgroup']) throw new UsageError('--systemd-cgroup is not supported: nsbox-runc manages cgroups itself (cgroupfs); configure the caller for cgroupfs (podman: cgroup_manager = "cgroupfs")');
    if (flags.rootless !== undefined && flags.rootless !== 'false' && flags.rootless !== 'auto') throw new UsageError('--rootless: only auto or false');
    if (flags.version || rest[0] === 'version') {
      process.stdout.write(`nsbox-runc version ${version()}\nspec: ${OCI_VERSION}\n`);
      return 0;
    }
    const [cmd, ...args] = rest;
    if (flags.help || !cmd || cmd === 'help') { process.stdout.write(`${USAGE}\n`); return cmd || flags.help ? 0 : 1; }
    switch (cmd) {
      case 'create': return await cmdCreate(g, args);
      case 'start': return await cmdStart(g, args);
      case 'state': return await cmdState(g, args);
      case 'kill': return await cmdKill(g, args);
      case 'delete': return await cmdDelete(g, args);
      case 'exec': return await cmdExec(g, args);
      case 'ps': return await cmdPs(g, args);
      case 'list': return cmdList(g, args);
      case 'pause': {
        const box = await attach(g, oneId(args, 'pause'));
        if (runcStatus(box) !== 'running') throw new Error(`container not running: ${runcStatus(box)}`);
        await box.pause();
        return 0;
      }
      case 'resume': {
        const box = await attach(g, oneId(args, 'resume'));
        if (runcStatus(box) !== 'paused') throw new Error(`container not paused: ${runcStatus(box)}`);
        await box.resume();
        return 0;
      }
      case 'update': return await cmdUpdate(g, args);
      case 'features': return cmdFeatures();
      case 'spec': return cmdSpec(args);
      default: throw new UsageError(`unknown command ${cmd} (see nsbox-runc --help)`);
    }
  } catch (e) {
    const msg = e instanceof OciConfigError || e instanceof UsageError || !(e instanceof Error) ? String((e as Error).message ?? e) : e.message;
    log(g, 'error', msg);
    return 1;
  }
}
