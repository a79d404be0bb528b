/**
 * One API request, from bytes to answer. Every service goes the same way, so
 * faults, counting and latency treat IAM, STS and Organizations alike:
 *
 *   parse (Query form or JSON target) → who signed it (base credentials or a
 *   session, hence which account) → count it → rate limits (global, then the
 *   account's; answer at once if empty) → latency → invalid credentials / drop /
 *   throttle / 500 → credentials the fake never issued or that expired → the
 *   action itself, in the signing account.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { runAction, type IamAction } from './actions.ts';
import type { AccountDirectory } from './accounts.ts';
import { API_VERSION, ORGANIZATIONS_TARGET, SERVICE_OF, XML_NAMESPACE, isAction, type Action, type QueryService } from './catalog.ts';
import { IamError, accessDenied, expiredToken, invalidClientTokenId } from './errors.ts';
import type { FaultInjector } from './faults.ts';
import { readBody, sendAwsJson, sendXml } from './http.ts';
import { renderJsonError, runOrganizationsAction, type OrganizationsAction } from './organizations.ts';
import { sessionCaller, signingKeyId, type SessionTable, type Signer } from './sessions.ts';
import type { ErrorSource, StatsRecorder } from './stats.ts';
import { baseCaller, runStsAction, type Caller, type StsAction } from './sts.ts';
import { renderError, renderResult } from './xml.ts';

/** What the API path reads and records. */
export interface ApiDependencies {
  readonly accounts: AccountDirectory;
  readonly sessions: SessionTable;
  readonly faults: FaultInjector;
  readonly stats: StatsRecorder;
  /** Wall-clock ms (the fake's clock): session expiry, report timing. */
  readonly clock: () => number;
  /** Aborted on close: cuts latency waits short. */
  readonly closing: AbortSignal;
  /** Registers a request's end so close() can settle it; returns the function that unregisters and ends it. */
  readonly track: (end: () => void) => () => void;
}

/** A request, as far as the fake cares. */
type ApiRequest =
  | { readonly protocol: 'query'; readonly name: string | null; readonly action?: Action; readonly params: URLSearchParams }
  | { readonly protocol: 'json'; readonly name: string; readonly action?: Action; readonly body: string };

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Reads the request; undefined when the client went away mid-body. */
async function parse(req: IncomingMessage, url: URL): Promise<ApiRequest | undefined> {
  const target = header(req, 'x-amz-target');
  const body = req.method === 'POST' ? await readBody(req) : '';
  if (body === undefined) return undefined;
  if (target !== undefined) {
    const name = target.startsWith(ORGANIZATIONS_TARGET) ? target.slice(ORGANIZATIONS_TARGET.length) : target;
    const action = isAction(name) && SERVICE_OF[name] === 'organizations' ? name : undefined;
    return { protocol: 'json', name, body, ...(action ? { action } : {}) };
  }
  // Query services take their parameters in a form body or, for GET, the URL.
  const params = req.method === 'POST' ? new URLSearchParams(body) : url.searchParams;
  const name = params.get('Action');
  const action = isAction(name) && SERVICE_OF[name] !== 'organizations' ? name : undefined;
  return { protocol: 'query', name, params, ...(action ? { action } : {}) };
}

/** The account a signer acts in, and as whom. */
function identity(signer: Signer, managementId: string): { accountId: string; caller: Caller } {
  // An expired session still belongs to its account: its requests are counted there.
  if (signer.kind === 'session' || signer.kind === 'expired') return { accountId: signer.session.accountId, caller: sessionCaller(signer.session) };
  return { accountId: managementId, caller: baseCaller(managementId) };
}

/** Makes the handler of every request outside the control plane. */
export function apiHandler(deps: ApiDependencies): (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> {
  const { accounts, sessions, faults, stats, clock } = deps;

  function fail(res: ServerResponse, request: ApiRequest, error: IamError, requestId: string, source: ErrorSource, accountId: string): void {
    stats.error(error.code, source, accountId);
    if (request.protocol === 'json') {
      const rendered = renderJsonError(error);
      return sendAwsJson(res, rendered.status, rendered.body, requestId, rendered.type);
    }
    const service: QueryService = request.action ? (SERVICE_OF[request.action] as QueryService) : 'iam';
    sendXml(res, error.status, renderError(error, requestId, XML_NAMESPACE[service]), requestId);
  }

  /** The answer of an action that passed the fault path; throws IamError for an error answer. */
  function run(request: ApiRequest & { action: Action }, accountId: string, caller: Caller, signer: Signer, requestId: string): string {
    const service = SERVICE_OF[request.action];
    if (request.protocol === 'json') {
      let body: unknown;
      try {
        body = request.body === '' ? {} : JSON.parse(request.body);
      } catch {
        throw new IamError('InvalidInputException', 'The request body is not valid JSON.');
      }
      return JSON.stringify(runOrganizationsAction(request.action as OrganizationsAction, body, { accounts, caller }));
    }
    if (service === 'sts') {
      const context = { caller, base: signer.kind === 'base', faults: faults.options, accounts, sessions, now: clock() };
      return runStsAction(request.action as StsAction, request.params, context, requestId);
    }
    const dataset = accounts.store(accountId);
    const account = accounts.account(accountId);
    if (!dataset || !account) throw new Error(`fake-iam: a session names unknown account ${accountId}`);
    // Suspended or closed while a session of it was out: every IAM action is denied
    // (as AssumeRole into it is), so a run meets it mid-way, not only when reaching it.
    if (signer.kind === 'session' && account.status !== 'ACTIVE') {
      throw accessDenied(caller.arn, request.action, `arn:aws:iam::${accountId}:*`);
    }
    const result = runAction(request.action as IamAction, request.params, { dataset, account, caller, faults: faults.options });
    if (result.action === 'GetAccessKeyLastUsed') stats.lookedUp(result.key.accessKeyId);
    return renderResult(result, requestId);
  }

  return async (req, res, url) => {
    const request = await parse(req, url);
    if (request === undefined) return;
    const signer = sessions.resolve(signingKeyId(header(req, 'authorization')), header(req, 'x-amz-security-token'), clock());
    const { accountId, caller } = identity(signer, accounts.managementId);
    res.once('close', deps.track(stats.begin(request.action, accountId)));
    const requestId = randomUUID();

    const limited = faults.onArrival(accountId);
    if (limited) return fail(res, request, limited, requestId, 'rateLimit', accountId);
    const delay = faults.delayMs(accountId);
    if (delay > 0) await sleep(delay, undefined, { signal: deps.closing });

    const verdict = faults.afterDelay();
    if (verdict.kind === 'drop') {
      stats.dropped();
      req.socket.destroy();
      return;
    }
    if (verdict.kind === 'fail') return fail(res, request, verdict.error, requestId, 'injected', accountId);
    if (signer.kind === 'unknown') return fail(res, request, invalidClientTokenId(), requestId, 'action', accountId);
    if (signer.kind === 'expired') return fail(res, request, expiredToken(), requestId, 'action', accountId);
    if (!request.action) {
      const unknown =
        request.protocol === 'json'
          ? new IamError('UnknownOperationException', `Unknown operation ${request.name}`)
          : new IamError('InvalidAction', `Could not find operation ${request.name ?? ''} for version ${API_VERSION.iam}`);
      return fail(res, request, unknown, requestId, 'action', accountId);
    }
    try {
      const body = run(request as ApiRequest & { action: Action }, accountId, caller, signer, requestId);
      if (request.protocol === 'json') sendAwsJson(res, 200, body, requestId);
      else sendXml(res, 200, body, requestId);
    } catch (error) {
      if (!(error instanceof IamError)) throw error;
      fail(res, request, error, requestId, 'action', accountId);
    }
  };
}
