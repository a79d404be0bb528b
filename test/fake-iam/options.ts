/**
 * The fake's options, normalized and validated in one place: defaults filled
 * in, every problem collected, one error thrown. Values may come from
 * TypeScript callers, CLI flags or JSON over HTTP, so types are checked too.
 */
import { isAccountAlias, resolveAccounts, type AccountsOption, type ResolvedAccount } from './account-options.ts';
import type { DataOptions, KeysPerUser } from './data.ts';
import { DEFAULT_FAULTS, type FaultOptions, type FaultPatch, type RateLimit } from './faults.ts';
import type { CredentialReportTiming } from './report.ts';

/** Options of `startFakeIam`: the data it serves plus the initial faults. */
export interface FakeIamOptions extends FaultPatch {
  /** TCP port on 127.0.0.1; 0 (the default) picks a free one. */
  readonly port?: number;
  /** Number of users, default 50. */
  readonly users?: number;
  /** Seed of the data and of every random decision, default 1. */
  readonly seed?: number;
  /** Keys per user, default { min: 0, max: 2 }; more than 2 exercises ListAccessKeys paging. */
  readonly keysPerUser?: Partial<KeysPerUser>;
  /** 12-digit account id in ARNs, default 123456789012. */
  readonly accountId?: string;
  /**
   * Wall-clock milliseconds the fake reads for what IAM dates (new users and
   * keys, uses, credential report generation and age); default `Date.now`.
   * A test passes a clock it moves by hand to step through time without
   * sleeping. Latency and the rate limit keep real time.
   */
  readonly clock?: () => number;
  /**
   * Many accounts (an organization): member accounts by count or as a list,
   * each with its own deterministic data. The account of `accountId` (the
   * management account) keeps the top-level data. Absent: one account, and
   * Organizations answers AWSOrganizationsNotInUseException.
   */
  readonly accounts?: AccountsOption;
  /** The management account's alias (ListAccountAliases); default none. */
  readonly accountAlias?: string | null;
  /** Whether the management account's root user has an access key. */
  readonly rootKeysPresent?: boolean;
}

export interface ResolvedOptions {
  readonly port: number;
  readonly clock: () => number;
  /** Member accounts; null without an organization. */
  readonly members: readonly ResolvedAccount[] | null;
  readonly accountAlias: string | null;
  readonly rootKeysPresent: boolean;
  readonly data: DataOptions;
  readonly faults: FaultOptions;
}

/** Invalid options; `problems` lists every one of them. */
export class FakeIamOptionsError extends Error {
  override readonly name = 'FakeIamOptionsError';
  readonly code = 'FAKE_IAM_OPTIONS';
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid fake-iam options: ${problems.join('; ')}`);
    this.problems = problems;
  }
}

const MAX_USERS = 1_000_000;
const MAX_KEYS_PER_USER = 10_000;
const MAX_DELAY_MS = 600_000;
const MAX_REPORT_AGE_MS = 365 * 24 * 60 * 60 * 1000;
/** IAM's role name and STS's ExternalId patterns. */
const ROLE_NAME = /^[\w+=,.@-]{1,64}$/;
const EXTERNAL_ID = /^[\w+=,.@:/-]{2,1224}$/;

const FAULT_KEYS = Object.keys(DEFAULT_FAULTS) as (keyof FaultOptions)[];

type Problems = string[];

function integerIn(problems: Problems, name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    problems.push(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
    return min;
  }
  return value;
}

function numberIn(problems: Problems, name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    problems.push(`${name} must be a number from ${min} to ${max}, got ${JSON.stringify(value)}`);
    return min;
  }
  return value;
}

function bool(problems: Problems, name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') {
    problems.push(`${name} must be true or false, got ${JSON.stringify(value)}`);
    return false;
  }
  return value;
}

function accountIdOrNull(problems: Problems, name: string, value: unknown): string | null {
  if (value === null) return null;
  if (typeof value !== 'string' || !/^\d{12}$/.test(value)) {
    problems.push(`${name} must be null or 12 digits, got ${JSON.stringify(value)}`);
    return null;
  }
  return value;
}

/** Report timing; a patch may give one of the two fields, the other is kept. */
function reportTiming(problems: Problems, base: CredentialReportTiming, value: unknown): CredentialReportTiming {
  if (typeof value !== 'object' || value === null) {
    problems.push(`credentialReport must be { delayMs, maxAgeMs }, got ${JSON.stringify(value)}`);
    return base;
  }
  const { delayMs = base.delayMs, maxAgeMs = base.maxAgeMs, ...rest } = value as Record<string, unknown>;
  for (const key of Object.keys(rest)) problems.push(`unknown credentialReport option ${key}`);
  return {
    delayMs: numberIn(problems, 'credentialReport.delayMs', delayMs, 0, MAX_DELAY_MS),
    maxAgeMs: numberIn(problems, 'credentialReport.maxAgeMs', maxAgeMs, 0, MAX_REPORT_AGE_MS),
  };
}

function accountIds(problems: Problems, name: string, value: unknown): string[] {
  if (!Array.isArray(value) || !value.every((id) => typeof id === 'string' && /^\d{12}$/.test(id))) {
    problems.push(`${name} must be a list of 12-digit account ids, got ${JSON.stringify(value)}`);
    return [];
  }
  return value as string[];
}

/** A record keyed by 12-digit account ids, each value checked by `check`. */
function perAccount<T>(problems: Problems, name: string, value: unknown, check: (name: string, value: unknown) => T): Record<string, T> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    problems.push(`${name} must be an object keyed by account id, got ${JSON.stringify(value)}`);
    return {};
  }
  const out: Record<string, T> = {};
  for (const [id, entry] of Object.entries(value)) {
    if (!/^\d{12}$/.test(id)) problems.push(`${name} keys must be 12-digit account ids, got ${JSON.stringify(id)}`);
    out[id] = check(`${name}.${id}`, entry);
  }
  return out;
}

function nonEmptyString(problems: Problems, name: string, value: unknown, pattern: RegExp): string {
  if (typeof value !== 'string' || !pattern.test(value)) {
    problems.push(`${name} must be a string matching ${pattern}, got ${JSON.stringify(value)}`);
    return '';
  }
  return value;
}

function rateLimit(problems: Problems, value: unknown, name = 'rateLimit'): RateLimit | null {
  if (value === null) return null;
  if (typeof value !== 'object') {
    problems.push(`${name} must be null or { perSecond, burst }, got ${JSON.stringify(value)}`);
    return null;
  }
  const { perSecond, burst } = value as Record<string, unknown>;
  return {
    perSecond: numberIn(problems, `${name}.perSecond`, perSecond, Number.MIN_VALUE, 1_000_000),
    burst: numberIn(problems, `${name}.burst`, burst, 1, 1_000_000),
  };
}

/** Applies a patch to fault options, collecting problems instead of throwing. */
function patchFaults(problems: Problems, base: FaultOptions, patch: Readonly<Record<string, unknown>>): FaultOptions {
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    if (!(FAULT_KEYS as string[]).includes(key)) problems.push(`unknown fault option ${key}`);
    else if (value !== undefined) merged[key] = value;
  }
  const faults: FaultOptions = {
    latencyMs: numberIn(problems, 'latencyMs', merged.latencyMs, 0, MAX_DELAY_MS),
    jitterMs: numberIn(problems, 'jitterMs', merged.jitterMs, 0, MAX_DELAY_MS),
    rateLimit: rateLimit(problems, merged.rateLimit),
    throttleProbability: numberIn(problems, 'throttleProbability', merged.throttleProbability, 0, 1),
    serverErrorProbability: numberIn(problems, 'serverErrorProbability', merged.serverErrorProbability, 0, 1),
    dropProbability: numberIn(problems, 'dropProbability', merged.dropProbability, 0, 1),
    vanishedFraction: numberIn(problems, 'vanishedFraction', merged.vanishedFraction, 0, 1),
    deniedFraction: numberIn(problems, 'deniedFraction', merged.deniedFraction, 0, 1),
    invalidCredentials: bool(problems, 'invalidCredentials', merged.invalidCredentials),
    listUsersDenied: bool(problems, 'listUsersDenied', merged.listUsersDenied),
    rejectStaleMarkers: bool(problems, 'rejectStaleMarkers', merged.rejectStaleMarkers),
    callerAccountId: accountIdOrNull(problems, 'callerAccountId', merged.callerAccountId),
    lastUsedDenied: bool(problems, 'lastUsedDenied', merged.lastUsedDenied),
    reportDenied: bool(problems, 'reportDenied', merged.reportDenied),
    reportLimitExceeded: bool(problems, 'reportLimitExceeded', merged.reportLimitExceeded),
    credentialReport: reportTiming(problems, base.credentialReport, merged.credentialReport),
    roleName: nonEmptyString(problems, 'roleName', merged.roleName, ROLE_NAME),
    externalId: merged.externalId === null ? null : nonEmptyString(problems, 'externalId', merged.externalId, EXTERNAL_ID),
    assumeRoleDenied: accountIds(problems, 'assumeRoleDenied', merged.assumeRoleDenied),
    listUsersDeniedAccounts: accountIds(problems, 'listUsersDeniedAccounts', merged.listUsersDeniedAccounts),
    roleInManagementAccount: bool(problems, 'roleInManagementAccount', merged.roleInManagementAccount),
    accountRateLimit: rateLimit(problems, merged.accountRateLimit, 'accountRateLimit'),
    accountRateLimits: perAccount(problems, 'accountRateLimits', merged.accountRateLimits, (name, v) => rateLimit(problems, v, name)),
    accountLatencyMs: perAccount(problems, 'accountLatencyMs', merged.accountLatencyMs, (name, v) => numberIn(problems, name, v, 0, MAX_DELAY_MS)),
  };
  // One draw decides among these faults, so their shares must fit in 1.
  if (faults.throttleProbability + faults.serverErrorProbability + faults.dropProbability > 1) {
    problems.push('throttleProbability + serverErrorProbability + dropProbability must not exceed 1');
  }
  if (faults.vanishedFraction + faults.deniedFraction > 1) {
    problems.push('vanishedFraction + deniedFraction must not exceed 1');
  }
  return faults;
}

/**
 * Returns `base` with `patch` applied; throws FakeIamOptionsError listing every
 * problem. Only fault options may be patched: the data is fixed at start.
 */
export function mergeFaultOptions(base: FaultOptions, patch: FaultPatch): FaultOptions {
  const problems: Problems = [];
  if (typeof patch !== 'object' || patch === null) throw new FakeIamOptionsError(['fault options must be an object']);
  const faults = patchFaults(problems, base, patch);
  if (problems.length > 0) throw new FakeIamOptionsError(problems);
  return Object.freeze(faults);
}

/** Fills in defaults and validates; throws FakeIamOptionsError listing every problem. */
export function resolveOptions(options: FakeIamOptions = {}): ResolvedOptions {
  const problems: Problems = [];
  const {
    port = 0,
    users = 50,
    seed = 1,
    keysPerUser = {},
    accountId = '123456789012',
    clock = Date.now,
    accounts,
    accountAlias = null,
    rootKeysPresent = false,
    ...faultPatch
  } = options;
  if (typeof clock !== 'function') problems.push('clock must be a function returning epoch milliseconds');
  const min = integerIn(problems, 'keysPerUser.min', keysPerUser.min ?? 0, 0, MAX_KEYS_PER_USER);
  const max = integerIn(problems, 'keysPerUser.max', keysPerUser.max ?? Math.max(min, 2), 0, MAX_KEYS_PER_USER);
  if (min > max) problems.push(`keysPerUser.min (${min}) must not exceed keysPerUser.max (${max})`);
  if (typeof accountId !== 'string' || !/^\d{12}$/.test(accountId)) {
    problems.push(`accountId must be 12 digits, got ${JSON.stringify(accountId)}`);
  }
  if (accountAlias !== null && !isAccountAlias(accountAlias)) {
    problems.push(`accountAlias must be null or an IAM account alias, got ${JSON.stringify(accountAlias)}`);
  }
  const resolved: ResolvedOptions = {
    port: integerIn(problems, 'port', port, 0, 65535),
    clock,
    members: resolveAccounts(problems, accounts, { seed, keysPerUser: { min, max }, managementId: accountId }),
    accountAlias,
    rootKeysPresent: bool(problems, 'rootKeysPresent', rootKeysPresent),
    data: {
      users: integerIn(problems, 'users', users, 0, MAX_USERS),
      seed: integerIn(problems, 'seed', seed, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
      keysPerUser: { min, max },
      accountId,
    },
    faults: Object.freeze(patchFaults(problems, DEFAULT_FAULTS, faultPatch)),
  };
  if (problems.length > 0) throw new FakeIamOptionsError(problems);
  return resolved;
}
