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
