// The compiler: a validated profile -> a seccomp BPF program (raw `struct sock_filter[]`).
//
// Layout of the program:
//   ld arch; jeq AUDIT_ARCH_<a> -> block(a) for each architecture family; ret badArch
//   block(a): ld nr; (x86_64) split on the x32 bit; then a binary search over the number line,
//   cut into intervals that share one outcome. An interval is either a plain return (the
//   syscalls whose rules have no argument tests, and every number no rule names, which gets the
//   default) or the argument tests of one syscall, placed inline at the leaf of the search.
// Jumps are written against labels; a conditional jump whose target lies more than 255
// instructions ahead is rewritten to go through `ja` trampolines.
import {
  BPF_ABS, BPF_ALU, BPF_AND, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W,
  OFF_ARCH, OFF_NR, encode, offArgLo, type BpfInsn,
} from './bpf.js';
import {
  AUDIT_ARCH, SYSCALL_TABLES, X32_SYSCALL_BIT, normalizeProfile, type NormalizedArg, type NormalizedProfile,
  type SeccompArch, type SeccompProfile,
} from './profile.js';

/** The kernel refuses longer programs (BPF_MAXINSNS). */
export const BPF_MAXINSNS = 4096;

const NEXT = -1; // jump offset 0: the next instruction
type Label = number;
type Item =
  | { kind: 'label'; id: Label }
  | { kind: 'ins'; code: number; k: number; jt?: Label; jf?: Label; ja?: Label };

class Asm {
  items: Item[] = [];
  private nextLabel = 0;
  label(): Label { return this.nextLabel++; }
  place(id: Label): void { this.items.push({ kind: 'label', id }); }
  ld(off: number): void { this.items.push({ kind: 'ins', code: BPF_LD | BPF_W | BPF_ABS, k: off }); }
  and(k: number): void { this.items.push({ kind: 'ins', code: BPF_ALU | BPF_AND | BPF_K, k: k >>> 0 }); }
  ret(k: number): void { this.items.push({ kind: 'ins', code: BPF_RET | BPF_K, k: k >>> 0 }); }
  ja(to: Label): void { this.items.push({ kind: 'ins', code: BPF_JMP | BPF_JA, k: 0, ja: to }); }
  /** conditional jump: op is BPF_JEQ/JGT/JGE; jt/jf are labels or NEXT. */
  j(op: number, k: number, jt: Label, jf: Label): void {
    this.items.push({ kind: 'ins', code: BPF_JMP | op | BPF_K, k: k >>> 0, jt, jf });
  }

  /** Resolves labels, adding trampolines where a conditional jump is too far. */
  assemble(): BpfInsn[] {
    for (let round = 0; ; round++) {
      if (round > 64) throw new Error('seccomp compiler: jump layout does not converge');
      const pos = new Map<Label, number>();
      let pc = 0;
      for (const it of this.items) if (it.kind === 'label') pos.set(it.id, pc); else pc++;
      const off = (from: number, l: Label | undefined): number => {
        if (l === undefined || l === NEXT) return 0;
        const p = pos.get(l);
        if (p === undefined) throw new Error('seccomp compiler: unplaced label');
        const d = p - (from + 1);
        if (d < 0) throw new Error('seccomp compiler: backward jump');
        return d;
      };
      const out: Item[] = [];
      let changed = false;
      pc = 0;
      const prog: BpfInsn[] = [];
      for (const it of this.items) {
        if (it.kind === 'label') { out.push(it); continue; }
        if (it.ja !== undefined) {
          prog.push({ code: it.code, jt: 0, jf: 0, k: off(pc, it.ja) });
        } else if (it.jt !== undefined || it.jf !== undefined) {
          const t = off(pc, it.jt), f = off(pc, it.jf);
          if (t > 255 || f > 255) {
            // cond -> (true: ja jt) (false: ja jf)
            const lt = this.label(), lf = this.label(), after = this.label();
            const to = (l: Label | undefined) => (l === undefined || l === NEXT ? after : l);
            out.push({ ...it, jt: lt, jf: lf }, { kind: 'label', id: lt }, { kind: 'ins', code: BPF_JMP | BPF_JA, k: 0, ja: to(it.jt) },
              { kind: 'label', id: lf }, { kind: 'ins', code: BPF_JMP | BPF_JA, k: 0, ja: to(it.jf) }, { kind: 'label', id: after });
            changed = true;
            pc++;
            continue;
          }
          prog.push({ code: it.code, jt: t, jf: f, k: it.k });
        } else prog.push({ code: it.code, jt: 0, jf: 0, k: it.k });
        out.push(it);
        pc++;
      }
      this.items = out;
      if (!changed) return prog;
    }
  }
}

/** Argument tests of one syscall's rule, for one architecture. */
function emitArg(a: Asm, c: NormalizedArg, wide: boolean, fail: Label): void {
  const lo = Number(c.value & 0xffffffffn), hi = Number(c.value >> 32n);
  const mlo = Number(c.mask & 0xffffffffn), mhi = Number(c.mask >> 32n);
  const offLo = offArgLo(c.index), offHi = offLo + 4;
  if (!wide || c.low32) {
    a.ld(offLo);
    switch (c.op) {
      case 'eq': a.j(BPF_JEQ, lo, NEXT, fail); break;
      case 'ne': a.j(BPF_JEQ, lo, fail, NEXT); break;
      case 'gt': a.j(BPF_JGT, lo, NEXT, fail); break;
      case 'ge': a.j(BPF_JGE, lo, NEXT, fail); break;
      case 'lt': a.j(BPF_JGE, lo, fail, NEXT); break;
      case 'le': a.j(BPF_JGT, lo, fail, NEXT); break;
      case 'masked-eq': a.and(mlo); a.j(BPF_JEQ, lo, NEXT, fail); break;
    }
    return;
  }
  const pass = a.label();
  switch (c.op) {
    case 'eq':
      a.ld(offHi); a.j(BPF_JEQ, hi, NEXT, fail);
      a.ld(offLo); a.j(BPF_JEQ, lo, NEXT, fail);
      break;
    case 'ne':
      a.ld(offHi); a.j(BPF_JEQ, hi, NEXT, pass);
      a.ld(offLo); a.j(BPF_JEQ, lo, fail, NEXT);
      break;
    case 'masked-eq':
      a.ld(offHi); a.and(mhi); a.j(BPF_JEQ, hi, NEXT, fail);
      a.ld(offLo); a.and(mlo); a.j(BPF_JEQ, lo, NEXT, fail);
      break;
    case 'gt': case 'ge':
      a.ld(offHi); a.j(BPF_JGT, hi, pass, NEXT); a.j(BPF_JEQ, hi, NEXT, fail);
      a.ld(offLo); a.j(c.op === 'gt' ? BPF_JGT : BPF_JGE, lo, NEXT, fail);
      break;
    case 'lt': case 'le': // the negations of ge and gt
      a.ld(offHi); a.j(BPF_JGT, hi, fail, NEXT); a.j(BPF_JEQ, hi, NEXT, pass);
      a.ld(offLo); a.j(c.op === 'lt' ? BPF_JGE : BPF_JGT, lo, fail, NEXT);
      break;
  }
  a.place(pass);
}

interface SyscallRules { action: number; args: NormalizedArg[] }
type Target = { ret: number } | { nr: number; rules: SyscallRules[] };
interface Interval { lo: number; target: Target }

/** Builds the search intervals for one architecture family. */
function intervals(members: SeccompArch[], p: NormalizedProfile): Interval[] {
  const byNr = new Map<number, SyscallRules[]>();
  for (const arch of members) {
    const table = SYSCALL_TABLES[arch];
    for (const r of p.rules) {
      for (const name of r.syscalls) {
        const nr = table[name];
        if (nr === undefined) continue;
        let list = byNr.get(nr);
        if (!list) byNr.set(nr, (list = []));
        list.push({ action: r.action, args: r.args });
      }
    }
  }
  const targetOf = (nr: number): Target => {
    const list = byNr.get(nr);
    if (!list) return { ret: p.defaultAction };
    // the first rule without argument tests ends the list: later ones can never match
    const cut = list.findIndex((r) => r.args.length === 0);
    const used = cut >= 0 ? list.slice(0, cut + 1) : list;
    if (used.length === 1 && used[0]!.args.length === 0) return { ret: used[0]!.action };
    return { nr, rules: used };
  };
  const points = new Set<number>([0]);
  for (const nr of byNr.keys()) { points.add(nr); if (nr + 1 < 2 ** 32) points.add(nr + 1); }
  const sorted = [...points].sort((a, b) => a - b);
  const out: Interval[] = [];
  for (const lo of sorted) {
    const target = targetOf(lo);
    const prev = out[out.length - 1];
    if (prev && 'ret' in prev.target && 'ret' in target && prev.target.ret === target.ret) continue;
    out.push({ lo, target });
  }
  return out;
}

function emitTarget(a: Asm, t: Target, p: NormalizedProfile, wide: boolean): void {
  if ('ret' in t) { a.ret(t.ret); return; }
  for (const r of t.rules) {
    const next = a.label();
    for (const c of r.args) emitArg(a, c, wide, next);
    a.ret(r.action);
    a.place(next);
  }
  if (t.rules[t.rules.length - 1]!.args.length > 0) a.ret(p.defaultAction);
}

function emitSearch(a: Asm, list: Interval[], p: NormalizedProfile, wide: boolean): void {
  if (list.length === 1) { emitTarget(a, list[0]!.target, p, wide); return; }
  const mid = list.length >> 1;
  const right = a.label();
  a.j(BPF_JGE, list[mid]!.lo, right, NEXT);
  emitSearch(a, list.slice(0, mid), p, wide);
  a.place(right);
  emitSearch(a, list.slice(mid), p, wide);
}

/** Compiles a validated profile into instructions. */
export function compileNormalized(p: NormalizedProfile): BpfInsn[] {
  const a = new Asm();
  // families: architectures sharing one AUDIT_ARCH value (x86_64 and x32)
  const families = new Map<number, SeccompArch[]>();
  for (const arch of p.architectures) {
    const v = AUDIT_ARCH[arch];
    families.set(v, [...(families.get(v) ?? []), arch]);
  }
  const blocks = [...families].map(([audit, members]) => ({ audit, members, label: a.label() }));
  a.ld(OFF_ARCH);
  for (const b of blocks) a.j(BPF_JEQ, b.audit, b.label, NEXT);
  a.ret(p.badArchAction);
  for (const b of blocks) {
    a.place(b.label);
    a.ld(OFF_NR);
    if (b.audit === AUDIT_ARCH.x86_64) {
      const has64 = b.members.includes('x86_64'), has32 = b.members.includes('x32');
      const bad = a.label();
      // nr -1 (a tracer skipping the call) does nothing in the kernel: let it reach the
      // default like any other number no rule names, as libseccomp does
      const skip = a.label();
      if (!has32) { a.j(BPF_JGE, X32_SYSCALL_BIT, NEXT, skip); a.j(BPF_JEQ, 0xffffffff, skip, bad); }
      else if (!has64) a.j(BPF_JGE, X32_SYSCALL_BIT, NEXT, bad);
      a.place(skip);
      emitSearch(a, intervals(b.members, p), p, true);
      if (!has32 || !has64) { a.place(bad); a.ret(p.badArchAction); }
    } else {
      emitSearch(a, intervals(b.members, p), p, b.members[0] !== 'i386');
    }
  }
  const prog = a.assemble();
  if (prog.length > BPF_MAXINSNS) throw new RangeError(`seccomp: the profile compiles to ${prog.length} instructions, over the kernel's limit of ${BPF_MAXINSNS}`);
  return prog;
}

/**
 * Compiles a profile into a seccomp BPF program: a Buffer of `struct sock_filter` (8 bytes each),
 * ready for `SECCOMP_SET_MODE_FILTER` and for the spawn plan's `seccomp` field.
 * Throws TypeError/RangeError (naming the option) for an invalid profile.
 */
export function compileSeccomp(profile: SeccompProfile): Buffer {
  return encode(compileNormalized(normalizeProfile(profile)));
}
