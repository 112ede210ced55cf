// The one place where an Err becomes a JS NsboxError.
#include "common.h"

namespace nsbox {

const char* ErrnoName(int err) {
  switch (err) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(ENOEXEC) E(EBADF) E(ECHILD)
    E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT) E(ENOTBLK) E(EBUSY) E(EEXIST) E(EXDEV) E(ENODEV)
    E(ENOTDIR) E(EISDIR) E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY) E(ETXTBSY) E(EFBIG) E(ENOSPC)
    E(ESPIPE) E(EROFS) E(EMLINK) E(EPIPE) E(EDOM) E(ERANGE) E(EDEADLK) E(ENAMETOOLONG) E(ENOLCK)
    E(ENOSYS) E(ENOTEMPTY) E(ELOOP) E(ENOMSG) E(EIDRM) E(ENODATA) E(ETIME) E(ENOLINK) E(EPROTO)
    E(EOVERFLOW) E(EBADFD) E(ENOTSOCK) E(EDESTADDRREQ) E(EMSGSIZE) E(EPROTOTYPE) E(ENOPROTOOPT)
    E(EPROTONOSUPPORT) E(EOPNOTSUPP) E(EAFNOSUPPORT) E(EADDRINUSE) E(EADDRNOTAVAIL) E(ENETDOWN)
    E(ENETUNREACH) E(ECONNABORTED) E(ECONNRESET) E(ENOBUFS) E(EISCONN) E(ENOTCONN) E(ETIMEDOUT)
    E(ECONNREFUSED) E(EHOSTUNREACH) E(EALREADY) E(EINPROGRESS) E(ESTALE) E(EDQUOT) E(ECANCELED)
    E(EOWNERDEAD) E(ELIBBAD) E(EUSERS) E(ENOMEDIUM) E(EMEDIUMTYPE) E(ENOKEY) E(EKEYREJECTED)
#undef E
    default: return "EUNKNOWN";
  }
}

Napi::Value MakeError(Napi::Env env, const Err& e) {
  const char* code = ErrnoName(e.err);
  std::string msg = std::string(e.syscall[0] ? e.syscall : "nsbox") + " failed";
  if (e.step[0]) msg += std::string(" at step '") + e.step + "'";
  if (e.path[0]) msg += std::string(" (") + e.path + ")";
  msg += std::string(": ") + code + " " + std::strerror(e.err);
  if (e.message[0]) msg += std::string(": ") + e.message;
  Napi::Object info = Napi::Object::New(env);
  info.Set("code", code);
  // negative, as Node's SystemError carries it (the JS class normalises it too)
  info.Set("errno", -e.err);
  info.Set("syscall", e.syscall[0] ? Napi::Value(Napi::String::New(env, e.syscall)) : env.Undefined());
  info.Set("path", e.path[0] ? Napi::Value(Napi::String::New(env, e.path)) : env.Undefined());
  info.Set("step", e.step[0] ? Napi::Value(Napi::String::New(env, e.step)) : env.Undefined());
  if (e.message[0]) info.Set("detail", e.message);
  AddonData* d = env.GetInstanceData<AddonData>();
  if (d && !d->errorClass.IsEmpty()) {
    return d->errorClass.New({Napi::String::New(env, msg), info});
  }
  Napi::Error err = Napi::Error::New(env, msg);
  Napi::Object o = err.Value();
  for (const char* k : {"code", "errno", "syscall", "path", "step"}) o.Set(k, info.Get(k));
  return o;
}

Napi::Value ThrowErr(Napi::Env env, const Err& e) {
  Napi::Value v = MakeError(env, e);
  if (!env.IsExceptionPending()) napi_throw(env, v);
  return env.Undefined();
}

Napi::Value ThrowErrno(Napi::Env env, int err, const char* step, const char* syscall, const char* path) {
  Err e;
  Fail(&e, err, step, syscall, path);
  return ThrowErr(env, e);
}

static Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  AddonData* d = info.Env().GetInstanceData<AddonData>();
  d->errorClass = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

void InitErrors(Napi::Env env, Napi::Object exports) {
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass, "setErrorClass"));
}

}  // namespace nsbox
