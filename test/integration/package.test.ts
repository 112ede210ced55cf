// The published package carries a prebuilt addon that loads with no install script (npm 11
// does not run a dependency's scripts unless approved), and a load failure says how to build.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
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

  it('a missing binary says what was tried and how to build', () => {
    rmSync(`${app}/node_modules/nsbox/prebuilds`, { recursive: true });
    const broken = node(['--input-type=module', '-e', "import { spawnIsolated } from 'nsbox'; await spawnIsolated('/bin/true');"]);
    expect(broken.status).not.toBe(0);
    expect(broken.stderr).toMatch(/npm rebuild nsbox/);
    expect(broken.stderr).toMatch(/Tried:/);
  });
});
