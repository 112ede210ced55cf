// Placeholder: filled by the issue that owns this kernel area.
#include "plan.h"

namespace nsbox {
// Placeholder until rtnetlink lands (issue 5).
int NetHandoff(const NetHandoffSpec& spec, pid_t childPid, Err* e) {
  return Fail(e, ENOSYS, "network", "netlink");
}

void InitNetlink(Napi::Env env, Napi::Object exports) {}
}  // namespace nsbox
