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

/** Option combinations user-mode networking cannot honour; thrown at spawnIsolated's call. */
function checkUserModeOptions(o: SpawnIsolatedOptions): void {
  const join = o.join as Record<string, unknown> | undefined;
  if (join?.net !== undefined) throw new TypeError("options.network { mode: 'user' } cannot be combined with options.join.net");
  if (join?.user !== undefined) throw new TypeError("options.network { mode: 'user' } cannot be combined with options.join.user (the sandbox joins the user namespace that owns its network)");
  if (o.user === false) throw new TypeError("options.network { mode: 'user' } needs a user namespace (options.user cannot be false)");
  if (o.namespaces?.net === false) throw new TypeError("options.network { mode: 'user' } needs a network namespace (options.namespaces.net cannot be false)");
  if (o.namespaces?.user === false) throw new TypeError("options.network { mode: 'user' } needs a user namespace (options.namespaces.user cannot be false)");
}

export function userModeRun(opt: UserNetworkOption, o: SpawnIsolatedOptions, ctx: LayerContext): LayerRun {
  checkUserModeOptions(o);
  let holder: HelperProcess | undefined;
  let helper: UserNetHelper | undefined;
  const nss: Namespace[] = [];
  let files: { hosts: string; resolvConf: string } | undefined;
  let setgroupsDenied = false;
  let maps: { uidMap: IdMap[] | null; gidMap: IdMap[] | null } = { uidMap: null, gidMap: null };
  return {
    async resolve(input: SpawnInput): Promise<SpawnInput> {
      const which = chooseHelper(opt.helper);
      // before anything is made: a host that denies this user /dev/net/tun gets a clear error
      const denied = tunDenied();
      if (denied) throw denied;
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
        h.then(() => reject(new Error('the user-mode network holder exited at once')), reject);
      });
      helper = await startUserNetHelper(which, h.pid!, opt, { launch: (file, args) => launchHelper(ctx, file, args) });
      const user = Namespace.ofProcess(h.pid!, 'user');
      nss.push(user);
      const net = Namespace.ofProcess(h.pid!, 'net');
      nss.push(net);
      files = userNetworkFiles(opt, helper);
      try { setgroupsDenied = readFileSync(`/proc/${h.pid}/setgroups`, 'utf8').trim() === 'deny'; } catch { /* kernel without the file */ }
      maps = { uidMap: readMaps(h.pid!, 'uid_map'), gidMap: readMaps(h.pid!, 'gid_map') };
      const { user: _u, remapUser: _r, ...rest } = io;
      return { ...input, options: { ...rest, network: { join: net }, join: { ...(io.join ?? {}), user } } };
    },
    contribute(plan) {
      return {
        ...(files ? { etcFiles: { hosts: files.hosts, 'resolv.conf': files.resolvConf } } : {}),
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
      // the sandbox is gone: kill the helper and the holder. The holder is reaped at once; a
      // helper's exit waits 15-20 ms for the kernel to unregister its tap, which the
      // sandbox's result need not wait for (networkSettled() does)
      for (const n of nss.splice(0)) n.close();
      holder?.kill('SIGKILL');
      if (helper) trackDeletion(helper.stop());
      await holder?.catch(() => {});
    },
  };
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
