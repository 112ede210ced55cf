#!/usr/bin/env node
// The `nsbox-runc` command (package.json bin): see lib/oci/runc.ts.
import { main } from './runc.js';

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
  process.exitCode = 1;
});
