/**
 * CSV data files (DESIGN §6): a header row, RFC 4180 quoting by csv-stringify,
 * timestamps as ISO 8601 UTC with milliseconds, null as the empty field.
 */
import { stringify, type Options } from 'csv-stringify/sync';
import { COLUMN_NAMES } from '../schema.ts';
import type { AccessKeyRecord } from '../schema.ts';

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

/** Records in a batch of csv-stringify's synchronous API: one call per batch, not per record. */
const BATCH = 2048;

/**
 * Encodes records as CSV bytes: a header row (also for zero records), then the
 * records. Memory stays at one batch whatever the number of rows.
 */
export async function* encodeCsv<R extends object = AccessKeyRecord>(records: AsyncIterable<R>, columns: readonly string[] = COLUMN_NAMES): AsyncGenerator<Buffer> {
  const options = { ...CSV_OPTIONS, columns: [...columns] };
  let batch: R[] = [];
  let header = true;
  for await (const record of records) {
    batch.push(record);
    if (batch.length >= BATCH) {
      yield Buffer.from(stringify(batch, { ...options, header }));
      header = false;
      batch = [];
    }
  }
  if (batch.length > 0 || header) yield Buffer.from(stringify(batch, { ...options, header }));
}
