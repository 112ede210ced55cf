// The plan: everything the addon needs to make one sandbox, decided before anything is made
// (plan/build.ts makes it, the spawn pipeline composes the final one, the addon executes it).
import type { Namespace, NamespaceType } from '../ns/namespace.js';
import type { PlanOp } from './ops.js';
import type { IsolationReport, SpawnIsolatedOptions } from './options.js';

export type { PlanOp } from './ops.js';

export interface Plan {
  cloneFlags: number;
  unshareFlags: number;
  lateUnshare: number;
  twoStage: boolean;
  newPidAtStage2: boolean;
  joins: Array<{ fd: number; nstype: number; type: NamespaceType }>;
  uidMap?: string;
  gidMap?: string;
  setgroupsDeny: boolean;
  /** newuidmap and newgidmap write uidMap and gidMap (an unprivileged caller's subordinate range) */
  idMapHelpers?: { uid: string; gid: string };
  stdio: Array<{ kind: number; fd: number }>;
  ops: PlanOp[];
  /**
   * The view template (DESIGN.md, "view template"): ops that build a mount namespace holding
   * the read-only part of the default view, run once and kept by the addon (keyed by their
   * encoding), and the ops the child runs instead of `ops` in a copy of it. `ops` stays the
   * fallback when the template cannot be used.
   */
  template?: { build: readonly PlanOp[]; child: PlanOp[]; rootfs?: true; image?: true };
  /**
   * An unprivileged caller's template: built in a user namespace of nsbox's own (made once per
   * thread, mapping the caller's uid and gid to themselves), in which the sandbox's user
   * namespace is made as its child and its maps written by the addon's launcher
   * (addon/src/helpers.cc, EnsureHolder). Only with the caller's own ids mapped.
   */
  holder?: true;
  /** An unprivileged caller joins a network namespace whose owner is not the joined user namespace: that owner and the network namespace are entered first, where it can (a spare made in nsbox's user namespace, see `holder`). */
  netOwnerFirst?: true;
  /** The new network namespace may be one made ahead by nsbox (lo up), owned by nsbox's user namespace rather than the sandbox's: for sandboxes that keep no capabilities. */
  netPremade: boolean;
  hostname?: string;
  domainname?: string;
  timeOffsets?: string;
  rlimits: Array<{ resource: number; soft: number; hard: number }>;
  earlyIds: boolean;
  earlyUid: number;
  earlyGid: number;
  setIds: boolean;
  uid: number;
  gid: number;
  groups: number[];
  setGroups: boolean;
  dropCaps: boolean;
  lastCap: number;
  /** the five capability sets, each [bits 0-31, bits 32-63]: bounding (the rest dropped with PR_CAPBSET_DROP), effective, permitted, inheritable (capset after the uid change), ambient (raised last) */
  capsBounding: [number, number];
  capsEffective: [number, number];
  capsPermitted: [number, number];
  capsInheritable: [number, number];
  capsAmbient: [number, number];
  noNewPrivs: boolean;
  seccomp?: Buffer;
  pdeathsig: number;
  /** umask(2) set just before exec; absent: the caller's umask is inherited */
  umask?: number;
  /** the caller's fds placed on 3, 4, ... in the program */
  extraFds?: number[];
  /** written to /proc/<pid>/oom_score_adj by the parent (with the caller's privileges) before "go"; absent: inherited */
  oomScoreAdj?: number;
  /** pid 1 is nsbox-init, which forks the program */
  init: boolean;
  /** a pty from the sandbox's devpts on 0..2 (the addon hands back its master) */
  tty: boolean;
  /** prepared: nsbox-init waits for one run on a socket (prepareIsolated) */
  serve?: boolean;
  ttyRows: number;
  ttyCols: number;
  /** with `tty`: the parent sends the master to this unix socket (OCI --console-socket) instead of handing it back */
  consoleSocket?: string;
  cwd: string;
  argv: string[];
  envp: string[];
  exec: string[];
  /** For people and `nsbox explain`: what the plan means, not read by the addon. */
  summary: PlanSummary;
}

/** What the plan means for people (see IsolationReport); later layers fill seccomp, network, cgroup. */
export type PlanSummary = Omit<IsolationReport, 'limits'>;

export interface PlanInput {
  file: string;
  args: string[];
  options: SpawnIsolatedOptions;
  /** the sandbox's id block (acquired by the pipeline's ids layer); without it block 0 stands in */
  idBlock?: IdBlock;
  /** an unprivileged caller's sandbox runs an image: map its subordinate range when it has one (ids.ts callerRange) */
  imageRoot?: boolean;
  /** the root is this overlay, mounted by the child inside the sandbox's user namespace (an unprivileged caller's image; options.rootfs is its empty merged dir) */
  rootOverlay?: RootOverlay;
  /**
   * a root caller's ephemeral image as a view template (view.ts, imageTemplateView): no
   * options.rootfs; the plan is built with the template or not at all (buildPlan throws)
   */
  imageTemplate?: ImageTemplate;
}

/**
 * An image's root as a view template: its layers idmapped once (per id block) with an init
 * layer, read-only, in the template; per sandbox a writable layer on a tmpfs of its own.
 */
export interface ImageTemplate {
  /** the image's layer directories (their diff), top first, with their identity (`dev:ino`) */
  layers: ReadonlyArray<{ path: string; id: string }>;
  /** a user namespace with the sandbox's maps (this process's fd): the layers are idmapped through it */
  userNsFd: number;
  /** the init layer's files under /etc (hostname, hosts, resolv.conf) */
  etc: Readonly<Record<string, string>>;
  /** mode of the image's /etc (kept by the init layer's), or null where it has none */
  etcMode: number | null;
  /** mount points the image lacks (made in the init layer), with their modes */
  dirs: ReadonlyArray<readonly [string, number]>;
  /** the image's /tmp is a directory: a fresh tmpfs there, as on a rootfs */
  tmp: boolean;
  /** the writable layer's tmpfs size in bytes (default: the kernel's, half of RAM) */
  tmpfsSize?: number;
  /** what result.isolation.rootfs says: the image's top layer directory */
  rootfs: string;
}

/** Host paths of an overlay the child mounts as the sandbox's root (looked up under /oldroot), with userxattr. */
export interface RootOverlay {
  lower: string[];
  upper: string;
  work: string;
}

/** One sandbox's id block (see ids.ts): its root's host uid and gid; it maps RANGE_SIZE ids from there. */
export interface IdBlock {
  uid: number;
  gid: number;
}

/** Host facts the planner reads; replaceable in unit tests. */
export interface HostFacts {
  euid: number;
  egid: number;
  lastCap: number;
  /** subordinate ranges of a user from /etc/subuid or /etc/subgid */
  subordinate(file: 'subuid' | 'subgid', user: string): { start: number; count: number } | null;
  /** cgroup version in use and, for v1, the controller sets of the hierarchies nsbox uses */
  cgroups(): { version: 1 | 2; v1: string[][] };
  /** what a host path is: missing, a directory, a file, or a symlink (with its content) */
  pathKind(path: string): { kind: 'missing' | 'dir' | 'file' | 'other' } | { kind: 'symlink'; target: string };
  /** whether default views may come from a view template (root with full capabilities in the initial user namespace) */
  viewTemplates?(): boolean;
  /** whether an unprivileged caller's default views may come from a view template made in a user namespace of nsbox's own (Plan.holder) */
  holderTemplates?(): boolean;
  /** a directory's identity (device and inode, symlinks followed), or null: a rootfs's view template is keyed by it */
  dirId?(path: string): string | null;
  /** a host path with the host's symlinks resolved (a caller's bind source) */
  realPath?(path: string): string;
  /** a directory's mode, owner and entries (for mount points missing in it), or null */
  dirInfo?(path: string): DirInfo | null;
  /** a joined user namespace's setgroups ('allow' or 'deny'), when it can be told */
  setgroupsOf?(ns: Namespace): 'allow' | 'deny' | undefined;
  /** whether the user namespace `user` owns the namespace `ns` (both joined: open fds); false when unknown */
  ownsNamespace?(user: Namespace, ns: Namespace): boolean;
  /** the caller's user name (its /etc/subuid entry may name it), when it has one */
  userName?(): string | undefined;
  /** setuid newuidmap and newgidmap (Debian's uidmap), when installed */
  idMapHelpers?(): { uid: string; gid: string } | null;
}

/** A host directory's mode, owner and entries (plan/mountpoints.ts). */
export interface DirInfo {
  mode: number;
  uid: number;
  gid: number;
  entries: Array<{ name: string; kind: 'dir' | 'file' | 'other' | 'symlink'; target?: string }>;
}
