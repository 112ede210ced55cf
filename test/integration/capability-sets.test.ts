// Issue 16, item 5: the five capability sets given separately (OCI's process.capabilities), read
// back from /proc/<sh>/status inside the sandbox. What a program sees is what execve made of the
// sets nsbox applied (capabilities(7), a file without capabilities): bounding, inheritable and
// ambient as applied; permitted = effective = bounding ∪ inheritable for uid 0 (under
// no_new_privs, the default, only what was permitted before), ambient for any other uid.
// result.isolation.capabilitySets shows the sets as applied.
import { describe, it, expect, afterAll } from 'vitest';
import { rmSync } from 'node:fs';
import { spawnIsolated, Sandbox, Capabilities, type SpawnIsolatedOptions } from '../../lib/index.js';
import { isRoot, skipReason } from '../helpers/host.js';

const KEYS = { CapBnd: 'bounding', CapPrm: 'permitted', CapEff: 'effective', CapInh: 'inheritable', CapAmb: 'ambient' } as const;
type Sets = Record<(typeof KEYS)[keyof typeof KEYS], string[]>;
const SCRIPT = 'grep -E "^Cap(Bnd|Prm|Eff|Inh|Amb):" /proc/$$/status';

/** The five sets of the status text, as sorted names. */
function parse(status: string): Sets {
  const out = {} as Sets;
  for (const [k, set] of Object.entries(KEYS)) {
    const m = new RegExp(`^${k}:\\s*([0-9a-f]+)$`, 'm').exec(status);
    expect(m, `${k} in ${status}`).not.toBeNull();
    out[set] = Capabilities.fromMask(BigInt(`0x${m![1]}`));
  }
  return out;
}

async function sets(options: SpawnIsolatedOptions) {
  const r = await spawnIsolated('/bin/sh', ['-c', SCRIPT], options);
  expect(r.stderr).toBe('');
  expect(r.exitCode).toBe(0);
  return { seen: parse(r.stdout), report: r.isolation };
}

const RAW = 'CAP_NET_RAW', BIND = 'CAP_NET_BIND_SERVICE', CHOWN = 'CAP_CHOWN', KILL = 'CAP_KILL', ADMIN = 'CAP_SYS_ADMIN';
const stateDir = `/run/nsbox-test-capsets-${process.pid}/sandboxes`;
afterAll(() => rmSync(`/run/nsbox-test-capsets-${process.pid}`, { recursive: true, force: true }));

describe.skipIf(skipReason(!isRoot, 'capability set tests need root'))('capabilities: the five sets in the sandbox', () => {
  it('the array form: the same numbers as before the object form (all four sets; ambient only for uid 1000)', async () => {
    const root = await sets({ capabilities: [RAW, 'net_bind_service'] });
    expect(root.seen).toEqual({ bounding: [BIND, RAW], permitted: [BIND, RAW], effective: [BIND, RAW], inheritable: [BIND, RAW], ambient: [] });
    expect(root.report.capabilities).toEqual([BIND, RAW]);
    expect(root.report.capabilitySets).toBeUndefined();
    const user = await sets({ uid: 1000, capabilities: [RAW, 'net_bind_service'] });
    expect(user.seen).toEqual({ bounding: [BIND, RAW], permitted: [BIND, RAW], effective: [BIND, RAW], inheritable: [BIND, RAW], ambient: [BIND, RAW] });
  });

  const five = { bounding: [RAW, CHOWN, KILL, BIND], permitted: [RAW, CHOWN, ADMIN], effective: [CHOWN], inheritable: [RAW, KILL], ambient: [RAW] };

  it('the object form, five distinct sets, uid 0: bounding, inheritable, ambient as given; execve makes permitted and effective (bounding ∪ inheritable) ∩ permitted', async () => {
    const { seen, report } = await sets({ capabilities: five });
    expect(seen).toEqual({ bounding: [CHOWN, KILL, BIND, RAW], permitted: [CHOWN, RAW], effective: [CHOWN, RAW], inheritable: [KILL, RAW], ambient: [RAW] });
    expect(report.capabilitySets).toEqual({ bounding: [CHOWN, KILL, BIND, RAW], effective: [CHOWN], permitted: [CHOWN, RAW, ADMIN], inheritable: [KILL, RAW], ambient: [RAW] });
    expect(report.capabilities).toEqual([CHOWN, KILL, BIND, RAW, ADMIN]);
    // without no_new_privs root's execve gains bounding ∪ inheritable whatever was permitted
    const free = await sets({ capabilities: five, allowNewPrivileges: true });
    expect(free.seen).toEqual({ bounding: [CHOWN, KILL, BIND, RAW], permitted: [CHOWN, KILL, BIND, RAW], effective: [CHOWN, KILL, BIND, RAW], inheritable: [KILL, RAW], ambient: [RAW] });
  });

  it('the object form, uid 1000 with ambient: permitted and effective are the ambient set', async () => {
    const { seen } = await sets({ uid: 1000, capabilities: five });
    expect(seen).toEqual({ bounding: [CHOWN, KILL, BIND, RAW], permitted: [RAW], effective: [RAW], inheritable: [KILL, RAW], ambient: [RAW] });
    // ambient kept through a second execve (nsbox-init, then sh, then this one); usable: ping's raw socket is not needed, a bind to port 80 shows another
    const r = await spawnIsolated('/bin/sh', ['-c', 'exec python3 -c "import socket; s=socket.socket(); s.bind((\'127.0.0.1\', 80)); print(\'bound\')"'], {
      uid: 1000, capabilities: { bounding: [BIND], permitted: [BIND], inheritable: [BIND], ambient: [BIND] },
    });
    expect(r.stdout.trim()).toBe('bound');
    const no = await spawnIsolated('/bin/sh', ['-c', 'exec python3 -c "import socket; s=socket.socket(); s.bind((\'127.0.0.1\', 80)); print(\'bound\')"'], {
      uid: 1000, capabilities: { bounding: [BIND], permitted: [BIND], effective: [BIND], inheritable: [BIND] },
    });
    expect(no.exitCode).not.toBe(0);
    expect(no.stderr).toMatch(/Permission denied/);
  });

  it('empty sets: an empty object keeps nothing, for uid 0 and uid 1000; bounding alone gives uid 0 nothing under no_new_privs, its bounding set without', async () => {
    const none = { bounding: [], permitted: [], effective: [], inheritable: [], ambient: [] };
    const a = await sets({ capabilities: {} });
    expect(a.seen).toEqual(none);
    expect(a.report.capabilitySets).toEqual(none);
    expect((await sets({ uid: 1000, capabilities: {} })).seen).toEqual(none);
    expect((await sets({ uid: 1000, capabilities: { bounding: [RAW] } })).seen).toEqual({ ...none, bounding: [RAW] });
    expect((await sets({ capabilities: { bounding: [RAW] } })).seen).toEqual({ ...none, bounding: [RAW] });
    expect((await sets({ capabilities: { bounding: [RAW] }, allowNewPrivileges: true })).seen).toEqual({ ...none, bounding: [RAW], permitted: [RAW], effective: [RAW] });
  });

  it('Sandbox.exec applies the object form the sandbox was made with', async () => {
    await using box = await Sandbox.create({ stateDir, uid: 1000, capabilities: { bounding: [RAW, BIND], permitted: [RAW, BIND], inheritable: [BIND], ambient: [BIND] } });
    const r = await box.exec('/bin/sh', ['-c', SCRIPT]);
    expect(r.stderr).toBe('');
    expect(parse(r.stdout)).toEqual({ bounding: [BIND, RAW], permitted: [BIND], effective: [BIND], inheritable: [BIND], ambient: [BIND] });
    expect(r.isolation.capabilitySets).toEqual({ bounding: [BIND, RAW], effective: [], permitted: [BIND, RAW], inheritable: [BIND], ambient: [BIND] });
    // an exec with capabilities of its own (runc exec --cap): these, not the sandbox's
    const own = await box.exec('/bin/sh', ['-c', SCRIPT], { capabilities: { bounding: [RAW], permitted: [RAW], inheritable: [RAW], ambient: [RAW] } });
    expect(own.stderr).toBe('');
    expect(parse(own.stdout)).toEqual({ bounding: [RAW], permitted: [RAW], effective: [RAW], inheritable: [RAW], ambient: [RAW] });
    expect(own.isolation.capabilitySets).toMatchObject({ bounding: [RAW], ambient: [RAW] });
    // and an exec with none at all
    expect(parse((await box.exec('/bin/sh', ['-c', SCRIPT], { capabilities: [] })).stdout)).toEqual({ bounding: [], permitted: [], effective: [], inheritable: [], ambient: [] });
  });
});
