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
    clean: ['!cli.js', '!cli.js.map', '!nsbox-runc.js', '!nsbox-runc.js.map'], // everything but the other configs' output
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
    // `nsbox-runc` (lib/oci/): ESM only, importing ./index.js at run time as the cli does; its
    // modules import '../index.js', which is ./index.js beside the output
    entry: { 'nsbox-runc': 'lib/oci/bin.ts' },
    format: ['esm'],
    target: 'node20',
    platform: 'node',
    clean: false,
    sourcemap: true,
    splitting: false,
    esbuildPlugins: [{
      name: 'library-external',
      setup(b) {
        b.onResolve({ filter: /^\.\.\/index\.js$/ }, () => ({ path: './index.js', external: true }));
      },
    }],
  },
]);
