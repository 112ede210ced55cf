// Registers every part of the addon; nothing else lives here.
#include "common.h"
#include "spawner.h"

#include <sys/mman.h>

#include <atomic>

namespace nsbox {
AddonData::~AddonData() {
  if (relay) relayFree(relay);
  StopSpawner(this, false);  // normally done by the environment's cleanup already
  FreeSpare(this);
  FreeTeardown(this);
  if (socketsStack) munmap(socketsStack, kHelperStackSize);
  if (initFd >= 0) close(initFd);
  for (auto& t : templates) { close(t.nsFd); if (t.watchFd >= 0) close(t.watchFd); }
  if (mountsFd >= 0) close(mountsFd);
  if (holderFd >= 0) close(holderFd);
  if (procFd >= 0) close(procFd);
}

// processSeq() -> n: a number no other call in this process returned, whichever thread or copy
// of the library asks (the addon is loaded once per process), for the names nsbox gives host
// objects (`nsbox-<pid>-<start>-<n>`): per-thread counters gave two worker threads one name.
static Napi::Value ProcessSeq(const Napi::CallbackInfo& info) {
  static std::atomic<uint32_t> seq{0};
  return Napi::Number::New(info.Env(), ++seq);
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData<AddonData>(new AddonData());
  exports.Set("processSeq", Napi::Function::New(env, ProcessSeq, "processSeq"));
  InitErrors(env, exports);
  InitSpawn(env, exports);
  InitExitWatch(env, exports);
  InitNs(env, exports);
  InitCaps(env, exports);
  InitCgroup(env, exports);
  InitNetlink(env, exports);
  InitNft(env, exports);
  InitSeccomp(env, exports);
  InitFs(env, exports);
  InitFdPass(env, exports);
  InitLifecycle(env, exports);
  InitRelay(env, exports);
  return exports;
}
}  // namespace nsbox

static Napi::Object InitNsbox(Napi::Env env, Napi::Object exports) { return nsbox::Init(env, exports); }
NODE_API_MODULE(nsbox, InitNsbox)
