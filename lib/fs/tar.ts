// tar-stream, loaded on first use: importing nsbox (or starting `nsbox-runc create`, a Node
// process per container) does not pay for loading it and its dependencies (~25 modules, about
// a quarter of the library's import time) when no image is imported or exported. A dynamic
// import() of the name, which bundlers (esbuild, webpack, rollup) follow as they do a static one.
import type { extract, pack } from 'tar-stream';

/** What nsbox uses of tar-stream. */
interface TarStream { extract: typeof extract; pack: typeof pack }

let mod: Promise<TarStream> | undefined;

/** The tar-stream module. */
export function tarStream(): Promise<TarStream> {
  mod ??= import('tar-stream').then((m): TarStream => (m as { default?: TarStream }).default ?? m);
  return mod;
}
