import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import parquet from 'parquetjs-lite';
import assert from 'node:assert/strict';
import { Checkpoint, CheckpointFile } from '../pipeline/checkpoint.ts';
import { ExportError } from '../pipeline/errors.ts';
import type { UserRef } from '../pipeline/items.ts';
import { runFileName, writeRun, type Observation } from '../pipeline/runs.ts';
import { SCHEMA_NAME, SCHEMA_VERSION } from '../pipeline/schema.ts';
import { ACCOUNTS_SPEC } from '../pipeline/schema-spec.ts';
import {
  applyRetention,
  combinedView,
  finalizeSnapshot,
  isPublished,
  listStaging,
  promoteSnapshot,
  readManifest,
  removeStaging,
  SNAPSHOT_ID as SNAPSHOT_ID_PATTERN,
  snapshotIdOf,
  snapshotKeys,
  updateLatest,
  viewOf,
  type ManifestInput,
  type SnapshotView,
} from '../pipeline/snapshot.ts';
import { Crash, withFaultHook } from './support/fault-points.ts';
import { MemoryStore } from './support/memory-store.ts';
import { ACCOUNT, DATA_CONFIG, recordOf, SNAPSHOT_ID, SNAPSHOT_TIME, userRef } from './support/records.ts';

const KEYS = snapshotKeys(SNAPSHOT_ID);
const PUBLISHED = `access_keys/snapshot_id=${SNAPSHOT_ID}/`;
const PUBLISHED_ACCOUNTS = `accounts/snapshot_id=${SNAPSHOT_ID}/`;

/**
 * A snapshot whose export is complete, in `store`: its users listed and done, its
 * parts (each a list of [user, key] observed in that order) committed, its
 * checkpoint created.
 */
async function staged(store: MemoryStore, parts: [string, string][][], failed: string[] = []): Promise<{ cp: Checkpoint; file: CheckpointFile }> {
  const cp = new Checkpoint(SNAPSHOT_ID, SNAPSHOT_TIME, DATA_CONFIG);
  cp.selectAccounts([{ id: ACCOUNT, name: null }]);
  const users = [...new Set(parts.flat().map(([user]) => user))].map((name) => userRef(name.toUpperCase(), name));
  const failing = failed.map((name) => userRef(name.toUpperCase(), name));
  cp.apply({ kind: 'users-page', account: ACCOUNT, token: null, nextToken: null, users: [...users, ...failing] });
  cp.apply({ kind: 'users-scanned', account: ACCOUNT, users: [], complete: true });
  for (const user of users) cp.apply({ kind: 'user-done', user });
  for (const user of failing) cp.apply({ kind: 'user-failed', user, code: 'AccessDenied', token: null });
  cp.apply({ kind: 'account-done', account: ACCOUNT });
  let seq = 0;
  for (const [n, part] of parts.entries()) {
    const observations: Observation[] = part.map(([user, key]) => ({ record: recordOf(user, key), seq: seq++ }));
    cp.addPart(await writeRun(store, `${KEYS.runs}${runFileName('0a1b2c3d', n + 1)}`, observations, 'parquet'));
  }
  const file = await CheckpointFile.create(store, KEYS.checkpoint, cp);
  return { cp, file };
}

/** What finalize is handed by a run: the checkpoint, its file, and its staging folder. */
const stateOf = (cp: Checkpoint, file: CheckpointFile) => ({ checkpoint: cp, file, staging: KEYS.staging });
const input = (cp: Checkpoint, more: Partial<ManifestInput> = {}): ManifestInput => ({ view: viewOf(cp, KEYS.runs), rowsPerFile: 2, toolVersion: '9.9.9', wallMs: 1234, runId: 'feedf00d', ...more });
/** The access_keys folder of this run's publish folder. */
const PUBLISH = `${KEYS.staging}publish-feedf00d/access_keys/`;

/** The access key ids of a CSV data file, in file order, and its line count. */
function keysIn(text: string | undefined): string[] {
  return [...(text ?? '').matchAll(/AKIA\w+/g)].map((m) => m[0]);
}

test('a snapshot lives where DESIGN §5 says: staging by id, published under access_keys/snapshot_id=<id>/', () => {
  assert.deepEqual(snapshotKeys('20261128T111000Z'), {
    id: '20261128T111000Z',
    root: '_staging/20261128T111000Z/',
    staging: '_staging/20261128T111000Z/',
    checkpoint: '_staging/20261128T111000Z/checkpoint.json',
    lease: '_staging/20261128T111000Z/lease.json',
    runs: '_staging/20261128T111000Z/runs/',
    published: 'access_keys/snapshot_id=20261128T111000Z/',
    success: 'access_keys/snapshot_id=20261128T111000Z/_SUCCESS',
  });
});

test('a snapshot id is its start time in UTC, to the second', () => {
  assert.equal(snapshotIdOf(new Date('2026-11-28T11:10:00.999Z')), '20261128T111000Z');
  assert.equal(snapshotIdOf(new Date('2027-01-02T03:04:05.000Z')), '20270102T030405Z');
});

test('finalize merges the parts into files of rowsPerFile rows, then writes the manifest, then _SUCCESS, then records them for promotion', async () => {
  const store = new MemoryStore();
  const { cp, file } = await staged(store, [
    [['carol', 'AKIA5'], ['alice', 'AKIA1']],
    [['bob', 'AKIA3'], ['alice', 'AKIA2'], ['bob', 'AKIA4']],
  ]);
  const points: string[] = [];
  const manifest = await withFaultHook((name, detail) => void points.push(detail ? `${name} ${detail}` : name), () => finalizeSnapshot(store, stateOf(cp, file), input(cp)));
  const dir = PUBLISH;
  assert.deepEqual(points, ['data-file-written part-00000.csv', 'data-file-written part-00001.csv', 'data-file-written part-00002.csv', 'manifest-written', 'success-written', 'publishing-saved']);
  assert.deepEqual([0, 1, 2].map((i) => keysIn(store.text(`${dir}part-0000${i}.csv`))), [['AKIA1', 'AKIA2'], ['AKIA3', 'AKIA4'], ['AKIA5']], 'sorted by user and key, two per file');
  assert.ok(store.text(`${dir}part-00000.csv`)!.startsWith('snapshot_time,account_id,user_name,user_id,access_key_id'), 'each file has the header');
  assert.deepEqual(manifest.files.map((f) => [f.file, f.rows]), [['part-00000.csv', 2], ['part-00001.csv', 2], ['part-00002.csv', 1]]);
  assert.equal(manifest.rows, 5);
  assert.equal(store.text(`${dir}_manifest.json`), JSON.stringify(manifest, null, 2) + '\n');
  assert.equal(store.text(`${dir}_SUCCESS`), '');
  const writes = store.log.filter((l) => l.startsWith('write ') || l.startsWith('upload '));
  assert.ok(writes.indexOf(`write ${dir}_manifest.json`) < writes.indexOf(`write ${dir}_SUCCESS`), 'the gate file last');
  assert.ok(writes.indexOf(`write ${dir}_SUCCESS`) < writes.lastIndexOf(`write ${KEYS.checkpoint}`), 'then the checkpoint');
  const saved = (await CheckpointFile.load(store, KEYS.checkpoint))!.checkpoint;
  assert.equal(saved.phase, 'publishing');
  assert.deepEqual(saved.publishing, {
    dir: `${KEYS.staging}publish-feedf00d/`,
    datasets: [
      { name: 'accounts', files: ['part-00000.csv', '_manifest.json', '_SUCCESS'] },
      { name: 'access_keys', files: ['part-00000.csv', 'part-00001.csv', 'part-00002.csv', '_manifest.json', '_SUCCESS'] },
    ],
  });
  // The two datasets' files are written at once (nobody reads them before the promotion,
  // which takes accounts/ first): each gate file after its manifest, all before the checkpoint.
  const accountsDir = `${KEYS.staging}publish-feedf00d/accounts/`;
  assert.ok(writes.indexOf(`write ${accountsDir}_manifest.json`) < writes.indexOf(`write ${accountsDir}_SUCCESS`), "the accounts' gate file last");
  assert.ok(writes.indexOf(`write ${accountsDir}_SUCCESS`) < writes.lastIndexOf(`write ${KEYS.checkpoint}`), 'then the checkpoint');
  assert.match(store.text(`${KEYS.staging}publish-feedf00d/accounts/part-00000.csv`)!, new RegExp(`\n2026-11-28T11:10:00.000Z,${ACCOUNT},,,,3,0,0,5,exported,\n`), "one account row: 3 users exported, 5 keys");
  assert.deepEqual(store.keys(`${KEYS.staging}merge-`), [], 'the merge scratch is gone');
});

test('the sha256 and size of every data file in the manifest are those of its bytes', async () => {
  const store = new MemoryStore();
  const { cp, file } = await staged(store, [[['alice', 'AKIA1'], ['bob', 'AKIA2'], ['carol', 'AKIA3']]]);
  const manifest = await finalizeSnapshot(store, stateOf(cp, file), input(cp));
  const { createHash } = await import('node:crypto');
  for (const f of manifest.files) {
    const body = store.objects.get(`${PUBLISH}${f.file}`)!.body;
    assert.equal(f.bytes, body.length, f.file);
    assert.equal(f.sha256, createHash('sha256').update(body).digest('hex'), f.file);
  }
});

test('rows that fill the last file exactly leave no empty file behind', async () => {
  const store = new MemoryStore();
  const { cp, file } = await staged(store, [[['alice', 'AKIA1'], ['bob', 'AKIA2'], ['carol', 'AKIA3'], ['dave', 'AKIA4']]]);
  const manifest = await finalizeSnapshot(store, stateOf(cp, file), input(cp));
  assert.deepEqual(manifest.files.map((f) => [f.file, f.rows]), [['part-00000.csv', 2], ['part-00001.csv', 2]]);
  assert.deepEqual(store.keys(PUBLISH), ['part-00000.csv', 'part-00001.csv', '_SUCCESS', '_manifest.json'].map((f) => `${PUBLISH}${f}`).sort());
});

test('an account without keys still publishes one readable file, with the header only', async () => {
  const store = new MemoryStore();
  const { cp, file } = await staged(store, []);
  const manifest = await finalizeSnapshot(store, stateOf(cp, file), input(cp));
  assert.deepEqual(manifest.files.map((f) => [f.file, f.rows]), [['part-00000.csv', 0]]);
  assert.equal(manifest.rows, 0);
  assert.equal(store.text(`${PUBLISH}part-00000.csv`)!.split('\n').filter(Boolean).length, 1);
});

test('the manifest says what the snapshot is, how it was made, and what it holds', async () => {
  const store = new MemoryStore();
  // AKIA1 observed twice (a restarted listing): the merge keeps one row and counts the other.
  const { cp, file } = await staged(store, [[['alice', 'AKIA1'], ['bob', 'AKIA2']], [['alice', 'AKIA1']]], ['zed']);
  cp.accountId = '123456789012';
  cp.callerArn = 'arn:aws:iam::123456789012:user/exporter';
  cp.resumes = 3;
  Object.assign(cp.counters, { calls: { ListUsers: 2, ListAccessKeys: 5 }, attempts: 9, throttles: 2, usersVanished: 1, restartedListings: 1 });
  const before = Date.now();
  const m = await finalizeSnapshot(store, stateOf(cp, file), input(cp, { wallMs: 4321 }));
  assert.deepEqual(m.schema, { name: SCHEMA_NAME, version: SCHEMA_VERSION });
  assert.equal(m.snapshot_id, SNAPSHOT_ID);
  assert.equal(m.snapshot_time, '2026-11-28T11:10:00.000Z');
  const published = Date.parse(m.published_at);
  assert.ok(published >= before - 1000 && published <= Date.now() + 1000, m.published_at);
  assert.deepEqual(m.tool, { name: 'iam-key-export', version: '9.9.9' });
  assert.deepEqual(m.configuration, { format: 'csv', path_prefix: '/', statuses: [], endpoint: null, accounts: 'self', last_used: 'off' });
  assert.equal(m.account_id, '123456789012');
  assert.equal(m.caller_arn, 'arn:aws:iam::123456789012:user/exporter');
  assert.equal(m.rows, 2);
  assert.equal(m.partial, true, 'a user failed');
  assert.deepEqual(m.users, { seen: 4, exported: 2, vanished: 1, failed: [{ user_name: 'zed', user_id: 'AIDAZED', account_id: ACCOUNT, code: 'AccessDenied' }] });
  assert.deepEqual(m.accounts.map((a) => [a.account_id, a.keys, a.outcome]), [[ACCOUNT, 2, 'partial']], 'the rows published per account; a user failed, so the account is partial (as in the accounts dataset)');
  assert.deepEqual(m.failed_accounts, []);
  assert.deepEqual(m.api, { calls: { ListUsers: 2, ListAccessKeys: 5 }, calls_total: 7, attempts: 9, retries: 2, throttles: 2 });
  assert.equal(m.wall_time_ms, 4321);
  assert.equal(m.resumes, 3);
  assert.equal(m.duplicates_dropped, 1);
  assert.equal(m.restarted_listings, 1);
});

test('a manifest of a complete snapshot is not partial, and never counts negative retries', async () => {
  const store = new MemoryStore();
  const { cp, file } = await staged(store, [[['alice', 'AKIA1']]]);
  Object.assign(cp.counters, { calls: { ListUsers: 3 }, attempts: 2 });
  const m = await finalizeSnapshot(store, stateOf(cp, file), input(cp));
  assert.equal(m.partial, false);
  assert.deepEqual(m.users.failed, []);
  assert.equal(m.api.retries, 0);
});

test("finalize removes what earlier attempts left (other runs' publish and merge folders), and nothing else", async () => {
  const store = new MemoryStore();
  const { cp, file } = await staged(store, [[['alice', 'AKIA1']]]);
  for (const k of ['publish-0ld0ld00/part-00000.csv', 'publish-0ld0ld00/_SUCCESS', 'merge-0ld0ld00/merge-0-00000.ndjson', 'lease.json', 'notes-publish-x']) await store.write(`${KEYS.staging}${k}`, 'x');
  await finalizeSnapshot(store, stateOf(cp, file), input(cp));
  assert.deepEqual(store.keys(`${KEYS.staging}publish-0ld0ld00/`), []);
  assert.deepEqual(store.keys(`${KEYS.staging}merge-0ld0ld00/`), []);
  assert.equal(store.text(`${KEYS.staging}lease.json`), 'x');
  assert.equal(store.text(`${KEYS.staging}notes-publish-x`), 'x');
  assert.equal(store.keys(KEYS.runs).length, 1, 'the committed parts stay');
});

test('a stop during finalize ends it with an AbortError before the checkpoint records anything', async () => {
  const store = new MemoryStore();
  const { cp, file } = await staged(store, [[['alice', 'AKIA1'], ['bob', 'AKIA2'], ['carol', 'AKIA3'], ['dave', 'AKIA4'], ['erin', 'AKIA5']]]);
  const stop = new AbortController();
  // Stopped once the first data file is written: the next row read sees it.
  await assert.rejects(
    withFaultHook(
      (name) => {
        if (name === 'data-file-written') stop.abort();
      },
      () => finalizeSnapshot(store, stateOf(cp, file), input(cp, { stop: stop.signal })),
    ),
    (err: unknown) => (err as Error).name === 'AbortError' && /finalize stopped/.test((err as Error).message),
  );
  const saved = (await CheckpointFile.load(store, KEYS.checkpoint))!.checkpoint;
  assert.equal(saved.phase, 'export');
  assert.equal(saved.publishing, null);
  assert.equal(store.text(`${PUBLISH}_SUCCESS`), undefined);
  await assert.rejects(finalizeSnapshot(store, stateOf(cp, file), input(cp, { stop: AbortSignal.abort() })), (err: unknown) => (err as Error).name === 'AbortError', 'stopped before the first row');
});

test('promote publishes the finalized folder whole, points _LATEST at it, and removes the staging', async () => {
  const store = new MemoryStore();
  const { cp, file } = await staged(store, [[['alice', 'AKIA1'], ['bob', 'AKIA2'], ['carol', 'AKIA3']]]);
  const manifest = await finalizeSnapshot(store, stateOf(cp, file), input(cp));
  assert.equal(await isPublished(store, SNAPSHOT_ID), false);
  assert.equal(await readManifest(store, SNAPSHOT_ID), undefined);
  const points: string[] = [];
  const where = await withFaultHook((name) => void points.push(name), () => promoteSnapshot(store, cp));
  assert.equal(where, `mem://root/${PUBLISHED.slice(0, -1)}`);
  assert.deepEqual(points, ['before-promote', 'after-promote', 'latest-written', 'staging-removed']);
  assert.deepEqual(store.keys(PUBLISHED), ['part-00000.csv', 'part-00001.csv', '_SUCCESS', '_manifest.json'].map((f) => PUBLISHED + f).sort());
  assert.equal(store.text('access_keys/_LATEST'), `${SNAPSHOT_ID}\n`);
  assert.deepEqual(store.keys(PUBLISHED_ACCOUNTS), ['part-00000.csv', '_SUCCESS', '_manifest.json'].map((f) => PUBLISHED_ACCOUNTS + f).sort(), 'the accounts dataset is published beside it');
  assert.equal(store.text('accounts/_LATEST'), `${SNAPSHOT_ID}\n`);
  assert.deepEqual(store.keys('_staging/'), []);
  assert.equal(await isPublished(store, SNAPSHOT_ID), true);
  assert.deepEqual(await readManifest(store, SNAPSHOT_ID), manifest);
});

test('promote of a snapshot that was never finalized is an internal error', async () => {
  const store = new MemoryStore();
  const { cp } = await staged(store, []);
  await assert.rejects(promoteSnapshot(store, cp), (err: unknown) => err instanceof ExportError && err.code === 'INTERNAL' && err.message.includes(SNAPSHOT_ID));
});

const CRASH_POINTS = ['data-file-written', 'manifest-written', 'success-written', 'publishing-saved', 'before-promote', 'after-promote', 'latest-written', 'staging-removed'];

/** Finalize (unless the checkpoint says it was done) and promote, as a run does. */
async function finishRun(store: MemoryStore, runId: string): Promise<void> {
  const loaded = await CheckpointFile.load(store, KEYS.checkpoint);
  if (!loaded) return; // the staging is gone: the snapshot was published
  loaded.checkpoint.beginResume();
  if (loaded.checkpoint.phase !== 'publishing') await finalizeSnapshot(store, stateOf(loaded.checkpoint, loaded.file), input(loaded.checkpoint, { runId }));
  await promoteSnapshot(store, loaded.checkpoint);
}

test('a crash at any step of finalize or publication, then a rerun, publishes the same snapshot, complete, exactly once', async () => {
  const parts: [string, string][][] = [[['carol', 'AKIA5'], ['alice', 'AKIA1']], [['bob', 'AKIA3'], ['alice', 'AKIA2'], ['bob', 'AKIA4']]];
  const reference = new MemoryStore();
  await staged(reference, parts);
  await finishRun(reference, 'feedf00d');
  const files = (store: MemoryStore) => [...store.keys(PUBLISHED), ...store.keys(PUBLISHED_ACCOUNTS)].filter((k) => !k.endsWith('_manifest.json')).map((k) => [k, store.text(k)]);
  for (const point of CRASH_POINTS) {
    const store = new MemoryStore();
    await staged(store, parts);
    let crashed = false;
    await assert.rejects(
      withFaultHook(
        (name) => {
          if (name === point && !crashed) {
            crashed = true;
            throw new Crash(name);
          }
        },
        () => finishRun(store, 'feedf00d'),
      ),
      Crash,
      point,
    );
    if (CRASH_POINTS.indexOf(point) >= CRASH_POINTS.indexOf('after-promote')) {
      // From the rename on, readers may already see the folder: it must be whole.
      assert.ok(store.text(`${PUBLISHED}_SUCCESS`) !== undefined && store.text(`${PUBLISHED}_manifest.json`) !== undefined, `${point}: published without its gate or manifest`);
    } else {
      assert.equal(await isPublished(store, SNAPSHOT_ID), false, `${point}: published too early`);
    }
    await finishRun(store, 'c0ffee00');
    assert.deepEqual(files(store), files(reference), `${point}: the rerun published the same files`);
    const manifest = (await readManifest(store, SNAPSHOT_ID))!;
    assert.deepEqual(manifest.files, (await readManifest(reference, SNAPSHOT_ID))!.files, point);
    assert.equal(store.text('access_keys/_LATEST'), `${SNAPSHOT_ID}\n`, point);
    assert.deepEqual(store.keys('_staging/'), [], `${point}: staging removed`);
  }
});

test('_LATEST names the newest published snapshot and never moves back to an older one', async () => {
  const store = new MemoryStore();
  await updateLatest(store, '20261128T111000Z');
  assert.equal(store.text('access_keys/_LATEST'), '20261128T111000Z\n');
  await updateLatest(store, '20261129T000000Z');
  assert.equal(store.text('access_keys/_LATEST'), '20261129T000000Z\n');
  const writes = () => store.log.filter((l) => l === 'write access_keys/_LATEST').length;
  const before = writes();
  await updateLatest(store, '20261128T111000Z');
  await updateLatest(store, '20261129T000000Z');
  assert.equal(writes(), before, 'an older or the same snapshot leaves it alone');
  assert.equal(store.text('access_keys/_LATEST'), '20261129T000000Z\n');
  await store.write('access_keys/_LATEST', 'garbage that sorts after any id\n');
  await updateLatest(store, '20261101T000000Z');
  assert.equal(store.text('access_keys/_LATEST'), '20261101T000000Z\n', 'what is not an id is replaced');
});

test('the staged snapshots are listed newest first, with the state objects each has', async () => {
  const store = new MemoryStore();
  for (const k of [
    '_staging/20261128T111000Z/checkpoint.json',
    '_staging/20261128T111000Z/lease.json',
    '_staging/20261129T000000Z/lease.json',
    '_staging/20261127T000000Z/runs/run-0a1b2c3d-000001.ndjson',
    '_staging/20261130T000000Z/runs/checkpoint.json',
    '_staging/20261201T000000Z/shard-1-of-4/checkpoint.json',
    '_staging/20261202T000000Z/finalize/lease.json',
    '_staging/20261203T000000Z/shard-1-of-x/checkpoint.json',
    '_staging/not-a-snapshot/checkpoint.json',
    '_staging/2026112T000000Z/checkpoint.json',
  ]) await store.write(k, 'x');
  assert.deepEqual(await listStaging(store), [
    { id: '20261203T000000Z', hasCheckpoint: false, hasLease: false, sharded: false },
    { id: '20261202T000000Z', hasCheckpoint: false, hasLease: false, sharded: true },
    { id: '20261201T000000Z', hasCheckpoint: false, hasLease: false, sharded: true },
    { id: '20261130T000000Z', hasCheckpoint: false, hasLease: false, sharded: false },
    { id: '20261129T000000Z', hasCheckpoint: false, hasLease: true, sharded: false },
    { id: '20261128T111000Z', hasCheckpoint: true, hasLease: true, sharded: false },
    { id: '20261127T000000Z', hasCheckpoint: false, hasLease: false, sharded: false },
  ]);
});

test('removing a staged snapshot deletes its lease last, and nothing of other snapshots', async () => {
  const store = new MemoryStore();
  for (const k of ['checkpoint.json', 'lease.json', 'runs/run-0a1b2c3d-000001.ndjson', 'publish-feedf00d/_SUCCESS']) await store.write(`${KEYS.staging}${k}`, 'x');
  await store.write('_staging/20261129T000000Z/checkpoint.json', 'x');
  store.hook = (op, key) => {
    if ((op === 'delete' || op === 'deletePrefix') && key !== KEYS.lease && key !== KEYS.staging) assert.ok(store.objects.has(KEYS.lease), `the lease is gone before ${key}`);
    if (op === 'delete') assert.notEqual(key, KEYS.lease, 'the lease goes with the folder, last');
  };
  await removeStaging(store, KEYS);
  assert.deepEqual(store.keys('_staging/'), ['_staging/20261129T000000Z/checkpoint.json']);
  assert.equal(store.log.at(-1), `deletePrefix ${KEYS.staging}`);
});

test('a shard and the finalize of a sharded snapshot each have their own folder under the snapshot\'s staging', () => {
  const shard = snapshotKeys(SNAPSHOT_ID, { index: 2, count: 4 });
  assert.equal(shard.root, KEYS.root);
  assert.equal(shard.staging, `${KEYS.root}shard-2-of-4/`);
  assert.equal(shard.checkpoint, `${KEYS.root}shard-2-of-4/checkpoint.json`);
  assert.equal(shard.lease, `${KEYS.root}shard-2-of-4/lease.json`);
  assert.equal(shard.runs, `${KEYS.root}shard-2-of-4/runs/`);
  assert.equal(shard.published, PUBLISHED, 'a shard publishes into the snapshot, not a folder of its own');
  const fin = snapshotKeys(SNAPSHOT_ID, 'finalize');
  assert.equal(fin.staging, `${KEYS.root}finalize/`);
  assert.equal(fin.checkpoint, `${KEYS.root}finalize/checkpoint.json`);
});

test('a snapshot id is the whole name: junk before or after it is not an id', async () => {
  assert.equal(SNAPSHOT_ID_PATTERN.test(SNAPSHOT_ID), true);
  assert.equal(SNAPSHOT_ID_PATTERN.test(`x${SNAPSHOT_ID}`), false);
  assert.equal(SNAPSHOT_ID_PATTERN.test(`${SNAPSHOT_ID}x`), false);
  const store = new MemoryStore();
  for (const k of [`_staging/x${SNAPSHOT_ID}/checkpoint.json`, `_staging/${SNAPSHOT_ID}.old/checkpoint.json`]) await store.write(k, 'x');
  assert.deepEqual(await listStaging(store), [], 'staging folders that are not snapshot ids are not snapshots');
  await store.write('access_keys/_LATEST', `${SNAPSHOT_ID}9\n`);
  await updateLatest(store, SNAPSHOT_ID);
  assert.equal(store.text('access_keys/_LATEST'), `${SNAPSHOT_ID}\n`, 'a _LATEST with junk after an id names no snapshot');
});

test('only a folder of a shard or the finalize makes a staged snapshot sharded, and only what is under _staging/ is staged', async () => {
  const store = new MemoryStore();
  for (const k of [
    '_staging/20261201T000000Z/shard-12-of-16/runs/run-0a1b2c3d-000001.ndjson',
    '_staging/20261202T000000Z/shard-1-of-16/lease.json',
    '_staging/20261203T000000Z/shard-1-of-4',
    '_staging/20261204T000000Z/xshard-1-of-4/checkpoint.json',
    '_staging/20261205T000000Z/shard-1-of-4x/checkpoint.json',
    '_staging/20261206T000000Z/finalize',
    'elsewhere/20261207T000000Z/checkpoint.json',
  ]) await store.write(k, 'x');
  assert.deepEqual(
    (await listStaging(store)).map((s) => [s.id, s.sharded]),
    [
      ['20261206T000000Z', false],
      ['20261205T000000Z', false],
      ['20261204T000000Z', false],
      ['20261203T000000Z', false],
      ['20261202T000000Z', true],
      ['20261201T000000Z', true],
    ],
  );
});

/** Publishes a snapshot folder of `dataset` by hand: a data file, its manifest, and (unless `gated` is false) its _SUCCESS. */
async function publishedFolder(store: MemoryStore, dataset: string, id: string, gated = true): Promise<void> {
  for (const f of ['part-00000.csv', '_manifest.json', ...(gated ? ['_SUCCESS'] : [])]) await store.write(`${dataset}/snapshot_id=${id}/${f}`, 'x');
}

test('--keep N deletes all but the newest N published snapshots of both datasets, each losing its _SUCCESS first', async () => {
  const store = new MemoryStore();
  const ids = ['20261125T000000Z', '20261126T000000Z', '20261127T000000Z', '20261128T000000Z'];
  for (const id of ids) {
    await publishedFolder(store, 'access_keys', id);
    await publishedFolder(store, 'accounts', id);
  }
  await publishedFolder(store, 'access_keys', '20261101T000000Z', false); // being published: no _SUCCESS yet
  await publishedFolder(store, 'access_keys', 'not-an-id');
  await store.write('access_keys/_LATEST', '20261128T000000Z\n');
  await store.write('_staging/20261101T000000Z/checkpoint.json', 'x');
  const before = store.log.length;
  const points: string[] = [];
  const deleted = await withFaultHook((name, detail) => void points.push(`${name} ${detail}`), () => applyRetention(store, 2));
  assert.deepEqual(deleted, ['20261125T000000Z', '20261126T000000Z'], 'the ids deleted, oldest first');
  assert.deepEqual(points, ['snapshot-deleted 20261126T000000Z', 'snapshot-deleted 20261125T000000Z', 'snapshot-deleted 20261126T000000Z', 'snapshot-deleted 20261125T000000Z']);
  for (const dataset of ['access_keys', 'accounts']) {
    for (const id of ids.slice(0, 2)) assert.deepEqual(store.keys(`${dataset}/snapshot_id=${id}/`), [], `${dataset} ${id} deleted`);
    for (const id of ids.slice(2)) assert.equal(store.keys(`${dataset}/snapshot_id=${id}/`).length, 3, `${dataset} ${id} kept`);
  }
  assert.equal(store.keys('access_keys/snapshot_id=20261101T000000Z/').length, 2, 'a folder being published is not touched');
  assert.equal(store.keys('access_keys/snapshot_id=not-an-id/').length, 3, 'a folder that is not a snapshot is not touched');
  assert.equal(store.text('access_keys/_LATEST'), '20261128T000000Z\n');
  assert.equal(store.keys('_staging/').length, 1, 'staging is not touched');
  const folder = 'access_keys/snapshot_id=20261126T000000Z/';
  assert.deepEqual(
    store.log.slice(before).filter((l) => l.includes(folder)),
    [`delete ${folder}_SUCCESS`, `delete ${folder}_manifest.json`, `delete ${folder}part-00000.csv`, `deletePrefix ${folder}`],
    'the gate first, then each file once, then the folder',
  );
  assert.deepEqual(await applyRetention(store, 2), [], 'nothing more to delete');
});

/** A view of one shard: `n` scales its counts; its accounts, runs, dirty users and failed users as given. */
function shardView(n: number, accounts: string[], more: Partial<SnapshotView> = {}): SnapshotView {
  const cp = new Checkpoint(SNAPSHOT_ID, SNAPSHOT_TIME, { ...DATA_CONFIG, shard: `${n}/3` });
  cp.selectAccounts(accounts.map((id) => ({ id, name: `acct-${id}` })));
  Object.assign(cp.counters, {
    usersExported: n,
    usersVanished: 10 * n,
    rowsWritten: 100 * n,
    restartedListings: n,
    attempts: 2 * n,
    throttles: 3 * n,
    wallMs: 1000 * n,
    calls: { ListUsers: n, [`Op${n}`]: 1 },
    lastUsed: { report: n, api: 2 * n, vanished: 3 * n, denied: 4 * n },
  });
  cp.resumes = n === 2 ? 5 : n;
  return { ...viewOf(cp, `${KEYS.root}shard-${n}-of-3/runs/`), ...more };
}

test('the shards of a snapshot taken together: counts summed, accounts side by side in id order, the most resumes', () => {
  const user = (name: string) => ({ user: userRef(name.toUpperCase(), name), code: 'AccessDenied', token: null });
  const one = shardView(1, ['333333333333', '111111111111'], { dirty: new Set(['AIDAA']), failedUsers: [user('zed')] });
  const two = shardView(2, ['222222222222'], { dirty: new Set(['AIDAB', 'AIDAA']), failedUsers: [user('amy')] });
  const three = shardView(3, [], { dirty: new Set() });
  const v = combinedView([one, two, three]);
  assert.equal(v.snapshotId, SNAPSHOT_ID);
  assert.deepEqual(v.config, DATA_CONFIG, 'the snapshot is not a shard');
  assert.deepEqual(v.runs, [...one.runs, ...two.runs, ...three.runs]);
  assert.deepEqual([...v.dirty].sort(), ['AIDAA', 'AIDAB']);
  assert.deepEqual(v.failedUsers.map((f) => f.user.userName), ['zed', 'amy']);
  assert.deepEqual(v.accounts.map((a) => a.ref.id), ['111111111111', '222222222222', '333333333333']);
  assert.deepEqual(
    { ...v.counters },
    {
      ...one.counters,
      usersExported: 6,
      usersVanished: 60,
      rowsWritten: 600,
      restartedListings: 6,
      attempts: 12,
      throttles: 18,
      wallMs: 6000,
      calls: { ListUsers: 6, Op1: 1, Op2: 1, Op3: 1 },
      lastUsed: { report: 6, api: 12, vanished: 18, denied: 24 },
    },
  );
  assert.equal(v.resumes, 5);
  assert.equal(one.counters.usersExported, 1, "a shard's counts are not changed");
  assert.throws(() => combinedView([]), (err: unknown) => err instanceof ExportError && err.code === 'INTERNAL' && /no shard/.test(err.message));
});

const ALPHA = '111111111111';
const BETA = '222222222222';
const GAMMA = '333333333333';
const DELTA = '444444444444';

/**
 * An organization snapshot with every outcome an account can have: alpha
 * exported (2 keys, one with a last use), beta partial (3 of its users failed,
 * 1 key, dated), gamma failed part way (1 user read, 1 key) and delta failed
 * before it started, with no code recorded.
 */
async function organization(store: MemoryStore, format: 'csv' | 'parquet' = 'csv'): Promise<{ cp: Checkpoint; file: CheckpointFile }> {
  const cp = new Checkpoint(SNAPSHOT_ID, SNAPSHOT_TIME, { ...DATA_CONFIG, format, accounts: 'org', lastUsed: 'report' });
  cp.selectAccounts([{ id: ALPHA, name: 'alpha' }, { id: BETA, name: 'beta' }, { id: GAMMA, name: 'gamma' }, { id: DELTA, name: null }]);
  const user = (account: string, name: string): UserRef => ({ ...userRef(name.toUpperCase(), name), accountId: account });
  const read = (account: string, users: UserRef[]) => {
    cp.apply({ kind: 'users-page', account, token: null, nextToken: null, users });
    cp.apply({ kind: 'users-scanned', account, users: [], complete: true });
  };
  cp.apply({ kind: 'account-started', account: { id: ALPHA, name: 'alpha' } });
  cp.apply({ kind: 'account-facts', account: ALPHA, facts: { alias: 'prod', rootAccessKeysPresent: true } });
  read(ALPHA, [user(ALPHA, 'al'), user(ALPHA, 'amy')]);
  for (const u of ['al', 'amy']) cp.apply({ kind: 'user-done', user: user(ALPHA, u) });
  cp.apply({ kind: 'account-done', account: ALPHA });
  cp.apply({ kind: 'account-started', account: { id: BETA, name: 'beta' } });
  cp.apply({ kind: 'account-facts', account: BETA, facts: { alias: null, rootAccessKeysPresent: false } });
  read(BETA, [user(BETA, 'bo'), user(BETA, 'zoe'), user(BETA, 'bea'), user(BETA, 'cat')]);
  cp.apply({ kind: 'user-done', user: user(BETA, 'bo') });
  for (const u of ['zoe', 'bea', 'cat']) cp.apply({ kind: 'user-failed', user: user(BETA, u), code: 'AccessDenied', token: null });
  cp.apply({ kind: 'account-done', account: BETA });
  cp.apply({ kind: 'account-started', account: { id: GAMMA, name: 'gamma' } });
  cp.apply({ kind: 'account-facts', account: GAMMA, facts: { alias: 'gam', rootAccessKeysPresent: null } });
  read(GAMMA, [user(GAMMA, 'cy'), user(GAMMA, 'cal')]);
  cp.apply({ kind: 'user-done', user: user(GAMMA, 'cy') });
  cp.apply({ kind: 'account-failed', account: GAMMA, code: 'Throttling' });
  cp.apply({ kind: 'account-failed', account: DELTA, code: 'AccessDenied' });
  cp.account(DELTA)!.code = null;
  const used = { last_used_date: new Date('2026-11-01T00:00:00.000Z') };
  const observations: Observation[] = [
    recordOf('al', 'AKIAA1', { account_id: ALPHA, ...used }),
    recordOf('amy', 'AKIAA2', { account_id: ALPHA }),
    recordOf('bo', 'AKIAB1', { account_id: BETA, ...used }),
    recordOf('cy', 'AKIAC1', { account_id: GAMMA }),
  ].map((record, seq) => ({ record, seq }));
  cp.addPart(await writeRun(store, `${KEYS.runs}${runFileName('0a1b2c3d', 1)}`, observations, format));
  Object.assign(cp.counters, { lastUsed: { report: 3, api: 1, vanished: 2, denied: 4 } });
  return { cp, file: await CheckpointFile.create(store, KEYS.checkpoint, cp) };
}

const ORG_LAST_USE = { mode: 'report', source: 'api', reportGeneratedTime: '2026-11-28T10:00:00Z' } as const;
const ACCOUNTS_STAGED = `${KEYS.staging}publish-feedf00d/accounts/`;

test('the accounts dataset has one row per account: its facts, its users and keys, and its outcome (exported, partial or failed, with the code)', async () => {
  const store = new MemoryStore();
  const { cp, file } = await organization(store);
  await finalizeSnapshot(store, stateOf(cp, file), input(cp, { lastUse: ORG_LAST_USE }));
  const lines = store.text(`${ACCOUNTS_STAGED}part-00000.csv`)!.trim().split('\n');
  assert.deepEqual(lines, [
    'snapshot_time,account_id,account_name,account_alias,root_access_keys_present,users_exported,users_vanished,users_failed,keys_exported,outcome,error_code',
    `2026-11-28T11:10:00.000Z,${ALPHA},alpha,prod,true,2,0,0,2,exported,`,
    `2026-11-28T11:10:00.000Z,${BETA},beta,,false,1,0,3,1,partial,`,
    `2026-11-28T11:10:00.000Z,${GAMMA},gamma,gam,,1,0,0,1,failed,Throttling`,
    `2026-11-28T11:10:00.000Z,${DELTA},,,,0,0,0,0,failed,`,
  ]);
  const uploaded = store.objects.get(`${ACCOUNTS_STAGED}part-00000.csv`)!.body;
  const { createHash } = await import('node:crypto');
  assert.equal(
    store.text(`${ACCOUNTS_STAGED}_manifest.json`),
    JSON.stringify(
      {
        schema: { name: ACCOUNTS_SPEC.name, version: ACCOUNTS_SPEC.version },
        snapshot_id: SNAPSHOT_ID,
        snapshot_time: '2026-11-28T11:10:00.000Z',
        rows: 4,
        files: [{ file: 'part-00000.csv', rows: 4, bytes: uploaded.length, sha256: createHash('sha256').update(uploaded).digest('hex') }],
      },
      null,
      2,
    ) + '\n',
  );
  assert.equal(store.text(`${ACCOUNTS_STAGED}_SUCCESS`), '');
});

test('the manifest of an organization snapshot: each account with its outcome, the failed ones with their code, the failed users by name, where last use came from', async () => {
  const store = new MemoryStore();
  const { cp, file } = await organization(store);
  // Failed users out of name order (neither sorted nor reversed): the manifest sorts them.
  const [bea, cat, zoe] = cp.failedUsers;
  const view = { ...viewOf(cp, KEYS.runs), failedUsers: [zoe!, bea!, cat!] };
  const m = await finalizeSnapshot(store, stateOf(cp, file), input(cp, { view, lastUse: ORG_LAST_USE }));
  assert.equal(m.rows, 4);
  assert.equal(m.partial, true);
  assert.deepEqual(m.accounts, [
    { account_id: ALPHA, outcome: 'exported', keys: 2 },
    { account_id: BETA, outcome: 'partial', keys: 1 },
    { account_id: GAMMA, outcome: 'failed', keys: 1, code: 'Throttling' },
    { account_id: DELTA, outcome: 'failed', keys: 0, code: null },
  ]);
  assert.deepEqual(m.failed_accounts, [
    { account_id: GAMMA, code: 'Throttling' },
    { account_id: DELTA, code: 'unknown' },
  ]);
  assert.deepEqual(m.users.failed.map((f) => [f.user_name, f.account_id]), [['bea', BETA], ['cat', BETA], ['zoe', BETA]]);
  assert.deepEqual(m.last_used, { mode: 'report', source: 'api', report_generated_time: '2026-11-28T10:00:00Z', from_report: 3, from_api: 1, dated: 2, null: 2, keys_vanished: 2, lookups_denied: 4 });
});

test('a snapshot with a failed account and no failed user is partial; last use defaults to the configured mode', async () => {
  const store = new MemoryStore();
  const { cp, file } = await organization(store);
  const view = { ...viewOf(cp, KEYS.runs), failedUsers: [] };
  const m = await finalizeSnapshot(store, stateOf(cp, file), input(cp, { view }));
  assert.equal(m.partial, true, 'gamma and delta failed');
  assert.deepEqual(m.last_used, { mode: 'report', source: 'report', report_generated_time: null, from_report: 3, from_api: 1, dated: 2, null: 2, keys_vanished: 2, lookups_denied: 4 });
});

test('each Parquet data file carries the snapshot id, time and its schema in its key-value metadata', async (t) => {
  const store = new MemoryStore();
  const { cp, file } = await organization(store, 'parquet');
  await finalizeSnapshot(store, stateOf(cp, file), input(cp, { rowsPerFile: 10 }));
  const dir = await mkdtemp(join(tmpdir(), 'snapshot-parquet-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const metadataOf = async (key: string) => {
    // parquetjs-lite reads files only (its typings here), and needs rawStatistics for timestamps.
    const path = join(dir, key.replaceAll('/', '_'));
    await writeFile(path, store.objects.get(key)!.body);
    const reader = await parquet.ParquetReader.openFile(path, { rawStatistics: true });
    try {
      const md = reader.getMetadata() as Record<string, string>;
      return { snapshot_id: md['snapshot_id'], snapshot_time: md['snapshot_time'], schema_name: md['schema_name'], schema_version: md['schema_version'] };
    } finally {
      await reader.close();
    }
  };
  const common = { snapshot_id: SNAPSHOT_ID, snapshot_time: '2026-11-28T11:10:00.000Z' };
  assert.deepEqual(await metadataOf(`${PUBLISH}part-00000.parquet`), { ...common, schema_name: SCHEMA_NAME, schema_version: String(SCHEMA_VERSION) });
  assert.deepEqual(await metadataOf(`${ACCOUNTS_STAGED}part-00000.parquet`), { ...common, schema_name: ACCOUNTS_SPEC.name, schema_version: String(ACCOUNTS_SPEC.version) });
});

/** A store that lists keys newest-name first: the Store contract sets no order, so nothing may rely on one. */
class ReverseListingStore extends MemoryStore {
  override async list(prefix: string): Promise<string[]> {
    return (await super.list(prefix)).reverse();
  }
}

test('staged snapshots are newest first and --keep keeps the newest, whatever order the store lists keys in', async () => {
  const store = new ReverseListingStore();
  const ids = ['20261125T000000Z', '20261126T000000Z', '20261127T000000Z'];
  for (const id of ids) {
    await store.write(`_staging/${id}/checkpoint.json`, 'x');
    await publishedFolder(store, 'access_keys', id);
  }
  assert.deepEqual((await listStaging(store)).map((s) => s.id), [...ids].reverse());
  assert.deepEqual(await applyRetention(store, 2), ['20261125T000000Z']);
  assert.deepEqual(store.keys('access_keys/snapshot_id=20261125T000000Z/'), []);
  assert.equal(store.keys('access_keys/snapshot_id=20261127T000000Z/').length, 3, 'the newest is kept');
});

test('removing a staged snapshot deletes everything but the lease in one call, the lease only with the folder', async () => {
  const store = new MemoryStore();
  for (const k of ['checkpoint.json', 'lease.json', 'runs/run-0a1b2c3d-000001.ndjson']) await store.write(`${KEYS.staging}${k}`, 'x');
  const left: string[][] = [];
  store.hook = (op) => void (op === 'deletePrefix' && left.push(store.keys(KEYS.staging)));
  await removeStaging(store, KEYS);
  assert.deepEqual(left, [[KEYS.lease]], 'only the lease is left for the last call');
  assert.deepEqual(store.keys('_staging/'), []);
});

/** Finalizes the snapshot, then crashes promote at the first store operation `crashAt` matches; returns the operations of the rerun. */
async function rerunAfterCrash(crashAt: (op: string, key: string) => boolean): Promise<string[]> {
  const store = new MemoryStore();
  await staged(store, [[['alice', 'AKIA1']]]);
  let crashed = false;
  store.hook = (op, key) => {
    if (!crashed && crashAt(op, key)) {
      crashed = true;
      throw new Crash(`${op} ${key}`);
    }
  };
  await assert.rejects(finishRun(store, 'feedf00d'), Crash);
  const before = store.log.length;
  await finishRun(store, 'c0ffee00');
  assert.equal(await isPublished(store, SNAPSHOT_ID), true);
  assert.deepEqual(store.keys(PUBLISHED_ACCOUNTS).length, 3, 'the accounts dataset is published');
  return store.log.slice(before);
}

test('a rerun after a crash between the two promotes promotes only the dataset not yet published', async () => {
  const ops = await rerunAfterCrash((op, key) => op === 'promote' && key.endsWith('/access_keys/'));
  assert.deepEqual(ops.filter((l) => l.startsWith('promote ')), [`promote ${KEYS.staging}publish-feedf00d/access_keys/`]);
});

test('a rerun after a crash once the snapshot is published promotes nothing again', async () => {
  const ops = await rerunAfterCrash((op, key) => op === 'write' && key === 'access_keys/_LATEST');
  assert.deepEqual(ops.filter((l) => l.startsWith('promote ')), []);
  assert.equal(ops.filter((l) => l.startsWith('exists accounts/')).length, 0, 'not even a look at the datasets');
});

/** A store that counts the data streams open: read streams started and not yet finished or closed. */
class StreamCountingStore extends MemoryStore {
  open = 0;
  override async *readStream(key: string): AsyncIterable<Buffer> {
    this.open++;
    try {
      yield* super.readStream(key);
    } finally {
      this.open--;
    }
  }
}

test('a stop during finalize leaves no part open for reading', async () => {
  const store = new StreamCountingStore();
  // Parts of more rows than a merged batch holds (1,024), so a stop meets them half read.
  const part = (from: number): [string, string][] => Array.from({ length: 600 }, (_, i) => [`user${from + i}`, `AKIA${from + i}`]);
  const { cp, file } = await staged(store, [part(1000), part(2000)]);
  const stop = new AbortController();
  const stopAfterFirstFile = (name: string) => void (name === 'data-file-written' && stop.abort());
  await assert.rejects(withFaultHook(stopAfterFirstFile, () => finalizeSnapshot(store, stateOf(cp, file), input(cp, { stop: stop.signal }))), (err: unknown) => (err as Error).name === 'AbortError');
  assert.equal(store.open, 0, 'every part read is closed');
});

test('failed users are listed by account, name and id: the same users always in the same order, whatever order they failed in', async () => {
  for (const reversed of [false, true]) {
    const store = new MemoryStore();
    const { cp, file } = await organization(store);
    const [bea, cat, zoe] = cp.failedUsers;
    // Same names in another account, and a same-named user with another id.
    const other = (f: typeof bea, accountId: string, userId = f!.user.userId) => ({ ...f!, user: { ...f!.user, accountId, userId } });
    const failedUsers = [zoe!, other(bea, ALPHA), bea!, other(cat, ALPHA), other(bea, ALPHA, 'AIDA0'), cat!];
    const view = { ...viewOf(cp, KEYS.runs), failedUsers: reversed ? failedUsers.reverse() : failedUsers };
    const m = await finalizeSnapshot(store, stateOf(cp, file), input(cp, { view, lastUse: ORG_LAST_USE }));
    assert.deepEqual(
      m.users.failed.map((f) => [f.account_id, f.user_name, f.user_id]),
      [[ALPHA, 'bea', 'AIDA0'], [ALPHA, 'bea', bea!.user.userId], [ALPHA, 'cat', cat!.user.userId], [BETA, 'bea', bea!.user.userId], [BETA, 'cat', cat!.user.userId], [BETA, 'zoe', zoe!.user.userId]],
    );
  }
});
