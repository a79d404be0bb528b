/**
 * The SDK's adaptive retry strategy, with its rate limiter fed only by throttling
 * that looks rate-induced.
 *
 * The SDK's cubic rate limiter cuts the sending rate by 30% on every throttle. Under
 * a server-side token bucket that is right. But when throttles come at random (IAM
 * throttles an account's bucket that other clients drain too; our fault matrix
 * throttles 10-12% of calls at random) each cut finds the rate no lower in throttles,
 * so it spirals to its 0.5 req/s floor: measured here, 330 calls with 10% random
 * throttles took 76 s at concurrency 8 with the SDK's own adaptive mode, 2.6 s gated.
 *
 * So the limiter sees a throttle as a throttle only while throttles are a large
 * share (30%) of the last 100 answers (exceeding a rate limit makes them so; 12%
 * random throttles reach it with odds below 1 in 10,000), and at most once
 * a second (its cut needs that long to show). A scattered throttle is still retried
 * with the SDK's throttling backoff; the limiter does not see it at all (passing it
 * on as a success made the rate overshoot: a 25 req/s limit was used at 0.74-0.8,
 * now 0.87-0.88; the SDK's ungated mode, 0.89). Retries, backoff, the retry quota
 * and the cubic algorithm stay the SDK's.
 */
import { AdaptiveRetryStrategy, DefaultRateLimiter, type RateLimiter } from '@smithy/core/retry';

/** Recent answers the throttle share is measured over. */
export const THROTTLE_WINDOW = 100;
/** Fewer answers than this are too few to judge a share. */
export const THROTTLE_MIN_SAMPLE = 50;
/** Share of throttled answers in the window from which throttles lower the rate. */
export const THROTTLE_SHARE = 0.3;
/** At most one rate cut per this many milliseconds. */
export const THROTTLE_COOLDOWN_MS = 1000;

/** A RateLimiter that forwards throttles to `inner` only when they are frequent. */
export class ThrottleShareGate implements RateLimiter {
  readonly #inner: RateLimiter;
  readonly #now: () => number;
  readonly #window: boolean[] = [];
  #throttled = 0;
  #answers = 0;
  #ever = false;
  #lastCut = Number.NEGATIVE_INFINITY;

  constructor(inner: RateLimiter = new DefaultRateLimiter(), now: () => number = Date.now) {
    this.#inner = inner;
    this.#now = now;
  }

  getSendToken(): Promise<void> {
    return this.#inner.getSendToken();
  }

  /**
   * Whether the client has had THROTTLE_MIN_SAMPLE answers and not one throttle among
   * them or since: its account's rate limit is not what bounds it (yet).
   */
  get unthrottled(): boolean {
    return !this.#ever && this.#answers >= THROTTLE_MIN_SAMPLE;
  }

  /** The share of throttled answers among the last THROTTLE_WINDOW. */
  get share(): number {
    return this.#window.length === 0 ? 0 : this.#throttled / this.#window.length;
  }

  updateClientSendingRate(response: unknown): void {
    const throttled = (response as { errorType?: unknown } | undefined)?.errorType === 'THROTTLING';
    this.#window.push(throttled);
    this.#answers++;
    if (throttled) {
      this.#throttled++;
      this.#ever = true;
    }
    if (this.#window.length > THROTTLE_WINDOW && this.#window.shift()) this.#throttled--;
    const now = this.#now();
    const cut = throttled && this.#window.length >= THROTTLE_MIN_SAMPLE && this.share >= THROTTLE_SHARE && now - this.#lastCut >= THROTTLE_COOLDOWN_MS;
    if (cut) this.#lastCut = now;
    // A throttle that does not cut is neither a cut nor a success: the rate stays.
    if (!throttled || cut) this.#inner.updateClientSendingRate(response);
  }
}

/** The retry strategy of every IAM client of a run. */
export function createRetryStrategy(maxAttempts: number, gate: ThrottleShareGate = new ThrottleShareGate()): AdaptiveRetryStrategy {
  // A number, not a provider: with options, the SDK takes a provider as "3 attempts".
  return new AdaptiveRetryStrategy(maxAttempts, { rateLimiter: gate });
}
