/**
 * Snapshot layout, staging and publication (DESIGN §5), in store keys:
 *
 *   _staging/<id>/checkpoint.json             state (private)
 *   _staging/<id>/lease.json                  who works on it (lease.ts)
 *   _staging/<id>/runs/run-<run>-NNNNNN.ndjson committed sorted parts
 *   _staging/<id>/reports/<account>.json      the credential reports it matched against
 *   _staging/<id>/merge-<run>/                intermediate runs of a large merge
 *   _staging/<id>/publish-<run>/<dataset>/    the datasets being finalized
 *   _staging/<id>/shard-<i>-of-<n>/...        a sharded snapshot: the same per shard,
 *   _staging/<id>/finalize/...                and its finalize (checkpoint, lease, publish-<run>/)
 *   accounts/snapshot_id=<id>/                published: part-00000.<ext>, _manifest.json, _SUCCESS
 *   access_keys/snapshot_id=<id>/             published: part-NNNNN.<ext>, _manifest.json, _SUCCESS
 *   <dataset>/_LATEST                         the id of the newest published snapshot
 *
 * Finalize merges the parts into the data files, writes each dataset's manifest,
 * then its _SUCCESS, records the finished folders in the checkpoint (phase
 * "publishing"), then promotes them: accounts/ first, access_keys/ last, so its
 * _SUCCESS is the last thing of a snapshot to appear (one rename each locally),
 * and a reader that globs access_keys/*\/ never sees half a snapshot. From
 * "publishing" on, a rerun after a crash promotes the very same files.
 */
import type { AccountEntry, Checkpoint, CheckpointFile, Counters, DataConfig, FailedUser } from './checkpoint.ts';
import { ExportError, settleAll } from './errors.ts';
import { faultPoint } from './faultpoint.ts';
import { LEASE_FILE } from './lease.ts';
import { mergeRows, type StagedRow, type StagedRun } from './runs.ts';
import { SCHEMA_NAME, SCHEMA_VERSION } from './schema.ts';
import { encodeRows, encodeStagedFile, FORMAT_EXTENSION, type DataFileInfo } from './sinks/index.ts';
import { ACCOUNTS_SPEC } from './schema-spec.ts';
import { keyJoin, type Store } from './store/store.ts';

export const DATASET_DIR = 'access_keys';
export const ACCOUNTS_DIR = 'accounts';
export const STAGING_DIR = '_staging';
export const MANIFEST_FILE = '_manifest.json';
export const SUCCESS_FILE = '_SUCCESS';
export const LATEST_FILE = '_LATEST';

/** A snapshot id: its first run's start, YYYYMMDDTHHMMSSZ (UTC). */
export const SNAPSHOT_ID = /^\d{8}T\d{6}Z$/;

/** Where everything of snapshot `id` (or of one of its shards, or its finalize) lives in the store. */
export interface SnapshotKeys {
  readonly id: string;
  /** The snapshot's staging folder: every shard's and the finalize's under it (ends with '/'). */
  readonly root: string;
  /** This checkpoint's folder (the root, a shard's, or the finalize's). */
  readonly staging: string;
  readonly checkpoint: string;
  readonly lease: string;
  readonly runs: string;
  readonly published: string;
  readonly success: string;
}

/** A staged unit: the snapshot itself, one shard of it, or the finalize of a sharded one. */
export type StagedUnit = 'snapshot' | 'finalize' | { readonly index: number; readonly count: number };

export function snapshotKeys(id: string, unit: StagedUnit = 'snapshot'): SnapshotKeys {
  const root = `${STAGING_DIR}/${id}/`;
  const staging = unit === 'snapshot' ? root : unit === 'finalize' ? `${root}finalize/` : `${root}${shardFolder(unit)}`;
  const published = `${DATASET_DIR}/snapshot_id=${id}/`;
  return {
    id,
    root,
    staging,
    checkpoint: `${staging}checkpoint.json`,
    lease: `${staging}${LEASE_FILE}`,
    runs: `${staging}runs/`,
    published,
    success: `${published}${SUCCESS_FILE}`,
  };
}

/** The folder of shard `index` of `count` (ends with '/'). */
export function shardFolder(shard: { readonly index: number; readonly count: number }): string {
  return `shard-${shard.index}-of-${shard.count}/`;
}

/** The snapshot id of a start time: YYYYMMDDTHHMMSSZ (UTC). */
export function snapshotIdOf(time: Date): string {
  return time.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
}

/** True when snapshot `id` is published (its _SUCCESS exists). */
export function isPublished(store: Store, id: string): Promise<boolean> {
  return store.exists(snapshotKeys(id).success);
}

/** A staged snapshot: its id and which of its state objects exist. */
export interface Staged {
  readonly id: string;
  readonly hasCheckpoint: boolean;
  readonly hasLease: boolean;
  /** Staged by shards (`shard-<i>-of-<n>/`, `finalize/`): its checkpoints are the shards', not at the root. */
  readonly sharded: boolean;
}

/** The staged snapshots under `_staging/`, newest first. */
export async function listStaging(store: Store): Promise<Staged[]> {
  const byId = new Map<string, { checkpoint: boolean; lease: boolean; sharded: boolean }>();
  for (const key of await store.list(`${STAGING_DIR}/`)) {
    const [, id, name, rest] = key.split('/');
    if (!id || !SNAPSHOT_ID.test(id)) continue;
    const s = byId.get(id) ?? { checkpoint: false, lease: false, sharded: false };
    if (name === 'checkpoint.json') s.checkpoint = true;
    if (name === LEASE_FILE) s.lease = true;
    if (rest !== undefined && name !== undefined && (/^shard-\d+-of-\d+$/.test(name) || name === 'finalize')) s.sharded = true;
    byId.set(id, s);
  }
  return [...byId.entries()].sort(([a], [b]) => (a < b ? 1 : -1)).map(([id, s]) => ({ id, hasCheckpoint: s.checkpoint, hasLease: s.lease, sharded: s.sharded }));
}

/**
 * Removes a staged folder (its lease last, so nobody takes an empty one for a
 * live one). Everything else goes in one call: on S3 one DeleteObjects per 1,000
 * keys (the parts are the bulk of it) rather than a DeleteObject each.
 */
export async function removeStaging(store: Store, keys: Pick<SnapshotKeys, 'staging' | 'lease'>): Promise<void> {
  await store.deleteKeys((await store.list(keys.staging)).filter((key) => key !== keys.lease));
  await store.deletePrefix(keys.staging);
}

/**
 * What a finalize needs to know of a snapshot: one checkpoint's, or the shards'
 * checkpoints taken together (`combinedView`).
 */
export interface SnapshotView {
  readonly snapshotId: string;
  readonly snapshotTime: Date;
  readonly config: DataConfig;
  readonly accountId: string | null;
  readonly callerArn: string | null;
  /** The committed parts, each with the folder it is in. */
  readonly runs: readonly StagedRun[];
  readonly dirty: ReadonlySet<string>;
  readonly failedUsers: readonly FailedUser[];
  readonly accounts: readonly AccountEntry[];
  readonly counters: Counters;
  readonly resumes: number;
}

/** The view of one checkpoint whose parts are in `runsDir`. */
export function viewOf(cp: Checkpoint, runsDir: string): SnapshotView {
  return {
    snapshotId: cp.snapshotId,
    snapshotTime: cp.snapshotTime,
    config: cp.config,
    accountId: cp.accountId,
    callerArn: cp.callerArn,
    runs: cp.parts.map((part) => ({ dir: runsDir, part })),
    dirty: cp.dirtyUsers,
    failedUsers: cp.failedUsers,
    accounts: cp.accounts,
    counters: cp.counters,
    resumes: cp.resumes,
  };
}

/** The shards of a sharded snapshot taken together (their counts summed, their accounts side by side). */
export function combinedView(views: readonly SnapshotView[]): SnapshotView {
  const first = views[0];
  if (!first) throw new ExportError('INTERNAL', 'no shard to combine');
  const counters: Counters = { ...first.counters, calls: {}, lastUsed: { report: 0, api: 0, vanished: 0, denied: 0 } };
  for (const k of ['usersExported', 'usersVanished', 'rowsWritten', 'restartedListings', 'attempts', 'throttles', 'wallMs'] as const) counters[k] = views.reduce((n, v) => n + v.counters[k], 0);
  for (const v of views) {
    for (const [op, n] of Object.entries(v.counters.calls)) counters.calls[op] = (counters.calls[op] ?? 0) + n;
    for (const k of ['report', 'api', 'vanished', 'denied'] as const) counters.lastUsed[k] += v.counters.lastUsed[k];
  }
  return {
    ...first,
    config: { ...first.config, shard: null },
    runs: views.flatMap((v) => v.runs),
    dirty: new Set(views.flatMap((v) => [...v.dirty])),
    failedUsers: views.flatMap((v) => v.failedUsers),
    accounts: views.flatMap((v) => v.accounts).sort((a, b) => (a.ref.id < b.ref.id ? -1 : 1)),
    counters,
    resumes: Math.max(...views.map((v) => v.resumes)),
  };
}

export interface ManifestInput {
  readonly view: SnapshotView;
  readonly rowsPerFile: number;
  readonly toolVersion: string;
  /** Wall time of every run, this one included. */
  readonly wallMs: number;
  /** This run's id: the publish folder carries it, so two holders never share one. */
  readonly runId: string;
  /** A graceful stop: finalize ends early (AbortError) and is redone by the rerun. */
  readonly stop?: AbortSignal;
  /** Where last use came from (the manifest's last_used). */
  readonly lastUse?: LastUseInfo;
}

/** Where the last use of a snapshot's keys came from. */
export interface LastUseInfo {
  /** --last-used as given. */
  readonly mode: 'report' | 'api' | 'off';
  /** What was used: report (API for the keys it cannot attribute), api (also when the report was denied), off. */
  readonly source: 'report' | 'api' | 'off';
  /** When IAM generated the report used (ISO 8601), or null. */
  readonly reportGeneratedTime: string | null;
}

export interface PublishResult {
  /** Where the snapshot is (path or URL). */
  readonly dir: string;
  readonly files: readonly DataFileInfo[];
  readonly rows: number;
  readonly manifest: Manifest;
}

export interface Manifest {
  readonly schema: { readonly name: string; readonly version: number };
  readonly snapshot_id: string;
  readonly snapshot_time: string;
  readonly published_at: string;
  readonly tool: { readonly name: string; readonly version: string };
  readonly configuration: {
    readonly format: string;
    readonly path_prefix: string;
    readonly statuses: readonly string[];
    readonly endpoint: string | null;
    readonly accounts: string;
    readonly last_used: string;
  };
  readonly account_id: string | null;
  readonly caller_arn: string | null;
  readonly rows: number;
  readonly files: readonly DataFileInfo[];
  /** Some users or accounts failed (published with --allow-partial). */
  readonly partial: boolean;
  /** Each account: exported, partial (some users failed) or failed, and its rows. */
  readonly accounts: readonly { readonly account_id: string; readonly outcome: string; readonly keys: number; readonly code?: string | null }[];
  readonly failed_accounts: readonly { readonly account_id: string; readonly code: string }[];
  readonly users: {
    readonly seen: number;
    readonly exported: number;
    readonly vanished: number;
    readonly failed: readonly { readonly user_name: string; readonly user_id: string; readonly account_id: string; readonly code: string }[];
  };
  readonly api: { readonly calls: Record<string, number>; readonly calls_total: number; readonly attempts: number; readonly retries: number; readonly throttles: number };
  readonly wall_time_ms: number;
  readonly resumes: number;
  /** Rows dropped because their access key id was observed again later (IAM changed during the snapshot). */
  readonly duplicates_dropped: number;
  /** Listings started over because IAM rejected a stored Marker. */
  readonly restarted_listings: number;
  /** Where the last-use columns came from, with counts of keys. */
  readonly last_used: {
    readonly mode: string;
    readonly source: string;
    readonly report_generated_time: string | null;
    readonly from_report: number;
    readonly from_api: number;
    /** Published keys with a last-use date, and without (never used, or unknown). */
    readonly dated: number;
    readonly null: number;
    readonly keys_vanished: number;
    readonly lookups_denied: number;
  };
}

/** Batches of rows shared by the files of a snapshot: the iterator, and what the last file left of a batch it cut. */
interface SharedBatches<T> {
  readonly it: AsyncIterator<T[]>;
  rest: T[];
  done: boolean;
}

/**
 * Takes up to `n` rows from shared batches without closing their iterator (a
 * batch cut at `n` leaves its rest for the next call); throws AbortError once
 * `stop` is aborted.
 */
async function* take<T>(source: SharedBatches<T>, n: number, stop: AbortSignal | undefined): AsyncGenerator<T[]> {
  for (let left = n; left > 0; ) {
    if (stop?.aborted) throw Object.assign(new Error('finalize stopped'), { name: 'AbortError' });
    let batch = source.rest;
    source.rest = [];
    if (batch.length === 0) {
      const r = await source.it.next();
      if (r.done) {
        source.done = true;
        return;
      }
      batch = r.value;
    }
    if (batch.length > left) {
      source.rest = batch.slice(left);
      batch = batch.slice(0, left);
    }
    left -= batch.length;
    yield batch;
  }
}

/** exported (every user read), partial (some users failed) or failed (not read): the same word in the manifest and the accounts dataset. */
function accountOutcome(e: SnapshotView['accounts'][number]): 'exported' | 'partial' | 'failed' {
  if (e.status === 'failed') return 'failed';
  return (e.summary?.failed ?? e.progress?.failedUsers ?? []).length > 0 ? 'partial' : 'exported';
}

/** The rows of the accounts dataset: one per account of the snapshot. */
function accountRows(view: SnapshotView, keysByAccount: ReadonlyMap<string, number>): Record<string, string | number | boolean | Date | null>[] {
  return view.accounts.map((e) => {
    const exported = e.summary?.exported ?? e.progress?.exported ?? 0;
    const vanished = e.summary?.vanished ?? e.progress?.vanished ?? 0;
    const failed = (e.summary?.failed ?? e.progress?.failedUsers ?? []).length;
    return {
      snapshot_time: view.snapshotTime,
      account_id: e.ref.id,
      account_name: e.ref.name,
      account_alias: e.facts?.alias ?? null,
      root_access_keys_present: e.facts?.rootAccessKeysPresent ?? null,
      users_exported: exported,
      users_vanished: vanished,
      users_failed: failed,
      keys_exported: keysByAccount.get(e.ref.id) ?? 0,
      outcome: accountOutcome(e),
      error_code: e.status === 'failed' ? e.code : null,
    };
  });
}

/**
 * Finalizes the snapshot `input.view` describes (its export must be complete):
 * merges the parts into the access_keys data files and writes the accounts
 * dataset, each in its folder of a publish folder of this run with its manifest
 * and _SUCCESS, and records the folders in `state` (phase "publishing").
 * Redoable from the start until that checkpoint save.
 */
export async function finalizeSnapshot(store: Store, state: { readonly checkpoint: Checkpoint; readonly file: CheckpointFile; readonly staging: string }, input: ManifestInput): Promise<Manifest> {
  const view = input.view;
  const cp = state.checkpoint;
  const publishDir = `${state.staging}publish-${input.runId}/`;
  const scratch = `${state.staging}merge-${input.runId}/`;
  // Leftovers of earlier attempts (other run ids) are not ours to keep.
  for (const key of await store.list(state.staging)) {
    const folder = key.slice(state.staging.length).split('/')[0] ?? '';
    if (/^(publish|merge)-/.test(folder)) await store.delete(key);
  }
  const format = view.config.format;
  const ext = FORMAT_EXTENSION[format];
  const metadata = (schema: { name: string; version: number }) => ({
    // The partition value is not a column: readers of a single file find it here.
    snapshot_id: view.snapshotId,
    snapshot_time: view.snapshotTime.toISOString(),
    schema_name: schema.name,
    schema_version: String(schema.version),
  });

  const keysDir = `${publishDir}${DATASET_DIR}/`;
  const stats = { duplicates: 0, dated: 0, perAccount: new Map<string, number>() };
  const merged: SharedBatches<StagedRow> = { it: countPerAccount(mergeRows(store, view.runs, { dirty: view.dirty, scratch }, stats), stats.perAccount), rest: [], done: false };
  const files: DataFileInfo[] = [];
  try {
    // One file per rowsPerFile rows; always at least one, so an empty account
    // still publishes a readable (header-only / zero-row) file.
    while (!merged.done) {
      const name = `part-${String(files.length).padStart(5, '0')}${ext}`;
      const encoded = encodeStagedFile(format, take(merged, input.rowsPerFile, input.stop), { metadata: metadata({ name: SCHEMA_NAME, version: SCHEMA_VERSION }) });
      const { bytes, sha256 } = await store.upload(keyJoin(keysDir, name), encoded.chunks);
      const info = { file: name, rows: encoded.rows(), bytes, sha256 };
      stats.dated += encoded.dated();
      if (info.rows === 0 && files.length > 0) {
        await store.delete(keyJoin(keysDir, name));
        break;
      }
      files.push(info);
      faultPoint('data-file-written', name);
      if (info.rows < input.rowsPerFile) break;
    }
  } finally {
    await merged.it.return?.(undefined);
  }

  // The small files that remain, written at once: nobody reads the publish folder
  // before its promotion, so their order does not matter, only that all are durable
  // before the checkpoint names them (one after the other, each a few file-system
  // round trips, they were ~20 ms of a small snapshot's end). Each dataset's gate
  // file still follows its manifest.
  const accountsDir = `${publishDir}${ACCOUNTS_DIR}/`;
  const accountsFile = `part-00000${ext}`;
  const writeAccounts = async () => {
    // The accounts dataset: small, one file.
    const encodedAccounts = encodeRows(format, ACCOUNTS_SPEC.columns, accountRows(view, stats.perAccount), { metadata: metadata(ACCOUNTS_SPEC) });
    const uploaded = await store.upload(keyJoin(accountsDir, accountsFile), encodedAccounts.chunks);
    const accountsInfo: DataFileInfo = { file: accountsFile, rows: encodedAccounts.rows(), ...uploaded };
    await store.write(keyJoin(accountsDir, MANIFEST_FILE), JSON.stringify(accountsManifest(view, accountsInfo), null, 2) + '\n');
    await store.write(keyJoin(accountsDir, SUCCESS_FILE), '');
  };
  const manifest = buildManifest(view, input, files, files.reduce((a, f) => a + f.rows, 0), stats);
  const writeKeys = async () => {
    await store.write(keyJoin(keysDir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
    faultPoint('manifest-written');
    await store.write(keyJoin(keysDir, SUCCESS_FILE), '');
    faultPoint('success-written');
  };
  await settleAll([store.deletePrefix(scratch), writeAccounts(), writeKeys()]);
  cp.phase = 'publishing';
  cp.publishing = {
    dir: publishDir,
    datasets: [
      { name: ACCOUNTS_DIR, files: [accountsFile, MANIFEST_FILE, SUCCESS_FILE] },
      { name: DATASET_DIR, files: [...files.map((f) => f.file), MANIFEST_FILE, SUCCESS_FILE] },
    ],
  };
  await state.file.save(cp);
  faultPoint('publishing-saved');
  return manifest;
}

/** The small manifest of the accounts dataset. */
function accountsManifest(view: SnapshotView, file: DataFileInfo) {
  return {
    schema: { name: ACCOUNTS_SPEC.name, version: ACCOUNTS_SPEC.version },
    snapshot_id: view.snapshotId,
    snapshot_time: view.snapshotTime.toISOString(),
    rows: file.rows,
    files: [file],
  };
}

/**
 * Promotes the finalized folders (accounts/ first, access_keys/ last), points
 * each dataset's _LATEST at the snapshot (if it is the newest), and removes the
 * snapshot's staging (every shard's too). Idempotent: after a crash at any step,
 * a rerun completes the same publication.
 */
export async function promoteSnapshot(store: Store, cp: Checkpoint, beforeStagingRemoval?: () => Promise<void>): Promise<string> {
  const keys = snapshotKeys(cp.snapshotId);
  const publishing = cp.publishing;
  if (!publishing) throw new ExportError('INTERNAL', `snapshot ${cp.snapshotId} has no finalized files to publish`);
  if (!(await isPublished(store, cp.snapshotId))) {
    faultPoint('before-promote');
    for (const dataset of publishing.datasets) {
      const target = `${dataset.name}/snapshot_id=${cp.snapshotId}/`;
      if (await store.exists(`${target}${SUCCESS_FILE}`)) continue;
      await store.promote(`${publishing.dir}${dataset.name}/`, target, dataset.files);
    }
    faultPoint('after-promote');
  }
  await completePublication(store, cp.snapshotId, publishing.datasets.map((d) => d.name), beforeStagingRemoval);
  return store.describe(keys.published.replace(/\/$/, ''));
}

/**
 * The last steps of a publication, once its folders are promoted: each dataset's
 * _LATEST (never moved back), then the snapshot's staging removed (every shard's
 * too). Also what a rerun does for a finalizer killed after the promotion.
 */
export async function completePublication(store: Store, id: string, datasets: readonly string[], beforeStagingRemoval?: () => Promise<void>): Promise<void> {
  // Both at once: each dataset's folder is promoted already, so either pointer may lead first.
  await settleAll(datasets.map((dataset) => updateLatest(store, id, dataset)));
  faultPoint('latest-written');
  await beforeStagingRemoval?.();
  const keys = snapshotKeys(id);
  await removeStaging(store, { staging: keys.root, lease: keys.lease });
  faultPoint('staging-removed');
}

/**
 * access_keys/_LATEST names the newest published snapshot: written atomically
 * after its _SUCCESS, and never moved back to an older one (a late publish of an
 * older snapshot leaves it alone).
 */
export async function updateLatest(store: Store, id: string, dataset: string = DATASET_DIR): Promise<void> {
  const key = `${dataset}/${LATEST_FILE}`;
  const current = await store.read(key);
  const named = current?.body.toString('utf8').trim();
  if (named && SNAPSHOT_ID.test(named) && named >= id) return;
  await store.write(key, `${id}\n`);
}

/**
 * --keep N: deletes all but the newest N published snapshots (by id, which is
 * time order). Only folders with _SUCCESS count as published; a folder being
 * published (no _SUCCESS yet) and staging are never touched. Each folder loses
 * its _SUCCESS first, so a reader gating on it stops seeing the snapshot before
 * its files go. Returns the ids deleted.
 */
export async function applyRetention(store: Store, keep: number): Promise<string[]> {
  const deleted = new Set<string>();
  // access_keys/ first: its _SUCCESS is what readers gate the snapshot on.
  for (const dataset of [DATASET_DIR, ACCOUNTS_DIR]) {
    const keys = await store.list(`${dataset}/`);
    const published = keys
      .map((k) => new RegExp(`^${dataset}/snapshot_id=([^/]+)/_SUCCESS$`).exec(k)?.[1])
      .filter((id): id is string => id !== undefined && SNAPSHOT_ID.test(id))
      .sort()
      .reverse();
    for (const id of published.slice(keep)) {
      const folder = `${dataset}/snapshot_id=${id}/`;
      await store.delete(`${folder}${SUCCESS_FILE}`);
      for (const key of keys) if (key.startsWith(folder) && !key.endsWith(`/${SUCCESS_FILE}`)) await store.delete(key);
      await store.deletePrefix(folder);
      deleted.add(id);
      faultPoint('snapshot-deleted', id);
    }
  }
  return [...deleted].sort();
}

/** The manifest of a published snapshot, or undefined. */
export async function readManifest(store: Store, id: string): Promise<Manifest | undefined> {
  const found = await store.read(`${snapshotKeys(id).published}${MANIFEST_FILE}`);
  return found ? (JSON.parse(found.body.toString('utf8')) as Manifest) : undefined;
}

/** Counts the published rows of each account, batch by batch (the sort key holds the account). */
async function* countPerAccount(batches: AsyncIterable<StagedRow[]>, perAccount: Map<string, number>): AsyncGenerator<StagedRow[]> {
  for await (const batch of batches) {
    for (const row of batch) perAccount.set(row.account, (perAccount.get(row.account) ?? 0) + 1);
    yield batch;
  }
}

function buildManifest(view: SnapshotView, input: ManifestInput, files: DataFileInfo[], rows: number, stats: { duplicates: number; dated: number; perAccount: ReadonlyMap<string, number> }): Manifest {
  const c = view.counters;
  // By account, name, then id (as rows are sorted): the same users always in the same order.
  const key = (f: FailedUser) => [f.user.accountId, f.user.userName, f.user.userId] as const;
  const failed = [...view.failedUsers].sort((a, b) => compareTuples(key(a), key(b))).map((f) => ({ user_name: f.user.userName, user_id: f.user.userId, account_id: f.user.accountId, code: f.code }));
  const failedAccounts = view.accounts.filter((e) => e.status === 'failed').map((e) => ({ account_id: e.ref.id, code: e.code ?? 'unknown' }));
  const callsTotal = Object.values(c.calls).reduce((a, b) => a + b, 0);
  return {
    schema: { name: SCHEMA_NAME, version: SCHEMA_VERSION },
    snapshot_id: view.snapshotId,
    snapshot_time: view.snapshotTime.toISOString(),
    published_at: new Date().toISOString(),
    tool: { name: 'iam-key-export', version: input.toolVersion },
    configuration: { format: view.config.format, path_prefix: view.config.pathPrefix, statuses: view.config.statuses, endpoint: view.config.endpoint, accounts: view.config.accounts, last_used: view.config.lastUsed },
    account_id: view.accountId,
    caller_arn: view.callerArn,
    rows,
    files,
    partial: failed.length > 0 || failedAccounts.length > 0,
    accounts: view.accounts.map((e) => ({ account_id: e.ref.id, outcome: accountOutcome(e), keys: stats.perAccount.get(e.ref.id) ?? 0, ...(e.status === 'failed' ? { code: e.code } : {}) })),
    failed_accounts: failedAccounts,
    users: { seen: c.usersExported + c.usersVanished + failed.length, exported: c.usersExported, vanished: c.usersVanished, failed },
    api: { calls: c.calls, calls_total: callsTotal, attempts: c.attempts, retries: Math.max(0, c.attempts - callsTotal), throttles: c.throttles },
    wall_time_ms: input.wallMs,
    resumes: view.resumes,
    duplicates_dropped: stats.duplicates,
    restarted_listings: c.restartedListings,
    last_used: {
      mode: input.lastUse?.mode ?? view.config.lastUsed,
      source: input.lastUse?.source ?? view.config.lastUsed,
      report_generated_time: input.lastUse?.reportGeneratedTime ?? null,
      from_report: c.lastUsed.report,
      from_api: c.lastUsed.api,
      dated: stats.dated,
      null: rows - stats.dated,
      keys_vanished: c.lastUsed.vanished,
      lookups_denied: c.lastUsed.denied,
    },
  };
}

/** Orders tuples of strings element by element (by UTF-16 code units, as rows are). */
function compareTuples(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return a.length - b.length;
}
