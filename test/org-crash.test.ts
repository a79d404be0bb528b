/**
 * Organization-wide exports that are killed: SIGKILLs across accounts, and
 * shards run as an indexed job (Kubernetes JOB_COMPLETION_INDEX, AWS Batch
 * AWS_BATCH_JOB_ARRAY_INDEX) with shards and their finalizer killed and rerun, and
 * `iam-key-export finalize` finishing a publish whose finalizer died.
 * Always: one published snapshot, every key of every account exactly once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FakeIam } from './fake-iam/server.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { snapshotIdOf } from '../pipeline/snapshot.ts';
import { runCli, startCli, testEnv, type CliResult } from './support/cli.ts';
import { killLoop } from './support/crash.ts';
import { onlySnapshotDir, publishedRows, verifyManifest } from './support/expect.ts';
import { activeAccounts, expectedAccounts, orgExpectedRows, publishedAccounts, ROLE } from './support/org.ts';
import { withFake, withTemp } from './support/scope.ts';

/** Asserts `out` holds exactly one published snapshot (both datasets), equal to the fake's truth. */
async function assertOnePublished(fake: FakeIam, out: string, snapshotId?: string) {
  const ids = activeAccounts(fake).map((a) => a.id);
  for (const dataset of ['access_keys', 'accounts']) {
    const dirs = (await readdir(join(out, dataset))).filter((d) => d.startsWith('snapshot_id='));
    assert.deepEqual(dirs.length, 1, `${dataset}: one snapshot`);
    if (snapshotId) assert.equal(dirs[0], `snapshot_id=${snapshotId}`);
  }
  const { rows } = await publishedRows(out, 'csv');
  assert.deepEqual(rows, orgExpectedRows(fake, ids), 'every key of every account exactly once, in order');
  const manifest = await verifyManifest(await onlySnapshotDir(out));
  assert.equal(manifest.duplicates_dropped, 0, 'IAM did not change: no committed page was read again');
  assert.deepEqual(await publishedAccounts(out, 'csv'), expectedAccounts(fake, ids, { names: true }));
  assert.deepEqual(await readdir(join(out, '_staging')).catch(() => []), [], 'nothing left in staging');
  return manifest;
}

test('killed with SIGKILL at 10 random moments across accounts, reruns publish every key of every account exactly once', async () => {
  // Slow enough (a few seconds of calls at 2 accounts × 2 users at once) that each run does a small share.
  const options = { users: 10, seed: 1301, latencyMs: 20, jitterMs: 10, keysPerUser: { min: 0, max: 4 }, accounts: { count: 16, usersPerAccount: { min: 6, max: 14 } } };
  await withFake(options, async (fake) => {
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--organization', '--role-name', ROLE, '--account-concurrency', '2', '--concurrency', '2', '--page-size', '2'];
      const loop = await killLoop({ args, out, kills: 10, finalizeKills: 0, seed: 1301, signal: 'SIGKILL', minMs: 50, maxMs: 400, env: { IKE_COMMIT_ROWS: '5', IKE_COMMIT_MS: '50' } });
      assert.equal(loop.killed, 10);
      const manifest = await assertOnePublished(fake, out);
      assert.equal(manifest.resumes, loop.results.length - 1, 'every rerun resumed the one snapshot');
    });
  });
});

test('killed midway through saving an account\'s credential report: the half-written file is not a report; the rerun publishes exactly once', async () => {
  const options = { users: 4, seed: 1304, keysPerUser: { min: 0, max: 3 }, accounts: { count: 6, usersPerAccount: { min: 2, max: 6 } } };
  await withFake(options, async (fake) => {
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--organization', '--role-name', ROLE, '--account-concurrency', '1', '--concurrency', '2'];
      const env = { IKE_COMMIT_ROWS: '2', IKE_COMMIT_MS: '0' };
      // The third report saved: by then the checkpoint names this snapshot, so the rerun resumes it.
      const crashed = await runCli(args, testEnv({ ...env, IKE_FAULT_POINT: 'store-write-midway@3~/reports/' }));
      assert.equal(crashed.signal, 'SIGKILL', `the run died saving a report (exit ${crashed.code}: ${crashed.stderr})`);
      const staged = await readdir(join(out, '_staging'));
      assert.equal(staged.length, 1);
      const left = await readdir(join(out, '_staging', staged[0]!, 'reports'));
      assert.ok(left.some((name) => name.endsWith('.tmp')), `the half-written report is on disk: ${left.join(', ')}`);
      const again = await runCli(args, testEnv(env));
      assert.equal(again.code, 0, again.stderr);
      const manifest = await assertOnePublished(fake, out, staged[0]);
      assert.equal(manifest.resumes, 1, 'the rerun resumed the snapshot the crash left');
    });
  });
});

interface Shards {
  readonly fake: FakeIam;
  readonly out: string;
  readonly id: string;
  readonly count: number;
  /** The environment variable that carries the index. */
  readonly indexVariable: 'JOB_COMPLETION_INDEX' | 'AWS_BATCH_JOB_ARRAY_INDEX';
}

function shardArgs(s: Shards): string[] {
  return ['--endpoint-url', s.fake.url, '--out', s.out, '--format', 'csv', '--organization', '--role-name', ROLE, '--shards', String(s.count), '--snapshot-id', s.id, '--account-concurrency', '2', '--concurrency', '2', '--page-size', '2'];
}

function shardEnv(s: Shards, index: number, extra: Record<string, string> = {}) {
  return testEnv({ [s.indexVariable]: String(index), IKE_COMMIT_ROWS: '5', IKE_COMMIT_MS: '50', ...extra });
}

test('4 shards as a Kubernetes indexed job: shards SIGKILLed at random and the finalizing shard killed, the killed ones rerun: one snapshot, exact', async () => {
  const options = { users: 8, seed: 1302, latencyMs: 15, jitterMs: 10, keysPerUser: { min: 0, max: 4 }, accounts: { count: 23, usersPerAccount: { min: 4, max: 12 } } };
  await withFake(options, async (fake) => {
    await withTemp(async (out) => {
      const s: Shards = { fake, out, id: snapshotIdOf(new Date()), count: 4, indexVariable: 'JOB_COMPLETION_INDEX' };
      const random = mulberry32(1302);
      const pending = new Set([0, 1, 2, 3]);
      let randomKills = 0;
      let finalizerKilled = false;
      for (let round = 0; pending.size > 0; round++) {
        assert.ok(round < 12, `shards still pending after ${round} rounds: ${[...pending].join(', ')}`);
        // As the scheduler does (backoffLimitPerIndex): every index not yet succeeded runs again.
        const runs = [...pending].map(async (index) => {
          // Until the finalizer was killed once, whichever shard finalizes dies writing the manifest.
          const cli = startCli(shardArgs(s), shardEnv(s, index, finalizerKilled ? {} : { IKE_FAULT_POINT: 'manifest-written' }));
          let killedByUs = false;
          if (randomKills < 3 && random() < 0.5) {
            const delay = 100 + random() * 700;
            void (async () => {
              while (!cli.stdout().includes('"event":"start"') && cli.child.exitCode === null && cli.child.signalCode === null) await sleep(10);
              await sleep(delay);
              if (cli.child.exitCode === null && cli.child.signalCode === null) {
                killedByUs = true;
                cli.kill('SIGKILL');
              }
            })();
          }
          const r: CliResult = await cli.done;
          return { index, r, killedByUs };
        });
        for (const { index, r, killedByUs } of await Promise.all(runs)) {
          if (r.signal === 'SIGKILL') {
            if (killedByUs) randomKills++;
            else finalizerKilled = true; // the fault point: this shard was finalizing
            continue;
          }
          assert.equal(r.code, 0, `shard ${index}: ${r.stderr}`);
          pending.delete(index);
        }
      }
      assert.ok(randomKills >= 2, `random kills that landed: ${randomKills}`);
      assert.ok(finalizerKilled, 'the finalizing shard was killed once');
      await assertOnePublished(fake, out, s.id);
      // A late rerun of any shard (a scheduler retry) changes nothing.
      const late = await runCli(shardArgs(s), shardEnv(s, 2));
      assert.equal(late.code, 0, late.stderr);
      await assertOnePublished(fake, out, s.id);
    });
  });
});

for (const point of ['after-promote', 'key-deleted@3~_staging/'])
test(`the finalizer killed after it published (${point}): a rerun of any shard writes both _LATEST and removes the staging, and an unsharded run is not refused`, async () => {
  const options = { users: 4, seed: 1305, keysPerUser: { min: 0, max: 3 }, accounts: { count: 5, usersPerAccount: { min: 2, max: 5 } } };
  await withFake(options, async (fake) => {
    await withTemp(async (out) => {
      const s: Shards = { fake, out, id: snapshotIdOf(new Date()), count: 2, indexVariable: 'JOB_COMPLETION_INDEX' };
      const first = await runCli(shardArgs(s), shardEnv(s, 0));
      assert.equal(first.code, 0, first.stderr);
      const last = await runCli(shardArgs(s), shardEnv(s, 1, { IKE_FAULT_POINT: point }));
      assert.equal(last.signal, 'SIGKILL', `died at ${point} (exit ${last.code}: ${last.stderr})`);
      assert.ok(existsSync(join(out, 'access_keys', `snapshot_id=${s.id}`, '_SUCCESS')), 'published before it died');
      assert.notDeepEqual(await readdir(join(out, '_staging')), [], 'the staging is left');
      const again = await runCli(shardArgs(s), shardEnv(s, 0));
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stderr, new RegExp(`published snapshot ${s.id}`));
      await assertOnePublished(fake, out, s.id);
      for (const dataset of ['access_keys', 'accounts']) assert.equal(await readFile(join(out, dataset, '_LATEST'), 'utf8'), `${s.id}\n`, `${dataset}/_LATEST`);
      // What a staging left after the publish used to do: stop every later unsharded run as an unfinished sharded snapshot.
      const next = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--organization', '--role-name', ROLE]);
      assert.equal(next.code, 0, next.stderr);
    });
  });
});

test('4 shards as an AWS Batch array job; `finalize` waits (75) until every shard is done, then finishes a publish whose finalizer died', async () => {
  const options = { users: 6, seed: 1303, keysPerUser: { min: 0, max: 3 }, accounts: { count: 15, usersPerAccount: { min: 2, max: 8 } } };
  await withFake(options, async (fake) => {
    await withTemp(async (out) => {
      const s: Shards = { fake, out, id: snapshotIdOf(new Date()), count: 4, indexVariable: 'AWS_BATCH_JOB_ARRAY_INDEX' };
      const finalize = () => runCli(['finalize', '--out', out, '--snapshot-id', s.id, '--shards', '4']);
      const first = await Promise.all([0, 1, 2].map((i) => runCli(shardArgs(s), shardEnv(s, i))));
      for (const r of first) {
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /waiting for shard\(s\) [0-9, ]*3:/);
      }
      const early = await finalize();
      assert.equal(early.code, 75, early.stderr);
      assert.match(early.stderr, /shard\(s\) 3 not done/);
      // The last shard finishes its part and dies finalizing, just before publishing.
      const last = await runCli(shardArgs(s), shardEnv(s, 3, { IKE_FAULT_POINT: 'before-promote' }));
      assert.equal(last.signal, 'SIGKILL', last.stderr);
      assert.deepEqual((await readdir(join(out, 'access_keys')).catch(() => [])).filter((d) => d.startsWith('snapshot_id=')), [], 'not published yet');
      // A DAG scheduler's finalize step (e.g. a Batch job depending on the array job) publishes it.
      const done = await finalize();
      assert.equal(done.code, 0, done.stderr);
      await assertOnePublished(fake, out, s.id);
      const again = await finalize();
      assert.equal(again.code, 0, again.stderr);
      await assertOnePublished(fake, out, s.id);
    });
  });
});
