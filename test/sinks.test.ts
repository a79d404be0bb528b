import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ExportError } from '../pipeline/errors.ts';
import type { AccessKeyRecord } from '../pipeline/schema.ts';
import { FORMAT_EXTENSION, FORMATS, writeDataFile, type Format } from '../pipeline/sinks/index.ts';
import { queryDuckDb, readSnapshotRows } from './support/duckdb.ts';

const SNAPSHOT_ID = '20261128T111000Z';
const SNAPSHOT_TIME = new Date('2026-11-28T11:10:00.000Z');

/** Sorted as published; nulls where the last-used stage has nothing, and strings that need quoting. */
const RECORDS: readonly AccessKeyRecord[] = [
  record({ user_name: 'alice', access_key_id: 'AKIAALICE00000000001', create_date: new Date('2015-01-01T00:00:00.000Z'), key_age_days: 4349 }),
  record({
    user_name: 'bob',
    access_key_id: 'AKIABOB0000000000001',
    status: 'Inactive',
    create_date: new Date('2020-02-29T12:34:56.789Z'),
    key_age_days: 2464,
    last_used_date: new Date('2026-11-27T01:02:03.004Z'),
    last_used_service: 'svc, with "quotes"\nand a second line',
    last_used_region: 'us-east-1',
  }),
  record({
    user_name: 'carol+ops@example.com',
    access_key_id: 'AKIACAROL00000000001',
    create_date: new Date('2026-11-28T11:09:59.999Z'),
    key_age_days: 0,
    last_used_date: new Date('2026-11-28T11:00:00.000Z'),
    last_used_service: 'lone\rcarriage return',
    last_used_region: 'crlf\r\ninside',
  }),
];

function record(fields: Partial<AccessKeyRecord> & Pick<AccessKeyRecord, 'user_name' | 'access_key_id' | 'create_date' | 'key_age_days'>): AccessKeyRecord {
  return {
    snapshot_time: SNAPSHOT_TIME,
    account_id: '123456789012',
    user_id: `AIDA${fields.user_name.toUpperCase().replace(/[^A-Z]/g, 'X').padEnd(17, '0')}`,
    status: 'Active',
    last_used_date: null,
    last_used_service: null,
    last_used_region: null,
    user_arn: `arn:aws:iam::123456789012:user/${fields.user_name}`,
    user_path: '/',
    user_create_date: new Date('2014-06-01T00:00:00.000Z'),
    days_since_last_used: null,
    ...fields,
  };
}

/** `n` valid records, generated lazily. */
function* manyRecords(n: number): Generator<AccessKeyRecord> {
  for (let i = 0; i < n; i++) {
    yield record({ user_name: `user-${i}`, access_key_id: `AKIA${String(i).padStart(16, '0')}`, create_date: SNAPSHOT_TIME, key_age_days: 0 });
  }
}

/** The values a warehouse should see: timestamps as ISO strings, nulls as null, snapshot_id from the folder name. */
function expectedRow(r: AccessKeyRecord): Record<string, unknown> {
  return { ...Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v])), snapshot_id: SNAPSHOT_ID };
}

const tempDirs: string[] = [];
after(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** A fresh dataset root and the partition folder a snapshot's files go in. */
async function snapshotDir(): Promise<{ out: string; dir: string }> {
  const out = await mkdtemp(join(tmpdir(), 'sinks-test-'));
  tempDirs.push(out);
  const dir = join(out, 'access_keys', `snapshot_id=${SNAPSHOT_ID}`);
  await mkdir(dir, { recursive: true });
  return { out, dir };
}

function partFile(dir: string, format: Format): string {
  return join(dir, `part-00000${FORMAT_EXTENSION[format]}`);
}

async function sha256Of(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

/** Column types DuckDB gives each format: Parquet's are ours, CSV's are its auto-detection. */
const EXPECTED_TYPES: Record<Format, Record<string, string>> = {
  parquet: {
    snapshot_id: 'VARCHAR',
    snapshot_time: 'TIMESTAMP WITH TIME ZONE',
    account_id: 'VARCHAR',
    user_name: 'VARCHAR',
    user_id: 'VARCHAR',
    access_key_id: 'VARCHAR',
    status: 'VARCHAR',
    create_date: 'TIMESTAMP WITH TIME ZONE',
    key_age_days: 'INTEGER',
    last_used_date: 'TIMESTAMP WITH TIME ZONE',
    last_used_service: 'VARCHAR',
    last_used_region: 'VARCHAR',
    user_arn: 'VARCHAR',
    user_path: 'VARCHAR',
    user_create_date: 'TIMESTAMP WITH TIME ZONE',
    days_since_last_used: 'INTEGER',
  },
  // Auto-detection reads the trailing Z as a time zone, and types any column of
  // digits as BIGINT, account_id included: a CSV loader must declare account_id
  // VARCHAR, or an account id with a leading zero loses it.
  csv: {
    snapshot_id: 'VARCHAR',
    snapshot_time: 'TIMESTAMP WITH TIME ZONE',
    account_id: 'BIGINT',
    user_name: 'VARCHAR',
    user_id: 'VARCHAR',
    access_key_id: 'VARCHAR',
    status: 'VARCHAR',
    create_date: 'TIMESTAMP WITH TIME ZONE',
    key_age_days: 'BIGINT',
    last_used_date: 'TIMESTAMP WITH TIME ZONE',
    last_used_service: 'VARCHAR',
    last_used_region: 'VARCHAR',
    user_arn: 'VARCHAR',
    user_path: 'VARCHAR',
    user_create_date: 'TIMESTAMP WITH TIME ZONE',
    // Empty in every sample row: a sniffer cannot tell, it says VARCHAR (declare the types: DDL).
    days_since_last_used: 'VARCHAR',
  },
};

for (const format of FORMATS) {
  describe(`writeDataFile('${format}')`, () => {
    test('writes rows that DuckDB reads back with the same values, nulls and order', async () => {
      const { out, dir } = await snapshotDir();
      async function* source(): AsyncGenerator<AccessKeyRecord> {
        yield* RECORDS;
      }
      await writeDataFile(format, partFile(dir, format), source());

      const { rows } = await readSnapshotRows(out, format);
      const expected = RECORDS.map(expectedRow);
      // CSV auto-detection makes account_id a number (see EXPECTED_TYPES).
      const seen = format === 'csv' ? rows.map((r) => ({ ...r, account_id: String(r.account_id) })) : rows;
      assert.deepEqual(seen, expected);
    });

    test('gives every column the type a warehouse expects', async () => {
      const { out, dir } = await snapshotDir();
      await writeDataFile(format, partFile(dir, format), RECORDS);

      const { columns } = await readSnapshotRows(out, format);
      assert.deepEqual(Object.fromEntries(columns.map((c) => [c.name, c.type])), EXPECTED_TYPES[format]);
    });

    test("reports the file's base name, row count, size and sha256", async () => {
      const { dir } = await snapshotDir();
      const target = partFile(dir, format);
      const info = await writeDataFile(format, target, RECORDS);

      const content = await readFile(target);
      assert.deepEqual(info, {
        file: `part-00000${FORMAT_EXTENSION[format]}`,
        rows: RECORDS.length,
        bytes: content.length,
        sha256: createHash('sha256').update(content).digest('hex'),
      });
    });

    test('leaves neither the target nor a temp file when the row source throws midway', async () => {
      const { dir } = await snapshotDir();
      const boom = new Error('source failed');
      // Enough rows that part of the file (a Parquet row group, CSV batches) was
      // already on disk when the source fails.
      function* failing(): Generator<AccessKeyRecord> {
        yield* manyRecords(20_000);
        throw boom;
      }

      await assert.rejects(writeDataFile(format, partFile(dir, format), failing()), (err) => err === boom);
      assert.deepEqual(await readdir(dir), []);
    });

    test('keeps an existing target byte for byte when rewriting it fails', async () => {
      const { dir } = await snapshotDir();
      const target = partFile(dir, format);
      const first = await writeDataFile(format, target, RECORDS);
      function* failing(): Generator<AccessKeyRecord> {
        yield RECORDS[0]!;
        throw new Error('source failed');
      }

      await assert.rejects(writeDataFile(format, target, failing()), /source failed/);
      assert.equal(await sha256Of(target), first.sha256);
      assert.deepEqual(await readdir(dir), [first.file]);
    });

    test('writes a file that DuckDB reads as zero rows when there are no records', async () => {
      const { out, dir } = await snapshotDir();
      const info = await writeDataFile(format, partFile(dir, format), []);

      assert.equal(info.rows, 0);
      const { rows } = await readSnapshotRows(out, format);
      assert.deepEqual(rows, []);
    });

    test('rejects a record that does not fit the schema, as INTERNAL, leaving no file', async () => {
      const { dir } = await snapshotDir();
      const bad = { ...RECORDS[0]!, key_age_days: 3.5 };

      await assert.rejects(
        writeDataFile(format, partFile(dir, format), [RECORDS[1]!, bad]),
        (err) => err instanceof ExportError && err.code === 'INTERNAL' && /record 1 .*key_age_days/.test(err.message),
      );
      assert.deepEqual(await readdir(dir), []);
    });

    test('fails with OUTPUT_IO naming the target when its directory does not exist', async () => {
      const { dir } = await snapshotDir();
      const target = join(dir, 'missing', `part-00000${FORMAT_EXTENSION[format]}`);

      await assert.rejects(
        writeDataFile(format, target, RECORDS),
        (err) => err instanceof ExportError && err.code === 'OUTPUT_IO' && err.context.file === target,
      );
    });
  });
}

describe('a csv file', () => {
  test('quotes only the fields that need it, doubles inner quotes and ends lines with LF', async () => {
    const { dir } = await snapshotDir();
    const target = partFile(dir, 'csv');
    await writeDataFile('csv', target, RECORDS.slice(0, 2));

    assert.equal(
      await readFile(target, 'utf8'),
      'snapshot_time,account_id,user_name,user_id,access_key_id,status,create_date,key_age_days,last_used_date,last_used_service,last_used_region,user_arn,user_path,user_create_date,days_since_last_used\n' +
        `2026-11-28T11:10:00.000Z,123456789012,alice,${RECORDS[0]!.user_id},AKIAALICE00000000001,Active,2015-01-01T00:00:00.000Z,4349,,,,arn:aws:iam::123456789012:user/alice,/,2014-06-01T00:00:00.000Z,\n` +
        `2026-11-28T11:10:00.000Z,123456789012,bob,${RECORDS[1]!.user_id},AKIABOB0000000000001,Inactive,2020-02-29T12:34:56.789Z,2464,2026-11-27T01:02:03.004Z,` +
        '"svc, with ""quotes""\nand a second line",us-east-1,arn:aws:iam::123456789012:user/bob,/,2014-06-01T00:00:00.000Z,\n',
    );
  });

  test('writes only the header row when there are no records', async () => {
    const { dir } = await snapshotDir();
    const target = partFile(dir, 'csv');
    await writeDataFile('csv', target, []);

    assert.equal(
      await readFile(target, 'utf8'),
      'snapshot_time,account_id,user_name,user_id,access_key_id,status,create_date,key_age_days,last_used_date,last_used_service,last_used_region,user_arn,user_path,user_create_date,days_since_last_used\n',
    );
  });

  test('keeps an empty string distinct from null, for readers that tell them apart', async () => {
    const { dir } = await snapshotDir();
    const target = partFile(dir, 'csv');
    await writeDataFile('csv', target, [{ ...RECORDS[1]!, last_used_service: '', last_used_region: null }]);

    assert.match(await readFile(target, 'utf8'), /,2026-11-27T01:02:03\.004Z,"",,arn:aws:iam::123456789012:user\/bob,\/,2014-06-01T00:00:00\.000Z,\n$/);
    // DuckDB makes the difference only when asked to (by default "" is NULL too).
    const { rows } = await queryDuckDb(
      `select last_used_service, last_used_region from read_csv('${target}', header = true, allow_quoted_nulls = false)`,
    );
    assert.deepEqual(rows, [{ last_used_service: '', last_used_region: null }]);
  });
});

describe('a parquet file', () => {
  test('writes a file of zero rows that still carries the typed schema', async () => {
    const { dir } = await snapshotDir();
    const target = partFile(dir, 'parquet');
    await writeDataFile('parquet', target, []);

    const { rows } = await queryDuckDb(`select name, type, converted_type, repetition_type from parquet_schema('${target}') where name <> 'root'`);
    assert.deepEqual(rows.slice(6, 9), [
      { name: 'create_date', type: 'INT64', converted_type: 'TIMESTAMP_MILLIS', repetition_type: 'REQUIRED' },
      { name: 'key_age_days', type: 'INT32', converted_type: null, repetition_type: 'REQUIRED' },
      { name: 'last_used_date', type: 'INT64', converted_type: 'TIMESTAMP_MILLIS', repetition_type: 'OPTIONAL' },
    ]);
    assert.equal(rows.length, 15);
  });
});
