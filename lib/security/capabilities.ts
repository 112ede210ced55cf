// Linux capabilities: names <-> numbers, libcap's text form, a process's sets, and file
// capabilities (the security.capability xattr, VFS_CAP_REVISION_2 and _3).
import { readFileSync, lstatSync } from 'node:fs';
import { native } from '../native.js';

/** Every capability name the kernel defines up to CAP_CHECKPOINT_RESTORE (40), index = number. */
export const CAPABILITY_NAMES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ',
  'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
] as const;

/** A capability name in its canonical form, e.g. `'CAP_NET_RAW'`. */
export type CapabilityName = (typeof CAPABILITY_NAMES)[number];

/** The five capability sets of a process, as names. */
export interface ProcessCapabilities {
  effective: CapabilityName[];
  permitted: CapabilityName[];
  inheritable: CapabilityName[];
  bounding: CapabilityName[];
  ambient: CapabilityName[];
}

/** The sets a text or a file carries (libcap's e, i, p). */
export interface CapabilitySets {
  effective: CapabilityName[];
  permitted: CapabilityName[];
  inheritable: CapabilityName[];
}

/** File capabilities as stored in security.capability. */
export interface FileCapabilities extends CapabilitySets {
  /** v3 (namespaced) file capabilities: the host uid of the user namespace's root they apply to. */
  rootUid?: number;
  /** 2 or 3 */
  revision: 2 | 3;
}

const BY_NAME = new Map<string, number>(CAPABILITY_NAMES.map((n, i) => [n, i]));
const XATTR = 'security.capability';
const VFS_CAP_REVISION_2 = 0x02000000;
const VFS_CAP_REVISION_3 = 0x03000000;
const VFS_CAP_REVISION_MASK = 0xff000000;
const VFS_CAP_FLAGS_EFFECTIVE = 0x000001;

function normalize(name: string): CapabilityName {
  if (typeof name !== 'string') throw new TypeError(`capability name must be a string (got ${typeof name})`);
  let n = name.trim().toUpperCase();
  if (!n.startsWith('CAP_')) n = `CAP_${n}`;
  if (!BY_NAME.has(n)) throw new TypeError(`unknown capability '${name}'`);
  return n as CapabilityName;
}

function toMask(names: Iterable<string>): bigint {
  let m = 0n;
  for (const n of names) m |= 1n << BigInt(BY_NAME.get(normalize(n))!);
  return m;
}

function fromMask(mask: bigint): CapabilityName[] {
  const out: CapabilityName[] = [];
  if (mask === 0n) return out;
  // in two 32-bit halves: no BigInt made per bit (every spawn's plan reports its capabilities)
  const halves = [Number(mask & 0xffffffffn), Number((mask >> 32n) & 0xffffffffn)];
  for (let i = 0; i < CAPABILITY_NAMES.length && i < 64; i++) if ((halves[i >> 5]! >>> (i & 31)) & 1) out.push(CAPABILITY_NAMES[i]!);
  return out;
}

/** Parses libcap's text form (cap_from_text(3)): clauses like `cap_net_raw+ep`, `=ep`, `all=eip cap_a-e`. */
function parse(text: string): CapabilitySets {
  if (typeof text !== 'string') throw new TypeError('capability text must be a string');
  const sets = { e: 0n, i: 0n, p: 0n };
  const all = (1n << BigInt(CAPABILITY_NAMES.length)) - 1n;
  for (const clause of text.trim().split(/\s+/).filter(Boolean)) {
    const m = /^([^=+-]*)((?:[=+-][eip]*)+)$/i.exec(clause);
    if (!m) throw new TypeError(`bad capability clause '${clause}' (expected e.g. cap_net_raw+ep)`);
    const list = m[1]!;
    const caps = list === '' || list.toLowerCase() === 'all' ? all : toMask(list.split(','));
    for (const [, op, flags] of m[2]!.matchAll(/([=+-])([eip]*)/gi)) {
      if (op === '=') { sets.e &= ~caps; sets.i &= ~caps; sets.p &= ~caps; }
      if (list === '' && op !== '=') throw new TypeError(`bad capability clause '${clause}': '${op}' needs capability names`);
      for (const f of flags!.toLowerCase()) {
        const k = f as 'e' | 'i' | 'p';
        sets[k] = op === '-' ? sets[k] & ~caps : sets[k] | caps;
      }
    }
  }
  return { effective: fromMask(sets.e), permitted: fromMask(sets.p), inheritable: fromMask(sets.i) };
}

/** Formats sets in libcap's text form: capabilities grouped by their flags, e.g. `cap_chown,cap_net_raw=ep cap_kill=i`. */
function format(sets: Partial<CapabilitySets>): string {
  const e = toMask(sets.effective ?? []), i = toMask(sets.inheritable ?? []), p = toMask(sets.permitted ?? []);
  const groups = new Map<string, string[]>();
  for (let c = 0; c < CAPABILITY_NAMES.length; c++) {
    const b = 1n << BigInt(c);
    const flags = `${e & b ? 'e' : ''}${i & b ? 'i' : ''}${p & b ? 'p' : ''}`;
    if (!flags) continue;
    groups.set(flags, [...(groups.get(flags) ?? []), CAPABILITY_NAMES[c]!.toLowerCase()]);
  }
  if (groups.size === 0) return '=';
  return [...groups].map(([flags, names]) => (names.length === CAPABILITY_NAMES.length ? `=${flags}` : `${names.join(',')}=${flags}`)).join(' ');
}

/** The capability sets of a process, from /proc/<pid>/status. */
function ofProcess(pid: number | 'self' = 'self'): ProcessCapabilities {
  if (pid !== 'self' && (!Number.isInteger(pid) || pid <= 0)) throw new RangeError(`pid must be a positive integer (got ${pid})`);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (key: string) => {
    const m = new RegExp(`^${key}:\\s*([0-9a-f]+)$`, 'm').exec(status);
    return m ? fromMask(BigInt(`0x${m[1]}`)) : [];
  };
  return { effective: get('CapEff'), permitted: get('CapPrm'), inheritable: get('CapInh'), bounding: get('CapBnd'), ambient: get('CapAmb') };
}

/** Reads a file's capabilities (as `getcap` does); null when it has none. */
function getFile(path: string): FileCapabilities | null {
  if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
  const buf = native().getxattr(path, XATTR) as Buffer | null;
  if (!buf) return null;
  if (buf.length < 4) throw new RangeError(`${path}: security.capability is too short (${buf.length} bytes)`);
  const magic = buf.readUInt32LE(0);
  const rev = magic & VFS_CAP_REVISION_MASK;
  if ((rev === VFS_CAP_REVISION_2 && buf.length !== 20) || (rev === VFS_CAP_REVISION_3 && buf.length !== 24) || (rev !== VFS_CAP_REVISION_2 && rev !== VFS_CAP_REVISION_3)) {
    throw new RangeError(`${path}: unsupported security.capability (magic 0x${magic.toString(16)}, ${buf.length} bytes)`);
  }
  const p = BigInt(buf.readUInt32LE(4)) | (BigInt(buf.readUInt32LE(12)) << 32n);
  const i = BigInt(buf.readUInt32LE(8)) | (BigInt(buf.readUInt32LE(16)) << 32n);
  const e = magic & VFS_CAP_FLAGS_EFFECTIVE ? p | i : 0n;
  const out: FileCapabilities = { effective: fromMask(e), permitted: fromMask(p), inheritable: fromMask(i), revision: rev === VFS_CAP_REVISION_3 ? 3 : 2 };
  if (rev === VFS_CAP_REVISION_3) out.rootUid = buf.readUInt32LE(20);
  return out;
}

/**
 * Sets a file's capabilities (as `setcap` does). Effective is one bit for files: it must be
 * empty or equal to permitted ∪ inheritable. `rootUid` writes the v3 (namespaced) format.
 * Refuses symlinks, like setcap.
 */
function setFile(path: string, caps: string | Partial<CapabilitySets>, options: { rootUid?: number } = {}): void {
  if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
  const sets = typeof caps === 'string' ? parse(caps) : caps;
  const e = toMask(sets.effective ?? []), i = toMask(sets.inheritable ?? []), p = toMask(sets.permitted ?? []);
  if (e !== 0n && e !== (p | i)) throw new RangeError('file capabilities: effective must be empty or equal to permitted ∪ inheritable (it is a single bit on files)');
  const { rootUid } = options;
  if (rootUid !== undefined && (!Number.isInteger(rootUid) || rootUid < 0 || rootUid > 0xffffffff)) throw new RangeError(`rootUid must be a uid (got ${rootUid})`);
  if (lstatSync(path).isSymbolicLink()) throw new TypeError(`${path} is a symbolic link (file capabilities go on the file itself)`);
  const v3 = rootUid !== undefined;
  const buf = Buffer.alloc(v3 ? 24 : 20);
  buf.writeUInt32LE((v3 ? VFS_CAP_REVISION_3 : VFS_CAP_REVISION_2) | (e ? VFS_CAP_FLAGS_EFFECTIVE : 0), 0);
  buf.writeUInt32LE(Number(p & 0xffffffffn), 4);
  buf.writeUInt32LE(Number(i & 0xffffffffn), 8);
  buf.writeUInt32LE(Number(p >> 32n), 12);
  buf.writeUInt32LE(Number(i >> 32n), 16);
  if (v3) buf.writeUInt32LE(rootUid!, 20);
  native().setxattr(path, XATTR, buf);
}

/** Removes a file's capabilities (`setcap -r`). */
function removeFile(path: string): void {
  if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
  native().removexattr(path, XATTR);
}

/** Highest capability number of this kernel (/proc/sys/kernel/cap_last_cap). */
let lastCapCache: number | undefined;
function lastCap(): number {
  // a constant of the running kernel: read once
  if (lastCapCache === undefined) {
    try { lastCapCache = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8')); } catch { lastCapCache = CAPABILITY_NAMES.length - 1; }
  }
  return lastCapCache;
}

/**
 * Linux capabilities: every name ↔ number, libcap's text form, a process's sets, and file
 * capabilities through the security.capability xattr.
 */
export const Capabilities = {
  /** All names, index = number. */
  names: CAPABILITY_NAMES,
  /** `'net_raw'`, `'cap_net_raw'`, `'CAP_NET_RAW'` -> `'CAP_NET_RAW'`; TypeError for an unknown name. */
  normalize,
  /** Name -> number. */
  number: (name: string): number => BY_NAME.get(normalize(name))!,
  /** Number -> name (undefined beyond the known list). */
  name: (n: number): CapabilityName | undefined => CAPABILITY_NAMES[n],
  toMask,
  fromMask,
  parse,
  format,
  ofProcess,
  getFile,
  setFile,
  removeFile,
  lastCap,
};
