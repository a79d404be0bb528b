// The priority of V8's helper threads (IKE_HELPER_NICE).
//
// Node starts V8 with a pool of helper threads (4 by default) at the priority of the
// process: the optimizing compiler, which compiles ~360 functions in a 2,000-user export
// (~1.4 s of CPU), and the garbage collector's concurrent and parallel work. Every IAM
// answer waits for the main thread; on a machine with few cores those helpers take
// cores from it at the moments answers arrive. At nice 19 they run on CPU the main thread
// leaves, as Chromium runs V8's best-effort work on threads of background priority. At
// --concurrency 16, 40 ms a call, 2,000 users on 2 cores, in seven series of 5-16
// alternated pairs: spawn to exit from 140 ms shorter on average (an hour of a busy host)
// to no different (calm ones) (bench/HISTORY.md). node's own --v8-pool-size=1 did about
// as much, but is an option of node's command line, which a JavaScript bin cannot set.
//
// Only the threads there are when the bin starts are lowered: Node's own, V8's pool
// among them. libuv's, which run the file system calls the checkpoint waits for, start
// later and keep the process's priority. Linux only (a thread's nice value is its own
// there); elsewhere, or where /proc cannot be read, nothing changes.

import { readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

export const HELPER_NICE = 19;

/**
 * The nice value for the helper threads, or null to leave them as they started:
 * IKE_HELPER_NICE=N (0: leave them). A value that is not a whole number from 0 to 19
 * sets nothing here: the configuration rejects it with one line (pipeline/config.ts).
 */
export function helperNice(env) {
  const raw = env.IKE_HELPER_NICE;
  if (raw === undefined || raw === '') return HELPER_NICE;
  if (!/^\d+$/.test(raw)) return null;
  const n = Number(raw);
  return n === 0 || n > 19 ? null : n;
}

/**
 * Lowers every thread of this process but the main one to `nice`, unless it is lower
 * already (raising one back is not this process's to do). Returns the threads lowered.
 */
export function lowerHelperThreads(nice, deps = {}) {
  const { platform = process.platform, pid = process.pid, tasks = () => readdirSync('/proc/self/task'), get = getPriority, set = setPriority } = deps;
  if (platform !== 'linux') return 0;
  let ids;
  try {
    ids = tasks();
  } catch {
    return 0;
  }
  let lowered = 0;
  for (const id of ids) {
    const tid = Number(id);
    if (!Number.isSafeInteger(tid) || tid <= 0 || tid === pid) continue;
    try {
      if (get(tid) >= nice) continue;
      set(tid, nice);
      lowered++;
    } catch {
      // The thread ended meanwhile, or this system refuses: it keeps its priority.
    }
  }
  return lowered;
}
