// Placeholder: filled by the issue that owns this kernel area.
#include "common.h"

namespace nsbox {
void InitSeccomp(Napi::Env env, Napi::Object exports) {}
}  // namespace nsbox
