// What a sandbox's setup sends back on the error pipe. Plain data with fixed buffers so the
// child (and nsbox-init, which has no libc) can fill it without allocating and send it
// through a pipe as is. No includes beyond <cstddef>: addon/init/init.cc uses it too.
#pragma once
#include <cstddef>

namespace nsbox {

// Filled where a kernel call fails; context (step, path) is added on the way up.
struct Err {
  int err = 0;              // positive errno
  char step[32] = {0};      // plan step, e.g. "mount", "exec", "uid_map"
  char syscall[32] = {0};   // e.g. "pivot_root"
  char path[256] = {0};     // the path involved, if any
  char message[256] = {0};  // extra words, e.g. netlink extended ack
};

// Async-signal-safe string copy (no libc locale, no allocation).
inline void CopyStr(char* dst, size_t cap, const char* src) {
  size_t i = 0;
  if (src) for (; i + 1 < cap && src[i]; i++) dst[i] = src[i];
  dst[i] = 0;
}

// How nsbox asks nsbox-init (pid 1) to end the sandbox, so that every process is reaped by
// init and its CPU time reaches the rusage nsbox reads (see addon/init/init.cc): this signal,
// queued (SI_QUEUE) with this value. A plain signal of the same number is forwarded as usual.
constexpr int kInitKillSignal = 32;  // the kernel's first real-time signal (libcs keep it internal)
constexpr int kInitKillValue = 0x6e736b31;

struct ChildMsg {
  int kind;    // 1 = error, 2 = stage-2 pid, 3 = stage 1 has unshared (write maps now),
               // 4 = tty master is open as fd `pid` in the child (take it, then "go" again)
  int pid;
  Err err;
};

}  // namespace nsbox
