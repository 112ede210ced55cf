import type { Namespace, NamespaceType } from '../ns/namespace.js';
import type { IdMap } from '../util/idmap.js';
import type { CGroup } from '../cgroup/cgroup.js';
import type { SandboxLimits } from '../cgroup/limits.js';
import type { NetworkOption } from '../net/network.js';
import type { EgressHostStats } from '../net/egress/service.js';
import type { SeccompOption } from '../security/seccomp/option.js';
import type { ImageInfo } from '../fs/store.js';
import type { ProcessCapabilities } from '../security/capabilities.js';

export type { NamespaceType } from '../ns/namespace.js';
export type { IdMap } from '../util/idmap.js';

/** Mount propagation of a mount inside the sandbox. */
export type Propagation = 'private' | 'shared' | 'slave' | 'unbindable';

/** A mount made inside the sandbox, in the order given, after the base view. */
export interface Mount {
  /** `'bind'` (a host path), `'tmpfs'`, `'proc'`, `'mqueue'`, or any other filesystem type. */
  type: 'bind' | 'tmpfs' | 'proc' | 'mqueue' | (string & {});
  /** Host path for `'bind'` (absolute); the device/source string for other types. */
  source?: string;
  /** Absolute path inside the sandbox. May not contain `..`. */
  target: string;
  /** Read-only mount. Default: `false` for bind and tmpfs. */
  readonly?: boolean;
  /** Propagation type of the new mount. Default `'private'`. */
  propagation?: Propagation;
  /** Filesystem data options, e.g. `'size=64m,mode=1777'` for tmpfs. */
  options?: string;
  /** Bind: the source is a file (the target is created as an empty file). Detected when omitted. */
  file?: boolean;
  /** Not executable (MS_NOEXEC). Default `false`. */
  noexec?: boolean;
  /**
   * Set-id bits ignored (MS_NOSUID). Default `true`; `false` is a relaxation, reported in
   * `result.isolation.relaxedMounts`.
   */
  nosuid?: boolean;
  /**
   * Device files not usable (MS_NODEV). Default `true`; `false` is a relaxation, reported in
   * `result.isolation.relaxedMounts`.
   */
  nodev?: boolean;
  /**
   * tmpfs only: the new tmpfs starts with a copy of what the directory under it holds (files,
   * directories, symlinks and fifos with their modes, owners and times; device nodes and
   * sockets are left out; an owner the sandbox's user namespace does not map becomes its
   * root), as OCI's `tmpcopyup`. Writes go to the tmpfs only.
   */
  copyUp?: boolean;
}

/**
 * A device node made by number in the sandbox's /dev (mknod; OCI `linux.devices`), rather than
 * the host's node bound in. Root and a sandbox without a user namespace (`user: false`) only:
 * elsewhere a TypeError says so (the kernel makes nodes on a user namespace's /dev unusable).
 * Type `'p'` is a FIFO (no numbers; any sandbox).
 */
export interface DeviceNode {
  /** Where, under /dev. */
  target: string;
  /** character, block, or a FIFO */
  type: 'c' | 'b' | 'p';
  /** c and b only */
  major?: number;
  minor?: number;
  /** Permission bits, default 0o666. */
  mode?: number;
  /** Owner, default 0:0. */
  uid?: number;
  gid?: number;
}

/** Resource limits (setrlimit). A number sets soft and hard; `{ soft, hard }` sets both apart. */
export type RlimitValue = number | { soft: number; hard: number };
export interface Rlimits {
  /** RLIMIT_AS, bytes */
  as?: RlimitValue;
  /** RLIMIT_CORE, bytes. Default 0 (no core dumps inside the sandbox). */
  core?: RlimitValue;
  /** RLIMIT_CPU, seconds */
  cpu?: RlimitValue;
  /** RLIMIT_DATA, bytes */
  data?: RlimitValue;
  /** RLIMIT_FSIZE, bytes */
  fsize?: RlimitValue;
  /** RLIMIT_LOCKS */
  locks?: RlimitValue;
  /** RLIMIT_MEMLOCK, bytes */
  memlock?: RlimitValue;
  /** RLIMIT_MSGQUEUE, bytes */
  msgqueue?: RlimitValue;
  /** RLIMIT_NICE */
  nice?: RlimitValue;
  /** RLIMIT_NOFILE */
  nofile?: RlimitValue;
  /** RLIMIT_NPROC (counted per real uid of the host: with the default id map, per sandbox range) */
  nproc?: RlimitValue;
  /** RLIMIT_RSS */
  rss?: RlimitValue;
  /** RLIMIT_RTPRIO */
  rtprio?: RlimitValue;
  /** RLIMIT_RTTIME, microseconds */
  rttime?: RlimitValue;
  /** RLIMIT_SIGPENDING */
  sigpending?: RlimitValue;
  /** RLIMIT_STACK, bytes */
  stack?: RlimitValue;
}

/** What to do with one of the sandbox's stdin/stdout/stderr. */
/** The five capability sets of `options.capabilities`' object form; a set left out is empty. */
export interface CapabilitySetsOption {
  bounding?: string[];
  effective?: string[];
  permitted?: string[];
  inheritable?: string[];
  ambient?: string[];
}

export type StdioOption = 'pipe' | 'inherit' | 'ignore' | number;

/** Options of {@link spawnIsolated}. Every field is optional; the defaults are the strongest isolation that works without configuration. */
export interface SpawnIsolatedOptions {
  /**
   * Root filesystem: an absolute host directory, bind-mounted as `/`. Default: none, and the
   * sandbox sees the host's `/usr`, `/bin`, `/sbin`, `/lib*`, `/etc` read-only plus fresh empty
   * `/tmp`, `/home`, `/root`, `/run`, `/var/tmp` (see README "The default view").
   */
  rootfs?: string | {
    path: string;
    readonly?: boolean;
    /**
     * A fresh tmpfs on the rootfs's `/tmp` (when it is a real directory). Default `true`;
     * `false` leaves `/tmp` as the rootfs has it. A caller's mount at `/tmp` replaces it either way.
     */
    tmp?: boolean;
  };
  /**
   * Run an image from a layer store instead of a rootfs (see `LayerStore`): the image's config
   * (env, entrypoint/cmd, working dir, user) applies and these options override it. Needs the
   * filesystem layer (`import 'nsbox'` registers it).
   */
  image?: ImageSpec;
  /** Hostname inside (new uts namespace). Default `'nsbox'`. */
  hostname?: string;
  /** NIS domain name inside. Default: unset (`(none)`). */
  domainname?: string;
  /** Working directory inside the sandbox. Default `'/'`. */
  cwd?: string;
  /** The whole environment of the program. Default: `PATH` (a standard list) and `HOME` only. */
  env?: Record<string, string>;
  /** uid inside the sandbox. Default 0 (mapped to an unprivileged host uid, see `user`). */
  uid?: number;
  /** gid inside the sandbox. Default: `uid`'s value. */
  gid?: number;
  /** Supplementary groups inside. Default none. */
  groups?: number[];
  /** Which namespaces to create. Defaults: all true except `time`. */
  namespaces?: Partial<Record<NamespaceType, boolean>>;
  /**
   * User namespace id maps. Default: as root, sandbox ids 0..65535 map to a 64Ki block of host
   * ids of this sandbox's own while it lives (from the `nsbox` user's /etc/subuid and
   * /etc/subgid ranges when they hold more than one block, else from 0x6C000000-0x6FFFFFFF,
   * block 0 at 0x6FFF0000; see README "user ids"); with `remapUser`, that user's range as
   * given; as another user, sandbox root maps to the caller. `false`: no user namespace (host
   * ids). Given maps are used as they are (no block).
   */
  user?: false | { uidMap: IdMap[]; gidMap: IdMap[] };
  /** The /etc/subuid and /etc/subgid user whose range (the first 65536 ids of it, or 0x6FFF0000.. when it has none) every sandbox of a root caller then shares; default: a block per sandbox. */
  remapUser?: string;
  /**
   * Propagation of the sandbox's mount tree. Default `'private'`: nothing propagates either way.
   * `'slave'`: mounts and unmounts under the host's tree reach the sandbox's copy, not back.
   * `'shared'`: as `'slave'`, and the sandbox's root is then made shared (recursively), a peer
   * group of its own: mounts made under it reach its other copies (binds of it, namespaces made
   * inside), never the host. `'unbindable'`: private, and the sandbox's root unbindable
   * (recursively) once made.
   */
  rootPropagation?: 'private' | 'slave' | 'shared' | 'unbindable';
  /**
   * Extra mounts, in order, after the base view. A mount at one of the view's own points with
   * its type (`proc` at `/proc`, `tmpfs` at `/dev`, `devpts` at `/dev/pts`, `tmpfs` at
   * `/dev/shm`, `sysfs` at `/sys`, `tmpfs` at `/tmp`) replaces nsbox's mount there, with its own
   * flags and options; /dev still gets nsbox's device nodes, links and (unless replaced) pts and shm.
   */
  mounts?: Mount[];
  /**
   * Paths masked with an empty read-only file or directory owned by nsbox (never a path of the
   * rootfs). Default: Docker's list (`/proc/kcore`, `/proc/keys`, `/proc/timer_list`,
   * `/proc/sched_debug`, `/proc/acpi`, `/proc/scsi`, `/sys/firmware`, ...; see
   * `DEFAULT_MASKED_PATHS`). `[]` masks nothing. Paths missing on this kernel are skipped.
   */
  maskedPaths?: string[];
  /** Paths made read-only. Default `/proc/{bus,fs,irq,sys,sysrq-trigger}`; `[]` for none. */
  readonlyPaths?: string[];
  /**
   * Host device nodes to add to the sandbox's `/dev` (bind mounts; nosuid, noexec), e.g.
   * `'/dev/fuse'` or `{ path: '/dev/net/tun', readonly: false }`. Default: none beyond null,
   * zero, full, random, urandom, tty and a private devpts.
   */
  devices?: Array<string | { path: string; target?: string; readonly?: boolean } | DeviceNode>;
  /** Existing namespaces to enter instead of creating new ones. */
  join?: Partial<Record<NamespaceType, Namespace>>;
  /**
   * Capabilities the program keeps; all others are dropped from every set, bounding included.
   * Default none. Names as `'CAP_NET_RAW'` or `'net_raw'`.
   *
   * - An array: these in the bounding, permitted, effective and inheritable sets, and in the
   *   ambient set too when the program's uid is not 0 (so a non-root program has them).
   * - An object `{ bounding, effective, permitted, inheritable, ambient }` (OCI's
   *   `process.capabilities`): each set exactly as given; **a set left out is empty**. Refused
   *   with a RangeError naming the set where the kernel would refuse it: effective ⊆ permitted,
   *   inheritable ⊆ bounding, ambient ⊆ permitted ∩ inheritable. Permitted (and so effective)
   *   beyond bounding is taken, as capset(2) takes it. These are the sets set just before
   *   execve, which computes the program's permitted and effective sets from them
   *   (capabilities(7), for a file without capabilities): for uid 0, bounding ∪ inheritable,
   *   and under no_new_privs (the default) only what was in permitted; for another uid, the
   *   ambient set. Bounding, inheritable and ambient stay as given.
   */
  capabilities?: string[] | CapabilitySetsOption;
  /** Keep `no_new_privs` off. Default `false` (no_new_privs is set). */
  allowNewPrivileges?: boolean;
  /**
   * Allow user namespaces inside the sandbox (the default seccomp profile still denies them;
   * pair with `seccomp: 'none'` or a profile that allows them). Default false: the sandbox's
   * own `user.max_user_namespaces` is 0.
   */
  nestedUserNamespaces?: boolean;
  /**
   * Whether a default view may come from nsbox's view template (see README, "The view
   * template"; a non-root caller's is made in a user namespace of nsbox's own): a locked copy
   * of a read-only skeleton built once, with a read-only `/dev`, and for a sandbox keeping no
   * capabilities a network namespace made ahead.
   * `false` builds the whole view for this sandbox (a writable `/dev`). Default `true`; the
   * environment variable `NSBOX_VIEW_TEMPLATE=0` turns it off for the process.
   */
  viewTemplate?: boolean;
  /** setrlimit values. Default: `{ core: 0 }`. */
  rlimits?: Rlimits;
  /**
   * Kernel parameters of the sandbox's own namespaces, as OCI's `linux.sysctl`, e.g.
   * `{ 'net.ipv4.ip_unprivileged_port_start': '0', 'kernel.shmmax': '67108864' }`. Only
   * namespaced ones, as runc allows them: `kernel.shm*`, `kernel.msg*`, `kernel.sem` and
   * `fs.mqueue.*` (new ipc namespace), `net.*` (a new or joined network namespace, not the host's),
   * `kernel.hostname` and `kernel.domainname` (new uts namespace; the same as `hostname` and
   * `domainname`). Any other key is refused with a RangeError naming it. Written to the
   * sandbox's `/proc/sys` once its `/proc` is mounted (needs a new mount namespace). Default none.
   */
  sysctl?: Record<string, string>;
  /** The program's umask (0 to 0o777), set just before exec. Default: the caller's umask (`process.umask()`), inherited. */
  umask?: number;
  /**
   * The caller's fds given to the program as fds 3, 4, ... (extraFds[i] becomes 3 + i; as
   * runc's `--preserve-fds`). Every other fd of the caller is closed at exec. Not with
   * nsbox-init (`init: false`, or a joined pid namespace as in `Sandbox.exec`). At most 256.
   */
  extraFds?: number[];
  /**
   * The sandbox's `oom_score_adj` (-1000 to 1000; children inherit it), written by nsbox with
   * the caller's privileges before the sandbox starts (the caller's own value stays as it was).
   * Raising it always works; lowering it below the floor the caller inherited (the value last
   * set by a process with `CAP_SYS_RESOURCE`, usually 0) needs `CAP_SYS_RESOURCE` in the
   * initial user namespace, and is refused otherwise with an NsboxError (EACCES, step
   * `'oom_score_adj'`, the fix in its message). Default: the caller's, inherited.
   */
  oomScoreAdj?: number;
  /** Time namespace offsets in seconds (needs `namespaces.time` or implies it). */
  timeOffsets?: { monotonic?: number; boottime?: number };
  /** stdin/stdout/stderr: one value for all three, or one each. Default `'pipe'`. */
  stdio?: StdioOption | [StdioOption, StdioOption, StdioOption];
  /**
   * Written to stdin, which is then closed (needs stdin `'pipe'`). Without `input`, `stdio` and
   * `tty`, stdin ends (EOF) unless the caller writes to, ends or pipes into `p.stdin` before the
   * event loop turns; `stdio: 'pipe'` keeps it open as `child_process` does.
   */
  input?: string | Uint8Array;
  /** Encoding of `stdout`/`stderr` in the result: a Buffer encoding, or `'buffer'` for Buffers. Default `'utf8'`. */
  encoding?: BufferEncoding | 'buffer';
  /** Collect stdout/stderr into the result. Default `true` for piped streams. */
  buffer?: boolean;
  /**
   * Give stdout and stderr in the order the program wrote them: `p.all` (a stream) and
   * `result.all`. With both piped, fd 1 and fd 2 are then one stream socket (as `2>&1`), so
   * `p.stdout`/`p.stderr` are null and `result.stdout`/`result.stderr` empty. Default false.
   */
  all?: boolean;
  /** Kill the sandbox after this many milliseconds (`timedOut` is then true). Default: none. */
  timeout?: number;
  /** Kill the sandbox when this signal aborts (`isCanceled` is then true). */
  signal?: AbortSignal;
  /** Signal sent on timeout, abort and `kill()` without an argument. Default `'SIGKILL'`. */
  killSignal?: NodeJS.Signals | number;
  /** When `killSignal` is not SIGKILL, send SIGKILL this many ms later if still alive. Default 2000. */
  forceKillAfterMs?: number;
  /** Signal the sandbox gets if the Node thread that spawned it dies. Default `'SIGKILL'`. */
  parentDeathSignal?: NodeJS.Signals | number | false;
  /**
   * Run nsbox's own minimal init as pid 1 (a static program embedded in the addon, exec'd from
   * a sealed memfd): it forwards signals to the program, reaps every zombie (orphans
   * included), and ends when the program ends, killing and reaping what is left (so their CPU
   * time counts in `usage`); the result still carries the program's own exit code or signal.
   * Default: true when the sandbox has a new pid namespace.
   */
  init?: boolean;
  /**
   * Give the program a terminal: a pty from the sandbox's own devpts instance, the program as
   * session leader with it as controlling terminal (stdin, stdout and stderr are the pty;
   * `stdout` carries everything, `stderr` is null; `resize()` changes its size). Needs a new
   * mount namespace. Default false.
   *
   * `consoleSocket`: hand the terminal to someone else, as OCI's `--console-socket` (runc,
   * conmon): before the program runs, nsbox connects to this listening unix socket, sends the
   * pty's master in one message (SCM_RIGHTS, with the name `/dev/ptmx`, as runc does), closes
   * the connection and its own copy of the master. The receiver owns the terminal: it reads
   * the program's output, writes its input and sets its size (TIOCSWINSZ); `stdin`, `stdout`
   * and `stderr` are null and the result's output empty. Failing to send (nobody listening)
   * is an NsboxError at step `'console-socket'` and the program never runs. See `recvFds`.
   */
  tty?: boolean | { rows?: number; cols?: number; consoleSocket?: string };
  /**
   * Resource limits. Cgroup limits (`memory`, `memorySwap`, `memoryReservation`, `cpus`,
   * `cpuWeight`, `cpuset`, `cpusetMems`, `pids`, `ioWeight`, `ioMax`) give the sandbox a cgroup
   * of its own (named `nsbox-...`, removed after exit); `cpuTimeMs` (from cgroup cpu usage, so
   * children count), `wallTimeMs` and `outputBytes` are enforced by nsbox. The result's
   * `verdict` says which limit stopped the program first.
   */
  limits?: SandboxLimits;
  /** What exceeding `limits.outputBytes` does: `'kill'` the sandbox (default) or `'truncate'` (keep running, discard the rest). */
  onOutputLimit?: 'kill' | 'truncate';
  /** Run in this existing cgroup instead of a new one (it is not removed afterwards). */
  cgroup?: CGroup;
  /**
   * Network: `'none'` (default: a new namespace with only `lo`, up), `'loopback'` (the same),
   * `'host'` (the host's network namespace), `{ join: Namespace }`, or bridge mode
   * `{ bridge?, address?, gateway?, dns?, publish?, mtu? }` (a veth on a bridge, NAT, published
   * ports; see README "Networking").
   */
  network?: NetworkOption;
  /** System call filter: `'default'` (nsbox's allowlist, see SECURITY.md), `'none'`, or a profile from `Seccomp.profile()`. */
  seccomp?: SeccompOption;
  /** Where the sandbox's own cgroup is created: a cgroup path or CGroup. Default: under the caller's own cgroup. */
  cgroupParent?: string | CGroup;
}

/** Which limit stopped the program first, or how it ended when none did. */
export type Verdict = 'exited' | 'signaled' | 'timeout' | 'cpu-time' | 'memory' | 'pids' | 'output' | 'canceled';

/** Resource usage of the sandbox's process tree as the kernel reports it at reap time. */
export interface IsolatedUsage {
  /**
   * user CPU time of the whole sandbox: the cgroup's when it has one, else the rusage of pid 1
   * and what it reaped (nsbox-init reaps every process, also when nsbox kills the sandbox; see
   * README for what rusage cannot see)
   */
  cpuUserMs: number;
  /** system CPU time, likewise */
  cpuSystemMs: number;
  /** wall-clock time from spawn to exit */
  wallMs: number;
  /** the kernel's ru_maxrss (see README: includes the spawner's resident size as a floor) */
  maxRssBytes: number;
  /** peak memory of the sandbox's cgroup; null without a cgroup or where the kernel lacks it */
  peakMemoryBytes: number | null;
  /** peak task count of the sandbox's cgroup (`pids.peak`); null without a cgroup or before Linux 6.1 */
  pidsPeak: number | null;
  /** OOM kills in the sandbox's cgroup; null without a cgroup */
  oomKills: number | null;
}

/** What a finished sandbox returns. A non-zero exit resolves; only setup failures reject. */
export interface IsolatedResult<T = string> {
  pid: number;
  /** Exit code, or null when a signal ended it. */
  exitCode: number | null;
  /** Signal name that ended it, or null. */
  signal: NodeJS.Signals | null;
  stdout: T;
  stderr: T;
  /** stdout and stderr in the order the program wrote them (with `all: true`), else undefined. */
  all?: T;
  durationMs: number;
  timedOut: boolean;
  isCanceled: boolean;
  /** Which limit stopped it first (`'timeout'`, `'cpu-time'`, `'memory'`, `'pids'`, `'output'`, `'canceled'`), else `'exited'` or `'signaled'`. */
  verdict: Verdict;
  /** Output past `limits.outputBytes` was dropped. */
  truncated: boolean;
  usage: IsolatedUsage;
  /** What was actually applied: namespaces, id maps, capabilities, seccomp, masked paths, limits. */
  isolation: IsolationReport;
  /** With an egress policy (`network: { mode: 'egress' }`): per host, allowed and denied attempts, bytes in and out. */
  network?: { egress: Record<string, EgressHostStats> };
}

/** The isolation a sandbox actually got (also what `nsbox explain` prints). */
export interface IsolationReport {
  /** Namespaces created for the sandbox. */
  namespaces: NamespaceType[];
  /** Namespaces joined (`join`). */
  joined: NamespaceType[];
  /** User namespace maps, or null without a user namespace (sandbox root is host root). */
  uidMap: IdMap[] | null;
  gidMap: IdMap[] | null;
  /** The rootfs directory, or null for the default view. */
  rootfs: string | null;
  /** Capabilities the program keeps in any set (empty by default); with the array form, in all of them. */
  capabilities: string[];
  /** The five sets as set just before execve, when `options.capabilities` was given as an object. */
  capabilitySets?: ProcessCapabilities;
  noNewPrivs: boolean;
  uid: number;
  gid: number;
  maskedPaths: string[];
  readonlyPaths: string[];
  /** Host devices added to /dev. */
  devices: string[];
  /** Caller mounts that allow set-id bits (`nosuid: false`) or device files (`nodev: false`); absent when none. */
  relaxedMounts?: Array<{ target: string; allows: Array<'suid' | 'dev'> }>;
  /** `'default'` (nsbox's profile), `'custom'` (a caller's profile) or `'none'`. */
  seccomp: 'none' | 'default' | 'custom';
  /** `'none'` (own netns, loopback only), `'host'`, `'joined'`, `'bridge'`, or a user-mode network's mode. */
  network: string;
  /**
   * What `/sys` shows: `'own'`, a sysfs of the sandbox's network namespace (its interfaces
   * only); `'host'`, the host's (read-only in a mount namespace of its own): the host's
   * interface names and addresses under /sys/class/net, with `network: 'host'`, without a
   * mount namespace, or with a network namespace joined whose owner is not a user namespace
   * the sandbox joins (it may not mount a sysfs for it); `'joined'`, whatever the joined
   * mount namespace has.
   */
  sysfs: 'own' | 'host' | 'joined';
  /**
   * An egress policy with `intercept: true`: the `inject` host patterns whose HTTPS nsbox
   * terminates with a CA made for this sandbox (which its CA bundle view trusts).
   */
  tlsInterception?: string[];
  /**
   * An egress policy with `transparent: true` (root): outbound TCP to ports 80 and 443 of
   * programs that ignore the proxy variables is redirected to nsbox's proxy by nft rules in the
   * sandbox's network namespace (named by its Host header or TLS server name, the same policy).
   */
  egressTransparent?: boolean;
  /** The sysctls written in the sandbox's own namespaces (`sysctl`; `kernel.hostname` and `kernel.domainname` show as `hostname`/`domainname` instead). */
  sysctl: Record<string, string>;
  /** The sandbox's cgroup directory, or null. */
  cgroup: string | null;
  /** The limits asked for, or null. */
  limits: Record<string, unknown> | null;
  /** pid 1 is nsbox-init (signals forwarded, zombies reaped). */
  init: boolean;
  /**
   * An unprivileged caller's image: `'squashed'`, its files are all owned by the caller (the
   * sandbox's root) whatever the image says; the image's other owners are not kept.
   */
  imageOwners?: 'squashed';
}

/** Which image to run, from which store (see `LayerStore`). */
export interface ImageSpec {
  /** The layer store holding the image. */
  store: unknown;
  /** Image reference (name:tag or id) in that store, or the `ImageInfo` that `importImage()` / `image()` returned. */
  ref: string | ImageInfo;
  /** Keep the container's writable layer afterwards. Default false. */
  keep?: boolean;
  /** Writable layer on a tmpfs of this size (bytes or '64M') instead of on disk. */
  tmpfsSize?: number | string;
}
