/**
 * Runtime view of the record schema the pipeline writes (the latest in schemas/).
 * The CSV header, the Parquet schema and the run-file codec are all derived from
 * `COLUMNS`; the TypeScript type comes from the same file through
 * schemas/generate.ts. `snapshot_id` is not a column: it is the partition, in the
 * folder name, the manifest and the Parquet key-value metadata.
 */
import { LATEST_SCHEMA_VERSION, schemaSpec, type ColumnType } from './schema-spec.ts';
import type { AccessKeyRecord } from './record.generated.ts';

export type { AccessKeyRecord } from './record.generated.ts';
export { SCHEMA_VERSION, PARTITION_COLUMN } from './record.generated.ts';

export type { ColumnType } from './schema-spec.ts';

export interface Column {
  readonly name: keyof AccessKeyRecord;
  readonly type: ColumnType;
  readonly nullable: boolean;
  readonly description: string;
}

const spec = schemaSpec(LATEST_SCHEMA_VERSION);

export const SCHEMA_NAME: string = spec.name;
export const COLUMNS: readonly Column[] = spec.columns as readonly Column[];
export const COLUMN_NAMES: readonly (keyof AccessKeyRecord)[] = COLUMNS.map((c) => c.name);

/** Orders records by the published sort key (account_id, user_name, access_key_id). */
export function compareRecords(a: AccessKeyRecord, b: AccessKeyRecord): number {
  return compareText(a.account_id, b.account_id) || compareText(a.user_name, b.user_name) || compareText(a.access_key_id, b.access_key_id);
}

/**
 * Code-unit order, not locale order: the same bytes sort the same on every machine,
 * and it matches DuckDB's and Spark's default ordering of ASCII strings.
 */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
