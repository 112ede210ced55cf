// Tunnels whose bytes never pass through JavaScript: once a CONNECT or SOCKS5 tunnel is set
// up, both sockets are handed to the addon's relay (addon/src/relay.cc: splice(2) on a thread
// of its own), and this process's event loop is free of them. What Node had read but nobody
// consumed is written first; the Node sockets are then destroyed (the relay works on its own
// copies of their fds).
import type { Socket } from 'node:net';
import { native } from '../../native.js';

interface RelayAddon {
  relayStart(fdA: number, fdB: number, cb: (err: number, aToB: number, bToA: number) => void, oneWay: boolean): number;
  relayCancel(id: number): void;
}
const addon = () => native() as unknown as RelayAddon;

type Handle = { fd?: number; readStop?: () => number };

/** What went through a relay. */
export interface Relayed {
  aToB: number;
  bToA: number;
  /** errno that ended it (0: both sides closed; ECANCELED: cancelled) */
  errno: number;
}

/** Takes whatever Node has buffered for reading, without letting it read more. */
function takeBuffered(s: Socket): Buffer {
  (s as unknown as { _read: () => void })._read = () => {};
  const chunks: Buffer[] = [];
  let c: Buffer | null;
  while ((c = s.read() as Buffer | null) !== null) chunks.push(c);
  return Buffer.concat(chunks);
}

const written = (s: Socket, b: Buffer) => (b.length === 0 ? Promise.resolve() : new Promise<void>((res, rej) => s.write(b, (e) => (e ? rej(e) : res()))));

/**
 * Relays between `a` and `b` (connected TCP sockets whose own writes are all done) in the
 * kernel. `onStart` gets the relay's id (for {@link cancelRelay}). `oneWay`: only from `b`
 * to `a`, ending with `b`'s EOF. Falls back to Node's pipes when the addon cannot take them.
 */
export async function relay(a: Socket, b: Socket, onStart?: (id: number) => void, oneWay = false): Promise<Relayed> {
  const ha = (a as unknown as { _handle?: Handle })._handle, hb = (b as unknown as { _handle?: Handle })._handle;
  if (!ha?.fd || !hb?.fd || ha.fd < 0 || hb.fd < 0 || a.destroyed || b.destroyed) return pipeRelay(a, b, oneWay);
  ha.readStop?.();
  hb.readStop?.();
  // one way (a plain HTTP response): what `a` sent after its request is never passed on
  const fromA = oneWay ? Buffer.alloc(0) : takeBuffered(a), fromB = takeBuffered(b);
  try {
    await Promise.all([written(b, fromA), written(a, fromB)]);
  } catch {
    a.destroy(); b.destroy();
    return { aToB: 0, bToA: 0, errno: 32 };
  }
  if (a.destroyed || b.destroyed) { a.destroy(); b.destroy(); return { aToB: fromA.length, bToA: fromB.length, errno: 104 }; }
  let id: number;
  const done = new Promise<Relayed>((resolve) => {
    id = addon().relayStart(ha.fd!, hb.fd!, (errno, aToB, bToA) => resolve({ errno, aToB: aToB + fromA.length, bToA: bToA + fromB.length }), oneWay);
  });
  onStart?.(id!);
  a.destroy();
  b.destroy();
  return done;
}

/** Ends a relay at once (both sockets closed). */
export function cancelRelay(id: number): void {
  addon().relayCancel(id);
}

function pipeRelay(a: Socket, b: Socket, oneWay: boolean): Promise<Relayed> {
  return new Promise((resolve) => {
    if (!oneWay) a.pipe(b);
    b.pipe(a);
    let n = 0;
    const end = () => {
      a.destroy(); b.destroy();
      if (++n === 2) resolve({ aToB: a.bytesRead, bToA: b.bytesRead, errno: 0 });
    };
    a.once('close', end);
    b.once('close', end);
    a.on('error', () => {});
    b.on('error', () => {});
  });
}
