/**
 * The source: lists users page by page and pages the keys of at most
 * `concurrency` users at once (p-limit; up to USERS_PER_SLOT times that with an
 * account's client that limits its requests on the wire and is not throttled: see
 * wire.ts), emitting RECORD and STATE items into one bounded channel. Listing pauses
 * while that many users are already queued or running, so neither memory nor pending
 * work grows with the number of users.
 *
 * Identity: users are known by UserId. A user the snapshot already knows is never
 * started again by the lister, whatever name it is listed under now. A listing is
 * not a snapshot: a user renamed behind its cursor is not listed again. So once the
 * listing is done, a full ListUsers scan (1,000 a page) looks for users the
 * snapshot does not know (started now) and for "missing" ones, those IAM said
 * NoSuchEntity for: found under another name they were renamed (paged again from
 * the start), else they vanished. The export is complete once a scan finds nothing
 * new. A Marker IAM rejects restarts that listing once.
 *
 * Stopping (signal, time budget, max items, throttling that outlived the retries,
 * a fatal error elsewhere) is graceful: no new call starts, in-flight calls are
 * aborted and their pages dropped, waiters on the key budget wake, and the channel
 * closes so the writer can commit everything before the stop.
 */
import { setMaxListeners } from 'node:events';
import { Readable } from 'node:stream';
import type { IAMClient, ListAccessKeysCommandOutput, ListUsersCommandOutput } from '@aws-sdk/client-iam';
import pLimit from 'p-limit';
import { classifyFatal, classifyUserError, ExportError, isRejectedMarker, isThrottle, type CallSite } from '../errors.ts';
import type { AccountFacts, AccountRef, Batch, Item, SourceKey, StateEvent, UserRef } from '../items.ts';
import type { ResumePlan, UserResume } from '../checkpoint.ts';
import type { PackedSet } from '../packed.ts';
import type { KeyBudget } from './budget.ts';
import { Channel } from './channel.ts';
import { paginateAccessKeys, paginateUsers } from './paginate.ts';
import { toUserRef } from './users.ts';
import { usersAtOnce } from './wire.ts';

/** How many times one listing may be restarted in one run after IAM rejected its Marker. */
export const MAX_LISTING_RESTARTS = 2;
/** Failures of the first this-many users, all alike and with no user exported, are systemic. */
export const SYSTEMIC_SAMPLE = 20;
/** Page size of the scan that verifies the listing. */
const SCAN_PAGE_SIZE = 1000;
/** Scans that may each still find something before the listing counts as verified (IAM that keeps changing). */
export const MAX_SCANS = 4;

/** What a source needs of one account (its users, through its client). */
export interface AccountSourceOptions {
  readonly client: IAMClient;
  /** The account: emitted on its listing events; users of another account are a mismatch. */
  readonly account: string;
  readonly pathPrefix: string;
  readonly pageSize: number;
  readonly concurrency: number;
  readonly plan: ResumePlan;
  /** Graceful stop: start nothing new, abort in-flight calls, end the stream. */
  readonly stop: AbortSignal;
  /** Called with an error that must end this account's reading (the caller decides: the run, or the account). */
  readonly onFatal: (error: ExportError) => void;
  /** Throttling outlived the retries: the caller stops the run resumably. */
  readonly onThrottled: () => void;
  /** --max-items: when spent, no new page is requested and the stream ends. */
  readonly budget?: KeyBudget | undefined;
  /** The IAM endpoint (for messages). */
  readonly endpoint: string;
  /** Progress hook: a user is finished (done, vanished or failed), not yet durable. */
  readonly onUserFinished?: () => void;
  /** Progress hook: called with the number of new users of every ListUsers page, and whether it was the last. */
  readonly onUsersListed?: (count: number, last: boolean) => void;
  /**
   * The listing's first page (ListUsers with PathPrefix and MaxItems = pageSize, no
   * Marker), asked before the source started; taken at most once, by a listing that
   * starts from the beginning. Only a run of one account asks it (run.ts), so it is that
   * account's; otherwise there is none to take.
   */
  readonly takeFirstUsersPage?: () => Promise<ListUsersCommandOutput> | undefined;
  /**
   * The first page of a user's keys (ListAccessKeys with MaxItems = pageSize, no Marker),
   * asked before the source started (for the first users of the listing's first page);
   * taken at most once, by a paging of that user from the beginning with no key budget.
   */
  readonly takeFirstKeysPage?: (user: UserRef) => Promise<ListAccessKeysCommandOutput> | undefined;
}

/** An account to read in this run, with what its progress says is left. */
export interface AccountJob {
  readonly ref: AccountRef;
  readonly plan: ResumePlan;
  /** Reached through the role (AssumeRole), not with the caller's own credentials: what the systemic rule samples. */
  readonly viaRole: boolean;
}

/** An account reached: its IAM client and its facts for the accounts dataset. */
export interface PreparedAccount {
  readonly client: IAMClient;
  /**
   * Being asked while the account's users are read (a round trip IAM would otherwise
   * add before its first ListUsers); rejects as reaching the account would have.
   */
  readonly facts: Promise<AccountFacts>;
  /**
   * Settles once the account's last-use source is in place (its credential report
   * fetched and saved: seconds in IAM, so its users are read meanwhile); rejects as
   * reaching the account would have. Absent: nothing is left to wait for.
   */
  readonly lastUse?: Promise<void>;
}

/** The source over the accounts of a snapshot. */
export interface SourceOptions extends Omit<AccountSourceOptions, 'client' | 'account' | 'plan' | 'onFatal'> {
  readonly accounts: readonly AccountJob[];
  /** Accounts read at once. */
  readonly accountConcurrency: number;
  /**
   * Reaches an account: its client (AssumeRole for a member account), its facts,
   * its last-use source; throws the AWS error when the account cannot be reached.
   */
  readonly prepare: (job: AccountJob, signal: AbortSignal) => Promise<PreparedAccount>;
  /**
   * Many accounts: an error that is about one account (AssumeRole denied, ListUsers
   * denied, credentials of a closed account) fails that account and the others go
   * on. One account (the credentials' own): every error is the run's.
   */
  readonly accountFailures: boolean;
  /** Called with an error that must end the run (the caller then aborts `stop`). */
  readonly onFatal: (error: ExportError) => void;
}

type SourceItem = Item<SourceKey>;

/** The source as an object-mode Readable of batches of RECORD and STATE items (one page each). */
export function sourceStream(options: SourceOptions): Readable {
  // Room for a few pages per user being paged: enough to keep the writer busy.
  const channel = new Channel<Batch<SourceKey>>(options.concurrency * Math.min(options.accountConcurrency, options.accounts.length || 1) * 4);
  // When the pipeline tears the stream down (an error downstream), stop paging too.
  const destroyed = new AbortController();
  const o = { ...options, stop: AbortSignal.any([options.stop, destroyed.signal]) };
  // Every in-flight SDK call listens on the stop signal: up to concurrency × retries.
  setMaxListeners(0, o.stop);
  new AccountsSource(o, channel).run().then(
    () => channel.close(),
    (err: unknown) => channel.fail(err),
  );
  const readable = Readable.from(channel, { objectMode: true, highWaterMark: 16 });
  readable.once('close', () => {
    // Closed after its end is normal: the stages downstream still enrich what it
    // gave them with the same signal. Only a teardown before the end stops paging.
    if (!readable.readableEnded) destroyed.abort();
    channel.close();
  });
  return readable;
}

/** An account being reached (prepare), ahead of its turn or at it. */
interface Reaching {
  /** Stops this account only (its failure, or a run that ends before its turn). */
  readonly stopAccount: AbortController;
  readonly stop: AbortSignal;
  readonly prepared: Promise<PreparedAccount>;
}

/** Accounts that all failed alike, with none read, before the run counts it as systemic. */
export const SYSTEMIC_ACCOUNTS = 10;

/** Error codes that are about the run, never about one account. */
const RUN_LEVEL = new Set(['SOURCE_UNREACHABLE', 'INTERNAL', 'CHECKPOINT_MISMATCH', 'OUTPUT_IO', 'LEASE_LOST', 'CHECKPOINT_CORRUPT']);

/**
 * The outer level of the fan-out: at most `accountConcurrency` accounts at once,
 * each reached (prepare), announced (account-started), read by its own Source
 * (its own client: IAM throttles each account on its own) into the shared channel,
 * and closed (account-done) or failed (account-failed). Reaching an account
 * (AssumeRole, its facts, its credential report's generation: seconds in IAM) runs
 * ahead: when an account starts being read, the one `accountConcurrency` places
 * later in line is reached, against that account's own rate limit, so a slot that
 * frees finds its next account ready instead of waiting for it. An account is
 * still announced and read only when its turn comes, in order. When the first
 * min(SYSTEMIC_ACCOUNTS, all) accounts all failed alike and none was read, it is
 * not about accounts (the role is missing everywhere): the run stops (exit 1).
 * Only accounts reached through the role count: the caller's own account, read
 * with the base credentials, succeeds even when the role exists nowhere.
 */
class AccountsSource {
  readonly #o: SourceOptions;
  readonly #out: Channel<Batch<SourceKey>>;
  #read = 0;
  /** The distinct codes accounts failed with. */
  readonly #failures = new Set<string>();
  #failed = 0;
  #systemic = false;

  constructor(o: SourceOptions, out: Channel<Batch<SourceKey>>) {
    this.#o = o;
    this.#out = out;
  }

  async run(): Promise<void> {
    const o = this.#o;
    const limit = pLimit(o.accountConcurrency);
    const ahead = o.accountConcurrency;
    try {
      await Promise.all(
        o.accounts.map((job, i) =>
          limit(async () => {
            if (this.#halted()) return;
            const reaching = this.#reach(i);
            if (i + ahead < o.accounts.length && !this.#halted()) this.#reach(i + ahead);
            try {
              return await this.#account(job, reaching);
            } finally {
              // Read: nobody reaches it again (its place is behind every start), and its
              // client must not live as long as the run (memory by the number of accounts).
              this.#reaching.delete(i);
            }
          }),
        ),
      );
    } finally {
      // Left here: reached ahead but never read (the run stopped first; an account
      // read is deleted once read). Stop them, and let them settle, so nothing
      // writes into the staging after the source ended.
      for (const r of this.#reaching.values()) r.stopAccount.abort();
      await Promise.allSettled([...this.#reaching.values()].map((r) => r.prepared.then((p) => p.lastUse)));
    }
  }

  /** Accounts being reached or reached, by their place in line. */
  readonly #reaching = new Map<number, Reaching>();

  /** Starts reaching the account at place `i` (once). */
  #reach(i: number): Reaching {
    let r = this.#reaching.get(i);
    if (r) return r;
    const stopAccount = new AbortController();
    const stop = AbortSignal.any([this.#o.stop, stopAccount.signal]);
    setMaxListeners(0, stop);
    const prepared = this.#o.prepare(this.#o.accounts[i]!, stop);
    prepared.catch(() => undefined); // observed when its turn comes
    r = { stopAccount, stop, prepared };
    this.#reaching.set(i, r);
    return r;
  }

  #halted(): boolean {
    return this.#o.stop.aborted || this.#o.budget?.exhausted === true;
  }

  async #account(job: AccountJob, reaching: Reaching): Promise<void> {
    const o = this.#o;
    if (this.#halted()) return;
    const { stopAccount, stop } = reaching;
    let failure: ExportError | undefined;
    const fail = (err: ExportError) => {
      if (!o.accountFailures || RUN_LEVEL.has(err.code)) return o.onFatal(err);
      failure ??= err;
      stopAccount.abort(err);
    };
    const unreached = (err: unknown): void => {
      if (stop.aborted) return;
      // Throttled past the retries while reaching it: a resumable stop, like a throttled page.
      if (isThrottle(err)) return o.onThrottled();
      fail(classifyFatal(err, { what: `reaching account ${job.ref.id}`, service: 'STS', endpoint: o.endpoint, permission: 'sts:AssumeRole' }));
    };
    let prepared: PreparedAccount;
    try {
      prepared = await reaching.prepared;
    } catch (err) {
      unreached(err);
      if (failure) await this.#failed_(job, failure);
      return;
    }
    // Its users are read while its last-use source is still coming; the account ends
    // (done or failed) only once that has settled, so nothing of it is still being
    // written into the staging after its end.
    const lastUse = (prepared.lastUse ?? Promise.resolve()).catch(unreached);
    let facts: Promise<unknown> = Promise.resolve();
    let complete: boolean;
    try {
      await this.#out.push([{ type: 'STATE', state: { kind: 'account-started', account: job.ref } }]);
      // After account-started, so the facts are never announced before the account.
      facts = prepared.facts.then((f) => this.#out.push([{ type: 'STATE', state: { kind: 'account-facts', account: job.ref.id, facts: f } }]), unreached);
      const source = new Source({ ...o, client: prepared.client, account: job.ref.id, plan: job.plan, stop, onFatal: fail }, this.#out);
      complete = await source.run();
    } finally {
      await Promise.all([lastUse, facts]);
    }
    if (failure) return this.#failed_(job, failure);
    if (complete && !this.#halted()) {
      if (job.viaRole) this.#read++;
      await this.#out.push([{ type: 'STATE', state: { kind: 'account-done', account: job.ref.id } }]);
    }
  }

  async #failed_(job: AccountJob, failure: ExportError): Promise<void> {
    const code = failure.context.awsCode ?? failure.code;
    await this.#out.push([{ type: 'STATE', state: { kind: 'account-failed', account: job.ref.id, code } }]);
    if (!job.viaRole) return;
    this.#failed++;
    this.#failures.add(code);
    const sample = Math.min(SYSTEMIC_ACCOUNTS, this.#o.accounts.filter((j) => j.viaRole).length);
    if (this.#systemic || this.#read > 0 || this.#failed < sample || this.#failures.size !== 1) return;
    this.#systemic = true;
    this.#o.onFatal(
      new ExportError(
        failure.code,
        `every one of the first ${this.#failed} accounts failed the same way, so it is not about accounts: ${failure.message}`,
        failure.context,
        { cause: failure },
      ),
    );
  }
}

/** What a verifying scan saw that may matter, and what it may not have seen: users missing or failed after it started. */
interface Scanned {
  readonly users: readonly UserRef[];
  readonly missingAtStart: ReadonlySet<string>;
  readonly failedAtStart: number;
}

class Source {
  readonly #o: AccountSourceOptions;
  readonly #out: Channel<Batch<SourceKey>>;
  readonly #limit: ReturnType<typeof pLimit>;
  readonly #running = new Set<Promise<void>>();
  /** Users of the snapshot, by UserId: known from the checkpoint, or started in this run (the plan's set). */
  readonly #known: PackedSet;
  /** Users IAM said NoSuchEntity for, by UserId, not resolved yet. */
  readonly #missing = new Map<string, UserResume>();
  /** The first verifying scan, started as the listing's last page came (see #verifyListing). */
  #earlyScan: Promise<Scanned> | undefined;
  readonly #scanStop = new AbortController();
  /** Users listed in this run or the checkpoint (for the systemic rule's sample). */
  #listingDone: boolean;
  #listingVerified: boolean;
  #exported: number;
  /** The distinct codes users failed with. */
  readonly #failures = new Set<string>();
  #failedTotal = 0;
  #systemicChecked = false;

  constructor(o: AccountSourceOptions, out: Channel<Batch<SourceKey>>) {
    this.#o = o;
    this.#out = out;
    this.#limit = pLimit(o.concurrency);
    this.#known = o.plan.known;
    for (const m of o.plan.missing) this.#missing.set(m.user.userId, m);
    this.#listingDone = o.plan.listingDone;
    this.#listingVerified = o.plan.listingVerified;
    this.#exported = o.plan.usersExported;
  }

  #site(what: string, permission: string): CallSite {
    return { what, service: 'IAM', endpoint: this.#o.endpoint, permission };
  }

  #halted(): boolean {
    return this.#o.stop.aborted || this.#o.budget?.exhausted === true;
  }

  /** Reads the account; resolves true when every user of it is done (nothing stopped or failed it). */
  async run(): Promise<boolean> {
    try {
      for (const r of this.#o.plan.resume) {
        await this.#slot();
        if (this.#halted()) break;
        this.#start(r.user, r.token);
      }
      if (!this.#listingDone && !this.#halted()) await this.#list();
      await this.#settled();
      await this.#verifyListing();
      await this.#settled();
      if (!this.#halted()) this.#checkSystemic(true);
    } catch (err) {
      if (!this.#o.stop.aborted) this.#o.onFatal(classifyFatal(err, this.#site('the export', 'nothing')));
    }
    await this.#settled();
    // A scan started early and left unread (the run stopped first): nothing may outlive the source.
    this.#scanStop.abort();
    await this.#earlyScan?.catch(() => undefined);
    return !this.#halted() && this.#listingDone && this.#listingVerified && this.#missing.size === 0;
  }

  /** Waits until every started user is done (tasks never reject: they report through onFatal). */
  async #settled(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running]);
  }

  /** Users paged at once now (more while the account's client is not throttled: wire.ts). */
  #atOnce(): number {
    const n = usersAtOnce(this.#o.client, this.#o.concurrency);
    if (this.#limit.concurrency !== n) this.#limit.concurrency = n;
    return n;
  }

  #start(user: UserRef, token: string | null): void {
    this.#known.add(user.userId);
    const task = this.#limit(() => this.#pageUser(user, token));
    this.#running.add(task);
    void task.finally(() => this.#running.delete(task)).catch(() => undefined);
  }

  /** Waits for a free slot so listing never runs ahead of the fan-out. */
  async #slot(): Promise<void> {
    while (this.#running.size >= this.#atOnce() && !this.#halted()) await Promise.race(this.#running);
  }

  async #emit(state: StateEvent, records: SourceItem[] = []): Promise<void> {
    records.push({ type: 'STATE', state });
    await this.#out.push(records);
  }

  /** Lists users from the plan's token, starting every user the snapshot does not know yet. */
  async #list(): Promise<void> {
    const o = this.#o;
    let token = o.plan.listToken;
    // Asked already (with the caller's identity): only a listing from the start can use it, once.
    let first = token === null ? o.takeFirstUsersPage?.() : undefined;
    for (let restarts = 0; ; restarts++) {
      try {
        const pages = readAhead(paginateUsers(o.client, { PathPrefix: o.pathPrefix, PaginationConfig: { PageSize: o.pageSize, ...(token ? { StartingToken: token } : {}) } }, { abortSignal: o.stop }, first));
        first = undefined;
        for await (const page of pages) {
          const users = page.Users.map(toUserRef);
          const foreign = o.account ? users.find((u) => u.accountId !== o.account) : undefined;
          if (foreign) {
            throw new ExportError(
              'CHECKPOINT_MISMATCH',
              `ListUsers returned users of account ${foreign.accountId}, but these credentials should read account ${o.account}; use the same credentials to resume, or add --fresh to start a new snapshot`,
            );
          }
          const nextToken = page.NextToken ?? null;
          const found = users.filter((u) => this.#missing.has(u.userId));
          const fresh = users.filter((u) => !this.#known.has(u.userId));
          o.onUsersListed?.(fresh.length + found.length, nextToken === null);
          await this.#emit({ kind: 'users-page', account: o.account, token, nextToken, users });
          // The last page: the verifying scan can start now, while its users are paged.
          if (nextToken === null && !this.#listingVerified && !this.#earlyScan) {
            this.#earlyScan = this.#scan();
            this.#earlyScan.catch(() => undefined); // observed by #verifyListing, or dropped by run()
          }
          token = nextToken;
          for (const user of [...found, ...fresh]) {
            await this.#slot();
            if (this.#halted()) return;
            if (this.#missing.delete(user.userId)) await this.#emit({ kind: 'user-found', user });
            this.#start(user, null);
          }
          if (this.#halted()) return;
        }
        this.#listingDone = true;
        return;
      } catch (err) {
        if (o.stop.aborted) return;
        if (token !== null && restarts < MAX_LISTING_RESTARTS && isRejectedMarker(err)) {
          // The stored Marker expired or IAM changed under it: list again from the
          // start; users already known are skipped by id, so nothing is read twice.
          await this.#emit({ kind: 'users-restarted', account: o.account });
          token = null;
          continue;
        }
        const action = classifyUserError(err, this.#site('ListUsers', 'iam:ListUsers'));
        if (action.kind === 'throttled') return o.onThrottled();
        throw action.kind === 'fatal' ? action.error : classifyFatal(err, this.#site('ListUsers', 'iam:ListUsers'));
      }
    }
  }

  /**
   * Full ListUsers scans once the listing is done, until one finds no user the
   * snapshot does not know and no missing user: users renamed behind the listing's
   * cursor (or created since) are started; missing users found under a new name are
   * paged again from the start, the others (not listed, or listed under the very
   * name IAM said NoSuchEntity for: a listing lagging a deletion) vanished. After
   * MAX_SCANS the listing counts as verified whatever the last scan found: IAM that
   * never stops changing cannot be caught.
   *
   * The first scan starts as the listing's last page comes, so it costs no round
   * trips after the last user is paged. It stands only if no user turned missing or
   * failed while it ran (a rename after it read past a user, or an account closed
   * under the run, is what it cannot have seen): otherwise it is dropped and the
   * users are scanned again once every one of them settled, as without it.
   */
  async #verifyListing(): Promise<void> {
    const o = this.#o;
    for (let round = 1; this.#listingDone && !this.#listingVerified && !this.#halted(); round++) {
      let scanned: Scanned | undefined;
      try {
        const early = this.#earlyScan;
        this.#earlyScan = undefined;
        if (early) {
          scanned = await early;
          await this.#settled();
          if ([...this.#missing.keys()].some((id) => !scanned!.missingAtStart.has(id)) || this.#failedTotal !== scanned.failedAtStart) scanned = undefined;
        }
        scanned ??= await this.#scan();
      } catch (err) {
        if (o.stop.aborted) return;
        const action = classifyUserError(err, this.#site('ListUsers', 'iam:ListUsers'));
        if (action.kind === 'throttled') return o.onThrottled();
        throw action.kind === 'fatal' ? action.error : classifyFatal(err, this.#site('ListUsers', 'iam:ListUsers'));
      }
      const unknown: UserRef[] = [];
      const renamed: UserRef[] = [];
      for (const u of scanned.users) {
        const m = this.#missing.get(u.userId);
        if (m) {
          if (m.user.userName !== u.userName) renamed.push(u);
        } else if (!this.#known.has(u.userId)) unknown.push(u);
      }
      // The last allowed scan pages nobody again: the missing users are vanished.
      const last = round >= MAX_SCANS;
      const renamedIds = new Set(last ? [] : renamed.map((u) => u.userId));
      await this.#vanishMissing((id) => !renamedIds.has(id));
      const complete = (unknown.length === 0 && renamed.length === 0) || last;
      o.onUsersListed?.(unknown.length, true);
      await this.#emit({ kind: 'users-scanned', account: o.account, users: unknown, complete });
      for (const user of [...(last ? [] : renamed), ...unknown]) {
        await this.#slot();
        if (this.#halted()) return;
        if (this.#missing.delete(user.userId)) await this.#emit({ kind: 'user-found', user });
        this.#start(user, null);
      }
      await this.#settled();
      if (last) await this.#vanishMissing(() => true);
      this.#listingVerified = complete && this.#missing.size === 0;
    }
  }

  /**
   * One full ListUsers scan. Keeps only the users it may have to judge: those the
   * snapshot does not know and missing ones (keeping every user would be memory by
   * the size of the account). A user that turns missing after the scan read it drops
   * the scan (see #verifyListing), so a known user read then needs no keeping.
   */
  async #scan(): Promise<Scanned> {
    const o = this.#o;
    const missingAtStart = new Set(this.#missing.keys());
    const failedAtStart = this.#failedTotal;
    const users = new Map<string, UserRef>();
    const signal = AbortSignal.any([o.stop, this.#scanStop.signal]);
    for await (const page of paginateUsers(o.client, { PathPrefix: o.pathPrefix, PaginationConfig: { PageSize: SCAN_PAGE_SIZE } }, { abortSignal: signal })) {
      for (const u of page.Users.map(toUserRef)) {
        if (!this.#known.has(u.userId) || this.#missing.has(u.userId)) users.set(u.userId, users.get(u.userId) ?? u);
      }
    }
    return { users: [...users.values()], missingAtStart, failedAtStart };
  }

  /** Declares the missing users `which` selects vanished. */
  async #vanishMissing(which: (userId: string) => boolean): Promise<void> {
    for (const [id, m] of [...this.#missing]) {
      if (!which(id)) continue;
      this.#missing.delete(id);
      await this.#emit({ kind: 'user-vanished', user: m.user });
      this.#o.onUserFinished?.();
    }
  }

  async #pageUser(user: UserRef, startToken: string | null): Promise<void> {
    const o = this.#o;
    if (o.stop.aborted) return;
    let token = startToken; // where this user resumes: advanced with every page pushed
    let restarts = 0;
    const site = this.#site(`ListAccessKeys for user ${user.userName}`, 'iam:ListAccessKeys');
    for (;;) {
      // Unbounded runs page the user in one iteration; bounded ones reserve a slice
      // of the key budget per iteration (the seed's MaxItems / NextToken contract).
      const grant = o.budget ? await o.budget.take(o.pageSize) : undefined;
      if (grant === 0 || o.stop.aborted) {
        if (grant) o.budget?.settle(grant, 0);
        return; // stopped: the user stays where its last committed page left it
      }
      let got = 0;
      let more = false;
      try {
        // Asked already, when the listing's first page came: only a paging from the start
        // with no budget asks what it asked (the same request), once.
        const first = token === null && grant === undefined ? o.takeFirstKeysPage?.(user) : undefined;
        const pages = paginateAccessKeys(
          o.client,
          { UserName: user.userName, PaginationConfig: { PageSize: o.pageSize, ...(grant ? { MaxItems: grant } : {}), ...(token ? { StartingToken: token } : {}) } },
          { abortSignal: o.stop },
          first,
        );
        for await (const page of pages) {
          if (o.stop.aborted) return;
          const items: SourceItem[] = page.AccessKeyMetadata.map((key) => ({ type: 'RECORD', record: { user, key } }));
          got += items.length;
          more = page.NextToken !== undefined;
          // A page and the STATE that vouches for it travel as one unit: the writer
          // commits records only together with the STATE after them.
          if (page.NextToken !== undefined) {
            token = page.NextToken;
            await this.#emit({ kind: 'user-page', user, nextToken: page.NextToken }, items);
          } else {
            await this.#emit({ kind: 'user-done', user }, items);
            this.#exported++;
            o.onUserFinished?.();
          }
        }
      } catch (err) {
        if (o.stop.aborted) return; // an aborted call: its page was not emitted, the token still holds
        if (token !== null && restarts < MAX_LISTING_RESTARTS && isRejectedMarker(err)) {
          // IAM no longer takes the Marker (expired, or the user was renamed under
          // it): read the user's keys again from the start. Rows committed before
          // may come again; the merge keeps one per access key id.
          restarts++;
          token = null;
          await this.#emit({ kind: 'user-restarted', user });
          more = true;
          continue;
        }
        await this.#onUserError(err, user, token, site);
        return;
      } finally {
        if (grant !== undefined) o.budget?.settle(grant, got);
      }
      if (!more) return;
    }
  }

  async #onUserError(err: unknown, user: UserRef, token: string | null, site: CallSite): Promise<void> {
    const o = this.#o;
    const action = classifyUserError(err, site);
    switch (action.kind) {
      case 'fatal':
        return o.onFatal(action.error);
      case 'throttled':
        return o.onThrottled();
      case 'missing':
        this.#missing.set(user.userId, { user, token });
        return this.#emit({ kind: 'user-missing', user, token });
      case 'user-failed':
        this.#failures.add(action.code);
        this.#failedTotal++;
        await this.#emit({ kind: 'user-failed', user, code: action.code, token });
        o.onUserFinished?.();
        this.#checkSystemic(false);
    }
  }

  /**
   * A failure that hits every user is not about users: when no user of the
   * snapshot was ever exported and the first min(20, all) users tried all failed
   * with the same code, the identity lacks a permission (or IAM is down): stop
   * the run (exit 1, nothing published, even with --allow-partial).
   */
  #checkSystemic(atEnd: boolean): void {
    if (this.#systemicChecked || this.#exported > 0) return;
    const sample = atEnd && this.#listingDone ? Math.min(SYSTEMIC_SAMPLE, this.#known.size) : SYSTEMIC_SAMPLE;
    if (this.#failedTotal < sample || sample === 0 || this.#failures.size !== 1) return;
    this.#systemicChecked = true;
    const [code] = [...this.#failures] as [string];
    const denied = code === 'AccessDenied' || code === 'AccessDeniedException';
    this.#o.onFatal(
      new ExportError(
        denied ? 'SOURCE_DENIED' : 'SOURCE_FAILED',
        denied
          ? `ListAccessKeys was denied (${code}) for every one of the first ${this.#failedTotal} users: the identity needs iam:ListAccessKeys; nothing was published, the checkpoint is kept`
          : `ListAccessKeys failed with ${code} for every one of the first ${this.#failedTotal} users: this is not about single users; nothing was published, the checkpoint is kept`,
        { awsCode: code },
      ),
    );
  }
}

/**
 * Requests the next page while the current one is being fanned out, so the users
 * of a page never wait for a ListUsers round trip once its last user has started.
 */
export async function* readAhead<T>(source: AsyncIterable<T>): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  let next = it.next();
  try {
    for (;;) {
      const r = await next;
      if (r.done) return;
      next = it.next();
      next.catch(() => undefined); // observed when awaited; never an unhandled rejection
      yield r.value;
    }
  } finally {
    await it.return?.(undefined);
  }
}
