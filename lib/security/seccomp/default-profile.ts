// nsbox's default seccomp profile for code it does not trust, kept as data.
//
// Shape: an allowlist. Every syscall a normal Linux program (a shell, a compiler, an interpreter,
// a server, a package manager) needs is allowed; everything else returns EPERM, so a program
// sees "not permitted" and can fall back, instead of dying. Argument-filtered denials come first
// because the first matching rule wins. Only the native architecture passes the architecture
// check: an i386 call through `int 0x80` and an x32 call (bit 30 in the number) on x86_64 kill
// the process, so a filter written for one syscall table cannot be stepped around through
// another.
//
// What it closes, and why, in short (each rule says more):
// - creating or joining namespaces (the door to nested user namespaces and their large kernel
//   surface: most unprivileged-root kernel exploits start with `unshare(CLONE_NEWUSER)`);
// - changing the mount tree (nsbox builds it; inside, it stays as built);
// - interfaces that reach kernel-global state or have a long exploit history: bpf,
//   perf_event_open, keyrings, userfaultfd, io_uring, kexec, modules, open_by_handle_at,
//   AF_ALG and AF_VSOCK sockets;
// - terminal input injection (TIOCSTI, TIOCLINUX): CVE-2017-5226 in bubblewrap;
// - looking into other processes (ptrace, process_vm_*): inside a sandbox there is nothing to
//   debug that needs it, and on old kernels ptrace could undo seccomp.
//
// The kernel still checks capabilities on everything allowed here (chown, setuid, mknod,
// sethostname...): the profile is a second wall, not the first.
import type { SeccompProfile, SeccompRule } from './profile.js';

/** Namespace flags of clone(2); any of them set means "make a new namespace". */
export const CLONE_NAMESPACE_FLAGS =
  0x00020000 /* CLONE_NEWNS */ | 0x02000000 /* CLONE_NEWCGROUP */ | 0x04000000 /* CLONE_NEWUTS */ |
  0x08000000 /* CLONE_NEWIPC */ | 0x10000000 /* CLONE_NEWUSER */ | 0x20000000 /* CLONE_NEWPID */ |
  0x40000000 /* CLONE_NEWNET */;
// CLONE_NEWTIME (0x80) cannot be passed to clone(): those low bits are the exit signal there.

const TIOCSTI = 0x5412;
const TIOCLINUX = 0x541c;
const AF_ALG = 38;
const AF_VSOCK = 40;

const rules: SeccompRule[] = [
  // ---- argument-filtered denials (first match wins, so they come before the allowlist) ----
  {
    syscalls: 'ioctl', action: { errno: 'EPERM' },
    args: [{ index: 1, op: 'eq', value: TIOCSTI, low32: true }],
    comment: 'TIOCSTI pushes bytes into the input queue of a terminal: a sandboxed program sharing the ' +
      "user's terminal could type commands into the shell that started it (CVE-2017-5226). The kernel " +
      'reads the request as an unsigned int, so only the low 32 bits are compared: TIOCSTI | 1<<32 is caught too.',
  },
  {
    syscalls: 'ioctl', action: { errno: 'EPERM' },
    args: [{ index: 1, op: 'eq', value: TIOCLINUX, low32: true }],
    comment: 'TIOCLINUX can paste the console selection into the input queue (TIOCL_PASTESEL), the same ' +
      'injection as TIOCSTI on a virtual console. Low 32 bits, as above.',
  },
  {
    syscalls: 'socket', action: { errno: 'EAFNOSUPPORT' },
    args: [{ index: 0, op: 'eq', value: AF_ALG, low32: true }],
    comment: "AF_ALG exposes the kernel's crypto API to user space, a steady source of kernel memory-safety " +
      'bugs reachable without privilege ("Copy Fail" and others). Nothing ordinary needs it: libraries do ' +
      'crypto in user space. EAFNOSUPPORT is what a kernel without AF_ALG answers, so callers fall back.',
  },
  {
    syscalls: 'socket', action: { errno: 'EAFNOSUPPORT' },
    args: [{ index: 0, op: 'eq', value: AF_VSOCK, low32: true }],
    comment: 'AF_VSOCK talks to the hypervisor or to other VMs, outside any network namespace: a sandbox ' +
      'must not reach the host through it (and its transports have had use-after-free bugs).',
  },
  {
    syscalls: 'clone', action: 'allow',
    args: [{ index: 0, op: 'masked-eq', mask: CLONE_NAMESPACE_FLAGS, value: 0, low32: true }],
    comment: 'clone() without namespace flags is how fork() and threads are made. With any CLONE_NEW* flag it ' +
      'would create namespaces, so such calls fall through to the default (EPERM). The kernel keeps only ' +
      'the low 32 bits of the flags, hence the low-32 test.',
  },
  {
    syscalls: 'clone3', action: { errno: 'ENOSYS' },
    comment: 'clone3 takes its flags in a struct in memory, which a seccomp filter cannot read, so namespace ' +
      'flags could not be refused. ENOSYS makes glibc and musl fall back to clone(), which is filtered above.',
  },
  ...[0x0, 0x8, 0x20000, 0x20008, 0xffffffff].map((v): SeccompRule => ({
    syscalls: 'personality', action: 'allow',
    args: [{ index: 0, op: 'eq', value: v, low32: true }],
    comment: 'personality: only PER_LINUX (0), PER_LINUX32 (8, for `linux32`/`setarch` and uname), ' +
      'ADDR_NO_RANDOMIZE (0x20000, affects only the caller, used by build tools and debuggers), their union, ' +
      'and 0xffffffff (query). Other personalities change how the kernel treats the process ' +
      '(READ_IMPLIES_EXEC, MMAP_PAGE_ZERO) and have helped exploits; they get EPERM.',
  })),

  // ---- the allowlist ----
  {
    syscalls: ['read', 'write', 'readv', 'writev', 'pread64', 'pwrite64', 'preadv', 'pwritev', 'preadv2', 'pwritev2',
      'lseek', 'close', 'close_range', 'dup', 'dup2', 'dup3', 'fcntl', 'ioctl', 'sendfile', 'splice', 'tee',
      'vmsplice', 'copy_file_range', 'readahead', 'fadvise64', 'flock', 'fsync', 'fdatasync', 'sync', 'syncfs',
      'sync_file_range', 'pipe', 'pipe2'],
    action: 'allow',
    comment: 'Basic I/O on file descriptors the process already holds. ioctl is allowed after the ' +
      'TIOCSTI/TIOCLINUX denials above; drivers check their own requests.',
  },
  {
    syscalls: ['open', 'openat', 'openat2', 'creat', 'stat', 'fstat', 'lstat', 'newfstatat', 'statx', 'statfs',
      'fstatfs', 'access', 'faccessat', 'faccessat2', 'readlink', 'readlinkat', 'getdents', 'getdents64',
      'getcwd', 'chdir', 'fchdir', 'rename', 'renameat', 'renameat2', 'mkdir', 'mkdirat', 'rmdir', 'link',
      'linkat', 'unlink', 'unlinkat', 'symlink', 'symlinkat', 'truncate', 'ftruncate', 'fallocate', 'chmod',
      'fchmod', 'fchmodat', 'fchmodat2', 'umask', 'utime', 'utimes', 'utimensat', 'futimesat', 'mknod', 'mknodat',
      'setxattr', 'lsetxattr', 'fsetxattr', 'getxattr', 'lgetxattr', 'fgetxattr', 'listxattr', 'llistxattr',
      'flistxattr', 'removexattr', 'lremovexattr', 'fremovexattr', 'setxattrat', 'getxattrat', 'listxattrat',
      'removexattrat', 'file_getattr', 'file_setattr', 'cachestat'],
    action: 'allow',
    comment: 'The filesystem, as seen through the sandbox\'s own mount tree: permissions and the read-only ' +
      'mounts decide what succeeds. mknod of a device node needs CAP_MKNOD in the initial user namespace, ' +
      'so inside a user namespace it makes FIFOs and sockets only.',
  },
  {
    syscalls: ['chown', 'fchown', 'lchown', 'fchownat'],
    action: 'allow',
    comment: 'Ownership changes: package managers and archive tools need them; the kernel allows only ids ' +
      'mapped into the sandbox\'s user namespace.',
  },
  {
    syscalls: ['chroot'],
    action: 'allow',
    comment: 'chroot needs CAP_SYS_CHROOT in the sandbox\'s user namespace and can only narrow the view of a ' +
      'tree that nsbox already pivoted into; build tools (debootstrap, rpm) use it.',
  },
  {
    syscalls: ['brk', 'mmap', 'munmap', 'mprotect', 'mremap', 'msync', 'mincore', 'madvise', 'mlock', 'mlock2',
      'munlock', 'mlockall', 'munlockall', 'pkey_mprotect', 'pkey_alloc', 'pkey_free', 'memfd_create',
      'memfd_secret', 'membarrier', 'mseal', 'map_shadow_stack', 'get_mempolicy', 'set_mempolicy', 'mbind',
      'set_mempolicy_home_node'],
    action: 'allow',
    comment: 'Memory of the process itself; locked memory is bounded by RLIMIT_MEMLOCK and the cgroup.',
  },
  {
    syscalls: ['fork', 'vfork', 'execve', 'execveat', 'exit', 'exit_group', 'wait4', 'waitid', 'kill', 'tkill',
      'tgkill', 'getpid', 'getppid', 'gettid', 'set_tid_address', 'set_robust_list', 'get_robust_list',
      'rseq', 'futex', 'futex_waitv', 'futex_wake', 'futex_wait', 'futex_requeue', 'arch_prctl',
      'set_thread_area', 'get_thread_area', 'prctl', 'seccomp', 'pidfd_open', 'pidfd_send_signal',
      'process_mrelease', 'getpgid', 'setpgid', 'getpgrp', 'getsid', 'setsid', 'restart_syscall',
      'landlock_create_ruleset', 'landlock_add_rule', 'landlock_restrict_self', 'uretprobe'],
    action: 'allow',
    comment: 'Processes and threads. execve must be allowed (the filter is installed before it). kill(-1) ' +
      'reaches only the sandbox\'s own PID namespace. seccomp and landlock can only add restrictions. ' +
      'uretprobe is entered only from the kernel\'s uprobe trampoline; denying it would kill traced programs.',
  },
  {
    syscalls: ['rt_sigaction', 'rt_sigprocmask', 'rt_sigreturn', 'rt_sigpending', 'rt_sigtimedwait',
      'rt_sigqueueinfo', 'rt_tgsigqueueinfo', 'rt_sigsuspend', 'sigaltstack', 'pause', 'signalfd', 'signalfd4',
      'alarm', 'getitimer', 'setitimer', 'timer_create', 'timer_settime', 'timer_gettime', 'timer_getoverrun',
      'timer_delete', 'timerfd_create', 'timerfd_settime', 'timerfd_gettime', 'nanosleep', 'clock_nanosleep',
      'clock_gettime', 'clock_getres', 'gettimeofday', 'time', 'times'],
    action: 'allow',
    comment: 'Signals, timers and reading clocks. Setting clocks (@clock) stays denied: the realtime clock is ' +
      'host-wide.',
  },
  {
    syscalls: ['poll', 'ppoll', 'select', 'pselect6', 'epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_wait',
      'epoll_pwait', 'epoll_pwait2', 'eventfd', 'eventfd2', 'inotify_init', 'inotify_init1', 'inotify_add_watch',
      'inotify_rm_watch', 'io_setup', 'io_destroy', 'io_getevents', 'io_pgetevents', 'io_submit', 'io_cancel'],
    action: 'allow',
    comment: 'Event loops, inotify and classic Linux AIO (databases use it). io_uring is not here: see the file header.',
  },
  {
    syscalls: ['socket', 'socketpair', 'bind', 'listen', 'accept', 'accept4', 'connect', 'getsockname',
      'getpeername', 'sendto', 'recvfrom', 'sendmsg', 'recvmsg', 'sendmmsg', 'recvmmsg', 'shutdown',
      'setsockopt', 'getsockopt'],
    action: 'allow',
    comment: 'Networking inside the sandbox\'s network namespace. socket() reaches here only for families ' +
      'other than AF_ALG and AF_VSOCK.',
  },
  {
    syscalls: ['shmget', 'shmat', 'shmdt', 'shmctl', 'semget', 'semop', 'semtimedop', 'semctl', 'msgget', 'msgsnd',
      'msgrcv', 'msgctl', 'mq_open', 'mq_unlink', 'mq_timedsend', 'mq_timedreceive', 'mq_notify', 'mq_getsetattr'],
    action: 'allow',
    comment: 'System V and POSIX IPC, private to the sandbox\'s IPC namespace.',
  },
  {
    syscalls: ['getuid', 'geteuid', 'getgid', 'getegid', 'getresuid', 'getresgid', 'getgroups', 'setuid', 'setgid',
      'setreuid', 'setregid', 'setresuid', 'setresgid', 'setfsuid', 'setfsgid', 'setgroups', 'capget', 'capset'],
    action: 'allow',
    comment: 'Credentials: dropping privileges is how daemons and su/sudo-like tools work. The kernel allows ' +
      'only ids mapped into the user namespace and capabilities the process has there.',
  },
  {
    syscalls: ['uname', 'sysinfo', 'getrlimit', 'setrlimit', 'prlimit64', 'getrusage', 'getpriority', 'setpriority',
      'sched_yield', 'sched_setparam', 'sched_getparam', 'sched_setscheduler', 'sched_getscheduler',
      'sched_get_priority_max', 'sched_get_priority_min', 'sched_rr_get_interval', 'sched_setaffinity',
      'sched_getaffinity', 'sched_setattr', 'sched_getattr', 'getcpu', 'ioprio_set', 'ioprio_get', 'getrandom',
      'sethostname', 'setdomainname', 'lsm_get_self_attr', 'lsm_list_modules', 'statmount', 'listmount'],
    action: 'allow',
    comment: 'Limits, scheduling and system information. Raising limits or priorities is capability-checked and ' +
      'bounded by the cgroup. sethostname/setdomainname change the sandbox\'s own UTS namespace only (the ' +
      'kernel refuses when it is shared with a namespace the caller does not own). statmount/listmount read ' +
      'the caller\'s own mount namespace.',
  },
];

// Not listed, so EPERM (and why), beyond those named in the header:
// - ptrace, process_vm_readv/writev, process_madvise, kcmp, pidfd_getfd: reading or changing other
//   processes; before Linux 4.8 ptrace could also bypass seccomp.
// - mount, umount2, pivot_root, fsopen, fsconfig, fsmount, fspick, move_mount, open_tree,
//   open_tree_attr, mount_setattr: the mount tree stays as nsbox built it.
// - unshare, setns (and clone with namespace flags, clone3): no nested namespaces.
// - bpf, perf_event_open, userfaultfd, io_uring_setup/enter/register, keyctl, add_key,
//   request_key: large kernel interfaces, often the first step of a kernel exploit; userfaultfd
//   lets an exploit stall the kernel at a chosen page fault; io_uring runs operations that no
//   seccomp filter sees; keyrings are not namespaced.
// - kexec_load, kexec_file_load, reboot, init_module, finit_module, delete_module, iopl, ioperm,
//   swapon, swapoff, acct, quotactl, quotactl_fd, settimeofday, clock_settime, clock_adjtime,
//   adjtimex, syslog, vhangup, lookup_dcookie: act on the whole host.
// - open_by_handle_at, name_to_handle_at: opening a file by handle escapes the mount tree
//   (the "shocker" escape from early Docker).
// - fanotify_init, fanotify_mark: filesystem-wide monitoring.
// - migrate_pages, move_pages: memory placement of other processes.
// - modify_ldt, and everything in @obsolete (uselib, ustat, sysfs, _sysctl, remap_file_pages...).
// - lsm_set_self_attr: LSM state changes are the host's policy, not the sandbox's.

/**
 * nsbox's default seccomp profile for untrusted code: an allowlist for ordinary programs, EPERM for
 * everything else, native architecture only (other ABIs kill the process). See the comments of
 * each rule in `lib/security/seccomp/default-profile.ts` for the reasons.
 */
export const defaultProfile: SeccompProfile = Object.freeze({
  defaultAction: Object.freeze({ errno: 'EPERM' as const }),
  badArchAction: 'kill-process' as const,
  rules: Object.freeze(rules.map((r) => Object.freeze({
    ...r,
    syscalls: typeof r.syscalls === 'string' ? r.syscalls : Object.freeze([...r.syscalls]),
    ...(typeof r.action === 'object' ? { action: Object.freeze({ ...r.action }) } : {}),
    ...(r.args ? { args: Object.freeze(r.args.map((a) => Object.freeze({ ...a }))) } : {}),
  }))),
});
