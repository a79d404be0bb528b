import assert from 'node:assert/strict';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, test } from 'node:test';
import parquet, { type ParquetValue } from 'parquetjs-lite';
import type { AccessKeyRecord } from '../pipeline/record.generated.ts';
import type { AccessKeyRecord as AccessKeyRecordV2 } from '../pipeline/record.generated.ts';
import thrift from 'parquetjs-lite/gen-nodejs/parquet_types.js';
import thriftCodec from 'parquetjs-lite/lib/util.js';
import { parquetEncoder, parquetSchema, WRITER_OPTIONS, type ParquetColumn } from '../pipeline/sinks/parquet.ts';
import { writeDataFile } from '../pipeline/sinks/index.ts';

import { ACCOUNTS_SPEC, schemaSpec } from '../pipeline/schema-spec.ts';
import { queryDuckDb } from './support/duckdb.ts';

/** The sink as the pipeline calls it, for a file path. */
const writeParquetFile = (file: string, rows: readonly AccessKeyRecord[], options = {}) => writeDataFile('parquet', file, rows, options);

const SNAPSHOT_TIME = new Date('2026-11-28T11:10:00.000Z');

const RECORDS: readonly AccessKeyRecord[] = [
  {
    snapshot_time: SNAPSHOT_TIME,
    account_id: '012345678901',
    user_name: 'alice',
    user_id: 'AIDAALICE000000000000',
    access_key_id: 'AKIAALICE00000000001',
    status: 'Active',
    create_date: new Date('2015-01-01T00:00:00.000Z'),
    key_age_days: 4349,
    last_used_date: null,
    last_used_service: null,
    last_used_region: null,
    user_arn: 'arn:aws:iam::012345678901:user/alice',
    user_path: '/',
    user_create_date: new Date('2014-12-31T00:00:00.000Z'),
    days_since_last_used: null,
  },
  {
    snapshot_time: SNAPSHOT_TIME,
    account_id: '012345678901',
    user_name: 'bob',
    user_id: 'AIDABOB00000000000000',
    access_key_id: 'AKIABOB0000000000001',
    status: 'Inactive',
    create_date: new Date('2020-02-29T12:34:56.789Z'),
    key_age_days: 2464,
    last_used_date: new Date('2026-11-27T01:02:03.004Z'),
    last_used_service: 's3',
    last_used_region: 'us-east-1',
    user_arn: 'arn:aws:iam::012345678901:user/bob',
    user_path: '/ops/',
    user_create_date: new Date('2019-05-01T08:00:00.000Z'),
    days_since_last_used: 1,
  },
];

const UTC_MILLIS = 'TimestampType(isAdjustedToUTC=1, unit=TimeUnit(MILLIS=MilliSeconds(), MICROS=<null>, NANOS=<null>))';

const tempDirs: string[] = [];
after(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempFile(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'parquet-footer-test-'));
  tempDirs.push(dir);
  return join(dir, name);
}

function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

describe('the footer of a parquet file', () => {
  test('marks every timestamp column TIMESTAMP(isAdjustedToUTC=true, MILLIS) and keeps the legacy TIMESTAMP_MILLIS', async () => {
    const file = await tempFile('part-00000.parquet');
    await writeParquetFile(file, RECORDS);

    const { rows } = await queryDuckDb(`select name, type, converted_type, logical_type from parquet_schema(${sqlString(file)}) where name <> 'root'`);
    const timestamps = rows.filter((r) => r.type === 'INT64');
    assert.deepEqual(
      timestamps.map((r) => r.name),
      ['snapshot_time', 'create_date', 'last_used_date', 'user_create_date'],
    );
    for (const r of timestamps) assert.deepEqual([r.converted_type, r.logical_type], ['TIMESTAMP_MILLIS', UTC_MILLIS], String(r.name));
    // The other columns are as the library wrote them: no logical type added.
    for (const r of rows.filter((row) => row.type !== 'INT64')) assert.equal(r.logical_type, null, String(r.name));
  });

  test('makes DuckDB type the timestamps TIMESTAMP WITH TIME ZONE with the same instants', async () => {
    const file = await tempFile('part-00000.parquet');
    await writeParquetFile(file, RECORDS);

    const { columns, rows } = await queryDuckDb(`select snapshot_time, create_date, last_used_date from read_parquet(${sqlString(file)})`);
    assert.deepEqual(
      columns.map((c) => c.type),
      ['TIMESTAMP WITH TIME ZONE', 'TIMESTAMP WITH TIME ZONE', 'TIMESTAMP WITH TIME ZONE'],
    );
    assert.deepEqual(
      rows,
      RECORDS.map((r) => ({
        snapshot_time: r.snapshot_time.toISOString(),
        create_date: r.create_date.toISOString(),
        last_used_date: r.last_used_date?.toISOString() ?? null,
      })),
    );
  });

  test("is decoded by parquetjs-lite's own reader with the logical type on the timestamp columns only", async () => {
    const file = await tempFile('part-00000.parquet');
    await writeParquetFile(file, RECORDS);

    // rawStatistics: the 0.8.7 reader cannot decode the INT64 statistics of its
    // own timestamp columns (a BigInt meets `+value`); values are checked with DuckDB.
    const reader = await parquet.ParquetReader.openFile(file, { rawStatistics: true });
    try {
      const marked = reader.metadata.schema
        .filter((e) => e.logicalType !== null)
        .map((e) => [e.name, e.logicalType?.TIMESTAMP?.isAdjustedToUTC, e.logicalType?.TIMESTAMP?.unit?.MILLIS !== null]);
      assert.deepEqual(marked, [
        ['snapshot_time', true, true],
        ['create_date', true, true],
        ['last_used_date', true, true],
        ['user_create_date', true, true],
      ]);
    } finally {
      await reader.close();
    }
  });

  test('carries the key-value metadata it was given', async () => {
    const file = await tempFile('part-00000.parquet');
    await writeParquetFile(file, RECORDS, { metadata: { snapshot_id: '20261128T111000Z', schema_version: '2' } });

    const { rows } = await queryDuckDb(`select decode(key) as key, decode(value) as value from parquet_kv_metadata(${sqlString(file)}) order by key`);
    assert.deepEqual(rows, [
      { key: 'schema_version', value: '2' },
      { key: 'snapshot_id', value: '20261128T111000Z' },
    ]);
    const reader = await parquet.ParquetReader.openFile(file, { rawStatistics: true });
    try {
      assert.deepEqual(reader.getMetadata(), { snapshot_id: '20261128T111000Z', schema_version: '2' });
    } finally {
      await reader.close();
    }
  });

  test('has no key-value metadata when none was given', async () => {
    const file = await tempFile('part-00000.parquet');
    await writeParquetFile(file, RECORDS);

    const { rows } = await queryDuckDb(`select * from parquet_kv_metadata(${sqlString(file)})`);
    assert.deepEqual(rows, []);
  });

  test('of a file with zero rows still carries the logical type', async () => {
    const file = await tempFile('part-00000.parquet');
    await writeParquetFile(file, []);

    const { rows } = await queryDuckDb(`select count(*) as n from parquet_schema(${sqlString(file)}) where logical_type = ${sqlString(UTC_MILLIS)}`);
    assert.deepEqual(rows, [{ n: 4 }]);
  });

  test('of a v2 file written with parquetEncoder has the v2 columns and no snapshot_id', async () => {
    const file = await tempFile('part-00000.parquet');
    const v2 = schemaSpec(2);
    const row: AccessKeyRecordV2 = {
      snapshot_time: SNAPSHOT_TIME,
      account_id: '012345678901',
      user_name: 'alice',
      user_id: 'AIDAALICE000000000000',
      access_key_id: 'AKIAALICE00000000001',
      status: 'Active',
      create_date: new Date('2015-01-01T00:00:00.000Z'),
      key_age_days: 4349,
      last_used_date: null,
      last_used_service: null,
      last_used_region: null,
      user_arn: 'arn:aws:iam::012345678901:user/alice',
      user_path: '/',
      user_create_date: new Date('2014-12-31T00:00:00.000Z'),
      days_since_last_used: null,
    };
    await pipeline(Readable.from([row]), parquetEncoder<AccessKeyRecordV2>(v2.columns), createWriteStream(file));

    const { columns } = await queryDuckDb(`select * from read_parquet(${sqlString(file)})`);
    assert.deepEqual(
      columns.map((c) => c.name),
      v2.columns.map((c) => c.name),
    );
    assert.equal(columns.find((c) => c.name === 'user_create_date')?.type, 'TIMESTAMP WITH TIME ZONE');
  });
});

/** A row of any dataset's schema. */
type Row = Record<string, ParquetValue>;

/** The file parquetEncoder writes of `rows`, in memory. */
async function ourFile(columns: readonly ParquetColumn[], rows: readonly Row[], metadata?: Record<string, string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of parquetEncoder<Row>(columns, metadata ? { metadata } : {})(Readable.from(rows))) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** The file the library alone writes of `rows` with the same schema and options (its own footer), in memory. */
async function libraryFile(columns: readonly ParquetColumn[], rows: readonly Row[], metadata?: Record<string, string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const schema = parquetSchema(columns);
  const envelope = new parquet.ParquetEnvelopeWriter(schema, async (chunk) => void chunks.push(chunk), async () => undefined, 0, WRITER_OPTIONS);
  const writer = new parquet.ParquetWriter(schema, envelope, WRITER_OPTIONS);
  for (const [key, value] of Object.entries(metadata ?? {})) writer.setMetadata(key, value);
  for (const row of rows) await writer.appendRow(row);
  await writer.close();
  return Buffer.concat(chunks);
}

/** A file cut into what precedes its footer, and its FileMetaData's bytes. */
function split(file: Buffer): { body: Buffer; metadata: Buffer } {
  assert.equal(file.toString('latin1', file.length - 4), 'PAR1');
  const length = file.readUInt32LE(file.length - 8);
  return { body: file.subarray(0, file.length - 8 - length), metadata: file.subarray(file.length - 8 - length, file.length - 8) };
}

/** The oracle: the library's FileMetaData with the UTC logical type added to every TIMESTAMP_MILLIS column, re-encoded by the library. */
function withUtcTimestamps(metadataBytes: Buffer): Buffer {
  const metadata = new thrift.FileMetaData();
  thriftCodec.decodeThrift(metadata, metadataBytes);
  assert.deepEqual(thriftCodec.serializeThrift(metadata), metadataBytes, 'the library footer round-trips through its own codec');
  for (const element of metadata.schema) {
    if (element.converted_type === thrift.ConvertedType.TIMESTAMP_MILLIS) {
      element.logicalType = new thrift.LogicalType({
        TIMESTAMP: new thrift.TimestampType({ isAdjustedToUTC: true, unit: new thrift.TimeUnit({ MILLIS: new thrift.MilliSeconds() }) }),
      });
    }
  }
  return thriftCodec.serializeThrift(metadata);
}

/** `n` distinct access key rows (schema v2), some with a last use and some without. */
function manyRows(n: number): Row[] {
  return Array.from({ length: n }, (_, i): Row => {
    const base = RECORDS[i % RECORDS.length]!;
    const id = String(i).padStart(6, '0');
    return { ...base, user_name: `${base.user_name}-${id}`, user_id: `AIDA${id}${base.user_id.slice(10)}`, access_key_id: `AKIA${id}${base.access_key_id.slice(10)}`, key_age_days: i };
  });
}

describe("the footer parquetEncoder writes is the library's own with the UTC logical type added", () => {
  const v2 = schemaSpec(2).columns;
  const account: Row = { snapshot_time: SNAPSHOT_TIME, account_id: '012345678901', account_name: null, account_alias: 'prod', root_access_keys_present: false, users_exported: 2, users_vanished: 0, users_failed: 0, keys_exported: 2, outcome: 'complete', error_code: null };
  const cases: [string, readonly ParquetColumn[], readonly Row[], Record<string, string> | undefined][] = [
    ['zero rows', v2, [], undefined],
    ['two rows, no metadata', v2, RECORDS.map((r) => ({ ...r })), undefined],
    // Booleans and more nullable columns.
    ['the accounts dataset, with metadata', ACCOUNTS_SPEC.columns, [account], { snapshot_id: '20261128T111000Z', schema_version: '1' }],
    // Several row groups (1,024 rows each) and the last one short: what the footer lists grows with the file.
    ['3,000 rows in three row groups, with metadata', v2, manyRows(3000), { snapshot_id: '20261128T111000Z', schema_version: '2' }],
  ];
  for (const [name, columns, rows, metadata] of cases) {
    test(name, async () => {
      const ours = split(await ourFile(columns, rows, metadata));
      const library = split(await libraryFile(columns, rows, metadata));
      assert.ok(ours.body.equals(library.body), 'the pages and row groups are the library\'s bytes');
      assert.ok(ours.metadata.equals(withUtcTimestamps(library.metadata)), 'the footer is the library\'s with the logical type added');
    });
  }
});
