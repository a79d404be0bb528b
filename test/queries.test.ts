import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { renderDdl } from '../pipeline/ddl/index.ts';
import { queryDuckDb } from './support/duckdb.ts';
import { DAY_MS, TempRoots, v2Row, wholeDays, writeV2Snapshot, type RecordV2 } from './support/snapshots.ts';

const roots = new TempRoots();
after(() => roots.removeAll());

// The queries' fixture: an older snapshot whose rows would match every query, and
// the latest one, where each row is placed to test one boundary.
const OLD_ID = '20261121T090000Z';
const OLD_TIME = new Date('2026-11-21T09:00:00.000Z');
const NEW_ID = '20261128T111000Z';
const T = new Date('2026-11-28T11:10:00.000Z');
const at = (offsetMs: number): Date => new Date(T.getTime() + offsetMs);
const A = '012345678901';
const B = '123456789012';
const NEW_ROWS: readonly RecordV2[] = [
  v2Row({ snapshot_time: T, account_id: A, user_name: 'alice', user_id: 'AIDAALICE', access_key_id: 'AKIAALICEA', status: 'Active', create_date: new Date('2025-01-01T00:00:00.000Z'), last_used_date: at(-DAY_MS) }),
  v2Row({ snapshot_time: T, account_id: A, user_name: 'alice', user_id: 'AIDAALICE', access_key_id: 'AKIAALICEB', status: 'Active', create_date: at(-3 * DAY_MS) }),
  // Exactly 90 days old and unused for exactly 90 days: both boundaries included.
  v2Row({ snapshot_time: T, account_id: A, user_name: 'bob', user_id: 'AIDABOB', access_key_id: 'AKIABOBA', status: 'Active', create_date: at(-90 * DAY_MS), last_used_date: at(-90 * DAY_MS) }),
  v2Row({ snapshot_time: T, account_id: A, user_name: 'bob', user_id: 'AIDABOB', access_key_id: 'AKIABOBB', status: 'Inactive', create_date: new Date('2020-01-01T00:00:00.000Z'), last_used_date: at(-88 * DAY_MS) }),
  // One millisecond short of 90 days: 89 whole days.
  v2Row({ snapshot_time: T, account_id: B, user_name: 'carol', user_id: 'AIDACAROL', access_key_id: 'AKIACAROLA', status: 'Active', create_date: at(-90 * DAY_MS + 1), last_used_date: at(-89 * DAY_MS) }),
  v2Row({ snapshot_time: T, account_id: B, user_name: 'carol', user_id: 'AIDACAROL', access_key_id: 'AKIACAROLB', status: 'Inactive', create_date: at(-6 * DAY_MS) }),
  // Created exactly 7 days before the snapshot: in the last 7 days.
  v2Row({ snapshot_time: T, account_id: B, user_name: 'dave', user_id: 'AIDADAVE', access_key_id: 'AKIADAVEA', status: 'Expired', create_date: at(-7 * DAY_MS), last_used_date: at(-2 * DAY_MS) }),
  v2Row({ snapshot_time: T, account_id: B, user_name: 'dave', user_id: 'AIDADAVE', access_key_id: 'AKIADAVEB', status: 'Active', create_date: at(-8 * DAY_MS), last_used_date: at(-DAY_MS) }),
  // Created while the snapshot ran, after snapshot_time.
  v2Row({ snapshot_time: T, account_id: B, user_name: 'erin', user_id: 'AIDAERIN', access_key_id: 'AKIAERINA', status: 'Active', create_date: at(3_600_000) }),
];
const OLD_ROWS: readonly RecordV2[] = [
  v2Row({ snapshot_time: OLD_TIME, account_id: A, user_name: 'alice', user_id: 'AIDAALICE', access_key_id: 'AKIAALICEA', status: 'Active', create_date: new Date('2025-01-01T00:00:00.000Z') }),
  v2Row({ snapshot_time: OLD_TIME, account_id: A, user_name: 'frank', user_id: 'AIDAFRANK', access_key_id: 'AKIAFRANKA', status: 'Active', create_date: new Date('2024-01-01T00:00:00.000Z') }),
  v2Row({ snapshot_time: OLD_TIME, account_id: A, user_name: 'frank', user_id: 'AIDAFRANK', access_key_id: 'AKIAFRANKB', status: 'Active', create_date: new Date(OLD_TIME.getTime() - DAY_MS) }),
];

/** The statements of schemas/queries.sql, each with the comment line right above it. */
async function queries(): Promise<{ comment: string; sql: string }[]> {
  const text = await readFile(new URL('../schemas/queries.sql', import.meta.url), 'utf8');
  return text
    .split(/;\s*\n/)
    .filter((chunk) => /^\s*SELECT/m.test(chunk))
    .map((chunk) => {
      const lines = chunk.trim().split('\n');
      const first = lines.findIndex((l) => l.startsWith('SELECT'));
      return { comment: lines[first - 1] ?? '', sql: lines.slice(first).join('\n') };
    });
}

describe('schemas/queries.sql, over a fixture of an older and a latest snapshot', () => {
  let ddl: string;
  let all: { comment: string; sql: string }[];
  before(async () => {
    const root = await roots.make();
    await writeV2Snapshot(root, OLD_ID, 'parquet', OLD_ROWS);
    await writeV2Snapshot(root, NEW_ID, 'parquet', NEW_ROWS);
    ddl = renderDdl({ dialect: 'duckdb', format: 'parquet', location: root });
    all = await queries();
  });
  const run = async (i: number): Promise<Record<string, unknown>[]> => (await queryDuckDb(`${ddl}\n${all[i]!.sql}`)).rows;
  const keys = (rows: Record<string, unknown>[]): unknown[] => rows.map((r) => r.access_key_id);

  test('holds five queries, each under a one-line comment', () => {
    assert.equal(all.length, 5);
    for (const q of all) assert.match(q.comment, /^-- \S.*\.$/, `a one-line comment above:\n${q.sql}`);
  });

  test('finds the active keys 90 whole days old or older, oldest first', async () => {
    assert.deepEqual((await run(0)).map((r) => [r.access_key_id, r.key_age_days]), [
      ['AKIAALICEA', wholeDays(new Date('2025-01-01T00:00:00.000Z'), T)],
      ['AKIABOBA', 90],
    ]);
  });

  test('finds the keys never used first, then those unused for 90 days or more', async () => {
    assert.deepEqual(keys(await run(1)), ['AKIAALICEB', 'AKIACAROLB', 'AKIAERINA', 'AKIABOBA']);
  });

  test('finds the users with two active keys', async () => {
    assert.deepEqual(await run(2), [{ account_id: A, user_id: 'AIDAALICE', user_name: 'alice', active_keys: 2, oldest_key_created: '2025-01-01T00:00:00.000Z' }]);
  });

  test('finds the keys created in the 7 days before the snapshot or during it, newest first', async () => {
    assert.deepEqual(keys(await run(3)), ['AKIAERINA', 'AKIAALICEB', 'AKIACAROLB', 'AKIADAVEA']);
  });

  test('counts keys, active keys, users and accounts per snapshot', async () => {
    assert.deepEqual(await run(4), [
      { snapshot_id: OLD_ID, snapshot_time: OLD_TIME.toISOString(), keys: 3, active_keys: 3, users_with_keys: 2, accounts: 1 },
      { snapshot_id: NEW_ID, snapshot_time: T.toISOString(), keys: 9, active_keys: 6, users_with_keys: 5, accounts: 2 },
    ]);
  });
});
