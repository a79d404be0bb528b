// The part writer (pipeline/sinks/parts.ts) on its own: what a commit writes, and
// what it keeps until then.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Checkpoint, CheckpointFile } from '../pipeline/checkpoint.ts';
import { ExportError } from '../pipeline/errors.ts';
import { parseCommand } from '../pipeline/config.ts';
import type { Batch, Item } from '../pipeline/items.ts';
import { dataConfigOf } from '../pipeline/run.ts';
import { readRun, type StagedRow } from '../pipeline/runs.ts';
import type { AccessKeyRecord } from '../pipeline/schema.ts';
import { partWriter } from '../pipeline/sinks/parts.ts';
import { snapshotIdOf, snapshotKeys } from '../pipeline/snapshot.ts';
import { LocalStore } from '../pipeline/store/local.ts';
import { deriveAge } from '../pipeline/stages/deriveAge.ts';
import { toRecord } from '../pipeline/stages/toRecord.ts';
import { ACCOUNT, sourceBatches } from '../bench/local/synthetic.ts';

const TIME = new Date(Date.UTC(2026, 10, 29, 12, 0, 0));
const STAMP = { snapshotId: snapshotIdOf(TIME), snapshotTime: TIME };

/** V8's collector, callable from a test (a full collection, now). */
function collector(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

async function setup(format: 'csv' | 'parquet') {
  const dir = await mkdtemp(join(tmpdir(), 'ike-parts-'));
  const command = parseCommand(['--format', format, '--out', dir], {});
  if (command.kind !== 'run') throw new Error('unexpected command');
  const cp = new Checkpoint(STAMP.snapshotId, TIME, dataConfigOf(command.config, {}));
  cp.selectAccounts([{ id: ACCOUNT, name: null }]);
  const store = new LocalStore(dir);
  const keys = snapshotKeys(cp.snapshotId);
  const file = await CheckpointFile.create(store, keys.checkpoint, cp);
  return { dir, cp, store, keys, file };
}

/** The synthetic source's items (bench/local/synthetic.ts: valid STATEs, 100 keys a user) as finished records, re-cut into batches of `size` items. */
function* batchesOf(n: number, size = Number.POSITIVE_INFINITY): Generator<Batch<AccessKeyRecord>> {
  let batch: Item<AccessKeyRecord>[] = [];
  for (const b of sourceBatches(n, 7)) {
    for (const item of b) {
      batch.push(item.type === 'RECORD' ? { type: 'RECORD', record: deriveAge(toRecord(item.record, STAMP)) } : item);
      if (batch.length >= size) {
        yield batch;
        batch = [];
      }
    }
    if (size === Number.POSITIVE_INFINITY) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

const idOrder = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

for (const format of ['csv', 'parquet'] as const) {
  test(`${format}: a record is not kept after it arrives (only what its part needs waits for the commit), and the part holds it sorted, with its seq`, async () => {
    const gc = collector();
    const { dir, cp, store, keys, file } = await setup(format);
    try {
      const refs: WeakRef<AccessKeyRecord>[] = [];
      let collectedBeforeCommit = -1;
      const committed: { account: string; keyId: string; note: string | undefined }[] = [];
      const keyIds: string[] = [];
      // 300 records of 3 users; no commit until the end (commitRows, commitUsers and commitMs out of reach).
      // The batches are handed on from a queue, so nothing here refers to one once it is read.
      const queue = [...batchesOf(300)];
      for (const b of queue) {
        for (const item of b) {
          if (item.type !== 'RECORD') continue;
          refs.push(new WeakRef(item.record));
          keyIds.push(item.record.access_key_id);
        }
      }
      let checked = false;
      const source = new Readable({
        objectMode: true,
        highWaterMark: 1,
        read() {
          // Every batch but the last (the account's end, which commits) first.
          if (queue.length > 1) this.push(queue.shift());
          else if (!checked) {
            checked = true;
            setImmediate(() => {
              gc();
              collectedBeforeCommit = refs.filter((r) => r.deref() === undefined).length;
              this.push(queue.shift());
              this.push(null);
            });
          }
        },
      });
      await pipeline(
        source,
        partWriter({
          checkpoint: cp,
          file,
          store,
          runsDir: keys.runs,
          runId: '0a1b2c3d',
          assertHeld: () => undefined,
          tuning: { commitRows: 1_000_000, commitUsers: 1_000_000, commitMs: Number.POSITIVE_INFINITY },
          noteOf: (r) => `note-${r.status}`,
          onCommitted: (rs) => {
            for (let i = 0; i < rs.rows; i++) committed.push({ account: rs.account(i), keyId: rs.keyId(i), note: rs.note(i) });
          },
        }),
      );
      assert.equal(refs.length, 300);
      assert.equal(collectedBeforeCommit, 300, 'every record was collectable before its commit');
      assert.equal(cp.parts.length, 1);
      const rows: StagedRow[] = [];
      for await (const row of readRun(store, keys.runs, cp.parts[0]!)) rows.push(row);
      // Sorted by user name, then key id; seq is the order the records arrived in (the snapshot's first rows: 0..299).
      assert.deepEqual(rows.map((r) => [r.userName, r.keyId]), [...rows].map((r) => [r.userName, r.keyId]).sort((a, b) => idOrder(a[0]!, b[0]!) || idOrder(a[1]!, b[1]!)));
      assert.ok(rows.every((r, i) => i === 0 || r.userName > rows[i - 1]!.userName || r.keyId > rows[i - 1]!.keyId));
      const seqOf = new Map(rows.map((r) => [r.keyId, r.seq]));
      assert.deepEqual(keyIds.map((k) => seqOf.get(k)), keyIds.map((_, i) => i));
      // onCommitted sees each record once, with its account and its note.
      assert.equal(committed.length, 300);
      assert.ok(committed.every((c) => c.account === ACCOUNT && /^note-(Active|Inactive|Expired)$/.test(c.note ?? '')));
      assert.deepEqual(committed.map((c) => c.keyId).sort(), [...keyIds].sort());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

test('records not yet vouched for by a STATE wait for a later commit, keeping their arrival seq', async () => {
  const { dir, cp, store, keys, file } = await setup('csv');
  try {
    const arrived: string[] = [];
    // Batches of 7 items cut across users: most end with records no STATE covers yet.
    function* batches(): Generator<Batch<AccessKeyRecord>> {
      for (const b of batchesOf(250, 7)) {
        for (const item of b) if (item.type === 'RECORD') arrived.push(item.record.access_key_id);
        yield b;
      }
    }
    // commitRows 1: every batch commits what its STATEs cover.
    await pipeline(Readable.from(batches(), { objectMode: true }), partWriter({ checkpoint: cp, file, store, runsDir: keys.runs, runId: '0a1b2c3d', assertHeld: () => undefined, tuning: { commitRows: 1, commitUsers: 1_000_000, commitMs: Number.POSITIVE_INFINITY } }));
    // A user's records are vouched for by its user-done: one part a user.
    assert.deepEqual(cp.parts.map((p) => p.rows), [100, 100, 50]);
    assert.ok(cp.exportComplete);
    const seqs = new Map<string, number>();
    for (const part of cp.parts) for await (const row of readRun(store, keys.runs, part)) seqs.set(row.keyId, row.seq);
    assert.deepEqual(arrived.map((k) => seqs.get(k)), arrived.map((_, i) => i));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a commit comes once the STATEs waiting carry commitUsers users, however few records wait; a ListUsers page counts each of its users', async () => {
  for (const [commitUsers, parts] of [
    // The first STATE lists the 10 users: alone, it commits at once (no part); then every 3 finished users.
    [3, [300, 300, 300, 100]],
    [4, [400, 400, 200]],
    // Out of reach: one part, at the end.
    [1_000_000, [1000]],
  ] as const) {
    const { dir, cp, store, keys, file } = await setup('csv');
    try {
      let saves = 0;
      await pipeline(
        Readable.from(batchesOf(1000), { objectMode: true }),
        partWriter({ checkpoint: cp, file, store, runsDir: keys.runs, runId: '0a1b2c3d', assertHeld: () => undefined, tuning: { commitRows: 1_000_000, commitUsers, commitMs: Number.POSITIVE_INFINITY }, onCommit: () => saves++ }),
      );
      assert.deepEqual(cp.parts.map((p) => p.rows), parts, `commitUsers ${commitUsers}`);
      // The listing's own commit, one a part, and the final one when the last part came before the end.
      assert.equal(saves, commitUsers === 1_000_000 ? 1 : parts.length + 1, `commitUsers ${commitUsers}: saves`);
      assert.ok(cp.exportComplete);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
});

test('a record that does not fit its column fails the pipeline with INTERNAL as it arrives; nothing of its batch is committed', async () => {
  const { dir, cp, store, keys, file } = await setup('parquet');
  try {
    const batches: Item<AccessKeyRecord>[][] = [...batchesOf(200)].map((b) => [...b]);
    // The second user's batch: its 10th record gets an age that is not an int32.
    const second = batches.filter((b) => b.some((i) => i.type === 'RECORD'))[1]!;
    const at = second.findIndex((i) => i.type === 'RECORD') + 9;
    const item = second[at] as { type: 'RECORD'; record: AccessKeyRecord };
    second[at] = { type: 'RECORD', record: { ...item.record, key_age_days: 2.5 } };
    await assert.rejects(
      pipeline(Readable.from(batches, { objectMode: true }), partWriter({ checkpoint: cp, file, store, runsDir: keys.runs, runId: '0a1b2c3d', assertHeld: () => undefined, tuning: { commitRows: 1, commitUsers: 1_000_000, commitMs: Number.POSITIVE_INFINITY } })),
      (err: unknown) => err instanceof ExportError && err.code === 'INTERNAL' && /^record 109 \(AKIA\w+\): key_age_days/.test(err.message),
    );
    // The first user was committed; nothing of the second.
    assert.deepEqual(cp.parts.map((p) => p.rows), [100]);
    assert.deepEqual((await store.list(keys.runs)).length, 1);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
