import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startFakeIam } from './fake-iam/server.ts';
import { withTemp } from './support/scope.ts';
import { runCli, testEnv } from './support/cli.ts';
import { startSlowProxy } from './support/slow-proxy.ts';
import { expectedRows, onlySnapshotDir, publishedRows, sortRows, verifyManifest } from './support/expect.ts';


for (const format of ['parquet', 'csv'] as const) {
  test(`a ${format} export holds every key of the fake exactly once, sorted, typed as a warehouse reads it`, async () => {
    const fake = await startFakeIam({ users: 150, seed: 7, keysPerUser: { min: 0, max: 5 } });
    try {
      await withTemp(async (out) => {
        const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', format, '--page-size', '2', '--concurrency', '6']);
        assert.equal(r.code, 0, r.stderr);
        const { rows, all, types } = await publishedRows(out, format);
        const expected = expectedRows(fake);
        assert.ok(expected.length > 200, 'the fake has enough keys to page');
        assert.deepEqual(rows, expected, 'rows equal the ground truth, in sort order');
        assert.deepEqual(rows, sortRows(rows));
        assert.match(types.create_date!, /^TIMESTAMP/);
        assert.match(types.snapshot_time!, /^TIMESTAMP/);
        // Parquet carries INT32; DuckDB's CSV sniffer widens integers to BIGINT.
        assert.equal(types.key_age_days, format === 'parquet' ? 'INTEGER' : 'BIGINT');
        const snapshotTime = new Date(String(all[0]!.snapshot_time)).getTime();
        const truth = new Map(fake.truth().keys.map((k) => [k.accessKeyId, k]));
        const users = new Map(fake.truth().users.map((u) => [u.userName, u]));
        for (const row of all) {
          const age = Math.floor((snapshotTime - new Date(String(row.create_date)).getTime()) / 86_400_000);
          assert.equal(row.key_age_days, Math.max(0, age));
          // Last use: the report's (to the second) or the API's, the same truth either way.
          const used = truth.get(String(row.access_key_id))!.lastUsed;
          assert.equal(row.last_used_date, used ? used.date.toISOString() : null, String(row.access_key_id));
          assert.equal(row.last_used_service, used?.service ?? null);
          assert.equal(row.last_used_region, used?.region ?? null);
          assert.equal(row.days_since_last_used, used ? Math.max(0, Math.floor((snapshotTime - used.date.getTime()) / 86_400_000)) : null);
          const user = users.get(String(row.user_name))!;
          assert.equal(row.user_arn, user.arn);
          assert.equal(row.user_path, user.path);
          assert.equal(row.user_create_date, user.createDate.toISOString());
        }
        const dir = await onlySnapshotDir(out);
        const manifest = await verifyManifest(dir);
        assert.equal(manifest.rows, expected.length);
        assert.equal(manifest.users.seen, 150);
        assert.equal(manifest.users.exported, 150);
        assert.equal(manifest.resumes, 0);
        assert.equal(manifest.duplicates_dropped, 0);
        assert.equal(manifest.last_used.source, 'report');
        assert.ok(manifest.last_used.from_api > 0, 'users with more than two keys: the report holds two of them');
        assert.equal(manifest.last_used.from_report + manifest.last_used.from_api, expected.length);
        assert.equal(manifest.last_used.dated + manifest.last_used.null, expected.length);
        assert.equal(manifest.api.calls.ListAccessKeys, fake.stats().calls.ListAccessKeys);
        // Each page of each user's keys asked once (pages of 2): the first pages asked while the
        // snapshot was set up are not asked again.
        const keysOf = new Map<string, number>();
        for (const k of fake.truth().keys) keysOf.set(k.userName, (keysOf.get(k.userName) ?? 0) + 1);
        const pages = fake.truth().users.reduce((n, u) => n + Math.max(1, Math.ceil((keysOf.get(u.userName) ?? 0) / 2)), 0);
        assert.equal(fake.stats().calls.ListAccessKeys, pages);
        assert.deepEqual((await readdir(dir)).sort(), ['_SUCCESS', '_manifest.json', `part-00000.${format}`]);
        assert.deepEqual(await readdir(join(out, '_staging')), [], 'staging is cleaned after publish');
      });
    } finally {
      await fake.close();
    }
  });
}

test('never more than --concurrency IAM requests of the account at once, whatever asked them, and the fan-out uses all of them', async () => {
  // Users of 3-4 pages each: paging them is slower than listing them, so the fan-out is the
  // limit. The listing's ListUsers pages, the verifying scan, the account's facts and its
  // credential report are asked while users are paged: they take their turn in the same 5.
  const fake = await startFakeIam({ users: 40, seed: 3, keysPerUser: { min: 6, max: 8 }, latencyMs: 25 });
  try {
    await withTemp(async (out) => {
      const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--concurrency', '5', '--page-size', '2']);
      assert.equal(r.code, 0, r.stderr);
      const stats = fake.stats();
      const [account] = Object.values(stats.byAccount);
      assert.equal(account?.peakIamInFlight, 5);
      assert.equal(stats.peakInFlightByAction.ListAccessKeys, 5);
      assert.ok((account?.calls.ListUsers ?? 0) > 20 && (account?.calls.GetAccountSummary ?? 0) > 0, 'other calls were asked too');
    });
  } finally {
    await fake.close();
  }
});

test("a new snapshot's first ListUsers page is asked alongside GetCallerIdentity, not after the snapshot is set up, and only once", async () => {
  const fake = await startFakeIam({ users: 30, seed: 4, keysPerUser: { min: 0, max: 3 } });
  // GetCallerIdentity is answered only once a ListUsers arrived (or after 5 s): a run
  // that lists only after knowing who it is waits the 5 s.
  let listed!: () => void;
  const listUsersArrived = new Promise<void>((resolve) => (listed = resolve));
  let releasedBy = '';
  const proxy = await startSlowProxy(fake.url, 0, (action) => {
    if (action === 'ListUsers') listed();
    if (action !== 'GetCallerIdentity') return undefined;
    return Promise.race([listUsersArrived.then(() => void (releasedBy ||= 'ListUsers')), new Promise<void>((r) => setTimeout(() => (releasedBy ||= 'timeout', r()), 5_000))]);
  });
  try {
    await withTemp(async (out) => {
      const r = await runCli(['--endpoint-url', proxy.url, '--out', out, '--format', 'csv', '--page-size', '7', '--concurrency', '4']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(releasedBy, 'ListUsers', 'the first page was asked before the caller was known');
      assert.deepEqual((await publishedRows(out, 'csv')).rows, expectedRows(fake));
      // 30 users in pages of 7, and one verifying scan: the first page was not asked again.
      assert.equal(fake.stats().calls.ListUsers, Math.ceil(30 / 7) + 1);
    });
  } finally {
    await proxy.close();
    await fake.close();
  }
});

test('--status and --path-prefix keep exactly the matching keys', async () => {
  const fake = await startFakeIam({ users: 120, seed: 11, keysPerUser: { min: 0, max: 3 } });
  try {
    const prefix = fake.truth().users.find((u) => u.path !== '/')!.path;
    await withTemp(async (out) => {
      const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--status', 'Inactive', '--status', 'Expired', '--path-prefix', prefix]);
      assert.equal(r.code, 0, r.stderr);
      const expected = expectedRows(fake, { statuses: ['Inactive', 'Expired'], pathPrefix: prefix });
      assert.ok(expected.length > 0);
      assert.deepEqual((await publishedRows(out, 'csv')).rows, expected);
    });
  } finally {
    await fake.close();
  }
});

test('large snapshots are split into files of IKE_ROWS_PER_FILE rows, still globally sorted', async () => {
  const fake = await startFakeIam({ users: 60, seed: 5, keysPerUser: { min: 2, max: 4 } });
  try {
    await withTemp(async (out) => {
      const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', 'parquet'], testEnv({ IKE_ROWS_PER_FILE: '50', IKE_COMMIT_ROWS: '17' }));
      assert.equal(r.code, 0, r.stderr);
      const dir = await onlySnapshotDir(out);
      const manifest = await verifyManifest(dir);
      const expected = expectedRows(fake);
      assert.equal(manifest.files.length, Math.ceil(expected.length / 50));
      assert.ok(manifest.files.slice(0, -1).every((f) => f.rows === 50));
      // Files in name order, rows in file order: the sort holds across files.
      const { rows } = await publishedRows(out, 'parquet');
      assert.deepEqual(sortRows(rows), expected);
    });
  } finally {
    await fake.close();
  }
});

test('an account without users publishes one readable, empty file', async () => {
  const fake = await startFakeIam({ users: 0, seed: 1 });
  try {
    for (const format of ['csv', 'parquet'] as const) {
      await withTemp(async (out) => {
        const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', format]);
        assert.equal(r.code, 0, r.stderr);
        const manifest = await verifyManifest(await onlySnapshotDir(out));
        assert.equal(manifest.rows, 0);
        assert.equal(manifest.files.length, 1);
      });
    }
  } finally {
    await fake.close();
  }
});
