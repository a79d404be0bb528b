import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IAMClient } from '@aws-sdk/client-iam';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { CheckpointFile, Checkpoint } from '../pipeline/checkpoint.ts';
import { parseCommand, type Config } from '../pipeline/config.ts';
import { ExportError } from '../pipeline/errors.ts';
import { currentIdentity, Lease, LEASE_TTL_MS, type Identity } from '../pipeline/lease.ts';
import { selfStamp } from '../pipeline/liveness.ts';
import { runExport, type RunHooks, type RunOutcome } from '../pipeline/run.ts';
import { S3Store } from '../pipeline/store/s3.ts';
import { mulberry32 } from './fake-iam/random.ts';
import { runCli, startCli } from './support/cli.ts';
import { expectedRows, expectedRowsOf } from './support/expect.ts';
import { getObject, listKeys, s3Skip, startS3, testS3Client, type FrontFault, type S3Harness } from './support/s3.ts';
import { publishedWrites, readS3Snapshot } from './support/s3-snapshot.ts';
import { withFake } from './support/scope.ts';

const skip = s3Skip;
let s3: S3Harness;
let bucket: string;
let roots = 0;

before(async () => {
  if (skip) return;
  s3 = await startS3();
  bucket = await s3.bucket();
});
after(async () => {
  await s3?.close();
});

/** A fresh dataset root in the test bucket. */
function root(): { prefix: string; out: string } {
  const prefix = `exports/r${++roots}`;
  return { prefix, out: `s3://${bucket}/${prefix}` };
}

/** Empty working directory, HOME and TMPDIR: a machine whose disk did not survive. */
async function freshMachine(): Promise<{ cwd: string; env: Record<string, string>; dirs: string[]; remove(): Promise<void> }> {
  const dirs = await Promise.all(['cwd', 'home', 'tmp'].map((d) => mkdtemp(join(tmpdir(), `ike-machine-${d}-`))));
  return { cwd: dirs[0]!, env: { HOME: dirs[1]!, TMPDIR: dirs[2]! }, dirs, remove: async () => void (await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))) };
}

const isLocked = (err: unknown) => err instanceof ExportError && err.code === 'OUTPUT_LOCKED';
const isLost = (err: unknown) => err instanceof ExportError && err.code === 'LEASE_LOST';

/**
 * Runs the export of `args` in this process, on `prefix` of the test bucket (the
 * CLI's own runs are kept for what only a process shows: its exit code and its one
 * line, its disk, its death).
 */
async function inProcess(fakeUrl: string, prefix: string, args: readonly string[], hooks: Partial<RunHooks> = {}, store?: S3Store): Promise<RunOutcome> {
  const config = (parseCommand(['--endpoint-url', fakeUrl, '--out', `s3://${bucket}/${prefix}`, ...args], {}) as { kind: 'run'; config: Config }).config;
  const client = new IAMClient({ region: 'us-east-1', endpoint: fakeUrl, credentials: { accessKeyId: 'AKIDTESTTESTTESTTEST', secretAccessKey: 'x' } });
  const own = store ?? new S3Store({ client: testS3Client(s3.front.url), bucket, prefix, ownsClient: true });
  try {
    return await runExport(config, { toolVersion: 'test', client, store: own, ...hooks });
  } finally {
    client.destroy();
    if (!store) own.close();
  }
}

// Parquet on S3 is read back by crash-s3.test.ts (DuckDB over the downloaded snapshot).
for (const format of ['csv'] as const) {
  test(`a ${format} export to s3:// with --sse aws:kms holds every key exactly once, the manifest's sha256 match the objects, _SUCCESS is written last, and nothing touches local disk`, { skip }, async () => {
    await withFake({ users: 60, seed: 7, keysPerUser: { min: 0, max: 4 } }, async (fake) => {
      const { prefix, out } = root();
      const machine = await freshMachine();
      try {
        const mark = s3.front.requests.length;
        const args = ['--endpoint-url', fake.url, '--out', out, '--format', format, '--page-size', '3', '--sse', 'aws:kms', '--sse-kms-key-id', 'alias/iam-inventory'];
        // Several data files, so the publication has an order to check.
        const r = await runCli(args, s3.env({ ...machine.env, IKE_ROWS_PER_FILE: '40' }), machine.cwd);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, new RegExp(`published snapshot \\d{8}T\\d{6}Z to s3://${bucket}/${prefix}/access_keys/snapshot_id=`));
        const { rows, manifest, keys } = await readS3Snapshot(s3.client, bucket, prefix, format);
        assert.deepEqual(rows, expectedRows(fake), 'row for row equal to the ground truth, in order');
        assert.ok(manifest.files.length >= 3, `${manifest.files.length} data files`);
        const folder = (dataset: string, files: string[]) => [`${dataset}/_LATEST`, ...[...files, '_manifest.json', '_SUCCESS'].map((f) => `${dataset}/snapshot_id=${manifest.snapshot_id}/${f}`)];
        assert.deepEqual(keys.sort(), [...folder('access_keys', manifest.files.map((f) => f.file)), ...folder('accounts', [`part-00000.${format}`])].sort());
        // The order a reader gating on _SUCCESS relies on: data files, manifest, then _SUCCESS.
        assert.deepEqual(publishedWrites(s3.front.requests.slice(mark), bucket, prefix), [...manifest.files.map((f) => f.file), '_manifest.json', '_SUCCESS']);
        const writes = s3.front.requests.slice(mark).filter((q) => q.key.startsWith(`${prefix}/`) && ['PutObject', 'CopyObject', 'CreateMultipartUpload'].includes(q.op));
        assert.ok(writes.length > 10);
        for (const w of writes) {
          assert.equal(w.headers['x-amz-server-side-encryption'], 'aws:kms', `${w.op} ${w.key}`);
          assert.equal(w.headers['x-amz-server-side-encryption-aws-kms-key-id'], 'alias/iam-inventory', `${w.op} ${w.key}`);
        }
        // tsx, the launcher, caches its compiled sources in TMPDIR: scratch, not the export's.
        for (const d of machine.dirs) assert.deepEqual((await readdir(d)).filter((f) => !f.startsWith('tsx-')), [], `${d}: local disk stays untouched`);
      } finally {
        await machine.remove();
      }
    });
  });
}

test('a run meeting an S3 snapshot whose lease another machine holds exits 75 with one line naming the holder, the lease object and when it expires', { skip }, async () => {
  await withFake({ users: 20, seed: 3, keysPerUser: { min: 1, max: 2 } }, async (fake) => {
    const { prefix, out } = root();
    const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv'];
    assert.equal((await inProcess(fake.url, prefix, ['--format', 'csv', '--max-items', '3'])).status, 'stopped');
    const [leaseKey] = (await listKeys(s3.client, bucket, `${prefix}/_staging/`)).filter((k) => k.endsWith('/checkpoint.json')).map((k) => k.replace('checkpoint.json', 'lease.json'));
    const store = new S3Store({ client: s3.client, bucket, prefix });
    const other: Identity = { ...currentIdentity(), stamp: { ...selfStamp(), host: 'batch-node-7', pid: 4242 } };
    const held = await Lease.acquire(store, leaseKey!.slice(prefix.length + 1), { identity: other });
    try {
      const r = await runCli(args, s3.env());
      assert.equal(r.code, 75, r.stderr);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(
        lines[0]!,
        new RegExp(`another run \\(pid 4242 on batch-node-7, running for \\d+ s\\) holds s3://${bucket}/${leaseKey}; this is temporary: rerun later \\(its lease expires in (2\\d|30) s, at \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z, unless it renews it: it does every 5 s while it runs\\)`),
      );
    } finally {
      await held.release();
    }
    assert.equal((await inProcess(fake.url, prefix, ['--format', 'csv'])).status, 'published');
    assert.deepEqual((await readS3Snapshot(s3.client, bucket, prefix, 'csv')).rows, expectedRows(fake));
  });
});

test('after a SIGKILL, a run on another machine is refused until the killed run’s lease expires, then resumes the snapshot exactly', { skip }, async () => {
  await withFake({ users: 30, seed: 5, keysPerUser: { min: 1, max: 3 }, latencyMs: 15 }, async (fake) => {
    const { prefix, out } = root();
    const cli = startCli(['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--concurrency', '1', '--page-size', '1'], s3.env({ IKE_COMMIT_ROWS: '3', IKE_COMMIT_MS: '50' }));
    // Killed once its checkpoint counts a commit (a snapshot without one is not resumed, by design).
    for (;;) {
      const key = (await listKeys(s3.client, bucket, `${prefix}/_staging/`)).find((k) => k.endsWith('/checkpoint.json'));
      const body = key === undefined ? undefined : await getObject(s3.client, bucket, key);
      if (body && (JSON.parse(body.toString('utf8')) as { commits?: number }).commits! > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    cli.kill('SIGKILL');
    assert.equal((await cli.done).signal, 'SIGKILL');
    // The rerun is on another machine: it cannot see that the killed process is gone, only the lease's expiry.
    const elsewhere = (clockAheadMs: number) => ({ identity: { ...currentIdentity(), stamp: { ...selfStamp(), host: 'rescheduled-pod' } }, now: () => Date.now() + clockAheadMs });
    const config = (parseCommand(['--endpoint-url', fake.url, '--out', out, '--format', 'csv']) as { kind: 'run'; config: import('../pipeline/config.ts').Config }).config;
    const client = new IAMClient({ region: 'us-east-1', endpoint: fake.url, credentials: { accessKeyId: 'AKIDTESTTESTTESTTEST', secretAccessKey: 'x' } });
    const store = new S3Store({ client: testS3Client(s3.front.url), bucket, prefix, ownsClient: true });
    try {
      await assert.rejects(runExport(config, { toolVersion: 'test', client, store, lease: elsewhere(0) }), isLocked);
      const outcome = await runExport(config, { toolVersion: 'test', client, store, lease: elsewhere(LEASE_TTL_MS + 1000) });
      assert.equal(outcome.status, 'published');
    } finally {
      client.destroy();
      store.close();
    }
    const { rows, manifest } = await readS3Snapshot(s3.client, bucket, prefix, 'csv');
    assert.deepEqual(rows, expectedRows(fake));
    assert.equal(manifest.resumes, 1);
  });
});

test('contenders racing for an expired lease in S3: exactly one wins in every round, the others get OUTPUT_LOCKED', { skip }, async () => {
  const random = mulberry32(7);
  const { prefix } = root();
  for (let round = 0; round < 4; round++) {
    const key = `_staging/20261128T1110${String(round).padStart(2, '0')}Z/lease.json`;
    const seed = new S3Store({ client: s3.client, bucket, prefix });
    const gone = { run_id: 'deadbeef', ...selfStamp(), host: 'gone-pod', acquired_at: new Date(Date.now() - 60_000).toISOString(), renewed_at: new Date(Date.now() - 40_000).toISOString(), expires_at: new Date(Date.now() - 10_000).toISOString() };
    if (round % 2 === 1) await seed.write(key, JSON.stringify(gone));
    const stores = Array.from({ length: 2 + Math.floor(random() * 4) }, () => new S3Store({ client: testS3Client(s3.front.url), bucket, prefix, ownsClient: true }));
    const results = await Promise.allSettled(stores.map((store) => Lease.acquire(store, key, { identity: currentIdentity() })));
    const won = results.filter((r): r is PromiseFulfilledResult<Lease> => r.status === 'fulfilled');
    assert.equal(won.length, 1, `round ${round}: ${won.length} winners of ${stores.length}`);
    for (const r of results) if (r.status === 'rejected') assert.ok(isLocked(r.reason), `round ${round}: ${String(r.reason)}`);
    await won[0]!.value.release();
    assert.equal(await seed.exists(key), false, 'released');
    for (const s of stores) s.close();
  }
});

test('a holder whose S3 lease was taken over learns it at its next renewal and commits nothing more', { skip }, async () => {
  const { prefix } = root();
  const store = new S3Store({ client: s3.client, bucket, prefix });
  let now = Date.now();
  const clock = () => now;
  const id = '20261128T111000Z';
  const paused = await Lease.acquire(store, `_staging/${id}/lease.json`, { now: clock, renewMs: 3_600_000 });
  const cp = new Checkpoint(id, new Date(), { format: 'csv', pathPrefix: '/', statuses: [], endpoint: null, schemaVersion: 1, lastUsed: 'off', accounts: 'self', shard: null });
  const file = await CheckpointFile.create(store, `_staging/${id}/checkpoint.json`, cp);
  now += LEASE_TTL_MS + 1000;
  const otherStore = new S3Store({ client: testS3Client(s3.front.url), bucket, prefix, ownsClient: true });
  const other = await Lease.acquire(otherStore, `_staging/${id}/lease.json`, { now: clock, identity: { ...currentIdentity(), stamp: { ...selfStamp(), host: 'other-host' } } });
  const theirs = (await CheckpointFile.load(otherStore, `_staging/${id}/checkpoint.json`))!;
  theirs.checkpoint.beginResume();
  await theirs.file.save(theirs.checkpoint);
  const before = (await otherStore.read(`_staging/${id}/checkpoint.json`))!;
  assert.throws(() => paused.assertHeld(), isLost, 'its TTL ran out: it must not commit');
  await paused.renew();
  assert.equal(paused.signal.aborted, true, 'the renewal found the lease taken');
  await assert.rejects(file.save(cp), isLost, 'and its checkpoint save is fenced by If-Match');
  assert.deepEqual((await otherStore.read(`_staging/${id}/checkpoint.json`))!.body, before.body, 'the checkpoint is the taker’s');
  await paused.release();
  assert.equal(await otherStore.exists(`_staging/${id}/lease.json`), true, 'releasing a lost lease leaves the taker’s alone');
  assert.doesNotThrow(() => other.assertHeld());
  await other.release();
  otherStore.close();
});

test('bad S3 output: an s3:// URL without a bucket exits 2, a missing bucket exits 1, each with one line (flag problems: config.test.ts)', { skip }, async () => {
  await withFake({ users: 5, seed: 1, keysPerUser: { min: 1, max: 1 } }, async (fake) => {
    const cases: { args: string[]; code: number; line: RegExp }[] = [
      { args: ['--out', 's3://'], code: 2, line: /^iam-key-export: --out s3:\/\/ names no bucket \(use s3:\/\/bucket\/prefix\)$/ },
      { args: ['--out', 's3://no-such-bucket-ike/exports'], code: 1, line: /^iam-key-export: ListObjectsV2 s3:\/\/no-such-bucket-ike\/exports\/_staging\/: bucket no-such-bucket-ike does not exist \(NoSuchBucket\); create it, or fix --out$/ },
    ];
    for (const c of cases) {
      const r = await runCli(['--endpoint-url', fake.url, '--format', 'csv', ...c.args], s3.env());
      assert.equal(r.code, c.code, `${c.args.join(' ')}: ${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, c.line);
    }
  });
});

test('S3 refusing a permission or the KMS key exits 1 with one line naming the permission, and leaves the published snapshot untouched', { skip }, async () => {
  // The refusals are S3's own answers, injected by the front: moto 5.2.1 can enforce
  // policies (INITIAL_NO_AUTH_ACTION_COUNT), but in server mode it rejects valid
  // signatures of requests whose query holds '/' or whose key holds '=' (every
  // listing and snapshot key here) with SignatureDoesNotMatch, before any policy.
  await withFake({ users: 8, seed: 2, keysPerUser: { min: 1, max: 2 } }, async (fake) => {
    const { prefix, out } = root();
    const flags = ['--format', 'csv', '--sse', 'aws:kms', '--sse-kms-key-id', 'alias/iam-inventory'];
    const args = ['--endpoint-url', fake.url, '--out', out, ...flags];
    const kms = () => new S3Store({ client: testS3Client(s3.front.url), bucket, prefix, ownsClient: true, sse: { mode: 'aws:kms', kmsKeyId: 'alias/iam-inventory' } });
    assert.equal((await inProcess(fake.url, prefix, flags, {}, kms())).status, 'published');
    const published = async () => {
      const r = await s3.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/access_keys/` }));
      return (r.Contents ?? []).map((o) => `${o.Key} ${o.ETag} ${o.Size}`).sort();
    };
    const before = await published();
    const cases: { fault: FrontFault & { kind: 'answer' }; line: RegExp }[] = [
      {
        fault: { op: 'ListObjectsV2', kind: 'answer', status: 403, code: 'AccessDenied' },
        line: new RegExp(`^iam-key-export: ListObjectsV2 s3://${bucket}/${prefix}/_staging/: access denied \\(AccessDenied\\); the identity needs s3:ListBucket on arn:aws:s3:::${bucket} for the prefix ${prefix}/_staging/$`),
      },
      {
        fault: { op: 'PutObject', kind: 'answer', status: 403, code: 'AccessDenied' },
        line: new RegExp(`^iam-key-export: PutObject s3://${bucket}/${prefix}/_staging/\\d{8}T\\d{6}Z/lease\\.json: access denied \\(AccessDenied\\); the identity needs s3:PutObject on arn:aws:s3:::${bucket}/${prefix}/_staging/\\d{8}T\\d{6}Z/lease\\.json and kms:GenerateDataKey and kms:Decrypt on key alias/iam-inventory$`),
      },
      {
        fault: { op: 'PutObject', kind: 'answer', status: 400, code: 'KMS.NotFoundException' },
        line: /lease\.json: the KMS key cannot be used \(KMS\.NotFoundException\); the identity needs kms:GenerateDataKey and kms:Decrypt on key alias\/iam-inventory, and the key must exist, be enabled and be in the bucket's region$/,
      },
    ];
    for (const [i, c] of cases.entries()) {
      s3.front.faults.push(c.fault);
      if (i === 1) {
        // One through the CLI: exit 1 and that one line.
        const r = await runCli(args, s3.env());
        assert.equal(r.code, 1, r.stderr);
        const lines = r.stderr.trim().split('\n');
        assert.equal(lines.length, 1, r.stderr);
        assert.match(lines[0]!, c.line);
      } else {
        const store = kms();
        try {
          await assert.rejects(inProcess(fake.url, prefix, flags, {}, store), (err: unknown) => {
            assert.ok(err instanceof ExportError && err.code === 'OUTPUT_DENIED', String(err));
            assert.match(`iam-key-export: ${err.message}`, c.line);
            return true;
          });
        } finally {
          store.close();
        }
      }
      assert.deepEqual(await published(), before, `${c.line.source}: nothing published changed`);
    }
    assert.deepEqual(s3.front.faults, []);
  });
});

test('an organization in two shards to s3://, run at once on two machines: each exports its accounts into the bucket, one claims the finalize (a conditional create), and the snapshot is published once, exact, with its accounts dataset', { skip }, async () => {
  await withFake({ users: 6, seed: 41, keysPerUser: { min: 0, max: 3 }, accounts: { count: 3, usersPerAccount: { min: 2, max: 4 } } }, async (fake) => {
    const { prefix, out } = root();
    const id = '20261128T111000Z';
    const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--organization', '--role-name', 'OrganizationAccountAccessRole', '--shards', '2', '--snapshot-id', id];
    const mark = s3.front.requests.length;
    const machines = await Promise.all([0, 1].map(() => freshMachine()));
    try {
      const results = await Promise.all(machines.map((m, i) => runCli([...args, '--shard-index', String(i)], s3.env(m.env), m.cwd)));
      for (const r of results) assert.equal(r.code, 0, r.stderr);
      const published = results.filter((r) => /published snapshot /.test(r.stderr));
      assert.equal(published.length, 1, results.map((r) => r.stderr).join('\n'));
      assert.match(published[0]!.stderr, new RegExp(`published snapshot ${id} to s3://${bucket}/${prefix}/access_keys/snapshot_id=${id}`));
      const accounts = fake.accounts().map((a) => a.id);
      const { rows, manifest, keys } = await readS3Snapshot(s3.client, bucket, prefix, 'csv');
      assert.deepEqual(rows, expectedRowsOf(fake, accounts), 'every account, every key, once');
      assert.deepEqual(manifest.accounts.map((a) => a.account_id).sort(), [...accounts].sort());
      assert.deepEqual(keys.filter((k) => k.startsWith('accounts/')).sort(), ['accounts/_LATEST', ...['_SUCCESS', '_manifest.json', 'part-00000.csv'].map((f) => `accounts/snapshot_id=${id}/${f}`)]);
      const wire = s3.front.requests.slice(mark);
      // Both shards' state lived in the bucket, each under its own folder, and the finalize was claimed once.
      for (const shard of ['shard-0-of-2', 'shard-1-of-2']) assert.ok(wire.some((q) => q.op === 'PutObject' && q.key === `${prefix}/_staging/${id}/${shard}/checkpoint.json`), shard);
      assert.ok(wire.some((q) => q.op === 'PutObject' && /\/reports\/\d{12}\.json$/.test(q.key)), 'credential reports saved in the bucket');
      const claims = wire.filter((q) => q.op === 'PutObject' && q.key === `${prefix}/_staging/${id}/finalize/lease.json` && q.headers['if-none-match'] === '*' && q.status === 200);
      assert.equal(claims.length, 1, 'one finalize claim');
      for (const m of machines) for (const d of m.dirs) assert.deepEqual((await readdir(d)).filter((f) => !f.startsWith('tsx-')), [], `${d}: local disk stays untouched`);
    } finally {
      await Promise.all(machines.map((m) => m.remove()));
    }
  });
});
