// Why this process may not make a user namespace, in words a user can act on (for the error of
// a spawn whose clone was refused, and for doctor).
import { readFileSync } from 'node:fs';

function read(path: string): string | undefined {
  try { return readFileSync(path, 'utf8').trim(); } catch { return undefined; }
}

/** Whether this process has `cap` (a capability number) in its effective set. */
function hasCap(cap: number): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)/m.exec(read('/proc/self/status') ?? '');
  return !!m && (BigInt(`0x${m[1]}`) & (1n << BigInt(cap))) !== 0n;
}

/**
 * The known causes of `clone(CLONE_NEWUSER)`/`unshare` failing with EPERM for this process and
 * their fixes, or undefined when none applies (then it is something else: a seccomp filter of
 * an outer runtime is the usual one, and is named when this process runs under one).
 */
export function usernsBlockers(): { causes: string[]; fixes: string[] } {
  const causes: string[] = [];
  const fixes: string[] = [];
  const sysAdmin = hasCap(21);
  if (read('/proc/sys/user/max_user_namespaces') === '0') {
    causes.push('user.max_user_namespaces is 0');
    fixes.push('sysctl -w user.max_user_namespaces=15000 (on the host)');
  }
  if (read('/proc/sys/kernel/unprivileged_userns_clone') === '0' && !sysAdmin) {
    causes.push(`kernel.unprivileged_userns_clone is 0 and this process has no CAP_SYS_ADMIN${(process.geteuid?.() ?? 1) === 0 ? ' (root without it: a container)' : ''}`);
    fixes.push('sysctl -w kernel.unprivileged_userns_clone=1 (on the host), or give the process CAP_SYS_ADMIN');
  }
  const seccomp = /^Seccomp:\s*(\d)/m.exec(read('/proc/self/status') ?? '')?.[1];
  if (seccomp === '2' && !sysAdmin) {
    causes.push('this process runs under a seccomp filter and without CAP_SYS_ADMIN (Docker\'s default profile refuses unshare/clone of namespaces then)');
    fixes.push('run the container with a seccomp profile that allows clone/unshare with CLONE_NEWUSER (Docker: --security-opt seccomp=<profile>, Kubernetes: securityContext.seccompProfile), as rootless Podman and Docker-in-Docker do');
  }
  return { causes, fixes };
}
