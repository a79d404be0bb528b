/**
 * Reads published files back the way a warehouse would, with DuckDB: tests assert
 * on what a reader sees (types, nulls, values), not on our own bytes.
 */
import { DuckDBInstance, type JS } from '@duckdb/node-api';
import { join } from 'node:path';
import { FORMAT_EXTENSION, type Format } from '../../pipeline/sinks/index.ts';

/** A column as DuckDB typed it, e.g. `{ name: 'key_age_days', type: 'INTEGER' }`. */
export interface QueryColumn {
  readonly name: string;
  readonly type: string;
}

/** A query's result as plain JS: timestamps as ISO strings, integers as numbers. */
export interface QueryResult {
  readonly columns: QueryColumn[];
  readonly rows: Record<string, unknown>[];
}

/**
 * Runs `sql` on a fresh in-memory DuckDB and returns the whole result as plain
 * JS. The connection and the instance are closed before returning, even when the
 * query fails, so a test process that used DuckDB still exits on its own.
 */
export async function queryDuckDb(sql: string): Promise<QueryResult> {
  const instance = await DuckDBInstance.create(':memory:');
  try {
    const connection = await instance.connect();
    try {
      const reader = await connection.runAndReadAll(sql);
      const names = reader.columnNames();
      const types = reader.columnTypes();
      return {
        columns: names.map((name, i) => ({ name, type: String(types[i]) })),
        rows: reader.getRowObjectsJS().map(toPlainRow),
      };
    } finally {
      connection.closeSync();
    }
  } finally {
    instance.closeSync();
  }
}

/**
 * Reads every data file of the snapshots under `outDir` (`access_keys/<partition>/*`),
 * with Hive partitioning as a warehouse would, in file order (no ORDER BY: tests
 * check the order we wrote). CSV types are DuckDB's auto-detection.
 */
export function readSnapshotRows(outDir: string, format: Format): Promise<QueryResult> {
  const glob = sqlString(join(outDir, 'access_keys', '*', `*${FORMAT_EXTENSION[format]}`));
  const scan =
    format === 'parquet'
      ? `read_parquet(${glob}, hive_partitioning = true)`
      : `read_csv(${glob}, header = true, hive_partitioning = true)`;
  return queryDuckDb(`select * from ${scan}`);
}

function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

function toPlainRow(row: Record<string, JS>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).map(([name, value]) => [name, toPlain(value)]));
}

function toPlain(value: JS): unknown {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'bigint') {
    // A number only where it is exact; beyond 2^53 the string keeps every digit.
    return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  }
  return value;
}
