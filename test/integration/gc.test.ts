// gc() and `nsbox gc` (issue 13, item 4b and the gc part of 12): a child Node process killed
// at random points of a sandbox's setup (cgroup limits + image + bridge network with a
// published port) leaves cgroups, a container view, an ephemeral container, a veth, IPAM and
// nftables entries; gc() removes all of them, and nothing of a live process. Every check looks
// only at what these children made (by their pids, in names the test decodes itself), since
// other nsbox processes run on this host at the same time.
import { spawn as cpSpawn, spawnSync, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gc, LayerStore, listIpam, nftUnavailableReason, type GcReport } from '../../lib/index.js';
import { defaultBridgeGuard, isRoot, nsboxCgroupsOf, skipReason, sleep } from '../helpers/host.js';
import { makeTar } from './fs-helpers.js';

const DIST = new URL('../../dist/index.js', import.meta.url).pathname;
const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;
const skip = skipReason(!isRoot, 'gc tests need root (cgroups, overlay mounts, veths)')
  || skipReason(!existsSync('/bin/busybox'), 'gc tests need /bin/busybox for the image')
  || skipReason(!/\toverlay\n/.test(readFileSync('/proc/filesystems', 'utf8')), 'overlayfs is not available in this kernel');
const withNft = !skip && !nftUnavailableReason();

let dir = '';
let storeRoot = '';
let keepEntries: string[] = [];

beforeAll(async () => {
  if (skip) return;
  if (!withNft) console.warn(`SKIPPED (part): no nftables here (${nftUnavailableReason()}); the children publish no port`);
  dir = mkdtempSync(`/tmp/nsbox-gctest-${process.pid}-`);
  chmodSync(dir, 0o711);
  const layer = await makeTar([
    { name: 'bin/', type: 'directory' },
    { name: 'bin/busybox', mode: 0o755, body: readFileSync('/bin/busybox') },
    { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
    { name: 'bin/sleep', type: 'symlink', linkname: 'busybox' },
    { name: 'etc/', type: 'directory' },
    { name: 'etc/passwd', body: 'root:x:0:0:root:/root:/bin/sh\n' },
  ]);
  const diffId = `sha256:${createHash('sha256').update(layer).digest('hex')}`;
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: [diffId] } }));
  const cid = createHash('sha256').update(config).digest('hex');
  writeFileSync(join(dir, 'img.tar'), await makeTar([
    { name: 'l0/', type: 'directory' }, { name: 'l0/layer.tar', body: layer }, { name: `${cid}.json`, body: config },
    { name: 'manifest.json', body: JSON.stringify([{ Config: `${cid}.json`, RepoTags: ['bb:gc'], Layers: ['l0/layer.tar'] }]) },
  ]));
  storeRoot = join(dir, 'store');
  await LayerStore.open(storeRoot).importImage(join(dir, 'img.tar'));
  keepEntries = readdirSync(storeRoot).sort();
});

// the children bridge without naming a bridge (nsbox0)
const dropDefaultBridge = defaultBridgeGuard();
afterAll(async () => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  await dropDefaultBridge();
});

/** A child Node process that prints `ready` once nsbox is loaded, then `spawned` once its sandbox runs. */
function child(port: number | undefined, seconds = 60): { proc: ReturnType<typeof cpSpawn>; ready: Promise<void>; spawned: Promise<void> } {
  const network = port === undefined ? '{}' : `{ publish: [{ host: ${port}, container: 80 }] }`;
  const script = `
    const m = await import(${JSON.stringify(DIST)});
    const store = m.LayerStore.open(${JSON.stringify(storeRoot)});
    process.stdout.write('ready\\n');
    // viewTemplate: false: the image's container path (a root caller's ephemeral image is
    // otherwise a view template, which makes nothing on the host: image-template.test.ts)
    const p = m.spawnIsolated('/bin/sleep', ['${seconds}'], { image: { store, ref: 'bb:gc' }, limits: { memory: '64M', pids: 32 }, network: ${network}, viewTemplate: false });
    p.on('spawn', () => process.stdout.write('spawned\\n'));
    p.catch((e) => process.stderr.write('child: ' + e.message + '\\n'));
    setInterval(() => {}, 1000);`;
  const proc = cpSpawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const waiters: Array<[string, () => void]> = [];
  proc.stdout!.on('data', (c) => { out += c; for (const [w, f] of waiters) if (out.includes(w)) f(); });
  proc.stderr!.on('data', () => {}); // a killed setup may print; not checked here
  const wait = (w: string) => new Promise<void>((res, rej) => { waiters.push([w, res]); proc.on('exit', () => rej(new Error(`child exited before '${w}'`))); });
  const ready = wait('ready'), spawned = wait('spawned');
  ready.catch(() => {}); spawned.catch(() => {});
  return { proc, ready, spawned };
}

function exited(proc: ReturnType<typeof cpSpawn>): Promise<void> {
  return proc.exitCode !== null || proc.signalCode !== null ? Promise.resolve() : new Promise((r) => proc.once('exit', () => r()));
}

/** Directories of every cgroup hierarchy whose name carries one of `pids` as nsbox's owner. */
const cgroupsOf = (pids: Set<number>): string[] => nsboxCgroupsOf(pids);

/** Mount lines whose source names one of `pids`, or on the test's store without an owner in the source. */
function mountsOf(pids: Set<number>): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => {
    const f = l.split(' ');
    const src = f[f.indexOf('-') + 2] ?? '';
    const m = /^nsbox-(\d+)-\d+-/.exec(src);
    return m ? pids.has(Number(m[1])) : (f[4] ?? '').startsWith(storeRoot);
  });
}

/** Host links named by nsbox for one of `pids` (nsbox + the pid in 5 base-36 digits + 4 + 1), read with `ip`. */
function linksOf(pids: Set<number>): string[] {
  const names = (JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>).map((l) => l.ifname);
  return names.filter((n) => /^nsbox[0-9a-z]{10}$/.test(n) && pids.has(parseInt(n.slice(5, 10), 36)));
}

/** nftables elements whose comment names one of `pids` as owner, read with `nft`. */
function nftOf(pids: Set<number>): string[] {
  if (!withNft) return [];
  let text = '';
  try { text = execFileSync('nft', ['list', 'table', 'ip', 'nsbox'], { encoding: 'utf8' }); } catch { return []; }
  return [...text.matchAll(/nsbox:(\d+):\d+:[^"]*/g)].filter((m) => pids.has(Number(m[1]))).map((m) => m[0]);
}

/**
 * Processes whose command line holds `marker` (a CLONE_VM helper of a Node process shows that
 * process's command line), once those that are only slow to die (a loaded host) are gone.
 */
async function lingering(marker: string, except: number[] = []): Promise<number[]> {
  let found = processesWith(marker, except);
  for (let i = 0; i < 50 && found.length; i++) { await sleep(100); found = processesWith(marker, except); }
  return found;
}

function processesWith(marker: string, except: number[] = []): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || except.includes(Number(p))) continue;
    try { if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker)) out.push(Number(p)); } catch { /* gone */ }
  }
  return out;
}

function leftovers(pids: Set<number>) {
  const store = LayerStore.open(storeRoot);
  // the directories of containers of other processes (the live child's) are theirs
  const others = store.containers().filter((n) => { const m = /^nsbox-run-(\d+)-/.exec(n); return !m || !pids.has(Number(m[1])); })
    .flatMap((n) => { const id = store.container(n).id; return [id, `${id}-init`]; });
  return {
    cgroups: cgroupsOf(pids),
    mounts: mountsOf(pids),
    links: linksOf(pids),
    ipam: listIpam().filter((e) => pids.has(e.owner.pid)).map((e) => `${e.key}:${e.address}`),
    nft: nftOf(pids),
    containers: store.containers().filter((n) => { const m = /^nsbox-run-(\d+)-/.exec(n); return m !== null && pids.has(Number(m[1])); }),
    storeDirs: readdirSync(storeRoot).sort().filter((n) => !keepEntries.includes(n) && !others.includes(n)),
  };
}

const empty = { cgroups: [], mounts: [], links: [], ipam: [], nft: [], containers: [], storeDirs: [] };

describe.skipIf(skip)('gc', () => {
  it('removes everything of 100 child Node processes killed at random points of setup (limits + image + bridge), and nothing of a live one', async () => {
    // a live child: its sandbox runs throughout the sweep
    const live = child(withNft ? 41000 + (process.pid % 1000) : undefined, 3600);
    try {
    await live.ready;
    const tReady = Date.now();
    await live.spawned;
    // how long a setup takes on this host now (it is shared and may be loaded, and the
    // children compete): estimated from the live child, then from the children themselves
    let setupMs = Math.max(100, Date.now() - tReady);
    const livePid = new Set([live.proc.pid!]);
    const liveBefore = leftovers(livePid);
    expect(liveBefore.cgroups.length).toBeGreaterThan(0);
    expect(liveBefore.links.length).toBe(1);
    expect(liveBefore.containers.length).toBe(1);

    const pids = new Set<number>();
    let sigterms = 0, afterSpawn = 0;
    const one = async (i: number) => {
      const c = child(withNft ? 42000 + ((process.pid * 7 + i) % 20000) : undefined);
      pids.add(c.proc.pid!);
      await c.ready.catch(() => {});
      const tr = Date.now();
      let ran = false;
      c.spawned.then(() => { ran = true; setupMs = 0.7 * setupMs + 0.3 * (Date.now() - tr); }, () => {});
      // anywhere in the setup, and sometimes after it
      const delay = Math.random() * 1.3 * setupMs;
      await sleep(delay);
      if (!ran) setupMs = Math.max(setupMs, delay); // the setup takes longer than that
      if (c.proc.exitCode === null) {
        const sig = i % 5 === 0 ? 'SIGTERM' : 'SIGKILL';
        if (sig === 'SIGTERM') sigterms++;
        if (ran) afterSpawn++;
        c.proc.kill(sig);
      }
      await exited(c.proc);
    };
    const t0 = Date.now();
    const N = 100, PAR = 4;
    let next = 0;
    await Promise.all(Array.from({ length: PAR }, async () => { while (next < N) await one(next++); }));
    const t1 = Date.now();
    console.log(`gc test: ${t1 - t0} ms: ${N} children killed (setup took ~${Math.round(setupMs)} ms; ${sigterms} by SIGTERM, ${afterSpawn} after their sandbox ran)`);

    // no process of theirs lives on (a helper blocked forever after its parent died, ...)
    const orphans = await lingering(dir, [live.proc.pid!]);
    for (const p of orphans) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
    expect(orphans).toEqual([]);

    // what they left (the point of the test: it is not nothing)
    const before = leftovers(pids);
    expect(before.cgroups.length + before.containers.length + before.mounts.length).toBeGreaterThan(0);
    // the sandboxes die with their parent (parent-death signal); wait until their groups are empty
    for (let t = 0; t < 200; t++) {
      const busy = cgroupsOf(pids).filter((d) => { try { return readFileSync(join(d, 'cgroup.procs'), 'utf8').trim() !== ''; } catch { return false; } });
      if (!busy.length) break;
      await sleep(50);
    }

    const t2 = Date.now();
    // only what these children (and the live one) own: other nsbox processes on this host are
    // not ours to sweep while their tests look at their own leftovers
    const r: GcReport = await gc({ owners: [...pids, live.proc.pid!], stores: [storeRoot] });
    console.log(`gc test: waited ${t2 - t1} ms for the sandboxes to end; gc() took ${Date.now() - t2} ms`);
    expect(leftovers(pids)).toEqual(empty);
    expect(r.cgroups.length).toBeGreaterThanOrEqual(before.cgroups.length);
    expect(r.skipped.filter((s) => s.what.includes(storeRoot) || /nsbox-(?:sbx-)?(\d+)-/.test(s.what) && pids.has(Number(/nsbox-(?:sbx-)?(\d+)-/.exec(s.what)![1])))).toEqual([]);

    // the live child's sandbox is untouched and still runs
    expect(leftovers(livePid)).toEqual(liveBefore);
    expect(live.proc.exitCode).toBe(null);
    live.proc.kill('SIGKILL');
    await exited(live.proc);
    await sleep(200);
    await gc({ owners: [live.proc.pid!] });
    expect(leftovers(livePid)).toEqual(empty);
    } finally {
      live.proc.kill('SIGKILL');
    }
  }, 240_000);

  it('removes an IPAM state file a killed process left half-written, not a live one\'s', async () => {
    // a process killed between writing <bridge>.json.nsbox-<pid>-<start>.tmp and renaming it
    const dead = cpSpawn(process.execPath, ['-e', '0']);
    const deadPid = await new Promise<number>((res) => dead.once('exit', () => res(dead.pid!)));
    const dir = join(process.env.NSBOX_STATE_DIR ?? '/run/nsbox', 'ipam');
    mkdirSync(dir, { recursive: true });
    const start = Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ')[19]);
    const gone = join(dir, `nsboxtest0.json.nsbox-${deadPid}-1.tmp`);
    const mine = join(dir, `nsboxtest0.json.nsbox-${process.pid}-${start}.tmp`);
    writeFileSync(gone, '{');
    writeFileSync(mine, '{');
    try {
      const r = await gc();
      expect(r.files).toContain(gone);
      expect(existsSync(gone)).toBe(false);
      expect(existsSync(mine)).toBe(true);
    } finally {
      rmSync(gone, { force: true });
      rmSync(mine, { force: true });
    }
  });

  it('a Node process killed while it makes an idmap user namespace leaves no helper behind', async () => {
    // the helper (CLONE_VM|CLONE_FILES, in the new user namespace) held the pipe it waited on:
    // with its parent gone it slept forever, holding every fd of the dead process
    const addon = new URL('../../build/Release/nsbox.node', import.meta.url).pathname;
    const marker = `nsbox-gc-userns-${process.pid}`;
    const one = async () => {
      const script = `/* ${marker} */ const a = require(${JSON.stringify(addon)}); const fs = require('fs');
        process.stdout.write('go\\n'); for (;;) fs.closeSync(a.fsUserNs('0 100000 65536', '0 100000 65536'));`;
      const c = cpSpawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise((r) => c.stdout!.once('data', r));
      await sleep(30 + Math.random() * 100);
      c.kill('SIGKILL');
      await exited(c);
    };
    let next = 0;
    await Promise.all(Array.from({ length: 3 }, async () => { while (next++ < 36) await one(); }));
    const orphans = await lingering(marker);
    for (const p of orphans) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
    expect(orphans).toEqual([]);
  }, 120_000);

  it('removes a Sandbox (cgroup, image container, state file) whose creator was killed, not one still being made or running', async () => {
    const stateDir = join(dir, `sandboxes-${Date.now()}`);
    const script = `
      const m = await import(${JSON.stringify(DIST)});
      const store = m.LayerStore.open(${JSON.stringify(storeRoot)});
      const box = await m.Sandbox.create({ id: 'gcbox', stateDir: ${JSON.stringify(stateDir)}, image: { store, ref: 'bb:gc' }, limits: { pids: 16 } });
      process.stdout.write(JSON.stringify(box.cgroup.paths) + '\\n');
      setInterval(() => {}, 1000);`;
    const c = cpSpawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const paths = await new Promise<Record<string, string>>((res, rej) => {
        let out = '';
        c.stdout!.on('data', (d) => { out += d; if (out.includes('\n')) res(JSON.parse(out)); });
        c.on('exit', () => rej(new Error('the child exited before its sandbox ran')));
      });
      const dirs = [...new Set(Object.values(paths))];
      expect(dirs.every((d) => new RegExp(`/nsbox-sbx-${c.pid}-\\d+-gcbox$`).test(d))).toBe(true);
      const store = LayerStore.open(storeRoot);
      expect(store.containers()).toContain('gcbox');
      // a reservation of a live maker is left alone
      writeFileSync(join(stateDir, 'making.json'), JSON.stringify({ creatorPid: process.pid, creatorStart: Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ')[19]), image: null }));
      c.kill('SIGKILL');
      await exited(c);
      // the holder dies with its creator (parent-death signal)
      for (let i = 0; i < 200 && dirs.some((d) => existsSync(d) && readFileSync(join(d, 'cgroup.procs'), 'utf8').trim() !== ''); i++) await sleep(50);
      const r = await gc({ sandboxStateDirs: [stateDir], owners: [c.pid!] });
      expect(r.sandboxes).toEqual([join(stateDir, 'gcbox.json')]);
      expect(r.containers).toContain(`${storeRoot}: gcbox`);
      expect(dirs.filter((d) => existsSync(d))).toEqual([]);
      expect(store.containers()).not.toContain('gcbox');
      expect(readdirSync(stateDir)).toEqual(['making.json']);
    } finally {
      c.kill('SIGKILL');
    }
  });

  it('decides by pid and start time: a group named with a live pid but another start time goes, its own stays', async () => {
    const start = Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ')[19]);
    const mem = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[f.indexOf('-') + 1] === 'cgroup' && (f[f.indexOf('-') + 3] ?? '').split(',').includes('pids'))?.[4]
      ?? readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[f.indexOf('-') + 1] === 'cgroup2')![4]!;
    const reused = join(mem, `nsbox-${process.pid}-${start + 1}-gctest`);
    const mine = join(mem, `nsbox-${process.pid}-${start}-gctest`);
    // a dead pid: a process that has exited and was reaped
    const deadPid = spawnSync('true').pid!;
    const dead = join(mem, `nsbox-${deadPid}-1-gctest`);
    for (const d of [reused, mine, dead]) mkdirSync(d);
    try {
      const r = await gc({ owners: [process.pid, deadPid] });
      expect(r.cgroups).toEqual(expect.arrayContaining([reused, dead]));
      expect(existsSync(reused)).toBe(false);
      expect(existsSync(dead)).toBe(existsSync(`/proc/${deadPid}`)); // unless that pid was reused meanwhile (then only later)
      expect(statSync(mine).isDirectory()).toBe(true);
      expect(r.cgroups).not.toContain(mine);
    } finally {
      for (const d of [reused, mine, dead]) { try { rmdirSync(d); } catch { /* removed */ } }
    }
  });

  it('nsbox gc: a person\'s summary, --json, and without root one line that says what it needs', async () => {
    const deadPid = spawnSync('true').pid!;
    const cgMount = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => ['cgroup', 'cgroup2'].includes(f[f.indexOf('-') + 1] ?? ''))![4]!;
    const d = join(cgMount, `nsbox-${deadPid}-1-clitest`);
    mkdirSync(d);
    try {
      // unprivileged: the group stays, exit 1, one line on stderr naming root, no stack
      const u = spawnSync(process.execPath, [CLI, 'gc'], { uid: 65534, gid: 65534, encoding: 'utf8', cwd: '/' });
      expect(u.stdout).toMatch(/^nsbox gc: (nothing to remove|removed \d+)/);
      expect(u.stdout).toContain(`cgroup ${d}: needs privilege`);
      expect(u.stderr.trim().split('\n')).toHaveLength(1);
      expect(u.stderr).toMatch(/need root .*run it as root/);
      expect(u.stderr).not.toMatch(/\n\s+at /);
      expect(u.status).toBe(1);
      expect(existsSync(d)).toBe(true);
      // --json: the report (unprivileged, so that this test removes nothing of other processes)
      const j = spawnSync(process.execPath, [CLI, 'gc', '--json'], { uid: 65534, gid: 65534, encoding: 'utf8', cwd: '/' });
      expect(j.status).toBe(1);
      const rep = JSON.parse(j.stdout) as GcReport;
      expect(Object.keys(rep).sort()).toEqual(['bridges', 'cgroups', 'containers', 'files', 'idBlocks', 'ipam', 'links', 'mounts', 'published', 'sandboxes', 'skipped', 'storeFiles', 'tables']);
      expect(rep.skipped).toContainEqual({ kind: 'cgroup', what: d, reason: 'needs privilege (EACCES)', needsPrivilege: true });
      // as root the group goes
      const r = await gc({ owners: [deadPid] });
      if (!existsSync(`/proc/${deadPid}`)) expect(r.cgroups).toEqual([d]);
      // bad usage: one line, exit 2
      const b = spawnSync(process.execPath, [CLI, 'gc', '--nope'], { encoding: 'utf8' });
      expect(b.status).toBe(2);
      expect(b.stderr).toMatch(/^nsbox: gc: unknown option --nope/);
      // the human text for a clean and a non-empty report
      const { formatGcReport } = await import('../../lib/gc.js');
      const none: GcReport = { cgroups: [], mounts: [], containers: [], storeFiles: [], sandboxes: [], idBlocks: [], links: [], ipam: [], published: [], bridges: [], tables: [], files: [], skipped: [] };
      expect(formatGcReport(none)).toBe('nsbox gc: nothing to remove\n');
      expect(formatGcReport({ ...none, cgroups: ['/a/memory/nsbox-1-2-3', '/a/pids/nsbox-1-2-3'], links: ['nsbox00001abcdh'] })).toBe(
        'nsbox gc: removed 3 leftovers of dead nsbox processes\n'
        + '  cgroups: 2 (1 group across hierarchies)\n    /a/memory/nsbox-1-2-3\n    /a/pids/nsbox-1-2-3\n'
        + '  network links: 1\n    nsbox00001abcdh\n');
    } finally {
      try { rmdirSync(d); } catch { /* removed */ }
    }
  });
});
