// A spawn plan decoded from JS into plain memory before clone. The TypeScript planner
// (lib/plan/build.ts) decides everything; the child only executes these steps in order.
#pragma once
#include <sched.h>
#include <deque>
#include <string>
#include <vector>
#include <linux/filter.h>
#include "common.h"

namespace nsbox {

// Child-side setup operations (bubblewrap's SetupOp list is the model).
enum class OpKind : int {
  kMkdir = 1,        // a = path, mode; creates parents too
  kMount = 2,        // a = source, b = target, c = fstype, flags, d = data; creates target dir
  kBind = 3,         // a = source, b = target; flags: extra MS_*; readonly; file => target is a file
  kSymlink = 4,      // a = link content, b = link path
  kWriteFile = 5,    // a = path, d = contents, mode
  kPropagation = 6,  // b = target, flags = MS_SHARED|MS_SLAVE|MS_PRIVATE|MS_UNBINDABLE (+MS_REC)
  kRemountRo = 7,    // b = target (keeps the flags the kernel has locked)
  kPivotRoot = 8,    // a = new root (the old root is detached); chdir("/") after
  kChmod = 9,        // a = path, mode
  kUmount = 10,      // b = target (MNT_DETACH)
  kLoopbackUp = 11,  // `lo` up in the (new) network namespace: brought up here unless the
                     // namespace's maker did (made ahead, or beside the child)
  kChown = 12,       // a = path (not followed), flags = uid, mode = gid
  kMaskOpen = 13,    // a = the template's empty file, b = its empty directory: kept as O_PATH fds
  kMaskBind = 14,    // b = target: the kMaskOpen file (file) or directory bound over it
  kUnlink = 15,      // a = path (flags: AT_REMOVEDIR for a directory)
  kMknod = 16,       // a = path, mode = type and permissions, flags = device number
  kAttach = 17,      // a = host path, b = target: the parent (as the caller, before clone)
                     // clones a's tree (open_tree, private, readonly/flags set on it); the
                     // child moves it onto b. For a rootfs the sandbox's root could not reach.
  kIdmapBind = 18,   // a = source, b = target (exists): a's mount cloned (not its submounts),
                     // idmapped through the user namespace fd in flags, read-only, nodev, and
                     // moved onto b. A view template's builder only (root, initial namespace)
  kMoveRoot = 19,    // a = a mount point, b = a mount namespace file (opened first): a's mount
                     // moved onto "/", then that namespace (the child's own) entered again, so
                     // the root is the mount now on top of "/" (an image's view template)
};

struct Op {
  OpKind kind;
  const char* a = nullptr;
  const char* b = nullptr;
  const char* c = nullptr;
  const char* d = nullptr;
  size_t dlen = 0;
  unsigned long flags = 0;
  unsigned mode = 0;
  bool readonly = false;
  bool file = false;
  bool recursive = false;
  bool real = false;  // the target and every component on its way must not be a symlink
  bool trusted = false;  // the target lies in what nsbox itself made (its tmpfs root, its /dev,
                         // a fresh proc or sysfs): by name, no resolution in the root needed
  bool netSysfs = false;  // kMount: the sysfs of the sandbox's own network namespace, whichever
                          // way it came: one made ahead brings its sysfs (moved onto b), one
                          // made beside the child is joined first (a fresh sysfs shows the
                          // namespace it is mounted in), else it is mounted here
  bool copyUp = false;    // kMount (tmpfs): the new mount starts with a copy of the directory
                          // it covers (OCI tmpcopyup)
  bool present = false;   // kBind: only where the sandbox has b (looked up in the root,
                          // symlinks followed there; missing: nothing done), as a file or a
                          // directory as b is there; a directory gets c as its source, not a
                          // (masks and read-only paths of a rootfs or a caller's mount)
  int fd = -1;           // kAttach: the detached tree the parent opened (closed by it after clone)
};

// kAttach's op.mode when the parent could not restrict the tree (no mount_setattr, before
// 5.12): the child makes it private and remounts it once it is attached
constexpr unsigned kAttachLate = 1;

struct Join { int fd; int nstype; };

// Network hand-off done by the parent between clone and "go" (net_handoff.cc implements it):
// move host link `ifindex` into the child's network namespace, then inside that namespace
// rename it to `name`, set `mtu`, add `addresses` (CIDR, v4 or v6), bring it up and add a
// default route via `gateway4` / `gateway6` when given.
struct NetHandoffSpec {
  int ifindex = 0;
  std::string name = "eth0";
  unsigned mtu = 0;
  std::vector<std::string> addresses;
  std::string gateway4, gateway6;
  // 'create' mode (faster: no namespace move, which waits an RCU grace period): the veth pair
  // is made during the hand-off, host end `hostName` enslaved to bridge ifindex `master`, the
  // peer born inside the child's namespace; ifindex is then 0
  std::string hostName;
  int master = 0;
};
int NetHandoff(const NetHandoffSpec& spec, pid_t childPid, Err* e);
int NetHandoffCreate(const NetHandoffSpec& spec, const std::string& hostName, int master, pid_t childPid, Err* e);
struct Rlimit { int resource; unsigned long long soft, hard; };

// kSameAsOut: fd 2 is fd 1's socket (`all`: one queue keeps the program's write order)
enum class StdioKind : int { kPipe = 0, kInherit = 1, kIgnore = 2, kFd = 3, kSameAsOut = 4 };

struct Plan {
  // --- namespaces
  unsigned long long cloneFlags = 0;   // CLONE_NEW* created at clone time
  unsigned long long unshareFlags = 0; // two-stage: created by unshare() after the joins
  unsigned long long lateUnshare = 0;  // unshare()d by the sandbox process after "go" (a cgroup
                                       // namespace rooted at the cgroup the parent placed it in)
  bool twoStage = false;               // joins present: stage 1 joins, stage 2 is the sandbox
  bool newPidAtStage2 = false;
  std::vector<Join> joins;             // user first, mount last
  bool netOwnerFirst = false;          // an unprivileged caller joining a network namespace owned by
                                       // another user namespace than the joined one (a spare of
                                       // nsbox's, Plan.holder): its owner and it are entered first
  // --- parent side, before "go"
  std::string uidMap, gidMap;          // empty = do not write
  bool setgroupsDeny = false;
  std::string newUidMap, newGidMap;    // set: these setuid helpers write uidMap/gidMap
  int cgroupFd = -1;                   // CLONE_INTO_CGROUP (cgroup v2)
  std::vector<std::string> cgroupProcs;// cgroup.procs files the parent writes the pid into
                                       // (v1, or v2 without CLONE_INTO_CGROUP)
  std::vector<std::string> cgroupTasks;// v1 `tasks` files the child moves itself with
  std::vector<int> cgroupTaskFds;      // v1 `tasks` files opened by the parent: the child
                                       // writes "0" to each (see spawn.cc)
  std::vector<NetHandoffSpec> net;     // links handed to the child before "go"
  bool holder = false;                 // an unprivileged caller's view template: the template,
                                       // the spares and the sandbox's user namespace are made in
                                       // nsbox's own user namespace (helpers.cc, EnsureHolder),
                                       // whose launcher writes uidMap/gidMap (never newuidmap)
  bool netPremade = false;             // the network namespace may be a spare made ahead (owned
                                       // by our user namespace): a sandbox with no capabilities
  // --- stdio, as the child will see them on 0..2
  StdioKind stdioKind[3] = {StdioKind::kPipe, StdioKind::kPipe, StdioKind::kPipe};
  int stdioFd[3] = {-1, -1, -1};
  // --- child steps
  std::vector<Op> ops;
  // The view template (helpers.cc, EnsureTemplate): the encoding of the ops that build a mount
  // namespace once, which sandboxes of the same view copy; it is also the template's key, and
  // decoded only when the template must be built. Points into the caller's buffer (valid for
  // the spawn call). Empty: none.
  const uint8_t* templateBuf = nullptr;
  size_t templateLen = 0;
  const char* hostname = nullptr;
  const char* domainname = nullptr;
  const char* timeOffsets = nullptr;   // written to /proc/self/timens_offsets
  int procFd = -1;                     // the caller's /proc (O_PATH), for timens_offsets and the bind
                                       // remounts without mount_setattr: the child's own mount
                                       // namespace may have none yet
  std::vector<Rlimit> rlimits;
  bool earlyIds = false;               // become root of the new user namespace before the mounts
  unsigned earlyUid = 0, earlyGid = 0;
  bool setIds = true;
  unsigned uid = 0, gid = 0;
  std::vector<unsigned> groups;        // gid_t
  bool setGroups = true;
  bool dropCaps = true;
  int lastCap = 40;
  // the five sets, applied in this order: bounding (the rest dropped), then after the uid
  // change permitted/effective/inheritable (capset), then ambient (raised)
  unsigned long long capsBounding = 0, capsEffective = 0, capsPermitted = 0, capsInheritable = 0, capsAmbient = 0;
  bool noNewPrivs = true;
  std::vector<sock_filter> seccomp;    // empty = none
  int pdeathsig = 9;
  int umask = -1;                      // set just before exec; -1: the caller's, inherited
  std::vector<int> extraFds;           // the caller's fds placed on 3, 4, ... in the program (kept across exec)
  bool setOomScoreAdj = false;         // the parent writes oomScoreAdj before "go"
  int oomScoreAdj = 0;
  const char* cwd = "/";
  std::vector<const char*> argv, envp, exec;  // null-terminated arrays
  // --- nsbox-init as pid 1 (spawn.cc fills these when `init` is set)
  bool init = false;
  bool tty = false;                     // a pty from the sandbox's devpts on 0..2
  bool serve = false;                   // prepared: nsbox-init waits for one run on a socket
  unsigned ttyRows = 24, ttyCols = 80;
  std::string consoleSocket;            // tty: the parent sends the master there (OCI --console-socket) instead of returning it
  int initFd = -1;                      // sealed memfd of nsbox-init
  std::vector<const char*> initArgv;    // nsbox-init ERRFD STATUSFD TTY N CANDIDATES... ARGV... (or serve), null-terminated
  // storage for every string above; a deque never moves its elements
  std::deque<std::string> strings;
  const char* Keep(std::string s) { strings.push_back(std::move(s)); return strings.back().c_str(); }
};

// Fills `plan` from a JS object; on a malformed object throws a TypeError and returns false.
bool DecodePlan(Napi::Env env, Napi::Object obj, Plan* plan, Napi::Value opsBuf, Napi::Value templateBuf, Napi::Value bindings);
// Decodes the template's ops (Plan::templateBuf) into `ops`, their strings kept in `plan`.
bool DecodeTemplateOps(Plan* plan, std::vector<Op>* ops);

// What the child reports back on the error pipe.

// Runs in the child (async-signal-safe). Never returns on success (execve).
struct ChildCtx {
  const Plan* plan;
  int goFd;     // read end of "go"
  int errFd;    // write end of the error pipe (close-on-exec)
  int closeFds[3]; // parent ends the child must close (go write end, error read end, net channel)
  int stdio[3]; // fds to place on 0..2 (or -1 for "leave as is")
  bool stage1;  // two-stage: this is the joining stage
  int rootFd;   // O_PATH fd of the new root (/newroot) once it is mounted, else -1
  int statusFd; // write end of nsbox-init's status pipe, or -1
  bool ownMm;   // not CLONE_VM (two-stage spawns): the child's mm is its own
  bool trusted; // the op being run is trusted (RunOp sets it)
  int ctlFd;    // serve: the child's end of the run socket, or -1
  bool asyncNet;  // the network namespace comes later, made beside the child (NetReady)
  bool netJoined; // ... and the child has entered it
  int netFd;      // asyncNet: the channel the namespace arrives on (RecvNetReady)
  bool restoreAffinity;       // the parent pinned us to its CPU for the setup: put this back
  const cpu_set_t* affinity;  // the caller's CPU set
  int maskFd[2];  // kMaskOpen: O_PATH fds of the template's empty file and directory
  bool inTemplate;  // started in a view template's copy: its mount points exist (mount first, mkdir on ENOENT)
  const char* freshTmpfs;  // ... except below a tmpfs this child mounted (its cgroup mounts): mkdir first there
  bool netPremade;  // born in a network namespace made ahead, lo up (NetSpare): no LoopbackUp
  int sysfsFd;      // ... and its sysfs, a detached mount the sysfs op moves into place; or -1
};

// Builds the view template's mount namespace (TemplateMain, run as a CLONE_VM|CLONE_VFORK
// helper of ours): unshares a mount namespace, runs the ops, and leaves an fd of that
// namespace in `nsFd` (the fd table is shared). Failures go to errFd as a ChildMsg.
struct TemplateBuild {
  const std::vector<Op>* ops;  // decoded from Plan::templateBuf (DecodeTemplateOps)
  int userFd;   // nsbox's own user namespace to build it in (EnsureHolder), or -1
  int errFd;
  int nsFd;
  int watchFd;  // the namespace's mounts file (poll: POLLPRI when a mount of it comes or goes), or -1
  // what the builder opens for itself in our fd table (CLONE_FILES): its /proc/thread-self and
  // its context (rootFd, the root of ops resolved in the rootfs). It closes them when done;
  // after a failure (it exits at once) the caller closes what is left (EnsureTemplate)
  int selfFd;
  ChildCtx* ctx;
};
int TemplateMain(void* arg);

// What the parent sends on "go" once the network namespace made beside the child exists:
// its fd rides along (SCM_RIGHTS); without one, err/which say what failed.
struct NetReadyMsg {
  int err;    // 0, or the errno of the failed step
  int which;  // NetStep
};
enum NetStep : int { kNetClone = 0, kNetSetnsUser = 1, kNetUnshare = 2, kNetLoopback = 3, kNetOpen = 4, kNetSend = 5 };
int ChildMain(void* arg);

}  // namespace nsbox
