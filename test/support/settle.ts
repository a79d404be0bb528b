/**
 * Waiting on events, never on the clock: a test that must know whether a promise
 * is still pending lets the event loop run dry (every ready callback, I/O-free
 * code settles within a few turns) instead of sleeping and hoping.
 */
import { setImmediate as tick } from 'node:timers/promises';

/** What `outcome` reports for a promise still pending once the loop ran dry. */
export const PENDING = Symbol('pending');

/** Lets `turns` turns of the event loop pass (promise callbacks and immediates; no timers). */
export async function drain(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await tick();
}

/** The value of `p` if it resolves within `turns` turns of the event loop, else PENDING (a rejection rethrows). */
export async function outcome<T>(p: Promise<T>, turns = 20): Promise<T | typeof PENDING> {
  let result: { value: T } | { error: unknown } | undefined;
  p.then(
    (value) => (result = { value }),
    (error: unknown) => (result = { error }),
  );
  for (let i = 0; i < turns && result === undefined; i++) await tick();
  if (result === undefined) return PENDING;
  if ('error' in result) throw result.error;
  return result.value;
}

/** Resolves once every promise of `all` settled, or rejects naming `what` when they are still pending after `turns` turns (a deadlock). */
export async function allSettleOrDeadlock(all: Promise<unknown>[], what: string, turns = 10_000): Promise<void> {
  const done = await outcome(Promise.allSettled(all), turns);
  if (done === PENDING) throw new Error(`${what}: still waiting after ${turns} turns of the event loop (a deadlock)`);
  for (const r of done) if (r.status === 'rejected') throw r.reason;
}
