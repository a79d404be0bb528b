/**
 * The data-file writers: one published file format each, same contract. Callers
 * pick a format here and never import a writer directly, so adding a format is
 * one file plus one line in `writeDataFile`.
 */
import type { AccessKeyRecord } from '../schema.ts';
import { writeCsvFile } from './csv.ts';
import { writeParquetFile } from './parquet.ts';

/** The published file formats, in the order `--help` lists them. */
export const FORMATS = ['csv', 'parquet'] as const;

/** A published file format (`--format`). */
export type Format = (typeof FORMATS)[number];

/** File name extension of each format, with its dot (`part-00000` + `.parquet`). */
export const FORMAT_EXTENSION: Readonly<Record<Format, string>> = {
  csv: '.csv',
  parquet: '.parquet',
};

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

/**
 * Writes `rows` to `target` in `format`, atomically: the target appears complete
 * and fsynced, or not at all (an existing target is replaced only on success).
 * The parent directory of `target` must exist.
 */
export function writeDataFile(format: Format, target: string, rows: RecordSource): Promise<DataFileInfo> {
  switch (format) {
    case 'csv':
      return writeCsvFile(target, rows);
    case 'parquet':
      return writeParquetFile(target, rows);
  }
}
