// Issue 16, item 7 (the exact cgroupsPath and update), on the real kernel: v1 (hybrid) on the
// host, v2 in the VM. CGroup.createAt makes a cgroup at exactly the caller's path (the
// sandbox's processes are in that cgroup, not a child of it), destroy removes exactly what nsbox
// made; Sandbox.create({ cgroupPath }) puts the sandbox there; Sandbox.update changes limits
// of a live sandbox; gc removes what a dead creator's sandbox made at such a path.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { CGroup } from '../../lib/cgroup/index.js';
import { detectLayout } from '../../lib/cgroup/detect.js';
import { gc, NsboxError, Sandbox } from '../../lib/index.js';
import { isRoot, skipReason } from '../helpers/host.js';

let layout: ReturnType<typeof detectLayout> | undefined;
try { layout = detectLayout(); } catch { /* no cgroup fs */ }
const skip = skipReason(!isRoot, 'cgroup-path: making cgroups at a given path needs root') || skipReason(!layout, 'cgroup-path: no cgroup file system is mounted');
const TOP = `/nsbox-cgpath-test-${process.pid}`;
const stateDir = mkdtempSync('/tmp/nsbox-cgpath-state-');

/** The host directories of cgroup path `p` (every v1 hierarchy nsbox uses, or the v2 one). */
const dirsOf = (p: string) => (layout!.mode === 'v2' ? [`${layout!.v2Mount}${p}`] : layout!.v1.map((h) => `${h.mount}${p}`));
/** The directory of `p` holding controller `c`'s files. */
const fileDir = (p: string, c: string) => (layout!.mode === 'v2' ? `${layout!.v2Mount}${p}` : `${layout!.v1.find((h) => h.controllers.includes(c))!.mount}${p}`);
const memFile = layout?.mode === 'v2' ? 'memory.max' : 'memory.limit_in_bytes';

function rmTree(p: string): void {
  for (const d of dirsOf(p)) {
    if (!existsSync(d)) continue;
    execFileSync('find', [d, '-depth', '-type', 'd', '-exec', 'rmdir', '{}', ';'], { stdio: 'ignore' });
  }
}
afterAll(() => {
  if (!skip) rmTree(TOP);
  rmSync(stateDir, { recursive: true, force: true });
});

describe.skipIf(skip)('cgroupPath: the cgroup at exactly the given path', () => {
  it('CGroup.createAt makes the path (with its missing parents) and applies limits; destroy removes exactly what it made', async () => {
    // a parent that exists already (the caller's): it stays
    for (const d of dirsOf(TOP)) mkdirSync(d, { recursive: true });
    if (layout!.mode !== 'v2') {
      for (const d of dirsOf(TOP)) {
        if (!existsSync(`${d}/cpuset.cpus`)) continue;
        for (const f of ['cpuset.cpus', 'cpuset.mems']) writeFileSync(`${d}/${f}`, readFileSync(`${d}/../${f}`, 'utf8').trim());
      }
    }
    const path = `${TOP}/made/leaf`;
    const cg = await CGroup.createAt(path, { limits: { memory: 64 * 1024 * 1024, pids: 20 } });
    expect(cg.madeDirs).toEqual(expect.arrayContaining(dirsOf(path).concat(dirsOf(`${TOP}/made`))));
    expect(cg.madeDirs).toHaveLength(dirsOf(path).length * 2);
    expect(readFileSync(`${fileDir(path, 'memory')}/${memFile}`, 'utf8').trim()).toBe(String(64 * 1024 * 1024));
    expect(readFileSync(`${fileDir(path, 'pids')}/pids.max`, 'utf8').trim()).toBe('20');
    // a process placed in it is in exactly that cgroup
    const { spawnIsolated } = await import('../../lib/spawn/spawn.js');
    const r = await spawnIsolated('/bin/cat', ['/proc/self/cgroup'], { cgroup: cg, namespaces: { cgroup: false } });
    const lines = r.stdout.trim().split('\n');
    const mem = layout!.mode === 'v2' ? lines.find((l) => l.startsWith('0::'))! : lines.find((l) => l.split(':')[1]!.split(',').includes('memory'))!;
    expect(mem.split(':')[2]).toBe(path);
    await cg.destroy({ kill: true });
    for (const d of dirsOf(`${TOP}/made`)) expect(existsSync(d)).toBe(false);
    for (const d of dirsOf(TOP)) expect(existsSync(d)).toBe(true);
  });

  it('an existing empty cgroup is used and stays; one with processes is refused (EBUSY); bad paths are TypeErrors', async () => {
    const path = `${TOP}/existing`;
    for (const d of dirsOf(path)) mkdirSync(d, { recursive: true });
    if (layout!.mode !== 'v2') {
      for (const d of dirsOf(path)) {
        if (!existsSync(`${d}/cpuset.cpus`)) continue;
        for (const f of ['cpuset.cpus', 'cpuset.mems']) writeFileSync(`${d}/${f}`, readFileSync(`${d}/../${f}`, 'utf8').trim());
      }
    }
    const cg = await CGroup.createAt(path, { limits: { pids: 10 } });
    expect(cg.madeDirs).toEqual([]);
    await cg.destroy({ kill: true });
    for (const d of dirsOf(path)) expect(existsSync(d)).toBe(true);
    // with a process in it
    const sleeper = spawn('/bin/sleep', ['60'], { stdio: 'ignore' });
    for (const d of dirsOf(path)) writeFileSync(`${d}/cgroup.procs`, String(sleeper.pid));
    const e = await CGroup.createAt(path).catch((x: unknown) => x);
    sleeper.kill('SIGKILL');
    await once(sleeper, 'exit');
    expect(e).toBeInstanceOf(NsboxError);
    expect(e).toMatchObject({ code: 'EBUSY', step: 'cgroup-create' });
    await expect(CGroup.createAt('/a/../b')).rejects.toThrow(TypeError);
    await expect(CGroup.createAt('/')).rejects.toThrow(/hierarchy's root/);
    for (let i = 0; i < 100 && dirsOf(path).some((d) => readFileSync(`${d}/cgroup.procs`, 'utf8').trim()); i++) await new Promise((r) => setTimeout(r, 20));
  });

  it('Sandbox.create({ cgroupPath }): its processes are in exactly that cgroup; update() changes limits live; destroy from another handle removes what was made', async () => {
    const path = `${TOP}/sbx/box1`;
    const box = await Sandbox.create({ id: 'cgpath1', stateDir, keepAlive: true, cgroupPath: path, limits: { memory: 128 * 1024 * 1024 } });
    try {
      expect(box.cgroup!.paths).toEqual(layout!.mode === 'v2' ? { unified: dirsOf(path)[0] } : expect.objectContaining({ memory: fileDir(path, 'memory') }));
      // the holder (pid 1) is in it, seen from the host
      const own = readFileSync(`/proc/${box.pid}/cgroup`, 'utf8').trim().split('\n');
      const mem = layout!.mode === 'v2' ? own.find((l) => l.startsWith('0::'))! : own.find((l) => l.split(':')[1]!.split(',').includes('memory'))!;
      expect(mem.split(':')[2]).toBe(path);
      await box.update({ limits: { memory: 96 * 1024 * 1024, pids: 33 } });
      expect(readFileSync(`${fileDir(path, 'memory')}/${memFile}`, 'utf8').trim()).toBe(String(96 * 1024 * 1024));
      expect(readFileSync(`${fileDir(path, 'pids')}/pids.max`, 'utf8').trim()).toBe('33');
      await expect(box.update({ limits: { wallTimeMs: 5 } as never })).rejects.toThrow(/options\.limits\.wallTimeMs is a per-process limit/);
      expect(() => Sandbox.validate({ cgroupPath: '/x', cgroupParent: '/y' })).toThrow(/options\.cgroupPath and options\.cgroupParent exclude each other/);
      // found again by id (as nsbox-runc's delete does): the attached one removes what create made
      const again = await Sandbox.attach('cgpath1', { stateDir });
      await again.update({ limits: { pids: 44 } });
      expect(readFileSync(`${fileDir(path, 'pids')}/pids.max`, 'utf8').trim()).toBe('44');
      await again.destroy();
    } finally {
      await box.destroy().catch(() => {});
    }
    for (const d of dirsOf(`${TOP}/sbx`)) expect(existsSync(d)).toBe(false);
  });

  it('gc removes what a dead creator\'s sandbox made at its cgroupPath (the state file names them), and nothing else', async () => {
    const path = `${TOP}/gc/leaf`;
    const cg = await CGroup.createAt(path);
    const made = cg.madeDirs!;
    // a state file as a creator that died before destroy leaves it (pid 1 of a dead sandbox, gone)
    const dead = Number(execFileSync('/bin/sh', ['-c', 'echo $$'], { encoding: 'utf8' }).trim());
    writeFileSync(`${stateDir}/gone.json`, JSON.stringify({ id: 'gone', holderPid: dead, holderStart: 1, creatorPid: dead, creatorStart: 1, cgroup: cg.paths, cgroupMade: made }));
    const r = await gc({ owners: [dead], sandboxStateDirs: [stateDir] });
    expect(r.sandboxes).toEqual([`${stateDir}/gone.json`]);
    for (const d of made) expect(existsSync(d)).toBe(false);
    for (const d of dirsOf(TOP)) expect(existsSync(d)).toBe(true);
  });

  // Regression: Sandbox.create made the cgroupPath's directories and only then wrote them into
  // its state file; a creator killed in between left directories that nothing named (gc could
  // not find them). The creator here is killed by strace on entering the mkdir of the path's
  // leaf in the first hierarchy, when its parents there are made.
  it.skipIf(!existsSync('/usr/bin/strace'))('a creator killed while making its cgroupPath leaves nothing gc cannot remove', async () => {
    const path = `${TOP}/crash/a/b`;
    const leaf = `${dirsOf(path)[0]}`;
    const dist = new URL('../../dist/index.js', import.meta.url).pathname;
    const script = `import { Sandbox } from ${JSON.stringify(dist)};\nprocess.stdout.write(process.pid + '\\n');\nawait Sandbox.create({ id: 'crash1', stateDir: ${JSON.stringify(stateDir)}, keepAlive: true, cgroupPath: ${JSON.stringify(path)} });\n`;
    const file = `${stateDir}/crash.mjs`;
    writeFileSync(file, script);
    const c = spawn('strace', ['-f', '-qq', '-o', '/dev/null', '-P', leaf, '-e', 'trace=mkdir,mkdirat', '-e', 'inject=mkdir,mkdirat:signal=SIGKILL', process.execPath, file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => { out += d; });
    await once(c, 'exit');
    rmSync(file);
    const pid = Number(out.trim());
    expect(pid).toBeGreaterThan(0);
    // killed on its way: the parent of the leaf is there, the leaf is not
    expect(existsSync(leaf)).toBe(false);
    expect(existsSync(dirsOf(`${TOP}/crash/a`)[0]!)).toBe(true);
    await gc({ owners: [pid], sandboxStateDirs: [stateDir] });
    for (const d of dirsOf(`${TOP}/crash`)) expect(existsSync(d)).toBe(false);
    expect(existsSync(`${stateDir}/crash1.json`)).toBe(false);
  });
});
