import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PartInfo } from '../pipeline/checkpoint.ts';
import { ExportError } from '../pipeline/errors.ts';
import { FAN_IN, mergeRuns, readRun, writeRun, type Observation } from '../pipeline/runs.ts';
import type { AccessKeyRecord } from '../pipeline/schema.ts';
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
      parts.push(await writeRun(store, `runs/run-0a1b2c3d-${String(p + 1).padStart(6, '0')}.ndjson`, obs));
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
    ]);
    const second = await writeRun(store, 'runs/run-0a1b2c3d-000002.ndjson', [
      { record: rec('zed', 'AKIA1', 'AIDAX', 'Inactive'), seq: 3 },
      { record: rec('zed', 'AKIA2', 'AIDAX'), seq: 4 },
      { record: rec('carol', 'AKIA4'), seq: 5 },
    ]);
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
    const a = await writeRun(store, 'r/run-0a1b2c3d-000001.ndjson', [{ record: rec('bob', 'AKIA3', undefined, 'Active'), seq: 7 }]);
    const b = await writeRun(store, 'r/run-0a1b2c3d-000002.ndjson', [{ record: rec('bob', 'AKIA3', undefined, 'Inactive'), seq: 9 }]);
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
    const part = await writeRun(store, 'runs/run-0a1b2c3d-000001.ndjson', [{ record: rec('bob', 'AKIA3'), seq: 0 }]);
    const path = join(dir, 'runs', part.file);
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.replace('Active', 'Activf'));
    await assert.rejects(async () => {
      for await (const _ of readRun(store, 'runs/', part)) void _;
    }, (err: unknown) => err instanceof ExportError && err.code === 'CHECKPOINT_CORRUPT' && /sha256/.test(err.message));
  });
});
