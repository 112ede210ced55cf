// The spawner threads: a few per environment (kMaxSpawnerThreads), the first started by its
// first spawn, another when a spawn is queued while every one is busy, all ended by its
// cleanup. The blocking part of a spawn (clone, id maps, the handshake until the child has
// exec'd, ~1-3 ms, most of it waiting for the child) runs there instead of on the event loop
// (spawner.cc), and several spawns are under way at once, one per thread.
//
// Why a thread of its own and not libuv's pool: a sandbox's parent-death signal
// (PR_SET_PDEATHSIG) fires when the *thread* that made it exits. This thread lives exactly
// as long as the environment (it is joined by the environment's cleanup, before its
// teardown runs), so a sandbox dies with the environment that made it, as it did when the
// spawn ran on the environment's own thread: with the process, and with a worker that ends.
// A pool thread belongs to no environment. Each thread has stacks of its own for its spawn's
// child and helpers (SpawnStacks); what they share (the view templates, the spare network
// namespace) is touched under AddonData::viewMu only.
#pragma once
#include "common.h"

namespace nsbox {

// How many spawns may be under way at once per environment: most of a spawn is the parent
// waiting for its child, so a few threads keep the CPUs busy; more only queue in the kernel.
constexpr int kMaxSpawnerThreads = 4;

// A piece of work for the spawner: Run on its thread (no N-API), then Done on the event loop
// with JS allowed, or Drop instead when the environment is going away (`ran` says whether Run
// ran: a task still queued is dropped unrun). Deleted after Done or Drop.
struct SpawnerTask {
  virtual ~SpawnerTask() = default;
  virtual void Run(AddonData* d, SpawnStacks* st) = 0;
  virtual void Done(napi_env env) = 0;
  virtual void Drop() {}
  bool ran = false;
};

// Queues `t` (ownership passes); the event loop stays alive until its Done. Main thread only.
void SpawnerSubmit(napi_env env, AddonData* d, SpawnerTask* t);
// Runs fn(d) on a spawner thread when there is one (after what is queued; maybe beside a
// spawn on another thread), else here at once.
void OnSpawner(napi_env env, AddonData* d, void (*fn)(AddonData*));
// Ends the threads (the tasks under way finish first), drops what is left, closes the handle.
// From the environment's cleanup (exit_watch.cc), before its teardown runs; `closeHandle`
// false only from ~AddonData, where the loop may be gone already.
void StopSpawner(AddonData* d, bool closeHandle = true);

}  // namespace nsbox
