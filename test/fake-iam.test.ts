/**
 * The fake IAM, checked through the real @aws-sdk/client-iam: what the SDK
 * parses out of it is what the exporter will see.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  GetAccessKeyLastUsedCommand,
  IAMClient,
  ListAccessKeysCommand,
  ListUsersCommand,
  NoSuchEntityException,
  paginateListAccessKeys,
  paginateListUsers,
  type IAMClientConfig,
} from '@aws-sdk/client-iam';
import { NAME_PUNCTUATION, generateDataset, type DataOptions } from './fake-iam/data.ts';
import { FaultInjector, TokenBucket, userFate } from './fake-iam/faults.ts';
import { FakeIamOptionsError, mergeFaultOptions, resolveOptions } from './fake-iam/options.ts';
import { decodeMarker, encodeMarker } from './fake-iam/paging.ts';
import { escapeXml } from './fake-iam/xml.ts';
import { startFakeIam, type FakeIam, type FakeIamOptions } from './fake-iam/server.ts';

const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };

/** What the tests read from any error the SDK throws. */
interface SdkError {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
  readonly $fault?: 'client' | 'server';
  readonly $metadata?: { readonly httpStatusCode?: number; readonly attempts?: number; readonly requestId?: string };
}

type RetryStrategyV2 = Extract<NonNullable<IAMClientConfig['retryStrategy']>, { acquireInitialRetryToken: unknown }>;
type RetryErrorType = Parameters<RetryStrategyV2['refreshRetryTokenForRetry']>[1]['errorType'];

/** Starts a fake and an SDK client on it; both are closed when the test ends. */
async function setup(t: TestContext, options: FakeIamOptions = {}, config: Partial<IAMClientConfig> = {}): Promise<{ fake: FakeIam; iam: IAMClient }> {
  const fake = await startFakeIam(options);
  const iam = new IAMClient({ endpoint: fake.url, region: 'us-east-1', credentials, ...config });
  t.after(async () => {
    iam.destroy();
    await fake.close();
  });
  return { fake, iam };
}

/** The error a promise rejects with; fails the test if it resolves. */
async function caught(promise: Promise<unknown>): Promise<SdkError> {
  try {
    await promise;
  } catch (error) {
    return error as SdkError;
  }
  assert.fail('expected the call to fail');
}

/**
 * A retry strategy that retries nothing and records how the SDK classified
 * each error: the same classification its standard and adaptive modes use.
 */
function classifyingRetries(): { strategy: RetryStrategyV2; kinds: RetryErrorType[] } {
  const kinds: RetryErrorType[] = [];
  const token = { getRetryCount: () => 0, getRetryDelay: () => 0 };
  const strategy: RetryStrategyV2 = {
    acquireInitialRetryToken: async () => token,
    refreshRetryTokenForRetry: async (_token, info) => {
      kinds.push(info.errorType);
      throw info.error ?? new Error('not retried');
    },
    recordSuccess: () => {},
  };
  return { strategy, kinds };
}

/** Waits until `condition` holds, checking between turns of the event loop; bounded, not timed. */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (condition()) return;
    await sleep(5);
  }
  assert.fail(`never happened: ${what}`);
}

/** A raw HTTP exchange, for what the SDK cannot send. */
async function raw(url: string, init: { method?: string; body?: string } = {}): Promise<{ status: number; body: string }> {
  const response = await fetch(url, {
    method: init.method ?? 'POST',
    headers: init.body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' },
    ...(init.body === undefined ? {} : { body: init.body }),
  });
  return { status: response.status, body: await response.text() };
}

async function allUsers(iam: IAMClient, pageSize: number, PathPrefix?: string): Promise<string[]> {
  const names: string[] = [];
  for await (const page of paginateListUsers({ client: iam, pageSize }, PathPrefix === undefined ? {} : { PathPrefix })) {
    for (const user of page.Users ?? []) names.push(user.UserName ?? '');
  }
  return names;
}

describe('generated data', () => {
  const options: DataOptions = { users: 400, seed: 42, keysPerUser: { min: 0, max: 7 }, accountId: '123456789012' };

  test('the same seed and options generate the same users and keys', () => {
    assert.deepEqual(generateDataset(options), generateDataset(options));
    const other = generateDataset({ ...options, seed: 43 });
    assert.notDeepEqual(
      other.users.map((u) => u.userName),
      generateDataset(options).users.map((u) => u.userName),
    );
  });

  test('user names are unique regardless of case and drawn from the characters IAM allows', () => {
    const { users } = generateDataset(options);
    const names = users.map((u) => u.userName);
    assert.equal(new Set(names.map((n) => n.toLowerCase())).size, names.length);
    for (const name of names) assert.match(name, /^[A-Za-z0-9_+=,.@-]{1,64}$/);
    for (const char of NAME_PUNCTUATION) assert.ok(names.some((n) => n.includes(char)), `no name holds ${char}`);
    assert.ok(names.some((n) => n.length === 64), 'no name at the 64-character limit');
    assert.ok(names.some((n) => /^[a-z]+\.[a-z]+@/.test(n)), 'no realistic e-mail style name');
    assert.deepEqual(names, [...names].sort(), 'users are not in code-unit order');
  });

  test('ids, paths, ARNs, statuses and dates have the shapes IAM gives them', () => {
    const dataset = generateDataset(options);
    const keys = [...dataset.keysById.values()];
    assert.equal(new Set(dataset.users.map((u) => u.userId)).size, dataset.users.length);
    for (const user of dataset.users) {
      assert.match(user.userId, /^AIDA[A-Z0-9]{17}$/);
      assert.equal(user.arn, `arn:aws:iam::123456789012:user${user.path}${user.userName}`);
      assert.equal(user.createDate.getTime() % 1000, 0);
      for (const key of dataset.keysByUser.get(user.userName) ?? []) {
        assert.ok(key.createDate > user.createDate, 'a key older than its user');
        if (key.lastUsed) assert.ok(key.lastUsed.date >= key.createDate, 'a key used before it existed');
      }
    }
    for (const key of keys) {
      assert.match(key.accessKeyId, /^AKIA[A-Z0-9]{16}$/);
      assert.equal(key.createDate.getTime() % 1000, 0);
      assert.ok(key.createDate >= new Date('2015-01-01T00:00:00Z') && key.createDate <= new Date('2026-11-01T00:00:00Z'));
    }
    assert.deepEqual(new Set(dataset.users.map((u) => u.path)), new Set(['/', '/engineering/', '/ops/team-a/', '/ops/team-b/']));
    assert.deepEqual(new Set(keys.map((k) => k.status)), new Set(['Active', 'Inactive', 'Expired']));
    assert.ok(keys.some((k) => k.lastUsed) && keys.some((k) => !k.lastUsed), 'want used and never-used keys');
  });

  test('fates go to a fixed share of users, and a larger share only adds users', () => {
    const fates = (vanishedFraction: number, deniedFraction: number) =>
      Array.from({ length: 200 }, (_, rank) => userFate(rank, 200, { vanishedFraction, deniedFraction }));
    const small = fates(0.05, 0.02);
    assert.equal(small.filter((f) => f === 'vanished').length, 10);
    assert.equal(small.filter((f) => f === 'denied').length, 4);
    const larger = fates(0.1, 0);
    small.forEach((fate, rank) => {
      if (fate === 'vanished') assert.equal(larger[rank], 'vanished');
    });
  });
});

describe('fault and option building blocks', () => {
  test('a token bucket serves its burst at once, then refills at its rate', () => {
    let now = 0;
    const bucket = new TokenBucket({ perSecond: 2, burst: 3 }, () => now);
    assert.deepEqual([bucket.tryTake(), bucket.tryTake(), bucket.tryTake(), bucket.tryTake()], [true, true, true, false]);
    now += 499;
    assert.equal(bucket.tryTake(), false);
    now += 1;
    assert.equal(bucket.tryTake(), true);
    now += 60_000;
    assert.deepEqual([bucket.tryTake(), bucket.tryTake(), bucket.tryTake(), bucket.tryTake()], [true, true, true, false]);
  });

  test('toggling another fault keeps the rate limit bucket; changing the limit refills it', () => {
    let now = 0;
    const base = resolveOptions({ rateLimit: { perSecond: 1, burst: 2 } }).faults;
    const injector = new FaultInjector(1, base, () => now);
    assert.equal(injector.onArrival(), undefined);
    assert.equal(injector.onArrival(), undefined);
    injector.configure(mergeFaultOptions(base, { latencyMs: 5 }));
    assert.equal(injector.onArrival()?.code, 'Throttling');
    injector.configure(mergeFaultOptions(base, { rateLimit: { perSecond: 1, burst: 3 } }));
    assert.equal(injector.onArrival(), undefined);
    injector.configure(mergeFaultOptions(base, { invalidCredentials: true }));
    for (let i = 0; i < 5; i++) assert.equal(injector.onArrival(), undefined, 'bad credentials are answered as such, not throttled');
    assert.equal(injector.afterDelay().kind, 'fail');
  });

  test('invalid options are reported all at once', () => {
    assert.throws(
      () => resolveOptions({ users: -1, keysPerUser: { min: 3, max: 1 }, throttleProbability: 2, accountId: '12', rateLimit: { perSecond: 0, burst: 1 } }),
      (error: unknown) => error instanceof FakeIamOptionsError && error.code === 'FAKE_IAM_OPTIONS' && error.problems.length === 5,
    );
  });

  test('a marker round-trips and anything else is rejected', () => {
    const state = { list: 'keys', user: 'AIDAEXAMPLE', date: Date.UTC(2020, 0, 1), id: 'AKIAEXAMPLE', gen: 3 } as const;
    assert.deepEqual(decodeMarker(encodeMarker(state)), state);
    const noGeneration = Buffer.from(JSON.stringify({ list: 'users', after: 'alice' })).toString('base64url');
    const noId = Buffer.from(JSON.stringify({ ...state, id: '' })).toString('base64url');
    for (const garbage of ['', 'garbage!', 'e30', noGeneration, noId, encodeMarker({ ...state, gen: -1 }), Buffer.from('[1]').toString('base64url')]) {
      assert.throws(() => decodeMarker(garbage), { name: 'IamError', code: 'ValidationError' }, garbage);
    }
  });

  test('XML escaping covers markup and characters XML cannot carry', () => {
    assert.equal(escapeXml(`<a href="x">Tom & 'Jerry'</a>`), '&lt;a href=&quot;x&quot;&gt;Tom &amp; &apos;Jerry&apos;&lt;/a&gt;');
    assert.equal(escapeXml('a\u0000b\rc\ud800'), 'a\ufffdb&#xD;c\ufffd');
    assert.equal(escapeXml('😀 ok'), '😀 ok');
  });
});

describe('listing through the SDK', () => {
  test('paginating ListUsers and ListAccessKeys returns exactly the ground truth', async (t) => {
    const { fake, iam } = await setup(t, { users: 120, seed: 9, keysPerUser: { min: 0, max: 7 } });
    const truth = fake.truth();

    const users = [];
    for await (const page of paginateListUsers({ client: iam, pageSize: 7 }, {})) users.push(...(page.Users ?? []));
    assert.deepEqual(
      users.map((u) => [u.UserName, u.UserId, u.Path, u.Arn, u.CreateDate?.getTime()]),
      truth.users.map((u) => [u.userName, u.userId, u.path, u.arn, u.createDate.getTime()]),
    );

    const keys = [];
    for (const user of truth.users) {
      for await (const page of paginateListAccessKeys({ client: iam, pageSize: 2 }, { UserName: user.userName })) {
        keys.push(...(page.AccessKeyMetadata ?? []));
      }
    }
    assert.deepEqual(
      keys.map((k) => [k.UserName, k.AccessKeyId, k.Status, k.CreateDate?.getTime()]),
      truth.keys.map((k) => [k.userName, k.accessKeyId, k.status, k.createDate.getTime()]),
    );
    assert.ok(fake.stats().calls.ListAccessKeys > truth.users.length, 'some key listings should have needed several pages');
  });

  test('one page of 1000 holds everything and is not truncated', async (t) => {
    const { fake, iam } = await setup(t, { users: 30, seed: 2 });
    const page = await iam.send(new ListUsersCommand({ MaxItems: 1000 }));
    assert.equal(page.IsTruncated, false);
    assert.equal(page.Marker, undefined);
    assert.equal(page.Users?.length, fake.truth().users.length);
  });

  test('PathPrefix keeps only users whose path starts with it', async (t) => {
    const { fake, iam } = await setup(t, { users: 150, seed: 4 });
    const truth = fake.truth();
    for (const prefix of ['/ops/', '/ops/team-a/', '/engineering/', '/eng', '/']) {
      const expected = truth.users.filter((u) => u.path.startsWith(prefix)).map((u) => u.userName);
      assert.ok(expected.length > 0, `no user under ${prefix}`);
      assert.deepEqual(await allUsers(iam, 4, prefix), expected, prefix);
    }
    const none = await iam.send(new ListUsersCommand({ PathPrefix: '/nobody/' }));
    assert.deepEqual(none.Users, []);
    assert.equal(none.IsTruncated, false);
  });

  test('GetAccessKeyLastUsed gives date, service and region, or N/A for a key never used', async (t) => {
    const { fake, iam } = await setup(t, { users: 40, seed: 6 });
    const keys = fake.truth().keys;
    const used = keys.find((k) => k.lastUsed);
    const unused = keys.find((k) => !k.lastUsed);
    assert.ok(used?.lastUsed && unused);

    const a = await iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: used.accessKeyId }));
    assert.equal(a.UserName, used.userName);
    assert.deepEqual(a.AccessKeyLastUsed, { LastUsedDate: used.lastUsed.date, ServiceName: used.lastUsed.service, Region: used.lastUsed.region });

    const b = await iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: unused.accessKeyId }));
    assert.equal(b.UserName, unused.userName);
    assert.deepEqual(b.AccessKeyLastUsed, { ServiceName: 'N/A', Region: 'N/A' });
  });

  test('an empty account lists no users', async (t) => {
    const { fake, iam } = await setup(t, { users: 0 });
    assert.deepEqual(await allUsers(iam, 10), []);
    assert.deepEqual(fake.truth(), { accountId: '123456789012', users: [], keys: [] });
  });
});

describe('validation errors', () => {
  test('MaxItems outside 1..1000 is a ValidationError', async (t) => {
    const { iam } = await setup(t, { users: 3 }, { maxAttempts: 1 });
    for (const MaxItems of [0, 1001]) {
      const error = await caught(iam.send(new ListUsersCommand({ MaxItems })));
      assert.equal(error.name, 'ValidationError');
      assert.equal(error.$fault, 'client');
      assert.equal(error.$metadata?.httpStatusCode, 400);
    }
  });

  test('a MaxItems that is not an integer is a ValidationError', async (t) => {
    const { fake } = await setup(t, { users: 3 });
    for (const value of ['abc', '1.5', '-1', '']) {
      const answer = await raw(fake.url, { body: `Action=ListUsers&Version=2010-05-08&MaxItems=${value}` });
      assert.equal(answer.status, 400, value);
      assert.match(answer.body, /<Code>ValidationError<\/Code>/);
    }
  });

  test('a Marker the fake did not hand out is a ValidationError', async (t) => {
    const { fake, iam } = await setup(t, { users: 10, seed: 3, keysPerUser: { min: 3, max: 3 } }, { maxAttempts: 1 });
    const [first, second] = fake.truth().users;
    assert.ok(first && second);
    const usersMarker = (await iam.send(new ListUsersCommand({ MaxItems: 1 }))).Marker;
    const keysMarker = (await iam.send(new ListAccessKeysCommand({ UserName: first.userName, MaxItems: 1 }))).Marker;
    assert.ok(usersMarker && keysMarker);

    const attempts = [
      iam.send(new ListUsersCommand({ Marker: 'not-a-marker!' })),
      iam.send(new ListUsersCommand({ Marker: keysMarker })),
      iam.send(new ListAccessKeysCommand({ UserName: first.userName, Marker: usersMarker })),
      iam.send(new ListAccessKeysCommand({ UserName: second.userName, Marker: keysMarker })),
    ];
    for (const attempt of attempts) assert.equal((await caught(attempt)).name, 'ValidationError');
  });

  test('values echoed from the request are escaped in the XML', async (t) => {
    const { iam } = await setup(t, { users: 1 }, { maxAttempts: 1 });
    const error = await caught(iam.send(new ListAccessKeysCommand({ UserName: `<a&b>"'` })));
    assert.equal(error.name, 'ValidationError');
    assert.ok(error.message.includes(`'<a&b>"''`), error.message);
  });

  test('an unknown action answers 400 InvalidAction', async (t) => {
    const { fake } = await setup(t);
    const answer = await raw(fake.url, { body: 'Action=DeleteUser&Version=2010-05-08&UserName=alice' });
    assert.equal(answer.status, 400);
    assert.match(answer.body, /^<ErrorResponse xmlns="https:\/\/iam\.amazonaws\.com\/doc\/2010-05-08\/"><Error><Type>Sender<\/Type><Code>InvalidAction<\/Code>/);
    assert.equal(fake.stats().invalidActions, 1);
  });

  test('Query parameters are also read from a GET URL', async (t) => {
    const { fake } = await setup(t, { users: 5 });
    const answer = await raw(`${fake.url}/?Action=ListUsers&Version=2010-05-08&MaxItems=2`, { method: 'GET' });
    assert.equal(answer.status, 200);
    assert.match(answer.body, /<IsTruncated>true<\/IsTruncated><Marker>[\w-]+<\/Marker><Users><member><Path>/);
  });
});

describe('errors as the SDK sees them', () => {
  test('an unknown user is NoSuchEntityException with fault client', async (t) => {
    const { iam } = await setup(t, { users: 5 }, { maxAttempts: 1 });
    const error = await caught(iam.send(new ListAccessKeysCommand({ UserName: 'nobody-here' })));
    assert.ok(error instanceof NoSuchEntityException);
    assert.equal(error.name, 'NoSuchEntityException');
    assert.equal(error.$fault, 'client');
    assert.equal(error.$metadata?.httpStatusCode, 404);
    assert.match(error.$metadata?.requestId ?? '', /^[0-9a-f-]{36}$/);

    const unknownKey = await caught(iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: 'AKIA0000000000000000' })));
    assert.equal(unknownKey.name, 'NoSuchEntityException');
  });

  test('each fault mode surfaces with the name, fault and retry class IAM would give', async (t) => {
    const { strategy, kinds } = classifyingRetries();
    const { fake, iam } = await setup(t, { users: 5 }, { retryStrategy: strategy });
    const cases: { faults: FakeIamOptions; name: string; fault: 'client' | 'server' | undefined; status: number | undefined; kind: RetryErrorType }[] = [
      { faults: { invalidCredentials: true }, name: 'InvalidClientTokenId', fault: 'client', status: 403, kind: 'CLIENT_ERROR' },
      { faults: { listUsersDenied: true }, name: 'AccessDenied', fault: 'client', status: 403, kind: 'CLIENT_ERROR' },
      { faults: { throttleProbability: 1 }, name: 'Throttling', fault: 'client', status: 400, kind: 'THROTTLING' },
      { faults: { serverErrorProbability: 1 }, name: 'ServiceFailureException', fault: 'server', status: 500, kind: 'TRANSIENT' },
      // node-http-handler renames ECONNRESET to TimeoutError; there is no HTTP answer.
      { faults: { dropProbability: 1 }, name: 'TimeoutError', fault: undefined, status: undefined, kind: 'TRANSIENT' },
    ];
    const clean = fake.faults();
    for (const c of cases) {
      fake.configure({ ...clean, ...c.faults });
      kinds.length = 0;
      const error = await caught(iam.send(new ListUsersCommand({})));
      assert.equal(error.name, c.name);
      assert.equal(error.$fault, c.fault, c.name);
      assert.equal(error.$metadata?.httpStatusCode, c.status, c.name);
      assert.deepEqual(kinds, [c.kind], c.name);
      if (c.name === 'Throttling') assert.equal(error.message, 'Rate exceeded');
      if (c.name === 'TimeoutError') assert.equal(error.code, 'ECONNRESET');
    }
    fake.configure(clean);
    const stats = fake.stats();
    assert.equal(stats.throttled, 1);
    assert.equal(stats.serverErrors, 1);
    assert.equal(stats.dropped, 1);
    assert.deepEqual(stats.errors, { InvalidClientTokenId: 1, AccessDenied: 1, Throttling: 1, ServiceFailure: 1 });
  });

  test('invalid credentials fail every action', async (t) => {
    const { fake, iam } = await setup(t, { users: 5, invalidCredentials: true, rateLimit: { perSecond: 0.001, burst: 1 } }, { maxAttempts: 1 });
    const user = fake.truth().users[0];
    assert.ok(user);
    const calls = [
      () => iam.send(new ListUsersCommand({})),
      () => iam.send(new ListAccessKeysCommand({ UserName: user.userName })),
      () => iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: 'AKIA0000000000000000' })),
      () => iam.send(new ListUsersCommand({})), // past the rate limit's burst, still InvalidClientTokenId
    ];
    for (const call of calls) assert.equal((await caught(call())).name, 'InvalidClientTokenId');
  });

  test('the standard retry strategy retries throttles, 500s and drops but not denials', async (t) => {
    const { fake, iam } = await setup(t, { users: 5 }, { maxAttempts: 2 });
    const clean = fake.faults();
    for (const [faults, attempts] of [
      [{ throttleProbability: 1 }, 2],
      [{ serverErrorProbability: 1 }, 2],
      [{ dropProbability: 1 }, 2],
      [{ listUsersDenied: true }, 1],
      [{ invalidCredentials: true }, 1],
    ] as const) {
      fake.configure({ ...clean, ...faults });
      fake.resetStats();
      const error = await caught(iam.send(new ListUsersCommand({})));
      assert.equal(error.$metadata?.attempts, attempts, error.name);
      assert.equal(fake.stats().calls.ListUsers, attempts, error.name);
    }
  });

  test('a rate limit answers Throttling once its burst is spent', async (t) => {
    const { fake, iam } = await setup(t, { users: 5, rateLimit: { perSecond: 0.001, burst: 3 } }, { maxAttempts: 1 });
    for (let i = 0; i < 3; i++) await iam.send(new ListUsersCommand({}));
    const error = await caught(iam.send(new ListUsersCommand({})));
    assert.equal(error.name, 'Throttling');
    assert.equal(fake.stats().rateLimited, 1);
    assert.equal(fake.stats().throttled, 1);
  });

  test('random faults follow the seed', async (t) => {
    const outcomes = async (): Promise<string[]> => {
      const { iam } = await setup(t, { users: 5, seed: 77, throttleProbability: 0.3, serverErrorProbability: 0.2 }, { maxAttempts: 1 });
      const names: string[] = [];
      for (let i = 0; i < 30; i++) names.push(await iam.send(new ListUsersCommand({})).then(() => 'ok', (e: SdkError) => e.name));
      return names;
    };
    const first = await outcomes();
    assert.deepEqual(await outcomes(), first);
    assert.ok(first.includes('ok') && first.includes('Throttling') && first.includes('ServiceFailureException'));
  });
});

describe('vanished and denied users', () => {
  test('vanished users are listed but their keys answer NoSuchEntity; denied users answer AccessDenied', async (t) => {
    const { fake, iam } = await setup(t, { users: 100, seed: 12, keysPerUser: { min: 1, max: 3 }, vanishedFraction: 0.05, deniedFraction: 0.03 }, { maxAttempts: 1 });
    const truth = fake.truth();
    assert.equal(truth.users.filter((u) => u.vanished).length, 5);
    assert.equal(truth.users.filter((u) => u.denied).length, 3);
    assert.deepEqual(await allUsers(iam, 100), truth.users.map((u) => u.userName));

    const readable: string[] = [];
    for (const user of truth.users) {
      try {
        for await (const page of paginateListAccessKeys({ client: iam, pageSize: 100 }, { UserName: user.userName })) {
          readable.push(...(page.AccessKeyMetadata ?? []).map((k) => k.AccessKeyId ?? ''));
        }
        assert.ok(!user.vanished && !user.denied, `${user.userName} should have failed`);
      } catch (error) {
        const { name, $fault } = error as SdkError;
        assert.equal(name, user.vanished ? 'NoSuchEntityException' : 'AccessDenied');
        assert.equal($fault, 'client');
      }
    }
    assert.deepEqual(readable, fake.readableKeys().map((k) => k.accessKeyId));

    const deniedKey = truth.keys.find((k) => truth.users.find((u) => u.userName === k.userName)?.denied);
    assert.ok(deniedKey);
    assert.equal((await caught(iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: deniedKey.accessKeyId })))).name, 'AccessDenied');
  });

  test('configure changes faults on a running server: deny, then allow', async (t) => {
    const { fake, iam } = await setup(t, { users: 20, seed: 5 }, { maxAttempts: 1 });
    fake.configure({ listUsersDenied: true, deniedFraction: 0.5 });
    assert.equal((await caught(iam.send(new ListUsersCommand({})))).name, 'AccessDenied');
    assert.equal(fake.truth().users.filter((u) => u.denied).length, 10);

    fake.configure({ listUsersDenied: false, deniedFraction: 0 });
    assert.equal((await iam.send(new ListUsersCommand({}))).Users?.length, 20);
    assert.equal(fake.readableKeys().length, fake.truth().keys.length);

    const before = fake.faults();
    assert.throws(() => fake.configure({ dropProbability: 0.7, throttleProbability: 0.7 }), FakeIamOptionsError);
    assert.deepEqual(fake.faults(), before, 'a rejected patch must change nothing');
  });
});

describe('observability and lifecycle', () => {
  test('the same seed serves the same data from two servers', async (t) => {
    const { fake: a } = await setup(t, { users: 60, seed: 31, keysPerUser: { min: 0, max: 4 } });
    const { fake: b } = await setup(t, { users: 60, seed: 31, keysPerUser: { min: 0, max: 4 } });
    assert.deepEqual(a.truth(), b.truth());
    assert.notEqual(a.port, b.port);
  });

  test('the peak of concurrent requests is counted per action and overall, and close ends them', async (t) => {
    // Latency long enough that all requests are held at once; close() cuts it short.
    const { fake, iam } = await setup(t, { users: 10, seed: 8, latencyMs: 60_000 }, { maxAttempts: 1 });
    const names = fake.truth().users.slice(0, 5).map((u) => u.userName);
    const calls = [
      ...names.map((UserName) => iam.send(new ListAccessKeysCommand({ UserName }))),
      iam.send(new ListUsersCommand({})),
      iam.send(new ListUsersCommand({})),
    ].map((call) => call.then(() => 'answered', () => 'cut'));
    await until(() => fake.stats().inFlight === 7, 'seven requests in flight');

    const stats = fake.stats();
    assert.equal(stats.peakInFlight, 7);
    // Every action the fake implements is listed, the ones not called at zero.
    const expected = (counts: Record<string, number>) => ({ ...Object.fromEntries(Object.keys(stats.calls).map((action) => [action, 0])), ...counts });
    assert.deepEqual(stats.peakInFlightByAction, expected({ ListUsers: 2, ListAccessKeys: 5 }));
    assert.deepEqual(stats.calls, expected({ ListUsers: 2, ListAccessKeys: 5 }));
    assert.ok(['ListUsers', 'ListAccessKeys', 'GetAccessKeyLastUsed', 'GetCallerIdentity'].every((action) => action in stats.calls));

    fake.resetStats();
    assert.equal(fake.stats().peakInFlight, 7, 'a reset keeps requests still in flight');
    assert.equal(fake.stats().totalCalls, 0);

    await fake.close();
    assert.deepEqual(await Promise.all(calls), Array(7).fill('cut'));
    assert.equal(fake.stats().inFlight, 0);
  });

  test('close() leaves no server or socket open', async (t) => {
    const tcpHandles = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap' || r === 'TCPSocketWrap').length;
    const baseline = tcpHandles();
    const fake = await startFakeIam({ users: 5 });
    const iam = new IAMClient({ endpoint: fake.url, region: 'us-east-1', credentials, maxAttempts: 1 });
    t.after(() => iam.destroy());
    await iam.send(new ListUsersCommand({})); // leaves an idle keep-alive connection
    fake.configure({ latencyMs: 60_000 });
    const pending = iam.send(new ListUsersCommand({})).then(() => 'answered', () => 'cut');
    await until(() => fake.stats().inFlight === 1, 'a request in flight');

    await fake.close();
    await fake.close(); // idempotent
    assert.equal(await pending, 'cut');
    iam.destroy();
    await until(() => tcpHandles() <= baseline, 'every TCP handle closed');
    const refused = await caught(fetch(`${fake.url}/_fake/stats`));
    assert.ok(refused instanceof Error);
  });

  test('the control plane serves stats, truth and configuration as JSON', async (t) => {
    const { fake, iam } = await setup(t, { users: 12, seed: 2 });
    await iam.send(new ListUsersCommand({}));

    const stats = await (await fetch(`${fake.url}/_fake/stats`)).json();
    assert.deepEqual(stats, JSON.parse(JSON.stringify(fake.stats())));
    assert.equal(stats.calls.ListUsers, 1);

    const truth = await (await fetch(`${fake.url}/_fake/truth`)).json();
    assert.deepEqual(truth, JSON.parse(JSON.stringify(fake.truth())));

    const configured = await fetch(`${fake.url}/_fake/configure`, { method: 'POST', body: JSON.stringify({ listUsersDenied: true }) });
    assert.equal(configured.status, 200);
    assert.equal(fake.faults().listUsersDenied, true);
    const rejected = await fetch(`${fake.url}/_fake/configure`, { method: 'POST', body: JSON.stringify({ users: 3 }) });
    assert.equal(rejected.status, 400);
    assert.deepEqual((await rejected.json()).problems, ['unknown fault option users']);

    await fetch(`${fake.url}/_fake/stats/reset`, { method: 'POST' });
    assert.equal(fake.stats().totalCalls, 0, 'control calls are not counted');
  });

  test('the server binds 127.0.0.1 only', async (t) => {
    const { fake } = await setup(t);
    assert.match(fake.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    // The IPv6 loopback is another interface; nothing listens there.
    const error = await new Promise<NodeJS.ErrnoException>((resolve, reject) => {
      const req = request({ host: '::1', port: fake.port, path: '/_fake/stats' }, () => reject(new Error('answered on ::1')));
      req.on('error', resolve);
      req.end();
    });
    assert.ok(['ECONNREFUSED', 'EADDRNOTAVAIL', 'EAFNOSUPPORT', 'ENETUNREACH'].includes(error.code ?? ''), error.code);
  });
});

describe('the CLI', () => {
  const cli = fileURLToPath(new URL('./fake-iam/cli.ts', import.meta.url));
  const run = (args: string[]) => spawn(process.execPath, ['--import', 'tsx', cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });

  test('prints one listening line, serves the API and exits 0 on SIGTERM', async () => {
    const child = run(['--port', '0', '--users', '7', '--seed', '3', '--keys-max', '4', '--vanished', '0.3']);
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (stdout += chunk));
    await until(() => stdout.includes('\n') || child.exitCode !== null, 'the listening line');
    const match = /^fake-iam listening on (http:\/\/127\.0\.0\.1:\d+)\n$/.exec(stdout);
    assert.ok(match, stdout);
    const url = match[1] ?? '';

    const truth = await (await fetch(`${url}/_fake/truth`)).json();
    assert.equal(truth.users.length, 7);
    assert.equal(truth.users.filter((u: { vanished: boolean }) => u.vanished).length, 2);
    assert.deepEqual(truth, JSON.parse(JSON.stringify((await startAndClose({ users: 7, seed: 3, keysPerUser: { max: 4 }, vanishedFraction: 0.3 })))));

    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    assert.equal(stdout.split('\n').length, 2, 'exactly one line on stdout');
  });

  test('a bad flag exits 2 with a message on stderr', async () => {
    for (const args of [['--users', 'many'], ['--nope'], ['--throttle', '2'], ['--burst', '5']]) {
      const child = run(args);
      let stderr = '';
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => (stderr += chunk));
      const [code] = await once(child, 'exit');
      assert.equal(code, 2, args.join(' '));
      assert.match(stderr, /^fake-iam: /, args.join(' '));
    }
  });
});

/** The truth of an in-process fake with these options. */
async function startAndClose(options: FakeIamOptions): Promise<unknown> {
  const fake = await startFakeIam(options);
  try {
    return fake.truth();
  } finally {
    await fake.close();
  }
}
