/**
 * The part of parquetjs-lite 0.8.7 that pipeline/sinks/parquet.ts uses; the
 * package ships no types. The module is CommonJS: import its default export.
 *
 * Beware: the library throws plain strings (not Error objects) for bad values,
 * e.g. 'missing required field: user_name', and converts INT32 values with
 * parseInt, so 3.7 is written as 3 without complaint.
 */
declare module 'parquetjs-lite' {
  /** Logical types (the library's names) that this project writes. */
  export type ParquetFieldType = 'UTF8' | 'TIMESTAMP_MILLIS' | 'INT32';

  /** Page compression codecs that the lite build can write. */
  export type ParquetCompression = 'UNCOMPRESSED' | 'GZIP' | 'SNAPPY';

  /** One leaf column. The library fills in defaults by mutating this object. */
  export interface ParquetFieldDefinition {
    type: ParquetFieldType;
    /** OPTIONAL repetition (nullable); REQUIRED when absent. */
    optional?: boolean;
    /** Default UNCOMPRESSED. */
    compression?: ParquetCompression;
  }

  export interface ParquetWriterOptions {
    /** Rows buffered (shredded, in JS arrays) before a row group is encoded and written; default 4096. */
    rowGroupSize?: number;
    /** Write DATA_PAGE_V2 pages; default true. */
    useDataPageV2?: boolean;
  }

  /** A leaf value; null or undefined for a missing optional value. */
  export type ParquetValue = string | number | Date | null | undefined;

  /** A compiled schema; only one of its properties is declared. */
  export interface ParquetSchema {
    readonly fieldList: readonly { readonly name: string }[];
  }

  /** Low-level writer of the file envelope: emits every byte through `write`. */
  export interface ParquetEnvelopeWriter {
    /** Rows in the row groups written so far. */
    readonly rowCount: number;
  }

  /** Buffers rows into row groups; `close` writes the last group and the footer. */
  export interface ParquetWriter {
    /** Reads the schema's columns from `row` (other properties are ignored). */
    appendRow<Row extends { readonly [K in keyof Row]: ParquetValue }>(row: Row): Promise<void>;
    close(): Promise<void>;
  }

  interface ParquetModule {
    ParquetSchema: new (fields: Record<string, ParquetFieldDefinition>) => ParquetSchema;
    ParquetEnvelopeWriter: new (
      schema: ParquetSchema,
      write: (chunk: Buffer) => Promise<void>,
      close: () => Promise<void>,
      fileOffset: number,
      options: ParquetWriterOptions,
    ) => ParquetEnvelopeWriter;
    ParquetWriter: new (schema: ParquetSchema, envelope: ParquetEnvelopeWriter, options: ParquetWriterOptions) => ParquetWriter;
  }

  const parquet: ParquetModule;
  export default parquet;
}
