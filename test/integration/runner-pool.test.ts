// createPool: single-use warm sandboxes.
import { describe, it, expect, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createPool, Sandbox } from '../../lib/index.js';
import { isRoot, skipReason } from '../helpers/host.js';

const stateDir = `/run/nsbox-test-pool-${process.pid}/sandboxes`;
const skip = skipReason(!isRoot, 'runner-pool: needs root (namespaces, cgroups)');

function leftovers(): string[] {
  const mi = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes('nsbox'));
  const cg = execFileSync('find', ['/sys/fs/cgroup', '-name', '*nsbox-sbx*'], { encoding: 'utf8' }).trim();
  return [...mi, ...(cg ? cg.split('\n') : [])];
}

afterAll(() => rmSync(`/run/nsbox-test-pool-${process.pid}`, { recursive: true, force: true }));

describe.skipIf(skip)('createPool', () => {
  it('runs each program in a fresh sandbox, never reused, and refills', async () => {
    await using pool = createPool({ size: 2, template: { stateDir, limits: { memory: '128M', pids: 32 } } });
    await pool.warm();
    expect(pool.stats.ready).toBe(2);
    const a = await pool.run('/bin/sh', ['-c', 'echo secret > /tmp/x; readlink /proc/self/ns/net; cat /proc/1/stat | cut -d" " -f22']);
    const b = await pool.run('/bin/sh', ['-c', 'cat /tmp/x 2>/dev/null || echo none; readlink /proc/self/ns/net']);
    expect(a.exitCode).toBe(0);
    expect(b.stdout.split('\n')[0]).toBe('none');
    expect(b.stdout.split('\n')[1]).not.toBe(a.stdout.split('\n')[1]);
    await pool.warm();
    expect(pool.stats.ready).toBe(2);
    expect(pool.stats.runs).toBe(2);
  });

  it('serves more concurrent runs than its size; stdin, limits and verdicts pass through', async () => {
    await using pool = createPool({ size: 2, template: { stateDir, limits: { memory: '64M', memorySwap: '64M' } }, refillConcurrency: 2 });
    const rs = await Promise.all(Array.from({ length: 12 }, (_, i) => pool.run('/bin/sh', ['-c', `read x; echo $x-${i}`], { input: `in\n` })));
    rs.forEach((r, i) => expect(r.stdout).toBe(`in-${i}\n`));
    const mem = await pool.run('/usr/bin/python3', ['-c', 'x = bytearray(300 << 20)']);
    expect(mem.verdict).toBe('memory');
    const t = await pool.run('/bin/sleep', ['5'], { timeout: 100 });
    expect(t.verdict).toBe('timeout');
    expect(pool.stats.misses).toBeGreaterThan(0);
  });

  it('close() removes every sandbox, ready or used', async () => {
    const pool = createPool({ size: 3, template: { stateDir } });
    await pool.warm();
    await pool.run('/bin/true');
    await pool.close();
    await pool.close();
    await expect(pool.run('/bin/true')).rejects.toThrow(/closed/);
    expect(Sandbox.list({ stateDir })).toEqual([]);
    expect(leftovers()).toEqual([]);
  });

  it('bad options throw at once and make nothing', () => {
    expect(() => createPool({ size: 0 })).toThrow(RangeError);
    expect(() => createPool({ size: 1.5 })).toThrow(/options.size/);
    expect(() => createPool({ size: 1, template: { hostname: 5 as never } })).toThrow(/options.hostname/);
    expect(() => createPool({ size: 1, template: { limits: { memory: 'lots' } } })).toThrow(/memory/);
    expect(() => createPool({ size: 1, template: { keepAlive: true } as never })).toThrow(/keepAlive/);
    expect(Sandbox.list({ stateDir })).toEqual([]);
    expect(leftovers()).toEqual([]);
  });
});
