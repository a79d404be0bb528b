/**
 * Staging parts ("runs"): the records of one commit, sorted by the published sort
 * key, one line each. Runs are an internal format: finalize merges them (k-way,
 * streaming, at most FAN_IN open at once) into the published CSV or Parquet files,
 * so the output format is written once, memory stays bounded by the part size,
 * and a run can be read back and verified (sha256, rows) cheaply.
 *
 * A line is `account \t user_name \t access_key_id \t seq \t user_id \t payload`:
 * the sort key in front so the merge compares without decoding, `seq` the order in
 * which the snapshot observed the row (a later observation of the same key wins).
 * Account ids, IAM user names, key and user ids never hold a tab or a newline.
 * The payload is JSON (so it never holds a raw newline either), by format:
 * - Parquet: the cells as an array in schema column order (timestamps as epoch
 *   ms), decoded into a record again at finalize;
 * - CSV: `{"csv": row, "dated": bool}`, the row's final CSV text as csv-stringify
 *   rendered it when the record arrived (sinks/csv.ts, the data files' options) and whether it
 *   has a last-use date (the manifest counts those). Finalize copies the text
 *   after the header: a million rows are rendered once, not decoded and rendered
 *   again. Parts staged as cells by an earlier version are still read.
 *
 * One row per access key id: a key is observed twice only when a listing was
 * restarted after some of it was committed (a Marker IAM rejected, a user renamed
 * while in progress); such users are "dirty" in the checkpoint. The merge keeps the
 * latest observation of every key of a dirty user (they may sit under two names,
 * far apart in the sort order: a first pass over the parts finds their latest seq),
 * and of rows equal in sort key anywhere; it counts what it drops.
 */
import { createHash } from 'node:crypto';
import { ExportError } from './errors.ts';
import { faultPoint } from './faultpoint.ts';
import type { Format } from './formats.ts';
import { COLUMNS, compareText, type AccessKeyRecord } from './schema.ts';
import type { PartInfo } from './checkpoint.ts';
import { checkRecord } from './sinks/check.ts';
import { csvRows } from './sinks/csv.ts';
import { LinePacker } from './lines.ts';
import { keyJoin, type Store } from './store/store.ts';

/** Most runs open at once; more are merged in rounds through intermediate runs. */
export const FAN_IN = 64;

/**
 * Bytes a merge asks of all its open runs at once. A local run's read stream holds
 * the chunk being read and one read ahead: at 256 KiB a chunk, the 13 runs of a
 * 100,000-user snapshot held ~8 MiB of buffers at its publication (64 runs: 32 MiB).
 */
const MERGE_READ_BYTES = 1024 * 1024;
/**
 * The smallest chunk: below it the merge slows. 51 runs of 1,000,000 CSV records read
 * at 20 KiB took 2.63 s to publish instead of 1.84 s (make bench, 2026-11-30).
 */
const MIN_MERGE_CHUNK = 64 * 1024;

/** The chunk each of `open` runs is read in: 256 KiB for a few, down to 64 KiB for many. */
export function mergeChunkBytes(open: number): number {
  return Math.min(256 * 1024, Math.max(MIN_MERGE_CHUNK, Math.floor(MERGE_READ_BYTES / Math.max(1, open) / 1024) * 1024));
}

/** The runs of a merge, read in chunks that keep the merge's buffers within MERGE_READ_BYTES. */
function readRunsLines(store: Store, runs: readonly StagedRun[]): AsyncGenerator<Lines>[] {
  const chunkBytes = mergeChunkBytes(runs.length);
  return runs.map((r) => readRunLines(store, r.dir, r.part, chunkBytes));
}

type Cell = string | number | null;

// Precomputed once: the codec is on the per-record path of every commit and merge.
const NAMES = COLUMNS.map((c) => c.name);
const IS_TIMESTAMP = COLUMNS.map((c) => c.type === 'timestamp');

/** A record as the snapshot observed it. */
export interface Observation {
  readonly record: AccessKeyRecord;
  readonly seq: number;
}

/** A committed part and the store folder it is in (shards have one folder each). */
export interface StagedRun {
  readonly dir: string;
  readonly part: PartInfo;
}

/** What staged rows and staged records are ordered by. */
type SortKey = Pick<StagedRow, 'account' | 'userName' | 'keyId' | 'seq'>;

/** A staged line, its sort key parsed, its record decoded only when needed. */
export interface StagedRow {
  readonly account: string;
  readonly userName: string;
  readonly keyId: string;
  readonly seq: number;
  readonly userId: string;
  readonly line: string;
  /** Where the payload starts in `line`. */
  readonly payloadAt: number;
}

/** A staged CSV row: its final text (no line end) and whether it has a last-use date. */
export interface CsvRow {
  readonly text: string;
  readonly dated: boolean;
}

/**
 * A CSV row's payload is `{"csv":<text as a JSON string>,"dated":<bool>}`; these
 * are its fixed pieces (with and without the string's quotes).
 */
const CSV_OPEN_JSON = '{"csv":';
const CSV_UNDATED_JSON = ',"dated":false}';
const CSV_DATED_JSON = ',"dated":true}';
const CSV_OPEN = CSV_OPEN_JSON + '"';
const CSV_UNDATED = '"' + CSV_UNDATED_JSON;
const CSV_DATED = '"' + CSV_DATED_JSON;

/** The cells of a record as a JSON array. */
function encodeCells(record: AccessKeyRecord): string {
  const cells: Cell[] = new Array<Cell>(NAMES.length);
  for (let i = 0; i < NAMES.length; i++) {
    const v = record[NAMES[i]!];
    cells[i] = v !== null && IS_TIMESTAMP[i] ? (v as Date).getTime() : (v as Cell);
  }
  return JSON.stringify(cells);
}

/** One observation as a staged line of a Parquet part (without the newline). */
export function encodeRow(o: Observation): string {
  const staged = new StagedLines('parquet', 0);
  staged.add([o.record], () => o.seq);
  return staged.take(1).line(0);
}

/** Parses the sort key of a staged line; undefined when it is not one. */
export function parseRow(line: string): StagedRow | undefined {
  const t1 = line.indexOf('\t');
  const t2 = line.indexOf('\t', t1 + 1);
  const t3 = line.indexOf('\t', t2 + 1);
  const t4 = line.indexOf('\t', t3 + 1);
  const t5 = line.indexOf('\t', t4 + 1);
  if (t1 < 0 || t2 < 0 || t3 < 0 || t4 < 0 || t5 < 0) return undefined;
  const seq = Number(line.slice(t3 + 1, t4));
  if (!Number.isSafeInteger(seq)) return undefined;
  return { account: line.slice(0, t1), userName: line.slice(t1 + 1, t2), keyId: line.slice(t2 + 1, t3), seq, userId: line.slice(t4 + 1, t5), line, payloadAt: t5 + 1 };
}

/** True when the row's payload is cells (a Parquet part, or a CSV part of an earlier version). */
function hasCells(row: StagedRow): boolean {
  return row.line.charCodeAt(row.payloadAt) === 0x5b; // '['
}

/** The record of a staged row of cells. */
export function decodeRow(row: StagedRow): AccessKeyRecord {
  if (!hasCells(row)) throw new ExportError('INTERNAL', `staged row of key ${row.keyId} holds CSV text where a record was expected`);
  const cells = JSON.parse(row.line.slice(row.payloadAt)) as Cell[];
  const out: Record<string, unknown> = {};
  for (let i = 0; i < NAMES.length; i++) {
    const v = cells[i] ?? null;
    out[NAMES[i]!] = v !== null && IS_TIMESTAMP[i] ? new Date(v as number) : v;
  }
  return out as unknown as AccessKeyRecord;
}


/** The CSV text of a staged row: as rendered at commit, or rendered now from cells staged by an earlier version. */
export function csvRowOf(row: StagedRow): CsvRow {
  const line = row.line;
  const at = row.payloadAt;
  if (hasCells(row)) {
    const record = decodeRow(row);
    checkRecord(record, 0);
    return { text: csvRows([record])[0]!, dated: record.last_used_date !== null };
  }
  // JSON escapes all start with a backslash: without one, the text is the
  // string's content as it stands (most rows: no quoted field, no line break).
  if (line.startsWith(CSV_OPEN, at) && line.indexOf('\\', at) < 0) {
    if (line.endsWith(CSV_UNDATED)) return { text: line.slice(at + CSV_OPEN.length, line.length - CSV_UNDATED.length), dated: false };
    if (line.endsWith(CSV_DATED)) return { text: line.slice(at + CSV_OPEN.length, line.length - CSV_DATED.length), dated: true };
  }
  const p = JSON.parse(line.slice(at)) as { csv?: unknown; dated?: unknown };
  if (typeof p.csv !== 'string' || typeof p.dated !== 'boolean') throw new ExportError('INTERNAL', `staged row of key ${row.keyId} has no CSV text`);
  return { text: p.csv, dated: p.dated };
}

/** Published order (account, user name, key id), then observation order: of staged rows, and of records staged for a part. */
export function compareRows(a: SortKey, b: SortKey): number {
  return compareText(a.account, b.account) || compareText(a.userName, b.userName) || compareText(a.keyId, b.keyId) || a.seq - b.seq;
}

function sameKey(a: StagedRow, b: StagedRow): boolean {
  return a.keyId === b.keyId && a.userName === b.userName && a.account === b.account;
}

/** The file name of run `n` written by run `runId` (two holders never write the same name). */
export function runFileName(runId: string, n: number): string {
  return `run-${runId}-${String(n).padStart(6, '0')}.ndjson`;
}

/**
 * Sorts `observations` and writes them as one durable run at `key`, staged for
 * `format` (a CSV part holds each row's final text, a Parquet part its cells).
 */
export async function writeRun(store: Store, key: string, observations: readonly Observation[], format: Format): Promise<PartInfo> {
  const staged = new StagedLines(format);
  staged.add(
    observations.map((o) => o.record),
    (j) => observations[j]!.seq,
  );
  return staged.take(staged.size).write(store, key);
}

/**
 * Bytes of a chunk of staged lines. Chunks are filled again once their part is
 * written, not freed: glibc's malloc hands out a request from its heap, not a
 * mapping of its own, when it is smaller than the largest mapping freed so far, and
 * chunks of 256 KiB taken and freed at every commit left a 100,000-user export's
 * heap full of holes (peak RSS 146 MiB against 137; 130 with glibc's threshold
 * pinned). A chunk's pages count in RSS only once written.
 *
 * 1 MiB, not 8: a commit's lines (20,000 Parquet rows, ~8 MB) are held until their
 * part is written while the next commit's fill chunks of their own, and with 8 MiB
 * chunks that touched up to four of them (the buffers outside the heap of a
 * 100,000-user export: 28-35 MiB late in the export, 22-27 MiB with 1 MiB chunks).
 */
const STAGED_CHUNK_BYTES = 1024 * 1024;
/** Spare chunks kept for the next commits: a commit of 20,000 rows fills about ten. */
export const MAX_SPARE_CHUNKS = 16;

/**
 * Records staged for parts as they arrive, until their commit: each record's whole
 * staged line (its seq is known on arrival) encoded into buffers outside V8's heap,
 * and on the heap only numbers (where the line is, its seq), its account and its note.
 *
 * Before, a record waited as an object with its payload string (~400 bytes of heap a
 * key): waiting for its commit it outlived young-generation collections and was
 * copied into the old generation. On the 1,000,000-record local bench (same hour,
 * alternated): scavenges 1.0-1.2 s instead of 1.7-2.1 with one commit at the end,
 * peak RSS 260 MB instead of 385 with the default cadence (720 instead of 830 with
 * one commit). At the commit the lines are copied out in sorted order, not rendered.
 */
/**
 * Per staged row, in arrival order: its chunk, where its line starts, where its sort
 * key (account, user name, key id) ends, where the line ends (after its '\n'), its
 * seq, its account and its note.
 */
interface StagedRows {
  readonly chunk: number[];
  readonly start: number[];
  readonly keyEnd: number[];
  readonly end: number[];
  readonly seq: number[];
  readonly accounts: string[];
  readonly notes: (string | undefined)[];
}

/** Rows [from, to) of `rows`, their chunk numbers less `chunksBefore`. */
function sliceRows(rows: StagedRows, from: number, to: number, chunksBefore = 0): StagedRows {
  return {
    chunk: rows.chunk.slice(from, to).map((c) => c - chunksBefore),
    start: rows.start.slice(from, to),
    keyEnd: rows.keyEnd.slice(from, to),
    end: rows.end.slice(from, to),
    seq: rows.seq.slice(from, to),
    accounts: rows.accounts.slice(from, to),
    notes: rows.notes.slice(from, to),
  };
}

export class StagedLines {
  readonly #format: Format;
  readonly #chunkBytes: number;
  #chunks: Buffer[] = [];
  /** Chunks a written part gave back, filled again before any new one is taken. */
  #spare: Buffer[] = [];
  /** Bytes used in the last chunk. */
  #at = 0;
  #allocated = 0;
  #rows: StagedRows = { chunk: [], start: [], keyEnd: [], end: [], seq: [], accounts: [], notes: [] };

  constructor(format: Format, chunkBytes = STAGED_CHUNK_BYTES) {
    this.#format = format;
    this.#chunkBytes = chunkBytes;
  }

  /** Rows waiting. */
  get size(): number {
    return this.#rows.seq.length;
  }

  /** Chunks taken from the allocator so far (not filled again from the spares). */
  get allocated(): number {
    return this.#allocated;
  }

  /**
   * Checks and renders `records` (in order), the j-th with seq `seqOf(j)` and note
   * `notes[j]`; `first` is the position of the first one, for a check's message. A
   * record that fails its check stages nothing of the batch.
   */
  add(records: readonly AccessKeyRecord[], seqOf: (j: number) => number, first = 0, notes?: readonly (string | undefined)[]): void {
    for (let j = 0; j < records.length; j++) checkRecord(records[j]!, first + j);
    const payloads = this.#format === 'csv' ? csvRows(records) : records.map(encodeCells);
    for (let j = 0; j < records.length; j++) {
      const r = records[j]!;
      const seq = seqOf(j);
      const key = `${r.account_id}\t${r.user_name}\t${r.access_key_id}`;
      const payload = payloads[j]!;
      const rest =
        this.#format === 'csv'
          ? `\t${seq}\t${r.user_id}\t${CSV_OPEN_JSON}${JSON.stringify(payload)}${r.last_used_date !== null ? CSV_DATED_JSON : CSV_UNDATED_JSON}\n`
          : `\t${seq}\t${r.user_id}\t${payload}\n`;
      // UTF-8 takes at most 3 bytes per UTF-16 code unit.
      const most = (key.length + rest.length) * 3;
      let buf = this.#chunks[this.#chunks.length - 1];
      if (buf === undefined || this.#at + most > buf.length) {
        const spare = this.#spare.pop();
        if (spare !== undefined && spare.length >= most) buf = spare;
        else {
          buf = Buffer.allocUnsafe(Math.max(this.#chunkBytes, most));
          this.#allocated++;
        }
        this.#chunks.push(buf);
        this.#at = 0;
      }
      const start = this.#at;
      const keyEnd = start + buf.write(key, start, 'utf8');
      this.#at = keyEnd + buf.write(rest, keyEnd, 'utf8');
      const rows = this.#rows;
      rows.chunk.push(this.#chunks.length - 1);
      rows.start.push(start);
      rows.keyEnd.push(keyEnd);
      rows.end.push(this.#at);
      rows.seq.push(seq);
      rows.accounts.push(r.account_id);
      rows.notes.push(notes?.[j]);
    }
  }

  /** Takes the first `n` rows waiting (in arrival order) as one part; the others wait on. */
  take(n: number): StagedPart {
    const rows = Math.min(n, this.size);
    const chunks = this.#chunks;
    // The chunks before the first row left are the part's alone (all of them when no
    // row is left); the last one may be shared, its lines before the ones still added.
    const from = rows === this.size ? chunks.length : this.#rows.chunk[rows]!;
    const part = new StagedPart(chunks, sliceRows(this.#rows, 0, rows), () => {
      for (const c of chunks.slice(0, from)) if (this.#spare.length < MAX_SPARE_CHUNKS) this.#spare.push(c);
    });
    this.#chunks = chunks.slice(from);
    this.#rows = sliceRows(this.#rows, rows, this.size, from);
    return part;
  }
}

/** The rows of a commit as the part writer reports them: each one's account, key id and note, in arrival order. */
export interface CommittedRows {
  readonly rows: number;
  account(i: number): string;
  keyId(i: number): string;
  note(i: number): string | undefined;
}

/** Rows taken from StagedLines for one part: written sorted by `write`. */
export class StagedPart implements CommittedRows {
  readonly #chunks: readonly Buffer[];
  readonly #rows: StagedRows;
  readonly #written: () => void;

  constructor(chunks: readonly Buffer[], rows: StagedRows, written: () => void) {
    this.#chunks = chunks;
    this.#rows = rows;
    this.#written = written;
  }

  get rows(): number {
    return this.#rows.seq.length;
  }

  /**
   * The rows in the order they are written. The sort keys are decoded for the sort
   * alone: nothing holds them while the part is written (they would live through
   * the writes' waits, into the old generation).
   */
  #sorted(): number[] {
    const keys: string[] = [];
    for (let i = 0; i < this.rows; i++) keys.push(this.#key(i));
    const seq = this.#rows.seq;
    return Array.from({ length: this.rows }, (_, i) => i).sort((a, b) => {
      const ka = keys[a]!;
      const kb = keys[b]!;
      return ka < kb ? -1 : ka > kb ? 1 : seq[a]! - seq[b]!;
    });
  }

  /** The sort key of row i: account, user name and key id joined by tabs. */
  #key(i: number): string {
    const r = this.#rows;
    return this.#chunks[r.chunk[i]!]!.toString('utf8', r.start[i]!, r.keyEnd[i]!);
  }

  account(i: number): string {
    return this.#rows.accounts[i]!;
  }

  /** Row i's staged line, without its '\n'. */
  line(i: number): string {
    const r = this.#rows;
    return this.#chunks[r.chunk[i]!]!.toString('utf8', r.start[i]!, r.end[i]! - 1);
  }

  keyId(i: number): string {
    const key = this.#key(i);
    return key.slice(key.lastIndexOf('\t') + 1);
  }

  note(i: number): string | undefined {
    return this.#rows.notes[i];
  }

  /**
   * Sorts the rows by the published sort key, then seq (compareRows' order: the
   * fields hold no tab and nothing below it, which XML cannot carry, so their text
   * joined by tabs orders as the fields do) and writes them as one durable run at `key`.
   */
  async write(store: Store, key: string): Promise<PartInfo> {
    const order = this.#sorted();
    const chunks = this.#chunks;
    const { chunk, start, end } = this.#rows;
    async function* bytes(): AsyncGenerator<Buffer> {
      const packer = new LinePacker();
      for (const i of order) {
        const full = packer.copy(chunks[chunk[i]!]!, start[i]!, end[i]!);
        if (full) yield full;
      }
      const last = packer.end();
      if (last) yield last;
    }
    try {
      return await writeChunks(store, key, this.rows, bytes());
    } finally {
      // Its lines are in the store (or will never be): its chunks can be filled again.
      this.#written();
    }
  }
}

/** Writes merged rows, as staged, as one run at `key`. */
async function writeRows(store: Store, key: string, rows: number, batches: AsyncIterable<readonly StagedRow[]>): Promise<PartInfo> {
  async function* chunks(): AsyncGenerator<Buffer> {
    const packer = new LinePacker();
    for await (const batch of batches) {
      for (const row of batch) {
        const full = packer.add(row.line);
        if (full) yield full;
      }
    }
    const last = packer.end();
    if (last) yield last;
  }
  return writeChunks(store, key, rows, chunks());
}

async function writeChunks(store: Store, key: string, rows: number, chunks: AsyncIterable<Buffer>): Promise<PartInfo> {
  const { sha256 } = await store.upload(key, chunks);
  return { file: key.slice(key.lastIndexOf('/') + 1), rows, sha256 };
}

/**
 * The whole lines of one read of a run, parsed into rows one at a time as they are
 * wanted. The merge holds one of these per open run: a buffer outside V8's heap and
 * one parsed row, not a chunk's worth of row objects that would outlive young-generation
 * collections while the merge works through the other runs.
 */
class Lines {
  readonly #bytes: Buffer;
  readonly #corrupt: (why: string) => ExportError;
  #at = 0;
  #rows = 0;

  constructor(bytes: Buffer, corrupt: (why: string) => ExportError) {
    this.#bytes = bytes;
    this.#corrupt = corrupt;
  }

  /** The next row, or undefined when the chunk is used up. */
  next(): StagedRow | undefined {
    if (this.#at >= this.#bytes.length) return undefined;
    const nl = this.#bytes.indexOf(0x0a, this.#at);
    const row = parseRow(this.#bytes.toString('utf8', this.#at, nl));
    if (!row) throw this.#corrupt('is not valid');
    this.#at = nl + 1;
    this.#rows++;
    return row;
  }

  /** Rows parsed so far. */
  get rows(): number {
    return this.#rows;
  }
}

/**
 * Reads a run back in chunks of whole lines (one per chunk read, none empty),
 * verifying its sha256 and row count at the end: a part that changed in the store
 * since it was committed is CHECKPOINT_CORRUPT. Rows are counted as they are
 * parsed, so a reader reads each chunk to its end before it asks for the next
 * (the merge and `readRunBatches` do; one that stops early stops the check too).
 */
async function* readRunLines(store: Store, dir: string, part: PartInfo, chunkBytes?: number): AsyncGenerator<Lines> {
  const key = keyJoin(dir, part.file);
  const where = store.describe(key);
  const hash = createHash('sha256');
  const corrupt = (why: string) => new ExportError('CHECKPOINT_CORRUPT', `staged part ${where} ${why}; rerun with --fresh to discard the unfinished snapshot`, { file: where });
  let rest: Buffer | undefined;
  let rows = 0;
  try {
    for await (const chunk of store.readStream(key, { chunkBytes })) {
      hash.update(chunk);
      // The line cut by the last read is completed with the start of this one: a copy of
      // that line only, not of the whole chunk (a merge of 50 runs held each chunk twice).
      let from = 0;
      if (rest) {
        const nl = chunk.indexOf(0x0a);
        if (nl < 0) {
          rest = Buffer.concat([rest, chunk]);
          continue;
        }
        from = nl + 1;
        const lines = new Lines(Buffer.concat([rest, chunk.subarray(0, from)]), corrupt);
        rest = undefined;
        yield lines;
        rows += lines.rows;
      }
      const end = chunk.lastIndexOf(0x0a) + 1;
      // Copied: the bytes after the last line end would otherwise keep the whole chunk alive.
      if (end < chunk.length) rest = Buffer.from(chunk.subarray(end));
      if (end > from) {
        const lines = new Lines(chunk.subarray(from, end), corrupt);
        yield lines;
        // The reader asks for more only once it has read these to the end.
        rows += lines.rows;
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as { name?: string }).name === 'NoSuchKey') throw corrupt('is missing');
    throw err;
  }
  if (rest) throw corrupt('ends in the middle of a line');
  if (hash.digest('hex') !== part.sha256 || rows !== part.rows) throw corrupt('does not match its checkpoint entry (sha256 or rows)');
}

/** Reads a run back in batches of rows (one per chunk read, none empty), verified as by `readRunLines`. */
export async function* readRunBatches(store: Store, dir: string, part: PartInfo): AsyncGenerator<StagedRow[]> {
  for await (const lines of readRunLines(store, dir, part)) {
    const batch: StagedRow[] = [];
    for (let row = lines.next(); row; row = lines.next()) batch.push(row);
    yield batch;
  }
}

/** Reads a run back, row by row, verified as by `readRunBatches`. */
export async function* readRun(store: Store, dir: string, part: PartInfo): AsyncGenerator<StagedRow> {
  for await (const batch of readRunBatches(store, dir, part)) yield* batch;
}

/** Deletes staged files in `dir` that no committed part names (left by a crash between part and checkpoint). */
export async function removeOrphans(store: Store, dir: string, parts: readonly PartInfo[]): Promise<string[]> {
  const named = new Set(parts.map((p) => p.file));
  const orphans = (await store.list(dir.endsWith('/') ? dir : dir + '/')).filter((k) => !named.has(k.slice(k.lastIndexOf('/') + 1)));
  for (const o of orphans) await store.delete(o);
  return orphans;
}

/**
 * Rows a merge hands on at once: one await per batch, not per row. Small, because
 * every stage between the merge and the data file holds the batch it is working on
 * (4-5 batches at once), and rows that live that long outlast two scavenges and
 * are promoted into V8's old generation. Publishing 99,980 Parquet rows (the
 * installed command, --trace-gc-nvp): 82 MB promoted and 17 major collections in
 * 2.2 s with 1,024-row batches, 35 MB and 12 in 1.9 s with 128; the publication's
 * RSS 130-147 MiB against 123-131 MiB.
 */
export const MERGE_BATCH = 128;

/** The head of one input of the merge: its current chunk and the next row of it. */
interface Head {
  lines: Lines;
  row: StagedRow;
  readonly i: number;
}

/**
 * A k-way merge of sorted streams of line chunks in (sort key, seq) order, ties
 * by stream index: a binary heap over the streams' next rows. It waits only when
 * a stream's chunk is used up.
 */
async function* mergeStreams(streams: AsyncGenerator<Lines>[]): AsyncGenerator<StagedRow[]> {
  const heap: Head[] = [];
  const less = (a: Head, b: Head) => {
    const c = compareRows(a.row, b.row);
    return c < 0 || (c === 0 && a.i < b.i);
  };
  const siftUp = (k: number) => {
    while (k > 0) {
      const parent = (k - 1) >> 1;
      if (!less(heap[k]!, heap[parent]!)) break;
      [heap[k], heap[parent]] = [heap[parent]!, heap[k]!];
      k = parent;
    }
  };
  const siftDown = (k: number) => {
    for (;;) {
      const l = 2 * k + 1;
      const r = l + 1;
      let m = k;
      if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
      if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
      if (m === k) return;
      [heap[k], heap[m]] = [heap[m]!, heap[k]!];
      k = m;
    }
  };
  /** The stream's next chunk and its first row, or undefined at its end. */
  const refill = async (i: number): Promise<{ lines: Lines; row: StagedRow } | undefined> => {
    for (;;) {
      const n = await streams[i]!.next();
      if (n.done) return undefined;
      const row = n.value.next();
      if (row) return { lines: n.value, row };
    }
  };
  try {
    for (let i = 0; i < streams.length; i++) {
      const first = await refill(i);
      if (first) {
        heap.push({ ...first, i });
        siftUp(heap.length - 1);
      }
    }
    let out: StagedRow[] = [];
    while (heap.length > 0) {
      const top = heap[0]!;
      out.push(top.row);
      const row = top.lines.next();
      if (row) top.row = row;
      else {
        const next = await refill(top.i);
        if (next) {
          top.lines = next.lines;
          top.row = next.row;
        } else {
          const last = heap.pop()!;
          if (heap.length === 0) break;
          heap[0] = last;
        }
      }
      siftDown(0);
      if (out.length >= MERGE_BATCH) {
        yield out;
        out = [];
      }
    }
    if (out.length > 0) yield out;
  } finally {
    await Promise.all(streams.map((s) => s.return(undefined)));
  }
}

export interface MergeOptions {
  /** Users whose keys may have been observed twice (checkpoint `dirty`). */
  readonly dirty: ReadonlySet<string>;
  /** Store folder for intermediate runs of this merge (deleted by the caller afterwards). */
  readonly scratch: string;
  /** Most runs open at once (FAN_IN). */
  readonly fanIn?: number;
}

/**
 * Merges the committed runs into one stream of staged rows in published order,
 * in batches, one row per access key (the latest observation), counting dropped
 * rows in `stats.duplicates`; only the sort key is read. Never more than `fanIn`
 * runs are open: more are first merged in rounds into intermediate runs under
 * `scratch`.
 */
export async function* mergeRows(store: Store, staged: readonly StagedRun[], options: MergeOptions, stats: { duplicates: number }): AsyncGenerator<StagedRow[]> {
  const fanIn = Math.max(2, options.fanIn ?? FAN_IN);
  let runs: StagedRun[] = [...staged];
  for (let round = 0; runs.length > fanIn; round++) {
    const next: StagedRun[] = [];
    for (let g = 0; g < runs.length; g += fanIn) {
      const group = runs.slice(g, g + fanIn);
      if (group.length === 1) {
        next.push(group[0]!);
        continue;
      }
      const key = keyJoin(options.scratch, `merge-${round}-${String(next.length).padStart(5, '0')}.ndjson`);
      const rows = group.reduce((n, r) => n + r.part.rows, 0);
      const part = await writeRows(store, key, rows, mergeStreams(readRunsLines(store, group)));
      faultPoint('merge-round-written', key);
      next.push({ dir: options.scratch, part });
    }
    runs = next;
  }

  // Dirty users' keys may sit under two names: find the latest observation of each first.
  const latest = new Map<string, number>();
  if (options.dirty.size > 0) {
    for (const r of runs) {
      for await (const batch of readRunBatches(store, r.dir, r.part)) {
        for (const row of batch) if (options.dirty.has(row.userId) && (latest.get(row.keyId) ?? -1) < row.seq) latest.set(row.keyId, row.seq);
      }
    }
  }

  let held: StagedRow | undefined;
  for await (const batch of mergeStreams(readRunsLines(store, runs))) {
    const out: StagedRow[] = [];
    for (const row of batch) {
      if (options.dirty.size > 0 && options.dirty.has(row.userId) && latest.get(row.keyId) !== row.seq) {
        stats.duplicates++;
        continue;
      }
      // Equal sort keys arrive in seq order: the last one wins.
      if (held && sameKey(held, row)) stats.duplicates++;
      else if (held) out.push(held);
      held = row;
    }
    if (out.length > 0) yield out;
  }
  if (held) yield [held];
}

/** `mergeRows`, row by row, each decoded into its record (parts of cells only). */
export async function* mergeRuns(store: Store, staged: readonly StagedRun[], options: MergeOptions, stats: { duplicates: number }): AsyncGenerator<AccessKeyRecord> {
  for await (const batch of mergeRows(store, staged, options, stats)) for (const row of batch) yield decodeRow(row);
}
