/**
 * S3 for tests: moto_server behind a small recording proxy, a bucket, and helpers
 * to look into it the way an operator would (list, download, then read locally).
 *
 * The proxy (an S3 front) does three things moto does not:
 * - records every request (method, key, query, headers, status), so tests can
 *   check SSE headers on each write and the order objects were published in;
 * - serializes conditional requests (If-Match / If-None-Match): moto checks the
 *   condition and then writes in two steps on a threaded server, so two racing
 *   conditional writes can both pass there (seen: 1 round in 30). Real S3 decides
 *   them atomically; one at a time through moto is what S3 does;
 * - can add latency, so kill tests have runs long enough to be interrupted.
 * It forwards requests unchanged (the Host header too: signatures stay valid).
 */
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { motoUnavailable, startMoto, type Moto } from './moto.ts';
import { testEnv } from './cli.ts';
import type { Store } from '../../pipeline/store/store.ts';

/** One request as the front saw it. */
export interface RecordedRequest {
  readonly op: string;
  readonly method: string;
  /** The object key (path-style: after the bucket), decoded; '' for bucket-level calls. */
  readonly key: string;
  readonly bucket: string;
  readonly query: URLSearchParams;
  readonly headers: IncomingHttpHeaders;
  /** The request body (filled in once it has arrived). */
  body: Buffer;
  status: number;
}

/**
 * A fault the front injects into the next request of `op` (then it is used up):
 * - answer: reply `status` with S3's XML error `code` (or with `body` as it is, e.g. a
 *   200 answer carrying per-key errors), without forwarding;
 * - drop-response: forward (S3 applies it), then close the connection unanswered;
 * - cut-body: forward, then close the connection after `afterBytes` of the body (once
 *   `when` resolves, if given: the test decides the moment; bytes past `afterBytes` are held back).
 */
export type FrontFault =
  | { readonly op: string; readonly kind: 'answer'; readonly status: number; readonly code: string; readonly body?: string }
  | { readonly op: string; readonly kind: 'drop-response' }
  | { readonly op: string; readonly kind: 'cut-body'; readonly afterBytes: number; readonly when?: Promise<void> };

export interface S3Front {
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Faults still to inject, in order. */
  readonly faults: FrontFault[];
  /** Milliseconds added before each request is forwarded. */
  latencyMs: number;
  close(): Promise<void>;
}

/** The S3 operation of a path-style request, from its method, query and headers. */
function opOf(method: string, key: string, query: URLSearchParams, headers: IncomingHttpHeaders): string {
  if (method === 'PUT' && key === '') return 'CreateBucket';
  if (method === 'PUT' && headers['x-amz-copy-source']) return query.has('partNumber') ? 'UploadPartCopy' : 'CopyObject';
  if (method === 'PUT') return query.has('partNumber') ? 'UploadPart' : 'PutObject';
  if (method === 'POST' && query.has('uploads')) return 'CreateMultipartUpload';
  if (method === 'POST' && query.has('uploadId')) return 'CompleteMultipartUpload';
  if (method === 'POST' && query.has('delete')) return 'DeleteObjects';
  if (method === 'DELETE') return query.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
  if (method === 'GET' && key === '') return query.has('uploads') ? 'ListMultipartUploads' : 'ListObjectsV2';
  if (method === 'GET') return 'GetObject';
  if (method === 'HEAD') return key === '' ? 'HeadBucket' : 'HeadObject';
  return `${method} ${key}`;
}

/**
 * Breaks the next GetObject bodies of `key` (an object key) after `afterBytes[i]` bytes each,
 * each only once the reader has received a piece of that body: a break before the SDK hands a
 * body over is the SDK's own retry of the whole GET (seen under load), not a resumed read.
 * The reader calls `received()` on every piece.
 */
export function bodyBreaks(front: S3Front, key: string, afterBytes: readonly number[]): { received(): void } {
  const fire: (() => void)[] = [];
  const start = front.requests.length;
  for (const bytes of afterBytes) front.faults.push({ op: 'GetObject', kind: 'cut-body', afterBytes: bytes, when: new Promise<void>((resolve) => fire.push(resolve)) });
  return {
    received() {
      const gets = front.requests.slice(start).filter((r) => r.op === 'GetObject' && r.key === key).length;
      fire[gets - 1]?.();
    },
  };
}

/** Starts a front for `target` (http://host:port). */
export async function startS3Front(target: string, latencyMs = 0): Promise<S3Front> {
  const upstream = new URL(target);
  const sockets = new Set<Socket>();
  const requests: RecordedRequest[] = [];
  let conditional: Promise<void> = Promise.resolve();
  const front: S3Front = { url: '', requests, faults: [], latencyMs, close: async () => undefined };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://front');
    const [, bucket = '', ...rest] = url.pathname.split('/');
    const key = decodeURIComponent(rest.join('/'));
    const method = req.method ?? 'GET';
    const entry: RecordedRequest = { op: opOf(method, key, url.searchParams, req.headers), method, key, bucket, query: url.searchParams, headers: req.headers, body: Buffer.alloc(0), status: 0 };
    requests.push(entry);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      entry.body = Buffer.concat(chunks);
      const at = front.faults.findIndex((f) => f.op === entry.op);
      const fault = at < 0 ? undefined : front.faults.splice(at, 1)[0];
      const forward = () =>
        new Promise<void>((done) => {
          if (fault?.kind === 'answer') {
            entry.status = fault.status;
            res.writeHead(fault.status, { 'content-type': 'application/xml' });
            res.end(fault.body ?? `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.code}</Code><Message>injected by the test front</Message></Error>`);
            return done();
          }
          const fwd = request({ host: upstream.hostname, port: upstream.port, method, path: req.url, headers: req.headers }, (up) => {
            entry.status = up.statusCode ?? 0;
            up.on('end', () => done());
            up.on('error', () => done());
            if (fault?.kind === 'drop-response') {
              up.resume();
              res.destroy();
              return;
            }
            res.writeHead(up.statusCode ?? 502, up.headers);
            if (fault?.kind === 'cut-body') {
              let sent = 0;
              up.on('data', (c: Buffer) => {
                if (sent >= fault.afterBytes) return;
                const part = c.subarray(0, fault.afterBytes - sent);
                sent += part.length;
                res.write(part);
                if (sent >= fault.afterBytes) void (fault.when ?? Promise.resolve()).then(() => res.destroy());
              });
              return;
            }
            up.pipe(res);
          });
          fwd.on('error', () => {
            res.destroy();
            done();
          });
          fwd.end(entry.body);
        });
      const go = () => {
        if (req.headers['if-match'] === undefined && req.headers['if-none-match'] === undefined) return void forward();
        // One conditional request at a time: moto's check-then-write is then atomic, as S3's is.
        const turn = conditional.then(forward);
        conditional = turn;
      };
      if (front.latencyMs > 0) setTimeout(go, front.latencyMs);
      else go();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(front, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  });
}

/** moto, a front, and a client on the front for the test's own looks. */
export interface S3Harness {
  readonly moto: Moto;
  readonly front: S3Front;
  readonly client: S3Client;
  /** Creates a bucket; returns its name. */
  bucket(name?: string): Promise<string>;
  /** The CLI's environment for this S3 (dummy credentials, AWS_ENDPOINT_URL_S3 = the front). */
  env(extra?: Record<string, string>): NodeJS.ProcessEnv;
  close(): Promise<void>;
}

const unavailable = motoUnavailable();
/** A test option: skip (saying why) where moto is missing, except under CI=true, where that is a failure. */
export const s3Skip: string | false = unavailable && process.env.CI !== 'true' ? unavailable : false;

/** An S3 client on `url` with the test credentials. */
export function testS3Client(url: string): S3Client {
  return new S3Client({ region: 'us-east-1', endpoint: url, forcePathStyle: true, credentials: { accessKeyId: 'AKIDTESTTESTTESTTEST', secretAccessKey: 'test-secret-not-real' } });
}

let buckets = 0;

/** Starts moto and a front; `close()` stops both. */
export async function startS3(options: { latencyMs?: number; motoEnv?: Record<string, string> } = {}): Promise<S3Harness> {
  if (unavailable) throw new Error(unavailable);
  const moto = await startMoto(options.motoEnv ? { env: options.motoEnv } : {});
  const front = await startS3Front(moto.url, options.latencyMs ?? 0);
  const client = testS3Client(front.url);
  return {
    moto,
    front,
    client,
    async bucket(name = `ike-test-${process.pid}-${++buckets}`) {
      await client.send(new CreateBucketCommand({ Bucket: name }));
      return name;
    },
    env: (extra = {}) => testEnv({ AWS_ENDPOINT_URL_S3: front.url, ...extra }),
    async close() {
      client.destroy();
      await front.close();
      await moto.close();
    },
  };
}

/** The given buffers as an upload's byte source. */
export async function* bytesOf(...parts: Buffer[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield p;
}

/** The whole object at `key` through the store's readStream; `onPiece` runs on every piece (see bodyBreaks). */
export async function readAll(store: Store, key: string, onPiece = () => {}): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of store.readStream(key)) {
    chunks.push(c);
    onPiece();
  }
  return Buffer.concat(chunks);
}

/** Every key under `prefix` in `bucket`. */
export async function listKeys(client: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }));
    for (const o of r.Contents ?? []) keys.push(o.Key!);
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

/** The bytes of one object, or undefined. */
export async function getObject(client: S3Client, bucket: string, key: string): Promise<Buffer | undefined> {
  try {
    const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await r.Body!.transformToByteArray());
  } catch (err) {
    if ((err as { name?: string }).name === 'NoSuchKey') return undefined;
    throw err;
  }
}

/**
 * Downloads everything under `prefix` into a fresh local folder (keys relative to
 * the prefix), as a reader copying a dataset would; returns the folder.
 */
export async function download(client: S3Client, bucket: string, prefix: string, into?: string): Promise<string> {
  const dir = into ?? (await mkdtemp(join(tmpdir(), 'ike-s3-dl-')));
  const base = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
  for (const key of await listKeys(client, bucket, base)) {
    const file = join(dir, ...key.slice(base.length).split('/'));
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, (await getObject(client, bucket, key))!);
  }
  return dir;
}
