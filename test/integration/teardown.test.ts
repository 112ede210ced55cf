// The thread's teardown (addon/src/exit_watch.cc): a sandbox belongs to the thread whose
// event loop watches it. When that thread's environment ends (a worker ends or is
// terminated, process.exit) its sandboxes are killed and reaped, what nsbox made for them is
// removed, and Node lives on. Each case runs in a fresh Node process (process.execPath on
// dist/): that process checks, right after the worker is gone and while it still lives, that
// it has no child left (running or zombie) and that nothing its sandboxes made remains.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bridge, LayerStore } from '../../lib/index.js';
import { isRoot, skipReason } from '../helpers/host.js';
import { makeTar } from './fs-helpers.js';

const dist = fileURLToPath(new URL('../../dist/index.js', import.meta.url));
const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
const overlay = /\toverlay\n/.test(readFileSync('/proc/filesystems', 'utf8'));

const scripts = mkdtempSync('/tmp/nsbox-teardown-js-');
let scriptCount = 0;
afterAll(() => rmSync(scripts, { recursive: true, force: true }));

/** Runs an ES module in a fresh Node; its last stdout line is JSON. */
function runNode(code: string, timeoutMs = 60_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: any; stderr: string }> {
  return new Promise((resolve, reject) => {
    const file = join(scripts, `case-${++scriptCount}.mjs`);
    writeFileSync(file, code);
    const c = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    c.stdout.on('data', (d) => { stdout += d; });
    c.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('error', reject);
    c.on('close', (code, signal) => {
      clearTimeout(t);
      const last = stdout.trim().split('\n').at(-1) ?? '';
      let out: unknown = null;
      try { out = JSON.parse(last); } catch { /* none */ }
      resolve({ code, signal, out, stderr });
    });
  });
}

// Checks run by the child Node on itself (after the worker is gone): its children (any
// state), and which of the given cgroup dirs, mount points, bridge ports and dirs remain.
const CHECKS = `
import { existsSync, readFileSync, readdirSync } from 'node:fs';
const children = () => readdirSync('/proc').filter((d) => /^\\d+$/.test(d)).flatMap((d) => {
  try {
    const s = readFileSync('/proc/' + d + '/stat', 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[1]) === process.pid ? [d + ":" + f[0] + ":" + s.slice(s.indexOf("(") + 1, s.lastIndexOf(")"))] : [];
  } catch { return []; }
});
const ownCgroups = () => {
  // every cgroup directory named after this process below its own cgroups
  const mi = readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\\n').map((l) => l.split(' '))
    .filter((f) => /^cgroup2?$/.test(f[f.indexOf('-') + 1])).map((f) => f[4]);
  const mine = readFileSync('/proc/self/cgroup', 'utf8').trim().split('\\n').map((l) => l.split(':').slice(2).join(':'));
  const out = new Set();
  for (const m of mi) for (const p of mine) {
    try { for (const n of readdirSync(m + p)) if (n.startsWith('nsbox-' + process.pid + '-')) out.add(m + p + '/' + n); } catch { /* not this hierarchy */ }
  }
  return [...out];
};
const mountsUnder = (root) => readFileSync('/proc/self/mountinfo', 'utf8').split('\\n').filter((l) => root && l.split(' ')[4]?.startsWith(root));
const ports = (br) => { try { return readdirSync('/sys/class/net/' + br + '/brif'); } catch { return []; } };
const report = (info) => ({
  info,
  children: children(),
  alive: (info.pids ?? []).filter((p) => existsSync('/proc/' + p)),
  cgroups: [...(info.cgroups ?? []).filter((c) => existsSync(c)), ...ownCgroups()],
  mounts: mountsUnder(info.storeRoot),
  ports: ports(info.bridge),
  dirs: (info.dirs ?? []).filter((d) => existsSync(d)),
});
`;

/** A child Node whose worker runs `body` (with `m` = nsbox, `wd` = workerData), posts its info, and is then terminated. */
function workerCase(body: string, wd: Record<string, unknown>, opts: { terminate?: boolean } = {}): string {
  const worker = `
    const { parentPort, workerData: wd } = require('node:worker_threads');
    import(${JSON.stringify(dist)}).then(async (m) => {
      try {
        ${body}
      } catch (e) { parentPort.postMessage({ error: String(e && e.stack || e) }); }
    });`;
  return `${CHECKS}
    import { Worker } from 'node:worker_threads';
    const w = new Worker(${JSON.stringify(worker)}, { eval: true, workerData: ${JSON.stringify(wd)} });
    w.on('error', (e) => console.error('worker error:', e));
    const info = await new Promise((r) => w.once('message', r));
    ${opts.terminate === false ? "await new Promise((r) => w.once('exit', r));" : 'await w.terminate();'}
    console.log(JSON.stringify(report(info)));`;
}

function expectClean(r: Awaited<ReturnType<typeof runNode>>): void {
  if (r.code !== 0 || !r.out) console.error(r.stderr);
  expect(r.signal).toBe(null);
  expect(r.code).toBe(0);
  expect(r.out.info.error).toBeUndefined();
  expect(r.out.children).toEqual([]);
  expect(r.out.alive).toEqual([]);
  expect(r.out.cgroups).toEqual([]);
  expect(r.out.mounts).toEqual([]);
  expect(r.out.ports).toEqual([]);
  expect(r.out.dirs).toEqual([]);
}

const skip = skipReason(!isRoot, 'the teardown tests need root (cgroups, bridges, overlay mounts)');

describe.skipIf(skip)("a thread's teardown kills, reaps and removes its sandboxes; Node lives on", () => {
  let br: Bridge | undefined;
  let storeRoot = '';
  let image = '';
  beforeAll(async () => {
    br = Bridge.create(`nsbox${process.pid.toString(36)}td`, { address: '10.97.0.1/24' });
    if (busybox && overlay) {
      storeRoot = mkdtempSync('/tmp/nsbox-teardown-');
      chmodSync(storeRoot, 0o711); // a store in a 0700 directory fails today (issue 13, item 5d)
      const layer = await makeTar([
        { name: 'bin/', type: 'directory' },
        { name: 'bin/busybox', mode: 0o755, body: readFileSync(busybox) },
        ...['sh', 'sleep'].map((a) => ({ name: `bin/${a}`, type: 'symlink' as const, linkname: 'busybox' })),
      ]);
      const diffId = `sha256:${createHash('sha256').update(layer).digest('hex')}`;
      const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: [diffId] } }));
      const cid = createHash('sha256').update(config).digest('hex');
      const tar = join(storeRoot, 'img.tar');
      writeFileSync(tar, await makeTar([
        { name: 'aaaa/', type: 'directory' },
        { name: 'aaaa/layer.tar', body: layer },
        { name: `${cid}.json`, body: config },
        { name: 'manifest.json', body: JSON.stringify([{ Config: `${cid}.json`, RepoTags: ['bb:td'], Layers: ['aaaa/layer.tar'] }]) },
      ]));
      await LayerStore.open(join(storeRoot, 's')).importImage(tar);
      image = 'bb:td';
    }
  });
  afterAll(async () => {
    await br?.destroy().catch(() => {});
    if (storeRoot) rmSync(storeRoot, { recursive: true, force: true });
  });

  it('a terminated worker: running sandboxes (plain, cgroup limits, bridge, image) and a prepared one', async () => {
    if (!image) console.warn('SKIPPED (image part): no busybox or no overlayfs on this host');
    const r = await runNode(workerCase(`
      const ps = [
        m.spawnIsolated('/bin/sleep', ['60']),
        m.spawnIsolated('/bin/sleep', ['60'], { limits: { memory: '64M', pids: 16 } }),
        m.spawnIsolated('/bin/sleep', ['60'], { network: { bridge: wd.bridge } }),
      ];
      let store;
      if (wd.image) {
        store = m.LayerStore.open(wd.storeRoot + '/s');
        // the container path (viewTemplate: false); the template path makes nothing to remove
        ps.push(m.spawnIsolated('/bin/sleep', ['60'], { image: { store, ref: wd.image }, limits: { memory: '64M' }, viewTemplate: false }));
        ps.push(m.spawnIsolated('/bin/sleep', ['60'], { image: { store, ref: wd.image } }));
      }
      for (const p of ps) p.catch(() => {});
      await Promise.all(ps.map((p) => new Promise((res, rej) => { p.once('spawn', res); p.then(() => rej(new Error('exited')), rej); })));
      const prepared = await m.prepareIsolated({ limits: { memory: '64M' } });
      const cgroups = [...ps, prepared.process].flatMap((p) => p.cgroup ? Object.values(p.cgroup.paths) : []);
      const dirs = store ? store.containers().map((n) => wd.storeRoot + '/s/' + store.container(n).id) : [];
      parentPort.postMessage({ pids: [...ps.map((p) => p.pid), prepared.pid], cgroups, dirs, bridge: wd.bridge, storeRoot: wd.storeRoot && wd.storeRoot + '/s' });
    `, { bridge: br!.name, storeRoot, image }));
    expectClean(r);
    expect(r.out.info.pids).toHaveLength(image ? 6 : 4);
    expect(r.out.info.cgroups.length).toBeGreaterThanOrEqual(image ? 3 : 2);
    if (image) expect(r.out.info.dirs).toHaveLength(1);
  });

  it('a terminated worker: a pool of prepared sandboxes, a Sandbox running a program, a paused Sandbox', async () => {
    const stateDir = mkdtempSync('/tmp/nsbox-teardown-state-');
    try {
      const r = await runNode(workerCase(`
        const pool = m.createPool({ size: 2, template: { limits: { memory: '64M' } } });
        await pool.warm();
        const box = await m.Sandbox.create({ stateDir: wd.stateDir, limits: { memory: '64M' } });
        const run = box.exec('/bin/sleep', ['60']);
        run.catch(() => {});
        await new Promise((r) => run.once('spawn', r));
        // and a paused one (a frozen cgroup: on v1 its tasks die only once thawed)
        const paused = await m.Sandbox.create({ stateDir: wd.stateDir });
        const run2 = paused.exec('/bin/sleep', ['60']);
        run2.catch(() => {});
        await new Promise((r) => run2.once('spawn', r));
        await paused.pause();
        parentPort.postMessage({ pids: [box.pid, run.pid, paused.pid, run2.pid], cgroups: [box, paused].flatMap((b) => Object.values(b.cgroup.paths)) });
      `, { stateDir }));
      expectClean(r);
      // the state file stays (Sandbox.attach(id).destroy() or nsbox gc finish the job)
      expect(r.out.info.cgroups.length).toBeGreaterThan(0);
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('a worker ended after its sandboxes finished, and as they finish (no napi abort)', async () => {
    const r = await runNode(`${CHECKS}
      import { Worker } from 'node:worker_threads';
      const pids = [];
      for (let i = 0; i < 12; i++) {
        const w = new Worker(${JSON.stringify(`
          const { parentPort } = require('node:worker_threads');
          import(${JSON.stringify(dist)}).then(async (m) => {
            await m.spawnIsolated('/bin/true');
            const p = m.spawnIsolated('/bin/sleep', ['0.05'], { limits: { pids: 8 } });
            p.catch(() => {});
            p.once('spawn', () => parentPort.postMessage(p.pid));
          });`)}, { eval: true });
        const pid = await new Promise((r) => w.once('message', r));
        pids.push(pid);
        await new Promise((r) => setTimeout(r, i * 5));  // before, while and after the sandbox ends
        await w.terminate();
      }
      console.log(JSON.stringify(report({ pids })));`);
    expectClean(r);
    expect(r.out.info.pids).toHaveLength(12);
  });

  it('worker threads spawning at the same time get names of their own (cgroups, veth)', async () => {
    // regression: cgroup and link names took a per-thread counter after the process's owner
    // mark, so two workers' limited spawns made the same cgroup name (EEXIST)
    const r = await runNode(`${CHECKS}
      import { Worker } from 'node:worker_threads';
      const ws = [0, 1, 2].map(() => new Worker(${JSON.stringify(`
        const { parentPort, workerData: bridge } = require('node:worker_threads');
        import(${JSON.stringify(dist)}).then(async (m) => {
          const out = [];
          for (let i = 0; i < 4; i++) {
            try {
              const r = await m.spawnIsolated('/bin/true', [], { limits: { pids: 8 }, network: { bridge } });
              out.push(r.exitCode);
            } catch (e) { out.push(String(e.message)); }
          }
          parentPort.postMessage(out);
        });`)}, { eval: true, workerData: ${JSON.stringify(br!.name)} }));
      const results = await Promise.all(ws.map((w) => new Promise((r) => w.once('message', r))));
      await Promise.all(ws.map((w) => w.terminate()));
      console.log(JSON.stringify(report({ results, bridge: ${JSON.stringify(br!.name)} })));`);
    expectClean(r);
    expect(r.out.info.results).toEqual([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]);
    // the sandbox's mount namespace fd is closed by the addon: fs.close warned in a worker
    // ("File descriptor N closed but not opened in unmanaged mode")
    expect(r.stderr).not.toMatch(/closed but not opened/);
  });

  it('a worker ended while the spare cgroups after its limited sandbox are being made', async () => {
    // regression: a spare's teardown record was registered only once all its directories were
    // made, so a worker ended while the refill's mkdirs were on the thread pool left whole sets
    // of spares (teardown's "as they finish" case in a whole npm test). Each worker ends at a
    // different point after its result: before, during and after the removal and the refill.
    const r = await runNode(`${CHECKS}
      import { Worker } from 'node:worker_threads';
      for (let i = 0; i < 10; i++) {
        const w = new Worker(${JSON.stringify(`
          const { parentPort, workerData: i } = require('node:worker_threads');
          import(${JSON.stringify(dist)}).then(async (m) => {
            const r = await m.spawnIsolated('/bin/true', [], { limits: { pids: 8 } });
            const until = performance.now() + i * 0.6;
            while (performance.now() < until) await new Promise((res) => setImmediate(res));
            parentPort.postMessage(r.exitCode);
          });`)}, { eval: true, workerData: i });
        await new Promise((r) => w.once('message', r));
        await w.terminate();
      }
      console.log(JSON.stringify(report({})));`, 170_000);
    expectClean(r);
  }, 180_000);

  it('process.exit() on the main thread while sandboxes run (limits, bridge, image)', async () => {
    const r = await runNode(`
      const m = await import(${JSON.stringify(dist)});
      const ps = [
        m.spawnIsolated('/bin/sleep', ['60'], { limits: { memory: '64M' } }),
        m.spawnIsolated('/bin/sleep', ['60'], { network: { bridge: ${JSON.stringify(br!.name)} } }),
      ];
      const image = ${JSON.stringify(image)};
      let store;
      if (image) {
        store = m.LayerStore.open(${JSON.stringify(storeRoot)} + '/s');
        ps.push(m.spawnIsolated('/bin/sleep', ['60'], { image: { store, ref: image } }));
      }
      for (const p of ps) p.catch(() => {});
      await Promise.all(ps.map((p) => new Promise((res, rej) => { p.once('spawn', res); p.then(() => rej(new Error('exited')), rej); })));
      const dirs = store ? store.containers().map((n) => ${JSON.stringify(storeRoot)} + '/s/' + store.container(n).id) : [];
      console.log(JSON.stringify({ pids: ps.map((p) => p.pid), cgroups: Object.values(ps[0].cgroup.paths), dirs, pid: process.pid }));
      process.exit(0);`);
    if (r.code !== 0 || !r.out) console.error(r.stderr);
    expect(r.signal).toBe(null);
    expect(r.code).toBe(0);
    const { pids, cgroups, dirs } = r.out as { pids: number[]; cgroups: string[]; dirs: string[] };
    expect(pids).toHaveLength(image ? 3 : 2);
    // gone (killed before Node exited: nothing reparented to init survives to be seen here)
    const stillThere = pids.filter((p) => { try { return !readFileSync(`/proc/${p}/stat`, 'utf8').includes(') Z'); } catch { return false; } });
    expect(stillThere).toEqual([]);
    expect(cgroups.filter((c) => existsSync(c))).toEqual([]);
    expect(dirs.filter((d) => existsSync(d))).toEqual([]);
    expect(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => storeRoot && l.split(' ')[4]?.startsWith(`${storeRoot}/s`))).toEqual([]);
    let ports: string[] = [];
    try { ports = (await import('node:fs')).readdirSync(`/sys/class/net/${br!.name}/brif`); } catch { /* none */ }
    expect(ports).toEqual([]);
  });

  it('a sandbox spawned with parentDeathSignal: false outlives its worker, with its cgroup and veth', async () => {
    const r = await runNode(workerCase(`
      const p = m.spawnIsolated('/bin/sleep', ['60'], { parentDeathSignal: false, limits: { memory: '64M' }, network: { bridge: wd.bridge } });
      p.catch(() => {});
      await new Promise((res, rej) => { p.once('spawn', res); p.then(() => rej(new Error('exited')), rej); });
      parentPort.postMessage({ pids: [p.pid], cgroups: Object.values(p.cgroup.paths), bridge: wd.bridge });
    `, { bridge: br!.name }).replace('console.log(JSON.stringify(report(info)));', `
      const out = report(info);
      // then this test's own cleanup: the sandbox, its cgroup, its veth
      const { execFileSync } = await import('node:child_process');
      const { rmdirSync } = await import('node:fs');
      for (const p of info.pids) try { process.kill(p, 'SIGKILL'); } catch {}
      for (const c of info.cgroups) for (let i = 0; i < 200; i++) { try { rmdirSync(c); break; } catch (e) { if (e.code === 'ENOENT') break; await new Promise((r) => setTimeout(r, 10)); } }
      for (const l of out.ports) try { execFileSync('ip', ['link', 'del', l]); } catch {}
      console.log(JSON.stringify(out));`));
    if (r.code !== 0 || !r.out) console.error(r.stderr);
    expect(r.signal).toBe(null);
    expect(r.code).toBe(0);
    expect(r.out.alive).toEqual(r.out.info.pids);
    expect(r.out.cgroups.length).toBeGreaterThan(0);
    expect(r.out.ports).toHaveLength(1);
  });
});
