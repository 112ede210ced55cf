// Test helper: builds a filter with libseccomp from a line-based spec on stdin and writes the
// raw BPF (struct sock_filter[]) to stdout, so tests can compare libseccomp's program with
// nsbox's own compiler on the same inputs. Spec lines:
//   default <u32 action>
//   badarch <u32 action>
//   optimize <1|2>                        (SCMP_FLTATR_CTL_OPTIMIZE: 2 = binary tree)
//   arch <x86_64|x32|i386|aarch64>        (one or more; replaces the native default)
//   rule <u32 action> <syscall name or native number> <n> {<index> <op> <u64 value> <u64 mask>}*n
//     op: ne lt le eq ge gt masked-eq
// Exit status: 0 ok, 2 bad spec, 3 a libseccomp call failed (message on stderr).
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

static uint32_t arch_token(const char* s) {
  if (!strcmp(s, "x86_64")) return SCMP_ARCH_X86_64;
  if (!strcmp(s, "x32")) return SCMP_ARCH_X32;
  if (!strcmp(s, "i386")) return SCMP_ARCH_X86;
  if (!strcmp(s, "aarch64")) return SCMP_ARCH_AARCH64;
  return 0;
}

static int op_token(const char* s) {
  if (!strcmp(s, "ne")) return SCMP_CMP_NE;
  if (!strcmp(s, "lt")) return SCMP_CMP_LT;
  if (!strcmp(s, "le")) return SCMP_CMP_LE;
  if (!strcmp(s, "eq")) return SCMP_CMP_EQ;
  if (!strcmp(s, "ge")) return SCMP_CMP_GE;
  if (!strcmp(s, "gt")) return SCMP_CMP_GT;
  if (!strcmp(s, "masked-eq")) return SCMP_CMP_MASKED_EQ;
  return -1;
}

int main(void) {
  char word[64];
  unsigned long def = 0, bad = SCMP_ACT_KILL_PROCESS, optimize = 0;
  uint32_t arches[8];
  int narch = 0;
  // first pass: read everything (the context needs the default action at init)
  static char spec[1 << 20];
  size_t len = fread(spec, 1, sizeof spec - 1, stdin);
  spec[len] = 0;
  FILE* in = fmemopen(spec, len, "r");
  while (fscanf(in, "%63s", word) == 1) {
    if (!strcmp(word, "default")) { if (fscanf(in, "%lu", &def) != 1) return 2; }
    else if (!strcmp(word, "badarch")) { if (fscanf(in, "%lu", &bad) != 1) return 2; }
    else if (!strcmp(word, "optimize")) { if (fscanf(in, "%lu", &optimize) != 1) return 2; }
    else if (!strcmp(word, "arch")) {
      if (fscanf(in, "%63s", word) != 1 || narch == 8) return 2;
      if (!(arches[narch++] = arch_token(word))) return 2;
    } else if (!strcmp(word, "rule")) { char line[4096]; if (!fgets(line, sizeof line, in)) return 2; }
    else return 2;
  }
  fclose(in);
  scmp_filter_ctx ctx = seccomp_init((uint32_t)def);
  if (!ctx) { fprintf(stderr, "seccomp_init failed\n"); return 3; }
  int r;
  if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, (uint32_t)bad)) < 0) { fprintf(stderr, "badarch: %s\n", strerror(-r)); return 3; }
  if (optimize && (r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, (uint32_t)optimize)) < 0) { fprintf(stderr, "optimize: %s\n", strerror(-r)); return 3; }
  if (narch) {
    int keepNative = 0;
    for (int i = 0; i < narch; i++) {
      if (arches[i] == seccomp_arch_native()) { keepNative = 1; continue; }
      if ((r = seccomp_arch_add(ctx, arches[i])) < 0) { fprintf(stderr, "arch_add: %s\n", strerror(-r)); return 3; }
    }
    if (!keepNative && (r = seccomp_arch_remove(ctx, seccomp_arch_native())) < 0) { fprintf(stderr, "arch_remove: %s\n", strerror(-r)); return 3; }
  }
  in = fmemopen(spec, len, "r");
  while (fscanf(in, "%63s", word) == 1) {
    if (strcmp(word, "rule")) { if (fscanf(in, "%63s", word) != 1) return 2; continue; }
    unsigned long action; char name[64]; int n;
    if (fscanf(in, "%lu %63s %d", &action, name, &n) != 3 || n < 0 || n > 6) return 2;
    struct scmp_arg_cmp cmp[6];
    for (int i = 0; i < n; i++) {
      unsigned idx; char op[16]; unsigned long long v, m;
      if (fscanf(in, "%u %15s %llu %llu", &idx, op, &v, &m) != 4) return 2;
      int o = op_token(op);
      if (o < 0) return 2;
      cmp[i].arg = idx; cmp[i].op = (enum scmp_compare)o;
      // libseccomp: for masked-eq the first datum is the mask
      if (o == SCMP_CMP_MASKED_EQ) { cmp[i].datum_a = m; cmp[i].datum_b = v; }
      else { cmp[i].datum_a = v; cmp[i].datum_b = 0; }
    }
    // a number stands for itself (native arch): for syscalls newer than libseccomp's tables
    int nr = (name[0] >= '0' && name[0] <= '9') ? atoi(name) : seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) { fprintf(stderr, "unknown syscall %s\n", name); return 3; }
    r = seccomp_rule_add_array(ctx, (uint32_t)action, nr, (unsigned)n, cmp);
    if (r == -EACCES) continue;  // same action as the default: nothing to add
    if (r < 0) { fprintf(stderr, "rule %s: %s\n", name, strerror(-r)); return 3; }
  }
  fclose(in);
  if ((r = seccomp_export_bpf(ctx, 1)) < 0) { fprintf(stderr, "export: %s\n", strerror(-r)); return 3; }
  seccomp_release(ctx);
  return 0;
}
