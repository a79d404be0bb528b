/**
 * An emulator of IAM (Query protocol), with STS and Organizations beside it,
 * on 127.0.0.1, for tests, the demo and the benchmark. The real
 * @aws-sdk/client-iam, client-sts and client-organizations talk to it through
 * `endpoint`.
 *
 * This file assembles the parts: the accounts (accounts.ts) and their IAM
 * state (store.ts), the sessions AssumeRole issues (sessions.ts), faults
 * (faults.ts) and stats (stats.ts); the API request path is api.ts, the
 * control plane `/_fake/*` control.ts. Mutations and the control plane are
 * never faulted or counted.
 */
import { setMaxListeners } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AccountDirectory, FakeIamAccountError, patchProblems, type AccountPatch, type FakeAccount } from './accounts.ts';
import { apiHandler } from './api.ts';
import { churn as applyChurn, parseChurn, type ChurnOptions } from './churn.ts';
import { controlHandler } from './control.ts';
import { FaultInjector, userFate, type FaultOptions, type FaultPatch } from './faults.ts';
import { sendJson } from './http.ts';
import { applyMutation, parseMutation, type Mutation, type MutationResult } from './mutations.ts';
import { FakeIamOptionsError, mergeFaultOptions, resolveOptions, type FakeIamOptions } from './options.ts';
import { streamFor } from './random.ts';
import type { ReportKey } from './report.ts';
import { SessionTable } from './sessions.ts';
import { StatsRecorder, type FakeIamStats } from './stats.ts';
import type { AccountStore } from './store.ts';
import { buildTruth, readableKeys, type FakeIamTruth, type TruthKey } from './truth.ts';
import type { WindowKey } from './window.ts';

export type { FakeIamOptions } from './options.ts';
export type { FaultOptions, FaultPatch, RateLimit } from './faults.ts';
export type { AccountStats, FakeIamStats } from './stats.ts';
export type { FakeIamTruth, TruthKey, TruthUser } from './truth.ts';
export type { ChurnOptions } from './churn.ts';
export type { Mutation, MutationKind, MutationResult } from './mutations.ts';
export type { WindowKey } from './window.ts';
export type { ReportKey } from './report.ts';
export type { AccountPatch, FakeAccount } from './accounts.ts';
export type { AccountSpec, AccountsByCount, AccountsOption } from './account-options.ts';
export { FakeIamOptionsError } from './options.ts';
export { FakeIamMutationError } from './mutations.ts';
export { FakeIamAccountError } from './accounts.ts';

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

/** A running fake. */
export interface FakeIam {
  /** Base URL to pass as the SDK's `endpoint`, e.g. `http://127.0.0.1:54321`. */
  readonly url: string;
  readonly port: number;
  /**
   * Every user and key of an account (default: the management account), with
   * the fates the current options give them. Throws FakeIamAccountError for
   * an account the fake does not serve.
   */
  truth(accountId?: string): FakeIamTruth;
  /** Keys of users neither vanished nor denied: what a complete export of the account holds. */
  readableKeys(accountId?: string): TruthKey[];
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
  mutate(mutation: Mutation, accountId?: string): MutationResult;
  /** Applies `count` seeded random mutations to existing users and keys of an account; returns them in order. */
  churn(options: ChurnOptions, accountId?: string): MutationResult[];
  /**
   * What the current credential report says about each key (it has no key
   * ids; this is the truth behind its rows): null until a generation has
   * finished. Keys created or used after its GeneratedTime show their old state.
   */
  reportTruth(accountId?: string): CredentialReportTruth | null;
  /** Starts a new window now, in every account (one starts with the server). */
  startWindow(): void;
  /**
   * Every key that existed at some moment since the window started, of users
   * readable under the fault options in force now (neither vanished nor
   * denied), with whether it existed throughout (`whole`).
   */
  windowTruth(accountId?: string): WindowKey[];
  /** Every account, the management account first, then members in index order. */
  accounts(): FakeAccount[];
  /**
   * Changes an account's status (ACTIVE / SUSPENDED), closes or reopens it,
   * sets its alias or root keys; returns the new record. Throws
   * FakeIamAccountError for an unknown account, FakeIamOptionsError for a bad patch.
   */
  updateAccount(accountId: string, patch: AccountPatch): FakeAccount;
  /** Stops listening, destroys every connection and pending answer; idempotent. */
  close(): Promise<void>;
}

const HOST = '127.0.0.1';

/** Starts a fake on 127.0.0.1 and resolves once it is listening. */
export async function startFakeIam(options: FakeIamOptions = {}): Promise<FakeIam> {
  const resolved = resolveOptions(options);
  const { clock } = resolved;
  const accounts = new AccountDirectory(
    { data: resolved.data, alias: resolved.accountAlias, rootKeysPresent: resolved.rootKeysPresent },
    resolved.members,
    clock,
  );
  const sessions = new SessionTable(resolved.data.seed);
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
  const track = (end: () => void): (() => void) => {
    const finish = (): void => {
      unfinished.delete(finish);
      end();
    };
    unfinished.add(finish);
    return finish;
  };

  /** The account's IAM state; the management account's by default. */
  const storeOf = (accountId: string = accounts.managementId): AccountStore => {
    const store = accounts.store(accountId);
    if (!store) throw new FakeIamAccountError(accountId);
    return store;
  };
  const configure = (patch: FaultPatch): FaultOptions => {
    const next = mergeFaultOptions(faults.options, patch);
    faults.configure(next);
    return next;
  };
  const truth = (accountId?: string): FakeIamTruth => buildTruth(storeOf(accountId), faults.options);
  const mutate = (mutation: Mutation, accountId?: string): MutationResult => applyMutation(storeOf(accountId), parseMutation(mutation), mutationRandom);
  const churn = (churnOptions: ChurnOptions, accountId?: string): MutationResult[] => applyChurn(storeOf(accountId), parseChurn(churnOptions));
  const reportTruth = (accountId?: string): CredentialReportTruth | null => {
    const store = storeOf(accountId);
    const now = store.now();
    const report = store.reports.latest(now);
    if (!report) return null;
    return {
      generatedTime: new Date(report.generatedTime),
      expired: now - report.startedAt >= faults.options.credentialReport.maxAgeMs,
      keys: report.keys.map((key) => ({ ...key, lastRotated: new Date(key.lastRotated), lastUsed: key.lastUsed && { ...key.lastUsed, date: new Date(key.lastUsed.date) } })),
      csv: report.csv,
    };
  };
  const windowTruth = (accountId?: string): WindowKey[] => {
    const store = storeOf(accountId);
    return store.window.truth(store, (rank) => userFate(rank, store.fateScale, faults.options) === 'present');
  };
  // Accounts not generated yet have not changed: their window starts when they are.
  const startWindow = (): void => {
    for (const store of accounts.generatedStores()) store.window.start();
  };
  const updateAccount = (accountId: string, patch: AccountPatch): FakeAccount => {
    const problems = patchProblems(patch);
    if (problems.length > 0) throw new FakeIamOptionsError(problems);
    const updated = accounts.update(accountId, patch);
    if (!updated) throw new FakeIamAccountError(accountId);
    return updated;
  };

  const api = {
    truth,
    readableKeys: (accountId?: string) => readableKeys(truth(accountId)),
    stats: () => stats.snapshot(),
    resetStats: () => stats.reset(),
    faults: () => faults.options,
    configure,
    mutate,
    churn,
    reportTruth,
    startWindow,
    windowTruth,
    accounts: () => accounts.list(),
    updateAccount,
  };
  const handleApi = apiHandler({ accounts, sessions, faults, stats, clock, closing: closing.signal, track });
  const handleControl = controlHandler(api);

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
    ...api,
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
