import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { withFake, withTemp } from './support/scope.ts';
import { runCli, testEnv } from './support/cli.ts';
import { expectedRows, onlySnapshotDir, publishedRows, verifyManifest } from './support/expect.ts';
import { untilNextSecond } from './support/wait.ts';



const MATRIX = { throttleProbability: 0.1, serverErrorProbability: 0.03, dropProbability: 0.01, vanishedFraction: 0.02, deniedFraction: 0.01 };

for (const format of ['csv', 'parquet'] as const) {
  test(`${format}: under 10% throttling, 3% 500s, 1% drops, 2% vanished and 1% denied users, the run exits 3 unpublished and --allow-partial publishes exactly the readable keys`, async () => {
    await withFake({ users: 200, seed: 31, keysPerUser: { min: 0, max: 3 }, latencyMs: 2, ...MATRIX }, async (fake) => {
      const truth = fake.truth();
      const denied = truth.users.filter((u) => u.denied).map((u) => u.userName).sort();
      const vanished = truth.users.filter((u) => u.vanished);
      assert.ok(denied.length >= 2 && vanished.length >= 4, 'the matrix has denied and vanished users');
      await withTemp(async (out) => {
        const args = ['--endpoint-url', fake.url, '--out', out, '--format', format, '--concurrency', '16', '--page-size', '20'];
        const first = await runCli(args);
        assert.equal(first.code, 3, first.stderr);
        assert.match(first.stderr, /AccessDenied/);
        assert.match(first.stderr, /--allow-partial/);
        assert.deepEqual(await readdir(join(out, 'access_keys')).catch(() => []), [], 'nothing published');

        // The rerun pages only the failed users (faults off, so calls count exactly).
        fake.configure({ throttleProbability: 0, serverErrorProbability: 0, dropProbability: 0 });
        fake.resetStats();
        const second = await runCli([...args, '--allow-partial']);
        assert.equal(second.code, 0, second.stderr);
        assert.equal(fake.stats().calls.ListUsers, 0, 'listing was complete');
        assert.equal(fake.stats().calls.ListAccessKeys, denied.length, 'only the failed users are retried');

        assert.deepEqual((await publishedRows(out, format)).rows, expectedRows(fake));
        const manifest = await verifyManifest(await onlySnapshotDir(out));
        assert.equal(manifest.partial, true);
        assert.deepEqual(manifest.users.failed.map((f) => f.user_name).sort(), denied);
        assert.ok(manifest.users.failed.every((f) => f.code === 'AccessDenied'));
        assert.equal(manifest.users.vanished, vanished.length);
        assert.equal(manifest.users.seen, 200);
        assert.ok(manifest.api.throttles > 0 && manifest.api.retries > 0, 'throttles and retries are counted across runs');
        assert.equal(manifest.resumes, 1);
      });
    });
  });
}

test('under a low server-side rate limit the export finishes exact, with no user failed', async () => {
  await withFake({ users: 150, seed: 12, keysPerUser: { min: 0, max: 2 }, rateLimit: { perSecond: 40, burst: 10 } }, async (fake) => {
    await withTemp(async (out) => {
      const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--concurrency', '16']);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(fake.stats().rateLimited > 0, 'the limit was hit');
      assert.deepEqual((await publishedRows(out, 'csv')).rows, expectedRows(fake));
      const manifest = await verifyManifest(await onlySnapshotDir(out));
      assert.deepEqual(manifest.users.failed, []);
      assert.ok(manifest.api.throttles > 0);
    });
  });
});

for (const [cause, faults, pattern] of [
  ['invalid credentials', { invalidCredentials: true }, /credentials rejected or missing \(InvalidClientTokenId\)/],
  ['ListUsers denied', { listUsersDenied: true }, /ListUsers: access denied \(AccessDenied\).*iam:ListUsers/],
] as const) {
  test(`${cause}: exit 1 with one line naming the cause; the fixed rerun starts a new snapshot, not the failed run's`, async () => {
    await withFake({ users: 30, seed: 5, keysPerUser: { min: 1, max: 2 } }, async (fake) => {
      await withTemp(async (out) => {
        const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv'];
        fake.configure(faults);
        const r = await runCli(args);
        const failedAt = Date.now();
        assert.equal(r.code, 1);
        const lines = r.stderr.trim().split('\n');
        assert.equal(lines.length, 1, r.stderr);
        assert.match(lines[0]!, pattern);
        assert.doesNotMatch(r.stderr, /checkpoint is kept/, 'nothing was committed: no checkpoint to speak of');
        // The next day: fixed. A run that read nothing pins nothing (a new second: a new snapshot id).
        await untilNextSecond(failedAt);
        fake.configure({ invalidCredentials: false, listUsersDenied: false });
        const rerunAt = new Date();
        const again = await runCli(args);
        assert.equal(again.code, 0, again.stderr);
        assert.deepEqual((await publishedRows(out, 'csv')).rows, expectedRows(fake));
        const manifest = await verifyManifest(await onlySnapshotDir(out));
        assert.equal(manifest.resumes, 0);
        assert.ok(Date.parse(manifest.snapshot_time) >= Math.floor(rerunAt.getTime() / 1000) * 1000, `snapshot_time ${manifest.snapshot_time} is the good run's`);
        assert.deepEqual(await readdir(join(out, '_staging')).catch(() => []), []);
      });
    });
  });
}

test('JSON log lines on stdout carry the documented fields, and no progress bar is drawn off a terminal', async () => {
  await withFake({ users: 60, seed: 6, keysPerUser: { min: 0, max: 2 }, latencyMs: 15, deniedFraction: 0.05 }, async (fake) => {
    await withTemp(async (out) => {
      const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--concurrency', '2', '--allow-partial'], testEnv({ IKE_PROGRESS_MS: '100' }));
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout + r.stderr, /\u001b\[/, 'no terminal escapes');
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      const byEvent = (e: string) => lines.filter((l) => l.event === e);
      for (const l of lines) {
        assert.equal(typeof l.time, 'string');
        assert.ok(['info', 'warn', 'error'].includes(String(l.level)));
        assert.equal(typeof l.msg, 'string');
      }
      const [start] = byEvent('start');
      assert.ok(start && typeof start.snapshot_id === 'string' && start.resumed === false);
      assert.deepEqual(Object.keys(start.configuration as object).sort(), [
        'account_concurrency', 'accounts', 'allow_partial', 'concurrency', 'endpoint_url', 'external_id_set', 'format', 'keep', 'last_used', 'max_attempts', 'max_items', 'out',
        'page_size', 'path_prefix', 'profile', 'region', 'role_name', 'role_session_name', 'shard', 'snapshot_id', 'statuses', 'time_budget_ms',
      ]);
      const configuration = start.configuration as Record<string, unknown>;
      assert.deepEqual([configuration.accounts, configuration.role_name, configuration.shard], ['self', null, null]);
      const progress = byEvent('progress');
      assert.ok(progress.length >= 1);
      for (const key of ['users_listed', 'listing_done', 'users_done', 'keys', 'calls', 'calls_per_s', 'throttles', 'retries', 'elapsed_ms']) assert.ok(key in progress[0]!, key);
      const failed = byEvent('user').filter((l) => l.outcome === 'failed');
      assert.equal(failed.length, fake.truth().users.filter((u) => u.denied).length);
      assert.ok(failed.every((l) => l.level === 'warn' && l.code === 'AccessDenied'));
      const [end] = byEvent('end');
      assert.ok(end);
      assert.equal(end.status, 'published');
      assert.equal(end.exit_code, 0);
      for (const key of ['rows', 'users', 'vanished', 'failed', 'calls', 'throttles', 'retries', 'wall_ms', 'published']) assert.ok(key in end, key);
      // The final summary is one line on stderr.
      assert.equal(r.stderr.trim().split('\n').length, 1);
      assert.match(r.stderr, /^iam-key-export: published snapshot \S+ to .*rows=\d+ users=60 /);
      assert.doesNotMatch(r.stdout + r.stderr, /test-secret-not-real|AKIDTESTTESTTESTTEST/, 'no credentials logged');
    });
  });
});

test('--quiet prints nothing but the summary; --log-level warn keeps only warnings', async () => {
  await withFake({ users: 20, seed: 6, keysPerUser: { min: 0, max: 2 } }, async (fake) => {
    await withTemp(async (out) => {
      const quiet = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--quiet']);
      assert.equal(quiet.code, 0);
      assert.equal(quiet.stdout, '');
      assert.equal(quiet.stderr.trim().split('\n').length, 1);
      const warn = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--log-level', 'warn']);
      assert.equal(warn.code, 0);
      assert.equal(warn.stdout, '');
    });
  });
});
