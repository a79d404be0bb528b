/**
 * One local throughput measure, run as its own process so its peak RSS is its own:
 *
 *   node --import tsx bench/local/worker.ts <ours|stages|writer|stringify|library> <csv|parquet> <records> <dir>
 *
 * - ours: the synthetic items through the modules run.ts composes (toRecord →
 *   deriveAge → filterStatus → partWriter, then publishSnapshot), with the commit
 *   cadence of IKE_COMMIT_ROWS / IKE_COMMIT_MS read by the real `parseCommand`;
 * - stages: the same items through the three stages into a null sink (where the
 *   time of ours goes: stages, or parts and publish);
 * - writer: the same records given to `writeDataFile` (our sink alone);
 * - stringify: the same records through csv-stringify into a file, as by hand;
 * - library (Parquet): the same records through parquetjs-lite's own writer into a
 *   file, as by hand (its openFile, appendRow and close), with the file layout of ours
 *   (schema, compression, row groups, page version): what our sink is measured against
 *   now that it shreds rows itself (pipeline/sinks/parquet.ts, FlatRowsWriter).
 *
 * Prints one JSON line (`WorkerResult`) on stdout. Timing starts after the imports.
 */
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { stringify } from 'csv-stringify';
import parquet from 'parquetjs-lite';
import { Checkpoint, CheckpointFile } from '../../pipeline/checkpoint.ts';
import { LocalStore } from '../../pipeline/store/local.ts';
import { parseCommand } from '../../pipeline/config.ts';
import { dataConfigOf } from '../../pipeline/run.ts';
import { COLUMN_NAMES, COLUMNS } from '../../pipeline/schema.ts';
import { parquetSchema, WRITER_OPTIONS } from '../../pipeline/sinks/parquet.ts';
import type { Batch } from '../../pipeline/items.ts';
import type { AccessKeyRecord } from '../../pipeline/schema.ts';
import { partWriter } from '../../pipeline/sinks/parts.ts';
import { writeDataFile, type Format } from '../../pipeline/sinks/index.ts';
import { finalizeSnapshot, promoteSnapshot, snapshotIdOf, snapshotKeys, viewOf } from '../../pipeline/snapshot.ts';
import { deriveAgeStage } from '../../pipeline/stages/deriveAge.ts';
import { filterStatusStage } from '../../pipeline/stages/filterStatus.ts';
import { toRecordStage } from '../../pipeline/stages/toRecord.ts';
import { ACCOUNT, finishedRecords, sourceBatches } from './synthetic.ts';

const MODES = ['ours', 'stages', 'writer', 'stringify', 'library'] as const;
export type WorkerMode = (typeof MODES)[number];

/** What a worker reports. */
export interface WorkerResult {
  readonly mode: WorkerMode;
  readonly format: Format;
  readonly rows: number;
  /** Wall time of the measured work, imports excluded. */
  readonly ms: number;
  /** ours only: the export phase (stages and part commits) and the publish (merge and data file). */
  readonly exportMs?: number;
  readonly publishMs?: number;
  /** ours only: checkpoint commits made (parts written, checkpoint saved). */
  readonly commits?: number;
  /** ours only: time spent saving checkpoint.json (durably) over all commits. */
  readonly checkpointSaveMs?: number;
  /** Peak resident set of this process, KiB. */
  readonly maxRssKb: number;
}

const TIME = new Date(Date.UTC(2026, 10, 28, 11, 10, 0));
const STAMP = { snapshotId: snapshotIdOf(TIME), snapshotTime: TIME };

async function ours(format: Format, total: number, dir: string): Promise<Omit<WorkerResult, 'maxRssKb'>> {
  const command = parseCommand(['--format', format, '--out', dir], process.env);
  if (command.kind !== 'run') throw new Error('unexpected command');
  const config = command.config;
  const t0 = performance.now();
  const cp = new Checkpoint(STAMP.snapshotId, TIME, dataConfigOf(config, {}));
  const store = new LocalStore(dir);
  const keys = snapshotKeys(cp.snapshotId);
  cp.selectAccounts([{ id: ACCOUNT, name: null }]);
  const file = await CheckpointFile.create(store, keys.checkpoint, cp);
  let commits = 0;
  let saveStarted = 0;
  let checkpointSaveMs = 0;
  await pipeline(
    Readable.from(sourceBatches(total), { objectMode: true }),
    toRecordStage(STAMP),
    deriveAgeStage(),
    filterStatusStage(config.statuses),
    partWriter({
      checkpoint: cp,
      file,
      store,
      runsDir: keys.runs,
      runId: '0bench00',
      assertHeld: () => undefined,
      tuning: config.tuning,
      // beforeSave runs just before the checkpoint save, onCommit just after it.
      beforeSave: () => (saveStarted = performance.now()),
      onCommit: () => {
        commits++;
        checkpointSaveMs += performance.now() - saveStarted;
      },
    }),
  );
  if (!cp.exportComplete) throw new Error('the synthetic export did not complete the checkpoint');
  cp.phase = 'finalize';
  await file.save(cp);
  const t1 = performance.now();
  const manifest = await finalizeSnapshot(store, { checkpoint: cp, file, staging: keys.staging }, { view: viewOf(cp, keys.runs), rowsPerFile: config.tuning.rowsPerFile, toolVersion: 'bench', wallMs: 0, runId: '0bench00' });
  await promoteSnapshot(store, cp);
  const t2 = performance.now();
  return { mode: 'ours', format, rows: manifest.rows, ms: t2 - t0, exportMs: t1 - t0, publishMs: t2 - t1, commits, checkpointSaveMs };
}

async function stagesAlone(total: number): Promise<Omit<WorkerResult, 'maxRssKb'>> {
  const t0 = performance.now();
  let rows = 0;
  await pipeline(
    Readable.from(sourceBatches(total), { objectMode: true }),
    toRecordStage(STAMP),
    deriveAgeStage(),
    filterStatusStage([]),
    new Writable({
      objectMode: true,
      write(batch: Batch<AccessKeyRecord>, _enc, done) {
        for (const item of batch) if (item.type === 'RECORD') rows++;
        done();
      },
    }),
  );
  return { mode: 'stages', format: 'csv', rows, ms: performance.now() - t0 };
}

async function writerAlone(format: Format, total: number, dir: string): Promise<Omit<WorkerResult, 'maxRssKb'>> {
  const t0 = performance.now();
  const info = await writeDataFile(format, join(dir, `alone.${format}`), finishedRecords(total, STAMP));
  return { mode: 'writer', format, rows: info.rows, ms: performance.now() - t0 };
}

async function stringifyAlone(total: number, dir: string): Promise<Omit<WorkerResult, 'maxRssKb'>> {
  const t0 = performance.now();
  let rows = 0;
  const counted = function* () {
    for (const r of finishedRecords(total, STAMP)) {
      rows++;
      yield r;
    }
  };
  await pipeline(
    Readable.from(counted(), { objectMode: true }),
    stringify({ header: true, columns: [...COLUMN_NAMES], cast: { date: (d) => d.toISOString() } }),
    createWriteStream(join(dir, 'stringify.csv')),
  );
  return { mode: 'stringify', format: 'csv', rows, ms: performance.now() - t0 };
}

async function libraryAlone(total: number, dir: string): Promise<Omit<WorkerResult, 'maxRssKb'>> {
  const t0 = performance.now();
  let rows = 0;
  const writer = await parquet.ParquetWriter.openFile(parquetSchema(COLUMNS), join(dir, 'library.parquet'), WRITER_OPTIONS);
  for (const r of finishedRecords(total, STAMP)) {
    await writer.appendRow(r);
    rows++;
  }
  await writer.close();
  return { mode: 'library', format: 'parquet', rows, ms: performance.now() - t0 };
}

const [mode, format, count, dir] = process.argv.slice(2);
if (!MODES.includes(mode as WorkerMode) || (format !== 'csv' && format !== 'parquet') || !count || !dir) {
  process.stderr.write(`usage: worker.ts <${MODES.join('|')}> <csv|parquet> <records> <dir>\n`);
  process.exit(2);
}
await mkdir(dir, { recursive: true });
const total = Number(count);
const run = { ours: () => ours(format, total, dir), stages: () => stagesAlone(total), writer: () => writerAlone(format, total, dir), stringify: () => stringifyAlone(total, dir), library: () => libraryAlone(total, dir) };
const result = await run[mode as WorkerMode]();
const out: WorkerResult = { ...result, maxRssKb: process.resourceUsage().maxRSS };
process.stdout.write(JSON.stringify(out) + '\n');
