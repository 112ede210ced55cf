// The cgroup drivers over a directory tree of plain files (a temp dir standing in for the
// cgroup mount): where a new process is placed and which files limits go to. Planning logic
// only: what the kernel does with these files is the integration suites' (cgroup*.test.ts).
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { V1Driver, V2Driver, recordLimitWrites } from '../../lib/cgroup/drivers.js';
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

describe('recordLimitWrites: the writes a spare is made with ahead (lib/cgroup/spares.ts)', () => {
  const lim = (l: object) => validateLimits(l, { cgroupOnly: true });
  const plain = { memory: '48M', memoryReservation: '16M', cpus: 0.25, cpuWeight: 200, cpuset: '0', cpusetMems: '0', pids: 24 };
  it('lists exactly what apply(r, true) writes into a fresh cgroup, in its order (v1 and v2)', () => {
    const v1files = { memory: ['memory.limit_in_bytes', 'memory.soft_limit_in_bytes', 'memory.memsw.limit_in_bytes'], cpu: ['cpu.cfs_quota_us', 'cpu.cfs_period_us', 'cpu.shares'], cpuset: ['cpuset.cpus', 'cpuset.mems'], pids: ['pids.max'] };
    const make = (tag: string) => Object.fromEntries(Object.entries(v1files).map(([c, f]) => [c, dir(`rec1-${tag}/${c}/x`, ['cgroup.procs', 'tasks', ...f])]));
    const a = make('a');
    const b = make('b');
    const writes = recordLimitWrites(new V1Driver(a), lim(plain))!;
    // recording wrote nothing
    for (const d of Object.values(a)) for (const f of Object.values(v1files).flat()) { try { expect(readFileSync(`${d}/${f}`, 'utf8')).toBe(''); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; } }
    for (const [path, value] of writes) writeFileSync(path, value);
    new V1Driver(b).apply(lim(plain), true);
    const read = (dirs: Record<string, string>) => Object.entries(v1files).flatMap(([c, fs]) => fs.map((f) => { try { return `${c}/${f}=${readFileSync(`${dirs[c]}/${f}`, 'utf8')}`; } catch { return `${c}/${f} absent`; } }));
    expect(read(a)).toEqual(read(b));
    expect(writes.map(([p]) => p.slice(p.lastIndexOf('/') + 1))).toEqual(['memory.limit_in_bytes', 'memory.soft_limit_in_bytes', 'cpu.cfs_quota_us', 'cpu.shares', 'cpuset.cpus', 'cpuset.mems', 'pids.max']);
    const v2f = ['cgroup.procs', 'memory.max', 'memory.low', 'memory.swap.max', 'cpu.max', 'cpu.weight', 'cpuset.cpus', 'cpuset.mems', 'pids.max'];
    const c = dir('rec2-a/x', v2f);
    const d = dir('rec2-b/x', v2f);
    for (const [path, value] of recordLimitWrites(new V2Driver(c), lim({ ...plain, memorySwap: 0 }))!) writeFileSync(path, value);
    new V2Driver(d).apply(lim({ ...plain, memorySwap: 0 }));
    for (const f of v2f) expect(`${f}=${readFileSync(`${c}/${f}`, 'utf8')}`).toBe(`${f}=${readFileSync(`${d}/${f}`, 'utf8')}`);
  });
  it('lists nothing for limits whose writes depend on reads, existing files or a refused order', () => {
    const cpu = dir('rec3/cpu/x', ['cgroup.procs', 'tasks', 'cpu.cfs_quota_us']);
    const mem = dir('rec3/memory/x', ['cgroup.procs', 'tasks', 'memory.limit_in_bytes']);
    const drv = new V1Driver({ cpu, memory: mem });
    for (const l of [{ memory: '32M', memorySwap: '32M' }, { cpuMax: { quota: 1000 } }, { ioWeight: 100 }, { blkioWeight: 100 }, { cpuRealtime: { runtime: 1 } }]) {
      expect(recordLimitWrites(drv, lim(l))).toBeUndefined();
    }
    expect(recordLimitWrites(new V2Driver(cpu), lim({ ioWeight: 100 }))).toBeUndefined();
  });
});

describe('V1Driver figures', () => {
  it('cpu user and system from cpuacct.usage_all (summed per CPU); emptiness from pids.current', () => {
    const acct = dir('fig/cpuacct/x', ['cgroup.procs', 'tasks']);
    const pids = dir('fig/pids/x', ['cgroup.procs', 'tasks']);
    writeFileSync(`${acct}/cpuacct.usage_all`, 'cpu user system\n0 1500000 2000000\n1 500000 0\n');
    writeFileSync(`${acct}/cpuacct.usage_user`, '7');
    writeFileSync(`${pids}/pids.current`, '0\n');
    // cgroup.procs would say otherwise: pids.current is what is read
    writeFileSync(`${pids}/cgroup.procs`, '123\n');
    const drv = new V1Driver({ cpuacct: acct, pids });
    const st = drv.stats(true);
    expect(st.cpuUserMs).toBe(2);
    expect(st.cpuSystemMs).toBe(2);
    expect(drv.emptyAtAGlance()).toBe(true);
    writeFileSync(`${pids}/pids.current`, '1\n');
    expect(drv.emptyAtAGlance()).toBe(false);
  });
});

describe('the kernel\'s own knobs, as given (OCI linux.resources; issue 16)', () => {
  const lim = (l: object) => validateLimits(l, { cgroupOnly: true });
  it('v1: cfs period and quota, shares, realtime, blkio weights and throttles, net_cls/net_prio, hugetlb to their files as given', () => {
    const cpu = dir('v1x/cpu/c', ['cgroup.procs', 'tasks', 'cpu.cfs_quota_us', 'cpu.cfs_period_us', 'cpu.shares', 'cpu.rt_runtime_us', 'cpu.rt_period_us']);
    const blk = dir('v1x/blkio/c', ['cgroup.procs', 'tasks', 'blkio.weight', 'blkio.leaf_weight', 'blkio.weight_device', 'blkio.leaf_weight_device', 'blkio.throttle.read_bps_device']);
    const net = dir('v1x/net_cls,net_prio/c', ['cgroup.procs', 'tasks', 'net_cls.classid', 'net_prio.ifpriomap']);
    const huge = dir('v1x/hugetlb/c', ['cgroup.procs', 'tasks', 'hugetlb.2MB.limit_in_bytes']);
    const drv = new V1Driver({ cpu, blkio: blk, net_cls: net, net_prio: net, hugetlb: huge });
    drv.apply(lim({ cpuMax: { quota: 200000, period: 500000 }, cpuShares: 2048, cpuRealtime: { runtime: 950000, period: 1000000 }, blkioWeight: 500, blkioLeafWeight: 300,
      blkioWeightDevice: [{ device: '8:0', weight: 400, leafWeight: 200 }], ioMax: [{ device: '8:0', rbps: 102400 }], netClassId: 255, netPriorities: [{ name: 'lo', priority: 10 }] }));
    const f = (d: string, n: string) => readFileSync(`${d}/${n}`, 'utf8');
    expect([f(cpu, 'cpu.cfs_quota_us'), f(cpu, 'cpu.cfs_period_us'), f(cpu, 'cpu.shares'), f(cpu, 'cpu.rt_runtime_us'), f(cpu, 'cpu.rt_period_us')]).toEqual(['200000', '500000', '2048', '950000', '1000000']);
    expect([f(blk, 'blkio.weight'), f(blk, 'blkio.leaf_weight'), f(blk, 'blkio.weight_device'), f(blk, 'blkio.leaf_weight_device'), f(blk, 'blkio.throttle.read_bps_device')]).toEqual(['500', '300', '8:0 400', '8:0 200', '8:0 102400']);
    expect([f(net, 'net_cls.classid'), f(net, 'net_prio.ifpriomap')]).toEqual(['255', 'lo 10']);
    drv.apply({ hugetlb: { '2MB': 2 ** 31 } } as never); // (resolved form: the host may have no 2MB pages)
    expect(f(huge, 'hugetlb.2MB.limit_in_bytes')).toBe(String(2 ** 31));
    drv.apply(lim({ cpuMax: { quota: 'max' } }));
    expect(f(cpu, 'cpu.cfs_quota_us')).toBe('-1');
  });
  it('v1: a limit whose file or hierarchy is missing is an NsboxError naming the limit', () => {
    const blk = dir('v1y/blkio/c', ['cgroup.procs', 'tasks']);
    const drv = new V1Driver({ blkio: blk });
    expect(() => drv.apply(lim({ blkioWeight: 500 }))).toThrow(/^limits\.blkioWeight: cgroup controller 'blkio' cannot apply this limit: neither blkio\.weight \(CFQ\) nor blkio\.bfq\.weight/);
    expect(() => drv.apply(lim({ netClassId: 1 }))).toThrow(/^limits\.netClassId: .*no cgroup v1 hierarchy with the net_cls controller/);
    expect(() => drv.apply(lim({ cpuShares: 100 }))).toThrow(/^limits\.cpuShares: .*cpu controller/);
  });
  it('v2: cpu.max "quota period", cpu.weight from shares, io weights converted (or BFQ as given), hugetlb.<size>.max; v1-only knobs refused naming the limit', () => {
    const d = dir('v2x/c', ['cgroup.procs', 'cpu.max', 'cpu.weight', 'io.weight', 'io.max', 'hugetlb.2MB.max']);
    const drv = new V2Driver(d);
    drv.apply(lim({ cpuMax: { quota: 50000, period: 500000 }, cpuShares: 1024, blkioWeight: 500, ioMax: [{ device: '8:0', rbps: 0, wiops: 7 }] }));
    const f = (n: string) => readFileSync(`${d}/${n}`, 'utf8');
    expect([f('cpu.max'), f('cpu.weight'), f('io.weight'), f('io.max')]).toEqual(['50000 500000', '39', 'default 4950', '8:0 rbps=max wiops=7']);
    drv.apply(lim({ cpuMax: { period: 250000 } })); // the quota the file has stays
    expect(f('cpu.max')).toBe('50000 250000');
    drv.apply({ hugetlb: { '2MB': 1024 } } as never);
    expect(f('hugetlb.2MB.max')).toBe('1024');
    expect(() => drv.apply(lim({ cpuRealtime: { runtime: 1000 } }))).toThrow(/^limits\.cpuRealtime: cgroup v2 has no realtime CPU bandwidth/);
    expect(() => drv.apply(lim({ blkioLeafWeight: 100 }))).toThrow(/^limits\.blkioLeafWeight: cgroup v2 has no leaf weights/);
    expect(() => drv.apply(lim({ netClassId: 1 }))).toThrow(/^limits\.netClassId: cgroup v2 has no net_cls/);
    const bfq = dir('v2y/c', ['cgroup.procs', 'io.bfq.weight']);
    new V2Driver(bfq).apply(lim({ blkioWeight: 500 }));
    expect(readFileSync(`${bfq}/io.bfq.weight`, 'utf8')).toBe('500');
  });
});
