import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DIALECTS, parseDdlCommand, renderDdl, renderTypeTable, SQL_TYPES, type DdlOptions } from '../pipeline/ddl/index.ts';
import { ExportError } from '../pipeline/errors.ts';
import { FORMATS } from '../pipeline/sinks/index.ts';
import { README_PATH, renderReadmeTables } from '../schemas/generate.ts';
import { schemaSpec } from '../pipeline/schema-spec.ts';
import { queryDuckDb } from './support/duckdb.ts';
import { startPostgres, type PostgresServer } from './support/postgres.ts';
import { plain, TempRoots, v2Row, wholeDays, writeV1Snapshot, writeV2Snapshot, type RecordV1, type RecordV2 } from './support/snapshots.ts';

const V2 = schemaSpec(2);

const roots = new TempRoots();
after(() => roots.removeAll());

/** What DuckDB reports for each schema type once the view has cast it. */
const DUCKDB_REPORTS: Record<string, string> = { string: 'VARCHAR', timestamp: 'TIMESTAMP WITH TIME ZONE', int32: 'INTEGER' };

// One v1 snapshot and one v2 snapshot under one root: the union the DuckDB view reads.
const V1_ID = '20261121T090000Z';
const V1_TIME = new Date('2026-11-21T09:00:00.000Z');
const V1_ROWS: readonly RecordV1[] = [
  {
    snapshot_id: V1_ID,
    snapshot_time: V1_TIME,
    account_id: '012345678901',
    user_name: 'alice',
    user_id: 'AIDAALICE000000000000',
    access_key_id: 'AKIAALICE00000000001',
    status: 'Active',
    create_date: new Date('2015-01-01T00:00:00.000Z'),
    key_age_days: wholeDays(new Date('2015-01-01T00:00:00.000Z'), V1_TIME),
    last_used_date: null,
    last_used_service: null,
    last_used_region: null,
  },
  {
    snapshot_id: V1_ID,
    snapshot_time: V1_TIME,
    account_id: '123456789012',
    user_name: 'bob',
    user_id: 'AIDABOB00000000000000',
    access_key_id: 'AKIABOB0000000000001',
    status: 'Inactive',
    create_date: new Date('2020-02-29T12:34:56.789Z'),
    key_age_days: wholeDays(new Date('2020-02-29T12:34:56.789Z'), V1_TIME),
    last_used_date: new Date('2026-11-20T01:02:03.004Z'),
    last_used_service: 'iam',
    last_used_region: 'us-east-1',
  },
];
const V2_ID = '20261128T111000Z';
const V2_TIME = new Date('2026-11-28T11:10:00.000Z');
const V2_ROWS: readonly RecordV2[] = [
  v2Row({ snapshot_time: V2_TIME, account_id: '012345678901', user_name: 'alice', user_id: 'AIDAALICE000000000000', access_key_id: 'AKIAALICE00000000001', status: 'Active', create_date: new Date('2015-01-01T00:00:00.000Z'), last_used_date: new Date('2026-11-27T01:02:03.004Z') }),
  // A comma in the user name (IAM allows it) needs CSV quoting; "" stays an empty string.
  v2Row({ snapshot_time: V2_TIME, account_id: '012345678901', user_name: 'dave,eve', user_id: 'AIDADAVEEVE0000000000', access_key_id: 'AKIADAVEEVE000000001', status: 'Active', create_date: new Date('2026-11-28T11:09:59.999Z'), last_used_date: new Date('2026-11-28T11:00:00.000Z'), last_used_service: '' }),
  v2Row({ snapshot_time: V2_TIME, account_id: '123456789012', user_name: 'bob', user_id: 'AIDABOB00000000000000', access_key_id: 'AKIABOB0000000000001', status: 'Inactive', create_date: new Date('2020-02-29T12:34:56.789Z') }),
];

/** The view's rows for the union root, in (snapshot_id, account_id, user_name, access_key_id) order. */
function expectedUnionRows(): Record<string, unknown>[] {
  const names = [...V2.columns.map((c) => c.name), 'snapshot_id'];
  const v1 = V1_ROWS.map((r) => Object.fromEntries(names.map((n) => [n, (r as unknown as Record<string, unknown>)[n] ?? null])));
  const v2 = V2_ROWS.map((r) => ({ ...r, snapshot_id: V2_ID }));
  return [...v1, ...v2].map(plain);
}

const ORDERED = 'ORDER BY snapshot_id, account_id, user_name, access_key_id';

describe('the DuckDB DDL', () => {
  for (const format of FORMATS) {
    test(`makes a view that reads every row of a v1 and a v2 ${format} snapshot under one root, with the declared types`, async () => {
      const root = await roots.make();
      await writeV1Snapshot(root, V1_ID, format, V1_ROWS);
      await writeV2Snapshot(root, V2_ID, format, V2_ROWS);

      const ddl = renderDdl({ dialect: 'duckdb', format, location: root });
      const { columns, rows } = await queryDuckDb(`${ddl}\nSELECT * FROM access_keys ${ORDERED}`);

      assert.deepEqual(
        columns,
        [...V2.columns, V2.partition!].map((c) => ({ name: c.name, type: DUCKDB_REPORTS[c.type] })),
      );
      assert.deepEqual(rows, expectedUnionRows());
      // The leading zero survives: account_id is declared VARCHAR, not sniffed.
      assert.equal(rows[0]?.account_id, '012345678901');
    });
  }

  test("gives the view and its columns the schema's descriptions as comments", async () => {
    const root = await roots.make();
    await writeV2Snapshot(root, V2_ID, 'parquet', V2_ROWS);

    const ddl = renderDdl({ dialect: 'duckdb', format: 'parquet', location: root });
    const { rows } = await queryDuckDb(`${ddl}\nSELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'access_keys'`);
    assert.deepEqual(
      rows,
      [...V2.columns, V2.partition!].map((c) => ({ column_name: c.name, comment: c.description })),
    );
  });

  test('takes the table name and a location with a trailing slash', async () => {
    const root = await roots.make();
    await writeV2Snapshot(root, V2_ID, 'csv', V2_ROWS);

    const ddl = renderDdl({ dialect: 'duckdb', format: 'csv', location: `${root}/`, table: 'iam_keys' });
    const { rows } = await queryDuckDb(`${ddl}\nSELECT count(*) AS n FROM iam_keys`);
    assert.deepEqual(rows, [{ n: V2_ROWS.length }]);
  });
});

describe('the PostgreSQL DDL and COPY', () => {
  let server: PostgresServer | undefined;
  let unavailable: string | undefined;
  let csvFile: string;
  let script: string;

  before(async () => {
    const started = await startPostgres();
    if ('unavailable' in started) unavailable = started.unavailable;
    else server = started;
    const root = await roots.make();
    csvFile = await writeV2Snapshot(root, V2_ID, 'csv', V2_ROWS);
    script = join(root, 'access_keys.sql');
    await writeFile(script, renderDdl({ dialect: 'postgres', format: 'csv', location: root }));
  });
  after(async () => {
    await server?.stop();
  });

  /** The running server; outside CI a machine without PostgreSQL skips, under CI it fails. */
  function pg(t: { skip(message: string): void }): PostgresServer | undefined {
    if (server !== undefined) return server;
    const reason = `PostgreSQL unavailable: ${unavailable ?? 'not started'}`;
    if (process.env.CI) assert.fail(`${reason} (CI=${process.env.CI}: .ci/run installs it)`);
    t.skip(reason);
    return undefined;
  }

  async function rows(db: PostgresServer, sql: string): Promise<Record<string, unknown>[]> {
    const { stdout } = await db.psql(['-At', '-c', `SELECT coalesce(json_agg(t), '[]') FROM (${sql}) t`]);
    return JSON.parse(stdout) as Record<string, unknown>[];
  }

  test('creates the table with the declared types and key, and loads nothing without -v snapshot_id', async (t) => {
    const db = pg(t);
    if (db === undefined) return;
    await db.psql(['-f', script]);

    const columns = await rows(db, "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'access_keys' ORDER BY ordinal_position");
    const pgName: Record<string, string> = { string: 'text', timestamp: 'timestamp with time zone', int32: 'integer' };
    assert.deepEqual(
      columns,
      [...V2.columns, { ...V2.partition!, nullable: false }].map((c) => ({ column_name: c.name, data_type: pgName[c.type], is_nullable: c.nullable ? 'YES' : 'NO' })),
    );
    const key = await rows(db, "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'access_keys'::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)");
    assert.deepEqual(key, [{ attname: 'snapshot_id' }, { attname: 'access_key_id' }]);
    assert.deepEqual(await rows(db, 'SELECT count(*) AS n FROM access_keys'), [{ n: 0 }]);
  });

  test('loads one CSV file of a snapshot, with the snapshot id given to psql, every value as written', async (t) => {
    const db = pg(t);
    if (db === undefined) return;
    await db.psql(['-v', `snapshot_id=${V2_ID}`, '-f', script], await readFile(csvFile));

    const loaded = await rows(db, `SELECT * FROM access_keys WHERE snapshot_id = '${V2_ID}' ORDER BY account_id, user_name, access_key_id`);
    const asIso = (v: unknown): unknown => (typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v) ? new Date(v).toISOString() : v);
    assert.deepEqual(
      loaded.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, asIso(v)]))),
      V2_ROWS.map((r) => plain({ ...r, snapshot_id: V2_ID })),
    );
  });

  test('adds nothing when the same file is loaded again, and keeps snapshots apart', async (t) => {
    const db = pg(t);
    if (db === undefined) return;
    const csv = await readFile(csvFile);
    await db.psql(['-v', `snapshot_id=${V2_ID}`, '-f', script], csv);
    await db.psql(['-v', `snapshot_id=${V2_ID}`, '-f', script], csv);
    await db.psql(['-v', 'snapshot_id=20261129T000000Z', '-f', script], csv);

    assert.deepEqual(await rows(db, 'SELECT snapshot_id, count(*) AS n FROM access_keys GROUP BY snapshot_id ORDER BY snapshot_id'), [
      { snapshot_id: V2_ID, n: V2_ROWS.length },
      { snapshot_id: '20261129T000000Z', n: V2_ROWS.length },
    ]);
  });
});

/** The location each dialect's expected file was rendered for. */
const EXPECTED_LOCATION: Readonly<Record<(typeof DIALECTS)[number], string | undefined>> = {
  duckdb: undefined,
  postgres: undefined,
  athena: 's3://example-bucket/iam-key-export',
  bigquery: 'gs://example-bucket/iam-key-export',
  snowflake: 's3://example-bucket/iam-key-export',
};

describe('the DDL of every dialect', () => {
  for (const dialect of DIALECTS) {
    for (const format of FORMATS) {
      if (dialect === 'postgres' && format === 'parquet') continue;
      // Reviewed by hand; IKE_UPDATE_EXPECTED=1 rewrites them after a deliberate change (then review the diff).
      test(`is the reviewed test/expected/ddl/${dialect}.${format}.sql`, async () => {
        const location = EXPECTED_LOCATION[dialect];
        const sql = renderDdl({ dialect, format, ...(location === undefined ? {} : { location }) });
        const path = new URL(`./expected/ddl/${dialect}.${format}.sql`, import.meta.url);
        if (process.env.IKE_UPDATE_EXPECTED === '1') await writeFile(path, sql);
        assert.equal(sql, await readFile(path, 'utf8'));
      });
    }

    test(`declares every column of the schema for ${dialect}, account_id as a string`, () => {
      const sql = renderDdl({ dialect, format: 'csv', location: EXPECTED_LOCATION[dialect] ?? './export' });
      for (const column of [...V2.columns, V2.partition!]) assert.match(sql, new RegExp(`\\b${column.name}\\b`), column.name);
      const text = SQL_TYPES[dialect].string;
      assert.match(sql, new RegExp(`\\baccount_id ${text}\\b|CAST\\(account_id AS ${text}\\)`));
    });
  }

  test('is refused with every problem listed when the options do not fit together', () => {
    const cases: [DdlOptions, RegExp[]][] = [
      [{ dialect: 'athena', format: 'parquet' }, [/--location is required for --dialect athena/]],
      [{ dialect: 'bigquery', format: 'csv', location: 's3://bucket/x' }, [/--location for --dialect bigquery must start with gs:\/\//]],
      [{ dialect: 'postgres', format: 'parquet', table: 'bad-name' }, [/--format must be csv for --dialect postgres/, /--table must be a name/]],
      [{ dialect: 'oracle' as 'duckdb', format: 'xml' as 'csv' }, [/--dialect must be one of duckdb, postgres, athena, bigquery, snowflake, got "oracle"/, /--format must be parquet or csv, got "xml"/]],
    ];
    for (const [options, messages] of cases) {
      assert.throws(
        () => renderDdl(options),
        (err) => err instanceof ExportError && err.code === 'CONFIG_INVALID' && err.message.split('\n').length === messages.length && messages.every((m) => m.test(err.message)),
        JSON.stringify(options),
      );
    }
  });

  test('can declare schema version 1, where snapshot_id is a data column and nothing is partitioned', () => {
    const sql = renderDdl({ dialect: 'athena', format: 'parquet', location: 's3://b/p', schemaVersion: 1 });
    assert.match(sql, /^ {2}snapshot_id string COMMENT/m);
    assert.doesNotMatch(sql, /PARTITIONED BY|MSCK/);
  });
});

describe('parseDdlCommand', () => {
  test('defaults to Parquet and leaves location and table to the renderer', () => {
    assert.deepEqual(parseDdlCommand(['--dialect', 'duckdb']), { kind: 'ddl', options: { dialect: 'duckdb', format: 'parquet' } });
  });

  test('reads every flag', () => {
    assert.deepEqual(parseDdlCommand(['--dialect=athena', '--location', 's3://b/export', '--format', 'csv', '--table', 'sec.keys']), {
      kind: 'ddl',
      options: { dialect: 'athena', format: 'csv', location: 's3://b/export', table: 'sec.keys' },
    });
  });

  test('answers --help', () => {
    assert.deepEqual(parseDdlCommand(['--help']), { kind: 'help' });
  });

  test('throws CONFIG_INVALID listing every problem, one per line', () => {
    assert.throws(
      () => parseDdlCommand(['--dialet', 'duckdb', 'extra', '--format', 'orc', '--table']),
      (err) =>
        err instanceof ExportError &&
        err.code === 'CONFIG_INVALID' &&
        err.message ===
          [
            'unknown option --dialet: iam-key-export ddl takes --dialect, --location, --format, --table and --dataset',
            'unexpected argument "extra": iam-key-export ddl takes only --flags (see ddl --help)',
            '--table needs a value',
            '--dialect is required: one of duckdb, postgres, athena, bigquery, snowflake',
            '--format must be parquet or csv, got "orc"',
          ].join('\n'),
    );
  });
});

describe('schemas/README.md', () => {
  test("lists each column's type per dialect as the generator renders it", async () => {
    const readme = await readFile(README_PATH, 'utf8');
    assert.ok(readme.includes(renderReadmeTables()));
    assert.ok(readme.includes(renderTypeTable()));
  });
});
