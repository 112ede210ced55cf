// examples/code-runner: the HTTP service on an ephemeral port, each language, and limits.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { execFileSync, spawn as cpSpawn } from 'node:child_process';
import { networkInterfaces } from 'node:os';
import type { AddressInfo } from 'node:net';
import { isRoot, skipReason } from '../helpers/host.js';

const dist = new URL('../../dist/index.js', import.meta.url).pathname;
const skip = skipReason(!isRoot, 'example-code-runner: needs root (sandboxes)')
  || skipReason(!existsSync(dist) || !readFileSync(dist, 'utf8').includes('createPool'), 'example-code-runner: the example imports the built package (dist/ missing or older than createPool: npm run build:ts)')
  || skipReason(!existsSync('/usr/bin/python3') || !existsSync('/usr/bin/node'), 'example-code-runner: needs /usr/bin/python3 and /usr/bin/node on the host');

type Svc = { server: import('node:http').Server; pool: { warm(): Promise<void> }; close(): Promise<void> };
let svc: Svc;
let url: string;

async function run(body: unknown): Promise<{ status: number; json: Record<string, any> }> {
  const res = await fetch(`${url}/run`, { method: 'POST', body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() as Record<string, any> };
}

describe.skipIf(skip)('examples/code-runner', () => {
  beforeAll(async () => {
    const mod = await import('../../examples/code-runner/server.mjs' as string);
    svc = mod.createCodeRunner({ poolSize: 2 }) as Svc;
    await new Promise<void>((r) => svc.server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(svc.server.address() as AddressInfo).port}`;
    await svc.pool.warm();
  });
  afterAll(async () => {
    await svc?.close();
  });

  it('runs sh, Python and Node with stdin', async () => {
    const sh = await run({ language: 'sh', source: 'read x; echo "got $x"; echo err >&2; exit 3', stdin: 'abc\n' });
    expect(sh.status).toBe(200);
    expect(sh.json).toMatchObject({ verdict: 'runtime-error', exitCode: 3, stdout: 'got abc\n', stderr: 'err\n' });
    const py = await run({ language: 'python', source: 'import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))', stdin: '1 2 3\n' });
    expect(py.json).toMatchObject({ verdict: 'ok', exitCode: 0, stdout: '6\n' });
    const js = await run({ language: 'node', source: 'let d="";process.stdin.on("data",c=>d+=c).on("end",()=>console.log(d.toUpperCase().trim()))', stdin: 'hello' });
    expect(js.json).toMatchObject({ verdict: 'ok', exitCode: 0, stdout: 'HELLO\n' });
    expect(js.json.usage.cpuMs).toBeGreaterThan(0);
    expect(js.json.usage.memoryBytes).toBeGreaterThan(1 << 20);
  });

  it('stops an endless loop with time-limit', async () => {
    const r = await run({ language: 'python', source: 'while True: pass', limits: { cpuTimeMs: 300 } });
    expect(r.json.verdict).toBe('time-limit');
    const w = await run({ language: 'sh', source: 'sleep 30', limits: { wallTimeMs: 300 } });
    expect(w.json.verdict).toBe('time-limit');
  });

  it('stops a memory bomb with memory-limit', async () => {
    const r = await run({ language: 'python', source: 'x = bytearray(512 << 20)\nprint(len(x))', limits: { memoryMB: 64 } });
    expect(r.json.verdict).toBe('memory-limit');
    expect(r.json.stdout).toBe('');
  });

  it('answers bad requests with 400 and keeps serving', async () => {
    expect((await run({ language: 'cobol', source: 'x' })).status).toBe(400);
    expect((await run({ language: 'sh', source: 'true', limits: { memoryMB: 1e9 } })).status).toBe(400);
    expect((await run({ language: 'sh', source: '' })).status).toBe(400);
    expect((await run({ language: 'sh', source: 'echo fine' })).json.stdout).toBe('fine\n');
  });

  it('leaves no sandbox cgroup or mount once closed', async () => {
    await svc.close();
    svc = undefined as unknown as Svc;
    const cg = execFileSync('find', ['/sys/fs/cgroup', '-name', '*nsbox-sbx*'], { encoding: 'utf8' }).trim();
    expect(cg).toBe('');
  });
});

describe.skipIf(skip)('examples/code-runner as a program', () => {
  // issue 13 item 15: a service that runs whatever it is sent must not listen on every address
  // unless asked to (HOST).
  const start = (env: Record<string, string>) => new Promise<{ child: import('node:child_process').ChildProcess; line: string }>((resolve, reject) => {
    const server = new URL('../../examples/code-runner/server.mjs', import.meta.url).pathname;
    const child = cpSpawn(process.execPath, [server], { env: { ...process.env, PORT: '0', POOL_SIZE: '1', ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => { out += d; if (out.includes('\n')) resolve({ child, line: out.split('\n')[0]! }); });
    child.on('exit', (code) => reject(new Error(`server exited with ${code}: ${out}`)));
  });
  const stop = async (child: import('node:child_process').ChildProcess) => {
    const done = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await done;
  };
  const hostAddress = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

  it('listens on 127.0.0.1 unless HOST says otherwise', async () => {
    const { child, line } = await start({});
    try {
      const m = /listening on 127\.0\.0\.1:(\d+)$/.exec(line);
      expect(line).toMatch(/listening on 127\.0\.0\.1:\d+$/);
      const port = Number(m![1]);
      expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
      if (hostAddress) await expect(fetch(`http://${hostAddress}:${port}/health`)).rejects.toThrow();
      else console.warn('SKIPPED (part): no non-loopback IPv4 address on this host to check that the server is not reachable on it');
    } finally {
      await stop(child);
    }
    const open = await start({ HOST: '0.0.0.0' });
    try {
      const m = /listening on 0\.0\.0\.0:(\d+)$/.exec(open.line);
      expect(open.line).toMatch(/listening on 0\.0\.0\.0:\d+$/);
      if (hostAddress) expect((await fetch(`http://${hostAddress}:${m![1]}/health`)).status).toBe(200);
    } finally {
      await stop(open.child);
    }
  });
});
