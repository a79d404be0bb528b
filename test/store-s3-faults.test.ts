/**
 * The S3 store when S3 says no: each failed call's one line (the call, the object,
 * the permission, the KMS key), the answers it decides on by status or by code, a
 * read denied on a missing key, an object that changes under a resumed read,
 * per-key DeleteObjects errors, a promotion that meets a copy or a stranger, and
 * the exact requests it sends (content types, batches, conditions). Against moto
 * behind the recording front (test/support/s3.ts), which injects the answers.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { ExportError } from '../pipeline/errors.ts';
import { FAULT_HOOK } from '../pipeline/faultpoint.ts';
import { FAN_IN } from '../pipeline/runs.ts';
import { createS3Client, PART_SIZE, S3Store, type S3StoreOptions } from '../pipeline/store/s3.ts';
import { isPreconditionFailed } from '../pipeline/store/store.ts';
import { bodyBreaks, bytesOf, readAll, s3Skip, startS3, testS3Client, type FrontFault, type S3Harness } from './support/s3.ts';

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

function fresh(options: Partial<S3StoreOptions> = {}): S3Store {
  return new S3Store({ client: s3.client, bucket, prefix: `f${++prefixes}/root`, ...options });
}

/** The object key of a store key of `store`. */
const objectKey = (store: S3Store, key: string) => store.describe(key).slice(`s3://${bucket}/`.length);

const denied = (op: string): FrontFault => ({ op, kind: 'answer', status: 403, code: 'AccessDenied' });

/** Asserts `promise` fails with `code` and exactly `message`. */
async function failsWith(promise: Promise<unknown>, code: string, message: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ExportError, String(err));
    assert.equal(err.message, message);
    assert.equal(err.code, code);
    return true;
  });
  assert.deepEqual(s3.front.faults, [], 'every injected answer was used');
}

test('every object written carries the content type of its extension', { skip }, async () => {
  const store = fresh();
  const types: Record<string, string> = {
    'part-00000.csv': 'text/csv; charset=utf-8',
    'part-00000.parquet': 'application/vnd.apache.parquet',
    '_manifest.json': 'application/json',
    'errors.ndjson': 'application/x-ndjson',
    _SUCCESS: 'application/octet-stream',
    'lease.JSON': 'application/octet-stream',
    'v.x/_manifest.json': 'application/json',
  };
  const mark = s3.front.requests.length;
  for (const key of Object.keys(types)) await store.write(`w/${key}`, 'x');
  for (const key of Object.keys(types)) await store.upload(`u/${key}`, bytesOf(Buffer.from('x')));
  const puts = s3.front.requests.slice(mark).filter((r) => r.op === 'PutObject');
  assert.equal(puts.length, 2 * Object.keys(types).length);
  for (const p of puts) assert.equal(p.headers['content-type'], types[p.key.replace(/^.*?\/root\/[wu]\//, '')], p.key);
  // Each carries a fresh object id, as S3 metadata must be: US-ASCII (hex).
  const ids = puts.map((p) => String(p.headers['x-amz-meta-ike-object-id']));
  for (const id of ids) assert.match(id, /^[0-9a-f]{24}$/);
  assert.equal(new Set(ids).size, ids.length);
});

test('each stored part of a multipart upload and each published copy passes its fault point, in order', { skip }, async () => {
  const seen: string[] = [];
  const hooks = globalThis as Record<symbol, unknown>;
  hooks[FAULT_HOOK] = (name: string, detail?: string) => void seen.push(`${name} ${detail}`);
  try {
    const store = fresh();
    await store.upload('_staging/s/publish-ab/big.csv', bytesOf(Buffer.alloc(PART_SIZE + 10)));
    await store.write('_staging/s/publish-ab/_SUCCESS', '');
    await store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', ['big.csv', '_SUCCESS']);
    const base = objectKey(store, '_staging/s/publish-ab/big.csv');
    // Parts are stored concurrently (either may finish first); copies one after another, the gate last.
    assert.deepEqual(seen.slice(0, 2).sort(), [`s3-part-uploaded ${base}#1`, `s3-part-uploaded ${base}#2`]);
    assert.deepEqual(seen.slice(2), ['s3-copied access_keys/snapshot_id=s/big.csv', 's3-copied access_keys/snapshot_id=s/_SUCCESS']);
  } finally {
    delete hooks[FAULT_HOOK];
  }
});

test('a failed call names the call, the object and the permission it needs, and the KMS key when one is used', { skip }, async () => {
  for (const sse of [undefined, { mode: 'aws:kms' as const, kmsKeyId: 'alias/inventory' }, { mode: 'aws:kms' as const }]) {
    const store = fresh({ sse });
    const arn = (key: string) => `arn:aws:s3:::${bucket}/${objectKey(store, key)}`;
    const keyName = sse?.mode === 'aws:kms' ? `key ${sse.kmsKeyId ?? 'aws/s3'}` : undefined;
    const kmsRead = keyName ? ` and kms:Decrypt on ${keyName}` : '';
    const kmsWrite = keyName ? ` and kms:GenerateDataKey and kms:Decrypt on ${keyName}` : '';
    const line = (op: string, key: string, needs: string) => `${op} ${store.describe(key)}: access denied (AccessDenied); the identity needs ${needs}`;
    await store.write('present.json', '{}');
    await store.write('_staging/s/publish-ab/part-00000.csv', 'a');
    await store.write('access_keys/snapshot_id=s/part-00000.csv', 'a');
    const version = (await store.read('present.json'))!.version;
    const cases: [string, () => Promise<unknown>, string, string, string][] = [
      ['GetObject', () => store.read('present.json'), 'GetObject', 'present.json', `s3:GetObject on ${arn('present.json')}${kmsRead}`],
      ['GetObject', () => readAll(store, 'present.json'), 'GetObject', 'present.json', `s3:GetObject on ${arn('present.json')}${kmsRead}`],
      ['ListObjectsV2', () => store.exists('present.json'), 'ListObjectsV2', 'present.json', `s3:ListBucket on arn:aws:s3:::${bucket} for the prefix ${objectKey(store, 'present.json')}`],
      ['ListObjectsV2', () => store.list('_staging/s'), 'ListObjectsV2', '_staging/s/', `s3:ListBucket on arn:aws:s3:::${bucket} for the prefix ${objectKey(store, '_staging/s/')}`],
      ['PutObject', () => store.write('k.json', '{}'), 'PutObject', 'k.json', `s3:PutObject on ${arn('k.json')}${kmsWrite}`],
      ['PutObject', () => store.write('k.json', '{}', { ifNoneMatch: true }), 'PutObject', 'k.json', `s3:PutObject on ${arn('k.json')}${kmsWrite}`],
      ['PutObject', () => store.write('present.json', '{}', { ifMatch: version }), 'PutObject', 'present.json', `s3:PutObject on ${arn('present.json')}${kmsWrite}`],
      ['PutObject', () => store.upload('part.csv', bytesOf(Buffer.from('a,b\n'))), 'PutObject', 'part.csv', `s3:PutObject on ${arn('part.csv')}${kmsWrite}`],
      ['DeleteObject', () => store.delete('present.json'), 'DeleteObject', 'present.json', `s3:DeleteObject on ${arn('present.json')}`],
      ['DeleteObject', () => store.delete('present.json', { ifMatch: version }), 'DeleteObject', 'present.json', `s3:DeleteObject on ${arn('present.json')}`],
      ['DeleteObjects', () => store.deleteKeys(['gone/a', 'gone/b']), 'DeleteObjects', 'gone/a', `s3:DeleteObject on ${arn('gone/a')}`],
      ['CopyObject', () => store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=t/', ['part-00000.csv']), 'CopyObject', 'access_keys/snapshot_id=t/part-00000.csv',
        `s3:GetObject and s3:PutObject on arn:aws:s3:::${bucket}/${objectKey(store, '')}/*${kmsWrite}`],
    ];
    for (const [faultOp, call, op, key, needs] of cases) {
      s3.front.faults.push(denied(faultOp));
      await failsWith(call(), 'OUTPUT_DENIED', line(op, key, needs));
    }
    // The target is there already: its copy is checked (a HeadObject of the staged object and of the target), and that check is denied.
    s3.front.faults.push(denied('HeadObject'));
    await assert.rejects(store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', ['part-00000.csv']), (err: unknown) => {
      assert.ok(err instanceof ExportError, String(err));
      assert.equal(err.code, 'OUTPUT_DENIED');
      const key = ['_staging/s/publish-ab/part-00000.csv', 'access_keys/snapshot_id=s/part-00000.csv'].find((k) => err.message.startsWith(`HeadObject ${store.describe(k)}: `));
      assert.ok(key, err.message);
      assert.ok(err.message.endsWith(`; the identity needs s3:GetObject on ${arn(key)}${kmsRead}`), err.message);
      return true;
    });
    await store.write('gone/a', 'x');
    s3.front.faults.push(denied('ListObjectsV2'));
    await failsWith(store.deletePrefix('gone/'), 'OUTPUT_DENIED', line('ListObjectsV2', 'gone/', `s3:ListBucket on arn:aws:s3:::${bucket} for the prefix ${objectKey(store, 'gone/')}`));
    s3.front.faults.push(denied('DeleteObjects'));
    await failsWith(store.deletePrefix('gone'), 'OUTPUT_DENIED', line('DeleteObjects', 'gone', `s3:DeleteObject on ${arn('gone')}`));
    assert.equal((await store.read('present.json'))?.version, version, 'nothing a denied call touched changed');
  }
});

test('an answer counts by its HTTP status or by its S3 error code, either alone', { skip }, async () => {
  const store = fresh();
  await store.write('k', 'v1');
  const v1 = (await store.read('k'))!.version;
  // A missing key, by code only (status 400) and by status only (code unknown).
  for (const code of ['NoSuchKey', 'NotFound']) {
    s3.front.faults.push({ op: 'GetObject', kind: 'answer', status: 400, code });
    assert.equal(await store.read('k'), undefined, code);
  }
  s3.front.faults.push({ op: 'GetObject', kind: 'answer', status: 404, code: 'SomethingElse' });
  assert.equal(await store.read('k'), undefined);
  // A failed condition, by code only and by status only.
  s3.front.faults.push({ op: 'PutObject', kind: 'answer', status: 400, code: 'PreconditionFailed' });
  await assert.rejects(store.write('k', 'v2', { ifMatch: v1 }), isPreconditionFailed);
  s3.front.faults.push({ op: 'PutObject', kind: 'answer', status: 412, code: 'SomethingElse' });
  await assert.rejects(store.write('k', 'v2', { ifMatch: v1 }), isPreconditionFailed);
  // A conflicting conditional write in flight, by code only: retried, then it lands.
  s3.front.faults.push({ op: 'PutObject', kind: 'answer', status: 400, code: 'ConditionalRequestConflict' });
  const v2 = await store.write('k', 'v2', { ifMatch: v1 });
  assert.equal((await store.read('k'))?.version, v2);
  // If-Match on a key that is gone: 404 by code only.
  s3.front.faults.push({ op: 'PutObject', kind: 'answer', status: 400, code: 'NoSuchKey' });
  await assert.rejects(store.write('k', 'v3', { ifMatch: v2 }), isPreconditionFailed);
  assert.deepEqual(s3.front.faults, []);
});

test('a conflict (409) that persists through 5 tries counts as lost: no sixth try, PreconditionFailed', { skip }, async () => {
  const store = fresh();
  const conflict: FrontFault = { op: 'PutObject', kind: 'answer', status: 409, code: 'ConditionalRequestConflict' };
  s3.front.faults.push(conflict, conflict, conflict, conflict, conflict);
  const mark = s3.front.requests.length;
  await assert.rejects(store.write('k', 'x', { ifNoneMatch: true }), isPreconditionFailed);
  assert.equal(s3.front.requests.slice(mark).filter((r) => r.op === 'PutObject').length, 5);
  assert.deepEqual(s3.front.faults, []);
  assert.equal(await store.read('k'), undefined);
});

test('a conditional write whose first answer is 412 has lost, even when the object holds the same bytes', { skip }, async () => {
  const store = fresh();
  await store.write('lease.json', 'same bytes');
  await assert.rejects(store.write('lease.json', 'same bytes', { ifNoneMatch: true }), isPreconditionFailed);
  await assert.rejects(store.write('lease.json', 'same bytes', { ifMatch: '"0123456789abcdef0123456789abcdef"' }), isPreconditionFailed);
});

test('a missing bucket is never taken for a missing key, whatever the call', { skip }, async () => {
  const store = new S3Store({ client: s3.client, bucket: 'no-such-bucket-at-all', prefix: 'x' });
  const gone = (op: string, key: string) => `${op} s3://no-such-bucket-at-all/x/${key}: bucket no-such-bucket-at-all does not exist (NoSuchBucket); create it, or fix --out`;
  await failsWith(store.read('k'), 'OUTPUT_NOT_FOUND', gone('GetObject', 'k'));
  await failsWith(readAll(store, 'k'), 'OUTPUT_NOT_FOUND', gone('GetObject', 'k'));
  await failsWith(store.write('k', 'x', { ifMatch: '"0123456789abcdef0123456789abcdef"' }), 'OUTPUT_NOT_FOUND', gone('PutObject', 'k'));
  await failsWith(store.delete('k', { ifMatch: '"0123456789abcdef0123456789abcdef"' }), 'OUTPUT_NOT_FOUND', gone('DeleteObject', 'k'));
  await failsWith(store.exists('k'), 'OUTPUT_NOT_FOUND', gone('ListObjectsV2', 'k'));
});

test('a read denied (403) on a missing key reads as absent; on a present key, or when the listing is denied too, it is denied', { skip }, async () => {
  const store = fresh();
  await store.write('present.json', '{}');
  s3.front.faults.push(denied('GetObject'));
  assert.equal(await store.read('missing.json'), undefined, 'S3 answers 403 for a missing key to whom may not list');
  s3.front.faults.push(denied('GetObject'));
  await assert.rejects(store.read('present.json'), (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_DENIED' && err.message.startsWith('GetObject '));
  s3.front.faults.push(denied('GetObject'), denied('ListObjectsV2'));
  await assert.rejects(store.read('missing.json'), (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_DENIED' && err.message.startsWith('GetObject '));
  // Only a denial is checked that way: any other failure of a read is the failure, key or no key.
  s3.front.faults.push({ op: 'GetObject', kind: 'answer', status: 400, code: 'InvalidRequest' });
  await assert.rejects(store.read('missing.json'), (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_IO' && err.message.startsWith('GetObject '));
  assert.deepEqual(s3.front.faults, []);
  assert.equal(await store.read('missing.json'), undefined);
});

test('a resumed read fails when the object changed since its first piece, and gives up after 4 broken bodies', { skip }, async () => {
  const store = fresh();
  const big = Buffer.alloc(1 << 20, 7);
  await store.write('part.csv', big);
  // The connection breaks only once the first piece was read and the object rewritten (a break
  // before the SDK hands the body over is a retry of the whole GET, not a resumed read).
  let cut!: () => void;
  s3.front.faults.push({ op: 'GetObject', kind: 'cut-body', afterBytes: 64 << 10, when: new Promise<void>((resolve) => (cut = resolve)) });
  const reader = store.readStream('part.csv')[Symbol.asyncIterator]();
  const first = await reader.next();
  assert.ok(!first.done && first.value.length > 0);
  await store.write('part.csv', Buffer.alloc(1 << 20, 8)); // rewritten between the pieces
  cut();
  const rest = (async () => {
    for (let r = await reader.next(); !r.done; r = await reader.next());
  })();
  await failsWith(rest, 'OUTPUT_IO', `GetObject ${store.describe('part.csv')}: the object changed while it was being read`);

  // Three broken bodies: each resumed, the bytes whole. Four: the read fails, naming the call.
  const three = bodyBreaks(s3.front, objectKey(store, 'part.csv'), [100 << 10, 100 << 10, 100 << 10]);
  assert.ok((await readAll(store, 'part.csv', three.received)).equals(Buffer.alloc(1 << 20, 8)));
  const four = bodyBreaks(s3.front, objectKey(store, 'part.csv'), [100 << 10, 100 << 10, 100 << 10, 100 << 10]);
  await assert.rejects(readAll(store, 'part.csv', four.received), (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_IO' && err.message.startsWith(`GetObject ${store.describe('part.csv')}: `));
  assert.deepEqual(s3.front.faults, []);
  await assert.rejects(readAll(store, 'nope'), (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT' && (err as Error).message === `${store.describe('nope')} does not exist`);
});

test('DeleteObjects: per-key errors inside its 200 answer fail the call, naming the key; batches of the page size, quiet, none for no keys', { skip }, async () => {
  const store = fresh({ pageSize: 10 });
  const keys = Array.from({ length: 20 }, (_, i) => `runs/run-${String(i).padStart(2, '0')}`);
  await Promise.all(keys.map((k) => store.write(k, 'x')));
  const perKey = (code: string) =>
    `<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Error><Key>${objectKey(store, 'runs/run-03')}</Key><Code>${code}</Code><Message>the message of ${code}</Message></Error></DeleteResult>`;
  s3.front.faults.push({ op: 'DeleteObjects', kind: 'answer', status: 200, code: '', body: perKey('AccessDenied') });
  await assert.rejects(store.deleteKeys(keys), (err: unknown) => {
    assert.ok(err instanceof ExportError);
    assert.equal(err.code, 'OUTPUT_DENIED');
    assert.equal(err.message, `DeleteObjects ${store.describe('runs/run-03')}: access denied (AccessDenied); the identity needs s3:DeleteObject on arn:aws:s3:::${bucket}/${objectKey(store, 'runs/run-03')}`);
    assert.equal((err.cause as Error).message, 'the message of AccessDenied');
    return true;
  });
  s3.front.faults.push({ op: 'DeleteObjects', kind: 'answer', status: 200, code: '', body: perKey('InternalError') });
  await failsWith(store.deletePrefix('runs'), 'OUTPUT_IO', `DeleteObjects ${store.describe('runs/run-03')}: S3 answered InternalError after retries`);
  // An error entry that names neither key nor code: the call's own name for what it deleted, an unknown error.
  const bare = '<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Error></Error></DeleteResult>';
  s3.front.faults.push({ op: 'DeleteObjects', kind: 'answer', status: 200, code: '', body: bare });
  await assert.rejects(store.deletePrefix('runs'), (err: unknown) => {
    assert.ok(err instanceof ExportError);
    assert.equal(err.message, `DeleteObjects ${store.describe('runs')}: S3 answered UnknownError after retries`);
    assert.equal((err.cause as Error).message, 'DeleteObjects failed');
    return true;
  });
  s3.front.faults.push({ op: 'DeleteObjects', kind: 'answer', status: 200, code: '', body: bare });
  await failsWith(store.deleteKeys(keys), 'OUTPUT_IO', `DeleteObjects ${store.describe('runs/run-00')}: S3 answered UnknownError after retries`);
  s3.front.faults.push({ op: 'DeleteObjects', kind: 'answer', status: 500, code: 'InternalError' }, { op: 'DeleteObjects', kind: 'answer', status: 500, code: 'InternalError' }, { op: 'DeleteObjects', kind: 'answer', status: 500, code: 'InternalError' });
  await assert.rejects(store.deleteKeys(keys), (err: unknown) => err instanceof ExportError && err.message.startsWith(`DeleteObjects ${store.describe('runs/run-00')}: `));

  const mark = s3.front.requests.length;
  await store.deleteKeys([]);
  await store.deleteKeys(keys);
  const batches = s3.front.requests.slice(mark).filter((r) => r.op === 'DeleteObjects');
  assert.equal(batches.length, 2, 'two batches of 10, no empty one');
  for (const b of batches) {
    const body = b.body.toString();
    assert.equal(body.match(/<Key>/g)?.length, 10);
    assert.match(body, /<Quiet>true<\/Quiet>/);
  }
  assert.deepEqual(await store.list('runs'), []);
});

test('list takes a folder with or without its slash, never a sibling sharing its name; the root lists everything', { skip }, async () => {
  const store = fresh();
  for (const k of ['a/x', 'a/y', 'ab/z', 'top']) await store.write(k, '1');
  assert.deepEqual((await store.list('a')).sort(), ['a/x', 'a/y']);
  assert.deepEqual((await store.list('a/')).sort(), ['a/x', 'a/y']);
  assert.deepEqual((await store.list('')).sort(), ['a/x', 'a/y', 'ab/z', 'top']);
});

test('promote: nothing to publish is an internal error; a copy whose answer was lost is recognized as ours', { skip }, async () => {
  const store = fresh();
  await assert.rejects(store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', []), (err: unknown) => err instanceof ExportError && err.code === 'INTERNAL');
  await store.write('_staging/s/publish-ab/part-00000.csv', 'bytes');
  // The copy lands but its answer is lost; the SDK's retry meets the copy and gets 412, as
  // from S3 (moto ignores If-None-Match on CopyObject, so the front gives S3's answer).
  s3.front.faults.push({ op: 'CopyObject', kind: 'drop-response' }, { op: 'CopyObject', kind: 'answer', status: 412, code: 'PreconditionFailed' });
  const mark = s3.front.requests.length;
  await store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=s/', ['part-00000.csv']);
  const copies = s3.front.requests.slice(mark).filter((r) => r.op === 'CopyObject');
  assert.deepEqual(copies.map((c) => c.status), [200, 412], 'the retry met the copy that landed');
  assert.ok(copies.every((c) => c.headers['if-none-match'] === '*'));
  assert.equal((await store.read('access_keys/snapshot_id=s/part-00000.csv'))?.body.toString(), 'bytes');
  // Another conditional write of the target in flight (409): the copy is sent again until S3 decides.
  const conflict: FrontFault = { op: 'CopyObject', kind: 'answer', status: 409, code: 'ConditionalRequestConflict' };
  s3.front.faults.push(conflict, conflict);
  const mark2 = s3.front.requests.length;
  await store.promote('_staging/s/publish-ab/', 'access_keys/snapshot_id=t/', ['part-00000.csv']);
  assert.deepEqual(s3.front.requests.slice(mark2).filter((r) => r.op === 'CopyObject').map((c) => c.status), [409, 409, 200]);
  assert.equal((await store.read('access_keys/snapshot_id=t/part-00000.csv'))?.body.toString(), 'bytes');
});

test('promote never publishes over an object that is not this staged object\'s copy, also one that appears after its listing', { skip }, async () => {
  {
    const store = fresh();
    const refused = (target: string, source: string) =>
      `${store.describe(target)} already exists and is not a copy of ${store.describe(source)}; refusing to publish over it`;
    const stage = '_staging/s/publish-ab/';
    const to = (i: number) => `access_keys/snapshot_id=s${i}/`;
    await store.write(`${stage}part.csv`, 'staged bytes');
    const id = (await s3.client.send(new HeadObjectCommand({ Bucket: bucket, Key: objectKey(store, `${stage}part.csv`) }))).Metadata?.['ike-object-id'];
    assert.ok(id);
    const put = (key: string, body: string, metadata?: Record<string, string>) =>
      s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: objectKey(store, key), Body: body, ...(metadata ? { Metadata: metadata } : {}) }));

    // 1. Appears between the listing and the copy: the listing says nothing is there.
    await put(`${to(1)}part.csv`, 'a stranger');
    const empty = `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${bucket}</Name><Prefix>${objectKey(store, to(1))}</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>`;
    s3.front.faults.push(
      { op: 'ListObjectsV2', kind: 'answer', status: 200, code: '', body: empty },
      // S3's answer to the copy's If-None-Match (moto ignores it on CopyObject).
      { op: 'CopyObject', kind: 'answer', status: 412, code: 'PreconditionFailed' },
    );
    await failsWith(store.promote(stage, to(1), ['part.csv']), 'SNAPSHOT_PUBLISHED', refused(`${to(1)}part.csv`, `${stage}part.csv`));
    // 2. Same object id, other bytes. 3. Neither carries an object id, same length.
    await put(`${to(2)}part.csv`, 'other bytes, same id', { 'ike-object-id': id });
    await put(`${stage}foreign.csv`, 'twelve bytes');
    await put(`${to(3)}foreign.csv`, 'twelve bytez');
    // 4. The staged object is gone, the target is there. 5. Same length, no object id.
    await put(`${to(4)}missing.csv`, 'x');
    await put(`${to(5)}part.csv`, 'staged bytez');
    for (const [i, file] of [[2, 'part.csv'], [3, 'foreign.csv'], [4, 'missing.csv'], [5, 'part.csv']] as const) {
      await assert.rejects(store.promote(stage, to(i), [file]), (err: unknown) => {
        assert.ok(err instanceof ExportError, String(err));
        assert.equal(err.code, 'SNAPSHOT_PUBLISHED');
        assert.equal(err.message, refused(`${to(i)}${file}`, `${stage}${file}`));
        assert.equal(err.context.file, store.describe(`${to(i)}${file}`));
        return true;
      });
    }
    assert.equal((await store.read(`${to(1)}part.csv`))?.body.toString(), 'a stranger', 'untouched');
    assert.equal((await store.read(`${to(2)}part.csv`))?.body.toString(), 'other bytes, same id', 'untouched');
  }
});

test('prefixes are normalized (slashes at either end dropped); close() destroys only a client the store owns', () => {
  const client = testS3Client('http://127.0.0.1:9');
  let destroyed = 0;
  client.destroy = () => void destroyed++;
  const deep = new S3Store({ client, bucket: 'b', prefix: '//deep/er//' });
  assert.equal(deep.root, 's3://b/deep/er');
  assert.equal(deep.describe('k'), 's3://b/deep/er/k');
  assert.equal(deep.describe(''), 's3://b/deep/er');
  assert.equal(new S3Store({ client, bucket: 'b', prefix: '' }).describe('k'), 's3://b/k');
  assert.equal(new S3Store({ client, bucket: 'b', prefix: 'p', root: 's3://b/p/' }).root, 's3://b/p/');
  deep.close();
  assert.equal(destroyed, 0);
  new S3Store({ client, bucket: 'b', prefix: 'p', ownsClient: true }).close();
  assert.equal(destroyed, 1);
});

test('SSE-S3 never sends a KMS key id, even one given', { skip }, async () => {
  const store = fresh({ sse: { mode: 'AES256', kmsKeyId: 'alias/ignored' } });
  const mark = s3.front.requests.length;
  await store.write('k', 'x');
  const put = s3.front.requests.slice(mark).find((r) => r.op === 'PutObject')!;
  assert.equal(put.headers['x-amz-server-side-encryption'], 'AES256');
  assert.equal(put.headers['x-amz-server-side-encryption-aws-kms-key-id'], undefined);
});

test('the store client holds more bodies open at once than the merge reads (FAN_IN): none waits for a socket', { skip, timeout: 120_000 }, async () => {
  // The client takes its credentials from the SDK's chain, as the command's does.
  const saved = { AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY };
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'AKIDTESTTESTTESTTEST', AWS_SECRET_ACCESS_KEY: 'test-secret-not-real' });
  const client = await createS3Client({ region: 'us-east-1', profile: undefined, endpointUrl: s3.front.url, forcePathStyle: false, maxAttempts: 3 }, {});
  try {
    const store = new S3Store({ client, bucket, prefix: `f${++prefixes}/root` });
    const keys = Array.from({ length: FAN_IN + 1 }, (_, i) => `runs/run-${String(i).padStart(3, '0')}`);
    // Bodies larger than a stream buffers: a socket is held until its body is read to the end.
    const body = (i: number) => Buffer.alloc(256 << 10, i);
    await Promise.all(keys.map((k, i) => store.write(k, body(i))));
    // As the merge does: every body opened and its first piece taken before any is read to its end.
    const readers = keys.map((k) => store.readStream(k)[Symbol.asyncIterator]());
    const firsts = await Promise.all(readers.map((r) => r.next()));
    assert.ok(firsts.every((f, i) => !f.done && f.value[0] === i % 256));
    for (const [i, r] of readers.entries()) {
      let bytes = (firsts[i]!.value as Buffer).length;
      for (let n = await r.next(); !n.done; n = await r.next()) bytes += n.value.length;
      assert.equal(bytes, 256 << 10);
    }
  } finally {
    client.destroy();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});

test('a read abandoned after its first piece frees its connection: more of them than the client has sockets, then a whole read', { skip, timeout: 120_000 }, async () => {
  const store = fresh();
  await store.write('part.csv', Buffer.alloc(256 << 10, 1));
  // The test client has the SDK's default agent (50 sockets); each abandoned body would hold one.
  for (let i = 0; i < 60; i++) {
    for await (const chunk of store.readStream('part.csv')) {
      assert.ok(chunk.length > 0);
      break;
    }
  }
  assert.equal((await readAll(store, 'part.csv')).length, 256 << 10);
});
