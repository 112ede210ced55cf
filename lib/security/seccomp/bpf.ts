// Classic BPF as seccomp uses it: instruction encoding, a small interpreter (to explain and test
// programs without a kernel) and a disassembler. Programs are raw arrays of `struct sock_filter`
// (8 bytes each, little-endian: u16 code, u8 jt, u8 jf, u32 k), as the kernel and the spawn plan
// take them.

/** One classic BPF instruction (`struct sock_filter`). */
export interface BpfInsn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

// instruction classes and fields (linux/bpf_common.h)
export const BPF_LD = 0x00, BPF_LDX = 0x01, BPF_ST = 0x02, BPF_STX = 0x03, BPF_ALU = 0x04,
  BPF_JMP = 0x05, BPF_RET = 0x06, BPF_MISC = 0x07;
export const BPF_W = 0x00, BPF_H = 0x08, BPF_B = 0x10;
export const BPF_IMM = 0x00, BPF_ABS = 0x20, BPF_IND = 0x40, BPF_MEM = 0x60, BPF_LEN = 0x80;
export const BPF_ADD = 0x00, BPF_SUB = 0x10, BPF_MUL = 0x20, BPF_DIV = 0x30, BPF_OR = 0x40,
  BPF_AND = 0x50, BPF_LSH = 0x60, BPF_RSH = 0x70, BPF_NEG = 0x80, BPF_MOD = 0x90, BPF_XOR = 0xa0;
export const BPF_JA = 0x00, BPF_JEQ = 0x10, BPF_JGT = 0x20, BPF_JGE = 0x30, BPF_JSET = 0x40;
export const BPF_K = 0x00, BPF_X = 0x08, BPF_A = 0x10;
export const BPF_TAX = 0x00, BPF_TXA = 0x80;

// seccomp return values (linux/seccomp.h)
export const SECCOMP_RET_KILL_PROCESS = 0x80000000;
export const SECCOMP_RET_KILL_THREAD = 0x00000000;
export const SECCOMP_RET_TRAP = 0x00030000;
export const SECCOMP_RET_ERRNO = 0x00050000;
export const SECCOMP_RET_USER_NOTIF = 0x7fc00000;
export const SECCOMP_RET_TRACE = 0x7ff00000;
export const SECCOMP_RET_LOG = 0x7ffc0000;
export const SECCOMP_RET_ALLOW = 0x7fff0000;
export const SECCOMP_RET_ACTION_FULL = 0xffff0000;
export const SECCOMP_RET_DATA = 0x0000ffff;

/** Size of `struct seccomp_data` and offsets of its fields. */
export const SECCOMP_DATA_SIZE = 64;
export const OFF_NR = 0;
export const OFF_ARCH = 4;
export const OFF_IP_LO = 8;
/** Offset of the low (little-endian) half of argument `i`; the high half is 4 bytes later. */
export const offArgLo = (i: number): number => 16 + 8 * i;

/** Encodes instructions into the byte layout of `struct sock_filter[]`. */
export function encode(prog: readonly BpfInsn[]): Buffer {
  const b = Buffer.alloc(prog.length * 8);
  prog.forEach((ins, i) => {
    b.writeUInt16LE(ins.code, i * 8);
    b.writeUInt8(ins.jt, i * 8 + 2);
    b.writeUInt8(ins.jf, i * 8 + 3);
    b.writeUInt32LE(ins.k >>> 0, i * 8 + 4);
  });
  return b;
}

/** Decodes `struct sock_filter[]` bytes into instructions. */
export function decode(buf: Uint8Array): BpfInsn[] {
  if (buf.length % 8 !== 0) throw new RangeError(`seccomp program: length ${buf.length} is not a multiple of 8`);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  const out: BpfInsn[] = [];
  for (let i = 0; i < b.length; i += 8) {
    out.push({ code: b.readUInt16LE(i), jt: b.readUInt8(i + 2), jf: b.readUInt8(i + 3), k: b.readUInt32LE(i + 4) });
  }
  return out;
}

/** The input a seccomp filter sees (`struct seccomp_data`). */
export interface SeccompData {
  /** syscall number as the kernel passes it (x32 numbers carry bit 30). */
  nr: number;
  /** AUDIT_ARCH_* value. */
  arch: number;
  /** instruction pointer (defaults to 0). */
  instructionPointer?: bigint;
  /** up to six 64-bit arguments (missing ones are 0). */
  args?: readonly bigint[];
}

/** Serialises a `SeccompData` into the 64 bytes the kernel hands the filter. */
export function seccompDataBytes(d: SeccompData): Buffer {
  const b = Buffer.alloc(SECCOMP_DATA_SIZE);
  b.writeInt32LE(d.nr | 0, OFF_NR);
  b.writeUInt32LE(d.arch >>> 0, OFF_ARCH);
  b.writeBigUInt64LE(BigInt.asUintN(64, d.instructionPointer ?? 0n), OFF_IP_LO);
  for (let i = 0; i < 6; i++) b.writeBigUInt64LE(BigInt.asUintN(64, d.args?.[i] ?? 0n), offArgLo(i));
  return b;
}

/**
 * Runs a seccomp BPF program on one input, as the kernel would, and returns the 32-bit verdict
 * (`SECCOMP_RET_*` | data). Throws RangeError on a program the kernel would refuse (bad opcode,
 * jump out of range, load outside `seccomp_data`, no return at the end).
 */
export function evaluate(program: Uint8Array | readonly BpfInsn[], data: SeccompData): number {
  const prog = program instanceof Uint8Array ? decode(program) : program;
  const bytes = seccompDataBytes(data);
  const mem = new Uint32Array(16);
  let A = 0, X = 0;
  for (let pc = 0, steps = 0; pc < prog.length; pc++, steps++) {
    if (steps > prog.length) throw new RangeError('seccomp program: loops');
    const { code, jt, jf, k } = prog[pc]!;
    const cls = code & 0x07;
    switch (cls) {
      case BPF_LD: {
        const mode = code & 0xe0;
        if (mode === BPF_ABS && (code & 0x18) === BPF_W) {
          if (k % 4 !== 0 || k + 4 > SECCOMP_DATA_SIZE) throw new RangeError(`seccomp program: load at ${k} outside seccomp_data`);
          A = bytes.readUInt32LE(k);
        } else if (mode === BPF_IMM) A = k >>> 0;
        else if (mode === BPF_MEM) A = mem[k & 15]!;
        else if (mode === BPF_LEN) A = SECCOMP_DATA_SIZE;
        else throw new RangeError(`seccomp program: unsupported load 0x${code.toString(16)} at ${pc}`);
        break;
      }
      case BPF_LDX: {
        const mode = code & 0xe0;
        if (mode === BPF_IMM) X = k >>> 0;
        else if (mode === BPF_MEM) X = mem[k & 15]!;
        else if (mode === BPF_LEN) X = SECCOMP_DATA_SIZE;
        else throw new RangeError(`seccomp program: unsupported ldx 0x${code.toString(16)} at ${pc}`);
        break;
      }
      case BPF_ST: mem[k & 15] = A; break;
      case BPF_STX: mem[k & 15] = X; break;
      case BPF_ALU: {
        const src = (code & BPF_X) ? X : k >>> 0;
        switch (code & 0xf0) {
          case BPF_ADD: A = (A + src) >>> 0; break;
          case BPF_SUB: A = (A - src) >>> 0; break;
          case BPF_MUL: A = Math.imul(A, src) >>> 0; break;
          case BPF_DIV: if (src === 0) return SECCOMP_RET_KILL_THREAD; A = Math.floor(A / src) >>> 0; break;
          case BPF_MOD: if (src === 0) return SECCOMP_RET_KILL_THREAD; A = (A % src) >>> 0; break;
          case BPF_OR: A = (A | src) >>> 0; break;
          case BPF_AND: A = (A & src) >>> 0; break;
          case BPF_XOR: A = (A ^ src) >>> 0; break;
          case BPF_LSH: A = src >= 32 ? 0 : (A << src) >>> 0; break;
          case BPF_RSH: A = src >= 32 ? 0 : A >>> src; break;
          case BPF_NEG: A = (-A) >>> 0; break;
          default: throw new RangeError(`seccomp program: bad alu 0x${code.toString(16)} at ${pc}`);
        }
        break;
      }
      case BPF_JMP: {
        const op = code & 0xf0;
        if (op === BPF_JA) { pc += k; break; }
        const src = (code & BPF_X) ? X : k >>> 0;
        let taken: boolean;
        if (op === BPF_JEQ) taken = A === src;
        else if (op === BPF_JGT) taken = A > src;
        else if (op === BPF_JGE) taken = A >= src;
        else if (op === BPF_JSET) taken = (A & src) !== 0;
        else throw new RangeError(`seccomp program: bad jump 0x${code.toString(16)} at ${pc}`);
        pc += taken ? jt : jf;
        break;
      }
      case BPF_RET: return ((code & 0x18) === BPF_A ? A : k) >>> 0;
      case BPF_MISC: if ((code & 0xf8) === BPF_TXA) A = X; else X = A; break;
      default: throw new RangeError(`seccomp program: bad class at ${pc}`);
    }
  }
  throw new RangeError('seccomp program: fell off the end without a return');
}

/** Human words for a seccomp verdict, e.g. `'errno(1)'`, `'allow'`, `'kill-process'`. */
export function describeVerdict(v: number): string {
  const action = (v & SECCOMP_RET_ACTION_FULL) >>> 0;
  const data = v & SECCOMP_RET_DATA;
  switch (action) {
    case SECCOMP_RET_KILL_PROCESS: return 'kill-process';
    case SECCOMP_RET_KILL_THREAD: return 'kill-thread';
    case SECCOMP_RET_TRAP: return `trap(${data})`;
    case SECCOMP_RET_ERRNO: return `errno(${data})`;
    case SECCOMP_RET_USER_NOTIF: return 'user-notif';
    case SECCOMP_RET_TRACE: return `trace(${data})`;
    case SECCOMP_RET_LOG: return 'log';
    case SECCOMP_RET_ALLOW: return 'allow';
    default: return `unknown(0x${(v >>> 0).toString(16)})`;
  }
}

/** One line per instruction, in the style of `bpf_dbg`, for `nsbox explain` and debugging. */
export function disassemble(program: Uint8Array | readonly BpfInsn[]): string[] {
  const prog = program instanceof Uint8Array ? decode(program) : program;
  const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;
  return prog.map(({ code, jt, jf, k }, pc) => {
    const at = String(pc).padStart(4, '0');
    switch (code & 0x07) {
      case BPF_LD: return `${at}: ld ${(code & 0xe0) === BPF_ABS ? `[${k}]` : `#${hex(k)}`}`;
      case BPF_ALU: return `${at}: alu 0x${(code & 0xf0).toString(16)} #${hex(k)}`;
      case BPF_JMP: {
        const op = code & 0xf0;
        if (op === BPF_JA) return `${at}: ja ${pc + 1 + k}`;
        const name = { [BPF_JEQ]: 'jeq', [BPF_JGT]: 'jgt', [BPF_JGE]: 'jge', [BPF_JSET]: 'jset' }[op] ?? '?';
        return `${at}: ${name} #${hex(k)} ${pc + 1 + jt} ${pc + 1 + jf}`;
      }
      case BPF_RET: return `${at}: ret ${describeVerdict(k)}`;
      default: return `${at}: op 0x${code.toString(16)} ${hex(k)}`;
    }
  });
}
