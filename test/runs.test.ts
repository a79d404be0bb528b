import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { PART_NAME, type PartInfo } from '../pipeline/checkpoint.ts';
import { ExportError } from '../pipeline/errors.ts';
import { compareRows, csvRowOf, decodeRow, encodeRow, FAN_IN, MAX_SPARE_CHUNKS, MERGE_BATCH, mergeChunkBytes, mergeRows, mergeRuns, parseRow, readRun, readRunBatches, removeOrphans, runFileName, StagedLines, writeRun, type Observation, type StagedRow } from '../pipeline/runs.ts';
import { csvRows, encodeCsv } from '../pipeline/sinks/csv.ts';
import { encodeStagedFile } from '../pipeline/sinks/index.ts';
import { COLUMNS, compareRecords, type AccessKeyRecord } from '../pipeline/schema.ts';
import { LocalStore } from '../pipeline/store/local.ts';
import type { ReadOptions } from '../pipeline/store/store.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { withFaultHook } from './support/fault-points.ts';
import { MemoryStore } from './support/memory-store.ts';
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

/** A store (in memory: thousands of parts in a second) that counts how many objects are being read at once, and the bytes of chunk they are read in. */
class CountingStore extends MemoryStore {
  open = 0;
  peak = 0;
  /** The most bytes of chunk asked of all the reads open at once. */
  peakChunkBytes = 0;
  #chunks = 0;
  override async *readStream(key: string, options?: ReadOptions): AsyncIterable<Buffer> {
    this.open++;
    this.peak = Math.max(this.peak, this.open);
    const chunk = options?.chunkBytes ?? 256 * 1024;
    this.#chunks += chunk;
    this.peakChunkBytes = Math.max(this.peakChunkBytes, this.#chunks);
    try {
      yield* super.readStream(key);
    } finally {
      this.open--;
      this.#chunks -= chunk;
    }
  }
}

for (const format of ['csv', 'parquet'] as const) {
  test(`${format}: staged lines in chunks of 1 KiB (rows across chunks, chunks shared with rows left, given back and filled again) come back from each part sorted, whole, with their seq`, async () => {
    const store = new MemoryStore();
    const random = mulberry32(format === 'csv' ? 11 : 12);
    const staged = new StagedLines(format, 1024);
    const waiting: Observation[] = []; // what staged holds, in arrival order
    let seq = 0;
    let parts = 0;
    for (let round = 0; round < 40; round++) {
      // A batch of 0-30 records (a user name with a comma and a quote now and then: CSV quoting).
      const batch: AccessKeyRecord[] = [];
      for (let i = Math.floor(random() * 31); i > 0; i--) {
        const user = `u${String(Math.floor(random() * 50)).padStart(2, '0')}${random() < 0.1 ? ',"q"' : ''}`;
        const r = rec(user, `AKIA${String(Math.floor(random() * 1e6)).padStart(16, '0')}`, undefined, random() < 0.5 ? 'Active' : 'Inactive');
        // Two accounts (an organization's), so a row's account is its own.
        batch.push(random() < 0.5 ? r : { ...r, account_id: '210987654321', user_arn: r.user_arn.replace('123456789012', '210987654321') });
      }
      const base = seq;
      staged.add(batch, (j) => base + j, base, batch.map((_, j) => `note-${base + j}`));
      for (const record of batch) waiting.push({ record, seq: seq++ });
      assert.equal(staged.size, waiting.length);
      // Commit a prefix of what waits, some of it or all.
      const n = random() < 0.3 ? waiting.length : Math.floor(random() * (waiting.length + 1));
      const part = staged.take(n);
      const taken = waiting.splice(0, n);
      assert.equal(part.rows, n);
      assert.deepEqual(Array.from({ length: n }, (_, i) => [part.account(i), part.keyId(i), part.note(i)]), taken.map((o) => [o.record.account_id, o.record.access_key_id, `note-${o.seq}`]));
      if (n === 0) continue;
      const info = await part.write(store, `runs/${runFileName('0a1b2c3d', ++parts)}`);
      assert.equal(info.rows, n);
      const rows: StagedRow[] = [];
      for await (const row of readRun(store, 'runs/', info)) rows.push(row);
      const expected = [...taken].sort((a, b) => compareRows({ account: a.record.account_id, userName: a.record.user_name, keyId: a.record.access_key_id, seq: a.seq }, { account: b.record.account_id, userName: b.record.user_name, keyId: b.record.access_key_id, seq: b.seq }));
      assert.deepEqual(rows.map((r) => [r.userName, r.keyId, r.seq, r.userId]), expected.map((o) => [o.record.user_name, o.record.access_key_id, o.seq, o.record.user_id]));
      for (let i = 0; i < rows.length; i++) {
        if (format === 'csv') assert.deepEqual(csvRowOf(rows[i]!), { text: csvRows([expected[i]!.record])[0], dated: false });
        else assert.deepEqual(decodeRow(rows[i]!), expected[i]!.record);
      }
    }
    assert.ok(parts >= 20, `${parts} parts`);
  });
}

test('staged lines fill the chunks of written parts again (at most MAX_SPARE_CHUNKS kept), one chunk holding many lines', async () => {
  const store = new MemoryStore();
  const staged = new StagedLines('csv', 2048);
  const batch = Array.from({ length: 12 }, (_, i) => rec(`user${i}`, `AKIA${String(i).padStart(16, '0')}`));
  staged.add(batch, (j) => j);
  const chunks = staged.allocated;
  assert.ok(chunks >= 3 && chunks <= 6, `${chunks} chunks for 12 lines`);
  await staged.take(12).write(store, `runs/${runFileName('0a1b2c3d', 1)}`);
  staged.add(batch, (j) => 12 + j);
  // All of them came back as spares and were filled again: none is new.
  assert.equal(staged.allocated, chunks);
  // A part not yet written keeps its chunks: all new ones.
  const pending = staged.take(12);
  staged.add(batch, (j) => 24 + j);
  assert.equal(staged.allocated, 2 * chunks);
  await pending.write(store, `runs/${runFileName('0a1b2c3d', 2)}`);
  // A part of more chunks than that gives back MAX_SPARE_CHUNKS of them; the rest are freed.
  const wide = new StagedLines('csv', 2048);
  const many = Array.from({ length: 12 * MAX_SPARE_CHUNKS }, (_, i) => rec(`user${i}`, `AKIA${String(i).padStart(16, '0')}`));
  wide.add(many, (j) => j);
  const taken = wide.allocated;
  assert.ok(taken > MAX_SPARE_CHUNKS + 2, `${taken} chunks for ${many.length} lines`);
  await wide.take(many.length).write(store, `runs/${runFileName('0a1b2c3d', 5)}`);
  wide.add(many, (j) => many.length + j);
  assert.equal(wide.allocated, 2 * taken - MAX_SPARE_CHUNKS);
  // A line longer than a spare gets a chunk of its own size, not the spare (3-byte characters: longer than the spare in bytes).
  const long = new StagedLines('parquet', 64);
  long.add([rec('amy', 'AKIA1')], () => 0);
  await long.take(1).write(store, `runs/${runFileName('0a1b2c3d', 3)}`);
  const user = `u${'€'.repeat(200)}`;
  long.add([rec(user, 'AKIA2')], () => 1);
  const info = await long.take(1).write(store, `runs/${runFileName('0a1b2c3d', 4)}`);
  const rows: StagedRow[] = [];
  for await (const row of readRun(store, 'runs/', info)) rows.push(row);
  assert.deepEqual(decodeRow(rows[0]!), rec(user, 'AKIA2'));
});

test('a part orders two observations of one key by seq, whatever order they were staged in', async () => {
  const store = new MemoryStore();
  const info = await writeRun(store, `runs/${runFileName('0a1b2c3d', 1)}`, [
    { record: rec('bob', 'AKIA3', undefined, 'Inactive'), seq: 9 },
    { record: rec('amy', 'AKIA1'), seq: 8 },
    { record: rec('bob', 'AKIA3'), seq: 4 },
  ], 'parquet');
  const rows: StagedRow[] = [];
  for await (const row of readRun(store, 'runs/', info)) rows.push(row);
  assert.deepEqual(rows.map((r) => [r.keyId, r.seq]), [['AKIA1', 8], ['AKIA3', 4], ['AKIA3', 9]]);
});

test(`merging more than twice ${FAN_IN} parts never holds more than ${FAN_IN} open, and yields every row once in published order`, async () => {
  const store = new CountingStore();
  const random = mulberry32(5);
  const parts: PartInfo[] = [];
  let seq = 0;
  const all: string[] = [];
  for (let p = 0; p < 2 * FAN_IN + 3; p++) {
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
  assert.ok(store.peak > FAN_IN / 2, `${store.peak} open at once: the merge uses its fan-in`);
  // A local run holds the chunk being read and one read ahead: 64 runs at 256 KiB held 32 MiB.
  assert.ok(store.peakChunkBytes <= FAN_IN * 64 * 1024, `${store.peakChunkBytes} bytes of chunk asked of the runs open at once`);
  assert.deepEqual(out, [...all].sort());
  assert.equal(stats.duplicates, 0);
});

test('a merge reads its runs in chunks that shrink as more are open: 256 KiB for a few, 64 KiB at the least', () => {
  assert.equal(mergeChunkBytes(1), 256 * 1024);
  assert.equal(mergeChunkBytes(4), 256 * 1024);
  assert.equal(mergeChunkBytes(13), 78 * 1024);
  assert.equal(mergeChunkBytes(FAN_IN), 64 * 1024);
  for (let open = 1; open <= FAN_IN; open++) assert.ok(open * mergeChunkBytes(open) <= 1024 * 1024 || mergeChunkBytes(open) === 64 * 1024);
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

test('a record survives staging unchanged: every column, dates and nulls included', async () => {
  const store = new MemoryStore();
  const used = { ...rec('alice', 'AKIA1'), last_used_date: new Date('2026-11-01T08:09:10.011Z'), last_used_service: 's3', last_used_region: 'eu-west-1' };
  const never = rec('bob', 'AKIA2');
  const part = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', [
    { record: never, seq: 1 },
    { record: used, seq: 0 },
  ], 'parquet');
  const back: AccessKeyRecord[] = [];
  for await (const row of readRun(store, 'runs/', part)) back.push(decodeRow(row));
  assert.deepEqual(back, [used, never], 'sorted, and equal to what went in');
  assert.ok(back[0]!.create_date instanceof Date && back[0]!.last_used_date instanceof Date);
});

test('a staged line carries its sort key and observation in front; anything else is not a staged line', () => {
  const row = parseRow(encodeRow({ record: rec('alice', 'AKIA1', 'AIDAX'), seq: 42 }))!;
  assert.deepEqual({ ...row, line: undefined, payloadAt: undefined }, { account: '123456789012', userName: 'alice', keyId: 'AKIA1', seq: 42, userId: 'AIDAX', line: undefined, payloadAt: undefined });
  assert.equal(row.line.slice(row.payloadAt, row.payloadAt + 1), '[', 'the payload (cells) starts after the sort key');
  for (const bad of ['', '1\tb\tc', 'a\tb\tc\td', 'a\tb\tc\t1\tu', 'a\tb\tc\tx\tu\t[]', 'a\tb\tc\t1.5\tu\t[]']) assert.equal(parseRow(bad), undefined, JSON.stringify(bad));
  assert.deepEqual(parseRow('a\tb\tc\t7\tu\t[]'), { account: 'a', userName: 'b', keyId: 'c', seq: 7, userId: 'u', line: 'a\tb\tc\t7\tu\t[]', payloadAt: 10 });
});

test('rows order by account, user name, key id, then observation', () => {
  const row = (account: string, user: string, key: string, seq: number) => parseRow(`${account}\t${user}\t${key}\t${seq}\tu\t[]`)!;
  const sorted = [row('1', 'a', 'K1', 5), row('1', 'a', 'K1', 6), row('1', 'a', 'K2', 0), row('1', 'b', 'K0', 0), row('2', 'a', 'K0', 0)];
  for (let i = 0; i < sorted.length; i++) {
    for (let j = 0; j < sorted.length; j++) assert.equal(Math.sign(compareRows(sorted[i]!, sorted[j]!)), Math.sign(i - j), `${i} vs ${j}`);
  }
});

test('the part names a writer gives are part names a checkpoint accepts, in write order', () => {
  assert.equal(runFileName('0a1b2c3d', 7), 'run-0a1b2c3d-000007.ndjson');
  assert.match(runFileName('0a1b2c3d', 123456), PART_NAME);
  assert.ok(runFileName('0a1b2c3d', 9) < runFileName('0a1b2c3d', 10));
});

test('a part larger than one write is staged whole: its rows and sha256 are what the store holds', async () => {
  const store = new MemoryStore();
  const obs: Observation[] = Array.from({ length: 1500 }, (_, i) => ({ record: rec(`user${String(i).padStart(5, '0')}`, `AKIA${i}`), seq: i }));
  const part = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', obs, 'parquet');
  const body = store.objects.get('runs/run-0a1b2c3d-000001.ndjson')!.body;
  assert.ok(body.length > 256 * 1024 + 1000, 'more than one chunk of 256 KiB');
  assert.equal(part.file, 'run-0a1b2c3d-000001.ndjson');
  assert.equal(part.rows, 1500);
  assert.equal(part.sha256, createHash('sha256').update(body).digest('hex'));
  assert.equal(body.toString('utf8').split('\n').length, 1501, 'one line per row, each ending in a newline');
  let n = 0;
  for await (const _ of readRun(store, 'runs/', part)) n++;
  assert.equal(n, 1500);
});

test('an empty part is an empty file that reads back as no rows', async () => {
  const store = new MemoryStore();
  const part = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', [], 'parquet');
  assert.equal(store.text('runs/run-0a1b2c3d-000001.ndjson'), '');
  assert.equal(part.rows, 0);
  const rows = [];
  for await (const r of readRun(store, 'runs/', part)) rows.push(r);
  assert.deepEqual(rows, []);
});

/** Reads a whole run; the error it fails with, if any. */
async function readAll(store: MemoryStore, part: PartInfo): Promise<unknown> {
  try {
    for await (const _ of readRun(store, 'runs/', part)) void _;
    return undefined;
  } catch (err) {
    return err;
  }
}

test('a staged part that is missing, cut short, garbled, or holds other rows than its checkpoint entry is CHECKPOINT_CORRUPT naming it and --fresh', async () => {
  const store = new MemoryStore();
  const key = 'runs/run-0a1b2c3d-000001.ndjson';
  const part = await writeRun(store, key, [
    { record: rec('alice', 'AKIA1'), seq: 0 },
    { record: rec('bob', 'AKIA2'), seq: 1 },
  ], 'parquet');
  const good = store.text(key)!;
  const cases: [string, string | undefined, PartInfo, RegExp][] = [
    ['missing', undefined, part, /is missing/],
    ['cut inside a line', good.slice(0, -5), part, /ends in the middle of a line/],
    ['garbled line', 'not a staged line\n', part, /is not valid/],
    ['empty first line', '\n' + good, part, /is not valid/],
    ['one row less', good.slice(0, good.indexOf('\n') + 1), part, /does not match its checkpoint entry/],
    ['same bytes, other row count', good, { ...part, rows: 3 }, /does not match its checkpoint entry/],
  ];
  for (const [what, body, entry, why] of cases) {
    if (body === undefined) store.objects.delete(key);
    else await store.write(key, body);
    const err = await readAll(store, entry);
    assert.ok(err instanceof ExportError && err.code === 'CHECKPOINT_CORRUPT', `${what}: ${String(err)}`);
    assert.match(err.message, why, what);
    assert.ok(err.message.includes('mem://root/runs/run-0a1b2c3d-000001.ndjson') && err.message.includes('--fresh'), `${what}: ${err.message}`);
    assert.equal(err.context.file, 'mem://root/runs/run-0a1b2c3d-000001.ndjson');
  }
  await store.write(key, good);
  assert.equal(await readAll(store, part), undefined, 'restored: it reads');
});

test('a part missing from S3 (NoSuchKey) is CHECKPOINT_CORRUPT too; any other read failure passes as it is', async () => {
  const store = new MemoryStore();
  const part = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', [{ record: rec('a', 'K'), seq: 0 }], 'parquet');
  const s3Missing = Object.assign(new Error('The specified key does not exist.'), { name: 'NoSuchKey' });
  store.hook = (op) => {
    if (op === 'readStream') throw s3Missing;
  };
  const err = await readAll(store, part);
  assert.ok(err instanceof ExportError && err.code === 'CHECKPOINT_CORRUPT' && /is missing/.test(err.message), String(err));
  const io = Object.assign(new Error('EIO'), { code: 'EIO' });
  store.hook = (op) => {
    if (op === 'readStream') throw io;
  };
  assert.equal(await readAll(store, part), io);
});

test('orphans are the staged files no committed part names; named parts stay', async () => {
  const store = new MemoryStore();
  for (const k of ['runs/run-0a1b2c3d-000001.ndjson', 'runs/run-0a1b2c3d-000002.ndjson', 'runs/.tmp', 'other/run-0a1b2c3d-000002.ndjson', 'runs2/run-0a1b2c3d-000003.ndjson']) await store.write(k, 'x');
  const named = [{ file: 'run-0a1b2c3d-000001.ndjson', rows: 1, sha256: '' }];
  assert.deepEqual((await removeOrphans(store, 'runs', named)).sort(), ['runs/.tmp', 'runs/run-0a1b2c3d-000002.ndjson'], 'a folder given without its slash, not a folder whose name it begins');
  assert.deepEqual(store.keys(), ['other/run-0a1b2c3d-000002.ndjson', 'runs/run-0a1b2c3d-000001.ndjson', 'runs2/run-0a1b2c3d-000003.ndjson']);
  assert.deepEqual(await removeOrphans(store, 'runs/', named), []);
  await store.write('runs/run-0a1b2c3d-000004.ndjson', 'x');
  assert.deepEqual(await removeOrphans(store, 'runs/', named), ['runs/run-0a1b2c3d-000004.ndjson'], 'a folder given with its slash');
});

/**
 * The merge as a model: seeded rounds of keys observed by a snapshot, some observed
 * again later (a listing restarted: the user is dirty; or the same key re-read under
 * the same name), some users renamed between observations, the observations cut into
 * parts at random and merged with a random small fan-in (several rounds of
 * intermediate runs). The result must equal the reference: one row per access key
 * id for dirty users (the latest observation, wherever its name sorts), one row per
 * (account, user, key) otherwise (the latest), sorted, with every dropped row counted.
 */
test('merging parts in rounds of any fan-in keeps exactly the latest observation of each key, sorted, and counts what it drops', async () => {
  const random = mulberry32(1729);
  for (let round = 0; round < 60; round++) {
    const store = new MemoryStore();
    const label = `round ${round}`;
    const observations: Observation[] = [];
    const dirty = new Set<string>();
    let seq = 0;
    const users = 1 + Math.floor(random() * 6);
    for (let u = 0; u < users; u++) {
      const userId = `AIDA${u}`;
      let name = `user${u}`;
      const keys = Math.floor(random() * 4);
      const passes = random() < 0.3 ? 2 : 1;
      if (passes === 2 && random() < 0.8) dirty.add(userId);
      for (let pass = 0; pass < passes; pass++) {
        if (pass === 1 && random() < 0.5) name = `renamed${u}`;
        for (let k = 0; k < keys; k++) {
          const status = random() < 0.5 ? 'Active' : 'Inactive';
          observations.push({ record: rec(name, `AKIA${u}x${k}`, userId, status), seq: seq++ });
        }
      }
    }
    // The writer's observation order is the seq; parts are consecutive slices of it.
    const parts: PartInfo[] = [];
    for (let at = 0, n = 1; at < observations.length || parts.length === 0; n++) {
      const size = 1 + Math.floor(random() * 4);
      parts.push(await writeRun(store, `runs/run-0a1b2c3d-${String(n).padStart(6, '0')}.ndjson`, observations.slice(at, at + size), 'parquet'));
      at += size;
    }
    const fanIn = 2 + Math.floor(random() * 3);
    const stats = { duplicates: 0 };
    const got: string[] = [];
    for await (const r of mergeRuns(store, parts.map((part) => ({ dir: 'runs/', part })), { dirty, scratch: 'scratch/', fanIn }, stats)) got.push(`${r.user_name}/${r.access_key_id}/${r.status}`);
    // The reference.
    const latestById = new Map<string, Observation>();
    const latestByKey = new Map<string, Observation>();
    for (const o of observations) {
      if (dirty.has(o.record.user_id)) latestById.set(o.record.access_key_id, o);
      else latestByKey.set(`${o.record.user_name}\t${o.record.access_key_id}`, o);
    }
    const kept = [...latestById.values(), ...latestByKey.values()].map((o) => o.record).sort(compareRecords);
    assert.deepEqual(got, kept.map((r) => `${r.user_name}/${r.access_key_id}/${r.status}`), `${label} (fan-in ${fanIn}, ${parts.length} parts, dirty ${[...dirty].join(',')})`);
    assert.equal(stats.duplicates, observations.length - kept.length, `${label}: dropped rows counted`);
  }
});

/** Merges `parts` under `scratch/` at `fanIn`: the user names merged and the fault points reached. */
async function mergeWithPoints(store: MemoryStore, parts: readonly PartInfo[], fanIn: number): Promise<{ rows: string[]; points: string[] }> {
  const points: string[] = [];
  const rows: string[] = [];
  await withFaultHook(
    (name, detail) => void points.push(`${name} ${detail ?? ''}`),
    async () => {
      for await (const r of mergeRuns(store, parts.map((part) => ({ dir: 'runs/', part })), { dirty: new Set(), scratch: 'scratch/', fanIn }, { duplicates: 0 })) rows.push(r.user_name);
    },
  );
  return { rows, points };
}

test('a merge in rounds writes its intermediate runs under the scratch folder only, each reached as a fault point', async () => {
  const store = new MemoryStore();
  const parts: PartInfo[] = [];
  for (let p = 0; p < 7; p++) parts.push(await writeRun(store, `runs/run-0a1b2c3d-${String(p + 1).padStart(6, '0')}.ndjson`, [{ record: rec(`u${p}`, `K${p}`), seq: p }], 'parquet'));
  const { rows, points } = await mergeWithPoints(store, parts, 3);
  assert.deepEqual(rows, ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6']);
  // 7 parts at fan-in 3: round 0 makes 3 runs (3+3+1, the single one kept as it is), fine at 3.
  assert.deepEqual(points, ['merge-round-written scratch/merge-0-00000.ndjson', 'merge-round-written scratch/merge-0-00001.ndjson']);
  assert.deepEqual(store.keys('scratch/'), ['scratch/merge-0-00000.ndjson', 'scratch/merge-0-00001.ndjson']);
  assert.deepEqual(store.keys('runs/').length, 7, 'the committed parts are left as they were');
});

test('a fan-in below two is taken as two', async () => {
  const store = new MemoryStore();
  const parts: PartInfo[] = [];
  for (let p = 0; p < 5; p++) parts.push(await writeRun(store, `runs/run-0a1b2c3d-${String(p + 1).padStart(6, '0')}.ndjson`, [{ record: rec(`u${p}`, `K${p}`), seq: p }], 'parquet'));
  for (const fanIn of [0, 1]) {
    const rows: string[] = [];
    for await (const r of mergeRuns(store, parts.map((part) => ({ dir: 'runs/', part })), { dirty: new Set(), scratch: `scratch${fanIn}/`, fanIn }, { duplicates: 0 })) rows.push(r.user_name);
    assert.deepEqual(rows, ['u0', 'u1', 'u2', 'u3', 'u4'], `fan-in ${fanIn}`);
  }
});

test('a merge stopped early closes every part it opened', async () => {
  const store = new CountingStore();
  const parts: PartInfo[] = [];
  for (let p = 0; p < 4; p++) parts.push(await writeRun(store, `runs/run-0a1b2c3d-${String(p + 1).padStart(6, '0')}.ndjson`, [{ record: rec(`u${p}`, `K${p}`), seq: p }, { record: rec(`v${p}`, `L${p}`), seq: 10 + p }], 'parquet'));
  for await (const _ of mergeRuns(store, parts.map((part) => ({ dir: 'runs/', part })), { dirty: new Set(), scratch: 's/' }, { duplicates: 0 })) break;
  assert.equal(store.open, 0);
  assert.equal(store.peak, 4);
});
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

/** The staged row of a line written by hand (a CSV payload or cells). */
function staged(payload: string): StagedRow {
  return parseRow(`123456789012\tbob\tAKIA3\t0\tAIDABOB\t${payload}`)!;
}

test('a CSV row without quoting or escapes is read back as staged, with and without a last-use date', async () => {
  const store = new MemoryStore();
  const used = { ...rec('alice', 'AKIA1'), last_used_date: new Date('2026-11-01T08:09:10.011Z'), last_used_service: 's3', last_used_region: 'eu-west-1' };
  const part = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', [{ record: used, seq: 0 }, { record: rec('bob', 'AKIA2'), seq: 1 }], 'csv');
  const rows: { text: string; dated: boolean }[] = [];
  for await (const row of readRun(store, 'runs/', part)) rows.push(csvRowOf(row));
  const expected = (await bytesOf(encodeCsv(from([used, rec('bob', 'AKIA2')])))).split('\n').slice(1, 3);
  assert.deepEqual(rows, [{ text: expected[0], dated: true }, { text: expected[1], dated: false }]);
});

test('a staged row without the payload its reader expects is INTERNAL naming its key', () => {
  const internal = (what: string) => (err: unknown) => err instanceof ExportError && err.code === 'INTERNAL' && err.message.includes('AKIA3') && err.message.includes(what);
  assert.throws(() => decodeRow(staged('{"csv":"a","dated":false}')), internal('holds CSV text where a record was expected'));
  for (const payload of ['{"csv":1,"dated":true}', '{"csv":"a"}', '{"dated":false}']) assert.throws(() => csvRowOf(staged(payload)), internal('has no CSV text'), payload);
});

test('a Parquet part stages the cells in column order, timestamps as epoch milliseconds', () => {
  const row = parseRow(encodeRow({ record: rec('alice', 'AKIA1'), seq: 0 }))!;
  const cells = JSON.parse(row.line.slice(row.payloadAt)) as unknown[];
  assert.equal(cells.length, COLUMNS.length);
  assert.equal(cells[COLUMNS.findIndex((c) => c.name === 'create_date')], Date.parse('2020-01-01T00:00:00.000Z'));
  assert.equal(cells[COLUMNS.findIndex((c) => c.name === 'user_name')], 'alice');
});

test('one key id under two user names or two accounts is two rows when its user is not dirty', async () => {
  const store = new MemoryStore();
  const other = { ...rec('alice', 'AKIA1'), account_id: '210987654321' };
  // Each pair sorts next to each other: only the name, or only the account, tells them apart.
  for (const pair of [[rec('alice', 'AKIA1'), rec('bob', 'AKIA1')], [rec('alice', 'AKIA1'), other]]) {
    const part = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', pair.map((record, seq) => ({ record, seq })), 'parquet');
    const stats = { duplicates: 0 };
    const rows: string[] = [];
    for await (const r of mergeRuns(store, [{ dir: 'runs/', part }], { dirty: new Set(), scratch: 'm/' }, stats)) rows.push(`${r.account_id}/${r.user_name}/${r.access_key_id}`);
    assert.deepEqual(rows, pair.map((r) => `${r.account_id}/${r.user_name}/${r.access_key_id}`));
    assert.equal(stats.duplicates, 0);
  }
});

test('rows equal in sort key and observation come out in part order: the last part wins', async () => {
  const store = new MemoryStore();
  const parts: PartInfo[] = [];
  for (const [p, status] of ['Active', 'Inactive', 'Expired'].entries()) parts.push(await writeRun(store, `runs/run-0a1b2c3d-00000${p + 1}.ndjson`, [{ record: rec('bob', 'AKIA3', undefined, status), seq: 4 }], 'parquet'));
  for (const order of [[0, 1, 2], [2, 0, 1], [1, 2, 0]]) {
    const stats = { duplicates: 0 };
    const rows: string[] = [];
    for await (const r of mergeRuns(store, order.map((i) => ({ dir: 'runs/', part: parts[i]! })), { dirty: new Set(), scratch: 'm/' }, stats)) rows.push(r.status);
    assert.deepEqual(rows, [['Active', 'Inactive', 'Expired'][order[2]!]], `parts in order ${order.join(',')}`);
    assert.equal(stats.duplicates, 2);
  }
});

test('a part holding one key observed twice stages them in observation order, whatever order they came in', async () => {
  const store = new MemoryStore();
  for (const obs of [[5, 3], [3, 5]]) {
    const part = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', obs.map((seq) => ({ record: rec('bob', 'AKIA3', undefined, `s${seq}`), seq })), 'parquet');
    const seqs: number[] = [];
    for await (const row of readRun(store, 'runs/', part)) seqs.push(row.seq);
    assert.deepEqual(seqs, [3, 5], `given ${obs.join(',')}`);
  }
});

/** `n` observations of distinct keys, users `${prefix}00000`… in order. */
function many(prefix: string, n: number, seq0 = 0): Observation[] {
  return Array.from({ length: n }, (_, i) => ({ record: rec(`${prefix}${String(i).padStart(5, '0')}`, `AKIA${prefix}${i}`), seq: seq0 + i }));
}

test('a CSV part larger than one write is staged whole and reads back row for row', async () => {
  const store = new MemoryStore();
  const obs = many('user', 1500);
  const part = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', obs, 'csv');
  assert.ok(store.objects.get('runs/run-0a1b2c3d-000001.ndjson')!.body.length > 256 * 1024 + 1000, 'more than one chunk of 256 KiB');
  const texts: string[] = [];
  for await (const row of readRun(store, 'runs/', part)) texts.push(csvRowOf(row).text);
  assert.deepEqual(texts, (await bytesOf(encodeCsv(from(obs.map((o) => o.record))))).split('\n').slice(1, -1));
});

test('merging in several rounds names each intermediate run by its round and place, and writes no empty group', async () => {
  const store = new MemoryStore();
  const parts: PartInfo[] = [];
  for (let p = 0; p < 8; p++) parts.push(await writeRun(store, `runs/run-0a1b2c3d-${String(p + 1).padStart(6, '0')}.ndjson`, [{ record: rec(`u${p}`, `K${p}`), seq: p }], 'parquet'));
  const { rows, points } = await mergeWithPoints(store, parts, 2);
  assert.deepEqual(rows, ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7']);
  // 8 parts at fan-in 2: 4 runs after round 0, 2 after round 1, merged last.
  assert.deepEqual(store.keys('scratch/'), ['scratch/merge-0-00000.ndjson', 'scratch/merge-0-00001.ndjson', 'scratch/merge-0-00002.ndjson', 'scratch/merge-0-00003.ndjson', 'scratch/merge-1-00000.ndjson', 'scratch/merge-1-00001.ndjson']);
  assert.equal(points.length, 6);
});

test('empty parts merged in rounds give no rows and no error', async () => {
  const store = new MemoryStore();
  const parts: PartInfo[] = [];
  for (let p = 0; p < 3; p++) parts.push(await writeRun(store, `runs/run-0a1b2c3d-${String(p + 1).padStart(6, '0')}.ndjson`, [], 'parquet'));
  const batches: StagedRow[][] = [];
  for await (const b of mergeRows(store, parts.map((part) => ({ dir: 'runs/', part })), { dirty: new Set(), scratch: 's/', fanIn: 2 }, { duplicates: 0 })) batches.push(b);
  assert.deepEqual(batches, []);
  assert.equal(store.text('s/merge-0-00000.ndjson'), '');
});

test('a large merge hands rows on in bounded batches, never empty ones, through intermediate runs larger than one write', async () => {
  const store = new CountingStore();
  const parts: PartInfo[] = [];
  for (let p = 0; p < 3; p++) parts.push(await writeRun(store, `runs/run-0a1b2c3d-${String(p + 1).padStart(6, '0')}.ndjson`, many(`p${p}u`, 1000, p * 1000), 'parquet'));
  const staged = parts.map((part) => ({ dir: 'runs/', part }));
  const sizes: number[] = [];
  const keys: string[] = [];
  for await (const b of mergeRows(store, staged, { dirty: new Set(), scratch: 's/', fanIn: 2 }, { duplicates: 0 })) {
    sizes.push(b.length);
    for (const row of b) keys.push(row.keyId);
  }
  assert.ok(store.objects.get('s/merge-0-00000.ndjson')!.body.length > 256 * 1024 + 1000, 'the intermediate run is more than one chunk');
  assert.deepEqual(keys, [...parts.keys()].flatMap((p) => many(`p${p}u`, 1000).map((o) => o.record.access_key_id)));
  // The merge hands on at most MERGE_BATCH rows at once, and not row by row.
  assert.ok(sizes.every((n) => n > 0 && n <= MERGE_BATCH), `batch sizes ${sizes.join(',')}`);
  assert.ok(sizes.length <= Math.ceil(3000 / MERGE_BATCH) + 3, `batch sizes ${sizes.join(',')}`);
  for await (const _ of mergeRows(store, staged, { dirty: new Set(), scratch: 's2/' }, { duplicates: 0 })) break;
  assert.equal(store.open, 0, 'a merge stopped after its first batch closes every part');
});

test('a part read back in batches never yields an empty batch, not even for a line longer than a read', async () => {
  const store = new MemoryStore();
  const long = { ...rec('bob', 'AKIA3'), user_path: `/${'p'.repeat(2500)}/` };
  const part = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', [{ record: long, seq: 0 }, { record: rec('carol', 'AKIA4'), seq: 1 }], 'parquet');
  const sizes: number[] = [];
  for await (const b of readRunBatches(store, 'runs/', part)) sizes.push(b.length);
  assert.ok(sizes.every((n) => n > 0), `batch sizes ${sizes.join(',')}`);
  assert.equal(sizes.reduce((a, b) => a + b, 0), 2);
  const one = await writeRun(store, 'runs/run-0a1b2c3d-000002.ndjson', [{ record: rec('dave', 'AKIA5'), seq: 2 }], 'parquet');
  for (const parts of [[part], [one]]) {
    const merged: number[] = [];
    for await (const b of mergeRows(store, parts.map((p) => ({ dir: 'runs/', part: p })), { dirty: new Set(), scratch: 's/' }, { duplicates: 0 })) merged.push(b.length);
    assert.ok(merged.length > 0 && merged.every((n) => n > 0), `merged batch sizes ${merged.join(',')}`);
  }
});

test('a part read back in chunks of any size, down to one byte, gives its rows once each and passes its check', async () => {
  /** The part's bytes in slices of `size`: lines cut anywhere, a line spread over many reads. */
  class SlicingStore extends MemoryStore {
    size = 1000;
    override async *readStream(key: string): AsyncIterable<Buffer> {
      for await (const chunk of super.readStream(key)) for (let at = 0; at < chunk.length; at += this.size) yield chunk.subarray(at, at + this.size);
    }
  }
  const store = new SlicingStore();
  const observations: Observation[] = ['ann', 'bob', 'cy', 'dee', 'émile'].map((user, i) => ({ record: { ...rec(user, `AKIA${i}`), user_path: `/${'p'.repeat(i * 37)}/` }, seq: i }));
  const part = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', observations, 'parquet');
  const expected: string[] = [];
  for await (const row of readRun(store, 'runs/', part)) expected.push(row.line);
  assert.equal(expected.length, 5);
  for (const size of [1, 2, 3, 7, 64, 150, 151, 4096]) {
    store.size = size;
    const lines: string[] = [];
    for await (const row of readRun(store, 'runs/', part)) lines.push(row.line);
    assert.deepEqual(lines, expected, `chunks of ${size} bytes`);
  }
});
