import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PartInfo } from '../pipeline/checkpoint.ts';
import { ExportError } from '../pipeline/errors.ts';
import { csvRowOf, encodeRow, FAN_IN, mergeRows, mergeRuns, readRun, writeRun, type Observation } from '../pipeline/runs.ts';
import { compareRecords, type AccessKeyRecord } from '../pipeline/schema.ts';
import { encodeCsv } from '../pipeline/sinks/csv.ts';
import { encodeStagedFile } from '../pipeline/sinks/index.ts';
import { LocalStore } from '../pipeline/store/local.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { withTemp } from './support/scope.ts';

const TIME = new Date('2026-11-28T11:10:00.000Z');

function rec(user: string, key: string, userId = `AIDA${user.toUpperCase()}`, status = 'Active'): AccessKeyRecord {
  return {
    snapshot_time: TIME,
    account_id: '123456789012',
    user_name: user,
    user_id: userId,
    access_key_id: key,
    status,
    create_date: new Date('2020-01-01T00:00:00.000Z'),
    key_age_days: 2523,
    last_used_date: null,
    last_used_service: null,
    last_used_region: null,
    user_arn: `arn:aws:iam::123456789012:user/${user}`,
    user_path: '/',
    user_create_date: new Date('2019-01-01T00:00:00.000Z'),
    days_since_last_used: null,
  };
}

/** A store that counts how many objects are being read at once. */
class CountingStore extends LocalStore {
  open = 0;
  peak = 0;
  override async *readStream(key: string): AsyncIterable<Buffer> {
    this.open++;
    this.peak = Math.max(this.peak, this.open);
    try {
      yield* super.readStream(key);
    } finally {
      this.open--;
    }
  }
}

test(`merging 2,000 parts never holds more than ${FAN_IN} open, and yields every row once in published order`, async () => {
  await withTemp(async (dir) => {
    const store = new CountingStore(dir);
    const random = mulberry32(5);
    const parts: PartInfo[] = [];
    let seq = 0;
    const all: string[] = [];
    for (let p = 0; p < 2000; p++) {
      const obs: Observation[] = [];
      for (let i = 0; i < 3; i++) {
        const user = `u${String(Math.floor(random() * 500)).padStart(3, '0')}`;
        const key = `AKIA${String(p * 3 + i).padStart(16, '0')}`;
        all.push(`${user}/${key}`);
        obs.push({ record: rec(user, key), seq: seq++ });
      }
      parts.push(await writeRun(store, `runs/run-0a1b2c3d-${String(p + 1).padStart(6, '0')}.ndjson`, obs, 'parquet'));
    }
    const stats = { duplicates: 0 };
    const out: string[] = [];
    for await (const r of mergeRuns(store, parts.map((part) => ({ dir: 'runs/', part })), { dirty: new Set(), scratch: 'merge/' }, stats)) out.push(`${r.user_name}/${r.access_key_id}`);
    assert.ok(store.peak <= FAN_IN, `${store.peak} open at once`);
    assert.deepEqual(out, [...all].sort());
    assert.equal(stats.duplicates, 0);
  });
});

test('one row per access key: a dirty user seen under two names keeps only its latest observation, wherever it sorts', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    // alice was renamed to zed while in progress: her keys were read again under the new name.
    const first = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', [
      { record: rec('alice', 'AKIA1', 'AIDAX'), seq: 0 },
      { record: rec('alice', 'AKIA2', 'AIDAX'), seq: 1 },
      { record: rec('bob', 'AKIA3'), seq: 2 },
    ], 'parquet');
    const second = await writeRun(store, 'runs/run-0a1b2c3d-000002.ndjson', [
      { record: rec('zed', 'AKIA1', 'AIDAX', 'Inactive'), seq: 3 },
      { record: rec('zed', 'AKIA2', 'AIDAX'), seq: 4 },
      { record: rec('carol', 'AKIA4'), seq: 5 },
    ], 'parquet');
    const stats = { duplicates: 0 };
    const rows: AccessKeyRecord[] = [];
    for await (const r of mergeRuns(store, [first, second].map((part) => ({ dir: 'runs/', part })), { dirty: new Set(['AIDAX']), scratch: 'm/' }, stats)) rows.push(r);
    assert.deepEqual(rows.map((r) => `${r.user_name}/${r.access_key_id}/${r.status}`), ['bob/AKIA3/Active', 'carol/AKIA4/Active', 'zed/AKIA1/Inactive', 'zed/AKIA2/Active']);
    assert.equal(stats.duplicates, 2);
  });
});

test('rows equal in sort key keep the later observation, also for users not known to be dirty', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const a = await writeRun(store, 'r/run-0a1b2c3d-000001.ndjson', [{ record: rec('bob', 'AKIA3', undefined, 'Active'), seq: 7 }], 'parquet');
    const b = await writeRun(store, 'r/run-0a1b2c3d-000002.ndjson', [{ record: rec('bob', 'AKIA3', undefined, 'Inactive'), seq: 9 }], 'parquet');
    const stats = { duplicates: 0 };
    const rows: AccessKeyRecord[] = [];
    for await (const r of mergeRuns(store, [b, a].map((part) => ({ dir: 'r/', part })), { dirty: new Set(), scratch: 'm/' }, stats)) rows.push(r);
    assert.deepEqual(rows.map((r) => r.status), ['Inactive']);
    assert.equal(stats.duplicates, 1);
  });
});

test('a staged part changed on disk with the same length fails the merge with CHECKPOINT_CORRUPT', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const part = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', [{ record: rec('bob', 'AKIA3'), seq: 0 }], 'parquet');
    const path = join(dir, 'runs', part.file);
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.replace('Active', 'Activf'));
    await assert.rejects(async () => {
      for await (const _ of readRun(store, 'runs/', part)) void _;
    }, (err: unknown) => err instanceof ExportError && err.code === 'CHECKPOINT_CORRUPT' && /sha256/.test(err.message));
  });
});

/** The bytes of an encoded file. */
async function bytesOf(chunks: AsyncIterable<Buffer>): Promise<string> {
  const out: Buffer[] = [];
  for await (const c of chunks) out.push(c);
  return Buffer.concat(out).toString('utf8');
}

async function* from<T>(items: Iterable<T>): AsyncGenerator<T> {
  yield* items;
}

/** Records whose CSV needs quoting: a comma in a name, a quote, an empty string, a line break, a last use. */
function awkward(): AccessKeyRecord[] {
  return [
    rec('a,b', 'AKIA1'),
    { ...rec('quote"d', 'AKIA2'), last_used_date: new Date('2026-11-01T10:00:00.000Z'), last_used_service: 's3', last_used_region: '', days_since_last_used: 27 },
    { ...rec('bob', 'AKIA3'), last_used_service: 'line\nbreak', last_used_region: 'cr\ronly' },
    rec('carol', 'AKIA4'),
  ];
}

test('CSV parts hold final rows: merged and copied after the header, they are byte for byte what csv-stringify writes for the records', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const records = awkward();
    const first = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', [{ record: records[2]!, seq: 0 }, { record: records[0]!, seq: 1 }], 'csv');
    const second = await writeRun(store, 'runs/run-0a1b2c3d-000002.ndjson', [{ record: records[3]!, seq: 2 }, { record: records[1]!, seq: 3 }], 'csv');
    // A staged line stays one line, whatever the row holds.
    const staged = (await readFile(join(dir, 'runs', first.file), 'utf8')).split('\n').filter((l) => l !== '');
    assert.equal(staged.length, 2);
    const stats = { duplicates: 0 };
    const encoded = encodeStagedFile('csv', mergeRows(store, [second, first].map((part) => ({ dir: 'runs/', part })), { dirty: new Set(), scratch: 'm/' }, stats));
    const published = await bytesOf(encoded.chunks);
    const expected = await bytesOf(encodeCsv(from([...records].sort(compareRecords))));
    assert.equal(published, expected);
    assert.equal(encoded.rows(), 4);
    assert.equal(encoded.dated(), 1);
  });
});

test('CSV parts keep one row per access key: a dirty user seen under two names keeps only its latest observation', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const first = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', [
      { record: rec('alice', 'AKIA1', 'AIDAX'), seq: 0 },
      { record: rec('bob', 'AKIA3'), seq: 1 },
    ], 'csv');
    const second = await writeRun(store, 'runs/run-0a1b2c3d-000002.ndjson', [
      { record: rec('zed', 'AKIA1', 'AIDAX', 'Inactive'), seq: 2 },
      { record: rec('bob', 'AKIA3', undefined, 'Expired'), seq: 3 },
    ], 'csv');
    const stats = { duplicates: 0 };
    const rows: string[] = [];
    for await (const batch of mergeRows(store, [first, second].map((part) => ({ dir: 'runs/', part })), { dirty: new Set(['AIDAX']), scratch: 'm/' }, stats)) for (const row of batch) rows.push(csvRowOf(row).text);
    assert.deepEqual(rows.map((r) => r.split(',').slice(2, 6).join(',')), ['bob,AIDABOB,AKIA3,Expired', 'zed,AIDAX,AKIA1,Inactive']);
    assert.equal(stats.duplicates, 2);
  });
});

test('a CSV part staged as cells by an earlier version is published with the same text', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const records = awkward().sort(compareRecords);
    const old = records.map((record, seq) => encodeRow({ record, seq }) + '\n').join('');
    await writeFile(join(dir, 'old.ndjson'), old);
    const part = { file: 'old.ndjson', rows: records.length, sha256: createHash('sha256').update(old).digest('hex') };
    const encoded = encodeStagedFile('csv', mergeRows(store, [{ dir: '', part }], { dirty: new Set(), scratch: 'm/' }, { duplicates: 0 }));
    assert.equal(await bytesOf(encoded.chunks), await bytesOf(encodeCsv(from(records))));
    assert.equal(encoded.dated(), 1);
  });
});

test('a record that does not fit its column fails the CSV commit with INTERNAL, before anything is staged', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const bad = { ...rec('bob', 'AKIA3'), key_age_days: 3.5 };
    await assert.rejects(writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', [{ record: bad, seq: 0 }], 'csv'), (err: unknown) => err instanceof ExportError && err.code === 'INTERNAL');
    assert.deepEqual(await store.list('runs/'), []);
  });
});
