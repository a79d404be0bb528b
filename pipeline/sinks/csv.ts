/**
 * CSV data files (DESIGN §6): a header row, RFC 4180 quoting by csv-stringify,
 * timestamps as ISO 8601 UTC with milliseconds, null as the empty field.
 */
import { stringify, type Options } from 'csv-stringify/sync';
import { COLUMN_NAMES } from '../schema.ts';
import type { AccessKeyRecord } from '../schema.ts';
import { LinePacker } from '../lines.ts';

/**
 * Fields are quoted only when they hold a comma, a double quote, CR or LF, and an
 * inner `"` is doubled (csv-stringify's defaults are RFC 4180's rules).
 *
 * Lines end in LF rather than RFC 4180's CRLF, as DuckDB's COPY, Spark and pandas
 * write them: every CSV reader accepts both, and line-oriented tools (wc, grep,
 * split, Hive-style text readers) then see no stray CR at the end of a line.
 *
 * An empty string is written as `""` so that it stays distinct from null, the
 * empty field, for readers that make the difference (PostgreSQL's COPY, Spark).
 * DuckDB reads both as NULL unless told `allow_quoted_nulls=false`.
 */
const CSV_OPTIONS: Options = {
  header: true,
  columns: COLUMN_NAMES,
  record_delimiter: 'unix',
  // Naming a record_delimiter silently turns this off in csv-stringify 6.9, which
  // would leave a lone CR unquoted and readers would split the row there.
  quote_record_delimiter: true,
  cast: {
    // Always UTC with milliseconds; invalid Dates never get here (checkRecord).
    date: (value) => value.toISOString(),
    string: (value) => (value === '' ? { value, quoted_empty: true } : value),
    // csv-stringify's default writes true as 1 and false as an empty field (null).
    boolean: (value) => (value ? 'true' : 'false'),
  },
};

/**
 * Records per csv-stringify call. Its synchronous API normalizes the options and
 * joins the rows at every call: measured on 200,000 records, batches of 32 to 128
 * cost the least CPU, 2,048 about a quarter more, one record at a time a third more.
 */
const BATCH = 128;

/** Row options (no header) for `columns`, made once per column list. */
const ROW_OPTIONS = new Map<readonly string[], Options>();
function rowOptions(columns: readonly string[]): Options {
  let o = ROW_OPTIONS.get(columns);
  if (!o) {
    o = { ...CSV_OPTIONS, header: false, columns: [...columns] };
    ROW_OPTIONS.set(columns, o);
  }
  return o;
}

/** The header row of `columns`, without its line end. */
export function csvHeader(columns: readonly string[] = COLUMN_NAMES): string {
  return stringify([], { ...CSV_OPTIONS, header: true, columns: [...columns] }).slice(0, -1);
}

/**
 * Renders records as CSV rows exactly as the data files hold them, one string
 * per record without its line end. The output of each call is split at its line
 * ends; a batch where a field holds a line break (more line ends than records;
 * the field is quoted) is rendered again one record at a time. IAM names cannot
 * hold one, so that path is for correctness.
 */
export function csvRows<R extends object = AccessKeyRecord>(records: readonly R[], columns: readonly string[] = COLUMN_NAMES): string[] {
  const options = rowOptions(columns);
  const rows: string[] = [];
  for (let i = 0; i < records.length; i += BATCH) {
    // Cells in column order: csv-stringify writes an array as it is, where it looks up each
    // column of an object by path (a regex test and a path walk per field; ~4 % of a CSV export).
    const batch = records.slice(i, i + BATCH).map((r) => columns.map((c) => (r as Record<string, unknown>)[c]));
    const lines = stringify(batch, options).split('\n');
    lines.pop(); // after the last line end
    if (lines.length === batch.length) for (const line of lines) rows.push(line);
    else for (const cells of batch) rows.push(stringify([cells], options).slice(0, -1));
  }
  return rows;
}

/**
 * Encodes records as CSV bytes: a header row (also for zero records), then the
 * records. Memory stays at one batch whatever the number of rows.
 */
export function encodeCsv<R extends object = AccessKeyRecord>(records: AsyncIterable<R>, columns: readonly string[] = COLUMN_NAMES): AsyncGenerator<Buffer> {
  async function* rendered(): AsyncGenerator<string[]> {
    let batch: R[] = [];
    for await (const record of records) {
      batch.push(record);
      if (batch.length >= BATCH) {
        yield csvRows(batch, columns);
        batch = [];
      }
    }
    if (batch.length > 0) yield csvRows(batch, columns);
  }
  return encodeCsvRows(rendered(), columns);
}

/**
 * Encodes rows rendered by `csvRows` as CSV bytes: the header row of `columns`,
 * then each row and its line end, copied as they are.
 */
export async function* encodeCsvRows(batches: AsyncIterable<readonly string[]>, columns: readonly string[] = COLUMN_NAMES): AsyncGenerator<Buffer> {
  const packer = new LinePacker();
  packer.add(csvHeader(columns));
  for await (const batch of batches) {
    for (const row of batch) {
      const full = packer.add(row);
      if (full) yield full;
    }
  }
  yield packer.end()!;
}
