// gc() and cgroups (issue 13, item 4b), on cgroup v1 here and on cgroup v2 in the VM (npm run
// test:vm): a Node process killed while its limited sandboxes run leaves their groups (beside
// or under its own cgroup, and under a cgroupParent); gc() removes exactly those, keeps the
// groups of a live process and the (not owned) parent group. The children's spare cgroups
// (made ahead for their next limited spawn) are among what a dead one leaves.
import { spawn as cpSpawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CGroup, gc } from '../../lib/index.js';
import { isRoot, nsboxCgroupsOf, skipReason, sleep } from '../helpers/host.js';

const DIST = new URL('../../dist/index.js', import.meta.url).pathname;

/** Every directory of every cgroup hierarchy named by nsbox for `pid`, its spares included. */
const groupsOf = (pid: number): string[] => nsboxCgroupsOf([pid], true);

/**
 * A child Node process running two limited sandboxes, one under `parent`, after a first limited
 * spawn whose removal made it spares (seen in the directory the sandboxes' cgroups go in);
 * resolves once both run.
 */
function child(parent: string | Record<string, string>): { proc: ReturnType<typeof cpSpawn>; running: Promise<void> } {
  const script = `
    const m = await import(${JSON.stringify(DIST)});
    const { readdirSync } = await import('node:fs');
    const first = await m.spawnIsolated('/bin/true', [], { limits: { pids: 16 } });
    const home = first.isolation.cgroup.slice(0, first.isolation.cgroup.lastIndexOf('/'));
    for (let i = 0; i < 250 && !readdirSync(home).some((n) => n.startsWith('nsbox-' + process.pid + '-') && n.includes('-spare-')); i++) await new Promise((r) => setTimeout(r, 20));
    const where = ${JSON.stringify(parent)};
    const cgroupParent = typeof where === 'string' ? where : await m.CGroup.open(where);
    const a = m.spawnIsolated('/bin/sleep', ['600'], { limits: { pids: 16, memory: '32M' } });
    const b = m.spawnIsolated('/bin/sleep', ['600'], { limits: { pids: 16 }, cgroupParent });
    let n = 0;
    for (const p of [a, b]) { p.on('spawn', () => { if (++n === 2) process.stdout.write('running\\n'); }); p.catch((e) => { process.stderr.write(e.message + '\\n'); process.exit(3); }); }
    setInterval(() => {}, 1000);`;
  const proc = cpSpawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const running = new Promise<void>((res, rej) => {
    proc.stdout!.on('data', (c) => { if (String(c).includes('running')) res(); });
    proc.on('exit', (code) => rej(new Error(`child exited (${code}) before its sandboxes ran`)));
  });
  return { proc, running };
}

describe.skipIf(skipReason(!isRoot, 'cgroup gc tests need root'))(`gc and cgroups (cgroup ${CGroup.mode()})`, () => {
  it('removes the groups of a killed Node process (beside its own cgroup and under a cgroupParent), nothing of a live one', async () => {
    const parent = await CGroup.create(`nsbox-gcparent-${process.pid}`);
    // v1: the parent's directory in each hierarchy (they may sit at different depths)
    const where = parent.version === 2 ? parent.path : { ...parent.paths };
    const dead = child(where);
    const live = child(where);
    try {
      await Promise.all([dead.running, live.running]);
      const deadGroups = groupsOf(dead.proc.pid!);
      const liveGroups = groupsOf(live.proc.pid!);
      // two groups per hierarchy each, one of them under the parent
      expect(deadGroups.length).toBeGreaterThanOrEqual(2);
      expect(deadGroups.some((d) => d.includes(`nsbox-gcparent-${process.pid}/`))).toBe(true);
      // spares made ahead (nsbox-<pid>-<start>-spare-<n>) are its too: gc removes them once it is gone
      expect(deadGroups.some((d) => /-spare-\d+$/.test(d))).toBe(true);
      expect(liveGroups.length).toBeGreaterThanOrEqual(2);
      dead.proc.kill('SIGKILL');
      await new Promise((r) => dead.proc.once('exit', r));
      // its sandboxes die with it (parent-death signal): wait until the groups are empty
      for (let i = 0; i < 200 && deadGroups.some((d) => { try { return readFileSync(`${d}/cgroup.procs`, 'utf8').trim() !== ''; } catch { return false; } }); i++) await sleep(50);
      // only these two children's (other nsbox processes on this host are not ours to sweep)
      const r = await gc({ owners: [dead.proc.pid!, live.proc.pid!] });
      expect(groupsOf(dead.proc.pid!)).toEqual([]);
      expect(r.cgroups).toEqual(expect.arrayContaining(deadGroups));
      // nothing of the live one was swept (its idle spares may go by themselves after 2 s)
      expect(r.cgroups.filter((d) => liveGroups.includes(d))).toEqual([]);
      expect(groupsOf(live.proc.pid!)).toEqual(expect.arrayContaining(liveGroups.filter((d) => !/-spare-\d+$/.test(d))));
      expect(existsSync(parent.path)).toBe(true);
    } finally {
      dead.proc.kill('SIGKILL');
      live.proc.kill('SIGKILL');
      await Promise.all([dead, live].map((c) => (c.proc.exitCode !== null || c.proc.signalCode !== null ? undefined : new Promise((r) => c.proc.once('exit', r)))));
      for (let i = 0; i < 100 && groupsOf(live.proc.pid!).length; i++) { await sleep(50); await gc({ owners: [live.proc.pid!] }); }
      expect(groupsOf(live.proc.pid!)).toEqual([]);
      await parent.destroy({ kill: true });
    }
  }, 120_000);
});
