// User-mode networking (`network: { mode: 'user' }`, pasta or slirp4netns). The program must
// find its tap configured when it starts, so the namespaces are made first by a holder sandbox
// (user + net namespace, sleeping) that the helper attaches to; `resolve` then rebuilds the
// sandbox's options to join the holder's user and network namespaces, with the id maps the
// sandbox asked for (the holder was made with them). Holder and helper run through the
// pipeline the layer is lent (LayerContext.spawn), never through an import of it.
import { readFileSync } from 'node:fs';
import { Namespace, type NamespaceType } from '../../ns/namespace.js';
import type { IdMap } from '../../util/idmap.js';
import { trackDeletion, userNetworkFiles } from '../../net/network.js';
import { chooseHelper, startUserNetHelper, tunDenied, type LaunchedHelper, type UserNetHelper, type UserNetworkOption } from '../../net/usernet.js';
import { callerRange, realHost, wantsCallerRange } from '../../plan/index.js';
import type { SpawnIsolatedOptions } from '../../plan/options.js';
import type { HelperProcess, LayerContext, LayerRun, SpawnInput } from '../layer.js';

/** Option combinations a network made in a holder's namespaces cannot honour; thrown at spawnIsolated's call. */
function checkHolderOptions(o: SpawnIsolatedOptions, mode: string): void {
  const join = o.join as Record<string, unknown> | undefined;
  const m = `options.network { mode: '${mode}' }`;
  if (join?.net !== undefined) throw new TypeError(`${m} cannot be combined with options.join.net`);
  if (join?.user !== undefined) throw new TypeError(`${m} cannot be combined with options.join.user (the sandbox joins the user namespace that owns its network)`);
  if (o.user === false) throw new TypeError(`${m} needs a user namespace (options.user cannot be false)`);
  if (o.namespaces?.net === false) throw new TypeError(`${m} needs a network namespace (options.namespaces.net cannot be false)`);
  if (o.namespaces?.user === false) throw new TypeError(`${m} needs a user namespace (options.namespaces.user cannot be false)`);
}

/** What a network made in a holder's namespaces adds once the holder runs (see holderRun). */
export interface HolderAttachment {
  /** /etc/hosts and /etc/resolv.conf inside */
  files?: { hosts: string; resolvConf: string };
  /** more files over /etc/<path> inside (an egress policy's CA bundle) */
  etc?: Record<string, string>;
  /** variables added to the program's environment */
  env?: Record<string, string>;
  /** undoes what attach made (the holder is killed before it); must not throw */
  release(): void | Promise<void>;
}

/**
 * A network in namespaces made first by a holder sandbox (user + network namespace,
 * sleeping): `attach` works in them while nothing else runs there (user-mode networking
 * starts its helper; an egress policy makes its listeners), then the sandbox joins them.
 */
export function holderRun(mode: string, o: SpawnIsolatedOptions, ctx: LayerContext, attach: (holderPid: number, ns: { user: Namespace; net: Namespace }) => Promise<HolderAttachment>, before?: () => void): LayerRun {
  checkHolderOptions(o, mode);
  let holder: HelperProcess | undefined;
  let attached: HolderAttachment | undefined;
  const nss: Namespace[] = [];
  let setgroupsDenied = false;
  let maps: { uidMap: IdMap[] | null; gidMap: IdMap[] | null } = { uidMap: null, gidMap: null };
  return {
    async resolve(input: SpawnInput): Promise<SpawnInput> {
      before?.();
      const io = input.options;
      // an unprivileged caller's sandbox that needs more ids than its own: the holder's user
      // namespace maps the caller's subordinate range (the sandbox joins it)
      const range = io.user === undefined && realHost.euid !== 0 && wantsCallerRange(io, input.imageRoot) ? callerRange(realHost) : null;
      const holderUser = range && 'helpers' in range ? { uidMap: range.uidMap, gidMap: range.gidMap } : io.user;
      const h = ctx.spawn('sleep', ['infinity'], {
        ...(holderUser !== undefined ? { user: holderUser } : {}),
        ...(io.remapUser !== undefined ? { remapUser: io.remapUser } : {}),
        namespaces: { pid: false, mount: false, uts: false, ipc: false, cgroup: false, net: true, user: true },
        stdio: 'ignore',
        network: 'none',
      });
      holder = h;
      h.catch(() => {});
      await new Promise<void>((resolve, reject) => {
        h.once('spawn', () => resolve());
        h.then(() => reject(new Error(`the ${mode} network's holder exited at once`)), reject);
      });
      const user = Namespace.ofProcess(h.pid!, 'user');
      nss.push(user);
      const net = Namespace.ofProcess(h.pid!, 'net');
      nss.push(net);
      attached = await attach(h.pid!, { user, net });
      try { setgroupsDenied = readFileSync(`/proc/${h.pid}/setgroups`, 'utf8').trim() === 'deny'; } catch { /* kernel without the file */ }
      maps = { uidMap: readMaps(h.pid!, 'uid_map'), gidMap: readMaps(h.pid!, 'gid_map') };
      const { user: _u, remapUser: _r, ...rest } = io;
      return { ...input, options: { ...rest, network: { join: net }, join: { ...(io.join ?? {}), user } } };
    },
    contribute(plan) {
      const files = attached?.files;
      return {
        ...(files || attached?.etc ? { etcFiles: { ...(files ? { hosts: files.hosts, 'resolv.conf': files.resolvConf } : {}), ...attached?.etc } } : {}),
        ...(attached?.env ? { env: attached.env } : {}),
        // An unprivileged caller's user namespace denies setgroups(2) (the holder's gid_map was
        // written that way). The planner only knows that for namespaces it creates; for this
        // joined one the sandbox would fail at setgroups([]), which has nothing to drop here.
        ...(setgroupsDenied && plan.groups.length === 0 ? { setGroups: false as const } : {}),
      };
    },
    report(plan) {
      // The holder made the user and network namespaces for this sandbox alone (the helper
      // works in them, nothing else does): they are reported as the sandbox's own, with the
      // maps the holder was given, as explain() plans them, not as a caller's join.
      const own = new Set<NamespaceType>(['user', 'net']);
      const made = new Set<NamespaceType>([...plan.summary.namespaces, ...own]);
      return {
        namespaces: NS_ORDER.filter((t) => made.has(t)),
        joined: plan.summary.joined.filter((t) => !own.has(t)),
        ...maps,
      };
    },
    async release() {
      // the sandbox is gone: undo the attachment and kill the holder. The holder is reaped at
      // once; a user-mode helper's exit waits 15-20 ms for the kernel to unregister its tap,
      // which the sandbox's result need not wait for (networkSettled() does)
      for (const n of nss.splice(0)) n.close();
      holder?.kill('SIGKILL');
      try { await attached?.release(); } catch { /* release never throws */ }
      await holder?.catch(() => {});
    },
  };
}

export function userModeRun(opt: UserNetworkOption, o: SpawnIsolatedOptions, ctx: LayerContext): LayerRun {
  let which: ReturnType<typeof chooseHelper>;
  return holderRun('user', o, ctx, async (pid) => {
    const helper: UserNetHelper = await startUserNetHelper(which, pid, opt, { launch: (file, args) => launchHelper(ctx, file, args) });
    return { files: userNetworkFiles(opt, helper), release: () => { trackDeletion(helper.stop()); } };
  }, () => {
    which = chooseHelper(opt.helper);
    // before anything is made: a host that denies this user /dev/net/tun gets a clear error
    const denied = tunDenied();
    if (denied) throw denied;
  });
}

const NS_ORDER: NamespaceType[] = ['user', 'pid', 'mount', 'uts', 'ipc', 'net', 'cgroup', 'time'];

/** A process's id map as the caller sees it (/proc/<pid>/uid_map or gid_map), or null if it cannot be read. */
function readMaps(pid: number, file: 'uid_map' | 'gid_map'): IdMap[] | null {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8').trim().split('\n').filter(Boolean).map((l) => {
      const [inside, outside, count] = l.trim().split(/\s+/).map(Number);
      return { inside: inside!, outside: outside!, count: count! };
    });
  } catch {
    return null;
  }
}

/** What pasta needs as root: enter the holder's namespaces, make its tap, bind published ports, drop to itself. */
const PASTA_CAPS = ['CAP_SYS_ADMIN', 'CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE', 'CAP_SETUID', 'CAP_SETGID'];

/**
 * Starts a helper in the host's namespaces with the caller's rights (as root: only the
 * capabilities pasta uses), through nsbox's own launcher rather than child_process, for the
 * parent-death signal: the helper is SIGKILLed when the Node thread that started it dies.
 */
async function launchHelper(ctx: LayerContext, file: string, args: string[]): Promise<LaunchedHelper> {
  const root = process.geteuid?.() === 0;
  const p = ctx.spawn(file, args, {
    user: false,
    namespaces: { user: false, pid: false, mount: false, uts: false, ipc: false, net: false, cgroup: false },
    capabilities: root ? PASTA_CAPS : [],
    seccomp: 'none',
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {},
  });
  let finished = false;
  const result = Promise.resolve(p).then((r) => { finished = true; return { code: r.exitCode ?? (r.signal ? 128 : null), stderr: String(r.stderr).split('\n').filter((l) => l && !/^Failed to send .* to syslog/.test(l)).join('; ') }; });
  result.catch(() => { finished = true; });
  await new Promise<void>((resolve, reject) => {
    p.once('spawn', () => resolve());
    result.then(() => resolve(), reject);
  });
  return {
    pid: p.pid!,
    done: () => finished,
    result: () => result,
    kill: () => { p.kill('SIGKILL'); },
  };
}
