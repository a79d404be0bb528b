/**
 * Snapshot layout, staging and publication (DESIGN §5), in store keys:
 *
 *   _staging/<id>/checkpoint.json             state (private)
 *   _staging/<id>/lease.json                  who works on it (lease.ts)
 *   _staging/<id>/runs/run-<run>-NNNNNN.ndjson committed sorted parts
 *   _staging/<id>/merge-<run>/                intermediate runs of a large merge
 *   _staging/<id>/publish-<run>/              the snapshot being finalized
 *   access_keys/snapshot_id=<id>/             published: part-NNNNN.<ext>, _manifest.json, _SUCCESS
 *   access_keys/_LATEST                       the id of the newest published snapshot
 *
 * Finalize merges the parts into the data files, writes the manifest, then
 * _SUCCESS, records the finished folder in the checkpoint (phase "publishing"),
 * then promotes it into access_keys/ (one rename locally), so a reader that globs
 * access_keys/*\/ never sees half a snapshot. From "publishing" on, a rerun after a
 * crash promotes the very same files: the manifest never changes once written.
 */
import type { Checkpoint, CheckpointFile } from './checkpoint.ts';
import { ExportError } from './errors.ts';
import { faultPoint } from './faultpoint.ts';
import { mergeRuns } from './runs.ts';
import { SCHEMA_NAME, SCHEMA_VERSION, type AccessKeyRecord } from './schema.ts';
import { encodeDataFile, FORMAT_EXTENSION, type DataFileInfo } from './sinks/index.ts';
import { keyJoin, type Store } from './store/store.ts';

export const DATASET_DIR = 'access_keys';
export const STAGING_DIR = '_staging';
export const MANIFEST_FILE = '_manifest.json';
export const SUCCESS_FILE = '_SUCCESS';
export const LATEST_FILE = '_LATEST';

/** A snapshot id: its first run's start, YYYYMMDDTHHMMSSZ (UTC). */
export const SNAPSHOT_ID = /^\d{8}T\d{6}Z$/;

/** Where everything of snapshot `id` lives in the store. */
export interface SnapshotKeys {
  readonly id: string;
  /** Staging folder (ends with '/'). */
  readonly staging: string;
  readonly checkpoint: string;
  readonly lease: string;
  readonly runs: string;
  readonly published: string;
  readonly success: string;
}

export function snapshotKeys(id: string): SnapshotKeys {
  const staging = `${STAGING_DIR}/${id}/`;
  const published = `${DATASET_DIR}/snapshot_id=${id}/`;
  return {
    id,
    staging,
    checkpoint: `${staging}checkpoint.json`,
    lease: `${staging}lease.json`,
    runs: `${staging}runs/`,
    published,
    success: `${published}${SUCCESS_FILE}`,
  };
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
}

/** The staged snapshots under `_staging/`, newest first. */
export async function listStaging(store: Store): Promise<Staged[]> {
  const byId = new Map<string, { checkpoint: boolean; lease: boolean }>();
  for (const key of await store.list(`${STAGING_DIR}/`)) {
    const [, id, name] = key.split('/');
    if (!id || !SNAPSHOT_ID.test(id)) continue;
    const s = byId.get(id) ?? { checkpoint: false, lease: false };
    if (name === 'checkpoint.json') s.checkpoint = true;
    if (name === 'lease.json') s.lease = true;
    byId.set(id, s);
  }
  return [...byId.entries()].sort(([a], [b]) => (a < b ? 1 : -1)).map(([id, s]) => ({ id, hasCheckpoint: s.checkpoint, hasLease: s.lease }));
}

/**
 * Removes a staged snapshot (its lease last, so nobody takes an empty one for a
 * live one). The parts, the bulk of it, go as one prefix: on S3 that is one
 * DeleteObjects call per 1,000 parts rather than a DeleteObject each.
 */
export async function removeStaging(store: Store, keys: SnapshotKeys): Promise<void> {
  await store.deletePrefix(keys.runs);
  const rest = await store.list(keys.staging);
  for (const key of rest) if (key !== keys.lease) await store.delete(key);
  await store.deletePrefix(keys.staging);
}

export interface ManifestInput {
  readonly checkpoint: Checkpoint;
  readonly rowsPerFile: number;
  readonly toolVersion: string;
  /** Wall time of every run, this one included. */
  readonly wallMs: number;
  /** This run's id: the publish folder carries it, so two holders never share one. */
  readonly runId: string;
  /** A graceful stop: finalize ends early (AbortError) and is redone by the rerun. */
  readonly stop?: AbortSignal;
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
  readonly configuration: { readonly format: string; readonly path_prefix: string; readonly statuses: readonly string[]; readonly endpoint: string | null };
  readonly account_id: string | null;
  readonly caller_arn: string | null;
  readonly rows: number;
  readonly files: readonly DataFileInfo[];
  readonly partial: boolean;
  readonly users: {
    readonly seen: number;
    readonly exported: number;
    readonly vanished: number;
    readonly failed: readonly { readonly user_name: string; readonly user_id: string; readonly code: string }[];
  };
  readonly api: { readonly calls: Record<string, number>; readonly calls_total: number; readonly attempts: number; readonly retries: number; readonly throttles: number };
  readonly wall_time_ms: number;
  readonly resumes: number;
  /** Rows dropped because their access key id was observed again later (IAM changed during the snapshot). */
  readonly duplicates_dropped: number;
  /** Listings started over because IAM rejected a stored Marker. */
  readonly restarted_listings: number;
}

/** Takes up to `n` items from a shared iterator without closing it; throws AbortError once `stop` is aborted. */
async function* take<T>(it: AsyncIterator<T>, n: number, state: { done: boolean }, stop: AbortSignal | undefined): AsyncGenerator<T> {
  for (let i = 0; i < n; i++) {
    if (stop?.aborted) throw Object.assign(new Error('finalize stopped'), { name: 'AbortError' });
    const r = await it.next();
    if (r.done) {
      state.done = true;
      return;
    }
    yield r.value;
  }
}

/**
 * Finalizes the snapshot of `input.checkpoint` (its export must be complete):
 * merges the parts into data files in a publish folder of this run, writes the
 * manifest and _SUCCESS there, and records the folder in the checkpoint (phase
 * "publishing"). Redoable from the start until that checkpoint save.
 */
export async function finalizeSnapshot(store: Store, file: CheckpointFile, input: ManifestInput): Promise<Manifest> {
  const cp = input.checkpoint;
  const keys = snapshotKeys(cp.snapshotId);
  const dir = `${keys.staging}publish-${input.runId}/`;
  const scratch = `${keys.staging}merge-${input.runId}/`;
  // Leftovers of earlier attempts (other run ids) are not ours to keep.
  for (const key of await store.list(keys.staging)) {
    const folder = key.slice(keys.staging.length).split('/')[0] ?? '';
    if (/^(publish|merge)-/.test(folder)) await store.delete(key);
  }
  const ext = FORMAT_EXTENSION[cp.config.format];
  const stats = { duplicates: 0 };
  const merged = mergeRuns(store, keys.runs, cp.parts, { dirty: cp.dirtyUsers, scratch }, stats)[Symbol.asyncIterator]();
  const files: DataFileInfo[] = [];
  const state = { done: false };
  try {
    // One file per rowsPerFile rows; always at least one, so an empty account
    // still publishes a readable (header-only / zero-row) file.
    while (!state.done) {
      const name = `part-${String(files.length).padStart(5, '0')}${ext}`;
      const encoded = encodeDataFile(cp.config.format, take<AccessKeyRecord>(merged, input.rowsPerFile, state, input.stop));
      const { bytes, sha256 } = await store.upload(keyJoin(dir, name), encoded.chunks);
      const info = { file: name, rows: encoded.rows(), bytes, sha256 };
      if (info.rows === 0 && files.length > 0) {
        await store.delete(keyJoin(dir, name));
        break;
      }
      files.push(info);
      faultPoint('data-file-written', name);
      if (info.rows < input.rowsPerFile) break;
    }
  } finally {
    await merged.return?.(undefined);
  }
  await store.deletePrefix(scratch);
  const rows = files.reduce((a, f) => a + f.rows, 0);
  const manifest = buildManifest(cp, input, files, rows, stats.duplicates);
  await store.write(keyJoin(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
  faultPoint('manifest-written');
  await store.write(keyJoin(dir, SUCCESS_FILE), '');
  faultPoint('success-written');
  cp.phase = 'publishing';
  cp.publishing = { dir, files: [...files.map((f) => f.file), MANIFEST_FILE, SUCCESS_FILE] };
  await file.save(cp);
  faultPoint('publishing-saved');
  return manifest;
}

/**
 * Promotes the finalized folder into access_keys/, points _LATEST at it (if it is
 * the newest), and removes the staging. Idempotent: after a crash at any step, a
 * rerun completes the same publication.
 */
export async function promoteSnapshot(store: Store, cp: Checkpoint): Promise<string> {
  const keys = snapshotKeys(cp.snapshotId);
  const publishing = cp.publishing;
  if (!publishing) throw new ExportError('INTERNAL', `snapshot ${cp.snapshotId} has no finalized files to publish`);
  if (!(await isPublished(store, cp.snapshotId))) {
    faultPoint('before-promote');
    await store.promote(publishing.dir, keys.published, publishing.files);
    faultPoint('after-promote');
  }
  await updateLatest(store, cp.snapshotId);
  faultPoint('latest-written');
  await removeStaging(store, keys);
  faultPoint('staging-removed');
  return store.describe(keys.published.replace(/\/$/, ''));
}

/**
 * access_keys/_LATEST names the newest published snapshot: written atomically
 * after its _SUCCESS, and never moved back to an older one (a late publish of an
 * older snapshot leaves it alone).
 */
export async function updateLatest(store: Store, id: string): Promise<void> {
  const key = `${DATASET_DIR}/${LATEST_FILE}`;
  const current = await store.read(key);
  const named = current?.body.toString('utf8').trim();
  if (named && SNAPSHOT_ID.test(named) && named >= id) return;
  await store.write(key, `${id}\n`);
}

/** The manifest of a published snapshot, or undefined. */
export async function readManifest(store: Store, id: string): Promise<Manifest | undefined> {
  const found = await store.read(`${snapshotKeys(id).published}${MANIFEST_FILE}`);
  return found ? (JSON.parse(found.body.toString('utf8')) as Manifest) : undefined;
}

function buildManifest(cp: Checkpoint, input: ManifestInput, files: DataFileInfo[], rows: number, duplicates: number): Manifest {
  const c = cp.counters;
  const failed = cp.failedUsers.map((f) => ({ user_name: f.user.userName, user_id: f.user.userId, code: f.code }));
  const callsTotal = Object.values(c.calls).reduce((a, b) => a + b, 0);
  return {
    schema: { name: SCHEMA_NAME, version: SCHEMA_VERSION },
    snapshot_id: cp.snapshotId,
    snapshot_time: cp.snapshotTime.toISOString(),
    published_at: new Date().toISOString(),
    tool: { name: 'iam-key-export', version: input.toolVersion },
    configuration: { format: cp.config.format, path_prefix: cp.config.pathPrefix, statuses: cp.config.statuses, endpoint: cp.config.endpoint },
    account_id: cp.accountId,
    caller_arn: cp.callerArn,
    rows,
    files,
    partial: failed.length > 0,
    users: { seen: c.usersExported + c.usersVanished + failed.length, exported: c.usersExported, vanished: c.usersVanished, failed },
    api: { calls: c.calls, calls_total: callsTotal, attempts: c.attempts, retries: Math.max(0, c.attempts - callsTotal), throttles: c.throttles },
    wall_time_ms: input.wallMs,
    resumes: cp.resumes,
    duplicates_dropped: duplicates,
    restarted_listings: c.restartedListings,
  };
}
