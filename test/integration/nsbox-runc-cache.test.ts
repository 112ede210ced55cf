// nsbox-runc's Node entry (dist/nsbox-runc.cjs, lib/oci/load.ts) compiles the runtime's bundle
// with the V8 code cache made at build time (dist/nsbox-runc-cache.cjs, lib/oci/make-cache.ts)
// only when the cache is of that very bundle and as trusted as it. V8 alone compares only the
// source's length: a cache of another bundle of the same length would run that other code. The
// test uses tiny bundles in a directory of its own, with copies of the built entry and maker.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { skipReason } from '../helpers/host.js';

const dist = new URL('../../dist/', import.meta.url).pathname;
const built = existsSync(`${dist}nsbox-runc.cjs`) && existsSync(`${dist}nsbox-runc-cache.cjs`);

describe.skipIf(skipReason(!built, 'nsbox-runc code cache: dist/ is not built (npm run build:ts)'))('nsbox-runc code cache', () => {
  let dir: string;
  const bundleA = 'process.stdout.write("bundle A\\n");';
  const bundleB = 'process.stdout.write("bundle B\\n");'; // the same length
  const node = (file: string, args: string[] = []) => spawnSync(process.execPath, [`${dir}/${file}`, ...args], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  const head = (bundle: string) => `nsbox-runc code cache 2 ${process.version} ${process.arch} ${bundle.length}\n${bundle}`;

  beforeAll(() => {
    dir = mkdtempSync('/tmp/nsbox-test-runc-cache-');
    copyFileSync(`${dist}nsbox-runc.cjs`, `${dir}/nsbox-runc.cjs`);
    copyFileSync(`${dist}nsbox-runc-cache.cjs`, `${dir}/nsbox-runc-cache.cjs`);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('the build made a cache that this Node takes for the built bundle', () => {
    expect(existsSync(`${dist}nsbox-runc-bundle.cache`)).toBe(true);
    expect(spawnSync(process.execPath, [`${dist}nsbox-runc-cache.cjs`, '--check'], { encoding: 'utf8' }).stdout).toBe('accepted\n');
  });

  it('a cache is used only for the bundle it was made from, and only when as trusted as the bundle', () => {
    writeFileSync(`${dir}/nsbox-runc-bundle.cjs`, bundleA, { mode: 0o644 });
    expect(node('nsbox-runc-cache.cjs')).toMatchObject({ status: 0, stderr: '' });
    expect(node('nsbox-runc-cache.cjs', ['--check']).stdout).toBe('accepted\n');
    expect(node('nsbox-runc.cjs').stdout).toBe('bundle A\n');
    const cacheOfA = readFileSync(`${dir}/nsbox-runc-bundle.cache`);
    const v8Data = cacheOfA.subarray(head(bundleA).length);

    // the bundle changed (same length), the cache did not: B runs, not A's cached code
    writeFileSync(`${dir}/nsbox-runc-bundle.cjs`, bundleB);
    expect(node('nsbox-runc.cjs')).toMatchObject({ status: 0, stdout: 'bundle B\n' });

    // A's code with B's head and copy (what V8 would take: it checks the length alone) is used only
    // when it is as trusted as the bundle: writable by others, it is not read at all
    const forged = `${dir}/nsbox-runc-bundle.cache`;
    writeFileSync(forged, Buffer.concat([Buffer.from(head(bundleB), 'latin1'), v8Data]));
    chmodSync(forged, 0o666);
    expect(node('nsbox-runc.cjs')).toMatchObject({ status: 0, stdout: 'bundle B\n' });
    // (and at 0644, owned as the bundle, it is believed: whoever can write it can write the bundle)
    chmodSync(forged, 0o644);
    expect(node('nsbox-runc.cjs').stdout).toBe('bundle A\n');

    // no cache, or one of another Node: compiled as without
    writeFileSync(forged, Buffer.concat([Buffer.from(head(bundleB).replace(process.version, 'v0.0.0'), 'latin1'), v8Data]));
    expect(node('nsbox-runc.cjs').stdout).toBe('bundle B\n');
    rmSync(forged);
    expect(node('nsbox-runc.cjs')).toMatchObject({ status: 0, stdout: 'bundle B\n' });
  });
});
