/**
 * One run of the export, start to end. Reading `exportPhase` tells the data flow:
 *
 *   source (ListUsers → p-limit fan-out → ListAccessKeys pages)
 *     → toRecord → deriveAge → filterStatus → part writer (part durable, then checkpoint)
 *
 * then `finalizeSnapshot` merges the parts into the published files and
 * `promoteSnapshot` publishes them. Everything a rerun needs is in the store
 * (checkpoint, parts, lease), so a run can stop anywhere and be rerun.
 *
 * Which snapshot: the unfinished one in the store (its lease taken first), unless
 * --fresh, unless it never committed anything (then it is nobody's snapshot yet),
 * unless it is older than --max-snapshot-age; else a new one, stamped with this
 * run's start. A resume with credentials of another account stops before any IAM
 * call (exit 2, naming --fresh).
 */
import { setMaxListeners } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { ListAccessKeysCommand, ListUsersCommand, type IAMClient, type ListAccessKeysCommandOutput, type ListUsersCommandOutput } from '@aws-sdk/client-iam';
import { Checkpoint, CheckpointFile, fingerprintOf, type DataConfig, type FailedUser, type Phase } from './checkpoint.ts';
import { describeSelection, snapshotTimeOf, type Config } from './config.ts';
import { ExportError } from './errors.ts';
import type { StateEvent, UserRef } from './items.ts';
import { Lease, staleness, currentIdentity, type LeaseHolder, type LeaseOptions } from './lease.ts';
import { removeOrphans } from './runs.ts';
import { SCHEMA_VERSION } from './schema.ts';
import { KeyBudget } from './source/budget.ts';
import { createIamClient, endpointsOf, newApiStats, resolveRegion, sdkLogger, totalCalls, type ApiStats, type Endpoints } from './source/client.ts';
import { sourceStream, type AccountJob } from './source/fanout.ts';
import { callerIdentity, checkProfile, type CallerIdentity } from './source/identity.ts';
import { AccountReach, organizationLister, savedReportTimes, selectAccounts } from './source/reach.ts';
import { partWriter } from './sinks/parts.ts';
import { ACCOUNTS_DIR, applyRetention, combinedView, completePublication, DATASET_DIR, finalizeSnapshot, isPublished, viewOf, type SnapshotKeys, type SnapshotView, type StagedUnit, listStaging, promoteSnapshot, readManifest, removeStaging, snapshotIdOf, snapshotKeys, type LastUseInfo, type Manifest, type PublishResult } from './snapshot.ts';
import { deriveAgeStage } from './stages/deriveAge.ts';
import { enrichLastUsedStage, lastUseSourceOf } from './stages/enrichLastUsed.ts';
import { filterStatusStage } from './stages/filterStatus.ts';
import { toRecordStage } from './stages/toRecord.ts';
import { openStore, type Store } from './store/index.ts';

export type StopReason = 'signal' | 'time-budget' | 'max-items' | 'throttled';

export type RunOutcome =
  | { readonly status: 'published'; readonly snapshotId: string; readonly result: PublishResult; readonly summary: RunSummary }
  | { readonly status: 'stopped'; readonly snapshotId: string; readonly reason: StopReason; readonly summary: RunSummary }
  | { readonly status: 'user-errors'; readonly snapshotId: string; readonly failed: readonly FailedUser[]; readonly failedAccounts: readonly { readonly id: string; readonly code: string }[]; readonly summary: RunSummary }
  /** A shard finished its accounts; the snapshot waits for the shards named (the last one to finish publishes it). */
  | { readonly status: 'shard-done'; readonly snapshotId: string; readonly waiting: readonly number[]; readonly summary: RunSummary }
  /** `finalize` before every shard is done: nothing to publish yet (exit 75, rerun later). */
  | { readonly status: 'waiting'; readonly snapshotId: string; readonly waiting: readonly number[]; readonly summary: RunSummary };

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
  readonly accountId: string | null;
  /** Accounts of a multi-account snapshot (--organization, --accounts); null for the credentials' own. */
  readonly accounts: number | null;
}

/** Live numbers for progress output (totals of the snapshot, earlier runs included). */
export interface Progress {
  /** True once ListUsers has no more pages. */
  readonly listingDone: boolean;
  readonly usersListed: number;
  readonly usersDone: number;
  /** Users finished by this run (for a pace). */
  readonly usersDoneThisRun: number;
  readonly keys: number;
  /** Calls of this run (a rate is computed from them). */
  readonly calls: number;
  readonly throttles: number;
  readonly retries: number;
  readonly elapsedMs: number;
}

export interface StartInfo {
  readonly snapshotId: string;
  readonly resumed: boolean;
  readonly resumes: number;
  readonly phase: 'export' | 'finalize' | 'publishing';
  readonly config: DataConfig;
  readonly accountId: string | null;
  /** The IAM endpoint the run calls (the override, or the SDK's default). */
  readonly endpoint: string;
}

export interface RunObserver {
  onStart?(info: StartInfo, progress: () => Progress): void;
  onCommit?(progress: Progress): void;
  /** A user vanished or failed, or an account failed (reported once its STATE is durable). */
  onUser?(event: Extract<StateEvent, { kind: 'user-vanished' | 'user-failed' | 'account-failed' }>): void;
  onNotice?(message: string, fields?: Record<string, unknown>): void;
  /** One warning the operator must see (an unfinished snapshot discarded, ...). */
  onWarning?(message: string): void;
  /** The SDK's own log lines; absent when debug lines are not kept (they are then never formatted). */
  onSdkLog?(message: string): void;
}

export interface RunHooks {
  /** External graceful stop (SIGTERM / SIGINT). */
  readonly stop?: AbortSignal;
  readonly observer?: RunObserver;
  readonly toolVersion: string;
  readonly now?: () => Date;
  /** For tests: a prebuilt client instead of the SDK's resolution. */
  readonly client?: IAMClient;
  /** For tests: a prebuilt store instead of --out. */
  readonly store?: Store;
  /** For tests: lease timing and identity. */
  readonly lease?: LeaseOptions;
  readonly env?: NodeJS.ProcessEnv;
}

/** The options of `config` that shape the data (the checkpoint fingerprint). */
export function dataConfigOf(config: Config, env: NodeJS.ProcessEnv = process.env): DataConfig {
  return {
    format: config.format,
    pathPrefix: config.pathPrefix,
    statuses: config.statuses,
    endpoint: endpointsOf(config, env).iam ?? null,
    schemaVersion: SCHEMA_VERSION,
    lastUsed: config.lastUsed,
    accounts: describeSelection(config.accounts),
    shard: config.shard ? `${config.shard.index}/${config.shard.count}` : null,
  };
}

/** A snapshot (or a shard of one) this run holds the lease of. */
interface Held {
  readonly checkpoint: Checkpoint;
  readonly file: CheckpointFile;
  readonly lease: Lease;
  readonly resumed: boolean;
  readonly keys: SnapshotKeys;
}

/** The AWS side of a run, built on first use: a finalize-only rerun needs no credentials. */
class Aws {
  readonly stats: ApiStats = newApiStats();
  readonly endpoints: Endpoints;
  #client: Promise<IAMClient> | undefined;
  #built: IAMClient | undefined;
  #identity: CallerIdentity | undefined;
  #firstUsers: Promise<ListUsersCommandOutput> | undefined;
  readonly #firstKeys = new Map<string, { readonly userName: string; readonly page: Promise<ListAccessKeysCommandOutput> }>();

  constructor(
    private readonly config: Config,
    private readonly hooks: RunHooks,
    private readonly signal: AbortSignal,
  ) {
    this.endpoints = endpointsOf(config, hooks.env ?? process.env);
  }

  client(): Promise<IAMClient> {
    this.#client ??= this.#build();
    return this.#client;
  }

  async #build(): Promise<IAMClient> {
    if (this.hooks.client) return this.hooks.client;
    const env = this.hooks.env ?? process.env;
    await checkProfile(this.config.profile ?? (env.AWS_PROFILE || undefined), this.config.profile !== undefined, env);
    this.#built = await createIamClient(this.config, this.stats, this.logger());
    return this.#built;
  }

  /**
   * Asks the first ListUsers page of a new snapshot of the caller's own account now,
   * alongside GetCallerIdentity, instead of once the snapshot is set up: a round trip
   * less before the first key. Only such a run (one account) asks it, so the listing
   * that takes it (takeFirstUsersPage, once) is that account's; its
   * failure is the listing's, met there as if it had asked. A run that ends before
   * leaves it unread (destroying the client ends it).
   */
  prefetchUsers(pathPrefix: string, pageSize: number): void {
    const page = this.client().then((c) => c.send(new ListUsersCommand({ PathPrefix: pathPrefix, MaxItems: pageSize }), { abortSignal: this.signal }));
    page.catch(() => undefined);
    this.#firstUsers = page;
    // The keys of the page's first users too (as many as go out at once), while the snapshot
    // is set up: their answers are on the way when the source starts. (Building the next
    // 2 × --concurrency here too put the first ListAccessKeys ~10 ms later.) Not
    // under --max-items, whose budget decides each user's first request.
    if (this.config.maxItems === undefined) void page.then((p) => this.#prefetchKeys(p, pageSize), () => undefined);
  }

  async #prefetchKeys(page: ListUsersCommandOutput, pageSize: number): Promise<void> {
    const client = await this.client();
    for (const user of (page.Users ?? []).slice(0, this.config.concurrency)) {
      if (this.signal.aborted) return;
      const keys = client.send(new ListAccessKeysCommand({ UserName: user.UserName, MaxItems: pageSize }), { abortSignal: this.signal });
      keys.catch(() => undefined);
      this.#firstKeys.set(user.UserId ?? '', { userName: user.UserName ?? '', page: keys });
    }
  }

  takeFirstUsersPage(): Promise<ListUsersCommandOutput> | undefined {
    const page = this.#firstUsers;
    this.#firstUsers = undefined;
    return page;
  }

  /** The first page of `user`'s keys if it was asked (same user id and name), once. */
  takeFirstKeysPage(user: UserRef): Promise<ListAccessKeysCommandOutput> | undefined {
    const asked = this.#firstKeys.get(user.userId);
    if (asked === undefined || asked.userName !== user.userName) return undefined;
    this.#firstKeys.delete(user.userId);
    return asked.page;
  }

  logger() {
    return sdkLogger(this.hooks.observer?.onSdkLog);
  }

  /** The region calls are signed for (IAM is global; STS and Organizations follow it). */
  async region(): Promise<string> {
    return this.hooks.client ? await this.hooks.client.config.region() : await resolveRegion(this.config);
  }

  async identity(): Promise<CallerIdentity> {
    if (this.#identity) return this.#identity;
    const iam = await this.client();
    this.#identity = await callerIdentity({
      iam,
      endpoints: this.endpoints,
      region: await this.region(),
      profile: this.config.profile,
      maxAttempts: this.config.maxAttempts,
      pathPrefix: this.config.pathPrefix,
      stats: this.stats,
      logger: this.logger(),
      signal: this.signal,
    });
    return this.#identity;
  }

  destroy(): void {
    this.#built?.destroy();
  }
}

/**
 * The run's stop. Every call in flight listens on its signal (the SDK adds an abort
 * listener per call and removes it when the call ends): --concurrency calls at once, the
 * first keys asked during the set-up, --last-used api's lookups. Many listeners are its
 * use, not a leak, so Node's warning past 10 is off for it.
 */
function runStop(): AbortController {
  const stop = new AbortController();
  setMaxListeners(0, stop.signal);
  return stop;
}

/** Runs (or resumes) the export described by `config`. Fatal problems throw ExportError. */
export async function runExport(config: Config, hooks: RunHooks): Promise<RunOutcome> {
  const startedAt = Date.now();
  const store = hooks.store ?? (await openOutput(config, hooks));
  const stop = runStop();
  const onExternalStop = () => stop.abort('signal');
  if (hooks.stop?.aborted) onExternalStop();
  hooks.stop?.addEventListener('abort', onExternalStop, { once: true });
  const timer = config.timeBudgetMs === undefined ? undefined : setTimeout(() => stop.abort('time-budget'), config.timeBudgetMs);
  const aws = new Aws(config, hooks, stop.signal);
  try {
    const held = await beforeStop(stop.signal, async () =>
      config.shard ? await openShard(store, config, hooks, aws) : ((await resumable(store, config, hooks, aws)) ?? (await createSnapshot(store, config, hooks, aws))),
    );
    if (held === 'published') return await publishedOutcome(store, hooks, config.snapshotId!, startedAt);
    try {
      return await runHeld(store, config, hooks, held, aws, stop, startedAt);
    } finally {
      await held.lease.release();
    }
  } finally {
    if (timer) clearTimeout(timer);
    hooks.stop?.removeEventListener('abort', onExternalStop);
    aws.destroy();
    if (!hooks.store) store.close?.();
  }
}

/** The store of --out (an S3 one with the S3 flags, --region, --profile and the SDK's log of this run). */
function openOutput(config: Config, hooks: RunHooks): Promise<Store> {
  return openStore(config.out, {
    s3: config.s3,
    region: config.region,
    profile: config.profile,
    maxAttempts: config.maxAttempts,
    logger: sdkLogger(hooks.observer?.onSdkLog),
    env: hooks.env ?? process.env,
  });
}

/**
 * Runs the steps before a snapshot is held (asking who the caller is, finding or
 * starting the snapshot): a stop there ends the run with STOPPED (exit 75), not
 * with the error of the call it interrupted.
 */
async function beforeStop<T>(signal: AbortSignal, steps: () => Promise<T>): Promise<T> {
  try {
    return await steps();
  } catch (err) {
    if (!signal.aborted || signal.reason instanceof Error) throw err;
    throw new ExportError('STOPPED', `stopped (${signal.reason === 'signal' ? 'signal' : `--${String(signal.reason)}`}) before reading anything; rerun to start`, {}, { cause: err });
  }
}

/** Takes the lease of a staged snapshot (or shard), or throws OUTPUT_LOCKED naming its live holder. */
function takeLease(store: Store, id: string, hooks: RunHooks, unit: StagedUnit = 'snapshot'): Promise<Lease> {
  return Lease.acquire(store, snapshotKeys(id, unit).lease, hooks.lease);
}

/** Removes a staged snapshot this run holds the lease of. */
async function discard(store: Store, id: string, lease: Lease): Promise<void> {
  await lease.quiesce();
  await removeStaging(store, snapshotKeys(id));
  await lease.release();
}

/**
 * The staged shard of a sharded snapshot (--shards, --snapshot-id): resumed, or
 * started; 'published' when the snapshot is published already (a rerun of a
 * shard after the last one published: nothing to do).
 */
async function openShard(store: Store, config: Config, hooks: RunHooks, aws: Aws): Promise<Held | 'published'> {
  const id = config.snapshotId!;
  if (await isPublished(store, id)) return 'published';
  const keys = snapshotKeys(id, config.shard!);
  const lease = await takeLease(store, id, hooks, config.shard!);
  try {
    const data = dataConfigOf(config, hooks.env);
    const loaded = await CheckpointFile.load(store, keys.checkpoint);
    if (loaded) {
      const cp = loaded.checkpoint;
      if (cp.fingerprint !== fingerprintOf(data)) {
        throw new ExportError(
          'CHECKPOINT_MISMATCH',
          `${store.describe(keys.staging)} holds shard ${config.shard!.index} of snapshot ${id} made with other options (${describeDiff(cp.config, data)}); every shard must run with the same options, or add --fresh to restart this shard`,
          { file: store.describe(keys.checkpoint) },
        );
      }
      if (cp.phase === 'export') await checkAccount(store, cp, keys, aws);
      cp.beginResume();
      await loaded.file.save(cp);
      await removeOrphans(store, keys.runs, cp.parts);
      return { checkpoint: cp, file: loaded.file, lease, resumed: true, keys };
    }
    const identity = await aws.identity();
    const cp = new Checkpoint(id, snapshotTimeOf(id), data);
    cp.accountId = identity.accountId;
    cp.callerArn = identity.arn;
    await selectKnownAccounts(cp, config, identity.accountId);
    const file = await CheckpointFile.create(store, keys.checkpoint, cp);
    return { checkpoint: cp, file, lease, resumed: false, keys };
  } catch (err) {
    await lease.release().catch(() => undefined);
    throw err;
  }
}

/** Before any IAM call: the credentials must be of the snapshot's account. */
async function checkAccount(store: Store, cp: Checkpoint, keys: SnapshotKeys, aws: Aws): Promise<void> {
  const id = await aws.identity();
  if (cp.accountId !== null && id.accountId !== null && id.accountId !== cp.accountId) {
    throw new ExportError(
      'CHECKPOINT_MISMATCH',
      `the unfinished snapshot ${cp.snapshotId} is of account ${cp.accountId}, but these credentials are of account ${id.accountId}${id.arn ? ` (${id.arn})` : ''}; use that account's credentials to resume it, or add --fresh to discard it and start a new snapshot`,
      { file: store.describe(keys.checkpoint) },
    );
  }
  cp.accountId ??= id.accountId;
  cp.callerArn = id.arn ?? cp.callerArn;
}

/** The unfinished snapshot to resume, with its lease held; undefined when a new one must start. */
async function resumable(store: Store, config: Config, hooks: RunHooks, aws: Aws): Promise<Held | undefined> {
  const now = (hooks.now ?? (() => new Date()))();
  const staged = await listStaging(store);
  if (config.fresh) {
    for (const s of staged) {
      const lease = await takeLease(store, s.id, hooks);
      await discard(store, s.id, lease);
      hooks.observer?.onNotice?.(`--fresh: discarded the unfinished snapshot ${s.id}`);
    }
    return undefined;
  }
  // A snapshot of shards is theirs to finish: an unsharded run never takes it over or removes it.
  const sharded = staged.find((s) => s.sharded && !s.hasCheckpoint);
  if (sharded) {
    throw new ExportError(
      'CHECKPOINT_MISMATCH',
      `${store.describe('_staging')} holds the unfinished sharded snapshot ${sharded.id}; finish it with its shards (--shards N --snapshot-id ${sharded.id}) or iam-key-export finalize, or rerun with --fresh to discard it and start a new snapshot`,
      { file: store.describe(snapshotKeys(sharded.id).staging) },
    );
  }
  // A folder without a checkpoint: a run died between taking the lease and its first save.
  for (const s of staged.filter((x) => !x.hasCheckpoint)) {
    const lease = await takeLease(store, s.id, hooks);
    await discard(store, s.id, lease);
  }
  const unfinished = staged.filter((s) => s.hasCheckpoint);
  if (unfinished.length > 1) {
    throw new ExportError('CHECKPOINT_CORRUPT', `several unfinished snapshots in ${store.describe('_staging')} (${unfinished.map((s) => s.id).join(', ')}); remove all but one, or rerun with --fresh`);
  }
  const found = unfinished[0];
  if (!found) return undefined;
  const keys = snapshotKeys(found.id);
  const lease = await takeLease(store, found.id, hooks);
  try {
    const loaded = await CheckpointFile.load(store, keys.checkpoint);
    if (!loaded) {
      await lease.release();
      return undefined; // published and removed meanwhile by the run that held it
    }
    const cp = loaded.checkpoint;
    if (cp.phase === 'export' && cp.commits === 0) {
      // Nothing was ever committed (a run that failed at once): not a snapshot yet.
      // The next one starts now, so its id and time are those of the run that reads data.
      await discard(store, found.id, lease);
      return undefined;
    }
    const data = dataConfigOf(config, hooks.env);
    if (cp.fingerprint !== fingerprintOf(data)) {
      throw new ExportError(
        'CHECKPOINT_MISMATCH',
        `${store.describe(keys.staging)} holds an unfinished snapshot made with other options (${describeDiff(cp.config, data)}); rerun with the same options to resume it, or add --fresh to discard it and start a new snapshot`,
        { file: store.describe(keys.checkpoint) },
      );
    }
    if (cp.phase === 'export' && now.getTime() - cp.snapshotTime.getTime() > config.maxSnapshotAgeMs) {
      hooks.observer?.onWarning?.(
        `the unfinished snapshot ${cp.snapshotId} started ${Math.round((now.getTime() - cp.snapshotTime.getTime()) / 3_600_000)} h ago, more than --max-snapshot-age allows: discarded it, starting a new snapshot`,
      );
      await discard(store, found.id, lease);
      return undefined;
    }
    if (cp.phase === 'export') await checkAccount(store, cp, keys, aws);
    cp.beginResume();
    // This save is the fence: a run that held the lease before can no longer commit.
    await loaded.file.save(cp);
    await removeOrphans(store, keys.runs, cp.parts);
    return { checkpoint: cp, file: loaded.file, lease, resumed: true, keys };
  } catch (err) {
    await lease.release().catch(() => undefined);
    throw err;
  }
}

/**
 * Selects the accounts of a new checkpoint when they are known without a call (the
 * caller's own, a list), so its first save holds them: one save less before the first
 * key. An organization's are listed in the export phase, which saves them.
 */
async function selectKnownAccounts(cp: Checkpoint, config: Config, callerAccount: string | null): Promise<void> {
  if (config.accounts.mode === 'organization') return;
  cp.selectAccounts(await selectAccounts({ selection: config.accounts, callerAccount, shard: config.shard, organization: async () => [] }));
}

/** Starts a new snapshot, stamped with this run's start. */
async function createSnapshot(store: Store, config: Config, hooks: RunHooks, aws: Aws): Promise<Held> {
  // Credentials first: a run that cannot read IAM leaves nothing behind.
  if (config.accounts.mode === 'self') aws.prefetchUsers(config.pathPrefix, config.pageSize);
  const identity = await aws.identity();
  const now = hooks.now ?? (() => new Date());
  let time = now();
  // Snapshot ids have second resolution: never reuse one that is published or staged.
  while ((await isPublished(store, snapshotIdOf(time))) || (await store.exists(snapshotKeys(snapshotIdOf(time)).lease))) {
    await new Promise((r) => setTimeout(r, 1000 - (time.getTime() % 1000) + 1));
    time = now();
  }
  const id = config.snapshotId ?? snapshotIdOf(time);
  if (config.snapshotId) time = snapshotTimeOf(config.snapshotId);
  const keys = snapshotKeys(id);
  const lease = await takeLease(store, id, hooks);
  try {
    const cp = new Checkpoint(id, time, dataConfigOf(config, hooks.env));
    cp.accountId = identity.accountId;
    cp.callerArn = identity.arn;
    await selectKnownAccounts(cp, config, identity.accountId);
    const file = await CheckpointFile.create(store, keys.checkpoint, cp);
    // Two runs that found nothing to resume at the same moment: the one that sees
    // the other's live snapshot yields (at least one of them sees the other).
    for (const other of await listStaging(store)) {
      if (other.id === id) continue;
      const holder = await readHolder(store, other.id);
      if (holder && staleness(holder, currentIdentity(), Date.now()) === undefined) {
        await discard(store, id, lease);
        throw new ExportError('OUTPUT_LOCKED', `another run (pid ${holder.pid} on ${holder.host}) started snapshot ${other.id} in ${store.describe('_staging')} at the same time; this is temporary: rerun later`, {
          file: store.describe(snapshotKeys(other.id).lease),
        });
      }
    }
    return { checkpoint: cp, file, lease, resumed: false, keys };
  } catch (err) {
    await lease.release().catch(() => undefined);
    throw err;
  }
}

async function readHolder(store: Store, id: string): Promise<LeaseHolder | undefined> {
  const found = await store.read(snapshotKeys(id).lease).catch(() => undefined);
  if (!found) return undefined;
  try {
    return JSON.parse(found.body.toString('utf8')) as LeaseHolder;
  } catch {
    return undefined;
  }
}

/** Exports, finalizes and publishes the held snapshot (or shard), from whatever phase it is in. */
async function runHeld(store: Store, config: Config, hooks: RunHooks, held: Held, aws: Aws, stop: AbortController, startedAt: number): Promise<RunOutcome> {
  const { checkpoint: cp, file, lease } = held;
  const wallBefore = cp.counters.wallMs; // wall time of the earlier runs of this snapshot
  const summary = () => summarize(cp, wallBefore + (Date.now() - startedAt));
  const onLost = () => stop.abort(lease.signal.reason);
  lease.signal.addEventListener('abort', onLost, { once: true });
  const info = (phase: StartInfo['phase']): StartInfo => ({
    snapshotId: cp.snapshotId,
    resumed: held.resumed,
    resumes: cp.resumes,
    phase,
    config: cp.config,
    accountId: cp.accountId,
    endpoint: aws.endpoints.iamShown,
  });
  try {
    if (cp.phase === 'export') {
      const stopped = await exportPhase(store, config, hooks, held, aws, stop, startedAt, info('export'));
      if (stopped) return { status: 'stopped', snapshotId: cp.snapshotId, reason: stopped, summary: summary() };
      const failed = cp.failedUsers;
      const failedAccounts = cp.failedAccounts.map((e) => ({ id: e.ref.id, code: e.code ?? 'unknown' }));
      if ((failed.length > 0 || failedAccounts.length > 0) && !config.allowPartial) return { status: 'user-errors', snapshotId: cp.snapshotId, failed, failedAccounts, summary: summary() };
      lease.assertHeld();
      // A shard's part ends here: the snapshot is finalized once every shard is done.
      // The export's last commit saved this phase already when it found the export over.
      const next = config.shard ? 'done' : 'finalize';
      // (`as`: TypeScript keeps the narrowing of the test above across the awaits.)
      if ((cp.phase as Phase) !== next) {
        cp.phase = next;
        await file.save(cp);
      }
    } else {
      hooks.observer?.onStart?.(info(cp.phase === 'done' ? 'finalize' : cp.phase), () => idleProgress(cp, startedAt));
    }
    if (config.shard) {
      await lease.release();
      return await finalizeShards(store, config, hooks, cp.snapshotId, config.shard.count, startedAt, stop, summary, false);
    }
    let manifest: Manifest | undefined;
    if (cp.phase === 'finalize') {
      lease.assertHeld();
      manifest = await finalizeSnapshot(store, { checkpoint: cp, file, staging: held.keys.staging }, {
        view: viewOf(cp, held.keys.runs),
        rowsPerFile: config.tuning.rowsPerFile,
        toolVersion: hooks.toolVersion,
        wallMs: wallBefore + (Date.now() - startedAt),
        runId: lease.runId,
        stop: stop.signal,
        lastUse: await lastUseInfo(store, cp, [held.keys.staging]),
      });
    }
    if (stop.signal.aborted) return stoppedOrThrow(stop, cp, summary);
    lease.assertHeld();
    return await publish(store, config, hooks, cp, manifest, summary, lease);
  } catch (err) {
    if (isAbort(err) && stop.signal.aborted) return stoppedOrThrow(stop, cp, summary);
    throw err;
  } finally {
    lease.signal.removeEventListener('abort', onLost);
  }
}

/** Promotes the finalized snapshot, applies --keep, and says where it is. */
async function publish(store: Store, config: Config, hooks: RunHooks, cp: Checkpoint, manifest: Manifest | undefined, summary: () => RunSummary, lease: Lease): Promise<RunOutcome> {
  const dir = await promoteSnapshot(store, cp, () => lease.quiesce());
  if (config.keep !== undefined) {
    const deleted = await applyRetention(store, config.keep);
    if (deleted.length > 0) hooks.observer?.onNotice?.(`--keep ${config.keep}: deleted ${deleted.length} older snapshot(s): ${deleted.join(', ')}`, { deleted });
  }
  manifest ??= await readManifest(store, cp.snapshotId);
  if (!manifest) throw new ExportError('INTERNAL', `snapshot ${cp.snapshotId} was published without a manifest`);
  return {
    status: 'published',
    snapshotId: cp.snapshotId,
    result: { dir, files: manifest.files, rows: manifest.rows, manifest },
    summary: { ...summary(), rows: manifest.rows, wallMs: manifest.wall_time_ms },
  };
}

/**
 * The outcome of a run that finds its snapshot published already (a shard rerun after
 * the publish). A staging still there is what a finalizer killed after the publish
 * left: its last steps are done now, under the finalize lease (a live finalizer still
 * at them keeps them): both _LATEST (they never move back), then the staging removed,
 * so it neither fills the disk nor stops later runs as an unfinished snapshot.
 */
async function publishedOutcome(store: Store, hooks: RunHooks, id: string, startedAt: number): Promise<RunOutcome> {
  const keys = snapshotKeys(id);
  // Listing skips temp files and empty folders, what a kill inside the last removal leaves.
  if ((await store.exists(keys.root.replace(/\/$/, ''))) || (await store.list(keys.root)).length > 0) {
    let lease: Lease | undefined;
    try {
      lease = await takeLease(store, id, hooks, 'finalize');
    } catch (err) {
      if (!(err instanceof ExportError && err.code === 'OUTPUT_LOCKED')) throw err;
    }
    if (lease) {
      await lease.quiesce();
      await completePublication(store, id, [ACCOUNTS_DIR, DATASET_DIR]);
      await lease.release();
    }
  }
  const manifest = await readManifest(store, id);
  if (!manifest) throw new ExportError('INTERNAL', `snapshot ${id} is published without a manifest`);
  const c = manifest.users;
  return {
    status: 'published',
    snapshotId: id,
    result: { dir: store.describe(snapshotKeys(id).published.replace(/\/$/, '')), files: manifest.files, rows: manifest.rows, manifest },
    summary: {
      rows: manifest.rows,
      usersExported: c.exported,
      usersVanished: c.vanished,
      usersFailed: c.failed.length,
      calls: manifest.api.calls_total,
      throttles: manifest.api.throttles,
      retries: manifest.api.retries,
      wallMs: Date.now() - startedAt,
      resumes: manifest.resumes,
      accountId: manifest.account_id,
      accounts: manifest.configuration.accounts === 'self' ? null : manifest.accounts.length,
    },
  };
}

/**
 * Publishes a sharded snapshot once every shard is done: the shard that finds
 * them all done claims the finalize with the lease of `_staging/<id>/finalize/`
 * (one winner; a claim left by a killed finalizer is taken over like any lease)
 * and finalizes the shards' parts together. Run by every shard when it is done,
 * and by `iam-key-export finalize` (`explicit`: waiting is then exit 75).
 */
export async function finalizeShards(store: Store, config: Config, hooks: RunHooks, id: string, count: number, startedAt: number, stop: AbortController, summary: () => RunSummary, explicit: boolean): Promise<RunOutcome> {
  if (await isPublished(store, id)) return publishedOutcome(store, hooks, id, startedAt);
  const views: SnapshotView[] = [];
  const waiting: number[] = [];
  const stagings: string[] = [];
  for (let index = 0; index < count; index++) {
    const keys = snapshotKeys(id, { index, count });
    const loaded = await CheckpointFile.load(store, keys.checkpoint);
    if (!loaded || loaded.checkpoint.phase !== 'done') waiting.push(index);
    else {
      views.push(viewOf(loaded.checkpoint, keys.runs));
      stagings.push(keys.staging);
    }
  }
  if (waiting.length > 0) return { status: explicit ? 'waiting' : 'shard-done', snapshotId: id, waiting, summary: summary() };
  const keys = snapshotKeys(id, 'finalize');
  let lease: Lease;
  try {
    lease = await takeLease(store, id, hooks, 'finalize');
  } catch (err) {
    // Another shard is finalizing: this one's part is done.
    if (err instanceof ExportError && err.code === 'OUTPUT_LOCKED' && !explicit) return { status: 'shard-done', snapshotId: id, waiting: [], summary: summary() };
    throw err;
  }
  try {
    const view = combinedView(views);
    let loaded = await CheckpointFile.load(store, keys.checkpoint);
    if (!loaded) {
      const cp = new Checkpoint(id, view.snapshotTime, view.config);
      cp.phase = 'finalize';
      cp.accountId = view.accountId;
      cp.callerArn = view.callerArn;
      loaded = { checkpoint: cp, file: await CheckpointFile.create(store, keys.checkpoint, cp) };
    } else {
      loaded.checkpoint.beginResume();
      await loaded.file.save(loaded.checkpoint);
    }
    const cp = loaded.checkpoint;
    let manifest: Manifest | undefined;
    if (cp.phase === 'finalize') {
      manifest = await finalizeSnapshot(store, { checkpoint: cp, file: loaded.file, staging: keys.staging }, {
        view,
        rowsPerFile: config.tuning.rowsPerFile,
        toolVersion: hooks.toolVersion,
        wallMs: view.counters.wallMs,
        runId: lease.runId,
        stop: stop.signal,
        lastUse: await lastUseInfo(store, cp, stagings),
      });
    }
    if (stop.signal.aborted) return stoppedOrThrow(stop, cp, summary);
    lease.assertHeld();
    return await publish(store, config, hooks, cp, manifest, summary, lease);
  } finally {
    await lease.release();
  }
}

/** `iam-key-export finalize --out X --snapshot-id ID --shards N`: publish a sharded snapshot whose shards are done. */
export async function runFinalize(config: Config, hooks: RunHooks): Promise<RunOutcome> {
  const startedAt = Date.now();
  const store = hooks.store ?? (await openOutput(config, hooks));
  const stop = runStop();
  const onExternalStop = () => stop.abort('signal');
  hooks.stop?.addEventListener('abort', onExternalStop, { once: true });
  const empty: RunSummary = { rows: 0, usersExported: 0, usersVanished: 0, usersFailed: 0, calls: 0, throttles: 0, retries: 0, wallMs: 0, resumes: 0, accountId: null, accounts: null };
  try {
    return await finalizeShards(store, config, hooks, config.snapshotId!, config.shard!.count, startedAt, stop, () => ({ ...empty, wallMs: Date.now() - startedAt }), true);
  } finally {
    hooks.stop?.removeEventListener('abort', onExternalStop);
    if (!hooks.store) store.close?.();
  }
}

function isAbort(err: unknown): boolean {
  return (err as { name?: unknown })?.name === 'AbortError';
}

/** The outcome of a run that was asked to stop: a graceful reason, or the error that stopped it. */
function stoppedOrThrow(stop: AbortController, cp: Checkpoint, summary: () => RunSummary): RunOutcome {
  const reason: unknown = stop.signal.reason;
  if (reason instanceof Error) throw reason;
  return { status: 'stopped', snapshotId: cp.snapshotId, reason: reason as StopReason, summary: summary() };
}

/** The export phase: pages what is left and commits it. Returns why it stopped early, or undefined when the export is complete. */
async function exportPhase(store: Store, config: Config, hooks: RunHooks, held: Held, aws: Aws, stop: AbortController, startedAt: number, info: StartInfo): Promise<StopReason | undefined> {
  const { checkpoint: cp, file, lease } = held;
  const client = await aws.client();
  const identity = await aws.identity();
  const region = await aws.region();
  const stats = aws.stats;
  const env = hooks.env ?? process.env;
  let fatal: ExportError | undefined;
  const onFatal = (err: ExportError) => {
    fatal ??= err;
    stop.abort(err);
  };
  const onThrottled = () => stop.abort('throttled');
  const staging = held.keys.staging;
  if (!cp.accountsSelected) {
    // The accounts are state, not data: known once, kept by the checkpoint.
    const organization = organizationLister({ config, base: client, region, endpoints: aws.endpoints, stats, logger: aws.logger(), signal: stop.signal, env });
    cp.selectAccounts(await selectAccounts({ selection: config.accounts, callerAccount: identity.accountId ?? cp.accountId, shard: config.shard, organization }));
    await file.save(cp);
  }
  const callerAccount = identity.accountId ?? cp.accountId;
  // As AccountReach.prepare decides: the caller's own account uses the base credentials.
  const viaRole = (id: string) => config.accounts.mode !== 'self' && id !== callerAccount;
  const jobs: AccountJob[] = cp.accounts.filter((e) => e.status === 'pending' || e.status === 'active').map((e) => ({ ref: e.ref, plan: cp.resumePlan(e.ref.id), viaRole: viaRole(e.ref.id) }));
  const budget = config.maxItems === undefined ? undefined : new KeyBudget(config.maxItems, stop.signal);
  const base = { ...cp.counters, calls: { ...cp.counters.calls } };
  // Progress counts the snapshot: users and keys of earlier runs included.
  const left = jobs.reduce((n, j) => n + j.plan.resume.length + j.plan.missing.length, 0);
  const doneBefore = cp.usersKnown - left;
  const live = { usersListed: cp.usersKnown, usersDone: doneBefore, keys: cp.counters.rowsWritten, listingDone: jobs.every((j) => j.plan.listingDone) };
  const progress = (): Progress => ({
    listingDone: live.listingDone,
    usersListed: live.usersListed,
    usersDone: live.usersDone,
    usersDoneThisRun: live.usersDone - doneBefore,
    keys: live.keys,
    calls: totalCalls(stats),
    throttles: stats.throttles,
    retries: Math.max(0, stats.attempts - totalCalls(stats)),
    elapsedMs: Date.now() - startedAt,
  });

  hooks.observer?.onStart?.(info, progress);
  const reach = new AccountReach({
    config,
    store,
    staging,
    base: client,
    callerAccount,
    callerArn: identity.arn ?? cp.callerArn,
    region,
    endpoints: aws.endpoints,
    stats,
    logger: aws.logger(),
    mode: cp.config.lastUsed,
    signal: stop.signal,
    onFatal,
    onThrottled,
    onWarning: (message) => hooks.observer?.onWarning?.(message),
  });
  try {
    await pipeline(
      sourceStream({
        accounts: jobs,
        accountConcurrency: config.accountConcurrency,
        prepare: reach.prepare,
        accountFailures: config.accounts.mode !== 'self',
        pathPrefix: config.pathPrefix,
        pageSize: config.pageSize,
        concurrency: config.concurrency,
        stop: stop.signal,
        budget,
        endpoint: aws.endpoints.iamShown,
        onFatal,
        onThrottled,
        onUserFinished: () => live.usersDone++,
        takeFirstUsersPage: () => aws.takeFirstUsersPage(),
        takeFirstKeysPage: (user) => aws.takeFirstKeysPage(user),
        onUsersListed: (n, last) => {
          live.usersListed += n;
          live.listingDone ||= last;
        },
      }),
      toRecordStage({ snapshotTime: cp.snapshotTime }),
      deriveAgeStage(),
      filterStatusStage(cp.config.statuses),
      enrichLastUsedStage(
        (accountId) => reach.resolverOf(accountId),
        config.concurrency,
        (accountId) => reach.release(accountId),
        (user) => reach.forgetUser(user.accountId, user.userName),
      ),
      partWriter({
        checkpoint: cp,
        file,
        store,
        runsDir: held.keys.runs,
        runId: lease.runId,
        assertHeld: () => lease.assertHeld(),
        tuning: config.tuning,
        onRecord: () => live.keys++,
        noteOf: lastUseSourceOf,
        onCommitted: (records) => {
          const counts = cp.counters.lastUsed;
          const perAccount = new Map<string, number>();
          for (let i = 0; i < records.rows; i++) {
            const account = records.account(i);
            perAccount.set(account, (perAccount.get(account) ?? 0) + 1);
            const source = records.note(i);
            if (source === 'report') counts.report++;
            else if (source === 'api') counts.api++;
            else if (source === 'vanished') counts.vanished++;
            else if (source === 'denied') counts.denied++;
          }
          for (const [account, rows] of perAccount) cp.addKeys(account, rows);
        },
        beforeSave: (c, last) => {
          for (const [op, n] of Object.entries(stats.calls)) c.counters.calls[op] = (base.calls[op] ?? 0) + n;
          c.counters.attempts = base.attempts + stats.attempts;
          c.counters.throttles = base.throttles + stats.throttles;
          c.counters.wallMs = base.wallMs + (Date.now() - startedAt);
          // An export found over at its last commit saves its next phase with it: one
          // save fewer at the end of every run (a rerun then goes straight to finalize,
          // as it would after a separate save of the phase).
          if (last && !fatal && !stop.signal.aborted) c.phase = phaseAfterExport(c, config) ?? c.phase;
        },
        onCommit: () => hooks.observer?.onCommit?.(progress()),
        onState: (event) => {
          if (event.kind === 'user-failed' || event.kind === 'user-vanished' || event.kind === 'account-failed') hooks.observer?.onUser?.(event);
        },
      }),
    );
  } catch (err) {
    throw fatal ?? err;
  } finally {
    reach.close();
  }
  if (!fatal && !stop.signal.aborted && cp.exportComplete) systemicLastUse(cp);
  if (fatal) throw fatal;
  const reason: unknown = stop.signal.reason;
  if (reason instanceof Error) throw reason;
  if (cp.exportComplete) return undefined;
  if (reason === 'signal' || reason === 'time-budget' || reason === 'throttled') return reason;
  if (budget?.exhausted) return 'max-items';
  throw new ExportError('INTERNAL', 'the source ended before every account was exported, without a stop reason');
}

/**
 * Every last-use lookup of the snapshot denied, none answered: a missing
 * permission, not a per-key problem. Checked before the snapshot is finalized,
 * so a snapshot whose last-use columns are all null for that reason is never
 * published (fewer keys than the 20 the resolver judges on the way).
 */
function systemicLastUse(cp: Checkpoint): void {
  if (!lastUseDenied(cp)) return;
  const c = cp.counters.lastUsed;
  throw new ExportError(
    'SOURCE_DENIED',
    `GetAccessKeyLastUsed was denied for every one of the ${c.denied} keys looked up: the identity needs iam:GetAccessKeyLastUsed; grant it and rerun with --fresh, or run with --last-used off`,
  );
}

/** Every last-use lookup denied, none answered (systemicLastUse). */
function lastUseDenied(cp: Checkpoint): boolean {
  const c = cp.counters.lastUsed;
  return c.denied > 0 && c.api === 0;
}

/**
 * The phase an export that is over moves to: finalize, or done for a shard (its
 * snapshot is finalized once every shard is done). Undefined while it is not over,
 * or ends in an error instead: every last-use lookup denied, or failed users or
 * accounts without --allow-partial.
 */
function phaseAfterExport(cp: Checkpoint, config: Config): 'done' | 'finalize' | undefined {
  if (!cp.exportComplete || lastUseDenied(cp)) return undefined;
  if ((cp.failedUsers.length > 0 || cp.failedAccounts.length > 0) && !config.allowPartial) return undefined;
  return config.shard ? 'done' : 'finalize';
}

/** What the manifest says of last use: the mode asked, the source used, the reports' time. */
async function lastUseInfo(store: Store, cp: Checkpoint, stagings: readonly string[]): Promise<LastUseInfo> {
  if (cp.config.lastUsed !== 'report') return { mode: cp.config.lastUsed, source: cp.config.lastUsed, reportGeneratedTime: null };
  const times: string[] = [];
  for (const staging of stagings) times.push(...(await savedReportTimes(store, staging)).values());
  return {
    mode: 'report',
    source: times.length > 0 ? 'report' : 'api',
    // Several accounts: the oldest report tells how stale last use can be.
    reportGeneratedTime: times.length > 0 ? times.sort()[0]! : null,
  };
}

function describeDiff(a: DataConfig, b: DataConfig): string {
  const diffs: string[] = [];
  if (a.format !== b.format) diffs.push(`--format ${a.format}, now ${b.format}`);
  if (a.pathPrefix !== b.pathPrefix) diffs.push(`--path-prefix ${a.pathPrefix}, now ${b.pathPrefix}`);
  if ([...a.statuses].sort().join(',') !== [...b.statuses].sort().join(',')) diffs.push(`--status ${a.statuses.join(',') || 'all'}, now ${b.statuses.join(',') || 'all'}`);
  if (a.endpoint !== b.endpoint) diffs.push(`endpoint ${a.endpoint ?? 'default'}, now ${b.endpoint ?? 'default'}`);
  if (a.schemaVersion !== b.schemaVersion) diffs.push(`schema version ${a.schemaVersion}, now ${b.schemaVersion}`);
  if (a.lastUsed !== b.lastUsed) diffs.push(`--last-used ${a.lastUsed}, now ${b.lastUsed}`);
  if (a.accounts !== b.accounts) diffs.push(`accounts ${a.accounts}, now ${b.accounts}`);
  if (a.shard !== b.shard) diffs.push(`shard ${a.shard ?? 'none'}, now ${b.shard ?? 'none'}`);
  return diffs.join('; ');
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
    accountId: cp.accountId,
    accounts: cp.config.accounts === 'self' ? null : cp.accounts.length,
  };
}

function idleProgress(cp: Checkpoint, startedAt: number): Progress {
  return { listingDone: true, usersListed: cp.usersKnown, usersDone: cp.usersKnown, usersDoneThisRun: 0, keys: cp.counters.rowsWritten, calls: 0, throttles: 0, retries: 0, elapsedMs: Date.now() - startedAt };
}
