// The CLONE_VM helpers of a spawn and the stacks they run on (helpers.cc): the clone3
// entry with a caller-supplied stack (nsbox_clone3), the sandbox child's stack, the network
// namespace made beside the child (NetMaker), the spare network namespace made ahead
// (NetSpare), the launcher that makes a child inside a view template (LaunchInTemplate), and
// the templates themselves (EnsureTemplate, whose builder is TemplateMain in child.cc).
//
// Rules. Two kinds of code live here, as in child.cc:
// - A helper's body (NetMakerMain, SpareMain, LauncherMain, and SendNetReady, which they
//   call) runs on a borrowed stack in a task that shares our memory and our thread's TLS
//   (CLONE_VM), with every signal blocked: the rules of child.cc (DESIGN.md §3) hold there.
//   Raw system calls only (sys.h), no allocation, no locks, no C++ exceptions, no libc
//   function that touches errno or global state.
// - What is declared below runs on the calling thread, before or after the helper: it may
//   allocate and call libc, but it takes plain pointers (AddonData*, Err*), never a
//   Napi::Env; failures come back as -errno (with `Err` filled where there is one), and
//   spawn.cc turns them into a JS error.
#pragma once
#include "plan.h"

#include <linux/sched.h>  // struct clone_args
#include <sched.h>

namespace nsbox {

// Runs newuidmap/newgidmap (`helper`) for `pid` with `map` ("inside outside count" lines);
// 0, or -errno with `e` filled at `step` (spawn.cc). Calling thread only, never in a helper.
int RunIdMapHelper(const std::string& helper, pid_t pid, const std::string& map, Err* e, const char* step);

// clone3 with a new stack: the child starts on `args->stack`, calls fn(arg) and exits with
// its result (it must not return into a C frame of the parent). Returns as clone3 does:
// the child's pid or -errno.
extern "C" long nsbox_clone3(void* args, size_t size, int (*fn)(void*), void* arg);

// The stack of a sandbox's CLONE_VM child (ChildMain)
constexpr size_t kChildStackSize = 256 * 1024;
// That stack of the calling spawner thread, made on first use (a guard page at its low end),
// or null.
void* ChildStack(SpawnStacks* st);

// The network namespace of a sandbox is the costliest one to create (~0.6 ms here: sysctl
// tables, the loopback device). Made inside clone3 it would delay everything else; instead
// the parent makes it beside the child, which builds its filesystem view meanwhile on the
// other CPU, and hands it over on "go" (the child enters it before it mounts sysfs, and in any
// case before exec). The maker is a short-lived CLONE_VM|CLONE_FILES helper of ours: it
// enters the sandbox's user namespace (so that namespace owns the new one, as if the child
// had made it) and, sharing our fd table, leaves the namespace's fd there.
struct NetMaker {
  int pidfd;           // the sandbox child
  int sock;            // our end of the child's network channel (shared fd table)
  const char* userNs;  // /proc/<pid>/ns/user, for kernels without setns(pidfd) (< 5.8)
  bool joinUser;       // the child has a user namespace of its own
  int avoidCpu;        // the parent's CPU: the helper moves off it (-1: stays anywhere)
  cpu_set_t cpus;      // the caller's CPU set
  int sendErr;         // errno of the send to the child; -1: nothing was sent
};
// Starts the maker; returns its pid, or -errno (then the child has been told why).
long StartNetMaker(SpawnStacks* st, NetMaker* m);
// Waits for it; 0, or -errno when the child could not be told.
int FinishNetMaker(long hp, const NetMaker& m);

// The spare network namespaces (NetSpare, up to two kept): starts making one unless two are
// there or one is on its way; takes one if one is ready (never waits). FreeSpare is in common.h.
// Any spawner thread (under d->viewMu).
void StartSpare(AddonData* d);
bool TakeSpare(AddonData* d, int* netFd, int* sysFd);

// The view template for `p.templateBuf`, built once: a duplicate of its mount namespace's fd
// (the caller's to close: another thread may drop the template meanwhile), or -errno with `e`
// filled. DropTemplates closes them all (and the spare). Both under d->viewMu.
int EnsureTemplate(AddonData* d, SpawnStacks* st, Plan& p, Err* e);
void DropTemplates(AddonData* d);
// An unprivileged caller's sandbox (Plan::holder): the launcher enters nsbox's own user
// namespace first and writes the child's id maps (the caller cannot: it is not in the child's
// parent user namespace). In: the maps; out: err (errno, 0 when written) and the file.
struct LaunchMaps {
  const char* uidMap;
  size_t uidLen;
  const char* gidMap;
  size_t gidLen;
  bool setgroupsDeny;
  int userFd, procFd;     // filled by LaunchInTemplate
  int err;                // out
  const char* failedAt;   // out: "setgroups", "uid_map" or "gid_map"
};
// Makes the sandbox child inside the template's mount namespace (and in `netFd`'s network
// namespace, when >= 0): the child's pid or -errno; *setnsErr is set when the template could
// not be entered. With `maps`, in nsbox's own user namespace (see LaunchMaps).
long LaunchInTemplate(AddonData* d, SpawnStacks* st, int templateFd, int netFd, struct clone_args* args, ChildCtx* ctx, int* setnsErr, LaunchMaps* maps = nullptr);

// Sockets made inside another network namespace (the egress policy's listeners, see
// lib/net/egress/listen.ts): a CLONE_VM|CLONE_FILES helper enters `userFd`'s user namespace
// when >= 0 (an unprivileged caller needs that for the capability over the network namespace,
// and only a single-threaded task may enter a user namespace: the helper is one), then
// `netFd`'s network namespace, and makes each socket there, bound to 127.0.0.1:<port> (TCP
// ones listening). The fds land in our table (close-on-exec, non-blocking).
constexpr int kMaxNetnsSockets = 8;
struct NetnsSockets {
  int userFd;                        // -1: stay in our user namespace
  int netFd;
  int n;
  bool tcp[kMaxNetnsSockets];        // else UDP
  unsigned short port[kMaxNetnsSockets];
  int fds[kMaxNetnsSockets];         // out
  int err;                           // out: errno of the step that failed
  int failedAt;                      // out: 0 setns(user), 1 setns(net), 2+i socket i
};
// Runs the helper and waits for it: 0, or -errno with `e` filled (no fd is left open then).
int MakeNetnsSockets(AddonData* d, NetnsSockets* s, Err* e);

}  // namespace nsbox
