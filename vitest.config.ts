import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    exclude: ['test/vm/**', 'node_modules/**'],
    setupFiles: ['test/setup/release-blocks.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // integration tests create kernel objects; keep files from racing for 2 cores
    fileParallelism: false,
  },
});
