// Facts of the host the planner reads (ids, capabilities, cgroup layout, what host paths
// are, /etc/subuid), with their caches: rarely changing ones are read at most once a second.
import { lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { release as osRelease, userInfo } from 'node:os';
import { findIdMapHelpers, subordinateRange } from '../util/idmap.js';
import { Capabilities } from '../security/capabilities.js';
import { detectLayout } from '../cgroup/detect.js';
import type { DirInfo, HostFacts } from './types.js';
import { DEFAULT_RO_DIRS } from './view.js';

export type { HostFacts } from './types.js';

export const realHost: HostFacts = {
  euid: process.geteuid?.() ?? 0,
  egid: process.getegid?.() ?? 0,
  get lastCap() { return Capabilities.lastCap(); },
  subordinate(file, user) {
    // the parsed answer is what is kept for a second, not only the file's text
    return recent(`${file}:${user}`, () => subordinateRange(file, user));
  },
  userName() {
    return recent('username', () => { try { return userInfo().username; } catch { return undefined; } });
  },
  idMapHelpers() {
    return recent('newidmap', findIdMapHelpers);
  },
  cgroups() {
    const l = detectLayout();
    return l.mode === 'v2' ? { version: 2, v1: [] } : { version: 1, v1: l.v1.map((h) => h.controllers) };
  },
  setgroupsOf: (ns) => ns.setgroups,
  pathKind(path) {
    // /proc and /sys entries (the masked and read-only paths) are the kernel's: the same for
    // the life of the process, so they are looked at once
    // the host's system directories of the default view: looked at again after a second
    if (DEFAULT_RO_DIRS.includes(path)) return recent(`kind:${path}`, () => lstatKind(path));
    if (path.startsWith('/proc/') || path.startsWith('/sys/')) {
      let k = kernelPathKinds.get(path);
      if (!k) kernelPathKinds.set(path, (k = lstatKind(path)));
      return k;
    }
    return lstatKind(path);
  },
  realPath(path) {
    try { return realpathSync(path); } catch { return path; }
  },
  dirInfo(path) {
    return readDirInfo(path);
  },
  ownsNamespace(user, ns) {
    // NS_GET_USERNS on the joined namespace's fd, compared with the joined user namespace
    try { return ns.ownerInode !== undefined && ns.ownerInode === user.inode; } catch { return false; }
  },
  dirId(path) {
    try {
      const st = statSync(path, { bigint: true });
      return st.isDirectory() ? `${st.dev}:${st.ino}` : null;
    } catch { return null; }
  },
  viewTemplates() {
    if (templatesOff) return false;
    if (templatesOk === undefined) templatesOk = initialNamespaceRoot() && process.env.NSBOX_VIEW_TEMPLATE !== '0';
    return templatesOk;
  },
  holderTemplates() {
    if (templatesOff) return false;
    // any other caller on 5.8 or later (as for root's); where it cannot make a user namespace
    // the first template fails and templates are turned off (spawn.ts)
    if (holderOk === undefined) holderOk = !initialNamespaceRoot() && kernelAtLeast(5, 8) && process.env.NSBOX_VIEW_TEMPLATE !== '0';
    return holderOk;
  },
};

let templatesOk: boolean | undefined;
let holderOk: boolean | undefined;
let templatesOff = false;
/** Turns view templates off for this process (after one failed: the full view is made each time instead). */
export function disableViewTemplates(): void { templatesOff = true; }

/** Whether the running kernel is at least `major`.`minor`. */
export function kernelAtLeast(major: number, minor: number): boolean {
  const [maj = 0, min = 0] = (/^(\d+)\.(\d+)/.exec(osRelease()) ?? []).slice(1).map(Number);
  return maj > major || (maj === major && min >= minor);
}

/**
 * Root in the initial user namespace with CAP_SYS_ADMIN and CAP_SYS_CHROOT (what building a
 * view template and entering it take), on Linux 5.8 or later (clone3 with CLONE_INTO_CGROUP,
 * the new mount API, setns by pidfd: the template path has no fallbacks for them).
 */
function initialNamespaceRoot(): boolean {
  if (process.geteuid?.() !== 0 || !kernelAtLeast(5, 8)) return false;
  try {
    if (readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/).join(' ') !== '0 0 4294967295') return false;
    const eff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (!eff) return false;
    const need = (1n << 21n) | (1n << 18n); // CAP_SYS_ADMIN, CAP_SYS_CHROOT
    return (BigInt(`0x${eff[1]}`) & need) === need;
  } catch {
    return false;
  }
}

const kernelPathKinds = new Map<string, ReturnType<HostFacts['pathKind']>>();

// Host facts that change rarely (/etc/subuid, the layout of /usr, /bin...) are read at most
// once a second: a spawn costs no file reads for them in between.
const recentCache = new Map<string, { at: number; v: unknown }>();
function recent<V>(key: string, read: () => V): V {
  const now = performance.now();
  const c = recentCache.get(key);
  if (c && now - c.at < 1000) return c.v as V;
  const v = read();
  recentCache.set(key, { at: now, v });
  return v;
}

/** A directory's mode, owner and entries; null when it is not a plain directory or a name is not UTF-8. */
function readDirInfo(path: string): DirInfo | null {
  try {
    const st = lstatSync(path);
    if (!st.isDirectory()) return null;
    const entries: DirInfo['entries'] = [];
    for (const raw of readdirSync(path, { encoding: 'buffer' })) {
      const name = raw.toString('utf8');
      if (!Buffer.from(name, 'utf8').equals(raw)) return null;
      const e = lstatSync(`${path}/${name}`);
      if (e.isSymbolicLink()) {
        const t = readlinkSync(`${path}/${name}`, { encoding: 'buffer' });
        const target = t.toString('utf8');
        if (!Buffer.from(target, 'utf8').equals(t)) return null;
        entries.push({ name, kind: 'symlink', target });
      } else entries.push({ name, kind: e.isDirectory() ? 'dir' : e.isFile() ? 'file' : 'other' });
    }
    return { mode: st.mode, uid: st.uid, gid: st.gid, entries };
  } catch {
    return null;
  }
}

function lstatKind(path: string): ReturnType<HostFacts['pathKind']> {
  try {
    // a missing path answers without an exception (making one costs more than the lstat)
    const st = lstatSync(path, { throwIfNoEntry: false });
    if (!st) return { kind: 'missing' };
    if (st.isSymbolicLink()) return { kind: 'symlink', target: readlinkSync(path) };
    if (st.isDirectory()) return { kind: 'dir' };
    if (st.isFile()) return { kind: 'file' };
    return { kind: 'other' };
  } catch {
    return { kind: 'missing' };
  }
}