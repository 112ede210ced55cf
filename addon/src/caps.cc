// Extended attributes for file capabilities (security.capability): Node has no xattr API.
// Values are passed as Buffers; the v2/v3 format is parsed in lib/security/capabilities.ts.
#include "common.h"

#include <sys/xattr.h>

namespace nsbox {
namespace {

// getxattr(path, name) -> Buffer | null (null when the attribute is absent)
Napi::Value GetXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  char buf[4096];
  ssize_t n = getxattr(path.c_str(), name.c_str(), buf, sizeof buf);
  if (n < 0) {
    if (errno == ENODATA) return env.Null();
    return ThrowErrno(env, errno, "xattr", "getxattr", path.c_str());
  }
  return Napi::Buffer<char>::Copy(env, buf, (size_t)n);
}

// setxattr(path, name, buffer)
Napi::Value SetXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  Napi::Buffer<char> v = info[2].As<Napi::Buffer<char>>();
  if (setxattr(path.c_str(), name.c_str(), v.Data(), v.Length(), 0) < 0) return ThrowErrno(env, errno, "xattr", "setxattr", path.c_str());
  return env.Undefined();
}

// removexattr(path, name); absent is not an error
Napi::Value RemoveXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  if (removexattr(path.c_str(), name.c_str()) < 0 && errno != ENODATA) return ThrowErrno(env, errno, "xattr", "removexattr", path.c_str());
  return env.Undefined();
}

}  // namespace

void InitCaps(Napi::Env env, Napi::Object exports) {
  exports.Set("getxattr", Napi::Function::New(env, GetXattr, "getxattr"));
  exports.Set("setxattr", Napi::Function::New(env, SetXattr, "setxattr"));
  exports.Set("removexattr", Napi::Function::New(env, RemoveXattr, "removexattr"));
}

}  // namespace nsbox
