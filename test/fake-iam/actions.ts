/**
 * The IAM actions the fake implements, as pure functions from request
 * parameters to a result or an IamError. No HTTP, no faults beyond the
 * per-user fates: the server decides those before calling in here.
 */
import { compareCodeUnits, compareKeys, type FakeKey, type FakeUser } from './data.ts';
import { IamError, accessDenied } from './errors.ts';
import { userFate, type FaultOptions } from './faults.ts';
import { decodeMarkerOf, encodeMarker, expiredMarker, pageOf, parseMaxItems, rejectMarker, type MarkerState, type Page } from './paging.ts';
import type { Action } from './catalog.ts';
import type { CredentialReport, GenerateAnswer } from './report.ts';
import type { AccountStore } from './store.ts';
import type { FakeAccount } from './accounts.ts';
import type { Caller } from './sts.ts';

/** The actions the fake implements; any other answers InvalidAction. */
export const IAM_ACTIONS = [
  'ListUsers',
  'ListAccessKeys',
  'GetAccessKeyLastUsed',
  'GenerateCredentialReport',
  'GetCredentialReport',
  'GetAccountSummary',
  'ListAccountAliases',
] as const satisfies readonly Action[];
export type IamAction = (typeof IAM_ACTIONS)[number];

/** Narrows the `Action` parameter to one the fake implements. */
export function isIamAction(name: string | null): name is IamAction {
  return (IAM_ACTIONS as readonly (string | null)[]).includes(name);
}

/** What an action reads: the account (its IAM state and record), the caller, and the fault options that decide fates and markers. */
export interface ActionContext {
  readonly dataset: AccountStore;
  readonly account: Pick<FakeAccount, 'alias' | 'rootKeysPresent' | 'management'>;
  /** Who signed the request, named in AccessDenied messages. */
  readonly caller: Caller;
  readonly faults: Pick<
    FaultOptions,
    'listUsersDenied' | 'listUsersDeniedAccounts' | 'vanishedFraction' | 'deniedFraction' | 'rejectStaleMarkers' | 'lastUsedDenied' | 'reportDenied' | 'reportLimitExceeded' | 'credentialReport'
  >;
}

/** A successful answer, before rendering. */
export type ActionResult =
  | { readonly action: 'ListUsers'; readonly page: Page<FakeUser> }
  | { readonly action: 'ListAccessKeys'; readonly page: Page<FakeKey> }
  | { readonly action: 'GetAccessKeyLastUsed'; readonly key: FakeKey }
  | { readonly action: 'GenerateCredentialReport'; readonly answer: GenerateAnswer }
  | { readonly action: 'GetCredentialReport'; readonly report: CredentialReport }
  | { readonly action: 'GetAccountSummary'; readonly summary: ReadonlyMap<string, number> }
  | { readonly action: 'ListAccountAliases'; readonly aliases: readonly string[] };


/** Input patterns, with the spelling IAM's messages use for them. */
interface Pattern {
  readonly regex: RegExp;
  readonly shown: string;
}
const PATH_PREFIX: Pattern = { regex: /^\/[\u0021-\u007f]*$/, shown: '\\u002F[\\u0021-\\u007F]*' };
const USER_NAME: Pattern = { regex: /^[\w+=,.@-]+$/, shown: '[\\w+=,.@-]+' };
const ACCESS_KEY_ID: Pattern = { regex: /^\w+$/, shown: '[\\w]+' };

function validationError(value: string | null, member: string, constraint: string): IamError {
  const shown = value === null ? 'null' : `'${value}'`;
  return new IamError('ValidationError', `1 validation error detected: Value ${shown} at '${member}' failed to satisfy constraint: Member must ${constraint}`);
}

function requireMatch(value: string | null, member: string, pattern: Pattern, min: number, max: number): string {
  if (value === null) throw validationError(value, member, 'not be null');
  if (value.length < min || value.length > max) throw validationError(value, member, `have length between ${min} and ${max}`);
  if (!pattern.regex.test(value)) throw validationError(value, member, `satisfy regular expression pattern: ${pattern.shown}`);
  return value;
}

/** Runs one action; throws IamError for any error answer. */
export function runAction(action: IamAction, params: URLSearchParams, context: ActionContext): ActionResult {
  switch (action) {
    case 'ListUsers':
      return { action, page: listUsers(params, context) };
    case 'ListAccessKeys':
      return { action, page: listAccessKeys(params, context) };
    case 'GetAccessKeyLastUsed':
      return { action, key: getAccessKeyLastUsed(params, context) };
    case 'GenerateCredentialReport':
      return { action, answer: generateCredentialReport(context) };
    case 'GetCredentialReport':
      return { action, report: getCredentialReport(context) };
    case 'GetAccountSummary':
      return { action, summary: accountSummary(context) };
    case 'ListAccountAliases':
      return { action, aliases: listAccountAliases(params, context) };
  }
}

/**
 * Checks a decoded marker against the account's change counter: one from the
 * future was never issued; one from before the latest change is refused when
 * the fake plays an IAM whose markers expire.
 */
function checkIssued(marker: MarkerState, { dataset, faults }: Pick<ActionContext, 'dataset' | 'faults'>): void {
  if (marker.gen > dataset.generation) rejectMarker();
  if (faults.rejectStaleMarkers && marker.gen < dataset.generation) throw expiredMarker();
}

/** The first index whose user name sorts after `name`. */
function indexAfter(users: readonly FakeUser[], name: string): number {
  let low = 0;
  let high = users.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (compareCodeUnits((users[mid] as FakeUser).userName, name) <= 0) low = mid + 1;
    else high = mid;
  }
  return low;
}

function listUsers(params: URLSearchParams, { dataset, faults, caller }: ActionContext): Page<FakeUser> {
  if (faults.listUsersDenied || faults.listUsersDeniedAccounts.includes(dataset.accountId)) {
    throw accessDenied(caller.arn, 'ListUsers', `arn:aws:iam::${dataset.accountId}:user/`);
  }
  const prefix = requireMatch(params.get('PathPrefix') ?? '/', 'pathPrefix', PATH_PREFIX, 1, 512);
  const maxItems = parseMaxItems(params.get('MaxItems'));
  const rawMarker = params.get('Marker');
  const marker = rawMarker === null ? undefined : decodeMarkerOf(rawMarker, 'users');
  if (marker) checkIssued(marker, { dataset, faults });
  // The marker holds the last name returned, not an index, so it stays valid
  // whatever the PathPrefix and survives users being added or deleted meanwhile.
  const from = marker === undefined ? 0 : indexAfter(dataset.users, marker.after);

  const items: FakeUser[] = [];
  let i = from;
  for (; i < dataset.users.length && items.length < maxItems; i++) {
    const user = dataset.users[i] as FakeUser;
    if (user.path.startsWith(prefix)) items.push(user);
  }
  let more = false;
  for (; i < dataset.users.length && !more; i++) more = (dataset.users[i] as FakeUser).path.startsWith(prefix);
  const last = items[items.length - 1];
  if (!more || last === undefined) return { items, isTruncated: false };
  return { items, isTruncated: true, marker: encodeMarker({ list: 'users', after: last.userName, gen: dataset.generation }) };
}

/** The user a per-user call names, after its fate: denied, vanished or there. */
function reachableUser(userName: string, action: IamAction, { dataset, faults, caller }: ActionContext): FakeUser {
  const user = dataset.usersByName.get(userName);
  const fate = user ? userFate(user.fateRank, dataset.fateScale, faults) : 'vanished';
  if (user && fate === 'denied') throw accessDenied(caller.arn, action, user.arn);
  if (!user || fate === 'vanished') throw new IamError('NoSuchEntity', `The user with name ${userName} cannot be found.`);
  return user;
}

function listAccessKeys(params: URLSearchParams, context: ActionContext): Page<FakeKey> {
  // IAM would list the caller's own keys without UserName; the fake has no
  // caller user, and an exporter that forgets UserName has a bug worth seeing.
  const userName = requireMatch(params.get('UserName'), 'userName', USER_NAME, 1, 128);
  const maxItems = parseMaxItems(params.get('MaxItems'));
  const rawMarker = params.get('Marker');
  const marker = rawMarker === null ? undefined : decodeMarkerOf(rawMarker, 'keys');
  const user = reachableUser(userName, 'ListAccessKeys', context);
  // A marker is bound to the user (by id, which a rename keeps) it was issued for.
  if (marker && marker.user !== user.userId) rejectMarker();
  if (marker) checkIssued(marker, context);
  const keys = context.dataset.keysByUser.get(user.userName) ?? [];
  // Resume after the last key returned, by value: keys deleted or added
  // meanwhile shift no position, so every key present throughout is listed once.
  const from = marker === undefined ? 0 : firstAfter(keys, { createDate: new Date(marker.date), accessKeyId: marker.id });
  const generation = context.dataset.generation;
  return pageOf(keys, from, maxItems, (last) => ({ list: 'keys', user: user.userId, date: last.createDate.getTime(), id: last.accessKeyId, gen: generation }));
}

/** The index of the first key that sorts after `cursor` in ListAccessKeys order. */
function firstAfter(keys: readonly FakeKey[], cursor: Pick<FakeKey, 'createDate' | 'accessKeyId'>): number {
  let low = 0;
  let high = keys.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (compareKeys(keys[mid] as FakeKey, cursor) <= 0) low = mid + 1;
    else high = mid;
  }
  return low;
}

function getAccessKeyLastUsed(params: URLSearchParams, context: ActionContext): FakeKey {
  const accessKeyId = requireMatch(params.get('AccessKeyId'), 'accessKeyId', ACCESS_KEY_ID, 16, 128);
  const key = context.dataset.keysById.get(accessKeyId);
  const { dataset } = context;
  // Permission is checked before existence, as IAM does: a caller without it learns nothing.
  if (context.faults.lastUsedDenied) {
    const resource = key ? dataset.ownerOf(key).arn : `arn:aws:iam::${dataset.accountId}:user/*`;
    throw accessDenied(context.caller.arn, 'GetAccessKeyLastUsed', resource);
  }
  if (!key) throw new IamError('NoSuchEntity', `The Access Key with id ${accessKeyId} cannot be found.`);
  reachableUser(key.userName, 'GetAccessKeyLastUsed', context);
  return key;
}

function reportDenied(action: IamAction, { faults, caller }: ActionContext): void {
  if (faults.reportDenied) throw accessDenied(caller.arn, action, '*');
}

function generateCredentialReport(context: ActionContext): GenerateAnswer {
  reportDenied('GenerateCredentialReport', context);
  if (context.faults.reportLimitExceeded) throw new IamError('LimitExceeded', 'Credential report generation limit exceeded. Try again later.');
  const { dataset, account } = context;
  return dataset.reports.generate(dataset.now(), context.faults.credentialReport, () => ({ ...sourceOf(dataset), rootKeysPresent: account.rootKeysPresent }));
}

function getCredentialReport(context: ActionContext): CredentialReport {
  reportDenied('GetCredentialReport', context);
  return context.dataset.reports.get(context.dataset.now(), context.faults.credentialReport);
}

/** What a report reads of the account, at the moment it starts. */
const sourceOf = (dataset: AccountStore) => ({ accountId: dataset.accountId, users: dataset.users, keysByUser: dataset.keysByUser });

/** IAM's per-account quotas, as GetAccountSummary reports them; the counts come from the account. */
const QUOTAS: readonly (readonly [string, number])[] = [
  ['UsersQuota', 5000],
  ['GroupsQuota', 300],
  ['RolesQuota', 1000],
  ['PoliciesQuota', 1500],
  ['AccessKeysPerUserQuota', 2],
  ['ServerCertificatesQuota', 20],
  ['SigningCertificatesPerUserQuota', 2],
  ['GroupsPerUserQuota', 10],
  ['AttachedPoliciesPerUserQuota', 10],
  ['PolicySizeQuota', 6144],
  ['UserPolicySizeQuota', 2048],
  ['VersionsPerPolicyQuota', 5],
  ['AssumeRolePolicySizeQuota', 2048],
];

function accountSummary({ dataset, account }: ActionContext): ReadonlyMap<string, number> {
  return new Map([
    ['Users', dataset.users.length],
    ['Groups', 0],
    // The organization's role exists in member accounts.
    ['Roles', account.management ? 0 : 1],
    ['Policies', 0],
    ['MFADevices', 0],
    ['MFADevicesInUse', 0],
    ['ServerCertificates', 0],
    ['AccountMFAEnabled', 1],
    ['AccountSigningCertificatesPresent', 0],
    ['AccountAccessKeysPresent', account.rootKeysPresent ? 1 : 0],
    ...QUOTAS,
  ]);
}

function listAccountAliases(params: URLSearchParams, { account }: ActionContext): string[] {
  parseMaxItems(params.get('MaxItems'));
  // An account has at most one alias, so no answer is ever truncated and no marker is ever valid.
  if (params.get('Marker') !== null) rejectMarker();
  return account.alias === null ? [] : [account.alias];
}
