// An unprivileged caller's layer store in its subordinate ids (as rootless podman's store):
// a layer's files keep their owners, shifted through the caller's maps (0 -> the caller,
// 1.. -> its range in /etc/subuid and /etc/subgid; the maps its sandboxes get, so that inside
// one a file owned 1000:1000 in the image is 1000:1000). The caller can neither give its files
// to those ids nor remove what they own, so both happen in a user namespace of those maps,
// written by the setuid newuidmap/newgidmap (addon/src/fs.cc fsSubidOps). Without a range or
// the helpers, the store squashes (every file the caller's) as before.
import { closeSync, existsSync, lstatSync, readSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { finished } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import { userInfo } from 'node:os';
import { errnoError } from '../errors.js';
import { callerMaps, findIdMapHelpers, formatMaps, subordinateRange, type IdMap } from '../util/idmap.js';
import { native, packageRoot } from '../native.js';
import { fsNative } from './native.js';

/** The maps and helpers an unprivileged caller's store works through. */
export interface StoreUserNs {
  uidMap: IdMap[];
  gidMap: IdMap[];
  helpers: { uid: string; gid: string };
}

/** The caller's store namespace: null for root (no need) and for a caller without a range or newuidmap/newgidmap. */
export function storeUserNs(): StoreUserNs | null {
  const euid = process.geteuid?.() ?? 0;
  if (euid === 0) return null;
  let name: string | undefined;
  try { name = userInfo().username; } catch { name = undefined; }
  const sub = (f: 'subuid' | 'subgid') => (name ? subordinateRange(f, name) : null) ?? subordinateRange(f, String(euid));
  const su = sub('subuid'), sg = sub('subgid');
  if (!su || !sg) return null;
  const helpers = findIdMapHelpers();
  if (!helpers) return null;
  return { ...callerMaps(euid, process.getegid?.() ?? euid, su, sg), helpers };
}

/** One file's owner in the image (ids inside), and its mode when chown would clear set-id bits. */
export interface OwnerEntry { path: string; uid: number; gid: number; mode?: number }

function encode(entries: OwnerEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const p = Buffer.from(e.path);
    const h = Buffer.alloc(16);
    h.writeUInt32LE(e.uid, 0);
    h.writeUInt32LE(e.gid, 4);
    h.writeUInt32LE(e.mode ?? 0xffffffff, 8);
    h.writeUInt32LE(p.length, 12);
    parts.push(h, p, Buffer.from([0]));
  }
  return Buffer.concat(parts);
}

const inRange = (maps: IdMap[], id: number) => maps.some((m) => id >= m.inside && id < m.inside + m.count);

/**
 * Gives the files of the layer under `root` (extracted as the caller) their image owners, in
 * the namespace of `ns`. An owner outside the maps: NsboxError EINVAL at step 'import'
 * naming it and the fix (nothing is changed then).
 */
export function chownLayer(ns: StoreUserNs, root: string, entries: OwnerEntry[]): void {
  if (!entries.length) return;
  for (const e of entries) {
    const uidOut = !inRange(ns.uidMap, e.uid), gidOut = !inRange(ns.gidMap, e.gid);
    if (uidOut || gidOut) {
      const what = uidOut ? `uid ${e.uid}` : `gid ${e.gid}`;
      const max = (uidOut ? ns.uidMap : ns.gidMap).reduce((n, m) => n + m.count, 0) - 1;
      throw errnoError(22, 'import', 'chown', `/${e.path}`, `the layer's file is owned by ${what}, outside the ids this user's store maps (0 to ${max}: this user and its subordinate range); fix: a longer range in /etc/subuid and /etc/subgid (as root: usermod --add-subuids/--add-subgids), as rootless podman needs`);
    }
  }
  const r = fsNative().fsSubidOps(ns.helpers.uid, formatMaps(ns.uidMap), ns.helpers.gid, formatMaps(ns.gidMap), [{ kind: 'chown', root, entries: encode(entries) }]);
  if (r) throw errnoError(r.errno, 'import', r.syscall, `/${entries[r.entry]?.path ?? ''}`, 'giving the layer\'s file its owner in this user\'s subordinate ids');
}

/**
 * Removes `path` and everything below it (as rmSync({ recursive, force })). A caller with a
 * store namespace removes in it: files of its subordinate ids are not the caller's to remove.
 */
export function removeTree(path: string, ns: StoreUserNs | null = storeUserNs()): void {
  if (!ns) { rmSync(path, { recursive: true, force: true }); return; }
  try { lstatSync(path); } catch { return; } // nothing there (and no helper to start)
  const r = fsNative().fsSubidOps(ns.helpers.uid, formatMaps(ns.uidMap), ns.helpers.gid, formatMaps(ns.gidMap), [{ kind: 'remove', dir: dirname(path), name: basename(path) }]);
  if (r) throw errnoError(r.errno, 'store', r.syscall, path, 'removing in this user\'s subordinate ids');
}

/** nsbox's built module (dist/index.js) that a process in the store namespace runs, or null (a source checkout without a build). */
function builtModule(): string | null {
  try {
    const f = join(packageRoot(), 'dist', 'index.js');
    return existsSync(f) ? pathToFileURL(f).href : null;
  } catch {
    return null;
  }
}

/**
 * Runs `body` (an ES module body with nsbox's built module imported as `nsbox`) in a fresh
 * Node process that is root of the store namespace of `ns`: it reads every file of the
 * caller's range, and sees their owners as the ids inside. Its stdout goes to `out` (ended
 * when it is), or is returned. A failure rejects with an NsboxError at `step` carrying its
 * stderr's last line. Null when nsbox has no built module to run (the caller then reads the
 * files itself).
 */
export function runInStoreNs(ns: StoreUserNs, body: string, step: string, out?: Writable): Promise<Buffer> | null {
  const mod = builtModule();
  if (!mod) return null;
  const env = [`PATH=${process.env.PATH ?? '/usr/bin:/bin'}`];
  if (process.env.NSBOX_ADDON) env.push(`NSBOX_ADDON=${process.env.NSBOX_ADDON}`);
  const script = `import * as nsbox from ${JSON.stringify(mod)};\n${body}`;
  const r = fsNative().fsSubidExec(ns.helpers.uid, formatMaps(ns.uidMap), ns.helpers.gid, formatMaps(ns.gidMap), process.execPath,
    [process.execPath, '--input-type=module', '-e', script], env);
  const exited = new Promise<{ exitCode?: number; signal?: number }>((res) => native().watchExit(r.pidfd, (info) => res(info)));
  // pipes on the event loop (not fs reads blocking the thread pool)
  const stdout = new Socket({ fd: r.out, readable: true, writable: false });
  const stderr = new Socket({ fd: r.err, readable: true, writable: false });
  const errText: Buffer[] = [];
  stderr.on('data', (b) => { if (errText.length < 64) errText.push(b as Buffer); });
  const chunks: Buffer[] = [];
  // `out` is ended only when the process succeeded (a reader of a cut stream must not take it for whole)
  if (out) stdout.pipe(out, { end: false });
  else stdout.on('data', (b) => chunks.push(b as Buffer));
  const piped = finished(stdout);
  return (async () => {
    const [info] = await Promise.all([exited, piped.catch(() => {}), finished(stderr).catch(() => {})]);
    if (info.exitCode !== 0) {
      const why = Buffer.concat(errText).toString().trim().split('\n').filter((l) => /Error|errno|failed/.test(l)).pop() ?? `exit ${info.exitCode ?? `signal ${info.signal}`}`;
      const m = /code: '(E[A-Z]+)'|: (E[A-Z]+)[: ]/.exec(why);
      const codes: Record<string, number> = { EACCES: 13, EPERM: 1, ENOENT: 2, EIO: 5, ENOSPC: 28, EINVAL: 22 };
      const e = errnoError(codes[m?.[1] ?? m?.[2] ?? ''] ?? 5, step, 'store-userns', undefined, `in this user's store namespace: ${why}`);
      out?.destroy(e);
      throw e;
    }
    if (out) { out.end(); await finished(out, { readable: false }).catch(() => {}); }
    return Buffer.concat(chunks);
  })();
}

/**
 * The synchronous form of {@link runInStoreNs} for synchronous APIs: `expr` (an expression of
 * the module body, `nsbox` imported) is evaluated there and its value comes back through JSON;
 * a failure there is thrown here as an NsboxError at `step` with its code. Null when nsbox has
 * no built module to run. Blocks until the process has written its answer.
 */
export function runInStoreNsSync<T>(ns: StoreUserNs, expr: string, step: string): T | null {
  const mod = builtModule();
  if (!mod) return null;
  const env = [`PATH=${process.env.PATH ?? '/usr/bin:/bin'}`];
  if (process.env.NSBOX_ADDON) env.push(`NSBOX_ADDON=${process.env.NSBOX_ADDON}`);
  // the answer on stdout, errors included: stderr carries at most Node's own last words
  const script = `import * as nsbox from ${JSON.stringify(mod)};
let a; try { a = { value: await (${expr}) }; } catch (e) { a = { error: { errno: Math.abs(e.errno ?? 5), code: e.code, message: e.message } }; }
process.stdout.write(JSON.stringify(a));`;
  const r = fsNative().fsSubidExec(ns.helpers.uid, formatMaps(ns.uidMap), ns.helpers.gid, formatMaps(ns.gidMap), process.execPath,
    [process.execPath, '--input-type=module', '-e', script], env);
  native().watchExit(r.pidfd, () => {}); // reaped on the event loop
  const readAll = (fd: number) => {
    const parts: Buffer[] = [];
    const b = Buffer.allocUnsafe(1 << 16);
    for (;;) {
      let n: number;
      try { n = readSync(fd, b, 0, b.length, null); } catch (e) { if ((e as NodeJS.ErrnoException).code === 'EAGAIN' || (e as NodeJS.ErrnoException).code === 'EINTR') continue; throw e; }
      if (n === 0) break;
      parts.push(Buffer.from(b.subarray(0, n)));
    }
    closeSync(fd);
    return Buffer.concat(parts).toString();
  };
  const out = readAll(r.out), err = readAll(r.err);
  let a: { value?: T; error?: { errno: number; code?: string; message: string } };
  try { a = JSON.parse(out); } catch {
    throw errnoError(5, step, 'store-userns', undefined, `in this user's store namespace: ${err.trim().split('\n').filter((l) => /Error|failed/.test(l)).pop() ?? 'no answer'}`);
  }
  if (a.error) throw errnoError(a.error.errno, step, 'store-userns', undefined, `in this user's store namespace: ${a.error.message}`);
  return a.value as T;
}
