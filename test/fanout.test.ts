import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { ListAccessKeysCommand, type AccessKeyMetadata, type ListAccessKeysCommandOutput, type User } from '@aws-sdk/client-iam';
import { Checkpoint } from '../pipeline/checkpoint.ts';
import { ExportError } from '../pipeline/errors.ts';
import type { SourceKey, StateEvent, UserRef } from '../pipeline/items.ts';
import { KeyBudget } from '../pipeline/source/budget.ts';
import { MAX_LISTING_RESTARTS, MAX_SCANS, readAhead, sourceStream, SYSTEMIC_ACCOUNTS, SYSTEMIC_SAMPLE } from '../pipeline/source/fanout.ts';
import { limitWire, USERS_PER_SLOT, usersAtOnce } from '../pipeline/source/wire.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { DATA_CONFIG, SNAPSHOT_ID, SNAPSHOT_TIME } from './support/records.ts';
import { drain, outcome } from './support/settle.ts';
import { stubIam, type StubOptions, type StubRequest } from './support/stub-iam.ts';

const ACCOUNT = '123456789012';

/** An AWS-shaped error, as the SDK throws it after its retries. */
function awsError(name: string, status: number): Error {
  return Object.assign(new Error(`${name} (message never read)`), { name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status } });
}

/** An IAM account the stub serves: users in name order, keys by user name; both change under the run. */
class Account {
  readonly users: User[] = [];
  readonly keys: Record<string, AccessKeyMetadata[]> = {};
  #ids = 0;

  constructor(readonly accountId = ACCOUNT) {}

  add(name: string, keys: number, path = '/'): User {
    const id = `AIDA${String(++this.#ids).padStart(6, '0')}`;
    const user: User = { UserName: name, UserId: id, Arn: `arn:aws:iam::${this.accountId}:user${path}${name}`, Path: path, CreateDate: new Date(0) };
    this.users.push(user);
    this.users.sort((a, b) => (a.UserName! < b.UserName! ? -1 : 1));
    this.keys[name] = Array.from({ length: keys }, (_, i) => ({ UserName: name, AccessKeyId: `AKIA${id.slice(4)}K${i}`, Status: 'Active', CreateDate: new Date(i * 1000) }));
    return user;
  }

  rename(from: string, to: string): void {
    const user = this.users.find((u) => u.UserName === from)!;
    user.UserName = to;
    user.Arn = `arn:aws:iam::${this.accountId}:user/${to}`;
    this.users.sort((a, b) => (a.UserName! < b.UserName! ? -1 : 1));
    this.keys[to] = this.keys[from]!.map((k) => ({ ...k, UserName: to }));
    delete this.keys[from];
  }

  remove(name: string): void {
    this.users.splice(this.users.findIndex((u) => u.UserName === name), 1);
    delete this.keys[name];
  }

  /** ListAccessKeys of a user that is not there answers NoSuchEntity, as IAM does. */
  stub(options: StubOptions = {}) {
    return stubIam(this.keys, this.users, {
      ...options,
      fail: (request, index) => {
        const f = options.fail?.(request, index);
        if (f !== undefined) return f;
        if (request.action === 'ListAccessKeys' && !this.users.some((u) => u.UserName === request.UserName)) return awsError('NoSuchEntity', 404);
        return undefined;
      },
    });
  }
}

interface RunResult {
  readonly records: SourceKey[];
  readonly states: StateEvent[];
  readonly fatal: ExportError | undefined;
  /** How many times onFatal was called (once at most: the run stops at the first). */
  readonly fatalCalls: number;
  readonly throttled: boolean;
}

interface RunOptions {
  readonly client: ReturnType<typeof stubIam>['client'];
  readonly cp: Checkpoint;
  readonly concurrency?: number;
  readonly pageSize?: number;
  readonly maxItems?: number;
  readonly pathPrefix?: string;
  readonly stopAfterBatches?: number;
  /** The run's stop (a test may abort it from inside a call). */
  readonly stop?: AbortController;
  /** The account the snapshot reads (default ACCOUNT, that of the stub's users). */
  readonly accountId?: string;
  readonly onUsersListed?: (count: number, last: boolean) => void;
  readonly onUserFinished?: () => void;
  readonly takeFirstKeysPage?: (user: UserRef) => Promise<ListAccessKeysCommandOutput> | undefined;
}

/**
 * One run of the source, as run.ts drives it: every batch is committed at once
 * (its STATE applied to the checkpoint), a fatal error or throttling stops the run.
 */
async function runSource(o: RunOptions): Promise<RunResult> {
  const stop = o.stop ?? new AbortController();
  let fatal: ExportError | undefined;
  let fatalCalls = 0;
  let throttled = false;
  const records: SourceKey[] = [];
  const states: StateEvent[] = [];
  const account = o.accountId ?? ACCOUNT;
  const entry = o.cp.account(account);
  const stream = sourceStream({
    // One account, the credentials' own (every error is the run's), unless it is done.
    accounts: entry?.status === 'done' ? [] : [{ ref: { id: account, name: null }, plan: o.cp.resumePlan(account), viaRole: false }],
    accountConcurrency: 1,
    prepare: async () => ({ client: o.client, facts: Promise.resolve({ alias: null, rootAccessKeysPresent: null }) }),
    accountFailures: false,
    pathPrefix: o.pathPrefix ?? '/',
    pageSize: o.pageSize ?? 100,
    concurrency: o.concurrency ?? 4,
    stop: stop.signal,
    onFatal: (err) => {
      fatalCalls++;
      fatal ??= err;
      stop.abort(err);
    },
    onThrottled: () => {
      throttled = true;
      stop.abort('throttled');
    },
    budget: o.maxItems === undefined ? undefined : new KeyBudget(o.maxItems, stop.signal),
    endpoint: 'https://iam.amazonaws.com',
    ...(o.onUsersListed ? { onUsersListed: o.onUsersListed } : {}),
    ...(o.onUserFinished ? { onUserFinished: o.onUserFinished } : {}),
    ...(o.takeFirstKeysPage ? { takeFirstKeysPage: o.takeFirstKeysPage } : {}),
  });
  let batches = 0;
  for await (const batch of stream as AsyncIterable<readonly ({ type: 'RECORD'; record: SourceKey } | { type: 'STATE'; state: StateEvent })[]>) {
    assert.equal(batch.at(-1)?.type, 'STATE', 'a batch ends with the STATE that vouches for it');
    for (const item of batch) {
      if (item.type === 'RECORD') records.push(item.record);
      else {
        o.cp.apply(item.state);
        states.push(item.state);
      }
    }
    if (++batches === o.stopAfterBatches) stop.abort('signal');
  }
  return { records, states, fatal, fatalCalls, throttled };
}

const freshCheckpoint = () => {
  const cp = new Checkpoint(SNAPSHOT_ID, SNAPSHOT_TIME, DATA_CONFIG);
  cp.selectAccounts([{ id: ACCOUNT, name: null }]);
  return cp;
};

/** Reruns the source from the checkpoint until its export is complete (each rerun first retries failed users). */
async function runToEnd(cp: Checkpoint, each: (run: number) => RunOptions, maxRuns = 200): Promise<{ records: SourceKey[]; runs: RunResult[] }> {
  const records: SourceKey[] = [];
  const runs: RunResult[] = [];
  for (let run = 0; run === 0 || !cp.exportComplete; run++) {
    assert.ok(run < maxRuns, 'the export does not finish');
    if (run > 0) cp.beginResume();
    const r = await runSource(each(run));
    assert.equal(r.fatal, undefined, `run ${run}: ${r.fatal?.message}`);
    records.push(...r.records);
    runs.push(r);
  }
  return { records, runs };
}

const ids = (records: readonly SourceKey[]) => records.map((r) => r.key.AccessKeyId!);
const sorted = (xs: readonly string[]) => [...xs].sort();
const allKeys = (account: Account) => sorted(Object.values(account.keys).flatMap((ks) => ks.map((k) => k.AccessKeyId!)));

test('an uninterrupted run reads every key of every user once, with its user, and completes the checkpoint', async () => {
  const account = new Account();
  for (let i = 0; i < 9; i++) account.add(`user${i}`, i % 4);
  const { client, requests } = account.stub();
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp, concurrency: 3, pageSize: 2 });
  assert.equal(r.fatal, undefined);
  assert.deepEqual(sorted(ids(r.records)), allKeys(account));
  for (const rec of r.records) assert.equal(rec.user.userName, rec.key.UserName, 'each key with its own user');
  assert.equal(cp.exportComplete, true);
  assert.equal(cp.counters.usersExported, 9);
  assert.deepEqual(cp.accounts.map((e) => [e.ref.id, e.status]), [[ACCOUNT, 'done']], 'the account is closed');
  assert.ok(requests.filter((q) => q.action === 'ListAccessKeys').every((q) => q.MaxItems === 2), 'PageSize on every call');
  assert.ok(requests.some((q) => q.action === 'ListUsers' && q.MaxItems === 1000), 'the verifying scan pages 1,000 users at a time');
});

test("a user's first keys page asked before the source started is used instead of asking it again, once; paging goes on from its Marker, and its failure is that user's", async () => {
  const account = new Account();
  account.add('alice', 5);
  account.add('bob', 1);
  account.add('carol', 2);
  account.add('dave', 1);
  const { client, requests } = account.stub();
  // Asked as run.ts asks them, while the snapshot is set up: MaxItems = the page size, no Marker.
  const ask = (name: string) => client.send(new ListAccessKeysCommand({ UserName: name, MaxItems: 2 }));
  const asked = new Map<string, { userName: string; page: Promise<ListAccessKeysCommandOutput> }>([
    [account.users.find((u) => u.UserName === 'alice')!.UserId!, { userName: 'alice', page: ask('alice') }],
    [account.users.find((u) => u.UserName === 'bob')!.UserId!, { userName: 'bob', page: Promise.reject(awsError('AccessDenied', 403)) }],
    // Asked for a user of that id under another name (renamed since): not bob's, not used.
    [account.users.find((u) => u.UserName === 'carol')!.UserId!, { userName: 'carol-old', page: Promise.reject(new Error('never taken')) }],
  ]);
  for (const a of asked.values()) a.page.catch(() => undefined);
  await asked.values().next().value!.page;
  requests.length = 0;
  const taken: string[] = [];
  const cp = freshCheckpoint();
  const r = await runSource({
    client,
    cp,
    concurrency: 4,
    pageSize: 2,
    takeFirstKeysPage: (user) => {
      const a = asked.get(user.userId);
      if (a === undefined || a.userName !== user.userName) return undefined;
      asked.delete(user.userId);
      taken.push(user.userName);
      return a.page;
    },
  });
  assert.equal(r.fatal, undefined);
  assert.deepEqual(taken.sort(), ['alice', 'bob']);
  const keyCalls = requests.filter((q) => q.action === 'ListAccessKeys').map((q) => `${q.UserName} ${q.Marker === undefined ? 'first' : 'next'}`).sort();
  assert.deepEqual(keyCalls, ['alice next', 'alice next', 'carol first', 'dave first'], "alice's first page and bob's were not asked again");
  assert.deepEqual(sorted(ids(r.records)), allKeys(account).filter((id) => !id.startsWith(`AKIA${account.users.find((u) => u.UserName === 'bob')!.UserId!.slice(4)}`)));
  assert.deepEqual(cp.failedUsers.map((f) => [f.user.userName, f.code, f.token]), [['bob', 'AccessDenied', null]]);
});

test('users are listed under the path prefix only', async () => {
  const account = new Account();
  account.add('alice', 1, '/eng/');
  account.add('bob', 1, '/ops/');
  const { client, requests } = account.stub();
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp, pathPrefix: '/eng/' });
  assert.deepEqual(r.records.map((x) => x.user.userName), ['alice']);
  assert.ok(requests.filter((q) => q.action === 'ListUsers').every((q) => q.PathPrefix === '/eng/'));
});

/**
 * The fan-out as a model: seeded accounts (users with 0..5 keys), some users
 * renamed, deleted, denied or created while the snapshot runs, runs stopped after
 * a random number of batches or by a key budget, each rerun resuming from the
 * checkpoint the batches before the stop committed. At the end: every key of a
 * user that existed throughout was read exactly once (with the user's latest
 * name when it was renamed before its keys were read), no key twice, nothing of a
 * user deleted before it was paged, every denied user recorded as failed with its
 * code, and never more calls in flight than --concurrency.
 */
test('stopped and resumed at random, under renames, deletions, creations and denials, every key that existed throughout is read exactly once', async () => {
  const random = mulberry32(99);
  for (let round = 0; round < 25; round++) {
    const account = new Account();
    const users = 2 + Math.floor(random() * 10);
    for (let i = 0; i < users; i++) account.add(`u${String(i).padStart(2, '0')}`, Math.floor(random() * 6));
    const names = account.users.map((u) => u.UserName!);
    const fate = new Map<string, 'rename' | 'delete' | 'deny'>();
    for (const name of names.slice(1)) {
      const r = random();
      if (r < 0.1) fate.set(name, 'rename');
      else if (r < 0.2) fate.set(name, 'delete');
      else if (r < 0.25) fate.set(name, 'deny');
    }
    const created: string[] = [];
    const concurrency = 1 + Math.floor(random() * 4);
    const pageSize = 1 + Math.floor(random() * 3);
    const label = `round ${round} (${users} users, c=${concurrency}, page ${pageSize}, fates ${JSON.stringify([...fate])})`;
    let inFlight = 0;
    let peak = 0;
    const { client } = account.stub({
      before: async (request: StubRequest) => {
        if (request.action === 'ListAccessKeys') {
          const f = fate.get(request.UserName!);
          if (f === 'rename') {
            fate.delete(request.UserName!);
            account.rename(request.UserName!, `z-${request.UserName}`);
          } else if (f === 'delete') {
            fate.delete(request.UserName!);
            account.remove(request.UserName!);
          }
        }
        if (request.action === 'ListUsers' && created.length < 2 && random() < 0.3) created.push(account.add(`n${created.length}`, 1 + Math.floor(random() * 2)).UserName!);
        if (request.action !== 'ListAccessKeys') return;
        inFlight++;
        peak = Math.max(peak, inFlight);
        for (let y = Math.floor(random() * 3); y > 0; y--) await tick();
        inFlight--;
      },
      fail: (request) => (request.action === 'ListAccessKeys' && fate.get(request.UserName!) === 'deny' ? awsError('AccessDenied', 403) : undefined),
    });
    const cp = freshCheckpoint();
    const budgeted = random() < 0.5;
    const { records } = await runToEnd(cp, (run) => ({
      client,
      cp,
      concurrency,
      pageSize,
      ...(budgeted ? { maxItems: 2 + Math.floor(random() * 8) } : {}),
      ...(run < 6 && random() < 0.7 ? { stopAfterBatches: 1 + Math.floor(random() * 4) } : {}),
    }));
    const denied = names.filter((n) => fate.get(n) === 'deny');
    const expected = sorted(account.users.filter((u) => !denied.includes(u.UserName!)).flatMap((u) => account.keys[u.UserName!]!.map((k) => k.AccessKeyId!)));
    assert.deepEqual(sorted(ids(records)), expected, `${label}: keys read`);
    for (const rec of records) assert.equal(rec.user.userName, rec.key.UserName, `${label}: ${rec.key.AccessKeyId} under its user's current name`);
    assert.deepEqual(cp.failedUsers.map((f) => [f.user.userName, f.code]), denied.map((n) => [n, 'AccessDenied']), `${label}: failed users`);
    assert.ok(peak <= concurrency, `${label}: ${peak} calls in flight`);
    assert.deepEqual([...cp.dirtyUsers], [], `${label}: nothing was read twice`);
  }
});

test('a key budget stops each run after N keys were read, and the reruns read the rest, each key once', async () => {
  const account = new Account();
  for (let i = 0; i < 6; i++) account.add(`user${i}`, 3);
  const { client } = account.stub();
  const cp = freshCheckpoint();
  const { records, runs } = await runToEnd(cp, () => ({ client, cp, concurrency: 3, pageSize: 2, maxItems: 4 }));
  assert.deepEqual(sorted(ids(records)), allKeys(account));
  assert.deepEqual(runs.map((r) => r.records.length), [4, 4, 4, 4, 2], 'exactly N a run, the rest at the end');
});

/**
 * An account of `users` users (one key each) whose ListAccessKeys calls are held until
 * `release`d, one per call in the order they came: how many are in flight, and the most.
 */
function heldAccount(users: number) {
  const account = new Account();
  for (let i = 0; i < users; i++) account.add(`user${String(i).padStart(2, '0')}`, 1);
  const seen = { inFlight: 0, peak: 0 };
  const held: (() => void)[] = [];
  const stub = account.stub({
    before: async (request) => {
      if (request.action !== 'ListAccessKeys') return;
      seen.peak = Math.max(seen.peak, ++seen.inFlight);
      await new Promise<void>((resolve) => held.push(resolve));
      seen.inFlight--;
    },
  });
  const release = async (n: number, turns = 20) => {
    for (let i = 0; i < n; i++) held.shift()?.();
    await drain(turns);
  };
  return { ...stub, seen, release };
}

test('with a client that limits its requests on the wire, 3 × --concurrency users are paged once it is known unthrottled, and --concurrency again from a throttle on', async () => {
  const { client, seen, release } = heldAccount(30);
  let unthrottled = false;
  limitWire(client, 2, () => unthrottled);
  let done = false;
  const running = runSource({ client, cp: freshCheckpoint(), concurrency: 2, pageSize: 5 }).finally(() => (done = true));
  await drain(50);
  assert.equal(seen.inFlight, 2, 'not known unthrottled yet: --concurrency users');
  unthrottled = true;
  await release(1);
  assert.equal(seen.inFlight, 6, `unthrottled: ${USERS_PER_SLOT} users per wire slot`);
  unthrottled = false;
  await release(4);
  assert.equal(seen.inFlight, 2, 'throttled: no user started while --concurrency or more were paged');
  await release(1);
  assert.equal(seen.inFlight, 2, 'one done, one started');
  while (!done) await release(1);
  const r = await running;
  assert.equal(seen.peak, 6);
  assert.equal(r.records.length, 30);
});

test('usersAtOnce: --concurrency for a client that does not limit its requests on the wire (a stub), USERS_PER_SLOT times that for one that does and is unthrottled', () => {
  const { client } = new Account().stub();
  assert.equal(usersAtOnce(client, 4), 4);
  limitWire(client, 4, () => true);
  assert.equal(usersAtOnce(client, 4), 4 * USERS_PER_SLOT);
});

test('at most --concurrency users are paged at once, and the listing waits for a free slot', async () => {
  const { client, requests, seen, release } = heldAccount(12);
  const cp = freshCheckpoint();
  let done = false;
  const running = runSource({ client, cp, concurrency: 3, pageSize: 2 }).finally(() => (done = true));
  await drain(50);
  assert.equal(seen.inFlight, 3, 'three users paged at once');
  const listed = requests.filter((q) => q.action === 'ListUsers').length;
  await drain(50);
  assert.equal(requests.filter((q) => q.action === 'ListUsers').length, listed, 'while every slot is busy the listing waits');
  // Pages 1 and 2 started three users (the fourth waits for a slot), and page 3 was read ahead: not one more.
  assert.equal(listed, 3, `${listed} of 6 pages listed ahead`);
  while (!done) await release(1, 10);
  const r = await running;
  assert.equal(seen.peak, 3);
  assert.equal(r.records.length, 12);
});

test('a renamed user missing under its old name is found by the scan and read again from the start under its new name', async () => {
  // The first scan starts as the listing's last page comes, while users are still paged:
  // bob is renamed before it reads the users, or after. Either way he turns missing after
  // it started, so it is dropped and the users scanned again once all settled.
  for (const when of ['before the first scan', 'after the first scan'] as const) {
    const account = new Account();
    account.add('alice', 3);
    account.add('bob', 2);
    let renamed = false;
    let scans = 0;
    const { client } = account.stub({
      before: (request) => {
        if (request.action === 'ListUsers' && request.MaxItems === 1000 && ++scans === 1 && when === 'before the first scan') {
          renamed = true;
          account.rename('bob', 'robert');
        }
        // After bob's first page was read, he is renamed: the next call under his old name is NoSuchEntity.
        if (when === 'after the first scan' && request.action === 'ListAccessKeys' && request.UserName === 'bob' && request.Marker !== undefined && !renamed) {
          assert.equal(scans, 1, 'the first scan read the users before');
          renamed = true;
          account.rename('bob', 'robert');
        }
      },
    });
    const cp = freshCheckpoint();
    const r = await runSource({ client, cp, concurrency: 1, pageSize: 1 });
    assert.equal(r.fatal, undefined);
    assert.ok(renamed, when);
    const kinds = r.states.filter((s) => 'user' in s && s.user.userId === account.users.find((u) => u.UserName === 'robert')!.UserId).map((s) => s.kind);
    assert.deepEqual(kinds, when === 'before the first scan' ? ['user-missing', 'user-found', 'user-page', 'user-done'] : ['user-page', 'user-missing', 'user-found', 'user-page', 'user-done'], when);
    assert.deepEqual(r.records.filter((x) => x.user.userName === 'robert').map((x) => x.key.AccessKeyId), account.keys.robert!.map((k) => k.AccessKeyId), 'read again from the start');
    assert.equal(r.records.filter((x) => x.user.userName === 'bob').length, when === 'before the first scan' ? 0 : 1);
    assert.equal(cp.dirtyUsers.size, when === 'before the first scan' ? 0 : 1, 'its first page may come twice: the merge keeps one');
    assert.deepEqual(r.states.flatMap((s) => (s.kind === 'users-scanned' ? [s.complete] : [])), [false, true], `${when}: a scan that found a renamed user is not the last`);
    assert.equal(cp.counters.usersVanished, 0, 'never vanished');
    assert.equal(cp.exportComplete, true);
  }
});

test('a user deleted after it was listed is vanished, also when a lagging listing still shows it under the same name', async () => {
  for (const lagging of [false, true]) {
    const account = new Account();
    account.add('alice', 1);
    const ghost = account.add('ghost', 2);
    const { client, requests } = account.stub({
      fail: (request) => (request.action === 'ListAccessKeys' && request.UserName === 'ghost' ? awsError('NoSuchEntity', 404) : undefined),
    });
    if (!lagging) {
      // Deleted once listed: the first call for its keys arrives after the listing.
      const { client: deleting } = account.stub({
        before: (request) => {
          if (request.action === 'ListAccessKeys' && request.UserName === 'ghost' && account.users.includes(ghost)) account.remove('ghost');
        },
      });
      const cp = freshCheckpoint();
      const finished: number[] = [];
      const r = await runSource({ client: deleting, cp, onUserFinished: () => finished.push(1) });
      assert.deepEqual(ids(r.records), ['AKIA000001K0']);
      assert.equal(cp.counters.usersVanished, 1);
      assert.ok(r.states.some((s) => s.kind === 'user-vanished' && s.user.userName === 'ghost'));
      assert.equal(finished.length, 2, 'alice done, ghost vanished');
      assert.equal(cp.exportComplete, true);
    } else {
      const cp = freshCheckpoint();
      const r = await runSource({ client, cp });
      assert.ok(r.states.some((s) => s.kind === 'user-vanished' && s.user.userName === 'ghost'), 'listed under the very name IAM said NoSuchEntity for');
      assert.equal(requests.filter((q) => q.action === 'ListAccessKeys' && q.UserName === 'ghost').length, 1, 'not paged again under that name');
      assert.equal(r.states.filter((s) => s.kind === 'users-scanned').length, 1, 'one scan settles it');
      // The first scan asked as the listing came, before ghost's NoSuchEntity, could not
      // tell a deletion from a rename after it: it was dropped and the users scanned again.
      assert.equal(requests.filter((q) => q.action === 'ListUsers' && q.MaxItems === 1000).length, 2);
      assert.equal(cp.exportComplete, true);
    }
  }
});

test('a user created or renamed behind the listing cursor is found by the scan that verifies the listing', async () => {
  const account = new Account();
  account.add('m-user', 1);
  account.add('z-user', 1);
  let created = false;
  const { client } = account.stub({
    before: (request) => {
      // Once the listing passed "a", a user appears before the cursor.
      if (request.action === 'ListUsers' && request.Marker !== undefined && !created) {
        created = true;
        account.add('a-late', 2);
        account.add('b-late', 1);
      }
    },
  });
  const cp = freshCheckpoint();
  const listed: [number, boolean][] = [];
  const r = await runSource({ client, cp, pageSize: 1, onUsersListed: (n, last) => listed.push([n, last]) });
  assert.deepEqual(sorted(ids(r.records)), allKeys(account));
  const scans = r.states.flatMap((s) => (s.kind === 'users-scanned' ? [s] : []));
  assert.deepEqual(scans.map((s) => [s.users.map((u) => u.userName), s.complete]), [[['a-late', 'b-late'], false], [[], true]], 'the first scan found both, the second nothing new');
  assert.deepEqual(listed, [[1, false], [1, true], [2, true], [0, true]], 'new users per page: m, z; the scans: a-late and b-late, then none');
});

test(`IAM that never stops changing: after ${MAX_SCANS} scans the listing counts as verified`, async () => {
  const account = new Account();
  account.add('first', 1);
  let scans = 0;
  const { client } = account.stub({
    before: (request) => {
      if (request.action === 'ListUsers' && request.MaxItems === 1000) account.add(`new${++scans}`, 1);
    },
  });
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp });
  assert.equal(r.fatal, undefined);
  assert.equal(scans, MAX_SCANS);
  assert.equal(r.states.filter((s) => s.kind === 'users-scanned').length, MAX_SCANS);
  assert.equal(r.states.filter((s) => s.kind === 'users-scanned' && s.complete).length, 1, 'only the last counts as complete');
  assert.equal(cp.exportComplete, true);
});

test('a missing user found renamed by the last allowed scan is vanished, not paged again', async () => {
  const account = new Account();
  account.add('keep', 1);
  account.add('mover', 1);
  let scans = 0;
  let moves = 0;
  const { client } = account.stub({
    before: (request) => {
      if (request.action === 'ListUsers' && request.MaxItems === 1000) {
        scans++;
        account.add(`churn${scans}`, 0); // something new every scan
        return;
      }
      // Renamed again before every call for its keys: it is always missing under the name it was found as.
      if (request.action === 'ListAccessKeys' && account.users.some((u) => u.UserName === request.UserName && u.UserName!.startsWith('mover'))) account.rename(request.UserName!, `mover${++moves}`);
    },
  });
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp });
  assert.equal(r.fatal, undefined);
  assert.equal(r.states.filter((s) => s.kind === 'users-scanned').length, MAX_SCANS);
  assert.equal(scans, MAX_SCANS + 1, 'and the scan asked as the listing came, dropped: mover turned missing after it started');
  const mover = r.states.filter((s) => 'user' in s && s.user.userId === 'AIDA000002');
  assert.equal(mover.at(-1)!.kind, 'user-vanished');
  assert.equal(cp.exportComplete, true);
});

test('a stored ListUsers Marker IAM rejects restarts the listing from the start, skipping every user already known', async () => {
  const account = new Account();
  for (let i = 0; i < 4; i++) account.add(`user${i}`, 1);
  const stop = new AbortController();
  // Stopped when the second user's keys are asked for: the first is finished, the listing under way.
  const first = account.stub({ before: (request) => void (request.action === 'ListAccessKeys' && request.UserName === 'user1' && stop.abort('signal')) });
  const cp = freshCheckpoint();
  await runSource({ client: first.client, cp, pageSize: 1, concurrency: 1, stop });
  assert.notEqual(cp.resumePlan(ACCOUNT).listToken, null, 'stopped inside the listing');
  const finished = new Set(cp.toJSON().accounts[0]!.progress!.finished);
  assert.ok(finished.size > 0, 'someone finished before the stop');
  let rejections = 0;
  const { client, requests } = account.stub({
    fail: (request) => (request.action === 'ListUsers' && request.Marker !== undefined && request.MaxItems === 1 && rejections++ === 0 ? awsError('ValidationError', 400) : undefined),
  });
  const r = await runSource({ client, cp, pageSize: 1, concurrency: 1 });
  assert.equal(r.fatal, undefined);
  assert.equal(r.states.filter((s) => s.kind === 'users-restarted').length, 1);
  assert.equal(cp.counters.restartedListings, 1);
  assert.ok(requests.some((q) => q.action === 'ListUsers' && q.Marker === undefined && q.MaxItems === 1), 'listed again from the first page');
  const paged = requests.filter((q) => q.action === 'ListAccessKeys').map((q) => q.UserName!);
  assert.deepEqual(sorted(paged), account.users.filter((u) => !finished.has(u.UserId!)).map((u) => u.UserName!), 'each user not finished paged once; finished ones not again');
  assert.equal(cp.exportComplete, true);
});

test(`a listing whose Marker keeps being rejected restarts at most ${MAX_LISTING_RESTARTS} times, then fails the run naming ListUsers`, async () => {
  const account = new Account();
  for (let i = 0; i < 3; i++) account.add(`user${i}`, 1);
  const cp = freshCheckpoint();
  const stop = new AbortController();
  await runSource({ client: account.stub({ before: (request) => void (request.action === 'ListUsers' && request.Marker !== undefined && stop.abort('signal')) }).client, cp, pageSize: 1, concurrency: 1, stop });
  assert.notEqual(cp.resumePlan(ACCOUNT).listToken, null, 'stopped inside the listing');
  const { client } = account.stub({ fail: (request) => (request.action === 'ListUsers' && request.Marker !== undefined ? awsError('ValidationError', 400) : undefined) });
  const r = await runSource({ client, cp, pageSize: 1, concurrency: 1 });
  assert.equal(r.states.filter((s) => s.kind === 'users-restarted').length, MAX_LISTING_RESTARTS);
  assert.ok(r.fatal instanceof ExportError && r.fatal.code === 'SOURCE_FAILED' && /^ListUsers: IAM answered ValidationError/.test(r.fatal.message), String(r.fatal?.message));
});

test("a user's stored Marker IAM rejects reads its keys again from the start; the user is dirty", async () => {
  const account = new Account();
  account.add('alice', 5);
  let rejected = 0;
  const { client } = account.stub({
    fail: (request) => (request.action === 'ListAccessKeys' && request.Marker !== undefined && rejected++ < 1 ? awsError('ValidationError', 400) : undefined),
  });
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp, pageSize: 2 });
  assert.deepEqual(r.states.filter((s) => 'user' in s).map((s) => s.kind), ['user-page', 'user-restarted', 'user-page', 'user-page', 'user-done']);
  assert.deepEqual(ids(r.records), ['AKIA000001K0', 'AKIA000001K1', 'AKIA000001K0', 'AKIA000001K1', 'AKIA000001K2', 'AKIA000001K3', 'AKIA000001K4']);
  assert.deepEqual([...cp.dirtyUsers], ['AIDA000001']);
  assert.equal(cp.counters.restartedListings, 1);
});

test(`a user whose Marker is rejected again and again fails after ${MAX_LISTING_RESTARTS} restarts`, async () => {
  const account = new Account();
  account.add('alice', 5);
  account.add('bob', 1);
  const { client } = account.stub({
    fail: (request) => (request.action === 'ListAccessKeys' && request.UserName === 'alice' && request.Marker !== undefined ? awsError('ValidationError', 400) : undefined),
  });
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp, pageSize: 2 });
  assert.equal(r.states.filter((s) => s.kind === 'user-restarted').length, MAX_LISTING_RESTARTS);
  assert.deepEqual(cp.failedUsers.map((f) => [f.user.userName, f.code]), [['alice', 'ValidationError']]);
  assert.notEqual(cp.failedUsers[0]!.token, null, 'it resumes where it failed');
});

test('a user whose first call is rejected as a bad request fails at once (there was no Marker to reject)', async () => {
  const account = new Account();
  account.add('alice', 1);
  account.add('bob', 1);
  const { client } = account.stub({ fail: (request) => (request.action === 'ListAccessKeys' && request.UserName === 'alice' ? awsError('ValidationError', 400) : undefined) });
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp });
  assert.equal(r.states.filter((s) => s.kind === 'user-restarted').length, 0);
  assert.deepEqual(cp.failedUsers.map((f) => [f.user.userName, f.code, f.token]), [['alice', 'ValidationError', null]]);
});

test('throttling that outlived the retries stops the run resumably and fails no user', async () => {
  for (const where of ['ListAccessKeys', 'ListUsers', 'scan'] as const) {
    const account = new Account();
    for (let i = 0; i < 3; i++) account.add(`user${i}`, 2);
    let throttled = false;
    const { client } = account.stub({
      fail: (request) => {
        const hit = where === 'scan' ? request.action === 'ListUsers' && request.MaxItems === 1000 : request.action === where && (where === 'ListUsers' ? request.Marker !== undefined : request.UserName === 'user1');
        if (hit && !throttled) {
          throttled = true;
          return awsError('Throttling', 400);
        }
        return undefined;
      },
    });
    const cp = freshCheckpoint();
    const r = await runSource({ client, cp, pageSize: 1, concurrency: 1 });
    assert.equal(r.throttled, true, where);
    assert.equal(r.fatal, undefined, where);
    assert.deepEqual(cp.failedUsers, [], where);
    assert.equal(cp.exportComplete, false, `${where}: not complete`);
    const rest = await runToEnd(cp, () => ({ client, cp, pageSize: 1, concurrency: 1 }));
    assert.deepEqual(sorted([...ids(r.records), ...ids(rest.records)]), allKeys(account), `${where}: the rerun finishes exactly`);
  }
});

test('rejected credentials or an unreachable endpoint end the run, whichever call meets them', async () => {
  for (const [where, error, code] of [
    ['ListUsers', awsError('InvalidClientTokenId', 403), 'SOURCE_CREDENTIALS'],
    ['ListAccessKeys', awsError('ExpiredToken', 403), 'SOURCE_CREDENTIALS'],
    ['ListAccessKeys', Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'SOURCE_UNREACHABLE'],
    ['scan', awsError('AccessDenied', 403), 'SOURCE_DENIED'],
    ['ListUsers', awsError('AccessDenied', 403), 'SOURCE_DENIED'],
  ] as const) {
    const account = new Account();
    account.add('alice', 1);
    const { client } = account.stub({
      fail: (request) => ((where === 'scan' ? request.action === 'ListUsers' && request.MaxItems === 1000 : request.action === where) ? error : undefined),
    });
    const cp = freshCheckpoint();
    const r = await runSource({ client, cp });
    assert.equal(r.fatal?.code, code, `${where}: ${String(r.fatal?.message)}`);
    if (where !== 'ListAccessKeys') assert.ok(r.fatal!.message.includes('iam:ListUsers') || code !== 'SOURCE_DENIED', r.fatal!.message);
    assert.deepEqual(cp.failedUsers, [], where);
  }
});

test(`when the first ${SYSTEMIC_SAMPLE} users all fail alike and none was exported, the run stops: it is a missing permission, not ${SYSTEMIC_SAMPLE} users`, async () => {
  for (const [code, expected] of [['AccessDenied', 'SOURCE_DENIED'], ['AccessDeniedException', 'SOURCE_DENIED'], ['ServiceFailure', 'SOURCE_FAILED']] as const) {
    const account = new Account();
    for (let i = 0; i < SYSTEMIC_SAMPLE + 5; i++) account.add(`user${String(i).padStart(2, '0')}`, 1);
    const { client, requests } = account.stub({ fail: (request) => (request.action === 'ListAccessKeys' ? awsError(code, code === 'ServiceFailure' ? 500 : 403) : undefined) });
    const cp = freshCheckpoint();
    const r = await runSource({ client, cp, concurrency: 1 });
    assert.equal(r.fatal?.code, expected, code);
    assert.equal(r.fatal?.context.awsCode, code);
    assert.match(r.fatal!.message, new RegExp(`${code}\\)? for every one of the first ${SYSTEMIC_SAMPLE} users`));
    if (expected === 'SOURCE_DENIED') assert.match(r.fatal!.message, /iam:ListAccessKeys/);
    assert.equal(requests.filter((q) => q.action === 'ListAccessKeys').length, SYSTEMIC_SAMPLE, 'no user started after the verdict');
  }
});

test('fewer users than the sample, all failing alike, are systemic too once the listing is done', async () => {
  const account = new Account();
  for (let i = 0; i < 3; i++) account.add(`user${i}`, 1);
  const { client } = account.stub({ fail: (request) => (request.action === 'ListAccessKeys' ? awsError('AccessDenied', 403) : undefined) });
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp });
  assert.equal(r.fatal?.code, 'SOURCE_DENIED');
  assert.match(r.fatal!.message, /first 3 users/);
});

test('failures that differ, or a user that was exported, are per-user failures, not a systemic stop', async () => {
  const mixed = new Account();
  for (let i = 0; i < SYSTEMIC_SAMPLE + 2; i++) mixed.add(`user${String(i).padStart(2, '0')}`, 1);
  const one = mixed.stub({ fail: (request, index) => (request.action === 'ListAccessKeys' ? awsError(index % 2 ? 'AccessDenied' : 'ServiceFailure', 403) : undefined) });
  const cp1 = freshCheckpoint();
  const r1 = await runSource({ client: one.client, cp: cp1 });
  assert.equal(r1.fatal, undefined);
  assert.equal(cp1.failedUsers.length, SYSTEMIC_SAMPLE + 2);
  const exported = new Account();
  exported.add('aaa-good', 1);
  for (let i = 0; i < SYSTEMIC_SAMPLE + 2; i++) exported.add(`user${String(i).padStart(2, '0')}`, 1);
  const two = exported.stub({ fail: (request) => (request.action === 'ListAccessKeys' && request.UserName !== 'aaa-good' ? awsError('AccessDenied', 403) : undefined) });
  const cp2 = freshCheckpoint();
  const r2 = await runSource({ client: two.client, cp: cp2, concurrency: 1 });
  assert.equal(r2.fatal, undefined);
  assert.equal(cp2.failedUsers.length, SYSTEMIC_SAMPLE + 2);
  // A resume of that snapshot: users were exported in an earlier run, so retried failures are per user too.
  cp2.beginResume();
  const r3 = await runSource({ client: two.client, cp: cp2, concurrency: 1 });
  assert.equal(r3.fatal, undefined);
});

test('users of another account than the snapshot are a mismatch that names --fresh', async () => {
  const account = new Account();
  account.add('alice', 1);
  const { client } = account.stub();
  const cp = new Checkpoint(SNAPSHOT_ID, SNAPSHOT_TIME, DATA_CONFIG);
  cp.selectAccounts([{ id: '999999999999', name: null }]);
  const r = await runSource({ client, cp, accountId: '999999999999' });
  assert.equal(r.fatal?.code, 'CHECKPOINT_MISMATCH');
  assert.match(r.fatal!.message, /users of account 123456789012, but these credentials should read account 999999999999.*--fresh/);
  assert.deepEqual(r.records, []);
});

test('a broken ListUsers answer (a user without an ARN) ends the run', async () => {
  const account = new Account();
  account.add('alice', 1);
  delete account.users[0]!.Arn;
  const cp = freshCheckpoint();
  const r = await runSource({ client: account.stub().client, cp });
  assert.equal(r.fatal?.code, 'SOURCE_FAILED');
});

test('a stop ends the stream with what was committed; nothing starts after it', async () => {
  const account = new Account();
  for (let i = 0; i < 8; i++) account.add(`user${i}`, 3);
  const { client, requests } = account.stub();
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp, concurrency: 2, pageSize: 1, stopAfterBatches: 3 });
  const callsAtEnd = requests.length;
  assert.ok(r.records.length > 0 && r.records.length < 24);
  assert.equal(cp.exportComplete, false);
  await outcome(new Promise((resolve) => setImmediate(resolve)), 50);
  assert.equal(requests.length, callsAtEnd, 'no call after the stream ended');
  // Nothing committed is lost or read again by the rerun.
  const rest = await runToEnd(cp, () => ({ client, cp, concurrency: 2, pageSize: 1 }));
  assert.deepEqual(sorted([...ids(r.records), ...ids(rest.records)]), allKeys(account));
});

test('destroying the stream (an error downstream) stops the paging', async () => {
  const account = new Account();
  for (let i = 0; i < 30; i++) account.add(`user${String(i).padStart(2, '0')}`, 2);
  let calls = 0;
  const { client } = account.stub({ before: () => void calls++ });
  const stop = new AbortController();
  const stream = sourceStream({ accounts: [{ ref: { id: ACCOUNT, name: null }, plan: freshCheckpoint().resumePlan(ACCOUNT), viaRole: false }], accountConcurrency: 1, prepare: async () => ({ client, facts: Promise.resolve({ alias: null, rootAccessKeysPresent: null }) }), accountFailures: false, pathPrefix: '/', pageSize: 1, concurrency: 2, stop: stop.signal, onFatal: () => undefined, onThrottled: () => undefined, endpoint: 'x' });
  for await (const _ of stream) break; // destroys it
  for (let i = 0; i < 200; i++) await tick();
  const after = calls;
  for (let i = 0; i < 200; i++) await tick();
  assert.equal(calls, after, 'paging stopped');
  assert.ok(calls < 60, `${calls} calls for 30 users: it did not go on`);
  assert.equal(stop.signal.aborted, false, "the caller's signal is left alone");
});

test('a resume pages users in progress from their token and pending users from the start, before listing further', async () => {
  const account = new Account();
  for (let i = 0; i < 5; i++) account.add(`user${i}`, 4);
  const cp = freshCheckpoint();
  const stop = new AbortController();
  // Stopped while the second page of a user is in flight: its first page is committed.
  await runSource({ client: account.stub({ before: (request) => void (request.action === 'ListAccessKeys' && request.Marker !== undefined && stop.abort('signal')) }).client, cp, pageSize: 2, concurrency: 1, stop });
  const plan = cp.resumePlan(ACCOUNT);
  assert.ok(plan.resume.some((x) => x.token !== null), 'someone is in progress');
  const { client, requests } = account.stub();
  cp.beginResume();
  const r = await runSource({ client, cp, pageSize: 2, concurrency: 1 });
  const first = requests.find((q) => q.action === 'ListAccessKeys')!;
  assert.equal(first.UserName, plan.resume[0]!.user.userName);
  assert.notEqual(first.Marker, undefined, 'from its token');
  assert.ok(requests.indexOf(first) < requests.findIndex((q) => q.action === 'ListUsers'), 'before listing further');
  assert.equal(r.fatal, undefined);
  assert.equal(cp.exportComplete, true);
});

test('readAhead asks for the next item while the current one is used, and closes its source when left early', async () => {
  const asked: number[] = [];
  let closed = false;
  const source = (async function* () {
    try {
      for (let i = 0; i < 5; i++) {
        asked.push(i);
        yield i;
      }
    } finally {
      closed = true;
    }
  })();
  const it = readAhead(source);
  assert.deepEqual(await it.next(), { value: 0, done: false });
  await tick();
  assert.deepEqual(asked, [0, 1], 'the next one is already asked for');
  assert.deepEqual(await it.next(), { value: 1, done: false });
  await it.return(undefined);
  assert.equal(closed, true);
  const all: number[] = [];
  for await (const x of readAhead((async function* () {
    yield* [1, 2, 3];
  })())) all.push(x);
  assert.deepEqual(all, [1, 2, 3]);
});

test('readAhead passes a failure of the item read ahead when it is reached, never as an unhandled rejection', async () => {
  const boom = new Error('page 2 failed');
  const source = (async function* () {
    yield 1;
    throw boom;
  })();
  const it = readAhead(source);
  assert.deepEqual(await it.next(), { value: 1, done: false });
  for (let i = 0; i < 5; i++) await tick(); // the failed read ahead sits unobserved meanwhile
  await assert.rejects(it.next(), (err) => err === boom);
  const quiet = readAhead((async function* () {
    yield 1;
    throw boom;
  })());
  await quiet.next();
  await drain();
  assert.deepEqual(await quiet.return(undefined), { value: undefined, done: true }, 'left before the failure: nothing raised');
});

/**
 * Accounts of a multi-account run (viaRole, per-account failures), each served by
 * its own stub; `prepare` records when each account is reached and may hold it.
 */
function accountsRun(o: {
  accounts: number;
  accountConcurrency: number;
  hold?: (id: string, signal: AbortSignal) => Promise<void>;
  before?: (id: string, r: StubRequest) => Promise<void> | void;
  stop?: AbortController;
  /** An error reaching the account throws (AssumeRole denied…), after `hold`. */
  reachError?: (id: string) => unknown;
  /** The account's last-use source, still coming when it is reached (its credential report). */
  lastUse?: (id: string) => Promise<void> | undefined;
  /** An error the account's IAM answers `r` with. */
  fail?: (id: string, r: StubRequest) => unknown;
  /** Reached through the role (default: every account). */
  viaRole?: (id: string) => boolean;
  /** Per-account failures (default true: many accounts). */
  accountFailures?: boolean;
  /** --max-items. */
  maxItems?: number;
}) {
  const ids = Array.from({ length: o.accounts }, (_, i) => String(100000000000 + i));
  const log: string[] = [];
  const fatal: ExportError[] = [];
  const settled = new Set<string>();
  /** The signal each account was reached with. */
  const signals = new Map<string, AbortSignal>();
  const stubs = new Map(
    ids.map((id) => {
      const a = new Account(id);
      for (let u = 0; u < 3; u++) a.add(`u${u}`, 1);
      return [id, a.stub({ before: (r) => o.before?.(id, r), fail: (r) => o.fail?.(id, r) })] as const;
    }),
  );
  const cp = new Checkpoint(SNAPSHOT_ID, SNAPSHOT_TIME, DATA_CONFIG);
  cp.selectAccounts(ids.map((id) => ({ id, name: null })));
  const stop = o.stop ?? new AbortController();
  const records: SourceKey[] = [];
  const stream = sourceStream({
    accounts: ids.map((id) => ({ ref: { id, name: null }, plan: cp.resumePlan(id), viaRole: o.viaRole?.(id) ?? true })),
    accountConcurrency: o.accountConcurrency,
    prepare: async (job, signal) => {
      // Logged before anything can throw: a job past the end of the line shows as "reach undefined".
      log.push(`reach ${(job as typeof job | undefined)?.ref.id}`);
      signals.set(job.ref.id, signal);
      try {
        await o.hold?.(job.ref.id, signal);
        const error = o.reachError?.(job.ref.id);
        if (error !== undefined) throw error;
        const lastUse = o.lastUse?.(job.ref.id);
        return { client: stubs.get(job.ref.id)!.client, facts: Promise.resolve({ alias: null, rootAccessKeysPresent: null }), ...(lastUse ? { lastUse } : {}) };
      } finally {
        settled.add(job.ref.id);
      }
    },
    accountFailures: o.accountFailures ?? true,
    pathPrefix: '/',
    pageSize: 100,
    concurrency: 1,
    stop: stop.signal,
    onFatal: (err) => {
      log.push(`fatal ${err.message}`);
      fatal.push(err);
      stop.abort(err);
    },
    onThrottled: () => {
      log.push('throttled');
      stop.abort('throttled');
    },
    budget: o.maxItems === undefined ? undefined : new KeyBudget(o.maxItems, stop.signal),
    endpoint: 'https://iam.amazonaws.com',
  });
  const done = (async () => {
    for await (const batch of stream as AsyncIterable<readonly ({ type: 'RECORD'; record: SourceKey } | { type: 'STATE'; state: StateEvent })[]>) {
      for (const item of batch) {
        if (item.type === 'RECORD') records.push(item.record);
        else if (item.state.kind === 'account-started') log.push(`account-started ${item.state.account.id}`);
        else if (item.state.kind === 'account-done') log.push(`account-done ${item.state.account}`);
        else if (item.state.kind === 'account-failed') log.push(`account-failed ${item.state.account} ${item.state.code}`);
      }
    }
  })();
  const of = (kind: string) => log.filter((l) => l.startsWith(`${kind} `)).map((l) => l.slice(kind.length + 1));
  return { ids, log, fatal, records, settled, signals, stop, stream, done, of };
}

test('accounts are reached ahead of their turn (one --account-concurrency later in line), yet announced and read in order', { timeout: 10_000 }, async () => {
  // Reading account 0 and 1 waits until accounts 2 and 3 were reached: only reaching ahead lets it go on.
  let release!: () => void;
  const reachedAhead = new Promise<void>((r) => (release = r));
  const run = accountsRun({
    accounts: 5,
    accountConcurrency: 2,
    before: async (id) => {
      if (id === '100000000000' || id === '100000000001') await reachedAhead;
    },
  });
  const watch = setInterval(() => {
    if (run.log.includes('reach 100000000002') && run.log.includes('reach 100000000003')) release();
  }, 1);
  try {
    await run.done;
  } finally {
    clearInterval(watch);
  }
  assert.deepEqual(run.log.filter((l) => l.startsWith('fatal')), []);
  const started = run.log.filter((l) => l.startsWith('account-started')).map((l) => l.split(' ')[1]);
  assert.deepEqual(started, run.ids, 'each account announced once, in line order');
  assert.equal(run.log.filter((l) => l.startsWith('account-done')).length, 5);
  assert.deepEqual(run.log.filter((l) => l.startsWith('reach')).map((l) => l.split(' ')[1]).sort(), run.ids, 'each reached once');
  const firstDone = run.log.findIndex((l) => l.startsWith('account-done'));
  assert.ok(run.log.indexOf('reach 100000000002') < firstDone, 'account 2 was reached before account 0 or 1 was done with');
});

test('a stop leaves no account reached ahead behind: each is told to stop and settles before the source ends', async () => {
  const stop = new AbortController();
  const run = accountsRun({
    accounts: 6,
    accountConcurrency: 2,
    stop,
    // Accounts 2 and 3 are being reached (held until told to stop), then the run stops while 0 and 1 are read.
    hold: async (id, signal) => {
      if (id === '100000000000' || id === '100000000001') return;
      signal.throwIfAborted();
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => setTimeout(resolve, 20), { once: true }));
      throw new Error('stopped while reaching');
    },
    before: async () => {
      if (run.log.includes('reach 100000000002') && run.log.includes('reach 100000000003')) stop.abort('signal');
      await tick();
    },
  });
  await run.done;
  assert.ok(run.settled.has('100000000002') && run.settled.has('100000000003'), 'the accounts reached ahead settled before the source ended');
  assert.ok(!run.log.includes('reach 100000000004'), 'nothing new is reached after the stop');
  assert.ok(!run.log.some((l) => l.includes('account-started 100000000002') || l.includes('account-started 100000000003')), 'accounts reached ahead are not read after the stop');
});

test('a stop leaves no last-use source of an account reached ahead behind: each settles before the source ends', async () => {
  const stop = new AbortController();
  const lastUseSettled = new Set<string>();
  const run = accountsRun({
    accounts: 6,
    accountConcurrency: 2,
    stop,
    // Accounts 2 and 3 are reached at once, but their credential reports are still coming
    // when the run stops; told to stop, each settles a little later (a download winding down).
    lastUse: (id) => {
      if (id === '100000000000' || id === '100000000001') return undefined;
      const signal = run.signals.get(id)!;
      return new Promise<void>((resolve) =>
        signal.addEventListener(
          'abort',
          () =>
            setTimeout(() => {
              lastUseSettled.add(id);
              resolve();
            }, 30),
          { once: true },
        ),
      );
    },
    before: async () => {
      if (run.settled.has('100000000002') && run.settled.has('100000000003')) stop.abort('signal');
      await tick();
    },
  });
  await run.done;
  assert.ok(run.signals.get('100000000002')?.aborted && run.signals.get('100000000003')?.aborted, 'the accounts reached ahead were told to stop');
  assert.deepEqual([...lastUseSettled].sort(), ['100000000002', '100000000003'], 'their last-use sources settled before the source ended');
  assert.ok(!run.log.some((l) => l.includes('account-started 100000000002') || l.includes('account-started 100000000003')), 'accounts reached ahead are not read after the stop');
});

const accountIds = (records: readonly SourceKey[]) => [...new Set(records.map((r) => r.user.accountId))].sort();

test('an account that cannot be reached, or whose ListUsers is denied, fails alone with its AWS code; the others are read and done', async () => {
  const run = accountsRun({
    accounts: 5,
    accountConcurrency: 2,
    reachError: (id) => (id === '100000000001' ? awsError('AccessDenied', 403) : undefined),
    fail: (id, r) => (id === '100000000003' && r.action === 'ListUsers' ? awsError('AccessDenied', 403) : undefined),
  });
  await run.done;
  assert.deepEqual(run.fatal, []);
  assert.deepEqual(run.of('account-failed').sort(), ['100000000001 AccessDenied', '100000000003 AccessDenied']);
  assert.deepEqual(run.of('account-done').sort(), ['100000000000', '100000000002', '100000000004']);
  assert.deepEqual(run.of('account-started').sort(), ['100000000000', '100000000002', '100000000003', '100000000004'], 'an account never reached is not announced');
  assert.deepEqual(accountIds(run.records), ['100000000000', '100000000002', '100000000004']);
  assert.equal(run.records.length, 9, 'every key of the accounts read, once');
});

test(`the first ${SYSTEMIC_ACCOUNTS} accounts reached through the role all failing alike, none read, stop the run: it is not about accounts`, async () => {
  const run = accountsRun({ accounts: 14, accountConcurrency: 1, reachError: () => awsError('AccessDenied', 403) });
  await run.done;
  assert.equal(run.fatal.length, 1, 'one fatal error');
  assert.equal(run.fatal[0]!.code, 'SOURCE_DENIED');
  assert.equal(run.fatal[0]!.context.awsCode, 'AccessDenied');
  assert.match(run.fatal[0]!.message, new RegExp(`^every one of the first ${SYSTEMIC_ACCOUNTS} accounts failed the same way, so it is not about accounts: reaching account 100000000009: access denied \\(AccessDenied\\); the identity needs sts:AssumeRole$`));
  assert.equal(run.of('account-failed').length, SYSTEMIC_ACCOUNTS, 'no account is tried after the stop');
  const cause = run.fatal[0]!.cause as ExportError;
  assert.ok(cause instanceof ExportError && /^reaching account 100000000009: /.test(cause.message), 'the last account\'s failure is its cause (shown by --debug)');
  assert.ok(!run.log.includes('reach 100000000011'), 'nor reached');

  // Fewer accounts than the sample: all of them.
  const few = accountsRun({ accounts: 3, accountConcurrency: 2, reachError: () => awsError('AccessDenied', 403) });
  await few.done;
  assert.equal(few.fatal.length, 1);
  assert.match(few.fatal[0]!.message, /^every one of the first 3 accounts failed the same way/);
});

test('not systemic: failures that differ, an account read before them, or the caller\'s own account failing too', async () => {
  // Alike but one code differs: per-account failures, every account tried.
  const differ = accountsRun({ accounts: 12, accountConcurrency: 1, reachError: (id) => (id === '100000000004' ? awsError('RegionDisabledException', 403) : awsError('AccessDenied', 403)) });
  await differ.done;
  assert.deepEqual(differ.fatal, []);
  assert.equal(differ.of('account-failed').length, 12);
  assert.ok(differ.of('account-failed').includes('100000000004 RegionDisabledException'));

  // The first account is read, then the others fail alike: the role works somewhere.
  const readFirst = accountsRun({ accounts: 12, accountConcurrency: 1, reachError: (id) => (id === '100000000000' ? undefined : awsError('AccessDenied', 403)) });
  await readFirst.done;
  assert.deepEqual(readFirst.fatal, []);
  assert.deepEqual(readFirst.of('account-done'), ['100000000000']);
  assert.equal(readFirst.of('account-failed').length, 11);

  // The caller's own account (base credentials) fails like 9 reached through the role, then
  // the 11th is read: 9 role failures are fewer than the sample of 10 role accounts.
  const own = accountsRun({
    accounts: 11,
    accountConcurrency: 1,
    viaRole: (id) => id !== '100000000000',
    reachError: (id) => (id === '100000000010' ? undefined : awsError('AccessDenied', 403)),
  });
  await own.done;
  assert.deepEqual(own.fatal, []);
  assert.deepEqual(own.of('account-done'), ['100000000010']);
  assert.equal(own.of('account-failed').length, 10);

  // Read accounts count only when reached through the role: the caller's own account read
  // first does not mask a role that is missing everywhere.
  const ownRead = accountsRun({
    accounts: 11,
    accountConcurrency: 1,
    viaRole: (id) => id !== '100000000000',
    reachError: (id) => (id === '100000000000' ? undefined : awsError('AccessDenied', 403)),
  });
  await ownRead.done;
  assert.equal(ownRead.fatal.length, 1);
  assert.match(ownRead.fatal[0]!.message, /^every one of the first 10 accounts failed the same way/);
});

test('an error about the run inside one account (not an AWS answer, or another account\'s users) ends the run even when accounts fail alone', async () => {
  const internal = accountsRun({ accounts: 4, accountConcurrency: 1, reachError: (id) => (id === '100000000001' ? new Error('a bug') : undefined) });
  await internal.done;
  assert.equal(internal.fatal.length, 1);
  assert.equal(internal.fatal[0]!.code, 'INTERNAL');
  assert.deepEqual(internal.of('account-failed'), [], 'the run failed, not the account');
  assert.deepEqual(internal.of('account-done'), ['100000000000'], 'nothing after it');

  // Each code that is about the run, met while one account is reached (the store, the lease, the network…).
  for (const code of ['OUTPUT_IO', 'LEASE_LOST', 'CHECKPOINT_CORRUPT', 'CHECKPOINT_MISMATCH', 'INTERNAL', 'SOURCE_UNREACHABLE'] as const) {
    const run = accountsRun({ accounts: 3, accountConcurrency: 1, reachError: (id) => (id === '100000000001' ? new ExportError(code, `${code} happened`) : undefined) });
    await run.done;
    assert.deepEqual(run.fatal.map((e) => e.code), [code], code);
    assert.deepEqual(run.of('account-failed'), [], `${code}: the run failed, not the account`);
  }
  // The network gone while one account is reached: SOURCE_UNREACHABLE, the run's.
  const net = accountsRun({ accounts: 3, accountConcurrency: 1, reachError: (id) => (id === '100000000001' ? Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) : undefined) });
  await net.done;
  assert.deepEqual(net.fatal.map((e) => e.code), ['SOURCE_UNREACHABLE']);
  assert.match(net.fatal[0]!.message, /^reaching account 100000000001: STS endpoint https:\/\/iam\.amazonaws\.com unreachable after retries \(ECONNREFUSED\)/);
  assert.deepEqual(net.of('account-failed'), []);
  // Users of another account answered inside one account: a mismatch of the run (--fresh), not an account failure.
  const foreign = accountsRun({
    accounts: 3,
    accountConcurrency: 1,
    fail: (id, r) => (id === '100000000001' && r.action === 'ListUsers' ? new ExportError('CHECKPOINT_MISMATCH', 'users of another account') : undefined),
  });
  await foreign.done;
  assert.deepEqual(foreign.fatal.map((e) => e.code), ['CHECKPOINT_MISMATCH']);
  assert.deepEqual(foreign.of('account-failed'), []);
});

test('an account is read while its last-use source is still coming (its credential report), and ends only once that has settled', async () => {
  let settle!: () => void;
  const report = new Promise<void>((resolve) => (settle = resolve));
  const run = accountsRun({ accounts: 2, accountConcurrency: 1, lastUse: (id) => (id === '100000000000' ? report : undefined) });
  const first = () => run.records.filter((r) => r.user.accountId === '100000000000').length;
  for (let i = 0; i < 1000 && first() < 3; i++) await tick();
  assert.equal(first(), 3, 'every key of the account was read while its report was still coming');
  for (let i = 0; i < 50; i++) await tick();
  assert.deepEqual(run.of('account-done'), [], 'not done before its report settled');
  assert.deepEqual(run.of('account-started'), ['100000000000'], 'nor the next account started in its place');
  settle();
  await run.done;
  assert.deepEqual(run.of('account-done'), ['100000000000', '100000000001']);
  assert.deepEqual(run.fatal, []);
});

test('a last-use source that fails fails its account as reaching it would; alone, it is the run\'s; throttled, the run stops resumably', async () => {
  const failing = (id: string) => (id === '100000000001' ? Promise.reject(awsError('ServiceFailure', 500)) : undefined);
  const many = accountsRun({ accounts: 3, accountConcurrency: 1, lastUse: failing });
  await many.done;
  assert.deepEqual(many.of('account-failed'), ['100000000001 ServiceFailure']);
  assert.deepEqual(many.of('account-done'), ['100000000000', '100000000002'], 'the others go on');
  assert.deepEqual(many.fatal, []);

  const one = accountsRun({ accounts: 2, accountConcurrency: 1, accountFailures: false, viaRole: () => false, lastUse: failing });
  await one.done;
  assert.equal(one.fatal.length, 1);
  assert.equal(one.fatal[0]!.context.awsCode, 'ServiceFailure');
  assert.deepEqual(one.of('account-failed'), []);
  assert.deepEqual(one.of('account-done'), ['100000000000']);

  const throttled = accountsRun({ accounts: 3, accountConcurrency: 1, lastUse: (id) => (id === '100000000001' ? Promise.reject(awsError('Throttling', 400)) : undefined) });
  await throttled.done;
  assert.ok(throttled.log.includes('throttled'));
  assert.deepEqual(throttled.fatal, []);
  assert.deepEqual(throttled.of('account-failed'), []);
  assert.deepEqual(throttled.of('account-done'), ['100000000000']);
});

test('throttling that outlived the retries while reaching an account stops the run resumably: no account failed', async () => {
  const run = accountsRun({ accounts: 4, accountConcurrency: 1, reachError: (id) => (id === '100000000001' ? awsError('Throttling', 400) : undefined) });
  await run.done;
  assert.ok(run.log.includes('throttled'));
  assert.deepEqual(run.fatal, []);
  assert.deepEqual(run.of('account-failed'), []);
  assert.deepEqual(run.of('account-done'), ['100000000000']);
  assert.deepEqual(run.of('account-started'), ['100000000000'], 'nothing is read after the stop');
});

test('one account (the credentials\' own): an error reaching it or in it is the run\'s, not the account\'s', async () => {
  const reach = accountsRun({ accounts: 2, accountConcurrency: 1, accountFailures: false, viaRole: () => false, reachError: (id) => (id === '100000000000' ? awsError('AccessDenied', 403) : undefined) });
  await reach.done;
  assert.deepEqual(reach.fatal.map((e) => e.code), ['SOURCE_DENIED']);
  assert.deepEqual(reach.of('account-failed'), []);
  assert.deepEqual(reach.of('account-started'), []);

  const list = accountsRun({ accounts: 2, accountConcurrency: 1, accountFailures: false, viaRole: () => false, fail: (_id, r) => (r.action === 'ListUsers' ? awsError('AccessDenied', 403) : undefined) });
  await list.done;
  assert.deepEqual(list.fatal.map((e) => e.code), ['SOURCE_DENIED']);
  assert.deepEqual(list.of('account-failed'), []);
  assert.deepEqual(list.of('account-done'), []);
});

test('a resumed listing starts at its stored token with the page size; a listing already done is not listed again; the verifying scan pages 1,000 at a time', async () => {
  const account = new Account();
  for (let i = 0; i < 6; i++) account.add(`user${i}`, 1);
  // Run 1 stops while the second user is read: the listing stands after page 2 (one page read ahead).
  const stop1 = new AbortController();
  const first = account.stub({ before: (q) => (q.action === 'ListAccessKeys' && q.UserName === 'user1' ? stop1.abort('signal') : undefined) });
  const cp = freshCheckpoint();
  const r1 = await runSource({ client: first.client, cp, concurrency: 1, pageSize: 2, stop: stop1 });
  const pages1 = r1.states.flatMap((s) => (s.kind === 'users-page' ? [s] : []));
  const stored = pages1.at(-1)!.nextToken;
  assert.ok(stored !== null, 'the listing was not done');
  assert.ok(first.requests.filter((q) => q.action === 'ListUsers').every((q) => q.MaxItems === 2), 'listing pages of --page-size');

  // Run 2 resumes the listing at the stored token and stops once the listing is done.
  cp.beginResume();
  const stop2 = new AbortController();
  const second = account.stub({ before: (q) => (q.action === 'ListAccessKeys' && q.UserName === 'user5' ? stop2.abort('signal') : undefined) });
  await runSource({ client: second.client, cp, concurrency: 1, pageSize: 2, stop: stop2 });
  const listing2 = second.requests.filter((q) => q.action === 'ListUsers');
  // The stored token wraps the Marker after the last user of the last page announced (user3).
  assert.deepEqual(listing2[0], { action: 'ListUsers', PathPrefix: '/', MaxItems: 2, Marker: 'user3' }, 'resumed at the stored token');

  // Run 3: the listing is done; only the verifying scan lists users, 1,000 a page.
  cp.beginResume();
  const third = account.stub();
  const r3 = await runSource({ client: third.client, cp, concurrency: 1, pageSize: 2 });
  assert.equal(r3.fatal, undefined);
  assert.deepEqual(third.requests.filter((q) => q.action === 'ListUsers'), [{ action: 'ListUsers', PathPrefix: '/', MaxItems: 1000 }]);
  assert.equal(cp.exportComplete, true);
});

test('a missing user the resumed listing meets under a new name is found there (before any scan) and counted as listed', async () => {
  const account = new Account();
  account.add('a', 2);
  account.add('m', 1);
  account.add('z', 1);
  // Run 1: a is renamed to zz while its keys are asked for (NoSuchEntity: missing); the run stops at m.
  const stop1 = new AbortController();
  const first = account.stub({
    before: (q) => {
      if (q.action === 'ListAccessKeys' && q.UserName === 'a') account.rename('a', 'zz');
      if (q.action === 'ListAccessKeys' && q.UserName === 'm') stop1.abort('signal');
    },
  });
  const cp = freshCheckpoint();
  const r1 = await runSource({ client: first.client, cp, concurrency: 1, pageSize: 1, stop: stop1 });
  assert.ok(r1.states.some((s) => s.kind === 'user-missing' && s.user.userName === 'a'));
  cp.beginResume();
  const listed: [number, boolean][] = [];
  const r2 = await runSource({ client: account.stub().client, cp, concurrency: 1, pageSize: 1, onUsersListed: (n, last) => listed.push([n, last]) });
  assert.equal(r2.fatal, undefined);
  const kinds = r2.states.map((s) => (s.kind === 'user-found' ? `found ${s.user.userName}` : s.kind));
  assert.ok(kinds.includes('found zz') && kinds.indexOf('found zz') < kinds.indexOf('users-scanned'), `found by the listing: ${kinds.join(', ')}`);
  assert.deepEqual(listed, [[1, true], [0, true]], 'the last page, zz (found: counts as listed), then the scan (z was listed by run 1)');
  assert.deepEqual(r2.records.filter((x) => x.user.userName === 'zz').length, 2, 'zz read from the start');
  assert.equal(cp.exportComplete, true);
});

test('a user a scan meets twice (renamed past the cursor while it runs) is started once', async () => {
  const account = new Account();
  for (let i = 0; i < 1000; i++) account.add(`u${String(i).padStart(4, '0')}`, 0);
  let moved = false;
  const { client } = account.stub({
    before: (q) => {
      if (q.action !== 'ListUsers' || q.MaxItems !== 1000) return;
      if (q.Marker === undefined && !moved) account.add('b-new', 2); // created behind the listing: the scan's first page holds it
      else if (q.Marker !== undefined && !moved) {
        moved = true;
        account.rename('b-new', 'zz-new'); // and its second page again, under the new name
      }
    },
  });
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp, concurrency: 8, pageSize: 100 });
  assert.equal(r.fatal, undefined);
  assert.ok(moved, 'the scan had two pages');
  const firstScan = r.states.find((s) => s.kind === 'users-scanned')!;
  assert.equal(firstScan.kind === 'users-scanned' && firstScan.users.length, 1, 'the user once in what the scan found');
  assert.equal(r.records.length, 2, 'its keys read once');
  assert.equal(cp.exportComplete, true);
});

test('a user renamed each time it is read is found by each scan and read in the same run', async () => {
  const account = new Account();
  account.add('keep', 1);
  account.add('hop', 2);
  const names = ['hop', 'hop2', 'hop3'];
  const { client } = account.stub({
    before: (q) => {
      // The first call under each of its first two names finds it renamed to the next.
      const at = names.indexOf(q.UserName ?? '');
      if (q.action === 'ListAccessKeys' && at >= 0 && at < names.length - 1 && account.users.some((u) => u.UserName === names[at])) account.rename(names[at]!, names[at + 1]!);
    },
  });
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp, concurrency: 1 });
  assert.equal(r.fatal, undefined);
  assert.deepEqual(r.records.filter((x) => x.user.userName === 'hop3').length, 2, 'read under its last name');
  assert.ok(!r.states.some((s) => s.kind === 'user-vanished'), 'never vanished: it was there all along');
  assert.equal(cp.exportComplete, true, 'in one run');
});

test(`a user created before the last allowed scan and gone when it is read is vanished in that run, after exactly ${MAX_SCANS} scans`, async () => {
  const account = new Account();
  account.add('first', 1);
  let scans = 0;
  const { client } = account.stub({
    before: (q) => {
      if (q.action === 'ListUsers' && q.MaxItems === 1000) account.add(`new${++scans}`, 1);
      // The user the last scan finds is deleted before its keys are read.
      if (q.action === 'ListAccessKeys' && q.UserName === `new${MAX_SCANS}`) account.remove(q.UserName);
    },
  });
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp });
  assert.equal(r.fatal, undefined);
  assert.equal(scans, MAX_SCANS);
  assert.ok(r.states.some((s) => s.kind === 'user-vanished' && s.user.userName === `new${MAX_SCANS}`));
  assert.equal(cp.exportComplete, true);
});

test('ListUsers denied or with rejected credentials, in the listing or in the verifying scan, ends the run naming ListUsers', async () => {
  const cases = [
    { where: 'listing', error: awsError('AccessDenied', 403), expect: /^ListUsers: access denied \(AccessDenied\); the identity needs iam:ListUsers$/ },
    { where: 'listing', error: awsError('ExpiredToken', 400), expect: /^ListUsers: credentials rejected or missing \(ExpiredToken\)/ },
    { where: 'scan', error: awsError('AccessDenied', 403), expect: /^ListUsers: access denied \(AccessDenied\); the identity needs iam:ListUsers$/ },
    { where: 'scan', error: awsError('ExpiredToken', 400), expect: /^ListUsers: credentials rejected or missing \(ExpiredToken\)/ },
  ];
  for (const c of cases) {
    const account = new Account();
    account.add('alice', 1);
    const { client } = account.stub({ fail: (q) => (q.action === 'ListUsers' && (q.MaxItems === 1000) === (c.where === 'scan') ? c.error : undefined) });
    const r = await runSource({ client, cp: freshCheckpoint() });
    assert.match(r.fatal?.message ?? 'no fatal error', c.expect, `${c.where}: ${c.error.name}`);
  }
});

test('errors that end the run name their call: ListAccessKeys with its user; ListUsers for what is not an AWS error', async () => {
  const account = new Account();
  account.add('alice', 1);
  const creds = await runSource({ client: account.stub({ fail: (q) => (q.action === 'ListAccessKeys' ? awsError('ExpiredToken', 400) : undefined) }).client, cp: freshCheckpoint() });
  assert.match(creds.fatal?.message ?? '', /^ListAccessKeys for user alice: credentials rejected or missing \(ExpiredToken\)/);
  // A ListUsers answer the SDK parsed but that is not one (no users list): not an AWS error, internal.
  const broken = await runSource({ client: account.stub({ fail: (q) => (q.action === 'ListUsers' ? new TypeError('Users is not iterable') : undefined) }).client, cp: freshCheckpoint() });
  assert.equal(broken.fatal?.code, 'INTERNAL');
  assert.match(broken.fatal?.message ?? '', /^internal error during ListUsers: Users is not iterable/);
});

test('a stop wins over the systemic check at the end: users that all failed before it are per-user failures of a stopped run', async () => {
  const account = new Account();
  for (let i = 0; i < 3; i++) account.add(`user${i}`, 1);
  const stop = new AbortController();
  let denied = 0;
  let allDenied!: () => void;
  const three = new Promise<void>((resolve) => (allDenied = resolve));
  const { client } = account.stub({
    fail: (q) => (q.action === 'ListAccessKeys' ? (++denied === 3 && allDenied(), awsError('AccessDenied', 403)) : undefined),
    // The verifying scan (it starts as the listing's last page comes) is answered once
    // every user failed and said so: the stop comes just before the check at the end.
    before: async (q) => {
      if (q.action !== 'ListUsers' || q.MaxItems !== 1000) return;
      await three;
      await drain();
      stop.abort('signal');
    },
  });
  const r = await runSource({ client, cp: freshCheckpoint(), concurrency: 1, stop });
  assert.equal(r.fatal, undefined, 'stopped, not systemic');
  assert.equal(r.states.filter((s) => s.kind === 'user-failed').length, 3);
});

test('users failing alike while the scan still finds users are not systemic: the sample waits for the end of the listing', async () => {
  const account = new Account();
  for (const name of ['b', 'c', 'd']) account.add(name, 1);
  let created = false;
  const { client } = account.stub({
    fail: (q) => (q.action === 'ListAccessKeys' && q.UserName !== 'a-late' ? awsError('AccessDenied', 403) : undefined),
    before: (q) => {
      if (q.action === 'ListUsers' && q.Marker !== undefined && !created) {
        created = true;
        account.add('a-late', 2); // behind the cursor: only the scan finds it
      }
    },
  });
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp, concurrency: 1, pageSize: 1 });
  assert.equal(r.fatal, undefined, 'one user exported: not systemic');
  assert.equal(r.records.length, 2);
  assert.equal(r.states.filter((s) => s.kind === 'user-failed').length, 3);
});

test('the caller\'s own account read, and every account reached through the role failing alike: systemic (the sample is the role\'s accounts)', async () => {
  const run = accountsRun({ accounts: 3, accountConcurrency: 1, viaRole: (id) => id !== '100000000000', reachError: (id) => (id === '100000000000' ? undefined : awsError('AccessDenied', 403)) });
  await run.done;
  assert.equal(run.fatal.length, 1);
  assert.match(run.fatal[0]!.message, /^every one of the first 2 accounts failed the same way/);
});

test('a key budget spent: no further account is announced, and those reached ahead are told to stop', async () => {
  const run = accountsRun({ accounts: 5, accountConcurrency: 2, maxItems: 2 });
  await run.done;
  assert.equal(run.records.length, 2, 'the budget');
  assert.deepEqual(run.fatal, []);
  const started = run.of('account-started');
  assert.ok(started.every((id) => id === '100000000000' || id === '100000000001'), `announced: ${started.join(', ')}`);
  assert.deepEqual(run.of('account-done'), [], 'no account complete');
  for (const id of ['100000000002', '100000000003']) {
    assert.ok(run.signals.get(id)?.aborted, `account ${id}, reached ahead, was told to stop`);
    assert.ok(run.settled.has(id));
  }
});

test('the signal an account is reached with outlives a normal end (its lookups go on downstream), and is aborted when the stream is torn down', async () => {
  const normal = accountsRun({ accounts: 3, accountConcurrency: 2 });
  await normal.done;
  assert.equal(normal.of('account-done').length, 3);
  for (const [id, signal] of normal.signals) assert.ok(!signal.aborted, `account ${id}: not aborted by the end`);

  // Torn down (an error downstream) while account 0 is read: its signal is aborted, so its calls stop.
  let torn: ReturnType<typeof accountsRun> | undefined;
  torn = accountsRun({
    accounts: 2,
    accountConcurrency: 1,
    before: (id, q) => {
      if (id === '100000000000' && q.action === 'ListAccessKeys') torn?.stream.destroy();
    },
  });
  await torn.done.catch(() => undefined);
  await drain(50);
  assert.ok(torn.signals.get('100000000000')?.aborted, 'tearing the stream down aborts the account being read');
  assert.deepEqual(torn.fatal, [], 'what fails after the teardown (a push on the closed channel) is not an error of the run');
});

test('an account whose turn came while it is reached, when the run stops: neither failed nor fatal', async () => {
  const stop = new AbortController();
  const run = accountsRun({
    accounts: 2,
    accountConcurrency: 1,
    stop,
    hold: async (id, signal) => {
      if (id !== '100000000000') return;
      setImmediate(() => stop.abort('signal'));
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      throw Object.assign(new Error('The operation was aborted'), { name: 'AbortError' });
    },
  });
  await run.done;
  assert.deepEqual(run.fatal, []);
  assert.deepEqual(run.of('account-failed'), []);
  assert.ok(!run.log.includes('throttled'));
});

test('the systemic verdict is given once, also when calls answered before it keep failing after it', async () => {
  const account = new Account();
  for (let i = 0; i < SYSTEMIC_SAMPLE + 10; i++) account.add(`user${String(i).padStart(2, '0')}`, 1);
  const { client } = account.stub({ fail: (q) => (q.action === 'ListAccessKeys' ? awsError('AccessDenied', 403) : undefined) });
  const r = await runSource({ client, cp: freshCheckpoint(), concurrency: 8 });
  assert.equal(r.fatal?.code, 'SOURCE_DENIED');
  assert.equal(r.fatalCalls, 1);

  const accounts = accountsRun({ accounts: 16, accountConcurrency: 4, reachError: () => awsError('AccessDenied', 403) });
  await accounts.done;
  assert.equal(accounts.fatal.length, 1, 'one verdict for the accounts too');
});

test('a first ListUsers call rejected as a bad request fails the run at once (there was no Marker to reject)', async () => {
  const account = new Account();
  account.add('alice', 1);
  const { client, requests } = account.stub({ fail: (q) => (q.action === 'ListUsers' && q.MaxItems !== 1000 ? awsError('ValidationError', 400) : undefined) });
  const r = await runSource({ client, cp: freshCheckpoint() });
  assert.equal(r.fatal?.code, 'SOURCE_FAILED');
  assert.equal(r.states.filter((s) => s.kind === 'users-restarted').length, 0);
  assert.equal(requests.filter((q) => q.action === 'ListUsers').length, 1);
});

test('a call the stop aborted (it rejects with AbortError) fails no user and is no error of the run', async () => {
  const account = new Account();
  account.add('alice', 1);
  account.add('bob', 1);
  const stop = new AbortController();
  const { client } = account.stub({
    before: (q) => (q.action === 'ListAccessKeys' && q.UserName === 'bob' ? stop.abort('signal') : undefined),
    fail: () => (stop.signal.aborted ? Object.assign(new Error('This operation was aborted'), { name: 'AbortError' }) : undefined),
  });
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp, concurrency: 1, stop });
  assert.equal(r.fatal, undefined);
  assert.equal(r.states.filter((s) => s.kind === 'user-failed').length, 0);
  assert.deepEqual(ids(r.records), ['AKIA000001K0'], 'alice only; bob stays where he was');
});

test("an account's facts are asked alongside its users: the listing does not wait for them, and they are announced after account-started and before account-done", { timeout: 5_000 }, async () => {
  const account = new Account();
  for (let i = 0; i < 4; i++) account.add(`user${i}`, 1);
  // The facts answer only once the keys of a user were asked: a fan-out that waited for them would never list.
  let keysAsked!: () => void;
  const asked = new Promise<void>((resolve) => (keysAsked = resolve));
  const { client } = account.stub({ before: (request) => void (request.action === 'ListAccessKeys' && keysAsked()) });
  const facts = asked.then(() => ({ alias: 'prod', rootAccessKeysPresent: false }));
  const cp = freshCheckpoint();
  const states: string[] = [];
  const stream = sourceStream({ accounts: [{ ref: { id: ACCOUNT, name: null }, plan: cp.resumePlan(ACCOUNT), viaRole: false }], accountConcurrency: 1, prepare: async () => ({ client, facts }), accountFailures: false, pathPrefix: '/', pageSize: 2, concurrency: 2, stop: new AbortController().signal, onFatal: (err) => assert.fail(err), onThrottled: () => assert.fail('throttled'), endpoint: 'x' });
  for await (const batch of stream as AsyncIterable<readonly ({ type: 'RECORD' } | { type: 'STATE'; state: StateEvent })[]>) {
    for (const item of batch) if (item.type === 'STATE') (cp.apply(item.state), states.push(item.state.kind));
  }
  const kinds = states.filter((k) => k.startsWith('account-'));
  assert.deepEqual(kinds, ['account-started', 'account-facts', 'account-done']);
  assert.ok(states.indexOf('users-page') < states.indexOf('account-facts'), `listed before the facts came: ${states.join(', ')}`);
  assert.deepEqual(cp.account(ACCOUNT)!.facts, { alias: 'prod', rootAccessKeysPresent: false });
});

test("the verifying scan is asked while the listing's last users are still paged, not after them: no round trip is added at the end of the export", async () => {
  const account = new Account();
  for (let i = 0; i < 12; i++) account.add(`user${String(i).padStart(2, '0')}`, 1);
  const { client, requests } = account.stub();
  const cp = freshCheckpoint();
  const r = await runSource({ client, cp, concurrency: 2, pageSize: 5 });
  assert.equal(r.fatal, undefined);
  const scan = requests.findIndex((q) => q.action === 'ListUsers' && q.MaxItems === 1000);
  const lastKeys = requests.map((q) => q.action).lastIndexOf('ListAccessKeys');
  assert.ok(scan >= 0 && scan < lastKeys, `the scan is request ${scan}, the last ListAccessKeys ${lastKeys}`);
  assert.deepEqual(r.states.flatMap((s) => (s.kind === 'users-scanned' ? [s.complete] : [])), [true], 'one scan, nothing changed');
  assert.equal(r.records.length, 12);
  assert.equal(cp.exportComplete, true);
});
