// The transparent egress mode's server-name reader (lib/net/egress/service.ts, serverName):
// a real ClientHello (Node's TLS client's, captured by a plain TCP server) gives its SNI, also
// when it arrives in pieces; anything else gives null.
import { createServer, type AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { serverName } from '../../lib/net/egress/service.js';

async function clientHello(servername?: string): Promise<Buffer> {
  return new Promise((resolve) => {
    const srv = createServer((s) => {
      let b = Buffer.alloc(0);
      s.on('data', (d) => {
        b = Buffer.concat([b, d]);
        if (b.length >= 5 && b.length >= 5 + b.readUInt16BE(3)) { s.destroy(); srv.close(); resolve(b); }
      });
    });
    srv.listen(0, '127.0.0.1', () => {
      const c = connect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, ...(servername ? { servername } : {}), rejectUnauthorized: false });
      c.on('error', () => {});
    });
  });
}

describe('serverName (SNI of a TLS ClientHello)', () => {
  it('reads the name of a real ClientHello, waits for the whole record, and says null for no name or no TLS', async () => {
    const hello = await clientHello('registry.example');
    expect(serverName(hello)).toBe('registry.example');
    for (const n of [1, 4, 5, 60, hello.length - 1]) expect(serverName(hello.subarray(0, n))).toBeUndefined();
    expect(serverName(await clientHello())).toBeNull(); // an address as host: Node sends no SNI
    expect(serverName(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n'))).toBeNull();
    expect(serverName(Buffer.from([0x16, 3, 1, 0xff, 0xff]))).toBeNull(); // a record longer than TLS allows
    expect(serverName(Buffer.alloc(0))).toBeUndefined();
  });
});
