import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Checkpoint, CheckpointFile, fingerprintOf, type DataConfig, type PartInfo } from '../pipeline/checkpoint.ts';
import { ExportError } from '../pipeline/errors.ts';
import type { StateEvent, UserRef } from '../pipeline/items.ts';
import { removeOrphans } from '../pipeline/runs.ts';
import { LocalStore } from '../pipeline/store/local.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { MemoryStore } from './support/memory-store.ts';
import { withTemp } from './support/scope.ts';

const config: DataConfig = { format: 'csv', pathPrefix: '/', statuses: [], endpoint: null, schemaVersion: 1 };
/** A user: the id is what identifies it; the name may change. */
const u = (id: string, name = id.toLowerCase()): UserRef => ({
  userName: name,
  userId: `AIDA${id}`,
  accountId: '123456789012',
  arn: `arn:aws:iam::123456789012:user/${name}`,
  path: '/',
  createDate: '2020-01-01T00:00:00.000Z',
});
const fresh = () => new Checkpoint('20261128T111000Z', new Date('2026-11-28T11:10:00.123Z'), config);
const roundTrip = (cp: Checkpoint) => Checkpoint.fromJSON(JSON.parse(JSON.stringify(cp.toJSON())), 'x');
/** The full scan after the listing found nobody unknown. */
const scanned = { kind: 'users-scanned', users: [], complete: true } as const;

test('listed users are pending until paged; the ListUsers token moves with every page', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: 't2', users: [u('A'), u('B')] });
  assert.equal(cp.toJSON().listing.token, 't2');
  assert.deepEqual(cp.toJSON().users.pending.map((p) => p.userId), ['AIDAA', 'AIDAB']);
  cp.apply({ kind: 'user-done', user: u('A') });
  cp.apply({ kind: 'users-page', token: 't2', nextToken: null, users: [u('C')] });
  cp.apply(scanned);
  assert.equal(cp.exportComplete, false, 'B and C are pending');
  const plan = roundTrip(cp).resumePlan();
  assert.equal(plan.listingDone, true);
  assert.deepEqual(plan.resume.map((r) => [r.user.userId, r.token]), [['AIDAB', null], ['AIDAC', null]]);
  assert.deepEqual([...plan.known].sort(), ['AIDAA', 'AIDAB', 'AIDAC']);
  cp.apply({ kind: 'user-done', user: u('B') });
  cp.apply({ kind: 'user-done', user: u('C') });
  assert.equal(cp.exportComplete, true);
  assert.equal(cp.counters.usersExported, 3);
});

test('a user in progress keeps its StartingToken and blocks completion', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: null, users: [u('A'), u('B')] });
  cp.apply(scanned);
  cp.apply({ kind: 'user-done', user: u('B') });
  cp.apply({ kind: 'user-page', user: u('A'), nextToken: 'k1' });
  const plan = roundTrip(cp).resumePlan();
  assert.deepEqual(plan.resume, [{ user: u('A'), token: 'k1' }]);
  assert.equal(cp.exportComplete, false);
  cp.apply({ kind: 'user-done', user: u('A') });
  assert.equal(cp.exportComplete, true);
});

test('a finished user listed again under a new name is known by its id and never started again', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: 'p2', users: [u('A', 'alice')] });
  cp.apply({ kind: 'user-done', user: u('A', 'alice') });
  // Renamed to zed: listed on a later page.
  cp.apply({ kind: 'users-page', token: 'p2', nextToken: null, users: [u('A', 'zed')] });
  cp.apply(scanned);
  assert.equal(cp.exportComplete, true);
  assert.deepEqual(cp.toJSON().users.pending, []);
  assert.ok(roundTrip(cp).resumePlan().known.has('AIDAA'));
  assert.equal(cp.counters.usersExported, 1);
});

test('a pending user renamed before it started is resumed under its new name', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: 'p2', users: [u('A', 'alice')] });
  cp.apply({ kind: 'users-page', token: 'p2', nextToken: null, users: [u('A', 'alicia')] });
  assert.deepEqual(roundTrip(cp).resumePlan().resume.map((r) => r.user.userName), ['alicia']);
});

test('missing users block completion until found (then paged again, dirty if pages of them were committed) or vanished', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: null, users: [u('A'), u('B'), u('C')] });
  cp.apply(scanned);
  cp.apply({ kind: 'user-page', user: u('A'), nextToken: 'ka' });
  cp.apply({ kind: 'user-missing', user: u('A'), token: 'ka' });
  cp.apply({ kind: 'user-missing', user: u('B'), token: null });
  cp.apply({ kind: 'user-done', user: u('C') });
  assert.equal(cp.exportComplete, false);
  assert.deepEqual(roundTrip(cp).resumePlan().missing.map((m) => m.user.userId), ['AIDAA', 'AIDAB']);
  cp.apply({ kind: 'user-found', user: u('A', 'a2') });
  cp.apply({ kind: 'user-vanished', user: u('B') });
  assert.deepEqual([...cp.dirtyUsers], ['AIDAA'], 'A had committed pages: its keys may come twice');
  assert.deepEqual(roundTrip(cp).resumePlan().resume, [{ user: u('A', 'a2'), token: null }]);
  cp.apply({ kind: 'user-done', user: u('A', 'a2') });
  assert.equal(cp.exportComplete, true);
  assert.equal(cp.counters.usersVanished, 1);
  assert.deepEqual(roundTrip(cp).toJSON().users.dirty, ['AIDAA'], 'dirty users survive serialization for the merge');
});

test('a restarted user is dirty only when pages of it were committed; every restart is counted', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: null, users: [u('A'), u('B')] });
  cp.apply({ kind: 'user-restarted', user: u('B') });
  cp.apply({ kind: 'user-page', user: u('A'), nextToken: 'ka' });
  cp.apply({ kind: 'user-restarted', user: u('A') });
  assert.deepEqual([...cp.dirtyUsers], ['AIDAA']);
  assert.equal(cp.counters.restartedListings, 2);
  assert.deepEqual(roundTrip(cp).resumePlan().resume.map((r) => [r.user.userId, r.token]).sort(), [['AIDAA', null], ['AIDAB', null]]);
});

test('the export is complete only once a full scan after the listing found nobody unknown; users it finds become pending', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: null, users: [u('A')] });
  cp.apply({ kind: 'user-done', user: u('A') });
  assert.equal(cp.exportComplete, false, 'listed to the end, not verified');
  // A user renamed behind the listing's cursor: the scan finds it.
  cp.apply({ kind: 'users-scanned', users: [u('A', 'a2'), u('B')], complete: false });
  assert.deepEqual(roundTrip(cp).resumePlan().resume.map((r) => r.user.userId), ['AIDAB'], 'A is known by id: only B is new');
  cp.apply({ kind: 'user-done', user: u('B') });
  assert.equal(cp.exportComplete, false);
  cp.apply(scanned);
  assert.equal(cp.exportComplete, true);
  assert.equal(roundTrip(cp).resumePlan().listingVerified, true);
});

test('a ListUsers restart lists from the start again, keeping every known user', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: 'p2', users: [u('A')] });
  cp.apply({ kind: 'user-done', user: u('A') });
  cp.apply({ kind: 'users-restarted' });
  const plan = roundTrip(cp).resumePlan();
  assert.equal(plan.listToken, null);
  assert.equal(plan.listingDone, false);
  assert.ok(plan.known.has('AIDAA'));
  assert.equal(cp.counters.restartedListings, 1);
});

test('failed users do not block completion, keep code and token, and are retried on a resume of the export', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: null, users: [u('A'), u('B')] });
  cp.apply(scanned);
  cp.apply({ kind: 'user-failed', user: u('A'), code: 'AccessDenied', token: 'k9' });
  cp.apply({ kind: 'user-done', user: u('B') });
  assert.equal(cp.exportComplete, true);
  assert.deepEqual(cp.failedUsers.map((f) => [f.user.userName, f.code, f.token]), [['a', 'AccessDenied', 'k9']]);
  const again = roundTrip(cp);
  again.beginResume();
  assert.equal(again.exportComplete, false);
  assert.deepEqual(again.resumePlan().resume, [{ user: u('A'), token: 'k9' }]);
  assert.equal(again.resumes, 1);
  again.apply({ kind: 'user-done', user: u('A') });
  assert.equal(again.exportComplete, true);
  assert.deepEqual(again.failedUsers, []);
});

test('once the export is over, a resume keeps the failed users exactly: a partial snapshot stays partial', () => {
  for (const phase of ['finalize', 'publishing'] as const) {
    const cp = fresh();
    cp.apply({ kind: 'users-page', token: null, nextToken: null, users: [u('A'), u('B')] });
    cp.apply(scanned);
    cp.apply({ kind: 'user-failed', user: u('A'), code: 'AccessDenied', token: null });
    cp.apply({ kind: 'user-done', user: u('B') });
    cp.phase = phase;
    if (phase === 'publishing') cp.publishing = { dir: '_staging/x/publish-1/', files: ['_SUCCESS'] };
    const again = roundTrip(cp);
    again.beginResume();
    assert.deepEqual(again.failedUsers.map((f) => f.user.userId), ['AIDAA'], phase);
    assert.equal(again.exportComplete, true, phase);
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
    cp.apply({ kind: 'users-page', token: null, nextToken: 'p2', users: [u('A')] });
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
    let account: string | null = null;
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
        event = { kind: 'users-page', token: listing.token, nextToken: next, users };
        if (account === null && users.length > 0) account = users[0]!.accountId;
        for (const user of users) {
          const k = model.get(user.userId);
          if (!k) model.set(user.userId, { where: 'pending', user, token: null });
          else if (k.where === 'pending') k.user = user;
        }
        listing = { token: next, done: next === null, verified: listing.verified };
      } else if (choice < 0.2 && listing.done) {
        const users = Array.from({ length: Math.floor(random() * 2) }, () => (random() < 0.3 && model.size > 0 ? pick([...model.values()]).user : newUser()));
        const complete = random() < 0.5;
        event = { kind: 'users-scanned', users, complete };
        for (const user of users) if (!model.has(user.userId)) model.set(user.userId, { where: 'pending', user, token: null });
        if (complete) listing.verified = true;
      } else if (choice < 0.23) {
        event = { kind: 'users-restarted' };
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
    function check(when: string) {
      const label = `round ${round}, event ${log.length} ${when}`; // replay: the same seed and round
      const json = cp.toJSON();
      const ids = (where: Where) => inSet(where).map((k) => k.user.userId).sort();
      assert.deepEqual(json.users.finished, ids('finished'), `${label}: finished`);
      assert.deepEqual(json.users.pending.map((p) => p.userId).sort(), ids('pending'), `${label}: pending`);
      assert.deepEqual(json.users.inProgress.map((r) => r.user.userId).sort(), ids('inProgress'), `${label}: in progress`);
      assert.deepEqual(json.users.missing.map((r) => r.user.userId).sort(), ids('missing'), `${label}: missing`);
      assert.deepEqual(json.users.failed.map((r) => r.user.userId).sort(), ids('failed'), `${label}: failed`);
      assert.deepEqual(json.users.dirty, [...dirty].sort(), `${label}: dirty`);
      for (const r of [...json.users.inProgress, ...json.users.missing, ...json.users.failed]) {
        const k = model.get(r.user.userId)!;
        assert.deepEqual([r.user, r.token], [k.user, k.token], `${label}: ${r.user.userId}'s name and token`);
      }
      for (const p of json.users.pending) assert.deepEqual(p, model.get(p.userId)!.user, `${label}: pending ${p.userId} under its latest name`);
      for (const f of json.users.failed) assert.equal(f.code, model.get(f.user.userId)!.code, label);
      assert.deepEqual(json.listing, listing, `${label}: listing`);
      assert.equal(cp.counters.usersExported, counters.exported, label);
      assert.equal(cp.counters.usersVanished, counters.vanished, label);
      assert.equal(cp.counters.restartedListings, counters.restarted, label);
      assert.equal(cp.resumes, resumes, label);
      assert.equal(cp.usersKnown, model.size, label);
      for (const id of model.keys()) assert.ok(cp.knows(id), `${label}: knows ${id}`);
      assert.equal(cp.knows('AIDAnobody'), false);
      const open = inSet('pending').length + inSet('inProgress').length + inSet('missing').length;
      assert.equal(cp.exportComplete, listing.done && listing.verified && open === 0, `${label}: complete`);
      assert.equal(cp.accountId, account, `${label}: account`);
      const plan = cp.resumePlan();
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

test('the account is that of the first user listed, and is kept', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: 'p', users: [] });
  assert.equal(cp.accountId, null);
  cp.apply({ kind: 'users-page', token: 'p', nextToken: 'q', users: [u('A')] });
  assert.equal(cp.accountId, '123456789012');
  cp.apply({ kind: 'users-page', token: 'q', nextToken: null, users: [{ ...u('B'), accountId: '999999999999' }] });
  assert.equal(cp.accountId, '123456789012');
});

test('failed users are listed in name order, finished and dirty users in id order', () => {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: null, users: [u('C', 'carol'), u('A', 'zed'), u('B', 'amy'), u('D', 'amy')] });
  for (const [id, name] of [['C', 'carol'], ['A', 'zed'], ['B', 'amy'], ['D', 'amy']] as const) cp.apply({ kind: 'user-failed', user: u(id, name), code: 'AccessDenied', token: null });
  assert.deepEqual(cp.failedUsers.map((f) => f.user.userName), ['amy', 'amy', 'carol', 'zed']);
  assert.deepEqual(cp.toJSON().users.failed.map((f) => f.user.userName), ['amy', 'amy', 'carol', 'zed']);
});

test('what toJSON returns is a copy: changing it does not change the checkpoint', () => {
  const cp = fresh();
  cp.counters.calls.ListUsers = 1;
  cp.addPart({ file: 'run-0a1b2c3d-000001.ndjson', rows: 2, sha256: 'ab' });
  const json = cp.toJSON();
  json.counters.calls.ListUsers = 99;
  (json.parts as PartInfo[]).push({ file: 'x', rows: 1, sha256: '' });
  assert.equal(cp.counters.calls.ListUsers, 1);
  assert.equal(cp.parts.length, 1);
  assert.equal(cp.counters.rowsWritten, 2, 'a part adds its rows');
});

/** The JSON of a checkpoint with a bit of everything, as a plain object to break. */
function sample(): Record<string, any> {
  const cp = fresh();
  cp.apply({ kind: 'users-page', token: null, nextToken: 'p2', users: [u('A'), u('B'), u('C'), u('D'), u('E')] });
  cp.apply({ kind: 'user-done', user: u('A') });
  cp.apply({ kind: 'user-page', user: u('B'), nextToken: 'kb' });
  cp.apply({ kind: 'user-missing', user: u('C'), token: 'kc' });
  cp.apply({ kind: 'user-failed', user: u('D'), code: 'AccessDenied', token: null });
  cp.addPart({ file: 'run-0a1b2c3d-000001.ndjson', rows: 3, sha256: 'ab' });
  cp.counters.calls.ListUsers = 2;
  cp.commits = 4;
  return JSON.parse(JSON.stringify(cp.toJSON()));
}

test('a checkpoint that is inconsistent in any field is CHECKPOINT_CORRUPT, saying what is wrong', () => {
  const cases: [string, (d: Record<string, any>) => unknown, string][] = [
    ['not an object', () => 'text', 'not an object'],
    ['null', () => null, 'not an object'],
    ['an array', () => [], 'not an object'],
    ['no version', (d) => void delete d.version, 'no version'],
    ['a fractional version', (d) => void (d.version = 2.5), 'no version'],
    ['a snapshot id that is not one', (d) => void (d.snapshotId = '2026-11-28'), 'bad snapshotId'],
    ['a snapshot id that is not a string', (d) => void (d.snapshotId = 20261128), 'bad snapshotId'],
    ['a snapshot id with more around it', (d) => void (d.snapshotId = 'x20261128T111000Zx'), 'bad snapshotId'],
    ['no snapshot time', (d) => void (d.snapshotTime = 'soon'), 'bad snapshotTime'],
    ['no config', (d) => void delete d.config, 'missing config, listing or users'],
    ['a null config', (d) => void (d.config = null), 'missing config, listing or users'],
    ['no users', (d) => void delete d.users, 'missing config, listing or users'],
    ['null users', (d) => void (d.users = null), 'missing config, listing or users'],
    ['no listing', (d) => void delete d.listing, 'missing config, listing or users'],
    ['a null listing', (d) => void (d.listing = null), 'missing config, listing or users'],
    ['no parts', (d) => void delete d.parts, 'missing lists'],
    ...(['finished', 'pending', 'inProgress', 'missing', 'failed', 'dirty'] as const).map((k): [string, (d: Record<string, any>) => unknown, string] => [`no ${k} list`, (d) => void (d.users[k] = {}), 'missing lists']),
    ['another configuration under the same fingerprint', (d) => void (d.config.format = 'parquet'), 'fingerprint does not match its configuration'],
    ['an unknown phase', (d) => void (d.phase = 'done'), 'bad phase'],
    ['negative commits', (d) => void (d.commits = -1), 'bad commits'],
    ['fractional commits', (d) => void (d.commits = 1.5), 'bad commits'],
    ...(['usersExported', 'usersVanished', 'rowsWritten', 'restartedListings', 'attempts', 'throttles', 'wallMs'] as const).map((k): [string, (d: Record<string, any>) => unknown, string] => [`counter ${k} not a number`, (d) => void (d.counters[k] = '3'), `bad counter ${k}`]),
    ['an infinite counter', (d) => void (d.counters.rowsWritten = 1e999), 'bad counter rowsWritten'],
    ['no counters', (d) => void delete d.counters, 'bad counter usersExported'],
    ['a call counter not a number', (d) => void (d.counters.calls.ListUsers = 'x'), 'bad call counter ListUsers'],
    ['an infinite call counter', (d) => void (d.counters.calls.ListUsers = 1e999), 'bad call counter ListUsers'],
    ['a part name no writer gives', (d) => void (d.parts[0].file = '../../etc/passwd'), 'bad part entry'],
    ['a part without a name', (d) => void (d.parts[0] = null), 'bad part entry'],
    ['a part with fractional rows', (d) => void (d.parts[0].rows = 1.5), 'bad part entry'],
    ['a part without its hash', (d) => void (d.parts[0].sha256 = 7), 'bad part entry'],
    ['a publishing entry without its folder', (d) => void (d.publishing = { files: ['_SUCCESS'] }), 'bad publishing entry'],
    ['a publishing entry without files', (d) => void (d.publishing = { dir: 'x/' }), 'bad publishing entry'],
    ['a publishing entry with a file that is not a name', (d) => void (d.publishing = { dir: 'x/', files: ['_SUCCESS', 3] }), 'bad publishing entry'],
    ['phase publishing without files', (d) => void (d.phase = 'publishing'), 'publishing without files'],
    ['a finished id that is empty', (d) => void d.users.finished.push(''), 'bad user id'],
    ['a dirty id that is not a string', (d) => void d.users.dirty.push(7), 'bad user id'],
    ...(['userName', 'userId', 'accountId', 'arn', 'path'] as const).map((f): [string, (d: Record<string, any>) => unknown, string] => [`a pending user without ${f}`, (d) => void delete d.users.pending[0][f], 'bad user entry']),
    ['a pending user with a create date that is not a string', (d) => void (d.users.pending[0].createDate = 5), 'bad user entry'],
    ['a pending entry that is not a user', (d) => void (d.users.pending[0] = null), 'bad user entry'],
    ['a user in progress without its user', (d) => void delete d.users.inProgress[0].user, 'bad user entry'],
    ['a user in progress with a token that is not a string', (d) => void (d.users.inProgress[0].token = 5), 'bad user token'],
    ['a missing user with a token that is not a string', (d) => void (d.users.missing[0].token = {}), 'bad user token'],
    ['a failed user without its user', (d) => void (d.users.failed[0].user = 'D'), 'bad user entry'],
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
  Object.assign(d, { accountId: 7, callerArn: ['x'], resumes: 'many', publishing: undefined });
  d.listing = { token: 5, done: 'yes', verified: 1 };
  d.users.inProgress[0].token = undefined;
  d.users.missing[0].token = undefined;
  d.users.failed[0].code = 403;
  delete d.counters.calls;
  const cp = Checkpoint.fromJSON(d, 'x');
  assert.equal(cp.accountId, null);
  assert.equal(cp.callerArn, null);
  assert.equal(cp.resumes, 0);
  assert.equal(cp.publishing, null);
  assert.deepEqual(cp.toJSON().listing, { token: null, done: false, verified: false });
  assert.deepEqual(cp.resumePlan().resume.find((r) => r.user.userId === 'AIDAB'), { user: u('B'), token: null });
  assert.deepEqual(cp.resumePlan().missing, [{ user: u('C'), token: null }]);
  assert.equal(cp.failedUsers[0]!.code, '403');
  assert.deepEqual(cp.counters.calls, {});
  const kept = sample();
  Object.assign(kept, { accountId: '123456789012', callerArn: 'arn:aws:iam::123456789012:user/x', resumes: 2, phase: 'publishing', publishing: { dir: 'p/', files: ['_SUCCESS'] } });
  kept.listing = { token: 'p2', done: true, verified: true };
  const back = Checkpoint.fromJSON(kept, 'x');
  assert.deepEqual([back.accountId, back.callerArn, back.resumes, back.phase, back.publishing], ['123456789012', 'arn:aws:iam::123456789012:user/x', 2, 'publishing', { dir: 'p/', files: ['_SUCCESS'] }]);
  assert.deepEqual(back.toJSON().listing, { token: 'p2', done: true, verified: true });
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
  await assert.rejects(CheckpointFile.load(store, 'cp.json'), /cannot be read \(AccessDenied\)/);
  store.hook = undefined;
  await store.write('cp.json', '{"half');
  await assert.rejects(CheckpointFile.load(store, 'cp.json'), (err: unknown) => err instanceof ExportError && err.code === 'CHECKPOINT_CORRUPT' && err.message.includes('mem://root/cp.json is corrupt (not JSON)') && err.context.file === 'mem://root/cp.json');
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
