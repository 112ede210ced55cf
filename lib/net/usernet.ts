// User-mode networking (`network: { mode: 'user' }`), as podman's `--network pasta` and
// `--network slirp4netns`: the sandbox gets a tap device whose traffic a helper process on the
// host (pasta from the passt package, or slirp4netns) carries through ordinary host sockets.
// Needs no privilege: works for root and for unprivileged callers alike, no bridge, no NAT
// rules, nothing host-wide.
//
// The helpers attach to an existing network namespace, and must have configured the tap before
// the program starts. spawnIsolated runs the program as soon as the sandbox is cloned, so (like
// podman's infra/pause process) the namespace is made first, by a holder: a tiny sandbox with a
// user and a network namespace that only sleeps. The helper attaches to the holder by pid; the
// sandbox then joins the holder's user and network namespaces. Lifetimes: the holder dies with
// the Node thread that spawned it (parent-death signal) and on release; pasta exits when its
// target is gone; slirp4netns exits when its exit fd (a pipe from Node) closes. So a killed
// Node process leaves no helper behind.
import type { ChildProcess } from 'node:child_process';
import { spawnChild as cpSpawn } from '../util/builtins.js';
import { accessSync, closeSync, constants as fsConstants, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { Readable } from 'node:stream';
import { NsboxError } from '../errors.js';
import { checkIp, checkLinkName, checkMtu, netError } from './addr.js';
import type { PublishSpec } from './publish.js';

/** User-mode networking through a helper process. */
export interface UserNetworkOption {
  mode: 'user';
  /** `'pasta'` (package passt) or `'slirp4netns'`; default: pasta when installed, else slirp4netns. */
  helper?: 'pasta' | 'slirp4netns';
  /** Host ports forwarded into the sandbox (the helper listens on the host). */
  publish?: PublishSpec[];
  /** Name servers for /etc/resolv.conf; default: the helper's DNS forwarder. */
  dns?: string[];
  /** MTU of the tap; default 65520 (both helpers' default for their own use). */
  mtu?: number;
  /** Name of the tap inside the sandbox, default `eth0`. */
  interfaceName?: string;
  /**
   * Let the sandbox reach the host's loopback services through the gateway address (pasta:
   * the gateway is mapped to the host; slirp4netns: 10.0.2.2). Default false, as podman.
   */
  hostLoopback?: boolean;
  /** Host name written to /etc/hosts (with the sandbox's tap address when known). */
  hostname?: string;
}

export const USER_NET_KEYS = ['mode', 'helper', 'publish', 'dns', 'mtu', 'interfaceName', 'hostLoopback', 'hostname'];

/** The address pasta maps to the host's first resolver (as podman uses). */
export const PASTA_DNS = '169.254.1.1';
/** slirp4netns's fixed addresses. */
export const SLIRP = { address: '10.0.2.100', prefix: 24, gateway: '10.0.2.2', dns: '10.0.2.3' } as const;

/** Checks the user-mode specific fields (publish/dns/hostname are checked by the caller). */
export function validateUserNetwork(o: Record<string, unknown>, what: string): void {
  if (o.helper !== undefined && o.helper !== 'pasta' && o.helper !== 'slirp4netns') {
    throw new RangeError(`${what}.helper must be 'pasta' or 'slirp4netns' (got ${String(o.helper)})`);
  }
  if (o.mtu !== undefined) {
    checkMtu(o.mtu, `${what}.mtu`);
    if ((o.mtu as number) < 1280) throw new RangeError(`${what}.mtu must be at least 1280 for user-mode networking (got ${String(o.mtu)})`);
  }
  if (o.interfaceName !== undefined) checkLinkName(o.interfaceName, `${what}.interfaceName`);
  if (o.hostLoopback !== undefined && typeof o.hostLoopback !== 'boolean') throw new TypeError(`${what}.hostLoopback must be a boolean`);
  if (Array.isArray(o.publish)) {
    o.publish.forEach((p: { hostIp?: string }, i) => {
      if (p.hostIp !== undefined) checkIp(p.hostIp, `${what}.publish[${i}].hostIp`);
    });
  }
}

/** Finds an executable in the caller's PATH (the helpers are looked up like a shell would). */
export function findExecutable(name: string, path = process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin'): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return undefined;
}

/** Which helper to use, or an NsboxError (ENOENT, step 'network') saying what to install. */
export function chooseHelper(want?: 'pasta' | 'slirp4netns'): { name: 'pasta' | 'slirp4netns'; path: string } {
  const order: Array<'pasta' | 'slirp4netns'> = want ? [want] : ['pasta', 'slirp4netns'];
  for (const name of order) {
    const path = findExecutable(name);
    if (path) return { name, path };
  }
  const what = want === 'pasta' ? "pasta (Debian/Ubuntu package 'passt')"
    : want === 'slirp4netns' ? "slirp4netns (package 'slirp4netns')"
    : "pasta (Debian/Ubuntu package 'passt') or slirp4netns (package 'slirp4netns'); neither is installed";
  return fail(2, 'execve', want ?? 'pasta', `user-mode networking needs ${what} in PATH`);
}

/** The device both helpers open (in the sandbox's user namespace) to make the tap. */
export const TUN_DEVICE = '/dev/net/tun';

/**
 * Why this caller cannot use user-mode networking because the host denies it /dev/net/tun, as
 * an NsboxError (EACCES or EPERM, step 'network') that says the fix; undefined when the device
 * opens. Both helpers open it in a user namespace of the caller's, where a device owned by
 * root counts as another user's: what the caller may open on the host is what they get.
 * Root is not checked (the helpers run with root's rights then).
 */
export function tunDenied(): NsboxError | undefined {
  if (process.geteuid?.() === 0) return undefined;
  try {
    closeSync(openSync(TUN_DEVICE, fsConstants.O_RDWR));
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') return undefined; // ENOENT etc.: the helper says what is wrong
    return tunError(code === 'EPERM' ? 1 : 13);
  }
}

function tunError(errno: number): NsboxError {
  let mode = '';
  try { mode = ` (mode ${(statSync(TUN_DEVICE).mode & 0o777).toString(8).padStart(4, '0')})`; } catch { /* unknown */ }
  return netError(errno, 'network', 'open', TUN_DEVICE,
    `the host denies ${TUN_DEVICE} to this user${mode}, and user-mode networking needs it for the sandbox's tap: ` +
    `make it 0666 as Debian does (\`chmod 0666 ${TUN_DEVICE}\`, or a udev rule: KERNEL=="tun", MODE="0666"), or run as root`);
}

/** A helper's failure to open the tun device that comes from the host denying it (pasta says only "Failed to open tun socket in namespace"), as {@link tunDenied}'s error. */
function tunFailure(stderr: string): NsboxError | undefined {
  return /\btun\b|\/dev\/net\/tun/i.test(stderr) ? tunDenied() : undefined;
}

function fail(errno: number, syscall: string, path: string | undefined, detail: string): never {
  throw netError(errno, 'network', syscall, path, detail);
}

/** A helper process started by nsbox's launcher (see lib/net/spawn.ts). */
export interface LaunchedHelper {
  pid: number;
  /** Whether it has exited. */
  done(): boolean;
  /** Its exit, with what it wrote on stderr. */
  result(): Promise<{ code: number | null; stderr: string }>;
  /** SIGKILL. */
  kill(): void;
}

/** A running helper attached to a holder's namespaces. */
export interface UserNetHelper {
  name: 'pasta' | 'slirp4netns';
  pid: number;
  /** The tap's address and gateway when the helper has fixed ones (slirp4netns). */
  address?: string;
  gateway?: string;
  /** Name servers for the sandbox's resolv.conf. */
  dns: string[];
  /** Stops the helper and waits for it to exit. Idempotent, never throws. */
  stop(): Promise<void>;
}

function collect(stream: Readable | null | undefined): () => string {
  let text = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (d: string) => { if (text.length < 4096) text += d; });
  return () => text.split('\n').filter((l) => l && !/^Failed to send .* to syslog/.test(l)).join('; ');
}

function exited(c: ChildProcess): Promise<void> {
  return c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', () => r()));
}

/**
 * Starts `helper` for the network namespace of `holderPid` (joining the holder's user
 * namespace first, which is what lets an unprivileged helper configure it) and resolves once
 * the tap is configured. A failure is an NsboxError (step 'network') carrying the helper's
 * own words; nothing is left running.
 */
export async function startUserNetHelper(
  helper: { name: 'pasta' | 'slirp4netns'; path: string },
  holderPid: number,
  o: UserNetworkOption,
  opts: { launch: (file: string, args: string[]) => Promise<LaunchedHelper> },
): Promise<UserNetHelper> {
  const ifname = o.interfaceName ?? 'eth0';
  const mtu = o.mtu ?? 65520;
  const publish = (o.publish ?? []).map((p) => ({ ...p, protocol: p.protocol ?? 'tcp' }));
  // a private directory for pasta's pid file or slirp4netns's API socket, removed as soon as
  // the helper is set up (neither needs it afterwards), so a killed Node process leaves none
  const dir = mkdtempSync(join(tmpdir(), `nsbox-usernet-${process.pid}-`)); // the pid: for the sweep
  const cleanupDir = () => { try { rmSync(dir, { recursive: true, force: true }); } catch { /* gone */ } };
  let child: ChildProcess | undefined;
  let pastaProc: LaunchedHelper | undefined;
  try {
    if (helper.name === 'pasta') {
      const spec = (proto: 'tcp' | 'udp') => publish.filter((p) => p.protocol === proto)
        .map((p) => `${p.hostIp && p.hostIp !== '0.0.0.0' ? `${p.hostIp}/` : ''}${p.host}:${p.container}`);
      const ports = (flag: string, specs: string[]) => (specs.length ? specs.flatMap((s) => [flag, s]) : [flag, 'none']);
      const pidFile = join(dir, 'pasta.pid');
      const args = [
        '--foreground', '--quiet', '--stderr',
        // as root, pasta would switch to 'nobody', who may not enter the holder's namespaces;
        // root owns the holder's user namespace, and pasta still drops its capabilities
        ...(process.geteuid?.() === 0 ? ['--runas', '0:0'] : []),
        '--config-net', '--ns-ifname', ifname, '--mtu', String(mtu),
        '--dns-forward', PASTA_DNS,
        ...(o.hostLoopback ? [] : ['--no-map-gw']),
        ...ports('--tcp-ports', spec('tcp')), ...ports('--udp-ports', spec('udp')),
        '--tcp-ns', 'none', '--udp-ns', 'none',
        '--pid', pidFile,
        String(holderPid),
      ];
      // pasta has no exit fd and, in this version, keeps running when its target is gone: it
      // is started by nsbox's own launcher, in the host's namespaces with the caller's rights,
      // so that it gets the parent-death signal (SIGKILL when the spawning Node thread dies)
      const launch = opts.launch;
      const c = await launch(helper.path, args);
      pastaProc = c;
      const t0 = Date.now();
      for (;;) {
        let pidText = '';
        try { pidText = readFileSync(pidFile, 'utf8'); } catch { /* not yet */ }
        if (pidText.trim()) break;
        if (c.done()) {
          const r = await c.result();
          const denied = tunFailure(r.stderr);
          if (denied) throw denied;
          fail(5, 'pasta', helper.path, `pasta exited (${r.code}) before the network was up: ${r.stderr || 'no message'}`);
        }
        if (Date.now() - t0 > 10_000) fail(110, 'pasta', helper.path, 'pasta did not configure the network within 10 s');
        await new Promise((r) => setTimeout(r, 2));
      }
      cleanupDir();
      let stopped = false;
      return {
        name: 'pasta', pid: c.pid, dns: [PASTA_DNS],
        async stop() {
          if (stopped) return;
          stopped = true;
          c.kill();
          await c.result().catch(() => {});
        },
      };
    }

    // slirp4netns: fd 3 is its ready fd (it writes "1"), fd 4 its exit fd (it exits on EOF)
    const api = publish.length ? join(dir, 'slirp.sock') : undefined;
    const args = [
      '--configure', `--mtu=${mtu}`, ...(o.hostLoopback ? [] : ['--disable-host-loopback']),
      '--ready-fd=3', '--exit-fd=4', `--userns-path=/proc/${holderPid}/ns/user`,
      ...(api ? ['--api-socket', api] : []),
      String(holderPid), ifname,
    ];
    const c = cpSpawn(helper.path, args, { stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] });
    child = c;
    const err = collect(c.stderr);
    collect(c.stdout);
    const ready = c.stdio[3] as Readable;
    const exitFd = c.stdio[4] as unknown as { destroy(): void; on(e: string, f: () => void): void };
    exitFd.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { c.kill('SIGKILL'); }, 10_000);
      ready.once('data', () => { clearTimeout(timer); resolve(); });
      c.once('error', (e) => { clearTimeout(timer); reject(netError(Math.abs((e as NodeJS.ErrnoException).errno ?? 5), 'network', 'execve', helper.path, `could not start slirp4netns: ${e.message}`)); });
      c.once('exit', (code, sig) => { clearTimeout(timer); reject(tunFailure(err()) ?? netError(5, 'network', 'slirp4netns', helper.path, `slirp4netns exited (${code ?? sig}) before the network was up: ${err() || 'no message'}`)); });
    });
    ready.resume();
    if (api) {
      for (const [i, p] of publish.entries()) {
        const res = await slirpApi(api, {
          execute: 'add_hostfwd',
          arguments: { proto: p.protocol, host_addr: p.hostIp ?? '0.0.0.0', host_port: p.host, guest_port: p.container },
        });
        if (res.error) {
          const desc = String(res.error.desc ?? JSON.stringify(res.error));
          fail(/in use/i.test(desc) ? 98 : 22, 'add_hostfwd', undefined, `slirp4netns could not publish options.network.publish[${i}] (${p.hostIp ?? '0.0.0.0'}:${p.host}/${p.protocol}): ${desc}`);
        }
      }
    }
    cleanupDir();
    let stopped = false;
    return {
      name: 'slirp4netns', pid: c.pid!, address: SLIRP.address, gateway: SLIRP.gateway, dns: [SLIRP.dns],
      async stop() {
        if (stopped) return;
        stopped = true;
        // the sandbox is gone: nothing to flush; closing the exit fd alone takes slirp4netns
        // tens of ms to notice, so it is killed outright (the fd stays its guard against a
        // dying Node process)
        exitFd.destroy();
        c.kill('SIGKILL');
        await exited(c);
      },
    };
  } catch (e) {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited(child);
    }
    if (pastaProc && !pastaProc.done()) {
      pastaProc.kill();
      await pastaProc.result().catch(() => {});
    }
    cleanupDir();
    throw e instanceof NsboxError || e instanceof TypeError || e instanceof RangeError ? e : netError(5, 'network', helper.name, helper.path, String((e as Error).message));
  }
}

/** One request on slirp4netns's API socket (one JSON object each way). */
function slirpApi(path: string, req: object): Promise<{ return?: unknown; error?: { desc?: string } }> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let data = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.end(JSON.stringify(req)));
    s.on('data', (d: string) => (data += d));
    s.on('error', (e) => reject(netError(Math.abs((e as NodeJS.ErrnoException).errno ?? 5), 'network', 'connect', path, `slirp4netns API: ${e.message}`)));
    s.on('close', () => {
      try { resolve(JSON.parse(data)); } catch { reject(netError(5, 'network', 'read', path, `slirp4netns API answered '${data}'`)); }
    });
  });
}
