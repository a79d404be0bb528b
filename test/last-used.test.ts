import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GenerateCredentialReportCommand, IAMClient } from '@aws-sdk/client-iam';
import type { FakeIam } from './fake-iam/server.ts';
import { runCli, testEnv } from './support/cli.ts';
import { killLoop } from './support/crash.ts';
import { expectedRows, onlySnapshotDir, publishedRows, verifyManifest } from './support/expect.ts';
import { withFake, withTemp } from './support/scope.ts';

type Format = 'csv' | 'parquet';

/** Every published row's last-use columns equal the fake's truth (to the second: the report's precision). */
async function assertLastUse(fake: FakeIam, out: string, format: Format): Promise<void> {
  const truth = new Map(fake.truth().keys.map((k) => [k.accessKeyId, k]));
  const { all } = await publishedRows(out, format);
  for (const row of all) {
    const used = truth.get(String(row.access_key_id))!.lastUsed;
    const id = String(row.access_key_id);
    assert.equal(row.last_used_date, used ? new Date(Math.floor(used.date.getTime() / 1000) * 1000).toISOString() : null, id);
    assert.equal(row.last_used_service, used?.service ?? null, id);
    assert.equal(row.last_used_region, used?.region ?? null, id);
  }
}

/** Generates the fake's credential report now, as IAM keeps one for 4 hours. */
async function generateReport(fake: FakeIam): Promise<void> {
  const client = new IAMClient({ endpoint: fake.url, region: 'us-east-1', credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'x' } });
  try {
    for (let i = 0; i < 50 && (await client.send(new GenerateCredentialReportCommand({}))).State !== 'COMPLETE'; i++) await new Promise((r) => setTimeout(r, 20));
  } finally {
    client.destroy();
  }
}

for (const format of ['csv', 'parquet'] as const) {
  test(`${format}: --last-used report takes the report where it can attribute a key and asks the API for the others (two keys in one second, keys created after the report)`, async () => {
    await withFake({ users: 40, seed: 12, keysPerUser: { min: 0, max: 2 } }, async (fake) => {
      const empty = fake.truth().users.find((u) => !fake.truth().keys.some((k) => k.userName === u.userName))!;
      const twin = '2024-05-05T05:05:05.000Z';
      const a = fake.mutate({ kind: 'createKey', userName: empty.userName, createDate: twin });
      const b = fake.mutate({ kind: 'createKey', userName: empty.userName, createDate: twin });
      fake.mutate({ kind: 'useKey', accessKeyId: (a as { accessKeyId: string }).accessKeyId, service: 'ec2', region: 'ap-southeast-2', date: '2026-11-20T10:11:12.000Z' } as never);
      await generateReport(fake);
      const others = fake.truth().users.filter((u) => u.userName !== empty.userName).slice(0, 3);
      const late = others.map((u) => (fake.mutate({ kind: 'rotateKey', userName: u.userName }) as { accessKeyId: string }).accessKeyId);
      await withTemp(async (out) => {
        const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', format]);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual((await publishedRows(out, format)).rows, expectedRows(fake));
        await assertLastUse(fake, out, format);
        const lookups = fake.stats().lastUsedLookups;
        for (const id of [(a as { accessKeyId: string }).accessKeyId, (b as { accessKeyId: string }).accessKeyId, ...late]) assert.equal(lookups[id], 1, `${id} asked of the API`);
        const manifest = await verifyManifest(await onlySnapshotDir(out));
        assert.equal(manifest.last_used.source, 'report');
        assert.ok(manifest.last_used.report_generated_time);
        assert.equal(manifest.last_used.from_api, Object.keys(lookups).length);
        assert.equal(manifest.last_used.from_report + manifest.last_used.from_api, manifest.rows);
      });
    });
  });
}

test('--last-used api asks GetAccessKeyLastUsed once per key, and never-used keys stay null', async () => {
  await withFake({ users: 30, seed: 13, keysPerUser: { min: 0, max: 3 } }, async (fake) => {
    await withTemp(async (out) => {
      // As many lookups at once as allowed: each listens on the run's stop, and Node says nothing.
      const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', 'parquet', '--last-used', 'api', '--concurrency', '64']);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /\(node:\d+\)/);
      await assertLastUse(fake, out, 'parquet');
      const lookups = fake.stats().lastUsedLookups;
      assert.deepEqual(Object.values(lookups).filter((n) => n !== 1), []);
      assert.equal(Object.keys(lookups).length, fake.readableKeys().length);
      assert.equal(fake.stats().calls.GenerateCredentialReport, 0);
      const manifest = await verifyManifest(await onlySnapshotDir(out));
      assert.equal(manifest.last_used.from_api, manifest.rows);
      assert.ok(manifest.last_used.null > 0 && manifest.last_used.dated > 0);
    });
  });
});

test('a denied credential report falls back to the API with one warning line', async () => {
  await withFake({ users: 12, seed: 14, keysPerUser: { min: 1, max: 2 }, reportDenied: true }, async (fake) => {
    await withTemp(async (out) => {
      const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--format', 'csv']);
      assert.equal(r.code, 0, r.stderr);
      const warnings = r.stderr.split('\n').filter((l) => l.includes('warning'));
      assert.equal(warnings.length, 1, r.stderr);
      assert.match(warnings[0]!, /credential report was denied \(AccessDenied\): last use comes from GetAccessKeyLastUsed/);
      await assertLastUse(fake, out, 'csv');
      assert.equal((await verifyManifest(await onlySnapshotDir(out))).last_used.source, 'api');
    });
  });
});

// 30 users: judged on the way (at 20 keys); 8 users (at most 16 keys): judged when the export ends.
for (const users of [30, 8]) {
  test(`GetAccessKeyLastUsed denied for every key (${users} users): exit 1, one line naming the permission and --last-used off, nothing published, a rerun neither`, async () => {
    await withFake({ users, seed: 15, keysPerUser: { min: 1, max: 2 }, lastUsedDenied: true }, async (fake) => {
      await withTemp(async (out) => {
        const r = await runCli(['--endpoint-url', fake.url, '--out', out, '--last-used', 'api']);
        assert.equal(r.code, 1, r.stderr);
        const lines = r.stderr.trim().split('\n');
        assert.equal(lines.length, 1, r.stderr);
        assert.match(lines[0]!, /iam:GetAccessKeyLastUsed.*--last-used off/);
        assert.deepEqual(await readdir(join(out, 'access_keys')).catch(() => []), []);
        // The snapshot stays unfinished, not finalized: a rerun says the same and publishes nothing either.
        const again = await runCli(['--endpoint-url', fake.url, '--out', out, '--last-used', 'api']);
        assert.equal(again.code, 1, again.stderr);
        assert.match(again.stderr, /iam:GetAccessKeyLastUsed.*--last-used off/);
        assert.deepEqual(await readdir(join(out, 'access_keys')).catch(() => []), []);
      });
    });
  });
}

/** Key ids in the committed parts of the snapshot staged in `out` (our own staging format). */
async function committedKeys(out: string): Promise<Set<string>> {
  const ids = new Set<string>();
  const staging = join(out, '_staging');
  for (const id of await readdir(staging).catch(() => [] as string[])) {
    const checkpoint = JSON.parse(await readFile(join(staging, id, 'checkpoint.json'), 'utf8').catch(() => '{"parts":[]}')) as { parts: { file: string }[] };
    for (const part of checkpoint.parts) {
      for (const line of (await readFile(join(staging, id, 'runs', part.file), 'utf8')).split('\n')) if (line) ids.add(line.split('\t')[2]!);
    }
  }
  return ids;
}

for (const mode of ['report', 'api'] as const) {
  test(`--last-used ${mode} under SIGKILLs: exact, and no committed key is ever looked up again`, async () => {
    // ~2.5 s of IAM calls in report mode (more with api), 4 random kills of at most 400 ms each:
    // a kill never meets a finished export, since the calls are bound by the fake's latency.
    await withFake({ users: 300, seed: 16, keysPerUser: { min: 0, max: 3 }, latencyMs: 8, jitterMs: 4 }, async (fake) => {
      await withTemp(async (out) => {
        // Lookup counts of the keys committed before each kill: they must never grow.
        const frozen = new Map<string, number>();
        const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--concurrency', '2', '--page-size', '2', '--last-used', mode];
        const env = { IKE_COMMIT_ROWS: '8', IKE_COMMIT_MS: '80' };
        const freeze = async () => {
          const lookups = fake.stats().lastUsedLookups;
          for (const id of await committedKeys(out)) if (!frozen.has(id)) frozen.set(id, lookups[id] ?? 0);
        };
        // First a kill at a named point, once a part is committed: some keys are always frozen,
        // whatever moments the random kills below land on (on a loaded machine, maybe before any commit).
        const first = await runCli(args, testEnv({ ...env, IKE_FAULT_POINT: 'part-durable@2' }));
        assert.equal(first.signal, 'SIGKILL', first.stderr);
        await freeze();
        assert.ok(frozen.size > 0, 'the first part is committed');
        await killLoop({
          args,
          out,
          kills: 4,
          finalizeKills: 0,
          seed: mode === 'report' ? 61 : 62,
          signal: 'SIGKILL',
          minMs: 100,
          maxMs: 400,
          env,
          afterKill: freeze,
        });
        assert.deepEqual((await publishedRows(out, 'csv')).rows, expectedRows(fake));
        await assertLastUse(fake, out, 'csv');
        const lookups = fake.stats().lastUsedLookups;
        assert.ok(frozen.size > 0);
        const again = [...frozen].filter(([id, n]) => (lookups[id] ?? 0) !== n).map(([id]) => id);
        assert.deepEqual(again, [], 'committed keys looked up again');
      });
    });
  });
}

test('the saved report is a CSV beside a record of its size and sha256: a resume matches against it; a report altered on disk fails the resume as CHECKPOINT_CORRUPT', async () => {
  await withFake({ users: 60, seed: 17, keysPerUser: { min: 1, max: 2 } }, async (fake) => {
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--concurrency', '2', '--page-size', '2'];
      const env = { IKE_COMMIT_ROWS: '8', IKE_COMMIT_MS: '0' };
      const first = await runCli(args, testEnv({ ...env, IKE_FAULT_POINT: 'part-durable@2' }));
      assert.equal(first.signal, 'SIGKILL', first.stderr);
      const [id] = await readdir(join(out, '_staging'));
      const reports = join(out, '_staging', id!, 'reports');
      const files = (await readdir(reports)).sort();
      const account = files[0]!.replace(/\.csv$/, '');
      assert.match(account, /^\d{12}$/);
      assert.deepEqual(files, [`${account}.csv`, `${account}.json`], 'the CSV and its record, named by the account id');
      const info = JSON.parse(await readFile(join(reports, `${account}.json`), 'utf8')) as { csv: string; bytes: number; sha256: string; generatedTime: string };
      const csvFile = join(reports, info.csv);
      const csv = await readFile(csvFile);
      assert.equal(info.csv, `${account}.csv`);
      assert.equal(info.bytes, csv.length);
      assert.match(csv.toString('utf8'), /^user,arn,user_creation_time,/);
      // Same length, one byte changed: only the checksum can tell.
      const altered = Buffer.from(csv);
      altered[altered.length - 2] = altered[altered.length - 2] === 0x41 ? 0x42 : 0x41;
      await writeFile(csvFile, altered);
      const refused = await runCli(args, testEnv(env));
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, new RegExp(`saved credential report .*${account}\\.csv.*--fresh`));
      assert.equal(refused.stderr.trim().split('\n').length, 1, 'one line');
      await rm(csvFile);
      const missing = await runCli(args, testEnv(env));
      assert.equal(missing.code, 1, missing.stderr);
      assert.match(missing.stderr, new RegExp(`saved credential report .*${account}\\.csv is missing.*--fresh`));
      await writeFile(csvFile, csv);
      const again = await runCli(args, testEnv(env));
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual((await publishedRows(out, 'csv')).rows, expectedRows(fake));
      await assertLastUse(fake, out, 'csv');
      const manifest = await verifyManifest(await onlySnapshotDir(out));
      assert.equal((manifest as unknown as { last_used: { report_generated_time: string } }).last_used.report_generated_time, info.generatedTime, 'the manifest tells when the saved report was made');
    });
  });
});
