/**
 * Synthetic input for the local throughput measures: the same keys as the
 * source's items (RECORD `{ user, key }` plus STATE watermarks) or as finished
 * records, built in memory by a generator, deterministically, with no IAM.
 *
 * Shape: users of KEYS_PER_USER keys each, so every user is one ListAccessKeys
 * page of 100 keys followed by its `user-done` STATE, and every 100 users are
 * announced by a `users-page` STATE first, as the source emits them, and the
 * listing ends with the `users-scanned` STATE of a verifying scan that found
 * nobody new. Key ids are pseudo-random, so each commit's sort does real work.
 */
import { mulberry32 } from '../../test/fake-iam/random.ts';
import type { AccessKeyMetadata } from '@aws-sdk/client-iam';
import type { Batch, Item, SourceKey, UserRef } from '../../pipeline/items.ts';
import type { AccessKeyRecord } from '../../pipeline/schema.ts';
import { deriveAge } from '../../pipeline/stages/deriveAge.ts';
import { toRecord, type SnapshotStamp } from '../../pipeline/stages/toRecord.ts';

/** Keys per user: one page at the default --page-size. */
export const KEYS_PER_USER = 100;
/** Users per ListUsers page at the default --page-size. */
export const USERS_PER_PAGE = 100;

export const ACCOUNT = '123456789012';
const STATUSES = ['Active', 'Inactive', 'Expired'] as const;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const BASE_TIME = Date.UTC(2020, 0, 1);

function keyId(random: () => number): string {
  let id = 'AKIA';
  for (let i = 0; i < 16; i++) id += ALPHABET[Math.floor(random() * 32)];
  return id;
}

function userOf(index: number): UserRef {
  const n = String(index).padStart(7, '0');
  const userName = `user.${n}@corp`;
  return { userName, userId: `AIDA${n}EXAMPLE00000`, accountId: ACCOUNT, arn: `arn:aws:iam::${ACCOUNT}:user/${userName}`, path: '/', createDate: '2019-01-01T00:00:00.000Z' };
}

/** The source's view of `total` keys, in the order the source would emit them. */
export function* sourceKeys(total: number, seed = 1): Generator<SourceKey & { readonly first: boolean; readonly last: boolean }> {
  const random = mulberry32(seed);
  for (let i = 0; i < total; i++) {
    const user = userOf(Math.floor(i / KEYS_PER_USER));
    const key: AccessKeyMetadata = {
      UserName: user.userName,
      AccessKeyId: keyId(random),
      Status: STATUSES[Math.floor(random() * 3)]!,
      CreateDate: new Date(BASE_TIME + Math.floor(random() * 1.5e11)),
    };
    const inUser = i % KEYS_PER_USER;
    yield { user, key, first: inUser === 0, last: inUser === KEYS_PER_USER - 1 || i === total - 1 };
  }
}

/**
 * Batches as `sourceStream` emits them: a `users-page` STATE alone before each page
 * of users, then per user one batch of its RECORDs closed by its `user-done` STATE.
 * The last `users-page` has no next token, and a complete `users-scanned` and the
 * account's `account-done` follow the last user, so the checkpoint sees the export
 * complete.
 */
export function* sourceBatches(total: number, seed = 1): Generator<Batch<SourceKey>> {
  const users = Math.ceil(total / KEYS_PER_USER);
  const pages = Math.ceil(users / USERS_PER_PAGE);
  let batch: Item<SourceKey>[] = [];
  yield [
    { type: 'STATE', state: { kind: 'account-started', account: { id: ACCOUNT, name: null } } },
    { type: 'STATE', state: { kind: 'account-facts', account: ACCOUNT, facts: { alias: null, rootAccessKeysPresent: false } } },
  ];
  for (const k of sourceKeys(total, seed)) {
    const userIndex = Math.floor(Number(k.user.userName.slice(5, 12)));
    if (k.first && userIndex % USERS_PER_PAGE === 0) {
      const page = userIndex / USERS_PER_PAGE;
      const count = Math.min(USERS_PER_PAGE, users - userIndex);
      yield [
        {
          type: 'STATE',
          state: {
            kind: 'users-page',
            account: ACCOUNT,
            token: page === 0 ? null : `page-${page}`,
            nextToken: page + 1 < pages ? `page-${page + 1}` : null,
            users: Array.from({ length: count }, (_, j) => userOf(userIndex + j)),
          },
        },
      ];
    }
    batch.push({ type: 'RECORD', record: { user: k.user, key: k.key } });
    if (k.last) {
      batch.push({ type: 'STATE', state: { kind: 'user-done', user: k.user } });
      yield batch;
      batch = [];
    }
  }
  yield [
    { type: 'STATE', state: { kind: 'users-scanned', account: ACCOUNT, users: [], complete: true } },
    { type: 'STATE', state: { kind: 'account-done', account: ACCOUNT } },
  ];
}

/** The same keys as finished records (what the writers alone are given). */
export function* finishedRecords(total: number, stamp: SnapshotStamp, seed = 1): Generator<AccessKeyRecord> {
  for (const k of sourceKeys(total, seed)) yield deriveAge(toRecord(k, stamp));
}
