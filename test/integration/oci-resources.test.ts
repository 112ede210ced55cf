// Issue 16, on the real kernel: config.json's linux.resources land in the container's cgroup
// exactly as given, read back from the cgroup files (runtime-tools' linux_cgroups_* groups do
// the same): cpu period, quota, shares, cpus, mems and realtime (v1 as given; v2 cpu.max
// "quota period" and cpu.weight converted as runc and crun do), blkio throttles and weights,
// hugetlb, net_cls/net_prio; what this host has no controller or file for is refused naming the
// field, and nothing is left. On this host (v1) and in the 6.1 VM (v2).
import { describe, it, expect, afterAll, beforeAll } from 'vitest';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import { CGroup } from '../../lib/index.js';
import { detectLayout } from '../../lib/cgroup/detect.js';
import { isRoot, skipReason, nsboxCgroupsOf } from '../helpers/host.js';

const base = `/run/nsbox-test-ocires-${process.pid}`;
const root = `${base}/root`;
const bundle = `${base}/bundle`;
const bin = new URL('../../dist/nsbox-runc.cjs', import.meta.url).pathname;
const skip = skipReason(!isRoot, 'oci-resources: needs root (cgroups)')
  || skipReason(!existsSync(bin), 'oci-resources: dist/nsbox-runc.cjs is missing (npm run build:ts)')
  || skipReason(!existsSync('/bin/busybox'), 'oci-resources: /bin/busybox is missing (apt-get install busybox-static) for the test bundle');

const runs: number[] = [];
const cgTop = `/nsbox-ocires-test-${process.pid}`;
const cgPath = `${cgTop}/ctr`;
const rtTop = `/nsbox-ocires-rt-${process.pid}`;

/**
 * One nsbox-runc command. Its stdout and stderr go to a file, read back into the result: the
 * container gets create's fds, and pipes would stay open as long as it runs.
 */
function runc(args: string[]): SpawnSyncReturns<string> {
  const out = `${base}/out`;
  const fd = openSync(out, 'w');
  const r = spawnSync(process.execPath, [bin, '--root', root, ...args], { encoding: 'utf8', stdio: ['ignore', fd, fd], cwd: bundle, timeout: 30000 });
  closeSync(fd);
  if (r.pid) runs.push(r.pid);
  r.stdout = r.stderr = readFileSync(out, 'utf8');
  return r;
}

function ok(args: string[]): SpawnSyncReturns<string> {
  const r = runc(args);
  if (r.status !== 0) throw new Error(`nsbox-runc ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r;
}

/** config.json as `runc spec` makes it, `sleep 100`, in cgroupsPath, with linux.resources `resources`. */
function config(resources: Record<string, unknown>, path = cgPath): void {
  rmSync(`${bundle}/config.json`, { force: true });
  ok(['spec', '--bundle', bundle]);
  const c = JSON.parse(readFileSync(`${bundle}/config.json`, 'utf8'));
  c.process.terminal = false;
  c.process.args = ['sleep', '100'];
  delete c.linux.uidMappings;
  delete c.linux.gidMappings;
  c.linux.cgroupsPath = path;
  c.linux.resources = resources;
  writeFileSync(`${bundle}/config.json`, JSON.stringify(c));
}

/** The container's cgroup directory of `controller` (v2: the one directory). */
function dir(controller: string, path = cgPath): string {
  const l = detectLayout();
  if (l.mode === 'v2') return `${l.v2Mount}${path}`;
  const h = [...l.v1, ...Object.values(l.v1Extra ?? {})].find((x) => x.controllers.includes(controller));
  return `${h!.mount}${path}`;
}
const read = (controller: string, file: string, path = cgPath) => readFileSync(`${dir(controller, path)}/${file}`, 'utf8').trim();

function leftovers(): string[] {
  const out = nsboxCgroupsOf([process.pid, ...runs]).map((c) => `cgroup: ${c}`);
  const l = detectLayout();
  for (const m of l.mode === 'v2' ? [l.v2Mount!] : [...l.v1, ...Object.values(l.v1Extra ?? {})].map((h) => h.mount)) {
    if (existsSync(`${m}${cgTop}`)) out.push(`cgroup: ${m}${cgTop}`);
  }
  try { out.push(...readdirSync(root).map((f) => `state: ${f}`)); } catch { /* none */ }
  return out;
}

/** Creates `id` with `resources`, checks it, deletes it. */
function withContainer(id: string, resources: Record<string, unknown>, check: (create: SpawnSyncReturns<string>) => void, path = cgPath): void {
  config(resources, path);
  const r = ok(['create', '--bundle', bundle, id]);
  try { check(r); } finally { ok(['delete', '--force', id]); }
}

/** create refused: exit 1 with `re` on stderr, and nothing made. */
function refused(resources: Record<string, unknown>, re: RegExp, path = cgPath): void {
  config(resources, path);
  const r = runc(['create', '--bundle', bundle, 'bad']);
  expect(r.status, `${String(re)}: ${r.stderr}`).toBe(1);
  expect(r.stderr).toMatch(re);
  expect(leftovers()).toEqual([]);
}

/** A whole block device of this host (not a loop, RAM or zram one), as major:minor; none in the VM without a disk. */
function blockDevice(): string | undefined {
  let names: string[] = [];
  try { names = readdirSync('/sys/block'); } catch { /* none */ }
  const n = names.find((x) => !/^(loop|ram|zram)/.test(x) && existsSync(`/sys/block/${x}/dev`));
  return n && readFileSync(`/sys/block/${n}/dev`, 'utf8').trim();
}

beforeAll(() => {
  if (skip) return;
  mkdirSync(`${bundle}/rootfs/bin`, { recursive: true });
  for (const d of ['proc', 'dev', 'sys', 'tmp', 'etc']) mkdirSync(`${bundle}/rootfs/${d}`, { recursive: true });
  copyFileSync('/bin/busybox', `${bundle}/rootfs/bin/busybox`);
  for (const a of ['sh', 'sleep', 'true']) symlinkSync('busybox', `${bundle}/rootfs/bin/${a}`);
});
afterAll(() => {
  rmSync(base, { recursive: true, force: true });
});

describe.skipIf(skip)('linux.resources in the cgroup files', () => {
  const v2 = () => CGroup.mode() === 'v2';

  it('cpu: period, quota and shares as given (v1 files; v2 cpu.max "quota period" and cpu.weight converted), cpus and mems; update --cpu-period keeps the quota', () => {
    for (const [shares, period, quota] of [[1024, 500000, 50000], [2048, 100000, 200000]] as const) {
      withContainer('cpu', { cpu: { shares, period, quota, cpus: '0', mems: '0' } }, () => {
        if (v2()) {
          expect(read('cpu', 'cpu.max')).toBe(`${quota} ${period}`);
          expect(read('cpu', 'cpu.weight')).toBe(String(Math.floor(1 + ((shares - 2) * 9999) / 262142)));
        } else {
          expect([read('cpu', 'cpu.cfs_period_us'), read('cpu', 'cpu.cfs_quota_us'), read('cpu', 'cpu.shares')]).toEqual([String(period), String(quota), String(shares)]);
        }
        expect([read('cpuset', 'cpuset.cpus'), read('cpuset', 'cpuset.mems')]).toEqual(['0', '0']);
        ok(['update', '--cpu-period', '250000', 'cpu']);
        if (v2()) expect(read('cpu', 'cpu.max')).toBe(`${quota} 250000`);
        else expect([read('cpu', 'cpu.cfs_period_us'), read('cpu', 'cpu.cfs_quota_us')]).toEqual(['250000', String(quota)]);
      });
    }
    withContainer('cpu', { cpu: { quota: -1, period: 300000 } }, () => {
      if (v2()) expect(read('cpu', 'cpu.max')).toBe('max 300000');
      else expect([read('cpu', 'cpu.cfs_period_us'), read('cpu', 'cpu.cfs_quota_us')]).toEqual(['300000', '-1']);
    });
    expect(leftovers()).toEqual([]);
  });

  it('cpu realtime: v1 cpu.rt_period_us/cpu.rt_runtime_us as given; refused naming the field on v2', () => {
    const rt = { cpu: { realtimePeriod: 1000000, realtimeRuntime: 10000 } };
    if (v2()) return refused(rt, /config\.json: linux\.resources\.cpu\.realtimeRuntime: cgroup v2 has no realtime CPU bandwidth/);
    if (!existsSync(`${detectLayout().v1.find((h) => h.controllers.includes('cpu'))!.mount}/cpu.rt_runtime_us`)) {
      return refused(rt, /linux\.resources\.cpu\.realtimeRuntime\/realtimePeriod: limits\.cpuRealtime: .*CONFIG_RT_GROUP_SCHED/);
    }
    // a cgroup's realtime runtime comes out of its parent's: a child of the root (as runtime-tools'
    // /cgrouptest) gets it; one below a new cgroup (runtime 0) is refused saying so
    withContainer('rt', rt, () => {
      expect([read('cpu', 'cpu.rt_period_us', rtTop), read('cpu', 'cpu.rt_runtime_us', rtTop)]).toEqual(['1000000', '10000']);
    }, rtTop);
    refused(rt, /linux\.resources\.cpu\.realtimeRuntime\/realtimePeriod: limits\.cpuRealtime: .*EINVAL.*a cgroup's realtime runtime comes out of its parent's/);
    expect(leftovers()).toEqual([]);
    expect(existsSync(dir('cpu', rtTop))).toBe(false);
  });

  it('blockIO: throttles on a real device as given (v1 blkio.throttle.*, v2 io.max); a weight where no scheduler has weights is refused naming the field', (ctx) => {
    const dev = blockDevice();
    if (!dev) return ctx.skip('oci-resources: this host has no block device (/sys/block lists none but loop, ram, zram) to throttle'); // (the VM's root is 9p)
    const [major, minor] = dev.split(':').map(Number);
    const t = (rate: number) => [{ major, minor, rate }];
    withContainer('blk', { blockIO: { throttleReadBpsDevice: t(102400), throttleWriteBpsDevice: t(204800), throttleReadIOPSDevice: t(100), throttleWriteIOPSDevice: t(200) } }, () => {
      if (v2()) {
        expect(read('io', 'io.max')).toContain(`${dev} rbps=102400 wbps=204800 riops=100 wiops=200`);
      } else {
        expect(['read_bps_device', 'write_bps_device', 'read_iops_device', 'write_iops_device'].map((f) => read('blkio', `blkio.throttle.${f}`)))
          .toEqual([`${dev} 102400`, `${dev} 204800`, `${dev} 100`, `${dev} 200`]);
      }
    });
    // a weight: BFQ's or CFQ's (v1), BFQ's or iocost's (v2) file, else refused naming the field
    const bfq = readdirSync('/sys/block').some((b) => { try { return /\bbfq\b/.test(readFileSync(`/sys/block/${b}/queue/scheduler`, 'utf8')); } catch { return false; } });
    const l = detectLayout();
    const weights = v2() ? bfq || existsSync(`${l.v2Mount}/io.cost.qos`) : bfq || existsSync(`${l.v1.find((h) => h.controllers.includes('blkio'))!.mount}/blkio.weight`);
    if (weights) {
      withContainer('blk', { blockIO: { weight: 500 } }, () => {
        const f = v2() ? (bfq ? 'io.bfq.weight' : 'io.weight') : existsSync(`${dir('blkio')}/blkio.weight`) ? 'blkio.weight' : 'blkio.bfq.weight';
        expect(read(v2() ? 'io' : 'blkio', f)).toMatch(v2() && !bfq ? /^default 4950$/m : /^(default )?500$/m);
      });
    } else {
      refused({ blockIO: { weight: 500 } }, /config\.json: linux\.resources\.blockIO\.weight: limits\.blkioWeight: cgroup controller '(blkio|io)' cannot apply this limit: neither/);
    }
    expect(leftovers()).toEqual([]);
  });

  it('hugepageLimits: as given where the hugetlb controller is; refused naming the field where it is not, or for a page size the host lacks', () => {
    refused({ hugepageLimits: [{ pageSize: '3MB', limit: 314572800 }] }, /config\.json: linux\.resources\.hugepageLimits\[0\]\.pageSize: this host has no huge pages of size 3MB/);
    const size = CGroup.hugePageSizes()[0];
    if (!size) return;
    const h = { hugepageLimits: [{ pageSize: size, limit: 2 ** 31 }] };
    if (!CGroup.controllers().includes('hugetlb')) return refused(h, /config\.json: linux\.resources\.hugepageLimits: needs the cgroup v\d hugetlb controller/);
    withContainer('huge', h, () => {
      expect(read('hugetlb', v2() ? `hugetlb.${size}.max` : `hugetlb.${size}.limit_in_bytes`)).toBe(String(2 ** 31));
    });
    expect(leftovers()).toEqual([]);
  });

  it('network: v1 net_cls.classid and net_prio.ifpriomap as given; refused naming the field on v2 or where the hierarchy is not mounted', () => {
    const n = { network: { classID: 255, priorities: [{ name: 'lo', priority: 10 }] } };
    if (v2()) return refused(n, /config\.json: linux\.resources\.network\.classID: cgroup v2 has no net_cls controller/);
    if (!CGroup.controllers().includes('net_cls')) return refused(n, /config\.json: linux\.resources\.network\.classID: needs the cgroup v1 net_cls controller/);
    withContainer('net', n, () => {
      expect(read('net_cls', 'net_cls.classid')).toBe('255');
      expect(read('net_prio', 'net_prio.ifpriomap')).toMatch(/^lo 10$/m);
    });
    expect(leftovers()).toEqual([]);
  });

  it('memory.swap is the limit of memory and swap together, as OCI and runc read it (v1 memory.memsw.limit_in_bytes as given, v2 memory.swap.max = swap - limit)', (ctx) => {
    if (!v2() && !existsSync(`${detectLayout().v1.find((h) => h.controllers.includes('memory'))!.mount}/memory.memsw.limit_in_bytes`)) {
      return ctx.skip('oci-resources: swap accounting is off on this host (boot with swapaccount=1)');
    }
    withContainer('swap', { memory: { limit: 2 ** 27, swap: 2 ** 28 } }, () => {
      if (v2()) expect([read('memory', 'memory.max'), read('memory', 'memory.swap.max')]).toEqual([String(2 ** 27), String(2 ** 27)]);
      else expect([read('memory', 'memory.limit_in_bytes'), read('memory', 'memory.memsw.limit_in_bytes')]).toEqual([String(2 ** 27), String(2 ** 28)]);
    });
    refused({ memory: { limit: 2 ** 28, swap: 2 ** 27 } }, /config\.json: linux\.resources\.memory\.swap: must be at least memory\.limit/);
    expect(leftovers()).toEqual([]);
  });

  it('memory.kernel is ignored with a warning naming it (the kernel no longer enforces it); the container is made', () => {
    withContainer('kmem', { memory: { limit: 2 ** 27, kernel: 2 ** 27 } }, (r) => {
      expect(r.stderr).toMatch(/config\.json: linux\.resources\.memory\.kernel: ignored/);
      expect(read('memory', v2() ? 'memory.max' : 'memory.limit_in_bytes')).toBe(String(2 ** 27));
    });
    expect(leftovers()).toEqual([]);
  });
});
