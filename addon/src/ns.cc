// Namespace files: open, identify (type, inode, owning user namespace), persist with a bind
// mount (as `ip netns add` does) and remove.
#include "common.h"
#include "helpers.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>

#ifndef NS_GET_USERNS
#define NSIO 0xb7
#define NS_GET_USERNS _IO(NSIO, 0x1)
#define NS_GET_PARENT _IO(NSIO, 0x2)
#define NS_GET_NSTYPE _IO(NSIO, 0x3)
#endif

namespace nsbox {
namespace {

// nsOpen(path) -> fd (O_RDONLY | O_CLOEXEC)
Napi::Value NsOpen(const Napi::CallbackInfo& info) {
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ThrowErrno(info.Env(), errno, "namespace", "open", path.c_str());
  return Napi::Number::New(info.Env(), fd);
}

// nsInfo(fd) -> { nstype, inode, dev, ownerInode }  (ownerInode is undefined for the initial
// user namespace's own owner or when the kernel refuses)
Napi::Value NsInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct stat st;
  if (fstat(fd, &st) < 0) return ThrowErrno(env, errno, "namespace", "fstat");
  int type = ioctl(fd, NS_GET_NSTYPE);
  if (type < 0) return ThrowErrno(env, errno, "namespace", "ioctl(NS_GET_NSTYPE)");
  Napi::Object o = Napi::Object::New(env);
  o.Set("nstype", type);
  o.Set("inode", (double)st.st_ino);
  o.Set("dev", (double)st.st_dev);
  int owner = ioctl(fd, NS_GET_USERNS);
  if (owner >= 0) {
    struct stat os;
    if (fstat(owner, &os) == 0) o.Set("ownerInode", (double)os.st_ino);
    close(owner);
  }
  return o;
}

// nsOwner(fd) -> fd of the owning user namespace
Napi::Value NsOwner(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  int owner = ioctl(fd, NS_GET_USERNS);
  if (owner < 0) return ThrowErrno(info.Env(), errno, "namespace", "ioctl(NS_GET_USERNS)");
  return Napi::Number::New(info.Env(), owner);
}

// nsPersist(fd, target): bind-mount the namespace file onto target (created if missing).
Napi::Value NsPersist(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string target = info[1].As<Napi::String>().Utf8Value();
  int t = open(target.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (t < 0) return ThrowErrno(env, errno, "persist", "open", target.c_str());
  close(t);
  std::string src = "/proc/self/fd/" + std::to_string(fd);
  if (mount(src.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) < 0) {
    int er = errno;
    unlink(target.c_str());
    return ThrowErrno(env, er, "persist", "mount", target.c_str());
  }
  return env.Undefined();
}

// nsRemove(path): detach the bind mount and delete the file. Missing is not an error.
Napi::Value NsRemove(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string target = info[0].As<Napi::String>().Utf8Value();
  if (umount2(target.c_str(), MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
    return ThrowErrno(env, errno, "persist", "umount2", target.c_str());
  if (unlink(target.c_str()) < 0 && errno != ENOENT) return ThrowErrno(env, errno, "persist", "unlink", target.c_str());
  return env.Undefined();
}

// netnsSockets(userFd, netFd, [{ tcp, port }]) -> fds: sockets bound to 127.0.0.1:<port>
// inside the network namespace `netFd` (entered from the user namespace `userFd` when >= 0),
// made by a helper of ours (MakeNetnsSockets in helpers.cc); TCP ones listen.
Napi::Value NetnsSocketsFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NetnsSockets s{};
  s.userFd = info[0].As<Napi::Number>().Int32Value();
  s.netFd = info[1].As<Napi::Number>().Int32Value();
  Napi::Array specs = info[2].As<Napi::Array>();
  s.n = (int)specs.Length();
  if (s.n > kMaxNetnsSockets) return ThrowErrno(env, EINVAL, "egress", "socket");
  for (int i = 0; i < s.n; i++) {
    Napi::Object o = specs.Get(i).As<Napi::Object>();
    s.tcp[i] = o.Get("tcp").ToBoolean().Value();
    s.port[i] = (unsigned short)o.Get("port").As<Napi::Number>().Uint32Value();
  }
  Err e{};
  if (MakeNetnsSockets(env.GetInstanceData<AddonData>(), &s, &e) < 0) return ThrowErr(env, e);
  Napi::Array out = Napi::Array::New(env, s.n);
  for (int i = 0; i < s.n; i++) out.Set(i, s.fds[i]);
  return out;
}

}  // namespace

void InitNs(Napi::Env env, Napi::Object exports) {
  exports.Set("netnsSockets", Napi::Function::New(env, NetnsSocketsFn, "netnsSockets"));
  exports.Set("nsOpen", Napi::Function::New(env, NsOpen, "nsOpen"));
  exports.Set("nsInfo", Napi::Function::New(env, NsInfo, "nsInfo"));
  exports.Set("nsOwner", Napi::Function::New(env, NsOwner, "nsOwner"));
  exports.Set("nsPersist", Napi::Function::New(env, NsPersist, "nsPersist"));
  exports.Set("nsRemove", Napi::Function::New(env, NsRemove, "nsRemove"));
}

}  // namespace nsbox
