/**
 * Parquet data files (DESIGN §6) with parquetjs-lite: UTF8 strings, INT32
 * integers, nullable columns OPTIONAL, and timestamps as INT64 milliseconds that
 * carry both the legacy converted type TIMESTAMP_MILLIS and the logical type
 * TIMESTAMP(isAdjustedToUTC = true, unit = MILLIS), plus key-value metadata.
 */
import parquet, {
  type ParquetFieldDefinition,
  type ParquetFieldType,
  type ParquetSchema,
  type ParquetValue,
  type ParquetWriterOptions,
} from 'parquetjs-lite';
import thrift from 'parquetjs-lite/gen-nodejs/parquet_types.js';
import thriftCodec from 'parquetjs-lite/lib/util.js';
import { ExportError } from '../errors.ts';
import type { ColumnType } from '../schema.ts';

const PARQUET_TYPE: Readonly<Record<ColumnType, ParquetFieldType>> = {
  string: 'UTF8',
  // The library writes only the legacy converted type for this; the footer step
  // below adds the UTC logical type (see UtcTimestampEnvelopeWriter).
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
const WRITER_OPTIONS: ParquetWriterOptions = {
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
 * The Parquet encoder for a list of columns: rows in, file bytes out. Memory is
 * bounded by one row group, not by the number of rows; zero rows give a valid
 * file with the schema and no row group. Rows are not checked here:
 * `encodeDataFile` checks them against the schema first.
 */
export function parquetEncoder<Row extends { readonly [K in keyof Row]: ParquetValue }>(
  columns: readonly ParquetColumn[],
  options: ParquetFileOptions = {},
): (records: AsyncIterable<Row>) => AsyncGenerator<Buffer> {
  // A fresh schema per file: the library fills in defaults by mutating the definitions.
  const schema = new parquet.ParquetSchema(
    Object.fromEntries(
      columns.map((c): [string, ParquetFieldDefinition] => [c.name, { type: PARQUET_TYPE[c.type], optional: c.nullable, compression: COMPRESSION }]),
    ),
  );
  const metadata = Object.entries(options.metadata ?? {});
  return (records) => encodeParquet(schema, metadata, records);
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
): AsyncGenerator<Buffer> {
  const pending: Buffer[] = [];
  const envelope = new UtcTimestampEnvelopeWriter(
    schema,
    async (chunk) => {
      pending.push(chunk);
    },
    async () => undefined,
    0,
    WRITER_OPTIONS,
  );
  const writer = new parquet.ParquetWriter(schema, envelope, WRITER_OPTIONS);
  for (const [key, value] of metadata) writer.setMetadata(key, value);
  let index = 0;
  for await (const record of records) {
    await libraryCall(() => writer.appendRow(record), index);
    index += 1;
    if (pending.length > 0) yield* pending.splice(0);
  }
  await libraryCall(() => writer.close(), index);
  if (!envelope.footerRewritten) {
    // A library update that encodes its footer another way would otherwise
    // silently bring back naive timestamps.
    throw new ExportError('INTERNAL', 'parquet footer was written without the UTC timestamp logical type (parquetjs-lite changed?)');
  }
  yield* pending.splice(0);
}

/**
 * The library's envelope writer with one addition to the footer it encodes: its
 * writeFooter encodes the file metadata and hands the bytes to writeSection in
 * the same synchronous call, so writeSection, told it is inside writeFooter,
 * rewrites those bytes with `withUtcTimestamps` before they leave. Everything
 * else (pages, row groups, offsets) is the library's own code, unchanged.
 */
class UtcTimestampEnvelopeWriter extends parquet.ParquetEnvelopeWriter {
  #inFooter = false;
  /** Whether the footer went through `withUtcTimestamps`. */
  footerRewritten = false;

  override writeFooter(userMetadata: Record<string, string>): Promise<void> {
    this.#inFooter = true;
    try {
      return super.writeFooter(userMetadata);
    } finally {
      this.#inFooter = false;
    }
  }

  override writeSection(buf: Buffer): Promise<void> {
    if (!this.#inFooter) return super.writeSection(buf);
    const footer = withUtcTimestamps(buf);
    this.footerRewritten = true;
    return super.writeSection(footer);
  }
}

const PARQUET_MAGIC = 'PAR1';

/**
 * Takes a file's footer (thrift FileMetaData, its length as a 4-byte little
 * endian integer, `PAR1`) and returns it with every TIMESTAMP_MILLIS column also
 * marked with the logical type TIMESTAMP(isAdjustedToUTC = true, MILLIS). Without
 * it, readers that honour logical types (DuckDB, polars, Arrow's newer paths)
 * take the instants for local wall-clock times (issue 13). The converted type
 * stays for readers that know only that. Decoding and encoding use the library's
 * own Thrift code; a footer that does not re-encode to the same bytes is refused
 * rather than rewritten, since something in it would not survive.
 */
export function withUtcTimestamps(footer: Buffer): Buffer {
  const length = footer.length >= 8 ? footer.readUInt32LE(footer.length - 8) : -1;
  if (length + 8 !== footer.length || footer.toString('latin1', footer.length - 4) !== PARQUET_MAGIC) {
    throw new ExportError('INTERNAL', 'parquet footer rewrite: the bytes are not one whole footer');
  }
  const encoded = footer.subarray(0, length);
  const metadata = new thrift.FileMetaData();
  thriftCodec.decodeThrift(metadata, encoded);
  if (!thriftCodec.serializeThrift(metadata).equals(encoded)) {
    throw new ExportError('INTERNAL', 'parquet footer rewrite: the footer does not round-trip through the Thrift codec');
  }
  for (const element of metadata.schema) {
    if (element.converted_type === thrift.ConvertedType.TIMESTAMP_MILLIS) {
      element.logicalType = new thrift.LogicalType({
        TIMESTAMP: new thrift.TimestampType({ isAdjustedToUTC: true, unit: new thrift.TimeUnit({ MILLIS: new thrift.MilliSeconds() }) }),
      });
    }
  }
  const rewritten = thriftCodec.serializeThrift(metadata);
  const out = Buffer.alloc(rewritten.length + 8);
  rewritten.copy(out);
  out.writeUInt32LE(rewritten.length, rewritten.length);
  out.write(PARQUET_MAGIC, rewritten.length + 4, 'latin1');
  return out;
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
