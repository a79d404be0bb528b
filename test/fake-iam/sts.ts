/**
 * The STS actions the fake answers on the same endpoint as IAM (both speak the
 * Query protocol; the `Action` parameter tells them apart), rendered as STS's
 * XML. Pure apart from issuing sessions: the server has already counted,
 * delayed and faulted the request.
 */
import type { AccountDirectory } from './accounts.ts';
import type { Action } from './catalog.ts';
import { XML_NAMESPACE } from './catalog.ts';
import { IamError, accessDenied } from './errors.ts';
import type { FaultOptions } from './faults.ts';
import type { SessionTable } from './sessions.ts';
import { el, isoSeconds, queryResponse, text } from './xml.ts';

export const STS_ACTIONS = ['GetCallerIdentity', 'AssumeRole'] as const satisfies readonly Action[];
export type StsAction = (typeof STS_ACTIONS)[number];

/** Who signed a request, as GetCallerIdentity reports it. */
export interface Caller {
  readonly accountId: string;
  readonly arn: string;
  readonly userId: string;
}

/** The user id of the IAM user the fake pretends holds the base credentials. */
export const CALLER_USER_ID = 'AIDAKEYEXPORTERFAKE01';

/** The identity behind the base credentials: user `key-exporter` of `accountId`. */
export function baseCaller(accountId: string): Caller {
  return { accountId, arn: `arn:aws:iam::${accountId}:user/key-exporter`, userId: CALLER_USER_ID };
}

/** What an STS action reads. */
export interface StsContext {
  readonly caller: Caller;
  /** Whether the request was signed with the base credentials (not a session). */
  readonly base: boolean;
  readonly faults: Pick<FaultOptions, 'callerAccountId' | 'roleName' | 'externalId' | 'assumeRoleDenied' | 'roleInManagementAccount'>;
  readonly accounts: AccountDirectory;
  readonly sessions: SessionTable;
  readonly now: number;
}

const ROLE_ARN = /^arn:aws:iam::(\d{12}):role\/(?:[\u0021-\u007e]*\/)?([\w+=,.@-]{1,64})$/;
const SESSION_NAME = /^[\w+=,.@-]{2,64}$/;
/** The role's MaxSessionDuration is IAM's default, one hour: more is a ValidationError. */
const MIN_DURATION = 900;
const MAX_DURATION = 3600;

function validation(message: string): IamError {
  return new IamError('ValidationError', message);
}

/** Runs one STS action; returns the XML body of its answer. */
export function runStsAction(action: StsAction, params: URLSearchParams, context: StsContext, requestId: string): string {
  switch (action) {
    case 'GetCallerIdentity': {
      // Base credentials of another account: same user, other account.
      const override = context.base ? context.faults.callerAccountId : null;
      const caller = override === null ? context.caller : baseCaller(override);
      const result = text('Arn', caller.arn) + text('UserId', caller.userId) + text('Account', caller.accountId);
      return queryResponse(XML_NAMESPACE.sts, action, result, requestId);
    }
    case 'AssumeRole':
      return queryResponse(XML_NAMESPACE.sts, action, assumeRole(params, context), requestId);
  }
}

/**
 * Whether AssumeRole of `roleName` in `accountId` is refused. Every refusal is
 * AccessDenied, as STS answers when the role is missing, its trust policy does
 * not name the caller or the ExternalId, or the account is suspended or
 * closed: the caller cannot tell these apart by the code (an exporter reads
 * the account's status from Organizations to say which).
 */
function refused(accountId: string, roleName: string, externalId: string | null, context: StsContext): boolean {
  const account = context.accounts.account(accountId);
  const { faults } = context;
  return (
    // Not an account of the organization: no role there trusts the caller.
    !account ||
    // AWS creates the organization's role in member accounts only.
    (account.management && !faults.roleInManagementAccount) ||
    roleName !== faults.roleName ||
    (faults.externalId !== null && externalId !== faults.externalId) ||
    faults.assumeRoleDenied.includes(accountId) ||
    // A suspended or closed account's IAM answers nobody.
    account.status !== 'ACTIVE'
  );
}

function assumeRole(params: URLSearchParams, context: StsContext): string {
  const roleArn = params.get('RoleArn');
  const sessionName = params.get('RoleSessionName');
  const rawDuration = params.get('DurationSeconds');
  if (roleArn === null || sessionName === null) throw validation('RoleArn and RoleSessionName are required');
  const match = ROLE_ARN.exec(roleArn);
  if (!match) throw validation(`${roleArn} is invalid`);
  if (!SESSION_NAME.test(sessionName)) {
    throw validation(`1 validation error detected: Value '${sessionName}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*`);
  }
  const duration = rawDuration === null ? MAX_DURATION : Number(rawDuration);
  if (!Number.isInteger(duration) || duration < MIN_DURATION) {
    throw validation(`1 validation error detected: Value '${rawDuration}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to ${MIN_DURATION}`);
  }
  if (duration > MAX_DURATION) throw validation('The requested DurationSeconds exceeds the MaxSessionDuration set for this role.');
  const [, accountId = '', roleName = ''] = match;
  if (refused(accountId, roleName, params.get('ExternalId'), context)) throw accessDenied(context.caller.arn, 'AssumeRole', roleArn, 'sts');

  const session = context.sessions.issue(accountId, roleName, sessionName, duration, context.now);
  return (
    el(
      'Credentials',
      text('AccessKeyId', session.accessKeyId),
      text('SecretAccessKey', session.secretAccessKey),
      text('SessionToken', session.sessionToken),
      text('Expiration', isoSeconds(new Date(session.expiresAt))),
    ) +
    el('AssumedRoleUser', text('AssumedRoleId', `${session.roleId}:${sessionName}`), text('Arn', `arn:aws:sts::${accountId}:assumed-role/${roleName}/${sessionName}`))
  );
}
