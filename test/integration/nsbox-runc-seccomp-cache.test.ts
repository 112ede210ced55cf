// nsbox-runc's cache of compiled seccomp programs in its --root (lib/oci/seccomp-cache.ts): a
// program is used again only for the very profile text it was compiled from, only by the build
// that wrote it, and only from a file (and directories) no other user could have written; the
// runtime itself (dist/) writes it at create and a container gets the filter from it, and a
// stale or forged file is not used.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import {
  chmodSync, chownSync, closeSync, copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync,
  rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { cacheDir, readCachedProgram, seccompProgram, writeCachedProgram } from '../../lib/oci/seccomp-cache.js';
import { isRoot, skipReason } from '../helpers/host.js';

const prog = (n: number, fill = 6) => Buffer.alloc(8 * n, fill); // any bytes: the cache does not decode them
const textA = JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }] });
const textB = JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_LOG' }] });
const onlyFile = (root: string): string => {
  const names = readdirSync(cacheDir(root)).filter((n) => n.endsWith('.bpf'));
  expect(names).toHaveLength(1);
  return `${cacheDir(root)}/${names[0]}`;
};

describe('nsbox-runc seccomp program cache (lib/oci/seccomp-cache.ts)', () => {
  let root: string;
  beforeAll(() => { root = mkdtempSync('/tmp/nsbox-test-sc-cache-'); });
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const fresh = () => rmSync(cacheDir(root), { recursive: true, force: true });

  it('compiles once, then serves the same program for the same profile text and build', () => {
    fresh();
    let compiled = 0;
    const a = seccompProgram(root, 'build1', textA, () => { compiled++; return prog(3); });
    const b = seccompProgram(root, 'build1', textA, () => { compiled++; return prog(3, 9); });
    expect(compiled).toBe(1);
    expect(b.equals(a)).toBe(true);
    expect(statSync(cacheDir(root)).mode & 0o777).toBe(0o700);
    expect(statSync(onlyFile(root)).mode & 0o777).toBe(0o600);
  });

  it('another profile text, another build, or no build id: not served', () => {
    fresh();
    writeCachedProgram(root, 'build1', textA, prog(3));
    expect(readCachedProgram(root, 'build1', textB)).toBeUndefined();
    // the file of textA renamed to textB's would still carry textA: compared byte for byte
    expect(readCachedProgram(root, 'build2', textA)).toBeUndefined();
    let compiled = 0;
    // a stale build's file is replaced by this build's program
    expect(seccompProgram(root, 'build2', textA, () => { compiled++; return prog(4); }).equals(prog(4))).toBe(true);
    expect(readCachedProgram(root, 'build2', textA)?.equals(prog(4))).toBe(true);
    expect(readCachedProgram(root, 'build1', textA)).toBeUndefined();
    // no build id (the library run from its sources): compiled every time, nothing kept
    fresh();
    seccompProgram(root, undefined, textA, () => { compiled++; return prog(2); });
    seccompProgram(root, undefined, textA, () => { compiled++; return prog(2); });
    expect(compiled).toBe(3);
    expect(existsSync(cacheDir(root))).toBe(false);
  });

  it('a file whose profile text or program was altered is not served', () => {
    fresh();
    writeCachedProgram(root, 'b', textA, prog(3));
    const f = onlyFile(root);
    const good = readFileSync(f);
    writeFileSync(f, Buffer.from(good.toString('latin1').replace('mkdirat', 'mkdirxx'), 'latin1'));
    expect(readCachedProgram(root, 'b', textA)).toBeUndefined();
    writeFileSync(f, Buffer.concat([good, Buffer.alloc(3)])); // not whole instructions
    expect(readCachedProgram(root, 'b', textA)).toBeUndefined();
    writeFileSync(f, good.subarray(0, good.length - 24)); // no program left
    expect(readCachedProgram(root, 'b', textA)).toBeUndefined();
    writeFileSync(f, good);
    expect(readCachedProgram(root, 'b', textA)?.equals(prog(3))).toBe(true);
  });

  it.skipIf(skipReason(!isRoot, 'seccomp cache ownership: needs root to give files to another user'))('a file or directory another user could have written is not used, and not written to', () => {
    fresh();
    writeCachedProgram(root, 'b', textA, prog(3));
    const f = onlyFile(root);
    const dir = cacheDir(root);
    const ok = () => readCachedProgram(root, 'b', textA)?.equals(prog(3)) === true;
    expect(ok()).toBe(true);
    for (const mode of [0o620, 0o602, 0o666]) {
      chmodSync(f, mode);
      expect(ok()).toBe(false);
    }
    chmodSync(f, 0o600);
    chownSync(f, 65534, 65534);
    expect(ok()).toBe(false);
    chownSync(f, 0, 0);
    expect(ok()).toBe(true);
    // a second link (made by whoever could link to it) or a symlink in its place
    linkSync(f, `${root}/other-link`);
    expect(ok()).toBe(false);
    rmSync(`${root}/other-link`);
    const real = `${root}/real.bpf`;
    copyFileSync(f, real);
    rmSync(f);
    symlinkSync(real, f);
    expect(ok()).toBe(false);
    rmSync(f);
    copyFileSync(real, f);
    chmodSync(f, 0o600);
    rmSync(real);
    expect(ok()).toBe(true);
    // the directories: the cache's and the root, another's or writable by others
    chmodSync(dir, 0o770);
    expect(ok()).toBe(false);
    chmodSync(dir, 0o700);
    chownSync(dir, 65534, 65534);
    expect(ok()).toBe(false);
    let compiled = 0;
    seccompProgram(root, 'b', textB, () => { compiled++; return prog(5); });
    expect(compiled).toBe(1);
    expect(readdirSync(dir).filter((n) => n.endsWith('.bpf'))).toHaveLength(1); // nothing written into another's directory
    chownSync(dir, 0, 0);
    expect(ok()).toBe(true);
    chmodSync(root, 0o777);
    expect(ok()).toBe(false);
    chmodSync(root, 0o700);
    expect(ok()).toBe(true);
    // the cache directory a symlink to a directory of ours: not followed
    rmSync(dir, { recursive: true });
    const elsewhere = mkdtempSync('/tmp/nsbox-test-sc-cache-x-');
    symlinkSync(elsewhere, dir);
    writeCachedProgram(root, 'b', textA, prog(3));
    expect(readdirSync(elsewhere)).toEqual([]);
    expect(readCachedProgram(root, 'b', textA)).toBeUndefined();
    rmSync(dir);
    rmSync(elsewhere, { recursive: true });
  });
});

const dist = new URL('../../dist/', import.meta.url).pathname;
const bin = `${dist}nsbox-runc.cjs`;
const skipRuntime = skipReason(!isRoot, 'nsbox-runc seccomp cache: needs root (namespaces, cgroups)')
  || skipReason(!existsSync(bin), 'nsbox-runc seccomp cache: dist/nsbox-runc.cjs is missing (npm run build:ts)')
  || skipReason(!existsSync('/bin/busybox'), 'nsbox-runc seccomp cache: /bin/busybox is missing (apt-get install busybox-static)');

describe.skipIf(skipRuntime)('nsbox-runc with the seccomp cache (dist/)', () => {
  const base = `/run/nsbox-test-sc-runc-${process.pid}`;
  const root = `${base}/root`;
  const bundle = `${base}/bundle`;
  const runc = (args: string[]) => spawnSync(process.execPath, [bin, '--root', root, ...args], { encoding: 'utf8', cwd: bundle, timeout: 30000 });
  beforeAll(() => {
    mkdirSync(`${bundle}/rootfs/bin`, { recursive: true });
    for (const d of ['proc', 'sys', 'dev', 'tmp', 'etc']) mkdirSync(`${bundle}/rootfs/${d}`, { recursive: true });
    chmodSync(`${bundle}/rootfs/tmp`, 0o1777); // the container's root is another uid (its user namespace)
    copyFileSync('/bin/busybox', `${bundle}/rootfs/bin/busybox`);
    for (const a of ['sh', 'mkdir', 'echo']) symlinkSync('busybox', `${bundle}/rootfs/bin/${a}`);
    expect(runc(['spec', '--bundle', bundle]).status).toBe(0);
    const c = JSON.parse(readFileSync(`${bundle}/config.json`, 'utf8'));
    c.process.terminal = false;
    c.root.readonly = false;
    c.process.args = ['sh', '-c', 'mkdir /tmp/d 2>/dev/null && echo made || echo refused'];
    delete c.linux.uidMappings; delete c.linux.gidMappings;
    c.linux.seccomp = JSON.parse(textA); // mkdir refused with an errno, the rest allowed
    writeFileSync(`${bundle}/config.json`, JSON.stringify(c));
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  /** create + start of a container running the config's program; what it printed. */
  function run(id: string): string {
    const out = `${base}/${id}.out`;
    const fd = openSync(out, 'w');
    const r = spawnSync(process.execPath, [bin, '--root', root, 'create', '--bundle', bundle, id], { stdio: ['ignore', fd, fd], timeout: 30000 });
    closeSync(fd);
    if (r.status !== 0) throw new Error(`create: ${readFileSync(out, 'utf8')}`);
    expect(runc(['start', id]).status).toBe(0);
    for (let i = 0; i < 200 && JSON.parse(runc(['state', id]).stdout).status !== 'stopped'; i++) spawnSync('sleep', ['0.05']);
    expect(runc(['delete', '--force', id]).status).toBe(0);
    return readFileSync(out, 'utf8').trim();
  }

  it('create keeps the program in --root and a later create uses it; a forged or stale one is not', () => {
    expect(run('sc1')).toBe('refused');
    const f = onlyFile(root);
    const good = readFileSync(f);
    expect(good.toString('latin1')).toContain(textA);
    expect(run('sc2')).toBe('refused');
    // the same file with an allow-everything program (one `ret ALLOW`): owned by another user,
    // and then from another build, it is not used; the container gets the profile's filter
    const allowAll = Buffer.from([0x06, 0, 0, 0, 0, 0, 0xff, 0x7f]);
    const headEnd = good.indexOf(0x0a) + 1 + Buffer.byteLength(textA);
    const forged = Buffer.concat([good.subarray(0, headEnd), allowAll]);
    writeFileSync(f, forged, { mode: 0o600 });
    chownSync(f, 65534, 65534);
    expect(run('sc3')).toBe('refused');
    // (create wrote its own program back: the forged file was replaced)
    expect(statSync(f).uid).toBe(0);
    const stale = Buffer.from(forged.toString('latin1').replace(/^(nsbox-runc seccomp cache 1 )\S+/, '$1stalebuild'), 'latin1');
    writeFileSync(f, stale, { mode: 0o600 });
    expect(run('sc4')).toBe('refused');
    expect(readFileSync(f).equals(good)).toBe(true);
    // the check that matters: the same forged program in a file this build and user wrote IS
    // installed (the cache is what the container gets; whoever can write the root is root)
    writeFileSync(f, forged, { mode: 0o600 });
    expect(run('sc5')).toBe('made');
    rmSync(`${bundle}/rootfs/tmp/d`, { recursive: true });
    writeFileSync(f, good);
    expect(run('sc6')).toBe('refused');
  });
});
