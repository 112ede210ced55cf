// Test helper: reads "<arch> <name>" lines on stdin and prints "<arch> <name> <nr>" with the
// number libseccomp's own tables give (negative: libseccomp does not know it on that arch), so
// the unit tests can check nsbox's generated syscall tables against an independent source.
#include <seccomp.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  char arch[32], name[128];
  while (scanf("%31s %127s", arch, name) == 2) {
    uint32_t a = !strcmp(arch, "x86_64") ? SCMP_ARCH_X86_64 : !strcmp(arch, "x32") ? SCMP_ARCH_X32
               : !strcmp(arch, "i386") ? SCMP_ARCH_X86 : !strcmp(arch, "aarch64") ? SCMP_ARCH_AARCH64 : 0;
    if (!a) return 2;
    printf("%s %s %d\n", arch, name, seccomp_syscall_resolve_name_arch(a, name));
  }
  return 0;
}
