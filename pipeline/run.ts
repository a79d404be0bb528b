/**
 * One run of the export, start to end. Reading `exportPhase` tells the data flow:
 *
 *   source (ListUsers → p-limit fan-out → ListAccessKeys pages)
 *     → toRecord → deriveAge → filterStatus → part writer (part durable, then checkpoint)
 *
 * then `publishSnapshot` merges the parts into the published files. Everything a
 * rerun needs is in the checkpoint, so a run can stop anywhere and be rerun.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PRIVATE_DIR_MODE } from './fsutil.ts';
import { acquireLock } from './lock.ts';
import { pipeline } from 'node:stream/promises';
import type { IAMClient } from '@aws-sdk/client-iam';
import { Checkpoint, fingerprintOf, loadCheckpoint, saveCheckpoint, type DataConfig, type FailedUser } from './checkpoint.ts';
import type { Config } from './config.ts';
import { ExportError } from './errors.ts';
import type { StateEvent } from './items.ts';
import { removeOrphans } from './runs.ts';
import { createIamClient, newApiStats, totalCalls } from './source/client.ts';
import { KeyBudget, sourceStream } from './source/fanout.ts';
import { partWriter } from './sinks/parts.ts';
import { createStaging, isPublished, STAGING_DIR, listStaging, publishSnapshot, removeStaging, snapshotIdOf, snapshotPaths, type PublishResult, type SnapshotPaths } from './snapshot.ts';
import { deriveAgeStage } from './stages/deriveAge.ts';
import { filterStatusStage } from './stages/filterStatus.ts';
import { toRecordStage } from './stages/toRecord.ts';

export type StopReason = 'signal' | 'time-budget' | 'max-items';

export type RunOutcome =
  | { readonly status: 'published'; readonly snapshotId: string; readonly result: PublishResult | null; readonly summary: RunSummary }
  | { readonly status: 'stopped'; readonly snapshotId: string; readonly reason: StopReason; readonly summary: RunSummary }
  | { readonly status: 'user-errors'; readonly snapshotId: string; readonly failed: readonly FailedUser[]; readonly summary: RunSummary };

/** Totals over every run of the snapshot so far (what the final line reports). */
export interface RunSummary {
  readonly rows: number;
  readonly usersExported: number;
  readonly usersVanished: number;
  readonly usersFailed: number;
  readonly calls: number;
  readonly throttles: number;
  readonly retries: number;
  readonly wallMs: number;
  readonly resumes: number;
}

/** Live numbers for progress output. */
export interface Progress {
  /** True once ListUsers has no more pages (this run). */
  readonly listingDone: boolean;
  readonly usersListed: number;
  readonly usersDone: number;
  readonly keys: number;
  readonly calls: number;
  readonly throttles: number;
  readonly retries: number;
  readonly elapsedMs: number;
}

export interface StartInfo {
  readonly snapshotId: string;
  readonly resumed: boolean;
  readonly resumes: number;
  readonly phase: 'export' | 'finalize';
  readonly config: DataConfig;
}

export interface RunObserver {
  onStart?(info: StartInfo, progress: () => Progress): void;
  onCommit?(progress: Progress): void;
  /** A user vanished or failed (reported once its STATE is durable). */
  onUser?(event: Extract<StateEvent, { kind: 'user-vanished' | 'user-failed' }>): void;
  onNotice?(message: string, fields?: Record<string, unknown>): void;
}

export interface RunHooks {
  /** External graceful stop (SIGTERM / SIGINT). */
  readonly stop?: AbortSignal;
  readonly observer?: RunObserver;
  readonly toolVersion: string;
  readonly now?: () => Date;
  /** For tests: a prebuilt client instead of the SDK's resolution. */
  readonly client?: IAMClient;
}

/** The options of `config` that shape the data (the checkpoint fingerprint). */
export function dataConfigOf(config: Config, env: NodeJS.ProcessEnv = process.env): DataConfig {
  return {
    format: config.format,
    pathPrefix: config.pathPrefix,
    statuses: config.statuses,
    endpoint: config.endpointUrl ?? env.AWS_ENDPOINT_URL_IAM ?? env.AWS_ENDPOINT_URL ?? null,
  };
}

/** Runs (or resumes) the export described by `config`. Fatal problems throw ExportError. */
export async function runExport(config: Config, hooks: RunHooks): Promise<RunOutcome> {
  const startedAt = Date.now();
  await ensureOut(config.out);
  const lock = await acquireLock(join(config.out, STAGING_DIR));
  try {
    return await runLocked(config, hooks, startedAt);
  } finally {
    await lock.release();
  }
}

async function runLocked(config: Config, hooks: RunHooks, startedAt: number): Promise<RunOutcome> {
  const { checkpoint: cp, paths, resumed } = await openSnapshot(config, hooks);
  const wallBefore = cp.counters.wallMs; // wall time of the earlier runs of this snapshot
  const summary = () => summarize(cp, wallBefore + (Date.now() - startedAt));

  if (resumed && (await isPublished(paths))) {
    // Killed after the publish rename, before staging was removed: it is done.
    await removeStaging(paths);
    hooks.observer?.onNotice?.(`snapshot ${cp.snapshotId} was already published; removed its staging`);
    return { status: 'published', snapshotId: cp.snapshotId, result: null, summary: summary() };
  }

  if (cp.phase === 'export') {
    const stopped = await exportPhase(config, hooks, cp, paths, resumed, startedAt);
    if (stopped) return { status: 'stopped', snapshotId: cp.snapshotId, reason: stopped, summary: summary() };
    const failed = cp.failedUsers;
    if (failed.length > 0 && !config.allowPartial) return { status: 'user-errors', snapshotId: cp.snapshotId, failed, summary: summary() };
    cp.phase = 'finalize';
    await saveCheckpoint(paths.checkpointFile, cp);
  } else {
    hooks.observer?.onStart?.({ snapshotId: cp.snapshotId, resumed, resumes: cp.resumes, phase: cp.phase, config: cp.config }, () => idleProgress(cp, startedAt));
  }

  const result = await publishSnapshot(paths, { checkpoint: cp, rowsPerFile: config.tuning.rowsPerFile, toolVersion: hooks.toolVersion, wallMs: wallBefore + (Date.now() - startedAt) }).catch(
    (err: unknown) => {
      throw asOutputError(err, paths);
    },
  );
  return { status: 'published', snapshotId: cp.snapshotId, result, summary: { ...summary(), rows: result.rows, wallMs: result.manifest.wall_time_ms } };
}

/** The export phase: pages what is left and commits it. Returns why it stopped early, or undefined when the export is complete. */
async function exportPhase(config: Config, hooks: RunHooks, cp: Checkpoint, paths: SnapshotPaths, resumed: boolean, startedAt: number): Promise<StopReason | undefined> {
  const stats = newApiStats();
  const client = hooks.client ?? (await createIamClient(config, stats));
  const stop = new AbortController();
  const onExternalStop = () => stop.abort('signal');
  if (hooks.stop?.aborted) onExternalStop();
  hooks.stop?.addEventListener('abort', onExternalStop, { once: true });
  const timer = config.timeBudgetMs === undefined ? undefined : setTimeout(() => stop.abort('time-budget'), config.timeBudgetMs);
  let fatal: unknown;
  const budget = config.maxItems === undefined ? undefined : new KeyBudget(config.maxItems);
  const base = { ...cp.counters, calls: { ...cp.counters.calls } };
  const plan = cp.resumePlan();
  const live = { usersListed: plan.resume.length, usersDone: 0, keys: 0, listingDone: plan.listingDone };
  const progress = (): Progress => ({
    listingDone: live.listingDone,
    usersListed: live.usersListed,
    usersDone: live.usersDone,
    keys: live.keys,
    calls: totalCalls(stats),
    throttles: stats.throttles,
    retries: Math.max(0, stats.attempts - totalCalls(stats)),
    elapsedMs: Date.now() - startedAt,
  });

  hooks.observer?.onStart?.({ snapshotId: cp.snapshotId, resumed, resumes: cp.resumes, phase: 'export', config: cp.config }, progress);
  try {
    await pipeline(
      sourceStream({
        client,
        pathPrefix: config.pathPrefix,
        pageSize: config.pageSize,
        concurrency: config.concurrency,
        plan,
        stop: stop.signal,
        budget,
        expectedAccountId: cp.accountId,
        onFatal: (err) => {
          fatal ??= err;
          stop.abort('fatal');
        },
        onUserFinished: () => live.usersDone++,
        onUsersListed: (n, last) => {
          live.usersListed += n;
          live.listingDone ||= last;
        },
      }),
      toRecordStage({ snapshotId: cp.snapshotId, snapshotTime: cp.snapshotTime }),
      deriveAgeStage(),
      filterStatusStage(config.statuses),
      partWriter({
        checkpoint: cp,
        paths,
        tuning: config.tuning,
        onRecord: () => live.keys++,
        beforeSave: (c) => {
          for (const [op, n] of Object.entries(stats.calls)) c.counters.calls[op] = (base.calls[op] ?? 0) + n;
          c.counters.attempts = base.attempts + stats.attempts;
          c.counters.throttles = base.throttles + stats.throttles;
          c.counters.wallMs = base.wallMs + (Date.now() - startedAt);
        },
        onCommit: () => hooks.observer?.onCommit?.(progress()),
        onState: (event) => {
          if (event.kind === 'user-failed' || event.kind === 'user-vanished') hooks.observer?.onUser?.(event);
        },
      }),
    );
  } catch (err) {
    throw fatal ?? asOutputError(err, paths);
  } finally {
    if (timer) clearTimeout(timer);
    hooks.stop?.removeEventListener('abort', onExternalStop);
    if (!hooks.client) client.destroy();
  }
  if (fatal) throw fatal;
  if (cp.exportComplete) return undefined;
  const reason = stop.signal.reason;
  if (reason === 'signal' || reason === 'time-budget') return reason;
  if (budget?.exhausted) return 'max-items';
  throw new ExportError('INTERNAL', 'the source ended before every user was exported, without a stop reason');
}

/** Finds the unfinished snapshot to resume, or starts a new one. */
async function openSnapshot(config: Config, hooks: RunHooks): Promise<{ checkpoint: Checkpoint; paths: SnapshotPaths; resumed: boolean }> {
  const data = dataConfigOf(config);
  const staged = await listStaging(config.out);
  for (const s of staged) {
    // No checkpoint: a crash between mkdir and the first save; nothing was committed.
    if (!s.hasCheckpoint || config.fresh) await removeStaging(snapshotPaths(config.out, s.id));
  }
  const unfinished = config.fresh ? [] : staged.filter((s) => s.hasCheckpoint);
  if (unfinished.length > 1) {
    throw new ExportError('CHECKPOINT_CORRUPT', `several unfinished snapshots in ${join(config.out, STAGING_DIR)} (${unfinished.map((s) => s.id).join(', ')}); remove all but one, or rerun with --fresh`);
  }
  const found = unfinished[0];
  if (found) {
    const paths = snapshotPaths(config.out, found.id);
    const cp = (await loadCheckpoint(paths.checkpointFile))!;
    if (cp.fingerprint !== fingerprintOf(data)) {
      throw new ExportError(
        'CHECKPOINT_MISMATCH',
        `${paths.stagingDir} holds an unfinished snapshot made with other options (${describeDiff(cp.config, data)}); rerun with the same options to resume it, or add --fresh to discard it and start a new snapshot`,
        { file: paths.checkpointFile },
      );
    }
    cp.beginResume();
    await removeOrphans(paths.runsDir, cp.parts);
    await saveCheckpoint(paths.checkpointFile, cp);
    return { checkpoint: cp, paths, resumed: true };
  }
  const now = hooks.now ?? (() => new Date());
  let time = now();
  let paths = snapshotPaths(config.out, snapshotIdOf(time));
  // Snapshot ids have second resolution: never reuse one that is already published.
  while (await isPublished(paths)) {
    await new Promise((r) => setTimeout(r, 1000 - (time.getTime() % 1000) + 1));
    time = now();
    paths = snapshotPaths(config.out, snapshotIdOf(time));
  }
  const cp = new Checkpoint(snapshotIdOf(time), time, data);
  await createStaging(paths).catch((err: unknown) => {
    throw asOutputError(err, paths);
  });
  await saveCheckpoint(paths.checkpointFile, cp);
  return { checkpoint: cp, paths, resumed: false };
}

function describeDiff(a: DataConfig, b: DataConfig): string {
  const diffs: string[] = [];
  if (a.format !== b.format) diffs.push(`--format ${a.format}, now ${b.format}`);
  if (a.pathPrefix !== b.pathPrefix) diffs.push(`--path-prefix ${a.pathPrefix}, now ${b.pathPrefix}`);
  if ([...a.statuses].sort().join(',') !== [...b.statuses].sort().join(',')) diffs.push(`--status ${a.statuses.join(',') || 'all'}, now ${b.statuses.join(',') || 'all'}`);
  if (a.endpoint !== b.endpoint) diffs.push(`endpoint ${a.endpoint ?? 'default'}, now ${b.endpoint ?? 'default'}`);
  return diffs.join('; ');
}

async function ensureOut(out: string): Promise<void> {
  try {
    await mkdir(join(out, STAGING_DIR), { recursive: true, mode: PRIVATE_DIR_MODE });
  } catch (err) {
    throw asOutputError(err, { out } as SnapshotPaths);
  }
}

const IO_CODES = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'ENOTDIR', 'EEXIST', 'EIO', 'EISDIR', 'EMFILE']);

/** File-system failures become OUTPUT_IO naming the path; anything else passes through. */
function asOutputError(err: unknown, paths: Pick<SnapshotPaths, 'out'>): unknown {
  if (err instanceof ExportError) return err;
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string' && IO_CODES.has(e.code)) {
    const what = e.code === 'ENOSPC' || e.code === 'EDQUOT' ? 'disk full' : e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'EROFS' ? 'not writable' : e.code;
    return new ExportError('OUTPUT_IO', `--out ${paths.out}: ${what} (${e.code} on ${e.path ?? paths.out}); fix it and rerun: the checkpoint is kept and the run resumes`, { file: e.path ?? paths.out }, { cause: err });
  }
  return err;
}

function summarize(cp: Checkpoint, wallMs: number): RunSummary {
  const calls = Object.values(cp.counters.calls).reduce((a, b) => a + b, 0);
  return {
    rows: cp.counters.rowsWritten,
    usersExported: cp.counters.usersExported,
    usersVanished: cp.counters.usersVanished,
    usersFailed: cp.failedUsers.length,
    calls,
    throttles: cp.counters.throttles,
    retries: Math.max(0, cp.counters.attempts - calls),
    wallMs,
    resumes: cp.resumes,
  };
}

function idleProgress(cp: Checkpoint, startedAt: number): Progress {
  return { listingDone: true, usersListed: 0, usersDone: 0, keys: cp.counters.rowsWritten, calls: 0, throttles: 0, retries: 0, elapsedMs: Date.now() - startedAt };
}
