// A user of the test's own with a subordinate range in /etc/subuid and /etc/subgid that no
// other line overlaps (an unprivileged caller as rootless podman's users are). Made by root,
// removed with its lines at the end.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

export const SUB_COUNT = 65536;

export interface SubUser { name: string; uid: number; start: number }

function execOk(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

/** The first start at or above `from` that no line of /etc/subuid or /etc/subgid overlaps. */
function freeStart(from: number): number {
  let s = from;
  const ranges = ['/etc/subuid', '/etc/subgid'].flatMap((f) => (existsSync(f) ? readFileSync(f, 'utf8') : '').split('\n'))
    .map((l) => l.split(':')).filter((p) => p.length === 3).map((p) => [Number(p[1]), Number(p[1]) + Number(p[2])] as const);
  for (let moved = true; moved;) {
    moved = false;
    for (const [a, b] of ranges) if (s < b && s + SUB_COUNT > a) { s = b; moved = true; }
  }
  return s;
}

/** Removes every line of `user` (by name or uid) from /etc/subuid and /etc/subgid. */
export function dropSubLines(user: string, id: number): void {
  for (const f of ['/etc/subuid', '/etc/subgid']) {
    if (!existsSync(f)) continue;
    const text = readFileSync(f, 'utf8');
    const kept = text.split('\n').filter((l) => { const w = l.split(':')[0]; return w !== user && w !== String(id); }).join('\n');
    if (kept !== text) writeFileSync(f, kept);
  }
}

/** Makes the user `name` (no home) with a range of SUB_COUNT ids at or above `from`. */
export function makeSubUser(name: string, from = 400000): SubUser {
  execOk('useradd', ['-M', '-s', '/usr/sbin/nologin', name]);
  const uid = Number(spawnSync('id', ['-u', name], { encoding: 'utf8' }).stdout.trim());
  dropSubLines(name, uid); // useradd may have given it a range of its own (login.defs SUB_UID_*)
  const start = freeStart(from);
  const r = `${start}-${start + SUB_COUNT - 1}`;
  execOk('usermod', ['--add-subuids', r, '--add-subgids', r, name]);
  return { name, uid, start };
}

/** Removes the user and its lines. */
export function removeSubUser(u: SubUser): void {
  spawnSync('userdel', [u.name]);
  dropSubLines(u.name, u.uid);
}
