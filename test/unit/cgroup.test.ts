// Pure parts of the cgroup area: limits validation and layout detection from file text.
import { describe, expect, it } from 'vitest';
import { parseByteSize, validateLimits } from '../../lib/cgroup/limits.js';
import { parseIdList, weightToShares, onlineCpus, sharesToWeight, blkioToIoWeight, hugePageSizes } from '../../lib/cgroup/limits.js';
import { layoutFrom } from '../../lib/cgroup/detect.js';

describe('parseByteSize', () => {
  it('reads numbers and binary units', () => {
    expect(parseByteSize(4096, 'x')).toBe(4096);
    expect(parseByteSize('256M', 'x')).toBe(256 * 2 ** 20);
    expect(parseByteSize('1.5G', 'x')).toBe(1.5 * 2 ** 30);
    expect(parseByteSize('64KiB', 'x')).toBe(64 * 1024);
    expect(parseByteSize('10', 'x')).toBe(10);
  });
  it('names the option in errors', () => {
    expect(() => parseByteSize(-1, 'limits.memory')).toThrow(/limits\.memory/);
    expect(() => parseByteSize('-1M', 'limits.memory')).toThrow(RangeError);
    expect(() => parseByteSize('lots', 'limits.memory')).toThrow(TypeError);
    expect(() => parseByteSize(1.5, 'limits.memory')).toThrow(RangeError);
    expect(() => parseByteSize({}, 'limits.memory')).toThrow(TypeError);
  });
});

describe('validateLimits', () => {
  it('resolves a full set', () => {
    const r = validateLimits({
      memory: '64M', memorySwap: 0, memoryReservation: 'max', cpus: 0.5, cpuWeight: 100, cpuset: '0', cpusetMems: '0',
      pids: 32, ioWeight: 500, ioMax: [{ device: '8:0', rbps: 1000 }], wallTimeMs: 1000, cpuTimeMs: 500, outputBytes: '1M',
    });
    expect(r).toMatchObject({ memory: 64 * 2 ** 20, memorySwap: 0, memoryReservation: 'max', cpus: 0.5, pids: 32, outputBytes: 2 ** 20 });
    expect(r.ioMax).toEqual([{ device: '8:0', rbps: 1000 }]);
  });
  it('rejects unknown keys, wrong types and out-of-range values, naming the option', () => {
    expect(() => validateLimits({ memroy: 1 })).toThrow(/limits\.memroy/);
    expect(() => validateLimits({ memory: 100 })).toThrow(/limits\.memory.*page/);
    expect(() => validateLimits({ pids: -3 })).toThrow(RangeError);
    expect(() => validateLimits({ pids: '3' })).toThrow(TypeError);
    expect(() => validateLimits({ cpus: 0 })).toThrow(/limits\.cpus/);
    expect(() => validateLimits({ cpus: onlineCpus().length + 1 })).toThrow(RangeError);
    expect(() => validateLimits({ cpuset: `0-${onlineCpus().length + 5}` })).toThrow(/limits\.cpuset.*not online/);
    expect(() => validateLimits({ cpuWeight: 10001 })).toThrow(RangeError);
    expect(() => validateLimits({ ioMax: [{ device: 'sda', rbps: 1 }] })).toThrow(TypeError);
    expect(() => validateLimits({ ioMax: [{ device: '/nonexistent-dev', rbps: 1 }] })).toThrow(RangeError);
    expect(() => validateLimits({ ioMax: [{ device: '8:0', speed: 1 }] })).toThrow(/speed/);
    expect(() => validateLimits({ wallTimeMs: -1 })).toThrow(/limits\.wallTimeMs/);
    expect(() => validateLimits({ cpuTimeMs: 'x' })).toThrow(TypeError);
    expect(() => validateLimits([])).toThrow(TypeError);
    expect(() => validateLimits({ wallTimeMs: 10 }, { cgroupOnly: true })).toThrow(/spawnIsolated/);
    expect(validateLimits(undefined)).toEqual({});
  });
});

describe('helpers', () => {
  it('parses CPU lists', () => {
    expect(parseIdList('0-2,5')).toEqual([0, 1, 2, 5]);
    expect(parseIdList('')).toEqual([]);
    expect(parseIdList('2-1')).toBeNull();
    expect(parseIdList('a')).toBeNull();
  });
  it('maps cpu.weight to cpu.shares at both ends and the default', () => {
    expect(weightToShares(1)).toBe(2);
    expect(weightToShares(10000)).toBe(262144);
    expect(Math.abs(weightToShares(100) - 2597)).toBeLessThan(2);
  });
});

const MI_HYBRID = [
  '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids',
  '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  '50 31 0:39 / /mnt/with\\040space rw - ext4 /dev/vda rw',
].join('\n');
const PC_HYBRID = ['9:name=systemd:/', '8:pids:/user.slice', '4:memory:/a/b', '2:cpu,cpuacct:/', '0::/user.slice'].join('\n');

describe('layoutFrom', () => {
  it('detects hybrid and per-hierarchy own directories', () => {
    const l = layoutFrom(MI_HYBRID, PC_HYBRID);
    expect(l.mode).toBe('hybrid');
    expect(l.v1).toEqual([
      { controllers: ['cpu', 'cpuacct'], mount: '/sys/fs/cgroup/cpu,cpuacct', ownDir: '/sys/fs/cgroup/cpu,cpuacct' },
      { controllers: ['memory'], mount: '/sys/fs/cgroup/memory', ownDir: '/sys/fs/cgroup/memory/a/b' },
      { controllers: ['pids'], mount: '/sys/fs/cgroup/pids', ownDir: '/sys/fs/cgroup/pids/user.slice' },
    ]);
    expect(l.v2OwnDir).toBe('/sys/fs/cgroup/unified/user.slice');
  });
  it('detects pure v2 and v1', () => {
    const v2 = layoutFrom('30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate', '0::/test.slice/run.scope\n');
    expect(v2.mode).toBe('v2');
    expect(v2.v2OwnDir).toBe('/sys/fs/cgroup/test.slice/run.scope');
    const v1 = layoutFrom(MI_HYBRID.split('\n').filter((l) => !l.includes('cgroup2')).join('\n'), PC_HYBRID);
    expect(v1.mode).toBe('v1');
  });
  it('strips a mount root (a bind-mounted sub-hierarchy)', () => {
    const l = layoutFrom('30 1 0:26 /outer /sys/fs/cgroup rw - cgroup2 cgroup2 rw', '0::/outer/inner\n');
    expect(l.v2OwnDir).toBe('/sys/fs/cgroup/inner');
  });
  it('fails with ENOENT when nothing is mounted', () => {
    expect(() => layoutFrom('', '')).toThrow(/no cgroup/);
  });
});

describe('the kernel\'s own knobs (OCI linux.resources; issue 16)', () => {
  it('validates cpuMax, cpuShares, cpuRealtime, blkio weights, hugetlb and net_cls/net_prio, naming the option', () => {
    const r = validateLimits({
      cpuMax: { quota: 50000, period: 500000 }, cpuShares: 2048, cpuRealtime: { runtime: 950000, period: 1000000 },
      blkioWeight: 500, blkioLeafWeight: 300, blkioWeightDevice: [{ device: '8:0', weight: 500, leafWeight: 300 }],
      netClassId: 255, netPriorities: [{ name: 'lo', priority: 10 }], ioMax: [{ device: '8:0', rbps: 0, wbps: 1 }],
    });
    expect(r).toMatchObject({ cpuMax: { quota: 50000, period: 500000 }, cpuShares: 2048, cpuRealtime: { runtime: 950000, period: 1000000 }, blkioWeight: 500, netClassId: 255 });
    expect(r.ioMax).toEqual([{ device: '8:0', rbps: 0, wbps: 1 }]);
    expect(validateLimits({ cpuMax: { quota: 'max' } }).cpuMax).toEqual({ quota: 'max' });
    expect(() => validateLimits({ cpuMax: { quota: 50000 }, cpus: 1 })).toThrow(/limits\.cpuMax and limits\.cpus/);
    expect(() => validateLimits({ cpuMax: { period: 999 } })).toThrow(/limits\.cpuMax\.period must be between 1000 and 1000000/);
    expect(() => validateLimits({ cpuMax: {} })).toThrow(/limits\.cpuMax needs quota or period/);
    expect(() => validateLimits({ cpuMax: { quota: 5000, burst: 1 } })).toThrow(/limits\.cpuMax\.burst is not known/);
    expect(() => validateLimits({ cpuShares: 1 })).toThrow(/limits\.cpuShares must be between 2 and 262144/);
    expect(() => validateLimits({ cpuShares: 1024, cpuWeight: 100 })).toThrow(/limits\.cpuShares and limits\.cpuWeight/);
    expect(() => validateLimits({ blkioWeight: 5 })).toThrow(/limits\.blkioWeight must be between 10 and 1000/);
    expect(() => validateLimits({ blkioWeight: 500, ioWeight: 100 })).toThrow(/limits\.blkioWeight and limits\.ioWeight/);
    expect(() => validateLimits({ blkioWeightDevice: [{ device: '8:0' }] })).toThrow(/limits\.blkioWeightDevice\[0\] needs weight or leafWeight/);
    expect(() => validateLimits({ hugetlb: { '3MB': 1 } })).toThrow(/limits\.hugetlb: this host has no huge pages of size '3MB'/);
    expect(() => validateLimits({ netPriorities: [{ name: 'a/b', priority: 1 }] })).toThrow(/limits\.netPriorities\[0\]\.name/);
  });
  it('converts cpu.shares and blkio.weight to the v2 weights as runc and crun do', () => {
    expect(sharesToWeight(2)).toBe(1);
    expect(sharesToWeight(1024)).toBe(39);
    expect(sharesToWeight(262144)).toBe(10000);
    expect(blkioToIoWeight(10)).toBe(1);
    expect(blkioToIoWeight(500)).toBe(4950);
    expect(blkioToIoWeight(1000)).toBe(10000);
  });
  it('lists the huge page sizes as cgroup files name them', () => {
    for (const s of hugePageSizes()) expect(s).toMatch(/^\d+(KB|MB|GB)$/);
  });
  it('records v1 hugetlb, net_cls and net_prio hierarchies apart (used only for their limits)', () => {
    const mi = `${MI_HYBRID}\n42 31 0:40 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio\n43 31 0:41 / /sys/fs/cgroup/hugetlb rw - cgroup cgroup rw,hugetlb`;
    const l = layoutFrom(mi, `${PC_HYBRID}\n10:net_cls,net_prio:/x\n11:hugetlb:/`);
    expect(l.v1.map((h) => h.mount)).not.toContain('/sys/fs/cgroup/hugetlb');
    expect(l.v1Extra).toEqual({
      net_cls: { controllers: ['net_cls', 'net_prio'], mount: '/sys/fs/cgroup/net_cls,net_prio', ownDir: '/sys/fs/cgroup/net_cls,net_prio/x' },
      net_prio: { controllers: ['net_cls', 'net_prio'], mount: '/sys/fs/cgroup/net_cls,net_prio', ownDir: '/sys/fs/cgroup/net_cls,net_prio/x' },
      hugetlb: { controllers: ['hugetlb'], mount: '/sys/fs/cgroup/hugetlb', ownDir: '/sys/fs/cgroup/hugetlb' },
    });
  });
});
