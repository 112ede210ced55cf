// Issue 16, item 7 (device rules), on the real kernel: limits.devices on a sandbox's cgroup
// (v1: the devices controller here; v2: nsbox's BPF device program, in the VM) allow and deny
// exactly what the rules say, a later rule winning (on v1 a later rule changes only the entry of
// exactly its device, the kernel's v1 semantics); update() replaces the list (on v2 the
// old program is detached: one stays attached). The BPF program itself is also checked on
// this hybrid host through its cgroup2 tree, where device programs apply as well.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { detectLayout } from '../../lib/cgroup/detect.js';
import { cgNative } from '../../lib/cgroup/native.js';
import { explain, Sandbox } from '../../lib/index.js';
import { isRoot, skipReason } from '../helpers/host.js';

let layout: ReturnType<typeof detectLayout> | undefined;
try { layout = detectLayout(); } catch { /* none */ }
const skip = skipReason(!isRoot, 'cgroup-devices: device rules need root') || skipReason(!layout, 'cgroup-devices: no cgroup file system is mounted');
const stateDir = mkdtempSync('/tmp/nsbox-cgdev-state-');
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

/** Opening /dev/zero and /dev/urandom for reading, /dev/full for writing: ok or denied, a line each. */
const PROBES = 'for p in "3</dev/zero" "3</dev/urandom" "3>/dev/full"; do (eval "exec $p") 2>/dev/null && echo ok || echo denied; done'

describe.skipIf(skip)('device rules (limits.devices)', () => {
  it('the rules apply in order (a later one wins; nothing matching: denied), update() replaces them', async () => {
    const box = await Sandbox.create({
      id: 'cgdev1', stateDir,
      limits: {
        devices: [
          { allow: false },
          { allow: true, type: 'c', major: 1, minor: 3 }, // null (the shell needs it)
          { allow: true, type: 'c', major: 1, minor: 9, access: 'rw' }, // urandom
          { allow: true, type: 'c', major: 1, minor: 7 }, // full...
          { allow: false, type: 'c', major: 1, minor: 7, access: 'w' }, // ...but not for writing
        ],
      },
    });
    try {
      // zero: no rule; urandom allowed; full: the later rule denies writing
      expect((await box.exec('/bin/sh', ['-c', PROBES])).stdout.split('\n')).toEqual(['denied', 'ok', 'denied', '']);
      if (layout!.mode === 'v2') expect(cgNative().cgroupDeviceProgramIds(box.cgroup!.path)).toHaveLength(1);
      else expect(readFileSync(`${box.cgroup!.paths.devices}/devices.list`, 'utf8')).toMatch(/c 1:3 rwm/);
      // replaced: only null and full now
      await box.update({ limits: { devices: [{ allow: true, type: 'c', major: 1, minor: 3 }, { allow: true, type: 'c', major: 1, minor: 7, access: 'w' }] } });
      expect((await box.exec('/bin/sh', ['-c', PROBES])).stdout.split('\n')).toEqual(['denied', 'denied', 'ok', '']);
      if (layout!.mode === 'v2') expect(cgNative().cgroupDeviceProgramIds(box.cgroup!.path)).toHaveLength(1);
      // all allowed again
      await box.update({ limits: { devices: [{ allow: true }] } });
      expect((await box.exec('/bin/sh', ['-c', PROBES])).stdout.split('\n')).toEqual(['ok', 'ok', 'ok', '']);
    } finally {
      await box.destroy();
    }
  });

  it('bad rules are TypeErrors naming the rule', () => {
    expect(() => explain('/bin/true', [], { limits: { devices: [{ allow: 'yes' }] as never } })).toThrow(/limits\.devices\[0\]\.allow must be a boolean/);
    expect(() => explain('/bin/true', [], { limits: { devices: [{ allow: true, access: 'rx' }] } })).toThrow(/limits\.devices\[0\]\.access/);
    expect(() => explain('/bin/true', [], { limits: { devices: [{ allow: true, type: 'x' as never }] } })).toThrow(/limits\.devices\[0\]\.type/);
  });

  it.skipIf(layout?.mode !== 'hybrid')('the BPF device program (built in the addon) allows and denies as its rules say, on a cgroup2 tree of a hybrid host', () => {
    const dir = `${layout!.v2Mount}/nsbox-cgdev-test-${process.pid}`;
    mkdirSync(dir);
    try {
      const probe = () => spawnSync('/bin/sh', ['-c', `echo $$ > ${dir}/cgroup.procs && ${PROBES}`], { encoding: 'utf8' }).stdout.split('\n');
      // null: rwm; urandom: read only; zero: mknod only; the rest: no match, denied
      cgNative().cgroupDevices(dir, [1, 2, 1, 3, 7, 1, 2, 1, 9, 2, 1, 2, 1, 5, 1]);
      expect(probe()).toEqual(['denied', 'ok', 'denied', '']);
      expect(cgNative().cgroupDeviceProgramIds(dir)).toHaveLength(1);
      // replaced: allow every char device but 1:9 (a later rule wins), block devices any
      cgNative().cgroupDevices(dir, [1, 0, -1, -1, 7, 0, 2, 1, 9, 7]);
      expect(probe()).toEqual(['ok', 'denied', 'ok', '']);
      expect(cgNative().cgroupDeviceProgramIds(dir)).toHaveLength(1);
    } finally {
      for (let i = 0; i < 100 && existsSync(dir); i++) { try { rmdirSync(dir); } catch { spawnSync('sleep', ['0.02']); } }
    }
  });
});
