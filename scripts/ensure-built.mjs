// `npm test` runs this first: rebuilds the addon (node-gyp) and dist/ (tsup) when a source
// is newer than the build, so tests never run against stale code.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const newest = (paths) => {
  let t = 0;
  const walk = (p) => {
    if (!existsSync(p)) return;
    const s = statSync(p);
    if (s.isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
    else t = Math.max(t, s.mtimeMs);
  };
  paths.forEach((p) => walk(join(root, p)));
  return t;
};
const built = (p) => (existsSync(join(root, p)) ? statSync(join(root, p)).mtimeMs : 0);
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });

if (!process.env.NSBOX_ADDON && built('build/Release/nsbox.node') < newest(['addon', 'binding.gyp'])) {
  console.log('ensure-built: building the addon (node-gyp rebuild)');
  // never download headers (only the npm and Debian registries are reachable): use the
  // ones installed with node when npm has no nodedir configured
  const args = ['rebuild'];
  if (!process.env.npm_config_nodedir && existsSync('/usr/include/node/node_api.h')) args.push('--nodedir=/usr');
  run(join(root, 'node_modules/.bin/node-gyp'), args);
}
if (built('dist/index.js') < newest(['lib', 'tsup.config.ts', 'package.json'])) {
  console.log('ensure-built: building dist/ (tsup)');
  run(join(root, 'node_modules/.bin/tsup'), ['--silent']);
}
