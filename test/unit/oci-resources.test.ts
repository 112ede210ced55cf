// Issue 16: config.json's linux.resources as nsbox limits. The kernel's files exactly as given
// (cpu period/quota/shares, realtime, blkio, hugetlb, net_cls/net_prio), or refused naming the
// field where this host has no controller for them. What the kernel does with the files is
// test/integration/oci-resources.test.ts's.
import { describe, expect, it } from 'vitest';
import { updateToLimits, ociLimitError, OciConfigError } from '../../lib/oci/config.js';
import { CGroup } from '../../lib/index.js';

const res = (r: object, warnings: string[] = []) => updateToLimits({}, r, warnings);
const v2 = CGroup.mode() === 'v2';
const have = CGroup.controllers();

describe('linux.resources.cpu: the kernel\'s values as given', () => {
  it('period, quota, shares, cpus and mems land as cpuMax, cpuShares, cpuset, cpusetMems (no cores or weight in between)', () => {
    expect(res({ cpu: { shares: 1024, quota: 50000, period: 500000, cpus: '0', mems: '0' } })).toEqual({ cpuMax: { quota: 50000, period: 500000 }, cpuShares: 1024, cpuset: '0', cpusetMems: '0' });
    expect(res({ cpu: { shares: 2048, quota: 200000, period: 100000 } })).toEqual({ cpuMax: { quota: 200000, period: 100000 }, cpuShares: 2048 });
    expect(res({ cpu: { quota: -1 } })).toEqual({ cpuMax: { quota: 'max' } });
    expect(res({ cpu: { period: 250000 } })).toEqual({ cpuMax: { period: 250000 } });
    expect(res({ cpu: { shares: 0, quota: 0, period: 0 } })).toEqual({}); // 0: not set
  });
  it('values the kernel would refuse or clamp are refused naming the field', () => {
    expect(() => res({ cpu: { period: 999 } })).toThrow(/--resources\.cpu\.period: must be an integer from 1000 to 1000000/);
    expect(() => res({ cpu: { quota: 500 } })).toThrow(/--resources\.cpu\.quota: must be at least 1000/);
    expect(() => res({ cpu: { shares: 1 } })).toThrow(/--resources\.cpu\.shares: must be an integer from 2 to 262144/);
    expect(() => res({ cpu: { burst: 10 } })).toThrow(OciConfigError);
  });
  it('realtime runtime and period: cgroup v1\'s files; refused naming the field on v2', () => {
    if (v2) expect(() => res({ cpu: { realtimeRuntime: 950000, realtimePeriod: 1000000 } })).toThrow(/\.cpu\.realtimeRuntime: cgroup v2 has no realtime CPU bandwidth/);
    else expect(res({ cpu: { realtimeRuntime: 950000, realtimePeriod: 1000000 } })).toEqual({ cpuRealtime: { runtime: 950000, period: 1000000 } });
  });
  it('runc update\'s flags the same way: a period alone, shares, realtime, blkio weight', () => {
    expect(updateToLimits({ 'cpu-period': '200000' })).toEqual({ cpuMax: { period: 200000 } });
    expect(updateToLimits({ 'cpu-quota': '30000', 'cpu-period': '60000', 'cpu-share': '512' })).toEqual({ cpuMax: { quota: 30000, period: 60000 }, cpuShares: 512 });
    if (have.includes(v2 ? 'io' : 'blkio')) expect(updateToLimits({ 'blkio-weight': '300' })).toEqual({ blkioWeight: 300 });
  });
});

describe('linux.resources.blockIO, hugepageLimits, network, memory.kernel', () => {
  it('blockIO: weights as given, throttles as one ioMax entry per device (rate 0: no cap)', () => {
    if (!have.includes(v2 ? 'io' : 'blkio')) return expect(() => res({ blockIO: { weight: 500 } })).toThrow(/\.blockIO: needs the cgroup/);
    expect(res({ blockIO: {
      weight: 500, weightDevice: [{ major: 8, minor: 0, weight: 400 }],
      throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 102400 }], throttleWriteIOPSDevice: [{ major: 8, minor: 0, rate: 0 }], throttleReadIOPSDevice: [{ major: 8, minor: 16, rate: 5 }],
    } })).toEqual({ blkioWeight: 500, blkioWeightDevice: [{ device: '8:0', weight: 400 }], ioMax: [{ device: '8:0', rbps: 102400, wiops: 0 }, { device: '8:16', riops: 5 }] });
    expect(() => res({ blockIO: { weight: 5 } })).toThrow(/\.blockIO\.weight: must be an integer from 10 to 1000/);
    expect(() => res({ blockIO: { throttleReadBpsDevice: [{ major: 8, rate: 1 }] } })).toThrow(/\.blockIO\.throttleReadBpsDevice\[0\]: needs major and minor/);
    if (v2) expect(() => res({ blockIO: { leafWeight: 300 } })).toThrow(/\.blockIO\.leafWeight: cgroup v2 has no leaf weights/);
    else expect(res({ blockIO: { leafWeight: 300, weightDevice: [{ major: 8, minor: 0, leafWeight: 200 }] } })).toEqual({ blkioLeafWeight: 300, blkioWeightDevice: [{ device: '8:0', leafWeight: 200 }] });
  });
  it('hugepageLimits: a page size the host lacks is refused naming it; one it has needs the hugetlb controller', () => {
    expect(() => res({ hugepageLimits: [{ pageSize: '3MB', limit: 1 }] })).toThrow(/\.hugepageLimits\[0\]\.pageSize: this host has no huge pages of size 3MB/);
    const size = CGroup.hugePageSizes()[0];
    if (!size) return;
    if (have.includes('hugetlb')) expect(res({ hugepageLimits: [{ pageSize: size, limit: 2 ** 31 }] })).toEqual({ hugetlb: { [size]: 2 ** 31 } });
    else expect(() => res({ hugepageLimits: [{ pageSize: size, limit: 2 ** 31 }] })).toThrow(/\.hugepageLimits: needs the cgroup v1 hugetlb controller/);
  });
  it('network: v1 net_cls.classid and net_prio.ifpriomap where mounted; refused naming the field on v2 or without the hierarchy', () => {
    const r = { network: { classID: 255, priorities: [{ name: 'lo', priority: 10 }] } };
    if (v2) expect(() => res(r)).toThrow(/\.network\.classID: cgroup v2 has no net_cls controller/);
    else if (!have.includes('net_cls')) expect(() => res(r)).toThrow(/\.network\.classID: needs the cgroup v1 net_cls controller/);
    else if (have.includes('net_prio')) expect(res(r)).toEqual({ netClassId: 255, netPriorities: [{ name: 'lo', priority: 10 }] });
  });
  it('memory.swap limits memory and swap together (OCI, runc): nsbox\'s memorySwap is what it allows on top of the limit', () => {
    expect(res({ memory: { limit: 2 ** 27, swap: 2 ** 28 } })).toEqual({ memory: 2 ** 27, memorySwap: 2 ** 27 });
    expect(res({ memory: { limit: 2 ** 27, swap: 2 ** 27 } })).toEqual({ memory: 2 ** 27, memorySwap: 0 });
    expect(res({ memory: { limit: 2 ** 27, swap: -1 } })).toEqual({ memory: 2 ** 27, memorySwap: 'max' });
    expect(() => res({ memory: { limit: 2 ** 28, swap: 2 ** 27 } })).toThrow(/\.memory\.swap: must be at least memory\.limit/);
    expect(() => res({ memory: { swap: 2 ** 27 } })).toThrow(/\.memory\.swap: needs memory\.limit beside it/);
    expect(updateToLimits({ memory: '128m', 'memory-swap': '256m' })).toEqual({ memory: 2 ** 27, memorySwap: 2 ** 27 });
  });
  it('memory.kernel is ignored with a warning naming it (the kernel ignores it); kernelTCP is refused', () => {
    const w: string[] = [];
    expect(res({ memory: { limit: 2 ** 26, kernel: 2 ** 26 } }, w)).toEqual({ memory: 2 ** 26 });
    expect(w).toEqual([expect.stringMatching(/--resources\.memory\.kernel: ignored \(the kernel no longer enforces kernel memory limits/)]);
    expect(() => res({ memory: { kernelTCP: 2 ** 26 } })).toThrow(/\.memory\.kernelTCP: is not supported/);
  });
  it('a cgroup refusal naming nsbox\'s limit gets the config.json field in front', () => {
    const e = ociLimitError(new Error("limits.blkioWeight: cgroup controller 'blkio' cannot apply this limit: x")) as Error;
    expect(e.message).toBe("config.json: linux.resources.blockIO.weight: limits.blkioWeight: cgroup controller 'blkio' cannot apply this limit: x");
    expect((ociLimitError(new Error('other')) as Error).message).toBe('other');
  });
});
