/**
 * Maps and sets of short strings kept off the V8 heap: the entries' bytes in blocks
 * of 8 MiB, found through an open-addressing hash table in a typed array. For the
 * state a run keeps per user and only looks up (the users the source knows, the
 * credential report's rows by user name), which must not grow the heap with the account
 * (issue 9). As V8 objects, a 21-character user id in a Set cost ~65 bytes (the
 * string and its share of the table, the table in large-object space) and V8 keeps
 * its old generation ~1.4x what is live; here it costs its bytes, 8 bytes of
 * header and 4 to 8 bytes of table. 100,000 users: 40.6 MiB live at the peak of a
 * run, of which ~22 MiB were such structures.
 *
 * Reading a value back decodes it into a new string, so what is listed at every
 * save is kept otherwise: SortedIds holds it as the very text that is written.
 *
 * A replaced or deleted entry's old bytes stay in its block until they are more than
 * the live ones (and at least COMPACT_BYTES): then the live entries are copied, in the
 * order they were set, into fresh blocks and the old ones let go. So a map whose
 * entries are deleted as a run goes (the credential report's rows, each user's once
 * its keys are read) gives its memory back instead of holding the account's worth.
 */

/**
 * Bytes of a block; an entry never spans two. A block's pages count in RSS only once
 * written, so a small map costs what it holds. Blocks this big are their own mapping:
 * glibc's malloc hands out a request from its heap, not a mapping of its own, when it is
 * smaller than the largest one freed so far, and a run frees buffers of a few MiB (a
 * checkpoint's text, the finished users' merged bytes). 1 MiB blocks, taken one after the
 * other as users were added, landed in the heap between those freed buffers and kept its
 * holes from being given back: a 100,000-user export peaked at 135-147 MiB with them,
 * 135-138 MiB with these (the same run with glibc's threshold pinned at 128 KiB by
 * MALLOC_MMAP_THRESHOLD_: 130-132 MiB). Blocks doubling from 64 KiB, so that a small
 * map's is small, gave 139-146 MiB: the ones of 1 and 2 MiB landed in the heap again.
 */
const BLOCK_BYTES = 1 << 23;
/** The bits of a slot that hold an entry's offset within its block (the rest: its block). */
const OFFSET_BITS = 23;
/** An entry's header: its key's byte length and its value's (each a 32-bit integer). */
const HEADER = 8;
/** Blocks at most: a slot is a positive 32-bit integer. */
const MAX_BLOCKS = 255;
/** The table doubles when more than this share of its slots are taken. */
const MAX_LOAD = 0.5;
/** The least a table has (and starts with). */
const MIN_SLOTS = 1024;
/** Dead bytes (of replaced or deleted entries) below which a map is never compacted. */
const COMPACT_BYTES = 1 << 20;

/** A map from strings to strings, off the V8 heap (see above). */
export class PackedMap {
  readonly #blocks: Buffer[] = [];
  /** Bytes used of each block. */
  readonly #used: number[] = [];
  /** Slot i: 0 when empty, else 1 + (block << OFFSET_BITS | offset) of its entry. */
  #slots = new Int32Array(MIN_SLOTS);
  #size = 0;
  /** Bytes of entries replaced or deleted, still in their blocks. */
  #dead = 0;
  /** The key being looked up, encoded. */
  #scratch = Buffer.allocUnsafe(256);

  get size(): number {
    return this.#size;
  }

  has(key: string): boolean {
    return this.#slots[this.#slotOf(this.#encode(key))]! !== 0;
  }

  get(key: string): string | undefined {
    const at = this.#slots[this.#slotOf(this.#encode(key))]!;
    if (at === 0) return undefined;
    const { block, offset } = locate(at);
    const b = this.#blocks[block]!;
    const start = offset + HEADER + b.readUInt32LE(offset);
    return b.toString('utf8', start, start + b.readUInt32LE(offset + 4));
  }

  set(key: string, value: string): this {
    const keyBytes = this.#encode(key);
    const slot = this.#slotOf(keyBytes);
    const was = this.#slots[slot]!;
    const valueBytes = Buffer.byteLength(value, 'utf8');
    const need = HEADER + keyBytes + valueBytes;
    if (need > BLOCK_BYTES) throw new RangeError(`PackedMap: an entry of ${need} bytes (at most ${BLOCK_BYTES})`);
    const { block, offset } = this.#append(need);
    const b = this.#blocks[block]!;
    b.writeUInt32LE(keyBytes, offset);
    b.writeUInt32LE(valueBytes, offset + 4);
    this.#scratch.copy(b, offset + HEADER, 0, keyBytes);
    b.write(value, offset + HEADER + keyBytes, valueBytes, 'utf8');
    this.#slots[slot] = 1 + ((block << OFFSET_BITS) | offset);
    if (was !== 0) this.#bury(was);
    else if (++this.#size > this.#slots.length * MAX_LOAD) this.#grow();
    return this;
  }

  /** Removes `key`; false when it was not there. */
  delete(key: string): boolean {
    let hole = this.#slotOf(this.#encode(key));
    const at = this.#slots[hole]!;
    if (at === 0) return false;
    // Linear probing without tombstones: each later entry of the probe run moves back
    // into the hole when its own slot is not between the hole and where it sits.
    const mask = this.#slots.length - 1;
    for (let j = (hole + 1) & mask; this.#slots[j] !== 0; j = (j + 1) & mask) {
      const { block, offset } = locate(this.#slots[j]!);
      const b = this.#blocks[block]!;
      const home = hash(b, b.readUInt32LE(offset), offset + HEADER) & mask;
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        this.#slots[hole] = this.#slots[j]!;
        hole = j;
      }
    }
    this.#slots[hole] = 0;
    this.#size--;
    this.#bury(at);
    return true;
  }

  /** The keys, once each, in the order they were last set. */
  *keys(): Generator<string> {
    for (const { b, keyStart, keyEnd } of this.#entries()) yield b.toString('utf8', keyStart, keyEnd);
  }

  /** Bytes held (what is written of the blocks, and the table), for tests and measurements. */
  get bytes(): number {
    return this.#used.reduce((a, b) => a + b, 0) + this.#slots.byteLength;
  }

  /** Room for an entry of `need` bytes at the end of the last block, or of a new one. */
  #append(need: number): { block: number; offset: number } {
    if (this.#blocks.length === 0 || this.#used[this.#blocks.length - 1]! + need > BLOCK_BYTES) {
      if (this.#blocks.length === MAX_BLOCKS) throw new RangeError(`PackedMap: more than ${MAX_BLOCKS} blocks`);
      this.#blocks.push(Buffer.allocUnsafe(BLOCK_BYTES));
      this.#used.push(0);
    }
    const block = this.#blocks.length - 1;
    const offset = this.#used[block]!;
    this.#used[block] = offset + need;
    return { block, offset };
  }

  /** Counts the entry at `at` (no longer in the table) as dead; compacts once the dead outweigh the live. */
  #bury(at: number): void {
    const { block, offset } = locate(at);
    const b = this.#blocks[block]!;
    this.#dead += HEADER + b.readUInt32LE(offset) + b.readUInt32LE(offset + 4);
    const written = this.#used.reduce((a, n) => a + n, 0);
    if (this.#dead >= COMPACT_BYTES && this.#dead > written - this.#dead) this.#compact();
  }

  /**
   * Copies the live entries, in the order they were set (their slots' order), into
   * fresh blocks and a table sized for them; the old blocks go with their last reference.
   */
  #compact(): void {
    const live = this.#slots.filter((at) => at !== 0).sort();
    const old = this.#blocks.splice(0);
    this.#used.length = 0;
    let slots = MIN_SLOTS;
    while (live.length > slots * MAX_LOAD) slots *= 2;
    this.#slots = new Int32Array(slots);
    const mask = slots - 1;
    for (const at of live) {
      const from = locate(at);
      const b = old[from.block]!;
      const keyBytes = b.readUInt32LE(from.offset);
      const need = HEADER + keyBytes + b.readUInt32LE(from.offset + 4);
      const to = this.#append(need);
      b.copy(this.#blocks[to.block]!, to.offset, from.offset, from.offset + need);
      this.#place(hash(b, keyBytes, from.offset + HEADER) & mask, 1 + ((to.block << OFFSET_BITS) | to.offset));
    }
    this.#dead = 0;
  }

  /** Every entry's bytes as written, replaced ones skipped. */
  *#entries(): Generator<{ b: Buffer; keyStart: number; keyEnd: number }> {
    for (let block = 0; block < this.#blocks.length; block++) {
      const b = this.#blocks[block]!;
      for (let offset = 0; offset < this.#used[block]!; ) {
        const keyBytes = b.readUInt32LE(offset);
        const valueBytes = b.readUInt32LE(offset + 4);
        const keyStart = offset + HEADER;
        // Current when the table points at this very entry (a replaced one's key points elsewhere).
        b.copy(this.#room(keyBytes), 0, keyStart, keyStart + keyBytes);
        if (this.#slots[this.#slotOf(keyBytes)] === 1 + ((block << OFFSET_BITS) | offset)) yield { b, keyStart, keyEnd: keyStart + keyBytes };
        offset = keyStart + keyBytes + valueBytes;
      }
    }
  }

  /** Puts `key` into the scratch buffer; its byte length. */
  #encode(key: string): number {
    const n = Buffer.byteLength(key, 'utf8');
    this.#room(n).write(key, 0, n, 'utf8');
    return n;
  }

  /** The scratch buffer, at least `n` bytes long. */
  #room(n: number): Buffer {
    if (this.#scratch.length < n) this.#scratch = Buffer.allocUnsafe(Math.max(n, this.#scratch.length * 2));
    return this.#scratch;
  }

  /** The slot of the key in the scratch buffer's first `n` bytes: where it is, or the empty one it would go to. */
  #slotOf(n: number): number {
    const mask = this.#slots.length - 1;
    for (let i = hash(this.#scratch, n) & mask; ; i = (i + 1) & mask) {
      const at = this.#slots[i]!;
      if (at === 0) return i;
      const { block, offset } = locate(at);
      const b = this.#blocks[block]!;
      if (b.readUInt32LE(offset) === n && b.compare(this.#scratch, 0, n, offset + HEADER, offset + HEADER + n) === 0) return i;
    }
  }

  /** Puts `at` in the first empty slot from `home` on (a table being rebuilt: no key is there twice). */
  #place(home: number, at: number): void {
    const mask = this.#slots.length - 1;
    let i = home;
    while (this.#slots[i] !== 0) i = (i + 1) & mask;
    this.#slots[i] = at;
  }

  #grow(): void {
    const old = this.#slots;
    this.#slots = new Int32Array(old.length * 2);
    const mask = this.#slots.length - 1;
    for (const at of old) {
      if (at === 0) continue;
      const { block, offset } = locate(at);
      const b = this.#blocks[block]!;
      this.#place(hash(b, b.readUInt32LE(offset), offset + HEADER) & mask, at);
    }
  }
}

/** A set of strings, off the V8 heap: a PackedMap with empty values. */
export class PackedSet {
  readonly #map = new PackedMap();

  constructor(values: Iterable<string> = []) {
    for (const v of values) this.add(v);
  }

  get size(): number {
    return this.#map.size;
  }

  has(value: string): boolean {
    return this.#map.has(value);
  }

  add(value: string): this {
    if (!this.#map.has(value)) this.#map.set(value, '');
    return this;
  }

  /** The values, in the order they were added. */
  values(): Generator<string> {
    return this.#map.keys();
  }

  [Symbol.iterator](): Generator<string> {
    return this.#map.keys();
  }

  get bytes(): number {
    return this.#map.bytes;
  }
}

/** Ids added to a SortedIds between two merges into its sorted bytes. */
const MERGE_AT = 4096;
const COMMA = 0x2c;

/**
 * A set of ids kept as the text the checkpoint writes it in: JSON string literals in
 * byte order, separated by commas (`"AIDA1","AIDA2"`), plus where each starts. Found by
 * binary search; a save copies the bytes as they are, with no id decoded, sorted or
 * turned into a string again. For the users a checkpoint has finished: they are never
 * removed, and every save lists all of them (as a JS Set sorted and stringified at each
 * save, 100,000 users were ~6.5 MiB on the V8 heap, plus ~7 MB of garbage a save).
 * Ids added since the last merge wait in a small JS Set.
 */
export class SortedIds {
  #bytes: Buffer = Buffer.alloc(0);
  /** Where each literal starts in #bytes. */
  #starts = new Int32Array(0);
  #count = 0;
  readonly #recent = new Set<string>();
  #scratch = Buffer.allocUnsafe(256);

  constructor(ids: Iterable<string> = []) {
    for (const id of ids) this.add(id);
  }

  get size(): number {
    return this.#count + this.#recent.size;
  }

  has(id: string): boolean {
    return this.#recent.has(id) || this.#find(this.#probe(id)) >= 0;
  }

  add(id: string): this {
    if (this.has(id)) return this;
    this.#recent.add(id);
    if (this.#recent.size >= MERGE_AT) this.#merge();
    return this;
  }

  /**
   * Every id as a JSON string literal, in byte order, separated by commas (empty for
   * none): what goes between the brackets of a JSON array. Later additions never
   * change the bytes returned.
   */
  json(): Buffer {
    this.#merge();
    return this.#bytes;
  }

  /** The ids, in the order of json(). */
  *values(): Generator<string> {
    this.#merge();
    const bytes = this.#bytes;
    const starts = this.#starts;
    const count = this.#count;
    for (let i = 0; i < count; i++) yield JSON.parse(bytes.toString('utf8', starts[i]!, i + 1 < count ? starts[i + 1]! - 1 : bytes.length)) as string;
  }

  [Symbol.iterator](): Generator<string> {
    return this.values();
  }

  /** `id` as a JSON literal, in a buffer reused by the next call. */
  #probe(id: string): Buffer {
    const text = JSON.stringify(id);
    const n = Buffer.byteLength(text);
    if (n > this.#scratch.length) this.#scratch = Buffer.allocUnsafe(n * 2);
    this.#scratch.write(text);
    return this.#scratch.subarray(0, n);
  }

  /** The index of `literal` in the sorted bytes, or -(where it would go) - 1. */
  #find(literal: Buffer): number {
    let lo = 0;
    let hi = this.#count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const end = mid + 1 < this.#count ? this.#starts[mid + 1]! - 1 : this.#bytes.length;
      const c = compareRange(literal, this.#bytes, this.#starts[mid]!, end);
      if (c === 0) return mid;
      if (c > 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return -lo - 1;
  }

  /** Merges the recent ids into new sorted bytes (the old ones are left as they were). */
  #merge(): void {
    if (this.#recent.size === 0) return;
    const added = Array.from(this.#recent, (id) => Buffer.from(JSON.stringify(id))).sort(Buffer.compare);
    this.#recent.clear();
    const old = this.#bytes;
    const oldStarts = this.#starts;
    const oldCount = this.#count;
    let size = old.length + 1;
    for (const b of added) size += b.length + 1;
    const out = Buffer.allocUnsafe(size);
    const starts = new Int32Array(oldCount + added.length);
    let pos = 0;
    let k = 0;
    let next = 0; // the first old literal not copied yet
    // Old literals [next, to), with the comma after each.
    const copyOld = (to: number) => {
      if (to === next) return;
      const from = oldStarts[next]!;
      const end = to < oldCount ? oldStarts[to]! : old.length;
      for (let j = next; j < to; j++) starts[k++] = oldStarts[j]! - from + pos;
      pos += old.copy(out, pos, from, end);
      if (to === oldCount) out[pos++] = COMMA;
      next = to;
    };
    for (const b of added) {
      copyOld(-this.#find(b) - 1);
      starts[k++] = pos;
      pos += b.copy(out, pos);
      out[pos++] = COMMA;
    }
    copyOld(oldCount);
    this.#bytes = out.subarray(0, pos - 1);
    this.#starts = starts;
    this.#count = k;
  }
}

/**
 * The sign of Buffer.compare(a, b.subarray(start, end)), in JavaScript: `Buffer#compare`
 * with a range checks its arguments and crosses into C++ at every call, and a lookup
 * makes ~17 of them among 100,000 ids. Ids differ a few bytes in (after `"AIDA`), so
 * the loop is short. 100,000 ids, 3 rounds of a micro-benchmark: 200,000 lookups
 * 216-241 ms against 336-364, the adds 283-336 ms against 402-485. (Between two JSON
 * literals the lengths never decide: each ends at its one unescaped quote, so neither
 * is a prefix of the other.)
 */
function compareRange(a: Buffer, b: Buffer, start: number, end: number): number {
  const n = end - start;
  const m = a.length < n ? a.length : n;
  for (let i = 0; i < m; i++) {
    const d = a[i]! - b[start + i]!;
    if (d !== 0) return d;
  }
  return a.length - n;
}

function locate(at: number): { block: number; offset: number } {
  const v = at - 1;
  return { block: v >>> OFFSET_BITS, offset: v & (BLOCK_BYTES - 1) };
}

/** FNV-1a of `n` bytes of `b` from `start`. */
function hash(b: Buffer, n: number, start = 0): number {
  let h = 0x811c9dc5;
  for (let i = start; i < start + n; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return h >>> 0;
}
