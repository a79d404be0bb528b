/**
 * The part of parquetjs-lite 0.8.7 that pipeline/sinks/parquet.ts and the tests
 * use; the package ships no types. The modules are CommonJS: import their default
 * export.
 *
 * Beware: the library throws plain strings (not Error objects) for bad values,
 * e.g. 'missing required field: user_name', and converts INT32 values with
 * parseInt, so 3.7 is written as 3 without complaint.
 */
declare module 'parquetjs-lite' {
  /** Logical types (the library's names) that this project writes. */
  export type ParquetFieldType = 'UTF8' | 'TIMESTAMP_MILLIS' | 'INT32' | 'BOOLEAN';

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
  export type ParquetValue = string | number | boolean | Date | null | undefined;

  /** A column of a compiled schema, as the library's footer code reads it. */
  export interface ParquetField {
    readonly name: string;
    /** A Thrift Type name, e.g. 'BYTE_ARRAY' (absent on a nested field). */
    readonly primitiveType: 'BOOLEAN' | 'INT32' | 'INT64' | 'INT96' | 'FLOAT' | 'DOUBLE' | 'BYTE_ARRAY' | 'FIXED_LEN_BYTE_ARRAY';
    /** A Thrift ConvertedType name, e.g. 'UTF8', or undefined. */
    readonly originalType?: 'UTF8' | 'TIMESTAMP_MILLIS' | undefined;
    readonly repetitionType: 'REQUIRED' | 'OPTIONAL' | 'REPEATED';
    readonly typeLength?: number | undefined;
    /** How its values are encoded in a page: 'PLAIN' unless the definition names another. */
    readonly encoding?: string;
    readonly isNested?: boolean;
    /** The names from the root to this column (one for a top-level column). */
    readonly path: readonly string[];
    /** The definition level of a present value (1 for a top-level OPTIONAL column, 0 for REQUIRED). */
    readonly dLevelMax: number;
  }

  /** A compiled schema; only what this project reads of it is declared. */
  export interface ParquetSchema {
    readonly fieldList: readonly ParquetField[];
  }

  /** Low-level writer of the file envelope: emits every byte through `write`. */
  export interface ParquetEnvelopeWriter {
    readonly schema: ParquetSchema;
    /** Rows in the row groups written so far. */
    readonly rowCount: number;
    /** The metadata of each row group written so far, as the footer lists them. */
    readonly rowGroups: readonly import('parquetjs-lite/gen-nodejs/parquet_types.js').RowGroup[];
    /** Emits `buf` through `write` and advances the file offset; every byte of the file goes through here. */
    writeSection(buf: Buffer): Promise<void>;
    /** Encodes the footer (FileMetaData, its length, PAR1) and emits it with one writeSection call; ParquetWriter.close calls it once. */
    writeFooter(userMetadata: Record<string, string>): Promise<void>;
  }

  /** One column of the row group being filled, shredded (the library's lib/shred.js). */
  export interface ParquetColumnData {
    dlevels: number[];
    rlevels: number[];
    /** The present values, converted to their primitive (a Buffer for UTF8, a number for TIMESTAMP_MILLIS). */
    values: unknown[];
    /** The present values as given (before conversion): the page statistics' min, max and distinct count. */
    distinct_values: Set<unknown>;
    count: number;
  }

  /** The rows of the row group being filled: empty until its first row, then filled by the shredder. */
  export interface ParquetRowBuffer {
    rowCount?: number;
    pageRowCount?: number;
    /** By the column's path joined by commas (its name, for a top-level column). */
    columnData?: Record<string, ParquetColumnData>;
    pages?: Record<string, unknown[]>;
  }

  /** Buffers rows into row groups; `close` writes the last group and the footer. */
  export interface ParquetWriter {
    readonly schema: ParquetSchema;
    /** Its page size: rows after which the shredded rows are encoded as pages. */
    readonly envelopeWriter: ParquetEnvelopeWriter & { readonly pageSize: number };
    rowBuffer: ParquetRowBuffer;
    readonly rowGroupSize: number;
    readonly closed: boolean;
    /** Reads the schema's columns from `row` (other properties are ignored). */
    appendRow<Row extends { readonly [K in keyof Row]: ParquetValue }>(row: Row): Promise<void>;
    close(): Promise<void>;
    /** Adds a key-value pair to the footer's key_value_metadata (written by close). */
    setMetadata(key: string, value: string): void;
  }

  /**
   * Reads a file's footer; `close` releases its descriptor. (Its row cursor is
   * left out: 0.8.7 cannot decode the INT64 statistics of its own TIMESTAMP_MILLIS
   * pages on Node 20, "Cannot convert a BigInt value to a number".)
   */
  export interface ParquetReader {
    /** The decoded footer. */
    readonly metadata: import('parquetjs-lite/gen-nodejs/parquet_types.js').FileMetaData;
    /** The footer's key-value metadata as an object. */
    getMetadata(): Record<string, string>;
    close(): Promise<void>;
  }

  export interface ParquetReaderOptions {
    /** Leave the footer's column statistics undecoded; required for files with timestamps (see ParquetReader). */
    rawStatistics?: boolean;
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
    ParquetWriter: {
      new (schema: ParquetSchema, envelope: ParquetEnvelopeWriter, options: ParquetWriterOptions): ParquetWriter;
      /** A writer into a new file at `path` (the bench's "parquetjs-lite alone", as a user writes it). */
      openFile(schema: ParquetSchema, path: string, options?: ParquetWriterOptions): Promise<ParquetWriter>;
    };
    ParquetReader: { openFile(path: string, options?: ParquetReaderOptions): Promise<ParquetReader> };
  }

  const parquet: ParquetModule;
  export default parquet;
}

/**
 * The library's Thrift classes of the Parquet format (generated code), as far as
 * the footer code and its tests use them. Optional fields are null when absent.
 */
declare module 'parquetjs-lite/gen-nodejs/parquet_types.js' {
  export interface MilliSeconds {}
  export interface TimeUnit {
    MILLIS: MilliSeconds | null;
    MICROS: object | null;
  }
  export interface TimestampType {
    isAdjustedToUTC: boolean | null;
    unit: TimeUnit | null;
  }
  export interface LogicalType {
    TIMESTAMP: TimestampType | null;
  }
  /** A Thrift struct: it encodes itself through a protocol. */
  export interface ThriftStruct {
    write(protocol: object): void;
  }
  export interface SchemaElement extends ThriftStruct {
    name: string;
    /** A Type value. */
    type: number | null;
    type_length: number | null | undefined;
    /** A FieldRepetitionType value. */
    repetition_type: number | null;
    num_children: number | null;
    /** A ConvertedType value. */
    converted_type: number | null;
    logicalType: LogicalType | null;
  }
  export interface KeyValue extends ThriftStruct {
    key: string;
    value: string | null;
  }
  /** A row group's metadata (its columns' chunks and statistics): only passed on. */
  export interface RowGroup extends ThriftStruct {
    num_rows: number | object;
  }
  export interface FileMetaData extends ThriftStruct {
    version: number;
    schema: SchemaElement[];
    num_rows: number | object;
    row_groups: RowGroup[];
    key_value_metadata: KeyValue[] | null;
    created_by: string | null;
  }

  interface ThriftModule {
    FileMetaData: new () => FileMetaData;
    SchemaElement: new (args: Partial<Pick<SchemaElement, 'name' | 'type' | 'repetition_type' | 'num_children'>>) => SchemaElement;
    KeyValue: new (args: { key: string; value: string }) => KeyValue;
    LogicalType: new (args: Partial<LogicalType>) => LogicalType;
    TimestampType: new (args: TimestampType) => TimestampType;
    TimeUnit: new (args: Partial<TimeUnit>) => TimeUnit;
    MilliSeconds: new () => MilliSeconds;
    /** ConvertedType values by name, e.g. TIMESTAMP_MILLIS: 9. */
    ConvertedType: Readonly<Record<'UTF8' | 'TIMESTAMP_MILLIS', number>>;
    /** Type values by name, e.g. INT64: 2. */
    Type: Readonly<Record<import('parquetjs-lite').ParquetField['primitiveType'], number>>;
    /** FieldRepetitionType values by name, e.g. OPTIONAL: 1. */
    FieldRepetitionType: Readonly<Record<import('parquetjs-lite').ParquetField['repetitionType'], number>>;
  }
  const thrift: ThriftModule;
  export default thrift;
}

/** The library's copy of the Thrift runtime: the compact protocol over any transport with write(bytes). */
declare module 'parquetjs-lite/modules/thrift-lite/index.js' {
  interface ThriftLiteModule {
    TCompactProtocol: new (transport: { write(chunk: Buffer): void }) => object;
  }
  const thriftLite: ThriftLiteModule;
  export default thriftLite;
}

/** The library's value conversions (what its shredder stores of a value). */
declare module 'parquetjs-lite/lib/types.js' {
  interface TypesModule {
    /** Converts a value of a logical or primitive type to what the encoder writes; throws a string when it does not fit. */
    toPrimitive(type: string, value: unknown): unknown;
  }
  const types: TypesModule;
  export default types;
}

/** The library's Thrift compact-protocol helpers (the tests' oracle of its own footers). */
declare module 'parquetjs-lite/lib/util.js' {
  interface UtilModule {
    /** Encodes a Thrift struct (compact protocol). */
    serializeThrift(struct: object): Buffer;
    /** Decodes `buf` into `struct` (compact protocol); returns the bytes read. */
    decodeThrift(struct: object, buf: Buffer, offset?: number): number;
  }
  const util: UtilModule;
  export default util;
}
