/**
 * The one way a data file reaches disk, shared by every format: records flow
 * through the format's encoder into a temp file next to the target, hashed on
 * the way; only a complete, fsynced file is renamed over the target.
 */
import { createHash } from 'node:crypto';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ExportError } from '../errors.ts';
import { commitTemp, tempPathFor } from '../fsutil.ts';
import type { AccessKeyRecord } from '../schema.ts';
import { checkRecord } from './check.ts';
import type { DataFileInfo, RecordSource } from './index.ts';

/**
 * Published files are read by whoever loads the warehouse, often not the user that
 * ran the export: owner-writable, world-readable (the umask still applies). The
 * staging directory around them keeps them private until publication.
 */
const DATA_FILE_MODE = 0o644;

/**
 * Encoders emit small chunks (csv-stringify one per record); gathering them into
 * writes of this size keeps the syscall count low without holding much memory.
 */
const WRITE_BATCH_BYTES = 256 * 1024;

/** Turns records into file bytes: a Transform, or an async generator function. */
export type Encoder =
  | NodeJS.ReadWriteStream
  | ((records: AsyncIterable<AccessKeyRecord>) => AsyncIterable<Buffer>);

/**
 * Checks each of `rows` against the schema (`checkRecord`) and encodes it with
 * `encoder` into `target`, atomically and durably: temp file, fsync, rename, fsync
 * the directory. On any error the temp file is removed, the target is left as it
 * was, and the error is rethrown: an error of the row source, the check or the
 * encoder unchanged, a file-system failure as `OUTPUT_IO` naming the file.
 */
export async function writeAtomically(target: string, rows: RecordSource, encoder: Encoder): Promise<DataFileInfo> {
  const tmp = tempPathFor(target);
  let handle: FileHandle;
  try {
    // 'wx': the temp name is random, so a file already there is not ours to clobber.
    handle = await open(tmp, 'wx', DATA_FILE_MODE);
  } catch (err) {
    throw outputError(err, target);
  }
  let rowCount = 0;
  async function* checked(source: RecordSource): AsyncGenerator<AccessKeyRecord> {
    for await (const record of source) {
      checkRecord(record, rowCount);
      rowCount += 1;
      yield record;
    }
  }
  const hash = createHash('sha256');
  let bytes = 0;
  // The last stage is a plain function rather than a file WriteStream so that an
  // error thrown here is known to be a file-system error: a stream destination
  // would also be destroyed with the row source's error, and the two would look
  // alike by the time the pipeline rejects.
  async function toFile(chunks: AsyncIterable<Buffer | string>): Promise<void> {
    let batch: Buffer[] = [];
    let batched = 0;
    const flush = async (): Promise<void> => {
      const data = Buffer.concat(batch, batched);
      batch = [];
      batched = 0;
      // appendFile loops until every byte is written, unlike a single write().
      await handle.appendFile(data).catch((err: unknown) => {
        throw outputError(err, target);
      });
    };
    for await (const chunk of chunks) {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      hash.update(buf);
      bytes += buf.length;
      batch.push(buf);
      batched += buf.length;
      if (batched >= WRITE_BATCH_BYTES) await flush();
    }
    if (batched > 0) await flush();
    await handle.sync().catch((err: unknown) => {
      throw outputError(err, target);
    });
  }

  try {
    await pipeline(checked(rows), encoder, toFile);
  } catch (err) {
    // close() waits for a write still in flight, so rm finds a settled file.
    await handle.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  try {
    await handle.close();
    await commitTemp(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw outputError(err, target);
  }
  return { file: basename(target), rows: rowCount, bytes, sha256: hash.digest('hex') };
}

function outputError(err: unknown, file: string): ExportError {
  const reason = err instanceof Error ? err.message : String(err);
  return new ExportError('OUTPUT_IO', `cannot write ${file}: ${reason}`, { file }, { cause: err });
}
