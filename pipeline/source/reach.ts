/**
 * Reaching the accounts of a snapshot: which accounts (selection), and for each
 * one read in a run its IAM client, its facts and its last-use source
 * (`prepare`, called by the fan-out when the account's turn comes).
 *
 * The credential report of every account is fetched once per snapshot and saved
 * in its staging (reports/<account>.json) before any key of that account is
 * matched against it, so every run of the snapshot — a resume hours later —
 * matches against the very same report. A denied report is saved as such too:
 * that account stays with GetAccessKeyLastUsed, with one warning.
 */
import type { IAMClient } from '@aws-sdk/client-iam';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { ExportError } from '../errors.ts';
import type { Logger } from '@smithy/types';
import type { AccountSelection, Config } from '../config.ts';
import type { AccountRef } from '../items.ts';
import type { Store, UploadResult } from '../store/store.ts';
import { accountFacts, memberIamClient, organizationAccounts, partitionOf, shardOf } from './accounts.ts';
import type { ApiStats, Endpoints } from './client.ts';
import type { AccountJob, PreparedAccount } from './fanout.ts';
import { LastUsedResolver, type LastUsedMode } from './lastUsed.ts';
import { fetchCredentialReport, ReportIndex, type ContentSink } from './report.ts';

/** The accounts a snapshot covers: its selection, less the excluded, of this shard. */
export async function selectAccounts(o: {
  selection: AccountSelection;
  callerAccount: string | null;
  shard: Config['shard'];
  organization: () => Promise<AccountRef[]>;
}): Promise<AccountRef[]> {
  const s = o.selection;
  let accounts: AccountRef[];
  if (s.mode === 'self') accounts = [{ id: o.callerAccount ?? '', name: null }];
  else if (s.mode === 'list') accounts = s.ids.map((id) => ({ id, name: null }));
  else accounts = await o.organization();
  const excluded = new Set(s.mode === 'self' ? [] : s.exclude);
  const shard = o.shard;
  return accounts.filter((a) => !excluded.has(a.id) && (!shard || shardOf(a.id, shard.count) === shard.index));
}

export interface ReachOptions {
  readonly config: Config;
  readonly store: Store;
  /** Staging folder of this snapshot (or shard): reports/ goes in it. */
  readonly staging: string;
  /** The client of the caller's own credentials. */
  readonly base: IAMClient;
  readonly callerAccount: string | null;
  readonly callerArn: string | null;
  readonly region: string;
  readonly endpoints: Endpoints;
  readonly stats: ApiStats;
  readonly logger?: Logger;
  readonly mode: LastUsedMode;
  readonly signal: AbortSignal;
  readonly onFatal: ConstructorParameters<typeof LastUsedResolver>[0]['onFatal'];
  readonly onThrottled: () => void;
  readonly onWarning: (message: string) => void;
}

/**
 * Reaches accounts for one run: `prepare` for the fan-out, the last-use
 * resolver of each account reached, and the member clients to close at the end.
 */
export class AccountReach {
  readonly #o: ReachOptions;
  readonly #resolvers = new Map<string, Promise<LastUsedResolver>>();
  /** Member accounts' clients, by account id, until their account is released. */
  readonly #clients = new Map<string, IAMClient>();
  readonly #warned = new Set<string>();

  constructor(o: ReachOptions) {
    this.#o = o;
  }

  /** The last-use resolver of an account reached in this run, once its source is in place. */
  resolverOf(accountId: string): Promise<LastUsedResolver> {
    const r = this.#resolvers.get(accountId) ?? this.#resolvers.get('');
    if (!r) throw new Error(`no last-use resolver for account ${accountId}`);
    return r;
  }

  /** Reaches `job`'s account: its client (AssumeRole for a member), facts, report and resolver. */
  readonly prepare = async (job: AccountJob, signal: AbortSignal): Promise<PreparedAccount> => {
    const o = this.#o;
    let client = o.base;
    if (job.viaRole) {
      const role = o.config.role!;
      client = await memberIamClient({
        accountId: job.ref.id,
        role: { roleName: role.name, externalId: role.externalId, sessionName: role.sessionName, partition: partitionOf(o.callerArn) },
        base: o.base,
        region: o.region,
        endpoints: o.endpoints,
        maxAttempts: o.config.maxAttempts,
        concurrency: o.config.concurrency,
        stats: o.stats,
        ...(o.logger ? { logger: o.logger } : {}),
      });
      this.#clients.set(job.ref.id, client);
      // AssumeRole now: a role that is missing or refuses fails this account here.
      await client.config.credentials();
    }
    const facts = accountFacts(client, signal, (action) => this.#warnOnce(`the accounts dataset lacks some facts: ${action} was denied (the identity needs it)`));
    facts.catch(() => undefined); // observed by the fan-out once the account's turn comes
    return { client, facts, lastUse: this.#lastUse(job.ref.id, client, signal) };
  };

  #warnOnce(message: string): void {
    if (this.#warned.has(message)) return;
    this.#warned.add(message);
    this.#o.onWarning(message);
  }

  /**
   * Puts the account's last-use resolver in place, and settles when it is: at once,
   * or once the credential report is fetched and saved. The resolver waits for the
   * report; when the report cannot be had (denied, or failed: the fan-out is told by
   * the rejection, as if reaching the account had failed) its keys are looked up with
   * GetAccessKeyLastUsed instead. Lookups follow the run's stop signal, not the
   * account's: the keys an account gave before it failed are still enriched and kept.
   */
  #lastUse(accountId: string, client: IAMClient, signal: AbortSignal): Promise<void> {
    const o = this.#o;
    const site = { service: 'IAM', endpoint: o.endpoints.iamShown };
    const resolver = (report: ReportIndex | undefined) =>
      new LastUsedResolver({ mode: o.mode === 'report' && !report ? 'api' : o.mode, report, client, concurrency: o.config.concurrency, signal: o.signal, site, onFatal: o.onFatal, onThrottled: o.onThrottled });
    if (o.mode !== 'report') {
      this.#resolvers.set(accountId, Promise.resolve(resolver(undefined)));
      return Promise.resolve();
    }
    const report = this.#report(accountId, client, signal, site);
    this.#resolvers.set(accountId, report.then(resolver, () => resolver(undefined)));
    const settled = report.then(() => undefined);
    settled.catch(() => undefined); // observed by the fan-out, maybe only when the account's turn comes
    return settled;
  }

  /** The account's report as the snapshot saved it, else fetched and saved now; undefined when denied. */
  async #report(accountId: string, client: IAMClient, signal: AbortSignal, site: { service: string; endpoint: string }): Promise<ReportIndex | undefined> {
    const o = this.#o;
    const key = reportKey(o.staging, accountId);
    const saved = await o.store.read(key);
    if (saved) {
      const info = JSON.parse(saved.body.toString('utf8')) as SavedOutcome;
      if ('denied' in info) return undefined;
      if ('report' in info) return ReportIndex.build(info.report.generatedTime, info.report.csv);
      return ReportIndex.build(info.iamGeneratedTime, verified(o.store, `${reportsFolder(o.staging)}${info.csv}`, info));
    }
    // The CSV goes to the staging as it comes; the index is built from the saved copy,
    // as a resumed run builds it. The CSV first, then the record naming it: a crash
    // between leaves no report, and the rerun fetches one.
    const csvName = `${accountId || 'self'}.csv`;
    const csvKey = `${reportsFolder(o.staging)}${csvName}`;
    const outcome = await fetchCredentialReport(client, signal, site, () => uploadSink(o.store, csvKey));
    if ('denied' in outcome) {
      await o.store.write(key, JSON.stringify(outcome));
      this.#warnOnce(
        `the credential report was denied (${outcome.denied}): last use comes from GetAccessKeyLastUsed for every key instead (the report needs iam:GenerateCredentialReport and iam:GetCredentialReport)`,
      );
      return undefined;
    }
    const { generatedTime, content: uploaded } = outcome.report;
    const index = await ReportIndex.build(generatedTime, verified(o.store, csvKey, uploaded));
    const info: SavedOutcome = { generatedTime: index.generatedTime.toISOString(), iamGeneratedTime: generatedTime, csv: csvName, bytes: uploaded.bytes, sha256: uploaded.sha256 };
    await o.store.write(key, JSON.stringify(info));
    return index;
  }

  /**
   * Forgets what the account's resolver holds of a user every key of which has been
   * enriched (its report row), once the resolver is in place; nothing when the
   * account has none (released, or not reached in this run).
   */
  forgetUser(accountId: string, userName: string): void {
    const r = this.#resolvers.get(accountId) ?? this.#resolvers.get('');
    void r?.then((resolver) => resolver.forget(userName));
  }

  /**
   * Forgets an account every record of which has been enriched: its resolver (with
   * its credential report's index) and its member client (closed). Without this a
   * run over an organization kept every account's report and client to the end:
   * memory that grew with the number of accounts.
   */
  release(accountId: string): void {
    this.#resolvers.delete(accountId);
    this.#clients.get(accountId)?.destroy();
    this.#clients.delete(accountId);
  }

  /** Accounts whose resolver is still held (for tests: released ones are not). */
  get held(): number {
    return this.#resolvers.size;
  }

  /** Closes the member accounts' clients. */
  close(): void {
    for (const c of this.#clients.values()) c.destroy();
    this.#clients.clear();
  }
}

/** Where the credential report of an account is kept (private, with the checkpoint). */
export function reportKey(staging: string, accountId: string): string {
  return `${reportsFolder(staging)}${accountId || 'self'}.json`;
}

/** The folder of a staging's saved reports (each account's JSON record and the CSV it names). */
function reportsFolder(staging: string): string {
  return `${staging}reports/`;
}

/**
 * How a snapshot keeps an account's report: reports/<account>.json, naming the CSV
 * beside it (reports/<account>.csv, written first) with its size and sha256, and
 * when the report was made; or that it was denied. (Earlier builds kept the CSV
 * inside the JSON, as `report`: a staging of theirs still resumes.)
 */
type SavedOutcome =
  | { readonly denied: string }
  | { readonly generatedTime: string; readonly iamGeneratedTime: string; readonly csv: string; readonly bytes: number; readonly sha256: string }
  | { readonly report: { readonly generatedTime: string; readonly csv: string } };

/**
 * A content sink that streams the report's CSV into `key` of the store (atomically:
 * an aborted attempt leaves nothing there), at the pace the store takes it.
 */
export function uploadSink(store: Store, key: string): ContentSink<UploadResult> {
  const body = new PassThrough();
  const uploaded = store.upload(key, body);
  uploaded.catch(() => undefined); // awaited by end(), abort() or a write that waits
  return {
    async write(chunk) {
      if (body.write(chunk)) return;
      // A store that failed stops reading: its error, not a wait for ever.
      await Promise.race([once(body, 'drain'), uploaded.then(() => Promise.reject(new Error(`the upload of ${key} ended before its content`)))]);
    },
    end() {
      body.end();
      return uploaded;
    },
    async abort(reason) {
      body.destroy(reason instanceof Error ? reason : new Error(String(reason)));
      await uploaded.catch(() => undefined);
    },
  };
}

/** A saved report's CSV from the store, checked against its size and sha256 as it streams. */
async function* verified(store: Store, key: string, expect: { readonly bytes: number; readonly sha256: string }): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  let bytes = 0;
  const where = store.describe(key);
  const corrupt = (why: string) => new ExportError('CHECKPOINT_CORRUPT', `saved credential report ${where} ${why}; rerun with --fresh to discard the unfinished snapshot`, { file: where });
  try {
    for await (const chunk of store.readStream(key)) {
      hash.update(chunk);
      bytes += chunk.length;
      yield chunk;
    }
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') throw corrupt('is missing (its record names it)');
    throw err;
  }
  const sha256 = hash.digest('hex');
  if (bytes !== expect.bytes || sha256 !== expect.sha256) {
    throw corrupt(`is not the one the snapshot started with (${bytes} bytes, sha256 ${sha256}; expected ${expect.bytes}, ${expect.sha256})`);
  }
}

/** When each report a snapshot saved was made, by account (for the manifest); denied ones are absent. */
export async function savedReportTimes(store: Store, staging: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const key of await store.list(reportsFolder(staging))) {
    if (!key.endsWith('.json')) continue;
    const found = await store.read(key);
    if (!found) continue;
    const account = key.slice(key.lastIndexOf('/') + 1).replace(/\.json$/, '');
    const info = JSON.parse(found.body.toString('utf8')) as SavedOutcome;
    if ('denied' in info) continue;
    const time = 'report' in info ? (await ReportIndex.build(info.report.generatedTime, info.report.csv)).generatedTime.toISOString() : info.generatedTime;
    out.set(account === 'self' ? '' : account, time);
  }
  return out;
}

/** Organizations' ACTIVE accounts, through the SDK chain (the caller's credentials). */
export function organizationLister(o: { config: Config; base: IAMClient; region: string; endpoints: Endpoints; stats: ApiStats; logger?: Logger; signal: AbortSignal; env: NodeJS.ProcessEnv }): () => Promise<AccountRef[]> {
  return () =>
    organizationAccounts({
      region: o.region,
      profile: o.config.profile,
      // An emulator (an IAM endpoint given, no Organizations one) serves Organizations too, as for STS.
      endpoint: o.env.AWS_ENDPOINT_URL_ORGANIZATIONS || o.env.AWS_ENDPOINT_URL ? undefined : o.endpoints.iam,
      credentials: o.base.config.credentials,
      maxAttempts: o.config.maxAttempts,
      stats: o.stats,
      ...(o.logger ? { logger: o.logger } : {}),
      signal: o.signal,
    });
}
