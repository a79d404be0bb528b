/**
 * The source: lists users page by page and pages the keys of at most
 * `concurrency` users at once (p-limit), emitting RECORD and STATE items into one
 * bounded channel. Listing pauses while `concurrency` users are already queued or
 * running, so neither memory nor pending work grows with the number of users.
 *
 * Stopping (signal, time budget, max items, a fatal error elsewhere) is graceful:
 * no new call starts, in-flight calls are aborted and their pages dropped, and the
 * channel closes so the writer can commit everything before the stop.
 */
import { setMaxListeners } from 'node:events';
import { Readable } from 'node:stream';
import type { IAMClient } from '@aws-sdk/client-iam';
import pLimit from 'p-limit';
import { classifyFatal, classifyUserError, ExportError } from '../errors.ts';
import type { Batch, Item, SourceKey, UserRef } from '../items.ts';
import type { ResumePlan } from '../checkpoint.ts';
import { Channel } from './channel.ts';
import { paginateAccessKeys, paginateUsers } from './paginate.ts';
import { toUserRef } from './users.ts';

/**
 * A shared allowance of keys for a bounded run (--max-items). Users reserve up to
 * a page of keys before each request and settle what they used; a user finding the
 * allowance reserved by others waits for their settlement instead of giving up,
 * so the run stops only when N keys were really read.
 */
export class KeyBudget {
  #remaining: number;
  #outstanding = 0;
  #waiters: (() => void)[] = [];
  constructor(maxItems: number) {
    this.#remaining = maxItems;
  }
  /** True once every key of the allowance was read. */
  get exhausted(): boolean {
    return this.#remaining <= 0 && this.#outstanding === 0;
  }
  /** Reserves up to `want` keys; resolves 0 when the allowance is spent. */
  async take(want: number): Promise<number> {
    while (this.#remaining <= 0 && this.#outstanding > 0) await new Promise<void>((r) => this.#waiters.push(r));
    const grant = Math.min(want, this.#remaining);
    this.#remaining -= grant;
    this.#outstanding += grant;
    return grant;
  }
  /** Settles a reservation: `used` keys were read, the rest returns to the allowance. */
  settle(grant: number, used: number): void {
    this.#outstanding -= grant;
    this.#remaining += grant - used;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

export interface SourceOptions {
  readonly client: IAMClient;
  readonly pathPrefix: string;
  readonly pageSize: number;
  readonly concurrency: number;
  readonly plan: ResumePlan;
  /** Graceful stop: start nothing new, abort in-flight calls, end the stream. */
  readonly stop: AbortSignal;
  /** Called with an error that must end the run (the caller then aborts `stop`). */
  readonly onFatal: (error: unknown) => void;
  /** --max-items: when spent, no new page is requested and the stream ends. */
  readonly budget?: KeyBudget | undefined;
  /** The account a resumed snapshot was started on; users of another account are a mismatch. */
  readonly expectedAccountId?: string | null;
  /** Progress hook: a user is finished (done, vanished or failed), not yet durable. */
  readonly onUserFinished?: () => void;
  /** Progress hook: called with the size of every ListUsers page, and whether it was the last. */
  readonly onUsersListed?: (count: number, last: boolean) => void;
}

type SourceItem = Item<SourceKey>;

/** The source as an object-mode Readable of batches of RECORD and STATE items (one page each). */
export function sourceStream(options: SourceOptions): Readable {
  // Room for a few pages per user being paged: enough to keep the writer busy.
  const channel = new Channel<Batch<SourceKey>>(options.concurrency * 4);
  // When the pipeline tears the stream down (an error downstream), stop paging too.
  const destroyed = new AbortController();
  const o = { ...options, stop: AbortSignal.any([options.stop, destroyed.signal]) };
  // Every in-flight SDK call listens on the stop signal: up to concurrency × retries.
  setMaxListeners(0, o.stop);
  runSource(o, channel).then(
    () => channel.close(),
    (err: unknown) => channel.fail(err),
  );
  const readable = Readable.from(channel, { objectMode: true, highWaterMark: 16 });
  readable.once('close', () => {
    destroyed.abort();
    channel.close();
  });
  return readable;
}

async function runSource(o: SourceOptions, out: Channel<Batch<SourceKey>>): Promise<void> {
  const limit = pLimit(o.concurrency);
  const running = new Set<Promise<void>>();
  const send = { abortSignal: o.stop };
  const halted = () => o.stop.aborted || o.budget?.exhausted === true;

  const start = (user: UserRef, token: string | null) => {
    const task = limit(() => pageUser(o, out, user, token));
    running.add(task);
    void task.finally(() => running.delete(task)).catch(() => undefined);
  };
  // Wait for a free slot so listing never runs ahead of the fan-out.
  const slot = async () => {
    while (running.size >= o.concurrency && !halted()) await Promise.race(running);
  };

  try {
    for (const r of o.plan.resume) {
      await slot();
      if (halted()) break;
      start(r.user, r.token);
    }
    if (!o.plan.listingDone && !halted()) {
      let token = o.plan.listToken;
      const pages = readAhead(
        paginateUsers(o.client, { PathPrefix: o.pathPrefix, PaginationConfig: { PageSize: o.pageSize, ...(token ? { StartingToken: token } : {}) } }, send),
      );
      for await (const page of pages) {
        const users = page.Users.map(toUserRef);
        const foreign = o.expectedAccountId ? users.find((u) => u.accountId !== o.expectedAccountId) : undefined;
        if (foreign) {
          throw new ExportError(
            'CHECKPOINT_MISMATCH',
            `the unfinished snapshot was started on account ${o.expectedAccountId}, but these credentials list users of account ${foreign.accountId}; use the same credentials to resume, or add --fresh to start a new snapshot`,
          );
        }
        const nextToken = page.NextToken ?? null;
        o.onUsersListed?.(users.filter((u) => !o.plan.skip.has(u.userName)).length, nextToken === null);
        await out.push([{ type: 'STATE', state: { kind: 'users-page', token, nextToken, users } }]);
        token = nextToken;
        for (const user of users) {
          if (o.plan.skip.has(user.userName)) continue;
          await slot();
          if (halted()) break;
          start(user, null);
        }
        if (halted()) break;
      }
    }
  } catch (err) {
    if (!o.stop.aborted) o.onFatal(classifyFatal(err, 'ListUsers'));
  }
  // Tasks never reject: they report through requestStop.
  await Promise.all(running);
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

async function pageUser(o: SourceOptions, out: Channel<Batch<SourceKey>>, user: UserRef, startToken: string | null): Promise<void> {
  if (o.stop.aborted) return;
  let token = startToken; // where this user resumes: advanced with every page pushed
  try {
    for (;;) {
      // Unbounded runs page the user in one iteration; bounded ones reserve a slice
      // of the key budget per iteration (the seed's MaxItems / NextToken contract).
      const grant = o.budget ? await o.budget.take(o.pageSize) : undefined;
      if (grant === 0 || o.stop.aborted) return; // stopped: the user stays in progress at `token`
      let got = 0;
      let more = false;
      try {
        const pages = paginateAccessKeys(
          o.client,
          { UserName: user.userName, PaginationConfig: { PageSize: o.pageSize, ...(grant ? { MaxItems: grant } : {}), ...(token ? { StartingToken: token } : {}) } },
          { abortSignal: o.stop },
        );
        for await (const page of pages) {
          if (o.stop.aborted) return;
          const items: SourceItem[] = page.AccessKeyMetadata.map((key) => ({ type: 'RECORD', record: { user, key } }));
          got += items.length;
          more = page.NextToken !== undefined;
          // A page and the STATE that vouches for it travel as one unit: the writer
          // commits records only together with the STATE after them.
          if (page.NextToken !== undefined) {
            items.push({ type: 'STATE', state: { kind: 'user-page', user, nextToken: page.NextToken } });
            token = page.NextToken;
          } else {
            items.push({ type: 'STATE', state: { kind: 'user-done', user } });
          }
          await out.push(items);
          if (page.NextToken === undefined) o.onUserFinished?.();
        }
      } finally {
        if (grant !== undefined) o.budget?.settle(grant, got);
      }
      if (!more) return;
    }
  } catch (err) {
    if (o.stop.aborted) return; // an aborted call: its page was not emitted, the token still holds
    const action = classifyUserError(err, user.userName);
    if (action.kind === 'fatal') return o.onFatal(action.error);
    const state = action.kind === 'vanished' ? ({ kind: 'user-vanished', user } as const) : ({ kind: 'user-failed', user, code: action.code, token } as const);
    await out.push([{ type: 'STATE', state }]);
    o.onUserFinished?.();
  }
}
