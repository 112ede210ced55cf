// Burns CPU and says how much it has burnt: `spin threads N` (N spinning threads in one
// process) or `spin procs N` (N spinning child processes; the parent waits), each printing
// "<id> <cpu-ms>" about every 20 ms of wall time, its own CPU time so far (thread CPU time for
// threads, process CPU time for processes). The last figure of each is a lower bound of what
// the sandbox used, whatever the machine's load. `spin orphans N`: like procs, but the
// spinners' parent exits at once, so they are orphans reparented to pid 1.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long ms(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static void spin(long id, clockid_t c) {
  long next = ms(CLOCK_MONOTONIC);
  for (;;) {
    long now = ms(CLOCK_MONOTONIC);
    if (now >= next) {
      char line[64];
      int n = snprintf(line, sizeof line, "%ld %ld\n", id, ms(c));
      if (write(1, line, (size_t)n) < 0) _exit(1);
      next = now + 20;
    }
  }
}

static void* thread(void* arg) {
  spin((long)arg, CLOCK_THREAD_CPUTIME_ID);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  long n = atol(argv[2]);
  if (strcmp(argv[1], "threads") == 0) {
    pthread_t t[64];
    for (long i = 0; i < n && i < 64; i++) pthread_create(&t[i], NULL, thread, (void*)(i + 1));
    for (;;) pause();
  }
  int orphans = strcmp(argv[1], "orphans") == 0;
  if (orphans && fork() != 0) {
    // the spinners' parent: starts them and exits
    wait(NULL);
    for (;;) pause();
  }
  for (long i = 0; i < n; i++) {
    if (fork() == 0) spin(i + 1, CLOCK_PROCESS_CPUTIME_ID);
  }
  if (orphans) _exit(0);
  for (;;) wait(NULL);
}
