// The published package carries a prebuilt addon that loads with no install script (npm 11
// does not run a dependency's scripts unless approved), and a load failure says how to build.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, rmSync, readdirSync, readFileSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isRoot, skipReason } from '../helpers/host.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

describe.skipIf(skipReason(!isRoot, 'the package test runs a sandbox, which needs root'))('the npm package', () => {
  let dir: string;
  let app: string;
  let files: string[];
  const node = (args: string[]) => spawnSync(process.execPath, args, { cwd: app, encoding: 'utf8' });
  beforeAll(() => {
    dir = mkdtempSync('/tmp/nsbox-test-pack-');
    // prepack makes the prebuild and dist/
    execFileSync('npm', ['pack', '--pack-destination', dir, '--silent'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
    const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
    files = execFileSync('tar', ['tzf', `${dir}/${tgz}`], { encoding: 'utf8' }).trim().split('\n').map((f) => f.replace(/^package\//, ''));
    app = `${dir}/app`;
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(`${app}/package.json`, JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    execFileSync('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--silent', `${dir}/${tgz}`], { cwd: app, stdio: ['ignore', 'ignore', 'inherit'] });
  }, 900_000); // prepack compiles the addon with prebuildify: minutes on a loaded 2-core machine
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('installs with --ignore-scripts from its tarball and runs a sandbox from ESM and CJS', () => {
    expect(existsSync(`${app}/node_modules/nsbox/build`)).toBe(false); // nothing was compiled
    expect(readdirSync(`${app}/node_modules/nsbox/prebuilds/linux-x64`).some((f) => f.endsWith('.node'))).toBe(true);
    const esm = node(['--input-type=module', '-e',
      "import { spawnIsolated } from 'nsbox'; const r = await spawnIsolated('/bin/sh', ['-c', 'hostname']); console.log(r.stdout.trim());"]);
    expect(esm.stderr).toBe('');
    expect(esm.stdout.trim()).toBe('nsbox');
    const cjs = node(['-e', "const { spawnIsolated } = require('nsbox'); spawnIsolated('/bin/echo', ['cjs']).then((r) => console.log(r.stdout.trim()));"]);
    expect(cjs.stdout.trim()).toBe('cjs');
  });

  it('ships a LICENSE matching package.json, sideEffects, and no unused CLI build', () => {
    const pkg = JSON.parse(readFileSync(`${app}/node_modules/nsbox/package.json`, 'utf8'));
    expect(pkg.license).toBe('Apache-2.0');
    expect(files).toContain('LICENSE');
    const license = readFileSync(`${app}/node_modules/nsbox/LICENSE`, 'utf8');
    expect(license).toMatch(/Apache License\s+Version 2\.0, January 2004/);
    // importing the package runs nothing (issue 14: spawnIsolated composes its layers itself;
    // before, the entry files registered the spawn option hooks and were listed here)
    expect(pkg.sideEffects).toBe(false);
    // the bin is ESM (dist/cli.js); no CommonJS build of it and no map of one
    expect(files).toContain('dist/cli.js');
    expect(files.filter((f) => f.startsWith('dist/cli.cjs'))).toEqual([]);
    // the CLI imports the library instead of carrying a second copy of it
    expect(readFileSync(`${app}/node_modules/nsbox/dist/cli.js`, 'utf8')).toMatch(/from "\.\/index\.js"/);
    const bin = spawnSync(`${app}/node_modules/.bin/nsbox`, ['--version'], { encoding: 'utf8' });
    expect(bin.stdout).toBe(`nsbox ${pkg.version}\n`);
    const run = spawnSync(`${app}/node_modules/.bin/nsbox`, ['run', '--', 'hostname'], { encoding: 'utf8' });
    expect(run).toMatchObject({ status: 0, stdout: 'nsbox\n', stderr: '' });
  });

  it('has one NsboxError class for ESM and CJS users: instanceof holds across both', () => {
    const r = node(['--input-type=module', '-e', `
      import { createRequire } from 'node:module';
      import * as esm from 'nsbox';
      const cjs = createRequire(import.meta.url)('nsbox');
      const fromCjs = await cjs.spawnIsolated('/no/such/program').catch((e) => e);
      const fromEsm = await esm.spawnIsolated('/no/such/program').catch((e) => e);
      console.log(JSON.stringify({
        same: esm.NsboxError === cjs.NsboxError,
        cjsErrorIsEsm: fromCjs instanceof esm.NsboxError, esmErrorIsCjs: fromEsm instanceof cjs.NsboxError,
        codes: [fromCjs.code, fromEsm.code], name: fromCjs.name, isError: fromCjs instanceof Error,
      }));`]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ same: true, cjsErrorIsEsm: true, esmErrorIsCjs: true, codes: ['ENOENT', 'ENOENT'], name: 'NsboxError', isError: true });
    // and the other way round: CJS loaded first
    const r2 = node(['-e', `
      const cjs = require('nsbox');
      import('nsbox').then(async (esm) => {
        const e = await esm.spawnIsolated('/no/such/program').catch((x) => x);
        console.log(e instanceof cjs.NsboxError && esm.NsboxError === cjs.NsboxError);
      });`]);
    expect(r2.stdout.trim()).toBe('true');
  });

  it.skipIf(!existsSync('/bin/busybox'))('nsbox-runc (bin) runs the native front end the package carries: state, start, delete and --version without Node; Node for the rest', () => {
    const front = `${app}/node_modules/nsbox/prebuilds/linux-x64/nsbox-runc`;
    expect(files).toContain('prebuilds/linux-x64/nsbox-runc');
    expect(files).toContain('bin/nsbox-runc');
    // the Node side's code cache, made by prepack for this Node, is usable where npm put it
    // (npm gives every file the same mtime: the cache names its bundle by a copy of it)
    expect(files).toContain('dist/nsbox-runc-bundle.cache');
    expect(spawnSync(process.execPath, [`${app}/node_modules/nsbox/dist/nsbox-runc-cache.cjs`, '--check'], { encoding: 'utf8' }).stdout).toBe('accepted\n');
    // static (no PT_INTERP program header): it needs no libc of a given version on the host
    const elf = readFileSync(front);
    const phoff = Number(elf.readBigUInt64LE(0x20));
    const types = Array.from({ length: elf.readUInt16LE(0x38) }, (_, i) => elf.readUInt32LE(phoff + i * elf.readUInt16LE(0x36)));
    expect(types.length).toBeGreaterThan(0);
    expect(types).not.toContain(3);
    const bin = `${app}/node_modules/.bin/nsbox-runc`;
    const root = `${dir}/runc-root`;
    const bundle = `${dir}/bundle`;
    // NSBOX_NODE=/bin/false: a command handed to Node fails, so a success was native
    const native = (args: string[]) => spawnSync(bin, ['--root', root, ...args], { encoding: 'utf8', cwd: bundle, env: { ...process.env, NSBOX_NODE: '/bin/false' } });
    const viaNode = (args: string[], stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'pipe', 'pipe']) => spawnSync(bin, ['--root', root, ...args], { encoding: 'utf8', cwd: bundle, stdio: stdio as never });
    const pkg = JSON.parse(readFileSync(`${app}/node_modules/nsbox/package.json`, 'utf8'));
    mkdirSync(`${bundle}/rootfs/bin`, { recursive: true });
    expect(native(['--version'])).toMatchObject({ status: 0, stdout: `nsbox-runc version ${pkg.version}\nspec: 1.0.2\n` });
    for (const d of ['proc', 'dev', 'sys', 'tmp', 'etc']) mkdirSync(`${bundle}/rootfs/${d}`, { recursive: true });
    copyFileSync('/bin/busybox', `${bundle}/rootfs/bin/busybox`);
    symlinkSync('busybox', `${bundle}/rootfs/bin/sleep`);
    expect(viaNode(['spec', '--bundle', bundle]).status).toBe(0); // spec is Node's
    const c = JSON.parse(readFileSync(`${bundle}/config.json`, 'utf8'));
    c.process.terminal = false;
    c.process.args = ['sleep', '100'];
    delete c.linux.uidMappings;
    delete c.linux.gidMappings;
    writeFileSync(`${bundle}/config.json`, JSON.stringify(c));
    const out = openSync(`${dir}/create.out`, 'w');
    const cr = viaNode(['create', '--bundle', bundle, 'pk1'], ['ignore', out, out]);
    closeSync(out);
    expect(cr.status, readFileSync(`${dir}/create.out`, 'utf8')).toBe(0);
    expect(JSON.parse(native(['state', 'pk1']).stdout)).toMatchObject({ id: 'pk1', status: 'created', bundle });
    expect(native(['start', 'pk1']).status).toBe(0);
    expect(JSON.parse(native(['state', 'pk1']).stdout)).toMatchObject({ status: 'running' });
    const del = native(['delete', '--force', 'pk1']);
    expect(del.status, del.stderr).toBe(0);
    expect(readdirSync(root)).toEqual([]);
  });

  it('a missing binary says what was tried and how to build', () => {
    rmSync(`${app}/node_modules/nsbox/prebuilds`, { recursive: true });
    const broken = node(['--input-type=module', '-e', "import { spawnIsolated } from 'nsbox'; await spawnIsolated('/bin/true');"]);
    expect(broken.status).not.toBe(0);
    expect(broken.stderr).toMatch(/npm rebuild nsbox/);
    expect(broken.stderr).toMatch(/Tried:/);
  });

  it('without a front end for the machine, nsbox-runc (bin) runs on Node, and says what to do where Node is missing too', () => {
    rmSync(`${app}/node_modules/nsbox/prebuilds`, { recursive: true, force: true });
    const bin = `${app}/node_modules/.bin/nsbox-runc`;
    const pkg = JSON.parse(readFileSync(`${app}/node_modules/nsbox/package.json`, 'utf8'));
    expect(spawnSync(bin, ['--version'], { encoding: 'utf8' })).toMatchObject({ status: 0, stdout: `nsbox-runc version ${pkg.version}\nspec: 1.0.2\n` });
    const none = spawnSync(bin, ['--version'], { encoding: 'utf8', env: { ...process.env, NSBOX_NODE: '/no/such/node' } });
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/^nsbox-runc: this package has no native front end for linux-x64 and Node \('\/no\/such\/node'\) is not found: install Node 20\+ \(or set NSBOX_NODE to its path\), or build the front end \(npm rebuild nsbox\)\n$/);
  });
});
