import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { ExportError } from '../pipeline/errors.ts';
import { createS3Client, s3EndpointOf, S3Store, PART_SIZE, type S3StoreOptions } from '../pipeline/store/s3.ts';
import { isPreconditionFailed } from '../pipeline/store/store.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { FAULT_HOOK } from './support/cli.ts';
import { bodyBreaks, bytesOf, getObject, listKeys, readAll, s3Skip, startS3, testS3Client, type S3Harness } from './support/s3.ts';

const skip = s3Skip;
let s3: S3Harness;
let bucket: string;
let prefixes = 0;

before(async () => {
  if (skip) return;
  s3 = await startS3();
  bucket = await s3.bucket();
});
after(async () => {
  await s3?.close();
});

/** A store on a fresh prefix of the test bucket (its own client when asked, as another process would have). */
function fresh(options: Partial<S3StoreOptions> = {}): S3Store {
  return new S3Store({ client: s3.client, bucket, prefix: `t${++prefixes}/root`, ...options });
}

/** Another store on the same prefix with its own client: a contender in another process. */
function contender(store: S3Store): S3Store {
  const prefix = store.root.slice(`s3://${bucket}/`.length);
  return new S3Store({ client: testS3Client(s3.front.url), bucket, prefix, ownsClient: true });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('a write is read back with its ETag as the version, which changes on every write; a missing key reads as undefined', { skip }, async () => {
  const store = fresh();
  const v1 = await store.write('a/b.json', 'one');
  const r1 = await store.read('a/b.json');
  assert.equal(r1?.body.toString(), 'one');
  assert.equal(r1?.version, v1);
  const v2 = await store.write('a/b.json', 'two');
  assert.notEqual(v2, v1);
  assert.equal((await store.read('a/b.json'))?.version, v2);
  assert.equal(await store.read('nothing'), undefined);
  assert.equal(store.describe('a/b.json'), `s3://${bucket}/${store.root.slice(`s3://${bucket}/`.length)}/a/b.json`);
});

test('create-if-absent: of many creators racing, exactly one wins in every round', { skip }, async () => {
  for (let round = 0; round < 6; round++) {
    const store = fresh();
    const racers = [store, ...Array.from({ length: 1 + round }, () => contender(store))];
    const results = await Promise.allSettled(racers.map((r, i) => r.write('k', `writer ${i}`, { ifNoneMatch: true })));
    for (const r of racers) r.close();
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, `round ${round}`);
    for (const r of results) if (r.status === 'rejected') assert.ok(isPreconditionFailed(r.reason), String(r.reason));
  }
});

test('compare-and-swap: of many writers swapping the same version, exactly one wins per version; the others change nothing', { skip }, async () => {
  const random = mulberry32(11);
  for (let round = 0; round < 3; round++) {
    const store = fresh();
    let version = await store.write('k', 'v0');
    for (let generation = 1; generation <= 3; generation++) {
      const racers = [store, ...Array.from({ length: 1 + Math.floor(random() * 5) }, () => contender(store))];
      const results = await Promise.allSettled(racers.map((r, i) => r.write('k', `g${generation} racer ${i}`, { ifMatch: version })));
      for (const r of racers.slice(1)) r.close();
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [{ i, version: r.value }] : []));
      assert.equal(won.length, 1, `round ${round} generation ${generation}: ${won.length} winners`);
      for (const r of results) if (r.status === 'rejected') assert.ok(isPreconditionFailed(r.reason), String(r.reason));
      const now = await store.read('k');
      assert.equal(now?.body.toString(), `g${generation} racer ${won[0]!.i}`);
      assert.equal(now?.version, won[0]!.version);
      await assert.rejects(store.write('k', 'stale', { ifMatch: version }), isPreconditionFailed, 'a stale writer loses too');
      version = won[0]!.version;
    }
  }
});

test('a conditional delete removes only the version read, and fails once the key is gone', { skip }, async () => {
  const store = fresh();
  const v1 = await store.write('k', 'one');
  await store.write('k', 'two');
  await assert.rejects(store.delete('k', { ifMatch: v1 }), isPreconditionFailed);
  const now = await store.read('k');
  await store.delete('k', { ifMatch: now!.version });
  assert.equal(await store.exists('k'), false);
  await assert.rejects(store.delete('k', { ifMatch: now!.version }), isPreconditionFailed);
  await store.delete('k'); // unconditional: absent is fine
  await assert.rejects(store.write('k', 'x', { ifMatch: now!.version }), isPreconditionFailed, 'If-Match on a missing key');
});

test('a conditional write that S3 applied but whose answer was lost is recognized as ours when the retry meets 412', { skip }, async () => {
  const store = fresh();
  s3.front.faults.push({ op: 'PutObject', kind: 'drop-response' });
  const version = await store.write('lease.json', '{"run_id":"mine"}', { ifNoneMatch: true });
  const now = await store.read('lease.json');
  assert.equal(now?.version, version);
  // Someone else's object is not taken for ours.
  s3.front.faults.push({ op: 'PutObject', kind: 'drop-response' });
  await assert.rejects(store.write('lease.json', '{"run_id":"other"}', { ifMatch: '"0123456789abcdef0123456789abcdef"' }), isPreconditionFailed);
  assert.equal(s3.front.faults.length, 0);
});

test('409 ConditionalRequestConflict is retried until S3 gives a definite answer', { skip }, async () => {
  const store = fresh();
  s3.front.faults.push({ op: 'PutObject', kind: 'answer', status: 409, code: 'ConditionalRequestConflict' });
  s3.front.faults.push({ op: 'PutObject', kind: 'answer', status: 409, code: 'ConditionalRequestConflict' });
  const version = await store.write('k', 'created', { ifNoneMatch: true });
  assert.equal((await store.read('k'))?.version, version);
  s3.front.faults.push({ op: 'PutObject', kind: 'answer', status: 409, code: 'ConditionalRequestConflict' });
  await assert.rejects(store.write('k', 'again', { ifNoneMatch: true }), isPreconditionFailed, 'the retry meets the object: 412');
});

test('an upload below the part size is one PutObject; above it a multipart upload, read back identical (also when a body breaks midway)', { skip }, async () => {
  const store = fresh();
  const small = Buffer.from('a,b\n1,2\n');
  const start = s3.front.requests.length;
  assert.deepEqual(await store.upload('small.csv', bytesOf(small)), { bytes: small.length, sha256: sha(small) });
  assert.deepEqual(s3.front.requests.slice(start).map((r) => r.op), ['PutObject']);
  const big = Buffer.alloc(PART_SIZE * 2 + 12345);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32BE(i, i);
  const mark = s3.front.requests.length;
  const result = await store.upload('big.parquet', bytesOf(big.subarray(0, 3 << 20), big.subarray(3 << 20)));
  assert.deepEqual(result, { bytes: big.length, sha256: sha(big) });
  const ops = s3.front.requests.slice(mark).map((r) => r.op);
  assert.deepEqual(ops.filter((o) => o !== 'UploadPart'), ['CreateMultipartUpload', 'CompleteMultipartUpload']);
  assert.equal(ops.filter((o) => o === 'UploadPart').length, 3);
  assert.ok(sha(await readAll(store, 'big.parquet')) === sha(big), 'read back whole');
  // The connection breaks twice mid-body: reading resumes at the byte reached (ranged GET pinned to the ETag).
  const mark2 = s3.front.requests.length;
  const breaks = bodyBreaks(s3.front, `${store.root.slice(`s3://${bucket}/`.length)}/big.parquet`, [1 << 20, 3 << 20]);
  assert.ok(sha(await readAll(store, 'big.parquet', breaks.received)) === sha(big), 'resumed to the same bytes');
  const gets = s3.front.requests.slice(mark2).filter((r) => r.op === 'GetObject');
  assert.equal(gets.length, 3);
  // Each resumes where the bytes that reached the reader end (at most where the connection broke).
  const offsets = gets.slice(1).map((g) => Number(/^bytes=(\d+)-$/.exec(String(g.headers.range))?.[1]));
  assert.equal(gets[0]!.headers.range, undefined);
  assert.ok(offsets[0]! > 0 && offsets[0]! <= 1 << 20 && offsets[1]! > offsets[0]! && offsets[1]! <= offsets[0]! + (3 << 20), `ranges ${offsets.join(', ')}`);
  assert.ok(gets.slice(1).every((g) => typeof g.headers['if-match'] === 'string'), 'pinned to the first ETag');
});

test('an upload whose source fails leaves no object and no multipart upload behind; the source error passes unchanged', { skip }, async () => {
  const store = fresh();
  const boom = new Error('source failed');
  for (const size of [100, PART_SIZE + 1]) {
    await assert.rejects(
      store.upload(`x/file-${size}.csv`, (async function* () {
        yield Buffer.alloc(size);
        throw boom;
      })()),
      (err) => err === boom,
    );
  }
  assert.deepEqual(await store.list('x/'), []);
  const uploads = await s3.client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: store.root.slice(`s3://${bucket}/`.length) }));
  assert.deepEqual(uploads.Uploads ?? [], [], 'the multipart upload was aborted');
});

test('killed after the first part of a multipart upload: nothing is visible at the key; uploading again completes it', { skip }, async () => {
  const store = fresh();
  const prefix = store.root.slice(`s3://${bucket}/`.length);
  const script = fileURLToPath(new URL('./support/s3-upload.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', FAULT_HOOK, script, s3.front.url, bucket, prefix, 'big.csv', String(PART_SIZE + 1)], {
    env: { ...process.env, IKE_FAULT_POINT: 's3-part-uploaded~#1', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('close', (c, s) => resolve([c, s])));
  assert.equal(signal, 'SIGKILL', `exit ${code}`);
  assert.equal(await store.exists('big.csv'), false, 'an unfinished multipart upload is invisible');
  const uploads = await s3.client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
  assert.equal(uploads.Uploads?.length, 1, 'left for the bucket lifecycle rule (AbortIncompleteMultipartUpload)');
  const again = await store.upload('big.csv', bytesOf(Buffer.alloc(PART_SIZE + 1)));
  assert.equal(again.bytes, PART_SIZE + 1);
  assert.equal((await readAll(store, 'big.csv')).length, PART_SIZE + 1);
});

test('promote copies the files in the order given (the gate last), completes after a crash midway, and never replaces a different object', { skip }, async () => {
  const store = fresh();
  const files = ['part-00000.csv', 'part-00001.csv', '_manifest.json', '_SUCCESS'];
  for (const f of files) await store.write(`_staging/s/publish-ab/${f}`, f === '_SUCCESS' ? '' : `bytes of ${f}`);
  // A crash after the first two copies: they are there, the rest not.
  const mark = s3.front.requests.length;
  await store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', files.slice(0, 2));
  await store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', files);
  const copies = s3.front.requests.slice(mark).filter((r) => r.op === 'CopyObject').map((r) => r.key.split('/').pop());
  assert.deepEqual(copies, files, 'each file copied once, in order, _SUCCESS last');
  assert.deepEqual((await store.list('access_keys/')).sort(), files.map((f) => `access_keys/snapshot_id=s/${f}`).sort());
  // Done again: nothing copied.
  const mark2 = s3.front.requests.length;
  await store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', files);
  assert.deepEqual(s3.front.requests.slice(mark2).filter((r) => r.op === 'CopyObject'), []);
  for (const f of files) assert.equal((await store.read(`access_keys/snapshot_id=s/${f}`))?.body.toString(), f === '_SUCCESS' ? '' : `bytes of ${f}`);
  // Another publication of the same id with other bytes is refused, and the published object is untouched.
  await store.write('_staging/s/publish-cd/part-00000.csv', 'other bytes');
  await assert.rejects(store.promote('_staging/s/publish-cd/', 'access_keys/snapshot_id=s/', ['part-00000.csv']), (err: unknown) => err instanceof ExportError && err.code === 'SNAPSHOT_PUBLISHED');
  assert.equal((await store.read('access_keys/snapshot_id=s/part-00000.csv'))?.body.toString(), 'bytes of part-00000.csv');
});

test('list, deletePrefix and deleteKeys page through every key: ListObjectsV2 pages and DeleteObjects batches, of 1,000 by default', { skip }, async () => {
  // Pages of 10 here: the same paging as 1,000 (S3's maximum), without writing 1,000+
  // objects to moto (15-70 ms each on this machine); the defaults are checked on the wire.
  const store = fresh({ pageSize: 10 });
  const keys = Array.from({ length: 25 }, (_, i) => `_staging/s/runs/run-${String(i).padStart(5, '0')}`);
  await Promise.all(keys.map((k) => store.write(k, 'x')));
  await store.write('_staging/s-other/keep', 'x');
  const mark = s3.front.requests.length;
  assert.deepEqual((await store.list('_staging/s/')).sort(), keys);
  const lists = s3.front.requests.slice(mark).filter((r) => r.op === 'ListObjectsV2');
  assert.equal(lists.length, 3, 'three pages');
  assert.ok(lists.every((r) => r.query.get('max-keys') === '10'));
  const mark2 = s3.front.requests.length;
  await store.deletePrefix('_staging/s/');
  assert.deepEqual(s3.front.requests.slice(mark2).map((r) => r.op), ['ListObjectsV2', 'ListObjectsV2', 'ListObjectsV2', 'DeleteObjects', 'DeleteObjects', 'DeleteObjects']);
  assert.deepEqual(await store.list('_staging/'), ['_staging/s-other/keep'], 'a sibling sharing the name as a prefix is not a child');
  await Promise.all(keys.slice(0, 12).map((k) => store.write(k, 'x')));
  const mark4 = s3.front.requests.length;
  await store.deleteKeys([...keys.slice(0, 12), '_staging/s/absent']);
  assert.deepEqual(s3.front.requests.slice(mark4).map((r) => r.op), ['DeleteObjects', 'DeleteObjects'], 'no listing; absent keys are fine');
  assert.deepEqual(await store.list('_staging/s/'), []);
  const defaults = new S3Store({ client: s3.client, bucket, prefix: store.root.slice(`s3://${bucket}/`.length) });
  const mark3 = s3.front.requests.length;
  await defaults.deletePrefix('_staging/');
  const wire = s3.front.requests.slice(mark3);
  assert.equal(wire.find((r) => r.op === 'ListObjectsV2')?.query.get('max-keys'), '1000');
  assert.equal(wire.filter((r) => r.op === 'DeleteObjects').length, 1);
  assert.deepEqual(await defaults.list(''), []);
});

test('with --sse aws:kms every PutObject, multipart upload and CopyObject carries the encryption headers', { skip }, async () => {
  const store = fresh({ sse: { mode: 'aws:kms', kmsKeyId: 'alias/iam-inventory' } });
  const mark = s3.front.requests.length;
  await store.write('_staging/s/publish-ab/_manifest.json', '{}');
  await store.upload('_staging/s/publish-ab/part-00000.csv', bytesOf(Buffer.alloc(PART_SIZE + 10)));
  await store.write('_staging/s/publish-ab/_SUCCESS', '', { ifNoneMatch: true });
  await store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', ['part-00000.csv', '_manifest.json', '_SUCCESS']);
  const writes = s3.front.requests.slice(mark).filter((r) => ['PutObject', 'CreateMultipartUpload', 'CopyObject'].includes(r.op));
  assert.deepEqual([...new Set(writes.map((w) => w.op))].sort(), ['CopyObject', 'CreateMultipartUpload', 'PutObject']);
  for (const w of writes) {
    assert.equal(w.headers['x-amz-server-side-encryption'], 'aws:kms', `${w.op} ${w.key}`);
    assert.equal(w.headers['x-amz-server-side-encryption-aws-kms-key-id'], 'alias/iam-inventory', `${w.op} ${w.key}`);
  }
  const aes = fresh({ sse: { mode: 'AES256' } });
  const mark2 = s3.front.requests.length;
  await aes.write('k', 'x');
  const put = s3.front.requests.slice(mark2).find((r) => r.op === 'PutObject')!;
  assert.equal(put.headers['x-amz-server-side-encryption'], 'AES256');
  assert.equal(put.headers['x-amz-server-side-encryption-aws-kms-key-id'], undefined);
});

test('readStream of a missing key fails with code ENOENT; exists is exact: a key is not any key it prefixes', { skip }, async () => {
  const store = fresh();
  await store.write('access_keys/snapshot_id=s/_SUCCESSOR', 'x');
  assert.equal(await store.exists('access_keys/snapshot_id=s/_SUCCESS'), false);
  await store.write('access_keys/snapshot_id=s/_SUCCESS', '');
  assert.equal(await store.exists('access_keys/snapshot_id=s/_SUCCESS'), true);
  await assert.rejects(readAll(store, 'nope.ndjson'), (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT');
});

test('a missing bucket is OUTPUT_NOT_FOUND naming it; an answer S3 gives after retries is OUTPUT_IO', { skip }, async () => {
  const store = new S3Store({ client: s3.client, bucket: 'no-such-bucket-here', prefix: 'x' });
  await assert.rejects(store.list('_staging/'), (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_NOT_FOUND' && /bucket no-such-bucket-here does not exist/.test(err.message));
  await assert.rejects(store.write('k', 'x'), (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_NOT_FOUND');
  s3.front.faults.push({ op: 'PutObject', kind: 'answer', status: 400, code: 'InvalidRequest' });
  await assert.rejects(fresh().write('k', 'x'), (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_IO' && /PutObject s3:\/\/.*\/k: S3 answered InvalidRequest \(HTTP 400\)/.test(err.message));
});

test('store keys map under the prefix as on disk; a bucket-root store has no prefix', { skip }, async () => {
  const store = new S3Store({ client: s3.client, bucket, prefix: '' });
  await store.write('rooted.json', '{}');
  assert.ok((await listKeys(s3.client, bucket, 'rooted')).includes('rooted.json'));
  assert.equal(store.describe('rooted.json'), `s3://${bucket}/rooted.json`);
  assert.deepEqual(await getObject(s3.client, bucket, 'rooted.json'), Buffer.from('{}'));
  await store.delete('rooted.json');
});

test('the store client: path-style whenever an endpoint is custom (flag, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, in that order), the bucket region followed, standard retries, the SDK log kept to warnings', async () => {
  assert.equal(s3EndpointOf({ endpointUrl: 'http://flag:1' }, { AWS_ENDPOINT_URL_S3: 'http://s3:2', AWS_ENDPOINT_URL: 'http://all:3' }), 'http://flag:1');
  assert.equal(s3EndpointOf({ endpointUrl: undefined }, { AWS_ENDPOINT_URL_S3: 'http://s3:2', AWS_ENDPOINT_URL: 'http://all:3' }), 'http://s3:2');
  assert.equal(s3EndpointOf({ endpointUrl: undefined }, { AWS_ENDPOINT_URL_S3: '', AWS_ENDPOINT_URL: 'http://all:3' }), 'http://all:3');
  assert.equal(s3EndpointOf({ endpointUrl: undefined }, { AWS_ENDPOINT_URL_S3: '', AWS_ENDPOINT_URL: '' }), undefined);

  const warned: unknown[] = [];
  const logger = { trace: () => assert.fail('trace'), debug: () => assert.fail('debug'), info: () => assert.fail('info'), warn: (...a: unknown[]) => warned.push(a), error: () => undefined };
  const base = { region: 'eu-west-1', profile: undefined, endpointUrl: undefined, forcePathStyle: false, maxAttempts: 7 };
  const custom = await createS3Client({ ...base, endpointUrl: 'http://127.0.0.1:9', profile: 'reports', logger }, {});
  try {
    assert.equal(await custom.config.region(), 'eu-west-1');
    assert.equal(custom.config.forcePathStyle, true);
    assert.equal(custom.config.followRegionRedirects, true);
    const mode = custom.config.retryMode;
    assert.equal(typeof mode === 'string' ? mode : await mode(), 'standard');
    assert.equal(await custom.config.maxAttempts(), 7);
    assert.equal(custom.config.profile, 'reports');
    const endpoint = await custom.config.endpoint!();
    assert.equal(`${endpoint.protocol}//${endpoint.hostname}:${endpoint.port}`, 'http://127.0.0.1:9');
    custom.config.logger.info('not kept');
    custom.config.logger.debug('not kept');
    custom.config.logger.warn('kept');
    assert.equal(warned.length, 1);
  } finally {
    custom.destroy();
  }
  const aws = await createS3Client(base, {});
  const fromEnv = await createS3Client(base, { AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9' });
  const asked = await createS3Client({ ...base, forcePathStyle: true }, {});
  try {
    assert.equal(aws.config.forcePathStyle, false, "AWS's own endpoint: virtual-hosted style");
    assert.equal(aws.config.profile, undefined);
    assert.equal(fromEnv.config.forcePathStyle, true);
    assert.equal(asked.config.forcePathStyle, true);
  } finally {
    for (const c of [aws, fromEnv, asked]) c.destroy();
  }
});
