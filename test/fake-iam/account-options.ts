/**
 * The `accounts` option (an organization of many accounts), normalized and
 * checked in one place: a count with ranges, or an explicit list, becomes one
 * list of fully specified member accounts. Everything left open is derived
 * from the seed and the account's index, so the same options always give the
 * same ids, names and data.
 */
import type { KeysPerUser } from './data.ts';
import { intBetween, pick, streamFor } from './random.ts';

export type AccountStatus = 'ACTIVE' | 'SUSPENDED';
/** Organizations' newer `State`: a closed account is SUSPENDED in `Status` and CLOSED here. */
export type AccountState = 'ACTIVE' | 'SUSPENDED' | 'CLOSED';

/** One member account, as a caller may describe it in a list. */
export interface AccountSpec {
  /** 12 digits; default derived from the seed and the account's position. */
  readonly id?: string;
  readonly name?: string;
  /** Number of users; default drawn from `usersPerAccount` ({0..5}). */
  readonly users?: number;
  readonly keysPerUser?: Partial<KeysPerUser>;
  /** Default ACTIVE. */
  readonly status?: AccountStatus;
  /** Closed: Status SUSPENDED, State CLOSED. */
  readonly closed?: boolean;
  /** The account alias ListAccountAliases answers; null: none. Default `<name>`. */
  readonly alias?: string | null;
  /** Whether the root user has an access key (GetAccountSummary AccountAccessKeysPresent, report root row). */
  readonly rootKeysPresent?: boolean;
}

/** Many accounts by count; the index lists name members by position (0-based). */
export interface AccountsByCount {
  readonly count: number;
  readonly usersPerAccount?: { readonly min?: number; readonly max?: number };
  readonly keysPerUser?: Partial<KeysPerUser>;
  readonly suspended?: readonly number[];
  readonly closed?: readonly number[];
  readonly rootKeysPresent?: readonly number[];
  readonly withoutAlias?: readonly number[];
}

export type AccountsOption = AccountsByCount | readonly AccountSpec[];

/** A member account with nothing left open. */
export interface ResolvedAccount {
  readonly index: number;
  readonly id: string;
  readonly name: string;
  readonly email: string;
  readonly status: AccountStatus;
  readonly state: AccountState;
  readonly joined: Date;
  readonly users: number;
  readonly keysPerUser: KeysPerUser;
  /** Seed of this account's data, derived from the fake's seed and the index. */
  readonly seed: number;
  readonly alias: string | null;
  readonly rootKeysPresent: boolean;
}

export const MAX_ACCOUNTS = 100_000;
const MAX_USERS_PER_ACCOUNT = 100_000;
const TEAMS = ['payments', 'search', 'identity', 'data', 'platform', 'mobile', 'billing', 'logistics', 'ml', 'security', 'web', 'ledger'];
const ENVIRONMENTS = ['prod', 'staging', 'dev', 'sandbox'];

/** IAM's account alias rule: 3 to 63 lower-case letters and digits, single dashes inside. */
export function isAccountAlias(value: unknown): value is string {
  return typeof value === 'string' && value.length >= 3 && value.length <= 63 && /^[a-z0-9](([a-z0-9]|-(?!-))*[a-z0-9])?$/.test(value);
}

type Problems = string[];

function integer(problems: Problems, name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    problems.push(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
    return min;
  }
  return value;
}

function indexes(problems: Problems, name: string, value: unknown, count: number): Set<number> {
  if (value === undefined) return new Set();
  if (!Array.isArray(value)) {
    problems.push(`${name} must be a list of account indexes, got ${JSON.stringify(value)}`);
    return new Set();
  }
  return new Set(value.map((v, i) => integer(problems, `${name}[${i}]`, v, 0, Math.max(0, count - 1))));
}

function keysRange(problems: Problems, name: string, value: unknown, fallback: KeysPerUser): KeysPerUser {
  if (value === undefined) return fallback;
  if (typeof value !== 'object' || value === null) {
    problems.push(`${name} must be { min, max }, got ${JSON.stringify(value)}`);
    return fallback;
  }
  const { min = fallback.min, max = fallback.max } = value as Record<string, unknown>;
  const range = { min: integer(problems, `${name}.min`, min, 0, 10_000), max: integer(problems, `${name}.max`, max, 0, 10_000) };
  if (range.min > range.max) problems.push(`${name}.min must not exceed ${name}.max`);
  return range;
}

/** What every member account inherits from the top-level options. */
export interface AccountDefaults {
  readonly seed: number;
  readonly keysPerUser: KeysPerUser;
  /** The management account's id, which no member may take. */
  readonly managementId: string;
}

/** A 12-digit id for member `index`, from the seed, not in `taken` (then added). */
function derivedId(seed: number, index: number, taken: Set<string>): string {
  const random = streamFor(seed, `account-id:${index}`);
  let id: string;
  do id = String(intBetween(random, 100_000_000_000, 999_999_999_999));
  while (taken.has(id));
  taken.add(id);
  return id;
}

/** The defaults member `index` gets for whatever its spec leaves open. */
function derived(defaults: AccountDefaults, index: number): { name: string; users: (range: { min: number; max: number }) => number; seed: number; joined: Date } {
  const random = streamFor(defaults.seed, `account:${index}`);
  const name = `${pick(random, TEAMS)}-${pick(random, ENVIRONMENTS)}-${String(index).padStart(4, '0')}`;
  const seed = Math.floor(random() * 2 ** 31);
  const usersDraw = random();
  return {
    name,
    seed,
    users: (range) => range.min + Math.floor(usersDraw * (range.max - range.min + 1)),
    // Joined one day apart from 2017 on, in index order.
    joined: new Date(Date.UTC(2017, 0, 1) + index * 86_400_000),
  };
}

function resolved(defaults: AccountDefaults, index: number, spec: AccountSpec, usersRange: { min: number; max: number }, id: string, problems: Problems): ResolvedAccount {
  const base = derived(defaults, index);
  const name = spec.name ?? base.name;
  const alias = spec.alias === undefined ? name : spec.alias;
  if (alias !== null && !isAccountAlias(alias)) {
    problems.push(`accounts[${index}].alias must be null or an IAM account alias (3-63 of a-z, 0-9, single -), got ${JSON.stringify(alias)}`);
  }
  const status = spec.closed ? 'SUSPENDED' : (spec.status ?? 'ACTIVE');
  if (status !== 'ACTIVE' && status !== 'SUSPENDED') problems.push(`accounts[${index}].status must be ACTIVE or SUSPENDED, got ${JSON.stringify(spec.status)}`);
  return {
    index,
    id,
    name,
    email: `aws+${name}@example.com`,
    status,
    state: spec.closed ? 'CLOSED' : status,
    joined: base.joined,
    users: spec.users === undefined ? base.users(usersRange) : integer(problems, `accounts[${index}].users`, spec.users, 0, MAX_USERS_PER_ACCOUNT),
    keysPerUser: keysRange(problems, `accounts[${index}].keysPerUser`, spec.keysPerUser, defaults.keysPerUser),
    seed: base.seed,
    alias: alias as string | null,
    rootKeysPresent: spec.rootKeysPresent === true,
  };
}

/** Normalizes the `accounts` option, adding to `problems` instead of throwing; null when absent. */
export function resolveAccounts(problems: Problems, value: unknown, defaults: AccountDefaults): ResolvedAccount[] | null {
  if (value === undefined || value === null) return null;
  const taken = new Set([defaults.managementId]);
  if (Array.isArray(value)) {
    if (value.length > MAX_ACCOUNTS) problems.push(`accounts may list at most ${MAX_ACCOUNTS} accounts`);
    const specs = value as AccountSpec[];
    // Explicit ids first, so derived ones steer clear of them.
    specs.forEach((spec, index) => {
      if (spec.id === undefined) return;
      if (typeof spec.id !== 'string' || !/^\d{12}$/.test(spec.id)) problems.push(`accounts[${index}].id must be 12 digits, got ${JSON.stringify(spec.id)}`);
      else if (taken.has(spec.id)) problems.push(`accounts[${index}].id ${spec.id} is taken (ids are unique, the management account's included)`);
      taken.add(String(spec.id));
    });
    return specs.map((spec, index) => resolved(defaults, index, spec, { min: 0, max: 5 }, spec.id ?? derivedId(defaults.seed, index, taken), problems));
  }
  if (typeof value !== 'object') {
    problems.push(`accounts must be { count, ... } or a list of accounts, got ${JSON.stringify(value)}`);
    return null;
  }
  const byCount = value as Record<string, unknown>;
  const known = ['count', 'usersPerAccount', 'keysPerUser', 'suspended', 'closed', 'rootKeysPresent', 'withoutAlias'];
  for (const key of Object.keys(byCount)) if (!known.includes(key)) problems.push(`unknown accounts option ${key}`);
  const count = integer(problems, 'accounts.count', byCount.count, 0, MAX_ACCOUNTS);
  const usersRange = keysRange(problems, 'accounts.usersPerAccount', byCount.usersPerAccount, { min: 0, max: 5 });
  const keysPerUser = keysRange(problems, 'accounts.keysPerUser', byCount.keysPerUser, defaults.keysPerUser);
  const suspended = indexes(problems, 'accounts.suspended', byCount.suspended, count);
  const closed = indexes(problems, 'accounts.closed', byCount.closed, count);
  const rootKeys = indexes(problems, 'accounts.rootKeysPresent', byCount.rootKeysPresent, count);
  const withoutAlias = indexes(problems, 'accounts.withoutAlias', byCount.withoutAlias, count);
  return Array.from({ length: count }, (_, index) =>
    resolved(
      defaults,
      index,
      {
        keysPerUser,
        ...(suspended.has(index) ? { status: 'SUSPENDED' } : {}),
        ...(closed.has(index) ? { closed: true } : {}),
        ...(rootKeys.has(index) ? { rootKeysPresent: true } : {}),
        ...(withoutAlias.has(index) ? { alias: null } : {}),
      },
      usersRange,
      derivedId(defaults.seed, index, taken),
      problems,
    ),
  );
}
