/**
 * Runtime view of the record schema (schemas/access_keys.v1.json). The CSV header,
 * the Parquet schema and the run-file codec are all derived from `COLUMNS`; the
 * TypeScript type comes from the same file through schemas/generate.ts.
 */
import schemaJson from '../schemas/access_keys.v1.json' with { type: 'json' };
import type { AccessKeyRecord } from './record.generated.ts';

export type { AccessKeyRecord } from './record.generated.ts';
export { SCHEMA_VERSION } from './record.generated.ts';

export type ColumnType = 'string' | 'timestamp' | 'int32';

export interface Column {
  readonly name: keyof AccessKeyRecord;
  readonly type: ColumnType;
  readonly nullable: boolean;
  readonly description: string;
}

export const SCHEMA_NAME: string = schemaJson.name;
export const COLUMNS: readonly Column[] = schemaJson.columns as Column[];
export const COLUMN_NAMES: readonly (keyof AccessKeyRecord)[] = COLUMNS.map((c) => c.name);

/** Orders records by the published sort key (account_id, user_name, access_key_id). */
export function compareRecords(a: AccessKeyRecord, b: AccessKeyRecord): number {
  return cmp(a.account_id, b.account_id) || cmp(a.user_name, b.user_name) || cmp(a.access_key_id, b.access_key_id);
}

// Code-unit order, not locale order: the same bytes sort the same on every machine,
// and it matches DuckDB's and Spark's default ordering of ASCII strings.
function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
