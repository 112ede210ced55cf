// The layers spawnIsolated composes, in the order their hooks run (release: the reverse).
// resolve: network (user-mode: joins a holder's namespaces), ids (the sandbox's id block),
// then image (a rootfs, idmapped with that block); acquire:
// cgroup, then network; contribute: network, seccomp. Fixed here, at no import's mercy: the
// secure defaults (the seccomp profile among them) hold whichever entry point was loaded first.
import type { SpawnLayer } from '../layer.js';
import { cgroupLayer } from './cgroup.js';
import { idsLayer } from './ids.js';
import { imageLayer } from './image.js';
import { networkLayer } from './network.js';
import { seccompLayer } from './seccomp.js';

export { cgroupLayer, type CgroupRun } from './cgroup.js';
export const LAYERS: readonly SpawnLayer[] = Object.freeze([cgroupLayer, networkLayer, idsLayer, imageLayer, seccompLayer]);
