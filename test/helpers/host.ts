// Small helpers for integration tests: host state snapshots and a root check.
import { readFileSync, readdirSync } from 'node:fs';

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
