import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { tempPathFor } from '../pipeline/fsutil.ts';
import { Checkpoint, CheckpointFile, fingerprintOf, serialize, type DataConfig, type PartInfo } from '../pipeline/checkpoint.ts';
import { ExportError } from '../pipeline/errors.ts';
import type { StateEvent, UserRef } from '../pipeline/items.ts';
import { removeOrphans } from '../pipeline/runs.ts';
import { LocalStore } from '../pipeline/store/local.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { Crash, withFaultHook } from './support/fault-points.ts';
import { MemoryStore } from './support/memory-store.ts';
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
/** Through checkpoint.json's own bytes (serialize), as a rerun reads it. */
const roundTrip = (cp: Checkpoint) => Checkpoint.fromJSON(JSON.parse(serialize(cp).toString('utf8')), 'x');
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

test('a crash midway through a checkpoint save leaves the last saved checkpoint loadable, and the next save goes on from it', async () => {
  await withTemp(async (dir) => {
    const store = new LocalStore(dir);
    const key = '_staging/x/checkpoint.json';
    const cp = fresh();
    cp.apply({ kind: 'users-page', account: A, token: null, nextToken: 'p2', users: [u('A'), u('B')] });
    const file = await CheckpointFile.create(store, key, cp);
    const saved = JSON.parse(JSON.stringify(cp.toJSON()));
    cp.apply({ kind: 'user-done', user: u('A') });
    cp.addPart({ file: 'run-0a1b2c3d-000001.ndjson', rows: 3, sha256: 'ab' });
    await assert.rejects(
      withFaultHook(
        (name, detail) => {
          if (name === 'store-write-midway' && detail === key) throw new Crash(name);
        },
        () => file.save(cp),
      ),
      Crash,
    );
    // What a rerun finds: the checkpoint before the save, whole (not half of the new one).
    const back = await CheckpointFile.load(store, key);
    assert.deepEqual(back?.checkpoint.toJSON(), saved);
    // The run that crashed would not go on, but the file is at the version it holds.
    await file.save(cp);
    assert.deepEqual((await CheckpointFile.load(store, key))?.checkpoint.toJSON(), cp.toJSON());
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
    // A part upload a crash abandoned: the store's temp file, not a key (it goes with the staging folder).
    const abandoned = basename(tempPathFor(join(dir, 'runs/run-0a1b2c3d-000003.ndjson')));
    await writeFile(join(dir, 'runs', abandoned), 'z');
    const removed = await removeOrphans(store, 'runs/', [{ file: 'run-0a1b2c3d-000001.ndjson', rows: 1, sha256: '' }]);
    assert.deepEqual(removed.sort(), ['runs/run-0a1b2c3d-000002.ndjson']);
    assert.equal(await readFile(join(dir, 'runs/run-0a1b2c3d-000001.ndjson'), 'utf8'), 'x');
    await store.deletePrefix('runs/');
    assert.deepEqual(await readdir(dir), [], 'the abandoned temp goes with its folder');
  });
});

const B = '210987654321';
const userOf = (account: string, id: string) => ({ ...u(id), accountId: account, arn: `arn:aws:iam::${account}:user/${id.toLowerCase()}` });

test('accounts go pending, active, done: a done account keeps counts and failed users, not its progress', () => {
  const cp = new Checkpoint('20261128T111000Z', new Date('2026-11-28T11:10:00.123Z'), { ...config, accounts: 'organization' });
  assert.equal(cp.exportComplete, false, 'accounts not selected yet');
  cp.selectAccounts([{ id: A, name: 'prod' }, { id: B, name: 'dev' }]);
  assert.deepEqual(cp.accounts.map((e) => [e.ref.id, e.status]), [[A, 'pending'], [B, 'pending']]);
  cp.apply({ kind: 'account-started', account: { id: A, name: 'prod' } });
  cp.apply({ kind: 'account-facts', account: A, facts: { alias: 'prod-alias', rootAccessKeysPresent: false } });
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
  cp.apply({ kind: 'account-started', account: { id: A, name: null } });
  cp.apply({ kind: 'account-facts', account: A, facts: { alias: null, rootAccessKeysPresent: null } });
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
    cp.apply({ kind: 'account-started', account: { id, name: `acct-${id}` } });
    cp.apply({ kind: 'account-facts', account: id, facts: { alias: null, rootAccessKeysPresent: false } });
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

type Where = 'pending' | 'inProgress' | 'missing' | 'failed' | 'finished';
interface Known {
  where: Where;
  user: UserRef;
  token: string | null;
  code?: string;
}

/**
 * The checkpoint as a model: seeded rounds of event sequences such as the source
 * emits them (users listed page by page or found by a scan, paged, restarted,
 * missing then found or vanished, failed, finished; listings restarted; a resume of
 * the export in between), checked after every event against a plain model of the
 * documented semantics: each known user in exactly one set with its latest name
 * and token, dirty exactly when committed pages of it may come again, the counters,
 * completion, the resume plan, and a lossless round trip through JSON.
 */
test('any sequence of events the source emits leaves the checkpoint equal to the model, and it round-trips losslessly', () => {
  const random = mulberry32(4242);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  for (let round = 0; round < 80; round++) {
    const cp = fresh();
    const model = new Map<string, Known>();
    const dirty = new Set<string>();
    const counters = { exported: 0, vanished: 0, restarted: 0 };
    let listing = { token: null as string | null, done: false, verified: false };
    let resumes = 0;
    let nextUser = 0;
    let nextToken = 0;
    const newUser = () => u(`U${nextUser++}`);
    const renamed = (k: Known) => (random() < 0.3 ? u(k.user.userId.slice(4), `${k.user.userName}-r${nextToken}`) : k.user);
    const committedSome = (k: Known | undefined) => k !== undefined && k.where !== 'pending' && k.where !== 'finished' && k.token !== null;
    const inSet = (where: Where) => [...model.values()].filter((k) => k.where === where);
    const log: string[] = [];
    for (let step = 0; step < 30; step++) {
      const open = [...model.values()].filter((k) => k.where === 'pending' || k.where === 'inProgress');
      const choice = random();
      let event: StateEvent;
      if (choice < 0.15 && !listing.done) {
        const users = Array.from({ length: Math.floor(random() * 3) }, () => (random() < 0.2 && model.size > 0 ? renamed(pick([...model.values()])) : newUser()));
        const next = random() < 0.3 ? null : `L${nextToken++}`;
        event = { kind: 'users-page', account: A, token: listing.token, nextToken: next, users };
        for (const user of users) {
          const k = model.get(user.userId);
          if (!k) model.set(user.userId, { where: 'pending', user, token: null });
          else if (k.where === 'pending') k.user = user;
        }
        listing = { token: next, done: next === null, verified: listing.verified };
      } else if (choice < 0.2 && listing.done) {
        const users = Array.from({ length: Math.floor(random() * 2) }, () => (random() < 0.3 && model.size > 0 ? pick([...model.values()]).user : newUser()));
        const complete = random() < 0.5;
        event = { kind: 'users-scanned', account: A, users, complete };
        for (const user of users) if (!model.has(user.userId)) model.set(user.userId, { where: 'pending', user, token: null });
        if (complete) listing.verified = true;
      } else if (choice < 0.23) {
        event = { kind: 'users-restarted', account: A };
        listing = { token: null, done: false, verified: false };
        counters.restarted++;
      } else if (choice < 0.26) {
        // A rerun of the export: failed users are retried.
        cp.beginResume();
        resumes++;
        log.push('beginResume');
        for (const k of inSet('failed')) k.where = k.token === null ? 'pending' : 'inProgress';
        check(`after beginResume`);
        continue;
      } else if (open.length > 0 && choice < 0.85) {
        const k = pick(open);
        const user = k.user;
        const what = random();
        if (what < 0.4) {
          event = { kind: 'user-page', user, nextToken: `K${nextToken++}` };
          Object.assign(k, { where: 'inProgress', token: event.nextToken });
        } else if (what < 0.6) {
          event = { kind: 'user-done', user };
          Object.assign(k, { where: 'finished', token: null });
          counters.exported++;
        } else if (what < 0.7) {
          event = { kind: 'user-restarted', user };
          if (committedSome(k) || dirty.has(user.userId)) dirty.add(user.userId);
          Object.assign(k, { where: 'pending', token: null });
          counters.restarted++;
        } else if (what < 0.85) {
          event = { kind: 'user-missing', user, token: k.token };
          if (committedSome(k) || dirty.has(user.userId)) dirty.add(user.userId);
          k.where = 'missing';
        } else {
          event = { kind: 'user-failed', user, code: pick(['AccessDenied', 'ServiceFailure']), token: k.token };
          Object.assign(k, { where: 'failed', code: event.code });
        }
      } else {
        const missing = inSet('missing');
        if (missing.length === 0) continue;
        const k = pick(missing);
        if (random() < 0.5) {
          const user = renamed(k);
          event = { kind: 'user-found', user };
          Object.assign(k, { where: 'pending', user, token: null });
        } else {
          event = { kind: 'user-vanished', user: k.user };
          Object.assign(k, { where: 'finished', token: null });
          counters.vanished++;
        }
      }
      cp.apply(event);
      log.push(JSON.stringify(event));
      check(`after ${event.kind}`);
    }
    // The source closes a complete account; only then is the export complete, and the
    // account keeps its counts and failed users, not its user sets.
    if (accountComplete(cp)) {
      cp.apply({ kind: 'account-done', account: A });
      assert.equal(cp.exportComplete, true, `round ${round}: complete once the account is done`);
      const closed = cp.toJSON().accounts.find((e) => e.id === A)!;
      assert.equal(closed.progress, null, `round ${round}: no user sets kept`);
      assert.deepEqual([closed.summary?.exported, closed.summary?.vanished, closed.summary?.failed.map((f) => f.user.userId).sort()], [counters.exported, counters.vanished, inSet('failed').map((k) => k.user.userId).sort()], `round ${round}: summary`);
      assert.deepEqual(roundTrip(cp).toJSON(), cp.toJSON(), `round ${round}: round trip of the done account`);
    } else {
      assert.throws(() => cp.apply({ kind: 'account-done', account: A }), (e: unknown) => e instanceof ExportError && e.code === 'INTERNAL', `round ${round}: an incomplete account cannot close`);
    }
    function check(when: string) {
      const label = `round ${round}, event ${log.length} ${when}`; // replay: the same seed and round
      const json = cp.toJSON();
      const users = cp.toJSON().accounts.find((e) => e.id === A)!.progress ?? { listing: { token: null, done: false, verified: false }, finished: [], pending: [], inProgress: [], missing: [], failed: [], exported: 0, vanished: 0 };
      const ids = (where: Where) => inSet(where).map((k) => k.user.userId).sort();
      assert.deepEqual(users.finished, ids('finished'), `${label}: finished`);
      assert.deepEqual(users.pending.map((p) => p.userId).sort(), ids('pending'), `${label}: pending`);
      assert.deepEqual(users.inProgress.map((r) => r.user.userId).sort(), ids('inProgress'), `${label}: in progress`);
      assert.deepEqual(users.missing.map((r) => r.user.userId).sort(), ids('missing'), `${label}: missing`);
      assert.deepEqual(users.failed.map((r) => r.user.userId).sort(), ids('failed'), `${label}: failed`);
      assert.deepEqual(json.dirty, [...dirty].sort(), `${label}: dirty`);
      for (const r of [...users.inProgress, ...users.missing, ...users.failed]) {
        const k = model.get(r.user.userId)!;
        assert.deepEqual([r.user, r.token], [k.user, k.token], `${label}: ${r.user.userId}'s name and token`);
      }
      for (const p of users.pending) assert.deepEqual(p, model.get(p.userId)!.user, `${label}: pending ${p.userId} under its latest name`);
      for (const f of users.failed) assert.equal(f.code, model.get(f.user.userId)!.code, label);
      assert.deepEqual(users.listing, listing, `${label}: listing`);
      assert.equal(cp.counters.usersExported, counters.exported, label);
      assert.equal(cp.counters.usersVanished, counters.vanished, label);
      assert.equal(cp.counters.restartedListings, counters.restarted, label);
      assert.equal(cp.resumes, resumes, label);
      assert.equal(cp.usersKnown, model.size, label);
      for (const id of model.keys()) assert.ok(cp.account(A)?.progress?.knows(id), `${label}: knows ${id}`);
      assert.equal(cp.account(A)?.progress?.knows('AIDAnobody') ?? false, false);
      const open = inSet('pending').length + inSet('inProgress').length + inSet('missing').length;
      assert.equal(accountComplete(cp), listing.done && listing.verified && open === 0, `${label}: complete`);
      assert.equal(cp.exportComplete, false, `${label}: the account is not closed yet`);
      const plan = cp.resumePlan(A);
      assert.deepEqual([...plan.known].sort(), [...model.keys()].sort(), `${label}: known`);
      assert.deepEqual(plan.resume.map((r) => r.user.userId).sort(), [...ids('inProgress'), ...ids('pending')].sort(), `${label}: resumed users`);
      for (const r of plan.resume) assert.deepEqual(r, { user: model.get(r.user.userId)!.user, token: model.get(r.user.userId)!.where === 'pending' ? null : model.get(r.user.userId)!.token }, label);
      assert.deepEqual(plan.resume.slice(0, ids('inProgress').length).map((r) => r.user.userId).sort(), ids('inProgress'), `${label}: users in progress first`);
      assert.deepEqual(plan.missing.map((m) => m.user.userId).sort(), ids('missing'), label);
      assert.deepEqual([plan.listToken, plan.listingDone, plan.listingVerified, plan.usersExported], [listing.token, listing.done, listing.verified, counters.exported], label);
      assert.deepEqual(roundTrip(cp).toJSON(), json, `${label}: round trip`);
    }
  }
});

test('user events go to the account of the user; an event for a done account is INTERNAL', () => {
  const cp = fresh();
  const other = '999999999999';
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [u('A')] });
  cp.apply({ kind: 'users-page', account: other, token: null, nextToken: 'p', users: [{ ...u('B'), accountId: other }] });
  assert.deepEqual(cp.accounts.map((e) => [e.ref.id, e.status]), [[A, 'active'], [other, 'active']], 'an account first met in an event is created');
  assert.deepEqual(cp.resumePlan(other).resume.map((r) => r.user.userId), ['AIDAB']);
  assert.deepEqual(cp.resumePlan(A).resume.map((r) => r.user.userId), ['AIDAA']);
  assert.equal(cp.resumePlan('000000000000').listToken, null, 'an unknown account has an empty plan');
  cp.apply(scanned);
  cp.apply({ kind: 'user-done', user: u('A') });
  cp.apply({ kind: 'account-done', account: A });
  assert.throws(() => cp.apply({ kind: 'user-done', user: u('A') }), (e: unknown) => e instanceof ExportError && e.code === 'INTERNAL' && e.message.includes(A));
  assert.equal(cp.exportComplete, false, 'the other account is open');
});

test('a single-account snapshot that could not tell its account keeps its users under the empty id', () => {
  const cp = new Checkpoint('20261128T111000Z', new Date(), config);
  cp.selectAccounts([{ id: '', name: null }]);
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [u('A')] });
  cp.apply({ kind: 'user-done', user: u('A') });
  assert.deepEqual(cp.accounts.map((e) => e.ref.id), [''], 'no second account');
  assert.equal(cp.resumePlan('').usersExported, 1);
});

test('failed users are listed in name order, finished and dirty users in id order', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [u('C', 'carol'), u('A', 'zed'), u('B', 'amy'), u('D', 'amy')] });
  for (const [id, name] of [['C', 'carol'], ['A', 'zed'], ['B', 'amy'], ['D', 'amy']] as const) cp.apply({ kind: 'user-failed', user: u(id, name), code: 'AccessDenied', token: null });
  assert.deepEqual(cp.failedUsers.map((f) => f.user.userName), ['amy', 'amy', 'carol', 'zed']);
  assert.deepEqual(cp.failedUsers.map((f) => f.user.userId), ['AIDAB', 'AIDAD', 'AIDAC', 'AIDAA'], 'two of one name by id');
  const reversed = fresh();
  reversed.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [u('A', 'zed'), u('C', 'carol'), u('D', 'amy'), u('B', 'amy')] });
  for (const [id, name] of [['A', 'zed'], ['D', 'amy'], ['C', 'carol'], ['B', 'amy']] as const) reversed.apply({ kind: 'user-failed', user: u(id, name), code: 'AccessDenied', token: null });
  assert.deepEqual(reversed.failedUsers.map((f) => f.user.userId), ['AIDAB', 'AIDAD', 'AIDAC', 'AIDAA'], 'whatever order they failed in');
  cp.apply(scanned);
  cp.apply({ kind: 'account-done', account: A });
  assert.deepEqual(cp.toJSON().accounts[0]!.summary!.failed.map((f) => f.user.userName), ['amy', 'amy', 'carol', 'zed']);
  assert.deepEqual(cp.failedUsers.map((f) => f.user.userName), ['amy', 'amy', 'carol', 'zed'], 'from the summary of a done account');
});

test('what toJSON returns is a copy: changing it does not change the checkpoint', () => {
  const cp = fresh();
  cp.counters.calls.ListUsers = 1;
  cp.counters.lastUsed.api = 3;
  cp.addPart({ file: 'run-0a1b2c3d-000001.ndjson', rows: 2, sha256: 'ab' });
  const json = cp.toJSON();
  assert.deepEqual([json.counters.calls, json.counters.lastUsed.api], [{ ListUsers: 1 }, 3], 'with the counts it holds');
  json.counters.calls.ListUsers = 99;
  json.counters.lastUsed.api = 99;
  (json.parts as PartInfo[]).push({ file: 'x', rows: 1, sha256: '' });
  assert.equal(cp.counters.calls.ListUsers, 1);
  assert.equal(cp.counters.lastUsed.api, 3);
  assert.equal(cp.parts.length, 1);
  assert.equal(cp.counters.rowsWritten, 2, 'a part adds its rows');
  cp.addKeys(A, 2);
  cp.addKeys(A, 3);
  assert.equal(cp.account(A)!.keys, 5, 'keys counted per account');
});

/** The JSON of a checkpoint with a bit of everything, as a plain object to break: account A in progress, account B done. */
function sample(): Record<string, any> {
  const cp = fresh();
  const B = '210987654321';
  cp.selectAccounts([{ id: B, name: 'dev' }]);
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: 'p2', users: [u('A'), u('B'), u('C'), u('D'), u('E')] });
  cp.apply({ kind: 'user-done', user: u('A') });
  cp.apply({ kind: 'user-page', user: u('B'), nextToken: 'kb' });
  cp.apply({ kind: 'user-missing', user: u('C'), token: 'kc' });
  cp.apply({ kind: 'user-failed', user: u('D'), code: 'AccessDenied', token: null });
  const b = { ...u('F'), accountId: B };
  cp.apply({ kind: 'account-started', account: { id: B, name: 'dev' } });
  cp.apply({ kind: 'account-facts', account: B, facts: { alias: null, rootAccessKeysPresent: false } });
  cp.apply({ kind: 'users-page', account: B, token: null, nextToken: null, users: [b] });
  cp.apply({ kind: 'users-scanned', account: B, users: [], complete: true });
  cp.apply({ kind: 'user-failed', user: b, code: 'AccessDenied', token: 'kf' });
  cp.apply({ kind: 'account-done', account: B });
  cp.addPart({ file: 'run-0a1b2c3d-000001.ndjson', rows: 3, sha256: 'ab' });
  cp.counters.calls.ListUsers = 2;
  cp.commits = 4;
  return JSON.parse(JSON.stringify(cp.toJSON()));
}

test('a checkpoint that is inconsistent in any field is CHECKPOINT_CORRUPT, saying what is wrong', () => {
  type Case = [string, (d: Record<string, any>) => unknown, string];
  const pa = (d: Record<string, any>) => d.accounts[0].progress;
  const cases: Case[] = [
    ['not an object', () => 'text', 'not an object'],
    ['null', () => null, 'not an object'],
    ['an array', () => [], 'not an object'],
    ['no version', (d) => void delete d.version, 'no version'],
    ['a fractional version', (d) => void (d.version = 2.5), 'no version'],
    ['a snapshot id that is not one', (d) => void (d.snapshotId = '2026-11-28'), 'bad snapshotId'],
    ['a snapshot id that is not a string', (d) => void (d.snapshotId = 20261128), 'bad snapshotId'],
    ['a snapshot id with more around it', (d) => void (d.snapshotId = 'x20261128T111000Zx'), 'bad snapshotId'],
    ['a snapshot id with more before it', (d) => void (d.snapshotId = 'x20261128T111000Z'), 'bad snapshotId'],
    ['a snapshot id with more after it', (d) => void (d.snapshotId = '20261128T111000Zx'), 'bad snapshotId'],
    ['a snapshot id in a list (whose text would pass)', (d) => void (d.snapshotId = ['20261128T111000Z']), 'bad snapshotId'],
    ['no snapshot time', (d) => void (d.snapshotTime = 'soon'), 'bad snapshotTime'],
    ['no config', (d) => void delete d.config, 'missing config'],
    ['a null config', (d) => void (d.config = null), 'missing config'],
    ['no parts', (d) => void delete d.parts, 'missing lists'],
    ['no accounts', (d) => void (d.accounts = {}), 'missing lists'],
    ['no dirty list', (d) => void delete d.dirty, 'missing lists'],
    ['another configuration under the same fingerprint', (d) => void (d.config.format = 'parquet'), 'fingerprint does not match its configuration'],
    ['an unknown phase', (d) => void (d.phase = 'over'), 'bad phase'],
    ['negative commits', (d) => void (d.commits = -1), 'bad commits'],
    ['fractional commits', (d) => void (d.commits = 1.5), 'bad commits'],
    ...(['usersExported', 'usersVanished', 'rowsWritten', 'restartedListings', 'attempts', 'throttles', 'wallMs'] as const).map((k): Case => [`counter ${k} not a number`, (d) => void (d.counters[k] = '3'), `bad counter ${k}`]),
    ['an infinite counter', (d) => void (d.counters.rowsWritten = 1e999), 'bad counter rowsWritten'],
    ['no counters', (d) => void delete d.counters, 'bad counter usersExported'],
    ...(['report', 'api', 'vanished', 'denied'] as const).map((k): Case => [`last-use counter ${k} not a number`, (d) => void (d.counters.lastUsed[k] = null), `bad last-use counter ${k}`]),
    ['an infinite last-use counter', (d) => void (d.counters.lastUsed.api = 1e999), 'bad last-use counter api'],
    ['no last-use counters', (d) => void delete d.counters.lastUsed, 'bad last-use counter report'],
    ['a call counter not a number', (d) => void (d.counters.calls.ListUsers = 'x'), 'bad call counter ListUsers'],
    ['an infinite call counter', (d) => void (d.counters.calls.ListUsers = 1e999), 'bad call counter ListUsers'],
    ['a part name no writer gives', (d) => void (d.parts[0].file = '../../etc/passwd'), 'bad part entry'],
    ['a part name under a folder', (d) => void (d.parts[0].file = 'x/run-0a1b2c3d-000001.ndjson'), 'bad part entry'],
    ['a part name with more after it', (d) => void (d.parts[0].file = 'run-0a1b2c3d-000001.ndjson.bak'), 'bad part entry'],
    ['a part without a name', (d) => void (d.parts[0] = null), 'bad part entry'],
    ['a part with fractional rows', (d) => void (d.parts[0].rows = 1.5), 'bad part entry'],
    ['a part without its hash', (d) => void (d.parts[0].sha256 = 7), 'bad part entry'],
    ['a publishing entry without its folder', (d) => void (d.publishing = { datasets: [] }), 'bad publishing entry'],
    ['a publishing entry without datasets', (d) => void (d.publishing = { dir: 'x/' }), 'bad publishing entry'],
    ['a publishing dataset without a name', (d) => void (d.publishing = { dir: 'x/', datasets: [{ files: [] }] }), 'bad publishing entry'],
    ['a publishing dataset without files', (d) => void (d.publishing = { dir: 'x/', datasets: [{ name: 'access_keys' }] }), 'bad publishing entry'],
    ['a publishing dataset that is null', (d) => void (d.publishing = { dir: 'x/', datasets: [null] }), 'bad publishing entry'],
    ['one good publishing dataset and one bad', (d) => void (d.publishing = { dir: 'x/', datasets: [{ name: 'access_keys', files: [] }, { name: 'accounts' }] }), 'bad publishing entry'],
    ['a publishing entry with a file that is not a name', (d) => void (d.publishing = { dir: 'x/', datasets: [{ name: 'access_keys', files: ['_SUCCESS', 3] }] }), 'bad publishing entry'],
    ['phase publishing without files', (d) => void (d.phase = 'publishing'), 'publishing without files'],
    ['an account without an id', (d) => void delete d.accounts[0].id, 'bad account entry'],
    ['an account of an unknown status', (d) => void (d.accounts[0].status = 'busy'), 'bad account entry'],
    ['an account that is not an object', (d) => void (d.accounts[0] = null), 'bad account entry'],
    ['an active account without progress', (d) => void (d.accounts[0].progress = null), `account ${A} active without progress`],
    ['a done account without summary', (d) => void (d.accounts[1].summary = null), 'account 210987654321 done without summary'],
    ['a summary without failed users', (d) => void (d.accounts[1].summary.failed = 1), 'account 210987654321: bad summary'],
    ['a summary with a negative count', (d) => void (d.accounts[1].summary.exported = -1), 'bad count'],
    ['a summary with a fractional count', (d) => void (d.accounts[1].summary.vanished = 0.5), 'bad count'],
    ['a summary failed user without its user', (d) => void (d.accounts[1].summary.failed[0].user = null), 'bad user entry'],
    ['a summary failed user with a bad token', (d) => void (d.accounts[1].summary.failed[0].token = 3), 'bad user token'],
    ['an account with no key count', (d) => void delete d.accounts[0].keys, 'bad count'],
    ['progress without a listing', (d) => void delete pa(d).listing, 'bad account progress'],
    ['progress with a null listing', (d) => void (pa(d).listing = null), 'bad account progress'],
    ['progress that is not an object', (d) => void (d.accounts[0].progress = 'x'), 'bad account progress'],
    ...(['finished', 'pending', 'inProgress', 'missing', 'failed'] as const).map((k): Case => [`no ${k} list`, (d) => void (pa(d)[k] = {}), 'missing user lists']),
    ['progress with no exported count', (d) => void delete pa(d).exported, 'bad count'],
    ['progress with a negative vanished count', (d) => void (pa(d).vanished = -2), 'bad count'],
    ['a finished id that is empty', (d) => void pa(d).finished.push(''), 'bad user id'],
    ['a dirty id that is not a string', (d) => void d.dirty.push(7), 'bad user id'],
    ...(['userName', 'userId', 'accountId', 'arn', 'path'] as const).map((f): Case => [`a pending user without ${f}`, (d) => void delete pa(d).pending[0][f], 'bad user entry']),
    ['a pending user with a create date that is not a string', (d) => void (pa(d).pending[0].createDate = 5), 'bad user entry'],
    ['a pending entry that is not a user', (d) => void (pa(d).pending[0] = null), 'bad user entry'],
    ['a user in progress without its user', (d) => void delete pa(d).inProgress[0].user, 'bad user entry'],
    ['a user in progress that is null', (d) => void (pa(d).inProgress[0] = null), 'bad user entry'],
    ['a user in progress with a token that is not a string', (d) => void (pa(d).inProgress[0].token = 5), 'bad user token'],
    ['a missing user with a token that is not a string', (d) => void (pa(d).missing[0].token = {}), 'bad user token'],
    ['a failed user without its user', (d) => void (pa(d).failed[0].user = 'D'), 'bad user entry'],
  ];
  for (const [what, breakIt, why] of cases) {
    const d = sample();
    const replaced = breakIt(d);
    const data = replaced === undefined ? d : replaced;
    assert.throws(
      () => Checkpoint.fromJSON(data, '/out/_staging/x/checkpoint.json'),
      (err: unknown) => err instanceof ExportError && err.code === 'CHECKPOINT_CORRUPT' && err.message.includes(`(${why})`) && err.message.includes('/out/_staging/x/checkpoint.json') && err.context.file === '/out/_staging/x/checkpoint.json',
      what,
    );
  }
  assert.doesNotThrow(() => Checkpoint.fromJSON(sample(), 'x'), 'the unbroken sample loads');
  assert.deepEqual(Checkpoint.fromJSON(sample(), 'x').toJSON(), sample(), 'and round-trips');
});

test('a checkpoint of another format version is CHECKPOINT_MISMATCH naming both versions', () => {
  const d = sample();
  d.version = 1;
  assert.throws(
    () => Checkpoint.fromJSON(d, 'cp.json'),
    (err: unknown) => err instanceof ExportError && err.code === 'CHECKPOINT_MISMATCH' && err.message.includes('checkpoint format 1, this one reads 2') && err.context.file === 'cp.json',
  );
});

test('optional and loosely typed fields of a checkpoint load as their defaults', () => {
  const d = sample();
  Object.assign(d, { accountId: 7, callerArn: ['x'], resumes: 'many', publishing: undefined, accountsSelected: 'yes' });
  const p = d.accounts[0].progress;
  p.listing = { token: 5, done: 'yes', verified: 1 };
  p.inProgress[0].token = undefined;
  p.missing[0].token = undefined;
  p.failed[0].code = 403;
  d.accounts[0].name = 5;
  d.accounts[0].code = 7;
  delete d.accounts[0].facts;
  d.accounts[1].summary.failed[0].token = undefined;
  d.accounts[1].summary.failed[0].code = 401;
  delete d.counters.calls;
  p.pending[0].createDate = null;
  const cp = Checkpoint.fromJSON(d, 'x');
  assert.equal(cp.resumePlan(A).resume.find((r) => r.user.userId === 'AIDAE')!.user.createDate, null, 'a user without a create date');
  for (const phase of ['export', 'done', 'finalize']) assert.equal(Checkpoint.fromJSON({ ...sample(), phase }, 'x').phase, phase);
  assert.equal(cp.accountId, null);
  assert.equal(cp.callerArn, null);
  assert.equal(cp.resumes, 0);
  assert.equal(cp.publishing, null);
  assert.equal(cp.accountsSelected, false);
  assert.deepEqual([cp.account(A)!.ref.name, cp.account(A)!.code, cp.account(A)!.facts], [null, null, null]);
  assert.deepEqual(cp.toJSON().accounts[0]!.progress!.listing, { token: null, done: false, verified: false });
  assert.deepEqual(cp.resumePlan(A).resume.find((r) => r.user.userId === 'AIDAB'), { user: u('B'), token: null });
  assert.deepEqual(cp.resumePlan(A).missing, [{ user: u('C'), token: null }]);
  assert.deepEqual(cp.failedUsers.map((f) => [f.user.userId, f.code, f.token]), [['AIDAD', '403', null], ['AIDAF', '401', null]]);
  assert.deepEqual(cp.counters.calls, {});
  const kept = sample();
  Object.assign(kept, { accountId: '123456789012', callerArn: 'arn:aws:iam::123456789012:user/x', resumes: 2, phase: 'publishing', publishing: { dir: 'p/', datasets: [{ name: 'access_keys', files: ['_SUCCESS'] }] } });
  kept.accounts[0].progress.listing = { token: 'p2', done: true, verified: true };
  const back = Checkpoint.fromJSON(kept, 'x');
  assert.deepEqual([back.accountId, back.callerArn, back.resumes, back.phase, back.publishing, back.accountsSelected], ['123456789012', 'arn:aws:iam::123456789012:user/x', 2, 'publishing', { dir: 'p/', datasets: [{ name: 'access_keys', files: ['_SUCCESS'] }] }, true]);
  assert.deepEqual(back.toJSON().accounts[0]!.progress!.listing, { token: 'p2', done: true, verified: true });
  assert.deepEqual(back.account('210987654321')!.facts, { alias: null, rootAccessKeysPresent: false });
  assert.equal(back.account('210987654321')!.ref.name, 'dev');
  assert.equal(back.commits, 4);
  assert.deepEqual(back.parts, [{ file: 'run-0a1b2c3d-000001.ndjson', rows: 3, sha256: 'ab' }]);
  assert.equal(back.snapshotTime.toISOString(), '2026-11-28T11:10:00.123Z');
});

test('a checkpoint the store cannot read is CHECKPOINT_CORRUPT naming the cause and --fresh', async () => {
  const store = new MemoryStore();
  const denied = Object.assign(new Error('permission denied'), { code: 'EACCES' });
  store.hook = () => {
    throw denied;
  };
  await assert.rejects(CheckpointFile.load(store, 'cp.json'), (err: unknown) => err instanceof ExportError && err.code === 'CHECKPOINT_CORRUPT' && err.message.includes('cannot be read (EACCES)') && err.message.includes('--fresh') && err.message.includes('mem://root/cp.json') && err.cause === denied);
  store.hook = () => {
    throw Object.assign(new Error('s3'), { name: 'AccessDenied' });
  };
  await assert.rejects(CheckpointFile.load(store, 'cp.json'), (err: unknown) => err instanceof ExportError && /cannot be read \(AccessDenied\)/.test(err.message) && err.context.file === 'mem://root/cp.json');
  // The store named the cause already (an S3 permission, a missing bucket): its error, as it is.
  const named = new ExportError('OUTPUT_IO', 'cannot read s3://b/cp.json: AccessDenied (s3:GetObject)');
  store.hook = () => {
    throw named;
  };
  await assert.rejects(CheckpointFile.load(store, 'cp.json'), (err) => err === named);
  store.hook = undefined;
  await store.write('cp.json', '{"half');
  await assert.rejects(CheckpointFile.load(store, 'cp.json'), (err: unknown) => err instanceof ExportError && err.code === 'CHECKPOINT_CORRUPT' && err.message.includes('mem://root/cp.json is corrupt (not JSON)') && err.context.file === 'mem://root/cp.json' && err.cause instanceof SyntaxError);
});

test('a store failure while creating or saving the checkpoint passes through as it is (it is not a lost lease)', async () => {
  const store = new MemoryStore();
  const full = Object.assign(new Error('no space'), { code: 'ENOSPC' });
  const file = await CheckpointFile.create(store, 'cp.json', fresh());
  store.hook = (op) => {
    if (op === 'write') throw full;
  };
  await assert.rejects(file.save(fresh()), (err) => err === full);
  await assert.rejects(CheckpointFile.create(store, 'other.json', fresh()), (err) => err === full);
  store.hook = undefined;
  await file.save(fresh());
  await file.save(fresh());
  assert.ok(store.text('cp.json')!.includes('"snapshotId": "20261128T111000Z"'), 'saved after the failure, at the version it holds');
});

test('LEASE_LOST names the checkpoint that changed under the run', async () => {
  const store = new MemoryStore();
  const file = await CheckpointFile.create(store, 'cp.json', fresh());
  await store.write('cp.json', 'someone else');
  await assert.rejects(file.save(fresh()), (err: unknown) => err instanceof ExportError && err.code === 'LEASE_LOST' && err.message.includes('mem://root/cp.json') && err.context.file === 'mem://root/cp.json');
});

test('accounts come out in id order whatever the order they were selected in', () => {
  const cp = new Checkpoint('20261128T111000Z', new Date('2026-11-28T11:10:00.123Z'), { ...config, accounts: 'organization' });
  const ids = ['300000000000', '100000000000', '400000000000', '200000000000'];
  cp.selectAccounts(ids.map((id) => ({ id, name: null })));
  assert.deepEqual(cp.accounts.map((e) => e.ref.id), [...ids].sort());
  assert.deepEqual(cp.toJSON().accounts.map((e) => e.id), [...ids].sort());
});

test('users known: a done account counts its exported, vanished and failed users', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [u('A'), u('B'), u('C'), u('D')] });
  cp.apply({ kind: 'user-done', user: u('A') });
  cp.apply({ kind: 'user-done', user: u('B') });
  cp.apply({ kind: 'user-vanished', user: u('C') });
  cp.apply({ kind: 'user-failed', user: u('D'), code: 'AccessDenied', token: null });
  cp.apply(scanned);
  cp.apply({ kind: 'account-done', account: A });
  assert.equal(cp.account(A)!.status, 'done');
  assert.equal(cp.usersKnown, 4);
  assert.equal(roundTrip(cp).usersKnown, 4);
});

test('a resume leaves a done account without failed users done and unread; an account started again keeps its progress', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [u('A')] });
  cp.apply({ kind: 'user-done', user: u('A') });
  cp.apply(scanned);
  cp.apply({ kind: 'account-done', account: A });
  cp.beginResume();
  assert.equal(cp.account(A)!.status, 'done');
  assert.equal(cp.account(A)!.progress, null);

  const again = fresh();
  again.apply({ kind: 'account-started', account: { id: A, name: null } });
  again.apply({ kind: 'account-facts', account: A, facts: { alias: null, rootAccessKeysPresent: null } });
  again.apply({ kind: 'users-page', account: A, token: null, nextToken: 'p2', users: [u('A'), u('B')] });
  again.apply({ kind: 'user-done', user: u('A') });
  // A resume announces the account again before it reads on.
  again.apply({ kind: 'account-started', account: { id: A, name: null } });
  again.apply({ kind: 'account-facts', account: A, facts: { alias: null, rootAccessKeysPresent: null } });
  assert.deepEqual(progressOf(again).pending.map((p) => p.userId), ['AIDAB']);
  assert.equal(progressOf(again).listing.token, 'p2');
});

test('a user missing or restarted before any page of it was committed is not dirty', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [u('A'), u('B')] });
  cp.apply({ kind: 'user-missing', user: u('A'), token: null });
  cp.apply({ kind: 'user-restarted', user: u('A') });
  cp.apply({ kind: 'user-failed', user: u('B'), code: 'AccessDenied', token: null });
  cp.apply({ kind: 'user-missing', user: u('B'), token: null });
  assert.deepEqual([...cp.dirtyUsers], []);
});

test('closing an account with users left to read is INTERNAL, saying so', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', account: A, token: null, nextToken: null, users: [u('A')] });
  assert.throws(() => cp.apply({ kind: 'account-done', account: A }), (err: unknown) => err instanceof ExportError && err.code === 'INTERNAL' && err.message === `account ${A} closed with users left to read`);
});

test('the fingerprint is 16 hex digits and stays the same across builds for the same options (a resume after an upgrade is not refused)', () => {
  assert.equal(fingerprintOf(config), '7b88d11641abe19d');
});

test("checkpoint.json's bytes are the state's JSON: every account's finished users copied in sorted, ids that need escaping intact", () => {
  const cp = new Checkpoint('20261128T111000Z', new Date('2026-11-28T11:10:00.123Z'), { ...config, accounts: 'organization' });
  cp.selectAccounts([{ id: A, name: 'prod' }, { id: B, name: 'dev' }, { id: '333333333333', name: 'none finished' }]);
  const odd = ['Q"uote', 'back\\slash', 'nl\nx', 'ütf', '\u0000finished 0 0', 'Z', 'A'];
  const ids: Record<string, string[]> = { [A]: [], [B]: [] };
  for (const account of [A, B, '333333333333']) {
    cp.apply({ kind: 'account-started', account: { id: account, name: null } });
    const users = account === '333333333333' ? [userOf(account, 'LONE')] : odd.map((id) => userOf(account, `${id}${account}`));
    cp.apply({ kind: 'users-page', account, token: null, nextToken: 'more', users });
    if (account === '333333333333') continue;
    // More than one merge of the finished ids (4,096 wait at most), in no order.
    for (let i = 0; i < 5000; i++) users.push(userOf(account, `${((i * 7919) % 5000).toString(36)}-${account}`));
    for (const user of users) {
      cp.apply({ kind: 'user-done', user });
      ids[account]!.push(user.userId);
    }
  }
  const bytes = serialize(cp);
  const parsed = JSON.parse(bytes.toString('utf8'));
  assert.deepEqual(parsed, JSON.parse(JSON.stringify(cp.toJSON())), 'the same JSON as toJSON');
  const finished = (d: typeof parsed, account: string) => d.accounts.find((e: { id: string }) => e.id === account).progress.finished;
  for (const account of [A, B]) {
    const expected = [...new Set(ids[account])].sort((x, y) => Buffer.compare(Buffer.from(JSON.stringify(x)), Buffer.from(JSON.stringify(y))));
    assert.deepEqual(finished(parsed, account), expected, `${account}: each id once, in the byte order of its JSON text`);
  }
  assert.deepEqual(finished(parsed, '333333333333'), [], 'an account with no one finished: an empty list');
  const again = Checkpoint.fromJSON(parsed, 'x');
  assert.deepEqual(serialize(again).toString('utf8').replace(/\s+/g, ''), bytes.toString('utf8').replace(/\s+/g, ''), 'read back, the same checkpoint');
  assert.ok(again.resumePlan(A).known.has(`AIDA${odd[0]}${A}`) && again.resumePlan(B).known.has(`AIDA4-${B}`), 'finished users known after a rerun');
});
