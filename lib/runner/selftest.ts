// The escape battery run inside real sandboxes with the default options, on the user's own
// host (`nsbox doctor --self-test`, `sandboxSelfTest()`): the same attacks test/security/
// runs in CI, written with the host's shell tools so no compiler is needed. Each probe prints
// one line the check reads; anything else counts as "got through".
import { spawnChild as cpSpawn } from '../util/builtins.js';
import { closeSync, openSync, constants as fsConstants } from 'node:fs';
import { spawnIsolated } from '../spawn/spawn.js';
import type { SpawnIsolatedOptions } from '../plan/options.js';
import { NsboxError } from '../errors.js';

/** One attack run in a sandbox: `denied` is true when the sandbox held. */
export interface SandboxAttack {
  id: string;
  title: string;
  denied: boolean;
  /** what was observed (the probe's output or the error). */
  got: string;
}

type Probe = { id: string; title: string; script: string; expect: RegExp; options?: SpawnIsolatedOptions };

const PROBES: Probe[] = [
  { id: 'proc-exe', title: 'overwrite /proc/1/exe and /proc/self/exe (CVE-2019-5736)', expect: /^held$/,
    script: 'for f in /proc/1/exe /proc/self/exe; do if (: >> "$f") 2>/dev/null; then echo "writable $f"; exit; fi; done; echo held' },
  { id: 'host-fds', title: 'reach a host fd through /proc/self/fd or /proc/1/fd', expect: /^held$/,
    script: 'for d in /proc/self/fd /proc/1/fd; do for f in $d/*; do n=${f##*/}; case $n in 0|1|2) continue;; esac; l=$(readlink "$f" 2>/dev/null) || continue; case $l in *nsbox-selftest*) ;; /proc/*) ;; *) echo "reached $f -> $l"; exit;; esac; done; done; echo held' },
  { id: 'kernel-files', title: 'write sysrq-trigger, core_pattern, /sys', expect: /^held$/,
    // opened for appending, never written: harmless even where it succeeds
    script: 'for f in /proc/sysrq-trigger /proc/sys/kernel/core_pattern /proc/sys/kernel/modprobe /sys/kernel/uevent_helper; do [ -e "$f" ] || continue; if (: >> "$f") 2>/dev/null; then echo "writable $f"; exit; fi; done; echo held' },
  { id: 'masked', title: 'read masked kernel state (/proc/keys, /proc/timer_list, /proc/kcore)', expect: /^held$/,
    script: 'for f in /proc/keys /proc/timer_list /proc/kcore /proc/sched_debug; do [ -e "$f" ] || continue; n=$(head -c 64 "$f" 2>/dev/null | wc -c); [ "$n" -gt 0 ] && { echo "read $f"; exit; }; done; echo held' },
  { id: 'privileges', title: 'capabilities, no_new_privs and seccomp of the program', expect: /^CapEff:\s*0+ NoNewPrivs:\s*1 Seccomp:\s*2$/,
    script: 'grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status | tr "\\n" " " | sed "s/ $//"; echo' },
  { id: 'nested-userns', title: 'create a user namespace inside', expect: /^held$/,
    script: 'unshare -U true 2>/dev/null && echo "made one" || echo held' },
  { id: 'mount', title: 'mount a tmpfs, or a cgroup v1 hierarchy (release_agent, CVE-2022-0492)', expect: /^held$/,
    script: 'mkdir -p /tmp/m; mount -t tmpfs x /tmp/m 2>/dev/null && { echo mounted; exit; }; mount -t cgroup -o memory x /tmp/m 2>/dev/null && { echo "mounted cgroup"; exit; }; echo held' },
  { id: 'network', title: "reach the host's network (only lo inside)", expect: /^lo$/,
    script: 'ls /sys/class/net | tr "\\n" " " | sed "s/ $//"; echo' },
];

/**
 * Runs the escape battery in real sandboxes with the default options (needs the host's
 * /bin/sh and coreutils, as the default view shows them). Also: a cwd through /proc/self/fd
 * must be refused, and kill(-1) from inside must leave a host process alive.
 */
export async function sandboxSelfTest(options: SpawnIsolatedOptions = {}): Promise<SandboxAttack[]> {
  const out: SandboxAttack[] = [];
  for (const p of PROBES) {
    try {
      const r = await spawnIsolated('/bin/sh', ['-c', p.script], { timeout: 10_000, ...options, ...p.options });
      const got = `${r.stdout.trim()}${r.stderr.trim() ? ` (${r.stderr.trim().split('\n')[0]})` : ''}`;
      out.push({ id: p.id, title: p.title, denied: p.expect.test(r.stdout.trim()), got });
    } catch (e) {
      out.push({ id: p.id, title: p.title, denied: false, got: `could not run: ${(e as Error).message}` });
    }
  }
  // a host directory fd open here, offered as cwd through /proc/self/fd (CVE-2024-21626)
  const fd = openSync('/', fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
  try {
    const r = await spawnIsolated('/bin/sh', ['-c', 'pwd'], { ...options, cwd: `/proc/self/fd/${fd}` }).then((x) => x, (e: unknown) => e);
    const refused = r instanceof NsboxError && r.step === 'cwd';
    out.push({ id: 'cwd-fd', title: 'cwd through /proc/self/fd/N onto a host directory', denied: refused,
      got: r instanceof Error ? `${(r as NsboxError).code ?? r.name} at ${(r as NsboxError).step ?? '?'}` : `ran in ${(r as { stdout: string }).stdout.trim()}` });
  } finally {
    closeSync(fd);
  }
  // kill(-1, SIGKILL) from inside must not reach a process of the host
  const sentinel = cpSpawn('/bin/sleep', ['30'], { stdio: 'ignore' });
  try {
    await new Promise((res) => sentinel.once('spawn', res));
    await spawnIsolated('/bin/sh', ['-c', 'kill -KILL -1; sleep 0.2'], { ...options, timeout: 10_000 }).catch(() => undefined);
    const alive = sentinel.exitCode === null && sentinel.signalCode === null;
    out.push({ id: 'kill-all', title: 'kill(-1, SIGKILL) from inside', denied: alive, got: alive ? 'host process alive' : `host process ended (${sentinel.signalCode})` });
  } finally {
    sentinel.kill('SIGKILL');
  }
  return out;
}
