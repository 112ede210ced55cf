// Test helper: makes one raw system call given on the command line and reports what the kernel
// answered, so tests can compare the kernel's seccomp verdict with nsbox's BPF interpreter.
//   probe <nr> [a0 .. a5]     numbers in C notation (0x.. accepted), 64-bit
// Prints "RET <ret> ERRNO <errno>" and exits 0; on SIGSYS from a trap prints "TRAP <nr>" and
// exits 99; a seccomp kill ends it by SIGSYS. Callers choose calls that are harmless if they run.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void on_sigsys(int sig, siginfo_t* si, void* uc) {
  (void)sig; (void)uc;
  char buf[64];
  int n = snprintf(buf, sizeof buf, "TRAP %d\n", si->si_syscall);
  if (write(1, buf, (size_t)n) < 0) {}
  _exit(99);
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGSYS, &sa, NULL);
  long nr = (long)strtoull(argv[1], NULL, 0);
  unsigned long a[6] = {0};
  for (int i = 0; i < 6 && i + 2 < argc; i++) a[i] = strtoull(argv[i + 2], NULL, 0);
  errno = 0;
  long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
  printf("RET %ld ERRNO %d\n", r, r == -1 ? errno : 0);
  return 0;
}
