// The compatibility suite's feature probes (issue 15), written once and run unchanged as the
// caller of a matrix cell: root, uid 65534, a non-root user in a delegated cgroup scope.
// test/integration/matrix.test.ts starts this file in a fresh Node process placed as that
// caller (`node matrix-features.mjs <dist/index.js>`); every feature runs in turn and the last
// stdout line is JSON: { <feature>: { ok: <what it saw> } | { error: <the NsboxError as data> } }.
// Each probe makes what it needs in a scratch directory of its own caller and removes it.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// argv: dist/index.js; a busybox rootfs and a docker-save archive of a busybox image tagged
// `bb:docker` with a world-writable /work (both made by the test, readable by any caller);
// optionally the features to run, comma-separated
const nsbox = await import(process.argv[2]);
const [ROOTFS, IMAGE] = [process.argv[3], process.argv[4]];
const only = process.argv[5] ? new Set(process.argv[5].split(',')) : null;

const errData = (e) => ({ name: e?.name, code: e?.code, step: e?.step, syscall: e?.syscall, path: e?.path, message: String(e?.message ?? e) });
const res = (r) => ({ code: r.exitCode, signal: r.signalCode ?? null, verdict: r.verdict, stdout: r.stdout, stderr: r.stderr });

/** A scratch directory of this caller, removed after `fn`. */
async function inScratch(fn) {
  const d = mkdtempSync(join(tmpdir(), 'nsbox-matrix-'));
  chmodSync(d, 0o755); // the sandbox's root may be another host uid (root's sandboxes)
  try { return await fn(d); } finally { rmSync(d, { recursive: true, force: true }); }
}

const T = 30_000;
const features = {
  'spawn default view': async () => res(await nsbox.spawnIsolated('/bin/sh', ['-c', 'echo hi; id -u; cat /proc/self/uid_map | wc -l; ls /'], { timeout: T })),

  rootfs: async () => res(await nsbox.spawnIsolated('/bin/sh', ['-c', 'echo in-rootfs; cat /etc/passwd | wc -l'], { rootfs: ROOTFS, timeout: T })),

  'bind and tmpfs mounts': () => inScratch(async (d) => {
    writeFileSync(join(d, 'data'), 'bound\n');
    const r = await nsbox.spawnIsolated('/bin/sh', ['-c', 'cat /d/data; { echo x > /d/new; } 2>/dev/null && echo wrote-ro; echo t > /t/f && cat /t/f; grep -E " /(d|t) " /proc/self/mountinfo | cut -d" " -f5,6,9'], {
      mounts: [{ type: 'bind', source: d, target: '/d', readonly: true }, { type: 'tmpfs', target: '/t', options: 'size=1M' }], timeout: T,
    });
    return res(r);
  }),

  'limits and verdicts': async () => {
    // wallTimeMs needs no cgroup; pids and memory do
    const wall = res(await nsbox.spawnIsolated('/bin/sleep', ['20'], { limits: { wallTimeMs: 500 } }));
    const pids = await nsbox.spawnIsolated('/bin/sh', ['-c', 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 3 & done; wait'], { limits: { pids: 4, memory: '64M', wallTimeMs: T } })
      .then(res, (e) => ({ error: errData(e) }));
    return { wall, pids };
  },

  CGroup: async () => {
    const g = await nsbox.CGroup.create(`matrix-${process.pid}`, { limits: { pids: 8, memory: '32M' } });
    try {
      const p = nsbox.spawnIsolated('/bin/sh', ['-c', 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 2 & done; wait'], { cgroupParent: g, limits: { pids: 8, wallTimeMs: T } });
      const r = await p;
      return { stats: typeof (await g.stats()) === 'object', verdict: r.verdict };
    } finally { await g.destroy(); }
  },

  overlay: () => inScratch(async (d) => {
    for (const [n, f] of [['lo', 'low'], ['up', 'top']]) { mkdirSync(join(d, n)); writeFileSync(join(d, n, 'f'), f); }
    writeFileSync(join(d, 'lo', 'g'), 'low-g');
    mkdirSync(join(d, 'm'));
    const m = nsbox.OverlayMount.mount({ lower: [join(d, 'up'), join(d, 'lo')], target: join(d, 'm') });
    try { return [readFileSync(join(d, 'm/f'), 'utf8'), readFileSync(join(d, 'm/g'), 'utf8')]; } finally { m.unmount(); }
  }),

  'image import and run': () => inScratch(async (d) => {
    const store = nsbox.LayerStore.open(join(d, 'store'));
    const img = await store.importImage(IMAGE);
    const r = await nsbox.spawnIsolated(nsbox.IMAGE_COMMAND, [], { image: { store, ref: 'bb:docker' }, timeout: T });
    return { names: img.names, run: res(r) };
  }),

  // a change made in a sandbox the image ran in (kept), committed as a new image, which runs
  commit: () => inScratch(async (d) => {
    const store = nsbox.LayerStore.open(join(d, 'store'));
    await store.importImage(IMAGE);
    const w = await nsbox.spawnIsolated('/bin/sh', ['-c', 'echo committed > /work/added'], { image: { store, ref: 'bb:docker', keep: true }, timeout: T });
    const [id] = store.containers();
    if (w.exitCode !== 0 || !id) return { write: res(w), kept: store.containers() };
    const c = store.container(id);
    try {
      const img = await c.commit({ name: 'mx:2', config: { Cmd: ['/bin/cat', '/work/added'] } });
      const r = await nsbox.spawnIsolated(nsbox.IMAGE_COMMAND, [], { image: { store, ref: 'mx:2' }, timeout: T });
      return { layers: img.layers.length, run: res(r) };
    } finally { await c.remove(); for (const n of ['mx:2', 'bb:docker']) await store.removeImage(n).catch(() => {}); }
  }),

  'networking modes': async () => {
    const out = {};
    for (const [name, network] of [['none', 'none'], ['loopback', 'loopback'], ['user', 'user'], ['bridge', { mode: 'bridge' }]]) {
      out[name] = await nsbox.spawnIsolated('/bin/sh', ['-c', 'ip -o -4 addr show | grep -v " lo " | wc -l; ip -br link show lo | cut -d" " -f1'], { network, timeout: T })
        .then(res, (e) => ({ error: errData(e) }));
    }
    return out;
  },

  // a listener of the caller's side (its loopback, port NSBOX_MATRIX_HOST_PORT, made by the
  // test) reached from the sandbox through the helper (hostLoopback: true), at the default gateway
  'user network reach': async () => {
    const port = Number(process.env.NSBOX_MATRIX_HOST_PORT);
    if (!port) return 'no listener given';
    const py = `import socket
gw = [l.split() for l in open('/proc/net/route').read().splitlines()[1:] if l.split()[1] == '00000000'][0][2]
print(socket.create_connection((socket.inet_ntoa(bytes.fromhex(gw)[::-1]), ${port}), timeout=10).recv(16).decode().strip())`;
    return res(await nsbox.spawnIsolated('/usr/bin/python3', ['-c', py], { network: { mode: 'user', hostLoopback: true }, timeout: T }));
  },

  seccomp: async () => {
    const def = res(await nsbox.spawnIsolated('/bin/grep', ['Seccomp:', '/proc/self/status'], { timeout: T }));
    const profile = nsbox.Seccomp.profile({ defaultAction: 'allow', rules: [{ syscalls: 'uname', action: { errno: 'EPERM' } }] });
    const denied = res(await nsbox.spawnIsolated('/bin/uname', [], { seccomp: profile, timeout: T }));
    return { def, denied };
  },

  tty: async () => res(await nsbox.spawnIsolated('/bin/sh', ['-c', 'tty; stty size'], { tty: { rows: 30, cols: 100 }, timeout: T })),

  init: async () => {
    const withInit = res(await nsbox.spawnIsolated('/bin/sh', ['-c', '(sleep 30 &) ; echo $$; cat /proc/1/comm'], { timeout: T }));
    const noInit = res(await nsbox.spawnIsolated('/bin/sh', ['-c', 'echo $$'], { init: false, timeout: T }));
    return { withInit, noInit };
  },

  prepared: async () => {
    const p = await nsbox.prepareIsolated({ timeout: T });
    return res(await p.run('/bin/sh', ['-c', 'echo prepared']));
  },

  pool: () => inScratch(async (d) => {
    const pool = nsbox.createPool({ size: 1, template: { stateDir: join(d, 'state') } });
    try {
      const a = res(await pool.run('/bin/echo', ['one']));
      const b = res(await pool.run('/bin/echo', ['two']));
      return [a, b];
    } finally { await pool.close(); }
  }),

  'Sandbox create/exec/destroy': () => inScratch(async (d) => {
    const box = await nsbox.Sandbox.create({ stateDir: join(d, 'state') });
    let r;
    try {
      await box.exec('/bin/sh', ['-c', 'echo kept > /tmp/x']);
      r = res(await box.exec('/bin/cat', ['/tmp/x']));
    } finally { await box.destroy(); }
    return { exec: r, after: nsbox.Sandbox.list ? (await nsbox.Sandbox.list({ stateDir: join(d, 'state') })).length : 0 };
  }),

  doctor: async () => nsbox.doctor().checks.map((c) => ({ id: c.id, status: c.status, detail: c.detail, fix: c.fix })),
};

// A feature that does not end in FEATURE_MS is reported as a failure of its own (the rest still
// run; process.exit below ends what it left), and stderr says which feature runs, so a hang
// names its feature instead of ending the whole probe.
const FEATURE_MS = Number(process.env.NSBOX_MATRIX_FEATURE_MS || 180_000);
const out = {};
// NSBOX_MATRIX_ENTER_LEAF=1 (or 'all'): first what the docs tell a service whose own cgroup
// holds it (a Delegate=yes unit; a container at its cgroup namespace root) to do once
const enter = process.env.NSBOX_MATRIX_ENTER_LEAF;
if (enter) out['enter leaf'] = await nsbox.CGroup.enterLeaf(enter === 'all' ? { all: true } : {}).then((g) => ({ ok: g.path }), (e) => ({ error: errData(e) }));
for (const [name, fn] of Object.entries(features)) {
  if (only && !only.has(name)) continue;
  process.stderr.write(`matrix: ${name}\n`);
  let t;
  const hang = new Promise((_, rej) => { t = setTimeout(() => rej(Object.assign(new Error(`did not end in ${FEATURE_MS} ms`), { name: 'Hang' })), FEATURE_MS); });
  try { out[name] = { ok: await Promise.race([fn(), hang]) }; } catch (e) { out[name] = { error: errData(e) }; } finally { clearTimeout(t); }
}
process.stdout.write(`\n${JSON.stringify(out)}\n`);
process.exit(0);
