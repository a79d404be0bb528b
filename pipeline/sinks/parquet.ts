/**
 * Parquet data files (DESIGN §6) with parquetjs-lite: UTF8 strings, INT32
 * integers, nullable columns OPTIONAL, and timestamps as INT64 milliseconds that
 * carry both the legacy converted type TIMESTAMP_MILLIS and the logical type
 * TIMESTAMP(isAdjustedToUTC = true, unit = MILLIS), plus key-value metadata.
 */
import parquet, {
  type ParquetEnvelopeWriter,
  type ParquetFieldDefinition,
  type ParquetFieldType,
  type ParquetSchema,
  type ParquetValue,
  type ParquetWriterOptions,
} from 'parquetjs-lite';
import thrift, { type FileMetaData, type RowGroup } from 'parquetjs-lite/gen-nodejs/parquet_types.js';
import parquetTypes from 'parquetjs-lite/lib/types.js';
import thriftLite from 'parquetjs-lite/modules/thrift-lite/index.js';
import { ExportError } from '../errors.ts';
import type { ColumnType } from '../schema.ts';

const PARQUET_TYPE: Readonly<Record<ColumnType, ParquetFieldType>> = {
  string: 'UTF8',
  // The library writes only the legacy converted type for this; the footer
  // written below adds the UTC logical type (see UtcFooterEnvelopeWriter).
  timestamp: 'TIMESTAMP_MILLIS',
  int32: 'INT32',
  boolean: 'BOOLEAN',
};

/**
 * SNAPPY. Measured on this machine for 100,000 rows with random key and user ids:
 * 4.4 MB against 14.9 MB UNCOMPRESSED, at the same speed (3.2-4.4 s from run to
 * run, ~25-30k rows/s, either way: the time goes into the library's row shredding,
 * not the codec). GZIP gave 2.4 MB at that speed too, but costs every reader more
 * to decode; Snappy is what Spark and pyarrow write by default, and every Parquet
 * reader has it.
 */
const COMPRESSION = 'SNAPPY';

/**
 * 1,024 rows per row group. The library holds a whole row group as JS arrays until
 * it encodes it, so this is what bounds the writer's memory whatever the file's
 * size, and those arrays live long enough to be promoted into V8's old generation,
 * which then stays grown for the rest of the run. Writing 1,000,000 rows peaked at
 * 231 MB RSS with 16,384-row groups against 312 MB with 65,536-row groups. A
 * 100,000-user export (issue 9: memory must not grow with the account) peaked at
 * 155-163 MiB with 4,096-row groups, 149 MiB with 2,048 and 146-147 MiB with 1,024,
 * where the export itself, not the publication, sets the peak. The price is size:
 * the same 99,980 rows take 10.63 MB, 10.82 MB (+1.7 %) and 11.17 MB (+5.0 %): more
 * page headers, chunk metadata and statistics, 98 row groups instead of 25.
 *
 * Version 1 data pages: the layout every Parquet reader has read the longest
 * (parquetjs-lite defaults to V2, which came out 2% bigger here).
 */
export const WRITER_OPTIONS: Readonly<ParquetWriterOptions> = {
  rowGroupSize: 1024,
  useDataPageV2: false,
};

/** What the encoder needs of a column: any schema version's columns fit. */
export interface ParquetColumn {
  readonly name: string;
  readonly type: ColumnType;
  readonly nullable: boolean;
}

/** What a Parquet file holds besides its rows. */
export interface ParquetFileOptions {
  /**
   * Key-value metadata of the footer (DESIGN §6: `snapshot_id`, `schema_version`),
   * readable without the data: DuckDB `parquet_kv_metadata()`, pyarrow
   * `ParquetFile(f).metadata.metadata`, Spark, parquet-tools.
   */
  readonly metadata?: Readonly<Record<string, string>>;
}

/**
 * Who shreds the rows: this module's flat shredder (what ships, see FlatRowsWriter), or
 * the library's own appendRow (the tests' oracle: the files must be the same bytes).
 */
export type RowShredder = 'flat' | 'library';

/**
 * The Parquet encoder for a list of columns: rows in, file bytes out. Memory is
 * bounded by one row group, not by the number of rows; zero rows give a valid
 * file with the schema and no row group. Rows are not checked here:
 * `encodeDataFile` checks them against the schema first.
 */
export function parquetEncoder<Row extends { readonly [K in keyof Row]: ParquetValue }>(
  columns: readonly ParquetColumn[],
  options: ParquetFileOptions = {},
  shredder: RowShredder = 'flat',
): (records: AsyncIterable<Row>) => AsyncGenerator<Buffer> {
  const schema = parquetSchema(columns);
  const metadata = Object.entries(options.metadata ?? {});
  return (records) => encodeParquet(schema, metadata, records, shredder);
}

/** The library's schema of `columns`; a fresh one per file, since the library fills in defaults by mutating the definitions. */
export function parquetSchema(columns: readonly ParquetColumn[]): ParquetSchema {
  return new parquet.ParquetSchema(
    Object.fromEntries(
      columns.map((c): [string, ParquetFieldDefinition] => [c.name, { type: PARQUET_TYPE[c.type], optional: c.nullable, compression: COMPRESSION }]),
    ),
  );
}

/**
 * Encodes records as Parquet bytes. The library writes through a callback; the
 * chunks it hands over are yielded after each row, so a row group leaves as soon
 * as it is encoded and the pipeline's backpressure reaches the row source.
 * (The library's own ParquetTransformer cannot be used in a pipeline: its flush
 * calls back twice, which fails every file with ERR_MULTIPLE_CALLBACK.)
 */
async function* encodeParquet<Row extends { readonly [K in keyof Row]: ParquetValue }>(
  schema: ParquetSchema,
  metadata: readonly [string, string][],
  records: AsyncIterable<Row>,
  shredder: RowShredder,
): AsyncGenerator<Buffer> {
  const pending: Buffer[] = [];
  const envelope = new UtcFooterEnvelopeWriter(
    schema,
    async (chunk) => {
      pending.push(chunk);
    },
    async () => undefined,
    0,
    WRITER_OPTIONS,
  );
  const writer = shredder === 'flat' ? new FlatRowsWriter(schema, envelope, WRITER_OPTIONS) : new parquet.ParquetWriter(schema, envelope, WRITER_OPTIONS);
  for (const [key, value] of metadata) writer.setMetadata(key, value);
  let index = 0;
  for await (const record of records) {
    await libraryCall(() => writer.appendRow(record), index);
    index += 1;
    if (pending.length > 0) yield* pending.splice(0);
  }
  await libraryCall(() => writer.close(), index);
  if (!envelope.footerWritten) {
    // A library update that writes its footer another way would otherwise
    // silently bring back naive timestamps.
    throw new ExportError('INTERNAL', 'parquet footer was written without the UTC timestamp logical type (parquetjs-lite changed?)');
  }
  yield* pending.splice(0);
}

/** A top-level column as the shredder appends to it. */
interface FlatColumn {
  readonly name: string;
  /** Its key in the row buffer: the path joined by commas, as the library keys it. */
  readonly key: string;
  readonly type: string;
  /** A UTF8 column: its strings are kept as they are (see appendRow). */
  readonly utf8: boolean;
  readonly required: boolean;
  readonly dLevelMax: number;
}

/**
 * The library's ParquetWriter, with the rows of a flat schema (every column top-level,
 * none repeated: every schema of this project) shredded here, into the same row buffer
 * the library's shredder fills and its encoder reads: per column the definition and
 * repetition levels, the values converted by the library's own `toPrimitive` (UTF8
 * strings left as they are, for its PLAIN encoder to convert), the values as given
 * (the page statistics) and the count. The first row of a row group
 * and a row that fills a page or the group still go through the library's appendRow,
 * which sets the buffer up, then encodes the pages and writes the group; so do all
 * rows of any other schema. test/parquet-shred.test.ts checks the files are the
 * library's byte for byte.
 *
 * Why: for every row the library builds, for every column, an object with three arrays
 * and a Set, keys it by the column's path turned into a string, then copies it into the
 * buffer. Publishing 99,980 rows allocated 2.95 GB (a sampling heap profile of the
 * publication: ~2 GB of it in shredRecord), ~30 KB a row. 200,000 records: our sink
 * alone 7.4 s -> 2.4 s, a whole local export 8.8-9.1 s -> 3.9-4.0 s. (The peak RSS of a
 * 100,000-user export did not move: the old generation still grows ~15 MiB as it
 * publishes, with the row groups' own arrays and values.)
 */
class FlatRowsWriter extends parquet.ParquetWriter {
  readonly #columns: readonly FlatColumn[] | undefined;
  /** One row's converted values, before any is appended (a value that fails appends nothing of its row). */
  readonly #converted: unknown[];

  constructor(schema: ParquetSchema, envelope: ParquetEnvelopeWriter, options: ParquetWriterOptions) {
    super(schema, envelope, options);
    const flat = schema.fieldList.every((f) => !f.isNested && f.repetitionType !== 'REPEATED' && f.path.length === 1);
    this.#columns = flat
      ? schema.fieldList.map((f) => ({
          name: f.name,
          key: f.path.join(','),
          type: f.originalType ?? f.primitiveType,
          utf8: f.originalType === 'UTF8' && f.primitiveType === 'BYTE_ARRAY' && f.encoding === 'PLAIN',
          required: f.repetitionType === 'REQUIRED',
          dLevelMax: f.dLevelMax,
        }))
      : undefined;
    this.#converted = new Array<unknown>(schema.fieldList.length);
  }

  override appendRow<Row extends { readonly [K in keyof Row]: ParquetValue }>(row: Row): Promise<void> {
    const buffer = this.rowBuffer;
    const columns = this.#columns;
    const data = buffer.columnData;
    if (
      columns === undefined ||
      this.closed ||
      data === undefined ||
      buffer.rowCount === undefined ||
      buffer.pageRowCount === undefined ||
      buffer.rowCount + 1 >= this.rowGroupSize ||
      buffer.pageRowCount + 1 >= this.envelopeWriter.pageSize
    ) {
      return super.appendRow(row);
    }
    const values = row as Readonly<Record<string, unknown>>;
    const converted = this.#converted;
    for (let i = 0; i < columns.length; i++) {
      const c = columns[i]!;
      const v = values[c.name];
      if (v === undefined || v === null) {
        // The library's own message, thrown as it throws it: a string.
        if (c.required) return Promise.reject(`missing required field: ${c.name}`);
        converted[i] = undefined;
      } else if (Array.isArray(v)) {
        // Not a flat value: the library says what it makes of it.
        return super.appendRow(row);
      } else {
        try {
          // A UTF8 string stays a string until its page is encoded: the library's PLAIN
          // encoder turns every BYTE_ARRAY value into a Buffer there anyway (a copy, for
          // the Buffer toPrimitive makes), and UTF-8 is Buffer.from's default.
          converted[i] = c.utf8 && typeof v === 'string' ? v : parquetTypes.toPrimitive(c.type, v);
        } catch (err) {
          return Promise.reject(err);
        }
      }
    }
    for (let i = 0; i < columns.length; i++) {
      const c = columns[i]!;
      const column = data[c.key]!;
      const v = values[c.name];
      column.rlevels.push(0);
      if (v === undefined || v === null) column.dlevels.push(0);
      else {
        column.dlevels.push(c.dLevelMax);
        column.values.push(converted[i]);
        column.distinct_values.add(v);
      }
      column.count += 1;
    }
    buffer.rowCount += 1;
    buffer.pageRowCount += 1;
    return Promise.resolve();
  }
}

/**
 * The library's envelope writer with its own footer: the same FileMetaData the
 * library's encodes (its row groups, row count, schema and key-value metadata), plus
 * the logical type TIMESTAMP(isAdjustedToUTC = true, MILLIS) on every
 * TIMESTAMP_MILLIS column. Without it, readers that honour logical types (DuckDB,
 * polars, Arrow's newer paths) take the instants for local wall-clock times (issue
 * 13); the converted type stays for readers that know only that. Pages, row groups
 * and offsets are the library's own code, unchanged.
 *
 * Encoded here rather than rewritten after the library: its encoder keeps every byte
 * of the footer as its own Buffer object until the end, and its footer holds the
 * statistics of every column of every row group (99,980 rows: 98 row groups, 199 KB),
 * so encoding, decoding and encoding it again took ~350 ms and ~26 MiB of heap at
 * once as a 100,000-user export ended, its peak of memory (issue 9).
 * test/parquet-footer.test.ts checks these bytes against the library's footer with
 * the logical type added.
 */
class UtcFooterEnvelopeWriter extends parquet.ParquetEnvelopeWriter {
  /** Whether close() went through writeFooter below. */
  footerWritten = false;

  override writeFooter(userMetadata: Record<string, string>): Promise<void> {
    const footer = encodeFooter(fileMetaData(this.schema, this.rowCount, this.rowGroups, userMetadata));
    this.footerWritten = true;
    return this.writeSection(footer);
  }
}

/** The version and writer the library puts in its footers. */
const PARQUET_VERSION = 1;
const CREATED_BY = 'parquet.js';

/** A file's FileMetaData, as the library builds it for a flat schema, with the UTC timestamps' logical type. */
function fileMetaData(schema: ParquetSchema, rowCount: number, rowGroups: readonly RowGroup[], userMetadata: Record<string, string>): FileMetaData {
  if (schema.fieldList.length === 0) throw new ExportError('INTERNAL', 'parquet footer: a schema without columns');
  const metadata = new thrift.FileMetaData();
  metadata.version = PARQUET_VERSION;
  metadata.created_by = CREATED_BY;
  metadata.num_rows = rowCount;
  metadata.row_groups = [...rowGroups];
  metadata.key_value_metadata = Object.entries(userMetadata).map(([key, value]) => new thrift.KeyValue({ key, value }));
  metadata.schema = [new thrift.SchemaElement({ name: 'root', num_children: schema.fieldList.length })];
  for (const field of schema.fieldList) {
    if (field.isNested) throw new ExportError('INTERNAL', `parquet footer: column ${field.name} is nested`);
    const element = new thrift.SchemaElement({ name: field.name, repetition_type: thrift.FieldRepetitionType[field.repetitionType], type: thrift.Type[field.primitiveType] });
    if (field.originalType) element.converted_type = thrift.ConvertedType[field.originalType];
    if (element.converted_type === thrift.ConvertedType.TIMESTAMP_MILLIS) {
      element.logicalType = new thrift.LogicalType({
        TIMESTAMP: new thrift.TimestampType({ isAdjustedToUTC: true, unit: new thrift.TimeUnit({ MILLIS: new thrift.MilliSeconds() }) }),
      });
    }
    element.type_length = field.typeLength;
    metadata.schema.push(element);
  }
  return metadata;
}

const PARQUET_MAGIC = 'PAR1';

/** A footer's bytes: the FileMetaData (Thrift compact protocol), its length as a 4-byte little-endian integer, `PAR1`. */
function encodeFooter(metadata: FileMetaData): Buffer {
  const out = new GrowingBytes();
  metadata.write(new thriftLite.TCompactProtocol(out));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(out.length);
  out.write(length);
  out.write(Buffer.from(PARQUET_MAGIC, 'latin1'));
  return out.bytes();
}

/**
 * A Thrift transport that copies what the protocol writes into one buffer, grown
 * by doubling: the protocol's many small buffers (one a byte) die young instead of
 * waiting in a list for the end.
 */
class GrowingBytes {
  #buf = Buffer.allocUnsafe(1 << 16);
  #length = 0;

  get length(): number {
    return this.#length;
  }

  write(chunk: Uint8Array): void {
    if (this.#length + chunk.length > this.#buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#length + chunk.length));
      this.#buf.copy(grown, 0, 0, this.#length);
      this.#buf = grown;
    }
    this.#buf.set(chunk, this.#length);
    this.#length += chunk.length;
  }

  /** A copy of the bytes written, exactly as long. */
  bytes(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#length));
  }
}

/** parquetjs-lite throws strings; give them a code and the row they were about. */
async function libraryCall(call: () => Promise<void>, row: number): Promise<void> {
  try {
    await call();
  } catch (err) {
    if (err instanceof Error) throw err;
    throw new ExportError('INTERNAL', `parquet writer failed at row ${row}: ${String(err)}`, {}, { cause: err });
  }
}
