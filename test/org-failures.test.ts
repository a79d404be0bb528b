/**
 * Per-account failures of an organization-wide export that happen after the
 * account was reached (issue 12, point 4): ListUsers denied in one account, and an
 * account suspended while it is being read. Each is recorded with its code, the
 * other accounts finish, the run exits 3 (or publishes with --allow-partial), and a
 * rerun once the account is readable again reads only that account.
 * AssumeRole denied and the systemic rule: test/org.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FakeIam } from './fake-iam/server.ts';
import { runCli, startCli, testEnv } from './support/cli.ts';
import { onlySnapshotDir, publishedRows, verifyManifest } from './support/expect.ts';
import { activeAccounts, callsByAccount, expectedAccounts, orgExpectedRows, publishedAccounts, ROLE } from './support/org.ts';
import { withFake, withTemp } from './support/scope.ts';

function orgArgs(fake: FakeIam, out: string, ...more: string[]): string[] {
  return ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--organization', '--role-name', ROLE, ...more];
}

async function assertExact(fake: FakeIam, out: string, ids: readonly string[]) {
  const { rows } = await publishedRows(out, 'csv');
  assert.deepEqual(rows, orgExpectedRows(fake, ids), 'every key of every account exactly once, in order');
  return verifyManifest(await onlySnapshotDir(out));
}

/** Asserts a rerun read only `retried` (besides the management account, which signs STS calls). */
function assertOnlyRetried(fake: FakeIam, ids: readonly string[], retried: readonly string[]): void {
  const calls = callsByAccount(fake);
  for (const id of ids) {
    if (id === ids[0] || retried.includes(id)) continue;
    assert.equal(calls.get(id) ?? 0, 0, `account ${id}, done before, is not read again`);
  }
  for (const id of retried) assert.ok((calls.get(id) ?? 0) > 0, `failed account ${id} is retried`);
  assert.equal(fake.stats().calls.AssumeRole, retried.length, 'only the failed accounts are reached again');
}

test('ListUsers denied in one account: recorded as AccessDenied, the others exported; exit 3, --allow-partial publishes; a rerun reads only that account', async () => {
  await withFake({ users: 5, seed: 1221, accounts: { count: 6, usersPerAccount: { min: 3, max: 8 } } }, async (fake) => {
    const ids = activeAccounts(fake).map((a) => a.id);
    const denied = ids[3]!;
    const readable = ids.filter((id) => id !== denied);
    fake.configure({ listUsersDeniedAccounts: [denied] });

    await withTemp(async (out) => {
      const r = await runCli(orgArgs(fake, out, '--allow-partial'));
      assert.equal(r.code, 0, r.stderr);
      const manifest = await assertExact(fake, out, readable);
      assert.equal(manifest.partial, true);
      assert.deepEqual(manifest.failed_accounts, [{ account_id: denied, code: 'AccessDenied' }]);
      const rows = await publishedAccounts(out, 'csv');
      const row = rows.find((a) => a.account_id === denied)!;
      assert.equal(row.outcome, 'failed');
      assert.equal(row.error_code, 'AccessDenied');
      assert.deepEqual(
        rows.filter((a) => a.account_id !== denied),
        expectedAccounts(fake, readable, { names: true }),
      );
    });

    await withTemp(async (out) => {
      const r = await runCli(orgArgs(fake, out));
      assert.equal(r.code, 3, r.stderr);
      assert.ok(r.stderr.includes(denied), `stderr names ${denied}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(` accounts=${ids.length} rows=`), 'the summary counts the accounts, not the caller\'s one');
      assert.ok(!existsSync(join(out, 'access_keys')), 'nothing published');
      fake.configure({ listUsersDeniedAccounts: [] });
      fake.resetStats();
      const again = await runCli(orgArgs(fake, out));
      assert.equal(again.code, 0, again.stderr);
      assertOnlyRetried(fake, ids, [denied]);
      const manifest = await assertExact(fake, out, ids);
      assert.equal(manifest.partial, false);
      assert.deepEqual(await publishedAccounts(out, 'csv'), expectedAccounts(fake, ids, { names: true }));
    });
  });
});

// Also with --last-used api, where the keys the victim gave before it was suspended are
// looked up by the API (the unit test of that is in last-used-unit.test.ts).
for (const lastUsed of ['off', 'api'] as const)
test(`an account suspended while it is read (--last-used ${lastUsed}): recorded with its code, the others finish; exit 3; reopened, a rerun reads only it and the snapshot is exact`, async () => {
  // The victim has many users and answers slowly, so the run is inside it when it is suspended.
  const options = { users: 6, seed: 1222, keysPerUser: { min: 1, max: 2 }, accounts: { count: 5, usersPerAccount: { min: 4, max: 8 } } };
  await withFake(options, async (fake) => {
    const ids = activeAccounts(fake).map((a) => a.id);
    const victim = ids[2]!;
    fake.configure({ accountLatencyMs: { [victim]: 60 } });
    await withTemp(async (out) => {
      const cli = startCli(orgArgs(fake, out, '--account-concurrency', '2', '--concurrency', '1', '--last-used', lastUsed), testEnv());
      let exited = false;
      void cli.done.finally(() => (exited = true));
      // Suspend it once some of its keys were listed: mid-account, not while reaching it.
      for (;;) {
        if ((fake.stats().byAccount[victim]?.calls.ListAccessKeys ?? 0) >= 2) break;
        if (exited) assert.fail('the run ended before it read the victim account');
        await sleep(5);
      }
      fake.updateAccount(victim, { status: 'SUSPENDED' });
      const r = await cli.done;
      assert.equal(r.code, 3, r.stderr);
      assert.ok(r.stderr.includes(victim), `stderr names ${victim}: ${r.stderr}`);
      assert.ok(!existsSync(join(out, 'access_keys')), 'nothing published');

      fake.updateAccount(victim, { status: 'ACTIVE' });
      fake.configure({ accountLatencyMs: {} });
      fake.resetStats();
      const again = await runCli(orgArgs(fake, out, '--last-used', lastUsed));
      assert.equal(again.code, 0, again.stderr);
      assertOnlyRetried(fake, ids, [victim]);
      const manifest = await assertExact(fake, out, ids);
      assert.equal(manifest.partial, false);
      assert.equal(manifest.resumes, 1);
    });
  });
});
