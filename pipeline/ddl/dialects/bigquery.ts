/**
 * BigQuery: an external table over the dataset in Cloud Storage with Hive
 * partitioning: the partition column comes from the `snapshot_id=<id>/` folder
 * names under `hive_partition_uri_prefix`, declared in WITH PARTITION COLUMNS.
 * The URIs end in the data files' extension so that `_manifest.json` and
 * `_SUCCESS` are not read as data. Queries see new snapshots without a refresh.
 */
import { oneLine, tableColumns, type TableModel } from '../model.ts';
import { SQL_TYPES } from '../types.ts';
import { backslashLiteral, header, list } from '../sql.ts';

/** The BigQuery DDL of `model`. */
export function renderBigQuery(model: TableModel): string {
  const types = SQL_TYPES.bigquery;
  const columns = tableColumns(model);
  const p = columns.find((c) => c.isPartition);
  const formatOptions =
    model.format === 'parquet'
      ? ["format = 'PARQUET'"]
      : ["format = 'CSV'", 'skip_leading_rows = 1', 'allow_quoted_newlines = true'];
  return [
    header(model, [
      `Reads ${model.datasetUri}/ where it is; new snapshots appear without a refresh.`,
      ...(model.format === 'csv' ? ['CSV columns are matched by position: keep one schema version per dataset root.'] : []),
      ...(p === undefined ? [] : [`Latest snapshot only: WHERE ${p.name} = (SELECT max(${p.name}) FROM ${model.table}).`]),
    ]),
    `CREATE OR REPLACE EXTERNAL TABLE \`${model.table}\` (`,
    list(columns.filter((c) => !c.isPartition).map((c) => `${c.name} ${types[c.type]}`)),
    ')',
    ...(p === undefined ? [] : ['WITH PARTITION COLUMNS (', list([`${p.name} ${types[p.type]}`]), ')']),
    'OPTIONS (',
    list([
      ...formatOptions,
      `uris = [${backslashLiteral(`${model.datasetUri}/*${model.extension}`)}]`,
      ...(p === undefined ? [] : [`hive_partition_uri_prefix = ${backslashLiteral(model.datasetUri)}`, 'require_hive_partition_filter = false']),
      `description = ${backslashLiteral(oneLine(model.schema.description))}`,
    ]),
    ');',
    '',
  ].join('\n');
}
