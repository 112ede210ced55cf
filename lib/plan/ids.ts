// Ids of the sandbox: the user namespace's maps (a root caller's sandbox root on a subordinate
// range, as dockerd --userns-remap) and the ids the child takes on its way.
import { mapped, parseIdMaps, type IdMap } from '../util/idmap.js';
import { isObject, str } from '../util/validate.js';
import type { SpawnIsolatedOptions } from './options.js';
import { realHost } from './host.js';
import type { HostFacts } from './types.js';

/** Sandbox root's host uid/gid when root has no /etc/subuid range for `remapUser`: the last 64Ki block of systemd's container id range. */
export const FALLBACK_RANGE_START = 0x6fff0000;
/** Ids a sandbox maps at most (from a longer subordinate range, the first ones). */
export const RANGE_SIZE = 65536;

/**
 * The id maps of the user namespace a spawn with these options makes, or null when it makes
 * none of its own, joins one, or the caller is not root (its namespace maps only the caller).
 * Image layers are idmapped with them, so the files an image's root owns are the sandbox
 * root's. Throws like buildPlan for bad maps.
 */
export function sandboxIdMaps(o: Pick<SpawnIsolatedOptions, 'user' | 'namespaces' | 'join' | 'remapUser' | 'network'>, host: HostFacts = realHost): { uidMap: IdMap[]; gidMap: IdMap[] } | null {
  if (o.user === false || o.namespaces?.user === false || (o.join as Record<string, unknown> | undefined)?.user !== undefined || host.euid !== 0) return null;
  if (isObject(o.user)) return { uidMap: parseIdMaps('options.user.uidMap', o.user.uidMap), gidMap: parseIdMaps('options.user.gidMap', o.user.gidMap) };
  return remappedRoot(o.remapUser, host);
}

/** A root caller's default maps: root inside onto `remapUser`'s subordinate range (or the fallback), as dockerd --userns-remap. */
export function remappedRoot(remapUser: unknown, host: HostFacts): { uidMap: IdMap[]; gidMap: IdMap[] } {
  const remap = remapUser === undefined ? 'nsbox' : str('options.remapUser', remapUser, { nonEmpty: true });
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
