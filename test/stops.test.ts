import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { runCli, startCli, testEnv, type RunningCli } from './support/cli.ts';
import { expectedRows, onlySnapshotDir, publishedRows, verifyManifest } from './support/expect.ts';
import { withFake, withTemp } from './support/scope.ts';
import { until, untilOutput } from './support/wait.ts';

/** Waits (on its output, not a clock) until the CLI logged its start line. */
function started(cli: RunningCli): Promise<void> {
  return untilOutput(cli, () => cli.stdout().includes('"event":"start"'), 'its start line');
}

const published = (out: string) => readdir(join(out, 'access_keys')).catch(() => [] as string[]);

test('--max-items with SIGTERM while IAM answers slowly: exit 75 within 10 s with the summary line', async () => {
  await withFake({ users: 40, seed: 3, keysPerUser: { min: 1, max: 3 }, latencyMs: 400 }, async (fake) => {
    await withTemp(async (out) => {
      const cli = startCli(['--endpoint-url', fake.url, '--out', out, '--max-items', '5', '--concurrency', '8', '--page-size', '2']);
      await started(cli);
      // The whole budget (5 = 2 + 2 + 1) is reserved by calls in flight: later users wait on it.
      await until(cli, () => fake.stats().calls.ListAccessKeys >= 3 && fake.stats().inFlight > 0, 'three calls reserving the budget');
      const signalled = Date.now();
      cli.kill('SIGTERM');
      const r = await cli.done;
      assert.equal(r.code, 75, r.stderr);
      assert.ok(Date.now() - signalled < 10_000, `took ${Date.now() - signalled} ms`);
      assert.match(r.stderr, /stopped \(signal\), snapshot \S+ is resumable/);
    });
  });
});

test('--max-items with --time-budget on a slow IAM: exit 75 within 10 s naming --time-budget', async () => {
  await withFake({ users: 40, seed: 3, keysPerUser: { min: 1, max: 3 }, latencyMs: 700 }, async (fake) => {
    await withTemp(async (out) => {
      const t0 = Date.now();
      const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--max-items', '50', '--concurrency', '8', '--page-size', '1', '--time-budget', '2s']);
      assert.equal(r.code, 75, r.stderr);
      assert.ok(Date.now() - t0 < 12_000, `took ${Date.now() - t0} ms`);
      assert.match(r.stderr.trim().split('\n').at(-1)!, /stopped \(--time-budget\)/);
    });
  });
});

test('--max-items with a fatal error mid-run (credentials expire): exit 1 within 10 s with one line naming the cause', async () => {
  await withFake({ users: 40, seed: 3, keysPerUser: { min: 1, max: 3 }, latencyMs: 200 }, async (fake) => {
    await withTemp(async (out) => {
      // One ListUsers page lists everyone: the calls after the start are the users' ListAccessKeys.
      // No credential report: it is read alongside the users, so which of its calls or theirs
      // meets the expired credentials first would depend on timing (a report that fails
      // fails the run the same way: fanout.test.ts, last-used-unit.test.ts). The account's
      // facts are asked as its first users are paged: the credentials expire once they were
      // answered. The 30 keys of --max-items go to one user at a time here, so the third
      // ListAccessKeys comes two round trips after the first.
      const cli = startCli(['--endpoint-url', fake.url, '--out', out, '--max-items', '30', '--concurrency', '8', '--page-size', '100', '--last-used', 'off']);
      await started(cli);
      await until(cli, () => fake.stats().calls.ListAccessKeys >= 3, 'the third ListAccessKeys');
      fake.configure({ invalidCredentials: true });
      const t0 = Date.now();
      const r = await cli.done;
      assert.equal(r.code, 1, r.stderr);
      assert.ok(Date.now() - t0 < 10_000);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /ListAccessKeys for user .*: credentials rejected or missing \(InvalidClientTokenId\)/);
      assert.doesNotMatch(lines[0]!, /ListUsers/, 'the user paging is not labelled ListUsers');
    });
  });
});

test('throttling that outlives --max-attempts stops the run resumably (exit 75, a line suggesting a lower --concurrency); no user is marked failed', async () => {
  await withFake({ users: 30, seed: 5, keysPerUser: { min: 1, max: 2 }, latencyMs: 20 }, async (fake) => {
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--page-size', '1', '--concurrency', '2'];
      const cli = startCli([...args, '--max-attempts', '2']);
      await started(cli);
      fake.configure({ throttleProbability: 1 });
      const r = await cli.done;
      assert.equal(r.code, 75, r.stderr);
      assert.match(r.stderr, /throttl.*lower --concurrency/);
      fake.configure({ throttleProbability: 0 });
      const again = await runCli(args);
      assert.equal(again.code, 0, again.stderr);
      const manifest = await verifyManifest(await onlySnapshotDir(out));
      assert.deepEqual(manifest.users.failed, [], 'throttling never fails a user');
      assert.deepEqual((await publishedRows(out, 'csv')).rows, expectedRows(fake));
    });
  });
});

for (const partial of [false, true]) {
  test(`every user denied ListAccessKeys${partial ? ' with --allow-partial' : ''}: exit 1, one line naming iam:ListAccessKeys, nothing published`, async () => {
    await withFake({ users: 45, seed: 8, keysPerUser: { min: 1, max: 2 }, deniedFraction: 1 }, async (fake) => {
      await withTemp(async (out) => {
        const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--concurrency', '4', ...(partial ? ['--allow-partial'] : [])]);
        assert.equal(r.code, 1, r.stderr);
        const lines = r.stderr.trim().split('\n');
        assert.equal(lines.length, 1, r.stderr);
        assert.match(lines[0]!, /denied \(AccessDenied\) for every one of the first 20 users: the identity needs iam:ListAccessKeys/);
        assert.deepEqual(await published(out), []);
      });
    });
  });
}

test('a small account whose every user is denied is systemic too (min(20, all) users)', async () => {
  await withFake({ users: 3, seed: 8, keysPerUser: { min: 1, max: 2 }, deniedFraction: 1 }, async (fake) => {
    await withTemp(async (out) => {
      const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--allow-partial']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /for every one of the first 3 users: the identity needs iam:ListAccessKeys/);
      assert.deepEqual(await published(out), []);
    });
  });
});

test('an --allow-partial publish killed at every step of finalize still publishes partial, with the same failed users', async () => {
  await withFake({ users: 30, seed: 9, keysPerUser: { min: 0, max: 2 }, deniedFraction: 0.1 }, async (fake) => {
    const denied = fake.truth().users.filter((u) => u.denied).map((u) => u.userName).sort();
    assert.ok(denied.length >= 2);
    for (const point of ['data-file-written', 'manifest-written', 'success-written', 'publishing-saved', 'publish-renamed', 'latest-written']) {
      await withTemp(async (out) => {
        const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--allow-partial'];
        const crashed = await runCli(args, testEnv({ IKE_FAULT_POINT: point }));
        assert.equal(crashed.signal, 'SIGKILL', `${point}: ${crashed.stderr}`);
        const again = await runCli(args);
        assert.equal(again.code, 0, `${point}: ${again.stderr}`);
        const manifest = await verifyManifest(await onlySnapshotDir(out));
        assert.equal(manifest.partial, true, point);
        assert.deepEqual(manifest.users.failed.map((f) => f.user_name).sort(), denied, point);
        assert.ok(manifest.users.failed.every((f) => f.code === 'AccessDenied'), point);
        assert.deepEqual((await publishedRows(out, 'csv')).rows, expectedRows(fake), point);
      });
    }
  });
});
