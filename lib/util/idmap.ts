// User namespace id maps: the type, their validation and their /proc/<pid>/uid_map text.
// Shared by the planner, overlay mounts (idmapped layers) and the layer store.
import { readFileSync, statSync } from 'node:fs';
import { checkKeys, fail, isObject, uint } from './validate.js';

/** One line of a uid_map / gid_map: `count` ids from `inside` map to `outside` on the host. */
export interface IdMap {
  inside: number;
  outside: number;
  count: number;
}

/** Validated id maps of an option (TypeError/RangeError naming it). */
export function parseIdMaps(option: string, v: unknown): IdMap[] {
  if (!Array.isArray(v) || v.length === 0) fail(option, 'must be a non-empty array of { inside, outside, count }');
  if (v.length > 340) fail(option, 'may have at most 340 entries (kernel limit)', RangeError);
  const maps = v.map((m, i) => {
    if (!isObject(m)) fail(`${option}[${i}]`, 'must be an object { inside, outside, count }');
    checkKeys(`${option}[${i}]`, m, ['inside', 'outside', 'count']);
    const count = uint(`${option}[${i}].count`, m.count);
    if (count === 0) fail(`${option}[${i}].count`, 'must be at least 1', RangeError);
    const inside = uint(`${option}[${i}].inside`, m.inside);
    const outside = uint(`${option}[${i}].outside`, m.outside);
    if (inside + count > 0x100000000 || outside + count > 0x100000000) fail(`${option}[${i}]`, 'range runs past 2^32', RangeError);
    return { inside, outside, count };
  });
  for (const key of ['inside', 'outside'] as const) {
    const sorted = [...maps].sort((a, b) => a[key] - b[key]);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1]!, cur = sorted[i]!;
      if (prev[key] + prev.count > cur[key]) {
        fail(option, `has overlapping ${key} ranges (${prev[key]}+${prev.count} and ${cur[key]}+${cur.count})`, RangeError);
      }
    }
  }
  return maps;
}

/** Whether `id` (inside) is mapped. */
export function mapped(maps: readonly IdMap[], id: number): boolean {
  return maps.some((m) => id >= m.inside && id < m.inside + m.count);
}

/** The host id that `id` inside maps to, if any. */
export function outsideOf(maps: readonly IdMap[], id: number): number | undefined {
  const m = maps.find((x) => id >= x.inside && id < x.inside + x.count);
  return m ? m.outside + (id - m.inside) : undefined;
}

/** The maps as /proc/<pid>/uid_map text. */
export function formatMaps(maps: readonly IdMap[]): string {
  return maps.map((m) => `${m.inside} ${m.outside} ${m.count}\n`).join('');
}

/** Whether every host id `maps` map out to lies in the host ids `allowed` maps out to. */
export function within(maps: readonly IdMap[], allowed: readonly IdMap[]): boolean {
  return maps.every((m) => allowed.some((a) => m.outside >= a.outside && m.outside + m.count <= a.outside + a.count));
}

/** newuidmap and newgidmap (setuid helpers of Debian's uidmap / shadow-utils), when installed. */
export function findIdMapHelpers(): { uid: string; gid: string } | null {
  const find = (n: string) => ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin'].map((d) => `${d}/${n}`).find((f) => {
    // a missing file answers without an exception (looked for again every second)
    try { return statSync(f, { throwIfNoEntry: false })?.isFile() ?? false; } catch { return false; }
  });
  const uid = find('newuidmap'), gid = find('newgidmap');
  return uid && gid ? { uid, gid } : null;
}

/** The (first) subordinate range of `user` in /etc/subuid or /etc/subgid. */
export function subordinateRange(file: 'subuid' | 'subgid', user: string): { start: number; count: number } | null {
  let text: string;
  try { text = readFileSync(`/etc/${file}`, 'utf8'); } catch { return null; }
  let uidName: string | undefined;
  for (const line of text.split('\n')) {
    const [name, start, count] = line.trim().split(':');
    if (!name || start === undefined || count === undefined) continue;
    if (name === user || (uidName !== undefined && name === uidName)) {
      const s = Number(start), c = Number(count);
      if (Number.isInteger(s) && Number.isInteger(c) && c > 0) return { start: s, count: c };
    }
  }
  return null;
}

/** How many ids an unprivileged caller's maps give a sandbox: its own and at most this many - 1 of its range. */
export const CALLER_RANGE_SIZE = 65536;

/**
 * An unprivileged caller's maps, as rootless podman's: 0 -> the caller, 1.. -> its subordinate
 * ranges `su` (uids) and `sg` (gids), at most CALLER_RANGE_SIZE ids in all. The sandboxes
 * that need more ids than the caller's own get them (lib/plan/ids.ts callerRange), and so does
 * an unprivileged caller's layer store (lib/fs/subids.ts): a layer's files are owned on the
 * host by the ids these maps give their owners in the image.
 */
export function callerMaps(euid: number, egid: number, su: { start: number; count: number }, sg: { start: number; count: number }): { uidMap: IdMap[]; gidMap: IdMap[] } {
  const n = (c: number) => Math.min(c, CALLER_RANGE_SIZE - 1);
  return {
    uidMap: [{ inside: 0, outside: euid, count: 1 }, { inside: 1, outside: su.start, count: n(su.count) }],
    gidMap: [{ inside: 0, outside: egid, count: 1 }, { inside: 1, outside: sg.start, count: n(sg.count) }],
  };
}
