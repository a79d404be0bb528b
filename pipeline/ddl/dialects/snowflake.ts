/**
 * Snowflake: an external stage on the dataset's folder and an external table
 * over it. Every column is an expression on the row's VALUE (by name in Parquet,
 * by position c1, c2, ... in CSV), and the partition column one on
 * METADATA$FILENAME, the file's path, which holds the `snapshot_id=<id>/` folder.
 * The table's file list is refreshed by `ALTER EXTERNAL TABLE ... REFRESH` after
 * each export (AUTO_REFRESH would need the bucket's event notifications).
 */
import { oneLine, tableColumns, type TableColumn, type TableModel } from '../model.ts';
import { SQL_TYPES } from '../types.ts';
import { header, list, snowflakeLiteral } from '../sql.ts';

/** Name of the storage integration the stage uses; created once by an account admin. */
export const SNOWFLAKE_STORAGE_INTEGRATION = 'iam_key_export';

/** The Snowflake DDL of `model`. */
export function renderSnowflake(model: TableModel): string {
  const types = SQL_TYPES.snowflake;
  const stage = `${model.tableBase}_stage`;
  const columns = tableColumns(model);
  const p = columns.find((c) => c.isPartition);
  const position = new Map(model.columns.map((c, i) => [c.name, i + 1]));
  const valueOf = (c: TableColumn): string => {
    if (c.isPartition) return `SPLIT_PART(SPLIT_PART(METADATA$FILENAME, ${snowflakeLiteral(`${c.name}=`)}, 2), '/', 1)`;
    const field = model.format === 'parquet' ? `value:${c.name}` : `value:c${position.get(c.name)}`;
    return `${field}::${types[c.type]}`;
  };
  // Parquet: USE_LOGICAL_TYPE reads TIMESTAMP(isAdjustedToUTC=true) as the instant
  // it is. CSV: quoted fields, "" an empty string and the empty field NULL, as written.
  const fileFormat =
    model.format === 'parquet'
      ? 'TYPE = PARQUET USE_LOGICAL_TYPE = TRUE'
      : `TYPE = CSV SKIP_HEADER = 1 FIELD_OPTIONALLY_ENCLOSED_BY = '"' EMPTY_FIELD_AS_NULL = TRUE NULL_IF = ()`;
  return [
    header(model, [
      `The stage ${stage} reads ${model.datasetUri}/ through the storage integration ${SNOWFLAKE_STORAGE_INTEGRATION}`,
      '(CREATE STORAGE INTEGRATION, once, by an account admin; or name yours in the stage).',
      `After each export: ALTER EXTERNAL TABLE ${model.table} REFRESH;`,
      ...(model.format === 'csv' ? ['CSV columns are matched by position: keep one schema version per dataset root.'] : []),
    ]),
    `CREATE STAGE IF NOT EXISTS ${stage}`,
    `  URL = ${snowflakeLiteral(`${model.datasetUri}/`)}`,
    `  STORAGE_INTEGRATION = ${SNOWFLAKE_STORAGE_INTEGRATION};`,
    '',
    `CREATE OR REPLACE EXTERNAL TABLE ${model.table} (`,
    list(columns.map((c) => `${c.name} ${types[c.type]} AS (${valueOf(c)})`)),
    ')',
    ...(p === undefined ? [] : [`PARTITION BY (${p.name})`]),
    `LOCATION = @${stage}`,
    'REFRESH_ON_CREATE = TRUE',
    'AUTO_REFRESH = FALSE',
    `PATTERN = ${snowflakeLiteral(`.*[.]${model.extension.slice(1)}`)}`,
    `FILE_FORMAT = (${fileFormat})`,
    `COMMENT = ${snowflakeLiteral(oneLine(model.schema.description))};`,
    '',
  ].join('\n');
}
