// code-runner: an HTTP service that runs untrusted sh, Python and Node programs in single-use
// nsbox sandboxes from a warm pool.
//
//   POST /run { language, source, stdin?, limits? } -> { verdict, exitCode, signal, stdout, stderr, usage }
//   GET  /health -> { ok, pool }
//
// Run (root, after `npm run build:ts` in the repository):  node examples/code-runner/server.mjs
// Environment: HOST (127.0.0.1: only this machine; HOST=0.0.0.0 to serve others), PORT (8080),
// POOL_SIZE (4).
import http from 'node:http';
import { createPool } from 'nsbox';

/**
 * Languages run from the host's own binaries, which the sandbox sees through nsbox's default
 * view (/usr, /etc, /lib* read-only; /tmp, /home, /root empty tmpfs). The source is passed as
 * an argument (at most 64 KiB), never written to a shared place.
 */
export const LANGUAGES = {
  sh: { file: '/bin/sh', args: (src) => ['-c', src] },
  python: { file: '/usr/bin/python3', args: (src) => ['-I', '-c', src] },
  node: { file: '/usr/bin/node', args: (src) => ['--max-old-space-size=96', '-e', src] },
};

/** Limits a request may ask for, and the caps on them. */
const DEFAULT_LIMITS = { cpuTimeMs: 2000, wallTimeMs: 5000, memoryMB: 256, outputBytes: 64 << 10, pids: 64 };
const MAX_LIMITS = { cpuTimeMs: 10_000, wallTimeMs: 20_000, memoryMB: 1024, outputBytes: 1 << 20, pids: 256 };
const MAX_SOURCE = 64 << 10;
const MAX_BODY = 1 << 20;

const VERDICTS = {
  'timeout': 'time-limit', 'cpu-time': 'time-limit', 'memory': 'memory-limit', 'pids': 'process-limit',
  'output': 'output-limit', 'canceled': 'canceled',
};

class BadRequest extends Error {}

function parseLimits(l) {
  if (l === undefined) return { ...DEFAULT_LIMITS };
  if (typeof l !== 'object' || l === null || Array.isArray(l)) throw new BadRequest('limits must be an object');
  const out = { ...DEFAULT_LIMITS };
  for (const [k, v] of Object.entries(l)) {
    if (!(k in DEFAULT_LIMITS)) throw new BadRequest(`limits.${k} is not a known limit (${Object.keys(DEFAULT_LIMITS).join(', ')})`);
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > MAX_LIMITS[k]) throw new BadRequest(`limits.${k} must be a number in (0, ${MAX_LIMITS[k]}]`);
    out[k] = k === 'memoryMB' || k === 'pids' || k === 'outputBytes' ? Math.floor(v) : v;
  }
  return out;
}

/** Runs one submission; throws BadRequest for bad input. */
export async function runSubmission(pool, body) {
  if (typeof body !== 'object' || body === null) throw new BadRequest('body must be a JSON object');
  const lang = LANGUAGES[body.language];
  if (!lang) throw new BadRequest(`language must be one of ${Object.keys(LANGUAGES).join(', ')}`);
  if (typeof body.source !== 'string' || body.source.length === 0) throw new BadRequest('source must be a non-empty string');
  if (Buffer.byteLength(body.source) > MAX_SOURCE || body.source.includes('\0')) throw new BadRequest(`source must be at most ${MAX_SOURCE} bytes, without NUL`);
  if (body.stdin !== undefined && typeof body.stdin !== 'string') throw new BadRequest('stdin must be a string');
  const l = parseLimits(body.limits);
  const r = await pool.run(lang.file, lang.args(body.source), {
    input: body.stdin ?? '',
    env: { PATH: '/usr/bin:/bin', HOME: '/tmp', LANG: 'C.UTF-8' },
    cwd: '/tmp',
    onOutputLimit: 'kill',
    limits: {
      cpuTimeMs: l.cpuTimeMs, wallTimeMs: l.wallTimeMs, outputBytes: l.outputBytes,
      memory: l.memoryMB * 1024 * 1024, memorySwap: l.memoryMB * 1024 * 1024, pids: l.pids,
    },
  });
  let verdict = VERDICTS[r.verdict];
  if (!verdict) verdict = r.verdict === 'exited' && r.exitCode === 0 ? 'ok' : 'runtime-error';
  return {
    verdict,
    exitCode: r.exitCode,
    signal: r.signal,
    stdout: r.stdout,
    stderr: r.stderr,
    truncated: r.truncated,
    usage: {
      cpuMs: Math.round((r.usage.cpuUserMs + r.usage.cpuSystemMs) * 10) / 10,
      wallMs: Math.round(r.usage.wallMs * 10) / 10,
      memoryBytes: r.usage.peakMemoryBytes,
      pids: r.usage.pidsPeak,
    },
  };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let n = 0;
    req.on('data', (c) => {
      n += c.length;
      if (n > MAX_BODY) { reject(new BadRequest('body too large')); req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Makes the service (not listening yet): `{ server, pool, close() }`. */
export function createCodeRunner({ poolSize = 4 } = {}) {
  const pool = createPool({ size: poolSize, refillConcurrency: 2, template: { hostname: 'runner' } });
  pool.on('error', (e) => console.error('code-runner: a sandbox could not be made:', e.message));
  const send = (res, status, obj) => {
    const body = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const server = http.createServer(async (req, res) => {
    try {
      if (req.method === 'GET' && req.url === '/health') return send(res, 200, { ok: true, pool: pool.stats });
      if (req.url !== '/run') return send(res, 404, { error: 'not found' });
      if (req.method !== 'POST') return send(res, 405, { error: 'use POST' });
      let body;
      try { body = JSON.parse(await readBody(req)); } catch (e) { throw e instanceof BadRequest ? e : new BadRequest('body is not JSON'); }
      send(res, 200, await runSubmission(pool, body));
    } catch (e) {
      if (e instanceof BadRequest) return send(res, 400, { error: e.message });
      console.error('code-runner:', e);
      send(res, 500, { error: 'internal error', code: e.code });
    }
  });
  return {
    server,
    pool,
    async close() {
      await new Promise((r) => server.close(r));
      await pool.close();
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // a service that runs whatever it is sent listens on loopback unless told otherwise
  const host = process.env.HOST || '127.0.0.1';
  const port = Number(process.env.PORT ?? 8080);
  const svc = createCodeRunner({ poolSize: Number(process.env.POOL_SIZE ?? 4) });
  svc.server.listen(port, host, () => {
    const a = svc.server.address();
    console.log(`code-runner listening on ${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
  });
  const stop = () => svc.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
