/**
 * What the fake saw: calls per action, concurrency peaks and the faults it
 * injected. Tests and the benchmark read these to check how a client behaved.
 */
import { ACTIONS, SERVICE_OF, type Action } from './catalog.ts';
import type { IamErrorCode } from './errors.ts';

export interface FakeIamStats {
  /** API requests received per action (every action the fake implements, of every service), whatever their answer. */
  readonly calls: Readonly<Record<Action, number>>;
  /** Requests whose Action the fake does not implement. */
  readonly invalidActions: number;
  /** All API requests received. */
  readonly totalCalls: number;
  /** Requests being handled right now. */
  readonly inFlight: number;
  /** Most requests handled at once, over all actions. */
  readonly peakInFlight: number;
  /** Most requests of each action handled at once. */
  readonly peakInFlightByAction: Readonly<Record<Action, number>>;
  /** Throttling answers, from the rate limit or injected at random. */
  readonly throttled: number;
  /** Of `throttled`, those from the rate limit. */
  readonly rateLimited: number;
  /** Injected 500 ServiceFailure answers. */
  readonly serverErrors: number;
  /** Connections destroyed without an answer. */
  readonly dropped: number;
  /** Every error answer, by code. */
  readonly errors: Readonly<Partial<Record<IamErrorCode, number>>>;
  /**
   * Successful GetAccessKeyLastUsed answers per access key id (retried
   * failures are not lookups), so a test can see a key looked up twice.
   */
  readonly lastUsedLookups: Readonly<Record<string, number>>;
  /**
   * Per account whose credentials signed requests (the base credentials:
   * the management account; AssumeRole sessions: the role's account), for
   * accounts with at least one request since the last reset.
   */
  readonly byAccount: Readonly<Record<string, AccountStats>>;
}

/** What one account's credentials did. */
export interface AccountStats {
  /** Requests per action; only actions called appear. */
  readonly calls: Readonly<Partial<Record<Action, number>>>;
  readonly totalCalls: number;
  /** Throttling answers to this account's requests (rate limits and injected). */
  readonly throttled: number;
  /** Of `throttled`, those from a rate limit (the global one or the account's). */
  readonly rateLimited: number;
  /** Most of this account's requests handled at once. */
  readonly peakInFlight: number;
  /** Most of this account's IAM requests (not STS, not Organizations) handled at once. */
  readonly peakIamInFlight: number;
  /** When the first and the last of these requests arrived (epoch ms). */
  readonly firstAt: number;
  readonly lastAt: number;
}

interface AccountCounters {
  calls: Partial<Record<Action, number>>;
  totalCalls: number;
  throttled: number;
  rateLimited: number;
  inFlight: number;
  peakInFlight: number;
  iamInFlight: number;
  peakIamInFlight: number;
  firstAt: number;
  lastAt: number;
}

const perAction = (value: number): Record<Action, number> =>
  Object.fromEntries(ACTIONS.map((action) => [action, value])) as Record<Action, number>;

/** Where an error answer came from. */
export type ErrorSource = 'rateLimit' | 'injected' | 'action';

/** Mutable counters behind `FakeIam.stats()`. */
export class StatsRecorder {
  #calls = perAction(0);
  #invalidActions = 0;
  #inFlight = 0;
  #inFlightByAction = perAction(0);
  #peak = 0;
  #peakByAction = perAction(0);
  #throttled = 0;
  #rateLimited = 0;
  #serverErrors = 0;
  #dropped = 0;
  #errors: Partial<Record<IamErrorCode, number>> = {};
  #lookups = new Map<string, number>();
  #accounts = new Map<string, AccountCounters>();

  /**
   * Counts a request as received and in flight. Returns the function that ends
   * it; calling that more than once is harmless, since both the answer and the
   * socket closing may report the end.
   */
  begin(action: Action | undefined, accountId?: string): () => void {
    const iam = action !== undefined && SERVICE_OF[action] === 'iam';
    const account = accountId === undefined ? undefined : this.#account(accountId);
    if (account) {
      const now = Date.now();
      if (account.totalCalls === 0) account.firstAt = now;
      account.lastAt = now;
      account.totalCalls++;
      if (action) account.calls[action] = (account.calls[action] ?? 0) + 1;
      account.inFlight++;
      account.peakInFlight = Math.max(account.peakInFlight, account.inFlight);
      if (iam) account.peakIamInFlight = Math.max(account.peakIamInFlight, ++account.iamInFlight);
    }
    if (action) this.#calls[action]++;
    else this.#invalidActions++;
    this.#inFlight++;
    this.#peak = Math.max(this.#peak, this.#inFlight);
    if (action) {
      this.#inFlightByAction[action]++;
      this.#peakByAction[action] = Math.max(this.#peakByAction[action], this.#inFlightByAction[action]);
    }
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#inFlight--;
      if (account) account.inFlight--;
      if (account && iam) account.iamInFlight--;
      if (action) this.#inFlightByAction[action]--;
    };
  }

  #account(accountId: string): AccountCounters {
    let counters = this.#accounts.get(accountId);
    if (!counters) {
      counters = { calls: {}, totalCalls: 0, throttled: 0, rateLimited: 0, inFlight: 0, peakInFlight: 0, iamInFlight: 0, peakIamInFlight: 0, firstAt: 0, lastAt: 0 };
      this.#accounts.set(accountId, counters);
    }
    return counters;
  }

  /** Counts an error answer (to a request signed by `accountId`'s credentials). */
  error(code: IamErrorCode, source: ErrorSource, accountId?: string): void {
    this.#errors[code] = (this.#errors[code] ?? 0) + 1;
    if (code === 'Throttling') this.#throttled++;
    if (source === 'rateLimit') this.#rateLimited++;
    const account = accountId === undefined ? undefined : this.#account(accountId);
    if (account && code === 'Throttling') account.throttled++;
    if (account && source === 'rateLimit') account.rateLimited++;
    if (code === 'ServiceFailure' && source === 'injected') this.#serverErrors++;
  }

  /** Counts a successful GetAccessKeyLastUsed answer. */
  lookedUp(accessKeyId: string): void {
    this.#lookups.set(accessKeyId, (this.#lookups.get(accessKeyId) ?? 0) + 1);
  }

  /** Counts a connection destroyed on purpose. */
  dropped(): void {
    this.#dropped++;
  }

  /** A copy of the counters. */
  snapshot(): FakeIamStats {
    return {
      calls: { ...this.#calls },
      invalidActions: this.#invalidActions,
      totalCalls: ACTIONS.reduce((sum, action) => sum + this.#calls[action], this.#invalidActions),
      inFlight: this.#inFlight,
      peakInFlight: this.#peak,
      peakInFlightByAction: { ...this.#peakByAction },
      throttled: this.#throttled,
      rateLimited: this.#rateLimited,
      serverErrors: this.#serverErrors,
      dropped: this.#dropped,
      errors: { ...this.#errors },
      lastUsedLookups: Object.fromEntries(this.#lookups),
      byAccount: Object.fromEntries(
        [...this.#accounts]
          .filter(([, c]) => c.totalCalls > 0)
          .map(([id, c]) => [id, { calls: { ...c.calls }, totalCalls: c.totalCalls, throttled: c.throttled, rateLimited: c.rateLimited, peakInFlight: c.peakInFlight, peakIamInFlight: c.peakIamInFlight, firstAt: c.firstAt, lastAt: c.lastAt }]),
      ),
    };
  }

  /**
   * Zeroes the counters. Requests still in flight stay counted as in flight,
   * and the peaks restart from them, so the numbers stay true across a reset.
   */
  reset(): void {
    this.#calls = perAction(0);
    this.#invalidActions = 0;
    this.#peak = this.#inFlight;
    this.#peakByAction = { ...this.#inFlightByAction };
    this.#throttled = 0;
    this.#rateLimited = 0;
    this.#serverErrors = 0;
    this.#dropped = 0;
    this.#errors = {};
    this.#lookups = new Map();
    // Accounts keep their requests in flight, as the totals do.
    for (const counters of this.#accounts.values()) {
      Object.assign(counters, { calls: {}, totalCalls: 0, throttled: 0, rateLimited: 0, peakInFlight: counters.inFlight, peakIamInFlight: counters.iamInFlight });
    }
  }
}
