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
import type { Logger } from '@smithy/types';
import type { AccountSelection, Config } from '../config.ts';
import type { AccountRef } from '../items.ts';
import type { Store } from '../store/store.ts';
import { accountFacts, memberIamClient, organizationAccounts, partitionOf, shardOf } from './accounts.ts';
import type { ApiStats, Endpoints } from './client.ts';
import type { AccountJob, PreparedAccount } from './fanout.ts';
import { LastUsedResolver, type LastUsedMode } from './lastUsed.ts';
import { fetchCredentialReport, ReportIndex, type ReportOutcome } from './report.ts';

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
  readonly #resolvers = new Map<string, LastUsedResolver>();
  readonly #clients: IAMClient[] = [];
  readonly #warned = new Set<string>();

  constructor(o: ReachOptions) {
    this.#o = o;
  }

  /** The last-use resolver of an account reached in this run. */
  resolverOf(accountId: string): LastUsedResolver {
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
      client = memberIamClient({
        accountId: job.ref.id,
        role: { roleName: role.name, externalId: role.externalId, sessionName: role.sessionName, partition: partitionOf(o.callerArn) },
        base: o.base,
        region: o.region,
        endpoints: o.endpoints,
        maxAttempts: o.config.maxAttempts,
        stats: o.stats,
        ...(o.logger ? { logger: o.logger } : {}),
      });
      this.#clients.push(client);
      // AssumeRole now: a role that is missing or refuses fails this account here.
      await client.config.credentials();
    }
    const facts = await accountFacts(client, signal, (action) => this.#warnOnce(`the accounts dataset lacks some facts: ${action} was denied (the identity needs it)`));
    this.#resolvers.set(job.ref.id, await this.#resolver(job.ref.id, client, signal));
    return { client, facts };
  };

  #warnOnce(message: string): void {
    if (this.#warned.has(message)) return;
    this.#warned.add(message);
    this.#o.onWarning(message);
  }

  async #resolver(accountId: string, client: IAMClient, signal: AbortSignal): Promise<LastUsedResolver> {
    const o = this.#o;
    const site = { service: 'IAM', endpoint: o.endpoints.iamShown };
    let mode = o.mode;
    let report: ReportIndex | undefined;
    if (mode === 'report') {
      const outcome = await this.#report(accountId, client, signal, site);
      if ('report' in outcome) report = new ReportIndex(outcome.report);
      else mode = 'api';
    }
    return new LastUsedResolver({ mode, report, client, concurrency: o.config.concurrency, signal, site, onFatal: o.onFatal, onThrottled: o.onThrottled });
  }

  async #report(accountId: string, client: IAMClient, signal: AbortSignal, site: { service: string; endpoint: string }): Promise<ReportOutcome> {
    const o = this.#o;
    const key = reportKey(o.staging, accountId);
    const saved = await o.store.read(key);
    if (saved) return JSON.parse(saved.body.toString('utf8')) as ReportOutcome;
    const outcome = await fetchCredentialReport(client, signal, site);
    await o.store.write(key, JSON.stringify(outcome));
    if ('denied' in outcome) {
      this.#warnOnce(
        `the credential report was denied (${outcome.denied}): last use comes from GetAccessKeyLastUsed for every key instead (the report needs iam:GenerateCredentialReport and iam:GetCredentialReport)`,
      );
    }
    return outcome;
  }

  /** Closes the member accounts' clients. */
  close(): void {
    for (const c of this.#clients) c.destroy();
  }
}

/** Where the credential report of an account is kept (private, with the checkpoint). */
export function reportKey(staging: string, accountId: string): string {
  return `${staging}reports/${accountId || 'self'}.json`;
}

/** The reports a snapshot saved, by account (for the manifest). */
export async function savedReports(store: Store, staging: string): Promise<Map<string, ReportOutcome>> {
  const out = new Map<string, ReportOutcome>();
  for (const key of await store.list(`${staging}reports/`)) {
    const found = await store.read(key);
    if (!found) continue;
    const account = key.slice(key.lastIndexOf('/') + 1).replace(/\.json$/, '');
    out.set(account === 'self' ? '' : account, JSON.parse(found.body.toString('utf8')) as ReportOutcome);
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
