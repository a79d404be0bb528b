/**
 * Which accounts a snapshot covers, and how each is reached.
 *
 * Accounts come from Organizations ListAccounts (--organization: ACTIVE accounts
 * only; the caller must be the management account or a delegated administrator)
 * or from a list (--accounts). Every member account is reached by AssumeRole into
 * `arn:<partition>:iam::<account>:role/<--role-name>`, with the SDK's
 * fromTemporaryCredentials (it refreshes the credentials on long runs). The
 * caller's own account is read with the base credentials, not through the role:
 * the role usually does not exist in the management account, and the base
 * credentials are the ones a single-account run uses.
 *
 * Shards: an account belongs to shard `hash(account id) mod N` — stable, so every
 * shard of a sharded snapshot agrees on who reads which account without talking.
 */
import { createHash } from 'node:crypto';
import { GetAccountSummaryCommand, IAMClient, ListAccountAliasesCommand } from '@aws-sdk/client-iam';
import type { Logger } from '@smithy/types';
import { classifyFatal, isDenied } from '../errors.ts';
import type { AccountFacts } from '../items.ts';
import { equipIamClient, instrument, type ApiStats, type Endpoints } from './client.ts';
import { createRetryStrategy, ThrottleShareGate } from './retry.ts';

import type { AccountRef } from '../items.ts';
export type { AccountRef } from '../items.ts';

/** The shard (0..shards-1) an account belongs to: a stable hash of its id. */
export function shardOf(accountId: string, shards: number): number {
  return createHash('sha256').update(accountId).digest().readUInt32BE(0) % shards;
}

/** The ACTIVE accounts of the organization, paginated, in the order Organizations lists them. */
export async function organizationAccounts(o: { region: string; profile: string | undefined; endpoint: string | undefined; credentials: IAMClient['config']['credentials']; maxAttempts: number; stats: ApiStats; logger?: Logger; signal: AbortSignal }): Promise<AccountRef[]> {
  // Loaded only by an --organization run: a single-account run does not pay its start time.
  const { OrganizationsClient, paginateListAccounts } = await import('@aws-sdk/client-organizations');
  const client = new OrganizationsClient({
    region: o.region,
    ...(o.profile ? { profile: o.profile } : {}),
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    credentials: o.credentials,
    ...(o.logger ? { logger: o.logger } : {}),
    retryStrategy: createRetryStrategy(o.maxAttempts),
  });
  instrument(client, o.stats);
  const accounts: AccountRef[] = [];
  try {
    for await (const page of paginateListAccounts({ client }, {}, { abortSignal: o.signal })) {
      for (const a of page.Accounts ?? []) {
        if (a.Id && a.Status === 'ACTIVE' && (a.State === undefined || a.State === 'ACTIVE')) accounts.push({ id: a.Id, name: a.Name ?? null });
      }
    }
  } catch (err) {
    throw classifyFatal(err, { what: 'ListAccounts', service: 'Organizations', endpoint: o.endpoint ?? 'https://organizations.us-east-1.amazonaws.com', permission: 'organizations:ListAccounts (from the management or a delegated administrator account)' });
  } finally {
    client.destroy();
  }
  return accounts;
}

export interface RoleOptions {
  readonly roleName: string;
  readonly externalId: string | undefined;
  readonly sessionName: string;
  /** The partition of the caller's ARN (aws, aws-us-gov, aws-cn). */
  readonly partition: string;
}

/** The role ARN assumed in `accountId`. */
export function roleArn(accountId: string, role: RoleOptions): string {
  return `arn:${role.partition}:iam::${accountId}:role/${role.roleName}`;
}

/**
 * An IAM client for a member account: AssumeRole into it with the base
 * credentials (the SDK caches and refreshes the session), its own retry
 * strategy and rate gate (IAM throttles each account on its own).
 */
export async function memberIamClient(o: {
  accountId: string;
  role: RoleOptions;
  base: IAMClient;
  region: string;
  endpoints: Endpoints;
  maxAttempts: number;
  /** Requests out at once to this account (wire slots; see wire.ts). */
  concurrency: number;
  stats: ApiStats;
  logger?: Logger;
}): Promise<IAMClient> {
  // Loaded only when an account is reached through the role (see organizationAccounts).
  const { fromTemporaryCredentials } = await import('@aws-sdk/credential-providers');
  const credentials = fromTemporaryCredentials({
    params: {
      RoleArn: roleArn(o.accountId, o.role),
      RoleSessionName: o.role.sessionName,
      ...(o.role.externalId ? { ExternalId: o.role.externalId } : {}),
    },
    masterCredentials: o.base.config.credentials,
    // STS throttles too (many shards or accounts reached at once): the same retries as IAM.
    clientConfig: { region: o.region, ...(o.endpoints.sts ? { endpoint: o.endpoints.sts } : {}), retryStrategy: createRetryStrategy(o.maxAttempts) },
  });
  const gate = new ThrottleShareGate();
  const client = new IAMClient({
    region: o.region,
    ...(o.endpoints.iam ? { endpoint: o.endpoints.iam } : {}),
    credentials,
    ...(o.logger ? { logger: o.logger } : {}),
    retryStrategy: createRetryStrategy(o.maxAttempts, gate),
  });
  return equipIamClient(client, { stats: o.stats, concurrency: o.concurrency, gate });
}

/** The partition of an ARN (`arn:<partition>:...`), aws when it cannot be told. */
export function partitionOf(arn: string | null): string {
  const p = arn?.split(':')[1];
  return p && /^aws(-[a-z-]+)?$/.test(p) ? p : 'aws';
}

/**
 * The facts of an account for the accounts dataset: its alias (ListAccountAliases)
 * and whether its root user has access keys (GetAccountSummary
 * AccountAccessKeysPresent: root keys are invisible to ListUsers). A denied call
 * leaves its fact null and is reported through `onDenied` (one warning a run).
 */
export async function accountFacts(client: IAMClient, signal: AbortSignal, onDenied: (action: string) => void): Promise<AccountFacts> {
  const ask = async <T>(action: string, call: () => Promise<T>): Promise<T | null> => {
    try {
      return await call();
    } catch (err) {
      if (signal.aborted || !isDenied(err)) throw err;
      onDenied(action);
      return null;
    }
  };
  const [summary, aliases] = await Promise.all([
    ask('iam:GetAccountSummary', () => client.send(new GetAccountSummaryCommand({}), { abortSignal: signal })),
    ask('iam:ListAccountAliases', () => client.send(new ListAccountAliasesCommand({}), { abortSignal: signal })),
  ]);
  const present = summary?.SummaryMap?.AccountAccessKeysPresent;
  return {
    alias: aliases ? (aliases.AccountAliases?.[0] ?? null) : null,
    rootAccessKeysPresent: summary === null || present === undefined ? null : present > 0,
  };
}
