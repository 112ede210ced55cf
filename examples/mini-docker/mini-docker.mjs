#!/usr/bin/env node
// mini-docker: a docker-like CLI on nsbox's public API (LayerStore, Sandbox, bridge network).
//   mini-docker import FILE [NAME]            docker save tar or OCI layout (dir or tar)
//   mini-docker images                        images and their layers
//   mini-docker run [-d] [--name N] [-p H:C]... [-m 64M] [--cpus 0.5] [-e K=V]... [-w DIR] [--cap-add CAP] IMAGE [CMD...]
//   mini-docker exec [-e K=V]... [-w DIR] NAME CMD...
//   mini-docker ps [-a]                       running (or all) containers
//   mini-docker inspect NAME                  layers, upper dir, merged view, cgroup, holder
//   mini-docker diff NAME                     what the container changed (its upper dir)
//   mini-docker stop [-t SECONDS] NAME
//   mini-docker rm [-f] NAME
//   mini-docker commit NAME [REPO[:TAG]]
// Root only. MINI_DOCKER_ROOT (default /var/lib/nsbox-mini-docker) holds the layer store;
// MINI_DOCKER_STATE (default /run/nsbox-mini-docker) the sandboxes' state files.
import { openSync, closeSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { LayerStore, Sandbox, NsboxError, sweepNetwork } from 'nsbox';

const ROOT = process.env.MINI_DOCKER_ROOT ?? '/var/lib/nsbox-mini-docker';
const STATE = process.env.MINI_DOCKER_STATE ?? '/run/nsbox-mini-docker';
const LOGS = `${ROOT}/nsbox-logs`;

class Usage extends Error {}

/** Splits argv into flags (with values where listed) and the rest, stopping at the first operand. */
// -i keeps stdin, -t gives the command a terminal (the sandbox's own pty), as docker run -it
const TTY_FLAGS = {
  '-i': { key: 'i', bool: true }, '--interactive': { key: 'i', bool: true }, '-t': { key: 'tty', bool: true }, '--tty': { key: 'tty', bool: true },
  '-it': { key: 'tty', bool: true, also: 'i' }, '-ti': { key: 'tty', bool: true, also: 'i' },
};

/** Runs argv in the box on a pty sized as this terminal, raw mode while it runs. */
async function terminal(box, argv, opts, keepStdin) {
  const out = process.stdout;
  const p = box.exec(argv[0], argv.slice(1), { ...opts, tty: out.isTTY ? { rows: out.rows, cols: out.columns } : true, buffer: false });
  p.stdout.pipe(out);
  const raw = keepStdin && process.stdin.isTTY;
  if (raw) process.stdin.setRawMode(true);
  if (keepStdin) process.stdin.pipe(p.stdin);
  const onResize = () => { try { p.resize(out.rows, out.columns); } catch { /* ended */ } };
  if (out.isTTY) out.on('resize', onResize);
  try {
    return await p;
  } finally {
    out.off('resize', onResize);
    if (raw) process.stdin.setRawMode(false);
    process.stdin.unpipe();
    process.stdin.pause();
  }
}

function parseFlags(argv, spec) {
  const flags = {};
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') { i++; break; }
    if (!a.startsWith('-') || a === '-') break;
    const [name, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const kind = spec[name];
    if (!kind) throw new Usage(`unknown flag ${name}`);
    const key = kind.key;
    if (kind.bool) { flags[key] = true; if (kind.also) flags[kind.also] = true; continue; }
    const v = inline ?? argv[++i];
    if (v === undefined) throw new Usage(`${name} needs a value`);
    if (kind.many) (flags[key] ??= []).push(v); else flags[key] = v;
  }
  return { flags, rest: argv.slice(i) };
}

function parseEnv(list = []) {
  const env = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new Usage(`-e wants K=V (got ${kv})`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
}

function parsePublish(list = []) {
  return list.map((p) => {
    const m = /^(?:(\d+\.\d+\.\d+\.\d+):)?(\d+):(\d+)(?:\/(tcp|udp))?$/.exec(p);
    if (!m) throw new Usage(`-p wants [IP:]HOST:CONTAINER[/tcp|udp] (got ${p})`);
    return { host: Number(m[2]), container: Number(m[3]), ...(m[1] ? { hostIp: m[1] } : {}), ...(m[4] ? { protocol: m[4] } : {}) };
  });
}

const store = () => LayerStore.open(ROOT);
const table = (rows) => {
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  for (const r of rows) console.log(r.map((x, c) => String(x).padEnd(w[c])).join('   ').trimEnd());
};

/** The env of a process in a container: the image's Env (the sandbox's defaults) plus -e. */
async function execEnv(box, extra) {
  if (!Object.keys(extra).length) return undefined;
  const img = box.container ? store().image(box.container.image).config : {};
  const env = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };
  for (const kv of img.Env ?? []) { const i = kv.indexOf('='); if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1); }
  return { ...env, ...extra };
}

const commands = {
  async import(argv) {
    const [file, name] = argv;
    if (!file) throw new Usage('import FILE [NAME]');
    // on a terminal: one line of progress on stderr (layer, bytes, rate); nothing when piped
    const live = process.stderr.isTTY && process.env.TERM !== 'dumb';
    const show = (text) => live && process.stderr.write(`\r\x1b[K${text.slice(0, (process.stderr.columns || 80) - 1)}`);
    const t0 = Date.now();
    let before = 0, layer = -1, bytes = 0, shownAt = 0;
    show(`importing ${file}: reading the archive`);
    const im = await store().importImage(resolve(file), {
      ...(name ? { name } : {}),
      onProgress: (p) => {
        if (p.layer !== layer) { before += bytes; layer = p.layer; shownAt = 0; }
        bytes = p.bytes;
        const now = Date.now();
        if (now - shownAt < 100) return;
        shownAt = now;
        const total = before + bytes;
        show(`importing ${file}: layer ${p.layer + 1}/${p.layers}  ${(total / 1e6).toFixed(1)} MB  ${(total / 1e6 / Math.max((now - t0) / 1000, 0.001)).toFixed(1)} MB/s`);
      },
    });
    if (live) process.stderr.write('\r\x1b[K');
    console.log(`${im.names.join(', ') || im.id}  ${im.id}  (${im.layers.length} layer${im.layers.length === 1 ? '' : 's'})`);
  },

  async images() {
    const s = store();
    const rows = [['REPOSITORY:TAG', 'IMAGE ID', 'LAYERS (bottom first)']];
    for (const im of s.images()) rows.push([im.names.join(',') || '<none>', im.id.slice(7, 19), im.layers.map((l) => l.slice(0, 12)).join(' ')]);
    table(rows);
  },

  async run(argv) {
    const { flags, rest } = parseFlags(argv, {
      '-d': { key: 'detach', bool: true }, '--detach': { key: 'detach', bool: true }, '--name': { key: 'name' },
      '-p': { key: 'publish', many: true }, '--publish': { key: 'publish', many: true }, '-m': { key: 'memory' }, '--memory': { key: 'memory' },
      '--cpus': { key: 'cpus' }, '-e': { key: 'env', many: true }, '--env': { key: 'env', many: true }, '-w': { key: 'cwd' }, '--workdir': { key: 'cwd' },
      '-h': { key: 'hostname' }, '--hostname': { key: 'hostname' }, '--cap-add': { key: 'caps', many: true },
      ...TTY_FLAGS,
    });
    const [ref, ...cmd] = rest;
    if (!ref) throw new Usage('run [-d] [--name N] [-p H:C] [-m 64M] [--cpus 0.5] [-e K=V] IMAGE [CMD...]');
    const s = store();
    const image = s.image(ref);
    const argvToRun = cmd.length ? cmd : [...(image.config.Entrypoint ?? []), ...(image.config.Cmd ?? [])];
    if (!argvToRun.length) throw new Usage(`${ref} has no Entrypoint or Cmd: give a command`);
    const limits = {};
    if (flags.memory) { limits.memory = flags.memory; limits.memorySwap = flags.memory; }
    if (flags.cpus) limits.cpus = Number(flags.cpus);
    const publish = parsePublish(flags.publish);
    const box = await Sandbox.create({
      id: flags.name, stateDir: STATE, keepAlive: true, image: { store: s, ref },
      hostname: flags.hostname ?? flags.name ?? 'mini',
      limits: Object.keys(limits).length ? limits : undefined,
      network: publish.length ? { publish } : 'none',
      // what a server in an image needs most (docker's default set has it too); --cap-add for more
      capabilities: ['CAP_NET_BIND_SERVICE', ...(flags.caps ?? [])],
    });
    const env = await execEnv(box, parseEnv(flags.env));
    if (flags.detach) {
      // the command keeps running after this CLI exits; its output goes to a log file
      mkdirSync(LOGS, { recursive: true, mode: 0o700 });
      const log = openSync(`${LOGS}/${box.id}.log`, 'a', 0o600);
      const p = box.exec(argvToRun[0], argvToRun.slice(1), { env, cwd: flags.cwd, stdio: ['ignore', log, log], parentDeathSignal: false });
      await new Promise((res, rej) => { p.once('spawn', res); p.catch(rej); });
      p.unref();
      closeSync(log);
      console.log(box.id);
      process.exit(0);
    }
    const r = flags.tty
      ? await terminal(box, argvToRun, { env, cwd: flags.cwd }, flags.i)
      : await box.exec(argvToRun[0], argvToRun.slice(1), { env, cwd: flags.cwd, stdio: 'inherit' });
    // like docker: the container stops with its command and stays until rm (commit works)
    await box.kill('SIGTERM', { timeoutMs: 2000 });
    process.exitCode = r.exitCode ?? 128 + (r.signal ? ({ SIGKILL: 9, SIGTERM: 15, SIGINT: 2 }[r.signal] ?? 1) : 1);
  },

  async exec(argv) {
    const { flags, rest } = parseFlags(argv, { '-e': { key: 'env', many: true }, '--env': { key: 'env', many: true }, '-w': { key: 'cwd' }, '--workdir': { key: 'cwd' }, ...TTY_FLAGS });
    const [name, file, ...args] = rest;
    if (!name || !file) throw new Usage('exec [-i] [-t] [-e K=V] [-w DIR] NAME CMD...');
    const box = await Sandbox.attach(name, { stateDir: STATE });
    const env = await execEnv(box, parseEnv(flags.env));
    const r = flags.tty
      ? await terminal(box, [file, ...args], { env, cwd: flags.cwd }, flags.i)
      : await box.exec(file, args, { env, cwd: flags.cwd, stdio: flags.i ? 'inherit' : ['ignore', 'inherit', 'inherit'] });
    process.exitCode = r.exitCode ?? 137;
  },

  async ps(argv) {
    const { flags } = parseFlags(argv, { '-a': { key: 'all', bool: true }, '--all': { key: 'all', bool: true } });
    const rows = [['NAME', 'IMAGE', 'STATUS', 'PID', 'CREATED']];
    for (const s of Sandbox.list({ stateDir: STATE })) {
      if (!flags.all && s.status !== 'running') continue;
      rows.push([s.id, s.image ?? '-', s.status === 'running' ? 'Up' : 'Exited', s.status === 'running' ? s.holderPid : '-', s.created]);
    }
    table(rows);
  },

  async inspect([name]) {
    if (!name) throw new Usage('inspect NAME');
    const box = await Sandbox.attach(name, { stateDir: STATE });
    const s = store();
    const c = s.container(name);
    const im = s.image(c.image);
    console.log(JSON.stringify({
      name, running: box.running, holderPid: box.pid, cgroup: box.cgroup?.paths,
      image: { names: im.names, id: im.id },
      layers: im.layers.map((id) => ({ id, path: s.layerPath(id) })),
      upperDir: c.upperDir,
    }, null, 2));
  },

  async diff([name]) {
    if (!name) throw new Usage('diff NAME');
    for (const ch of store().container(name).changes()) console.log(`${{ added: 'A', modified: 'C', deleted: 'D' }[ch.kind]} ${ch.path}`);
  },

  async stop(argv) {
    const { flags, rest } = parseFlags(argv, { '-t': { key: 't' }, '--time': { key: 't' } });
    if (!rest.length) throw new Usage('stop [-t SECONDS] NAME...');
    for (const name of rest) {
      const box = await Sandbox.attach(name, { stateDir: STATE });
      await box.kill('SIGTERM', { timeoutMs: Number(flags.t ?? 10) * 1000 });
      console.log(name);
    }
  },

  async rm(argv) {
    const { flags, rest } = parseFlags(argv, { '-f': { key: 'force', bool: true }, '--force': { key: 'force', bool: true } });
    if (!rest.length) throw new Usage('rm [-f] NAME...');
    for (const name of rest) {
      const box = await Sandbox.attach(name, { stateDir: STATE });
      if (box.running && !flags.force) throw new Usage(`${name} is running: stop it first or use rm -f`);
      await box.destroy();
      console.log(name);
    }
    // a detached container's network was owned by the `run` that made it: reclaim what it left
    await sweepNetwork().catch(() => {});
  },

  async commit([name, ref]) {
    if (!name) throw new Usage('commit NAME [REPO[:TAG]]');
    const im = await store().container(name).commit(ref ? { name: ref } : {});
    console.log(im.id);
  },
};

const [cmd, ...argv] = process.argv.slice(2);
try {
  if (!commands[cmd]) throw new Usage(`usage: mini-docker ${Object.keys(commands).join('|')} ...`);
  await commands[cmd](argv);
} catch (e) {
  if (e instanceof Usage || e instanceof TypeError || e instanceof RangeError) {
    console.error(`mini-docker: ${e.message}`);
    process.exitCode = 2;
  } else if (e instanceof NsboxError) {
    console.error(`mini-docker: ${e.message}`);
    process.exitCode = 125;
  } else throw e;
}
