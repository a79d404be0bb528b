import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

/**
 * Exact publish steps on S3, killed there in turn on the same snapshot (each kill's
 * rerun meets the next point): midway through finalize's uploads, midway through
 * copying access_keys/ (accounts/ is whole by then), right after its _SUCCESS, and
 * after _LATEST (staging not yet removed).
 */
const POINTS = ['data-file-written@2', 's3-copied@2~access_keys/', 's3-copied~_SUCCESS', 'latest-written'];

test(`parquet to s3://: SIGKILLs at 3 random moments of the export, then at each publish step (${POINTS.join(', ')}), every rerun on a fresh machine: every key exactly once, each published object written once, _SUCCESS last`, { skip }, async () => {
  // ~2 s of IAM calls and ~30 commits, 3 random kills of at most 250 ms each: a kill never
  // meets a finished export (the calls are bound by the fake's latency, however fast the machine).
  await withFake({ users: 120, seed: 31, keysPerUser: { min: 0, max: 4 }, latencyMs: 15, jitterMs: 6 }, async (fake) => {
    const prefix = 'crash/random';
    const out = `s3://${bucket}/${prefix}`;
    const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'parquet', '--concurrency', '2', '--page-size', '2'];
    const env = { AWS_ENDPOINT_URL_S3: s3.front.url, IKE_COMMIT_ROWS: '10', IKE_COMMIT_MS: '100', IKE_ROWS_PER_FILE: '40' };
    const mark = s3.front.requests.length;
    const loop = await killLoop({
      args,
      out,
      probe: bucketProbe(prefix),
      place: freshMachine,
      kills: 3,
      finalizeKills: 0,
      seed: 303,
      signal: 'SIGKILL',
      minMs: 50,
      maxMs: 250,
      env,
      // A reader gating on _SUCCESS sees a whole snapshot or none, after every kill.
      afterKill: async (n) => void (await assertGatedFolders(s3.client, bucket, prefix, `after kill ${n}`)),
      beforeLast: async () => {
        for (const point of POINTS) {
          const machine = await freshMachine();
          const r = await runCli(args, s3.env({ ...env, ...machine.env, IKE_FAULT_POINT: point }), machine.cwd);
          assert.equal(r.signal, 'SIGKILL', `${point}: the run reached the point and died there (exit ${r.code}: ${r.stderr})`);
          await assertGatedFolders(s3.client, bucket, prefix, point);
        }
      },
    });
    assert.equal(loop.killed, 3);
    const { rows, manifest } = await readS3Snapshot(s3.client, bucket, prefix, 'parquet');
    assert.deepEqual(rows, expectedRows(fake), 'row for row equal to the ground truth, in order');
    assert.ok(manifest.files.length >= 3, `${manifest.files.length} data files`);
    assert.equal(manifest.duplicates_dropped, 0, 'IAM did not change: resume never re-reads a committed page');
    // The manifest is written by the run killed at the second point: the random runs and the first point's before it.
    assert.equal(manifest.resumes, loop.results.length - 1 + 1, 'every rerun resumed the snapshot from the bucket');
    // Across all runs: each object copied into the snapshot folder once, in order, the gate last.
    assert.deepEqual(publishedWrites(s3.front.requests.slice(mark), bucket, prefix), [...manifest.files.map((f) => f.file), '_manifest.json', '_SUCCESS']);
  });
});
