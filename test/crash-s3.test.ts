import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { runCli } from './support/cli.ts';
import { killLoop, type RunPlace, type StoreProbe } from './support/crash.ts';
import { expectedRows } from './support/expect.ts';
import { getObject, listKeys, s3Skip, startS3, type S3Harness } from './support/s3.ts';
import { assertGatedFolders, publishedWrites, readS3Snapshot } from './support/s3-snapshot.ts';
import { withFake } from './support/scope.ts';

const skip = s3Skip;
let s3: S3Harness;
let bucket: string;
const machines: string[] = [];

before(async () => {
  if (skip) return;
  s3 = await startS3();
  bucket = await s3.bucket();
});
after(async () => {
  await s3?.close();
  await Promise.all(machines.map((d) => rm(d, { recursive: true, force: true })));
});

/** A new machine for each run: empty working directory, HOME and TMPDIR. Everything a resume needs must come from the bucket. */
async function freshMachine(): Promise<RunPlace> {
  const [cwd, home, tmp] = await Promise.all(['cwd', 'home', 'tmp'].map((d) => mkdtemp(join(tmpdir(), `ike-machine-${d}-`))));
  machines.push(cwd!, home!, tmp!);
  return { cwd: cwd!, env: { HOME: home!, TMPDIR: tmp! } };
}

/** killLoop's view of a dataset root in the bucket. */
function bucketProbe(prefix: string): StoreProbe {
  const publishFolders = async () => new Set((await listKeys(s3.client, bucket, `${prefix}/_staging/`)).flatMap((k) => /\/(publish-[0-9a-f]{8})\//.exec(k)?.[1] ?? []));
  let before = new Set<string>();
  // Once adopted, the snapshot stays so until it is published: stop polling the bucket for it.
  let adopted = false;
  return {
    async adopted() {
      for (const key of adopted ? [] : (await listKeys(s3.client, bucket, `${prefix}/_staging/`)).filter((k) => k.endsWith('/checkpoint.json'))) {
        const body = await getObject(s3.client, bucket, key);
        adopted ||= body !== undefined && (JSON.parse(body.toString('utf8')) as { commits?: number }).commits! > 0;
      }
      return adopted;
    },
    async runStarted() {
      before = await publishFolders();
    },
    async publishing() {
      return [...(await publishFolders())].some((f) => !before.has(f));
    },
  };
}

test('parquet to s3://: killed with SIGKILL at 10 random moments, each rerun on a fresh machine, publishes every key exactly once with _SUCCESS last', { skip }, async () => {
  // ~4 s of IAM calls and ~50 commits: each run does a small share before its kill.
  await withFake({ users: 160, seed: 31, keysPerUser: { min: 0, max: 4 }, latencyMs: 12, jitterMs: 6 }, async (fake) => {
    const prefix = 'crash/random';
    const mark = s3.front.requests.length;
    const loop = await killLoop({
      args: ['--endpoint-url', fake.url, '--out', `s3://${bucket}/${prefix}`, '--format', 'parquet', '--concurrency', '2', '--page-size', '2'],
      out: `s3://${bucket}/${prefix}`,
      probe: bucketProbe(prefix),
      place: freshMachine,
      kills: 10,
      // Kills inside publish are the deterministic ones below, at each step.
      finalizeKills: 0,
      seed: 303,
      signal: 'SIGKILL',
      minMs: 50,
      maxMs: 300,
      env: { AWS_ENDPOINT_URL_S3: s3.front.url, IKE_COMMIT_ROWS: '10', IKE_COMMIT_MS: '100', IKE_ROWS_PER_FILE: '150' },
      // A reader gating on _SUCCESS sees a whole snapshot or none, after every kill.
      afterKill: async (n) => void (await assertGatedFolders(s3.client, bucket, prefix, `after kill ${n}`)),
    });
    assert.equal(loop.killed, 10);
    const { rows, manifest } = await readS3Snapshot(s3.client, bucket, prefix, 'parquet');
    assert.deepEqual(rows, expectedRows(fake), 'row for row equal to the ground truth, in order');
    assert.equal(manifest.duplicates_dropped, 0, 'IAM did not change: resume never re-reads a committed page');
    assert.equal(manifest.resumes, loop.results.length - 1, 'every rerun resumed the snapshot from the bucket');
    const writes = publishedWrites(s3.front.requests.slice(mark), bucket, prefix);
    assert.equal(writes.at(-1), '_SUCCESS', 'the gate is the last object written');
    assert.equal(writes.filter((w) => w === '_SUCCESS').length, 1, 'and written once');
  });
});

/** Publish steps on S3, each killed exactly there, then rerun. */
const POINTS = ['s3-copied@1', 's3-copied~_SUCCESS', 'latest-written'];

test(`csv to s3://: a crash at each publish step (${POINTS.join(', ')}), then a rerun on a fresh machine, publishes exactly once; every object is copied once, _SUCCESS last`, { skip }, async () => {
  await withFake({ users: 40, seed: 23, keysPerUser: { min: 0, max: 4 } }, async (fake) => {
    const reference = expectedRows(fake);
    const limit = pLimit(2);
    await Promise.all(
      POINTS.map((point, i) =>
        limit(async () => {
          const prefix = `crash/point-${i}`;
          const args = ['--endpoint-url', fake.url, '--out', `s3://${bucket}/${prefix}`, '--format', 'csv', '--concurrency', '2', '--page-size', '3'];
          const env = { IKE_COMMIT_ROWS: '10', IKE_COMMIT_MS: '0', IKE_ROWS_PER_FILE: '25' };
          const mark = s3.front.requests.length;
          const first = await freshMachine();
          const crashed = await runCli(args, s3.env({ ...env, ...first.env, IKE_FAULT_POINT: point }), first.cwd);
          assert.equal(crashed.signal, 'SIGKILL', `${point}: the run reached the point and died there (exit ${crashed.code}: ${crashed.stderr})`);
          await assertGatedFolders(s3.client, bucket, prefix, point);
          const second = await freshMachine();
          const again = await runCli(args, s3.env({ ...env, ...second.env }), second.cwd);
          assert.equal(again.code, 0, `${point}: ${again.stderr}`);
          const { rows, manifest } = await readS3Snapshot(s3.client, bucket, prefix, 'csv');
          assert.deepEqual(rows, reference, point);
          const files = [...manifest.files.map((f) => f.file), '_manifest.json', '_SUCCESS'];
          assert.ok(manifest.files.length >= 2, `${point}: ${manifest.files.length} data files`);
          // Across the crashed run and its rerun: each object written once, in order, the gate last.
          assert.deepEqual(publishedWrites(s3.front.requests.slice(mark), bucket, prefix), files, point);
        }),
      ),
    );
  });
});
