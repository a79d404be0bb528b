// The V8 heap setting of the command (IKE_HEAP_GROWING_PERCENT), and how it is applied.
//
// Memory that follows what is live, not the size of the account: V8 lets the old
// generation grow to several times what survived its last full collection before it
// collects again, so a long run's heap swelled with the garbage the SDK's calls leave
// (10,000 users: 26 MiB live, 130 MiB of heap). With growth capped at 40 % it collects
// sooner: peak RSS ~1.2x from 1,000 to 100,000 users instead of ~1.5x (README, Memory).
// A heap *limit* (--max-old-space-size) would fail a run instead of collecting sooner.
//
// How it is applied:
// - After each full collection, from the first one on, not at start. Node's built-in
//   modules load from a code cache V8 accepts only under the flags the process started
//   with: with the flag set at start, loading http, tls, crypto and the rest took ~16 ms
//   more, in every run (bench/HISTORY.md). V8 reads the flag when a full collection sets
//   the heap's next limit, so the value set after one serves the next.
// - With a floor: growth past what is live is the cap, or what lets the old generation
//   reach HEAP_FLOOR_BYTES when that is more (as V8 keeps a minimum of its own). Below
//   that the heap is small whatever V8 does, and collecting sooner there only adds full
//   collections (and their marking threads, on a small machine's few cores) to runs that
//   never grow: at 2,000 users, 40 ms a call and --concurrency 16, 11-14 MiB live and the
//   old generation under ~22 MiB with V8's own heuristics.

import { constants, PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';

/** The flag name, as `node --v8-options` lists it. */
export const HEAP_GROWING_FLAG = '--heap-growing-percent';
export const HEAP_GROWING_PERCENT = 40;
/** The old generation may always grow to this before a full collection. */
export const HEAP_FLOOR_BYTES = 24 * 2 ** 20;
/** The most growth the floor asks for (a nearly empty heap). */
const MAX_FLOOR_PERCENT = 400;

/**
 * The growth cap in percent, or null for V8's own heuristics. The operator chooses with
 * IKE_HEAP_GROWING_PERCENT=N (0: V8's own heuristics; V8 flags are not allowed in
 * NODE_OPTIONS), or with the flag on node's own command line (`node
 * --heap-growing-percent=N <bin>`, which then holds from the start, floor or not). A
 * value that is not a whole number sets nothing here: the configuration rejects it with
 * one line (pipeline/config.ts).
 */
export function heapGrowingPercent(execArgv, env) {
  if (execArgv.some((a) => /^--heap[-_]growing[-_]percent(=|$)/.test(a))) return null;
  const raw = env.IKE_HEAP_GROWING_PERCENT;
  if (raw === undefined || raw === '') return HEAP_GROWING_PERCENT;
  if (!/^\d+$/.test(raw)) return null;
  const n = Number(raw);
  return n === 0 ? null : n;
}

/** Bytes in use in V8's old generation: every heap space but the young generation's. */
export function oldGenerationBytes(spaces = getHeapSpaceStatistics()) {
  let bytes = 0;
  for (const space of spaces) if (!space.space_name.startsWith('new_')) bytes += space.space_used_size;
  return bytes;
}

/** The growth to allow past `liveBytes`: `percent`, or what reaches `floorBytes` when that is more. */
export function growingPercent(percent, liveBytes, floorBytes = HEAP_FLOOR_BYTES) {
  const toFloor = Math.ceil((floorBytes / liveBytes - 1) * 100);
  return Math.max(percent, Math.min(toFloor, MAX_FLOOR_PERCENT));
}

/**
 * The cap as collections go: `afterCollections` takes Node's reports of collections
 * and, after a full one, sets the growth for the next (only when it changes).
 */
export function heapGrowthCap(percent, { set = setFlagsFromString, oldBytes = oldGenerationBytes, floorBytes = HEAP_FLOOR_BYTES } = {}) {
  let current;
  return {
    afterCollections(entries) {
      if (!entries.some((e) => e.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)) return;
      const next = growingPercent(percent, oldBytes(), floorBytes);
      if (next === current) return;
      current = next;
      set(`${HEAP_GROWING_FLAG}=${next}`);
    },
    /** The growth set last, undefined before the first full collection. */
    get percent() {
      return current;
    },
  };
}

/** Applies the cap of `percent` to this process from its first full collection on (`deps`: see heapGrowthCap). */
export function capHeapGrowth(percent, deps) {
  const cap = heapGrowthCap(percent, deps);
  new PerformanceObserver((list) => cap.afterCollections(list.getEntries())).observe({ entryTypes: ['gc'] });
  return cap;
}
