/**
 * The fake account's users and access keys, generated deterministically from a
 * seed. The same options always give the same users, keys, dates and fates.
 */
import { intBetween, pick, randomString, shuffled, streamFor, weighted, type Random } from './random.ts';

/** How many keys each user gets, drawn uniformly from [min, max]. */
export interface KeysPerUser {
  readonly min: number;
  readonly max: number;
}

/** What the data depends on, and nothing else. */
export interface DataOptions {
  readonly users: number;
  readonly seed: number;
  readonly keysPerUser: KeysPerUser;
  readonly accountId: string;
}

export type KeyStatus = 'Active' | 'Inactive' | 'Expired';

/** A user as the fake stores it; ListUsers renders all but `fateRank`. */
export interface FakeUser {
  readonly userName: string;
  readonly userId: string;
  readonly path: string;
  readonly arn: string;
  readonly createDate: Date;
  /**
   * This user's place in a seeded permutation of all users. Fates (vanished,
   * denied) go to the lowest ranks, so raising a fraction only adds users to
   * the set and the choice never depends on the fault options' history.
   */
  readonly fateRank: number;
}

export interface LastUsed {
  readonly date: Date;
  readonly service: string;
  readonly region: string;
}

/** An access key as the fake stores it, with what GetAccessKeyLastUsed reports. */
export interface FakeKey {
  readonly userName: string;
  readonly accessKeyId: string;
  readonly status: KeyStatus;
  readonly createDate: Date;
  readonly lastUsed?: LastUsed;
}

/** The whole account, indexed the ways the actions look it up. */
export interface Dataset {
  readonly accountId: string;
  /**
   * The user count fates are measured against: the number of users generated.
   * It stays fixed when users are created or deleted later, so no mutation
   * changes the fate of a user that already exists.
   */
  readonly fateScale: number;
  /** In code-unit order of userName, the order ListUsers answers in. */
  readonly users: readonly FakeUser[];
  readonly usersByName: ReadonlyMap<string, FakeUser>;
  /** Each user's keys in the order ListAccessKeys answers in: by CreateDate, then id. */
  readonly keysByUser: ReadonlyMap<string, readonly FakeKey[]>;
  readonly keysById: ReadonlyMap<string, FakeKey>;
}

/** Characters IAM allows in a user name, besides letters and digits. */
export const NAME_PUNCTUATION = '_+=,.@-';
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const NAME_ALPHABET = ALNUM + NAME_PUNCTUATION;
const UPPER_ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const MAX_NAME_LENGTH = 64;

const FIRST = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory', 'niaj', 'olivia', 'peggy', 'rupert', 'sybil', 'trent', 'victor', 'walter', 'yasmin', 'zoe', 'kenji', 'amara', 'sofia', 'lucas', 'li'];
const LAST = ['smith', 'jones', 'garcia', 'nguyen', 'kim', 'muller', 'rossi', 'silva', 'tanaka', 'okafor', 'ivanova', 'brown', 'dubois', 'kowalski', 'haddad', 'obrien'];
const DOMAINS = ['corp', 'example.com', 'acme.io', 'contractor.example'];
const SERVICE_WORDS = ['deploy', 'backup', 'terraform', 'grafana', 'jenkins', 'airflow', 'etl', 'billing-export', 's3-sync', 'gitlab-runner'];
const ENVS = ['prod', 'staging', 'dev'];

export const PATHS: readonly (readonly [string, number])[] = [
  ['/', 70],
  ['/engineering/', 15],
  ['/ops/team-a/', 10],
  ['/ops/team-b/', 5],
];
export const STATUSES: readonly (readonly [KeyStatus, number])[] = [
  ['Active', 80],
  ['Inactive', 15],
  ['Expired', 5],
];
export const SERVICES = ['s3', 'ec2', 'sts', 'iam', 'lambda', 'dynamodb', 'sqs', 'cloudformation', 'logs', 'ecr'];
export const REGIONS = ['us-east-1', 'us-east-2', 'us-west-2', 'eu-west-1', 'eu-central-1', 'ap-southeast-2'];
const LAST_USED_SHARE = 0.65;

export const SECOND = 1000;
const MINUTE = 60 * SECOND;
const DAY = 24 * 60 * MINUTE;
const EARLIEST = Date.UTC(2015, 0, 1);
const LATEST = Date.UTC(2026, 10, 1);

const capitalize = (word: string): string => word.charAt(0).toUpperCase() + word.slice(1);

/** A name a real company would have, e.g. `alice.smith@corp` or `svc-deploy`. */
function realisticName(random: Random): string {
  const first = pick(random, FIRST);
  const last = pick(random, LAST);
  const kind = weighted(random, [
    ['email', 30],
    ['dotted', 15],
    ['initial', 10],
    ['underscore', 5],
    ['capitalized', 5],
    ['numbered', 7],
    ['service', 10],
    ['ci', 5],
    ['bot', 3],
  ] as const);
  switch (kind) {
    case 'email':
      return `${first}.${last}@${pick(random, DOMAINS)}`;
    case 'dotted':
      return `${first}.${last}`;
    case 'initial':
      return `${first.charAt(0)}${last}`;
    case 'underscore':
      return `${first}_${last}`;
    case 'capitalized':
      return `${capitalize(first)}.${capitalize(last)}`;
    case 'numbered':
      return `${first}.${last}${intBetween(random, 2, 99)}`;
    case 'service':
      return `svc-${pick(random, SERVICE_WORDS)}`;
    case 'ci':
      return `ci+${pick(random, SERVICE_WORDS)}=${intBetween(random, 1, 500)}`;
    case 'bot':
      return `${pick(random, SERVICE_WORDS)}-bot,${pick(random, ENVS)}`;
  }
}

/**
 * A name that uses every punctuation IAM allows, often at the 64-character
 * limit, to shake out quoting, encoding and sorting bugs.
 */
function oddName(random: Random): string {
  const length = random() < 0.25 ? MAX_NAME_LENGTH : intBetween(random, NAME_PUNCTUATION.length, MAX_NAME_LENGTH);
  const chars = [...NAME_PUNCTUATION, ...randomString(random, NAME_ALPHABET, length - NAME_PUNCTUATION.length)];
  return shuffled(random, chars).join('');
}

/** One or two characters: the shortest names IAM allows. */
function shortName(random: Random): string {
  return randomString(random, NAME_ALPHABET, intBetween(random, 1, 2));
}

function candidateName(random: Random): string {
  const kind = weighted(random, [
    ['realistic', 88],
    ['odd', 10],
    ['short', 2],
  ] as const);
  if (kind === 'odd') return oddName(random);
  if (kind === 'short') return shortName(random);
  return realisticName(random);
}

/**
 * A user name not yet taken. IAM names are unique regardless of case, so
 * `Alice` and `alice` cannot both exist; `taken` holds lower-cased names.
 */
export function uniqueName(random: Random, taken: Pick<Set<string>, 'has' | 'add'>): string {
  let name = candidateName(random);
  // Realistic names repeat once the account is large: redraw, and if the
  // draws keep clashing fall back to the numeric suffix an administrator
  // would add, which always terminates.
  for (let suffix = 2; taken.has(name.toLowerCase()); suffix++) {
    const base = candidateName(random);
    name = suffix > 20 ? `${base.slice(0, MAX_NAME_LENGTH - 8)}.${suffix}` : base;
  }
  taken.add(name.toLowerCase());
  return name;
}

/** A fresh id: `prefix` plus `length` characters of IAM's id alphabet, not in `taken` (then added). */
export function uniqueId(random: Random, prefix: string, length: number, taken: Set<string>): string {
  let id: string;
  do id = prefix + randomString(random, UPPER_ALNUM, length);
  while (taken.has(id));
  taken.add(id);
  return id;
}

/** A whole-second instant in [from, to]. */
function secondBetween(random: Random, from: number, to: number): Date {
  const first = Math.ceil(from / SECOND);
  const last = Math.floor(to / SECOND);
  return new Date(intBetween(random, first, last) * SECOND);
}

/** Code-unit order, the order ListUsers promises; not locale order. */
export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** ListAccessKeys order: by CreateDate, then by id for keys of the same second. */
export function compareKeys(a: Pick<FakeKey, 'createDate' | 'accessKeyId'>, b: Pick<FakeKey, 'createDate' | 'accessKeyId'>): number {
  return a.createDate.getTime() - b.createDate.getTime() || compareCodeUnits(a.accessKeyId, b.accessKeyId);
}

function lastUsedAfter(random: Random, created: Date): LastUsed | undefined {
  if (random() >= LAST_USED_SHARE) return undefined;
  // IAM reports last use to the minute; rounding up keeps it after creation.
  const instant = created.getTime() + random() * (LATEST - created.getTime());
  const date = new Date(Math.ceil(instant / MINUTE) * MINUTE);
  const service = pick(random, SERVICES);
  // IAM and STS calls through the global endpoint are recorded in us-east-1.
  const region = service === 'iam' ? 'us-east-1' : pick(random, REGIONS);
  return { date, service, region };
}

/** Generates the account. Pure: the same options give an equal dataset. */
export function generateDataset(options: DataOptions): Dataset {
  const random = streamFor(options.seed, 'data');
  const names = new Set<string>();
  const ids = new Set<string>();
  const unsortedUsers: Omit<FakeUser, 'fateRank'>[] = [];
  const keysByUser = new Map<string, FakeKey[]>();
  const keysById = new Map<string, FakeKey>();

  for (let i = 0; i < options.users; i++) {
    const userName = uniqueName(random, names);
    const path = weighted(random, PATHS);
    const userId = uniqueId(random, 'AIDA', 17, ids);
    const createDate = secondBetween(random, EARLIEST, LATEST - DAY);
    unsortedUsers.push({ userName, userId, path, arn: `arn:aws:iam::${options.accountId}:user${path}${userName}`, createDate });

    const keys: FakeKey[] = [];
    const count = intBetween(random, options.keysPerUser.min, options.keysPerUser.max);
    for (let k = 0; k < count; k++) {
      const keyCreated = secondBetween(random, createDate.getTime() + SECOND, LATEST);
      const key: FakeKey = {
        userName,
        accessKeyId: uniqueId(random, 'AKIA', 16, ids),
        status: weighted(random, STATUSES),
        createDate: keyCreated,
      };
      const lastUsed = lastUsedAfter(random, keyCreated);
      keys.push(lastUsed ? { ...key, lastUsed } : key);
    }
    keys.sort(compareKeys);
    keysByUser.set(userName, keys);
    for (const key of keys) keysById.set(key.accessKeyId, key);
  }

  // Ranks come from their own stream so the user data stays a prefix when
  // only the user count grows.
  const ranks = shuffled(streamFor(options.seed, 'fate'), unsortedUsers.map((_, i) => i));
  const users = unsortedUsers
    .map((user, i): FakeUser => ({ ...user, fateRank: ranks[i] ?? i }))
    .sort((a, b) => compareCodeUnits(a.userName, b.userName));

  return {
    accountId: options.accountId,
    fateScale: users.length,
    users,
    usersByName: new Map(users.map((user) => [user.userName, user])),
    keysByUser,
    keysById,
  };
}
