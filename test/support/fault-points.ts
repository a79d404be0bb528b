/**
 * In-process fault points: installs a hook for `faultPoint` (pipeline/faultpoint.ts)
 * while `fn` runs, so a unit test can record the points a step reaches, or throw at
 * one to stand for a crash right there (the rerun then starts from what the store holds).
 */
import { FAULT_HOOK } from '../../pipeline/faultpoint.ts';

export type FaultHook = (name: string, detail?: string) => void;

/** Runs `fn` with `hook` called at every fault point; removes it afterwards. */
export async function withFaultHook<T>(hook: FaultHook, fn: () => Promise<T>): Promise<T> {
  const g = globalThis as Record<symbol, unknown>;
  const before = g[FAULT_HOOK];
  g[FAULT_HOOK] = hook;
  try {
    return await fn();
  } finally {
    g[FAULT_HOOK] = before;
  }
}

/** The error a hook throws to stand for a crash at a point. */
export class Crash extends Error {
  constructor(readonly point: string) {
    super(`crash at ${point}`);
  }
}
