// Owner marks: what nsbox puts in the names of the host objects it makes (cgroups, mount
// sources, store records and temporary directories) so that `gc()` can tell, after a crash,
// whether their owner is gone. A mark is `<pid>-<start>`: the process id and its start time
// (clock ticks since boot, field 22 of /proc/<pid>/stat), so a reused pid is not taken for
// the owner. Only dead owners' objects are ever swept.
import { readFileSync } from 'node:fs';
import { native } from './native.js';

/** Start time of a process, or undefined when it does not exist. */
export function processStart(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    if (f[0] === 'Z' || f[0] === 'X') return undefined;
    return Number(f[19]);
  } catch {
    return undefined;
  }
}

let mine: { pid: number; start: number } | undefined;

/** This process as an owner: pid and start time (read once). */
export function selfOwnerMark(): { pid: number; start: number } {
  if (!mine || mine.pid !== process.pid) mine = { pid: process.pid, start: processStart(process.pid) ?? 0 };
  return mine;
}

/**
 * A number no other call in this process returns, from any thread or copy of the library (the
 * addon's process-wide sequence): the part of a name that tells one object from another of the
 * same owner.
 */
export function processSeq(): number {
  return native().processSeq();
}

/** `<pid>-<start>` of this process, for names. */
export function ownerTag(): string {
  const o = selfOwnerMark();
  return `${o.pid}-${o.start}`;
}

/**
 * Whether the owner `pid` (started at `start`, when the name recorded it) is gone: no such
 * process, a zombie, or a process that started at another time (the pid was reused). Without
 * `start` a reused pid counts as alive: the sweep only waits longer, it never takes a live
 * owner's object.
 */
export function ownerGone(pid: number, start?: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const s = processStart(pid);
  if (s === undefined) return true;
  return start !== undefined && start !== s;
}

/**
 * The owner recorded in a cgroup name nsbox made, or undefined for any other name:
 * `nsbox-<pid>-<start>-<n>` (spawnIsolated's limits), `nsbox-sbx-<pid>-<start>-<id>`
 * (Sandbox), and the older `nsbox-<pid>-<n>` (pid only).
 */
export function cgroupOwner(name: string): { pid: number; start?: number } | undefined {
  let m = /^nsbox-(?:sbx-)?(\d{1,10})-(\d{1,20})-[A-Za-z0-9_.-]+$/.exec(name);
  if (m) return { pid: Number(m[1]), start: Number(m[2]) };
  m = /^nsbox-(\d{1,10})-\d{1,10}$/.exec(name);
  if (m) return { pid: Number(m[1]) };
  return undefined;
}

/** The owner recorded in a mount source nsbox gives store containers: `nsbox-<pid>-<start>-<kind>`. */
export function mountOwner(source: string): { pid: number; start: number; kind: string } | undefined {
  const m = /^nsbox-(\d{1,10})-(\d{1,20})-([a-z]+)$/.exec(source);
  return m ? { pid: Number(m[1]), start: Number(m[2]), kind: m[3]! } : undefined;
}
