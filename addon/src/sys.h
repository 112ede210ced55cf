// Raw system calls for the code between clone and exec.
//
// The child is cloned with CLONE_VM, so it shares the parent's memory *and* the parent
// thread's TLS: a glibc wrapper would write the child's errno into the parent thread's errno
// while the parent runs. These wrappers return -errno instead and touch no libc state; they
// are async-signal-safe by construction.
#pragma once
#include <cstddef>
#include <cstdint>
#include <sys/syscall.h>

namespace nsbox::sys {

#if defined(__x86_64__)
static inline long raw6(long n, long a, long b, long c, long d, long e, long f) {
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}
#elif defined(__aarch64__)
static inline long raw6(long n, long a, long b, long c, long d, long e, long f) {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  register long x5 __asm__("x5") = f;
  __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
  return x0;
}
#else
#error "nsbox: raw syscalls are implemented for x86_64 and aarch64"
#endif

template <typename A = long, typename B = long, typename C = long, typename D = long, typename E = long, typename F = long>
static inline long call(long n, A a = 0, B b = 0, C c = 0, D d = 0, E e = 0, F f = 0) {
  return raw6(n, (long)a, (long)b, (long)c, (long)d, (long)e, (long)f);
}

}  // namespace nsbox::sys

// Numbers that older headers may lack.
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
namespace nsbox::sys {
// Brings `lo` up in the calling task's network namespace: 0 or -errno. Raw syscalls only (the
// spawn child and the helper that makes a network namespace both use it).
static inline long LoopbackUp() {
  long sock = call(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return sock;
  struct ifreq ifr{};
  ifr.ifr_name[0] = 'l';
  ifr.ifr_name[1] = 'o';
  long r = call(SYS_ioctl, sock, SIOCGIFFLAGS, &ifr);
  if (r == 0) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    r = call(SYS_ioctl, sock, SIOCSIFFLAGS, &ifr);
  }
  call(SYS_close, sock);
  return r;
}
}  // namespace nsbox::sys
