/**
 * The IAM client: the SDK's own credential chain, region and endpoint resolution
 * (flags first, then AWS_PROFILE, AWS_ENDPOINT_URL_IAM, SSO, IMDS...) and its
 * adaptive retry strategy. A middleware counts calls, attempts and throttles for the
 * manifest and the operator; it observes only, it never decides.
 */
import { IAMClient } from '@aws-sdk/client-iam';
import { isThrottle } from '../errors.ts';
import { createRetryStrategy } from './retry.ts';

/** Live API counters of one run. */
export interface ApiStats {
  /** Logical calls per operation (ListUsers, ListAccessKeys, ...). */
  readonly calls: Record<string, number>;
  /** HTTP attempts, retries included. */
  attempts: number;
  /** Attempts answered with a throttling error. */
  throttles: number;
}

export function newApiStats(): ApiStats {
  return { calls: {}, attempts: 0, throttles: 0 };
}

/** Total logical calls. */
export function totalCalls(stats: ApiStats): number {
  return Object.values(stats.calls).reduce((a, b) => a + b, 0);
}

export interface ClientOptions {
  readonly endpointUrl: string | undefined;
  readonly region: string | undefined;
  readonly profile: string | undefined;
  readonly maxAttempts: number;
}

/**
 * IAM is a global service: the region only picks the signing region and partition.
 * When neither the flag nor the SDK's chain (AWS_REGION, profile) gives one, use
 * us-east-1, as the AWS CLI does for IAM, instead of failing.
 */
async function resolveRegion(o: ClientOptions): Promise<string> {
  if (o.region) return o.region;
  const probe = new IAMClient(o.profile ? { profile: o.profile } : {});
  try {
    return await probe.config.region();
  } catch {
    return 'us-east-1';
  } finally {
    probe.destroy();
  }
}

/** Builds the client and wires the counting middleware into `stats`. */
export async function createIamClient(o: ClientOptions, stats: ApiStats): Promise<IAMClient> {
  const client = new IAMClient({
    region: await resolveRegion(o),
    ...(o.profile ? { profile: o.profile } : {}),
    ...(o.endpointUrl ? { endpoint: o.endpointUrl } : {}),
    // Adaptive mode (client-side rate limiting), with the limiter gated: see retry.ts.
    retryStrategy: createRetryStrategy(o.maxAttempts),
  });
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const op = context.commandName?.replace(/Command$/, '') ?? 'Unknown';
      stats.calls[op] = (stats.calls[op] ?? 0) + 1;
      return next(args);
    },
    { step: 'initialize', name: 'ikeCountCalls' },
  );
  // Below the retry middleware (same step, lower priority): runs once per attempt.
  client.middlewareStack.add(
    (next) => async (args) => {
      stats.attempts++;
      try {
        return await next(args);
      } catch (err) {
        if (isThrottle(err)) stats.throttles++;
        throw err;
      }
    },
    { step: 'finalizeRequest', priority: 'low', name: 'ikeCountAttempts' },
  );
  return client;
}
