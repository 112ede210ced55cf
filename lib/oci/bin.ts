// The runtime's code (dist/nsbox-runc-bundle.cjs), run by the `nsbox-runc` Node entry (./load.ts,
// dist/nsbox-runc.cjs) with its code cache: see lib/oci/runc.ts.
import { main } from './runc.js';

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
  process.exitCode = 1;
});
