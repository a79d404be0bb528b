/**
 * A Store in memory, for unit tests of what sits on a store (checkpoint, lease,
 * runs, snapshot): no file system, so a test can do thousands of operations in
 * milliseconds, and every operation passes through `hook` first, where a test
 * yields (to interleave racing callers from a seed), fails one call, or advances
 * a fake clock. It keeps the Store contract (store.ts): conditional writes are
 * atomic and change nothing when their condition fails; an upload appears whole
 * or not at all; promote is idempotent.
 */
import { createHash } from 'node:crypto';
import { ExportError } from '../../pipeline/errors.ts';
import { PreconditionFailed, type Condition, type Store, type StoredObject, type UploadResult } from '../../pipeline/store/store.ts';

export type StoreOp = 'read' | 'write' | 'upload' | 'readStream' | 'delete' | 'deleteKeys' | 'list' | 'deletePrefix' | 'promote' | 'exists';

/** Runs before an operation touches anything: may await (a yield), throw (a failure), or record. */
export type StoreHook = (op: StoreOp, key: string) => void | Promise<void>;

export class MemoryStore implements Store {
  readonly root = 'mem://root';
  readonly objects = new Map<string, { body: Buffer; version: string }>();
  /** Every operation, in order (op and key), for tests that check what was touched. */
  readonly log: string[] = [];
  hook: StoreHook | undefined;
  #versions = 0;

  constructor(hook?: StoreHook) {
    this.hook = hook;
  }

  describe(key: string): string {
    return key === '' ? this.root : `${this.root}/${key}`;
  }

  async #enter(op: StoreOp, key: string): Promise<void> {
    this.log.push(`${op} ${key}`);
    await this.hook?.(op, key);
  }

  #put(key: string, body: Buffer): string {
    const version = `v${++this.#versions}`;
    this.objects.set(key, { body, version });
    return version;
  }

  /** The text of `key`, or undefined (a test helper, not part of Store). */
  text(key: string): string | undefined {
    return this.objects.get(key)?.body.toString('utf8');
  }

  /** Keys under `prefix`, sorted (a test helper). */
  keys(prefix = ''): string[] {
    return [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  async read(key: string): Promise<StoredObject | undefined> {
    await this.#enter('read', key);
    const o = this.objects.get(key);
    return o && { body: Buffer.from(o.body), version: o.version };
  }

  async write(key: string, body: string | Uint8Array, condition?: Condition): Promise<string> {
    await this.#enter('write', key);
    const current = this.objects.get(key);
    if (condition && 'ifNoneMatch' in condition && current) throw new PreconditionFailed(key);
    if (condition && 'ifMatch' in condition && current?.version !== condition.ifMatch) throw new PreconditionFailed(key);
    return this.#put(key, Buffer.from(body));
  }

  async upload(key: string, chunks: AsyncIterable<Uint8Array>): Promise<UploadResult> {
    await this.#enter('upload', key);
    const parts: Buffer[] = [];
    for await (const chunk of chunks) parts.push(Buffer.from(chunk));
    const body = Buffer.concat(parts);
    this.#put(key, body);
    return { bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') };
  }

  async *readStream(key: string): AsyncIterable<Buffer> {
    await this.#enter('readStream', key);
    const o = this.objects.get(key);
    if (!o) throw Object.assign(new Error(`no such key ${key}`), { code: 'ENOENT' });
    // Slices of 1,000 bytes, so a reader meets lines cut across chunks.
    for (let at = 0; at < o.body.length; at += 1000) yield o.body.subarray(at, at + 1000);
  }

  async delete(key: string, condition?: { readonly ifMatch: string }): Promise<void> {
    await this.#enter('delete', key);
    if (condition && this.objects.get(key)?.version !== condition.ifMatch) throw new PreconditionFailed(key);
    this.objects.delete(key);
  }

  async deleteKeys(keys: readonly string[]): Promise<void> {
    await this.#enter('deleteKeys', keys[0] ?? '');
    for (const k of keys) this.objects.delete(k);
  }

  async list(prefix: string): Promise<string[]> {
    await this.#enter('list', prefix);
    return this.keys(prefix);
  }

  async deletePrefix(prefix: string): Promise<void> {
    await this.#enter('deletePrefix', prefix);
    for (const k of this.keys(prefix)) this.objects.delete(k);
  }

  async promote(from: string, to: string, files: readonly string[]): Promise<void> {
    await this.#enter('promote', from);
    if (files.length === 0) throw new ExportError('INTERNAL', `nothing to publish in ${from}`);
    const moving = this.keys(from);
    if (moving.length === 0 && this.objects.has(to + files[files.length - 1]!)) return; // done before a crash
    if (this.keys(to).length > 0) throw new ExportError('SNAPSHOT_PUBLISHED', `${to} already exists; refusing to publish over it`);
    for (const k of moving) {
      this.objects.set(to + k.slice(from.length), this.objects.get(k)!);
      this.objects.delete(k);
    }
  }

  async exists(key: string): Promise<boolean> {
    await this.#enter('exists', key);
    return this.objects.has(key);
  }
}
