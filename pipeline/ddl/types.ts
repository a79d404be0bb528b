/**
 * The one per-dialect decision about columns: which SQL type each logical type
 * of schemas/ becomes. Templates and the README's type table both read it, so
 * the two cannot disagree.
 */
import type { ColumnType } from '../schema-spec.ts';

/** The SQL dialects `iam-key-export ddl` writes, in the order `--help` lists them. */
export const DIALECTS = ['duckdb', 'postgres', 'athena', 'bigquery', 'snowflake'] as const;

/** A SQL dialect (`--dialect`). */
export type Dialect = (typeof DIALECTS)[number];

/** Names for people (README, comments in the generated SQL). */
export const DIALECT_NAMES: Readonly<Record<Dialect, string>> = {
  duckdb: 'DuckDB',
  postgres: 'PostgreSQL',
  athena: 'Athena',
  bigquery: 'BigQuery',
  snowflake: 'Snowflake',
};

/**
 * SQL type of each logical type, per dialect. Timestamps are instants (UTC), so
 * each dialect gets its instant type where it has one: TIMESTAMPTZ, timestamptz,
 * BigQuery's TIMESTAMP, Snowflake's TIMESTAMP_LTZ (what Parquet's
 * isAdjustedToUTC=true maps to there). Athena's Parquet reader has only
 * `timestamp`, which holds the UTC wall-clock time. account_id is a string
 * everywhere: it is a string in the schema, so no dialect sees a number.
 */
export const SQL_TYPES: Readonly<Record<Dialect, Readonly<Record<ColumnType, string>>>> = {
  duckdb: { string: 'VARCHAR', timestamp: 'TIMESTAMPTZ', int32: 'INTEGER', boolean: 'BOOLEAN' },
  postgres: { string: 'text', timestamp: 'timestamptz', int32: 'integer', boolean: 'boolean' },
  athena: { string: 'string', timestamp: 'timestamp', int32: 'int', boolean: 'boolean' },
  bigquery: { string: 'STRING', timestamp: 'TIMESTAMP', int32: 'INT64', boolean: 'BOOL' },
  snowflake: { string: 'VARCHAR', timestamp: 'TIMESTAMP_LTZ', int32: 'INTEGER', boolean: 'BOOLEAN' },
};

/**
 * Athena reads CSV with OpenCSVSerde, which parses a timestamp only from epoch
 * milliseconds and fails on an empty number, so the CSV table declares every
 * column `string` and a view converts: these are the view's types.
 */
export const ATHENA_CSV_VIEW_TYPES: Readonly<Record<ColumnType, string>> = {
  string: 'varchar',
  timestamp: 'timestamp(3) with time zone',
  int32: 'integer',
  boolean: 'boolean',
};
