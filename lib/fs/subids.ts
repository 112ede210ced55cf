// An unprivileged caller's layer store in its subordinate ids (as rootless podman's store):
// a layer's files keep their owners, shifted through the caller's maps (0 -> the caller,
// 1.. -> its range in /etc/subuid and /etc/subgid; the maps its sandboxes get, so that inside
// one a file owned 1000:1000 in the image is 1000:1000). The caller can neither give its files
// to those ids nor remove what they own, so both happen in a user namespace of those maps,
// written by the setuid newuidmap/newgidmap (addon/src/fs.cc fsSubidOps). Without a range or
// the helpers, the store squashes (every file the caller's) as before.
import { lstatSync, rmSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { userInfo } from 'node:os';
import { errnoError } from '../errors.js';
import { callerMaps, findIdMapHelpers, formatMaps, subordinateRange, type IdMap } from '../util/idmap.js';
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
