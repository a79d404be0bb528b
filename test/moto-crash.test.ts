import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateAccessKeyCommand, CreateUserCommand, IAMClient, UpdateAccessKeyCommand } from '@aws-sdk/client-iam';
import pLimit from 'p-limit';
import { runCli } from './support/cli.ts';
import { killLoop } from './support/crash.ts';
import { onlySnapshotDir, publishedRows, verifyManifest } from './support/expect.ts';
import { motoUnavailable, startMoto } from './support/moto.ts';
import { startSlowProxy } from './support/slow-proxy.ts';

const unavailable = motoUnavailable();
const skip = unavailable && process.env.CI !== 'true' ? unavailable : false;

// A second net behind the fault-point tests (test/resume.test.ts), on a real IAM emulator; one
// format: the format-specific crash handling is covered by the fake-IAM loops.
test('100 users on moto_server, killed with SIGKILL at 5 random moments, publish exactly what an uninterrupted --concurrency 1 run does', { skip }, async () => {
  assert.equal(unavailable, undefined, unavailable);
  const moto = await startMoto();
  const proxy = await startSlowProxy(moto.url, 25);
  const tmp = await mkdtemp(join(tmpdir(), 'ike-moto-crash-'));
  const client = new IAMClient({ region: 'us-east-1', endpoint: moto.url, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'x' } });
  try {
    const limit = pLimit(8);
    await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        limit(async () => {
          const UserName = `svc.${String(i).padStart(3, '0')}${i % 2 ? '@corp' : '-bot'}`;
          await client.send(new CreateUserCommand({ UserName }));
          for (let k = 0; k < (i * 7) % 3; k++) {
            const { AccessKey } = await client.send(new CreateAccessKeyCommand({ UserName }));
            if (k === 1) await client.send(new UpdateAccessKeyCommand({ UserName, AccessKeyId: AccessKey!.AccessKeyId, Status: 'Inactive' }));
          }
        }),
      ),
    );
    for (const format of ['csv'] as const) {
      // The reference: one uninterrupted run at --concurrency 1, straight to moto.
      const refOut = join(tmp, `ref-${format}`);
      const ref = await runCli(['--endpoint-url', moto.url, '--out', refOut, '--format', format, '--concurrency', '1']);
      assert.equal(ref.code, 0, ref.stderr);
      const reference = (await publishedRows(refOut, format)).rows;
      assert.equal(reference.length, 99, '0, 1 or 2 keys per user');

      const out = join(tmp, `killed-${format}`);
      const loop = await killLoop({
        // Through the slow proxy: ~3 s of calls, so every run is killed early in its share.
        args: ['--endpoint-url', proxy.url, '--out', out, '--format', format, '--concurrency', '1'],
        out,
        kills: 5,
        finalizeKills: 0,
        seed: format === 'csv' ? 15 : 51,
        signal: 'SIGKILL',
        minMs: 50,
        maxMs: 550,
        env: { IKE_COMMIT_ROWS: '5', IKE_COMMIT_MS: '100' },
      });
      assert.equal(loop.killed, 5);
      const { rows } = await publishedRows(out, format);
      assert.deepEqual(rows, reference, `${format}: row for row equal to the uninterrupted run`);
      const manifest = await verifyManifest(await onlySnapshotDir(out));
      assert.equal(manifest.duplicates_dropped, 0);
      assert.equal(manifest.users.seen, 100);
      assert.equal(manifest.resumes, loop.results.length - 1);
    }
  } finally {
    client.destroy();
    await proxy.close();
    await moto.close();
    await rm(tmp, { recursive: true, force: true });
  }
});
