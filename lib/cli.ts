#!/usr/bin/env node
// `nsbox` command line: a thin layer over the public API.
import { spawnIsolated, explain, NsboxError, doctor, selfTest, sandboxSelfTest, sweepNetwork, type SpawnIsolatedOptions, type Mount } from './index.js';
import { constants as osConstants } from 'node:os';
import { gc, formatGcReport, gcPrivilegeLine } from './gc.js';

const USAGE = `usage:
  nsbox run [options] -- CMD [ARGS...]      run CMD in a new sandbox; exit status = CMD's (128+N if killed by signal N)
  nsbox explain [options] -- CMD [ARGS...]  print the plan instead of running it
  nsbox doctor [--self-test] [--json]       what this host allows, each with a fix; --self-test runs the
                                            seccomp attack battery (exit 1 if anything gets through)
  nsbox gc [--json] [--store DIR]           remove what dead nsbox processes left: cgroups, container mounts
                                            and ephemeral containers (registered stores and each --store),
                                            sandbox state, veths, IPAM and nftables entries, temporary dirs

options:
  --rootfs DIR          root filesystem (default: the host's system dirs read-only, fresh /tmp, /home, /root, /run)
  --rw-rootfs           make --rootfs writable
  --hostname H          hostname inside (default nsbox)
  --bind SRC:DST[:ro]   bind-mount a host path (repeatable)
  --tmpfs DST[:OPTS]    mount a tmpfs, e.g. --tmpfs /scratch:size=64m (repeatable)
  --cap-add CAP         keep a capability, e.g. CAP_NET_BIND_SERVICE (repeatable)
  --uid N / --gid N     ids inside (default 0, mapped to an unprivileged host id)
  --env K=V             set a variable (repeatable; the default environment is PATH and HOME)
  --cwd DIR             working directory inside (default /)
  --timeout MS          kill the sandbox after MS milliseconds
  --no-user             no user namespace (sandbox root is host root; weaker)
  --share NS            do not create namespace NS (pid, mount, uts, ipc, net, cgroup, user)
  -t, --tty             give CMD a terminal (a pty of the sandbox's own devpts), sized as this one
  -i, --interactive     keep stdin open (with -t: this terminal in raw mode, as docker run -it)
  -h, --help            this text
`;

function die(msg: string, code = 2): never {
  process.stderr.write(`nsbox: ${msg}\n`);
  process.exit(code);
}

export function parseArgs(argv: string[]): { cmd: string; file: string; args: string[]; options: SpawnIsolatedOptions; interactive: boolean } {
  const [cmd, ...rest] = argv;
  let interactiveFlag = false;
  if (!cmd || cmd === '-h' || cmd === '--help') { process.stdout.write(USAGE); process.exit(cmd ? 0 : 2); }
  if (cmd === 'doctor' || cmd === 'gc') return { cmd, file: '', args: rest, options: {}, interactive: false };
  if (cmd !== 'run' && cmd !== 'explain') die(`unknown command '${cmd}'\n${USAGE}`);
  const o: SpawnIsolatedOptions = {};
  const mounts: Mount[] = [];
  const env: Record<string, string> = {};
  const caps: string[] = [];
  let i = 0;
  const value = (flag: string) => {
    const v = rest[++i];
    if (v === undefined) die(`${flag} needs a value`);
    return v;
  };
  for (; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--') { i++; break; }
    if (!a.startsWith('-')) break;
    switch (a) {
      case '--rootfs': o.rootfs = value(a); break;
      case '--rw-rootfs': o.rootfs = { path: typeof o.rootfs === 'string' ? o.rootfs : die('--rw-rootfs goes after --rootfs'), readonly: false }; break;
      case '--hostname': o.hostname = value(a); break;
      case '--bind': {
        const [src, dst, ro, ...more] = value(a).split(':');
        if (!src || !dst || more.length || (ro !== undefined && ro !== 'ro' && ro !== 'rw')) die(`--bind takes SRC:DST[:ro] (got ${rest[i]})`);
        mounts.push({ type: 'bind', source: src, target: dst, readonly: ro === 'ro' });
        break;
      }
      case '--tmpfs': {
        const v = value(a);
        const c = v.indexOf(':');
        mounts.push({ type: 'tmpfs', target: c < 0 ? v : v.slice(0, c), options: c < 0 ? undefined : v.slice(c + 1) });
        break;
      }
      case '--cap-add': caps.push(value(a)); break;
      case '--uid': o.uid = Number(value(a)); break;
      case '--gid': o.gid = Number(value(a)); break;
      case '--cwd': o.cwd = value(a); break;
      case '--env': {
        const v = value(a);
        const eq = v.indexOf('=');
        if (eq <= 0) die(`--env takes K=V (got ${v})`);
        env[v.slice(0, eq)] = v.slice(eq + 1);
        break;
      }
      case '--timeout': o.timeout = Number(value(a)); break;
      case '--no-user': o.user = false; break;
      case '--share': {
        const t = value(a);
        o.namespaces = { ...o.namespaces, [t]: false };
        break;
      }
      case '-h': case '--help': process.stdout.write(USAGE); process.exit(0);
      case '-t': case '--tty': o.tty = true; break;
      case '-i': case '--interactive': interactiveFlag = true; break;
      case '-it': case '-ti': o.tty = true; interactiveFlag = true; break;
      default: die(`unknown option ${a}\n${USAGE}`);
    }
  }
  const [file, ...args] = rest.slice(i);
  if (!file) die(`no command given\n${USAGE}`);
  if (mounts.length) o.mounts = mounts;
  if (caps.length) o.capabilities = caps;
  if (Object.keys(env).length) o.env = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', ...env };
  return { cmd, file, args, options: o, interactive: interactiveFlag };
}

async function main(): Promise<void> {
  const { cmd, file, args, options, interactive: keepStdin } = parseArgs(process.argv.slice(2));
  try {
    if (cmd === 'doctor') {
      const report = doctor();
      const attacks = args.includes('--self-test') ? selfTest() : undefined;
      const sandbox = args.includes('--self-test') && report.root ? await sandboxSelfTest() : undefined;
      if (args.includes('--json')) {
        process.stdout.write(`${JSON.stringify({ ...report, selfTest: attacks, sandboxSelfTest: sandbox }, null, 2)}\n`);
      } else {
        process.stdout.write(`nsbox doctor: kernel ${report.kernel}, ${report.root ? 'root' : 'not root'}\n`);
        for (const c of report.checks) {
          process.stdout.write(`  [${c.status.padEnd(7)}] ${c.title}: ${c.detail}\n`);
          if (c.fix) process.stdout.write(`            fix: ${c.fix}\n`);
        }
        for (const a of attacks ?? []) process.stdout.write(`  [${a.denied ? 'denied ' : 'ALLOWED'}] ${a.title}: ${a.got} (want ${a.expect})${a.note ? `: ${a.note}` : ''}\n`);
        for (const a of sandbox ?? []) process.stdout.write(`  [${a.denied ? 'held   ' : 'ESCAPED'}] in a sandbox: ${a.title}: ${a.got}\n`);
      }
      process.exitCode = report.ok && (attacks ?? []).every((a) => a.denied) && (sandbox ?? []).every((a) => a.denied) ? 0 : 1;
      return;
    }
    if (cmd === 'gc') {
      const stores: string[] = [];
      let json = false;
      for (let i = 0; i < args.length; i++) {
        const a = args[i]!;
        if (a === '--json') json = true;
        else if (a === '--store') {
          const v = args[++i];
          if (v === undefined || !v.startsWith('/')) die('--store needs an absolute path');
          stores.push(v);
        } else if (a === '-h' || a === '--help') { process.stdout.write('usage: nsbox gc [--json] [--store DIR]...\n'); return; }
        else die(`gc: unknown option ${a} (usage: nsbox gc [--json] [--store DIR]...)`);
      }
      let r;
      try {
        r = await gc({ stores });
      } catch (e) {
        die(`gc failed: ${(e as Error).message}`, 1);
      }
      process.stdout.write(json ? `${JSON.stringify(r, null, 2)}\n` : formatGcReport(r));
      const priv = gcPrivilegeLine(r);
      if (priv) { process.stderr.write(`${priv}\n`); process.exitCode = 1; }
      return;
    }
    if (cmd === 'explain') {
      process.stdout.write(`${JSON.stringify(explain(file, args, options), null, 2)}\n`);
      return;
    }
    if (options.tty) {
      // docker run -it: the sandbox's own pty, this terminal raw, sizes followed
      const out = process.stdout;
      if (out.isTTY) options.tty = { rows: out.rows, cols: out.columns };
      const p = spawnIsolated(file, args, { ...options, buffer: false });
      p.stdout!.pipe(out);
      const raw = keepStdin && process.stdin.isTTY === true;
      if (raw) process.stdin.setRawMode(true);
      if (keepStdin) process.stdin.pipe(p.stdin!);
      const onResize = () => { try { p.resize(out.rows, out.columns); } catch { /* ended */ } };
      if (out.isTTY) out.on('resize', onResize);
      for (const s of ['SIGTERM', 'SIGHUP'] as const) process.on(s, () => p.kill(s));
      const r = await p;
      out.off('resize', onResize);
      if (raw) process.stdin.setRawMode(false);
      process.stdin.unpipe();
      process.stdin.destroy();
      if (r.timedOut) process.stderr.write(`nsbox: timed out after ${options.timeout} ms\n`);
      process.exitCode = r.exitCode ?? 128 + ((osConstants.signals as Record<string, number>)[r.signal ?? 'SIGKILL'] ?? 9);
      return;
    }
    const interactive = process.stdin.isTTY === true;
    const p = spawnIsolated(file, args, { ...options, stdio: [interactive ? 'inherit' : 'pipe', 'inherit', 'inherit'], buffer: false });
    if (!interactive && p.stdin) process.stdin.pipe(p.stdin);
    // forward termination signals to the sandbox
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, () => p.kill(s));
    const r = await p;
    process.stdin.unpipe();
    process.stdin.destroy();
    if (r.timedOut) process.stderr.write(`nsbox: timed out after ${options.timeout} ms\n`);
    const code = r.exitCode ?? 128 + ((osConstants.signals as Record<string, number>)[r.signal ?? 'SIGKILL'] ?? 9);
    process.exitCode = code;
  } catch (e) {
    if (e instanceof NsboxError) die(`${e.message} [${e.code}, step ${e.step ?? '?'}]`, 125);
    if (e instanceof TypeError || e instanceof RangeError) die(e.message, 2);
    throw e;
  }
}

main().catch((e) => die(String(e?.stack ?? e), 125));
