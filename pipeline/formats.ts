/**
 * The published file formats: names and file extensions only, so that option
 * parsing can name them without loading any encoder.
 */

/** The published file formats, in the order `--help` lists them. */
export const FORMATS = ['csv', 'parquet'] as const;

/** A published file format (`--format`). */
export type Format = (typeof FORMATS)[number];

/** File name extension of each format, with its dot (`part-00000` + `.parquet`). */
export const FORMAT_EXTENSION: Readonly<Record<Format, string>> = {
  csv: '.csv',
  parquet: '.parquet',
};
