/**
 * The S3 store: a dataset root under `s3://bucket/prefix`, same keys as on disk
 * (store.ts), over @aws-sdk/client-s3 and @aws-sdk/lib-storage (no hand-written
 * signing, multipart or XML).
 *
 * How the Store contract maps onto S3:
 * - write: one PutObject; S3 makes a PUT all-or-nothing. The version of an object
 *   is its ETag.
 * - ifNoneMatch: PutObject with `If-None-Match: *`; ifMatch: `If-Match: <etag>`.
 *   412 PreconditionFailed, and 404 for If-Match on a key that is gone, become
 *   PreconditionFailed. 409 ConditionalRequestConflict (another conditional write
 *   of the key was in flight) is retried, a few times, for a definite answer (412
 *   or success); if it persists, it counts as failed: a writer never believes it
 *   won when it may not have.
 *   An ETag is a content hash for plain and SSE-S3 objects, so equal bytes give
 *   equal versions. That cannot confuse the lease or the checkpoint: every lease
 *   body carries its run id and renewal time, and every checkpoint save after a
 *   takeover carries a higher resume count than anything the old holder wrote.
 * - A conditional PUT the SDK retried (a connection lost after S3 applied it) can
 *   come back 412 though it was our own write that landed: then the object is read,
 *   and if it holds exactly our bytes, the write succeeded.
 * - delete with ifMatch: DeleteObject with `If-Match` (S3 has it since 2024; moto
 *   too). A server that ignored it would, at worst, delete a lease that a taker
 *   rewrote: the checkpoint's compare-and-swap still fences every commit.
 * - upload: lib-storage's Upload: one PutObject below the part size, else a
 *   multipart upload, completed only when every part is in and aborted on any
 *   failure (also when the byte source fails): the key appears whole or not at all.
 *   A process killed mid-upload leaves an incomplete multipart upload, invisible
 *   to readers; a bucket lifecycle rule (AbortIncompleteMultipartUpload) reclaims it.
 *   Memory holds at most queueSize parts in flight; nothing touches local disk.
 * - readStream: one GetObject, streamed. If the body breaks midway (the merge
 *   leaves up to FAN_IN bodies open, some idle for long), reading resumes with a
 *   ranged GetObject at the byte reached, pinned to the first ETag (If-Match).
 * - list / deletePrefix: ListObjectsV2 pages, DeleteObjects batches (1,000 each).
 * - promote: CopyObject of each file, in the order given (the gate file last),
 *   with the SSE settings and `If-None-Match: *` (409 retried as for a write). Idempotent: a target that exists
 *   already is skipped if it is the copy of the very same staged object (every
 *   object this store writes carries a random `ike-object-id` in its metadata,
 *   which a copy keeps), else the publication is refused: a published object is
 *   never replaced by different content.
 * - exists, and reads of keys that may be absent: S3 answers 403 instead of 404
 *   for a missing key when the caller may not list the bucket without a prefix
 *   (as with the prefix-scoped s3:ListBucket of deploy/iam-policy.json). So
 *   existence is asked with a ListObjectsV2 on the key itself, and a 403 on a read
 *   is checked that way before it counts as denied.
 */
import { randomBytes, createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type ServerSideEncryption,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Logger } from '@smithy/types';
import { awsErrorName, classifyStoreError, ExportError, httpStatus } from '../errors.ts';
import { faultPoint } from '../faultpoint.ts';
import { instrument, resolveRegion, type ApiStats } from '../source/client.ts';
import { PreconditionFailed, keyJoin, type Condition, type Store, type StoredObject, type UploadResult } from './store.ts';
import type { S3Location } from './url.ts';

/** Multipart part size: S3's minimum (5 MiB). Staged parts fit in one PUT; data files of 1,000,000 rows take tens of parts. */
export const PART_SIZE = 5 * 1024 * 1024;
/** Parts of one upload in flight at once: bounds the upload's memory (queueSize × PART_SIZE). */
export const UPLOAD_QUEUE = 4;
/** S3's most keys per ListObjectsV2 page and per DeleteObjects call. */
export const S3_PAGE = 1000;
/** Tries of a conditional write answered 409 ConditionalRequestConflict before it counts as lost. */
const CONFLICT_TRIES = 5;
/** Tries of a streamed body that breaks midway (each resumes where the last one stopped). */
const BODY_TRIES = 4;
/** Metadata key of the random id every object written here carries (copies keep it). */
const OBJECT_ID = 'ike-object-id';

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.csv': 'text/csv; charset=utf-8',
  '.parquet': 'application/vnd.apache.parquet',
  '.json': 'application/json',
  '.ndjson': 'application/x-ndjson',
};

/** Server-side encryption requested on every object written. */
export interface SseSettings {
  readonly mode: 'AES256' | 'aws:kms';
  /** For aws:kms: the key id, ARN or alias; undefined = the account's aws/s3 key. */
  readonly kmsKeyId?: string | undefined;
}

export interface S3StoreOptions extends S3Location {
  readonly client: S3Client;
  /** The root as the operator gave it (for messages); default s3://bucket/prefix. */
  readonly root?: string;
  readonly sse?: SseSettings | undefined;
  /** The S3 endpoint, for messages. */
  readonly endpoint?: string;
  /** Multipart part size in bytes (≥ 5 MiB; tests use the minimum). */
  readonly partSize?: number;
  readonly queueSize?: number;
  /** Keys per ListObjectsV2 page and per DeleteObjects call (≤ 1,000; tests page with fewer). */
  readonly pageSize?: number;
  /** Counts calls, attempts and throttles of the client (the bench reads them). */
  readonly stats?: ApiStats;
  /** Destroy the client with the store (it was made for it). */
  readonly ownsClient?: boolean;
}

/** What the SDK's errors carry that this file decides on (beyond errors.ts). */
interface S3ErrorShape {
  readonly $metadata?: { readonly attempts?: number };
}

/** An answer of `status`, or of one of the S3 error codes `names` (either alone). */
const isStatus = (err: unknown, status: number, ...names: string[]): boolean => httpStatus(err) === status || names.includes(awsErrorName(err));
const isPrecondition = (err: unknown) => isStatus(err, 412, 'PreconditionFailed');
const isConflict = (err: unknown) => isStatus(err, 409, 'ConditionalRequestConflict');
const isMissing = (err: unknown) => isStatus(err, 404, 'NoSuchKey', 'NotFound');
const isForbidden = (err: unknown) => httpStatus(err) === 403;

export class S3Store implements Store {
  readonly root: string;
  readonly bucket: string;
  /** Key prefix of the dataset root ('' or ending with '/'). */
  readonly #base: string;
  readonly #client: S3Client;
  readonly #sse: SseSettings | undefined;
  readonly #endpoint: string;
  readonly #partSize: number;
  readonly #queueSize: number;
  readonly #pageSize: number;
  readonly #ownsClient: boolean;

  constructor(o: S3StoreOptions) {
    this.bucket = o.bucket;
    this.#base = o.prefix === '' ? '' : `${o.prefix.replace(/^\/+|\/+$/g, '')}/`;
    this.root = o.root ?? `s3://${o.bucket}/${this.#base}`.replace(/\/$/, '');
    this.#client = o.client;
    this.#sse = o.sse;
    this.#endpoint = o.endpoint ?? 'the default S3 endpoint';
    this.#partSize = o.partSize ?? PART_SIZE;
    this.#queueSize = o.queueSize ?? UPLOAD_QUEUE;
    this.#pageSize = Math.min(S3_PAGE, Math.max(1, o.pageSize ?? S3_PAGE));
    this.#ownsClient = o.ownsClient ?? false;
    if (o.stats) instrument(this.#client, o.stats);
    // A crash point after each stored part of a multipart upload (fault-point tests only).
    this.#client.middlewareStack.add(
      (next, context) => async (args) => {
        const result = await next(args);
        if (context.commandName === 'UploadPartCommand') {
          const input = args.input as { Key: string; PartNumber: number };
          faultPoint('s3-part-uploaded', `${input.Key}#${input.PartNumber}`);
        }
        return result;
      },
      { step: 'initialize', name: 'ikeS3FaultPoints', override: true },
    );
  }

  /** The object key of a store key. */
  #key(key: string): string {
    return this.#base + key;
  }

  describe(key: string): string {
    return key === '' ? this.root : `s3://${this.bucket}/${this.#key(key)}`;
  }

  /** The error of a failed call, classified once (errors.ts), naming the object and the permission. */
  #fail(err: unknown, op: string, key: string, kind: 'read' | 'write' | 'copy' | 'delete' | 'list'): ExportError {
    const arn = `arn:aws:s3:::${this.bucket}/${this.#key(key)}`;
    const permission = {
      read: `s3:GetObject on ${arn}`,
      write: `s3:PutObject on ${arn}`,
      copy: `s3:GetObject and s3:PutObject on arn:aws:s3:::${this.bucket}/${this.#base}*`,
      delete: `s3:DeleteObject on ${arn}`,
      list: `s3:ListBucket on arn:aws:s3:::${this.bucket} for the prefix ${this.#key(key)}`,
    }[kind];
    const key_ = this.#sse?.mode === 'aws:kms' ? `key ${this.#sse.kmsKeyId ?? 'aws/s3'}` : undefined;
    const kms = key_ === undefined ? undefined : kind === 'read' ? `kms:Decrypt on ${key_}` : kind === 'write' || kind === 'copy' ? `kms:GenerateDataKey and kms:Decrypt on ${key_}` : undefined;
    return classifyStoreError(err, { what: `${op} ${this.describe(key)}`, bucket: this.bucket, permission, ...(kms ? { kms } : {}), endpoint: this.#endpoint });
  }

  /** Parameters every object written carries: encryption, content type, and a fresh object id. */
  #objectParams(key: string) {
    return {
      Bucket: this.bucket,
      Key: this.#key(key),
      ContentType: CONTENT_TYPES[key.slice(key.lastIndexOf('.'))] ?? 'application/octet-stream',
      Metadata: { [OBJECT_ID]: randomBytes(12).toString('hex') },
      ...this.#sseParams(),
    };
  }

  #sseParams(): { ServerSideEncryption?: ServerSideEncryption; SSEKMSKeyId?: string } {
    if (!this.#sse) return {};
    return { ServerSideEncryption: this.#sse.mode, ...(this.#sse.mode === 'aws:kms' && this.#sse.kmsKeyId ? { SSEKMSKeyId: this.#sse.kmsKeyId } : {}) };
  }

  async read(key: string): Promise<StoredObject | undefined> {
    try {
      const r = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#key(key) }));
      // Bytes and ETag come from one response: a version is never paired with other bytes.
      const body = Buffer.from(await r.Body!.transformToByteArray());
      return { body, version: r.ETag ?? '' };
    } catch (err) {
      if (isMissing(err) && awsErrorName(err) !== 'NoSuchBucket') return undefined;
      // A denied listing too: then the GetObject denial is the line to show.
      if (isForbidden(err) && !(await this.exists(key).catch(() => true))) return undefined;
      throw this.#fail(err, 'GetObject', key, 'read');
    }
  }

  async exists(key: string): Promise<boolean> {
    const full = this.#key(key);
    try {
      // The key sorts first among the keys it prefixes.
      const r = await this.#client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: full, MaxKeys: 1 }));
      return r.Contents?.[0]?.Key === full;
    } catch (err) {
      throw this.#fail(err, 'ListObjectsV2', key, 'list');
    }
  }

  async write(key: string, body: string | Uint8Array, condition?: Condition): Promise<string> {
    const bytes = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    const input = {
      ...this.#objectParams(key),
      Body: bytes,
      ContentLength: bytes.length,
      ...(condition === undefined ? {} : 'ifNoneMatch' in condition ? { IfNoneMatch: '*' } : { IfMatch: condition.ifMatch }),
    };
    const put = () => this.#client.send(new PutObjectCommand(input));
    try {
      const r = await (condition ? this.#settled(put) : put());
      return r.ETag ?? '';
    } catch (err) {
      if (!condition) throw this.#fail(err, 'PutObject', key, 'write');
      // A conflict that persisted counts as lost: a writer never believes it won when it may not have.
      if (isConflict(err)) throw new PreconditionFailed(key);
      if (isPrecondition(err) || ('ifMatch' in condition && isMissing(err) && awsErrorName(err) !== 'NoSuchBucket')) {
        const landed = ((err as S3ErrorShape).$metadata?.attempts ?? 1) > 1 ? await this.#holds(key, bytes) : undefined;
        if (landed !== undefined) return landed;
        throw new PreconditionFailed(key);
      }
      throw this.#fail(err, 'PutObject', key, 'write');
    }
  }

  /**
   * A conditional request, sent again while S3 answers 409 ConditionalRequestConflict
   * (another conditional write of the key was in flight) for a definite answer; after
   * CONFLICT_TRIES the last conflict is thrown, for the caller to count as a failed condition.
   */
  async #settled<T>(send: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await send();
      } catch (err) {
        if (!isConflict(err) || attempt >= CONFLICT_TRIES) throw err;
        await sleep(25 * 2 ** attempt * (0.5 + Math.random()));
      }
    }
  }

  /** The version of `key` if it holds exactly `bytes` (our own retried write landed), else undefined. */
  async #holds(key: string, bytes: Buffer): Promise<string | undefined> {
    const current = await this.read(key);
    return current && current.body.equals(bytes) ? current.version : undefined;
  }

  async upload(key: string, chunks: AsyncIterable<Uint8Array>): Promise<UploadResult> {
    const hash = createHash('sha256');
    let bytes = 0;
    let sourceError: { error: unknown } | undefined;
    async function* hashed(): AsyncGenerator<Uint8Array> {
      try {
        for await (const chunk of chunks) {
          hash.update(chunk);
          bytes += chunk.length;
          yield chunk;
        }
      } catch (error) {
        sourceError = { error };
        throw error;
      }
    }
    const upload = new Upload({
      client: this.#client,
      params: { ...this.#objectParams(key), Body: Readable.from(hashed()) },
      partSize: this.#partSize,
      queueSize: this.#queueSize,
      // Abort the multipart upload on any failure: nothing half-written stays behind.
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (err) {
      // When the byte source failed (an encoder, a record check), its error is the one, unchanged.
      if (sourceError) throw sourceError.error;
      throw this.#fail(err, 'PutObject', key, 'write');
    }
    return { bytes, sha256: hash.digest('hex') };
  }

  async *readStream(key: string): AsyncIterable<Buffer> {
    let offset = 0;
    let etag: string | undefined;
    for (let tries = 1; ; tries++) {
      let body: Readable;
      try {
        const r = await this.#client.send(
          new GetObjectCommand({ Bucket: this.bucket, Key: this.#key(key), ...(etag === undefined ? {} : { Range: `bytes=${offset}-`, IfMatch: etag }) }),
        );
        etag ??= r.ETag;
        body = r.Body as Readable;
      } catch (err) {
        if (isMissing(err) && awsErrorName(err) !== 'NoSuchBucket') throw Object.assign(new Error(`${this.describe(key)} does not exist`), { code: 'ENOENT' });
        // Only a resumed request carries a condition (If-Match of the first ETag).
        if (isPrecondition(err)) {
          throw new ExportError('OUTPUT_IO', `GetObject ${this.describe(key)}: the object changed while it was being read`, { file: this.describe(key) }, { cause: err });
        }
        throw this.#fail(err, 'GetObject', key, 'read');
      }
      try {
        // A reader that stops early ends this loop too: the stream's iterator then destroys the body, freeing its connection.
        for await (const chunk of body as AsyncIterable<Buffer>) {
          offset += chunk.length;
          yield chunk;
        }
        return;
      } catch (err) {
        // A body that broke midway (a connection closed while the merge left it idle): resume at `offset`.
        if (tries >= BODY_TRIES || etag === undefined) throw this.#fail(err, 'GetObject', key, 'read');
      }
    }
  }

  async delete(key: string, condition?: { readonly ifMatch: string }): Promise<void> {
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.#key(key), ...(condition ? { IfMatch: condition.ifMatch } : {}) }));
    } catch (err) {
      if (condition && (isPrecondition(err) || (isMissing(err) && awsErrorName(err) !== 'NoSuchBucket'))) throw new PreconditionFailed(key);
      throw this.#fail(err, 'DeleteObject', key, 'delete');
    }
  }

  async list(prefix: string): Promise<string[]> {
    const folder = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    const out: string[] = [];
    let token: string | undefined;
    try {
      do {
        const r = await this.#client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.#key(folder), MaxKeys: this.#pageSize, ...(token ? { ContinuationToken: token } : {}) }));
        for (const o of r.Contents ?? []) if (o.Key !== undefined) out.push(o.Key.slice(this.#base.length));
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw this.#fail(err, 'ListObjectsV2', folder, 'list');
    }
    return out;
  }

  async deletePrefix(prefix: string): Promise<void> {
    await this.#deleteBatches(await this.list(prefix), prefix);
  }

  async deleteKeys(keys: readonly string[]): Promise<void> {
    await this.#deleteBatches(keys);
  }

  /** DeleteObjects of `keys`, a page at a time; an error names `what`, else the first key of its batch. */
  async #deleteBatches(keys: readonly string[], what?: string): Promise<void> {
    for (let i = 0; i < keys.length; i += this.#pageSize) {
      const batch = keys.slice(i, i + this.#pageSize);
      let r;
      try {
        r = await this.#client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((k) => ({ Key: this.#key(k) })), Quiet: true } }));
      } catch (err) {
        throw this.#fail(err, 'DeleteObjects', what ?? batch[0]!, 'delete');
      }
      const failed = r.Errors?.[0];
      if (failed) {
        // Per-key failures come inside a 200 answer: classified like a failed call of that key.
        const err = Object.assign(new Error(failed.Message ?? 'DeleteObjects failed'), { name: failed.Code ?? 'UnknownError', $fault: 'client' });
        throw this.#fail(err, 'DeleteObjects', failed.Key?.slice(this.#base.length) ?? what ?? batch[0]!, 'delete');
      }
    }
  }

  async promote(from: string, to: string, files: readonly string[]): Promise<void> {
    if (files.length === 0) throw new ExportError('INTERNAL', `nothing to publish in ${this.describe(from)}`);
    // One listing of the target folder, not an existence check per file (the copy's
    // If-None-Match still catches a file that appears meanwhile).
    const present = new Set(await this.list(to));
    for (const file of files) {
      const source = keyJoin(from, file);
      const target = keyJoin(to, file);
      // Done by an earlier run that was killed midway: keep it if it is this very object's copy.
      if (present.has(target)) {
        await this.#checkCopy(source, target);
        continue;
      }
      const copy = new CopyObjectCommand({
        Bucket: this.bucket,
        Key: this.#key(target),
        CopySource: `${this.bucket}/${this.#key(source).split('/').map(encodeURIComponent).join('/')}`,
        MetadataDirective: 'COPY',
        IfNoneMatch: '*',
        ...this.#sseParams(),
      });
      try {
        await this.#settled(() => this.#client.send(copy));
      } catch (err) {
        // The target exists (412), or another writer's copy of it persists (409): keep it only if it is this object's copy.
        if (!(isPrecondition(err) || isConflict(err))) throw this.#fail(err, 'CopyObject', target, 'copy');
        await this.#checkCopy(source, target);
      }
      faultPoint('s3-copied', target);
    }
  }

  /** Passes when `target` is a copy of `source` (same object id, same size); else refuses to publish over it. */
  async #checkCopy(source: string, target: string): Promise<void> {
    const head = async (key: string) => {
      try {
        return await this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.#key(key) }));
      } catch (err) {
        if (isMissing(err)) return undefined;
        throw this.#fail(err, 'HeadObject', key, 'read');
      }
    };
    const [s, t] = await Promise.all([head(source), head(target)]);
    if (s && t) {
      const id = s.Metadata?.[OBJECT_ID];
      if (id !== undefined && t.Metadata?.[OBJECT_ID] === id && s.ContentLength === t.ContentLength) return;
    }
    throw new ExportError(
      'SNAPSHOT_PUBLISHED',
      `${this.describe(target)} already exists and is not a copy of ${this.describe(source)}; refusing to publish over it`,
      { file: this.describe(target) },
    );
  }

  /** Closes the client's connections, if the store made the client. */
  close(): void {
    if (this.#ownsClient) this.#client.destroy();
  }
}

/** How to reach S3: the SDK's chain, with the operator's flags on top. */
export interface S3ClientOptions {
  readonly region: string | undefined;
  readonly profile: string | undefined;
  /** --s3-endpoint-url. */
  readonly endpointUrl: string | undefined;
  readonly forcePathStyle: boolean;
  readonly maxAttempts: number;
  readonly logger?: Logger | undefined;
}

/** The custom S3 endpoint in effect (flag, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL), or undefined for AWS's own. */
export function s3EndpointOf(o: Pick<S3ClientOptions, 'endpointUrl'>, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return o.endpointUrl ?? (env.AWS_ENDPOINT_URL_S3 || undefined) ?? (env.AWS_ENDPOINT_URL || undefined);
}

/**
 * The S3 client of the store. Credentials, region, profile and endpoint come from
 * the SDK's own chain (the SDK reads AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL
 * itself); only --s3-endpoint-url is passed explicitly. Path-style addressing
 * whenever a custom endpoint is set (emulators and most S3-compatible servers
 * have no per-bucket host names) or asked for. A bucket in another region than
 * the client's is followed there (followRegionRedirects), so the region only has
 * to be right for IAM's signing.
 *
 * Retries: the SDK's standard strategy, its own (not IAM's adaptive rate limiter:
 * S3 throttles per prefix at thousands of requests a second, far above this job's
 * rate); it retries 503 SlowDown, 500s and connection errors with backoff.
 * Sockets: more than FAN_IN (runs.ts), since the merge keeps that many bodies open
 * at once; an idle one times out and is resumed by readStream.
 */
export async function createS3Client(o: S3ClientOptions, env: NodeJS.ProcessEnv = process.env): Promise<S3Client> {
  const custom = s3EndpointOf(o, env);
  return new S3Client({
    // The flag, else the SDK's chain (AWS_REGION, the profile), else us-east-1 (the bucket's region is followed anyway).
    region: await resolveRegion(o),
    ...(o.profile ? { profile: o.profile } : {}),
    ...(o.endpointUrl ? { endpoint: o.endpointUrl } : {}),
    forcePathStyle: o.forcePathStyle || custom !== undefined,
    followRegionRedirects: true,
    retryMode: 'standard',
    maxAttempts: o.maxAttempts,
    requestHandler: {
      connectionTimeout: 10_000,
      requestTimeout: 30_000,
      httpAgent: { keepAlive: true, maxSockets: SOCKETS },
      httpsAgent: { keepAlive: true, maxSockets: SOCKETS },
    },
    // The SDK logs every call's input and output at info level: for S3 those hold
    // object bodies (buffers of parts, response streams). Warnings and errors only.
    ...(o.logger ? { logger: { ...o.logger, trace: () => undefined, debug: () => undefined, info: () => undefined } } : {}),
  });
}

/** Sockets per client: the merge's FAN_IN (64) open bodies, plus uploads and the lease's renewals. */
const SOCKETS = 96;

