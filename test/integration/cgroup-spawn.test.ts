// Issue 3 through spawnIsolated: limits, verdicts, usage, and no cgroup left behind. Runs on
// cgroup v1 here and on cgroup v2 in the VM (npm run test:vm).
import { describe, it, expect } from 'vitest';
import { readdirSync, existsSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { release } from 'node:os';
import { prepareIsolated, spawnIsolated } from '../../lib/index.js';
import { CGroup } from '../../lib/cgroup/index.js';
import { releaseSpares, MAX_SPARES, IDLE_MS } from '../../lib/cgroup/spares.js';
import { isLiveSpare, isRoot, nsboxCgroupsOf, skipReason, sleep, spareOwner } from '../helpers/host.js';

// the kernel keeps a peak figure: v2 memory.peak since 5.19 (v1 always), pids.peak since 6.1
const sh = (script: string, o: Parameters<typeof spawnIsolated>[2] = {}) => spawnIsolated('/bin/sh', ['-c', script], o);
const MiB = 1024 * 1024;
const kernelAtLeast = (major: number, minor: number) => {
  const [maj = 0, min = 0] = (release().match(/^(\d+)\.(\d+)/) ?? []).slice(1).map(Number);
  return maj > major || (maj === major && min >= minor);
};
// the kernel keeps a peak figure: v2 memory.peak since 5.19 (v1 always), pids.peak since 6.1
const hasMemoryPeak = CGroup.mode() !== 'v2' || kernelAtLeast(5, 19);
const hasPidsPeak = kernelAtLeast(6, 1);

/** nsbox cgroup directories of this process (names carry our pid) anywhere under /sys/fs/cgroup. */
function ourCgroups(): string[] {
  const found: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > 6) return;
    let entries: import('node:fs').Dirent[];
    try { entries = readdirSync(dir, { withFileTypes: true }); } catch { return; }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = `${dir}/${e.name}`;
      if (e.name.includes(`nsbox-${process.pid}-`)) found.push(p);
      else walk(p, depth + 1);
    }
  };
  walk('/sys/fs/cgroup', 0);
  return found;
}

/**
 * What of ours may remain once a limited sandbox has its result: nothing of that sandbox (its
 * cgroup, named in result.isolation.cgroup, is removed just after the result, off the critical
 * path: waited for, 10 s at most, with nothing called), and else only spares made ahead for the
 * next limited spawn: named nsbox-<pid>-<start>-spare-<n> for this live process, empty, at most
 * MAX_SPARES of them. Their removal is checked below (teardown, idle, releaseSpares) and in
 * cgroup-gc.test.ts (gc).
 */
async function expectNothingButSpares(sandboxCgroups: (string | null | undefined)[] = []): Promise<void> {
  const names = sandboxCgroups.filter((c): c is string => !!c).map((c) => c.slice(c.lastIndexOf('/') + 1));
  const name = (d: string) => d.slice(d.lastIndexOf('/') + 1);
  const leftover = () => ourCgroups().filter((d) => names.includes(name(d)) || !isLiveSpare(d));
  for (let i = 0; i < 200 && leftover().length; i++) await sleep(50);
  expect(leftover()).toEqual([]);
  const spares = ourCgroups();
  for (const d of spares) expect(spareOwner(d)?.pid).toBe(process.pid);
  expect(new Set(spares.map(name)).size).toBeLessThanOrEqual(MAX_SPARES);
}

describe.skipIf(skipReason(!isRoot, 'cgroup spawn tests need root'))(`spawnIsolated limits (cgroup ${CGroup.mode()})`, () => {
  it('kills a program touching 256 MiB under a 64 MiB limit: verdict memory, peak near the limit', async () => {
    const r = await spawnIsolated('/usr/bin/python3', ['-c', 'b = bytearray(256 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1'], {
      limits: { memory: '64M', memorySwap: '64M' },
    });
    expect(r.verdict).toBe('memory');
    expect(r.signal).toBe('SIGKILL');
    expect(r.usage.oomKills).toBeGreaterThanOrEqual(1);
    if (hasMemoryPeak) {
      expect(r.usage.peakMemoryBytes).toBeGreaterThan(48 * MiB);
      expect(r.usage.peakMemoryBytes).toBeLessThanOrEqual(66 * MiB);
    } else expect(r.usage.peakMemoryBytes).toBeNull();
    // Node is fine and can spawn again
    expect((await sh('echo ok')).stdout).toBe('ok\n');
  });

  it('contains a fork bomb under pids: 32 with verdict pids, and nothing is left', async () => {
    const r = await sh('i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; wait', { limits: { pids: 32, wallTimeMs: 20_000 } });
    expect(r.verdict).toBe('pids');
    if (hasPidsPeak) {
      expect(r.usage.pidsPeak).toBeLessThanOrEqual(32);
      expect(r.usage.pidsPeak).toBeGreaterThanOrEqual(30);
    } else expect(r.usage.pidsPeak).toBeNull();
    await expectNothingButSpares([r.isolation.cgroup]);
    expect((await sh('echo again')).stdout).toBe('again\n');
  });

  it('gives cpus: 0.5 about half a core', async () => {
    // a neighbour without a cpu limit spins at the same time: on a busy machine (other suites,
    // CI) neither gets what it asks, so the floor is half a core or what the neighbour got
    const spin = 'end=$(( $(date +%s) + 2 )); while [ $(date +%s) -lt $end ]; do :; done';
    const [r, free] = await Promise.all([sh(spin, { limits: { cpus: 0.5 } }), sh(spin, { limits: { pids: 64 } })]);
    const shareOf = (x: typeof r) => (x.usage.cpuUserMs + x.usage.cpuSystemMs) / x.usage.wallMs;
    const share = shareOf(r);
    expect(share).toBeGreaterThan(Math.min(0.5, shareOf(free)) * 0.85);
    expect(share).toBeLessThan(0.5 * 1.15);
  });

  it('enforces wallTimeMs and cpuTimeMs with their own verdicts', async () => {
    const wall = await sh('sleep 30', { limits: { wallTimeMs: 300 } });
    expect(wall.verdict).toBe('timeout');
    expect(wall.timedOut).toBe(true);
    // cpu time counts children too (RLIMIT_CPU would not: each child starts afresh)
    const cpu = await sh('(while :; do :; done) & (while :; do :; done) & wait', { limits: { cpuTimeMs: 500, wallTimeMs: 20_000 } });
    expect(cpu.verdict).toBe('cpu-time');
    expect(cpu.usage.cpuUserMs + cpu.usage.cpuSystemMs).toBeGreaterThanOrEqual(500);
    expect(cpu.usage.wallMs).toBeLessThan(5_000);
  });

  it('caps output: a 10 GB writer is stopped with verdict output, and Node memory stays flat', async () => {
    const rss0 = process.memoryUsage().rss;
    const r = await sh('head -c 10000000000 /dev/zero', { limits: { outputBytes: '1M' }, encoding: 'buffer' } as never) as unknown as { verdict: string; truncated: boolean; stdout: Buffer; usage: { wallMs: number } };
    expect(r.verdict).toBe('output');
    expect(r.truncated).toBe(true);
    expect(r.stdout.length).toBe(MiB);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(64 * MiB);
    const t = await sh('head -c 3000000 /dev/zero; echo done >&2', { limits: { outputBytes: 1000 }, onOutputLimit: 'truncate' });
    expect(t.verdict).toBe('exited');
    expect(t.truncated).toBe(true);
    expect(t.stdout.length + t.stderr.length).toBe(1000);
  });

  it('shows the sandbox its own cgroup, read-only, at /sys/fs/cgroup', async () => {
    const r = await sh('cat /proc/self/cgroup; touch /sys/fs/cgroup/x 2>&1; ls /sys/fs/cgroup', { limits: { pids: 64 } });
    const lines = r.stdout.trim().split('\n');
    // every hierarchy's path is the namespace root
    for (const l of lines.filter((x) => /^\d+:/.test(x))) expect(l).toMatch(/:\/$/);
    expect(r.stdout).toMatch(/Read-only file system/);
    if (CGroup.mode() === 'v2') expect(lines).toContain('pids.max');
    else expect(lines).toContain('pids');
  });

  it('a spare cgroup gets the same limit files as a cgroup made for the limits (a fresh spare skips writes of kernel defaults)', async () => {
    // the sandbox reads its own cgroup's files (read-only view at /sys/fs/cgroup)
    const files = CGroup.mode() === 'v2'
      ? ['cpu.max', 'memory.max', 'memory.swap.max', 'pids.max']
      : ['cpu/cpu.cfs_period_us', 'cpu/cpu.cfs_quota_us', 'memory/memory.limit_in_bytes', 'memory/memory.memsw.limit_in_bytes', 'pids/pids.max'];
    const script = files.map((f) => `echo "${f} $(cat /sys/fs/cgroup/${f} 2>/dev/null || echo absent)"`).join('; ');
    const limits = { memory: '64M', pids: 32, cpus: 0.5 };
    await releaseSpares();
    const made = await sh(script, { limits });
    expect(made.isolation.cgroup).not.toMatch(/-spare-\d+$/);
    // the refill is asynchronous (slow under qemu): until a spawn takes a spare
    let spare = await sh(script, { limits });
    for (let i = 0; i < 100 && !/-spare-\d+$/.test(spare.isolation.cgroup!); i++) {
      await sleep(100);
      spare = await sh(script, { limits });
    }
    expect(spare.isolation.cgroup).toMatch(/-spare-\d+$/);
    expect(spare.stdout).toBe(made.stdout);
    expect(made.stdout).toMatch(CGroup.mode() === 'v2' ? /cpu\.max 50000 100000/ : /cpu\.cfs_period_us 100000\n.*cpu\.cfs_quota_us 50000/);
  }, 60_000);

  it('limits asked twice in a row are written into the spares ahead, with the files CGroup.create gives', async () => {
    const v2 = CGroup.mode() === 'v2';
    const files = v2
      ? ['cpu.max', 'memory.max', 'memory.swap.max', 'memory.low', 'pids.max', 'cpu.weight']
      : ['cpu/cpu.cfs_period_us', 'cpu/cpu.cfs_quota_us', 'cpu/cpu.shares', 'memory/memory.limit_in_bytes', 'memory/memory.memsw.limit_in_bytes', 'memory/memory.soft_limit_in_bytes', 'pids/pids.max'];
    const script = files.map((f) => `echo "${f} $(cat /sys/fs/cgroup/${f} 2>/dev/null || echo absent)"`).join('; ');
    const limits = { memory: '48M', pids: 24, cpus: 0.25, memoryReservation: '16M', cpuWeight: 200 };
    // what a cgroup made for these limits holds
    const ref = await CGroup.create(`nsbox-${process.pid}-ref`, { limits });
    const expected = files.map((f) => {
      const [ctrl, file] = v2 ? ['', f] : f.split('/') as [string, string];
      const dir = v2 ? ref.path : ref.paths[ctrl]!;
      let v = 'absent';
      try { v = readFileSync(`${dir}/${file}`, 'utf8').trim(); } catch { /* absent */ }
      return `${f} ${v}\n`;
    }).join('');
    await ref.destroy({ kill: true });
    await releaseSpares();
    const quota = v2 ? 'cpu.max' : 'cpu.cfs_quota_us';
    const want = v2 ? '25000 100000' : '25000';
    const written = () => ourCgroups().filter((d) => /-spare-\d+$/.test(d) && (v2 || /\/cpu\//.test(d)))
      .filter((d) => { try { return readFileSync(`${d}/${quota}`, 'utf8').trim() === want; } catch { return false; } });
    // the first has no spare; from the second on (the same limits again) the spares made after
    // a result hold them, once the fresh ones made before are used (the refill is
    // asynchronous, slow under qemu)
    for (let i = 0; i < 50 && !written().length; i++) {
      await sh('true', { limits });
      for (let j = 0; j < 10 && !written().length; j++) await sleep(50);
    }
    expect(written().length).toBeGreaterThan(0);
    // a spare is used once: the one taken is one of these (or newer), with the same files
    const r = await sh(script, { limits });
    expect(r.isolation.cgroup).toMatch(/-spare-\d+$/);
    expect(r.stdout).toBe(expected);
    // other limits never get a spare written with these
    const other = await sh(script, { limits: { pids: 24 } });
    expect(other.stdout).toMatch(v2 ? /cpu\.max max 100000/ : /cpu\.cfs_quota_us -1/);
    await expectNothingButSpares([r.isolation.cgroup, other.isolation.cgroup]);
  }, 60_000);

  it.skipIf(CGroup.mode() === 'v2')('v1: limits the kernel refuses are refused on every spawn with an NsboxError naming the file, also once the pool would write them ahead, and nothing is left', async () => {
    // cgroup v1 refuses a cfs quota above its parent's (EINVAL); v2 takes it (the parent's caps it)
    const parentPath = `/nsbox-${process.pid}-0-quota-parent`;
    const parent = await CGroup.createAt(parentPath, { limits: { cpus: 0.5 } });
    try {
      await releaseSpares();
      const refused = async () => {
        const e = await spawnIsolated('/bin/true', [], { limits: { cpus: 1 }, cgroupParent: parentPath }).catch((x: unknown) => x) as { code?: string; step?: string; path?: string };
        expect(e.code).toBe('EINVAL');
        expect(e.step).toBe('cgroup-cpu');
        expect(e.path).toMatch(/cpu\.cfs_quota_us$/);
      };
      // the refused limits asked twice in a row while a sandbox runs: its result's refill is
      // made with them written ahead (refused by the kernel: none is made), then the spawns
      // after it (from the fresh spares left, or made) are refused as before
      for (let round = 0; round < 2; round++) {
        const running = spawnIsolated('/bin/sleep', ['0.3'], { limits: { cpus: 0.25 }, cgroupParent: parentPath });
        await sleep(50);
        await refused();
        await refused();
        expect((await running).exitCode).toBe(0);
        await sleep(200);
        await refused();
      }
      // what fits is still taken (from a fresh spare)
      const ok = await spawnIsolated('/bin/true', [], { limits: { cpus: 0.25 }, cgroupParent: parentPath });
      expect(ok.exitCode).toBe(0);
      await releaseSpares();
      for (let i = 0; i < 100 && ourCgroups().some((d) => !d.endsWith('-quota-parent')); i++) await sleep(50);
      expect(ourCgroups().filter((d) => !d.endsWith('-quota-parent'))).toEqual([]);
    } finally {
      await releaseSpares();
      await parent.destroy({ kill: true });
    }
  }, 60_000);

  it('kills what is left in the cgroup after the program exits (no pid namespace: its background child lives on)', async () => {
    // the finish step's first look (v1: pids.current, v2: cgroup.events) sees the child and
    // kills the cgroup's tasks before the figures are read
    const r = await sh('sleep 30 >/dev/null 2>&1 & echo $!', { limits: { pids: 16 }, namespaces: { pid: false } });
    expect(r.exitCode).toBe(0);
    const pid = Number(r.stdout.trim());
    expect(pid).toBeGreaterThan(0);
    // the host's view of that pid (the sandbox shares the pid namespace), at the result: dead
    // (gone, or a zombie its new parent has not reaped yet), not killed later by the removal
    const state = () => { try { return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0]; } catch { return 'gone'; } };
    expect(['gone', 'Z', 'X']).toContain(state());
    await expectNothingButSpares([r.isolation.cgroup]);
  });

  it('rejects bad limits before any cgroup exists', async () => {
    await expectNothingButSpares();
    const before = ourCgroups();
    for (const limits of [{ memory: -1 }, { memory: 100 }, { pids: 0 }, { cpuset: '0-999' }, { bogus: 1 }] as object[]) {
      expect(() => sh('true', { limits } as never)).toThrow(/limits\./);
    }
    // no cgroup made, no spare taken (the calls throw synchronously)
    expect(ourCgroups()).toEqual(before);
  });

  it('leaves no nsbox cgroup after 1,000 sandboxes with limits', async () => {
    const used: (string | null)[] = [];
    for (let i = 0; i < 1000; i += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, () => spawnIsolated('/bin/true', [], { limits: { pids: 16, memory: '32M' } })));
      expect(batch.every((r) => r.exitCode === 0)).toBe(true);
      used.push(...batch.map((r) => r.isolation.cgroup));
    }
    await expectNothingButSpares(used);
    await releaseSpares();
    expect(ourCgroups()).toEqual([]);
  }, 300_000);

  it('uses each spare cgroup once, with fresh counters, and removes spares after 2 s unused', async () => {
    // the first spawn may make its cgroup; its removal makes the spares
    const first = await sh('true', { limits: { pids: 16 } });
    await expectNothingButSpares([first.isolation.cgroup]);
    // the refill is asynchronous (slow under qemu): wait until two fresh spares are there (a
    // spare written ahead with an earlier test's limits is not for these), both sandboxes below
    // must take one of these
    const fresh = () => ourCgroups().filter((d) => /-spare-\d+$/.test(d) && (CGroup.mode() === 'v2' || /\/pids\//.test(d)))
      .filter((d) => { try { return readFileSync(`${d}/pids.max`, 'utf8').trim() === 'max'; } catch { return false; } });
    for (let i = 0; i < 500 && fresh().length < 2; i++) await sleep(20);
    const ready = new Set(fresh().map((d) => d.slice(d.lastIndexOf('/') + 1)));
    expect(ready.size).toBeGreaterThanOrEqual(2);
    // a fork bomb fills one, then a quiet sandbox gets another: its figures are its own
    const bomb = await sh('i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; wait', { limits: { pids: 24, wallTimeMs: 20_000 } });
    expect(bomb.verdict).toBe('pids');
    const quiet = await sh('true', { limits: { pids: 24 } });
    const used = [bomb, quiet].map((r) => r.isolation.cgroup!.slice(r.isolation.cgroup!.lastIndexOf('/') + 1));
    expect(new Set(used).size).toBe(2);
    // spares made ahead, each taken once (maybe not those of `ready`: the refill still going
    // on, or the one after the bomb, adds newer ones, and a pool gives its newest first)
    expect(used.every((n) => /-spare-\d+$/.test(n))).toBe(true);
    expect(quiet.verdict).toBe('exited');
    if (hasPidsPeak) expect(quiet.usage.pidsPeak).toBeLessThanOrEqual(2);
    await expectNothingButSpares(used);
    // unused: gone by themselves
    await sleep(IDLE_MS + 500);
    for (let i = 0; i < 100 && ourCgroups().length; i++) await sleep(50);
    expect(ourCgroups()).toEqual([]);
  }, 60_000);

  it('a Node process that made spares leaves no cgroup when it exits', () => {
    const dist = new URL('../../dist/index.js', import.meta.url).pathname;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', `
      const m = await import(${JSON.stringify(dist)});
      for (let i = 0; i < 3; i++) await m.spawnIsolated('/bin/true', [], { limits: { pids: 16 } });
      await new Promise((r) => setTimeout(r, 300));
      const { readdirSync } = await import('node:fs');
      const r = await m.spawnIsolated('/bin/true', [], { limits: { pids: 16 } });
      const home = r.isolation.cgroup.slice(0, r.isolation.cgroup.lastIndexOf('/'));
      process.stdout.write(JSON.stringify({ pid: process.pid, spares: readdirSync(home).filter((n) => n.startsWith('nsbox-' + process.pid + '-') && n.includes('-spare-')).length }));
    `]).toString();
    const { pid, spares } = JSON.parse(out) as { pid: number; spares: number };
    expect(spares).toBeGreaterThan(0);
    expect(nsboxCgroupsOf([pid], true)).toEqual([]);
  }, 60_000);

  it('releaseSpares() right after a limited result leaves no spare made later', async () => {
    // regression: the used cgroup's removal and the refill came after the result untracked, so a
    // release right after the result (each test file's end) was followed by new spares, which
    // vitest's killed worker then left behind (compat.test's pidsPeak test, the file's last)
    await releaseSpares();
    const r = await sh('true', { limits: { pids: 16 } });
    expect(r.exitCode).toBe(0);
    await releaseSpares();
    await sleep(500);
    expect(ourCgroups()).toEqual([]);
  });

  it('releaseSpares() releases the spares of every copy of nsbox in the thread (dist/ beside the sources)', async () => {
    // regression: each copy kept its own pool, so the test setup's release (of lib/) left the
    // spares of dist/ (imported by examples/code-runner in its test's worker) to a killed worker
    const dist = await import(new URL('../../dist/index.js', import.meta.url).pathname) as typeof import('../../lib/index.js');
    await releaseSpares();
    for (let i = 0; i < 2; i++) expect((await dist.spawnIsolated('/bin/true', [], { limits: { pids: 16 } })).exitCode).toBe(0);
    for (let i = 0; i < 200 && !ourCgroups().some((d) => d.includes('-spare-')); i++) await sleep(20);
    expect(ourCgroups().some((d) => d.includes('-spare-'))).toBe(true);
    await releaseSpares();
    expect(ourCgroups()).toEqual([]);
  });

  it('a sandbox released without a result (a prepared one destroyed unrun) starts no refill', async () => {
    // regression: its cgroup's removal made the spares up again, so a process closing a pool and
    // exiting (examples/code-runner on SIGTERM) exited with the refill's mkdirs under way and
    // left spares behind
    await releaseSpares();
    const p = await prepareIsolated({ limits: { pids: 16 } });
    await p.destroy();
    await sleep(500);
    expect(ourCgroups()).toEqual([]);
  });

  it('runs in an existing cgroup and leaves it in place', async () => {
    const cg = await CGroup.create(`nsbox-${process.pid}-existing`, { limits: { pids: 8 } });
    try {
      const r = await sh('cat /proc/self/cgroup', { cgroup: cg, namespaces: { cgroup: false } });
      expect(r.stdout).toContain(`nsbox-${process.pid}-existing`);
      expect(existsSync(cg.path)).toBe(true);
    } finally {
      await cg.destroy({ kill: true });
    }
  });
});
