// Issue 16, item 3: fds over unix sockets (sendFds/recvFds), and a sandbox's terminal handed
// to someone else (tty.consoleSocket, OCI --console-socket). All of it is new API: before
// this change sendFds/recvFds did not exist and `tty: { consoleSocket }` was refused as an
// unknown key, so every case here failed.
import { describe, it, expect, afterAll, beforeAll } from 'vitest';
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { ReadStream } from 'node:tty';
import { sendFds, recvFds, spawnIsolated, Sandbox, NsboxError } from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { fdCount, isRoot, skipReason, sleep } from '../helpers/host.js';

const dir = mkdtempSync(`${tmpdir()}/nsbox-fdpass-`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

/** A listening unix socket whose connections Node never reads (fds sent to them stay whole). */
async function listen(): Promise<{ path: string; server: Server; next: () => Promise<Socket> }> {
  const path = `${dir}/s${n++}`;
  const waiting: Array<(s: Socket) => void> = [];
  const queued: Socket[] = [];
  const server = createServer({ pauseOnConnect: true }, (s) => { const w = waiting.shift(); if (w) w(s); else queued.push(s); });
  await new Promise<void>((res) => server.listen(path, res));
  const next = () => new Promise<Socket>((res) => { const s = queued.shift(); if (s) res(s); else waiting.push(res); });
  return { path, server, next };
}

async function pair(): Promise<{ a: Socket; b: Socket; close: () => Promise<void> }> {
  const l = await listen();
  const a = connect(l.path);
  await new Promise((res) => a.once('connect', res));
  const b = await l.next();
  return { a, b, close: async () => { a.destroy(); b.destroy(); await new Promise((res) => l.server.close(res)); } };
}

const cloexec = (fd: number) => (parseInt(/flags:\s*([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8) & 0o2000000) !== 0;
const sameFile = (x: number, y: number) => { const a = fstatSync(x), b = fstatSync(y); return a.dev === b.dev && a.ino === b.ino; };

describe('sendFds / recvFds', () => {
  it('round trip: several fds with data, received close-on-exec, the sender keeps its own', async () => {
    const before = fdCount();
    const { a, b, close } = await pair();
    const files = [openSync('/etc/hostname', 'r'), openSync('/dev/null', 'w'), openSync(dir, 'r')];
    await sendFds(a, files, Buffer.from('hello'));
    const r = await recvFds(b, { maxFds: 4 });
    expect(r.data.toString()).toBe('hello');
    expect(r.fds).toHaveLength(3);
    r.fds.forEach((fd, i) => { expect(sameFile(fd, files[i]!)).toBe(true); expect(cloexec(fd)).toBe(true); });
    for (const fd of [...r.fds, ...files]) closeSync(fd);
    await close();
    expect(fdCount()).toBe(before);
  });

  it('waits on the event loop for a message that comes later (fd numbers too, default data of one byte)', async () => {
    const before = fdCount();
    const { a, b, close } = await pair();
    const fd = openSync('/etc/hostname', 'r');
    let got: { fds: number[]; data: Buffer } | undefined;
    const pending = recvFds((b as unknown as { _handle: { fd: number } })._handle.fd).then((x) => { got = x; });
    await sleep(50);
    expect(got).toBeUndefined(); // the loop kept turning: this line ran
    await sendFds((a as unknown as { _handle: { fd: number } })._handle.fd, [fd]);
    await pending;
    expect(got!.data).toEqual(Buffer.alloc(1));
    expect(got!.fds).toHaveLength(1);
    expect(sameFile(got!.fds[0]!, fd)).toBe(true);
    closeSync(got!.fds[0]!);
    closeSync(fd);
    await close();
    expect(fdCount()).toBe(before);
  });

  it('sends to a path (connects for the one message, as OCI --console-socket)', async () => {
    const before = fdCount();
    const l = await listen();
    const fd = openSync('/dev/null', 'r');
    const sent = sendFds(l.path, [fd], 'name');
    const s = await l.next();
    await sent;
    const r = await recvFds(s, { maxFds: 1 });
    expect(r.data.toString()).toBe('name');
    expect(sameFile(r.fds[0]!, fd)).toBe(true);
    // the sender closed its end: the next receive sees the end
    expect(await recvFds(s)).toEqual({ fds: [], data: Buffer.alloc(0) });
    closeSync(r.fds[0]!);
    closeSync(fd);
    s.destroy();
    await new Promise((res) => l.server.close(res));
    expect(fdCount()).toBe(before);
  });

  it('more fds than maxFds: EMSGSIZE, and none of them left open', async () => {
    const { a, b, close } = await pair();
    const fd = openSync('/dev/null', 'r');
    await sendFds(a, [fd, fd, fd]);
    const before = fdCount();
    const e = await recvFds(b, { maxFds: 2 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NsboxError);
    expect(e).toMatchObject({ code: 'EMSGSIZE', syscall: 'recvmsg' });
    expect(fdCount()).toBe(before);
    closeSync(fd);
    await close();
  });

  it('bad input: TypeError/RangeError at once, kernel refusals as NsboxError', async () => {
    const before = fdCount();
    const { a, b, close } = await pair();
    const file = openSync('/dev/null', 'r');
    expect(() => recvFds(b, { maxFds: 0 })).toThrow(RangeError);
    expect(() => recvFds(b, { maxFds: 1.5 })).toThrow(/options\.maxFds/);
    expect(() => recvFds(b, { max: 1 } as never)).toThrow(TypeError);
    expect(() => sendFds(a, [])).toThrow(TypeError);
    expect(() => sendFds(a, [-1])).toThrow(TypeError);
    expect(() => sendFds({} as never, [file])).toThrow(TypeError);
    expect(() => sendFds('', [file])).toThrow(TypeError);
    expect(() => recvFds(a)).toThrow(/read by Node/); // a client socket Node reads
    // not a socket
    await expect(sendFds(file, [file])).rejects.toMatchObject({ name: 'NsboxError', code: 'ENOTSOCK', syscall: 'sendmsg' });
    await expect(recvFds(file)).rejects.toMatchObject({ name: 'NsboxError', code: 'ENOTSOCK', syscall: 'recvmsg' });
    // a closed fd: as the socket and as an fd to send
    const closed = 1_000_000; // above any fd this process has (RLIMIT_NOFILE)
    await expect(recvFds(closed)).rejects.toMatchObject({ name: 'NsboxError', code: 'EBADF' });
    await expect(sendFds(a, [closed])).rejects.toMatchObject({ name: 'NsboxError', code: 'EBADF' });
    // nobody listening at a path
    await expect(sendFds(`${dir}/none`, [file])).rejects.toMatchObject({ name: 'NsboxError', code: 'ENOENT', syscall: 'connect', path: `${dir}/none` });
    closeSync(file);
    await close();
    expect(fdCount()).toBe(before);
  });
});

/** Reads a received pty master until `marker` has appeared; resolves with all read so far. */
function collect(t: ReadStream) {
  let seen = '';
  const waits: Array<[string, () => void]> = [];
  t.on('data', (c: Buffer) => { seen += c.toString(); for (const w of waits.splice(0)) if (seen.includes(w[0])) w[1](); else waits.push(w); });
  t.on('error', () => t.destroy()); // EIO once the program's side is gone
  const closed = new Promise((res) => t.once('close', res));
  return {
    text: () => seen,
    until: (m: string) => new Promise<void>((res) => { if (seen.includes(m)) res(); else waits.push([m, res]); }),
    closed,
  };
}

describe.skipIf(skipReason(!isRoot, 'console socket tests need root (tty needs a mount namespace)'))('tty.consoleSocket (OCI --console-socket)', () => {
  // the first sandboxes of a process make what later ones reuse (view templates, a spare
  // network namespace): counted fds settle after them
  const settled = async () => { await sleep(100); return fdCount(); };
  beforeAll(async () => { await spawnIsolated('/bin/true', [], { tty: true }); await spawnIsolated('/bin/true', [], { tty: true, mounts: [{ type: 'bind', source: dir, target: dir }] }); });

  it('sends the master of the sandbox terminal; the receiver types, reads and resizes; nsbox reads nothing', async () => {
    const before = await settled();
    const l = await listen();
    const p = spawnIsolated('/bin/sh', ['-c', 'tty; test -t 0 && test -t 1 && echo is-a-tty; stty size; echo ready; read x; echo got:$x; stty size'], { tty: { rows: 30, cols: 100, consoleSocket: l.path } });
    const s = await l.next();
    const m = await recvFds(s, { maxFds: 1 });
    expect(m.data.toString()).toBe('/dev/ptmx'); // what runc sends (the master's name)
    expect(m.fds).toHaveLength(1);
    s.destroy();
    const t = new ReadStream(m.fds[0]!);
    const out = collect(t);
    await out.until('ready');
    native().ttyResize(m.fds[0]!, 40, 120);
    t.write('echo hi\r');
    const r = await p;
    await out.closed;
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('');
    expect(p.stdout).toBeNull();
    expect(() => p.resize(10, 10)).toThrow(/consoleSocket/);
    expect(out.text()).toContain('/dev/pts/0\r\nis-a-tty\r\n30 100\r\nready\r\n');
    expect(out.text()).toContain('got:echo hi\r\n40 120\r\n');
    await new Promise((res) => l.server.close(res));
    expect(await settled()).toBeLessThanOrEqual(before);
  });

  it('the program is the session leader with the terminal as its controlling tty, without init too', async () => {
    const l = await listen();
    const p = spawnIsolated('/bin/sh', ['-c', 'echo $$; ps -o tty= -p $$; [ "$(ps -o sid= -p $$ | tr -d " ")" = "$$" ] && echo leader'], { tty: { consoleSocket: l.path }, init: false });
    const s = await l.next();
    const m = await recvFds(s, { maxFds: 1 });
    s.destroy();
    const out = collect(new ReadStream(m.fds[0]!));
    expect((await p).exitCode).toBe(0);
    await out.closed;
    expect(out.text()).toBe('1\r\npts/0\r\nleader\r\n');
    await new Promise((res) => l.server.close(res));
  });

  it('nobody listening: NsboxError at step console-socket, the program never runs, nothing left open', async () => {
    const before = await settled();
    const marker = `${dir}/ran`;
    const e = await spawnIsolated('/bin/sh', ['-c', `touch ${marker}`], { tty: { consoleSocket: `${dir}/nobody` }, mounts: [{ type: 'bind', source: dir, target: dir }] }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NsboxError);
    expect(e).toMatchObject({ step: 'console-socket', code: 'ENOENT', syscall: 'connect', path: `${dir}/nobody` });
    expect(() => readFileSync(marker)).toThrow();
    expect(await settled()).toBeLessThanOrEqual(before);
  });

  it('Sandbox.exec hands its terminal over the same way', async () => {
    const l = await listen();
    await using box = await Sandbox.create({ stateDir: `${dir}/state` });
    const p = box.exec('/bin/sh', ['-c', 'tty; read x; echo got:$x'], { tty: { consoleSocket: l.path } });
    const s = await l.next();
    const m = await recvFds(s, { maxFds: 1 });
    s.destroy();
    const t = new ReadStream(m.fds[0]!);
    const out = collect(t);
    t.write('x\r');
    expect((await p).exitCode).toBe(0);
    await out.closed;
    expect(out.text()).toMatch(/(^|\n)\/dev\/pts\/\d+\r\n/); // after the echo of what was typed
    expect(out.text()).toContain('got:x\r\n');
    await new Promise((res) => l.server.close(res));
  });

  it('rejects a bad consoleSocket before anything is made', () => {
    expect(() => spawnIsolated('/bin/true', [], { tty: { consoleSocket: '' } })).toThrow(/options\.tty\.consoleSocket/);
    expect(() => spawnIsolated('/bin/true', [], { tty: { consoleSocket: 3 as never } })).toThrow(TypeError);
  });
});
