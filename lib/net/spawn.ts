// Wires the `network` option into spawnIsolated through the spawn extension hook: the option
// is validated when spawnIsolated is called (a bad value throws before anything is made),
// the host side is prepared before spawn, plan.net carries the hand-off done before "go",
// and release runs after exit.
import { randomBytes } from 'node:crypto';
import { registerSpawnExtension, spawnIsolated, type IsolatedProcess, type SpawnInput } from '../spawn/spawn.js';
import { readFileSync } from 'node:fs';
import { provideEtcFiles, type Plan } from '../spawn/plan.js';
import type { SpawnIsolatedOptions } from '../spawn/options.js';
import { Namespace } from '../ns/namespace.js';
import { prepareSandboxNetwork, validateNetworkOption, userNetworkFiles, trackDeletion, type NetworkOption, type PreparedNetwork } from './network.js';
import { onTeardown } from '../spawn/teardown.js';
import { chooseHelper, startUserNetHelper, tunDenied, type LaunchedHelper, type UserNetHelper, type UserNetworkOption } from './usernet.js';

let registered = false;

/**
 * Makes spawnIsolated honour bridge and user-mode networking in `options.network`.
 * Idempotent. `'none'`, `'loopback'` need nothing here (the planner brings `lo` up); `'host'`
 * and `{ join }` are namespace choices the planner makes.
 */
export function enableNetworkForSpawn(): void {
  if (registered) return;
  registered = true;
  registerSpawnExtension((o) => {
    const opt = validateNetworkOption((o as { network?: NetworkOption }).network);
    if (typeof opt === 'string' || 'join' in opt) return undefined;
    if ('mode' in opt && opt.mode === 'user') return userModeExtension(opt as UserNetworkOption, o);
    let prepared: PreparedNetwork | undefined;
    let dropTeardown = () => {};
    return {
      async prepare(plan) {
        prepared = await prepareSandboxNetwork(opt, { id: randomBytes(6).toString('hex'), handoff: 'create' });
        // the thread's teardown deletes the veth (its IPAM entry and nft elements are swept
        // once this process is gone), unless the sandbox is to outlive the thread
        if (prepared.hostLink && o.parentDeathSignal !== false) dropTeardown = onTeardown({ links: [prepared.hostLink] });
        (plan as { net: PreparedNetwork['handoff'] }).net.push(...prepared.handoff);
        plan.netPremade = false; // its namespace receives a link: made for it, no spare
        provideEtcFiles(plan, { hosts: prepared.files.hosts, 'resolv.conf': prepared.files.resolvConf });
      },
      async release() {
        // the result need not wait ~20 ms for the kernel to delete the veth (networkSettled() does)
        dropTeardown();
        await prepared?.release({ waitForLinks: false });
      },
    };
  });
}

/** Option combinations user-mode networking cannot honour; thrown at spawnIsolated's call. */
function checkUserModeOptions(o: SpawnIsolatedOptions): void {
  const join = o.join as Record<string, unknown> | undefined;
  if (join?.net !== undefined) throw new TypeError("options.network { mode: 'user' } cannot be combined with options.join.net");
  if (join?.user !== undefined) throw new TypeError("options.network { mode: 'user' } cannot be combined with options.join.user (the sandbox joins the user namespace that owns its network)");
  if (o.user === false) throw new TypeError("options.network { mode: 'user' } needs a user namespace (options.user cannot be false)");
  if (o.namespaces?.net === false) throw new TypeError("options.network { mode: 'user' } needs a network namespace (options.namespaces.net cannot be false)");
  if (o.namespaces?.user === false) throw new TypeError("options.network { mode: 'user' } needs a user namespace (options.namespaces.user cannot be false)");
}

/**
 * User-mode networking. The program must find its tap configured when it starts, and the
 * spawn hooks offer no point between clone and "go", so the namespaces are made first by a
 * holder sandbox (user + net namespace, sleeping) that the helper attaches to; `resolve`
 * then rebuilds the sandbox's options to join the holder's user and network namespaces,
 * with the id maps the sandbox asked for (the holder was made with them).
 */
function userModeExtension(opt: UserNetworkOption, o: SpawnIsolatedOptions) {
  checkUserModeOptions(o);
  let holder: IsolatedProcess | undefined;
  let helper: UserNetHelper | undefined;
  const nss: Namespace[] = [];
  let files: { hosts: string; resolvConf: string } | undefined;
  let setgroupsDenied = false;
  return {
    async resolve(input: SpawnInput): Promise<SpawnInput> {
      const which = chooseHelper(opt.helper);
      // before anything is made: a host that denies this user /dev/net/tun gets a clear error
      const denied = tunDenied();
      if (denied) throw denied;
      const io = input.options;
      holder = spawnIsolated('sleep', ['infinity'], {
        ...(io.user !== undefined ? { user: io.user } : {}),
        ...(io.remapUser !== undefined ? { remapUser: io.remapUser } : {}),
        namespaces: { pid: false, mount: false, uts: false, ipc: false, cgroup: false, net: true, user: true },
        stdio: 'ignore',
        network: 'none',
      });
      holder.catch(() => {});
      await new Promise<void>((resolve, reject) => {
        holder!.once('spawn', () => resolve());
        holder!.then(() => reject(new Error('the user-mode network holder exited at once')), reject);
      });
      helper = await startUserNetHelper(which, holder.pid!, opt, { launch: launchHelper });
      const user = Namespace.ofProcess(holder.pid!, 'user');
      nss.push(user);
      const net = Namespace.ofProcess(holder.pid!, 'net');
      nss.push(net);
      files = userNetworkFiles(opt, helper);
      try { setgroupsDenied = readFileSync(`/proc/${holder.pid}/setgroups`, 'utf8').trim() === 'deny'; } catch { /* kernel without the file */ }
      const { user: _u, remapUser: _r, ...rest } = io;
      return { ...input, options: { ...rest, network: { join: net }, join: { ...(io.join ?? {}), user } } };
    },
    prepare(plan: Plan) {
      if (files) provideEtcFiles(plan, { hosts: files.hosts, 'resolv.conf': files.resolvConf });
      // An unprivileged caller's user namespace denies setgroups(2) (the holder's gid_map was
      // written that way). The planner only knows that for namespaces it creates; for this
      // joined one the sandbox would fail at setgroups([]), which has nothing to drop here.
      if (setgroupsDenied && plan.groups.length === 0) plan.setGroups = false;
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

/** What pasta needs as root: enter the holder's namespaces, make its tap, bind published ports, drop to itself. */
const PASTA_CAPS = ['CAP_SYS_ADMIN', 'CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE', 'CAP_SETUID', 'CAP_SETGID'];

/**
 * Starts a helper in the host's namespaces with the caller's rights (as root: only the
 * capabilities pasta uses), through nsbox's own launcher rather than child_process, for the
 * parent-death signal: the helper is SIGKILLed when the Node thread that started it dies.
 */
async function launchHelper(file: string, args: string[]): Promise<LaunchedHelper> {
  const root = process.geteuid?.() === 0;
  const p = spawnIsolated(file, args, {
    user: false,
    namespaces: { user: false, pid: false, mount: false, uts: false, ipc: false, net: false, cgroup: false },
    capabilities: root ? PASTA_CAPS : [],
    seccomp: 'none',
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {},
  });
  let finished = false;
  const result = p.then((r) => { finished = true; return { code: r.exitCode ?? (r.signal ? 128 : null), stderr: String(r.stderr).split('\n').filter((l) => l && !/^Failed to send .* to syslog/.test(l)).join('; ') }; });
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
