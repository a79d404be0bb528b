import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Checkpoint, CheckpointFile, fingerprintOf, type DataConfig } from '../pipeline/checkpoint.ts';
import { ExportError } from '../pipeline/errors.ts';
import type { UserRef } from '../pipeline/items.ts';
import { removeOrphans } from '../pipeline/runs.ts';
import { LocalStore } from '../pipeline/store/local.ts';
import { withTemp } from './support/scope.ts';

const config: DataConfig = { format: 'csv', pathPrefix: '/', statuses: [], endpoint: null, schemaVersion: 1, lastUsed: 'off', accounts: 'self', shard: null };
const A = '123456789012';
/** A user: the id is what identifies it; the name may change. */
const u = (id: string, name = id.toLowerCase()): UserRef => ({
  userName: name,
  userId: `AIDA${id}`,
  accountId: '123456789012',
  arn: `arn:aws:iam::123456789012:user/${name}`,
  path: '/',
  createDate: '2020-01-01T00:00:00.000Z',
});
const fresh = () => {
  const cp = new Checkpoint('20261128T111000Z', new Date('2026-11-28T11:10:00.123Z'), config);
  cp.selectAccounts([{ id: A, name: null }]);
  return cp;
};
const roundTrip = (cp: Checkpoint) => Checkpoint.fromJSON(JSON.parse(JSON.stringify(cp.toJSON())), 'x');
/** True when the account's users are all read (the source then closes it: account-done). */
const accountComplete = (cp: Checkpoint) => cp.account(A)?.progress?.complete === true;
/** The serialized progress of the one account. */
const progressOf = (cp: Checkpoint) => cp.toJSON().accounts.find((a) => a.id === A)!.progress!;
/** The full scan after the listing found nobody unknown. */
const scanned = { kind: 'users-scanned', account: A, users: [], complete: true } as const;

test('listed users are pending until paged; the ListUsers token moves with every page', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: 't2', users: [u('A'), u('B')] });
  assert.equal(progressOf(cp).listing.token, 't2');
  assert.deepEqual(progressOf(cp).pending.map((p) => p.userId), ['AIDAA', 'AIDAB']);
  cp.apply({ kind: 'user-done', user: u('A') });
  cp.apply({ kind: 'users-page', account: A, token: 't2', nextToken: null, users: [u('C')] });
  cp.apply(scanned);
  assert.equal(accountComplete(cp), false, 'B and C are pending');
  const plan = roundTrip(cp).resumePlan(A);
  assert.equal(plan.listingDone, true);
  assert.deepEqual(plan.resume.map((r) => [r.user.userId, r.token]), [['AIDAB', null], ['AIDAC', null]]);
  assert.deepEqual([...plan.known].sort(), ['AIDAA', 'AIDAB', 'AIDAC']);
  cp.apply({ kind: 'user-done', user: u('B') });
  cp.apply({ kind: 'user-done', user: u('C') });
  assert.equal(accountComplete(cp), true);
  assert.equal(cp.counters.usersExported, 3);
});

test('a user in progress keeps its StartingToken and blocks completion', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [u('A'), u('B')] });
  cp.apply(scanned);
  cp.apply({ kind: 'user-done', user: u('B') });
  cp.apply({ kind: 'user-page', user: u('A'), nextToken: 'k1' });
  const plan = roundTrip(cp).resumePlan(A);
  assert.deepEqual(plan.resume, [{ user: u('A'), token: 'k1' }]);
  assert.equal(accountComplete(cp), false);
  cp.apply({ kind: 'user-done', user: u('A') });
  assert.equal(accountComplete(cp), true);
});

test('a finished user listed again under a new name is known by its id and never started again', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: 'p2', users: [u('A', 'alice')] });
  cp.apply({ kind: 'user-done', user: u('A', 'alice') });
  // Renamed to zed: listed on a later page.
  cp.apply({ kind: 'users-page', account: A, token: 'p2', nextToken: null, users: [u('A', 'zed')] });
  cp.apply(scanned);
  assert.equal(accountComplete(cp), true);
  assert.deepEqual(progressOf(cp).pending, []);
  assert.ok(roundTrip(cp).resumePlan(A).known.has('AIDAA'));
  assert.equal(cp.counters.usersExported, 1);
});

test('a pending user renamed before it started is resumed under its new name', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: 'p2', users: [u('A', 'alice')] });
  cp.apply({ kind: 'users-page', account: A, token: 'p2', nextToken: null, users: [u('A', 'alicia')] });
  assert.deepEqual(roundTrip(cp).resumePlan(A).resume.map((r) => r.user.userName), ['alicia']);
});

test('missing users block completion until found (then paged again, dirty if pages of them were committed) or vanished', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [u('A'), u('B'), u('C')] });
  cp.apply(scanned);
  cp.apply({ kind: 'user-page', user: u('A'), nextToken: 'ka' });
  cp.apply({ kind: 'user-missing', user: u('A'), token: 'ka' });
  cp.apply({ kind: 'user-missing', user: u('B'), token: null });
  cp.apply({ kind: 'user-done', user: u('C') });
  assert.equal(accountComplete(cp), false);
  assert.deepEqual(roundTrip(cp).resumePlan(A).missing.map((m) => m.user.userId), ['AIDAA', 'AIDAB']);
  cp.apply({ kind: 'user-found', user: u('A', 'a2') });
  cp.apply({ kind: 'user-vanished', user: u('B') });
  assert.deepEqual([...cp.dirtyUsers], ['AIDAA'], 'A had committed pages: its keys may come twice');
  assert.deepEqual(roundTrip(cp).resumePlan(A).resume, [{ user: u('A', 'a2'), token: null }]);
  cp.apply({ kind: 'user-done', user: u('A', 'a2') });
  assert.equal(accountComplete(cp), true);
  assert.equal(cp.counters.usersVanished, 1);
  assert.deepEqual(roundTrip(cp).toJSON().dirty, ['AIDAA'], 'dirty users survive serialization for the merge');
});

test('a restarted user is dirty only when pages of it were committed; every restart is counted', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [u('A'), u('B')] });
  cp.apply({ kind: 'user-restarted', user: u('B') });
  cp.apply({ kind: 'user-page', user: u('A'), nextToken: 'ka' });
  cp.apply({ kind: 'user-restarted', user: u('A') });
  assert.deepEqual([...cp.dirtyUsers], ['AIDAA']);
  assert.equal(cp.counters.restartedListings, 2);
  assert.deepEqual(roundTrip(cp).resumePlan(A).resume.map((r) => [r.user.userId, r.token]).sort(), [['AIDAA', null], ['AIDAB', null]]);
});

test('the export is complete only once a full scan after the listing found nobody unknown; users it finds become pending', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [u('A')] });
  cp.apply({ kind: 'user-done', user: u('A') });
  assert.equal(accountComplete(cp), false, 'listed to the end, not verified');
  // A user renamed behind the listing's cursor: the scan finds it.
  cp.apply({ kind: 'users-scanned', account: A, users: [u('A', 'a2'), u('B')], complete: false });
  assert.deepEqual(roundTrip(cp).resumePlan(A).resume.map((r) => r.user.userId), ['AIDAB'], 'A is known by id: only B is new');
  cp.apply({ kind: 'user-done', user: u('B') });
  assert.equal(accountComplete(cp), false);
  cp.apply(scanned);
  assert.equal(accountComplete(cp), true);
  assert.equal(roundTrip(cp).resumePlan(A).listingVerified, true);
});

test('a ListUsers restart lists from the start again, keeping every known user', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: 'p2', users: [u('A')] });
  cp.apply({ kind: 'user-done', user: u('A') });
  cp.apply({ kind: 'users-restarted', account: A });
  const plan = roundTrip(cp).resumePlan(A);
  assert.equal(plan.listToken, null);
  assert.equal(plan.listingDone, false);
  assert.ok(plan.known.has('AIDAA'));
  assert.equal(cp.counters.restartedListings, 1);
});

test('failed users do not block completion, keep code and token, and are retried on a resume of the export', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [u('A'), u('B')] });
  cp.apply(scanned);
  cp.apply({ kind: 'user-failed', user: u('A'), code: 'AccessDenied', token: 'k9' });
  cp.apply({ kind: 'user-done', user: u('B') });
  assert.equal(accountComplete(cp), true);
  assert.deepEqual(cp.failedUsers.map((f) => [f.user.userName, f.code, f.token]), [['a', 'AccessDenied', 'k9']]);
  const again = roundTrip(cp);
  again.beginResume();
  assert.equal(accountComplete(again), false);
  assert.deepEqual(again.resumePlan(A).resume, [{ user: u('A'), token: 'k9' }]);
  assert.equal(again.resumes, 1);
  again.apply({ kind: 'user-done', user: u('A') });
  assert.equal(accountComplete(again), true);
  assert.deepEqual(again.failedUsers, []);
});

test('once the export is over, a resume keeps the failed users exactly: a partial snapshot stays partial', () => {
  for (const phase of ['finalize', 'publishing'] as const) {
    const cp = fresh();
    cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [u('A'), u('B')] });
    cp.apply(scanned);
    cp.apply({ kind: 'user-failed', user: u('A'), code: 'AccessDenied', token: null });
    cp.apply({ kind: 'user-done', user: u('B') });
    cp.phase = phase;
    if (phase === 'publishing') cp.publishing = { dir: '_staging/x/publish-1/', datasets: [{ name: 'access_keys', files: ['_SUCCESS'] }] };
    const again = roundTrip(cp);
    again.beginResume();
    assert.deepEqual(again.failedUsers.map((f) => f.user.userId), ['AIDAA'], phase);
    assert.equal(accountComplete(again), true, phase);
  }
});

test('the fingerprint covers the options that shape the data and ignores the order of statuses', () => {
  assert.equal(fingerprintOf({ ...config, statuses: ['Active', 'Expired'] }), fingerprintOf({ ...config, statuses: ['Expired', 'Active'] }));
  for (const other of [{ format: 'parquet' as const }, { pathPrefix: '/eng/' }, { statuses: ['Active'] }, { endpoint: 'http://x' }, { schemaVersion: 2 }]) {
    assert.notEqual(fingerprintOf({ ...config, ...other }), fingerprintOf(config));
  }
});

test('create, load and save round-trip through the store; the file is private', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const cp = fresh();
    cp.apply({ kind: 'users-page', account: A, token: null, nextToken: 'p2', users: [u('A')] });
    cp.addPart({ file: 'run-0a1b2c3d-000001.ndjson', rows: 3, sha256: 'ab' });
    const file = await CheckpointFile.create(store, '_staging/x/checkpoint.json', cp);
    cp.apply({ kind: 'user-done', user: u('A') });
    await file.save(cp);
    assert.equal((await stat(join(dir, '_staging/x/checkpoint.json'))).mode & 0o777, 0o600);
    const back = await CheckpointFile.load(store, '_staging/x/checkpoint.json');
    assert.deepEqual(back?.checkpoint.toJSON(), cp.toJSON());
    assert.equal(await CheckpointFile.load(store, '_staging/x/missing.json'), undefined);
  });
});

test('a save fails with LEASE_LOST and changes nothing once another run wrote the checkpoint (fencing)', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const key = '_staging/x/checkpoint.json';
    const mine = fresh();
    const file = await CheckpointFile.create(store, key, mine);
    // Another run takes over: it loads and saves (its resume).
    const theirs = (await CheckpointFile.load(store, key))!;
    theirs.checkpoint.beginResume();
    await theirs.file.save(theirs.checkpoint);
    const before = await readFile(join(dir, key), 'utf8');
    mine.addPart({ file: 'run-0a1b2c3d-000001.ndjson', rows: 1, sha256: 'x' });
    await assert.rejects(file.save(mine), (err: unknown) => err instanceof ExportError && err.code === 'LEASE_LOST');
    assert.equal(await readFile(join(dir, key), 'utf8'), before, 'the overtaken run changed nothing');
    await assert.rejects(CheckpointFile.create(store, key, fresh()), (err: unknown) => err instanceof ExportError && err.code === 'LEASE_LOST', 'a second create of the same snapshot fails too');
  });
});

test('a corrupt checkpoint is CHECKPOINT_CORRUPT naming the file and --fresh; another format version is CHECKPOINT_MISMATCH', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const key = 'checkpoint.json';
    const file = join(dir, key);
    const valid = JSON.stringify(fresh().toJSON());
    for (const text of ['{not json', '[]', valid.replace(/"fingerprint":"[0-9a-f]+"/, '"fingerprint":"0000"'), valid.slice(0, valid.length / 2), valid.replace('"commits":0', '"commits":-1')]) {
      await writeFile(file, text);
      await assert.rejects(CheckpointFile.load(store, key), (err: unknown) => err instanceof ExportError && err.code === 'CHECKPOINT_CORRUPT' && err.message.includes(file) && err.message.includes('--fresh'), text.slice(0, 40));
    }
    await writeFile(file, valid.replace('"version":2', '"version":1'));
    await assert.rejects(CheckpointFile.load(store, key), (err: unknown) => err instanceof ExportError && err.code === 'CHECKPOINT_MISMATCH' && err.message.includes('--fresh'));
  });
});

test('part files the checkpoint does not name are orphans and are deleted', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    await store.write('runs/run-0a1b2c3d-000001.ndjson', 'x');
    await store.write('runs/run-0a1b2c3d-000002.ndjson', 'y');
    await writeFile(join(dir, 'runs/.run-0a1b2c3d-000003.ndjson.123.tmp'), 'z');
    const removed = await removeOrphans(store, 'runs/', [{ file: 'run-0a1b2c3d-000001.ndjson', rows: 1, sha256: '' }]);
    assert.deepEqual(removed.sort(), ['runs/.run-0a1b2c3d-000003.ndjson.123.tmp', 'runs/run-0a1b2c3d-000002.ndjson']);
    assert.equal(await readFile(join(dir, 'runs/run-0a1b2c3d-000001.ndjson'), 'utf8'), 'x');
  });
});

const B = '210987654321';
const userOf = (account: string, id: string) => ({ ...u(id), accountId: account, arn: `arn:aws:iam::${account}:user/${id.toLowerCase()}` });

test('accounts go pending, active, done: a done account keeps counts and failed users, not its progress', () => {
  const cp = new Checkpoint('20261128T111000Z', new Date('2026-11-28T11:10:00.123Z'), { ...config, accounts: 'organization' });
  assert.equal(cp.exportComplete, false, 'accounts not selected yet');
  cp.selectAccounts([{ id: A, name: 'prod' }, { id: B, name: 'dev' }]);
  assert.deepEqual(cp.accounts.map((e) => [e.ref.id, e.status]), [[A, 'pending'], [B, 'pending']]);
  cp.apply({ kind: 'account-started', account: { id: A, name: 'prod' }, facts: { alias: 'prod-alias', rootAccessKeysPresent: false } });
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [userOf(A, 'X'), userOf(A, 'Y')] });
  cp.apply({ kind: 'users-scanned', account: A, users: [], complete: true });
  cp.apply({ kind: 'user-done', user: userOf(A, 'X') });
  cp.apply({ kind: 'user-failed', user: userOf(A, 'Y'), code: 'AccessDenied', token: null });
  assert.throws(() => cp.apply({ kind: 'account-done', account: B }), (e: unknown) => e instanceof ExportError && e.code === 'INTERNAL', 'an account with users left cannot close');
  cp.apply({ kind: 'account-done', account: A });
  cp.apply({ kind: 'account-failed', account: B, code: 'AccessDenied' });
  assert.equal(cp.exportComplete, true);
  const json = roundTrip(cp).toJSON();
  const a = json.accounts.find((e) => e.id === A)!;
  assert.equal(a.progress, null, 'no user sets kept for a done account');
  assert.deepEqual([a.summary?.exported, a.summary?.failed.map((f) => f.user.userId)], [1, ['AIDAY']]);
  assert.deepEqual(a.facts, { alias: 'prod-alias', rootAccessKeysPresent: false });
  assert.deepEqual(roundTrip(cp).failedAccounts.map((e) => [e.ref.id, e.code]), [[B, 'AccessDenied']]);
  assert.deepEqual(roundTrip(cp).failedUsers.map((f) => f.user.userId), ['AIDAY']);
  assert.equal(cp.counters.usersExported, 1);
});

test('a resume retries failed accounts and reopens a done account for its failed users only', () => {
  const cp = new Checkpoint('20261128T111000Z', new Date(), { ...config, accounts: 'organization' });
  cp.selectAccounts([{ id: A, name: null }, { id: B, name: null }]);
  cp.apply({ kind: 'account-started', account: { id: A, name: null }, facts: { alias: null, rootAccessKeysPresent: null } });
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [userOf(A, 'X'), userOf(A, 'Y')] });
  cp.apply({ kind: 'users-scanned', account: A, users: [], complete: true });
  cp.apply({ kind: 'user-done', user: userOf(A, 'X') });
  cp.apply({ kind: 'user-failed', user: userOf(A, 'Y'), code: 'AccessDenied', token: 'ty' });
  cp.apply({ kind: 'account-done', account: A });
  cp.apply({ kind: 'account-failed', account: B, code: 'AccessDenied' });
  const again = roundTrip(cp);
  again.beginResume();
  assert.equal(again.exportComplete, false);
  assert.deepEqual(again.accounts.map((e) => [e.ref.id, e.status]), [[A, 'active'], [B, 'pending']]);
  const plan = again.resumePlan(A);
  assert.deepEqual(plan.resume, [{ user: userOf(A, 'Y'), token: 'ty' }], 'only the failed user is paged again');
  assert.ok(plan.listingDone && plan.listingVerified, 'the account is not listed again');
  assert.ok(plan.known.has('AIDAY'));
  again.apply({ kind: 'user-done', user: userOf(A, 'Y') });
  again.apply({ kind: 'account-done', account: A });
  assert.equal(again.account(A)?.summary?.exported, 2);
  assert.equal(again.counters.usersExported, 2);
});

test('the checkpoint of a thousand done accounts stays small: done accounts keep no user sets', () => {
  const cp = new Checkpoint('20261128T111000Z', new Date(), { ...config, accounts: 'organization' });
  const ids = Array.from({ length: 1000 }, (_, i) => String(100000000000 + i));
  cp.selectAccounts(ids.map((id) => ({ id, name: `acct-${id}` })));
  for (const id of ids) {
    cp.apply({ kind: 'account-started', account: { id, name: `acct-${id}` }, facts: { alias: null, rootAccessKeysPresent: false } });
    const users = Array.from({ length: 50 }, (_, i) => userOf(id, `${id}U${i}`));
    cp.apply({ kind: 'users-page', account: id, token: null, nextToken: null, users });
    cp.apply({ kind: 'users-scanned', account: id, users: [], complete: true });
    for (const user of users) cp.apply({ kind: 'user-done', user });
    cp.apply({ kind: 'account-done', account: id });
  }
  const size = JSON.stringify(cp.toJSON()).length;
  assert.ok(size < 400_000, `${size} bytes for 1,000 accounts of 50 users`);
  assert.equal(cp.exportComplete, true);
  assert.equal(cp.counters.usersExported, 50_000);
});
