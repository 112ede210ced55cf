// Shared by the fs-*.test.ts files: scratch dirs named nsbox-fstest-<pid>-*, trees written and
// read back for byte comparison, small tars written with tar-stream, and the mount check.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pack as tarPack, type Header } from 'tar-stream';
import { isRoot, skipReason } from '../helpers/host.js';
import { fsNative } from '../../lib/fs/native.js';

export const PREFIX = `nsbox-fstest-${process.pid}-`;

/** Why the fs integration tests cannot run here, or '' (printed by skipReason). */
export function fsSkip(): boolean {
  if (skipReason(!isRoot, 'fs integration tests need root (overlay mounts, whiteouts, chown)')) return true;
  const fsList = readFileSync('/proc/filesystems', 'utf8');
  if (skipReason(!/\toverlay\n/.test(fsList), 'overlayfs is not available in this kernel')) return true;
  return false;
}

const made: string[] = [];
export function scratch(tag = 'x'): string {
  const d = mkdtempSync(`/tmp/${PREFIX}${tag}-`);
  chmodSync(d, 0o711); // a sandbox's unprivileged host uid must be able to reach a rootfs below
  made.push(d);
  return d;
}
export function removeScratch(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Mount lines (mountinfo without ids) that mention this test run's prefix or are overlays on it. */
export function ourMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n').filter((l) => l.includes(PREFIX) || l.includes('nsbox-fstest'));
}

/** Writes a tree: a string is a file, null a whiteout, an object a dir ('.opaque': true marks it opaque), `{ symlink }` a link. */
export type Tree = { [name: string]: string | null | Tree | { symlink: string } };
export function writeTree(dir: string, t: Tree): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, v] of Object.entries(t)) {
    if (name === '.opaque') {
      fsNative().fsLsetxattr(dir, 'trusted.overlay.opaque', Buffer.from('y'));
      continue;
    }
    const p = join(dir, name);
    if (v === null) execFileSync('mknod', [p, 'c', '0', '0']);
    else if (typeof v === 'string') writeFileSync(p, v);
    else if ('symlink' in v && typeof v.symlink === 'string') symlinkSync(v.symlink, p);
    else writeTree(p, v as Tree);
  }
}

/** Reads a tree back as path -> 'dir' | 'file:<content>' | 'link:<target>' | 'mode' extras. */
export function readTree(dir: string, withMeta = false): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const n of readdirSync(join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      const st = lstatSync(join(dir, r));
      const meta = withMeta ? ` ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}` : '';
      if (st.isDirectory()) { out[r] = `dir${meta}`; walk(r); }
      else if (st.isSymbolicLink()) out[r] = `link:${readlinkSync(join(dir, r))}${withMeta ? ` ${st.uid}:${st.gid}` : ''}`;
      else if (st.isFile()) out[r] = `file:${readFileSync(join(dir, r)).toString('base64')}${meta}`;
      else out[r] = `other:${st.mode.toString(8)}:${st.rdev}`;
    }
  };
  walk('');
  return out;
}

export type TarEntry = Partial<Header> & { name: string; body?: string | Buffer };
/** A tar (Buffer) made with tar-stream from the entries, in order. */
export async function makeTar(entries: TarEntry[]): Promise<Buffer> {
  const pk = tarPack();
  const chunks: Buffer[] = [];
  pk.on('data', (c: unknown) => { chunks.push(c as Buffer); });
  const end = new Promise<void>((r) => pk.on('end', () => r()));
  for (const e of entries) {
    const { body, ...h } = e;
    await new Promise<void>((res, rej) => pk.entry({ mode: h.type === 'directory' ? 0o755 : 0o644, mtime: new Date(1700000000000), ...h }, body ?? '', (err) => (err ? rej(err) : res())));
  }
  pk.finalize();
  await end;
  return Buffer.concat(chunks);
}

export { existsSync, chmodSync };

const BB_APPLETS = ['sh', 'echo', 'cat', 'ls', 'id', 'pwd', 'env', 'touch', 'rm', 'mv', 'mkdir'];

/** A busybox rootfs directory. */
export function busyboxRootfs(dir: string): string {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  cpSync('/bin/busybox', join(dir, 'bin/busybox'));
  for (const a of BB_APPLETS) execFileSync('ln', ['-s', 'busybox', join(dir, 'bin', a)]);
  mkdirSync(join(dir, 'etc'));
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nworker:x:1000:1000::/home/worker:/bin/sh\n');
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\nworker:x:1000:\n');
  mkdirSync(join(dir, 'work'), { mode: 0o777 });
  return dir;
}

/** Tar entries for a busybox layer (what `docker save` would carry). */
export function busyboxEntries(): TarEntry[] {
  const e: TarEntry[] = [
    { name: 'bin/', type: 'directory' },
    { name: 'bin/busybox', mode: 0o755, body: readFileSync('/bin/busybox') },
    ...BB_APPLETS.map((a): TarEntry => ({ name: `bin/${a}`, type: 'symlink', linkname: 'busybox' })),
    { name: 'etc/', type: 'directory' },
    { name: 'etc/passwd', body: 'root:x:0:0:root:/root:/bin/sh\n' },
  ];
  return e;
}

/** A docker-save archive (manifest.json, config, <id>/layer.tar) of one busybox layer. */
export async function dockerSaveTar(file: string, extra: Partial<Record<string, unknown>> = {}, entries = busyboxEntries(), tag = 'bb:docker'): Promise<void> {
  const layer = await makeTar(entries);
  const diffId = `sha256:${createHash('sha256').update(layer).digest('hex')}`;
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux',
    config: { Cmd: ['/bin/sh', '-c', 'echo docker $X; pwd'], Env: ['X=from-docker'], WorkingDir: '/etc', ...extra },
    rootfs: { type: 'layers', diff_ids: [diffId] },
  }));
  const cid = createHash('sha256').update(config).digest('hex');
  const manifest = JSON.stringify([{ Config: `${cid}.json`, RepoTags: [tag], Layers: ['aaaa/layer.tar'] }]);
  writeFileSync(file, await makeTar([
    { name: 'aaaa/', type: 'directory' },
    { name: 'aaaa/layer.tar', body: layer },
    { name: `${cid}.json`, body: config },
    { name: 'manifest.json', body: manifest },
  ]));
}
