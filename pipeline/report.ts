/**
 * What the operator sees. On a terminal: a start line and a live progress bar
 * (cli-progress) on stderr. Off a terminal (cron, Kubernetes, Batch, Lambda): JSON
 * log lines on stdout (pino) — `start`, `progress` every few seconds, `user` for a
 * vanished or failed user, `end`. Always: a final one-line summary on stderr, and
 * errors as one line on stderr. --quiet keeps only those two; --log-level filters
 * the JSON lines. Nothing logged holds a secret: names, ids, counts and options.
 */
import type cliProgress from 'cli-progress';
import { createRequire } from 'node:module';
import type { Logger, pino as Pino } from 'pino';
import type { Config } from './config.ts';
import { describeError, ExportError } from './errors.ts';
import type { Progress, RunObserver, RunOutcome, StartInfo } from './run.ts';

export interface ReporterIO {
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
  /** JSON progress period; IKE_PROGRESS_MS, default 5 s. */
  readonly progressMs?: number;
}

export interface Reporter {
  readonly observer: RunObserver;
  /** Ends the output: stops the bar/timer, writes the `end` line and the summary or error line. */
  end(result: { outcome?: RunOutcome; error?: unknown; exitCode: number }): void;
}

// Each output mode loads only its own library (pino: ~20 files, cli-progress: ~15): start time.
const require = createRequire(import.meta.url);

/** Picks the output mode from the flags and whether stdout and stderr are terminals. */
export function createReporter(config: Config, io: ReporterIO): Reporter {
  const mode = config.quiet ? 'quiet' : io.stdout.isTTY && io.stderr.isTTY ? 'tty' : 'json';
  let logger: Logger | undefined;
  if (mode === 'json') {
    const { pino } = require('pino') as { pino: typeof Pino };
    logger = pino({ level: config.logLevel, base: undefined, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } }, io.stdout);
  }
  let bar: cliProgress.SingleBar | undefined;
  let timer: NodeJS.Timeout | undefined;
  let poll: (() => Progress) | undefined;
  let snapshotId: string | undefined;

  const stopLive = () => {
    if (timer) clearInterval(timer);
    timer = undefined;
    if (bar) {
      const p = poll?.();
      if (p) bar.update(p.usersDone, fields(p));
      bar.stop();
      bar = undefined;
    }
  };

  const observer: RunObserver = {
    onStart(info: StartInfo, progress: () => Progress) {
      poll = progress;
      snapshotId = info.snapshotId;
      const what = `${info.resumed ? `resuming snapshot ${info.snapshotId} (resume ${info.resumes})` : `new snapshot ${info.snapshotId}`}, ${info.phase === 'finalize' ? 'finalizing' : 'exporting'} to ${config.out}`;
      if (mode === 'tty') {
        io.stderr.write(`iam-key-export: ${what}\n`);
        if (info.phase === 'export') {
          const progressBars = require('cli-progress') as typeof cliProgress;
          bar = new progressBars.SingleBar(
            {
              stream: io.stderr,
              format: ' users {bar} {value}/{total}{more} | keys {keys} | {rate} calls/s | throttles {throttles} | ETA {eta}',
              hideCursor: true,
              etaBuffer: 50,
              fps: 5,
            },
            progressBars.Presets.shades_classic,
          );
          const p = progress();
          bar.start(Math.max(1, p.usersListed), 0, fields(p));
          timer = setInterval(() => {
            const q = progress();
            bar?.setTotal(Math.max(1, q.usersListed));
            bar?.update(q.usersDone, fields(q));
          }, 200);
          timer.unref();
        }
      } else if (logger) {
        logger.info(
          {
            event: 'start',
            snapshot_id: info.snapshotId,
            resumed: info.resumed,
            resumes: info.resumes,
            phase: info.phase,
            account_id: info.accountId,
            endpoint_url: info.endpoint,
            configuration: configurationOf(config),
          },
          what,
        );
        timer = setInterval(() => {
          const p = progress();
          logger.info({ event: 'progress', snapshot_id: info.snapshotId, ...progressFields(p) }, 'progress');
        }, io.progressMs ?? 5000);
        timer.unref();
      }
    },
    onUser(event) {
      if (event.kind === 'account-failed') {
        const fields = { event: 'account', snapshot_id: snapshotId, account_id: event.account, outcome: 'failed', code: event.code };
        if (logger) logger.warn(fields, `account ${event.account} failed: ${event.code}; a rerun retries it`);
        else if (mode === 'tty') io.stderr.write(`\niam-key-export: account ${event.account} failed: ${event.code}\n`);
        return;
      }
      const fieldsOf = { event: 'user', snapshot_id: snapshotId, user: event.user.userName, outcome: event.kind === 'user-failed' ? 'failed' : 'vanished', ...(event.kind === 'user-failed' ? { code: event.code } : {}) };
      if (event.kind === 'user-failed') {
        if (logger) logger.warn(fieldsOf, `user ${event.user.userName} failed: ${event.code}; a rerun retries it`);
        else if (mode === 'tty') io.stderr.write(`\niam-key-export: user ${event.user.userName} failed: ${event.code}\n`);
      } else {
        logger?.info(fieldsOf, `user ${event.user.userName} vanished (deleted since ListUsers)`);
      }
    },
    onNotice(message, extra) {
      if (logger) logger.info({ event: 'notice', snapshot_id: snapshotId, ...extra }, message);
      else if (mode === 'tty') io.stderr.write(`iam-key-export: ${message}\n`);
    },
    onWarning(message) {
      // Always one line on stderr, whatever the mode: it changes what gets published.
      logger?.warn({ event: 'warning', snapshot_id: snapshotId }, message);
      io.stderr.write(`${mode === 'tty' ? '\n' : ''}iam-key-export: warning: ${message}\n`);
    },
    ...(logger?.isLevelEnabled('debug') ? { onSdkLog: (message: string) => logger.debug({ event: 'sdk' }, message) } : {}),
  };

  return {
    observer,
    end({ outcome, error, exitCode }) {
      stopLive();
      if (outcome) {
        const s = outcome.summary;
        logger?.info(
          {
            event: 'end',
            snapshot_id: outcome.snapshotId,
            account_id: s.accountId,
            status: outcome.status,
            exit_code: exitCode,
            ...(outcome.status === 'stopped' ? { reason: outcome.reason } : {}),
            ...(outcome.status === 'published' ? { published: outcome.result.dir } : {}),
            ...(outcome.status === 'shard-done' || outcome.status === 'waiting' ? { waiting_for_shards: outcome.waiting } : {}),
            rows: s.rows,
            users: s.usersExported + s.usersVanished + s.usersFailed,
            vanished: s.usersVanished,
            failed: s.usersFailed,
            calls: s.calls,
            throttles: s.throttles,
            retries: s.retries,
            wall_ms: s.wallMs,
            resumes: s.resumes,
          },
          'end',
        );
        io.stderr.write(summaryLine(outcome) + '\n');
      } else {
        const code = error instanceof ExportError ? error.code : 'INTERNAL';
        logger?.error({ event: 'end', snapshot_id: snapshotId, status: 'error', exit_code: exitCode, code }, describeError(error, false));
        io.stderr.write(`iam-key-export: ${describeError(error, config.debug)}\n`);
      }
      logger?.flush();
    },
  };
}

function fields(p: Progress) {
  return { keys: p.keys, rate: callsPerSecond(p).toFixed(1), throttles: p.throttles, more: p.listingDone ? '' : '+', eta: eta(p) };
}

/**
 * Time left, once it can be told: the listing is done (the total is known) and
 * this run finished users at a measurable pace. Until then "?" rather than NaN.
 */
function eta(p: Progress): string {
  const left = p.usersListed - p.usersDone;
  if (p.listingDone && left <= 0) return '0s';
  if (!p.listingDone || p.elapsedMs < 2000 || p.usersDoneThisRun <= 0) return '?';
  const s = Math.round(((p.elapsedMs / p.usersDoneThisRun) * left) / 1000);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

function callsPerSecond(p: Progress): number {
  return p.elapsedMs > 0 ? p.calls / (p.elapsedMs / 1000) : 0;
}

function progressFields(p: Progress) {
  return {
    users_listed: p.usersListed,
    listing_done: p.listingDone,
    users_done: p.usersDone,
    keys: p.keys,
    calls: p.calls,
    calls_per_s: Math.round(callsPerSecond(p) * 10) / 10,
    throttles: p.throttles,
    retries: p.retries,
    elapsed_ms: p.elapsedMs,
  };
}

/** The options worth logging (no credentials exist in Config; the profile is a name). */
function configurationOf(c: Config) {
  return {
    format: c.format,
    out: c.out,
    path_prefix: c.pathPrefix,
    statuses: c.statuses,
    endpoint_url: c.endpointUrl ?? null,
    region: c.region ?? null,
    profile: c.profile ?? null,
    concurrency: c.concurrency,
    page_size: c.pageSize,
    max_items: c.maxItems ?? null,
    time_budget_ms: c.timeBudgetMs ?? null,
    allow_partial: c.allowPartial,
    max_attempts: c.maxAttempts,
    last_used: c.lastUsed,
    keep: c.keep ?? null,
    // Which accounts, and how they are reached (the ExternalId is a shared secret of the trust policy: only whether one is set).
    accounts: c.accounts.mode === 'self' ? 'self' : c.accounts.mode === 'organization' ? { organization: true, exclude: c.accounts.exclude } : { ids: c.accounts.ids, exclude: c.accounts.exclude },
    role_name: c.role?.name ?? null,
    role_session_name: c.role?.sessionName ?? null,
    external_id_set: c.role?.externalId !== undefined,
    account_concurrency: c.accountConcurrency,
    shard: c.shard ? { index: c.shard.index, count: c.shard.count } : null,
    snapshot_id: c.snapshotId ?? null,
  };
}

/** The final one-line summary (stderr, every run). */
export function summaryLine(outcome: RunOutcome): string {
  const s = outcome.summary;
  const counts = `${s.accounts === null ? `account=${s.accountId ?? 'unknown'}` : `accounts=${s.accounts}`} rows=${s.rows} users=${s.usersExported + s.usersVanished + s.usersFailed} vanished=${s.usersVanished} failed=${s.usersFailed} calls=${s.calls} throttles=${s.throttles} retries=${s.retries} wall=${(s.wallMs / 1000).toFixed(1)}s resumes=${s.resumes}`;
  switch (outcome.status) {
    case 'published':
      return `iam-key-export: published snapshot ${outcome.snapshotId} to ${outcome.result.dir}: ${counts}`;
    case 'stopped':
      if (outcome.reason === 'throttled') {
        return `iam-key-export: stopped: IAM kept throttling after every retry (the account's rate limit is shared with other callers); snapshot ${outcome.snapshotId} is resumable: rerun later, with a lower --concurrency; ${counts}`;
      }
      return `iam-key-export: stopped (${outcome.reason === 'signal' ? 'signal' : `--${outcome.reason}`}), snapshot ${outcome.snapshotId} is resumable: rerun the same command; ${counts}`;
    case 'user-errors': {
      const what = [
        ...(outcome.failedAccounts.length > 0 ? [`${outcome.failedAccounts.length} account(s) failed (${[...new Set(outcome.failedAccounts.map((a) => a.code))].join(', ')}: ${outcome.failedAccounts.map((a) => a.id).join(', ')})`] : []),
        ...(outcome.failed.length > 0 ? [`${outcome.failed.length} user(s) failed (${[...new Set(outcome.failed.map((f) => f.code))].join(', ')})`] : []),
      ].join(' and ');
      return `iam-key-export: ${what}; snapshot ${outcome.snapshotId} not published: rerun to retry them, or add --allow-partial; ${counts}`;
    }
    case 'shard-done':
      return outcome.waiting.length > 0
        ? `iam-key-export: this shard of snapshot ${outcome.snapshotId} is done; waiting for shard(s) ${outcome.waiting.join(', ')}: the last one to finish publishes it (or run iam-key-export finalize); ${counts}`
        : `iam-key-export: this shard of snapshot ${outcome.snapshotId} is done; another shard is publishing it; ${counts}`;
    case 'waiting':
      return `iam-key-export: snapshot ${outcome.snapshotId} is not ready to publish: shard(s) ${outcome.waiting.join(', ')} not done yet; this is temporary: rerun later`;
  }
}
