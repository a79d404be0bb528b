/**
 * --concurrency as requests on the wire: at most N requests of one account's IAM
 * client are out at once, whatever asked them (the fan-out's ListAccessKeys, the
 * listing's ListUsers, the account's facts, the credential report, GetAccessKeyLastUsed).
 *
 * The limit sits at the SDK's request handler, below its middleware: a call waits for a
 * slot with its request already serialized and signed, and holds the slot only while
 * the request is out, until its whole answer has arrived. Parsing that answer, and
 * what the export does with it, happen outside the slot. So when an answer comes, the
 * next request goes out at once instead of after the SDK has parsed the answer and the
 * fan-out has started its next user; on one thread shared by every call, that was a
 * few milliseconds of each ~40 ms round (measured in bench/HISTORY.md). The SDK takes
 * up an answer only in the event loop's next check phase: answers that arrived in one
 * turn (Node reads each socket in its own callback of the poll phase) each send their
 * slot's next request first, instead of the later ones waiting until the SDK has
 * parsed the earlier ones and the export has written their keys.
 *
 * A call whose stop signal fires while it waits is handed to the SDK's handler with
 * that signal, which rejects it as the SDK rejects any aborted call, without sending it.
 */
import type { IAMClient } from '@aws-sdk/client-iam';

/**
 * Users the fan-out pages at once per wire slot once the account's client has had 50
 * answers and no throttle: one whose request is out, and two whose request is built and
 * signed, waiting for the slot. At 16 slots and 40 ms a call, 2,000 users took ~40–70 ms
 * less of ~5.7 s than with one user per slot; 2 per slot gained less, 4 no more. Where
 * the account's rate limit is the bottleneck, the extra callers only draw more throttles
 * and deeper backoffs (an organization at 20 req/s per account took 1.5× as long, even
 * when they were dropped at the first throttle): there, and until that is known, one
 * user per slot (bench/HISTORY.md).
 */
export const USERS_PER_SLOT = 3;

/** Wire-limited clients, each with whether it has answers enough and no throttle (see usersAtOnce). */
const limitedClients = new WeakMap<IAMClient, () => boolean>();

/**
 * Users to page at once with `client` at --concurrency `concurrency`: USERS_PER_SLOT per
 * slot for a client whose requests wait for wire slots (limitWire) and that is
 * unthrottled (enough answers, no throttle); else `concurrency`, each user's request
 * going out as it is built.
 */
export function usersAtOnce(client: IAMClient, concurrency: number): number {
  const unthrottled = limitedClients.get(client);
  return unthrottled?.() ? concurrency * USERS_PER_SLOT : concurrency;
}

/** A FIFO counting semaphore whose waiters can be aborted. */
export class WireSlots {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(slots: number) {
    if (!Number.isSafeInteger(slots) || slots < 1) throw new RangeError(`wire slots must be a positive integer, got ${slots}`);
    this.#free = slots;
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Resolves true once a slot is taken (in the order callers asked), or false when
   * `signal` is aborted first (no slot taken then).
   */
  take(signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false);
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const granted = () => {
        signal?.removeEventListener('abort', aborted);
        resolve(true);
      };
      const aborted = () => {
        const at = this.#waiting.indexOf(granted);
        if (at >= 0) this.#waiting.splice(at, 1);
        resolve(false);
      };
      signal?.addEventListener('abort', aborted, { once: true });
      this.#waiting.push(granted);
    });
  }

  /** Gives a taken slot back: to the first waiter, else to the pool. */
  give(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }
}

/** The SDK's request handler as this module uses it (NodeHttpHandler at run time). */
interface SdkHandler {
  readonly metadata?: unknown;
  handle(request: unknown, options?: { abortSignal?: AbortSignal | undefined }): Promise<{ response: { body?: unknown } }>;
  destroy?(): void;
  updateHttpClientConfig?(key: never, value: never): void;
  httpHandlerConfigs?(): unknown;
}

/** What an answer's body tells of its arrival: Node's IncomingMessage says `complete` once its last byte is in. */
interface ArrivingBody {
  readonly complete?: boolean;
  once?(event: 'end' | 'close' | 'error', listener: () => void): unknown;
}

/**
 * Puts `client`'s requests through `slots` wire slots. Call it once, on a new client,
 * before its first call: the SDK takes the handler when a call's middleware is resolved.
 * `unthrottled` tells whether the client has had answers enough and no throttle (its
 * retry strategy's ThrottleShareGate).
 */
export function limitWire(client: IAMClient, slots: number, unthrottled: () => boolean): WireSlots {
  const wire = new WireSlots(slots);
  limitedClients.set(client, unthrottled);
  const inner = client.config.requestHandler as unknown as SdkHandler;
  const limited: SdkHandler = {
    ...(inner.metadata ? { metadata: inner.metadata } : {}),
    destroy: () => inner.destroy?.(),
    updateHttpClientConfig: (key, value) => inner.updateHttpClientConfig?.(key, value),
    httpHandlerConfigs: () => inner.httpHandlerConfigs?.() ?? {},
    handle: async (request, options = {}) => {
      // Aborted while waiting: the SDK's handler rejects it as aborted, sending nothing.
      if (!(await wire.take(options.abortSignal))) return inner.handle(request, options);
      let held = true;
      const give = () => {
        if (!held) return;
        held = false;
        wire.give();
      };
      try {
        const out = await inner.handle(request, options);
        // The answer's head is in. Its body too when it came with it (every IAM answer but
        // a large page or report); otherwise the slot is held until the body has been read.
        const body = out.response.body as ArrivingBody | undefined;
        if (body?.complete === false && typeof body.once === 'function') {
          body.once('end', give);
          body.once('close', give);
          body.once('error', give);
        } else give();
        // The SDK parses the answer (and the export takes its keys) in the loop's check
        // phase: the answers read in this poll phase send their next requests first.
        await new Promise<void>((resolve) => setImmediate(resolve));
        return out;
      } catch (err) {
        give();
        throw err;
      }
    },
  };
  (client.config as { requestHandler: unknown }).requestHandler = limited;
  return wire;
}
