/**
 * Staging parts ("runs"): the records of one commit, sorted by the published sort
 * key, as NDJSON arrays in schema column order (timestamps as epoch ms). Runs are
 * an internal format: finalize merges them (k-way, streaming) into the published
 * CSV or Parquet files, so the output format is written once, memory stays bounded
 * by the part size, and a run can be read back and verified cheaply.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ExportError } from './errors.ts';
import { PRIVATE_FILE_MODE, writeDurably } from './fsutil.ts';
import { COLUMNS, compareRecords, type AccessKeyRecord } from './schema.ts';
import type { PartInfo } from './checkpoint.ts';

type Cell = string | number | null;

// Precomputed once: the codec is on the per-record path of every commit and merge.
const NAMES = COLUMNS.map((c) => c.name);
const IS_TIMESTAMP = COLUMNS.map((c) => c.type === 'timestamp');

/** One record as a JSON array line. */
export function encodeRecord(record: AccessKeyRecord): string {
  const cells: Cell[] = new Array<Cell>(NAMES.length);
  for (let i = 0; i < NAMES.length; i++) {
    const v = record[NAMES[i]!];
    cells[i] = v !== null && IS_TIMESTAMP[i] ? (v as Date).getTime() : (v as Cell);
  }
  return JSON.stringify(cells);
}

/** The inverse of `encodeRecord`. */
export function decodeRecord(line: string): AccessKeyRecord {
  const cells = JSON.parse(line) as Cell[];
  const out: Record<string, unknown> = {};
  for (let i = 0; i < NAMES.length; i++) {
    const v = cells[i] ?? null;
    out[NAMES[i]!] = v !== null && IS_TIMESTAMP[i] ? new Date(v as number) : v;
  }
  return out as unknown as AccessKeyRecord;
}

/** The file name of run number `n`. */
export function runFileName(n: number): string {
  return `run-${String(n).padStart(6, '0')}.ndjson`;
}

/** Sorts `records` in place and writes them as one durable run file (0600). */
export async function writeRun(dir: string, file: string, records: AccessKeyRecord[]): Promise<PartInfo> {
  records.sort(compareRecords);
  const hash = createHash('sha256');
  await writeDurably(join(dir, file), PRIVATE_FILE_MODE, async (handle) => {
    // Write in slices so a large part never becomes one giant string.
    for (let i = 0; i < records.length; i += 2048) {
      let chunk = '';
      for (const r of records.slice(i, i + 2048)) chunk += encodeRecord(r) + '\n';
      hash.update(chunk);
      await handle.write(chunk);
    }
  });
  return { file, rows: records.length, sha256: hash.digest('hex') };
}

/**
 * Reads a run back, record by record, verifying its sha256 and row count at the
 * end: a part that changed on disk since it was committed is CHECKPOINT_CORRUPT.
 */
export async function* readRun(dir: string, part: PartInfo): AsyncGenerator<AccessKeyRecord> {
  const path = join(dir, part.file);
  const hash = createHash('sha256');
  let rest = '';
  let rows = 0;
  const corrupt = (why: string) =>
    new ExportError('CHECKPOINT_CORRUPT', `staged part ${path} ${why}; rerun with --fresh to discard the unfinished snapshot`, { file: path });
  let stream;
  try {
    stream = createReadStream(path, { encoding: 'utf8', highWaterMark: 256 * 1024 });
    for await (const chunk of stream as AsyncIterable<string>) {
      hash.update(chunk);
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        rows++;
        yield decodeRecord(line);
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw corrupt('is missing');
    if (err instanceof SyntaxError) throw corrupt('is not valid');
    throw err;
  } finally {
    stream?.destroy();
  }
  if (rest !== '') throw corrupt('ends in the middle of a line');
  if (hash.digest('hex') !== part.sha256 || rows !== part.rows) throw corrupt('does not match its checkpoint entry (sha256 or rows)');
}

/** Deletes files in `dir` that no committed part names (left by a crash between part and checkpoint). */
export async function removeOrphans(dir: string, parts: readonly PartInfo[]): Promise<string[]> {
  const named = new Set(parts.map((p) => p.file));
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const orphans = entries.filter((e) => !named.has(e));
  for (const o of orphans) await rm(join(dir, o), { force: true, recursive: true });
  return orphans;
}

/**
 * Merges sorted runs into one sorted stream (a binary heap over the run heads).
 * Rows with the same (account, user, key) — possible only if IAM listed a user
 * twice across a page shift — are kept once and counted in `duplicates`.
 */
export async function* mergeRuns(dir: string, parts: readonly PartInfo[], stats: { duplicates: number }): AsyncGenerator<AccessKeyRecord> {
  const iters = parts.map((p) => readRun(dir, p));
  const heap: { rec: AccessKeyRecord; i: number }[] = [];
  const less = (a: { rec: AccessKeyRecord; i: number }, b: { rec: AccessKeyRecord; i: number }) => {
    const c = compareRecords(a.rec, b.rec);
    return c < 0 || (c === 0 && a.i < b.i);
  };
  const pushHeap = (n: { rec: AccessKeyRecord; i: number }) => {
    heap.push(n);
    let k = heap.length - 1;
    while (k > 0) {
      const parent = (k - 1) >> 1;
      if (!less(heap[k]!, heap[parent]!)) break;
      [heap[k], heap[parent]] = [heap[parent]!, heap[k]!];
      k = parent;
    }
  };
  const popHeap = () => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let k = 0;
      for (;;) {
        const l = 2 * k + 1;
        const r = l + 1;
        let m = k;
        if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
        if (m === k) break;
        [heap[k], heap[m]] = [heap[m]!, heap[k]!];
        k = m;
      }
    }
    return top;
  };
  try {
    for (let i = 0; i < iters.length; i++) {
      const n = await iters[i]!.next();
      if (!n.done) pushHeap({ rec: n.value, i });
    }
    let previous: AccessKeyRecord | undefined;
    while (heap.length > 0) {
      const top = popHeap();
      if (previous && compareRecords(previous, top.rec) === 0) stats.duplicates++;
      else yield top.rec;
      previous = top.rec;
      const n = await iters[top.i]!.next();
      if (!n.done) pushHeap({ rec: n.value, i: top.i });
    }
  } finally {
    await Promise.all(iters.map((it) => it.return(undefined)));
  }
}
