/**
 * Named crash points, for tests that must kill the process at an exact moment
 * (after a part is durable, midway through a checkpoint save, between the steps of
 * a publication) rather than at a lucky random one.
 *
 * Production code calls `faultPoint(name)` where a crash matters. It does nothing
 * unless a hook was installed on `globalThis` under FAULT_HOOK, which only the
 * test preload `test/support/fault-hook.ts` does (it is not part of the package):
 * no environment variable or flag can turn it on in a shipped build.
 */

/** The global symbol a test preload installs its hook under. */
export const FAULT_HOOK = Symbol.for('iam-key-export.faultPoint');

/** Where a crash is possible; `detail` narrows it (a key, a file). */
export function faultPoint(name: string, detail?: string): void {
  const hook = (globalThis as Record<symbol, unknown>)[FAULT_HOOK];
  if (typeof hook === 'function') (hook as (name: string, detail?: string) => void)(name, detail);
}
