/**
 * The checkpoint: a pure state machine (apply STATE events, say what a rerun must
 * do, serialize) and a small durable file in the store. No streams here.
 *
 * A snapshot covers accounts (one, or many: --organization / --accounts), each
 * pending, active, done or failed. An active account carries its progress:
 * the ListUsers resume token and every user it knows, by UserId (it survives
 * renames), in exactly one of these sets:
 *   pending      listed, nothing of it committed yet (paged from the start)
 *   inProgress   some pages committed; resumes at its token
 *   missing      IAM said NoSuchEntity: deleted, or renamed. A ListUsers scan
 *                decides once the listing is done (found: paged again; else vanished)
 *   failed       a non-retryable error; a rerun of the export retries it
 *   finished     every key committed (or vanished): never paged again, however
 *                it is renamed or re-listed
 * A done account keeps only its counts and failed users, so the checkpoint grows
 * with the users of the accounts in progress (IAM allows 5,000 an account;
 * ~25 bytes each), not with the number of accounts. `dirty` users (global: user
 * ids are unique across accounts) may have had keys committed twice (a listing
 * restarted after pages of it were committed); the merge keeps one row per key.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ExportError } from './errors.ts';
import type { AccountFacts, AccountRef, StateEvent, UserRef } from './items.ts';
import { PackedSet, SortedIds } from './packed.ts';
import { compareText } from './schema.ts';
import { PreconditionFailed, type Store } from './store/store.ts';

/** Version 1 (until 0.1) tracked users by name and pages by position. */
export const CHECKPOINT_VERSION = 2;

/** The options that shape the data; a resume must have the same. */
export interface DataConfig {
  readonly format: 'csv' | 'parquet';
  readonly pathPrefix: string;
  readonly statuses: readonly string[];
  /** The IAM endpoint given by flag or environment; null = the SDK's default for the partition. */
  readonly endpoint: string | null;
  /** Version of the record schema the files are written in. */
  readonly schemaVersion: number;
  /** Where last use comes from (--last-used): report, api or off. */
  readonly lastUsed: 'report' | 'api' | 'off';
  /** Which accounts: 'self' (the credentials' own), 'organization', or 'list:<ids>'; with ' excluding <ids>'. */
  readonly accounts: string;
  /** This checkpoint's shard of a sharded snapshot ('i/n'), or null. */
  readonly shard: string | null;
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
  /** Committed keys by where their last use came from. */
  lastUsed: LastUseCounts;
}

/** Committed keys by the source of their last use. */
export interface LastUseCounts {
  /** From the credential report. */
  report: number;
  /** From GetAccessKeyLastUsed. */
  api: number;
  /** Looked up, but the key was deleted meanwhile (NoSuchEntity): no last use. */
  vanished: number;
  /** Looked up, but the lookup was denied: no last use. */
  denied: number;
}

const LAST_USE_COUNTS = ['report', 'api', 'vanished', 'denied'] as const;

const NUMERIC_COUNTERS = ['usersExported', 'usersVanished', 'rowsWritten', 'restartedListings', 'attempts', 'throttles', 'wallMs'] as const;

export interface UserResume {
  readonly user: UserRef;
  /** Paginator NextToken to resume at; null = from the first key. */
  readonly token: string | null;
}

export interface FailedUser extends UserResume {
  readonly code: string;
}

/** The datasets of a finalized snapshot waiting to be promoted (phase 'publishing'). */
export interface PublishingState {
  /** Staging folder (store key, ends with '/') holding a folder per dataset. */
  readonly dir: string;
  /** In promotion order (access_keys last): each dataset's files, its gate file (_SUCCESS) last. */
  readonly datasets: readonly { readonly name: string; readonly files: readonly string[] }[];
}

/** export → finalize → publishing; a shard's checkpoint ends at done (its shard is exported; finalize is the snapshot's). */
export type Phase = 'export' | 'done' | 'finalize' | 'publishing';

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
  /** True once the accounts of the snapshot are known (listed in Organizations, or given). */
  readonly accountsSelected: boolean;
  readonly accounts: readonly AccountData[];
  /** Users whose rows may have been committed more than once (ids are unique across accounts). */
  readonly dirty: readonly string[];
  readonly parts: readonly PartInfo[];
  readonly publishing: PublishingState | null;
  readonly counters: Counters;
  readonly resumes: number;
}

/** A stable hash of the options that shape the data. */
export function fingerprintOf(config: DataConfig): string {
  const canonical = JSON.stringify([config.format, config.pathPrefix, [...config.statuses].sort(), config.endpoint, config.schemaVersion, config.lastUsed, config.accounts, config.shard]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

/** What a (re)run must do about the users of one account before and while listing. */
export interface ResumePlan {
  /** ListUsers StartingToken; null = from the first page. */
  readonly listToken: string | null;
  /** True when nothing is left to list. */
  readonly listingDone: boolean;
  /** True when a full scan after the listing found no user the snapshot does not know. */
  readonly listingVerified: boolean;
  /**
   * Every user the account's progress knows, by UserId: the lister must not start them
   * again. Off the heap (it grows with the account), and the plan's own: the source
   * goes on adding the users it starts to it.
   */
  readonly known: PackedSet;
  /** Users to page directly: in progress (from their token) or pending (from the start). */
  readonly resume: readonly UserResume[];
  /** Users IAM said NoSuchEntity for, to look for under another name. */
  readonly missing: readonly UserResume[];
  /** Users of the account exported in earlier runs (none yet: failures may be systemic). */
  readonly usersExported: number;
}

/** The serialized progress of an account. */
export interface ProgressData {
  readonly listing: { readonly token: string | null; readonly done: boolean; readonly verified: boolean };
  readonly finished: readonly string[];
  readonly pending: readonly UserRef[];
  readonly inProgress: readonly UserResume[];
  readonly missing: readonly UserResume[];
  readonly failed: readonly FailedUser[];
  readonly exported: number;
  readonly vanished: number;
}

/** How toJSON writes an account's finished users. */
type FinishedWriter = (ids: SortedIds) => readonly string[];

/** Listing and user events: they belong to one account. */
type UserEvent = Exclude<StateEvent, { kind: 'accounts-selected' | 'account-started' | 'account-facts' | 'account-done' | 'account-failed' }>;

/** The users of one account in progress: the sets above, and the listing. */
export class AccountProgress {
  #listToken: string | null = null;
  #listingDone = false;
  #listingVerified = false;
  readonly #finished = new SortedIds();
  readonly #pending = new Map<string, UserRef>();
  readonly #inProgress = new Map<string, UserResume>();
  readonly #missing = new Map<string, UserResume>();
  readonly #failed = new Map<string, FailedUser>();
  exported = 0;
  vanished = 0;

  /** True when `userId` is in any of the sets. */
  knows(userId: string): boolean {
    return this.#finished.has(userId) || this.#pending.has(userId) || this.#inProgress.has(userId) || this.#missing.has(userId) || this.#failed.has(userId);
  }

  /** Applies one listing or user event; returns whether the user's keys may now be committed twice. */
  apply(event: UserEvent): { dirty?: string; restarted?: boolean } {
    switch (event.kind) {
      case 'users-page':
        this.#listToken = event.nextToken;
        this.#listingDone = event.nextToken === null;
        for (const u of event.users) {
          if (!this.knows(u.userId)) this.#pending.set(u.userId, u);
          else if (this.#pending.has(u.userId)) this.#pending.set(u.userId, u); // renamed before it started
        }
        return {};
      case 'users-scanned':
        for (const u of event.users) if (!this.knows(u.userId)) this.#pending.set(u.userId, u);
        if (event.complete) this.#listingVerified = true;
        return {};
      case 'users-restarted':
        this.#listToken = null;
        this.#listingDone = false;
        this.#listingVerified = false;
        return { restarted: true };
      case 'user-page':
        this.#forget(event.user.userId);
        this.#inProgress.set(event.user.userId, { user: event.user, token: event.nextToken });
        return {};
      case 'user-done':
        this.#forget(event.user.userId);
        this.#finished.add(event.user.userId);
        this.exported++;
        return {};
      case 'user-restarted': {
        const dirty = this.#committedSomeOf(event.user.userId);
        this.#forget(event.user.userId);
        this.#pending.set(event.user.userId, event.user);
        return { restarted: true, ...(dirty ? { dirty: event.user.userId } : {}) };
      }
      case 'user-missing': {
        const dirty = this.#committedSomeOf(event.user.userId);
        this.#forget(event.user.userId);
        this.#missing.set(event.user.userId, { user: event.user, token: event.token });
        return dirty ? { dirty: event.user.userId } : {};
      }
      case 'user-found':
        this.#forget(event.user.userId);
        this.#pending.set(event.user.userId, event.user);
        return {};
      case 'user-vanished':
        this.#forget(event.user.userId);
        this.#finished.add(event.user.userId);
        this.vanished++;
        return {};
      case 'user-failed':
        this.#forget(event.user.userId);
        this.#failed.set(event.user.userId, { user: event.user, token: event.token, code: event.code });
        return {};
    }
  }

  /** True when pages of the user were committed (its token moved). */
  #committedSomeOf(userId: string): boolean {
    const entry = this.#inProgress.get(userId) ?? this.#failed.get(userId) ?? this.#missing.get(userId);
    return entry !== undefined && entry.token !== null;
  }

  #forget(userId: string): void {
    this.#pending.delete(userId);
    this.#inProgress.delete(userId);
    this.#missing.delete(userId);
    this.#failed.delete(userId);
  }

  /**
   * True when every known user is finished or failed, nothing is left to list, and
   * a full scan after the listing found nobody the snapshot does not know.
   */
  get complete(): boolean {
    return this.#listingDone && this.#listingVerified && this.#pending.size === 0 && this.#inProgress.size === 0 && this.#missing.size === 0;
  }

  /** Users that failed with a non-retryable error. */
  get failedUsers(): FailedUser[] {
    return [...this.#failed.values()];
  }

  /** Users known (every set). */
  get usersKnown(): number {
    return this.#finished.size + this.#pending.size + this.#inProgress.size + this.#missing.size + this.#failed.size;
  }

  /** What a run must do: list from the token, skip known users, resume the others. */
  resumePlan(): ResumePlan {
    const known = new PackedSet(this.#finished);
    for (const users of [this.#pending, this.#inProgress, this.#missing, this.#failed]) for (const id of users.keys()) known.add(id);
    const resume: UserResume[] = [...this.#inProgress.values(), ...[...this.#pending.values()].map((user) => ({ user, token: null }))];
    return { listToken: this.#listToken, listingDone: this.#listingDone, listingVerified: this.#listingVerified, known, resume, missing: [...this.#missing.values()], usersExported: this.exported };
  }

  /** Failed users become in progress again (they are retried). */
  retryFailed(): void {
    for (const [id, f] of this.#failed) {
      if (f.token === null) this.#pending.set(id, f.user);
      else this.#inProgress.set(id, { user: f.user, token: f.token });
    }
    this.#failed.clear();
  }

  /** `finished` says how the finished users are written (by default: their ids, in byte order). */
  toJSON(finished: FinishedWriter = (ids) => [...ids]): ProgressData {
    return {
      listing: { token: this.#listToken, done: this.#listingDone, verified: this.#listingVerified },
      finished: finished(this.#finished),
      pending: [...this.#pending.values()],
      inProgress: [...this.#inProgress.values()],
      missing: [...this.#missing.values()],
      failed: [...this.#failed.values()],
      exported: this.exported,
      vanished: this.vanished,
    };
  }

  static fromJSON(d: ProgressData, corrupt: (why: string) => ExportError): AccountProgress {
    if (typeof d !== 'object' || d === null || typeof d.listing !== 'object' || d.listing === null) throw corrupt('bad account progress');
    if (![d.finished, d.pending, d.inProgress, d.missing, d.failed].every(Array.isArray)) throw corrupt('missing user lists');
    const p = new AccountProgress();
    p.#listToken = typeof d.listing.token === 'string' ? d.listing.token : null;
    p.#listingDone = d.listing.done === true;
    p.#listingVerified = d.listing.verified === true;
    for (const id of d.finished) p.#finished.add(checkId(id, corrupt));
    for (const u of d.pending) p.#pending.set(checkUser(u, corrupt).userId, u);
    for (const r of d.inProgress) p.#inProgress.set(checkResume(r, corrupt).userId, { user: r.user, token: r.token ?? null });
    for (const r of d.missing) p.#missing.set(checkResume(r, corrupt).userId, { user: r.user, token: r.token ?? null });
    for (const f of d.failed) p.#failed.set(checkResume(f, corrupt).userId, { user: f.user, token: f.token ?? null, code: String(f.code) });
    p.exported = countOf(d.exported, corrupt);
    p.vanished = countOf(d.vanished, corrupt);
    return p;
  }
}

export type AccountStatus = 'pending' | 'active' | 'done' | 'failed';

/** An account of the snapshot. */
export interface AccountEntry {
  readonly ref: AccountRef;
  status: AccountStatus;
  /** While active (or failed part way): what is left to do. Dropped once done. */
  progress: AccountProgress | null;
  facts: AccountFacts | null;
  /** Why it failed (an AWS error code), while failed. */
  code: string | null;
  /** Once done: users exported and vanished, and users that failed. */
  summary: { exported: number; vanished: number; failed: FailedUser[] } | null;
  /** Committed rows of this account. */
  keys: number;
}

/** An account as checkpoint.json holds it. */
export interface AccountData {
  readonly id: string;
  readonly name: string | null;
  readonly status: AccountStatus;
  readonly facts: AccountFacts | null;
  readonly code: string | null;
  readonly progress: ProgressData | null;
  readonly summary: { readonly exported: number; readonly vanished: number; readonly failed: readonly FailedUser[] } | null;
  readonly keys: number;
}

/** Failed users in name order; two of one name (one renamed to the other's old name) by id, so the order never depends on the events'. */
const byName = (a: FailedUser, b: FailedUser) => compareText(a.user.userName, b.user.userName) || compareText(a.user.userId, b.user.userId);

/** The checkpoint's state machine. */
export class Checkpoint {
  readonly snapshotId: string;
  readonly snapshotTime: Date;
  readonly config: DataConfig;
  readonly fingerprint: string;
  phase: Phase = 'export';
  /** The account of the caller's credentials (GetCallerIdentity). */
  accountId: string | null = null;
  callerArn: string | null = null;
  resumes = 0;
  commits = 0;
  publishing: PublishingState | null = null;
  readonly counters: Counters;
  readonly parts: PartInfo[] = [];

  #accountsSelected = false;
  readonly #accounts = new Map<string, AccountEntry>();
  readonly #dirty = new Set<string>();

  constructor(snapshotId: string, snapshotTime: Date, config: DataConfig) {
    this.snapshotId = snapshotId;
    this.snapshotTime = snapshotTime;
    this.config = config;
    this.fingerprint = fingerprintOf(config);
    this.counters = {
      usersExported: 0,
      usersVanished: 0,
      rowsWritten: 0,
      restartedListings: 0,
      calls: {},
      attempts: 0,
      throttles: 0,
      wallMs: 0,
      lastUsed: { report: 0, api: 0, vanished: 0, denied: 0 },
    };
  }

  /** The account `id`, created pending when the snapshot did not know it (a single account's first event). */
  #entry(id: string, name: string | null = null): AccountEntry {
    let e = this.#accounts.get(id);
    if (!e) {
      e = { ref: { id, name }, status: 'pending', progress: null, facts: null, code: null, summary: null, keys: 0 };
      this.#accounts.set(id, e);
    }
    return e;
  }

  /**
   * The account an event belongs to. A single-account snapshot whose account could
   * not be told (an endpoint without STS, listing no user at first) is kept as ''.
   */
  #route(id: string): string {
    if (this.#accounts.has(id) || this.#accounts.size !== 1 || !this.#accounts.has('')) return id;
    return '';
  }

  /** The progress of account `id` (it becomes active). */
  #progress(id: string): AccountProgress {
    const e = this.#entry(id);
    if (e.status === 'done') throw new ExportError('INTERNAL', `an event for account ${id}, which is done`);
    e.status = 'active';
    e.progress ??= new AccountProgress();
    return e.progress;
  }

  /** Applies one watermark. Only call it once the records before it are durable. */
  apply(event: StateEvent): void {
    switch (event.kind) {
      case 'accounts-selected':
        for (const a of event.accounts) this.#entry(a.id, a.name);
        this.#accountsSelected = true;
        return;
      case 'account-started': {
        const e = this.#entry(event.account.id, event.account.name);
        e.status = 'active';
        e.code = null;
        e.progress ??= new AccountProgress();
        return;
      }
      case 'account-facts':
        this.#entry(event.account).facts = event.facts;
        return;
      case 'account-done': {
        const e = this.#entry(event.account);
        const p = e.progress;
        // Only a complete account closes: its progress is what a rerun would resume.
        if (!p?.complete) throw new ExportError('INTERNAL', `account ${event.account} closed with users left to read`);
        e.summary = { exported: p.exported, vanished: p.vanished, failed: p.failedUsers };
        e.status = 'done';
        e.progress = null;
        return;
      }
      case 'account-failed': {
        const e = this.#entry(event.account);
        e.status = 'failed';
        e.code = event.code;
        return;
      }
      default: {
        const p = this.#progress(this.#route('user' in event ? event.user.accountId : event.account));
        const exported = p.exported;
        const vanished = p.vanished;
        const effect = p.apply(event);
        if (effect.dirty) this.#dirty.add(effect.dirty);
        if (effect.restarted) this.counters.restartedListings++;
        this.counters.usersExported += p.exported - exported;
        this.counters.usersVanished += p.vanished - vanished;
      }
    }
  }

  /** Records a committed part. */
  addPart(part: PartInfo): void {
    this.parts.push(part);
    this.counters.rowsWritten += part.rows;
  }

  /** Counts committed rows of `accountId` (for the accounts dataset). */
  addKeys(accountId: string, rows: number): void {
    this.#entry(accountId).keys += rows;
  }

  /** The accounts, by id. */
  get accounts(): AccountEntry[] {
    return [...this.#accounts.values()].sort((a, b) => compareText(a.ref.id, b.ref.id));
  }

  /** The account `id`, if the snapshot knows it. */
  account(id: string): AccountEntry | undefined {
    return this.#accounts.get(id);
  }

  /** True once the accounts to read are known. */
  get accountsSelected(): boolean {
    return this.#accountsSelected;
  }

  /** Marks the accounts selected (a single-account snapshot knows its one account at once). */
  selectAccounts(accounts: readonly AccountRef[]): void {
    this.apply({ kind: 'accounts-selected', accounts });
  }

  /** What a run must do about the users of account `id`. */
  resumePlan(id: string): ResumePlan {
    const e = this.#accounts.get(id);
    return (e?.progress ?? new AccountProgress()).resumePlan();
  }

  /** True when the accounts are known and each is done or failed. */
  get exportComplete(): boolean {
    return this.#accountsSelected && [...this.#accounts.values()].every((e) => e.status === 'done' || e.status === 'failed');
  }

  /** Users that failed with a non-retryable error, over every account, in name order. */
  get failedUsers(): FailedUser[] {
    return [...this.#accounts.values()].flatMap((e) => e.summary?.failed ?? e.progress?.failedUsers ?? []).sort(byName);
  }

  /** Accounts that could not be read, by id. */
  get failedAccounts(): AccountEntry[] {
    return this.accounts.filter((e) => e.status === 'failed');
  }

  /** Users whose rows may have been committed more than once. */
  get dirtyUsers(): ReadonlySet<string> {
    return this.#dirty;
  }

  /** Users known to the snapshot: done accounts' counts and the progress of the others. */
  get usersKnown(): number {
    let n = 0;
    for (const e of this.#accounts.values()) n += e.progress ? e.progress.usersKnown : (e.summary?.exported ?? 0) + (e.summary?.vanished ?? 0) + (e.summary?.failed.length ?? 0);
    return n;
  }

  /**
   * Prepares the state for a rerun. During the export, failed accounts and failed
   * users are retried. Once the export is over (done, finalize, publishing),
   * nothing changes: a rerun publishes exactly what finalize began with.
   */
  beginResume(): void {
    this.resumes++;
    if (this.phase !== 'export') return;
    for (const e of this.#accounts.values()) {
      if (e.status === 'failed') {
        e.status = e.progress ? 'active' : 'pending';
        e.code = null;
      }
      e.progress?.retryFailed();
      if (e.status === 'done' && e.summary && e.summary.failed.length > 0) {
        // A done account with failed users is read again for those users only.
        const p = new AccountProgress();
        p.exported = e.summary.exported;
        p.vanished = e.summary.vanished;
        for (const f of e.summary.failed) p.apply({ kind: 'user-failed', user: f.user, code: f.code, token: f.token });
        p.apply({ kind: 'users-page', account: e.ref.id, token: null, nextToken: null, users: [] });
        p.apply({ kind: 'users-scanned', account: e.ref.id, users: [], complete: true });
        p.retryFailed();
        e.status = 'active';
        e.progress = p;
        e.summary = null;
      }
    }
  }

  /** Serializes the state (no secrets: names, ids, tokens and counts only); `finished` as in AccountProgress.toJSON. */
  toJSON(finished?: FinishedWriter): CheckpointData {
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
      accountsSelected: this.#accountsSelected,
      accounts: this.accounts.map((e) => ({
        id: e.ref.id,
        name: e.ref.name,
        status: e.status,
        facts: e.facts,
        code: e.code,
        progress: e.progress?.toJSON(finished) ?? null,
        summary: e.summary ? { ...e.summary, failed: [...e.summary.failed].sort(byName) } : null,
        keys: e.keys,
      })),
      dirty: [...this.#dirty].sort(),
      parts: [...this.parts],
      publishing: this.publishing,
      counters: { ...this.counters, calls: { ...this.counters.calls }, lastUsed: { ...this.counters.lastUsed } },
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
    if (typeof d.config !== 'object' || d.config === null) throw corrupt('missing config');
    if (!Array.isArray(d.parts) || !Array.isArray(d.accounts) || !Array.isArray(d.dirty)) throw corrupt('missing lists');
    const cp = new Checkpoint(d.snapshotId, time, d.config);
    if (cp.fingerprint !== d.fingerprint) throw corrupt('fingerprint does not match its configuration');
    if (!['export', 'done', 'finalize', 'publishing'].includes(d.phase)) throw corrupt('bad phase');
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
    for (const k of LAST_USE_COUNTS) {
      const v = d.counters?.lastUsed?.[k];
      if (typeof v !== 'number' || !Number.isFinite(v)) throw corrupt(`bad last-use counter ${k}`);
      cp.counters.lastUsed[k] = v;
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
      const datasetOk = (x: { name?: unknown; files?: unknown }) => typeof x?.name === 'string' && Array.isArray(x.files) && x.files.every((f) => typeof f === 'string');
      if (typeof p.dir !== 'string' || !Array.isArray(p.datasets) || !p.datasets.every(datasetOk)) throw corrupt('bad publishing entry');
      cp.publishing = { dir: p.dir, datasets: p.datasets.map((x) => ({ name: x.name, files: [...x.files] })) };
    }
    if (cp.phase === 'publishing' && cp.publishing === null) throw corrupt('publishing without files');
    cp.#accountsSelected = d.accountsSelected === true;
    for (const a of d.accounts) {
      if (typeof a?.id !== 'string' || !['pending', 'active', 'done', 'failed'].includes(a.status)) throw corrupt('bad account entry');
      const e = cp.#entry(a.id, typeof a.name === 'string' ? a.name : null);
      e.status = a.status;
      e.facts = a.facts ?? null;
      e.code = typeof a.code === 'string' ? a.code : null;
      e.progress = a.progress ? AccountProgress.fromJSON(a.progress, corrupt) : null;
      const summary = a.summary;
      if (summary && !Array.isArray(summary.failed)) throw corrupt(`account ${a.id}: bad summary`);
      e.summary = summary
        ? {
            exported: countOf(summary.exported, corrupt),
            vanished: countOf(summary.vanished, corrupt),
            failed: summary.failed.map((f: FailedUser): FailedUser => {
              checkResume(f, corrupt);
              return { user: f.user, token: f.token ?? null, code: String(f.code) };
            }),
          }
        : null;
      e.keys = countOf(a.keys, corrupt);
      if (e.status === 'active' && !e.progress) throw corrupt(`account ${a.id} active without progress`);
      if (e.status === 'done' && !e.summary) throw corrupt(`account ${a.id} done without summary`);
    }
    for (const id of d.dirty) cp.#dirty.add(checkId(id, corrupt));
    return cp;
  }
}

function countOf(v: unknown, corrupt: (why: string) => ExportError): number {
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw corrupt('bad count');
  return v as number;
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

/**
 * checkpoint.json's bytes. The finished users of each account are copied in as the
 * JSON text their SortedIds keeps: JSON.stringify writes a marker in their place, one a
 * user id cannot be (a NUL and a fresh nonce), and the text is cut there.
 */
export function serialize(checkpoint: Checkpoint): Buffer {
  const nonce = randomBytes(8).toString('hex');
  const lists: Buffer[] = [];
  const text = JSON.stringify(
    checkpoint.toJSON((ids) => {
      lists.push(ids.json());
      return [`\u0000finished ${nonce} ${lists.length - 1}`];
    }),
    null,
    1,
  );
  const cuts = lists.map((bytes, i) => {
    const marker = JSON.stringify(`\u0000finished ${nonce} ${i}`);
    const at = text.indexOf(marker);
    if (at < 0) throw new ExportError('INTERNAL', `checkpoint serialization lost the finished users of account ${i}`);
    return { at, end: at + marker.length, bytes };
  });
  cuts.sort((a, b) => a.at - b.at);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const c of cuts) {
    pieces.push(Buffer.from(text.slice(from, c.at)), c.bytes);
    from = c.end;
  }
  pieces.push(Buffer.from(text.slice(from)));
  return Buffer.concat(pieces);
}

function lostLease(where: string): ExportError {
  return new ExportError('LEASE_LOST', `another run took over this snapshot (${where} changed under this run); this run stopped without committing more`, { file: where });
}
