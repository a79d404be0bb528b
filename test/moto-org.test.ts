/**
 * An organization in moto_server (an implementation this project did not write):
 * CreateOrganization, member accounts with CreateAccount, users and keys made in
 * each through AssumeRole credentials; then `--organization --role-name R` with
 * AWS_ENDPOINT_URL pointing every service (IAM, STS, Organizations) at moto exports
 * every key of every account exactly once, and the accounts dataset lists each.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CreateAccessKeyCommand, CreateAccountAliasCommand, CreateUserCommand, IAMClient, paginateListAccessKeys, paginateListUsers, UpdateAccessKeyCommand } from '@aws-sdk/client-iam';
import { CreateAccountCommand, CreateOrganizationCommand, DescribeCreateAccountStatusCommand, OrganizationsClient } from '@aws-sdk/client-organizations';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { runCli, testEnv } from './support/cli.ts';
import { onlySnapshotDir, publishedRows, sortRows, verifyManifest, type KeyRow } from './support/expect.ts';
import { motoUnavailable, startMoto } from './support/moto.ts';
import { publishedAccounts } from './support/org.ts';
import { withTemp } from './support/scope.ts';

const unavailable = motoUnavailable();
// In CI moto_server is part of the machine: its absence is a failure, not a skip.
const skip = unavailable && process.env.CI !== 'true' ? unavailable : false;

const region = 'us-east-1';
const base = { accessKeyId: 'AKIDTESTTESTTESTTEST', secretAccessKey: 'test-secret-not-real' };
const ROLE = 'OrganizationAccountAccessRole';
const MEMBERS = 7; // + the management account: the acceptance organization of 8 accounts

const toSecond = (d: Date) => new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString();

/** What moto's own ListUsers / ListAccessKeys say an account holds. */
async function truthOf(iam: IAMClient, accountId: string): Promise<KeyRow[]> {
  const rows: KeyRow[] = [];
  for await (const page of paginateListUsers({ client: iam }, {})) {
    for (const u of page.Users ?? []) {
      for await (const kp of paginateListAccessKeys({ client: iam }, { UserName: u.UserName })) {
        for (const k of kp.AccessKeyMetadata ?? []) {
          rows.push({ account_id: accountId, user_name: u.UserName!, user_id: u.UserId!, access_key_id: k.AccessKeyId!, status: k.Status!, create_date: toSecond(k.CreateDate!) });
        }
      }
    }
  }
  return rows;
}

test(`moto_server: an organization of ${MEMBERS + 1} accounts, users made through AssumeRole in each, exported with --organization --role-name`, { skip }, async () => {
  assert.equal(unavailable, undefined, unavailable);
  const moto = await startMoto();
  const common = { region, endpoint: moto.url, credentials: base };
  const orgs = new OrganizationsClient(common);
  const sts = new STSClient(common);
  const clients: { destroy(): void }[] = [orgs, sts];
  try {
    const organization = (await orgs.send(new CreateOrganizationCommand({ FeatureSet: 'ALL' }))).Organization!;
    const management = organization.MasterAccountId!;
    const names = new Map<string, string>();
    for (let i = 0; i < MEMBERS; i++) {
      const name = `member-${i}`;
      const status = (await orgs.send(new CreateAccountCommand({ AccountName: name, Email: `member-${i}@example.com` }))).CreateAccountStatus!;
      const id = status.AccountId ?? (await orgs.send(new DescribeCreateAccountStatusCommand({ CreateAccountRequestId: status.Id! }))).CreateAccountStatus!.AccountId!;
      names.set(id, name);
    }
    const ids = [management, ...names.keys()];
    const expected: KeyRow[] = [];
    for (const [n, id] of ids.entries()) {
      // The management account with the base credentials, each member through the role.
      let credentials = base;
      if (id !== management) {
        const c = (await sts.send(new AssumeRoleCommand({ RoleArn: `arn:aws:iam::${id}:role/${ROLE}`, RoleSessionName: 'setup' }))).Credentials!;
        credentials = { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! } as typeof base;
      }
      const iam = new IAMClient({ region, endpoint: moto.url, credentials });
      clients.push(iam);
      for (let u = 0; u < 2 + (n % 4); u++) {
        const UserName = `user-${n}-${u}`;
        await iam.send(new CreateUserCommand({ UserName }));
        for (let k = 0; k < (u + n) % 3; k++) {
          const key = (await iam.send(new CreateAccessKeyCommand({ UserName }))).AccessKey!;
          if ((u + k) % 3 === 1) await iam.send(new UpdateAccessKeyCommand({ UserName, AccessKeyId: key.AccessKeyId!, Status: 'Inactive' }));
        }
      }
      if (n % 2 === 1) await iam.send(new CreateAccountAliasCommand({ AccountAlias: `alias-${n}` }));
      expected.push(...(await truthOf(iam, id)));
    }
    assert.ok(expected.length > 10);
    assert.equal(new Set(expected.map((r) => r.account_id)).size, ids.length, 'keys in every account');

    await withTemp(async (out) => {
      // No --endpoint-url: AWS_ENDPOINT_URL points IAM, STS and Organizations at moto, as an operator would.
      const r = await runCli(['--out', out, '--format', 'csv', '--organization', '--role-name', ROLE, '--account-concurrency', '4'], testEnv({ AWS_ENDPOINT_URL: moto.url }));
      assert.equal(r.code, 0, r.stderr);
      const { rows } = await publishedRows(out, 'csv');
      // moto stamps sub-second creation times; IAM answers whole seconds. Compare at seconds.
      assert.deepEqual(rows.map((row) => ({ ...row, create_date: toSecond(new Date(row.create_date)) })), sortRows(expected), 'every key of every account exactly once');
      const manifest = await verifyManifest(await onlySnapshotDir(out));
      assert.equal(manifest.partial, false);
      assert.deepEqual(manifest.accounts.map((a) => a.account_id).sort(), [...ids].sort());
      const accounts = await publishedAccounts(out, 'csv');
      assert.deepEqual(
        accounts.map((a) => [a.account_id, a.account_name, a.account_alias, a.outcome, a.keys_exported]),
        [...ids].sort().map((id) => {
          const n = ids.indexOf(id);
          return [id, id === management ? (accounts.find((a) => a.account_id === id)?.account_name ?? null) : names.get(id)!, n % 2 === 1 ? `alias-${n}` : null, 'exported', expected.filter((e) => e.account_id === id).length];
        }),
      );
      assert.ok(accounts.every((a) => a.root_access_keys_present === false), 'moto reports no root keys');
    });
  } finally {
    for (const c of clients) c.destroy();
    await moto.close();
  }
});
