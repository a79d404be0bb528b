/**
 * What the README tells a reader to run, run: its DuckDB lines over a real
 * export of two snapshots, and its install advice (never `npx iam-key-export`
 * outside the clone, where npx would fetch whatever the registry holds).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { runCli } from './support/cli.ts';
import { queryDuckDb } from './support/duckdb.ts';
import { expectedRows } from './support/expect.ts';
import { withFake, withTemp } from './support/scope.ts';
import { untilNextSecond } from './support/wait.ts';

const README = fileURLToPath(new URL('../README.md', import.meta.url));

/** The statements of the README's first ```sql block under "### Read it". */
async function readItStatements(): Promise<string[]> {
  const text = await readFile(README, 'utf8');
  const section = text.slice(text.indexOf('### Read it'));
  const block = /```sql\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(block, 'README has a ```sql block under ### Read it');
  const code = block
    .split('\n')
    .map((line) => line.replace(/\s*--.*$/, ''))
    .join('\n');
  return code
    .split(';')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

test("the README's DuckDB lines read every snapshot, and _LATEST the newest only", async () => {
  const statements = await readItStatements();
  assert.equal(statements.length, 2);
  await withFake({ users: 12, seed: 41, keysPerUser: { min: 1, max: 2 } }, async (fake) => {
    await withTemp(async (out) => {
      const args = ['--endpoint-url', fake.url, '--out', out, '--format', 'parquet'];
      const first = Date.now();
      assert.equal((await runCli(args)).code, 0);
      await untilNextSecond(first);
      assert.equal((await runCli(args)).code, 0);
      const sql = statements.map((s) => s.replaceAll("'export/", `'${out}/`));
      const all = await queryDuckDb(`${sql[0]} ORDER BY snapshot_id, account_id, user_name, access_key_id`);
      const ids = [...new Set(all.rows.map((r) => String(r.snapshot_id)))].sort();
      assert.equal(ids.length, 2);
      assert.equal(all.rows.length, 2 * expectedRows(fake).length);
      const latest = await queryDuckDb(`${sql[1]} ORDER BY account_id, user_name, access_key_id`);
      assert.deepEqual(
        latest.rows.map((r) => [r.snapshot_id, r.access_key_id]),
        expectedRows(fake).map((r) => [ids[1], r.access_key_id]),
      );
    });
  });
});

test('the README never tells anyone to run npx iam-key-export outside the clone', async () => {
  const text = await readFile(README, 'utf8');
  for (const [i, line] of text.split('\n').entries()) {
    if (!/npx\s+iam-key-export/.test(line)) continue;
    assert.match(line, /only inside the clone|inside the clone/, `README line ${i + 1} runs npx iam-key-export without saying it is inside the clone: ${line}`);
  }
});
