import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FakeIam } from './fake-iam/server.ts';
import { runCli } from './support/cli.ts';
import { killLoop } from './support/crash.ts';
import { onlySnapshotDir, publishedRows, verifyManifest } from './support/expect.ts';
import { withFake, withTemp } from './support/scope.ts';

type Format = 'csv' | 'parquet';

/**
 * Holds a published snapshot to the window rules (DESIGN §5): every key that
 * existed during the whole window exactly once, no key id twice, nothing that
 * never existed, each row under its key's own user id.
 */
async function assertWindow(fake: FakeIam, out: string, format: Format): Promise<void> {
  const window = new Map(fake.windowTruth().map((k) => [k.accessKeyId, k]));
  const { rows } = await publishedRows(out, format);
  const ids = rows.map((r) => r.access_key_id);
  assert.equal(new Set(ids).size, ids.length, `a key id published twice: ${ids.filter((id, i) => ids.indexOf(id) !== i).join(', ')}`);
  for (const r of rows) {
    const k = window.get(r.access_key_id);
    assert.ok(k, `${r.access_key_id} (${r.user_name}) never existed in the window`);
    assert.equal(r.user_id, k.userId, `${r.access_key_id}: row of another user`);
  }
  const published = new Set(ids);
  const missing = [...window.values()].filter((k) => k.whole && !published.has(k.accessKeyId));
  assert.deepEqual(missing.map((k) => `${k.userName}/${k.accessKeyId}`), [], 'keys that existed the whole window are missing');
}

for (const format of ['csv', 'parquet'] as const) {
  // Parquet also has IAM expire every Marker at each change: listings restart.
  const rejectStaleMarkers = format === 'parquet';
  test(`${format}: a --max-items slice, then 5 SIGKILLs with IAM changing after each (users deleted, created, renamed, keys rotated${rejectStaleMarkers ? ', Markers expiring' : ''}): the window rules hold exactly`, async () => {
    await withFake({ users: 200, seed: 41, keysPerUser: { min: 0, max: 4 }, latencyMs: 10, jitterMs: 6, rejectStaleMarkers }, async (fake) => {
      await withTemp(async (out) => {
        const args = ['--endpoint-url', fake.url, '--out', out, '--format', format, '--concurrency', '2', '--page-size', '3'];
        const env = { IKE_COMMIT_ROWS: '9', IKE_COMMIT_MS: '60' };
        const slice = await runCli([...args, '--max-items', '25'], undefined);
        assert.equal(slice.code, 75, slice.stderr);
        fake.churn({ seed: 1, count: 25 });
        let round = 1;
        await killLoop({
          args,
          out,
          kills: 5,
          finalizeKills: 0,
          seed: format === 'csv' ? 7 : 8,
          signal: 'SIGKILL',
          minMs: 50,
          maxMs: 400,
          env,
          afterKill: () => {
            fake.churn({ seed: 100 + round++, count: 25 });
          },
        });
        await assertWindow(fake, out, format);
        const manifest = await verifyManifest(await onlySnapshotDir(out));
        assert.ok(manifest.resumes >= 6, 'the slice and every kill were resumed');
        if (rejectStaleMarkers) assert.ok(manifest.restarted_listings > 0, 'expired Markers restarted listings');
      });
    });
  });
}

test('a user renamed after it was finished is not exported again; one renamed while in progress is finished under its new name, not vanished', async () => {
  await withFake({ users: 12, seed: 5, keysPerUser: { min: 3, max: 3 } }, async (fake) => {
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--concurrency', '1', '--page-size', '2'];
      // 7 keys at concurrency 1: the first two users finished, the third in progress (1 of 3 keys).
      assert.equal((await runCli([...args, '--max-items', '7'])).code, 75);
      const [first, , third] = fake.truth().users;
      fake.mutate({ kind: 'renameUser', userName: first!.userName, newUserName: 'zz-renamed-finished' });
      fake.mutate({ kind: 'renameUser', userName: third!.userName, newUserName: 'aa-renamed-in-progress' });
      const r = await runCli(args);
      assert.equal(r.code, 0, r.stderr);
      await assertWindow(fake, out, 'csv');
      const { rows } = await publishedRows(out, 'csv');
      assert.equal(rows.filter((row) => row.user_id === third!.userId).length, 3);
      assert.ok(rows.filter((row) => row.user_id === third!.userId).every((row) => row.user_name === 'aa-renamed-in-progress'), 'the latest observation wins');
      const manifest = await verifyManifest(await onlySnapshotDir(out));
      assert.equal(manifest.users.vanished, 0);
      assert.equal(manifest.users.exported, 12);
    });
  });
});

test('a resume with credentials of another account on the same endpoint exits 2 naming --fresh before any ListAccessKeys call', async () => {
  await withFake({ users: 20, seed: 6, keysPerUser: { min: 1, max: 2 } }, async (fake) => {
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out];
      assert.equal((await runCli([...args, '--max-items', '4'])).code, 75);
      fake.configure({ callerAccountId: '999988887777' });
      fake.resetStats();
      const r = await runCli(args);
      assert.equal(r.code, 2, r.stderr);
      const line = r.stderr.trim();
      assert.equal(line.split('\n').length, 1, line);
      assert.match(line, /of account 123456789012, but these credentials are of account 999988887777.*--fresh/);
      assert.equal(fake.stats().calls.ListAccessKeys, 0);
      assert.equal(fake.stats().calls.ListUsers, 0);
    });
  });
});
