import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from './support/cli.ts';
import { queryDuckDb } from './support/duckdb.ts';
import { expectedRows } from './support/expect.ts';
import { withFake, withTemp } from './support/scope.ts';

for (const format of ['parquet', 'csv'] as const) {
  test(`iam-key-export ddl --dialect duckdb --location <out> prints SQL that DuckDB runs: a view of every row of the ${format} snapshots, typed`, async () => {
    await withFake({ users: 25, seed: 31, keysPerUser: { min: 1, max: 2 } }, async (fake) => {
      await withTemp(async (out) => {
        assert.equal((await runCli(['--endpoint-url', fake.url, '--out', out, '--format', format])).code, 0);
        const ddl = await runCli(['ddl', '--dialect', 'duckdb', '--location', out, '--format', format]);
        assert.equal(ddl.code, 0, ddl.stderr);
        const result = await queryDuckDb(`${ddl.stdout}\nSELECT * FROM access_keys ORDER BY account_id, user_name, access_key_id;`);
        assert.equal(result.rows.length, expectedRows(fake).length);
        assert.deepEqual(
          result.rows.map((r) => r.access_key_id),
          expectedRows(fake).map((r) => r.access_key_id),
        );
        const types = Object.fromEntries(result.columns.map((c) => [c.name, c.type]));
        assert.equal(types.account_id, 'VARCHAR');
        assert.equal(types.create_date, 'TIMESTAMP WITH TIME ZONE');
        assert.equal(types.key_age_days, 'INTEGER');
        assert.equal(types.snapshot_id, 'VARCHAR');
        // The accounts dataset beside it: one row for the one account, under the same snapshot id.
        const accountsDdl = await runCli(['ddl', '--dialect', 'duckdb', '--location', out, '--format', format, '--dataset', 'accounts']);
        assert.equal(accountsDdl.code, 0, accountsDdl.stderr);
        const accounts = await queryDuckDb(`${accountsDdl.stdout}\nSELECT * FROM accounts;`);
        assert.equal(accounts.rows.length, 1);
        const account = accounts.rows[0]!;
        assert.equal(account.account_id, expectedRows(fake)[0]!.account_id);
        assert.equal(account.snapshot_id, result.rows[0]!.snapshot_id);
        assert.equal(account.keys_exported, expectedRows(fake).length);
        assert.equal(account.outcome, 'exported');
        const accountTypes = Object.fromEntries(accounts.columns.map((c) => [c.name, c.type]));
        assert.equal(accountTypes.root_access_keys_present, 'BOOLEAN');
        assert.equal(accountTypes.users_exported, 'INTEGER');
      });
    });
  });
}
