// Makes N orphans that die at once (double fork: the middle process exits, the grandchild is
// reparented to the pid namespace's init or subreaper and exits), waits a little, then counts
// the zombies in its pid namespace. Prints "zombies <count>".
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int zombies(void) {
  DIR* d = opendir("/proc");
  struct dirent* e;
  int z = 0;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    char p[300], buf[512];
    snprintf(p, sizeof p, "/proc/%.200s/stat", e->d_name);
    FILE* f = fopen(p, "r");
    if (!f) continue;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char* r = strrchr(buf, ')');
    if (r && r[1] == ' ' && r[2] == 'Z') z++;
  }
  if (d) closedir(d);
  return z;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  for (int i = 0; i < n; i++) {
    pid_t c = fork();
    if (c < 0) { perror("fork"); return 1; }
    if (c == 0) {
      if (fork() == 0) _exit(0);  // the orphan
      _exit(0);
    }
    waitpid(c, NULL, 0);  // reap the middle one: only orphans are left to init
  }
  for (int t = 0; t < 50 && zombies() > 0; t++) usleep(20000);
  printf("zombies %d\n", zombies());
  return 0;
}
