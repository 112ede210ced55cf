// Every code block of README.md and docs/*.md runs as written on this Node (issue 13, item 10).
//
// A fence says its language: ```ts / ```js blocks are run as ES modules by `node` (so they are
// written as plain JavaScript that TypeScript also accepts), ```sh blocks by `sh -e`, from a
// scratch directory where `import ... from 'nsbox'` and the `nsbox` command are this
// repository's build (node_modules/nsbox -> the repository, node_modules/.bin/nsbox ->
// dist/cli.js), as after `npm install nsbox`. ```text blocks (layouts, usage synopses, output)
// are not code. A block that cannot run here says why just above its fence:
//   <!-- not-run: the reason -->          reported as a skipped test with the reason
//   <!-- doc-test before: SHELL -->        run (sh, from the repository) before the block
//   <!-- doc-test after: SHELL -->         run after it, whatever happened
// A block passes when it exits 0 within the time limit by itself: a snippet that leaves a
// sandbox running (Node waits for it) fails.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defaultBridgeGuard, isRoot, skipReason } from '../helpers/host.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const DOCS = ['README.md', ...readdirSync(`${root}docs`).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
const RUN_LANGS = ['ts', 'js', 'sh'];
const TEXT_LANGS = ['text'];
const LIMIT_MS = 45_000;

interface Block { file: string; line: number; lang: string; code: string; notRun?: string; before: string[]; after: string[] }

/** The fenced blocks of a markdown file, with the doc-test comments just above each. */
export function extractBlocks(file: string, text: string): Block[] {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]!); i++) body.push(lines[i]!.slice(open[1]!.length));
    const b: Block = { file, line: start + 1, lang: open[2]!.trim(), code: `${body.join('\n')}\n`, before: [], after: [] };
    for (let j = start - 1; j >= 0; j--) {
      const l = lines[j]!.trim();
      if (l === '') continue;
      const m = /^<!--\s*(not-run:|doc-test before:|doc-test after:)\s*(.*?)\s*-->$/.exec(l);
      if (!m) break;
      if (m[1] === 'not-run:') b.notRun = m[2];
      else (m[1] === 'doc-test before:' ? b.before : b.after).unshift(m[2]!);
    }
    blocks.push(b);
  }
  return blocks;
}

const all = DOCS.flatMap((f) => extractBlocks(f, readFileSync(`${root}${f}`, 'utf8')));

describe('the docs\' code blocks', () => {
  it('every fence says its language (ts, js, sh or text), and every not-run says why', () => {
    const bad = all.filter((b) => ![...RUN_LANGS, ...TEXT_LANGS].includes(b.lang)).map((b) => `${b.file}:${b.line} \`\`\`${b.lang}`);
    expect(bad, 'fences without a known language').toEqual([]);
    expect(all.filter((b) => b.notRun === '').map((b) => `${b.file}:${b.line}`), 'not-run without a reason').toEqual([]);
    expect(all.filter((b) => RUN_LANGS.includes(b.lang)).length).toBeGreaterThan(10);
  });

  it('hexadecimal id ranges and their decimal spellings agree', () => {
    // e.g. README's fallback range: 0x6FFF0000–0x6FFFFFFF (1878982656–1879048191)
    let seen = 0;
    for (const f of DOCS) {
      for (const m of readFileSync(`${root}${f}`, 'utf8').matchAll(/(0x[0-9A-Fa-f]+)\s*[–-]\s*(0x[0-9A-Fa-f]+)\s*\((\d+)\s*[–-]\s*(\d+)/g)) {
        seen++;
        expect(`${Number(m[1])}–${Number(m[2])}`, `${f}: ${m[0]}`).toBe(`${m[3]}–${m[4]}`);
      }
    }
    expect(seen).toBeGreaterThan(0);
  });
});

const noDist = !existsSync(`${root}dist/index.js`) || !existsSync(`${root}dist/cli.js`);
describe.skipIf(skipReason(!isRoot, 'the docs\' snippets make sandboxes, bridges and overlay mounts: they need root')
  || skipReason(noDist, 'the docs\' snippets import the built package: run npm run build:ts (npm test does)'))('the docs\' code blocks run as written', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync('/tmp/nsbox-test-docs-');
    chmodSync(dir, 0o755); // a snippet may bind a path of its directory into a sandbox
    mkdirSync(`${dir}/node_modules/.bin`, { recursive: true });
    symlinkSync(root, `${dir}/node_modules/nsbox`);
    symlinkSync('../nsbox/dist/cli.js', `${dir}/node_modules/.bin/nsbox`);
    writeFileSync(`${dir}/package.json`, JSON.stringify({ name: 'doc-snippets', private: true, type: 'module' }));
  });
  // the networking snippet bridges without naming a bridge (nsbox0)
  const dropDefaultBridge = defaultBridgeGuard();
  afterAll(async () => { if (dir) rmSync(dir, { recursive: true, force: true }); await dropDefaultBridge(); });

  const sh = (cmd: string) => execFileSync('sh', ['-ec', cmd], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'], timeout: LIMIT_MS });

  for (const b of all.filter((x) => RUN_LANGS.includes(x.lang))) {
    const name = `${b.file}:${b.line} (${b.lang})`;
    if (b.notRun) {
      it.skip(`${name}: not run: ${b.notRun}`, () => {});
      console.warn(`SKIPPED: ${name}: ${b.notRun}`);
      continue;
    }
    it(name, async () => {
      const work = mkdtempSync(`${dir}/block-`);
      chmodSync(work, 0o755);
      const file = `${work}/snippet.${b.lang === 'sh' ? 'sh' : 'mjs'}`;
      writeFileSync(file, b.code);
      try {
        for (const c of b.before) sh(c);
        const [cmd, args] = b.lang === 'sh' ? ['sh', ['-e', file]] : [process.execPath, [file]];
        const r = await new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string; ms: number }>((resolve) => {
          const t0 = Date.now();
          execFile(cmd, args, {
            cwd: work, timeout: LIMIT_MS, killSignal: 'SIGKILL', maxBuffer: 16 << 20,
            env: { ...process.env, PATH: `${dir}/node_modules/.bin:${process.env.PATH}` },
          }, (err, stdout, stderr) => {
            const e = err as (Error & { code?: number | string; signal?: string }) | null;
            resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, signal: e?.signal ?? null, stdout, stderr, ms: Date.now() - t0 });
          }).stdin!.end();
        });
        const what = `${name} exited ${r.code ?? r.signal} after ${r.ms} ms${r.signal === 'SIGKILL' ? ` (still running after ${LIMIT_MS} ms: a sandbox left running?)` : ''}\n--- code\n${b.code}--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
        expect(r.code, what).toBe(0);
      } finally {
        for (const c of b.after) { try { sh(c); } catch (e) { console.warn(`${name}: after: ${(e as Error).message}`); } }
      }
    }, LIMIT_MS + 15_000);
  }
});
