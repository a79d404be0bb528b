/**
 * Many accounts in the fake: Organizations ListAccounts, STS AssumeRole into
 * member accounts and IAM acting in the account of the signing credentials,
 * per-account limits and stats, through the real SDK clients.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { GetAccountSummaryCommand, IAMClient, ListAccountAliasesCommand, ListUsersCommand, paginateListUsers, GetCredentialReportCommand, GenerateCredentialReportCommand } from '@aws-sdk/client-iam';
import { DescribeOrganizationCommand, ListAccountsCommand, OrganizationsClient, paginateListAccounts, type Account } from '@aws-sdk/client-organizations';
import { AssumeRoleCommand, GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import { FakeIamAccountError, FakeIamOptionsError, startFakeIam, type FakeIam, type FakeIamOptions } from './fake-iam/server.ts';
import { caught, credentials } from './fake-iam/test-support.ts';

const region = 'us-east-1';
const ROLE = 'OrganizationAccountAccessRole';

/** A fake and the base-credential clients of the three services; all closed when the test ends. */
async function organization(t: TestContext, options: FakeIamOptions) {
  const fake = await startFakeIam(options);
  const common = { endpoint: fake.url, region, credentials, maxAttempts: 1 };
  const orgs = new OrganizationsClient(common);
  const sts = new STSClient(common);
  const iam = new IAMClient(common);
  const clients: { destroy(): void }[] = [orgs, sts, iam];
  t.after(async () => {
    for (const client of clients) client.destroy();
    await fake.close();
  });
  /** An IAM client acting in `accountId` through the role, as the exporter builds it. */
  const iamIn = (accountId: string, params: { ExternalId?: string } = {}): IAMClient => {
    const client = new IAMClient({
      endpoint: fake.url,
      region,
      maxAttempts: 1,
      credentials: fromTemporaryCredentials({
        masterCredentials: credentials,
        params: { RoleArn: `arn:aws:iam::${accountId}:role/${ROLE}`, RoleSessionName: 'key-export', ...params },
        clientConfig: { endpoint: fake.url, region, maxAttempts: 1 },
      }),
    });
    clients.push(client);
    return client;
  };
  return { fake, orgs, sts, iam, iamIn };
}

async function listAll(orgs: OrganizationsClient): Promise<Account[]> {
  const accounts: Account[] = [];
  for await (const page of paginateListAccounts({ client: orgs }, {})) accounts.push(...(page.Accounts ?? []));
  return accounts;
}

async function userNames(iam: IAMClient): Promise<string[]> {
  const names: string[] = [];
  for await (const page of paginateListUsers({ client: iam, pageSize: 100 }, {})) names.push(...(page.Users ?? []).map((u) => u.UserName ?? ''));
  return names;
}

const members = (fake: FakeIam) => fake.accounts().filter((a) => !a.management);

describe('Organizations', () => {
  test('ListAccounts pages through a thousand accounts, management first, with stable ids and statuses', async (t) => {
    const options: FakeIamOptions = { users: 5, seed: 61, accounts: { count: 1000, usersPerAccount: { min: 0, max: 3 }, suspended: [3, 500], closed: [7] } };
    const { fake, orgs } = await organization(t, options);
    const accounts = await listAll(orgs);
    assert.equal(accounts.length, 1001);
    assert.equal(accounts[0]?.Id, '123456789012');
    assert.equal(new Set(accounts.map((a) => a.Id)).size, 1001);
    for (const account of accounts) {
      assert.match(account.Id ?? '', /^\d{12}$/);
      assert.match(account.Arn ?? '', new RegExp(`^arn:aws:organizations::123456789012:account/o-[0-9a-z]{10}/${account.Id}$`));
      assert.ok(account.JoinedTimestamp instanceof Date && account.Email && account.Name);
    }
    const byId = new Map(accounts.map((a) => [a.Id, a]));
    const [m3, m7, m500] = [3, 7, 500].map((i) => members(fake)[i]!);
    assert.deepEqual([byId.get(m3!.id)?.Status, byId.get(m7!.id)?.Status, byId.get(m7!.id)?.State, byId.get(m500!.id)?.Status], ['SUSPENDED', 'SUSPENDED', 'CLOSED', 'SUSPENDED']);
    assert.equal(accounts.filter((a) => a.Status === 'ACTIVE').length, 998);
    assert.equal(fake.stats().calls.ListAccounts, Math.ceil(1001 / 20));

    const again = await startFakeIam(options);
    t.after(() => again.close());
    assert.deepEqual(again.accounts(), fake.accounts(), 'the same options give the same accounts');
    assert.deepEqual(again.truth(m500!.id), fake.truth(m500!.id), 'and the same data in each');
  });

  test('the management account keeps the single-account data; members get their own', async (t) => {
    const alone = await startFakeIam({ users: 20, seed: 62 });
    t.after(() => alone.close());
    const { fake } = await organization(t, { users: 20, seed: 62, accounts: { count: 3, usersPerAccount: { min: 2, max: 2 } } });
    assert.deepEqual(fake.truth(), alone.truth());
    for (const member of members(fake)) {
      const truth = fake.truth(member.id);
      assert.equal(truth.accountId, member.id);
      assert.equal(truth.users.length, 2);
      for (const user of truth.users) assert.ok(user.arn.startsWith(`arn:aws:iam::${member.id}:user/`));
    }
    assert.throws(() => fake.truth('999999999999'), FakeIamAccountError);
  });

  test('only the management account may list; pages and tokens are checked; DescribeOrganization works', async (t) => {
    const { fake, orgs } = await organization(t, { users: 2, accounts: { count: 30 } });
    const page = await orgs.send(new ListAccountsCommand({ MaxResults: 7 }));
    assert.equal(page.Accounts?.length, 7);
    const next = await orgs.send(new ListAccountsCommand({ MaxResults: 20, NextToken: page.NextToken! }));
    assert.equal(next.Accounts?.[0]?.Id, members(fake)[6]!.id);
    for (const input of [{ MaxResults: 21 }, { MaxResults: 0 }, { NextToken: 'garbage' }]) {
      const error = await caught(orgs.send(new ListAccountsCommand(input)));
      assert.equal(error.name, 'InvalidInputException', JSON.stringify(input));
      assert.equal(error.$metadata?.httpStatusCode, 400);
    }
    const organizationInfo = (await orgs.send(new DescribeOrganizationCommand({}))).Organization;
    assert.equal(organizationInfo?.MasterAccountId, '123456789012');
    assert.match(organizationInfo?.Id ?? '', /^o-[0-9a-z]{10}$/);

    const member = members(fake)[0]!;
    const memberOrgs = new OrganizationsClient({
      endpoint: fake.url,
      region,
      maxAttempts: 1,
      credentials: fromTemporaryCredentials({ masterCredentials: credentials, params: { RoleArn: `arn:aws:iam::${member.id}:role/${ROLE}` }, clientConfig: { endpoint: fake.url, region } }),
    });
    t.after(() => memberOrgs.destroy());
    const denied = await caught(memberOrgs.send(new ListAccountsCommand({})));
    assert.equal(denied.name, 'AccessDeniedException');
    assert.equal(denied.$metadata?.httpStatusCode, 403);
    assert.equal((await memberOrgs.send(new DescribeOrganizationCommand({}))).Organization?.MasterAccountId, '123456789012', 'members may describe the organization');
  });

  test('without an organization, Organizations answers AWSOrganizationsNotInUseException', async (t) => {
    const { orgs, fake } = await organization(t, { users: 2 });
    const error = await caught(orgs.send(new ListAccountsCommand({})));
    assert.equal(error.name, 'AWSOrganizationsNotInUseException');
    assert.equal(fake.accounts().length, 1);
  });

  test('Organizations faults use its own error names: TooManyRequestsException, ServiceException', async (t) => {
    const { fake, orgs } = await organization(t, { users: 2, accounts: { count: 2 }, throttleProbability: 1 });
    const throttled = await caught(orgs.send(new ListAccountsCommand({})));
    assert.equal(throttled.name, 'TooManyRequestsException');
    assert.equal(throttled.$metadata?.httpStatusCode, 429);
    fake.configure({ throttleProbability: 0, serverErrorProbability: 1 });
    const failed = await caught(orgs.send(new ListAccountsCommand({})));
    assert.equal(failed.name, 'ServiceException');
    assert.equal(failed.$fault, 'server');
    fake.configure({ serverErrorProbability: 0, invalidCredentials: true });
    assert.equal((await caught(orgs.send(new ListAccountsCommand({})))).name, 'UnrecognizedClientException');
  });
});

describe('AssumeRole', () => {
  test('returns credentials that act in the role account, for IAM and GetCallerIdentity', async (t) => {
    const now = Date.UTC(2026, 10, 28, 12, 0, 0);
    const { fake, sts } = await organization(t, { users: 4, seed: 63, clock: () => now, accounts: { count: 5, usersPerAccount: { min: 3, max: 3 } } });
    const member = members(fake)[2]!;
    const answer = await sts.send(new AssumeRoleCommand({ RoleArn: `arn:aws:iam::${member.id}:role/${ROLE}`, RoleSessionName: 'key-export', DurationSeconds: 900 }));
    const c = answer.Credentials!;
    assert.match(c.AccessKeyId ?? '', /^ASIA[A-Z0-9]{16}$/);
    assert.ok(c.SecretAccessKey && c.SessionToken);
    assert.deepEqual(c.Expiration, new Date(now + 900_000));
    assert.equal(answer.AssumedRoleUser?.Arn, `arn:aws:sts::${member.id}:assumed-role/${ROLE}/key-export`);
    assert.match(answer.AssumedRoleUser?.AssumedRoleId ?? '', /^AROA[A-Z0-9]{17}:key-export$/);

    const session = { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! };
    const iam = new IAMClient({ endpoint: fake.url, region, credentials: session, maxAttempts: 1 });
    const memberSts = new STSClient({ endpoint: fake.url, region, credentials: session, maxAttempts: 1 });
    t.after(() => {
      iam.destroy();
      memberSts.destroy();
    });
    assert.deepEqual(await userNames(iam), fake.truth(member.id).users.map((u) => u.userName));
    const identity = await memberSts.send(new GetCallerIdentityCommand({}));
    assert.equal(identity.Account, member.id);
    assert.equal(identity.Arn, `arn:aws:sts::${member.id}:assumed-role/${ROLE}/key-export`);
    assert.equal((await sts.send(new GetCallerIdentityCommand({}))).Account, '123456789012', 'base credentials stay in the management account');
  });

  test('fromTemporaryCredentials works as the exporter will use it', async (t) => {
    const { fake, iamIn, iam } = await organization(t, { users: 6, seed: 64, accounts: { count: 3, usersPerAccount: { min: 1, max: 4 } } });
    for (const member of members(fake)) assert.deepEqual(await userNames(iamIn(member.id)), fake.truth(member.id).users.map((u) => u.userName));
    assert.deepEqual(await userNames(iam), fake.truth().users.map((u) => u.userName));
    assert.equal(fake.stats().calls.AssumeRole, 3, 'one session per client, reused for every call');
  });

  test('a missing role, a wrong ExternalId, a denied, suspended, closed or unknown account all answer AccessDenied', async (t) => {
    const { fake, sts } = await organization(t, { users: 2, accounts: { count: 6, suspended: [1], closed: [2] }, assumeRoleDenied: [] });
    const [ok, suspended, closed, denied] = members(fake);
    fake.configure({ assumeRoleDenied: [denied!.id], externalId: 'tenant-42' });
    const assume = (accountId: string, extra: { RoleName?: string; ExternalId?: string } = {}) =>
      sts.send(new AssumeRoleCommand({ RoleArn: `arn:aws:iam::${accountId}:role/${extra.RoleName ?? ROLE}`, RoleSessionName: 'x-1', ...(extra.ExternalId ? { ExternalId: extra.ExternalId } : {}) }));

    assert.ok((await assume(ok!.id, { ExternalId: 'tenant-42' })).Credentials);
    for (const [attempt, what] of [
      [assume(ok!.id), 'no ExternalId'],
      [assume(ok!.id, { ExternalId: 'tenant-43' }), 'wrong ExternalId'],
      [assume(ok!.id, { ExternalId: 'tenant-42', RoleName: 'SomeOtherRole' }), 'role missing everywhere'],
      [assume(denied!.id, { ExternalId: 'tenant-42' }), 'assumeRoleDenied'],
      [assume(suspended!.id, { ExternalId: 'tenant-42' }), 'suspended'],
      [assume(closed!.id, { ExternalId: 'tenant-42' }), 'closed'],
      [assume('111111111111', { ExternalId: 'tenant-42' }), 'not in the organization'],
      [assume('123456789012', { ExternalId: 'tenant-42' }), 'the management account has no such role'],
    ] as const) {
      const error = await caught(attempt);
      assert.equal(error.name, 'AccessDenied', what);
      assert.equal(error.$metadata?.httpStatusCode, 403, what);
      assert.match(error.message, /sts:AssumeRole/, what);
    }
    fake.configure({ roleInManagementAccount: true });
    assert.ok((await assume('123456789012', { ExternalId: 'tenant-42' })).Credentials);
  });

  test('bad parameters are ValidationError; the role allows at most an hour', async (t) => {
    const { fake, sts } = await organization(t, { users: 1, accounts: { count: 1 } });
    const member = members(fake)[0]!;
    for (const input of [
      { RoleArn: 'not-an-arn', RoleSessionName: 'ok-name' },
      { RoleArn: `arn:aws:iam::${member.id}:role/${ROLE}`, RoleSessionName: 'bad name!' },
      { RoleArn: `arn:aws:iam::${member.id}:role/${ROLE}`, RoleSessionName: 'ok-name', DurationSeconds: 3601 },
      { RoleArn: `arn:aws:iam::${member.id}:role/${ROLE}`, RoleSessionName: 'ok-name', DurationSeconds: 899 },
    ]) {
      assert.equal((await caught(sts.send(new AssumeRoleCommand(input)))).name, 'ValidationError', JSON.stringify(input));
    }
  });

  test('credentials the fake never issued answer InvalidClientTokenId; expired ones ExpiredToken', async (t) => {
    let now = Date.UTC(2026, 10, 28, 12);
    const { fake, sts } = await organization(t, { users: 1, clock: () => now, accounts: { count: 1 } });
    const forged = new IAMClient({ endpoint: fake.url, region, maxAttempts: 1, credentials: { accessKeyId: 'ASIAFORGEDFORGED0000', secretAccessKey: 'x', sessionToken: 'y' } });
    t.after(() => forged.destroy());
    assert.equal((await caught(forged.send(new ListUsersCommand({})))).name, 'InvalidClientTokenId');

    const c = (await sts.send(new AssumeRoleCommand({ RoleArn: `arn:aws:iam::${members(fake)[0]!.id}:role/${ROLE}`, RoleSessionName: 's1', DurationSeconds: 900 }))).Credentials!;
    const iam = new IAMClient({ endpoint: fake.url, region, maxAttempts: 1, credentials: { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! } });
    t.after(() => iam.destroy());
    await iam.send(new ListUsersCommand({}));
    now += 900_000;
    const expired = await caught(iam.send(new ListUsersCommand({})));
    assert.equal(expired.name, 'ExpiredToken');
    assert.equal(expired.$metadata?.httpStatusCode, 403);
  });
});

describe('account-level IAM calls', () => {
  test('GetAccountSummary and ListAccountAliases answer per account', async (t) => {
    const { fake, iam, iamIn } = await organization(t, { users: 7, accountAlias: 'acme-management', accounts: { count: 3, rootKeysPresent: [1], withoutAlias: [2] } });
    const [first, second, third] = members(fake);
    const summary = async (client: IAMClient) => (await client.send(new GetAccountSummaryCommand({}))).SummaryMap ?? {};
    const aliases = async (client: IAMClient) => (await client.send(new ListAccountAliasesCommand({}))).AccountAliases;

    assert.equal((await summary(iam)).Users, 7);
    assert.equal((await summary(iam)).AccountAccessKeysPresent, 0);
    assert.equal((await summary(iamIn(second!.id))).AccountAccessKeysPresent, 1);
    assert.equal((await summary(iamIn(first!.id))).Users, fake.truth(first!.id).users.length);
    assert.equal((await summary(iamIn(first!.id))).AccessKeysPerUserQuota, 2);
    assert.deepEqual(await aliases(iam), ['acme-management']);
    assert.deepEqual(await aliases(iamIn(first!.id)), [first!.alias]);
    assert.deepEqual(await aliases(iamIn(third!.id)), []);

    fake.updateAccount(first!.id, { alias: null, rootKeysPresent: true });
    assert.deepEqual(await aliases(iamIn(first!.id)), []);
    assert.equal((await summary(iamIn(first!.id))).AccountAccessKeysPresent, 1);
    assert.throws(() => fake.updateAccount(first!.id, { alias: 'Bad_Alias' }), FakeIamOptionsError);
  });

  test('a member account credential report has its own users and root row', async (t) => {
    const { fake, iamIn } = await organization(t, { users: 3, accounts: { count: 2, rootKeysPresent: [0], usersPerAccount: { min: 4, max: 4 } } });
    const member = members(fake)[0]!;
    const client = iamIn(member.id);
    await client.send(new GenerateCredentialReportCommand({}));
    await client.send(new GenerateCredentialReportCommand({}));
    const csv = Buffer.from((await client.send(new GetCredentialReportCommand({}))).Content!).toString('utf8');
    const lines = csv.split('\n');
    assert.equal(lines.length, 1 + 1 + 4);
    assert.match(lines[1]!, new RegExp(`^<root_account>,arn:aws:iam::${member.id}:root,[^,]+,not_supported,no_information,not_supported,not_supported,true,true,`));
    assert.equal(fake.reportTruth(), null, 'the management account has no report yet');
  });
});

describe('per-account limits, stats and truth', () => {
  test('one account over its rate limit is throttled without slowing the others', async (t) => {
    const { fake, iamIn, iam } = await organization(t, { users: 3, accounts: { count: 3 } });
    const [hot, cold] = members(fake);
    fake.configure({ accountRateLimits: { [hot!.id]: { perSecond: 0.001, burst: 2 } } });
    const hotIam = iamIn(hot!.id);
    const coldIam = iamIn(cold!.id);
    await hotIam.send(new ListUsersCommand({}));
    await hotIam.send(new ListUsersCommand({}));
    const throttled = await caught(hotIam.send(new ListUsersCommand({})));
    assert.equal(throttled.name, 'Throttling');
    for (let i = 0; i < 5; i++) await coldIam.send(new ListUsersCommand({}));
    for (let i = 0; i < 5; i++) await iam.send(new ListUsersCommand({}));

    const { byAccount } = fake.stats();
    const { firstAt, lastAt, ...hotStats } = byAccount[hot!.id]!;
    assert.deepEqual(hotStats, { calls: { ListUsers: 3 }, totalCalls: 3, throttled: 1, rateLimited: 1, peakInFlight: 1, peakIamInFlight: 1 });
    assert.ok(firstAt <= lastAt && lastAt <= byAccount[cold!.id]!.firstAt, 'the hot account was done before the cold one started');
    assert.deepEqual(byAccount[cold!.id]?.calls, { ListUsers: 5 });
    assert.equal(byAccount[cold!.id]?.throttled, 0);
    assert.deepEqual(byAccount['123456789012']?.calls, { AssumeRole: 2, ListUsers: 5 }, 'AssumeRole is signed by the base credentials');

    // A common per-account limit gives every account its own bucket.
    fake.configure({ accountRateLimits: {}, accountRateLimit: { perSecond: 0.001, burst: 1 } });
    fake.resetStats();
    await coldIam.send(new ListUsersCommand({}));
    assert.equal((await caught(coldIam.send(new ListUsersCommand({})))).name, 'Throttling');
    await iamIn(members(fake)[2]!.id).send(new ListUsersCommand({})).catch(() => undefined);
    assert.equal(fake.stats().byAccount[cold!.id]?.rateLimited, 1);
  });

  test('per-account latency holds only that account', async (t) => {
    const { fake, iamIn, iam } = await organization(t, { users: 2, accounts: { count: 2 } });
    const slow = members(fake)[0]!;
    const slowIam = iamIn(slow.id);
    await slowIam.send(new ListUsersCommand({})); // assume the role first
    fake.configure({ accountLatencyMs: { [slow.id]: 60_000 } });
    const pending = slowIam.send(new ListUsersCommand({})).then(() => 'answered', () => 'cut');
    for (let i = 0; i < 3; i++) await iam.send(new ListUsersCommand({}));
    assert.equal(fake.stats().inFlight, 1, 'the slow account holds its own request only');
    assert.equal(fake.stats().byAccount[slow.id]?.peakInFlight, 1);
    await fake.close();
    assert.equal(await pending, 'cut');
  });

  test('mutations, churn and windows are per account, also over the control plane', async (t) => {
    const { fake, iamIn } = await organization(t, { users: 3, seed: 65, accounts: { count: 4, usersPerAccount: { min: 3, max: 3 }, keysPerUser: { min: 1, max: 1 } } });
    const [a, b] = members(fake);
    const before = fake.truth(b!.id);
    const victim = fake.truth(a!.id).users[0]!;
    const result = fake.mutate({ kind: 'deleteUser', userName: victim.userName }, a!.id);
    assert.equal(result.kind, 'deleteUser');
    assert.ok(!(await userNames(iamIn(a!.id))).includes(victim.userName));
    assert.equal(fake.windowTruth(a!.id).filter((k) => !k.whole).length, 1);
    assert.deepEqual(fake.truth(b!.id), before, 'another account is untouched');

    const churned = await fetch(`${fake.url}/_fake/mutate`, { method: 'POST', body: JSON.stringify({ accountId: b!.id, churn: { seed: 1, count: 4, kinds: ['createUser'] } }) });
    assert.equal(churned.status, 200);
    assert.equal(fake.truth(b!.id).users.length, 3 + 4);
    const served = await (await fetch(`${fake.url}/_fake/window?account=${a!.id}`)).json();
    assert.deepEqual(served, JSON.parse(JSON.stringify(fake.windowTruth(a!.id))));
    assert.equal((await fetch(`${fake.url}/_fake/truth?account=000000000000`)).status, 404);
    const listed = await (await fetch(`${fake.url}/_fake/accounts`)).json();
    assert.equal(listed.length, 5);
    const updated = await fetch(`${fake.url}/_fake/account`, { method: 'POST', body: JSON.stringify({ accountId: a!.id, status: 'SUSPENDED' }) });
    assert.equal((await updated.json()).status, 'SUSPENDED');

    fake.startWindow();
    assert.ok(fake.windowTruth(a!.id).every((k) => k.whole));
    assert.ok(fake.windowTruth(members(fake)[3]!.id).every((k) => k.whole), 'an account first read after the start has a window too');
  });

  test('invalid accounts options are reported all at once', async () => {
    await assert.rejects(
      startFakeIam({ accounts: { count: -1, suspended: [5], usersPerAccount: { min: 3, max: 1 } } }),
      (error: unknown) => error instanceof FakeIamOptionsError && error.problems.length === 3,
    );
    await assert.rejects(startFakeIam({ accounts: [{ id: '123456789012' }, { id: '12' }] }), (error: unknown) => error instanceof FakeIamOptionsError && error.problems.length === 2);
    await assert.rejects(startFakeIam({ accountRateLimits: { nope: { perSecond: 1, burst: 1 } }, assumeRoleDenied: ['x'] }), FakeIamOptionsError);
  });

  test('an explicit list of accounts sets ids, names, statuses, users and aliases', async (t) => {
    const { fake, orgs } = await organization(t, {
      users: 1,
      accounts: [
        { id: '210000000001', name: 'prod', users: 2, alias: 'acme-prod' },
        { name: 'gone', closed: true, alias: null },
        { status: 'SUSPENDED', rootKeysPresent: true },
      ],
    });
    const listed = await listAll(orgs);
    assert.deepEqual(listed.map((a) => [a.Name, a.Status, a.State]), [['management', 'ACTIVE', 'ACTIVE'], ['prod', 'ACTIVE', 'ACTIVE'], ['gone', 'SUSPENDED', 'CLOSED'], [members(fake)[2]!.name, 'SUSPENDED', 'SUSPENDED']]);
    assert.equal(listed[1]?.Id, '210000000001');
    assert.equal(fake.truth('210000000001').users.length, 2);
    assert.deepEqual(members(fake).map((m) => [m.alias, m.rootKeysPresent]), [['acme-prod', false], [null, false], [members(fake)[2]!.name, true]]);
  });
});
