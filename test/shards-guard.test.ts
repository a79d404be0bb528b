/**
 * A sharded snapshot in the making belongs to its shards: an unsharded run on the
 * same --out neither resumes it nor removes it (its checkpoints are the shards',
 * not at the staging root), and says how to finish it; the shards then publish it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { FakeIam } from './fake-iam/server.ts';
import { runCli } from './support/cli.ts';
import { publishedRows } from './support/expect.ts';
import { activeAccounts, orgExpectedRows, ROLE } from './support/org.ts';
import { withFake, withTemp } from './support/scope.ts';

function orgArgs(fake: FakeIam, out: string, ...more: string[]): string[] {
  return ['--endpoint-url', fake.url, '--out', out, '--format', 'csv', '--organization', '--role-name', ROLE, ...more];
}

test('an unsharded run leaves an unfinished sharded snapshot alone (exit 2 naming --fresh and the shards); its last shard then publishes it exactly', async () => {
  await withFake({ users: 4, seed: 77, keysPerUser: { min: 1, max: 2 }, accounts: { count: 6, usersPerAccount: { min: 1, max: 4 } } }, async (fake) => {
    await withTemp(async (out) => {
      const id = '20261128T060000Z';
      const shard = (i: number) => orgArgs(fake, out, '--shards', '2', '--shard-index', String(i), '--snapshot-id', id);
      const first = await runCli(shard(0));
      assert.equal(first.code, 0, first.stderr);
      const staged = await readdir(join(out, '_staging', id));
      assert.ok(staged.some((n) => n.startsWith('shard-0-of-2')), staged.join(', '));

      const plain = await runCli(orgArgs(fake, out));
      assert.equal(plain.code, 2, plain.stderr);
      const line = plain.stderr.trim();
      assert.equal(line.split('\n').length, 1, line);
      assert.match(line, new RegExp(`sharded snapshot ${id}`));
      assert.match(line, /--fresh/);
      assert.deepEqual(await readdir(join(out, '_staging', id)), staged, 'the shard\'s staging is untouched');

      const second = await runCli(shard(1));
      assert.equal(second.code, 0, second.stderr);
      const { rows } = await publishedRows(out, 'csv');
      assert.deepEqual(rows, orgExpectedRows(fake, activeAccounts(fake).map((a) => a.id)));
    });
  });
});
