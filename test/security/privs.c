// Prints what the kernel gave this process at exec: its uids, capability sets, no_new_privs and
// seccomp mode. `privs drop-exec PATH` first drops every capability it holds (ambient included)
// and then execs PATH, so what PATH prints is only what its file (setuid bit, file capabilities)
// granted.
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[1], "drop-exec") == 0) {
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capset, &h, d) != 0) { perror("capset"); return 2; }
    char* args[] = {argv[2], NULL};
    execv(argv[2], args);
    perror("execv");
    return 2;
  }
  printf("ruid=%d euid=%d\n", (int)getuid(), (int)geteuid());
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  while (f && fgets(line, sizeof line, f)) {
    if (!strncmp(line, "CapPrm:", 7) || !strncmp(line, "CapEff:", 7) || !strncmp(line, "NoNewPrivs:", 11) || !strncmp(line, "Seccomp:", 8)) {
      fputs(line, stdout);
    }
  }
  return 0;
}
