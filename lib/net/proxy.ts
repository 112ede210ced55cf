// Userland TCP proxy for published ports where nftables cannot be used (docker-proxy's role).
import { createServer, connect, type Server } from 'node:net';
import { fromNodeError } from '../errors.js';
import { netError } from './addr.js';

/** A listening proxy from a host address/port to a sandbox address/port. */
export class TcpProxy implements AsyncDisposable {
  #server: Server;
  /** The host port it listens on. */
  readonly port: number;

  private constructor(server: Server, port: number) {
    this.#server = server;
    this.port = port;
  }

  /**
   * Listens on `hostIp:hostPort` (port 0: any free port) and forwards every connection to
   * `targetIp:targetPort`. A taken port is an EADDRINUSE NsboxError.
   */
  static async listen(hostIp: string, hostPort: number, targetIp: string, targetPort: number): Promise<TcpProxy> {
    const server = createServer({ pauseOnConnect: false }, (client) => {
      const up = connect({ host: targetIp, port: targetPort });
      client.pipe(up).pipe(client);
      const end = () => { client.destroy(); up.destroy(); };
      client.on('error', end);
      up.on('error', end);
      client.on('close', () => up.end());
      up.on('close', () => client.end());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => {
        reject(e.code === "EADDRINUSE" ? netError(98, 'publish', 'listen', undefined, `${hostIp}:${hostPort} is in use`) : fromNodeError(e, 'publish'));
      });
      server.listen({ host: hostIp, port: hostPort, exclusive: true }, () => resolve());
    });
    server.unref();
    const a = server.address();
    return new TcpProxy(server, typeof a === 'object' && a ? a.port : hostPort);
  }

  /** Stops listening and drops open connections. */
  async close(): Promise<void> {
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
