/**
 * Text lines packed into buffers: each line is encoded (UTF-8) straight into a
 * buffer of about `size` bytes, its '\n' after it, and a buffer is handed on
 * once the next line may not fit. No string is built over many lines, so nothing
 * large lands on V8's heap (where big strings live until a full collection), and
 * the store gets writes of a useful size.
 */

/** Buffer size: large writes and hashes, small enough to stay out of the way. */
export const CHUNK_BYTES = 256 * 1024;

/** Packs lines into buffers; one per output (a staged part, a data file). */
export class LinePacker {
  readonly #size: number;
  #buf: Buffer;
  #at = 0;

  constructor(size = CHUNK_BYTES) {
    this.#size = size;
    this.#buf = Buffer.allocUnsafe(size);
  }

  /**
   * Adds a line, given as up to three pieces written one after the other (no
   * string is concatenated for it), and its line end; returns the buffer filled
   * so far when the line starts a new one.
   */
  add(line: string, more = '', last = ''): Buffer | undefined {
    // UTF-8 takes at most 3 bytes per UTF-16 code unit.
    const most = (line.length + more.length + last.length) * 3 + 1;
    let full: Buffer | undefined;
    if (this.#at + most > this.#buf.length) {
      if (this.#at > 0) full = this.#buf.subarray(0, this.#at);
      this.#buf = Buffer.allocUnsafe(Math.max(this.#size, most));
      this.#at = 0;
    }
    this.#at += this.#buf.write(line, this.#at, 'utf8');
    if (more !== '') this.#at += this.#buf.write(more, this.#at, 'utf8');
    if (last !== '') this.#at += this.#buf.write(last, this.#at, 'utf8');
    this.#buf[this.#at++] = 0x0a;
    return full;
  }

  /** Adds bytes already encoded, their line end included; as `add`, returns the buffer filled so far when they start a new one. */
  copy(source: Uint8Array, start: number, end: number): Buffer | undefined {
    const length = end - start;
    let full: Buffer | undefined;
    if (this.#at + length > this.#buf.length) {
      if (this.#at > 0) full = this.#buf.subarray(0, this.#at);
      this.#buf = Buffer.allocUnsafe(Math.max(this.#size, length));
      this.#at = 0;
    }
    this.#buf.set(source.subarray(start, end), this.#at);
    this.#at += length;
    return full;
  }

  /** What was added since the last buffer handed on, or undefined when nothing was. */
  end(): Buffer | undefined {
    if (this.#at === 0) return undefined;
    const last = this.#buf.subarray(0, this.#at);
    this.#buf = Buffer.allocUnsafe(0);
    this.#at = 0;
    return last;
  }
}
