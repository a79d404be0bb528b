/**
 * Last-used data in the fake IAM: the credential report (generation, expiry,
 * the CSV itself) and GetAccessKeyLastUsed, through the real SDK client.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  GenerateCredentialReportCommand,
  GetAccessKeyLastUsedCommand,
  GetCredentialReportCommand,
  IAMClient,
  ListUsersCommand,
} from '@aws-sdk/client-iam';
import { parse } from 'csv-parse/sync';
import { REPORT_HEADER } from './fake-iam/report.ts';
import { caught, credentials, fakeWithClients } from './fake-iam/test-support.ts';
import type { FakeIam } from './fake-iam/server.ts';

/** Asks for a report until it is complete: with no delay, the second call finds it done. */
async function generated(iam: IAMClient): Promise<void> {
  for (let i = 0; i < 3; i++) {
    if ((await iam.send(new GenerateCredentialReportCommand({}))).State === 'COMPLETE') return;
  }
  assert.fail('the report never completed');
}

/** A clock the test moves by hand, starting on 2026-11-28 at noon. */
function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let now = Date.UTC(2026, 10, 28, 12, 0, 0, 250);
  return { now: () => now, advance: (ms) => (now += ms) };
}

const HOUR = 3_600_000;

/** The current report's rows, parsed as a warehouse loader would. */
async function reportRows(iam: IAMClient): Promise<{ rows: Record<string, string>[]; header: string[]; generatedTime: Date }> {
  const answer = await iam.send(new GetCredentialReportCommand({}));
  assert.equal(answer.ReportFormat, 'text/csv');
  const csv = Buffer.from(answer.Content ?? new Uint8Array()).toString('utf8');
  const [header = [], ...cells] = parse(csv) as string[][];
  return { header, rows: cells.map((row) => Object.fromEntries(header.map((name, i) => [name, row[i] ?? '']))), generatedTime: answer.GeneratedTime! };
}

const reportDate = (date: Date): string => date.toISOString().replace('.000Z', '+00:00');

/** The first user with at least `n` keys, and those keys in listing order. */
function userWithKeys(fake: FakeIam, n: number) {
  const truth = fake.truth();
  const user = truth.users.find((u) => truth.keys.filter((k) => k.userName === u.userName).length >= n);
  assert.ok(user, `no user with ${n} keys`);
  return { user, keys: truth.keys.filter((k) => k.userName === user.userName) };
}

describe('credential report', () => {
  test('none before a generation, in progress while generating, then complete and served', async (t) => {
    const clock = manualClock();
    const { fake, iam } = await fakeWithClients(t, { users: 8, seed: 41, clock: clock.now, credentialReport: { delayMs: 30_000, maxAgeMs: 4 * HOUR } });
    const missing = await caught(iam.send(new GetCredentialReportCommand({})));
    assert.equal(missing.name, 'CredentialReportNotPresentException');
    assert.equal(missing.$metadata?.httpStatusCode, 410);
    assert.equal(fake.reportTruth(), null);

    const first = await iam.send(new GenerateCredentialReportCommand({}));
    assert.equal(first.State, 'STARTED');
    assert.equal((await iam.send(new GenerateCredentialReportCommand({}))).State, 'STARTED', 'still generating');
    const pending = await caught(iam.send(new GetCredentialReportCommand({})));
    assert.equal(pending.name, 'CredentialReportNotReadyException');
    assert.equal(pending.$metadata?.httpStatusCode, 404);
    assert.equal(pending.$fault, 'client');

    clock.advance(29_999);
    assert.equal((await iam.send(new GenerateCredentialReportCommand({}))).State, 'STARTED', 'one millisecond to go');
    clock.advance(1);
    assert.equal((await iam.send(new GenerateCredentialReportCommand({}))).State, 'COMPLETE');
    const { rows, generatedTime } = await reportRows(iam);
    assert.equal(rows.length, 1 + 8);
    assert.deepEqual(generatedTime, new Date('2026-11-28T12:00:00Z'), 'the start of the generation, to the second');
    assert.deepEqual(fake.reportTruth()?.generatedTime, generatedTime);
    assert.deepEqual(fake.stats().calls.GetCredentialReport, 3);
  });

  test('a fresh report is COMPLETE at once; an expired one answers ReportExpired and is regenerated', async (t) => {
    const clock = manualClock();
    const { fake, iam } = await fakeWithClients(t, { users: 5, seed: 42, keysPerUser: { min: 0, max: 1 }, clock: clock.now });
    await generated(iam);
    const before = fake.reportTruth()!;
    const user = fake.truth().users[0]!;
    fake.mutate({ kind: 'createKey', userName: user.userName });
    clock.advance(4 * HOUR - 1);
    assert.equal((await iam.send(new GenerateCredentialReportCommand({}))).State, 'COMPLETE', 'fresh: no new generation');
    assert.deepEqual(fake.reportTruth(), before);
    assert.ok((await reportRows(iam)).rows.length > 0, 'still served');

    clock.advance(1);
    const expired = await caught(iam.send(new GetCredentialReportCommand({})));
    assert.equal(expired.name, 'CredentialReportExpiredException');
    assert.equal(expired.$metadata?.httpStatusCode, 410);
    assert.equal(fake.reportTruth()?.expired, true);

    assert.equal((await iam.send(new GenerateCredentialReportCommand({}))).State, 'STARTED', 'expired: a new generation');
    await generated(iam);
    const after = fake.reportTruth()!;
    assert.equal(after.expired, false);
    assert.deepEqual(after.generatedTime, new Date(Math.floor(clock.now() / 1000) * 1000));
    assert.equal(after.keys.filter((k) => k.userName === user.userName).length, before.keys.filter((k) => k.userName === user.userName).length + 1, 'the key made meanwhile is in');
  });

  test('the CSV has IAM header, a root row first and one row per user with key columns from the truth', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 60, seed: 43, keysPerUser: { min: 0, max: 3 } });
    await generated(iam);
    const { header, rows } = await reportRows(iam);
    assert.deepEqual(header, [...REPORT_HEADER]);
    assert.equal(header.join(','), 'user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated');

    const [root, ...users] = rows;
    assert.equal(root?.user, '<root_account>');
    assert.equal(root?.arn, 'arn:aws:iam::123456789012:root');
    assert.equal(root?.access_key_1_active, 'false');

    const truth = fake.truth();
    assert.deepEqual(users.map((r) => [r.user, r.arn, r.user_creation_time]), truth.users.map((u) => [u.userName, u.arn, reportDate(u.createDate)]));
    assert.ok(users.some((r) => r.user?.includes(',')), 'a user name with a comma survives quoting');
    for (const row of users) {
      const keys = truth.keys.filter((k) => k.userName === row.user);
      for (const slot of [1, 2] as const) {
        const key = keys[slot - 1];
        const column = (name: string) => row[`access_key_${slot}_${name}`];
        assert.equal(column('active'), String(key?.status === 'Active'));
        assert.equal(column('last_rotated'), key ? reportDate(key.createDate) : 'N/A');
        assert.equal(column('last_used_date'), key?.lastUsed ? reportDate(key.lastUsed.date) : 'N/A');
        assert.equal(column('last_used_service'), key?.lastUsed?.service ?? 'N/A');
        assert.equal(column('last_used_region'), key?.lastUsed?.region ?? 'N/A');
      }
      assert.deepEqual([row.password_enabled, row.mfa_active, row.cert_1_active, row.cert_2_last_rotated], ['false', 'false', 'false', 'N/A']);
      assert.match(row.user_creation_time ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$/);
    }

    // A user with three keys shows its two oldest; reportTruth says which key is where.
    const { user, keys } = userWithKeys(fake, 3);
    const inReport = fake.reportTruth()!.keys.filter((k) => k.userName === user.userName);
    assert.deepEqual(inReport.map((k) => [k.accessKeyId, k.slot]), [[keys[0]!.accessKeyId, 1], [keys[1]!.accessKeyId, 2]]);
    assert.equal(fake.reportTruth()!.csv.split('\n').length, rows.length + 1);
  });

  test('a key created or used after GeneratedTime shows its old state until the report is regenerated', async (t) => {
    const clock = manualClock();
    const { fake, iam } = await fakeWithClients(t, { users: 10, seed: 44, keysPerUser: { min: 1, max: 1 }, clock: clock.now });
    await generated(iam);
    const keyless = fake.mutate({ kind: 'createUser', keys: 1 });
    const { user, keys } = userWithKeys(fake, 1);
    const used = fake.mutate({ kind: 'useKey', accessKeyId: keys[0]!.accessKeyId, date: '2026-11-28T09:30:00Z', service: 's3', region: 'eu-west-1' });
    assert.deepEqual(used, { kind: 'useKey', accessKeyId: keys[0]!.accessKeyId, userName: user.userName, date: new Date('2026-11-28T09:30:00Z'), service: 's3', region: 'eu-west-1' });

    const api = await iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: keys[0]!.accessKeyId }));
    assert.deepEqual(api.AccessKeyLastUsed, { LastUsedDate: new Date('2026-11-28T09:30:00Z'), ServiceName: 's3', Region: 'eu-west-1' });
    const stale = fake.reportTruth()!;
    assert.notDeepEqual(stale.keys.find((k) => k.accessKeyId === keys[0]!.accessKeyId)?.lastUsed?.date, new Date('2026-11-28T09:30:00Z'));
    assert.ok(!stale.keys.some((k) => k.userName === keyless.userName), 'a key created later is not in the report');
    const { rows } = await reportRows(iam);
    assert.ok(!rows.some((r) => r.user === keyless.userName));

    clock.advance(4 * HOUR);
    await generated(iam);
    const fresh = fake.reportTruth()!;
    assert.deepEqual(fresh.keys.find((k) => k.accessKeyId === keys[0]!.accessKeyId)?.lastUsed, { date: new Date('2026-11-28T09:30:00Z'), service: 's3', region: 'eu-west-1' });
    assert.ok(fresh.keys.some((k) => k.userName === keyless.userName));
  });

  test('reportDenied answers AccessDenied on both calls; reportLimitExceeded answers LimitExceeded', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 3, reportDenied: true });
    for (const call of [iam.send(new GenerateCredentialReportCommand({})), iam.send(new GetCredentialReportCommand({}))]) {
      const error = await caught(call);
      assert.equal(error.name, 'AccessDenied');
      assert.equal(error.$metadata?.httpStatusCode, 403);
    }
    fake.configure({ reportDenied: false, reportLimitExceeded: true });
    const limited = await caught(iam.send(new GenerateCredentialReportCommand({})));
    assert.equal(limited.name, 'LimitExceededException');
    assert.equal(limited.$metadata?.httpStatusCode, 409);
    assert.equal(limited.$fault, 'client');
    assert.deepEqual(fake.stats().errors, { AccessDenied: 2, LimitExceeded: 1 });

    // The SDK counts LimitExceededException among throttling errors: it retries it.
    const retrying = new IAMClient({ endpoint: fake.url, region: 'us-east-1', credentials, maxAttempts: 2 });
    t.after(() => retrying.destroy());
    assert.equal((await caught(retrying.send(new GenerateCredentialReportCommand({})))).$metadata?.attempts, 2);
  });

  test('credentialReport options take one field at a time and are checked', async (t) => {
    const { fake } = await fakeWithClients(t, { users: 1 });
    assert.deepEqual(fake.faults().credentialReport, { delayMs: 0, maxAgeMs: 4 * 3600 * 1000 });
    fake.configure({ credentialReport: { delayMs: 25 } });
    assert.deepEqual(fake.faults().credentialReport, { delayMs: 25, maxAgeMs: 4 * 3600 * 1000 });
    assert.throws(() => fake.configure({ credentialReport: { delayMs: -1, maxAgeMs: 'x' as unknown as number } }), (error: unknown) => (error as { problems: string[] }).problems.length === 2);
  });
});

describe('GetAccessKeyLastUsed', () => {
  test('answers like IAM: a date, service and region, or N/A for a key never used', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 30, seed: 45 });
    const keys = fake.truth().keys;
    const unused = keys.find((k) => !k.lastUsed)!;
    const answer = await iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: unused.accessKeyId }));
    assert.equal(answer.UserName, unused.userName);
    assert.deepEqual(answer.AccessKeyLastUsed, { ServiceName: 'N/A', Region: 'N/A' });

    fake.mutate({ kind: 'deleteKey', accessKeyId: unused.accessKeyId });
    assert.equal((await caught(iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: unused.accessKeyId })))).name, 'NoSuchEntityException');
  });

  test('lastUsedDenied answers AccessDenied, and faults apply as to every action', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 10, seed: 46, lastUsedDenied: true });
    const key = fake.truth().keys[0]!;
    for (const id of [key.accessKeyId, 'AKIA0000000000000000']) {
      const denied = await caught(iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: id })));
      assert.equal(denied.name, 'AccessDenied');
      assert.match(denied.message, /iam:GetAccessKeyLastUsed/);
    }
    assert.ok((await iam.send(new ListUsersCommand({}))).Users?.length, 'other actions unaffected');
    fake.configure({ lastUsedDenied: false, throttleProbability: 1 });
    assert.equal((await caught(iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: key.accessKeyId })))).name, 'Throttling');
  });

  test('successful lookups are counted per key id; failed attempts are not', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 10, seed: 47, keysPerUser: { min: 1, max: 2 } }, { maxAttempts: 3 });
    const [a, b] = fake.truth().keys;
    assert.ok(a && b);
    fake.configure({ throttleProbability: 0.5 });
    await iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: a.accessKeyId })).catch(() => undefined);
    fake.configure({ throttleProbability: 0 });
    fake.resetStats();
    await iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: a.accessKeyId }));
    await iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: a.accessKeyId }));
    await iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: b.accessKeyId }));
    await caught(iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: 'AKIA0000000000000000' })));
    assert.deepEqual(fake.stats().lastUsedLookups, { [a.accessKeyId]: 2, [b.accessKeyId]: 1 });
    const served = await (await fetch(`${fake.url}/_fake/stats`)).json();
    assert.deepEqual(served.lastUsedLookups, { [a.accessKeyId]: 2, [b.accessKeyId]: 1 });
  });

  test('useKey is checked and churn can record uses without touching markers', async (t) => {
    const { fake, iam } = await fakeWithClients(t, { users: 12, seed: 48, keysPerUser: { min: 2, max: 2 }, rejectStaleMarkers: true });
    assert.throws(() => fake.mutate({ kind: 'useKey', accessKeyId: 'AKIA0000000000000000', service: 's3', region: 'us-east-1' }), /no access key/);
    assert.throws(() => fake.mutate({ kind: 'useKey', accessKeyId: 'x', service: 'S3!', region: '' }), (e: unknown) => (e as { problems: string[] }).problems.length === 2);
    const marker = (await iam.send(new ListUsersCommand({ MaxItems: 2 }))).Marker!;
    const uses = fake.churn({ seed: 9, count: 5, kinds: ['useKey'] });
    assert.equal(uses.length, 5);
    for (const use of uses) {
      assert.ok(use.kind === 'useKey');
      assert.deepEqual(fake.truth().keys.find((k) => k.accessKeyId === use.accessKeyId)?.lastUsed?.service !== undefined, true);
    }
    assert.ok((await iam.send(new ListUsersCommand({ MaxItems: 2, Marker: marker }))).Users?.length, 'a use is no change to a listing');
    assert.ok(!fake.churn({ seed: 9, count: 30 }).some((m) => m.kind === 'useKey'), 'churn leaves uses out unless asked');
  });
});
