// Issue 7, item 2: a terminal for the program (tty option and `nsbox run -it`).
import { describe, it, expect } from 'vitest';
import { spawn as cpSpawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { spawnIsolated, NsboxError } from '../../lib/index.js';
import { isRoot, skipReason } from '../helpers/host.js';

const root = new URL('../..', import.meta.url).pathname;

/** Collects p.stdout and resolves once `marker` has appeared in it. */
function until(p: ReturnType<typeof spawnIsolated>, marker: string): Promise<void> {
  let seen = '';
  return new Promise((res, rej) => {
    p.stdout!.on('data', (c: Buffer) => { seen += c.toString(); if (seen.includes(marker)) res(); });
    p.then(() => rej(new Error(`ended before ${marker}: ${JSON.stringify(seen)}`)), rej);
  });
}

describe.skipIf(skipReason(!isRoot, 'tty tests need root'))('tty', () => {
  it('gives the program a pty of the sandbox devpts as controlling terminal, with the asked size', async () => {
    const r = await spawnIsolated('/bin/sh', ['-c', 'tty; stty size; [ "$(ps -o sid= -p $$ | tr -d " ")" = "$$" ] && echo leader; ps -o tty= -p $$'], { tty: { rows: 30, cols: 100 } });
    expect(r.stdout.split('\r\n')).toEqual(['/dev/pts/0', '30 100', 'leader', 'pts/0', '']);
    expect(r.exitCode).toBe(0);
  });

  it('carries input and follows resize (the program sees the new size)', async () => {
    const p = spawnIsolated('/bin/sh', ['-c', 'echo ready; read x; echo got:$x; stty size'], { tty: true });
    await until(p, 'ready');
    p.resize(50, 132);
    p.stdin!.write('hello\r');
    const r = await p;
    expect(r.stdout).toContain('got:hello\r\n50 132\r\n');
  });

  it('^C interrupts the foreground program (SIGINT through the line discipline)', async () => {
    const p = spawnIsolated('/bin/cat', [], { tty: true });
    setTimeout(() => p.stdin!.write('\x03'), 100);
    const r = await p;
    expect(r.signal).toBe('SIGINT');
  });

  it('works without init too', async () => {
    const r = await spawnIsolated('/bin/sh', ['-c', 'echo $$; tty'], { tty: true, init: false });
    expect(r.stdout).toBe('1\r\n/dev/pts/0\r\n');
  });

  it.skipIf(skipReason(!existsSync('/usr/bin/perl'), 'no perl for the TIOCSTI probe'))('denies TIOCSTI, also with high bits set in the request', async () => {
    const probe = 'for my $req (0x5412, 0x100005412) { my $c = "x"; if (ioctl(STDIN, $req, $c)) { print "injected\\n" } else { print "denied $!\\n" } }';
    const r = await spawnIsolated('/usr/bin/perl', ['-e', probe], { tty: true });
    const lines = r.stdout.trim().split('\r\n');
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l).toMatch(/^denied /);
  });

  it('rejects bad tty options before anything is made', () => {
    expect(() => spawnIsolated('/bin/true', [], { tty: { rows: 0 } })).toThrow(RangeError);
    expect(() => spawnIsolated('/bin/true', [], { tty: { rows: 10, colour: 1 } as never })).toThrow(/options\.tty/);
    expect(() => spawnIsolated('/bin/true', [], { tty: true, namespaces: { mount: false } })).toThrow(/options\.tty/);
  });

  it.skipIf(skipReason(!existsSync('/usr/bin/script'), 'no script(1) (util-linux) to give nsbox run a terminal'))('nsbox run -it works as a person would use it', async () => {
    // script(1) runs `nsbox run -it` on a real terminal; we type into it
    const cmd = `stty cols 91 rows 33; exec node ${root}dist/cli.js run -it -- sh -c 'stty size; echo ready; read line; echo you:$line'`;
    const s = cpSpawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    s.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('ready') && !out.includes('typed')) { out += '[typed]'; s.stdin.write('hi there\r'); }
    });
    const code = await new Promise<number | null>((res) => s.on('exit', res));
    expect(out).toContain('33 91');
    expect(out).toContain('you:hi there');
    expect(code).toBe(0);
  });
});
