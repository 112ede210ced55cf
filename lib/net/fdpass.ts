// Passing fds over unix sockets (SCM_RIGHTS), which Node has no API for: sendFds and recvFds
// (addon/src/fdpass.cc). Neither blocks the event loop nor holds a thread of the pool: the
// addon tries at once with MSG_DONTWAIT and, only when that would block, waits on the event
// loop (a uv_poll on its own dup of the socket) and tries again.
import { Socket } from 'node:net';
import { native } from '../native.js';
import { fail } from '../util/validate.js';

interface FdPassAddon {
  fdSend(socket: number | string, fds: number[], data: Buffer, cb: (err: Error | null, sent?: number) => void): number | null;
  fdRecv(socket: number, maxFds: number, maxData: number, cb: (err: Error | null, r?: ReceivedFds) => void): ReceivedFds | null;
}

const addon = () => native() as unknown as FdPassAddon;

/** What {@link recvFds} got: the fds (close-on-exec, now the caller's to close) and the data that came with them. */
export interface ReceivedFds {
  fds: number[];
  /** the bytes read with the fds; empty with no fds when the peer has closed the connection */
  data: Buffer;
}

/** Options of {@link recvFds}. */
export interface RecvFdsOptions {
  /** The most fds one message may carry (1..253). More than that is an NsboxError (EMSGSIZE) and all of them are closed. Default 16. */
  maxFds?: number;
  /** The most bytes read with them (1..1 MiB). Default 4096. */
  maxData?: number;
}

/**
 * The fd of a socket given as a net.Socket or a number, checked synchronously (the kernel says
 * whether it is a socket); a net.Socket still connecting is waited for.
 */
function socketFd(opt: string, socket: unknown, forRecv: boolean): number | Promise<number> {
  if (typeof socket === 'number') {
    if (!Number.isInteger(socket) || socket < 0 || socket > 0x7fffffff) fail(opt, `must be a net.Socket or an fd (a non-negative integer), got ${socket}`);
    return socket;
  }
  if (!(socket instanceof Socket)) fail(opt, `must be a net.Socket or an fd${forRecv ? '' : ' or a path'}`);
  const fdOf = () => {
    const h = (socket as unknown as { _handle?: { fd?: number; reading?: boolean } })._handle;
    if (!h || typeof h.fd !== 'number' || h.fd < 0) fail(opt, 'must be an open unix socket (this net.Socket has no fd: closed, or not a unix socket)');
    // Node reads a socket with read(2): the fds of a message it reads are closed by the kernel
    if (forRecv && h.reading) fail(opt, 'is being read by Node, which would lose the fds: make it paused (net.createServer({ pauseOnConnect: true })) and never resume it, or pass an fd');
    return h.fd;
  };
  if (!socket.connecting) return fdOf();
  return new Promise<number>((res, rej) => {
    const onErr = (e: Error) => { socket.off('connect', onOk); rej(e); };
    const onOk = () => { socket.off('error', onErr); try { res(fdOf()); } catch (e) { rej(e); } };
    socket.once('connect', onOk).once('error', onErr);
  });
}

function checkFds(opt: string, fds: unknown): number[] {
  if (!Array.isArray(fds) || fds.length === 0 || fds.length > 253) fail(opt, 'must be an array of 1..253 fds');
  for (const fd of fds) if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) fail(opt, `must hold fds (non-negative integers), got ${String(fd)}`);
  return fds as number[];
}

/**
 * Sends `fds` over a unix socket as SCM_RIGHTS, with `data` (default one zero byte: a stream
 * socket carries fds only with at least one byte). `socket` is a connected `net.Socket`, an
 * fd, or the path of a listening unix socket to connect to for this one message (then closed;
 * as OCI's `--console-socket`). The caller's fds stay open and its own. Resolves once the
 * whole message is sent. Kernel failures (not a socket, a closed fd, nobody listening) reject
 * with NsboxError; argument mistakes throw TypeError/RangeError at once.
 *
 * On a `net.Socket`, the message goes out beside Node's own writes: wait for a `write()`'s
 * callback before sending fds after it.
 */
export function sendFds(socket: Socket | number | string, fds: number[], data?: Uint8Array | string): Promise<void> {
  if (typeof socket === 'string' && socket === '') fail('socket', 'must be a net.Socket, an fd or a non-empty path');
  const list = checkFds('fds', fds);
  if (data !== undefined && typeof data !== 'string' && !(data instanceof Uint8Array)) fail('data', 'must be a Buffer, a Uint8Array or a string');
  const buf = data === undefined || data.length === 0 ? Buffer.alloc(1) : Buffer.from(data as Uint8Array);
  const target = typeof socket === 'string' ? socket : socketFd('socket', socket, false);
  return Promise.resolve(target).then((t) => new Promise<void>((resolve, reject) => {
    const now = addon().fdSend(t, list, buf, (err) => (err ? reject(err) : resolve()));
    if (now !== null) resolve();
  }));
}

/**
 * Receives one message of fds (SCM_RIGHTS) from a unix socket: a `net.Socket` Node does not
 * read (a server's with `pauseOnConnect: true`, never resumed: Node reads with read(2), and
 * the fds of what it reads are lost), or an fd. Waits on the event loop until a message
 * comes. The fds arrive close-on-exec and are the caller's to close. Kernel failures reject
 * with NsboxError (ENOTSOCK, EBADF, EMSGSIZE for more than `maxFds`); argument mistakes throw
 * TypeError/RangeError at once.
 */
export function recvFds(socket: Socket | number, options: RecvFdsOptions = {}): Promise<ReceivedFds> {
  if (options === null || typeof options !== 'object') fail('options', 'must be an object');
  for (const k of Object.keys(options)) if (k !== 'maxFds' && k !== 'maxData') fail('options', `has an unknown key '${k}'`);
  const { maxFds = 16, maxData = 4096 } = options;
  if (!Number.isInteger(maxFds) || maxFds < 1 || maxFds > 253) fail('options.maxFds', `must be an integer 1..253 (got ${String(maxFds)})`, RangeError);
  if (!Number.isInteger(maxData) || maxData < 1 || maxData > 1 << 20) fail('options.maxData', `must be an integer 1..1048576 (got ${String(maxData)})`, RangeError);
  return Promise.resolve(socketFd('socket', socket, true)).then((fd) => new Promise<ReceivedFds>((resolve, reject) => {
    const now = addon().fdRecv(fd, maxFds, maxData, (err, r) => (err ? reject(err) : resolve(r!)));
    if (now !== null) resolve(now);
  }));
}
