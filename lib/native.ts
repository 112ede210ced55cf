// Loads the addon and types its raw functions. Everything here is internal: the public API
// validates arguments before it calls any of these.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NsboxError } from './errors.js';

export interface ExitInfo {
  exitCode?: number;
  signal?: number;
  coreDumped?: boolean;
  error?: number;
  utimeUs: number;
  stimeUs: number;
  maxRssKb: number;
}

export interface SpawnOutput {
  /** Read end of nsbox-init's status pipe, or -1 without init. */
  statusFd: number;
  /** The terminal's master with `tty`, else -1. */
  ttyFd: number;
  /** A prepared sandbox's run socket (plan.serve), else -1. */
  ctlFd: number;
  /** The sandbox's mount namespace, held so its exit is reported before the teardown; -1 if none. */
  mntNsFd: number;
  pid: number;
  pidfd: number;
  /** our ends of stdio socketpairs, -1 where not piped */
  stdio: [number, number, number];
}

/**
 * What the teardown of a thread (worker end, process.exit) undoes for a sandbox its owner has
 * not released yet, synchronously, in this order: kill, reap and close `pidfds` (sandboxes
 * not watched yet), close fds, kill every task of and remove
 * cgroup directories, detach mounts, remove directory trees, unlink files, delete links.
 */
export interface TeardownRecord {
  pidfds?: number[];
  fds?: number[];
  cgroups?: string[];
  mounts?: string[];
  dirs?: string[];
  files?: string[];
  links?: string[];
}

export interface NsInfo {
  nstype: number;
  inode: number;
  dev: number;
  ownerInode?: number;
}

export interface NativeAddon {
  setErrorClass(cls: typeof NsboxError): void;
  /** `ops`: plan.ops in the binary form of encodeOps (else they are read from plan.ops) */
  /** `template`: the view template's build ops, encoded (plan.template); then `ops` are the child's in a copy of it */
  /**
   * The plan is read at once (a malformed one throws); the rest (clone, id maps, the handshake
   * until the child has exec'd) runs on the addon's spawner thread, off the event loop, and
   * `cb` gets the outcome on the loop.
   */
  spawn(plan: object, ops: Buffer | undefined, template: Buffer | undefined, cb: (err: Error | null, out: SpawnOutput | null) => void, bindings?: object): void;
  /** Closes the view templates the addon keeps (the next spawn of a view builds its own again). */
  dropTemplates(): void;
  /** Starts making a spare network namespace (for sandboxes with Plan.netPremade) unless one is there or on its way. */
  startSpare(): void;
  /** With `initKill`, asks nsbox-init (pid 1) to end the sandbox instead (`sig` unused). */
  pidfdSignal(pidfd: number, sig: number, initKill?: boolean): number;
  /** Closes fd; `later`: on the thread pool (a namespace's last reference tears it down there). */
  closeFd(fd: number, later?: boolean): void;
  /** A listening unix stream socket bound at `path` (file mode `mode`); its fd (close-on-exec). addon/src/lifecycle.cc */
  unixListen(path: string, mode: number): number;
  /** pidfd_open(pid): the fd (close-on-exec), or a negative errno. */
  pidfdOpen(pid: number): number;
  ttyResize(fd: number, rows: number, cols: number): void;
  /** Sends the run and returns at once: `errFd` ends (EOF) once the program has exec'd, or brings a failure report first (childError). */
  serveRun(ctlFd: number, run: { cwd: string; exec: string[]; argv: string[]; envp: string[]; stdio: Array<{ kind: number; fd: number }> }): { stdio: [number, number, number]; errFd: number };
  /** The NsboxError of a failure report read from an error pipe, or null. */
  childError(report: Buffer): Error | null;
  /**
   * Takes ownership of pidfd (and of statusFd, nsbox-init's report of the program's status).
   * `keep`: the sandbox outlives this thread (parentDeathSignal: false); else the thread's
   * teardown kills and reaps it.
   */
  watchExit(pidfd: number, cb: (info: ExitInfo) => void, statusFd?: number, keep?: boolean): void;
  /** A number unique in this process across threads and library copies (for host object names). */
  processSeq(): number;
  /** Registers what the thread's teardown undoes if its owner has not released it by then; returns the record's id. */
  teardownAdd(record: TeardownRecord): number;
  /** The owner released it: forget the record. */
  teardownDrop(id: number): void;
  /** Runs the teardown now (the main thread's process.on('exit')): kills and reaps the sandboxes, undoes every record. */
  teardownRun(): void;
  refWatch(pidfd: number, ref: boolean): void;
  nsOpen(path: string): number;
  nsInfo(fd: number): NsInfo;
  nsOwner(fd: number): number;
  nsPersist(fd: number, target: string): void;
  nsRemove(path: string): void;
  getxattr(path: string, name: string): Buffer | null;
  setxattr(path: string, name: string, value: Buffer): void;
  removexattr(path: string, name: string): void;
  // other kernel areas add theirs (caps.cc, cgroup.cc, netlink_bindings.cc, nft.cc, seccomp.cc)
  [name: string]: unknown;
}

export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'binding.gyp'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('nsbox: cannot find the package root (package.json next to binding.gyp)');
}

let cached: NativeAddon | undefined;

/** The addon, loaded once. `NSBOX_ADDON=/path/to/nsbox.node` overrides the search. */
export function native(): NativeAddon {
  if (cached) return cached;
  if (process.platform !== 'linux') throw new Error(`nsbox runs on Linux only (this is ${process.platform})`);
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  let addon: NativeAddon | undefined;
  const override = process.env.NSBOX_ADDON;
  try {
    if (override) {
      tried.push(override);
      addon = require(override) as NativeAddon;
    } else {
      const root = packageRoot();
      tried.push(`${root}/build/Release/nsbox.node`, `${root}/prebuilds/${process.platform}-${process.arch}/*.node`);
      // a source build's addon where node-gyp-build would take it first (build/Release, no
      // PREBUILDS_ONLY or NSBOX_PREBUILD): loading node-gyp-build and its search of the package
      // cost ~1.7 ms of every Node start (nsbox-runc's create, docs/oci-runtime.md)
      const release = `${root}/build/Release/nsbox.node`;
      if (!process.env.PREBUILDS_ONLY && !process.env.NSBOX_PREBUILD && existsSync(release)) {
        addon = require(release) as NativeAddon;
      } else {
        const load = require('node-gyp-build') as (dir: string) => NativeAddon;
        addon = load(root);
      }
    }
  } catch (err) {
    const e = new Error(
      `nsbox: the native addon did not load (${(err as Error).message.split('\n')[0]}).\n` +
        `Tried: ${tried.join(', ')}.\n` +
        'No prebuilt binary matched this platform, or it failed to load. Build it from source with\n' +
        '  npm rebuild nsbox        (needs python3, make and g++: apt-get install python3 make g++)\n' +
        'or, in a clone of nsbox: npm run build:addon',
    );
    (e as Error & { cause?: unknown }).cause = err;
    throw e;
  }
  addon.setErrorClass(NsboxError);
  // process.exit runs no cleanup hooks on the main thread: the teardown runs from here there
  // (in a worker the addon's own cleanup hook runs it too, where JS no longer can)
  const a = addon;
  process.once('exit', () => a.teardownRun());
  cached = addon;
  return addon;
}
