/**
 * DuckDB: a view over the dataset's files, read where they are (local disk, or
 * s3:// through DuckDB's httpfs extension). Every published snapshot is one
 * `snapshot_id=<id>/` folder; DuckDB takes the partition value from the folder
 * name and combines files of different schema versions by column name.
 */
import { oneLine, tableColumns, type TableModel } from '../model.ts';
import { SQL_TYPES } from '../types.ts';
import { header, list, standardLiteral } from '../sql.ts';

/** The DuckDB DDL of `model`. */
export function renderDuckDb(model: TableModel): string {
  const types = SQL_TYPES.duckdb;
  const columns = tableColumns(model);
  const glob = standardLiteral(`${model.datasetUri}/*/*${model.extension}`);
  const p = model.partition;
  const hive = p === undefined ? [] : ['hive_partitioning = true', `hive_types = {${standardLiteral(p.name)}: ${types[p.type]}}`];
  // union_by_name: a v1 file and a v2 file differ in columns; matched by name,
  // a column a file lacks reads as NULL.
  const options =
    model.format === 'parquet'
      ? [glob, ...hive, 'union_by_name = true']
      : [
          glob,
          'header = true',
          "delim = ','",
          `quote = '"'`,
          `escape = '"'`,
          // "" stays an empty string, as the export wrote it; null is the empty field.
          'allow_quoted_nulls = false',
          ...hive,
          'union_by_name = true',
          // By name, not `columns = {...}` (by position): v1 and v2 files have
          // different headers. Every column of every version is typed, so the
          // sniffer guesses none (it would make account_id a BIGINT).
          `types = {${model.fileColumnsOfAllVersions.map((c) => `${standardLiteral(c.name)}: ${standardLiteral(types[c.type])}`).join(', ')}}`,
        ];
  const reader = model.format === 'parquet' ? 'read_parquet' : 'read_csv';
  const comments = [
    `COMMENT ON VIEW ${model.table} IS ${standardLiteral(oneLine(model.schema.description))};`,
    ...columns.map((c) => `COMMENT ON COLUMN ${model.table}.${c.name} IS ${standardLiteral(oneLine(c.description))};`),
  ];
  return [
    header(model, [
      `A view over every published snapshot under ${model.datasetUri}/ (one snapshot_id=<id>/ folder each);`,
      'files of schema versions 1 and 2 are read together by column name (a column a file lacks is NULL).',
      'The view binds to the files when created: create it after the first export.',
      ...(p === undefined ? [] : [`Latest snapshot only: WHERE ${p.name} = (SELECT max(${p.name}) FROM ${model.table}).`]),
      ...(model.datasetUri.startsWith('s3://')
        ? ['s3://: DuckDB loads httpfs by itself; give it credentials first, e.g. CREATE SECRET (TYPE s3, PROVIDER credential_chain);']
        : []),
    ]),
    `CREATE OR REPLACE VIEW ${model.table} AS`,
    'SELECT',
    list(columns.map((c) => `CAST(${c.name} AS ${types[c.type]}) AS ${c.name}`)),
    `FROM ${reader}(`,
    list(options),
    ');',
    '',
    ...comments,
    '',
  ].join('\n');
}
