/**
 * An IAM Query-protocol emulator on 127.0.0.1, for tests, the demo and the
 * benchmark. The real @aws-sdk/client-iam (and client-sts, for
 * GetCallerIdentity) talks to it through `endpoint`.
 *
 * Each API request goes: count it → rate limit (answer at once if empty) →
 * latency → invalid credentials / drop / throttle / 500 → the action itself.
 * `/_fake/*` is the control plane for other processes; it is never faulted
 * and never counted, and neither are mutations.
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { runAction, type IamAction } from './actions.ts';
import { API_VERSION, SERVICE_OF, XML_NAMESPACE, isAction, type Service } from './catalog.ts';
import { churn as applyChurn, parseChurn, type ChurnOptions } from './churn.ts';
import { generateDataset } from './data.ts';
import { IamError } from './errors.ts';
import { FaultInjector, userFate, type FaultOptions, type FaultPatch } from './faults.ts';
import { FakeIamMutationError, applyMutation, parseMutation, type Mutation, type MutationResult } from './mutations.ts';
import { FakeIamOptionsError, mergeFaultOptions, resolveOptions, type FakeIamOptions } from './options.ts';
import { streamFor } from './random.ts';
import { StatsRecorder, type ErrorSource, type FakeIamStats } from './stats.ts';
import { AccountStore } from './store.ts';
import { baseCaller, runStsAction, type StsAction } from './sts.ts';
import { buildTruth, readableKeys, type FakeIamTruth, type TruthKey } from './truth.ts';
import type { WindowKey } from './window.ts';
import type { ReportKey } from './report.ts';
import { renderError, renderResult } from './xml.ts';

export type { FakeIamOptions } from './options.ts';
export type { FaultOptions, FaultPatch, RateLimit } from './faults.ts';
export type { FakeIamStats } from './stats.ts';
export type { FakeIamTruth, TruthKey, TruthUser } from './truth.ts';
export type { ChurnOptions } from './churn.ts';
export type { Mutation, MutationKind, MutationResult } from './mutations.ts';
export type { WindowKey } from './window.ts';
export type { ReportKey } from './report.ts';

/** The latest finished credential report, as `reportTruth()` gives it. */
export interface CredentialReportTruth {
  readonly generatedTime: Date;
  /** Older than `credentialReport.maxAgeMs`: GetCredentialReport answers 410 ReportExpired. */
  readonly expired: boolean;
  /** The keys in the report, in row order, each with its slot (1 or 2). */
  readonly keys: ReportKey[];
  /** The CSV, decoded. */
  readonly csv: string;
}
export { FakeIamOptionsError } from './options.ts';
export { FakeIamMutationError } from './mutations.ts';

/** A running fake. */
export interface FakeIam {
  /** Base URL to pass as the SDK's `endpoint`, e.g. `http://127.0.0.1:54321`. */
  readonly url: string;
  readonly port: number;
  /** Every user and key, with the fates the current options give them. */
  truth(): FakeIamTruth;
  /** Keys of users neither vanished nor denied: what a complete export holds. */
  readableKeys(): TruthKey[];
  stats(): FakeIamStats;
  resetStats(): void;
  /** The fault options in force. */
  faults(): FaultOptions;
  /**
   * Changes fault options on the running server; later requests see them.
   * Throws FakeIamOptionsError (and changes nothing) when the result is invalid.
   */
  configure(patch: FaultPatch): FaultOptions;
  /**
   * Changes IAM now, as another administrator would; returns what it did.
   * Never faulted or counted. Throws FakeIamMutationError (and changes
   * nothing) when the mutation is malformed or names no existing user or key.
   */
  mutate(mutation: Mutation): MutationResult;
  /** Applies `count` seeded random mutations to existing users and keys; returns them in order. */
  churn(options: ChurnOptions): MutationResult[];
  /**
   * What the current credential report says about each key (it has no key
   * ids; this is the truth behind its rows): null until a generation has
   * finished. Keys created or used after its GeneratedTime show their old state.
   */
  reportTruth(): CredentialReportTruth | null;
  /** Starts a new window now (one starts with the server). */
  startWindow(): void;
  /**
   * Every key that existed at some moment since the window started, of users
   * readable under the fault options in force now (neither vanished nor
   * denied), with whether it existed throughout (`whole`).
   */
  windowTruth(): WindowKey[];
  /** Stops listening, destroys every connection and pending answer; idempotent. */
  close(): Promise<void>;
}

const HOST = '127.0.0.1';
const MAX_BODY_BYTES = 1 << 20;

/** The request body, or undefined (socket destroyed) when the client aborted or sent too much. */
async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) break;
      chunks.push(chunk);
    }
  } catch {
    // The client went away mid-body: nobody is left to answer.
  }
  if (size > MAX_BODY_BYTES || !req.complete) {
    req.socket.destroy();
    return undefined;
  }
  return Buffer.concat(chunks).toString('utf8');
}

function sendXml(res: ServerResponse, status: number, body: string, requestId: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, {
    'content-type': 'text/xml',
    'content-length': Buffer.byteLength(body),
    'x-amzn-requestid': requestId,
  });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Starts a fake on 127.0.0.1 and resolves once it is listening. */
export async function startFakeIam(options: FakeIamOptions = {}): Promise<FakeIam> {
  const resolved = resolveOptions(options);
  const dataset = new AccountStore(generateDataset(resolved.data), resolved.clock);
  const faults = new FaultInjector(resolved.data.seed, resolved.faults);
  // Draws what a test's mutation leaves open (fresh names, ids); churn has its own seed.
  const mutationRandom = streamFor(resolved.data.seed, 'mutations');
  const stats = new StatsRecorder();
  // Aborts latency waits on close, so pending answers do not hold the process.
  const closing = new AbortController();
  // Every request waiting out its latency listens on it.
  setMaxListeners(0, closing.signal);
  // Ends of requests in flight: a response's 'close' event can come after the
  // server's, and stats read after close() must not show ghosts in flight.
  const unfinished = new Set<() => void>();

  const configure = (patch: FaultPatch): FaultOptions => {
    const next = mergeFaultOptions(faults.options, patch);
    faults.configure(next);
    return next;
  };
  const truth = (): FakeIamTruth => buildTruth(dataset, faults.options);
  const mutate = (mutation: Mutation): MutationResult => applyMutation(dataset, parseMutation(mutation), mutationRandom);
  const churn = (churnOptions: ChurnOptions): MutationResult[] => applyChurn(dataset, parseChurn(churnOptions));
  const reportTruth = (): CredentialReportTruth | null => {
    const now = dataset.now();
    const report = dataset.reports.latest(now);
    if (!report) return null;
    return {
      generatedTime: new Date(report.generatedTime),
      expired: now - report.startedAt >= faults.options.credentialReport.maxAgeMs,
      keys: report.keys.map((key) => ({ ...key, lastRotated: new Date(key.lastRotated), lastUsed: key.lastUsed && { ...key.lastUsed, date: new Date(key.lastUsed.date) } })),
      csv: report.csv,
    };
  };
  const windowTruth = (): WindowKey[] => dataset.window.truth(dataset, (rank) => userFate(rank, dataset.fateScale, faults.options) === 'present');

  function fail(res: ServerResponse, error: IamError, requestId: string, source: ErrorSource, service: Service = 'iam'): void {
    stats.error(error.code, source);
    sendXml(res, error.status, renderError(error, requestId, XML_NAMESPACE[service]), requestId);
  }

  /** The XML answer of an action that passed the fault path; throws IamError for an error answer. */
  function answer(action: IamAction | StsAction, params: URLSearchParams, requestId: string): string {
    if (SERVICE_OF[action] === 'sts') return runStsAction(action as StsAction, params, { caller: baseCaller(dataset.accountId), faults: faults.options }, requestId);
    const result = runAction(action as IamAction, params, { dataset, faults: faults.options });
    if (result.action === 'GetAccessKeyLastUsed') stats.lookedUp(result.key.accessKeyId);
    return renderResult(result, requestId);
  }

  async function handleApi(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    // IAM takes the Query parameters in a form body or, for GET, the URL.
    const body = req.method === 'POST' ? await readBody(req) : '';
    if (body === undefined) return;
    const params = req.method === 'POST' ? new URLSearchParams(body) : url.searchParams;
    const actionName = params.get('Action');
    const action = isAction(actionName) ? actionName : undefined;
    const service = action ? SERVICE_OF[action] : 'iam';
    const end = stats.begin(action);
    const finish = (): void => {
      unfinished.delete(finish);
      end();
    };
    unfinished.add(finish);
    res.once('close', finish);
    const requestId = randomUUID();

    const limited = faults.onArrival();
    if (limited) return fail(res, limited, requestId, 'rateLimit', service);
    const delay = faults.delayMs();
    if (delay > 0) await sleep(delay, undefined, { signal: closing.signal });

    const verdict = faults.afterDelay();
    if (verdict.kind === 'drop') {
      stats.dropped();
      req.socket.destroy();
      return;
    }
    if (verdict.kind === 'fail') return fail(res, verdict.error, requestId, 'injected', service);
    if (!action) {
      return fail(res, new IamError('InvalidAction', `Could not find operation ${actionName ?? ''} for version ${API_VERSION.iam}`), requestId, 'action');
    }
    try {
      sendXml(res, 200, answer(action, params, requestId), requestId);
    } catch (error) {
      if (!(error instanceof IamError)) throw error;
      fail(res, error, requestId, 'action', service);
    }
  }

  /** Parses a JSON control body; answers 400 and returns undefined when it is not JSON. */
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

  /** POST /_fake/mutate: one mutation, or `{ "churn": { seed, count, kinds? } }`. */
  function mutateRoute(res: ServerResponse, value: unknown): void {
    try {
      const isChurn = typeof value === 'object' && value !== null && 'churn' in value;
      const result = isChurn ? churn((value as { churn: ChurnOptions }).churn) : mutate(value as Mutation);
      return sendJson(res, 200, result);
    } catch (error) {
      if (!(error instanceof FakeIamMutationError)) throw error;
      return sendJson(res, 400, { error: error.message, code: error.code, problems: error.problems });
    }
  }

  async function handleControl(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case 'GET /_fake/stats':
        return sendJson(res, 200, stats.snapshot());
      case 'POST /_fake/stats/reset':
        stats.reset();
        return sendJson(res, 200, stats.snapshot());
      case 'GET /_fake/truth':
        return sendJson(res, 200, truth());
      case 'GET /_fake/faults':
        return sendJson(res, 200, faults.options);
      case 'GET /_fake/report':
        return sendJson(res, 200, reportTruth());
      case 'GET /_fake/window':
        return sendJson(res, 200, windowTruth());
      case 'POST /_fake/window/start':
        dataset.window.start();
        return sendJson(res, 200, { started: true });
      case 'POST /_fake/mutate': {
        const parsed = await readJson(req, res, 'a JSON mutation or { "churn": { seed, count, kinds? } }');
        if (parsed === undefined) return;
        return mutateRoute(res, parsed.value);
      }
      case 'POST /_fake/configure': {
        const parsed = await readJson(req, res, 'a JSON object of fault options');
        if (parsed === undefined) return;
        try {
          return sendJson(res, 200, configure(parsed.value as FaultPatch));
        } catch (error) {
          if (!(error instanceof FakeIamOptionsError)) throw error;
          return sendJson(res, 400, { error: error.message, problems: error.problems });
        }
      }
      default:
        return sendJson(res, 404, { error: `no control route ${route}` });
    }
  }

  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    const url = new URL(req.url ?? '/', `http://${HOST}`);
    const handled = url.pathname.startsWith('/_fake/') ? handleControl(req, res, url) : handleApi(req, res, url);
    handled.catch((error: unknown) => {
      if (closing.signal.aborted) {
        req.socket.destroy();
        return;
      }
      // A bug in the fake must be loud, not look like an injected IAM fault.
      process.stderr.write(`fake-iam: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      if (res.headersSent) req.socket.destroy();
      else sendJson(res, 500, { error: 'fake-iam internal error' });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(resolved.port, HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  let closed: Promise<void> | undefined;
  return {
    url: `http://${HOST}:${port}`,
    port,
    truth,
    readableKeys: () => readableKeys(truth()),
    stats: () => stats.snapshot(),
    resetStats: () => stats.reset(),
    faults: () => faults.options,
    configure,
    mutate,
    churn,
    reportTruth,
    startWindow: () => dataset.window.start(),
    windowTruth,
    close() {
      closed ??= new Promise<void>((resolve, reject) => {
        closing.abort();
        server.close((error) => {
          for (const finish of unfinished) finish();
          if (error) reject(error);
          else resolve();
        });
        // close() alone waits for keep-alive and in-flight connections.
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
