// The validation kit: argument checks every part of nsbox uses (the planner, the filesystem
// layer, Sandbox, ...). Each throws a TypeError or RangeError naming the option, before
// anything is created. No nsbox imports.
import { lstatSync } from 'node:fs';
import { isAbsolute, posix } from 'node:path';

export function fail(option: string, what: string, Err: typeof TypeError | typeof RangeError = TypeError): never {
  throw new Err(`${option} ${what}`);
}

/** An object literal (or one made with a null prototype): what option bags of the filesystem layer must be. */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);
}

/** Any non-array object (spawn options may come from another realm or a class). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function checkKeys(option: string, o: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(option, `has an unknown key '${k}' (allowed: ${allowed.join(', ')})`);
}

export function str(option: string, v: unknown, { nonEmpty = false } = {}): string {
  if (typeof v !== 'string') fail(option, `must be a string (got ${typeof v})`);
  if (v.includes('\0')) fail(option, 'must not contain a NUL byte');
  if (nonEmpty && v.length === 0) fail(option, 'must not be empty');
  return v;
}

export function uint(option: string, v: unknown, max = 0xffffffff): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(option, `must be an integer (got ${String(v)})`);
  if (v < 0 || v > max) fail(option, `must be between 0 and ${max} (got ${v})`, RangeError);
  return v;
}

/** An absolute path that stays where it says: no `..` component, normalised. */
export function strictAbsPath(option: string, v: unknown): string {
  const s = str(option, v, { nonEmpty: true });
  if (!isAbsolute(s)) fail(option, `must be an absolute path (got '${s}')`);
  if (s.split('/').includes('..')) fail(option, `must not contain '..' (got '${s}')`);
  return posix.normalize(s).replace(/(.)\/$/, '$1');
}

/** An absolute path, normalised (`..` resolved lexically). */
export function absPath(option: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') fail(option, 'must be a non-empty string');
  if (v.includes('\0')) fail(option, 'must not contain a NUL byte');
  if (!isAbsolute(v)) fail(option, `must be an absolute path (got '${v}')`);
  return posix.normalize(v).replace(/(.)\/+$/, '$1');
}

/** An absolute path that exists as a directory (symlinks to directories are refused). */
export function existingDir(option: string, v: unknown): string {
  const p = absPath(option, v);
  let st;
  try { st = lstatSync(p); } catch { fail(option, `must be an existing directory (${p} is missing)`); }
  if (!st.isDirectory()) fail(option, `must be an existing directory, not a symlink or file (${p})`);
  return p;
}

export function bool(option: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') fail(option, 'must be a boolean');
  return v;
}

/** A relative path inside a root, normalised; `..` that would leave the root is refused. */
export function innerPath(option: string, v: unknown): string {
  if (typeof v !== 'string') fail(option, 'must be a string');
  if (v.includes('\0')) fail(option, 'must not contain a NUL byte');
  const n = posix.normalize(`/${v}`).slice(1).replace(/\/+$/, '');
  return n;
}

/** Byte sizes: a non-negative integer or '64k', '10M', '1G' (powers of 1024). */
export function byteSize(option: string, v: unknown): number {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v <= 0) fail(option, `must be a positive integer number of bytes (got ${v})`, RangeError);
    return v;
  }
  if (typeof v !== 'string') fail(option, "must be a number of bytes or a string like '64M'");
  const m = /^(\d+)\s*([kmgt]?)i?b?$/i.exec(v.trim());
  if (!m) fail(option, `must be a number of bytes or a string like '64M' (got '${v}')`);
  const n = Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase());
  if (!(n > 0) || !Number.isSafeInteger(n)) fail(option, `is out of range (got '${v}')`, RangeError);
  return n;
}

/** Checks that `v` is a plain object with only the allowed keys (without narrowing its type). */
export function checkOptions(option: string, v: unknown, allowed: readonly string[]): void {
  if (!isPlainObject(v)) fail(option, 'must be an object');
  checkKeys(option, v, allowed);
}
