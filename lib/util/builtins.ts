// Node built-ins that only some features use (image import, egress, hooks, the user-mode
// network, the self-test), loaded on their first use rather than at import: every Node start of
// `nsbox-runc create` loads the library (its bundle) and needs none of them; loading them all
// took ~7 ms of CPU there (docs/oci-runtime.md). The wrappers have the built-ins' own types.
import { createRequire } from 'node:module';
import type * as Crypto from 'node:crypto';
import type * as ChildProcess from 'node:child_process';
import type * as Zlib from 'node:zlib';
import type * as Http from 'node:http';
import type * as Https from 'node:https';
import type * as Tls from 'node:tls';
import type * as DnsPromises from 'node:dns/promises';

const load = createRequire(import.meta.url);
function lazy<T>(id: string): () => T {
  let m: T | undefined;
  return () => (m ??= load(id) as T);
}
function call<M, K extends keyof M>(mod: () => M, name: K): M[K] {
  return ((...args: unknown[]) => (mod()[name] as (...a: unknown[]) => unknown)(...args)) as M[K];
}

export const crypto = lazy<typeof Crypto>('node:crypto');
export const zlib = lazy<typeof Zlib>('node:zlib');
export const tls = lazy<typeof Tls>('node:tls');
const childProcess = lazy<typeof ChildProcess>('node:child_process');
const http = lazy<typeof Http>('node:http');
const https = lazy<typeof Https>('node:https');
const dnsPromises = lazy<typeof DnsPromises>('node:dns/promises');

export const randomBytes = call(crypto, 'randomBytes');
export const createHash = call(crypto, 'createHash');
export const generateKeyPairSync = call(crypto, 'generateKeyPairSync');
export const sign = call(crypto, 'sign');
export const spawnChild = call(childProcess, 'spawn');
export const createHttpServer = call(http, 'createServer');
export const httpsRequest = call(https, 'request');
export const createSecureContext = call(tls, 'createSecureContext');
export const dnsLookup = call(dnsPromises, 'lookup');
