// bench helper: makes one raw system call many times and prints the mean cost in ns.
//   seccomp-loop <iterations> <nr> [a0 a1 a2]
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  long n = atol(argv[1]), nr = atol(argv[2]);
  long a[3] = {0};
  for (int i = 0; i < 3 && i + 3 < argc; i++) a[i] = strtol(argv[i + 3], NULL, 0);
  struct timespec t0, t1;
  for (long i = 0; i < n / 10; i++) syscall(nr, a[0], a[1], a[2]);  // warm up
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < n; i++) syscall(nr, a[0], a[1], a[2]);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%.1f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / (double)n);
  return 0;
}
