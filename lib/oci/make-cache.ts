// `node dist/nsbox-runc-cache.cjs`: makes dist/nsbox-runc-bundle.cache, the V8 code cache of
// nsbox-runc's bundle for this Node (./codecache.ts). tsup runs it after each build (so
// `npm run build`, `npm pack` and `npx tsup` make it); it never fails the build: where it
// cannot make a cache that this Node accepts, it says so and leaves none.
import { spawnSync } from 'node:child_process';
import { closeSync, fstatSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { isAscii } from 'node:buffer';
import { BUNDLE, CACHE, cacheHead, cachedDataFor, compileBundle } from './codecache.js';

const dir = __dirname;
const file = `${dir}/${BUNDLE}`;
const cacheFile = `${dir}/${CACHE}`;

function read(): { bundle: Buffer; source: string; mode: number } {
  const fd = openSync(file, 'r');
  try {
    const st = fstatSync(fd);
    const bundle = readFileSync(fd);
    return { bundle, source: bundle.toString('utf8'), mode: st.mode };
  } finally {
    closeSync(fd);
  }
}

if (process.argv[2] === '--check') {
  // a fresh Node, as the runtime starts: does V8 take the cache?
  const b = read();
  const data = cachedDataFor(readFileSync(cacheFile), b.bundle);
  const ok = data !== undefined && !compileBundle(file, b.source, data).cachedDataRejected;
  process.stdout.write(ok ? 'accepted\n' : 'rejected\n');
} else if (process.execArgv.length > 0 || process.env.NODE_OPTIONS) {
  // V8 refuses a cache made under other V8 flags: make it as the runtime runs, without any
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  process.exitCode = spawnSync(process.execPath, [__filename], { stdio: 'inherit', env }).status ?? 1;
} else {
  try {
    const b = read();
    // every function compiled now (not only those run at load: create runs many more), then
    // the cache taken with the flags back as the runtime has them (V8 checks the flags' hash)
    setFlagsFromString('--no-lazy');
    const script = compileBundle(file, b.source);
    setFlagsFromString('--lazy');
    const data = script.createCachedData();
    const tmp = `${cacheFile}.${process.pid}`;
    writeFileSync(tmp, Buffer.concat([Buffer.from(cacheHead(b.bundle.length), 'latin1'), b.bundle, data]), { mode: b.mode & 0o644 });
    renameSync(tmp, cacheFile);
    if (!isAscii(b.bundle)) process.stderr.write('nsbox-runc-cache: note: the bundle is not ASCII (a character beyond ASCII in lib/, a comment too): V8 then holds it as a two-byte string, and decoding it took 1.5-4 ms more per start here\n');
    const check = spawnSync(process.execPath, [__filename, '--check'], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
    if (check.stdout !== 'accepted\n') {
      rmSync(cacheFile, { force: true });
      process.stderr.write(`nsbox-runc-cache: this Node (${process.version}) does not take the cache it made (${(check.stdout || check.stderr).trim()}): none is left; nsbox-runc compiles its bundle at each start\n`);
    }
  } catch (e) {
    rmSync(cacheFile, { force: true });
    process.stderr.write(`nsbox-runc-cache: no code cache made: ${(e as Error).message}\n`);
  }
}
