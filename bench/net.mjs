#!/usr/bin/env node
// bench/net: what bridge networking adds to a spawn, and TCP throughput over the veth.
// Run as root:  node bench/net.mjs [--n 100] [--mb 400]
//
// Whole spawns (p50, same run, interleaved): spawnIsolated('/bin/true') with network 'none'
// (the default: new netns, lo up), bridge mode (veth on a bridge, IPAM, nftables), and
// user mode with pasta and with slirp4netns when installed (holder + helper per sandbox).
//
// Per sandbox, host side (p50, same run, interleaved):
//   nsbox handoff     NetHandoff (move) alone: move the peer into the child's netns as eth0, mtu,
//                     address, up, default route (what runs between clone and "go")
//   nsbox bridge      prepareSandboxNetwork (veth on the bridge, IPAM, nft) + NetHandoff (move)
//   nsbox create      the same with handoff 'create': the peer is born in the child's netns
//                     (moving a device between namespaces waits an RCU grace period)
//   ip CLI            the same steps with iproute2 (`ip link add ... ; ip link set netns ...;
//                     ip -n addr add ...; ...`), as shell-scripted setups (and CNI's older
//                     tooling) do: the public peer
//   (release/teardown is not timed: the veth goes with the sandbox's netns)
// Throughput: python3 sends --mb MiB to a Node receiver on the host, from inside a netns over
// the veth and bridge, from a user-mode sandbox through pasta / slirp4netns (to the host's
// loopback via the gateway, hostLoopback: true), and from the host over loopback.
import { spawn as cpSpawn, execFileSync } from 'node:child_process';
import { readlinkSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { build } from 'esbuild';

const arg = (name, def) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : def; };
const N = arg('n', 100);
const MB = arg('mb', 400);
const bundle = `/tmp/nsbox-bench-net-${process.pid}.mjs`;
await build({ stdin: { contents: "export * from './lib/net/network.js'; export * from './lib/net/bridge.js'; export * from './lib/net/native.js';", resolveDir: new URL('..', import.meta.url).pathname, loader: 'ts' }, bundle: true, platform: 'node', format: 'esm', outfile: bundle, logLevel: 'silent' });
const net = await import(bundle);
rmSync(bundle);
// the public API (spawnIsolated with every layer), bundled inside the package so the addon is found
const root = new URL('..', import.meta.url).pathname;
const apiBundle = `${root}build-test/nsbox-bench-net-api-${process.pid}.mjs`;
await build({ entryPoints: [`${root}lib/index.ts`], bundle: true, platform: 'node', format: 'esm', outfile: apiBundle, logLevel: 'silent',
  banner: { js: "import { createRequire as __nsboxCreateRequire } from 'node:module'; const require = __nsboxCreateRequire(import.meta.url);" } });
const api = await import(apiBundle);
rmSync(apiBundle);
const which = (name) => (process.env.PATH ?? '').split(':').some((d) => { try { execFileSync('test', ['-x', `${d}/${name}`]); return true; } catch { return false; } });
const userHelpers = ['pasta', 'slirp4netns'].filter(which);

const me = readlinkSync('/proc/self/ns/net');
async function netnsProcess() {
  const c = cpSpawn('unshare', ['-n', 'sleep', '60'], { stdio: 'ignore' });
  for (;;) {
    try { if (readlinkSync(`/proc/${c.pid}/ns/net`) !== me) return c; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 2));
  }
}
const p50 = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
const br = net.Bridge.create(`nsboxbench${process.pid % 1000}`, { address: '10.90.0.1/24' });
const res = { handoff: [], createHandoff: [], bridge: [], create: [], ipcli: [] };
try {
  // whole spawns
  {
    const variants = [['none', 'none'], ['bridge', { bridge: br.name }], ...userHelpers.map((h) => [`user (${h})`, { mode: 'user', helper: h }])];
    const times = Object.fromEntries(variants.map(([k]) => [k, []]));
    for (let i = 0; i < 5; i++) for (const [, network] of variants) await api.spawnIsolated('/bin/true', [], { network }); // warm-up
    for (let i = 0; i < N; i++) {
      for (const [k, network] of variants) {
        const t0 = process.hrtime.bigint();
        const r = await api.spawnIsolated('/bin/true', [], { network });
        times[k].push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (r.exitCode !== 0) throw new Error(`${k}: exit ${r.exitCode} ${r.stderr}`);
      }
    }
    console.log(`spawnIsolated('/bin/true') to exit, n=${N} each, interleaved`);
    for (const [k] of variants) console.log(`  network ${k.padEnd(20)} p50 ${p50(times[k]).toFixed(2)} ms`);
    console.log(`  bridge costs +${(p50(times.bridge) - p50(times.none)).toFixed(2)} ms per spawn over 'none' (${(p50(times.bridge) / p50(times.none)).toFixed(2)}x)`);
    if (!userHelpers.length) console.log('  (user mode not measured: neither pasta nor slirp4netns is installed)');
  }

  for (let i = 0; i < N; i++) {
    // nsbox handoff only (veth made beforehand)
    {
      const c = await netnsProcess();
      const p = await net.prepareSandboxNetwork({ bridge: br }, { id: `b${i}` });
      const t0 = process.hrtime.bigint();
      for (const h of p.handoff) net.netNative().netlinkHandoff(h, c.pid);
      res.handoff.push(Number(process.hrtime.bigint() - t0) / 1e6);
      c.kill('SIGKILL');
      await p.release();
    }
    // nsbox handoff only, 'create' flavour
    {
      const c = await netnsProcess();
      const p = await net.prepareSandboxNetwork({ bridge: br }, { id: `e${i}`, handoff: 'create' });
      const t0 = process.hrtime.bigint();
      for (const h of p.handoff) net.netNative().netlinkHandoff(h, c.pid);
      res.createHandoff.push(Number(process.hrtime.bigint() - t0) / 1e6);
      c.kill('SIGKILL');
      await p.release();
    }
    // nsbox prepare + handoff
    {
      const c = await netnsProcess();
      const t0 = process.hrtime.bigint();
      const p = await net.prepareSandboxNetwork({ bridge: br }, { id: `c${i}` });
      for (const h of p.handoff) net.netNative().netlinkHandoff(h, c.pid);
      res.bridge.push(Number(process.hrtime.bigint() - t0) / 1e6);
      c.kill('SIGKILL');
      await p.release();
    }
    // nsbox prepare + handoff, 'create' flavour (peer born in the child's netns)
    {
      const c = await netnsProcess();
      const t0 = process.hrtime.bigint();
      const p = await net.prepareSandboxNetwork({ bridge: br }, { id: `d${i}`, handoff: 'create' });
      for (const h of p.handoff) net.netNative().netlinkHandoff(h, c.pid);
      res.create.push(Number(process.hrtime.bigint() - t0) / 1e6);
      c.kill('SIGKILL');
      await p.release();
    }
    // ip CLI
    {
      const c = await netnsProcess();
      const h = `nsboxbh${i % 1000}`, pe = `nsboxbp${i % 1000}`;
      const ip = (...a) => execFileSync('ip', a);
      const t0 = process.hrtime.bigint();
      ip('link', 'add', h, 'type', 'veth', 'peer', 'name', pe);
      ip('link', 'set', h, 'master', br.name, 'up');
      ip('link', 'set', pe, 'netns', String(c.pid), 'name', 'eth0', 'up');
      execFileSync('nsenter', ['-t', String(c.pid), '-n', 'sh', '-c', 'ip addr add 10.90.0.200/24 dev eth0 && ip route add default via 10.90.0.1']);
      res.ipcli.push(Number(process.hrtime.bigint() - t0) / 1e6);
      c.kill('SIGKILL');
      await new Promise((r) => c.once('exit', r));
      try { ip('link', 'del', h); } catch { /* gone with the netns */ }
    }
  }
  const row = (name, a) => console.log(`${name.padEnd(16)} p50 ${p50(a).toFixed(3)} ms`);
  console.log(`host-side network setup per sandbox, n=${N}`);
  row('nsbox handoff', res.handoff);
  row('create handoff', res.createHandoff);
  row('nsbox bridge', res.bridge);
  row('nsbox create', res.create);
  row('ip CLI', res.ipcli);
  console.log(`ratio ip CLI / nsbox bridge (move): ${(p50(res.ipcli) / p50(res.bridge)).toFixed(1)}x`);
  console.log(`ratio ip CLI / nsbox bridge (create): ${(p50(res.ipcli) / p50(res.create)).toFixed(1)}x`);

  // throughput
  const sender = (host, port) => `
import socket, time
s = socket.create_connection(('${host}', ${port}))
b = b'x' * 65536
for _ in range(${MB} * 16): s.sendall(b)
s.close()`;
  async function measure(startSender) {
    const server = createServer();
    let got = 0, t0 = 0n;
    const done = new Promise((resolve) => server.on('connection', (s) => {
      t0 = process.hrtime.bigint();
      s.on('data', (d) => { got += d.length; });
      s.on('end', () => resolve(Number(process.hrtime.bigint() - t0) / 1e9));
    }));
    await new Promise((r) => server.listen(0, '0.0.0.0', r));
    const stop = await startSender(server.address().port);
    const secs = await done;
    server.close();
    await stop();
    return got / 1048576 / secs;
  }
  const veth = await measure(async (port) => {
    const p = await net.prepareSandboxNetwork({ bridge: br }, { id: 'tp' });
    const c = cpSpawn('unshare', ['-n', 'sh', '-c', 'read go; exec python3 -c "$0"', sender('10.90.0.1', port)], { stdio: ['pipe', 'inherit', 'inherit'] });
    for (;;) { try { if (readlinkSync(`/proc/${c.pid}/ns/net`) !== me) break; } catch { /* */ } await new Promise((r) => setTimeout(r, 2)); }
    for (const h of p.handoff) net.netNative().netlinkHandoff(h, c.pid);
    c.stdin.end('go\n');
    return async () => { await new Promise((r) => (c.exitCode !== null ? r() : c.once('exit', r))); await p.release(); };
  });
  const userTp = {};
  for (const h of userHelpers) {
    userTp[h] = await measure(async (port) => {
      const script = `
import socket
gw = [l.split() for l in open('/proc/net/route').read().splitlines()[1:] if l.split()[1] == '00000000'][0][2]
gw = socket.inet_ntoa(bytes.fromhex(gw)[::-1])
` + sender('GW', port).replace("('GW',", '(gw,');
      const p = api.spawnIsolated('python3', ['-c', script], { network: { mode: 'user', helper: h, hostLoopback: true }, stdio: ['ignore', 'inherit', 'inherit'] });
      return async () => { await p; };
    });
  }
  const lo = await measure(async (port) => {
    const c = cpSpawn('python3', ['-c', sender('127.0.0.1', port)], { stdio: 'inherit' });
    return async () => { await new Promise((r) => (c.exitCode !== null ? r() : c.once('exit', r))); };
  });
  console.log(`TCP throughput, ${MB} MiB, python3 sender -> Node receiver`);
  console.log(`sandbox -> host over veth+bridge  ${veth.toFixed(0)} MiB/s`);
  console.log(`host loopback                     ${lo.toFixed(0)} MiB/s`);
  for (const h of userHelpers) console.log(`sandbox -> host through ${h.padEnd(12)}  ${userTp[h].toFixed(0)} MiB/s`);
  console.log(`ratio veth / loopback: ${(veth / lo).toFixed(2)}`);
} finally {
  await br.destroy();
}
