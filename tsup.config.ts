import { defineConfig } from 'tsup';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';

// The build's id: a hash of the library's sources (lib/), which nsbox-runc's seccomp program
// cache (lib/oci/seccomp-cache.ts) is keyed on, so that a program compiled by one build is
// never used by another
function buildId(): string {
  const h = createHash('sha256');
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) h.update(`${p}\0`).update(readFileSync(p)).update('\0');
    }
  };
  walk('lib');
  h.update(readFileSync('package.json'));
  return h.digest('hex').slice(0, 32);
}

export default defineConfig([
  {
    // the library: ESM and CJS (with their maps and types)
    entry: { index: 'lib/index.ts' },
    format: ['esm', 'cjs'],
    dts: { entry: { index: 'lib/index.ts' } },
    target: 'node20',
    platform: 'node',
    shims: true,
    clean: ['!cli.js', '!cli.js.map', '!nsbox-runc.cjs', '!nsbox-runc.cjs.map', '!nsbox-runc-*'], // everything but the other configs' output
    sourcemap: true,
    splitting: false,
  },
  {
    // the `nsbox` command: ESM only (package.json's bin), importing ./index.js at run time
    // rather than carrying a second copy of the library (one module, one NsboxError class)
    entry: { cli: 'lib/cli.ts' },
    format: ['esm'],
    external: ['./index.js'],
    target: 'node20',
    platform: 'node',
    clean: ['!index.*', '!nsbox-runc.*', '!nsbox-runc-*'], // everything but the other configs' output (so also an old cli.cjs)
    sourcemap: true,
    splitting: false,
  },
  {
    // `nsbox-runc` (lib/oci/): one CommonJS file carrying its own copy of the library
    // (nsbox-runc-bundle.cjs), so the Node start of every `create` (the native front end hands it
    // the commands it does not answer itself) compiles one script rather than loading two ES
    // modules: `--version` took ~50 ms less CPU here (docs/oci-runtime.md). Nothing imports it
    // as a module, so its own NsboxError class is not seen by library users. tar-stream and
    // node-gyp-build stay dependencies (required). The entry Node runs, nsbox-runc.cjs
    // (lib/oci/load.ts), compiles it with the V8 code cache that nsbox-runc-cache.cjs
    // (lib/oci/make-cache.ts) makes after the build (lib/oci/codecache.ts says why that is safe).
    entry: { 'nsbox-runc': 'lib/oci/load.ts', 'nsbox-runc-bundle': 'lib/oci/bin.ts', 'nsbox-runc-cache': 'lib/oci/make-cache.ts' },
    format: ['cjs'],
    target: 'node20',
    platform: 'node',
    shims: true,
    clean: false,
    sourcemap: true,
    splitting: false,
    onSuccess: 'node dist/nsbox-runc-cache.cjs',
    define: { NSBOX_BUILD_ID: JSON.stringify(buildId()) },
    // import() as require(): the entry runs the bundle as a vm.Script, and a script V8 took
    // from a code cache cannot reach Node's dynamic import callback (Node 20)
    esbuildOptions(o) { o.supported = { ...o.supported, 'dynamic-import': false }; },
  },
]);
