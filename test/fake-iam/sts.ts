/**
 * The STS actions the fake answers on the same endpoint as IAM (both speak the
 * Query protocol; the `Action` parameter tells them apart), rendered as STS's
 * XML. Pure: the server has already counted, delayed and faulted the request.
 */
import type { Action } from './catalog.ts';
import { XML_NAMESPACE } from './catalog.ts';
import type { FaultOptions } from './faults.ts';
import { queryResponse, text } from './xml.ts';

export const STS_ACTIONS = ['GetCallerIdentity'] as const satisfies readonly Action[];
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
  readonly faults: Pick<FaultOptions, 'callerAccountId'>;
}

/** Runs one STS action; returns the XML body of its answer. */
export function runStsAction(action: StsAction, _params: URLSearchParams, context: StsContext, requestId: string): string {
  switch (action) {
    case 'GetCallerIdentity': {
      // Credentials of another account: same user, other account.
      const override = context.faults.callerAccountId;
      const caller = override === null ? context.caller : { ...context.caller, accountId: override, arn: context.caller.arn.replace(/^(arn:aws:[a-z]+::)\d{12}:/, `$1${override}:`) };
      const result = text('Arn', caller.arn) + text('UserId', caller.userId) + text('Account', caller.accountId);
      return queryResponse(XML_NAMESPACE.sts, action, result, requestId);
    }
  }
}
