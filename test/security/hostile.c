// Hostile programs for the seccomp battery, one per subcommand, built statically by the test
// setup (test/security/build.ts) so they run in any rootfs. Each attempts something a sandboxed
// program must not be able to do and prints one line per attempt:
//   DENIED <what> errno=<n>      the call failed with the errno the filter gives
//   ALLOWED <what> ret=<r> errno=<n>   anything else (it ran, or failed for another reason)
// Exit status: 0 when every attempt was DENIED, 1 otherwise. The arch subcommands (i386, x32)
// expect to be killed by SIGSYS under a filter and print what they got if not.
// Arguments are chosen so that, should a call get through (as it does without a filter, which
// the tests also run to show each attempt is real), it changes nothing on the host.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x80
#endif

static int failures;

// expect the raw call to fail with errno `want`
static void expect_errno(const char* what, long ret, int want) {
  int e = errno;
  if (ret == -1 && e == want) printf("DENIED %s errno=%d\n", what, e);
  else { printf("ALLOWED %s ret=%ld errno=%d\n", what, ret, ret == -1 ? e : 0); failures++; }
}
#define TRY(what, want, call) do { errno = 0; long r_ = (long)(call); expect_errno(what, r_, want); } while (0)

static int attack_unshare(void) {
  struct { const char* n; int f; } flags[] = {
    {"unshare(CLONE_NEWUSER)", CLONE_NEWUSER}, {"unshare(CLONE_NEWNS)", CLONE_NEWNS},
    {"unshare(CLONE_NEWNET)", CLONE_NEWNET}, {"unshare(CLONE_NEWPID)", CLONE_NEWPID},
    {"unshare(CLONE_NEWUTS)", CLONE_NEWUTS}, {"unshare(CLONE_NEWIPC)", CLONE_NEWIPC},
    {"unshare(CLONE_NEWCGROUP)", CLONE_NEWCGROUP}, {"unshare(CLONE_NEWTIME)", CLONE_NEWTIME},
  };
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) TRY(flags[i].n, EPERM, syscall(SYS_unshare, flags[i].f));
  int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  TRY("setns(/proc/self/ns/net)", EPERM, syscall(SYS_setns, fd, 0));
  TRY("setns(-1)", EPERM, syscall(SYS_setns, -1, CLONE_NEWUSER));
  return failures ? 1 : 0;
}

static int attack_clone(void) {
  // raw clone with a namespace flag: if it got through, the child exits at once
  long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
  if (r == 0) _exit(0);
  if (r > 0) waitpid((pid_t)r, NULL, 0);
  expect_errno("clone(CLONE_NEWUSER)", r, EPERM);
  // the same with high bits set in the flags word (the kernel keeps only the low 32)
  r = syscall(SYS_clone, (unsigned long)(CLONE_NEWNET | SIGCHLD) | (1UL << 32), 0, 0, 0, 0);
  if (r == 0) _exit(0);
  if (r > 0) waitpid((pid_t)r, NULL, 0);
  expect_errno("clone(CLONE_NEWNET | 1<<32)", r, EPERM);
  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = CLONE_NEWUSER;
  ca.exit_signal = SIGCHLD;
  r = syscall(SYS_clone3, &ca, sizeof ca);
  if (r == 0) _exit(0);
  if (r > 0) waitpid((pid_t)r, NULL, 0);
  expect_errno("clone3(CLONE_NEWUSER)", r, ENOSYS);
  return failures ? 1 : 0;
}

static int attack_mount(void) {
  // targets that do not exist: without a filter these fail with ENOENT, never mount anything
  TRY("mount(tmpfs)", EPERM, syscall(SYS_mount, "none", "/nonexistent-nsbox-target", "tmpfs", 0, NULL));
  TRY("umount2", EPERM, syscall(SYS_umount2, "/nonexistent-nsbox-target", 2 /* MNT_DETACH */));
  TRY("pivot_root", EPERM, syscall(SYS_pivot_root, "/nonexistent-nsbox-a", "/nonexistent-nsbox-b"));
  TRY("fsopen", EPERM, syscall(SYS_fsopen, "nsbox-no-such-fs", 0));
  TRY("fspick", EPERM, syscall(SYS_fspick, AT_FDCWD, "/nonexistent-nsbox-target", 0));
  TRY("fsconfig", EPERM, syscall(SYS_fsconfig, -1, 0, NULL, NULL, 0));
  TRY("fsmount", EPERM, syscall(SYS_fsmount, -1, 0, 0));
  TRY("open_tree", EPERM, syscall(SYS_open_tree, AT_FDCWD, "/nonexistent-nsbox-target", 0));
  TRY("move_mount", EPERM, syscall(SYS_move_mount, -1, "", -1, "", 0));
  TRY("mount_setattr", EPERM, syscall(SYS_mount_setattr, -1, "", 0, NULL, 0));
  return failures ? 1 : 0;
}

static int attack_kernel(void) {
  TRY("bpf(BPF_PROG_LOAD)", EPERM, syscall(SYS_bpf, 5, NULL, 0));
  TRY("perf_event_open", EPERM, syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
  TRY("userfaultfd", EPERM, syscall(SYS_userfaultfd, O_CLOEXEC));
  TRY("keyctl(GET_KEYRING_ID)", EPERM, syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
  TRY("add_key", EPERM, syscall(SYS_add_key, "user", "nsbox-test", "x", 1, -100 /* no such keyring: never stores a key */));
  TRY("request_key", EPERM, syscall(SYS_request_key, "user", "nsbox-no-such-key", NULL, 0));
  char params[120];
  memset(params, 0, sizeof params);
  long r = syscall(SYS_io_uring_setup, 1, params);
  if (r >= 0) close((int)r);
  expect_errno("io_uring_setup", r, EPERM);
  TRY("io_uring_enter", EPERM, syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0));
  TRY("io_uring_register", EPERM, syscall(SYS_io_uring_register, -1, 0, NULL, 0));
  TRY("kexec_load", EPERM, syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL));
  TRY("kexec_file_load", EPERM, syscall(SYS_kexec_file_load, -1, -1, 0, NULL, 0));
  TRY("init_module", EPERM, syscall(SYS_init_module, NULL, 0, ""));
  TRY("finit_module", EPERM, syscall(SYS_finit_module, -1, "", 0));
  TRY("delete_module", EPERM, syscall(SYS_delete_module, "nsbox_no_such_module", O_NONBLOCK));
  TRY("open_by_handle_at", EPERM, syscall(SYS_open_by_handle_at, -1, NULL, 0));
  TRY("ptrace(PEEKDATA, no such pid)", EPERM, syscall(SYS_ptrace, 2 /* PTRACE_PEEKDATA */, 0x7ffffff0, 0, 0));
  TRY("personality(READ_IMPLIES_EXEC)", EPERM, syscall(SYS_personality, 0x0400000));
  TRY("modify_ldt", EPERM, syscall(SYS_modify_ldt, 0, NULL, 0));
  TRY("iopl(3)", EPERM, syscall(SYS_iopl, 3 + 1000));
  return failures ? 1 : 0;
}

static int attack_socket(void) {
  long r = syscall(SYS_socket, AF_ALG, SOCK_SEQPACKET, 0);
  if (r >= 0) close((int)r);
  expect_errno("socket(AF_ALG)", r, EAFNOSUPPORT);
  r = syscall(SYS_socket, (unsigned long)AF_ALG | (1UL << 32), SOCK_SEQPACKET, 0);
  if (r >= 0) close((int)r);
  expect_errno("socket(AF_ALG | 1<<32)", r, EAFNOSUPPORT);
  r = syscall(SYS_socket, AF_VSOCK, SOCK_STREAM, 0);
  if (r >= 0) close((int)r);
  expect_errno("socket(AF_VSOCK)", r, EAFNOSUPPORT);
  return failures ? 1 : 0;
}

static int attack_tty(void) {
  int m = posix_openpt(O_RDWR | O_NOCTTY);
  if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0) { perror("posix_openpt"); return 2; }
  int s = open(ptsname(m), O_RDWR | O_NOCTTY);
  if (s < 0) { perror("open pts"); return 2; }
  struct termios t;
  if (ioctl(s, TCGETS, &t) < 0) { printf("ALLOWED? TCGETS failed errno=%d (ioctl itself must work)\n", errno); failures++; }
  char c = 'x';
  TRY("ioctl(TIOCSTI)", EPERM, syscall(SYS_ioctl, s, TIOCSTI, &c));
  TRY("ioctl(TIOCSTI | 1<<32)", EPERM, syscall(SYS_ioctl, s, (unsigned long)TIOCSTI | (1UL << 32), &c));
  TRY("ioctl(TIOCSTI | 0xffffffff00000000)", EPERM, syscall(SYS_ioctl, s, (unsigned long)TIOCSTI | 0xffffffff00000000UL, &c));
  char sel[2] = {3 /* TIOCL_PASTESEL */, 0};
  TRY("ioctl(TIOCLINUX)", EPERM, syscall(SYS_ioctl, s, TIOCLINUX, sel));
  return failures ? 1 : 0;
}

// int 0x80: the i386 syscall table from a 64-bit process (i386 getpid = 20)
static int attack_i386(void) {
#if defined(__x86_64__)
  long ret;
  __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
  printf("ALLOWED i386 getpid via int 0x80 ret=%ld (pid %d)\n", ret, getpid());
  long r2;
  __asm__ volatile("int $0x80" : "=a"(r2) : "a"(310L /* i386 unshare */), "b"((long)CLONE_NEWUSER) : "memory");
  printf("ALLOWED i386 unshare(CLONE_NEWUSER) via int 0x80 ret=%ld\n", r2);
  return 1;
#else
  printf("SKIP not x86_64\n");
  return 3;
#endif
}

// the x32 ABI: syscall numbers with bit 30 set (x32 getpid = 0x40000000 | 39)
static int attack_x32(void) {
#if defined(__x86_64__)
  long r = syscall(0x40000000L | 39);
  printf("ALLOWED x32 getpid ret=%ld errno=%d\n", r, r == -1 ? errno : 0);
  r = syscall(0x40000000L | 272 /* unshare */, CLONE_NEWUSER);
  printf("ALLOWED x32 unshare ret=%ld errno=%d\n", r, r == -1 ? errno : 0);
  return 1;
#else
  printf("SKIP not x86_64\n");
  return 3;
#endif
}

static void* thread_main(void* p) { return p; }

// Ordinary things every program does must keep working under the default profile.
static int benign(const char* self) {
  int bad = 0;
#define OK(what, cond) do { if (cond) printf("OK %s\n", what); else { printf("BROKEN %s errno=%d\n", what, errno); bad++; } } while (0)
  pid_t p = fork();
  if (p == 0) _exit(7);
  int st = 0;
  OK("fork+wait", p > 0 && waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 7);
  pthread_t th;
  OK("pthread_create (clone3 -> ENOSYS -> clone)", pthread_create(&th, NULL, thread_main, NULL) == 0 && pthread_join(th, NULL) == 0);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  OK("socket(AF_INET)", s >= 0);
  if (s >= 0) close(s);
  int sv[2];
  OK("socketpair(AF_UNIX)", socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  int pp[2];
  OK("pipe2", pipe2(pp, O_CLOEXEC) == 0 && write(pp[1], "a", 1) == 1);
  void* m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  OK("mmap", m != MAP_FAILED);
  int fd = open("/proc/self/status", O_RDONLY);
  char buf[4096];
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  OK("open+read /proc/self/status", n > 0);
  if (n > 0) {
    buf[n] = 0;
    char* sc = strstr(buf, "Seccomp:");
    if (sc) printf("STATUS %.*s\n", (int)strcspn(sc, "\n"), sc);
  }
  OK("personality(query)", syscall(SYS_personality, 0xffffffffUL) >= 0);
  int m2 = posix_openpt(O_RDWR | O_NOCTTY);
  struct termios t;
  int sl = (m2 >= 0 && grantpt(m2) == 0 && unlockpt(m2) == 0) ? open(ptsname(m2), O_RDWR | O_NOCTTY) : -1;
  OK("ioctl(TCGETS) on a pty", sl >= 0 && ioctl(sl, TCGETS, &t) == 0);
  p = fork();
  if (p == 0) { execl(self, self, "noop", (char*)NULL); _exit(99); }
  OK("fork+execve", p > 0 && waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  return bad ? 1 : 0;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc < 2) { fprintf(stderr, "usage: hostile <unshare|clone|mount|kernel|socket|tty|i386|x32|benign|noop>\n"); return 2; }
  const char* c = argv[1];
  if (!strcmp(c, "unshare")) return attack_unshare();
  if (!strcmp(c, "clone")) return attack_clone();
  if (!strcmp(c, "mount")) return attack_mount();
  if (!strcmp(c, "kernel")) return attack_kernel();
  if (!strcmp(c, "socket")) return attack_socket();
  if (!strcmp(c, "tty")) return attack_tty();
  if (!strcmp(c, "i386")) return attack_i386();
  if (!strcmp(c, "x32")) return attack_x32();
  if (!strcmp(c, "benign")) return benign(argv[0]);
  if (!strcmp(c, "noop")) return 0;
  fprintf(stderr, "unknown attack %s\n", c);
  return 2;
}
