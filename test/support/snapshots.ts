/**
 * Dataset roots built by hand for the DDL and query tests: snapshot folders of
 * v1 rows (through the pipeline's sinks, which write v1 today) and of v2 rows
 * (the Parquet sink's encoder with the v2 columns; CSV as the CSV sink writes it).
 */
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { stringify } from 'csv-stringify';
import type { AccessKeyRecord as RecordV1 } from '../../pipeline/record.v1.generated.ts';
import type { AccessKeyRecord as RecordV2 } from '../../pipeline/record.generated.ts';
import { FORMAT_EXTENSION, writeDataFile, type Format } from '../../pipeline/sinks/index.ts';
import { parquetEncoder } from '../../pipeline/sinks/parquet.ts';
import { schemaSpec } from '../../pipeline/schema-spec.ts';

export type { RecordV1, RecordV2 };

export const DAY_MS = 86_400_000;

/** Whole days from `from` to `to`, floor, never negative: how the pipeline counts ages. */
export function wholeDays(from: Date, to: Date): number {
  return Math.max(0, Math.floor((to.getTime() - from.getTime()) / DAY_MS));
}

/** A v2 row from the fields a test cares about; the day counts derived, the rest filled in. */
export function v2Row(
  fields: Pick<RecordV2, 'snapshot_time' | 'account_id' | 'user_name' | 'user_id' | 'access_key_id' | 'status' | 'create_date'> & Partial<RecordV2>,
): RecordV2 {
  const lastUsed = fields.last_used_date ?? null;
  return {
    key_age_days: wholeDays(fields.create_date, fields.snapshot_time),
    last_used_date: lastUsed,
    last_used_service: lastUsed === null ? null : 's3',
    last_used_region: lastUsed === null ? null : 'us-east-1',
    user_arn: `arn:aws:iam::${fields.account_id}:user/${fields.user_name}`,
    user_path: '/',
    user_create_date: new Date('2014-06-01T00:00:00.000Z'),
    days_since_last_used: lastUsed === null ? null : wholeDays(lastUsed, fields.snapshot_time),
    ...fields,
  };
}

/** Temp directories for one test file: `make` one, `removeAll` in its `after` hook. */
export class TempRoots {
  readonly #dirs: string[] = [];

  /** A fresh empty directory. */
  async make(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'ddl-test-'));
    this.#dirs.push(dir);
    return dir;
  }

  async removeAll(): Promise<void> {
    await Promise.all(this.#dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  }
}

async function snapshotFile(root: string, snapshotId: string, format: Format): Promise<string> {
  const dir = join(root, 'access_keys', `snapshot_id=${snapshotId}`);
  await mkdir(dir, { recursive: true });
  return join(dir, `part-00000${FORMAT_EXTENSION[format]}`);
}

/** CSV options of pipeline/sinks/csv.ts (not exported) for other columns than the pipeline's. */
function csvEncoder(columns: readonly { readonly name: string }[]) {
  return stringify({
    header: true,
    columns: columns.map((c) => c.name),
    record_delimiter: 'unix',
    quote_record_delimiter: true,
    cast: {
      date: (value) => value.toISOString(),
      string: (value) => (value === '' ? { value, quoted_empty: true } : value),
    },
  });
}

/**
 * Writes a v1 snapshot folder under `root` (snapshot_id a column inside the file,
 * as v1 did); returns the file. Parquet through the sink's encoder with the v1
 * columns, CSV through csv-stringify with the sink's options.
 */
export async function writeV1Snapshot(root: string, snapshotId: string, format: Format, rows: readonly RecordV1[]): Promise<string> {
  const file = await snapshotFile(root, snapshotId, format);
  const columns = schemaSpec(1).columns;
  const encoder = format === 'parquet' ? parquetEncoder<RecordV1>(columns) : csvEncoder(columns);
  await pipeline(Readable.from(rows), encoder, createWriteStream(file));
  return file;
}

/** Writes a v2 snapshot folder under `root` with the pipeline's own sink (what an export writes); returns the file. */
export async function writeV2Snapshot(root: string, snapshotId: string, format: Format, rows: readonly RecordV2[]): Promise<string> {
  const file = await snapshotFile(root, snapshotId, format);
  await writeDataFile(format, file, rows, { metadata: { snapshot_id: snapshotId, schema_version: '2' } });
  return file;
}

/** A record as queryDuckDb returns it: timestamps as ISO strings. */
export function plain(row: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]));
}
