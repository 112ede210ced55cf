// Filesystem layer benchmarks (root; run `npm run build:ts` first):
//  1. overlay mount + umount per spawn, p50/p90: OverlayMount with the new mount API and with
//     the mount(2) fallback, and a whole ephemeral container (init + writable layer, mount,
//     umount, remove) as spawnIsolated's `image` option makes one per spawn;
//  2. import throughput of a 200 MB layer tar: LayerStore.importLayer (safe extraction through
//     openat2, sha256 diff id, store bookkeeping) beside GNU `tar -x` of the same file, same run.
// Usage: node bench/fs.mjs [--rounds N] [--size-mb M]
import { execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack } from 'tar-stream';
import { OverlayMount, LayerStore } from '../dist/index.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const ROUNDS = arg('--rounds', 500);
const SIZE_MB = arg('--size-mb', 200);

if (process.geteuid() !== 0) {
  console.error('bench/fs.mjs needs root (overlay mounts)');
  process.exit(1);
}

const work = mkdtempSync(`/tmp/nsbox-bench-fs-${process.pid}-`);
const q = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const fmt = (ms) => `${ms.toFixed(3)} ms`;

async function overlayBench() {
  const lower = [];
  for (let i = 0; i < 3; i++) {
    const d = join(work, `layer${i}`);
    mkdirSync(join(d, 'etc'), { recursive: true });
    writeFileSync(join(d, 'etc', `f${i}`), String(i));
    lower.unshift(d);
  }
  const rows = [];
  for (const driver of ['fsopen', 'mount']) {
    // directories made before and removed after the timed loop, so only mount + umount count
    const dirs = [];
    for (let i = 0; i < ROUNDS; i++) {
      const d = [join(work, `u-${driver}-${i}`), join(work, `w-${driver}-${i}`), join(work, `m-${driver}-${i}`)];
      for (const x of d) mkdirSync(x);
      dirs.push(d);
    }
    const times = [], mounts = [], umounts = [];
    for (const [upper, wk, target] of dirs) {
      const t0 = performance.now();
      const m = OverlayMount.mount({ lower, upper, work: wk, target, driver });
      const t1 = performance.now();
      m.unmount();
      const t2 = performance.now();
      times.push(t2 - t0); mounts.push(t1 - t0); umounts.push(t2 - t1);
    }
    for (const d of dirs) for (const x of d) rmSync(x, { recursive: true, force: true });
    rows.push([`OverlayMount.mount + unmount (3 layers, ${driver}; mount ${fmt(q(mounts, 0.5))}, umount ${fmt(q(umounts, 0.5))})`, q(times, 0.5), q(times, 0.9)]);
  }
  // a whole ephemeral container, as the image option does per spawn
  const store = LayerStore.open(join(work, 'store'));
  const tar = await new Promise((res) => {
    const pk = tarPack();
    const chunks = [];
    pk.on('data', (c) => chunks.push(c));
    pk.on('end', () => res(Buffer.concat(chunks)));
    pk.entry({ name: 'etc/', type: 'directory', mode: 0o755 });
    pk.entry({ name: 'etc/passwd', mode: 0o644 }, 'root:x:0:0::/root:/bin/sh\n');
    pk.finalize();
  });
  const l = await store.importLayer((await import('node:stream')).Readable.from([tar]));
  const cfg = Buffer.from(JSON.stringify({ os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [l.diffId] } }));
  const img = join(work, 'img');
  mkdirSync(img);
  writeFileSync(join(img, 'c.json'), cfg);
  writeFileSync(join(img, 'l.tar'), tar);
  writeFileSync(join(img, 'manifest.json'), JSON.stringify([{ Config: 'c.json', RepoTags: ['bench:1'], Layers: ['l.tar'] }]));
  await store.importImage(img);
  const times = [];
  for (let i = 0; i < Math.min(ROUNDS, 200); i++) {
    const t0 = performance.now();
    const c = await store.createContainer('bench:1');
    c.mount();
    c.unmount();
    await c.remove();
    times.push(performance.now() - t0);
  }
  rows.push(['container create + mount + unmount + remove (image option, on disk)', q(times, 0.5), q(times, 0.9)]);
  return rows;
}

async function makeLayer(file) {
  // three quarters in 1 MiB files, a quarter in 4 KiB files (as a typical image mixes both)
  const pk = tarPack();
  const done = pipeline(pk, createWriteStream(file));
  const big = randomBytes(1 << 20), small = randomBytes(4096);
  const add = (h, b) => new Promise((res, rej) => pk.entry(h, b, (e) => (e ? rej(e) : res())));
  const bigCount = Math.floor((SIZE_MB * 3) / 4);
  await add({ name: 'big/', type: 'directory', mode: 0o755 });
  for (let i = 0; i < bigCount; i++) await add({ name: `big/f${i}`, mode: 0o644 }, big);
  const smallCount = ((SIZE_MB - bigCount) << 20) / 4096;
  for (let d = 0; d < smallCount / 256; d++) {
    await add({ name: `small/d${d}/`, type: 'directory', mode: 0o755 });
    for (let i = 0; i < 256; i++) await add({ name: `small/d${d}/f${i}`, mode: 0o644 }, small);
  }
  pk.finalize();
  await done;
}

async function importBench(base) {
  const file = join(base, 'layer.tar');
  await makeLayer(file);
  const mb = statSync(file).size / (1 << 20);
  const res = { nsbox: [], tar: [] };
  for (let r = 0; r < 3; r++) {
    const store = LayerStore.open(join(base, `istore${r}`));
    let t0 = performance.now();
    const l = await store.importLayer(createReadStream(file, { highWaterMark: 1 << 20 }));
    res.nsbox.push(performance.now() - t0);
    await store.removeLayer(l.id);
    const dest = join(base, `tarx${r}`);
    mkdirSync(dest);
    t0 = performance.now();
    execFileSync('tar', ['-xf', file, '-C', dest]);
    res.tar.push(performance.now() - t0);
    rmSync(dest, { recursive: true, force: true });
    execFileSync('sync');
  }
  rmSync(file, { force: true });
  const med = (xs) => q(xs, 0.5);
  return { mb, nsbox: mb / (med(res.nsbox) / 1000), tar: mb / (med(res.tar) / 1000), nsboxMs: med(res.nsbox), tarMs: med(res.tar) };
}

try {
  console.log(`nsbox fs bench: node ${process.version}, kernel ${execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()}, ${ROUNDS} rounds`);
  for (const [what, p50, p90] of await overlayBench()) console.log(`${what.padEnd(72)} p50 ${fmt(p50)}  p90 ${fmt(p90)}`);
  for (const [where, base] of [['disk (/tmp, ext4 on virtio)', work], ['tmpfs (/dev/shm)', mkdtempSync(`/dev/shm/nsbox-bench-fs-${process.pid}-`)]]) {
    try {
      const imp = await importBench(base);
      console.log(`import of a ${imp.mb.toFixed(0)} MB layer into ${where}, median of 3: LayerStore.importLayer ${imp.nsbox.toFixed(0)} MB/s (${imp.nsboxMs.toFixed(0)} ms), tar -x ${imp.tar.toFixed(0)} MB/s (${imp.tarMs.toFixed(0)} ms), ratio ${(imp.nsbox / imp.tar).toFixed(2)}`);
    } finally {
      if (base !== work) rmSync(base, { recursive: true, force: true });
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
