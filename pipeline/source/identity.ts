/**
 * Who the credentials are: `sts:GetCallerIdentity`, once, before anything is
 * written. A new snapshot of the caller's own account asks its first ListUsers
 * page alongside it (run.ts, prefetchUsers); a resume asks nothing else first.
 * Its account is compared with the account an unfinished snapshot was started
 * on, so a resume with another account's credentials stops before it reads
 * anything (exit 2, naming --fresh), and the caller's ARN goes into the manifest.
 *
 * STS goes through the SDK's own chain (same credentials, region, retries; its
 * endpoint from AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL, else IAM's override: see
 * client.ts). An endpoint that does not implement STS at all (an IAM-only emulator)
 * is met with one ListUsers call instead: the account of the first user's ARN.
 */
import { ListUsersCommand, type IAMClient } from '@aws-sdk/client-iam';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { loadSharedConfigFiles } from '@smithy/core/config';
import type { Logger } from '@smithy/types';
import { awsErrorName, classifyFatal, ExportError, isDenied, isServiceError } from '../errors.ts';
import { instrument, type ApiStats, type Endpoints } from './client.ts';
import { createRetryStrategy } from './retry.ts';
import { accountIdFromArn } from './users.ts';

export interface CallerIdentity {
  /** 12 digits; null only when the endpoint has no STS and the account lists no user. */
  readonly accountId: string | null;
  /** The caller's ARN (STS), or null when it could not be asked. */
  readonly arn: string | null;
}

export interface IdentityOptions {
  readonly iam: IAMClient;
  readonly endpoints: Endpoints;
  readonly region: string;
  readonly profile: string | undefined;
  readonly maxAttempts: number;
  readonly pathPrefix: string;
  readonly stats: ApiStats;
  readonly logger?: Logger;
  readonly signal: AbortSignal;
}

/** Answers that mean "this endpoint has no STS" rather than "these credentials are bad". */
const NO_STS = new Set(['InvalidAction', 'UnknownOperationException', 'UnknownOperation', 'NotImplemented', 'NotFound', 'InvalidQueryParameter']);

function stsMissing(err: unknown): boolean {
  if (!isServiceError(err)) return false;
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  // GetCallerIdentity needs no permission on AWS; an emulator that enforces
  // policies may still deny it: then the ARN route answers the same question.
  return NO_STS.has(awsErrorName(err)) || status === 404 || status === 501 || isDenied(err);
}

/** Asks STS who the credentials are (or infers the account from ListUsers where STS is missing). */
export async function callerIdentity(o: IdentityOptions): Promise<CallerIdentity> {
  const sts = new STSClient({
    region: o.region,
    ...(o.profile ? { profile: o.profile } : {}),
    ...(o.endpoints.sts ? { endpoint: o.endpoints.sts } : {}),
    // The IAM client's provider: one credential resolution (SSO, IMDS, ...) for both.
    credentials: o.iam.config.credentials,
    ...(o.logger ? { logger: o.logger } : {}),
    retryStrategy: createRetryStrategy(o.maxAttempts),
  });
  instrument(sts, o.stats);
  try {
    const r = await sts.send(new GetCallerIdentityCommand({}), { abortSignal: o.signal });
    const accountId = r.Account && /^\d{12}$/.test(r.Account) ? r.Account : r.Arn ? (accountIdFromArn(r.Arn, 'any') ?? null) : null;
    return { accountId, arn: r.Arn ?? null };
  } catch (err) {
    if (o.signal.aborted || !stsMissing(err)) {
      throw classifyFatal(err, { what: 'GetCallerIdentity', service: 'STS', endpoint: o.endpoints.stsShown, permission: 'sts:GetCallerIdentity' });
    }
  } finally {
    sts.destroy();
  }
  try {
    const r = await o.iam.send(new ListUsersCommand({ PathPrefix: o.pathPrefix, MaxItems: 1 }), { abortSignal: o.signal });
    const arn = r.Users?.[0]?.Arn;
    return { accountId: arn ? (accountIdFromArn(arn) ?? null) : null, arn: null };
  } catch (err) {
    throw classifyFatal(err, { what: 'ListUsers', service: 'IAM', endpoint: o.endpoints.iamShown, permission: 'iam:ListUsers' });
  }
}

/**
 * A named profile that is in neither shared file is a typo or a missing setup:
 * say so, naming it, before the SDK's chain fails with a generic error.
 */
export async function checkProfile(profile: string | undefined, flag: boolean, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (!profile) return;
  const files = await loadSharedConfigFiles({});
  if (files.configFile[profile] || files.credentialsFile[profile]) return;
  const where = `${env.AWS_CONFIG_FILE ?? '~/.aws/config'} or ${env.AWS_SHARED_CREDENTIALS_FILE ?? '~/.aws/credentials'}`;
  throw new ExportError('SOURCE_CREDENTIALS', `${flag ? '--profile' : 'AWS_PROFILE'} ${profile}: no such profile in ${where}; check the name, or set up the profile (aws configure --profile ${profile})`);
}
