// nsbox-init (addon/init/init.cc), built by binding.gyp / CMakeLists.txt as a static program
// and embedded here. On first use it is copied into a sealed memfd that stays open (close-on-
// exec) for the life of the process; the child execs it with execveat(fd, "", AT_EMPTY_PATH).
#include "common.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#ifndef NSBOX_INIT_PATH
#error "NSBOX_INIT_PATH must name the built nsbox-init program"
#endif

__asm__(
    ".section .rodata\n"
    ".balign 16\n"
    ".globl nsbox_init_blob\n"
    ".hidden nsbox_init_blob\n"
    "nsbox_init_blob:\n"
    ".incbin \"" NSBOX_INIT_PATH "\"\n"
    ".globl nsbox_init_blob_end\n"
    ".hidden nsbox_init_blob_end\n"
    "nsbox_init_blob_end:\n"
    ".previous\n");
extern "C" const unsigned char nsbox_init_blob[];
extern "C" const unsigned char nsbox_init_blob_end[];

namespace nsbox {

int InitProgramFd(Napi::Env env, Err* e) {
  AddonData* d = env.GetInstanceData<AddonData>();
  if (d->initFd >= 0) return d->initFd;
  UniqueFd fd(memfd_create("nsbox-init", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return Fail(e, errno, "init", "memfd_create");
  const unsigned char* p = nsbox_init_blob;
  size_t left = (size_t)(nsbox_init_blob_end - nsbox_init_blob);
  while (left > 0) {
    ssize_t n = write(fd.get(), p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Fail(e, n < 0 ? errno : EIO, "init", "write");
    p += n;
    left -= (size_t)n;
  }
  if (fchmod(fd.get(), 0555) < 0) return Fail(e, errno, "init", "fchmod");
  if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
    return Fail(e, errno, "init", "fcntl(F_ADD_SEALS)");
  }
  d->initFd = fd.release();
  return d->initFd;
}

}  // namespace nsbox
