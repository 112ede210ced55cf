// Ids of the sandbox: the user namespace's maps (a root caller's sandbox root on a subordinate
// range, as dockerd --userns-remap) and the ids the child takes on its way.
import { callerMaps, mapped, parseIdMaps, type IdMap } from '../util/idmap.js';
import { isObject, str } from '../util/validate.js';
import type { SpawnIsolatedOptions } from './options.js';
import { realHost } from './host.js';
import type { HostFacts, IdBlock } from './types.js';

/** Block 0 of nsbox's own region of systemd's container id range (0x00080000-0x6FFFFFFF): its last 64Ki ids. Block n starts n blocks lower. */
export const FALLBACK_RANGE_START = 0x6fff0000;
/** Ids a sandbox maps at most (from a longer subordinate range, the first ones); the size of an id block. */
export const RANGE_SIZE = 65536;
/** Blocks of nsbox's region: 0x6C000000-0x6FFFFFFF (64Mi ids at the top of the container range; nspawn's --private-users=pick may pick there too, see docs). */
export const REGION_BLOCKS = 1024;


/**
 * Where a root caller's per-sandbox id blocks come from: the `nsbox` user's subordinate ranges
 * when both hold more than one block (block n at start + n*64Ki), else nsbox's region of the
 * container range (block n at 0x6FFF0000 - n*64Ki).
 */
export interface IdBlockSource {
  kind: 'subuid' | 'region';
  /** how many blocks */
  count: number;
  /** block n */
  at(n: number): IdBlock;
}

export function idBlockSource(host: HostFacts = realHost): IdBlockSource {
  const su = host.subordinate('subuid', 'nsbox'), sg = host.subordinate('subgid', 'nsbox');
  const n = su && sg ? Math.min(Math.floor(su.count / RANGE_SIZE), Math.floor(sg.count / RANGE_SIZE)) : 0;
  if (n > 1) return { kind: 'subuid', count: n, at: (i) => ({ uid: su!.start + i * RANGE_SIZE, gid: sg!.start + i * RANGE_SIZE }) };
  return { kind: 'region', count: REGION_BLOCKS, at: (i) => ({ uid: FALLBACK_RANGE_START - i * RANGE_SIZE, gid: FALLBACK_RANGE_START - i * RANGE_SIZE }) };
}

type IdOptions = Pick<SpawnIsolatedOptions, 'user' | 'namespaces' | 'join' | 'remapUser'>;

/**
 * Whether a spawn with these options gets an id block of its own: a root caller's new user
 * namespace with nsbox's default maps (no `user` maps, no `remapUser`: those are the caller's
 * choice and map as given).
 */
export function wantsIdBlock(o: IdOptions, host: HostFacts = realHost): boolean {
  return host.euid === 0 && o.user === undefined && o.remapUser === undefined && o.namespaces?.user !== false &&
    (o.join as Record<string, unknown> | undefined)?.user === undefined;
}

/**
 * The id maps of the user namespace a spawn with these options makes, or null when it makes
 * none of its own, joins one, or the caller is not root (its namespace maps only the caller).
 * Image layers are idmapped with them, so the files an image's root owns are the sandbox
 * root's. `block`: the sandbox's id block (see wantsIdBlock); without it, block 0 stands in.
 * Throws like buildPlan for bad maps.
 */
export function sandboxIdMaps(o: IdOptions & Pick<SpawnIsolatedOptions, 'network'>, host: HostFacts = realHost, block?: IdBlock): { uidMap: IdMap[]; gidMap: IdMap[] } | null {
  if (o.user === false || o.namespaces?.user === false || (o.join as Record<string, unknown> | undefined)?.user !== undefined || host.euid !== 0) return null;
  if (isObject(o.user)) return { uidMap: parseIdMaps('options.user.uidMap', o.user.uidMap), gidMap: parseIdMaps('options.user.gidMap', o.user.gidMap) };
  return remappedRoot(o.remapUser, host, block);
}

/**
 * A root caller's default maps: root inside onto the sandbox's id block (block 0 when none is
 * given: a plan for checking or explaining), or onto `remapUser`'s subordinate range (or the
 * fallback) when the caller names one, as dockerd --userns-remap.
 */
export function remappedRoot(remapUser: unknown, host: HostFacts, block?: IdBlock): { uidMap: IdMap[]; gidMap: IdMap[] } {
  if (remapUser === undefined) {
    const b = block ?? idBlockSource(host).at(0);
    return { uidMap: [{ inside: 0, outside: b.uid, count: RANGE_SIZE }], gidMap: [{ inside: 0, outside: b.gid, count: RANGE_SIZE }] };
  }
  const remap = str('options.remapUser', remapUser, { nonEmpty: true });
  const su = host.subordinate('subuid', remap) ?? { start: FALLBACK_RANGE_START, count: RANGE_SIZE };
  const sg = host.subordinate('subgid', remap) ?? { start: FALLBACK_RANGE_START, count: RANGE_SIZE };
  return {
    uidMap: [{ inside: 0, outside: su.start, count: Math.min(su.count, RANGE_SIZE) }],
    gidMap: [{ inside: 0, outside: sg.start, count: Math.min(sg.count, RANGE_SIZE) }],
  };
}

/** In a new or joined user namespace the child first becomes its root (or the target ids when 0 is not mapped). */
export function earlyIds(userNs: boolean, uidMaps: IdMap[] | null, gidMaps: IdMap[] | null, uid: number, gid: number) {
  if (!userNs) return { earlyIds: false, earlyUid: 0, earlyGid: 0 };
  const u = !uidMaps || mapped(uidMaps, 0) ? 0 : uid;
  const g = !gidMaps || mapped(gidMaps, 0) ? 0 : gid;
  return { earlyIds: true, earlyUid: u, earlyGid: g };
}

/** The fix an unprivileged caller is told when it needs a subordinate range. */
export function subidFix(missing: 'range' | 'uidmap', host: HostFacts = realHost): string {
  if (missing === 'uidmap') return 'apt install uidmap (dnf install shadow-utils): newuidmap/newgidmap';
  return `as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${host.userName?.() ?? String(host.euid)}`;
}

/**
 * An unprivileged caller's id range, as rootless podman maps it: 0 -> the caller, 1..N -> its
 * subordinate ranges in /etc/subuid and /etc/subgid (by name or uid; at most RANGE_SIZE ids in
 * all), written by the setuid newuidmap/newgidmap. `missing` says what is not there when the
 * range cannot be had (no range for the caller, or no newuidmap/newgidmap).
 */
export function callerRange(host: HostFacts = realHost):
  { uidMap: IdMap[]; gidMap: IdMap[]; helpers: { uid: string; gid: string } } | { missing: 'range' | 'uidmap' } {
  const name = host.userName?.();
  const sub = (f: 'subuid' | 'subgid') => (name ? host.subordinate(f, name) : null) ?? host.subordinate(f, String(host.euid));
  const su = sub('subuid'), sg = sub('subgid');
  if (!su || !sg) return { missing: 'range' };
  const helpers = host.idMapHelpers?.();
  if (!helpers) return { missing: 'uidmap' };
  return { ...callerMaps(host.euid, host.egid, su, sg), helpers };
}

/** Whether an unprivileged caller's options need more ids than its own (uid, gid, groups other than 0, an image). */
export function wantsCallerRange(o: Pick<SpawnIsolatedOptions, 'uid' | 'gid' | 'groups' | 'image'>, imageRoot = false): boolean {
  const other = (v: unknown) => v !== undefined && v !== 0;
  return other(o.uid) || other(o.gid) || (Array.isArray(o.groups) && o.groups.some((g) => g !== 0)) || o.image !== undefined || imageRoot;
}
