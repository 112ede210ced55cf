// The mount-lock probe of the view-template tests: Python run inside a sandbox that keeps
// CAP_SYS_ADMIN (and no seccomp), trying the system calls themselves (util-linux's mount and
// umount have policies of their own) on the mounts its copy of a template got. Each attempt
// prints `<what> <strerror>`, or `<what> LEAK` when the kernel let it through.
export const MOUNT_LOCK_PROBE = `import ctypes, fcntl, os
libc = ctypes.CDLL(None, use_errno=True)
MS_REMOUNT, MS_BIND, MS_MOVE, MNT_DETACH = 32, 4096, 8192, 2
def attempt(what, rc):
    print(what, 'LEAK' if rc == 0 else os.strerror(ctypes.get_errno()))
attempt('umount /dev', libc.umount2(b'/dev', MNT_DETACH))
attempt('umount /dev/null', libc.umount2(b'/dev/null', MNT_DETACH))
attempt('umount /usr', libc.umount2(b'/usr', MNT_DETACH))
attempt('remount / rw', libc.mount(None, b'/', None, MS_REMOUNT, None))
attempt('remount bind / rw', libc.mount(None, b'/', None, MS_REMOUNT | MS_BIND, None))
attempt('remount bind /dev rw', libc.mount(None, b'/dev', None, MS_REMOUNT | MS_BIND, None))
attempt('remount bind /usr rw', libc.mount(None, b'/usr', None, MS_REMOUNT | MS_BIND, None))
attempt('move /dev', libc.mount(b'/dev', b'/tmp', None, MS_MOVE, None))
print('hidden', os.path.exists('/dev/proc') or os.path.exists('/dev/sys'))`;

/** What MOUNT_LOCK_PROBE prints when every mount is locked and the hidden proc and sysfs are out of reach. */
export const MOUNT_LOCK_EXPECTED = [
  'umount /dev Invalid argument', 'umount /dev/null Invalid argument', 'umount /usr Invalid argument',
  'remount / rw Operation not permitted', 'remount bind / rw Operation not permitted', 'remount bind /dev rw Operation not permitted',
  'remount bind /usr rw Operation not permitted', 'move /dev Invalid argument', 'hidden False',
];
