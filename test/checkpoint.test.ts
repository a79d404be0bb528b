import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Checkpoint, fingerprintOf, loadCheckpoint, saveCheckpoint, type DataConfig } from '../pipeline/checkpoint.ts';
import { ExportError } from '../pipeline/errors.ts';
import type { UserRef } from '../pipeline/items.ts';
import { removeOrphans } from '../pipeline/runs.ts';

const config: DataConfig = { format: 'csv', pathPrefix: '/', statuses: [], endpoint: null };
const u = (name: string): UserRef => ({ userName: name, userId: `AIDA${name.toUpperCase()}`, accountId: '123456789012' });
const fresh = () => new Checkpoint('20261128T111000Z', new Date('2026-11-28T11:10:00.123Z'), config);

test('a listed page is kept until every user in it is finished, then the ListUsers token moves past it', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: 't2', users: [u('a'), u('b')] });
  assert.equal(cp.toJSON().users.listToken, null);
  cp.apply({ kind: 'user-done', user: u('a') });
  assert.deepEqual(cp.toJSON().users.finished, ['a']);
  cp.apply({ kind: 'user-done', user: u('b') });
  const j = cp.toJSON();
  assert.equal(j.users.listToken, 't2');
  assert.deepEqual(j.users.finished, [], 'names of a finished page are forgotten');
  assert.equal(cp.exportComplete, false);
});

test('a user in progress keeps its StartingToken and blocks its page', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: null, users: [u('a'), u('b')] });
  cp.apply({ kind: 'user-done', user: u('b') });
  cp.apply({ kind: 'user-page', user: u('a'), nextToken: 'k1' });
  const plan = cp.resumePlan();
  assert.equal(plan.listToken, null);
  assert.equal(plan.listingDone, false, 'the page must be re-listed, a user in it is unfinished');
  assert.deepEqual(plan.resume, [{ user: u('a'), token: 'k1' }]);
  assert.ok(plan.skip.has('a') && plan.skip.has('b'));
  cp.apply({ kind: 'user-done', user: u('a') });
  assert.equal(cp.exportComplete, true);
});

test('vanished users finish their page and are counted', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: null, users: [u('a')] });
  cp.apply({ kind: 'user-vanished', user: u('a') });
  assert.equal(cp.exportComplete, true);
  assert.equal(cp.counters.usersVanished, 1);
  assert.equal(cp.counters.usersExported, 0);
});

test('failed users do not block completion, are kept with their code and token, and are retried on resume', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: null, users: [u('a'), u('b')] });
  cp.apply({ kind: 'user-failed', user: u('a'), code: 'AccessDenied', token: 'k9' });
  cp.apply({ kind: 'user-done', user: u('b') });
  assert.equal(cp.exportComplete, true);
  assert.deepEqual(cp.failedUsers.map((f) => [f.user.userName, f.code, f.token]), [['a', 'AccessDenied', 'k9']]);
  const again = Checkpoint.fromJSON(JSON.parse(JSON.stringify(cp.toJSON())), 'x');
  again.beginResume();
  assert.equal(again.exportComplete, false);
  assert.deepEqual(again.resumePlan().resume, [{ user: u('a'), token: 'k9' }]);
  assert.equal(again.resumes, 1);
  again.apply({ kind: 'user-done', user: u('a') });
  assert.equal(again.exportComplete, true);
  assert.deepEqual(again.failedUsers, []);
});

test('a resumed snapshot re-lists from the oldest unfinished page and skips the users finished since', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: 'p2', users: [u('a')] });
  cp.apply({ kind: 'user-done', user: u('a') });
  cp.apply({ kind: 'users-page', token: 'p2', nextToken: 'p3', users: [u('b'), u('c'), u('d')] });
  cp.apply({ kind: 'user-done', user: u('c') });
  cp.apply({ kind: 'user-page', user: u('b'), nextToken: 'kb' });
  const restored = Checkpoint.fromJSON(JSON.parse(JSON.stringify(cp.toJSON())), 'x');
  restored.beginResume();
  const plan = restored.resumePlan();
  assert.equal(plan.listToken, 'p2');
  assert.deepEqual([...plan.skip].sort(), ['b', 'c']);
  assert.deepEqual(plan.resume.map((r) => [r.user.userName, r.token]), [['b', 'kb']]);
  // The re-listed page: c is finished, b resumes, d starts; the page completes when b and d do.
  restored.apply({ kind: 'users-page', token: 'p2', nextToken: null, users: [u('b'), u('c'), u('d')] });
  restored.apply({ kind: 'user-done', user: u('b') });
  assert.equal(restored.exportComplete, false);
  restored.apply({ kind: 'user-done', user: u('d') });
  assert.equal(restored.exportComplete, true);
  assert.deepEqual(restored.toJSON().users.finished, []);
});

test('the fingerprint covers the options that shape the data and ignores the order of statuses', () => {
  assert.equal(fingerprintOf({ ...config, statuses: ['Active', 'Expired'] }), fingerprintOf({ ...config, statuses: ['Expired', 'Active'] }));
  for (const other of [{ format: 'parquet' as const }, { pathPrefix: '/eng/' }, { statuses: ['Active'] }, { endpoint: 'http://x' }]) {
    assert.notEqual(fingerprintOf({ ...config, ...other }), fingerprintOf(config));
  }
});

test('save and load round-trip; the file is private', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ike-cp-'));
  try {
    const file = join(dir, 'checkpoint.json');
    const cp = fresh();
    cp.apply({ kind: 'users-page', token: null, nextToken: 'p2', users: [u('a')] });
    cp.addPart({ file: 'run-000001.ndjson', rows: 3, sha256: 'ab' });
    await saveCheckpoint(file, cp);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const back = await loadCheckpoint(file);
    assert.deepEqual(back?.toJSON(), cp.toJSON());
    assert.equal(await loadCheckpoint(join(dir, 'missing.json')), null);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a corrupt checkpoint is CHECKPOINT_CORRUPT naming the file and --fresh, never a silent restart', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ike-cp-'));
  try {
    const file = join(dir, 'checkpoint.json');
    const valid = JSON.stringify(fresh().toJSON());
    for (const text of ['{not json', '[]', valid.replace('"version":1', '"version":9'), valid.replace(/"fingerprint":"[0-9a-f]+"/, '"fingerprint":"0000"'), valid.slice(0, valid.length / 2)]) {
      await writeFile(file, text);
      await assert.rejects(loadCheckpoint(file), (err: unknown) => err instanceof ExportError && err.code === 'CHECKPOINT_CORRUPT' && err.message.includes(file) && err.message.includes('--fresh'));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('part files the checkpoint does not name are orphans and are deleted', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ike-cp-'));
  try {
    await writeFile(join(dir, 'run-000001.ndjson'), 'x');
    await writeFile(join(dir, 'run-000002.ndjson'), 'y');
    await writeFile(join(dir, '.run-000003.ndjson.123.tmp'), 'z');
    const removed = await removeOrphans(dir, [{ file: 'run-000001.ndjson', rows: 1, sha256: '' }]);
    assert.deepEqual(removed.sort(), ['.run-000003.ndjson.123.tmp', 'run-000002.ndjson']);
    assert.equal(await readFile(join(dir, 'run-000001.ndjson'), 'utf8'), 'x');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
