/**
 * The checkpoint: a pure state machine (apply STATE events, say what a rerun must
 * do, serialize) and a small durable file in the store. No streams here.
 *
 * Users are identified by their UserId, which survives renames. The checkpoint
 * holds the ListUsers resume token and every user the snapshot knows, in exactly
 * one of these sets:
 *   pending      listed, nothing of it committed yet (paged from the start)
 *   inProgress   some pages committed; resumes at its token
 *   missing      IAM said NoSuchEntity: deleted, or renamed. A ListUsers scan
 *                decides once the listing is done (found: paged again; else vanished)
 *   failed       a non-retryable error; a rerun of the export retries it
 *   finished     every key committed (or vanished): never paged again, however
 *                it is renamed or re-listed
 * and `dirty`: users whose keys may have been committed twice (their listing was
 * restarted after pages of it were committed); the merge keeps one row per key.
 *
 * Its size grows with the users of the account (IAM allows 5,000; ~25 bytes each),
 * not with the keys.
 */
import { createHash } from 'node:crypto';
import { ExportError } from './errors.ts';
import type { StateEvent, UserRef } from './items.ts';
import { PreconditionFailed, type Store } from './store/store.ts';

/** Version 1 (until 0.1) tracked users by name and pages by position. */
export const CHECKPOINT_VERSION = 2;
export const CHECKPOINT_FILE = 'checkpoint.json';

/** The options that shape the data; a resume must have the same. */
export interface DataConfig {
  readonly format: 'csv' | 'parquet';
  readonly pathPrefix: string;
  readonly statuses: readonly string[];
  /** The IAM endpoint given by flag or environment; null = the SDK's default for the partition. */
  readonly endpoint: string | null;
  /** Version of the record schema the files are written in. */
  readonly schemaVersion: number;
}

/** A committed staging part (a sorted run of records). */
export interface PartInfo {
  readonly file: string;
  readonly rows: number;
  readonly sha256: string;
}

/** Counters summed over every run of the snapshot. */
export interface Counters {
  usersExported: number;
  usersVanished: number;
  rowsWritten: number;
  /** Listings started over because IAM rejected a stored Marker. */
  restartedListings: number;
  /** Logical API calls per operation. */
  calls: Record<string, number>;
  /** HTTP attempts, retries included. */
  attempts: number;
  throttles: number;
  /** Wall time of the runs. */
  wallMs: number;
}

const NUMERIC_COUNTERS = ['usersExported', 'usersVanished', 'rowsWritten', 'restartedListings', 'attempts', 'throttles', 'wallMs'] as const;

export interface UserResume {
  readonly user: UserRef;
  /** Paginator NextToken to resume at; null = from the first key. */
  readonly token: string | null;
}

export interface FailedUser extends UserResume {
  readonly code: string;
}

/** The files of a finalized snapshot waiting to be promoted (phase 'publishing'). */
export interface PublishingState {
  /** Staging folder (store key, ends with '/') holding exactly `files`. */
  readonly dir: string;
  /** File names in promotion order, the gate file (_SUCCESS) last. */
  readonly files: readonly string[];
}

export type Phase = 'export' | 'finalize' | 'publishing';

/** The serialized checkpoint (checkpoint.json). */
export interface CheckpointData {
  readonly version: number;
  readonly snapshotId: string;
  readonly snapshotTime: string;
  readonly fingerprint: string;
  readonly config: DataConfig;
  readonly accountId: string | null;
  readonly callerArn: string | null;
  readonly phase: Phase;
  /** Durable commits so far; 0 = the snapshot holds nothing yet and is not adopted by a rerun. */
  readonly commits: number;
  /** The ListUsers pass: its resume token, whether it reached the end, and whether a full scan since found nobody unknown. */
  readonly listing: { readonly token: string | null; readonly done: boolean; readonly verified: boolean };
  readonly users: {
    readonly finished: readonly string[];
    readonly pending: readonly UserRef[];
    readonly inProgress: readonly UserResume[];
    readonly missing: readonly UserResume[];
    readonly failed: readonly FailedUser[];
    readonly dirty: readonly string[];
  };
  readonly parts: readonly PartInfo[];
  readonly publishing: PublishingState | null;
  readonly counters: Counters;
  readonly resumes: number;
}

/** A stable hash of the options that shape the data. */
export function fingerprintOf(config: DataConfig): string {
  const canonical = JSON.stringify([config.format, config.pathPrefix, [...config.statuses].sort(), config.endpoint, config.schemaVersion]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

/** What a (re)run must do about users before and while listing. */
export interface ResumePlan {
  /** ListUsers StartingToken; null = from the first page. */
  readonly listToken: string | null;
  /** True when nothing is left to list. */
  readonly listingDone: boolean;
  /** True when a full scan after the listing found no user the snapshot does not know. */
  readonly listingVerified: boolean;
  /** Every user the snapshot knows, by UserId: the lister must not start them again. */
  readonly known: ReadonlySet<string>;
  /** Users to page directly: in progress (from their token) or pending (from the start). */
  readonly resume: readonly UserResume[];
  /** Users IAM said NoSuchEntity for, to look for under another name. */
  readonly missing: readonly UserResume[];
  /** Users exported in earlier runs of this snapshot (no user at all yet: failures may be systemic). */
  readonly usersExported: number;
}

/** The checkpoint's state machine. */
export class Checkpoint {
  readonly snapshotId: string;
  readonly snapshotTime: Date;
  readonly config: DataConfig;
  readonly fingerprint: string;
  phase: Phase = 'export';
  accountId: string | null = null;
  callerArn: string | null = null;
  resumes = 0;
  commits = 0;
  publishing: PublishingState | null = null;
  readonly counters: Counters;
  readonly parts: PartInfo[] = [];

  #listToken: string | null = null;
  #listingDone = false;
  #listingVerified = false;
  readonly #finished = new Set<string>();
  readonly #pending = new Map<string, UserRef>();
  readonly #inProgress = new Map<string, UserResume>();
  readonly #missing = new Map<string, UserResume>();
  readonly #failed = new Map<string, FailedUser>();
  readonly #dirty = new Set<string>();

  constructor(snapshotId: string, snapshotTime: Date, config: DataConfig) {
    this.snapshotId = snapshotId;
    this.snapshotTime = snapshotTime;
    this.config = config;
    this.fingerprint = fingerprintOf(config);
    this.counters = { usersExported: 0, usersVanished: 0, rowsWritten: 0, restartedListings: 0, calls: {}, attempts: 0, throttles: 0, wallMs: 0 };
  }

  /** True when `userId` is in any of the sets. */
  knows(userId: string): boolean {
    return this.#finished.has(userId) || this.#pending.has(userId) || this.#inProgress.has(userId) || this.#missing.has(userId) || this.#failed.has(userId);
  }

  /** Applies one watermark. Only call it once the records before it are durable. */
  apply(event: StateEvent): void {
    switch (event.kind) {
      case 'users-page':
        this.#listToken = event.nextToken;
        this.#listingDone = event.nextToken === null;
        for (const u of event.users) {
          if (this.accountId === null) this.accountId = u.accountId;
          if (!this.knows(u.userId)) this.#pending.set(u.userId, u);
          else if (this.#pending.has(u.userId)) this.#pending.set(u.userId, u); // renamed before it started
        }
        return;
      case 'users-scanned':
        for (const u of event.users) if (!this.knows(u.userId)) this.#pending.set(u.userId, u);
        if (event.complete) this.#listingVerified = true;
        return;
      case 'users-restarted':
        this.#listToken = null;
        this.#listingDone = false;
        this.#listingVerified = false;
        this.counters.restartedListings++;
        return;
      case 'user-page':
        this.#forget(event.user.userId);
        this.#inProgress.set(event.user.userId, { user: event.user, token: event.nextToken });
        return;
      case 'user-done':
        this.#forget(event.user.userId);
        this.#finished.add(event.user.userId);
        this.counters.usersExported++;
        return;
      case 'user-restarted': {
        if (this.#committedSomeOf(event.user.userId)) this.#dirty.add(event.user.userId);
        this.#forget(event.user.userId);
        this.#pending.set(event.user.userId, event.user);
        this.counters.restartedListings++;
        return;
      }
      case 'user-missing':
        if (this.#committedSomeOf(event.user.userId)) this.#dirty.add(event.user.userId);
        this.#forget(event.user.userId);
        this.#missing.set(event.user.userId, { user: event.user, token: event.token });
        return;
      case 'user-found':
        this.#forget(event.user.userId);
        this.#pending.set(event.user.userId, event.user);
        return;
      case 'user-vanished':
        this.#forget(event.user.userId);
        this.#finished.add(event.user.userId);
        this.counters.usersVanished++;
        return;
      case 'user-failed':
        this.#forget(event.user.userId);
        this.#failed.set(event.user.userId, { user: event.user, token: event.token, code: event.code });
        return;
    }
  }

  /** True when pages of the user were committed (its token moved), or it was dirty already. */
  #committedSomeOf(userId: string): boolean {
    if (this.#dirty.has(userId)) return true;
    const entry = this.#inProgress.get(userId) ?? this.#failed.get(userId) ?? this.#missing.get(userId);
    return entry !== undefined && entry.token !== null;
  }

  #forget(userId: string): void {
    this.#pending.delete(userId);
    this.#inProgress.delete(userId);
    this.#missing.delete(userId);
    this.#failed.delete(userId);
  }

  /** Records a committed part. */
  addPart(part: PartInfo): void {
    this.parts.push(part);
    this.counters.rowsWritten += part.rows;
  }

  /**
   * True when every known user is finished or failed, nothing is left to list, and
   * a full scan after the listing found nobody the snapshot does not know.
   */
  get exportComplete(): boolean {
    return this.#listingDone && this.#listingVerified && this.#pending.size === 0 && this.#inProgress.size === 0 && this.#missing.size === 0;
  }

  /** Users that failed with a non-retryable error, in name order. */
  get failedUsers(): FailedUser[] {
    return [...this.#failed.values()].sort((a, b) => (a.user.userName < b.user.userName ? -1 : a.user.userName > b.user.userName ? 1 : 0));
  }

  /** Users whose rows may have been committed more than once. */
  get dirtyUsers(): ReadonlySet<string> {
    return this.#dirty;
  }

  /** Users known to the snapshot (every set). */
  get usersKnown(): number {
    return this.#finished.size + this.#pending.size + this.#inProgress.size + this.#missing.size + this.#failed.size;
  }

  /** What a rerun must do: list from the token, skip known users, resume the others. */
  resumePlan(): ResumePlan {
    const known = new Set<string>([...this.#finished, ...this.#pending.keys(), ...this.#inProgress.keys(), ...this.#missing.keys(), ...this.#failed.keys()]);
    const resume: UserResume[] = [...this.#inProgress.values(), ...[...this.#pending.values()].map((user) => ({ user, token: null }))];
    return { listToken: this.#listToken, listingDone: this.#listingDone, listingVerified: this.#listingVerified, known, resume, missing: [...this.#missing.values()], usersExported: this.counters.usersExported };
  }

  /**
   * Prepares the state for a rerun. During the export, failed users become in
   * progress again (they are retried). Once the export is over (finalize and
   * publishing), nothing changes: a rerun publishes exactly what finalize began with.
   */
  beginResume(): void {
    this.resumes++;
    if (this.phase !== 'export') return;
    for (const [id, f] of this.#failed) {
      if (f.token === null) this.#pending.set(id, f.user);
      else this.#inProgress.set(id, { user: f.user, token: f.token });
    }
    this.#failed.clear();
  }

  /** Serializes the state (no secrets: names, ids, tokens and counts only). */
  toJSON(): CheckpointData {
    return {
      version: CHECKPOINT_VERSION,
      snapshotId: this.snapshotId,
      snapshotTime: this.snapshotTime.toISOString(),
      fingerprint: this.fingerprint,
      config: this.config,
      accountId: this.accountId,
      callerArn: this.callerArn,
      phase: this.phase,
      commits: this.commits,
      listing: { token: this.#listToken, done: this.#listingDone, verified: this.#listingVerified },
      users: {
        finished: [...this.#finished].sort(),
        pending: [...this.#pending.values()],
        inProgress: [...this.#inProgress.values()],
        missing: [...this.#missing.values()],
        failed: this.failedUsers,
        dirty: [...this.#dirty].sort(),
      },
      parts: [...this.parts],
      publishing: this.publishing,
      counters: { ...this.counters, calls: { ...this.counters.calls } },
      resumes: this.resumes,
    };
  }

  /** Rebuilds the state machine from its serialized form; throws on anything inconsistent. */
  static fromJSON(data: unknown, file: string): Checkpoint {
    const corrupt = (why: string) => new ExportError('CHECKPOINT_CORRUPT', `checkpoint ${file} is corrupt (${why}); fix or remove it, or rerun with --fresh to discard the unfinished snapshot`, { file });
    const d = data as CheckpointData;
    if (typeof d !== 'object' || d === null || Array.isArray(d)) throw corrupt('not an object');
    if (!Number.isSafeInteger(d.version)) throw corrupt('no version');
    if (d.version !== CHECKPOINT_VERSION) {
      throw new ExportError(
        'CHECKPOINT_MISMATCH',
        `checkpoint ${file} was written by another version of iam-key-export (checkpoint format ${String(d.version)}, this one reads ${CHECKPOINT_VERSION}); finish it with that version, or rerun with --fresh to discard it`,
        { file },
      );
    }
    if (typeof d.snapshotId !== 'string' || !/^\d{8}T\d{6}Z$/.test(d.snapshotId)) throw corrupt('bad snapshotId');
    const time = new Date(d.snapshotTime);
    if (Number.isNaN(time.getTime())) throw corrupt('bad snapshotTime');
    if (typeof d.config !== 'object' || d.config === null || typeof d.users !== 'object' || d.users === null || typeof d.listing !== 'object' || d.listing === null) {
      throw corrupt('missing config, listing or users');
    }
    const lists = [d.parts, d.users.finished, d.users.pending, d.users.inProgress, d.users.missing, d.users.failed, d.users.dirty];
    if (!lists.every(Array.isArray)) throw corrupt('missing lists');
    const cp = new Checkpoint(d.snapshotId, time, d.config);
    if (cp.fingerprint !== d.fingerprint) throw corrupt('fingerprint does not match its configuration');
    if (d.phase !== 'export' && d.phase !== 'finalize' && d.phase !== 'publishing') throw corrupt('bad phase');
    cp.phase = d.phase;
    cp.accountId = typeof d.accountId === 'string' ? d.accountId : null;
    cp.callerArn = typeof d.callerArn === 'string' ? d.callerArn : null;
    cp.resumes = Number.isSafeInteger(d.resumes) ? d.resumes : 0;
    if (!Number.isSafeInteger(d.commits) || d.commits < 0) throw corrupt('bad commits');
    cp.commits = d.commits;
    for (const k of NUMERIC_COUNTERS) {
      const v = d.counters?.[k];
      if (typeof v !== 'number' || !Number.isFinite(v)) throw corrupt(`bad counter ${k}`);
      cp.counters[k] = v;
    }
    for (const [op, n] of Object.entries(d.counters?.calls ?? {})) {
      if (typeof n !== 'number' || !Number.isFinite(n)) throw corrupt(`bad call counter ${op}`);
      cp.counters.calls[op] = n;
    }
    for (const p of d.parts) {
      if (typeof p?.file !== 'string' || !PART_NAME.test(p.file) || !Number.isSafeInteger(p.rows) || typeof p.sha256 !== 'string') throw corrupt('bad part entry');
      cp.parts.push({ file: p.file, rows: p.rows, sha256: p.sha256 });
    }
    if (d.publishing !== null && d.publishing !== undefined) {
      const p = d.publishing;
      if (typeof p.dir !== 'string' || !Array.isArray(p.files) || !p.files.every((f) => typeof f === 'string')) throw corrupt('bad publishing entry');
      cp.publishing = { dir: p.dir, files: [...p.files] };
    }
    if (cp.phase === 'publishing' && cp.publishing === null) throw corrupt('publishing without files');
    cp.#listToken = typeof d.listing.token === 'string' ? d.listing.token : null;
    cp.#listingDone = d.listing.done === true;
    cp.#listingVerified = d.listing.verified === true;
    for (const id of d.users.finished) cp.#finished.add(checkId(id, corrupt));
    for (const id of d.users.dirty) cp.#dirty.add(checkId(id, corrupt));
    for (const u of d.users.pending) cp.#pending.set(checkUser(u, corrupt).userId, u);
    for (const r of d.users.inProgress) cp.#inProgress.set(checkResume(r, corrupt).userId, { user: r.user, token: r.token ?? null });
    for (const r of d.users.missing) cp.#missing.set(checkResume(r, corrupt).userId, { user: r.user, token: r.token ?? null });
    for (const f of d.users.failed) cp.#failed.set(checkResume(f, corrupt).userId, { user: f.user, token: f.token ?? null, code: String(f.code) });
    return cp;
  }
}

/** Staged part names: the writing run's id, then its sequence number. */
export const PART_NAME = /^run-[0-9a-f]{8}-\d{6}\.ndjson$/;

function checkId(id: unknown, corrupt: (why: string) => ExportError): string {
  if (typeof id !== 'string' || id === '') throw corrupt('bad user id');
  return id;
}

function checkUser(u: UserRef, corrupt: (why: string) => ExportError): UserRef {
  if (typeof u?.userName !== 'string' || typeof u.userId !== 'string' || typeof u.accountId !== 'string' || typeof u.arn !== 'string' || typeof u.path !== 'string') {
    throw corrupt('bad user entry');
  }
  if (u.createDate !== null && typeof u.createDate !== 'string') throw corrupt('bad user entry');
  return u;
}

function checkResume(r: UserResume, corrupt: (why: string) => ExportError): UserRef {
  const u = checkUser(r?.user, corrupt);
  if (r.token !== null && r.token !== undefined && typeof r.token !== 'string') throw corrupt('bad user token');
  return u;
}

/**
 * checkpoint.json in the store, with the version it was last read or written at.
 * Every save is a compare-and-swap on that version: if anything else wrote the
 * checkpoint since (a run that took over our lease), the save fails with
 * LEASE_LOST and changes nothing. That is the fence that keeps a paused,
 * overtaken run from committing.
 */
export class CheckpointFile {
  readonly #store: Store;
  readonly key: string;
  #version: string;

  private constructor(store: Store, key: string, version: string) {
    this.#store = store;
    this.key = key;
    this.#version = version;
  }

  /** Reads the checkpoint at `key`; undefined when there is none. */
  static async load(store: Store, key: string): Promise<{ checkpoint: Checkpoint; file: CheckpointFile } | undefined> {
    const where = store.describe(key);
    let found;
    try {
      found = await store.read(key);
    } catch (err) {
      // The store named the cause already (an S3 permission, a missing bucket): keep its line.
      if (err instanceof ExportError) throw err;
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).name ?? 'error';
      throw new ExportError('CHECKPOINT_CORRUPT', `checkpoint ${where} cannot be read (${code}); fix its permissions, or rerun with --fresh to discard the unfinished snapshot`, { file: where }, { cause: err });
    }
    if (!found) return undefined;
    let data: unknown;
    try {
      data = JSON.parse(found.body.toString('utf8'));
    } catch (err) {
      throw new ExportError('CHECKPOINT_CORRUPT', `checkpoint ${where} is corrupt (not JSON); rerun with --fresh to discard the unfinished snapshot`, { file: where }, { cause: err });
    }
    return { checkpoint: Checkpoint.fromJSON(data, where), file: new CheckpointFile(store, key, found.version) };
  }

  /** Creates the checkpoint of a new snapshot; fails if one exists. */
  static async create(store: Store, key: string, checkpoint: Checkpoint): Promise<CheckpointFile> {
    try {
      return new CheckpointFile(store, key, await store.write(key, serialize(checkpoint), { ifNoneMatch: true }));
    } catch (err) {
      if (err instanceof PreconditionFailed) throw lostLease(store.describe(key));
      throw err;
    }
  }

  /** Saves `checkpoint` if nothing else wrote it since our last read or write. */
  async save(checkpoint: Checkpoint): Promise<void> {
    try {
      this.#version = await this.#store.write(this.key, serialize(checkpoint), { ifMatch: this.#version });
    } catch (err) {
      if (err instanceof PreconditionFailed) throw lostLease(this.#store.describe(this.key));
      throw err;
    }
  }
}

function serialize(checkpoint: Checkpoint): string {
  return JSON.stringify(checkpoint.toJSON(), null, 1);
}

function lostLease(where: string): ExportError {
  return new ExportError('LEASE_LOST', `another run took over this snapshot (${where} changed under this run); this run stopped without committing more`, { file: where });
}
