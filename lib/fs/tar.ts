// tar-stream, loaded on first use: importing nsbox (or starting `nsbox-runc create`, a Node
// process per container) does not pay for loading it and its dependencies (~25 modules, about
// a sixth of the library's import time) when no image is imported or exported.
import { createRequire } from 'node:module';
import type * as TarStream from 'tar-stream';

let mod: typeof TarStream | undefined;

/** The tar-stream module. */
export function tarStream(): typeof TarStream {
  mod ??= createRequire(import.meta.url)('tar-stream') as typeof TarStream;
  return mod;
}
