/**
 * The data-file encoders: one published file format each, same contract. Callers
 * pick a format here and never import an encoder directly, so adding a format is
 * one file plus one line in `encodeDataFile`. Where the bytes go (a local file, an
 * S3 object) is the store's business.
 */
import { basename, dirname } from 'node:path';
import { csvRowOf, decodeRow, type StagedRow } from '../runs.ts';
import { COLUMNS, type AccessKeyRecord, type ColumnType } from '../schema.ts';
import type { ParquetValue } from 'parquetjs-lite';
import { LocalStore } from '../store/local.ts';
import { checkRecord, checkRow } from './check.ts';
import { encodeCsv, encodeCsvRows } from './csv.ts';
import type { ParquetColumn, ParquetFileOptions } from './parquet.ts';
import type { Format } from '../formats.ts';

export { FORMATS, FORMAT_EXTENSION, type Format } from '../formats.ts';

/** What the manifest records about one written data file. */
export interface DataFileInfo {
  /** Base name of the file (no directory), as the manifest lists it. */
  readonly file: string;
  /** Data rows in the file (the CSV header is not a row). */
  readonly rows: number;
  /** Size of the file in bytes. */
  readonly bytes: number;
  /** SHA-256 of the file's bytes, lower-case hex. */
  readonly sha256: string;
}

/** Records to write; iterated once, never collected, so any count fits in memory. */
export type RecordSource = AsyncIterable<AccessKeyRecord> | Iterable<AccessKeyRecord>;

/** The bytes of a data file, and how many rows went into them (known once the bytes are consumed). */
export interface EncodedFile {
  readonly chunks: AsyncIterable<Buffer>;
  rows(): number;
}

/** What a data file holds besides its rows (Parquet: footer key-value metadata; CSV has nowhere to put it). */
export type DataFileOptions = ParquetFileOptions;

/**
 * Encodes `rows` in `format`, checking each against the schema first
 * (`checkRecord`): a bad value fails the file with INTERNAL in every format alike.
 * Errors of the row source pass through unchanged.
 */
export function encodeDataFile(format: Format, rows: RecordSource, options: DataFileOptions = {}): EncodedFile {
  let count = 0;
  async function* checked(): AsyncGenerator<AccessKeyRecord> {
    for await (const record of rows) {
      checkRecord(record, count);
      count += 1;
      yield record;
    }
  }
  const chunks = format === 'csv' ? encodeCsv(checked()) : parquetLazily<AccessKeyRecord>(COLUMNS, options, checked());
  return { chunks, rows: () => count };
}

/** Parquet bytes of `rows`; parquetjs-lite is loaded by the first Parquet file only (a CSV run starts without it). */
async function* parquetLazily<Row extends { readonly [K in keyof Row]: ParquetValue }>(columns: readonly ParquetColumn[], options: ParquetFileOptions, rows: AsyncIterable<Row>): AsyncGenerator<Buffer> {
  const { parquetEncoder } = await import('./parquet.ts');
  yield* parquetEncoder<Row>(columns, options)(rows);
}

/** A dataset other than access_keys (the accounts dataset): its columns, in file order. */
export interface OtherColumns {
  readonly name: string;
  readonly type: ColumnType;
  readonly nullable: boolean;
}

/**
 * Encodes rows of another dataset (`columns`) the same way: checked against the
 * columns first, then CSV or Parquet with the same options.
 */
export function encodeRows(format: Format, columns: readonly OtherColumns[], rows: Iterable<Readonly<Record<string, ParquetValue>>>, options: DataFileOptions = {}): EncodedFile {
  let count = 0;
  async function* checked(): AsyncGenerator<Readonly<Record<string, ParquetValue>>> {
    for (const row of rows) {
      checkRow(row, count, columns, String(row[columns[1]?.name ?? ''] ?? count));
      count += 1;
      yield row;
    }
  }
  const chunks = format === 'csv' ? encodeCsv(checked(), columns.map((c) => c.name)) : parquetLazily<Readonly<Record<string, ParquetValue>>>(columns, options, checked());
  return { chunks, rows: () => count };
}

/** An encoded file of staged rows, which also counts the rows with a last-use date. */
export interface EncodedStagedFile extends EncodedFile {
  dated(): number;
}

/**
 * Encodes merged staged rows (runs.ts) in `format`: for CSV, the text each row
 * was rendered to at commit is copied after the header, nothing decoded (the
 * records were checked then); for Parquet, each row is decoded into its record
 * and encoded as by `encodeDataFile`.
 */
export function encodeStagedFile(format: Format, batches: AsyncIterable<readonly StagedRow[]>, options: DataFileOptions = {}): EncodedStagedFile {
  let dated = 0;
  if (format === 'csv') {
    let count = 0;
    async function* texts(): AsyncGenerator<string[]> {
      for await (const batch of batches) {
        const out = new Array<string>(batch.length);
        for (let i = 0; i < batch.length; i++) {
          const csv = csvRowOf(batch[i]!);
          if (csv.dated) dated++;
          out[i] = csv.text;
        }
        count += batch.length;
        yield out;
      }
    }
    return { chunks: encodeCsvRows(texts()), rows: () => count, dated: () => dated };
  }
  async function* records(): AsyncGenerator<AccessKeyRecord> {
    for await (const batch of batches) {
      for (const row of batch) {
        const record = decodeRow(row);
        if (record.last_used_date !== null) dated++;
        yield record;
      }
    }
  }
  return { ...encodeDataFile(format, records(), options), dated: () => dated };
}

/**
 * Writes `rows` to the local file `target` in `format`, atomically: the target
 * appears complete and fsynced, or not at all (an existing target is replaced
 * only on success). The parent directory of `target` must exist.
 */
export async function writeDataFile(format: Format, target: string, rows: RecordSource, options: DataFileOptions = {}): Promise<DataFileInfo> {
  const encoded = encodeDataFile(format, rows, options);
  const { bytes, sha256 } = await new LocalStore(dirname(target)).upload(basename(target), encoded.chunks);
  return { file: basename(target), rows: encoded.rows(), bytes, sha256 };
}
