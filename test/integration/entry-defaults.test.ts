// The secure defaults hold whichever entry point is loaded first (issue 14): spawnIsolated
// composes its layers itself, so a sandbox made through any of them gets nsbox's seccomp
// profile (Seccomp: 2 inside, result.isolation.seccomp 'default') and refuses a namespace
// escape. Each case is the first spawn of a fresh Node process (or of fresh module instances).
import { describe, it, expect, vi } from 'vitest';
import { execFileSync } from 'node:child_process';
import { isRoot, skipReason } from '../helpers/host.js';

const DIST = new URL('../../dist/', import.meta.url).pathname;
/** Inside the sandbox: the seccomp mode, and whether unshare(CLONE_NEWUSER) was refused. */
const PROBE = ['/bin/sh', '-c', 'grep ^Seccomp: /proc/self/status; unshare -U true 2>/dev/null && echo unshared || echo refused'];
const WANT = 'Seccomp:\t2\nrefused\n';

/** Runs a script body in a fresh Node (`m` is the module loaded first); prints the JSON it returns. */
function fresh(load: string, body: string): { seccomp: string; stdout: string } {
  const code = `${load}.then(async (m) => { const r = await (async () => { ${body} })(); process.stdout.write(JSON.stringify(r)); process.exit(0); }).catch((e) => { console.error(e); process.exit(1); });`;
  return JSON.parse(execFileSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 30_000 }));
}

const spawnBody = `const r = await m.spawnIsolated(${JSON.stringify(PROBE[0])}, ${JSON.stringify(PROBE.slice(1))}); return { seccomp: r.isolation.seccomp, stdout: r.stdout };`;

describe.skipIf(skipReason(!isRoot, 'spawn tests run as root here (the unprivileged matrix is test/integration/unprivileged.test.ts)'))('secure defaults, whichever entry point comes first', () => {
  it('the package as ES module (import "nsbox")', () => {
    expect(fresh(`import(${JSON.stringify(`${DIST}index.js`)})`, spawnBody)).toEqual({ seccomp: 'default', stdout: WANT });
  });

  it('the package as CommonJS (require("nsbox"))', () => {
    expect(fresh(`Promise.resolve(require(${JSON.stringify(`${DIST}index.cjs`)}))`, spawnBody)).toEqual({ seccomp: 'default', stdout: WANT });
  });

  it('Sandbox.exec and a pool, through the package, as the first spawns', () => {
    const body = `
      const sb = await m.Sandbox.create({});
      try {
        const e = await sb.exec(${JSON.stringify(PROBE[0])}, ${JSON.stringify(PROBE.slice(1))});
        const pool = m.createPool({ size: 1 });
        try {
          const p = await pool.run(${JSON.stringify(PROBE[0])}, ${JSON.stringify(PROBE.slice(1))});
          return { seccomp: [e.isolation.seccomp, p.isolation.seccomp].join(','), stdout: e.stdout + p.stdout };
        } finally { await pool.close(); }
      } finally { await sb.destroy(); }`;
    expect(fresh(`import(${JSON.stringify(`${DIST}index.js`)})`, body)).toEqual({ seccomp: 'default,default', stdout: WANT + WANT });
  });

  // the library's own modules loaded on their own, before anything else (fresh instances)
  for (const [name, path, run] of [
    ['lib/spawn/spawn.ts alone', '../../lib/spawn/spawn.js', async (m: any) => m.spawnIsolated(PROBE[0], PROBE.slice(1))],
    ['lib/runner/index.ts alone (pool)', '../../lib/runner/index.js', async (m: any) => {
      const pool = m.createPool({ size: 1 });
      try { return await pool.run(PROBE[0], PROBE.slice(1)); } finally { await pool.close(); }
    }],
    ['lib/spawn/explain.ts first, then spawn', '../../lib/spawn/explain.js', async (m: any) => {
      expect(m.explain('/bin/true').isolation.seccomp).toBe('default');
      return (await import('../../lib/spawn/spawn.js')).spawnIsolated(PROBE[0], PROBE.slice(1));
    }],
  ] as const) {
    it(name, async () => {
      vi.resetModules();
      const m = await import(/* @vite-ignore */ path);
      const r = await run(m);
      expect({ seccomp: r.isolation.seccomp, stdout: r.stdout }).toEqual({ seccomp: 'default', stdout: WANT });
    });
  }
});
