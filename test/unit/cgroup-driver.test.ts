// The cgroup drivers over a directory tree of plain files (a temp dir standing in for the
// cgroup mount): where a new process is placed and which files limits go to. Planning logic
// only: what the kernel does with these files is the integration suites' (cgroup*.test.ts).
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { V1Driver, V2Driver } from '../../lib/cgroup/drivers.js';
import { validateLimits } from '../../lib/cgroup/limits.js';

const root = mkdtempSync(join(tmpdir(), 'nsbox-unit-cgroup-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function dir(rel: string, files: string[]): string {
  const d = join(root, rel);
  mkdirSync(d, { recursive: true });
  for (const f of files) writeFileSync(join(d, f), '');
  return d;
}

describe('V2Driver', () => {
  const d = dir('v2/nsbox-x', ['cgroup.procs', 'memory.max', 'pids.max', 'cpu.max']);
  const drv = new V2Driver(d);
  it('places a new process with CLONE_INTO_CGROUP into its directory, or through cgroup.procs', () => {
    expect(drv.placement()).toEqual({ intoDir: d, tasks: [], procs: [`${d}/cgroup.procs`] });
  });
  it('writes each limit to its v2 file', () => {
    drv.apply(validateLimits({ memory: '64M', pids: 32, cpus: 0.5 }, { cgroupOnly: true }));
    expect(readFileSync(`${d}/memory.max`, 'utf8')).toBe(String(64 * 2 ** 20));
    expect(readFileSync(`${d}/pids.max`, 'utf8')).toBe('32');
    expect(readFileSync(`${d}/cpu.max`, 'utf8')).toBe('50000 100000');
  });
  it('names the controller when its file is missing (not enabled or not delegated)', () => {
    expect(() => drv.apply(validateLimits({ ioWeight: 10 }, { cgroupOnly: true }))).toThrow(/io/);
  });
});

describe('V1Driver', () => {
  const mem = dir('v1/memory/nsbox-x', ['cgroup.procs', 'tasks', 'memory.limit_in_bytes']);
  const cpu = dir('v1/cpu,cpuacct/nsbox-x', ['cgroup.procs', 'tasks', 'cpu.cfs_quota_us', 'cpu.cfs_period_us']);
  const drv = new V1Driver({ memory: mem, cpu, cpuacct: cpu });
  it('places a new process by the tasks file of each hierarchy (once per directory), or cgroup.procs', () => {
    expect(drv.placement()).toEqual({ intoDir: undefined, tasks: [`${mem}/tasks`, `${cpu}/tasks`], procs: [`${mem}/cgroup.procs`, `${cpu}/cgroup.procs`] });
  });
  it('writes a memory limit to its hierarchy only', () => {
    drv.apply(validateLimits({ memory: '32M' }, { cgroupOnly: true }));
    expect(readFileSync(`${mem}/memory.limit_in_bytes`, 'utf8')).toBe(String(32 * 2 ** 20));
    expect(readFileSync(`${cpu}/cpu.cfs_quota_us`, 'utf8')).toBe('');
  });
});
