import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateAccessKeyCommand,
  CreateUserCommand,
  IAMClient,
  paginateListAccessKeys,
  paginateListUsers,
  UpdateAccessKeyCommand,
} from '@aws-sdk/client-iam';
import pLimit from 'p-limit';
import { runCli, testEnv } from './support/cli.ts';
import { onlySnapshotDir, publishedRows, sortRows, verifyManifest, type KeyRow } from './support/expect.ts';
import { motoUnavailable, startMoto } from './support/moto.ts';
import { accountIdFromArn } from '../pipeline/source/users.ts';

const unavailable = motoUnavailable();
// In CI moto_server is part of the machine: its absence is a failure, not a skip.
const skip = unavailable && process.env.CI !== 'true' ? unavailable : false;

const USERS = 100;
/** Keys seeded: user i has i % 3 of them. */
const KEYS = Array.from({ length: USERS }, (_, i) => i % 3).reduce((a, b) => a + b, 0);
// Every character IAM allows in a user name, spread over the users.
const ODD = ['_', '+', '=', ',', '.', '@', '-'];

test(`an account of ${USERS} users served by moto_server is exported with every key exactly once, in both formats`, { skip }, async () => {
  assert.equal(unavailable, undefined, unavailable);
  const moto = await startMoto();
  const out = await mkdtemp(join(tmpdir(), 'ike-moto-'));
  const client = new IAMClient({ region: 'us-east-1', endpoint: moto.url, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'x' } });
  try {
    const limit = pLimit(8);
    await Promise.all(
      Array.from({ length: USERS }, (_, i) =>
        limit(async () => {
          const UserName = `u${String(i).padStart(3, '0')}${ODD[i % ODD.length]}${i % 5 === 0 ? 'Ops' : 'dev'}`;
          await client.send(new CreateUserCommand({ UserName, Path: i % 4 === 0 ? '/eng/' : '/' }));
          for (let k = 0; k < i % 3; k++) {
            const { AccessKey } = await client.send(new CreateAccessKeyCommand({ UserName }));
            if ((i + k) % 4 === 0) await client.send(new UpdateAccessKeyCommand({ UserName, AccessKeyId: AccessKey!.AccessKeyId, Status: 'Inactive' }));
          }
        }),
      ),
    );
    // The truth is what moto's own ListAccessKeys returns.
    const expected: KeyRow[] = [];
    for await (const page of paginateListUsers({ client }, {})) {
      for (const user of page.Users ?? []) {
        for await (const kp of paginateListAccessKeys({ client }, { UserName: user.UserName })) {
          for (const k of kp.AccessKeyMetadata ?? []) {
            expected.push({
              account_id: accountIdFromArn(user.Arn!)!,
              user_name: user.UserName!,
              user_id: user.UserId!,
              access_key_id: k.AccessKeyId!,
              status: k.Status!,
              create_date: new Date(Math.floor(k.CreateDate!.getTime() / 1000) * 1000).toISOString(),
            });
          }
        }
      }
    }
    assert.equal(expected.length, KEYS, 'seeded 0, 1 or 2 keys per user');

    for (const format of ['parquet', 'csv'] as const) {
      const dest = join(out, format);
      const r = await runCli(['--endpoint-url', moto.url, '--out', dest, '--format', format, '--concurrency', '8', '--page-size', '50'], testEnv());
      assert.equal(r.code, 0, r.stderr);
      const { rows, types } = await publishedRows(dest, format);
      // moto stamps sub-second creation times; IAM answers whole seconds. Compare at seconds.
      const seconds = rows.map((row) => ({ ...row, create_date: new Date(Math.floor(new Date(row.create_date).getTime() / 1000) * 1000).toISOString() }));
      assert.deepEqual(seconds, sortRows(expected), `${format}: rows equal ListAccessKeys`);
      assert.match(types.create_date!, /^TIMESTAMP/);
      const manifest = await verifyManifest(await onlySnapshotDir(dest));
      assert.equal(manifest.users.seen, USERS);
      assert.equal(manifest.rows, KEYS);
    }
  } finally {
    client.destroy();
    await moto.close();
    await rm(out, { recursive: true, force: true });
  }
});
