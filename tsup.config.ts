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
    clean: ['!cli.js', '!cli.js.map'], // everything but the other config's output
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
    clean: ['!index.*'], // everything but the other config's output (so also an old cli.cjs)
    sourcemap: true,
    splitting: false,
  },
]);
