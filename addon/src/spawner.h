// The spawner thread: one per environment, started by its first spawn, ended by its cleanup.
// The blocking part of a spawn (clone, id maps, the handshake until the child has exec'd,
// ~1-2 ms) runs there instead of on the event loop (spawner.cc).
//
// Why a thread of its own and not libuv's pool: a sandbox's parent-death signal
// (PR_SET_PDEATHSIG) fires when the *thread* that made it exits. This thread lives exactly
// as long as the environment (it is joined by the environment's cleanup, before its
// teardown runs), so a sandbox dies with the environment that made it, as it did when the
// spawn ran on the environment's own thread: with the process, and with a worker that ends.
// A pool thread belongs to no environment. One thread also means one spawn at a time per
// environment, so the child's and the helpers' stacks (helpers.cc), the view templates and
// the spare network namespace are only ever touched there once it runs.
#pragma once
#include "common.h"

namespace nsbox {

// A piece of work for the spawner: Run on its thread (no N-API), then Done on the event loop
// with JS allowed, or Drop instead when the environment is going away (`ran` says whether Run
// ran: a task still queued is dropped unrun). Deleted after Done or Drop.
struct SpawnerTask {
  virtual ~SpawnerTask() = default;
  virtual void Run(AddonData* d) = 0;
  virtual void Done(napi_env env) = 0;
  virtual void Drop() {}
  bool ran = false;
};

// Queues `t` (ownership passes); the event loop stays alive until its Done. Main thread only.
void SpawnerSubmit(napi_env env, AddonData* d, SpawnerTask* t);
// Runs fn(d) on the spawner thread when it exists (after what is queued), else here at once.
void OnSpawner(napi_env env, AddonData* d, void (*fn)(AddonData*));
// Ends the thread (the task under way finishes first), drops what is left, closes the handle.
// From the environment's cleanup (exit_watch.cc), before its teardown runs; `closeHandle`
// false only from ~AddonData, where the loop may be gone already.
void StopSpawner(AddonData* d, bool closeHandle = true);

}  // namespace nsbox
