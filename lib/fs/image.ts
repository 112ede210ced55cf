// Reading image archives: an OCI image layout directory (oci-layout, index.json, blobs/) or a
// `docker save` tar (manifest.json, <config>.json, <layer>/layer.tar or blobs/), into the list
// of layer blobs and the image config. The store imports the blobs with extractLayer.
import { closeSync, fstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { errnoError, NsboxError } from '../errors.js';
import { layerPath } from './extract.js';
import { fsNative, O, RESOLVE_SAFE } from './native.js';

/**
 * Opens `rel` inside the archive directory `dir` for reading, resolved with RESOLVE_IN_ROOT:
 * a symlink in an archive can only point at another file of the archive. Returns -1 when missing.
 */
export function openInArchive(dir: string, rel: string): number {
  const nat = fsNative();
  const root = nat.fsOpenat2(-100, dir, O.PATH | O.DIRECTORY, 0, 0, 'image');
  try {
    return nat.fsOpenat2(root, layerPath(rel), O.RDONLY, 0, RESOLVE_SAFE, 'image');
  } catch (e) {
    if (e instanceof NsboxError && e.code === 'ENOENT') return -1;
    throw e;
  } finally {
    nat.closeFd(root);
  }
}

function existsIn(dir: string, rel: string): boolean {
  const fd = openInArchive(dir, rel);
  if (fd < 0) return false;
  closeSync(fd);
  return true;
}

function readIn(dir: string, rel: string): Buffer {
  const fd = openInArchive(dir, rel);
  if (fd < 0) throw bad(join(dir, rel), 'is missing');
  try {
    if (!fstatSync(fd).isFile()) throw bad(join(dir, rel), 'is not a file');
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The parts of an image config (OCI / Docker) that running an image uses. */
export interface ImageConfig {
  Env?: string[];
  Cmd?: string[];
  Entrypoint?: string[];
  WorkingDir?: string;
  User?: string;
  ExposedPorts?: Record<string, object>;
  Labels?: Record<string, string>;
  StopSignal?: string;
}

/** An image config file as a whole (only the fields nsbox reads are typed). */
export interface ImageConfigFile {
  architecture?: string;
  os?: string;
  config?: ImageConfig;
  rootfs?: { type: string; diff_ids: string[] };
  history?: unknown[];
  created?: string;
  [k: string]: unknown;
}

export interface ArchiveImage {
  /** raw bytes of the config blob (its sha256 is the image id) */
  configBytes: Buffer;
  config: ImageConfigFile;
  /** layer blobs, bottom first, relative to the archive directory (open with openInArchive) */
  layers: string[];
  /** names found in the archive (RepoTags, org.opencontainers.image.ref.name) */
  names: string[];
}

function bad(path: string, why: string): Error {
  return errnoError(22, 'image', 'read', path, why);
}

function readJson(dir: string, rel: string): unknown {
  const b = readIn(dir, rel);
  try {
    return JSON.parse(b.toString('utf8'));
  } catch (e) {
    throw bad(join(dir, rel), `not readable JSON (${(e as Error).message})`);
  }
}

function blobPath(dir: string, digest: unknown): string {
  if (typeof digest !== 'string' || !/^[a-z0-9]+:[a-f0-9]{32,128}$/.test(digest)) throw bad(dir, `bad digest ${String(digest)}`);
  const [alg, hex] = digest.split(':');
  const rel = `blobs/${alg}/${hex}`;
  if (!existsIn(dir, rel)) throw bad(join(dir, rel), `blob ${digest} is missing`);
  return rel;
}

const INDEX_TYPES = ['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json'];

/** Reads an unpacked archive directory (OCI layout or docker save). */
export function readArchiveDir(dir: string, want?: string): ArchiveImage {
  if (existsIn(dir, 'manifest.json')) {
    const m = readJson(dir, 'manifest.json') as Array<{ Config: string; RepoTags?: string[] | null; Layers: string[] }>;
    if (!Array.isArray(m) || m.length === 0) throw bad(join(dir, 'manifest.json'), 'has no image');
    const e = (want && m.find((x) => x.RepoTags?.includes(want))) || m[0];
    const configBytes = readIn(dir, e.Config);
    return {
      configBytes, config: JSON.parse(configBytes.toString('utf8')) as ImageConfigFile,
      layers: e.Layers.map((l) => layerPath(l)), names: e.RepoTags ?? [],
    };
  }
  if (!existsIn(dir, 'index.json')) throw bad(dir, 'is neither an OCI image layout (index.json) nor a docker save archive (manifest.json)');
  let idx = readJson(dir, 'index.json') as { manifests?: Array<{ mediaType?: string; digest: string; annotations?: Record<string, string>; platform?: { os?: string; architecture?: string } }> };
  let names: string[] = [];
  for (let depth = 0; depth < 4; depth++) {
    const ms = idx.manifests ?? [];
    if (ms.length === 0) throw bad(dir, 'index.json lists no manifest');
    const pick = (want && ms.find((x) => x.annotations?.['org.opencontainers.image.ref.name'] === want))
      || ms.find((x) => !x.platform || (x.platform.os === 'linux' && ['amd64', process.arch === 'x64' ? 'amd64' : process.arch].includes(x.platform.architecture ?? '')))
      || ms[0];
    const ref = pick.annotations?.['org.opencontainers.image.ref.name'];
    if (ref && names.length === 0) names = [ref];
    const body = readJson(dir, blobPath(dir, pick.digest)) as {
      mediaType?: string; manifests?: unknown; config?: { digest: string }; layers?: Array<{ digest: string }>;
    };
    if (INDEX_TYPES.includes(pick.mediaType ?? '') || body.manifests) {
      idx = body as typeof idx;
      continue;
    }
    if (!body.config || !Array.isArray(body.layers)) throw bad(dir, `manifest ${pick.digest} has no config or layers`);
    const configBytes = readIn(dir, blobPath(dir, body.config.digest));
    return { configBytes, config: JSON.parse(configBytes.toString('utf8')) as ImageConfigFile, layers: body.layers.map((l) => blobPath(dir, l.digest)), names };
  }
  throw bad(dir, 'image indexes nest too deep');
}

/**
 * Pass as `file` to run the image's own command: Entrypoint followed by `args` (or by the
 * image's Cmd when `args` is empty), as `docker run IMAGE [ARGS...]` does.
 */
export const IMAGE_COMMAND = '@image';
