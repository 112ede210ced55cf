// prebuildify moves build/Release/nsbox.node into prebuilds/: put a copy back, so a `npm pack`
// (prepack runs the prebuild) never leaves the developer build, and tests using it, without
// an addon. The two are the same binary (built from the same sources just now).
import { copyFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const built = existsSync(dir) && readdirSync(dir).find((f) => f.endsWith('.node'));
const dest = join(root, 'build', 'Release', 'nsbox.node');
if (built && !existsSync(dest)) {
  mkdirSync(join(root, 'build', 'Release'), { recursive: true });
  copyFileSync(join(dir, built), dest);
}
