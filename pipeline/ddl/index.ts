/**
 * `iam-key-export ddl`: SQL that makes a warehouse read the exported dataset as
 * it is, generated from schemas/ (the columns, their types and descriptions, the
 * partition column): one type map (types.ts) and one small template per dialect
 * (dialects/). Nothing here is written by hand per column.
 */
import { renderAthena } from './dialects/athena.ts';
import { renderBigQuery } from './dialects/bigquery.ts';
import { renderDuckDb } from './dialects/duckdb.ts';
import { renderPostgres } from './dialects/postgres.ts';
import { renderSnowflake } from './dialects/snowflake.ts';
import { tableModel, type DdlOptions, type TableModel } from './model.ts';
import type { Dialect } from './types.ts';

export { DDL_HELP, DDL_OPTIONS, parseDdlCommand, type DdlCommand } from './args.ts';
export { DEFAULT_LOCATION, problemsWith, type DdlOptions, type UncheckedDdlOptions } from './model.ts';
export { renderTypeTable } from './table.ts';
export { DIALECT_NAMES, DIALECTS, SQL_TYPES, type Dialect } from './types.ts';

const TEMPLATES: Readonly<Record<Dialect, (model: TableModel) => string>> = {
  duckdb: renderDuckDb,
  postgres: renderPostgres,
  athena: renderAthena,
  bigquery: renderBigQuery,
  snowflake: renderSnowflake,
};

/**
 * The DDL for `options.dialect` over the dataset at `options.location`, as SQL
 * text ending in a newline. Throws CONFIG_INVALID (every problem, one per line)
 * when the options do not fit together, e.g. Athena without an s3:// location.
 */
export function renderDdl(options: DdlOptions): string {
  const model = tableModel(options);
  return TEMPLATES[model.dialect](model);
}
