/**
 * The store: where a dataset root lives (a local folder: local.ts; an S3 prefix: s3.ts). The
 * checkpoint, the lease, the staged parts and the publication all go through this
 * one small interface, so everything a resume needs is wherever the store is.
 *
 * Keys are relative, `/`-separated paths under the root (`_staging/<id>/checkpoint.json`).
 *
 * Conditional writes are what make the lease and the checkpoint safe with several
 * contenders: `ifNoneMatch` creates only when the key is absent, `ifMatch` replaces
 * only the exact version read before (compare-and-swap). A condition that does not
 * hold throws `PreconditionFailed` and changes nothing. S3 has both natively
 * (If-None-Match: *, If-Match: <etag>); the local store builds them from an
 * exclusive create (see local.ts).
 */

/** An object and the version it was read at (opaque: compare for equality only). */
export interface StoredObject {
  readonly body: Buffer;
  readonly version: string;
}

/** A condition on a write or delete. */
export type Condition = { readonly ifNoneMatch: true } | { readonly ifMatch: string };

/** What `upload` reports about the object it wrote. */
export interface UploadResult {
  readonly bytes: number;
  readonly sha256: string;
}

export interface Store {
  /** The root as the operator gave it (a path or an s3:// URL), for messages. */
  readonly root: string;
  /** Where `key` is, for messages and for readers (a path or an s3:// URL). */
  describe(key: string): string;
  /** The object at `key` and its version, or undefined when there is none. */
  read(key: string): Promise<StoredObject | undefined>;
  /**
   * Writes `body` at `key` atomically (readers see the old object or the new one,
   * never a part) and durably; returns the new version. With a condition, throws
   * PreconditionFailed when it does not hold.
   */
  write(key: string, body: string | Uint8Array, condition?: Condition): Promise<string>;
  /** Streams `chunks` into `key`, atomically: the key appears complete or not at all. */
  upload(key: string, chunks: AsyncIterable<Uint8Array>): Promise<UploadResult>;
  /**
   * The bytes of `key`, streamed; a missing key throws an error whose `code` is 'ENOENT'.
   * `chunkBytes` is the most a read asks for at once, where the store chooses (locally:
   * a merge with many runs open holds two chunks of each); S3 hands on what the socket gives.
   */
  readStream(key: string, options?: ReadOptions): AsyncIterable<Buffer>;
  /** Deletes `key` (absent is fine); with `ifMatch`, only that version (else PreconditionFailed). */
  delete(key: string, condition?: { readonly ifMatch: string }): Promise<void>;
  /**
   * Every key under `prefix` (a folder: ends with '/'), recursively, in no set order.
   * Keys only: a write in flight or abandoned by a crash is not one.
   */
  list(prefix: string): Promise<string[]>;
  /** Deletes every key under `prefix` (a folder). */
  deletePrefix(prefix: string): Promise<void>;
  /** Deletes `keys` (absent ones are fine), unconditionally: on S3 one DeleteObjects call per 1,000. */
  deleteKeys(keys: readonly string[]): Promise<void>;
  /**
   * Makes the staged folder `from` (holding exactly `files`) the published folder
   * `to`, so that a reader of `to` sees either nothing or every file: locally one
   * rename; on S3 a server-side copy of `files` in the order given (the gate file
   * last). Idempotent: done again after a crash, it completes the same publication.
   */
  promote(from: string, to: string, files: readonly string[]): Promise<void>;
  /** True when `key` exists. */
  exists(key: string): Promise<boolean>;
  /** Releases what the store holds open (an S3 client's connections); the store is not used after. */
  close?(): void;
}

/** How a stream of a key's bytes is read. */
export interface ReadOptions {
  readonly chunkBytes?: number;
}

/** A conditional write or delete whose condition did not hold. */
export class PreconditionFailed extends Error {
  override readonly name = 'PreconditionFailed';
  readonly code = 'PRECONDITION_FAILED';
  constructor(readonly key: string) {
    super(`precondition failed on ${key}`);
  }
}

/** True for the error `Store` throws when a condition does not hold. */
export function isPreconditionFailed(err: unknown): err is PreconditionFailed {
  return err instanceof PreconditionFailed;
}

/** Joins key segments with '/'. */
export function keyJoin(...parts: string[]): string {
  return parts.filter((p) => p !== '').join('/').replace(/\/{2,}/g, '/');
}
