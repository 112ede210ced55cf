#!/usr/bin/env node
// `nsbox` command line: a thin layer over the public API.
import {
  spawnIsolated, explain, NsboxError, doctor, selfTest, sandboxSelfTest, LayerStore, IMAGE_COMMAND,
  type SpawnIsolatedOptions, type Mount, type PublishSpec, type EgressRule, type EgressDeniedEvent,
} from './index.js';
import { constants as osConstants } from 'node:os';
import { gc, formatGcReport, gcPrivilegeLine } from './gc.js';
import { createRequire } from 'node:module';
import { existsSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';

const VERSION = (createRequire(import.meta.url)('../package.json') as { version: string }).version;
const DEFAULT_STORE = '/var/lib/nsbox/overlay2 for root, ~/.local/share/nsbox/store (or $XDG_DATA_HOME/nsbox/store) for other users';

const RUN_OPTIONS = `options:
  --rootfs DIR            root filesystem (default: the host's system dirs read-only, fresh /tmp, /home, /root, /run)
  --rw-rootfs             make --rootfs writable
  --image REF             run an image of the store (name[:tag] or id); with no CMD, its Entrypoint/Cmd
  --store DIR             the image store (default $NSBOX_STORE, else /var/lib/nsbox/overlay2 for
                          root, ~/.local/share/nsbox/store for other users)
  --hostname H            hostname inside (default nsbox)
  -v, --volume SRC:DST[:ro]
                          bind-mount a host path; a relative SRC is from the current directory
                          (repeatable; --bind is the same)
  --tmpfs DST[:OPTS]      mount a tmpfs, e.g. --tmpfs /scratch:size=64m (repeatable)
  -e, --env K=V           set a variable; -e K passes this shell's K (repeatable; the default
                          environment is PATH and HOME, an image's Env with --image)
  -w, --workdir DIR       working directory inside (default /; --cwd is the same)
  -u, --user UID[:GID]    ids inside (default 0, mapped to an unprivileged host id); also --uid N, --gid N
  --cap-add CAP           keep a capability, e.g. CAP_NET_BIND_SERVICE (repeatable)
  --network MODE          none (default: only lo), loopback, host, user (pasta/slirp4netns),
                          bridge or bridge:NAME (a veth on an nsbox bridge, root only), or
                          egress (only lo and nsbox's proxy: the hosts --allow names, by name)
  --allow HOST[:PORTS]    with --network egress (implied): a host the sandbox may reach through
                          the proxy: a name, *.example.com (its subdomains), an address or a
                          CIDR block, PORTS e.g. 443 or 80,443 (repeatable; default: none)
  --deny HOST[:PORTS]     a host it may not reach, even if allowed (repeatable)
  --allow-private ADDR    allow an address or block in a protected range (loopback, private,
                          link-local, the host's own), e.g. a mirror on 10.0.0.5 (repeatable)
  --transparent           with --network egress, root only: programs that ignore the proxy
                          variables are redirected to it too (TCP to ports 80 and 443)
  -p, --publish [IP:]HOST:CONTAINER[/tcp|udp]
                          publish a port (repeatable; implies --network bridge unless user)
  -m, --memory SIZE       memory limit, e.g. 64m, 1g
  --cpus N                CPU limit, e.g. 0.5
  --pids N                process limit (--pids-limit is the same)
  --timeout DURATION      kill the sandbox after DURATION: 1s, 500ms, 2m, 1h (a bare number is ms)
  --no-user               no user namespace (sandbox root is host root; weaker)
  --share NS              do not create namespace NS (pid, mount, uts, ipc, net, cgroup, user)
  -t, --tty               give CMD a terminal (a pty of the sandbox's own devpts), sized as this one
  -i, --interactive       keep stdin open (with -t: this terminal in raw mode, as docker run -it)
  -h, --help              this text`;

const HELP: Record<string, string> = {
  run: `usage: nsbox run [options] [--] CMD [ARGS...]
       nsbox run --image REF [options] [-- CMD [ARGS...]]

Runs CMD in a new sandbox. Exit status: CMD's (128+N if signal N killed it), 125 when the
sandbox could not be made, 2 for bad usage.

${RUN_OPTIONS}
`,
  explain: `usage: nsbox explain [options] [--] CMD [ARGS...]

Prints the plan and its isolation report instead of running it (the options of nsbox run).
`,
  image: `usage: nsbox image import [--store DIR] [--name REF] FILE
                                  a docker save tar or an OCI layout (directory or tar)
       nsbox image ls [--store DIR] [--json]
       nsbox image rm [--store DIR] REF...

The store is a directory in Docker's overlay2 layout (default $NSBOX_STORE, else
${DEFAULT_STORE}); nsbox run --image REF runs its images. On a terminal, import shows
its progress (layer, bytes, rate) on stderr.
`,
  doctor: `usage: nsbox doctor [--self-test] [--json]

What this host allows, each with a fix. --self-test also runs the seccomp attack battery and
the sandbox escape battery (exit 1 if anything gets through).
`,
  gc: `usage: nsbox gc [--json] [--store DIR]...

Removes what dead nsbox processes left: cgroups, container mounts and ephemeral containers
(registered stores and each --store), sandbox state, veths, IPAM and nftables entries,
temporary dirs. --json prints the report as JSON. Needs root for everything but the
caller's own cgroups and stores.
`,
};

const USAGE = `usage:
  nsbox run [options] [--] CMD [ARGS...]    run CMD in a new sandbox; exit status = CMD's (128+N if killed by signal N)
  nsbox explain [options] [--] CMD [ARGS...]
                                            print the plan instead of running it
  nsbox image import|ls|rm ...              an image store (nsbox run --image REF runs its images)
  nsbox doctor [--self-test] [--json]       what this host allows, each with a fix; --self-test runs the
                                            seccomp attack battery (exit 1 if anything gets through)
  nsbox gc [--json] [--store DIR]           remove what dead nsbox processes left: cgroups, container mounts
                                            and ephemeral containers (registered stores and each --store),
                                            sandbox state, veths, IPAM and nftables entries, temporary dirs
  nsbox --version

nsbox COMMAND --help (or nsbox help COMMAND) says more.

${RUN_OPTIONS}
`;

function die(msg: string, code = 2): never {
  process.stderr.write(`nsbox: ${msg}\n`);
  process.exit(code);
}

function usageError(cmd: string | undefined, msg: string): never {
  die(`${msg}\n(nsbox ${cmd && HELP[cmd] ? `${cmd} ` : ''}--help for usage)`);
}

/** What the API calls an option, in the words the user typed: for errors. */
interface Words {
  cmd: string;
  mounts: string[];   // the flag and value that made options.mounts[i]
  publish: string[];  // the value of the i-th --publish
  allow: string[];    // the flag and value that made options.network.allow[i]
  deny: string[];     // the value of the i-th --deny
}

/** `1s`, `500ms`, `2m`, `1.5h`; a bare number is milliseconds (as the API takes it). */
export function parseDuration(flag: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v.trim());
  if (!m) usageError('run', `${flag} takes a duration like 1s, 500ms or 2m (got '${v}')`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 'ms']!;
}

function parseNumber(flag: string, v: string, integer = false): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) usageError('run', `${flag} takes ${integer ? 'a whole number' : 'a number'} (got '${v}')`);
  return n;
}

/** `--allow`/`--deny` HOST[:PORTS]: a name, pattern, address or block; PORTS `443` or `80,443` (an IPv6 address with ports in brackets: `[2001:db8::1]:443`). */
export function parseHostRule(cmd: string, flag: string, v: string): EgressRule {
  let host = v, ports: number[] | undefined;
  const m = /^(\[[^\]]+\]|[^:]+):(\d+(?:,\d+)*)$/.exec(v);
  if (m) {
    host = m[1]!.replace(/^\[|\]$/g, '');
    ports = m[2]!.split(',').map(Number);
  } else if (/^\[.*\]$/.test(v)) host = v.slice(1, -1);
  if (host === '') usageError(cmd, `${flag} takes HOST[:PORTS] (got '${v}')`);
  // the pattern itself (and the ports' range) is checked by the API, whose message names the flag
  return ports ? { host, ports } : { host };
}

function parsePublish(v: string): PublishSpec {
  const m = /^(?:(\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:]+\]):)?(\d+):(\d+)(?:\/(tcp|udp))?$/.exec(v);
  if (!m) usageError('run', `--publish takes [IP:]HOST:CONTAINER[/tcp|udp] (got '${v}')`);
  return {
    host: Number(m[2]), container: Number(m[3]),
    ...(m[1] ? { hostIp: m[1].replace(/^\[|\]$/g, '') } : {}),
    ...(m[4] ? { protocol: m[4] as 'tcp' | 'udp' } : {}),
  };
}

export function parseArgs(argv: string[]): {
  cmd: string; file: string; args: string[]; options: SpawnIsolatedOptions; interactive: boolean; words: Words; image?: string; store?: string;
} {
  let [cmd, ...rest] = argv;
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') { process.stdout.write(`nsbox ${VERSION}\n`); process.exit(0); }
  if (cmd === 'help') {
    const topic = rest[0];
    if (topic && !HELP[topic]) usageError(undefined, `no help for '${topic}' (commands: ${Object.keys(HELP).join(', ')})`);
    process.stdout.write(topic ? HELP[topic]! : USAGE);
    process.exit(0);
  }
  if (!cmd || cmd === '-h' || cmd === '--help') { process.stdout.write(USAGE); process.exit(cmd ? 0 : 2); }
  if (cmd === 'images') { cmd = 'image'; rest = ['ls', ...rest]; }
  const words: Words = { cmd, mounts: [], publish: [], allow: [], deny: [] };
  if (cmd === 'doctor' || cmd === 'gc' || cmd === 'image') {
    if (rest.includes('-h') || rest.includes('--help')) { process.stdout.write(HELP[cmd]!); process.exit(0); }
    return { cmd, file: '', args: rest, options: {}, interactive: false, words };
  }
  if (cmd !== 'run' && cmd !== 'explain') usageError(undefined, `unknown command '${cmd}' (commands: run, explain, image, doctor, gc)`);
  const o: SpawnIsolatedOptions = {};
  const mounts: Mount[] = [];
  const env: Record<string, string> = {};
  const caps: string[] = [];
  const limits: NonNullable<SpawnIsolatedOptions['limits']> = {};
  const publish: PublishSpec[] = [];
  let network: string | undefined;
  const allow: EgressRule[] = [];
  const deny: EgressRule[] = [];
  let transparent = false;
  let image: string | undefined;
  let store: string | undefined;
  let interactiveFlag = false;
  let i = 0;
  let inline: string | undefined;
  let inlineUsed = false;
  const value = (flag: string) => {
    if (inline !== undefined) { inlineUsed = true; return inline; }
    const v = rest[++i];
    if (v === undefined) usageError(cmd, `${flag} needs a value`);
    return v;
  };
  const bind = (flag: string) => {
    const v = value(flag);
    const parts = v.split(':');
    const [src, dst, mode, ...more] = parts;
    if (!src || !dst || more.length || (mode !== undefined && mode !== 'ro' && mode !== 'rw')) usageError(cmd, `${flag} takes SRC:DST[:ro] (got '${v}')`);
    mounts.push({ type: 'bind', source: resolve(src), target: dst, readonly: mode === 'ro' });
    words.mounts.push(`${flag} ${v}`);
  };
  for (; i < rest.length; i++) {
    let a = rest[i]!;
    if (a === '--') { i++; break; }
    if (!a.startsWith('-') || a === '-') break;
    inline = undefined;
    inlineUsed = false;
    if (a.startsWith('--') && a.includes('=')) { inline = a.slice(a.indexOf('=') + 1); a = a.slice(0, a.indexOf('=')); }
    switch (a) {
      case '--rootfs': o.rootfs = resolve(value(a)); break;
      case '--rw-rootfs': o.rootfs = { path: typeof o.rootfs === 'string' ? o.rootfs : usageError(cmd, '--rw-rootfs goes after --rootfs'), readonly: false }; break;
      case '--image': image = value(a); break;
      case '--store': store = resolve(value(a)); break;
      case '--hostname': o.hostname = value(a); break;
      case '-v': case '--volume': case '--bind': bind(a); break;
      case '--tmpfs': {
        const v = value(a);
        const c = v.indexOf(':');
        mounts.push({ type: 'tmpfs', target: c < 0 ? v : v.slice(0, c), options: c < 0 ? undefined : v.slice(c + 1) });
        words.mounts.push(`--tmpfs ${v}`);
        break;
      }
      case '--cap-add': caps.push(value(a)); break;
      case '-u': case '--user': {
        const v = value(a);
        const m = /^(\d+)(?::(\d+))?$/.exec(v);
        if (!m) usageError(cmd, `${a} takes UID[:GID] as numbers (got '${v}')`);
        o.uid = Number(m[1]);
        if (m[2] !== undefined) o.gid = Number(m[2]);
        break;
      }
      case '--uid': o.uid = parseNumber(a, value(a), true); break;
      case '--gid': o.gid = parseNumber(a, value(a), true); break;
      case '-w': case '--workdir': case '--cwd': o.cwd = value(a); break;
      case '-e': case '--env': {
        const v = value(a);
        const eq = v.indexOf('=');
        if (eq === 0 || v === '') usageError(cmd, `${a} takes K=V or K (got '${v}')`);
        if (eq < 0) { if (process.env[v] !== undefined) env[v] = process.env[v]!; } // docker's -e K
        else env[v.slice(0, eq)] = v.slice(eq + 1);
        break;
      }
      case '--timeout': o.timeout = parseDuration(a, value(a)); break;
      case '--network': case '--net': network = value(a); break;
      case '-p': case '--publish': { const v = value(a); publish.push(parsePublish(v)); words.publish.push(v); break; }
      case '--allow': { const v = value(a); allow.push(parseHostRule(cmd, a, v)); words.allow.push(`${a} ${v}`); break; }
      case '--allow-private': { const v = value(a); allow.push({ ...parseHostRule(cmd, a, v), allowPrivate: true }); words.allow.push(`${a} ${v}`); break; }
      case '--transparent': transparent = true; break;
      case '--deny': { const v = value(a); deny.push(parseHostRule(cmd, a, v)); words.deny.push(`${a} ${v}`); break; }
      case '-m': case '--memory': limits.memory = value(a); break;
      case '--cpus': limits.cpus = parseNumber(a, value(a)); break;
      case '--pids': case '--pids-limit': limits.pids = parseNumber(a, value(a), true); break;
      case '--no-user': o.user = false; break;
      case '--share': {
        const t = value(a);
        const types = ['pid', 'mount', 'uts', 'ipc', 'net', 'cgroup', 'user'];
        if (!types.includes(t)) usageError(cmd, `--share takes one of ${types.join(', ')} (got '${t}')`);
        o.namespaces = { ...o.namespaces, [t]: false };
        break;
      }
      case '-h': case '--help': process.stdout.write(HELP[cmd]!); process.exit(0);
      case '-t': case '--tty': o.tty = true; break;
      case '-i': case '--interactive': interactiveFlag = true; break;
      case '-it': case '-ti': o.tty = true; interactiveFlag = true; break;
      default: usageError(cmd, `unknown option ${a}`);
    }
    if (inline !== undefined && !inlineUsed) usageError(cmd, `${a} takes no value`);
  }
  let [file, ...args] = rest.slice(i);
  if (image !== undefined) {
    if (cmd === 'explain') usageError(cmd, "explain does not take --image (an image's container is made when it runs)");
    if (o.rootfs !== undefined) usageError(cmd, '--image and --rootfs exclude each other');
    if (!file) file = IMAGE_COMMAND; // the image's Entrypoint + Cmd
  } else if (store !== undefined) usageError(cmd, '--store goes with --image');
  if (!file) usageError(cmd, 'no command given');
  if (network !== undefined) {
    const [mode, name, ...more] = network.split(':');
    if (more.length || (name !== undefined && mode !== 'bridge') || !['none', 'loopback', 'host', 'user', 'bridge', 'egress'].includes(mode!)) {
      usageError(cmd, `--network takes none, loopback, host, user, bridge, bridge:NAME or egress (got '${network}')`);
    }
  }
  const egressRules = allow.length + deny.length > 0 || transparent;
  const mode = network?.split(':')[0] ?? (publish.length ? 'bridge' : egressRules ? 'egress' : undefined);
  if (publish.length && mode !== 'bridge' && mode !== 'user') usageError(cmd, `--publish needs --network bridge or user (got --network ${network})`);
  if (egressRules && mode !== 'egress') usageError(cmd, `--allow, --allow-private, --deny and --transparent need --network egress (got --network ${network})`);
  if (mode === 'egress') {
    o.network = { mode: 'egress', allow, ...(deny.length ? { deny } : {}), ...(transparent ? { transparent } : {}) };
  } else if (mode === 'bridge') {
    const name = network?.split(':')[1];
    o.network = { ...(name ? { bridge: name } : {}), ...(publish.length ? { publish } : {}) };
  } else if (mode === 'user') o.network = publish.length ? { mode: 'user', publish } : 'user';
  else if (mode !== undefined) o.network = mode as 'none' | 'loopback' | 'host';
  if (Object.keys(limits).length) o.limits = limits;
  if (mounts.length) o.mounts = mounts;
  if (caps.length) o.capabilities = caps;
  if (image !== undefined) {
    // the image's own Env applies, then -e (so no PATH/HOME defaults over it)
    if (Object.keys(env).length) o.env = env;
  } else if (Object.keys(env).length) o.env = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', ...env };
  return { cmd, file, args, options: o, interactive: interactiveFlag, words, ...(image !== undefined ? { image, store: store ?? storeDir() } : {}) };
}

/** An egress-denied event in a line: `registry.npmjs.org:443 (not-allowed)`, `GET http://a.test/x (deny-rule)`, `DNS a.test (not-allowed)`. */
export function egressDeniedWords(e: EgressDeniedEvent): string {
  const host = e.host.includes(':') ? `[${e.host}]` : e.host;
  const what = e.protocol === 'dns' ? `DNS ${e.host}` : e.protocol === 'http' && e.method ? `${e.method} http://${host}${e.port === 80 ? '' : `:${e.port}`}${e.path ?? ''}` : `${host}:${e.port}`;
  return `${what} (${e.reason}${e.detail ? `: ${e.detail}` : ''})`;
}

function storeDir(): string {
  return process.env.NSBOX_STORE ? resolve(process.env.NSBOX_STORE) : LayerStore.defaultRoot();
}

/**
 * The API names options as in code (`options.limits.memory`); say them as the user typed
 * them (`--memory`).
 */
export function cliWords(message: string, words: Words): string {
  // a protected address's advice, as a flag
  message = message.replace(/give \{ host: '([^']+)', allowPrivate: true \} to mean it/g, 'give --allow-private $1 to mean it');
  // the limits parser names its fields without the `options.` prefix
  return message.replace(/\b(?:options((?:\.[A-Za-z_$][\w$]*|\[\d+\])*)|limits(\.\w+))/g, (whole, opt: string | undefined, limit: string | undefined) => {
    const path = opt ?? `.limits${limit}`;
    const at = (re: RegExp) => re.exec(path);
    let m: RegExpExecArray | null;
    if ((m = at(/^\.mounts\[(\d+)\](.*)$/)) && words.mounts[Number(m[1])]) return `${words.mounts[Number(m[1])]}${m[2] ? `: ${m[2].slice(1)}` : ''}`;
    if ((m = at(/^\.network\.publish\[(\d+)\]/)) && words.publish[Number(m[1])]) return `--publish ${words.publish[Number(m[1])]}`;
    if ((m = at(/^\.network\.allow\[(\d+)\]/)) && words.allow[Number(m[1])]) return words.allow[Number(m[1])]!;
    if ((m = at(/^\.network\.deny\[(\d+)\]/)) && words.deny[Number(m[1])]) return words.deny[Number(m[1])]!;
    if ((m = at(/^\.namespaces\.(\w+)/))) return `--share ${m[1]}`;
    const table: [RegExp, string][] = [
      [/^\.timeout$/, '--timeout'], [/^\.limits\.memory/, '--memory'], [/^\.limits\.cpus/, '--cpus'], [/^\.limits\.pids/, '--pids'],
      [/^\.limits/, 'the limits (--memory, --cpus, --pids)'], [/^\.network\.publish/, '--publish'], [/^\.network\.allow/, '--allow'], [/^\.network\.deny/, '--deny'], [/^\.network\.transparent/, '--transparent'], [/^\.network/, '--network'],
      [/^\.mounts/, '--volume'], [/^\.env/, '--env'], [/^\.cwd/, '--workdir'], [/^\.uid/, '--uid'], [/^\.gid/, '--gid'],
      [/^\.hostname/, '--hostname'], [/^\.capabilities/, '--cap-add'], [/^\.rootfs/, '--rootfs'], [/^\.image\.store/, '--store'],
      [/^\.image/, '--image'], [/^\.namespaces/, '--share'], [/^\.user/, '--no-user'], [/^\.tty/, '--tty'],
      [/^\.name$/, '--name'],
    ];
    for (const [re, flag] of table) if (re.test(path)) return flag;
    return whole;
  });
}

/** A one-line progress display on stderr when it is a terminal; nothing when piped. */
function progressLine(): { show(text: string, force?: boolean): void; end(): void } {
  const out = process.stderr;
  const live = out.isTTY === true && process.env.TERM !== 'dumb';
  let last = 0;
  let shown = false;
  return {
    show(text, force = false) {
      if (!live) return;
      const now = Date.now();
      if (!force && now - last < 100) return;
      last = now;
      shown = true;
      out.write(`\r\x1b[K${text.slice(0, Math.max(20, (out.columns || 80) - 1))}`);
    },
    end() { if (shown) out.write('\r\x1b[K'); shown = false; },
  };
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

async function imageCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const flags: Record<string, string | boolean> = {};
  const operands: string[] = [];
  const words: Words = { cmd: 'image', mounts: [], publish: [], allow: [], deny: [] };
  for (let i = 0; i < rest.length; i++) {
    let a = rest[i]!;
    if (a === '--') { operands.push(...rest.slice(i + 1)); break; }
    if (!a.startsWith('-') || a === '-') { operands.push(a); continue; }
    let inline: string | undefined;
    if (a.startsWith('--') && a.includes('=')) { inline = a.slice(a.indexOf('=') + 1); a = a.slice(0, a.indexOf('=')); }
    if (a === '--store' || a === '--name') {
      const v = inline ?? rest[++i];
      if (v === undefined) usageError('image', `${a} needs a value`);
      flags[a.slice(2)] = v;
    } else if (a === '--json') flags.json = true;
    else usageError('image', `unknown option ${a}`);
  }
  const root = typeof flags.store === 'string' ? resolve(flags.store) : storeDir();
  const existing = () => {
    if (!existsSync(root)) die(`no image store at ${root} (nsbox image import FILE makes one; --store DIR or $NSBOX_STORE to use another)`, 1);
    return LayerStore.open(root);
  };
  try {
    if (sub === 'import') {
      if (operands.length !== 1) usageError('image', 'image import takes one FILE');
      const file = resolve(operands[0]!);
      const store = LayerStore.open(root);
      const bar = progressLine();
      const t0 = Date.now();
      let done = 0; // bytes of the layers finished
      let total = 0;
      const archive = existsSync(file) && statSync(file).isFile() ? ` (${mb(statSync(file).size)} archive)` : '';
      bar.show(`importing ${basename(file)}${archive}: reading`, true);
      let lastLayer = -1;
      let lastBytes = 0;
      const im = await store.importImage(file, {
        ...(typeof flags.name === 'string' ? { name: flags.name } : {}),
        onProgress: (p) => {
          const first = p.layer !== lastLayer; // each layer shows at least once, however fast
          if (first) { done += lastBytes; lastLayer = p.layer; lastBytes = 0; }
          lastBytes = p.bytes;
          total = done + p.bytes;
          const s = (Date.now() - t0) / 1000;
          bar.show(`importing ${basename(file)}: layer ${p.layer + 1}/${p.layers}  ${mb(total)}  ${(total / 1e6 / Math.max(s, 0.001)).toFixed(1)} MB/s`, first);
        },
      });
      bar.end();
      const s = (Date.now() - t0) / 1000;
      const n = im.layers.length;
      if (flags.json) process.stdout.write(`${JSON.stringify({ ...im, bytes: total, seconds: s })}\n`);
      else process.stdout.write(`${im.names.join(', ') || im.id}  ${im.id}  (${n} layer${n === 1 ? '' : 's'}, ${mb(total)} in ${s.toFixed(1)} s)\n`);
      return;
    }
    if (sub === 'ls') {
      if (operands.length) usageError('image', 'image ls takes no operands');
      if (!existsSync(root)) { if (flags.json) process.stdout.write('[]\n'); return; }
      const images = LayerStore.open(root).images();
      if (flags.json) { process.stdout.write(`${JSON.stringify(images, null, 2)}\n`); return; }
      const rows = [['NAME', 'IMAGE ID', 'LAYERS', 'CREATED'], ...images.map((im) => [im.names.join(',') || '<none>', im.id.slice(7, 19), String(im.layers.length), im.created])];
      const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
      for (const r of rows) process.stdout.write(`${r.map((x, c) => x.padEnd(w[c]!)).join('   ').trimEnd()}\n`);
      return;
    }
    if (sub === 'rm') {
      if (!operands.length) usageError('image', 'image rm takes one or more REF');
      const store = existing();
      for (const ref of operands) { await store.removeImage(ref); process.stdout.write(`removed ${ref}\n`); }
      return;
    }
    usageError('image', sub ? `unknown image command '${sub}' (import, ls, rm)` : 'image needs a command (import, ls, rm)');
  } catch (e) {
    if (e instanceof NsboxError) die(`${e.message} [${e.code}, step ${e.step ?? '?'}]`, 1);
    if (e instanceof TypeError || e instanceof RangeError) die(cliWords(e.message, words).replace(/^path\b/, 'FILE'), 2);
    throw e;
  }
}

async function main(): Promise<void> {
  const { cmd, file, args, options, interactive: keepStdin, words, image, store } = parseArgs(process.argv.slice(2));
  try {
    if (cmd === 'image') return await imageCommand(args);
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
      // 1 only when the default spawn cannot work here (or a self-test attack got through)
      process.exitCode = report.defaultSpawn && (attacks ?? []).every((a) => a.denied) && (sandbox ?? []).every((a) => a.denied) ? 0 : 1;
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
          if (v === undefined || v.startsWith('-')) die('gc: --store needs a directory');
          stores.push(resolve(v));
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
    if (image !== undefined) {
      if (!existsSync(store!)) die(`--store ${store}: no image store there (nsbox image import FILE makes one)`, 2);
      options.image = { store: LayerStore.open(store!), ref: image };
    }
    if (cmd === 'explain') {
      process.stdout.write(`${JSON.stringify(explain(file, args, options), null, 2)}\n`);
      return;
    }
    const timeoutWords = () => (options.timeout! % 1000 === 0 ? `${options.timeout! / 1000} s` : `${options.timeout} ms`);
    if (options.tty) {
      // docker run -it: the sandbox's own pty, this terminal raw, sizes followed
      const out = process.stdout;
      if (out.isTTY) options.tty = { rows: out.rows, cols: out.columns };
      const p = spawnIsolated(file, args, { ...options, buffer: false });
      p.on('egress-denied', (e: EgressDeniedEvent) => process.stderr.write(`nsbox: egress denied: ${egressDeniedWords(e)}\r\n`));
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
      if (r.timedOut) process.stderr.write(`nsbox: timed out after ${timeoutWords()} (--timeout)\n`);
      process.exitCode = r.exitCode ?? 128 + ((osConstants.signals as Record<string, number>)[r.signal ?? 'SIGKILL'] ?? 9);
      return;
    }
    const interactive = process.stdin.isTTY === true;
    const p = spawnIsolated(file, args, { ...options, stdio: [interactive ? 'inherit' : 'pipe', 'inherit', 'inherit'], buffer: false });
    p.on('egress-denied', (e: EgressDeniedEvent) => process.stderr.write(`nsbox: egress denied: ${egressDeniedWords(e)}\n`));
    if (!interactive && p.stdin) process.stdin.pipe(p.stdin);
    // forward termination signals to the sandbox
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, () => p.kill(s));
    const r = await p;
    process.stdin.unpipe();
    process.stdin.destroy();
    if (r.timedOut) process.stderr.write(`nsbox: timed out after ${timeoutWords()} (--timeout)\n`);
    const code = r.exitCode ?? 128 + ((osConstants.signals as Record<string, number>)[r.signal ?? 'SIGKILL'] ?? 9);
    process.exitCode = code;
  } catch (e) {
    if (e instanceof NsboxError) die(`${cliWords(e.message, words)} [${e.code}, step ${e.step ?? '?'}]`, 125);
    if (e instanceof TypeError || e instanceof RangeError) die(cliWords(e.message, words), 2);
    throw e;
  }
}

main().catch((e) => die(String(e?.stack ?? e), 125));
