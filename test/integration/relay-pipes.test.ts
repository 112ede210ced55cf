// The egress relay's pipes and the caller's pipe budget. Pipes count against the user's
// /proc/sys/fs/pipe-user-pages-soft (for a caller without CAP_SYS_RESOURCE/CAP_SYS_ADMIN);
// past it every new pipe of that user gets the minimum size. The relay made each of its two
// pipes 256 KiB (64 pages) at once, so ~128 idle tunnels of an unprivileged caller shrank every
// pipe that user made afterwards, its own program's and everyone's. Now a relay's pipes keep the
// default size until a direction fills one.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isRoot, skipReason } from '../helpers/host.js';
import { ranError, runFresh } from '../helpers/proc.js';

const ADDON = process.env.NSBOX_ADDON ?? resolve(__dirname, '../../build/Release/nsbox.node');
const soft = (() => { try { return Number(readFileSync('/proc/sys/fs/pipe-user-pages-soft', 'utf8')); } catch { return 0; } })();

// Run as uid 65534: the capacity of a new FIFO (filled with non-blocking 4 KiB writes), N idle
// relays between loopback TCP pairs, the capacity of a new FIFO again; then one relay moves 4 MiB
// (the larger pipe on use still works).
const SCRIPT = `
const fs = require('node:fs'), net = require('node:net'), os = require('node:os'), path = require('node:path');
const { execFileSync } = require('node:child_process');
const addon = require(process.argv[1]);
const N = Number(process.argv[2]);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-relay-pipes-'));
let k = 0;
function fifoCap() {
  const p = path.join(dir, 'f' + k++);
  execFileSync('mkfifo', [p]);
  const fd = fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  const b = Buffer.alloc(4096);
  let n = 0;
  try { for (;;) n += fs.writeSync(fd, b); } catch (e) { if (e.code !== 'EAGAIN') throw e; }
  fs.closeSync(fd);
  fs.unlinkSync(p);
  return n;
}
(async () => {
  const before = fifoCap();
  const server = net.createServer();
  const accepted = [];
  server.on('connection', (s) => accepted.push(s));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  const pair = async () => {
    const c = net.connect(port, '127.0.0.1');
    await new Promise((r) => c.once('connect', r));
    while (accepted.length === 0) await new Promise((r) => setImmediate(r));
    return [c, accepted.shift()];
  };
  const fd = (s) => s._handle.fd;
  for (let i = 0; i < N; i++) {
    const [c, s] = await pair();
    addon.relayStart(fd(c), fd(s), () => {}, false);
    c._handle.readStop(); s._handle.readStop();
  }
  const after = fifoCap();
  // a bulk transfer through one more relay: a -> relay -> b
  const [a1, a2] = await pair();
  const [b1, b2] = await pair();
  a2._handle.readStop(); b1._handle.readStop();
  let got = 0;
  const done = new Promise((r) => b2.on('data', (d) => { got += d.length; if (got >= 4 << 20) r(); }));
  addon.relayStart(fd(a2), fd(b1), () => {}, false);
  a1.write(Buffer.alloc(4 << 20, 7));
  await done;
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(JSON.stringify({ before, after, got }));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
`;

describe("egress relay pipes and the caller's pipe budget", () => {
  const skip = skipReason(!isRoot, 'runs its relays as uid 65534 (needs root to switch to it)')
    || skipReason(!existsSync(ADDON), 'the addon is not built (npm run build)')
    || skipReason(!existsSync('/usr/bin/setpriv'), 'setpriv (util-linux) is missing')
    || skipReason(!(soft > 0), `/proc/sys/fs/pipe-user-pages-soft is ${soft || 'unreadable'}: this host sets no per-user pipe budget`);

  it.skipIf(skip)('idle relays of an unprivileged caller leave its new pipes their default size', async () => {
    // enough relays to pass the budget at 128 pages each (the old 256 KiB pipes), not at 32
    const n = Math.floor(soft / 128) + 8;
    const r = await runFresh('/usr/bin/setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, '-e', SCRIPT, ADDON, String(n)], { cwd: '/', timeout: 120_000 });
    if (r.status !== 0) throw ranError(r, 'relay script');
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { before: number; after: number; got: number };
    if (skipReason(out.before < 65536, `uid 65534 is already past its pipe budget here (a new pipe holds ${out.before} bytes)`)) return;
    expect(out.after).toBe(out.before);
    expect(out.got).toBe(4 << 20);
  });
});
