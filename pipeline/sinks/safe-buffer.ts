/**
 * `Buffer` called as a function or constructor (`new Buffer(5)`, `new Buffer([b])`,
 * `new Buffer(text, 'utf8')`), doing what Node's deprecated form does since Node 8
 * (`Buffer.alloc` for a size, `Buffer.from` for anything else), without the check Node
 * makes at every such call: whether the caller is inside node_modules, to decide on
 * warning DEP0005, which takes a stack trace each time (4-12 µs a call on Node 20 in a
 * microbenchmark here).
 *
 * The thrift code parquetjs-lite vendors, and node-int64, make that call for every byte,
 * varint and 64-bit integer of every page header, column chunk and footer: ~7,000 calls
 * for a 2,000-row file (encoded cold: 290-358 ms with those calls, 183-191 ms without),
 * ~340,000 for 100,000 rows (1.65-2.29 s against 1.51-1.83 s). The build (scripts/build.js) binds
 * `Buffer` to this in those modules only; everything else of `Buffer` (its statics,
 * `instanceof`, its prototype) is Node's own.
 */
export function SafeBuffer(arg: unknown, encodingOrOffset?: unknown, length?: unknown): Buffer {
  if (typeof arg === 'number') {
    // Node's own message for this misuse of the deprecated form.
    if (typeof encodingOrOffset === 'string') throw new TypeError('The "string" argument must be of type string. Received type number');
    return Buffer.alloc(arg);
  }
  return Buffer.from(arg as never, encodingOrOffset as never, length as never);
}
Object.setPrototypeOf(SafeBuffer, Buffer);
SafeBuffer.prototype = Buffer.prototype;
