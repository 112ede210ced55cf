// Load for the code-runner: N submissions at concurrency C (a mix of languages, optionally
// some hostile ones), then runs/s, p50/p99 latency and the verdict counts.
//   node examples/code-runner/load.mjs [--url http://127.0.0.1:8080] [--n 200] [--c 4] [--hostile 0.1]
// Without --url it starts the service in this process on an ephemeral port.
import { createCodeRunner } from './server.mjs';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const N = Number(arg('n', 200));
const C = Number(arg('c', 4));
const HOSTILE = Number(arg('hostile', 0));

const normal = [
  { language: 'sh', source: 'read x; echo "sh:$x"', stdin: 'hi\n', expect: 'sh:hi\n' },
  { language: 'python', source: 'import sys; print("py:" + sys.stdin.read().strip())', stdin: 'hi\n', expect: 'py:hi\n' },
  { language: 'node', source: 'let d="";process.stdin.on("data",c=>d+=c).on("end",()=>console.log("js:"+d.trim()))', stdin: 'hi\n', expect: 'js:hi\n' },
];
const hostile = [
  // the submitted shell stays while its bomb grows (a sandbox ends with its program, so a bomb
  // whose shell returns at once is killed with it before reaching the limit: simply 'ok')
  { language: 'sh', source: 'f() { f | f & }; f; sleep 5', limits: { wallTimeMs: 2000 }, verdicts: ['process-limit', 'time-limit', 'runtime-error'] },
  { language: 'python', source: 'x = bytearray(1 << 30)', limits: { memoryMB: 64 }, verdicts: ['memory-limit'] },
  { language: 'python', source: 'while True: pass', limits: { cpuTimeMs: 300 }, verdicts: ['time-limit'] },
  { language: 'sh', source: 'yes flood', limits: { outputBytes: 4096 }, verdicts: ['output-limit'] },
];

let url = arg('url', undefined);
let svc;
if (!url) {
  svc = createCodeRunner({ poolSize: Number(arg('pool', 4)) });
  await new Promise((r) => svc.server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${svc.server.address().port}`;
  await svc.pool.warm();
}

const lat = [];
const verdicts = {};
let wrong = 0;
let next = 0;
const t0 = performance.now();
await Promise.all(Array.from({ length: C }, async () => {
  while (next < N) {
    const i = next++;
    const period = HOSTILE > 0 ? Math.round(1 / HOSTILE) : 0;
    const h = period > 0 && i % period === 0;
    const job = h ? hostile[(i / period) % hostile.length] : normal[i % normal.length];
    const s = performance.now();
    const res = await fetch(`${url}/run`, { method: 'POST', body: JSON.stringify({ language: job.language, source: job.source, stdin: job.stdin, limits: job.limits }) });
    const r = await res.json();
    lat.push(performance.now() - s);
    verdicts[r.verdict] = (verdicts[r.verdict] ?? 0) + 1;
    const ok = h ? job.verdicts.includes(r.verdict) : r.verdict === 'ok' && r.stdout === job.expect;
    if (!ok) { wrong++; console.error('unexpected:', job.language, job.source.slice(0, 30), JSON.stringify(r).slice(0, 300)); }
  }
}));
const sec = (performance.now() - t0) / 1000;
lat.sort((a, b) => a - b);
const p = (q) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))].toFixed(1);
console.log(`${N} submissions, concurrency ${C}, ${(HOSTILE * 100).toFixed(0)}% hostile: ${(N / sec).toFixed(1)} runs/s, p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, wrong verdicts ${wrong}`);
console.log('verdicts:', verdicts);
if (svc) await svc.close();
process.exitCode = wrong ? 1 : 0;
