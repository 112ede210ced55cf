#!/usr/bin/env node
// The `nsbox-runc` Node entry (dist/nsbox-runc.cjs; the native front end and bin/nsbox-runc run
// it): runs the runtime's bundle (dist/nsbox-runc-bundle.cjs) compiled with its code cache
// when there is a usable one (./codecache.ts says when), else compiled as Node would.
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { BUNDLE, CACHE, cachedDataFor, compileBundle } from './codecache.js';

// a CommonJS file (tsup builds this entry as dist/nsbox-runc.cjs): its own directory, dist/
const dir = __dirname;
const file = `${dir}/${BUNDLE}`;
const fd = openSync(file, 'r');
const st = fstatSync(fd);
const bundle = readFileSync(fd);
closeSync(fd);
let cached: Buffer | undefined;
try {
  const cfd = openSync(`${dir}/${CACHE}`, 'r');
  try {
    const cs = fstatSync(cfd);
    // as trusted as the bundle: its owner's, writable by no one who cannot write the bundle
    if (cs.isFile() && cs.uid === st.uid && (cs.mode & 0o022 & ~st.mode) === 0) {
      cached = cachedDataFor(readFileSync(cfd), bundle);
    }
  } finally {
    closeSync(cfd);
  }
} catch { /* no cache: the bundle is compiled without */ }
const run = compileBundle(file, bundle.toString('utf8'), cached).runInThisContext() as (...args: unknown[]) => void;
const mod = { exports: {} };
run.call(mod.exports, mod.exports, createRequire(file), mod, file, dir);
