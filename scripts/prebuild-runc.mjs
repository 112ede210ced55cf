// `npm run prebuild` (after prebuildify): the native front end of nsbox-runc
// (build/Release/nsbox-runc, addon/runc/front.cc, linked static) goes into the package beside
// the addon's prebuild, prebuilds/<platform>-<arch>/nsbox-runc, where bin/nsbox-runc finds it
// on an install that compiles nothing.
import { chmodSync, copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const built = join(root, 'build', 'Release', 'nsbox-runc');
if (!existsSync(built)) {
  console.error('scripts/prebuild-runc.mjs: build/Release/nsbox-runc is missing (the node-gyp build makes it)');
  process.exit(1);
}
const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
mkdirSync(dir, { recursive: true });
copyFileSync(built, join(dir, 'nsbox-runc'));
chmodSync(join(dir, 'nsbox-runc'), 0o755);
