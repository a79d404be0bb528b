/**
 * Athena: an external table over the dataset's S3 prefix, partitioned by the
 * folder name, with the published snapshots registered by MSCK REPAIR TABLE.
 *
 * Why not partition projection: a snapshot id is a start time to the second
 * (20261128T111000Z), so a `date` projection would have to enumerate every
 * second of its range (about 31.5 million candidate partitions a year), and an
 * `injected` one only answers queries that name the snapshot ids with `=`: no
 * per-snapshot counts, no "latest snapshot". Registered partitions answer any
 * query; the price is one MSCK REPAIR TABLE (or ADD PARTITION) per export.
 *
 * Athena skips files whose names start with `_` (the manifest, _SUCCESS).
 */
import { oneLine, tableColumns, type TableColumn, type TableModel } from '../model.ts';
import { ATHENA_CSV_VIEW_TYPES, SQL_TYPES } from '../types.ts';
import { backslashLiteral, header, list } from '../sql.ts';

/** The Athena DDL of `model`. */
export function renderAthena(model: TableModel): string {
  return model.format === 'parquet' ? parquetTable(model) : csvTableAndView(model);
}

function parquetTable(model: TableModel): string {
  const types = SQL_TYPES.athena;
  return [
    header(model, registerNotes(model.table, model)),
    externalTable(model, model.table, (c) => types[c.type], ['STORED AS PARQUET']),
    ...repair(model.table, model),
    '',
  ].join('\n');
}

/**
 * OpenCSVSerde is the CSV reader that honours quotes (a user name may hold a
 * comma); LazySimpleSerDe would split such a field. But OpenCSVSerde parses a
 * timestamp only from epoch milliseconds and fails on an empty number, so the
 * table `<table>_csv` declares every column string and the view `<table>`
 * converts them: ISO 8601 timestamps with from_iso8601_timestamp, integers with
 * CAST, and the empty field of a nullable column to NULL. Consequence: in Athena
 * an empty string and NULL are the same in the nullable string columns.
 */
function csvTableAndView(model: TableModel): string {
  const raw = `${model.table}_csv`;
  const columns = tableColumns(model);
  return [
    header(model, [
      `Athena reads CSV with OpenCSVSerde, which reads every column here as a string: the table ${raw}`,
      `holds the text, the view ${model.table} converts it (an empty field of a nullable column is NULL,`,
      'so an empty string reads as NULL too). Fields must not hold line breaks (OpenCSVSerde splits them).',
      'CSV columns are matched by position: keep one schema version per dataset root.',
      ...registerNotes(raw, model),
    ]),
    externalTable(model, raw, () => SQL_TYPES.athena.string, [
      "ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'",
      `WITH SERDEPROPERTIES ('separatorChar' = ',', 'quoteChar' = '"')`,
      'STORED AS TEXTFILE',
    ], ["'skip.header.line.count' = '1'"]),
    ...repair(raw, model),
    '',
    `CREATE OR REPLACE VIEW ${model.table} AS`,
    'SELECT',
    list(columns.map((c) => (fromText(c) === c.name ? c.name : `${fromText(c)} AS ${c.name}`))),
    `FROM ${raw};`,
    '',
  ].join('\n');
}

/** The statement registering the snapshots already published, when the table is partitioned. */
function repair(table: string, model: TableModel): string[] {
  return model.partition === undefined ? [] : ['', `MSCK REPAIR TABLE ${table};`];
}

/** How a registered partition keeps up with new snapshots. */
function registerNotes(table: string, model: TableModel): string[] {
  const p = model.partition;
  if (p === undefined) return [];
  return [
    `Partitioned by ${p.name} (the folder ${p.name}=<id>/); after each export register the new snapshot:`,
    `MSCK REPAIR TABLE ${table}; (scans the prefix) or, cheaper,`,
    `ALTER TABLE ${table} ADD IF NOT EXISTS PARTITION (${p.name} = '<id>');`,
    'Partition projection is not used: ids are start times to the second, too many for a date projection,',
    'and an injected projection would answer only queries that name the snapshot ids.',
    `To change the columns (a new schema version): DROP TABLE ${table} (the files stay), then run this again.`,
  ];
}

function externalTable(
  model: TableModel,
  name: string,
  typeOf: (c: TableColumn) => string,
  storage: readonly string[],
  properties: readonly string[] = [],
): string {
  const described = (c: TableColumn): string => `${c.name} ${typeOf(c)} COMMENT ${backslashLiteral(oneLine(c.description))}`;
  const columns = tableColumns(model);
  const p = columns.find((c) => c.isPartition);
  return [
    `CREATE EXTERNAL TABLE IF NOT EXISTS ${name} (`,
    list(columns.filter((c) => !c.isPartition).map(described)),
    ')',
    `COMMENT ${backslashLiteral(oneLine(model.schema.description))}`,
    ...(p === undefined ? [] : [`PARTITIONED BY (${described(p)})`]),
    ...storage,
    `LOCATION ${backslashLiteral(`${model.datasetUri}/`)}`,
    ...(properties.length > 0 ? [`TBLPROPERTIES (${properties.join(', ')})`] : []),
  ]
    .join('\n')
    .concat(';');
}

/** The view's expression turning a CSV text column into its type. */
function fromText(c: TableColumn): string {
  const text = c.nullable ? `NULLIF(${c.name}, '')` : c.name;
  switch (c.type) {
    case 'string':
      return text;
    case 'timestamp':
      return `from_iso8601_timestamp(${text})`;
    case 'int32':
      return `CAST(${text} AS ${ATHENA_CSV_VIEW_TYPES.int32})`;
    case 'boolean':
      return `CAST(${text} AS ${ATHENA_CSV_VIEW_TYPES.boolean})`;
  }
}
