// Issue 2, item 7: Capabilities against libcap's own tools (getcap/setcap from libcap2-bin).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, symlinkSync, readFileSync } from 'node:fs';
import { Capabilities } from '../../lib/index.js';
import { isRoot, skipReason } from '../helpers/host.js';

const has = (cmd: string) => { try { execFileSync('sh', ['-c', `command -v ${cmd}`]); return true; } catch { return false; } };
const getcap = (p: string) => execFileSync('getcap', [p]).toString().trim().replace(`${p} `, '');

describe('Capabilities: names and text', () => {
  it('knows every capability of this kernel by name and number', () => {
    expect(Capabilities.names.length).toBeGreaterThanOrEqual(Capabilities.lastCap() + 1);
    expect(Capabilities.number('net_raw')).toBe(13);
    expect(Capabilities.normalize('cap_sys_admin')).toBe('CAP_SYS_ADMIN');
    expect(Capabilities.name(40)).toBe('CAP_CHECKPOINT_RESTORE');
    expect(() => Capabilities.normalize('CAP_FLY')).toThrow(TypeError);
  });

  it.each([
    ['cap_net_raw+ep', { effective: ['CAP_NET_RAW'], permitted: ['CAP_NET_RAW'], inheritable: [] }, 'cap_net_raw=ep'],
    ['cap_net_raw,cap_chown=eip', { effective: ['CAP_CHOWN', 'CAP_NET_RAW'], permitted: ['CAP_CHOWN', 'CAP_NET_RAW'], inheritable: ['CAP_CHOWN', 'CAP_NET_RAW'] }, 'cap_chown,cap_net_raw=eip'],
    ['=ep cap_kill-e', null, null],
    ['cap_kill=i cap_chown+p', { effective: [], permitted: ['CAP_CHOWN'], inheritable: ['CAP_KILL'] }, 'cap_chown=p cap_kill=i'],
    ['', { effective: [], permitted: [], inheritable: [] }, '='],
  ])('parses and formats %j', (text, sets, formatted) => {
    const s = Capabilities.parse(text);
    if (sets) expect(s).toEqual(sets);
    else {
      expect(s.permitted).toHaveLength(Capabilities.names.length);
      expect(s.effective).not.toContain('CAP_KILL');
    }
    if (formatted) expect(Capabilities.format(s)).toBe(formatted);
    expect(Capabilities.parse(Capabilities.format(s))).toEqual(s);
  });

  it('rejects malformed text with the clause', () => {
    expect(() => Capabilities.parse('cap_net_raw')).toThrow(/cap_net_raw/);
    expect(() => Capabilities.parse('cap_fly+e')).toThrow(/unknown capability/);
    expect(() => Capabilities.parse('+ep')).toThrow(TypeError);
  });

  it('reads a process\'s sets from /proc', () => {
    const mine = Capabilities.ofProcess(process.pid);
    const st = readFileSync('/proc/self/status', 'utf8');
    const eff = BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(st)![1]}`);
    expect(Capabilities.toMask(mine.effective)).toBe(eff);
  });
});

describe.skipIf(skipReason(!isRoot || !has('setcap'), 'file capability tests need root and setcap/getcap (apt-get install libcap2-bin)'))('Capabilities: file capabilities', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync('/tmp/nsbox-test-caps-'); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads what setcap wrote', () => {
    const f = `${dir}/a`;
    writeFileSync(f, '');
    execFileSync('setcap', ['cap_net_raw,cap_net_bind_service+ep', f]);
    expect(Capabilities.getFile(f)).toEqual({ effective: ['CAP_NET_BIND_SERVICE', 'CAP_NET_RAW'], permitted: ['CAP_NET_BIND_SERVICE', 'CAP_NET_RAW'], inheritable: [], revision: 2 });
    execFileSync('setcap', ['cap_sys_admin+i cap_chown+p', f]);
    expect(Capabilities.getFile(f)).toMatchObject({ effective: [], permitted: ['CAP_CHOWN'], inheritable: ['CAP_SYS_ADMIN'] });
  });

  it('writes what getcap reads back as the same text', () => {
    const f = `${dir}/b`;
    writeFileSync(f, '');
    for (const text of ['cap_net_raw=ep', 'cap_chown,cap_kill=eip']) {
      Capabilities.setFile(f, text);
      expect(getcap(f)).toBe(text);
      expect(Capabilities.format(Capabilities.getFile(f)!)).toBe(text);
    }
    // mixed flags: libcap writes a base clause plus a difference ('cap_kill=i cap_chown+p');
    // the sets are what must agree
    Capabilities.setFile(f, 'cap_chown=p cap_kill=i');
    expect(Capabilities.parse(getcap(f))).toEqual(Capabilities.getFile(f) && { effective: [], permitted: ['CAP_CHOWN'], inheritable: ['CAP_KILL'] });
  });

  it('reads and writes the v3 (namespaced) format with its root uid', () => {
    const f = `${dir}/c`;
    writeFileSync(f, '');
    execFileSync('setcap', ['-n', '1000', 'cap_net_raw+ep', f]);
    expect(Capabilities.getFile(f)).toMatchObject({ permitted: ['CAP_NET_RAW'], revision: 3, rootUid: 1000 });
    Capabilities.setFile(f, 'cap_kill+ep', { rootUid: 2000 });
    expect(execFileSync('getcap', ['-n', f]).toString()).toMatch(/cap_kill=ep \[rootid=2000\]/);
  });

  it('removes file caps, refuses symlinks and an impossible effective set', () => {
    const f = `${dir}/d`;
    writeFileSync(f, '');
    Capabilities.setFile(f, 'cap_kill+ep');
    Capabilities.removeFile(f);
    expect(Capabilities.getFile(f)).toBeNull();
    expect(getcap(f)).toBe('');
    symlinkSync(f, `${dir}/link`);
    expect(() => Capabilities.setFile(`${dir}/link`, 'cap_kill+ep')).toThrow(/symbolic link/);
    expect(() => Capabilities.setFile(f, 'cap_kill+p cap_chown+ep')).toThrow(RangeError);
  });
});
