/**
 * Fault injection: latency, server-side rate limits (over all requests and per
 * account, as IAM throttles each account with its own buckets), random
 * throttles, 500s and dropped connections, and per-user fates. Decisions are
 * seeded and the clock is injected, so the logic is testable without a
 * server or real time.
 */
import { invalidClientTokenId, serviceFailure, throttling, type IamError } from './errors.ts';
import { streamFor, type Random } from './random.ts';
import { DEFAULT_REPORT_TIMING, type CredentialReportTiming } from './report.ts';

/** A token bucket over all API requests: `burst` tokens, refilled at `perSecond`. */
export interface RateLimit {
  readonly perSecond: number;
  readonly burst: number;
}

/** Everything that can be changed on a running fake with `configure()`. */
export interface FaultOptions {
  /** Fixed delay before answering each request. */
  readonly latencyMs: number;
  /** Uniform extra delay in [0, jitterMs) on top of latencyMs. */
  readonly jitterMs: number;
  /** `null`: no rate limit. */
  readonly rateLimit: RateLimit | null;
  /** Share of requests answered 400 Throttling. */
  readonly throttleProbability: number;
  /** Share of requests answered 500 ServiceFailure. */
  readonly serverErrorProbability: number;
  /** Share of requests whose connection is destroyed without an answer. */
  readonly dropProbability: number;
  /** Share of users listed by ListUsers whose ListAccessKeys answers 404 NoSuchEntity. */
  readonly vanishedFraction: number;
  /** Share of users whose ListAccessKeys answers 403 AccessDenied. */
  readonly deniedFraction: number;
  /** Every call answers 403 InvalidClientTokenId. */
  readonly invalidCredentials: boolean;
  /** ListUsers answers 403 AccessDenied. */
  readonly listUsersDenied: boolean;
  /**
   * A Marker (of either listing) issued before the account's latest change is
   * answered 400 ValidationError, like an IAM marker that expired: the client
   * must restart that listing.
   */
  readonly rejectStaleMarkers: boolean;
  /**
   * The account GetCallerIdentity reports, to play credentials of another
   * account; `null`: the account the fake serves.
   */
  readonly callerAccountId: string | null;
  /** GetAccessKeyLastUsed answers 403 AccessDenied. */
  readonly lastUsedDenied: boolean;
  /** GenerateCredentialReport and GetCredentialReport answer 403 AccessDenied. */
  readonly reportDenied: boolean;
  /** GenerateCredentialReport answers 409 LimitExceeded. */
  readonly reportLimitExceeded: boolean;
  /** How long a credential report takes to generate and how long it stays fresh. */
  readonly credentialReport: CredentialReportTiming;
  /** The only role that exists in member accounts; AssumeRole of any other answers AccessDenied. */
  readonly roleName: string;
  /** When set, AssumeRole must pass exactly this ExternalId (else AccessDenied). */
  readonly externalId: string | null;
  /** Accounts whose role refuses AssumeRole (AccessDenied), as a broken trust policy would. */
  readonly assumeRoleDenied: readonly string[];
  /** Accounts whose ListUsers answers AccessDenied (the role there lacks iam:ListUsers, or an SCP denies it). */
  readonly listUsersDeniedAccounts: readonly string[];
  /** Whether the role exists in the management account too (by default, as in AWS, it does not). */
  readonly roleInManagementAccount: boolean;
  /** A token bucket per account, for every request signed by that account's credentials; `null`: none. */
  readonly accountRateLimit: RateLimit | null;
  /** Per-account overrides of `accountRateLimit` (null: no limit for that account). */
  readonly accountRateLimits: Readonly<Record<string, RateLimit | null>>;
  /** Extra latency for requests signed by an account's credentials. */
  readonly accountLatencyMs: Readonly<Record<string, number>>;
}

/** A change to fault options: any subset, and of `credentialReport` either field alone. */
export type FaultPatch = Partial<Omit<FaultOptions, 'credentialReport'>> & { readonly credentialReport?: Partial<CredentialReportTiming> };

export const DEFAULT_FAULTS: FaultOptions = Object.freeze({
  latencyMs: 0,
  jitterMs: 0,
  rateLimit: null,
  throttleProbability: 0,
  serverErrorProbability: 0,
  dropProbability: 0,
  vanishedFraction: 0,
  deniedFraction: 0,
  invalidCredentials: false,
  listUsersDenied: false,
  rejectStaleMarkers: false,
  callerAccountId: null,
  lastUsedDenied: false,
  reportDenied: false,
  reportLimitExceeded: false,
  credentialReport: DEFAULT_REPORT_TIMING,
  roleName: 'OrganizationAccountAccessRole',
  externalId: null,
  assumeRoleDenied: [],
  listUsersDeniedAccounts: [],
  roleInManagementAccount: false,
  accountRateLimit: null,
  accountRateLimits: {},
  accountLatencyMs: {},
});

/** A token bucket; starts full, so a burst is served at once. */
export class TokenBucket {
  readonly #limit: RateLimit;
  readonly #now: () => number;
  #tokens: number;
  #updatedAt: number;

  /** @param now monotonic milliseconds */
  constructor(limit: RateLimit, now: () => number) {
    this.#limit = limit;
    this.#now = now;
    this.#tokens = limit.burst;
    this.#updatedAt = now();
  }

  /** Takes a token if one is there; never waits. */
  tryTake(): boolean {
    const now = this.#now();
    const refill = ((now - this.#updatedAt) / 1000) * this.#limit.perSecond;
    this.#tokens = Math.min(this.#limit.burst, this.#tokens + refill);
    this.#updatedAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

const sameLimit = (a: RateLimit | null, b: RateLimit | null): boolean => a?.perSecond === b?.perSecond && a?.burst === b?.burst;

/** The limit of one account's bucket: its override if it has one, else the common one. */
function accountLimit(options: FaultOptions, accountId: string): RateLimit | null {
  return Object.hasOwn(options.accountRateLimits, accountId) ? (options.accountRateLimits[accountId] ?? null) : options.accountRateLimit;
}

/** What happens to a user's per-user calls. */
export type UserFate = 'present' | 'vanished' | 'denied';

/**
 * The fate of the user at `rank` (see `FakeUser.fateRank`) on a scale of
 * `userCount` users (the number generated, `Dataset.fateScale`): the lowest
 * ranks vanish, the next ones are denied. Shares are rounded to whole users so
 * a fraction means the same count every time.
 */
export function userFate(rank: number, userCount: number, options: Pick<FaultOptions, 'vanishedFraction' | 'deniedFraction'>): UserFate {
  const vanished = Math.round(options.vanishedFraction * userCount);
  const denied = Math.round(options.deniedFraction * userCount);
  if (rank < vanished) return 'vanished';
  if (rank < vanished + denied) return 'denied';
  return 'present';
}

/** What to do with a request once its latency has passed. */
export type Verdict = { readonly kind: 'answer' } | { readonly kind: 'drop' } | { readonly kind: 'fail'; readonly error: IamError };

const ANSWER: Verdict = Object.freeze({ kind: 'answer' });

/**
 * Decides, request by request, which faults to inject. Holds the only mutable
 * fault state: the current options, the rate-limit bucket and the seeded streams.
 */
export class FaultInjector {
  #options: FaultOptions;
  #bucket: TokenBucket | null;
  /** One bucket per account that has a limit, made on its first request. */
  #accountBuckets = new Map<string, TokenBucket>();
  readonly #now: () => number;
  readonly #faultRandom: Random;
  readonly #jitterRandom: Random;

  constructor(seed: number, options: FaultOptions, now: () => number = () => performance.now()) {
    this.#now = now;
    this.#options = options;
    this.#bucket = options.rateLimit ? new TokenBucket(options.rateLimit, now) : null;
    this.#faultRandom = streamFor(seed, 'faults');
    this.#jitterRandom = streamFor(seed, 'jitter');
  }

  get options(): FaultOptions {
    return this.#options;
  }

  /**
   * Replaces the options (already validated). A changed rate limit starts
   * with a full bucket; an unchanged one keeps its state, so toggling another
   * fault does not hand out a free burst.
   */
  configure(options: FaultOptions): void {
    if (!sameLimit(this.#options.rateLimit, options.rateLimit)) {
      this.#bucket = options.rateLimit ? new TokenBucket(options.rateLimit, this.#now) : null;
    }
    for (const account of [...this.#accountBuckets.keys()]) {
      if (!sameLimit(accountLimit(this.#options, account), accountLimit(options, account))) this.#accountBuckets.delete(account);
    }
    this.#options = options;
  }

  /**
   * Checked on arrival, before any latency: IAM rejects a request over its
   * rate at once. Bad credentials win over the rate limit, because "every call
   * answers InvalidClientTokenId" is what that mode promises. `accountId` is
   * the account whose credentials signed the request.
   */
  onArrival(accountId?: string): IamError | undefined {
    if (this.#options.invalidCredentials) return undefined;
    if (this.#bucket && !this.#bucket.tryTake()) return throttling();
    const bucket = accountId === undefined ? undefined : this.#accountBucket(accountId);
    return bucket && !bucket.tryTake() ? throttling() : undefined;
  }

  #accountBucket(accountId: string): TokenBucket | undefined {
    const limit = accountLimit(this.#options, accountId);
    if (!limit) return undefined;
    let bucket = this.#accountBuckets.get(accountId);
    if (!bucket) {
      bucket = new TokenBucket(limit, this.#now);
      this.#accountBuckets.set(accountId, bucket);
    }
    return bucket;
  }

  /** How long to wait before answering this request (of `accountId`'s credentials). */
  delayMs(accountId?: string): number {
    const { latencyMs, jitterMs, accountLatencyMs } = this.#options;
    // Always draw, so the jitter sequence does not depend on whether jitter was on.
    const draw = this.#jitterRandom();
    const extra = accountId === undefined ? 0 : (accountLatencyMs[accountId] ?? 0);
    return latencyMs + draw * jitterMs + extra;
  }

  /** The request's fate once its latency has passed. */
  afterDelay(): Verdict {
    const { invalidCredentials, dropProbability, throttleProbability, serverErrorProbability } = this.#options;
    // One draw per request whatever the options, so changing one probability
    // does not shift which later requests the other faults hit.
    const draw = this.#faultRandom();
    if (invalidCredentials) return { kind: 'fail', error: invalidClientTokenId() };
    if (draw < dropProbability) return { kind: 'drop' };
    if (draw < dropProbability + throttleProbability) return { kind: 'fail', error: throttling() };
    if (draw < dropProbability + throttleProbability + serverErrorProbability) return { kind: 'fail', error: serviceFailure() };
    return ANSWER;
  }
}
