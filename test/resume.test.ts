import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FakeIam } from './fake-iam/server.ts';
import { withFake, withTemp } from './support/scope.ts';
import { runCli, startCli, testEnv } from './support/cli.ts';
import { killLoop } from './support/crash.ts';
import { expectedRows, onlySnapshotDir, publishedRows, verifyManifest } from './support/expect.ts';
import { untilOutput } from './support/wait.ts';



/** The rows of an uninterrupted run at --concurrency 1. */
async function referenceRows(fake: FakeIam, format: 'csv' | 'parquet') {
  return withTemp(async (out) => {
    const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', format, '--concurrency', '1']);
    assert.equal(r.code, 0, r.stderr);
    return (await publishedRows(out, format)).rows;
  });
}

async function stagingIds(out: string): Promise<string[]> {
  return readdir(join(out, '_staging')).catch(() => []);
}

for (const format of ['csv', 'parquet'] as const) {
  test(`${format}: killed with SIGKILL at 5 random moments, reruns publish every key exactly once`, async () => {
    // A second net behind the named fault points below, which carry the exactness proof.
    // Slow enough (~4 s of calls) that each run does a small share of the work before its kill.
    await withFake({ users: 200, seed: 21, keysPerUser: { min: 0, max: 6 }, latencyMs: 12, jitterMs: 8 }, async (fake) => {
      // An uninterrupted run equals the ground truth (test/export.test.ts checks it at every concurrency).
      const reference = expectedRows(fake);
      await withTemp(async (out) => {
        const args = ['--endpoint-url', fake.url, '--out', out, '--format', format, '--concurrency', '2', '--page-size', '2'];
        const loop = await killLoop({
          args,
          out,
          kills: 5,
          finalizeKills: 0,
          seed: format === 'csv' ? 101 : 202,
          signal: 'SIGKILL',
          minMs: 50,
          maxMs: 450,
          // Commit often: many crash points between part and checkpoint.
          env: { IKE_COMMIT_ROWS: '7', IKE_COMMIT_MS: '50', IKE_ROWS_PER_FILE: '20' },
        });
        assert.equal(loop.killed, 5);
        const { rows } = await publishedRows(out, format);
        assert.deepEqual(rows, reference, 'row for row equal to the ground truth, in order');
        const manifest = await verifyManifest(await onlySnapshotDir(out));
        assert.equal(manifest.duplicates_dropped, 0, 'IAM did not change: resume never re-reads a committed page');
        assert.equal(manifest.resumes, loop.results.length - 1, 'every rerun is counted as a resume');
        assert.deepEqual(await stagingIds(out), []);
      });
    });
  });
}

/** Every named crash point of a run, in the order a run meets them (see pipeline/faultpoint.ts). */
const EXPORT_POINTS = ['store-write-midway@3~checkpoint.json', 'part-durable@2', 'checkpoint-saved@2'];
const FINALIZE_POINTS = ['data-file-written@2', 'manifest-written', 'success-written', 'publishing-saved', 'before-promote', 'publish-renamed', 'after-promote', 'latest-written', 'staging-removed'];

for (const format of ['csv', 'parquet'] as const) {
  const points = format === 'csv' ? [...EXPORT_POINTS, ...FINALIZE_POINTS] : ['part-durable@2', 'data-file-written@2', 'publishing-saved', 'publish-renamed'];
  test(`${format}: a crash at each named point (${points.join(', ')}), then a rerun, publishes exactly once with _SUCCESS and _manifest.json`, async () => {
    await withFake({ users: 40, seed: 23, keysPerUser: { min: 0, max: 4 } }, async (fake) => {
      const reference = expectedRows(fake);
      for (const point of points) {
        await withTemp(async (out) => {
          const args = ['--endpoint-url', fake.url, '--out', out, '--format', format, '--concurrency', '2', '--page-size', '3'];
          const env = { IKE_COMMIT_ROWS: '10', IKE_COMMIT_MS: '0', IKE_ROWS_PER_FILE: '25' };
          const crashed = await runCli(args, testEnv({ ...env, IKE_FAULT_POINT: point }));
          assert.equal(crashed.signal, 'SIGKILL', `${point}: the run reached the point and died there (exit ${crashed.code}: ${crashed.stderr})`);
          const published = join(out, 'access_keys');
          // Whatever a reader sees at this moment is whole: a folder with _SUCCESS and its manifest, or nothing.
          for (const dir of await readdir(published).catch(() => [] as string[])) {
            if (!dir.startsWith('snapshot_id=')) continue;
            const files = await readdir(join(published, dir));
            assert.ok(files.includes('_SUCCESS') && files.includes('_manifest.json'), `${point}: ${dir} holds ${files.join(', ')}`);
          }
          // After the last step the publication is complete: a rerun would rightly start the next snapshot.
          if (point !== 'staging-removed') {
            const again = await runCli(args, testEnv(env));
            assert.equal(again.code, 0, `${point}: ${again.stderr}`);
          }
          assert.deepEqual((await publishedRows(out, format)).rows, reference, point);
          const dir = await onlySnapshotDir(out);
          const manifest = await verifyManifest(dir);
          assert.equal(manifest.duplicates_dropped, 0, point);
          assert.deepEqual(await stagingIds(out), [], `${point}: staging removed`);
          assert.equal((await readFile(join(published, '_LATEST'), 'utf8')).trim(), manifest.snapshot_id, `${point}: _LATEST names it`);
        });
      }
    });
  });
}

test('the last commit of an export saves the finalize phase with it: killed right after it, the rerun asks IAM nothing and publishes exactly', async () => {
  await withFake({ users: 30, seed: 31, keysPerUser: { min: 0, max: 4 } }, async (fake) => {
    const args = (out: string) => ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--concurrency', '2', '--page-size', '4'];
    const env = { IKE_COMMIT_ROWS: '10', IKE_COMMIT_MS: '0' };
    // An uninterrupted run: its last commit saves the finalize phase, and nothing saves between it and the data file.
    await withTemp(async (out) => {
      const log = join(out, '..', `${process.pid}-points.log`);
      const r = await runCli(args(out), testEnv({ ...env, IKE_FAULT_LOG: log }));
      assert.equal(r.code, 0, r.stderr);
      const points = (await readFile(log, 'utf8')).split('\n').map((l) => l.split('\t'));
      const saves = points.filter(([p]) => p === 'checkpoint-saved');
      assert.ok(saves.length >= 3, `${saves.length} commits`);
      // Only the last commit's save carries the finalize phase.
      assert.deepEqual(saves.map(([, phase]) => phase), [...saves.slice(1).map(() => 'export'), 'finalize']);
      const names = points.map(([p]) => p);
      // Nothing saves the checkpoint between the last commit and the data file (one save fewer than before).
      assert.equal(names.indexOf('data-file-written'), names.lastIndexOf('checkpoint-saved') + 1, names.join(' '));
    });
    // Killed right after that save: how many commits came before it varies with the order users finish in.
    await withTemp(async (out) => {
      const crashed = await runCli(args(out), testEnv({ ...env, IKE_FAULT_POINT: 'checkpoint-saved~finalize' }));
      assert.equal(crashed.signal, 'SIGKILL', crashed.stderr);
      const [id] = await stagingIds(out);
      const saved = JSON.parse(await readFile(join(out, '_staging', id!, 'checkpoint.json'), 'utf8')) as { phase: string };
      assert.equal(saved.phase, 'finalize');
      fake.resetStats();
      const again = await runCli(args(out), testEnv(env));
      assert.equal(again.code, 0, again.stderr);
      assert.equal(fake.stats().calls.ListUsers, 0);
      assert.equal(fake.stats().calls.ListAccessKeys, 0);
      assert.deepEqual((await publishedRows(out, 'csv')).rows, expectedRows(fake));
      const manifest = await verifyManifest(await onlySnapshotDir(out));
      assert.equal(manifest.resumes, 1);
      assert.deepEqual(await stagingIds(out), []);
    });
  });
});

test('SIGTERM stops within 10 s with exit 75 and the rerun finishes the exact snapshot', async () => {
  await withFake({ users: 120, seed: 4, keysPerUser: { min: 0, max: 4 }, latencyMs: 30 }, async (fake) => {
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'parquet', '--concurrency', '2', '--page-size', '1'];
      // Progress lines every 50 ms: the signal comes once the run has read keys (their STATE
      // with them), so the stop commits something and the rerun resumes this snapshot.
      const cli = startCli(args, testEnv({ IKE_PROGRESS_MS: '50' }));
      await untilOutput(cli, () => /"event":"progress"[^\n]*"keys":[1-9]/.test(cli.stdout()), 'keys read');
      const signalled = Date.now();
      cli.kill('SIGTERM');
      const r = await cli.done;
      assert.equal(r.code, 75, r.stderr);
      assert.ok(Date.now() - signalled < 10_000);
      assert.match(r.stderr, /SIGTERM/);
      assert.match(r.stderr, /resumable/);
      const again = await runCli(args);
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual((await publishedRows(out, 'parquet')).rows, expectedRows(fake));
      const manifest = await verifyManifest(await onlySnapshotDir(out));
      assert.equal(manifest.resumes, 1);
    });
  });
});

test('--max-items 7 repeated until exit 0 publishes the same rows as one uninterrupted run', async () => {
  await withFake({ users: 30, seed: 9, keysPerUser: { min: 0, max: 5 } }, async (fake) => {
    const reference = await referenceRows(fake, 'csv');
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--max-items', '7', '--page-size', '3', '--concurrency', '3'];
      let runs = 0;
      for (;;) {
        const r = await runCli(args);
        runs++;
        if (r.code === 0) break;
        assert.equal(r.code, 75, r.stderr);
        assert.match(r.stderr, /max-items/);
        assert.ok(runs < 100);
      }
      assert.ok(runs >= Math.ceil(reference.length / 7), `${runs} runs for ${reference.length} keys`);
      assert.deepEqual((await publishedRows(out, 'csv')).rows, reference);
    });
  });
});

test('--status Inactive with --max-items 4, repeated until exit 0, publishes exactly the rows of one filtered run', async () => {
  await withFake({ users: 20, seed: 19, keysPerUser: { min: 0, max: 4 } }, async (fake) => {
    const reference = expectedRows(fake, { statuses: ['Inactive'] });
    assert.ok(reference.length >= 5 && reference.length < expectedRows(fake).length);
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--status', 'Inactive', '--max-items', '4', '--page-size', '2'];
      let runs = 0;
      for (let code = -1; code !== 0; runs++) {
        const r = await runCli(args);
        code = r.code ?? -1;
        assert.ok(code === 0 || code === 75, r.stderr);
        assert.ok(runs < 100);
      }
      assert.ok(runs > 2, 'the run was resumed several times');
      assert.deepEqual((await publishedRows(out, 'csv')).rows, reference);
    });
  });
});

test('--time-budget 2s stops cleanly with exit 75 and one line; the rerun continues', async () => {
  await withFake({ users: 200, seed: 8, keysPerUser: { min: 1, max: 2 }, latencyMs: 40 }, async (fake) => {
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv'];
      const r = await runCli([...args, '--concurrency', '1', '--page-size', '1', '--time-budget', '2s']);
      assert.equal(r.code, 75, r.stderr);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /time-budget/);
      // Concurrency and page size may change between a run and its resume.
      const again = await runCli([...args, '--concurrency', '16', '--page-size', '100']);
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual((await publishedRows(out, 'csv')).rows, expectedRows(fake));
    });
  });
});

test('a different configuration meeting an unfinished snapshot exits 2 naming --fresh; --fresh starts over', async () => {
  await withFake({ users: 20, seed: 2, keysPerUser: { min: 1, max: 3 } }, async (fake) => {
    await withTemp(async (out) => {
      const base = ['--endpoint-url', fake.url, '--out', out];
      assert.equal((await runCli([...base, '--format', 'csv', '--max-items', '3'])).code, 75);
      const [id] = await stagingIds(out);
      const r = await runCli([...base, '--format', 'parquet']);
      assert.equal(r.code, 2);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /--fresh/);
      assert.match(lines[0]!, /--format csv, now parquet/);
      assert.deepEqual(await stagingIds(out), [id], 'the unfinished snapshot is untouched');
      const fresh = await runCli([...base, '--format', 'parquet', '--fresh']);
      assert.equal(fresh.code, 0, fresh.stderr);
      assert.deepEqual((await publishedRows(out, 'parquet')).rows, expectedRows(fake));
      assert.deepEqual(await stagingIds(out), []);
    });
  });
});

test('a corrupt checkpoint exits 1 with its path and --fresh, and touches nothing published', async () => {
  await withFake({ users: 20, seed: 2, keysPerUser: { min: 1, max: 3 } }, async (fake) => {
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv'];
      assert.equal((await runCli(args)).code, 0);
      const published = await onlySnapshotDir(out);
      const before = await readFile(join(published, 'part-00000.csv'));
      assert.equal((await runCli([...args, '--max-items', '2'])).code, 75);
      const [id] = await stagingIds(out);
      const file = join(out, '_staging', id!, 'checkpoint.json');
      await writeFile(file, '{"version":1,"snapsh');
      const r = await runCli(args);
      assert.equal(r.code, 1);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.ok(lines[0]!.includes(file) && lines[0]!.includes('--fresh'), lines[0]);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
      assert.deepEqual(await readFile(join(published, 'part-00000.csv')), before);
      assert.equal(await readFile(file, 'utf8'), '{"version":1,"snapsh', 'never a silent restart');
    });
  });
});

test('checkpoint and staged parts are private: files 0600, directories 0700', async () => {
  await withFake({ users: 20, seed: 2, keysPerUser: { min: 1, max: 3 } }, async (fake) => {
    await withTemp(async (out) => {
      assert.equal((await runCli(['--endpoint-url', fake.url, '--out', out, '--max-items', '5'], testEnv({ IKE_COMMIT_ROWS: '2' }))).code, 75);
      const [id] = await stagingIds(out);
      const staging = join(out, '_staging', id!);
      for (const dir of [join(out, '_staging'), staging, join(staging, 'runs')]) assert.equal((await stat(dir)).mode & 0o777, 0o700, dir);
      const files = [join(staging, 'checkpoint.json'), ...(await readdir(join(staging, 'runs'))).map((f) => join(staging, 'runs', f))];
      assert.ok(files.length >= 2);
      for (const f of files) assert.equal((await stat(f)).mode & 0o777, 0o600, f);
      const checkpoint = await readFile(join(staging, 'checkpoint.json'), 'utf8');
      assert.doesNotMatch(checkpoint, /test-secret-not-real|AKIDTESTTESTTESTTEST/, 'no credentials in the checkpoint');
    });
  });
});

test('a fresh nested --out under umask 022: --out, access_keys/ and the snapshot folder 0755, its files 0644; staging private', async () => {
  await withFake({ users: 15, seed: 2, keysPerUser: { min: 1, max: 2 } }, async (fake) => {
    await withTemp(async (tmp) => {
      const previous = process.umask(0o022); // inherited by the CLI child
      try {
        const out = join(tmp, 'a', 'b', 'export');
        const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv'];
        assert.equal((await runCli([...args, '--max-items', '3'])).code, 75);
        const [id] = await stagingIds(out);
        assert.equal((await stat(join(out, '_staging'))).mode & 0o777, 0o700);
        assert.equal((await stat(join(out, '_staging', id!))).mode & 0o777, 0o700);
        assert.equal((await runCli(args)).code, 0);
        for (const dir of [join(tmp, 'a'), join(tmp, 'a', 'b'), out, join(out, 'access_keys')]) assert.equal((await stat(dir)).mode & 0o777, 0o755, dir);
        const snapshot = await onlySnapshotDir(out);
        assert.equal((await stat(snapshot)).mode & 0o777, 0o755, snapshot);
        for (const f of await readdir(snapshot)) assert.equal((await stat(join(snapshot, f))).mode & 0o777, 0o644, f);
        assert.equal((await stat(join(out, 'access_keys', '_LATEST'))).mode & 0o777, 0o644);
      } finally {
        process.umask(previous);
      }
    });
  });
});
