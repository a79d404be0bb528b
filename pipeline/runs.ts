/**
 * Staging parts ("runs"): the records of one commit, sorted by the published sort
 * key, one line each. Runs are an internal format: finalize merges them (k-way,
 * streaming, at most FAN_IN open at once) into the published CSV or Parquet files,
 * so the output format is written once, memory stays bounded by the part size,
 * and a run can be read back and verified (sha256, rows) cheaply.
 *
 * A line is `account \t user_name \t access_key_id \t seq \t user_id \t cells`: the
 * sort key in front so the merge compares without decoding, `seq` the order in
 * which the snapshot observed the row (a later observation of the same key wins),
 * and the cells as a JSON array in schema column order (timestamps as epoch ms).
 * Account ids, IAM user names, key and user ids never hold a tab or a newline.
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
import { COLUMNS, compareRecords, type AccessKeyRecord } from './schema.ts';
import type { PartInfo } from './checkpoint.ts';
import { keyJoin, type Store } from './store/store.ts';

/** Most runs open at once; more are merged in rounds through intermediate runs. */
export const FAN_IN = 64;

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

/** A staged line, its sort key parsed, its record decoded only when needed. */
export interface StagedRow {
  readonly account: string;
  readonly userName: string;
  readonly keyId: string;
  readonly seq: number;
  readonly userId: string;
  readonly line: string;
}

/** The cells of a record as a JSON array. */
function encodeCells(record: AccessKeyRecord): string {
  const cells: Cell[] = new Array<Cell>(NAMES.length);
  for (let i = 0; i < NAMES.length; i++) {
    const v = record[NAMES[i]!];
    cells[i] = v !== null && IS_TIMESTAMP[i] ? (v as Date).getTime() : (v as Cell);
  }
  return JSON.stringify(cells);
}

/** One observation as a staged line (without the newline). */
export function encodeRow(o: Observation): string {
  const r = o.record;
  return `${r.account_id}\t${r.user_name}\t${r.access_key_id}\t${o.seq}\t${r.user_id}\t${encodeCells(r)}`;
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
  return { account: line.slice(0, t1), userName: line.slice(t1 + 1, t2), keyId: line.slice(t2 + 1, t3), seq, userId: line.slice(t4 + 1, t5), line };
}

/** The record of a staged row. */
export function decodeRow(row: StagedRow): AccessKeyRecord {
  const cells = JSON.parse(row.line.slice(nthTab(row.line, 5) + 1)) as Cell[];
  const out: Record<string, unknown> = {};
  for (let i = 0; i < NAMES.length; i++) {
    const v = cells[i] ?? null;
    out[NAMES[i]!] = v !== null && IS_TIMESTAMP[i] ? new Date(v as number) : v;
  }
  return out as unknown as AccessKeyRecord;
}

function nthTab(line: string, n: number): number {
  let at = -1;
  for (let i = 0; i < n; i++) at = line.indexOf('\t', at + 1);
  return at;
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Published order (account, user name, key id), then observation order. */
export function compareRows(a: StagedRow, b: StagedRow): number {
  return cmp(a.account, b.account) || cmp(a.userName, b.userName) || cmp(a.keyId, b.keyId) || a.seq - b.seq;
}

function sameKey(a: StagedRow, b: StagedRow): boolean {
  return a.keyId === b.keyId && a.userName === b.userName && a.account === b.account;
}

/** The file name of run `n` written by run `runId` (two holders never write the same name). */
export function runFileName(runId: string, n: number): string {
  return `run-${runId}-${String(n).padStart(6, '0')}.ndjson`;
}

/** Sorts `observations` and writes them as one durable run at `key`. */
export async function writeRun(store: Store, key: string, observations: Observation[]): Promise<PartInfo> {
  observations.sort((a, b) => compareRecords(a.record, b.record) || a.seq - b.seq);
  return writeLines(store, key, observations.length, (function* () {
    for (const o of observations) yield encodeRow(o);
  })());
}

async function writeLines(store: Store, key: string, rows: number, lines: Iterable<string> | AsyncIterable<string>): Promise<PartInfo> {
  async function* chunks(): AsyncGenerator<Buffer> {
    // Slices, so a large part never becomes one giant string.
    let chunk = '';
    for await (const line of lines) {
      chunk += line + '\n';
      if (chunk.length >= 256 * 1024) {
        yield Buffer.from(chunk);
        chunk = '';
      }
    }
    if (chunk !== '') yield Buffer.from(chunk);
  }
  const { sha256 } = await store.upload(key, chunks());
  return { file: key.slice(key.lastIndexOf('/') + 1), rows, sha256 };
}

/**
 * Reads a run back, row by row, verifying its sha256 and row count at the end: a
 * part that changed in the store since it was committed is CHECKPOINT_CORRUPT.
 */
export async function* readRun(store: Store, dir: string, part: PartInfo): AsyncGenerator<StagedRow> {
  const key = keyJoin(dir, part.file);
  const where = store.describe(key);
  const hash = createHash('sha256');
  const corrupt = (why: string) => new ExportError('CHECKPOINT_CORRUPT', `staged part ${where} ${why}; rerun with --fresh to discard the unfinished snapshot`, { file: where });
  let rest = '';
  let rows = 0;
  try {
    for await (const chunk of store.readStream(key)) {
      hash.update(chunk);
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        const row = parseRow(line);
        if (!row) throw corrupt('is not valid');
        rows++;
        yield row;
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as { name?: string }).name === 'NoSuchKey') throw corrupt('is missing');
    throw err;
  }
  if (rest !== '') throw corrupt('ends in the middle of a line');
  if (hash.digest('hex') !== part.sha256 || rows !== part.rows) throw corrupt('does not match its checkpoint entry (sha256 or rows)');
}

/** Deletes staged files in `dir` that no committed part names (left by a crash between part and checkpoint). */
export async function removeOrphans(store: Store, dir: string, parts: readonly PartInfo[]): Promise<string[]> {
  const named = new Set(parts.map((p) => p.file));
  const orphans = (await store.list(dir.endsWith('/') ? dir : dir + '/')).filter((k) => !named.has(k.slice(k.lastIndexOf('/') + 1)));
  for (const o of orphans) await store.delete(o);
  return orphans;
}

/** A k-way merge of sorted row streams in (sort key, seq) order: a binary heap over their heads. */
async function* mergeStreams(streams: AsyncGenerator<StagedRow>[]): AsyncGenerator<StagedRow> {
  const heap: { row: StagedRow; i: number }[] = [];
  const less = (a: { row: StagedRow; i: number }, b: { row: StagedRow; i: number }) => {
    const c = compareRows(a.row, b.row);
    return c < 0 || (c === 0 && a.i < b.i);
  };
  const pushHeap = (n: { row: StagedRow; i: number }) => {
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
    for (let i = 0; i < streams.length; i++) {
      const n = await streams[i]!.next();
      if (!n.done) pushHeap({ row: n.value, i });
    }
    while (heap.length > 0) {
      const top = popHeap();
      yield top.row;
      const n = await streams[top.i]!.next();
      if (!n.done) pushHeap({ row: n.value, i: top.i });
    }
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
 * Merges the committed runs into one stream of records in published order, one
 * row per access key (the latest observation), counting dropped rows in
 * `stats.duplicates`. Never more than `fanIn` runs are open: more are first merged
 * in rounds into intermediate runs under `scratch`.
 */
export async function* mergeRuns(store: Store, staged: readonly StagedRun[], options: MergeOptions, stats: { duplicates: number }): AsyncGenerator<AccessKeyRecord> {
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
      const merged = mergeStreams(group.map((r) => readRun(store, r.dir, r.part)));
      const part = await writeLines(store, key, rows, (async function* () {
        for await (const row of merged) yield row.line;
      })());
      faultPoint('merge-round-written', key);
      next.push({ dir: options.scratch, part });
    }
    runs = next;
  }

  // Dirty users' keys may sit under two names: find the latest observation of each first.
  const latest = new Map<string, number>();
  if (options.dirty.size > 0) {
    for (const r of runs) {
      for await (const row of readRun(store, r.dir, r.part)) {
        if (options.dirty.has(row.userId) && (latest.get(row.keyId) ?? -1) < row.seq) latest.set(row.keyId, row.seq);
      }
    }
  }

  let held: StagedRow | undefined;
  for await (const row of mergeStreams(runs.map((r) => readRun(store, r.dir, r.part)))) {
    if (options.dirty.has(row.userId) && latest.get(row.keyId) !== row.seq) {
      stats.duplicates++;
      continue;
    }
    // Equal sort keys arrive in seq order: the last one wins.
    if (held && sameKey(held, row)) stats.duplicates++;
    else if (held) yield decodeRow(held);
    held = row;
  }
  if (held) yield decodeRow(held);
}
