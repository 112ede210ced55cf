// nftables through libnftables, loaded with dlopen at run time (the addon loads without it):
// nftAvailable() and nftRun(commands, flags, netnsFd?), one atomic batch per call. With a
// network namespace fd, the batch runs on a thread of its own that enters that namespace
// first (a thread's network namespace is its own: the caller's threads stay where they are).
#include "common.h"

#include <dlfcn.h>
#include <sched.h>

#include <string>
#include <thread>

namespace nsbox {
namespace {

struct NftApi {
  void* lib = nullptr;
  void* (*ctx_new)(uint32_t) = nullptr;
  void (*ctx_free)(void*) = nullptr;
  int (*buffer_output)(void*) = nullptr;
  int (*buffer_error)(void*) = nullptr;
  const char* (*get_output)(void*) = nullptr;
  const char* (*get_error)(void*) = nullptr;
  void (*set_flags)(void*, unsigned) = nullptr;
  int (*run)(void*, const char*) = nullptr;
  std::string loadError;
};

// Per-environment state of this file, handed to the functions as their data pointer.
struct NftState {
  NftApi nft;
  bool tried = false;
};

// A boolean flag of the options object: set only when it is `true`.
bool Flag(Napi::Object o, const char* k) {
  Napi::Value v = o.Get(k);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

bool LoadNft(NftState* st) {
  if (st->tried) return st->nft.lib != nullptr;
  st->tried = true;
  NftApi& n = st->nft;
  n.lib = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!n.lib) {
    const char* d = dlerror();
    n.loadError = d ? d : "dlopen failed";
    return false;
  }
  n.ctx_new = reinterpret_cast<void* (*)(uint32_t)>(dlsym(n.lib, "nft_ctx_new"));
  n.ctx_free = reinterpret_cast<void (*)(void*)>(dlsym(n.lib, "nft_ctx_free"));
  n.buffer_output = reinterpret_cast<int (*)(void*)>(dlsym(n.lib, "nft_ctx_buffer_output"));
  n.buffer_error = reinterpret_cast<int (*)(void*)>(dlsym(n.lib, "nft_ctx_buffer_error"));
  n.get_output = reinterpret_cast<const char* (*)(void*)>(dlsym(n.lib, "nft_ctx_get_output_buffer"));
  n.get_error = reinterpret_cast<const char* (*)(void*)>(dlsym(n.lib, "nft_ctx_get_error_buffer"));
  n.set_flags = reinterpret_cast<void (*)(void*, unsigned)>(dlsym(n.lib, "nft_ctx_output_set_flags"));
  n.run = reinterpret_cast<int (*)(void*, const char*)>(dlsym(n.lib, "nft_run_cmd_from_buffer"));
  if (!n.ctx_new || !n.ctx_free || !n.buffer_output || !n.buffer_error || !n.get_output || !n.get_error || !n.set_flags || !n.run) {
    n.loadError = "libnftables.so.1 lacks an expected symbol";
    dlclose(n.lib);
    n.lib = nullptr;
    return false;
  }
  return true;
}

// nftAvailable() -> null when usable, else the reason
Napi::Value NftAvailableJs(const Napi::CallbackInfo& info) {
  NftState* st = static_cast<NftState*>(info.Data());
  if (LoadNft(st)) return info.Env().Null();
  return Napi::String::New(info.Env(), st->nft.loadError);
}

// nftRun(commands, { json?, handles?, echo? }) -> output text. Runs one atomic batch.
Napi::Value NftRunJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NftState* st = static_cast<NftState*>(info.Data());
  if (!LoadNft(st)) {
    Err e;
    Fail(&e, ENOENT, "nftables", "dlopen", "libnftables.so.1");
    CopyStr(e.message, sizeof e.message, ("libnftables is not installed (apt-get install libnftables1): " + st->nft.loadError).c_str());
    return ThrowErr(env, e);
  }
  std::string cmds = info[0].As<Napi::String>().Utf8Value();
  unsigned flags = 0;
  if (info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    if (Flag(o, "handles")) flags |= 1u << 0;   // NFT_CTX_OUTPUT_HANDLE
    if (Flag(o, "json")) flags |= 1u << 4;      // NFT_CTX_OUTPUT_JSON
    if (Flag(o, "echo")) flags |= 1u << 5;      // NFT_CTX_OUTPUT_ECHO
  }
  int nsfd = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : -1;
  NftApi& n = st->nft;
  int r = 0, ctxErr = 0, setnsErr = 0;
  std::string out, err;
  auto batch = [&]() {
    if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0) { setnsErr = errno; return; }
    void* ctx = n.ctx_new(0);
    if (!ctx) { ctxErr = ENOMEM; return; }
    n.buffer_output(ctx);
    n.buffer_error(ctx);
    n.set_flags(ctx, flags);
    r = n.run(ctx, cmds.c_str());
    // each get_*_buffer call hands over the text and empties the buffer: call once
    const char* o = n.get_output(ctx);
    const char* er = n.get_error(ctx);
    out = o ? o : "";
    err = er ? er : "";
    n.ctx_free(ctx);
  };
  if (nsfd >= 0) std::thread(batch).join(); else batch();
  if (setnsErr) return ThrowErrno(env, setnsErr, "nftables", "setns(CLONE_NEWNET)");
  if (ctxErr) return ThrowErrno(env, ctxErr, "nftables", "nft_ctx_new");
  if (r != 0) {
    Err e;
    // libnftables reports text, not errno; map the usual kernel answers.
    int code = EINVAL;
    if (err.find("File exists") != std::string::npos) code = EEXIST;
    else if (err.find("No such file") != std::string::npos) code = ENOENT;
    else if (err.find("Operation not permitted") != std::string::npos) code = EPERM;
    else if (err.find("Device or resource busy") != std::string::npos) code = EBUSY;
    Fail(&e, code, "nftables", "nft_run_cmd_from_buffer");
    // keep the first error line: the kernel's or the parser's words
    std::string first = err.substr(0, err.find('\n'));
    CopyStr(e.message, sizeof e.message, first.c_str());
    Napi::Value v = MakeError(env, e);
    if (v.IsObject()) v.As<Napi::Object>().Set("nftError", err);
    napi_throw(env, v);
    return env.Undefined();
  }
  return Napi::String::New(env, out);
}

}  // namespace

void InitNft(Napi::Env env, Napi::Object exports) {
  NftState* st = new NftState();
  env.AddCleanupHook([st]() {
    if (st->nft.lib) dlclose(st->nft.lib);
    delete st;
  });
  exports.Set("nftAvailable", Napi::Function::New(env, NftAvailableJs, "nftAvailable", st));
  exports.Set("nftRun", Napi::Function::New(env, NftRunJs, "nftRun", st));
}

}  // namespace nsbox
