// Named syscall groups, in the manner of systemd's `SystemCallFilter=@group` sets, written for
// nsbox. A group may name other groups. Names that a given architecture lacks are skipped for
// that architecture (e.g. `vm86` exists on i386 only).

/** Syscall groups by name (each starts with `@`). */
export const SYSCALL_GROUPS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  /** Attaching, detaching and moving filesystems: changes what the sandbox's tree looks like. */
  '@mount': ['mount', 'umount', 'umount2', 'pivot_root', 'chroot', 'fsopen', 'fsconfig', 'fsmount', 'fspick',
    'move_mount', 'open_tree', 'open_tree_attr', 'mount_setattr'],
  /** Loading and unloading kernel modules: code in ring 0. */
  '@module': ['init_module', 'finit_module', 'delete_module', 'create_module', 'query_module', 'get_kernel_syms'],
  /** Direct port and PCI configuration access. */
  '@raw-io': ['ioperm', 'iopl', 'pciconfig_iobase', 'pciconfig_read', 'pciconfig_write'],
  /** Setting the system clock (host-wide: there is no clock namespace for CLOCK_REALTIME). */
  '@clock': ['adjtimex', 'clock_adjtime', 'clock_adjtime64', 'clock_settime', 'clock_settime64', 'settimeofday', 'stime'],
  /** Rebooting the machine or replacing its kernel. */
  '@reboot': ['reboot', 'kexec_load', 'kexec_file_load'],
  /** Enabling and disabling swap devices. */
  '@swap': ['swapon', 'swapoff'],
  /** Kernel keyrings: shared with the host, not namespaced. */
  '@keyring': ['add_key', 'keyctl', 'request_key'],
  /** Tracing and inspecting other processes, and the perf subsystem. */
  '@debug': ['ptrace', 'process_vm_readv', 'process_vm_writev', 'perf_event_open', 'lookup_dcookie', 'pidfd_getfd'],
  /** Emulating other CPUs or segment tricks: little used, a history of kernel bugs. */
  '@cpu-emulation': ['modify_ldt', 'vm86', 'vm86old', 'subpage_prot', 'switch_endian'],
  /** Syscalls nothing current uses: unimplemented stubs and long-replaced interfaces. */
  '@obsolete': ['_sysctl', 'afs_syscall', 'bdflush', 'break', 'create_module', 'ftime', 'get_kernel_syms', 'getpmsg',
    'gtty', 'idle', 'lock', 'mpx', 'prof', 'profil', 'putpmsg', 'query_module', 'security', 'sgetmask', 'ssetmask',
    'stty', 'sysfs', 'tuxcall', 'ulimit', 'uselib', 'ustat', 'vserver', 'nfsservctl', 'remap_file_pages'],
  /** Creating or joining namespaces (nsbox sets namespaces up itself; inside, nesting is refused). */
  '@namespace': ['unshare', 'setns'],
  /** io_uring: a second syscall interface that bypasses per-syscall filtering. */
  '@io-uring': ['io_uring_setup', 'io_uring_enter', 'io_uring_register'],
  /** The eBPF loader and verifier. */
  '@bpf': ['bpf'],
  /** Changing user and group ids. */
  '@setuid': ['setuid', 'setuid32', 'setgid', 'setgid32', 'setreuid', 'setreuid32', 'setregid', 'setregid32',
    'setresuid', 'setresuid32', 'setresgid', 'setresgid32', 'setfsuid', 'setfsuid32', 'setfsgid', 'setfsgid32',
    'setgroups', 'setgroups32'],
  /** Changing file ownership. */
  '@chown': ['chown', 'chown32', 'fchown', 'fchown32', 'fchownat', 'lchown', 'lchown32'],
  /** Calls that need a capability or act on the whole host. */
  '@privileged': ['@clock', '@module', '@raw-io', '@reboot', '@swap', '@mount', '@setuid', '@chown', '@namespace',
    'acct', 'bpf', 'capset', 'fanotify_init', 'open_by_handle_at', 'quotactl', 'quotactl_fd', 'setdomainname',
    'sethostname', 'vhangup', 'nfsservctl', 'lookup_dcookie', '_sysctl', 'syslog'],
});

/**
 * Expands `@group` names (recursively) into plain syscall names; plain names pass through.
 * Throws RangeError for an unknown group.
 */
export function expandGroups(names: readonly string[], option = 'syscalls'): string[] {
  const out = new Set<string>();
  const walk = (n: string, depth: number) => {
    if (!n.startsWith('@')) { out.add(n); return; }
    const g = SYSCALL_GROUPS[n];
    if (!g) throw new RangeError(`${option}: unknown syscall group '${n}' (known: ${Object.keys(SYSCALL_GROUPS).join(', ')})`);
    if (depth > 8) throw new RangeError(`${option}: group '${n}' nests too deep`);
    for (const m of g) walk(m, depth + 1);
  };
  for (const n of names) walk(n, 0);
  return [...out];
}
