// A view template that cannot be built: the spawn goes on with the whole view, and templates
// stay off for the process. (A file of its own: vitest runs each file in its own process, and
// this one turns templates off for the rest of its process.)
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { spawnIsolated, explain } from '../../lib/index.js';
import { setPlanSeam } from '../../lib/spawn/spawn.js';
import { Op } from '../../lib/plan/index.js';
import { isRoot, skipReason } from '../helpers/host.js';

describe.skipIf(skipReason(!isRoot, 'view templates are made for root callers only'))('view template fallback', () => {
  it('a template the kernel refuses to build (ENODEV here) turns templates off; the spawn builds the whole view instead', async () => {
    expect(explain('/bin/true').templateSteps).not.toBeNull();
    // the planning seam: one more op in this plan's template, for a filesystem type the
    // kernel does not have; building it then fails in the kernel, at step 'template'
    let broken = 0;
    setPlanSeam((plan, o) => {
      if (o.env?.BREAK_TEMPLATE !== '1' || !plan.template) return plan;
      broken++;
      return { ...plan, template: { ...plan.template, build: [...plan.template.build, { op: Op.Mount, source: 'x', path: '/newroot/nsbox-broken', fstype: 'nsbox-no-such-fs', trusted: true }] } };
    });
    const r = await spawnIsolated('/bin/sh', ['-c', 'touch /dev/x && echo dev writable; grep -c " /dev/proc " /proc/self/mountinfo'], { env: { BREAK_TEMPLATE: '1', PATH: '/usr/bin:/bin' } });
    expect(broken).toBe(1);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('dev writable\n0\n'); // the whole view: its own writable /dev, no template mounts
    expect(explain('/bin/true').templateSteps).toBeNull();
    const again = await spawnIsolated('/bin/sh', ['-c', 'touch /dev/y && echo dev writable']);
    expect(again.stdout).toBe('dev writable\n');
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toMatch(/nsbox-(root|dev|mask|base)/);
  });
});
