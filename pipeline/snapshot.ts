/**
 * Snapshot layout, staging and publication (DESIGN §5).
 *
 *   <out>/_staging/<id>/checkpoint.json      state (0600)
 *   <out>/_staging/<id>/runs/run-NNNNNN.ndjson  committed sorted parts (0600)
 *   <out>/_staging/<id>/publish/              the snapshot being finalized
 *   <out>/access_keys/snapshot_id=<id>/       published: part-NNNNN.<ext>, _manifest.json, _SUCCESS
 *
 * Finalize merges the parts into the data files, writes the manifest, then
 * _SUCCESS, then renames publish/ into access_keys/ in one step, so a reader that
 * globs access_keys/*\/ never sees half a snapshot. Every step can be redone: a
 * rerun after a crash anywhere in finalize finishes the same publication, once.
 */
import { access, chmod, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CHECKPOINT_FILE, type Checkpoint } from './checkpoint.ts';
import { ExportError } from './errors.ts';
import { fsyncDir, PRIVATE_DIR_MODE, writeFileAtomic } from './fsutil.ts';
import { mergeRuns } from './runs.ts';
import { SCHEMA_NAME, SCHEMA_VERSION, type AccessKeyRecord } from './schema.ts';
import { FORMAT_EXTENSION, writeDataFile, type DataFileInfo } from './sinks/index.ts';

export const DATASET_DIR = 'access_keys';
export const STAGING_DIR = '_staging';
export const MANIFEST_FILE = '_manifest.json';
export const SUCCESS_FILE = '_SUCCESS';

export interface SnapshotPaths {
  readonly out: string;
  readonly datasetDir: string;
  readonly stagingRoot: string;
  readonly stagingDir: string;
  readonly runsDir: string;
  readonly publishDir: string;
  readonly checkpointFile: string;
  readonly publishedDir: string;
}

/** Where everything of snapshot `id` lives under `out`. */
export function snapshotPaths(out: string, id: string): SnapshotPaths {
  const stagingRoot = join(out, STAGING_DIR);
  const stagingDir = join(stagingRoot, id);
  return {
    out,
    datasetDir: join(out, DATASET_DIR),
    stagingRoot,
    stagingDir,
    runsDir: join(stagingDir, 'runs'),
    publishDir: join(stagingDir, 'publish'),
    checkpointFile: join(stagingDir, CHECKPOINT_FILE),
    publishedDir: join(out, DATASET_DIR, `snapshot_id=${id}`),
  };
}

/** The snapshot id of a start time: YYYYMMDDTHHMMSSZ (UTC). */
export function snapshotIdOf(time: Date): string {
  return time.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** True when snapshot `id` is already published under `out`. */
export function isPublished(paths: SnapshotPaths): Promise<boolean> {
  return exists(join(paths.publishedDir, SUCCESS_FILE));
}

/**
 * The staging directories under `out`, newest first: those with a checkpoint are
 * unfinished snapshots; one without is what a crash left between creating the
 * directory and its first checkpoint (it holds no committed data).
 */
export async function listStaging(out: string): Promise<{ id: string; hasCheckpoint: boolean }[]> {
  let entries: string[];
  try {
    entries = await readdir(join(out, STAGING_DIR));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const ids = entries.filter((e) => /^\d{8}T\d{6}Z$/.test(e)).sort().reverse();
  return Promise.all(ids.map(async (id) => ({ id, hasCheckpoint: await exists(snapshotPaths(out, id).checkpointFile) })));
}

/** Removes a staging directory and makes the removal durable. */
export async function removeStaging(paths: SnapshotPaths): Promise<void> {
  await rm(paths.stagingDir, { recursive: true, force: true });
  await fsyncDir(paths.stagingRoot).catch(() => undefined);
}

/** Creates the staging directories of a new snapshot (0700). */
export async function createStaging(paths: SnapshotPaths): Promise<void> {
  await mkdir(paths.runsDir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await fsyncDir(paths.stagingRoot);
}

export interface ManifestInput {
  readonly checkpoint: Checkpoint;
  readonly rowsPerFile: number;
  readonly toolVersion: string;
  /** Wall time of every run, this one included. */
  readonly wallMs: number;
}

export interface PublishResult {
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
  readonly duplicates_dropped: number;
}

/** Takes up to `n` items from a shared iterator without closing it. */
async function* take<T>(it: AsyncIterator<T>, n: number, state: { done: boolean }): AsyncGenerator<T> {
  for (let i = 0; i < n; i++) {
    const r = await it.next();
    if (r.done) {
      state.done = true;
      return;
    }
    yield r.value;
  }
}

/**
 * Finalizes and publishes the snapshot of `input.checkpoint` (its export must be
 * complete). Idempotent: it starts from an empty publish/ every time.
 */
export async function publishSnapshot(paths: SnapshotPaths, input: ManifestInput): Promise<PublishResult> {
  const cp = input.checkpoint;
  if (await exists(paths.publishedDir)) {
    throw new ExportError('SNAPSHOT_PUBLISHED', `${paths.publishedDir} already exists; refusing to publish snapshot ${cp.snapshotId} twice`, { file: paths.publishedDir });
  }
  await rm(paths.publishDir, { recursive: true, force: true });
  await mkdir(paths.publishDir, { mode: PRIVATE_DIR_MODE });

  const ext = FORMAT_EXTENSION[cp.config.format];
  const stats = { duplicates: 0 };
  const merged = mergeRuns(paths.runsDir, cp.parts, stats)[Symbol.asyncIterator]();
  const files: DataFileInfo[] = [];
  const state = { done: false };
  try {
    // One file per rowsPerFile rows; always at least one, so an empty account
    // still publishes a readable (header-only / zero-row) file.
    while (!state.done) {
      const name = `part-${String(files.length).padStart(5, '0')}${ext}`;
      const info = await writeDataFile(cp.config.format, join(paths.publishDir, name), take<AccessKeyRecord>(merged, input.rowsPerFile, state));
      if (info.rows === 0 && files.length > 0) {
        await rm(join(paths.publishDir, name), { force: true });
        break;
      }
      files.push(info);
      if (info.rows < input.rowsPerFile) break;
    }
  } finally {
    await merged.return?.(undefined);
  }
  const rows = files.reduce((a, f) => a + f.rows, 0);
  const manifest = buildManifest(cp, input, files, rows, stats.duplicates);
  await writeFileAtomic(join(paths.publishDir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
  await writeFileAtomic(join(paths.publishDir, SUCCESS_FILE), '');
  // Readers of the dataset are usually not the exporting user: the published folder
  // is readable like its files; staging stays private.
  await chmod(paths.publishDir, 0o755);
  await mkdir(paths.datasetDir, { recursive: true });
  await rename(paths.publishDir, paths.publishedDir);
  await fsyncDir(paths.datasetDir);
  await removeStaging(paths);
  return { dir: paths.publishedDir, files, rows, manifest };
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
    rows,
    files,
    partial: failed.length > 0,
    users: { seen: c.usersExported + c.usersVanished + failed.length, exported: c.usersExported, vanished: c.usersVanished, failed },
    api: { calls: c.calls, calls_total: callsTotal, attempts: c.attempts, retries: Math.max(0, c.attempts - callsTotal), throttles: c.throttles },
    wall_time_ms: input.wallMs,
    resumes: cp.resumes,
    duplicates_dropped: duplicates,
  };
}
