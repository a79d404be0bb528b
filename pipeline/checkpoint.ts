/**
 * The checkpoint: a pure state machine (apply STATE events, say what a rerun must
 * resume, serialize) and a small durable store. No streams here.
 *
 * Users are tracked per ListUsers page: a page stays until every user in it is
 * finished (or failed), then the ListUsers resume token moves past it and its
 * names are forgotten. So the checkpoint holds the ListUsers token, the users
 * finished since that token, the StartingToken of every user in progress, the
 * failed users, the committed parts and the counters: its size is bounded by the
 * concurrency, not by the number of users.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ExportError } from './errors.ts';
import { PRIVATE_FILE_MODE, writeFileAtomic } from './fsutil.ts';
import type { StateEvent, UserRef } from './items.ts';

export const CHECKPOINT_VERSION = 1;
export const CHECKPOINT_FILE = 'checkpoint.json';

/** The options that shape the data; a resume must have the same. */
export interface DataConfig {
  readonly format: 'csv' | 'parquet';
  readonly pathPrefix: string;
  readonly statuses: readonly string[];
  /** The endpoint given by flag or environment; null = the SDK's default for the partition. */
  readonly endpoint: string | null;
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
  /** Logical API calls per operation. */
  calls: Record<string, number>;
  /** HTTP attempts, retries included. */
  attempts: number;
  throttles: number;
  /** Wall time of the runs. */
  wallMs: number;
}

const NUMERIC_COUNTERS = ['usersExported', 'usersVanished', 'rowsWritten', 'attempts', 'throttles', 'wallMs'] as const;

export interface UserResume {
  readonly user: UserRef;
  readonly token: string | null;
}

export interface FailedUser extends UserResume {
  readonly code: string;
}

/** The serialized checkpoint (checkpoint.json). */
export interface CheckpointData {
  readonly version: number;
  readonly snapshotId: string;
  readonly snapshotTime: string;
  readonly fingerprint: string;
  readonly config: DataConfig;
  readonly accountId: string | null;
  readonly phase: 'export' | 'finalize';
  readonly users: {
    readonly listToken: string | null;
    readonly listingDone: boolean;
    readonly finished: readonly string[];
    readonly inProgress: readonly UserResume[];
    readonly failed: readonly FailedUser[];
  };
  readonly parts: readonly PartInfo[];
  readonly counters: Counters;
  readonly resumes: number;
}

/** A stable hash of the options that shape the data. */
export function fingerprintOf(config: DataConfig): string {
  const canonical = JSON.stringify([config.format, config.pathPrefix, [...config.statuses].sort(), config.endpoint]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

interface ListedPage {
  readonly token: string | null;
  readonly nextToken: string | null;
  readonly users: readonly string[];
  readonly pending: Set<string>;
}

/** What a (re)run must do about users before and while listing. */
export interface ResumePlan {
  /** ListUsers StartingToken; null = from the first page. */
  readonly listToken: string | null;
  /** True when nothing is left to list. */
  readonly listingDone: boolean;
  /** Names the lister must not start (finished, or resumed directly below). */
  readonly skip: ReadonlySet<string>;
  /** Users to page directly, from their token: in progress or failed last time. */
  readonly resume: readonly UserResume[];
}

/** The checkpoint's state machine. */
export class Checkpoint {
  readonly snapshotId: string;
  readonly snapshotTime: Date;
  readonly config: DataConfig;
  readonly fingerprint: string;
  phase: 'export' | 'finalize' = 'export';
  accountId: string | null = null;
  resumes = 0;
  readonly counters: Counters;
  readonly parts: PartInfo[] = [];

  #pages: ListedPage[] = [];
  #nextListToken: string | null = null;
  #listingDone = false;
  #finished = new Set<string>();
  #inProgress = new Map<string, UserResume>();
  #failed = new Map<string, FailedUser>();

  constructor(snapshotId: string, snapshotTime: Date, config: DataConfig) {
    this.snapshotId = snapshotId;
    this.snapshotTime = snapshotTime;
    this.config = config;
    this.fingerprint = fingerprintOf(config);
    this.counters = { usersExported: 0, usersVanished: 0, rowsWritten: 0, calls: {}, attempts: 0, throttles: 0, wallMs: 0 };
  }

  /** Applies one watermark. Only call it once the records before it are durable. */
  apply(event: StateEvent): void {
    switch (event.kind) {
      case 'users-page': {
        const names = event.users.map((u) => u.userName);
        // Users finished before a resume are not pending; failed ones are kept in #failed.
        const pending = new Set(names.filter((n) => !this.#finished.has(n) && !this.#failed.has(n)));
        this.#pages.push({ token: event.token, nextToken: event.nextToken, users: names, pending });
        this.#nextListToken = event.nextToken;
        if (event.nextToken === null) this.#listingDone = true;
        for (const u of event.users) this.#noteAccount(u);
        this.#compact();
        return;
      }
      case 'user-page':
        this.#inProgress.set(event.user.userName, { user: event.user, token: event.nextToken });
        return;
      case 'user-done':
        this.counters.usersExported++;
        this.#resolve(event.user.userName, true);
        return;
      case 'user-vanished':
        this.counters.usersVanished++;
        this.#resolve(event.user.userName, true);
        return;
      case 'user-failed':
        this.#resolve(event.user.userName, false);
        this.#failed.set(event.user.userName, { user: event.user, token: event.token, code: event.code });
        return;
    }
  }

  /** Records a committed part. */
  addPart(part: PartInfo): void {
    this.parts.push(part);
    this.counters.rowsWritten += part.rows;
  }

  /** True when every listed user is finished or failed and nothing is left to list. */
  get exportComplete(): boolean {
    return this.#listingDone && this.#pages.length === 0 && this.#inProgress.size === 0;
  }

  /** Users that failed with a non-retryable error, in name order. */
  get failedUsers(): FailedUser[] {
    return [...this.#failed.values()].sort((a, b) => (a.user.userName < b.user.userName ? -1 : 1));
  }

  /** What a rerun must do: re-list from the token, skip finished users, resume the others. */
  resumePlan(): ResumePlan {
    const resume = [...this.#inProgress.values(), ...this.#failed.values()].map(({ user, token }) => ({ user, token }));
    const skip = new Set<string>([...this.#finished, ...resume.map((r) => r.user.userName)]);
    return { listToken: this.#listToken(), listingDone: this.#listingDone && this.#pages.length === 0, skip, resume };
  }

  /**
   * Prepares the state for a rerun: failed users become in-progress again (they are
   * retried), and re-listed pages start from the resume token.
   */
  beginResume(): void {
    this.resumes++;
    for (const [name, f] of this.#failed) this.#inProgress.set(name, { user: f.user, token: f.token });
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
      phase: this.phase,
      users: {
        listToken: this.#listToken(),
        listingDone: this.#listingDone && this.#pages.length === 0,
        finished: [...this.#finished].sort(),
        inProgress: [...this.#inProgress.values()],
        failed: this.failedUsers,
      },
      parts: [...this.parts],
      counters: { ...this.counters, calls: { ...this.counters.calls } },
      resumes: this.resumes,
    };
  }

  /** Rebuilds the state machine from its serialized form; throws CHECKPOINT_CORRUPT on anything inconsistent. */
  static fromJSON(data: unknown, file: string): Checkpoint {
    const corrupt = (why: string) => new ExportError('CHECKPOINT_CORRUPT', `checkpoint ${file} is corrupt (${why}); fix or remove it, or rerun with --fresh to discard the unfinished snapshot`, { file });
    const d = data as CheckpointData;
    if (typeof d !== 'object' || d === null) throw corrupt('not an object');
    if (d.version !== CHECKPOINT_VERSION) throw corrupt(`version ${String(d.version)}, expected ${CHECKPOINT_VERSION}`);
    if (typeof d.snapshotId !== 'string' || !/^\d{8}T\d{6}Z$/.test(d.snapshotId)) throw corrupt('bad snapshotId');
    const time = new Date(d.snapshotTime);
    if (Number.isNaN(time.getTime())) throw corrupt('bad snapshotTime');
    if (typeof d.config !== 'object' || d.config === null || typeof d.users !== 'object' || d.users === null) throw corrupt('missing config or users');
    if (!Array.isArray(d.parts) || !Array.isArray(d.users.finished) || !Array.isArray(d.users.inProgress) || !Array.isArray(d.users.failed)) throw corrupt('missing lists');
    const cp = new Checkpoint(d.snapshotId, time, d.config);
    if (cp.fingerprint !== d.fingerprint) throw corrupt('fingerprint does not match its configuration');
    if (d.phase !== 'export' && d.phase !== 'finalize') throw corrupt('bad phase');
    cp.phase = d.phase;
    cp.accountId = d.accountId ?? null;
    cp.resumes = Number.isSafeInteger(d.resumes) ? d.resumes : 0;
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
      if (typeof p?.file !== 'string' || !/^run-\d{6}\.ndjson$/.test(p.file) || !Number.isSafeInteger(p.rows) || typeof p.sha256 !== 'string') throw corrupt('bad part entry');
      cp.parts.push({ file: p.file, rows: p.rows, sha256: p.sha256 });
    }
    cp.#nextListToken = d.users.listToken ?? null;
    cp.#listingDone = d.users.listingDone === true;
    for (const n of d.users.finished) {
      if (typeof n !== 'string') throw corrupt('bad finished user');
      cp.#finished.add(n);
    }
    for (const r of d.users.inProgress) cp.#inProgress.set(checkUser(r, corrupt).userName, { user: r.user, token: r.token ?? null });
    for (const f of d.users.failed) cp.#failed.set(checkUser(f, corrupt).userName, { user: f.user, token: f.token ?? null, code: String(f.code) });
    return cp;
  }

  #listToken(): string | null {
    const oldest = this.#pages[0];
    return oldest ? oldest.token : this.#nextListToken;
  }

  #noteAccount(user: UserRef): void {
    if (this.accountId === null) this.accountId = user.accountId;
  }

  #resolve(name: string, finished: boolean): void {
    this.#inProgress.delete(name);
    this.#failed.delete(name);
    if (finished) this.#finished.add(name);
    for (const page of this.#pages) page.pending.delete(name);
    this.#compact();
  }

  #compact(): void {
    while (this.#pages.length > 0 && this.#pages[0]!.pending.size === 0) {
      const page = this.#pages.shift()!;
      for (const n of page.users) this.#finished.delete(n);
    }
  }
}

function checkUser(r: UserResume, corrupt: (why: string) => ExportError): UserRef {
  const u = r?.user;
  if (typeof u?.userName !== 'string' || typeof u.userId !== 'string' || typeof u.accountId !== 'string') throw corrupt('bad user entry');
  if (r.token !== null && r.token !== undefined && typeof r.token !== 'string') throw corrupt('bad user token');
  return u;
}

/** Reads checkpoint.json; a missing file is null, anything unreadable is CHECKPOINT_CORRUPT. */
export async function loadCheckpoint(file: string): Promise<Checkpoint | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new ExportError('CHECKPOINT_CORRUPT', `checkpoint ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); fix its permissions, or rerun with --fresh to discard the unfinished snapshot`, { file }, { cause: err });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ExportError('CHECKPOINT_CORRUPT', `checkpoint ${file} is corrupt (not JSON); rerun with --fresh to discard the unfinished snapshot`, { file }, { cause: err });
  }
  return Checkpoint.fromJSON(data, file);
}

/** Writes checkpoint.json durably (temp, fsync, rename, fsync dir), mode 0600. */
export async function saveCheckpoint(file: string, checkpoint: Checkpoint): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(checkpoint.toJSON(), null, 1), PRIVATE_FILE_MODE);
}
