// The binary form of ops the addon reads (addon/src/plan.cc, DecodeOps): one buffer instead of
// a dozen property reads per op through N-API. Little-endian; per op: u8 kind, u8 bits
// (1 readonly, 2 file, 4 recursive, 8 real, 16 trusted, 32 netSysfs, 64 copyUp, 128 present), u16 0, u32 flags,
// u32 mode, then four strings a, b, c, d, each an i32 byte length (-1: absent) and the bytes.
// Which named field (ops.ts) goes in which slot is decided here and nowhere else:
//   a: path, or the source for the kinds in PATH_SECOND    b: path for those kinds, else putOld or dir
//   c: fstype, or a Bind's dir    d: data    flags: flags, a Chown's uid, a Mknod's dev, an IdmapBind's fd
//   mode: mode, a Chown's gid
import { Op, type PlanOp } from './ops.js';

/** Kinds whose path is the wire's second string (the first holds what goes there). */
const PATH_SECOND: boolean[] = [];
for (const k of [Op.Mount, Op.Bind, Op.Attach, Op.Symlink, Op.Propagation, Op.RemountRo, Op.Umount, Op.MaskBind, Op.IdmapBind]) PATH_SECOND[k] = true;

/** A shared view's op array, by its first op (encodeOps recognises a plan made of one). */
const viewOf = new WeakMap<PlanOp, readonly PlanOp[]>();
/** Encodings of shared default views, by their frozen op array. */
const encodedViews = new WeakMap<readonly PlanOp[], Buffer>();
let opsScratch = Buffer.allocUnsafe(16384);

/**
 * Freezes a list of ops (and each op) to be shared by many plans: a plan whose ops are exactly
 * such a list is encoded once.
 */
export function shareOps(list: readonly PlanOp[]): readonly PlanOp[] {
  for (const op of list) Object.freeze(op);
  const shared = Object.freeze([...list]);
  if (shared.length > 0) viewOf.set(shared[0]!, shared);
  return shared;
}

/**
 * The ops in binary form. The result is a view of a buffer the next call reuses: hand it to
 * the addon at once.
 */
export function encodeOps(ops: readonly PlanOp[]): Buffer {
  // a plan whose ops are exactly a shared default view: its encoding is made once
  const view = ops.length > 0 ? viewOf.get(ops[0]!) : undefined;
  if (view && view.length === ops.length && view.every((op, i) => op === ops[i])) {
    let b = encodedViews.get(view);
    if (!b) encodedViews.set(view, (b = encodeOpsInto(view, true)));
    return b;
  }
  return encodeOpsInto(ops);
}

/**
 * The view template's build ops, encoded: their own buffer (the addon keeps templates by it),
 * made once per shared array. Never the scratch buffer: the child's ops encoded just before
 * (encodeOps) are still in it, waiting for the addon.
 */
export function encodeTemplate(ops: readonly PlanOp[]): Buffer {
  let b = encodedViews.get(ops);
  if (!b) {
    b = encodeOpsInto(ops, true);
    if (Object.isFrozen(ops)) encodedViews.set(ops, b);
  }
  return b;
}

/** Encodes into the reused scratch buffer (a view of it), or with `own` into a buffer of its own. */
function encodeOpsInto(ops: readonly PlanOp[], own = false): Buffer {
  // sizes are bounds (3 bytes per UTF-16 unit); plain index writes: this runs on every spawn
  let room = 4;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    room += 28 + ((op.path?.length ?? 0) + (op.source?.length ?? 0) + (op.putOld?.length ?? 0) + (op.dir?.length ?? 0) + (op.fstype?.length ?? 0)) * 3;
    if (op.data !== undefined) room += typeof op.data === 'string' ? op.data.length * 3 : op.data.length;
  }
  // one buffer, reused: the addon copies what it reads before spawn() returns
  if (!own && opsScratch.length < room) opsScratch = Buffer.allocUnsafe(Math.max(room, opsScratch.length * 2));
  const buf = own ? Buffer.allocUnsafe(room) : opsScratch;
  let off = 0;
  const u32 = (v: number) => {
    buf[off] = v; buf[off + 1] = v >>> 8; buf[off + 2] = v >>> 16; buf[off + 3] = v >>> 24;
    off += 4;
  };
  const put = (v: string | Uint8Array | undefined) => {
    if (v === undefined) { u32(0xffffffff); return; }
    const at = off + 4;
    let n = v.length;
    if (typeof v !== 'string') buf.set(v, at);
    else {
      // ASCII (nearly every path) byte by byte; anything else through the UTF-8 encoder
      for (let i = 0; i < n; i++) {
        const c = v.charCodeAt(i);
        if (c > 0x7f) { n = buf.write(v, at, 'utf8'); break; }
        buf[at + i] = c;
      }
    }
    u32(n);
    off = at + n;
  };
  u32(ops.length);
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    const k = op.op;
    buf[off] = k;
    buf[off + 1] = (op.readonly ? 1 : 0) | (op.file ? 2 : 0) | (op.recursive ?? true ? 4 : 0) | (op.real ? 8 : 0) | (op.trusted ? 16 : 0) | (op.netSysfs ? 32 : 0) | (op.copyUp ? 64 : 0) | (op.present ? 128 : 0);
    buf[off + 2] = 0;
    buf[off + 3] = 0;
    off += 4;
    u32((k === Op.Chown ? op.uid ?? 0 : k === Op.Mknod ? op.dev ?? 0 : k === Op.IdmapBind ? op.fd ?? -1 : op.flags ?? 0) >>> 0);
    u32(k === Op.Chown ? op.gid ?? 0 : op.mode ?? 0o755);
    if (PATH_SECOND[k]) { put(op.source); put(op.path); } else { put(op.path); put(op.putOld ?? op.dir); }
    put(k === Op.Bind ? op.dir : op.fstype); put(op.data);
  }
  return buf.subarray(0, off);
}
