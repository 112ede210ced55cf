#!/usr/bin/env node
// bench/breakdown: where the time of one spawnIsolated('/bin/true') goes, phase by phase and
// op by op, from the timing probes of a traced addon build. Run as root:
//   npm run build:trace && node bench/breakdown.mjs [--n 300] [--spaced 0]
// With --pool: the path of pool.run('/bin/true') instead (bench/breakdown-pool.mjs; no traced
// build needed).
// Medians of n spawns (the first fifth is warm-up). Parent, child and the network helper run
// at once, so phases of different actors overlap: read each actor's column down.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const arg = (name, def) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : def; };
const N = arg('n', 300), SPACED = arg('spaced', 0);
const sarg = (name, def) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : def; };
// another program or options (the op table then shows the default view's steps only if
// they match: --opts changes the plan)
const FILE = sarg('file', '/bin/true'), ARGS = JSON.parse(sarg('args', '[]')), OPTS = JSON.parse(sarg('opts', '{}'));
if (process.argv.includes('--pool')) {
  await import('./breakdown-pool.mjs');
  process.exit(0);
}
const addon = process.env.NSBOX_ADDON ?? new URL('../build-trace/Release/nsbox.node', import.meta.url).pathname;
if (!existsSync(addon)) { console.error(`no traced addon at ${addon}: run npm run build:trace`); process.exit(2); }
process.env.NSBOX_ADDON = addon;
const native = createRequire(import.meta.url)(addon);
if (typeof native.trace !== 'function') { console.error(`${addon} was built without NSBOX_TRACE`); process.exit(2); }
const { spawnIsolated } = await import('../dist/index.js');
const steps = JSON.parse(execFileSync(process.execPath, [new URL('../dist/cli.js', import.meta.url).pathname, 'explain', '--', '/bin/true'])).steps;

const phases = [
  // [actor, name, from, to]
  ['js', 'spawnIsolated -> addon', 'call', 'spawnEntry'],
  ['parent', 'decode plan', 'spawnEntry', 'planDecoded'],
  ['parent', 'pipes, stack -> clone3', 'planDecoded', 'clone'],
  ['parent', '  of which template check, stdio', 'planDecoded', 'stdio'],
  ['parent', 'clone3 (namespaces)', 'clone', 'cloned'],
  ['launcher', 'start', 'clone', 'launchEntry'],
  ['launcher', 'setns template (and spare netns)', 'launchEntry', 'launchSetns'],
  ['launcher', 'clone3 (namespaces)', 'launchSetns', 'launchCloned'],
  ['launcher', 'exit -> parent back', 'launchCloned', 'launchBack'],
  ['parent', 'id maps -> go', 'cloned', 'go'],
  ['parent', 'go -> exec seen', 'go', 'execSeen'],
  ['parent', 'result object', 'execSeen', 'spawnReturn'],
  ['js', 'return -> exit seen', 'spawnReturn', 'exitSeen'],
  ['js', 'exit seen -> resolved', 'exitSeen', 'resolved'],
  ['child', 'go -> ops start', 'go', 'opsStart'],
  ['child', 'ops (the view)', 'opsStart', 'opsEnd'],
  ['child', '  of which waiting for the netns', 'netWait', 'netJoined'],
  ['child', 'ops end -> exec', 'opsEnd', 'exec'],
  ['helper', 'go -> helper runs', 'go', 'helperEntry'],
  ['helper', 'enter user ns', 'helperEntry', 'netUnshare'],
  ['helper', 'unshare(CLONE_NEWNET)', 'netUnshare', 'netUnshared'],
  ['helper', 'netns fd sent', 'netUnshared', 'netSent'],
];
const rows = [], opRows = [];
for (let i = 0; i < N; i++) {
  const call = process.hrtime.bigint();
  await spawnIsolated(FILE, ARGS, OPTS);
  const resolved = process.hrtime.bigint();
  const t = native.trace();
  const at = { ...Object.fromEntries(Object.entries(t.points).map(([k, v]) => [k, BigInt(v)])), call, resolved };
  rows.push(phases.map(([, , a, b]) => (at[a] && at[b] ? Number(at[b] - at[a]) / 1000 : NaN)));
  rows[rows.length - 1].total = Number(resolved - call) / 1000;
  const ops = [at.opsStart, ...t.ops.slice(0, steps.length).map(BigInt)];
  opRows.push(steps.map((_, k) => Number(ops[k + 1] - ops[k]) / 1000));
  if (SPACED) await new Promise((r) => setTimeout(r, SPACED));
}
const med = (xs) => { const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b); return s.length ? s[s.length >> 1] : NaN; };
const use = rows.slice(Math.floor(N / 5));
console.log(`spawnIsolated(${JSON.stringify(FILE)}, ${JSON.stringify(ARGS)}, ${JSON.stringify(OPTS)}): median of ${use.length} spawns${SPACED ? `, ${SPACED} ms apart` : ''} (µs)\n`);
console.log('| actor | phase | µs |\n|---|---|---:|');
// a phase none of these spawns had (a helper that was not needed) shows as —
phases.forEach(([actor, name], k) => { const m = med(use.map((r) => r[k])); console.log(`| ${actor} | ${name} | ${Number.isNaN(m) ? '—' : m.toFixed(0)} |`); });
console.log(`| | total (call -> resolved) | ${med(use.map((r) => r.total)).toFixed(0)} |`);
if (Object.keys(OPTS).length) process.exit(0);
console.log('\n| child op | µs |\n|---|---:|');
steps.forEach((s, k) => console.log(`| ${s.replace(/\|/g, '/')} | ${med(opRows.slice(Math.floor(N / 5)).map((r) => r[k])).toFixed(1)} |`));
