// The V8 heap setting the command starts with (IKE_HEAP_GROWING_PERCENT).
//
// Memory that follows what is live, not the size of the account: V8 lets the old
// generation grow to several times what survived its last full collection before it
// collects again, so a long run's heap swelled with the garbage the SDK's calls leave
// (10,000 users: 26 MiB live, 130 MiB of heap). With growth capped at 40 % it collects
// sooner: peak RSS ~1.2x from 1,000 to 10,000 users instead of ~1.7x, for ~5 % more CPU
// in a run with no latency to hide it (README, Memory). V8's heap controller reads the
// flag at every collection, so setting it at start takes effect; a heap *limit*
// (--max-old-space-size) cannot be set this way, and would fail a run instead of
// collecting sooner.

/** The flag name, as `node --v8-options` lists it. */
export const HEAP_GROWING_FLAG = '--heap-growing-percent';
export const HEAP_GROWING_PERCENT = 40;

/**
 * The flag to set, or null. The operator chooses with IKE_HEAP_GROWING_PERCENT=N
 * (0: V8's own heuristics; V8 flags are not allowed in NODE_OPTIONS), or with the
 * flag on node's own command line (`node --heap-growing-percent=N <bin>`). A value
 * that is not a whole number sets nothing here: the configuration rejects it with
 * one line (pipeline/config.ts).
 */
export function heapFlag(execArgv, env) {
  if (execArgv.some((a) => /^--heap[-_]growing[-_]percent(=|$)/.test(a))) return null;
  const raw = env.IKE_HEAP_GROWING_PERCENT;
  if (raw === undefined || raw === '') return `${HEAP_GROWING_FLAG}=${HEAP_GROWING_PERCENT}`;
  if (!/^\d+$/.test(raw)) return null;
  const n = Number(raw);
  return n === 0 ? null : `${HEAP_GROWING_FLAG}=${n}`;
}
