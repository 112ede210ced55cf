// Each network mode as the FIRST spawn of a fresh Node process (issue 13, 4a): caches that
// earlier spawns warm (the view template, encoded views, the spare network namespace) hide
// bugs in the cold path. Each case runs in a child Node on dist/ and prints what it saw.
import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { isRoot, skipReason } from '../helpers/host.js';
import { findExecutable } from '../../lib/net/usernet.js';

const dist = new URL('../../dist/index.js', import.meta.url).pathname;

const LIST = `['-c', 'ls /sys/class/net | tr "\\\\n" " "']`;
const ENTRY = {
  spawnIsolated: (net: string) => `await m.spawnIsolated('/bin/sh', ${LIST}, { network: ${net} })`,
  'Sandbox.create': (net: string) => `await (async () => { const s = await m.Sandbox.create({ network: ${net} });
    try { return await s.exec('/bin/sh', ${LIST}); } finally { await s.destroy(); } })()`,
  createPool: (net: string) => `await (async () => { const p = m.createPool({ size: 1, template: { network: ${net} } });
    try { return await p.run('/bin/sh', ${LIST}); } finally { await p.close(); } })()`,
};

function firstSpawn(network: string, setup = '', teardown = '', entry: keyof typeof ENTRY = 'spawnIsolated'): { ok: boolean; out: string } {
  const script = `
    const m = await import(${JSON.stringify(dist)});
    ${setup}
    try {
      const r = ${ENTRY[entry](network)};
      console.log(JSON.stringify({ ok: true, out: r.stdout.trim(), code: r.exitCode }));
    } catch (e) {
      console.log(JSON.stringify({ ok: false, out: String(e && e.message) }));
    } finally { ${teardown} }`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  return JSON.parse(out.trim().split('\n').pop()!);
}

describe.skipIf(skipReason(!isRoot, 'the first-spawn cases include bridge and host networking, which need root'))('each network mode as the first spawn of a fresh process', () => {
  for (const mode of ["'none'", "'loopback'", "'host'"]) {
    it(`network: ${mode}`, () => {
      const r = firstSpawn(mode);
      expect(r.ok, r.out).toBe(true);
      expect(r.out).toContain('lo');
    });
  }

  for (const entry of Object.keys(ENTRY) as (keyof typeof ENTRY)[]) {
    it(`network: bridge through ${entry} (default view: the view template is built in the same spawn)`, () => {
      const name = `nsbox${process.pid.toString(36)}f`;
      const r = firstSpawn(`{ bridge: br, address: '10.93.7.10' }`,
        `const br = m.Bridge.create(${JSON.stringify(name)}, { address: '10.93.7.1/24' });`, 'await br.destroy();', entry);
      expect(r.ok, r.out).toBe(true);
      expect(r.out.split(' ').sort()).toEqual(['eth0', 'lo']);
    });
  }

  const helper = findExecutable('pasta') ? 'pasta' : findExecutable('slirp4netns') ? 'slirp4netns' : undefined;
  it.skipIf(skipReason(!helper, 'network: user needs pasta or slirp4netns (Debian: passt, slirp4netns)'))("network: { mode: 'user' }", () => {
    const r = firstSpawn(`{ mode: 'user', helper: '${helper}' }`);
    expect(r.ok, r.out).toBe(true);
    expect(r.out).toMatch(/lo/);
  });
});
