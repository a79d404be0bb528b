/**
 * What flows through the stream: RECORD items (one access key) and STATE items
 * (watermarks), as Singer taps do. A STATE follows the records it vouches for; the
 * writer applies it to the checkpoint only once every record before it is durable.
 *
 * Users are identified by `userId` everywhere (it survives a rename); `userName`
 * is the latest name seen, used to call IAM and to fill the record.
 */
import type { AccessKeyMetadata } from '@aws-sdk/client-iam';
import type { AccessKeyRecord } from './schema.ts';

/** The user a key belongs to, as ListUsers described it. */
export interface UserRef {
  readonly userName: string;
  readonly userId: string;
  readonly accountId: string;
  readonly arn: string;
  readonly path: string;
  /** ISO 8601; null when IAM did not say (it always does). */
  readonly createDate: string | null;
}

/** A key as the source read it, before `toRecord`. */
export interface SourceKey {
  readonly user: UserRef;
  readonly key: AccessKeyMetadata;
}

/** A record before `deriveAge` fills in its derived column. */
export type BaseRecord = Omit<AccessKeyRecord, 'key_age_days'>;

export interface RecordItem<T> {
  readonly type: 'RECORD';
  readonly record: T;
}

/** An account of the snapshot (its id; its name in Organizations, when it has one). */
export interface AccountRef {
  readonly id: string;
  readonly name: string | null;
}

/** What the accounts dataset says of an account besides its counts (null: not allowed to ask). */
export interface AccountFacts {
  readonly alias: string | null;
  /** GetAccountSummary's AccountAccessKeysPresent: the root user has an access key. */
  readonly rootAccessKeysPresent: boolean | null;
}

/** Watermarks: each says how far the source got once the records before it are durable. */
export type StateEvent =
  /** The accounts the snapshot covers (from Organizations or the list): each starts pending. */
  | { readonly kind: 'accounts-selected'; readonly accounts: readonly AccountRef[] }
  /** Reading `account` began: its credentials work. */
  | { readonly kind: 'account-started'; readonly account: AccountRef }
  /** The facts of `account` for the accounts dataset (asked while its users are read). */
  | { readonly kind: 'account-facts'; readonly account: string; readonly facts: AccountFacts }
  /** Every user of `account` is finished or failed: its progress is no longer needed. */
  | { readonly kind: 'account-done'; readonly account: string }
  /** `account` could not be read (AssumeRole denied, ListUsers denied, closed, ...): a rerun retries it. */
  | { readonly kind: 'account-failed'; readonly account: string; readonly code: string }
  /** A ListUsers page of `account` was read from `token`; `nextToken` lists the page after it (null: last page). */
  | { readonly kind: 'users-page'; readonly account: string; readonly token: string | null; readonly nextToken: string | null; readonly users: readonly UserRef[] }
  /**
   * A full ListUsers scan after the listing found `users` the snapshot did not
   * know (renamed behind the listing's cursor, or created); `complete` when it
   * found nothing new and nothing missing: the listing is verified.
   */
  | { readonly kind: 'users-scanned'; readonly account: string; readonly users: readonly UserRef[]; readonly complete: boolean }
  /** ListUsers rejected the stored Marker: the listing of `account` starts over (known users are skipped by id). */
  | { readonly kind: 'users-restarted'; readonly account: string }
  /** A page of `user`'s keys was read; the rest starts at `nextToken`. */
  | { readonly kind: 'user-page'; readonly user: UserRef; readonly nextToken: string }
  /** Every key of `user` was read. */
  | { readonly kind: 'user-done'; readonly user: UserRef }
  /** ListAccessKeys rejected `user`'s stored Marker: its keys are read again from the start. */
  | { readonly kind: 'user-restarted'; readonly user: UserRef }
  /**
   * NoSuchEntity for `user`: deleted, or renamed. Resolved by a ListUsers scan once
   * the listing is done: found under another name → paged again, else vanished.
   */
  | { readonly kind: 'user-missing'; readonly user: UserRef; readonly token: string | null }
  /** A missing user was found under `user.userName` (renamed): page it from the start. */
  | { readonly kind: 'user-found'; readonly user: UserRef }
  /** `user` is gone: it was deleted after ListUsers listed it. */
  | { readonly kind: 'user-vanished'; readonly user: UserRef }
  /** Paging `user` failed with a non-retryable `code`; a rerun retries from `token`. */
  | { readonly kind: 'user-failed'; readonly user: UserRef; readonly code: string; readonly token: string | null };

export interface StateItem {
  readonly type: 'STATE';
  readonly state: StateEvent;
}

export type Item<T> = RecordItem<T> | StateItem;

/**
 * One stream chunk: the items of one page in order, the STATE that vouches for
 * them last. Moving pages rather than single items through the stream keeps its
 * per-chunk cost off the per-record path (1,000,000 records, 10,000 chunks).
 */
export type Batch<T> = readonly Item<T>[];

/** The batch function of a stage: maps RECORD items (undefined drops one), passes STATE items untouched. */
export function mapRecords<A, B>(fn: (record: A) => B | undefined): (batch: Batch<A>) => Batch<B> {
  return (batch) => {
    const out: Item<B>[] = [];
    for (const item of batch) {
      if (item.type === 'STATE') out.push(item);
      else {
        const record = fn(item.record);
        if (record !== undefined) out.push({ type: 'RECORD', record });
      }
    }
    return out;
  };
}
