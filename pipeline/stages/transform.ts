/**
 * The one Transform wrapper every stage uses: applies a pure function to each
 * chunk (a Batch of items) in object mode. Keeps each stage file a pure function.
 */
import { Transform } from 'node:stream';

/** Wraps a synchronous chunk function as an object-mode Transform. */
export function itemTransform<A, B>(fn: (item: A) => B | undefined): Transform {
  return new Transform({
    objectMode: true,
    transform(item: A, _enc, done) {
      let out: B | undefined;
      try {
        out = fn(item);
      } catch (err) {
        done(err as Error);
        return;
      }
      done(null, out);
    },
  });
}

/**
 * Wraps an async chunk function as an object-mode Transform that works on up to
 * `concurrency` chunks at once and emits their results in input order (undefined
 * drops one). Order matters: a page's STATE must never pass an earlier page of the
 * same user. A failure fails the stream.
 */
export function orderedTransform<A, B>(fn: (item: A) => Promise<B | undefined>, concurrency: number): Transform {
  interface Entry {
    settled: boolean;
    value?: B | undefined;
    error?: unknown;
  }
  const inFlight: Entry[] = [];
  let held: ((err?: Error | null) => void) | undefined; // a transform callback waiting for room
  let flushed: ((err?: Error | null) => void) | undefined;
  const transform: Transform = new Transform({
    objectMode: true,
    transform(item: A, _enc, done) {
      const entry: Entry = { settled: false };
      inFlight.push(entry);
      fn(item).then(
        (value) => (entry.value = value),
        (err: unknown) => (entry.error = err ?? new Error('chunk failed')),
      ).finally(() => {
        entry.settled = true;
        pump();
      });
      if (inFlight.length < concurrency) done();
      else held = done;
    },
    flush(done) {
      flushed = done;
      pump();
    },
  });
  function pump(): void {
    while (inFlight[0]?.settled) {
      const head = inFlight.shift()!;
      if (head.error !== undefined) {
        const err = head.error instanceof Error ? head.error : new Error(String(head.error));
        const cb = held ?? flushed;
        held = flushed = undefined;
        if (cb) cb(err);
        else transform.destroy(err);
        return;
      }
      if (head.value !== undefined) transform.push(head.value);
    }
    if (held && inFlight.length < concurrency) {
      const cb = held;
      held = undefined;
      cb();
    }
    if (flushed && inFlight.length === 0) {
      const cb = flushed;
      flushed = undefined;
      cb();
    }
  }
  return transform;
}
