/**
 * AWS Organizations' ListAccounts and DescribeOrganization over its JSON
 * protocol (POST, `X-Amz-Target: AWSOrganizationsV20161128.<Action>`,
 * `application/x-amz-json-1.1`), answered from the account directory, and
 * the JSON form of every error the fake can answer there.
 */
import type { AccountDirectory, FakeAccount } from './accounts.ts';
import type { Action } from './catalog.ts';
import { IamError, type IamErrorCode } from './errors.ts';
import type { Caller } from './sts.ts';

export const ORGANIZATIONS_ACTIONS = ['ListAccounts', 'DescribeOrganization'] as const satisfies readonly Action[];
export type OrganizationsAction = (typeof ORGANIZATIONS_ACTIONS)[number];

export interface OrganizationsContext {
  readonly accounts: AccountDirectory;
  readonly caller: Caller;
}

const DEFAULT_MAX_RESULTS = 20;
const MAX_MAX_RESULTS = 20;

/** The organization's id, `o-` and ten characters, derived from the management account. */
export function organizationId(managementId: string): string {
  return `o-${Number(managementId).toString(36).padStart(10, '0').slice(-10)}`;
}

const invalidToken = (): IamError => new IamError('InvalidInputException', 'The provided pagination token is not valid.');

function requireOrganization(context: OrganizationsContext): void {
  if (!context.accounts.organization) {
    throw new IamError('AWSOrganizationsNotInUseException', 'Your account is not a member of an organization.');
  }
}

/** An account as ListAccounts renders it; JSON timestamps are epoch seconds. */
function renderAccount(account: FakeAccount, managementId: string): Record<string, unknown> {
  return {
    Id: account.id,
    Arn: `arn:aws:organizations::${managementId}:account/${organizationId(managementId)}/${account.id}`,
    Email: account.email,
    Name: account.name,
    Status: account.status,
    State: account.state,
    JoinedMethod: account.management ? 'INVITED' : 'CREATED',
    JoinedTimestamp: account.joined.getTime() / 1000,
  };
}

function listAccounts(body: Record<string, unknown>, context: OrganizationsContext): Record<string, unknown> {
  requireOrganization(context);
  const { accounts, caller } = context;
  // Only the management account (or a delegated administrator, which the fake has none of) may list.
  if (caller.accountId !== accounts.managementId) {
    throw new IamError('AccessDenied', "You don't have permissions to access this resource.");
  }
  const maxResults = body.MaxResults ?? DEFAULT_MAX_RESULTS;
  if (typeof maxResults !== 'number' || !Number.isInteger(maxResults) || maxResults < 1 || maxResults > MAX_MAX_RESULTS) {
    throw new IamError('InvalidInputException', `MaxResults must be an integer from 1 to ${MAX_MAX_RESULTS}.`);
  }
  const all = accounts.list();
  let start = 0;
  if (body.NextToken !== undefined && body.NextToken !== null) {
    // The token names the last account returned, never a position.
    const after = decodeToken(body.NextToken);
    const index = all.findIndex((account) => account.id === after);
    if (index < 0) throw invalidToken();
    start = index + 1;
  }
  const page = all.slice(start, start + maxResults);
  const last = page[page.length - 1];
  const more = last !== undefined && start + page.length < all.length;
  return {
    Accounts: page.map((account) => renderAccount(account, accounts.managementId)),
    ...(more ? { NextToken: Buffer.from(JSON.stringify({ after: last.id }), 'utf8').toString('base64url') } : {}),
  };
}

function decodeToken(raw: unknown): string {
  if (typeof raw !== 'string' || raw === '') throw invalidToken();
  try {
    const parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as unknown;
    if (typeof parsed === 'object' && parsed !== null && typeof (parsed as { after?: unknown }).after === 'string') return (parsed as { after: string }).after;
  } catch {
    // Not ours: the same answer as any other bad token.
  }
  throw invalidToken();
}

function describeOrganization(context: OrganizationsContext): Record<string, unknown> {
  requireOrganization(context);
  const { managementId } = context.accounts;
  const id = organizationId(managementId);
  const management = context.accounts.account(managementId);
  return {
    Organization: {
      Id: id,
      Arn: `arn:aws:organizations::${managementId}:organization/${id}`,
      FeatureSet: 'ALL',
      MasterAccountArn: `arn:aws:organizations::${managementId}:account/${id}/${managementId}`,
      MasterAccountId: managementId,
      MasterAccountEmail: management?.email,
      AvailablePolicyTypes: [],
    },
  };
}

/** Runs one Organizations action on a parsed JSON body; returns the answer's JSON value. */
export function runOrganizationsAction(action: OrganizationsAction, body: unknown, context: OrganizationsContext): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new IamError('InvalidInputException', 'The request body must be a JSON object.');
  switch (action) {
    case 'ListAccounts':
      return listAccounts(body as Record<string, unknown>, context);
    case 'DescribeOrganization':
      return describeOrganization(context);
  }
}

/** The JSON protocol's names and statuses for the fake's codes that mean the same thing there. */
const JSON_ERRORS: Partial<Record<IamErrorCode, { readonly type: string; readonly status: number }>> = {
  AccessDenied: { type: 'AccessDeniedException', status: 403 },
  Throttling: { type: 'TooManyRequestsException', status: 429 },
  ServiceFailure: { type: 'ServiceException', status: 500 },
  InvalidClientTokenId: { type: 'UnrecognizedClientException', status: 403 },
  ExpiredToken: { type: 'ExpiredTokenException', status: 403 },
};

/** An error as Organizations answers it: status, `__type` (also in `X-Amzn-ErrorType`) and message. */
export function renderJsonError(error: IamError): { readonly status: number; readonly type: string; readonly body: string } {
  const mapped = JSON_ERRORS[error.code] ?? { type: error.code, status: error.status };
  return { status: mapped.status, type: mapped.type, body: JSON.stringify({ __type: mapped.type, Message: error.message }) };
}
