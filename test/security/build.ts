// Test setup: compiles the C programs of test/security/ with gcc into a private temp directory
// (named nsbox-seccomp-<pid>-*), never committed. Hostile programs are linked statically so they
// run in any rootfs. `cleanupBuilds()` removes the directory.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
let dir: string | undefined;
const built = new Map<string, string>();

function which(cmd: string): boolean {
  try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }); return true; } catch { return false; }
}

/** Why C programs cannot be built here, or undefined when they can. */
export function cannotBuild(): string | undefined {
  if (!which('gcc')) return 'gcc is not installed (apt-get install gcc libc6-dev)';
  if (!existsSync('/usr/lib/x86_64-linux-gnu/libc.a') && !existsSync('/usr/lib/aarch64-linux-gnu/libc.a')) return 'no static libc (apt-get install libc6-dev)';
  return undefined;
}

/** Why the libseccomp reference cannot be built here, or undefined when it can. */
export function cannotBuildLibseccomp(): string | undefined {
  return cannotBuild() ?? (existsSync('/usr/include/seccomp.h') ? undefined : 'libseccomp-dev is not installed (apt-get install libseccomp-dev)');
}

/** Compiles test/security/<name>.c (once per process) and returns the binary's path. */
export function buildC(name: string, opts: { static?: boolean; libs?: string[] } = {}): string {
  const key = `${name}:${opts.static ? 's' : 'd'}`;
  const have = built.get(key);
  if (have) return have;
  if (!dir) {
    dir = mkdtempSync(join(tmpdir(), `nsbox-seccomp-${process.pid}-`));
    // sandbox root is an unprivileged host uid: it must be able to reach the binaries
    chmodSync(dir, 0o755);
  }
  const out = join(dir, `${name}${opts.static ? '.static' : ''}`);
  execFileSync('gcc', ['-O1', '-Wall', ...(opts.static ? ['-static'] : []), '-o', out, join(here, `${name}.c`), ...(opts.libs ?? [])], { stdio: ['ignore', 'ignore', 'pipe'] });
  built.set(key, out);
  return out;
}

/** Removes everything buildC made, and fails if anything of it is left (leak check). */
export function cleanupBuilds(): void {
  const d = dir;
  if (d) rmSync(d, { recursive: true, force: true });
  dir = undefined;
  built.clear();
  if (d && existsSync(d)) throw new Error(`test build directory ${d} was not removed`);
}

/** The private build directory, if one was made (for leak checks). */
export function buildDir(): string | undefined {
  return dir;
}
