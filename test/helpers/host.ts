// Small helpers for integration tests: host state snapshots and a root check.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { release } from 'node:os';

export const isRoot = process.geteuid?.() === 0;

/** Prints why a suite is skipped (the house rule: never skip silently). */
export function skipReason(cond: boolean, why: string): boolean {
  if (cond) console.warn(`SKIPPED: ${why}`);
  return cond;
}

/** This process's mount table without the per-mount ids (so two reads compare equal). */
export function mountTable(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n').map((l) => l.split(' ').slice(3).join(' ')).sort();
}

/** Open fds of this process. */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Whether a pid exists (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Why this kernel cannot hand overlayfs idmapped layers (by fd: Linux 6.13), or '' when it can. */
export function noIdmappedLayers(): string {
  const [maj, min] = (release().match(/^(\d+)\.(\d+)/) ?? ['', '0', '0']).slice(1).map(Number);
  return maj > 6 || (maj === 6 && min >= 13) ? '' : `kernel ${release()} cannot hand overlayfs idmapped layers by fd (needs Linux 6.13)`;
}

/**
 * For tests that make bridge sandboxes without naming a bridge (nsbox's default bridge nsbox0,
 * kept between runs like docker0): call at the start; the function it returns, called at the
 * end, removes nsbox0 and its nftables table again when the test made them and they are idle.
 */
export function defaultBridgeGuard(): () => Promise<void> {
  const had = existsSync('/sys/class/net/nsbox0');
  return async () => {
    if (had || !existsSync('/sys/class/net/nsbox0')) return;
    const { sweepNetwork } = await import('../../lib/net/gc.js');
    await sweepNetwork({ idleDefaultBridge: true });
  };
}

/** The owner's pid and start time in a spare cgroup's name (`nsbox-<pid>-<start>-spare-<n>`, lib/cgroup/spares.ts), or undefined. */
export function spareOwner(dir: string): { pid: number; start: number } | undefined {
  const m = /^nsbox-(\d+)-(\d+)-spare-\d+$/.exec(dir.slice(dir.lastIndexOf('/') + 1));
  return m ? { pid: Number(m[1]), start: Number(m[2]) } : undefined;
}

/** Start time of a live process (field 22 of /proc/<pid>/stat), undefined when gone or a zombie. */
function startOf(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return f[0] === 'Z' || f[0] === 'X' ? undefined : Number(f[19]);
  } catch {
    return undefined;
  }
}

/**
 * Whether `dir` is a spare cgroup a live owner may keep between its sandboxes: named
 * `nsbox-<pid>-<start>-spare-<n>` for a process that runs now (same pid and start time), and
 * empty. Anything else of nsbox's with an owner's pid is a leftover.
 */
export function isLiveSpare(dir: string): boolean {
  const o = spareOwner(dir);
  if (!o || startOf(o.pid) !== o.start) return false;
  try { return readFileSync(`${dir}/cgroup.procs`, 'utf8').trim() === ''; } catch { return true; /* removed meanwhile */ }
}

/**
 * Directories of every cgroup hierarchy whose name carries one of `pids` as nsbox's owner
 * (`nsbox-[sbx-]<pid>-…`), sorted. Spares of a live owner (see {@link isLiveSpare}) are not
 * leftovers and are left out unless `spares` is true: a process keeps a few made ahead for its
 * next limited spawn, removes them at its teardown and after 2 s unused, and gc removes them
 * once it is gone (cgroup-spawn and cgroup-gc tests check each of these).
 */
export function nsboxCgroupsOf(pids: Iterable<number>, spares = false): string[] {
  const want = new Set(pids);
  const found: string[] = [];
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' '))
    .filter((f) => ['cgroup', 'cgroup2'].includes(f[f.indexOf('-') + 1] ?? '')).map((f) => f[4]!);
  const walk = (d: string, depth: number) => {
    if (depth > 40) return;
    let es;
    try { es = readdirSync(d, { withFileTypes: true }); } catch { return; }
    for (const e of es) {
      if (!e.isDirectory()) continue;
      const m = /^nsbox-(?:sbx-)?(\d+)-/.exec(e.name);
      if (m && want.has(Number(m[1]))) found.push(`${d}/${e.name}`);
      walk(`${d}/${e.name}`, depth + 1);
    }
  };
  for (const m of new Set(mounts)) walk(m, 0);
  return (spares ? found : found.filter((d) => !isLiveSpare(d))).sort();
}
