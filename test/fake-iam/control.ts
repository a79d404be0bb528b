/**
 * The control plane, `/_fake/*`: the same operations as the FakeIam object,
 * as JSON over HTTP for tools in other processes (the CLI fake, the bench).
 * Never faulted, never counted. Routes that read one account take
 * `?account=<id>` (default: the management account).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FakeIamAccountError } from './accounts.ts';
import type { ChurnOptions } from './churn.ts';
import { readBody, sendJson } from './http.ts';
import { FakeIamMutationError, type Mutation } from './mutations.ts';
import { FakeIamOptionsError } from './options.ts';
import type { FakeIam } from './server.ts';

/** What the routes call: the fake's own API. */
export type ControlTarget = Omit<FakeIam, 'url' | 'port' | 'close'>;

/** Parses a JSON body; answers 400 and returns undefined when it is not JSON. */
async function readJson(req: IncomingMessage, res: ServerResponse, what: string): Promise<{ value: unknown } | undefined> {
  const body = await readBody(req);
  if (body === undefined) return undefined;
  try {
    return { value: JSON.parse(body) };
  } catch {
    sendJson(res, 400, { error: `body must be ${what}` });
    return undefined;
  }
}

/** Splits `{ accountId?, ...rest }`, the envelope of account-level control bodies. */
function envelope(value: unknown): { accountId: string | undefined; rest: Record<string, unknown> } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { accountId: undefined, rest: value as Record<string, unknown> };
  const { accountId, ...rest } = value as Record<string, unknown>;
  return { accountId: typeof accountId === 'string' ? accountId : undefined, rest };
}

/** Makes the handler of `/_fake/*`. */
export function controlHandler(fake: ControlTarget): (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> {
  async function route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const account = url.searchParams.get('account') ?? undefined;
    const path = `${req.method} ${url.pathname}`;
    switch (path) {
      case 'GET /_fake/stats':
        return sendJson(res, 200, fake.stats());
      case 'POST /_fake/stats/reset':
        fake.resetStats();
        return sendJson(res, 200, fake.stats());
      case 'GET /_fake/truth':
        return sendJson(res, 200, fake.truth(account));
      case 'GET /_fake/faults':
        return sendJson(res, 200, fake.faults());
      case 'GET /_fake/report':
        return sendJson(res, 200, fake.reportTruth(account));
      case 'GET /_fake/window':
        return sendJson(res, 200, fake.windowTruth(account));
      case 'POST /_fake/window/start':
        fake.startWindow();
        return sendJson(res, 200, { started: true });
      case 'GET /_fake/accounts':
        return sendJson(res, 200, fake.accounts());
      case 'POST /_fake/account': {
        const parsed = await readJson(req, res, 'a JSON object { accountId, status?, closed?, alias?, rootKeysPresent? }');
        if (parsed === undefined) return;
        const { accountId, rest } = envelope(parsed.value);
        return sendJson(res, 200, fake.updateAccount(accountId ?? '', rest));
      }
      case 'POST /_fake/mutate': {
        const parsed = await readJson(req, res, 'a JSON mutation or { "churn": { seed, count, kinds? } }, with an optional accountId');
        if (parsed === undefined) return;
        const { accountId, rest } = envelope(parsed.value);
        const isChurn = typeof rest === 'object' && rest !== null && 'churn' in rest;
        return sendJson(res, 200, isChurn ? fake.churn(rest.churn as ChurnOptions, accountId) : fake.mutate(rest as Mutation, accountId));
      }
      case 'POST /_fake/configure': {
        const parsed = await readJson(req, res, 'a JSON object of fault options');
        if (parsed === undefined) return;
        return sendJson(res, 200, fake.configure(parsed.value as Parameters<ControlTarget['configure']>[0]));
      }
      default:
        return sendJson(res, 404, { error: `no control route ${path}` });
    }
  }

  return async (req, res, url) => {
    try {
      await route(req, res, url);
    } catch (error) {
      // The fake's own validation errors are the caller's mistake: 400 (404 for an unknown account), with every problem.
      if (error instanceof FakeIamOptionsError) return sendJson(res, 400, { error: error.message, problems: error.problems });
      if (error instanceof FakeIamMutationError) return sendJson(res, 400, { error: error.message, code: error.code, problems: error.problems });
      if (error instanceof FakeIamAccountError) return sendJson(res, 404, { error: error.message, code: error.code });
      throw error;
    }
  };
}
