// Where a caller's layer store is by default (issue 15): root's /var/lib/nsbox/overlay2; a
// non-root caller's in its own data directory, as rootless podman's ~/.local/share/containers:
// $XDG_DATA_HOME/nsbox/store (an absolute XDG_DATA_HOME only, the XDG rule), else
// ~/.local/share/nsbox/store. The non-root caller is uid 65534 in a fresh Node process, with a
// HOME this test makes (and owns to it) and gives it; nothing of the host's homes is used.
import { chmodSync, chownSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LayerStore } from '../../lib/index.js';
import { isRoot, skipReason } from '../helpers/host.js';
import { ranError, runFresh } from '../helpers/proc.js';
import { dockerSaveTar, removeScratch, scratch } from './fs-helpers.js';

const DIST = resolve(__dirname, '../../dist/index.js');
const CLI = resolve(__dirname, '../../dist/cli.js');
const U = 65534;
const skip = skipReason(!isRoot, 'starts its non-root caller (uid 65534) from root with setpriv')
  || skipReason(!existsSync(DIST) || !existsSync(CLI), 'dist/ is missing (npm run build:ts)');

/** Runs `node args` as uid U with exactly `env`; resolves to its stdout (exit 0 asserted). */
async function asUser(args: string[], env: Record<string, string>): Promise<string> {
  const r = await runFresh('setpriv', [`--reuid=${U}`, `--regid=${U}`, '--clear-groups', process.execPath, ...args], {
    cwd: '/', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
  });
  if (r.status !== 0) throw ranError(r, `node ${args[0]} as uid ${U}`);
  return r.stdout;
}
const api = (env: Record<string, string>, body: string) =>
  asUser(['--input-type=module', '-e', `import * as nsbox from ${JSON.stringify(DIST)};\n${body}`], env).then((o) => JSON.parse(o.trim().split('\n').pop()!));

describe.skipIf(skip)('the default layer store', () => {
  let home = '', image = '';
  beforeAll(async () => {
    const d = scratch('store-default');
    home = join(d, 'home');
    mkdirSync(home);
    chownSync(home, U, U);
    chmodSync(home, 0o700);
    image = join(d, 'image.tar');
    await dockerSaveTar(image);
    chmodSync(image, 0o644);
  });
  afterAll(() => removeScratch());

  it("is root's /var/lib/nsbox/overlay2 for root", () => {
    expect(LayerStore.defaultRoot()).toBe('/var/lib/nsbox/overlay2');
  });

  it("is the user's ~/.local/share/nsbox/store for a non-root caller: LayerStore.open() makes it there, the user's, and imports into it", async () => {
    const out = await api({ HOME: home }, `
      const fs = await import('node:fs');
      const s = nsbox.LayerStore.open();
      const img = await s.importImage(${JSON.stringify(image)});
      const st = (p) => { const x = fs.statSync(p); return { uid: x.uid, mode: x.mode & 0o777 }; };
      console.log(JSON.stringify({ root: s.root, def: nsbox.LayerStore.defaultRoot(), names: img.names, images: s.images().length,
        store: st(s.root), nsbox: st(s.root + '/..'), share: st(s.root + '/../..') }));`);
    const want = join(home, '.local/share/nsbox/store');
    expect(out).toMatchObject({ root: want, def: want, names: ['bb:docker'], images: 1 });
    expect(out.store).toEqual({ uid: U, mode: 0o711 });
    for (const d of [out.nsbox, out.share]) expect(d).toEqual({ uid: U, mode: 0o700 }); // the user's own, nobody else's to list
  });

  it('is $XDG_DATA_HOME/nsbox/store when XDG_DATA_HOME is an absolute path, and ignores a relative one', async () => {
    const xdg = join(home, 'data');
    const out = await api({ HOME: home, XDG_DATA_HOME: xdg }, `
      const abs = nsbox.LayerStore.defaultRoot();
      process.env.XDG_DATA_HOME = 'relative/data';
      console.log(JSON.stringify({ abs, rel: nsbox.LayerStore.defaultRoot() }));`);
    expect(out).toEqual({ abs: join(xdg, 'nsbox/store'), rel: join(home, '.local/share/nsbox/store') });
  });

  it("is the CLI's store for a non-root user: nsbox image import and ls without --store use it", async () => {
    const h2 = join(home, '..', 'home2');
    mkdirSync(h2);
    chownSync(h2, U, U);
    const env = { HOME: h2 };
    expect(await asUser([CLI, 'image', 'import', '--name', 'cli:1', image], env)).toMatch(/cli:1/);
    const ls = JSON.parse(await asUser([CLI, 'image', 'ls', '--json'], env)) as { names: string[] }[];
    expect(ls.map((i) => i.names).flat()).toContain('cli:1');
    expect(statSync(join(h2, '.local/share/nsbox/store/nsbox-store.json')).uid).toBe(U);
  });
});
