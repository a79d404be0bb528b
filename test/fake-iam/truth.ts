/**
 * Ground truth: what an exporter should find, as fresh plain objects the
 * caller may keep or change without touching the fake.
 */
import type { Dataset, FakeKey, KeyStatus } from './data.ts';
import { userFate, type FaultOptions } from './faults.ts';

export interface TruthUser {
  readonly userName: string;
  readonly userId: string;
  readonly path: string;
  readonly arn: string;
  readonly createDate: Date;
  /** Listed by ListUsers, but ListAccessKeys answers 404 NoSuchEntity. */
  readonly vanished: boolean;
  /** ListAccessKeys answers 403 AccessDenied. */
  readonly denied: boolean;
}

export interface TruthKey {
  readonly userName: string;
  readonly accessKeyId: string;
  readonly status: KeyStatus;
  readonly createDate: Date;
  /** Absent when the key was never used. */
  readonly lastUsed?: { readonly date: Date; readonly service: string; readonly region: string };
}

export interface FakeIamTruth {
  readonly accountId: string;
  /** In ListUsers order (code units of userName). */
  readonly users: TruthUser[];
  /** Every key, vanished and denied users' included, in ListUsers then ListAccessKeys order. */
  readonly keys: TruthKey[];
}

function truthKey(key: FakeKey): TruthKey {
  const copy = { userName: key.userName, accessKeyId: key.accessKeyId, status: key.status, createDate: new Date(key.createDate) };
  if (!key.lastUsed) return copy;
  return { ...copy, lastUsed: { date: new Date(key.lastUsed.date), service: key.lastUsed.service, region: key.lastUsed.region } };
}

/** The truth now, under the current fault options (they decide who vanished or is denied). */
export function buildTruth(dataset: Dataset, faults: Pick<FaultOptions, 'vanishedFraction' | 'deniedFraction'>): FakeIamTruth {
  const users = dataset.users.map((user): TruthUser => {
    const fate = userFate(user.fateRank, dataset.fateScale, faults);
    return {
      userName: user.userName,
      userId: user.userId,
      path: user.path,
      arn: user.arn,
      createDate: new Date(user.createDate),
      vanished: fate === 'vanished',
      denied: fate === 'denied',
    };
  });
  const keys = dataset.users.flatMap((user) => (dataset.keysByUser.get(user.userName) ?? []).map(truthKey));
  return { accountId: dataset.accountId, users, keys };
}

/** Keys an exporter can read: those of users neither vanished nor denied. */
export function readableKeys(truth: FakeIamTruth): TruthKey[] {
  const readable = new Set(truth.users.filter((user) => !user.vanished && !user.denied).map((user) => user.userName));
  return truth.keys.filter((key) => readable.has(key.userName));
}
