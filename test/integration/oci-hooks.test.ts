// Issue 16, item 2: OCI hooks of a created sandbox (prestart, createRuntime, createContainer,
// startContainer, poststart, poststop), each with the OCI state JSON on its stdin, run where
// lib/runner/hooks.ts (OciHooks) says.
import { describe, it, expect, afterAll, beforeAll } from 'vitest';
import { chmodSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { Sandbox, NsboxError } from '../../lib/index.js';
import { isRoot, skipReason, alive, nsboxCgroupsOf } from '../helpers/host.js';

const base = `/run/nsbox-test-hooks-${process.pid}`;
const stateDir = `${base}/sandboxes`;
const skip = skipReason(!isRoot, 'OCI hooks: needs root (namespaces, cgroups)');

function leftovers(): string[] {
  const out: string[] = [];
  out.push(...nsboxCgroupsOf([process.pid]).map((l) => `cgroup: ${l}`));
  try { out.push(...readdirSync(stateDir).map((f) => `state: ${f}`)); } catch { /* none */ }
  return out;
}

/** A host hook script: records its name in `order`, its stdin in NAME.json, its namespaces and env in NAME.info. */
function hookScript(name: string, extra = ''): string {
  const f = `${base}/${name}.sh`;
  writeFileSync(f, `#!/bin/sh
echo ${name} >> ${base}/order
cat > ${base}/${name}.json
{ readlink /proc/self/ns/net; readlink /proc/self/ns/mnt; readlink /proc/self/ns/user; echo "args=$* env=$(env | grep -v '^PWD=' | sort | tr '\\n' ' ')"; } > ${base}/${name}.info
${extra}
`);
  chmodSync(f, 0o755);
  return f;
}

beforeAll(() => {
  mkdirSync(stateDir, { recursive: true });
  // the createContainer hook runs as the sandbox's root (an unprivileged host id): it writes here
  chmodSync(base, 0o777);
});
afterAll(() => {
  rmSync(base, { recursive: true, force: true });
});

describe.skipIf(skip)('OCI hooks of a created sandbox', () => {
  it('run in OCI order with the state on stdin: host hooks in the caller\'s namespaces, createContainer in the sandbox\'s (host filesystem), startContainer inside', async () => {
    // the createContainer hook (the sandbox's root, an unprivileged host id) appends to it too
    writeFileSync(`${base}/order`, '');
    chmodSync(`${base}/order`, 0o666);
    const outFile = `${base}/out.txt`;
    const out = openSync(outFile, 'w');
    const hooks = {
      prestart: [{ path: hookScript('prestart') }, { path: '/bin/busybox', args: ['sh', '-c', `echo as-sh > ${base}/argv0`] }],
      createRuntime: [{ path: hookScript('createRuntime'), args: ['cr-argv0', 'a1', 'a2'], env: ['HOOKVAR=yes'] }],
      createContainer: [{ path: hookScript('createContainer') }],
      // inside the sandbox: its own /bin/sh, its /tmp
      startContainer: [{ path: '/bin/sh', args: ['sh', '-c', 'cat > /tmp/start.json; echo inside > /tmp/mark'] }],
      poststart: [{ path: hookScript('poststart') }],
      poststop: [{ path: hookScript('poststop') }],
    };
    const box = await Sandbox.create({
      stateDir, id: 'h1', bundle: '/some/bundle', annotations: { a: 'b' }, hooks,
      program: { file: '/bin/sh', args: ['-c', 'cat /tmp/mark; cat /tmp/start.json'], stdio: ['ignore', out, out] },
    });
    closeSync(out);
    expect(readFileSync(`${base}/order`, 'utf8')).toBe('prestart\ncreateRuntime\ncreateContainer\n');
    const created = JSON.parse(readFileSync(`${base}/createRuntime.json`, 'utf8'));
    expect(created).toEqual({ ociVersion: '1.0.2', id: 'h1', status: 'created', pid: box.pid, bundle: '/some/bundle', annotations: { a: 'b' } });
    const self = ['net', 'mnt', 'user'].map((t) => readlinkSync(`/proc/self/ns/${t}`));
    const sandbox = ['net', 'mnt', 'user'].map((t) => readlinkSync(`/proc/${box.pid}/ns/${t}`));
    const [rtNet, rtMnt, rtUser, rtArgs] = readFileSync(`${base}/createRuntime.info`, 'utf8').trim().split('\n');
    expect([rtNet, rtMnt, rtUser]).toEqual(self);
    // args[1..] and env exactly as the hook says (no env of ours)
    expect(rtArgs).toBe(`args=a1 a2 env=HOOKVAR=yes`);
    // args[0] is argv[0]: busybox picks its applet by it
    expect(readFileSync(`${base}/argv0`, 'utf8')).toBe('as-sh\n');
    const [ccNet, ccMnt, ccUser] = readFileSync(`${base}/createContainer.info`, 'utf8').trim().split('\n');
    expect([ccNet, ccUser]).toEqual([sandbox[0], sandbox[2]]);
    expect(ccMnt).toBe(self[1]); // the host's filesystem: its path resolved there
    expect(JSON.parse(readFileSync(`${base}/createContainer.json`, 'utf8'))).toMatchObject({ status: 'created', pid: box.pid });

    await box.start();
    expect(readFileSync(`${base}/order`, 'utf8')).toBe('prestart\ncreateRuntime\ncreateContainer\npoststart\n');
    expect(JSON.parse(readFileSync(`${base}/poststart.json`, 'utf8'))).toMatchObject({ id: 'h1', status: 'running', pid: box.pid });
    const pid = box.pid;
    await box.wait();
    expect(alive(pid)).toBe(false);
    // the startContainer hook ran inside before the program: its state (status created) is in the sandbox's /tmp
    const text = readFileSync(outFile, 'utf8').split('\n');
    expect(text[0]).toBe('inside');
    expect(JSON.parse(text[1]!)).toMatchObject({ id: 'h1', status: 'created', pid });
    await box.destroy();
    expect(readFileSync(`${base}/order`, 'utf8')).toBe('prestart\ncreateRuntime\ncreateContainer\npoststart\npoststop\n');
    expect(JSON.parse(readFileSync(`${base}/poststop.json`, 'utf8'))).toMatchObject({ id: 'h1', status: 'stopped' });
    expect(leftovers()).toEqual([]);
  });

  it('poststart gets the state of the start (running, pid 1) also when the program has ended before the hook runs', async () => {
    // regression: the state was read when the hook ran, so a program that ended at once gave
    // poststart "stopped" and no pid (the OCI validation suite's hooks_stdin runs `true`)
    // (the program ends within microseconds of its exec: several rounds make the race near certain)
    for (let i = 0; i < 5; i++) {
      const box = await Sandbox.create({
        stateDir, id: `h5-${i}`, hooks: { poststart: [{ path: '/bin/sh', args: ['sh', '-c', `cat > ${base}/ps5.json`] }] },
        program: { file: '/bin/true' },
      });
      const pid = box.pid;
      await box.start();
      expect(JSON.parse(readFileSync(`${base}/ps5.json`, 'utf8'))).toMatchObject({ id: `h5-${i}`, status: 'running', pid });
      await box.destroy();
    }
  });

  it('a failing createRuntime hook fails create (NsboxError step hook, its stderr named) and leaves nothing', async () => {
    const bad = hookScript('bad', 'echo "no network for you" >&2; exit 3');
    const e = await Sandbox.create({ stateDir, id: 'h2', hooks: { createRuntime: [{ path: bad }] }, program: { file: '/bin/true' } }).then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(NsboxError);
    expect(e).toMatchObject({ step: 'hook', syscall: 'createRuntime', path: bad });
    expect((e as Error).message).toMatch(/exited with 3: no network for you/);
    expect(leftovers()).toEqual([]);
  });

  it('a failing startContainer hook stops the sandbox; start rejects; the program never ran', async () => {
    const out = openSync(`${base}/out2.txt`, 'w');
    await using box = await Sandbox.create({
      stateDir, id: 'h3', hooks: { startContainer: [{ path: '/bin/false' }] },
      program: { file: '/bin/sh', args: ['-c', 'echo ran'], stdio: ['ignore', out, out] },
    });
    closeSync(out);
    await expect(box.start()).rejects.toMatchObject({ step: 'hook', syscall: 'startContainer' });
    await box.wait();
    expect(box.status).toBe('exited');
    expect(readFileSync(`${base}/out2.txt`, 'utf8')).toBe('');
  });

  it('a failing prestart hook of a keepAlive sandbox fails create in a process with nothing else to wait for, and leaves nothing', () => {
    // regression: the rollback waited for the holder after it was unref'd, so Node's loop ended
    // and the process exited 0 with the sandbox half made (nsbox-runc create "succeeded")
    const dir = `${base}/lone`;
    const dist = new URL('../../dist/index.js', import.meta.url).pathname;
    const script = `import { Sandbox } from ${JSON.stringify(dist)};
      await Sandbox.create({ stateDir: ${JSON.stringify(dir)}, id: 'h6', keepAlive: true, hooks: { prestart: [{ path: '/bin/false' }] }, program: { file: '/bin/true' } })
        .then(() => console.log('created'), (e) => { console.log('rejected:', e.message); process.exitCode = 4; });`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30000 });
    expect(r.stdout).toMatch(/^rejected: prestart failed at step 'hook'/);
    expect(r.status).toBe(4);
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
    expect(leftovers()).toEqual([]);
  });

  it('a hook that outlives its timeout is killed and named', async () => {
    const slow = hookScript('slow', 'sleep 30');
    const e = await Sandbox.create({ stateDir, id: 'h4', hooks: { prestart: [{ path: slow, timeout: 1 }] }, program: { file: '/bin/true' } }).then(() => null, (x: unknown) => x);
    expect((e as Error).message).toMatch(/did not end within its timeout of 1 s/);
    expect(leftovers()).toEqual([]);
  });

  it('hook mistakes are TypeErrors naming the field', async () => {
    await expect(Sandbox.create({ stateDir, program: { file: 'x' }, hooks: { prestart: [{ path: 'rel' }] } })).rejects.toThrow(/options.hooks.prestart\[0\].path/);
    await expect(Sandbox.create({ stateDir, program: { file: 'x' }, hooks: { onStart: [] } as never })).rejects.toThrow(/unknown key 'onStart'/);
    await expect(Sandbox.create({ stateDir, program: { file: 'x' }, hooks: { poststop: [{ path: '/x', env: ['NOEQUALS'] }] } })).rejects.toThrow(/env/);
  });
});
