/**
 * Stage enrichLastUsed: the last use of every key (date, service, region) and
 * days_since_last_used, from the credential report or GetAccessKeyLastUsed
 * (source/lastUsed.ts). It runs before the part writer, so records are enriched
 * before they are committed: a resumed run never looks up a committed key again.
 * Several pages are enriched at once, and leave in the order they came.
 */
import type { Batch, Item, UserRef } from '../items.ts';
import type { AccessKeyRecord } from '../schema.ts';
import type { LastUse } from '../source/report.ts';
import { LookupHalt, type LastUsedResolver, type LastUseSource } from '../source/lastUsed.ts';
import { wholeDays } from './deriveAge.ts';
import { orderedTransform } from './transform.ts';

/** Completes a record with its last use (null: never used, or unknown). */
export function withLastUse(record: AccessKeyRecord, lastUse: LastUse | null): AccessKeyRecord {
  const date = lastUse?.date ?? null;
  return {
    ...record,
    last_used_date: date,
    last_used_service: lastUse?.service ?? null,
    last_used_region: lastUse?.region ?? null,
    days_since_last_used: date === null ? null : wholeDays(date, record.snapshot_time),
  };
}

/** Where each enriched record's last use came from, for the manifest's counts. */
const sources = new WeakMap<AccessKeyRecord, LastUseSource>();

/** The source of an enriched record's last use. */
export function lastUseSourceOf(record: AccessKeyRecord): LastUseSource | undefined {
  return sources.get(record);
}

/**
 * The stage. Pages in flight at once: `pages`. Once a lookup says the run must
 * stop, this and every later page are dropped (never committed): the STATE of a
 * later page of the same user must not pass a page that was dropped.
 */
/**
 * `onAccountEnd(id)` is called once the batch holding an account's end (its
 * account-done or account-failed STATE, which comes after every record of it) is
 * decided: no lookup of that account is in flight or still to come, so its resolver
 * can go. `onUserEnd(user)` likewise once the batch holding a user's user-done or
 * user-vanished STATE (after every record of the user) is decided.
 */
export function enrichLastUsedStage(
  resolverOf: (accountId: string) => LastUsedResolver | Promise<LastUsedResolver>,
  pages: number,
  onAccountEnd: (accountId: string) => void = () => undefined,
  onUserEnd: (user: UserRef) => void = () => undefined,
) {
  // Decided in input order: a page is kept only if every page before it was.
  let previous: Promise<boolean> = Promise.resolve(true);
  const enrich = (batch: Batch<AccessKeyRecord>) =>
    Promise.all(
      batch.map(async (item): Promise<Item<AccessKeyRecord>> => {
        if (item.type === 'STATE') return item;
        const { lastUse, source } = await (await resolverOf(item.record.account_id)).resolve(item.record);
        const record = withLastUse(item.record, lastUse);
        sources.set(record, source);
        return { type: 'RECORD', record };
      }),
    );
  return orderedTransform(async (batch: Batch<AccessKeyRecord>): Promise<Batch<AccessKeyRecord> | undefined> => {
    const work = enrich(batch);
    work.catch(() => undefined); // observed below
    const decided = previous.then(async (kept): Promise<Batch<AccessKeyRecord> | undefined> => {
      if (!kept) return undefined;
      try {
        return await work;
      } catch (err) {
        if (err instanceof LookupHalt) return undefined;
        throw err;
      }
    });
    previous = decided.then((out) => out !== undefined, () => false);
    return decided.then((out) => {
      if (out !== undefined) {
        for (const item of out) {
          if (item.type !== 'STATE') continue;
          const state = item.state;
          if (state.kind === 'account-done' || state.kind === 'account-failed') onAccountEnd(state.account);
          else if (state.kind === 'user-done' || state.kind === 'user-vanished') onUserEnd(state.user);
        }
      }
      return out;
    });
  }, pages);
}
