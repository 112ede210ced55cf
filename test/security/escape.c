// Hostile programs for the filesystem/process side of the sandbox (run inside spawnIsolated by
// test/security/escape.test.ts). Same protocol as hostile.c: one line per attempt,
//   DENIED <what> ...   the sandbox stopped it
//   ALLOWED <what> ...  it got through
// exit 0 when every attempt was DENIED, 1 otherwise. Attempts are built so that, if they get
// through, they change nothing that matters on the host (writes of harmless values, or of the
// value already there, and only where the sandbox should have no write access at all).
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;

static void denied(const char* what, const char* why) { printf("DENIED %s %s\n", what, why); }
static void allowed(const char* what, const char* why) { printf("ALLOWED %s %s\n", what, why); failures++; }

// open for writing must fail; if it opens, nothing is written
static void no_write_open(const char* path) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  char what[300];
  snprintf(what, sizeof what, "open-for-write(%s)", path);
  if (fd >= 0) { close(fd); allowed(what, "opened"); }
  else { char e[32]; snprintf(e, sizeof e, "errno=%d", errno); denied(what, e); }
}

// /proc/*/exe of every visible process: overwriting the binary behind it was CVE-2019-5736
static int attack_proc_exe(void) {
  DIR* d = opendir("/proc");
  if (!d) { perror("opendir /proc"); return 2; }
  struct dirent* e;
  int n = 0;
  while ((e = readdir(d))) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    char p[300];
    snprintf(p, sizeof p, "/proc/%.200s/exe", e->d_name);
    no_write_open(p);
    n++;
  }
  closedir(d);
  no_write_open("/proc/self/exe");
  return n == 0 ? 2 : failures ? 1 : 0;
}

// the only fds a sandboxed program holds are 0, 1, 2 (plus the directory being listed)
static void list_fds(const char* dir) {
  DIR* d = opendir(dir);
  if (!d) { char w[64]; snprintf(w, sizeof w, "errno=%d", errno); denied(dir, w); return; }
  int self = dirfd(d);
  struct dirent* e;
  int extra = 0;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    int fd = atoi(e->d_name);
    // the directory being listed is open in this very process
    int mine = !strcmp(dir, "/proc/self/fd") || (getpid() == 1 && !strcmp(dir, "/proc/1/fd"));
    if (fd <= 2 || (fd == self && mine)) continue;
    char link[256] = {0}, p[300], what[600];
    snprintf(p, sizeof p, "%.40s/%.200s", dir, e->d_name);
    ssize_t n = readlink(p, link, sizeof link - 1);
    if (n < 0 && (errno == EACCES || errno == EPERM)) {
      // an fd of pid 1 (nsbox-init's status pipe to the spawner): listed, but neither
      // readable nor openable from here (pid 1 is not dumpable)
      int o = open(p, O_WRONLY | O_CLOEXEC);
      if (o >= 0) { close(o); snprintf(what, sizeof what, "extra-fd %s opened", p); allowed(what, ""); extra++; continue; }
      printf("DENIED %s unreachable (errno=%d)\n", p, errno);
      continue;
    }
    snprintf(what, sizeof what, "extra-fd %s -> %s", p, n > 0 ? link : "?");
    allowed(what, "");
    extra++;
  }
  closedir(d);
  if (!extra) printf("DENIED %s holds only stdio\n", dir);
}

static int attack_fds(void) {
  list_fds("/proc/self/fd");
  list_fds("/proc/1/fd");
  return failures ? 1 : 0;
}

static int attack_kernel_files(void) {
  no_write_open("/proc/sysrq-trigger");
  no_write_open("/proc/sys/kernel/core_pattern");
  no_write_open("/proc/sys/kernel/modprobe");
  no_write_open("/proc/sys/vm/drop_caches");
  no_write_open("/sys/kernel/uevent_helper");
  no_write_open("/sys/kernel/mm/transparent_hugepage/enabled");
  return failures ? 1 : 0;
}

// cgroup v1 release_agent (CVE-2022-0492): no cgroupfs of the sandbox may be written, and no
// new cgroup v1 hierarchy mounted
static int attack_release_agent(void) {
  FILE* m = fopen("/proc/self/mounts", "r");
  char line[1024];
  while (m && fgets(line, sizeof line, m)) {
    char src[256], dir[512], type[64];
    if (sscanf(line, "%255s %511s %63s", src, dir, type) != 3) continue;
    if (strcmp(type, "cgroup") && strcmp(type, "cgroup2")) continue;
    char p[600];
    snprintf(p, sizeof p, "%s/release_agent", dir);
    if (access(p, F_OK) == 0) no_write_open(p);
    snprintf(p, sizeof p, "%s/cgroup.procs", dir);
    if (access(p, F_OK) == 0) no_write_open(p);
  }
  if (m) fclose(m);
  mkdir("/tmp/nsbox-cg", 0700);
  if (mount("cgroup", "/tmp/nsbox-cg", "cgroup", 0, "memory") == 0) { umount2("/tmp/nsbox-cg", MNT_DETACH); allowed("mount(cgroup v1)", ""); }
  else { char e[32]; snprintf(e, sizeof e, "errno=%d", errno); denied("mount(cgroup v1)", e); }
  return failures ? 1 : 0;
}

// kill(-1, SIGKILL) reaches only the sandbox's processes (the caller is not signalled)
static int attack_kill_all(void) {
  // safety: only where this program is pid 1 of a pid namespace of its own
  if (getpid() != 1) { printf("SKIP not pid 1 of a pid namespace: refusing kill(-1)\n"); return 2; }
  if (kill(-1, SIGKILL) == 0) printf("NOTE kill(-1) returned 0 (signalled the sandbox's own processes)\n");
  else printf("NOTE kill(-1) errno=%d\n", errno);
  printf("DENIED kill(-1) survived\n");
  return 0;
}

// paths that show host kernel state: reading them must fail or give nothing
static int attack_masked(void) {
  const char* paths[] = {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/kallsyms",
                         "/sys/firmware/acpi/tables/DSDT"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
    char what[128];
    snprintf(what, sizeof what, "read(%s)", paths[i]);
    if (fd < 0) { char e[32]; snprintf(e, sizeof e, "errno=%d", errno); denied(what, e); continue; }
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n <= 0) denied(what, "empty");
    else if (!strcmp(paths[i], "/proc/kallsyms") && !memcmp(buf, "0000000000000000", 16)) denied(what, "addresses hidden");
    else { char w[32]; snprintf(w, sizeof w, "%zd bytes", n); allowed(what, w); }
  }
  return failures ? 1 : 0;
}

// no_new_privs is set, so setuid/file-capability binaries gain nothing at exec
static int attack_nnp(void) {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  int nnp = -1;
  while (f && fgets(line, sizeof line, f)) sscanf(line, "NoNewPrivs: %d", &nnp);
  if (f) fclose(f);
  if (nnp == 1) denied("setuid-gain", "NoNewPrivs=1");
  else { char w[32]; snprintf(w, sizeof w, "NoNewPrivs=%d", nnp); allowed("setuid-gain", w); }
  return failures ? 1 : 0;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc < 2) { fprintf(stderr, "usage: escape <proc-exe|fds|kernel-files|release-agent|kill-all|masked|nnp>\n"); return 2; }
  const char* c = argv[1];
  if (!strcmp(c, "proc-exe")) return attack_proc_exe();
  if (!strcmp(c, "fds")) return attack_fds();
  if (!strcmp(c, "kernel-files")) return attack_kernel_files();
  if (!strcmp(c, "release-agent")) return attack_release_agent();
  if (!strcmp(c, "kill-all")) return attack_kill_all();
  if (!strcmp(c, "masked")) return attack_masked();
  if (!strcmp(c, "nnp")) return attack_nnp();
  fprintf(stderr, "unknown attack %s\n", c);
  return 2;
}
