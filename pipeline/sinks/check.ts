/**
 * The last gate before a published file: every record is checked against the
 * schema's columns, the same way for every format. Without it the formats would
 * disagree on a bad value: CSV would print 3.7 or an empty field for a missing
 * required value, while parquetjs-lite silently truncates 3.7 to 3 for INT32.
 */
import { ExportError } from '../errors.ts';
import { COLUMNS, type AccessKeyRecord, type Column } from '../schema.ts';

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/**
 * Throws `INTERNAL` (a bug upstream: records are built by our own stages) when a
 * value does not fit its column: wrong JS type, invalid Date, non-integer or
 * out-of-range int32, or null in a non-nullable column. `row` is the record's
 * 0-based position in the file, for the message.
 */
export function checkRecord(record: AccessKeyRecord, row: number): void {
  checkRow(record as unknown as Readonly<Record<string, unknown>>, row, COLUMNS, record.access_key_id);
}

/** The same check for a row of any dataset (the accounts dataset), naming it by `label`. */
export function checkRow(row: Readonly<Record<string, unknown>>, index: number, columns: readonly { readonly name: string; readonly type: Column['type']; readonly nullable: boolean }[], label: string): void {
  for (const column of columns) {
    const problem = problemWith(column, row[column.name]);
    if (problem !== undefined) {
      throw new ExportError('INTERNAL', `record ${index} (${label}): ${column.name} ${problem}`);
    }
  }
}

function problemWith(column: Pick<Column, 'type' | 'nullable'>, value: unknown): string | undefined {
  if (value === null || value === undefined) {
    return column.nullable ? undefined : 'is missing';
  }
  switch (column.type) {
    case 'string':
      return typeof value === 'string' ? undefined : `is not a string: ${typeof value}`;
    case 'timestamp':
      return value instanceof Date && !Number.isNaN(value.getTime()) ? undefined : 'is not a valid Date';
    case 'int32':
      return typeof value === 'number' && Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX
        ? undefined
        : `is not a 32-bit integer: ${String(value)}`;
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `is not a boolean: ${typeof value}`;
  }
}
