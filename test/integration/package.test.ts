// The published package carries a prebuilt addon that loads with no install script (npm 11
// does not run a dependency's scripts unless approved), and a load failure says how to build.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isRoot, skipReason } from '../helpers/host.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

describe.skipIf(skipReason(!isRoot, 'the package test runs a sandbox, which needs root'))('the npm package', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync('/tmp/nsbox-test-pack-'); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('installs with --ignore-scripts from its tarball and runs a sandbox from ESM and CJS', () => {
    // prepack makes the prebuild and dist/
    execFileSync('npm', ['pack', '--pack-destination', dir, '--silent'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
    const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
    const app = `${dir}/app`;
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(`${app}/package.json`, JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    execFileSync('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--silent', `${dir}/${tgz}`], { cwd: app, stdio: ['ignore', 'ignore', 'inherit'] });
    expect(existsSync(`${app}/node_modules/nsbox/build`)).toBe(false); // nothing was compiled
    expect(readdirSync(`${app}/node_modules/nsbox/prebuilds/linux-x64`).some((f) => f.endsWith('.node'))).toBe(true);
    const esm = spawnSync(process.execPath, ['--input-type=module', '-e',
      "import { spawnIsolated } from 'nsbox'; const r = await spawnIsolated('/bin/sh', ['-c', 'hostname']); console.log(r.stdout.trim());"], { cwd: app, encoding: 'utf8' });
    expect(esm.stderr).toBe('');
    expect(esm.stdout.trim()).toBe('nsbox');
    const cjs = spawnSync(process.execPath, ['-e',
      "const { spawnIsolated } = require('nsbox'); spawnIsolated('/bin/echo', ['cjs']).then((r) => console.log(r.stdout.trim()));"], { cwd: app, encoding: 'utf8' });
    expect(cjs.stdout.trim()).toBe('cjs');
    // a missing binary says what was tried and how to build
    rmSync(`${app}/node_modules/nsbox/prebuilds`, { recursive: true });
    const broken = spawnSync(process.execPath, ['--input-type=module', '-e', "import { spawnIsolated } from 'nsbox'; await spawnIsolated('/bin/true');"], { cwd: app, encoding: 'utf8' });
    expect(broken.status).not.toBe(0);
    expect(broken.stderr).toMatch(/npm rebuild nsbox/);
    expect(broken.stderr).toMatch(/Tried:/);
  }, 300_000);
});
