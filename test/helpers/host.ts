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

/** Directories of every cgroup hierarchy whose name carries one of `pids` as nsbox's owner (`nsbox-[sbx-]<pid>-…`), sorted. */
export function nsboxCgroupsOf(pids: Iterable<number>): string[] {
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
  return found.sort();
}
