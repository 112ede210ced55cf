// Issue 16, item 1: a created sandbox (Sandbox.create with `program`) that outlives its creator:
// made in one Node process, which exits; started, inspected, signalled and destroyed from
// another; its program's stdio are fds given at create; its exit status is recorded by its
// pid 1 in the state directory, also when the creator is gone.
import { describe, it, expect, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { Sandbox, NsboxError, Seccomp, gc, recvFds } from '../../lib/index.js';
import { isRoot, skipReason, alive, sleep, nsboxCgroupsOf } from '../helpers/host.js';

const base = `/run/nsbox-test-created-${process.pid}`;
const stateDir = `${base}/sandboxes`;
const dist = new URL('../../dist/index.js', import.meta.url).pathname;
const skip = skipReason(!isRoot, 'created sandboxes: needs root (namespaces, cgroups)')
  || skipReason(!existsSync(dist) || !readFileSync(dist, 'utf8').includes('spawnCreated'), 'created sandboxes across processes: dist/ is missing or older than Sandbox.start (npm run build:ts)');

function leftovers(): string[] {
  const out: string[] = [];
  const mi = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes('nsbox'));
  out.push(...mi.map((l) => `mount: ${l}`));
  // this process's and those of the creators it ran (other helpers' sandboxes may exist meanwhile)
  out.push(...nsboxCgroupsOf([process.pid, ...creators]).map((l) => `cgroup: ${l}`));
  try { out.push(...readdirSync(stateDir).map((f) => `state: ${f}`)); } catch { /* none */ }
  return out;
}

/** Runs `body` in a fresh Node process (ESM, with Sandbox imported from dist/), returns its stdout; the process has exited when this returns. */
const creators: number[] = [];
function inAnotherProcess(body: string): string {
  const script = `import { Sandbox } from ${JSON.stringify(dist)}; import { openSync } from 'node:fs';\n${body}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30000 });
  if (r.pid) creators.push(r.pid);
  if (r.status !== 0) throw new Error(`the other process failed: ${r.stderr}`);
  return r.stdout.trim();
}

afterAll(() => {
  rmSync(base, { recursive: true, force: true });
});

describe.skipIf(skip)('created sandbox (Sandbox.create with program)', () => {
  it('is created in one process that exits, then started, watched and destroyed from another; stdio are the creator\'s fds; the exit status is recorded', async () => {
    mkdirSync(base, { recursive: true });
    const outFile = `${base}/out.txt`;
    // the creator: opens a file for the program's stdout and stderr, makes the sandbox, exits
    const pid = Number(inAnotherProcess(`
      const out = openSync(${JSON.stringify(outFile)}, 'w');
      const b = await Sandbox.create({ stateDir: ${JSON.stringify(stateDir)}, id: 'c1', keepAlive: true, hostname: 'made',
        limits: { pids: 32 },
        program: { file: 'sh', args: ['-c', 'echo "out $(hostname) $$"; echo err >&2; sleep 0.5; read x; echo "got $x"; exit 7'], stdio: ['ignore', out, out] } });
      console.log(b.pid);`));
    expect(pid).toBeGreaterThan(1);
    expect(alive(pid)).toBe(true);
    // created: pid 1 waits, nothing of the program ran
    expect(Sandbox.list({ stateDir })).toEqual([expect.objectContaining({ id: 'c1', status: 'created', holderPid: pid })]);
    const box = await Sandbox.attach('c1', { stateDir });
    expect(box.status).toBe('created');
    expect(box.ociState()).toMatchObject({ id: 'c1', status: 'created', pid, bundle: '' });
    expect(box.exitStatus()).toBeNull();
    expect(readFileSync(outFile, 'utf8')).toBe('');
    // the namespaces and cgroup exist before start: exec works in a created sandbox
    const ex = await box.exec('/bin/sh', ['-c', 'hostname; echo $$']);
    expect(ex.stdout.split('\n')[0]).toBe('made');
    // start from this process (not the creator, which is gone)
    await box.start();
    expect(box.status).toBe('running');
    await expect(box.start()).rejects.toMatchObject({ code: 'EBUSY' });
    // the program runs as pid 1's child, with the creator's fds; stdin was 'ignore' (EOF)
    await waitFor(() => !alive(pid));
    // (pid 4: the exec above had 2 and 3; the sleep, 5, keeps it running past the status read
    // above: without it the program could end before that read under load)
    expect(readFileSync(outFile, 'utf8')).toBe('out made 4\nerr\ngot \n');
    expect(box.status).toBe('exited');
    expect(box.exitStatus()).toEqual({ exitCode: 7, signal: null });
    expect(box.ociState()).toMatchObject({ status: 'stopped' });
    expect(box.ociState().pid).toBeUndefined();
    // seen from a third process too
    expect(inAnotherProcess(`const b = await Sandbox.attach('c1', { stateDir: ${JSON.stringify(stateDir)} }); console.log(b.status, JSON.stringify(b.exitStatus()));`))
      .toBe('exited {"exitCode":7,"signal":null}');
    await box.destroy();
    expect(leftovers()).toEqual([]);
  });

  it('records the exit when its creator started it and exited before the program ended', async () => {
    const pid = Number(inAnotherProcess(`
      const b = await Sandbox.create({ stateDir: ${JSON.stringify(stateDir)}, id: 'c2', keepAlive: true,
        program: { file: '/bin/sh', args: ['-c', 'sleep 0.5; kill -USR1 $$'] } });
      await b.start();
      console.log(b.pid);`));
    const box = await Sandbox.attach('c2', { stateDir });
    expect(box.status).toBe('running');
    await waitFor(() => !alive(pid));
    expect(box.exitStatus()).toEqual({ exitCode: null, signal: 'SIGUSR1' });
    await box.destroy();
    expect(leftovers()).toEqual([]);
  });

  it('kill from another process than the creator: one signal to pid 1, forwarded to the program', async () => {
    const pid = Number(inAnotherProcess(`
      const b = await Sandbox.create({ stateDir: ${JSON.stringify(stateDir)}, id: 'c8', keepAlive: true, limits: { pids: 16 },
        program: { file: '/bin/sleep', args: ['60'] } });
      console.log(b.pid);`));
    const box = await Sandbox.attach('c8', { stateDir });
    await box.start();
    const side = box.exec('/bin/sleep', ['60']);
    await new Promise((r) => side.once('spawn', r));
    await box.signal('SIGTERM');
    await waitFor(() => !alive(pid));
    expect(box.exitStatus()).toEqual({ exitCode: null, signal: 'SIGTERM' });
    // the exec'd process went with pid 1 (its pid namespace ended)
    expect((await side).signal).toBe('SIGKILL');
    await box.destroy();
    expect(leftovers()).toEqual([]);
  });

  it('a signal before start ends it (recorded); start then says it is not running', async () => {
    await using box = await Sandbox.create({ stateDir, id: 'c3', program: { file: '/bin/true' } });
    expect(box.status).toBe('created');
    const other = await Sandbox.attach('c3', { stateDir });
    // SIGCHLD's default is to ignore: the sandbox stays
    await other.signal('SIGCHLD');
    await sleep(100);
    expect(box.status).toBe('created');
    await other.signal('SIGTERM');
    await box.wait();
    expect(box.exitStatus()).toEqual({ exitCode: null, signal: 'SIGTERM' });
    await expect(box.start()).rejects.toMatchObject({ code: 'ESRCH' });
  });

  it('program.extraFds: the creator\'s fds are the program\'s 3, 4, ... when it starts (the creator closed its own), and no other fd reaches it', async () => {
    // fds of the creator numbered well above and within 3 .. 5, so that placing them crosses
    // pid 1's own fds
    const files = ['x3', 'x4', 'x5'].map((n) => `${base}/${n}.out`);
    mkdirSync(base, { recursive: true });
    const held = Array.from({ length: 12 }, () => openSync('/dev/null', 'r'));
    const fds = files.map((f) => openSync(f, 'w'));
    let box: Sandbox | undefined;
    try {
      box = await Sandbox.create({ stateDir, id: 'c7', program: {
        file: '/bin/sh',
        args: ['-c', 'echo three >&3; echo four >&4; echo five >&5; for n in 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do [ -e /proc/self/fd/$n ] && echo "fd $n" >&3; done; true'],
        extraFds: [fds[0]!, fds[1]!, fds[2]!],
      } });
      for (const fd of fds) closeSync(fd);
      await box.start();
      await box.wait();
      expect(box.exitStatus()).toEqual({ exitCode: 0, signal: null });
      expect(files.map((f) => readFileSync(f, 'utf8'))).toEqual(['three\n', 'four\n', 'five\n']);
    } finally {
      await box?.destroy();
      for (const fd of held) closeSync(fd);
    }
    await expect(Sandbox.create({ stateDir, program: { file: 'x', extraFds: [-1] } })).rejects.toThrow(/options.program.extraFds\[0\]/);
    await expect(Sandbox.create({ stateDir, program: { file: 'x', extraFds: Array(252).fill(0) } })).rejects.toThrow(RangeError);
  });

  it('a program that cannot be run: start rejects with step exec, the exit is 127', async () => {
    await using box = await Sandbox.create({ stateDir, id: 'c4', program: { file: '/nonexistent/prog' } });
    const e = await box.start().then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(NsboxError);
    expect(e).toMatchObject({ code: 'ENOENT', step: 'exec', syscall: 'execve', path: '/nonexistent/prog' });
    await box.wait();
    expect(box.exitStatus()).toEqual({ exitCode: 127, signal: null });
  });

  it('a terminal through tty.consoleSocket: the master goes there at create, the slave is the program\'s controlling terminal', async () => {
    const sock = `${base}/console.sock`;
    rmSync(sock, { force: true });
    const server = createServer({ pauseOnConnect: true });
    await new Promise<void>((r) => server.listen(sock, r));
    const gotMaster = new Promise<number>((resolve, reject) => {
      server.once('connection', (c) => { recvFds(c).then((m) => { c.destroy(); resolve(m.fds[0]!); }, reject); });
    });
    try {
      await using box = await Sandbox.create({ stateDir, id: 'c5', program: { file: '/bin/sh', args: ['-c', 'tty; ps -o pid=,tty= -p $$; echo ok'], tty: { consoleSocket: sock } } });
      const master = await gotMaster;
      const { ReadStream } = await import('node:tty');
      const t = new ReadStream(master);
      let text = '';
      t.on('data', (c: Buffer) => { text += c.toString(); });
      t.on('error', () => {});
      await box.start();
      await box.wait();
      await waitFor(() => text.includes('ok'));
      t.destroy();
      const lines = text.replace(/\r/g, '').trim().split('\n');
      expect(lines[0]).toMatch(/^\/dev\/pts\/\d+$/);
      expect(lines[1]!.trim()).toMatch(/^2 pts\/\d+$/); // its controlling terminal
      expect(box.exitStatus()).toEqual({ exitCode: 0, signal: null });
    } finally {
      server.close();
    }
  });

  it('a seccomp profile without openat2 (Docker-like, as OCI bundles give) lets pid 1 start the program in its working directory', async () => {
    // regression: nsbox-init, which runs under the sandbox's filter, entered the working
    // directory with openat2 only, so `start` failed with "openat2 failed at step 'cwd'"
    const outFile = `${base}/cwd.txt`;
    mkdirSync(base, { recursive: true });
    const out = openSync(outFile, 'w');
    const seccomp = Seccomp.profile({ defaultAction: 'allow', rules: [{ syscalls: ['openat2'], action: { errno: 'EPERM' } }] });
    const box = await Sandbox.create({ stateDir, id: 'c8', cwd: '/tmp', seccomp, allowNewPrivileges: true, program: { file: 'sh', args: ['-c', 'pwd'], stdio: ['ignore', out, out] } });
    closeSync(out);
    await box.start();
    await waitFor(() => box.status === 'exited');
    expect(readFileSync(outFile, 'utf8')).toBe('/tmp\n');
    expect(box.exitStatus()).toEqual({ exitCode: 0, signal: null });
    await box.destroy();
  });

  it('option mistakes are TypeErrors naming the option, before anything is made', async () => {
    await expect(Sandbox.create({ stateDir, program: { file: '' } })).rejects.toThrow(/options.program.file/);
    await expect(Sandbox.create({ stateDir, program: { file: 'x', stdio: 'pipe' as never } })).rejects.toThrow(/options.program.stdio/);
    await expect(Sandbox.create({ stateDir, program: { file: 'x' }, holder: { file: 'y' } })).rejects.toThrow(/options.program/);
    await expect(Sandbox.create({ stateDir, program: { file: 'x', tty: { consoleSocket: 'rel' } } })).rejects.toThrow(/consoleSocket/);
    await expect(Sandbox.create({ stateDir, hooks: {} })).rejects.toThrow(/options.hooks/);
    await expect(Sandbox.create({ stateDir: `/run/${'x'.repeat(100)}`, id: 'a', program: { file: 'x' } })).rejects.toThrow(RangeError);
    await using plainBox = await Sandbox.create({ stateDir, id: 'c6' });
    await expect(plainBox.start()).rejects.toMatchObject({ code: 'EINVAL' });
    expect(plainBox.status).toBe('running');
  });

  it('gc removes the state of a created sandbox whose creator and pid 1 are gone (state file, socket, exit record)', async () => {
    const pid = Number(inAnotherProcess(`
      const b = await Sandbox.create({ stateDir: ${JSON.stringify(stateDir)}, id: 'c7', keepAlive: true, program: { file: '/bin/true' } });
      console.log(b.pid);`));
    expect(readdirSync(stateDir).filter((f) => f.startsWith('c7.')).sort()).toEqual(['c7.exit', 'c7.json', 'c7.sock']);
    process.kill(pid, 'SIGKILL');
    await waitFor(() => !alive(pid));
    const r = await gc({ sandboxStateDirs: [stateDir] });
    expect(r.sandboxes).toContain(`${stateDir}/c7.json`);
    expect(readdirSync(stateDir).filter((f) => f.startsWith('c7.'))).toEqual([]);
    expect(leftovers()).toEqual([]);
  });

  it('leaves no mount, cgroup or state file', () => {
    expect(leftovers()).toEqual([]);
  });
});

async function waitFor(cond: () => boolean, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(20);
  }
}
