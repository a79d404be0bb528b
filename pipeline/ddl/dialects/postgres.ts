/**
 * PostgreSQL: a real table, loaded one CSV file at a time. COPY reads a file's
 * columns, not its path, so the snapshot id (the folder name) cannot come from
 * COPY: the file goes into a temporary load table shaped like the file, and an
 * INSERT ... SELECT adds the id, given to psql as a variable. The script is run
 * with psql, once per data file, the file on standard input:
 *
 *   psql -v ON_ERROR_STOP=1 -v snapshot_id=<id> -f access_keys.sql < part-00000.csv
 *
 * Without `-v snapshot_id` it only creates the table. `\copy ... FROM pstdin` is
 * psql's client-side COPY: the file need not be on the server, nor readable by
 * the server's user, and a pipe works (`aws s3 cp s3://... - | psql ...`).
 */
import { oneLine, tableColumns, type TableModel } from '../model.ts';
import { SQL_TYPES } from '../types.ts';
import { comment, header, list, standardLiteral } from '../sql.ts';

/** The PostgreSQL DDL and load script of `model` (CSV only: checked in the model). */
export function renderPostgres(model: TableModel): string {
  const types = SQL_TYPES.postgres;
  const columns = tableColumns(model);
  const load = `${model.tableBase}_load`;
  const p = model.partition;
  const fileColumns = model.columns.map((c) => c.name);
  const example = `${model.datasetUri}/snapshot_id=<id>/part-00000${model.extension}`;
  const definition = (c: { name: string; type: keyof typeof types; nullable: boolean }): string =>
    `${c.name} ${types[c.type]}${c.nullable ? '' : ' NOT NULL'}`;
  return [
    header(model, [
      'A table of every loaded snapshot, and the load of one CSV data file of one snapshot. Run with psql,',
      'once per data file of the snapshot, the file on standard input:',
      `  psql -v ON_ERROR_STOP=1 -v snapshot_id=<id> -f ${model.tableBase}.sql < ${example}`,
      ...(example.startsWith('s3://') ? [`  (from S3: aws s3 cp ${example} - | psql ...)`] : []),
      'Without -v snapshot_id the script only creates the table. The snapshot id is the folder name, not a',
      `column of the file, so COPY fills the temporary table ${load} and INSERT ... SELECT adds the id;`,
      `loading a file again adds nothing (ON CONFLICT on the key ${model.key.join(', ')}).`,
    ]),
    `CREATE TABLE IF NOT EXISTS ${model.table} (`,
    list([...columns.map(definition), ...(model.key.length > 0 ? [`PRIMARY KEY (${model.key.join(', ')})`] : [])]),
    ');',
    `COMMENT ON TABLE ${model.table} IS ${standardLiteral(oneLine(model.schema.description))};`,
    ...columns.map((c) => `COMMENT ON COLUMN ${model.table}.${c.name} IS ${standardLiteral(oneLine(c.description))};`),
    '',
    comment([`Load one data file (see above); psql's \\if skips this part when no snapshot_id is given.`]),
    p === undefined ? '\\if :{?snapshot_id}' : `\\if :{?${p.name}}`,
    'BEGIN;',
    `CREATE TEMPORARY TABLE ${load} (`,
    list(model.columns.map(definition)),
    ') ON COMMIT DROP;',
    `\\copy ${load} FROM pstdin WITH (FORMAT csv, HEADER true)`,
    `INSERT INTO ${model.table} (${[...fileColumns, ...(p === undefined ? [] : [p.name])].join(', ')})`,
    `SELECT ${[...fileColumns, ...(p === undefined ? [] : [`:'${p.name}'`])].join(', ')}`,
    `FROM ${load}`,
    ...(model.key.length > 0 ? [`ON CONFLICT (${model.key.join(', ')}) DO NOTHING;`] : [';']),
    'COMMIT;',
    '\\endif',
    '',
  ].join('\n');
}
