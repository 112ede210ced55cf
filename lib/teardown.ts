// The thread's teardown (see addon/src/exit_watch.cc): when the environment that spawned a
// sandbox ends (a worker ends or is terminated, process.exit) its sandboxes are killed and
// reaped, and what nsbox made for them and has not released yet is undone synchronously from
// the records registered here. Each owner drops its record once it released the thing itself.
import { native, type TeardownRecord } from './native.js';

/** Registers `record` with the thread's teardown; returns the (idempotent) function that drops it. */
export function onTeardown(record: TeardownRecord): () => void {
  const n = native();
  const id = n.teardownAdd(record);
  let dropped = false;
  return () => {
    if (dropped) return;
    dropped = true;
    n.teardownDrop(id);
  };
}
