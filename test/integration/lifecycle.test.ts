// Issue 2, items 4 and 8: a sandbox never outlives a killed Node process; the nsbox CLI.
import { describe, it, expect } from 'vitest';
import { spawn as cpSpawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isRoot, skipReason, alive, sleep } from '../helpers/host.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

function collect(p: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const out: Buffer[] = [], err: Buffer[] = [];
  p.stdout?.on('data', (c) => out.push(c));
  p.stderr?.on('data', (c) => err.push(c));
  return new Promise((res) => p.on('close', (code) => res({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() })));
}

/** Host pids of every process in the pid namespace whose inode is `ino`. */
function pidsInNamespace(ino: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try { if (readlinkSync(`/proc/${e}/ns/pid`) === ino && alive(Number(e))) out.push(Number(e)); } catch { /* gone */ }
  }
  return out;
}

describe.skipIf(skipReason(!isRoot, 'lifecycle tests need root'))('a killed Node process', () => {
  it('leaves no sandbox process alive within 2 s', async () => {
    const script = `
      const { spawnIsolated } = await import(${JSON.stringify(`${root}/dist/index.js`)});
      const p = spawnIsolated('/bin/sh', ['-c', 'sleep 1000 & sleep 1000 & echo ready; wait']);
      p.stdout.on('data', (c) => { if (String(c).includes('ready')) console.log(p.pid); });
      await p;`;
    const node = cpSpawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const pid = await new Promise<number>((res) => node.stdout!.once('data', (c) => res(Number(String(c).trim()))));
    const ino = readlinkSync(`/proc/${pid}/ns/pid`);
    const before = pidsInNamespace(ino);
    expect(before.length).toBe(4); // nsbox-init, sh and two sleeps
    node.kill('SIGKILL');
    const t0 = Date.now();
    while (pidsInNamespace(ino).length > 0 && Date.now() - t0 < 2000) await sleep(20);
    expect(pidsInNamespace(ino)).toEqual([]);
  });
});

describe.skipIf(!isRoot)('nsbox CLI', () => {
  const cli = (...args: string[]) => collect(cpSpawn(process.execPath, [`${root}/dist/cli.js`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));

  it("runs `nsbox run -- sh -c 'hostname; id; ls /'` with the default view", async () => {
    const r = await cli('run', '--', 'sh', '-c', 'hostname; id; ls /');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('nsbox');
    expect(lines[1]).toMatch(/^uid=0\(root\) gid=0\(root\)/);
    expect(lines.slice(2)).toEqual(expect.arrayContaining(['usr', 'etc', 'tmp', 'proc', 'dev']));
    expect(lines).not.toContain('srv');
  });

  it('passes options and the exit status through', async () => {
    const r = await cli('run', '--hostname', 'h1', '--env', 'A=b', '--tmpfs', '/scratch:size=1m', '--', 'sh', '-c', 'hostname; echo $A; grep -c scratch /proc/mounts; exit 7');
    expect(r.code).toBe(7);
    expect(r.stdout.trim().split('\n')).toEqual(['h1', 'b', '1']);
    const killed = await cli('run', '--share', 'pid', '--', 'sh', '-c', 'kill -TERM $$');
    expect(killed.code).toBe(128 + 15);
  });

  it('reports setup errors with their code and exits 125; bad usage exits 2', async () => {
    const r = await cli('run', '--', '/no/such/program');
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/ENOENT.*step exec/);
    const bad = await cli('run', '--rootfs', '/no/such/dir', '--', 'true');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--rootfs/); // in the CLI's words, not the API's options.rootfs
    expect(bad.stderr).not.toMatch(/options\./);
  });

  it('explains a plan without running it', async () => {
    const r = await cli('explain', '--cap-add', 'net_raw', '--', 'ls', '-l');
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.stdout);
    expect(plan.argv).toEqual(['ls', '-l']);
    expect(plan.capabilities).toEqual(['CAP_NET_RAW']);
    expect(plan.namespaces.created).toContain('user');
    // as root the default view comes from a view template: built once (ending in the pivot
    // into it), then copied, with no pivot of the sandbox's own
    if (plan.templateSteps) {
      expect(plan.templateSteps.at(-1)).toBe('PivotRoot /newroot');
      expect(plan.steps).not.toContain('PivotRoot /newroot');
    } else {
      expect(plan.steps.at(-1)).toBe('PivotRoot /newroot');
    }
  });
});

describe.skipIf(skipReason(!isRoot, 'needs root to start an unprivileged Node'))('an unprivileged caller', () => {
  it("spawns again and again: the CLONE_VM child's uid change does not leave Node non-dumpable", () => {
    // dumpability belongs to the mm, which the child shares until exec; were Node left
    // non-dumpable, /proc/<child>/setgroups would be root's and the second spawn would fail
    const script = `
      const { spawnIsolated } = await import(${JSON.stringify(`${root}/dist/index.js`)});
      for (let i = 0; i < 3; i++) {
        const r = await spawnIsolated('/bin/sh', ['-c', 'id -u'], { uid: 0 }).catch((e) => ({ stdout: 'ERR ' + e.message + '\\n' }));
        process.stdout.write(r.stdout);
      }`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, cwd: '/', encoding: 'utf8' });
    expect(r.stdout, r.stderr).toBe('0\n0\n0\n');
  });
});
