import { defineConfig } from 'tsup';

export default defineConfig([
  {
    // the library: ESM and CJS (with their maps and types)
    entry: { index: 'lib/index.ts' },
    format: ['esm', 'cjs'],
    dts: { entry: { index: 'lib/index.ts' } },
    target: 'node20',
    platform: 'node',
    shims: true,
    clean: ['!cli.js', '!cli.js.map', '!nsbox-runc.cjs', '!nsbox-runc.cjs.map'], // everything but the other configs' output
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
    clean: ['!index.*', '!nsbox-runc.*'], // everything but the other configs' output (so also an old cli.cjs)
    sourcemap: true,
    splitting: false,
  },
  {
    // `nsbox-runc` (lib/oci/): one CommonJS file carrying its own copy of the library, so the
    // Node start of every `create` (the native front end hands it the commands it does not answer
    // itself) compiles one script rather than loading two ES modules: `--version` took ~50 ms less
    // CPU here (docs/oci-runtime.md). Nothing imports it as a module, so its own NsboxError class
    // is not seen by library users. tar-stream and node-gyp-build stay dependencies (required).
    entry: { 'nsbox-runc': 'lib/oci/bin.ts' },
    format: ['cjs'],
    target: 'node20',
    platform: 'node',
    shims: true,
    clean: false,
    sourcemap: true,
    splitting: false,
  },
]);
